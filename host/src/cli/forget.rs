//! `coffer forget` and `coffer prune`: keep backups under a retention policy.

use anyhow::Result;
use coffer_repository::{ForgetReport, PruneReport, Repo, Retention};

use super::output::bytes;
use super::{Global, RunConfig, UsageError, exit};

/// Forget the snapshots a retention policy does not keep (restic's rules), with every artifact
/// they name and the artifacts of runs that never completed; `--prune` then frees their data.
/// Without a --keep-* flag the deployment's `[retention]` applies.
#[derive(clap::Args)]
pub struct Args {
    /// Keep the newest N snapshots.
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// … of each of the last N days.
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// … of each of the last N weeks.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// … of each of the last N months.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    /// … of each of the last N years.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
    /// Keep every snapshot younger than this, relative to the newest (`30d`, `1y 6mo`).
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Keep every snapshot with these tags (`TAG[,TAG…]`); repeatable.
    #[arg(long, value_name = "TAGS")]
    keep_tag: Vec<String>,
    /// List what would be forgotten and why the rest is kept; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Then prune: remove the data no snapshot needs.
    #[arg(long, conflicts_with = "dry_run")]
    prune: bool,
}

impl Args {
    fn policy(&self) -> Retention {
        Retention {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within.clone(),
            keep_tag: self.keep_tag.clone(),
            prune: self.prune,
            plugin: Default::default(),
        }
    }
}

/// Apply `policy` to `repo` under its writer lock (and prune when the policy says so).
pub async fn apply(
    repo: Repo,
    policy: Retention,
    dry_run: bool,
) -> Result<(ForgetReport, Option<PruneReport>)> {
    let _lock = repo.lock().await?;
    Ok(
        coffer_core::run::blocking(move || -> Result<_, coffer_repository::RepoError> {
            let forgot = repo.forget(&policy, dry_run)?;
            let pruned = if policy.prune && !dry_run {
                Some(repo.prune()?)
            } else {
                None
            };
            Ok((forgot, pruned))
        })
        .await?,
    )
}

/// The lines for people: one per snapshot, then the totals.
pub fn describe(f: &ForgetReport, p: Option<&PruneReport>) -> String {
    let mut text = String::new();
    for d in &f.snapshots {
        text.push_str(&format!(
            "{} {:<9} {:<22} {} artifact(s){}\n",
            if d.keep { "keep  " } else { "forget" },
            &d.id[..8.min(d.id.len())],
            &d.time[..d.time.len().min(19)],
            d.artifacts,
            if d.reasons.is_empty() {
                String::new()
            } else {
                format!("  ({})", d.reasons.join(", "))
            }
        ));
        if !d.trimmed.is_empty() {
            text.push_str(&format!(
                "         without the artifacts of {} (their own [retention.plugin] rules)\n",
                d.trimmed.join(", ")
            ));
        }
    }
    text.push_str(&format!(
        "{} {} snapshot(s) with {} artifact(s), and {} artifact(s) of runs that never completed",
        if f.dry_run { "would forget" } else { "forgot" },
        f.forgotten,
        f.forgotten_artifacts,
        f.orphans
    ));
    if f.trimmed > 0 {
        text.push_str(&format!(
            "; {} snapshot(s) kept without some plugins' artifacts",
            f.trimmed
        ));
    }
    if let Some(p) = p {
        text.push_str(&format!("\n{}", prune_line(p)));
    }
    text
}

fn prune_line(p: &PruneReport) -> String {
    format!(
        "pruned: {} of data before, {} after; {} pack(s) deleted, {} repacked, {} marked for \
         deletion by a later prune (after 23 h, so that a restore reading them now keeps them)",
        bytes(p.bytes_before),
        bytes(p.bytes_after),
        p.packs_deleted,
        p.packs_repacked,
        p.packs_marked
    )
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let cfg = RunConfig::resolve(g)?;
    let mut policy = args.policy();
    if !policy.is_set() {
        match &cfg.deployment.retention {
            Some(r) => {
                policy = Retention {
                    prune: r.prune || args.prune,
                    ..r.clone()
                }
            }
            None => {
                return Err(UsageError(
                    "no retention rule: give --keep-last, --keep-daily … or set [retention] in \
                     the deployment file"
                        .into(),
                )
                .into());
            }
        }
    }
    let repo = cfg.open_repo().await?;
    let (forgot, pruned) = apply(repo, policy, args.dry_run).await?;
    if g.json {
        let mut v = serde_json::to_value(&forgot)?;
        v["event"] = "summary".into();
        v["pruned"] = serde_json::to_value(&pruned)?;
        println!("{v}");
    } else {
        println!("{}", describe(&forgot, pruned.as_ref()));
    }
    Ok(exit::OK)
}

/// `coffer prune`: remove the data no snapshot needs.
#[derive(clap::Args)]
pub struct PruneArgs {}

pub async fn prune(g: &Global, _args: PruneArgs) -> Result<u8> {
    let repo = RunConfig::resolve(g)?.open_repo().await?;
    let _lock = repo.lock().await?;
    let p = coffer_core::run::blocking(move || repo.prune()).await?;
    if g.json {
        let mut v = serde_json::to_value(&p)?;
        v["event"] = "summary".into();
        println!("{v}");
    } else {
        println!("{}", prune_line(&p));
    }
    Ok(exit::OK)
}
