//! `coffer status`: per plugin and node, the last successful backup (time, age, size, how long
//! the run took) and, when a later backup failed or left the node out, that failure; exit 9
//! when anything is older than `--max-age` or was never backed up, so a monitoring check can
//! call it.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::output::{bytes, human_duration};
use super::{Global, RunConfig, exit};

/// Show the age of the last good backup of every plugin on every node.
#[derive(clap::Args)]
pub struct Args {
    /// Older than this is stale (exit 9): `26h`, `2d`, `90m`.
    #[arg(long, value_name = "DURATION", default_value = "26h", value_parser = super::parse_wait)]
    max_age: std::time::Duration,
}

/// One plugin on one node.
#[derive(Debug, Default, Serialize)]
pub(super) struct Entry {
    pub(super) plugin: String,
    pub(super) node: String,
    /// The newest snapshot holding its backup.
    pub(super) last_snapshot: Option<String>,
    /// When that backup finished (RFC 3339).
    pub(super) last_success: Option<String>,
    pub(super) age_seconds: Option<i64>,
    /// Its artifacts' bytes.
    pub(super) bytes: u64,
    /// How long its run took.
    pub(super) run_seconds: Option<f64>,
    /// A later backup that left this node out (degraded), with why.
    pub(super) missed_since: Option<String>,
    pub(super) stale: bool,
}

/// Per enabled plugin and node, its last good backup, from the repository's snapshots; with
/// the number of snapshots. An enabled plugin no snapshot holds is one entry with node `-`.
pub(super) async fn entries(cfg: &RunConfig) -> Result<(Vec<Entry>, usize)> {
    let enabled: Vec<String> = cfg
        .deployment
        .plugins
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let repo = cfg.open_repo().await?;
    let snaps = coffer_core::run::blocking(move || repo.snapshots()).await?;
    let now = jiff::Timestamp::now();
    let parse = |t: &str| t.parse::<jiff::Timestamp>().ok();
    let mut entries: BTreeMap<(String, String), Entry> = BTreeMap::new();
    // Oldest first: each snapshot overwrites what an older one said.
    for s in &snaps {
        let m = &s.manifest;
        let (started, finished) = (parse(&m.started), parse(&m.finished));
        for p in &m.plugins {
            for node in &p.nodes {
                let e = entries.entry((p.name.clone(), node.clone())).or_default();
                e.last_snapshot = Some(s.short_id().to_string());
                e.last_success = Some(m.finished.clone());
                e.age_seconds = finished.map(|f| (now - f).get_seconds());
                e.bytes = m
                    .artifacts
                    .iter()
                    .filter(|a| a.plugin == p.name && &a.node == node)
                    .map(|a| a.size)
                    .sum();
                e.run_seconds = started
                    .zip(finished)
                    .map(|(a, b)| (b - a).get_milliseconds() as f64 / 1000.0);
                e.missed_since = None;
            }
        }
        for missing in &m.missing {
            for plugin in &missing.plugins {
                let e = entries
                    .entry((plugin.clone(), missing.node.clone()))
                    .or_default();
                if e.missed_since.is_none() {
                    e.missed_since = Some(format!(
                        "left out of snapshot {} ({}): {}",
                        s.short_id(),
                        &m.finished[..m.finished.len().min(19)],
                        missing.reason
                    ));
                }
            }
        }
    }
    // An enabled plugin no snapshot holds was never backed up.
    for plugin in &enabled {
        if !entries.keys().any(|(p, _)| p == plugin) {
            entries.insert((plugin.clone(), "-".into()), Entry::default());
        }
    }
    let list = entries
        .into_iter()
        .filter(|((plugin, _), _)| enabled.contains(plugin))
        .map(|((plugin, node), e)| Entry { plugin, node, ..e })
        .collect();
    Ok((list, snaps.len()))
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let cfg = RunConfig::resolve(g)?;
    let (mut list, _) = entries(&cfg).await?;
    let max = args.max_age.as_secs() as i64;
    let now = jiff::Timestamp::now();
    let limit = jiff::SignedDuration::try_from(args.max_age).unwrap_or(jiff::SignedDuration::MAX);
    let mut stale = 0;
    for e in &mut list {
        // To the nanosecond, not the whole seconds `age_seconds` shows.
        let finished = e
            .last_success
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        e.stale = finished.is_none_or(|f| now.duration_since(f) > limit);
        stale += usize::from(e.stale);
    }
    let drills = super::drill::last_drills();
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "event": "summary",
                "max_age_seconds": max,
                "stale": stale,
                "entries": list,
                "drills": drills,
            })
        );
    } else {
        println!(
            "{:<12} {:<16} {:<20} {:>9} {:>10} {:>8}  ",
            "PLUGIN", "NODE", "LAST SUCCESS", "AGE", "SIZE", "RUN"
        );
        for e in &list {
            let age = e
                .age_seconds
                .map(|a| human_duration(a as f64))
                .unwrap_or_else(|| "never".into());
            println!(
                "{:<12} {:<16} {:<20} {:>9} {:>10} {:>8}  {}{}",
                e.plugin,
                e.node,
                e.last_success
                    .as_deref()
                    .map(|t| &t[..t.len().min(19)])
                    .unwrap_or("-"),
                age,
                bytes(e.bytes),
                e.run_seconds.map(human_duration).unwrap_or_default(),
                if e.stale { "STALE " } else { "" },
                e.missed_since.as_deref().unwrap_or("")
            );
        }
        if stale > 0 {
            println!(
                "{stale} plugin/node pair(s) without a backup younger than {}",
                human_duration(max as f64)
            );
        }
        println!("last drills (`coffer drill`):");
        for plugin in cfg.deployment.plugins.iter().map(|p| &p.name) {
            match drills.get(plugin) {
                Some(d) => println!(
                    "  {plugin:<12} {:<13} {} on {}, snapshot {}: {} check(s), {} failed",
                    if d.outcome == "failed" {
                        "FAILED"
                    } else {
                        d.outcome.as_str()
                    },
                    &d.time[..d.time.len().min(19)],
                    d.node,
                    &d.snapshot[..d.snapshot.len().min(8)],
                    d.checks,
                    d.failed
                ),
                None => println!("  {plugin:<12} never drilled"),
            }
        }
    }
    Ok(if stale > 0 { exit::STALE } else { exit::OK })
}
