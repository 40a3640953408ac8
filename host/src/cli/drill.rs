//! `coffer drill`: prove a snapshot restores, without touching the live service.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use coffer_core::run::{DrillOutcome, DrillSummary, NodeFilter};
use coffer_transport::NodeHandle;
use serde::{Deserialize, Serialize};

use super::output::human_duration;
use super::{Global, RunConfig, RunScope, UsageError, exit};

/// Restore a snapshot into throwaway places — files into a scratch directory, a database into
/// a throwaway server on a scratch datadir — and check what came back against what the backup
/// recorded; the live services are never touched. Each plugin's result is kept for `coffer
/// status` and the metrics. Exit 5 when a drill failed or nothing could be drilled.
#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id (or a unique prefix), or `latest`.
    #[arg(default_value = "latest")]
    snapshot: String,
    /// Only these plugins; repeatable.
    #[arg(long = "plugin", value_name = "NAME")]
    plugins: Vec<String>,
    /// The node to restore on (a node of the deployment); default: `[drill] node`, else the
    /// repository's node (a backup host), else this machine.
    #[arg(long = "on", value_name = "NODE")]
    on: Option<String>,
    /// Where on that node the scratch directories go (each created empty, removed after);
    /// default: `[drill] scratch`, else /var/tmp.
    #[arg(long, value_name = "DIR")]
    scratch: Option<String>,
}

/// The last drill of one plugin, as `coffer status` and the metrics read it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct LastDrill {
    /// When it ended (RFC 3339).
    pub(super) time: String,
    pub(super) snapshot: String,
    pub(super) node: String,
    /// `passed`, `failed` or `not-drillable`.
    pub(super) outcome: String,
    pub(super) checks: usize,
    pub(super) failed: usize,
}

/// Where the last drill of every plugin is kept.
fn drills_file() -> PathBuf {
    coffer_repository::state_dir().join("drills.json")
}

/// The last drill of every plugin (none when never drilled).
pub(super) fn last_drills() -> BTreeMap<String, LastDrill> {
    std::fs::read_to_string(drills_file())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Keep `s` as the last drill of each plugin it drilled.
fn record(s: &DrillSummary) -> std::io::Result<()> {
    let mut all = last_drills();
    let time = jiff::Timestamp::now().to_string();
    for d in &s.drills {
        all.insert(
            d.plugin.clone(),
            LastDrill {
                time: time.clone(),
                snapshot: s.snapshot.clone(),
                node: s.node.clone(),
                outcome: serde_json::to_value(d.outcome)?
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                checks: d.checks.len(),
                failed: d.checks.iter().filter(|c| !c.check.ok).count(),
            },
        );
    }
    coffer_runtime::undo::write_json_durably(&drills_file(), &all)
}

pub async fn run(g: &Global, mut args: Args) -> Result<u8> {
    let cfg = RunConfig::resolve(g)?;
    let d = &cfg.deployment;
    args.on = args
        .on
        .take()
        .or_else(|| d.drill_node.clone())
        .or_else(|| d.repository_node.clone());
    let scratch = args
        .scratch
        .clone()
        .or_else(|| d.drill_scratch.clone())
        .unwrap_or_else(|| "/var/tmp".into());
    // Only the drill node is reached; this machine needs no connection.
    let mut scope = RunScope {
        filter: NodeFilter {
            nodes: args.on.iter().cloned().collect(),
            ..NodeFilter::default()
        },
        plugins: args.on.is_none().then(Vec::new),
        ..RunScope::default()
    };
    let (coffer, printer) = cfg.coffer(&mut scope).await?;
    let node = match &args.on {
        Some(name) => coffer
            .nodes
            .iter()
            .find(|n| &n.name == name)
            .cloned()
            .ok_or_else(|| UsageError(format!("--on {name}: the node was not reached")))?,
        None => match cfg.deployment.nodes.iter().find(|n| n.ssh.is_none()) {
            Some(n) => NodeHandle::local(&n.name, n.roles.clone()),
            None => NodeHandle::local("coffer-host", Vec::new()),
        },
    };
    let repo = cfg.open_repo().await?;
    let s = coffer
        .drill(repo, &args.snapshot, &args.plugins, &node, &scratch)
        .await?;
    if let Err(e) = record(&s) {
        eprintln!("warning: the drill's result is not kept for `coffer status`: {e}");
    }
    printer.summary(&s, || {
        let mut text = format!(
            "snapshot {}: drilled on {} in {}",
            &s.snapshot[..8],
            s.node,
            human_duration(s.seconds)
        );
        for d in &s.drills {
            let failed = d.checks.iter().filter(|c| !c.check.ok).count();
            text.push_str(&match d.outcome {
                DrillOutcome::Passed => {
                    format!("\n  {}: passed, {} check(s)", d.plugin, d.checks.len())
                }
                DrillOutcome::NotDrillable => format!("\n  {}: not drillable", d.plugin),
                DrillOutcome::Failed => format!(
                    "\n  {}: FAILED: {}",
                    d.plugin,
                    d.error
                        .clone()
                        .unwrap_or_else(|| format!("{failed} of {} check(s)", d.checks.len()))
                ),
            });
            for c in d.checks.iter().filter(|c| !c.check.ok) {
                text.push_str(&format!(
                    "\n    FAILED on {}: {}: {}",
                    c.check.node, c.check.name, c.check.detail
                ));
            }
        }
        if !s.drills.iter().any(|d| d.outcome == DrillOutcome::Passed) {
            text.push_str("\nnothing in this snapshot could be drilled");
        }
        text
    });
    Ok(if s.ok() { exit::OK } else { exit::VALIDATION })
}
