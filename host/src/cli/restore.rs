//! `coffer restore`: restore a snapshot, then validate it.

use anyhow::Result;
use coffer::orchestrator::{RestoreOptions, RestoreSummary, human_duration};

use super::output::Printer;
use super::{Global, coffer, exit, open_repo};

/// Restore a snapshot with each plugin's runbook, in place or under --target, then validate.
#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id (or a unique prefix), or `latest`.
    snapshot: String,
    #[command(flatten)]
    scope: Scope,
    /// Do not validate after restoring.
    #[arg(long)]
    no_validate: bool,
}

/// What part of a snapshot a restore or a validation covers.
#[derive(clap::Args)]
pub struct Scope {
    /// Restore (or compare) under this directory instead of in place.
    #[arg(long, value_name = "DIR")]
    target: Option<String>,
    /// Only this absolute path (filesystem plugin); repeatable.
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// Only these plugins; repeatable.
    #[arg(long = "plugin", value_name = "NAME")]
    plugins: Vec<String>,
    #[command(flatten)]
    pub nodes: super::Target,
}

impl Scope {
    /// The restore options for this scope.
    pub fn options(&self, validate: bool) -> Result<RestoreOptions> {
        Ok(RestoreOptions {
            target_root: absolute_target(self.target.clone())?,
            selection: self.paths.clone(),
            plugins: self.plugins.clone(),
            validate,
        })
    }
}

/// Print the checks and pick the exit code.
pub fn finish(printer: &Printer, s: &RestoreSummary, verb: &str) -> u8 {
    printer.summary(s, || {
        let failed = s.checks.iter().filter(|c| !c.ok).count();
        let mut text = format!(
            "snapshot {}: {verb} in {}; {} check(s), {failed} failed",
            &s.snapshot[..8],
            human_duration(s.seconds),
            s.checks.len()
        );
        for c in s.checks.iter().filter(|c| !c.ok) {
            text.push_str(&format!(
                "\n  FAILED {} on {}: {}: {}",
                c.plugin, c.node, c.name, c.detail
            ));
        }
        text
    });
    if s.ok() { exit::OK } else { exit::VALIDATION }
}

fn absolute_target(t: Option<String>) -> Result<Option<String>> {
    Ok(match t {
        None => None,
        Some(t) => {
            let p = std::path::absolute(&t)?;
            Some(p.display().to_string())
        }
    })
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let (coffer, printer) = coffer(g).await?;
    let coffer = coffer.restrict(args.scope.nodes.filter())?;
    let repo = open_repo(g, &coffer.deployment).await?;
    let opts = args.scope.options(!args.no_validate)?;
    let s = coffer.restore(repo, &args.snapshot, &opts).await?;
    Ok(finish(&printer, &s, "restored"))
}
