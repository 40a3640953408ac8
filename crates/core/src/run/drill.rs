//! A restore drill: each plugin restores a snapshot into throwaway places on the drill node
//! (a scratch directory the host creates and removes) and checks what came back against what
//! its backup recorded. Nothing live is touched: proof that the snapshot restores, on any day.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use coffer_repository::Repo;
use coffer_runtime::CallContext;
use coffer_runtime::capabilities::Phase;
use coffer_runtime::report::{Event, Level, Operation, PluginCheck, Status};
use coffer_runtime::undo::UndoStack;
use coffer_transport::{NodeHandle, process};

use super::restore::RestoreOptions;
use super::{Coffer, RunError};

/// How one plugin's drill ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillOutcome {
    /// It restored and every check passed.
    Passed,
    /// A check failed, it made none, or the plugin failed.
    Failed,
    /// The plugin has no drill (reported, never counted as passed).
    NotDrillable,
}

/// One plugin's drill.
#[derive(Clone, Debug, Serialize)]
pub struct DrillResult {
    /// The plugin.
    pub plugin: String,
    /// How it ended.
    pub outcome: DrillOutcome,
    /// The checks it made.
    pub checks: Vec<PluginCheck>,
    /// Why it failed, when not by a check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a drill did.
#[derive(Clone, Debug, Serialize)]
pub struct DrillSummary {
    /// The snapshot drilled.
    pub snapshot: String,
    /// The node it was restored on.
    pub node: String,
    /// Each plugin's drill, in plan order.
    pub drills: Vec<DrillResult>,
    /// Seconds it took.
    pub seconds: f64,
}

impl DrillSummary {
    /// Whether something was drilled and nothing failed.
    pub fn ok(&self) -> bool {
        self.drills
            .iter()
            .any(|d| d.outcome == DrillOutcome::Passed)
            && !self
                .drills
                .iter()
                .any(|d| d.outcome == DrillOutcome::Failed)
    }
}

/// How long the host waits for its own scratch commands on the drill node.
const SCRATCH_TIMEOUT: Duration = Duration::from_secs(120);

impl Coffer {
    /// Drill snapshot `spec` on `node`: each plugin (of `plugins`, all when empty) restores its
    /// artifacts under a new scratch directory in `scratch_base` there and checks them.
    pub async fn drill(
        &self,
        repo: Repo,
        spec: &str,
        plugins: &[String],
        node: &NodeHandle,
        scratch_base: &str,
    ) -> Result<DrillSummary, RunError> {
        let started = Instant::now();
        let opts = RestoreOptions {
            plugins: plugins.to_vec(),
            ..RestoreOptions::default()
        };
        let (snap, source, records) = self.open_snapshot(repo, spec, &opts).await?;
        let mut drills = Vec::new();
        for record in &records {
            if self.interrupt.as_ref().is_some_and(|t| t.is_cancelled()) {
                return Err(RunError::Interrupted);
            }
            let (plugin, mut ctx) = self.snapshot_context(record, &snap.manifest, &opts)?;
            // Every artifact of the plugin, of every node, onto the one drill node.
            ctx.artifacts = snap
                .manifest
                .artifacts
                .iter()
                .filter(|a| a.plugin == record.name)
                .cloned()
                .collect();
            ctx.nodes = vec![node.clone()];
            let scratch = self.scratch(node, scratch_base, &record.name).await?;
            ctx.target_root = Some(scratch.clone());
            self.step(
                &record.name,
                Operation::Drill,
                Status::Started,
                format!("on {} under {scratch}", node.name),
            );
            let result = self.drill_one(plugin, &ctx, &source).await;
            self.remove_scratch(node, &record.name, &scratch).await;
            if matches!(result, Err(RunError::Interrupted)) {
                return Err(RunError::Interrupted);
            }
            let (outcome, checks, error) = match result {
                Ok(None) => (DrillOutcome::NotDrillable, Vec::new(), None),
                Ok(Some(found)) => {
                    let checks: Vec<PluginCheck> = found
                        .into_iter()
                        .map(|check| PluginCheck {
                            plugin: record.name.clone(),
                            check,
                        })
                        .collect();
                    for c in &checks {
                        self.reporter.report(Event::Check(c.clone()));
                    }
                    if checks.is_empty() {
                        let e = "the drill made no check: nothing was proven".to_string();
                        (DrillOutcome::Failed, checks, Some(e))
                    } else if checks.iter().all(|c| c.check.ok) {
                        (DrillOutcome::Passed, checks, None)
                    } else {
                        (DrillOutcome::Failed, checks, None)
                    }
                }
                Err(e) => (DrillOutcome::Failed, Vec::new(), Some(e.to_string())),
            };
            let failed = checks.iter().filter(|c| !c.check.ok).count();
            let (status, detail) = match outcome {
                DrillOutcome::Passed => (Status::Ok, format!("{} check(s) passed", checks.len())),
                DrillOutcome::NotDrillable => (
                    Status::Skipped,
                    "not drillable (the plugin has no drill)".to_string(),
                ),
                DrillOutcome::Failed => (
                    Status::Failed,
                    error
                        .clone()
                        .unwrap_or_else(|| format!("{} check(s), {failed} failed", checks.len())),
                ),
            };
            self.step(&record.name, Operation::Drill, status, detail);
            drills.push(DrillResult {
                plugin: record.name.clone(),
                outcome,
                checks,
                error,
            });
        }
        Ok(DrillSummary {
            snapshot: snap.id,
            node: node.name.clone(),
            drills,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// One plugin's drill, what it leaves to undo (a throwaway server still running) undone.
    async fn drill_one(
        &self,
        plugin: &coffer_runtime::LoadedPlugin,
        ctx: &CallContext,
        source: &Arc<coffer_runtime::capabilities::SnapshotSource>,
    ) -> Result<Option<Vec<coffer_sdk::Check>>, RunError> {
        let undo = Arc::new(UndoStack::new(&ctx.run_id, &self.deployment.source_name));
        let mut env = self.env(plugin, &ctx.nodes, &ctx.run_id);
        env.phase = Phase::Snapshot(source.clone());
        env.undo = Some(undo.clone());
        let result = tokio::select! {
            r = self.runtime.drill(plugin, env, ctx) => r.map_err(RunError::from),
            _ = self.interrupted() => Err(RunError::Interrupted),
        };
        // On the drill node, which need not be one the run reached for its plugins.
        self.unwind_on(&undo, &ctx.nodes).await;
        result
    }

    /// A new, empty scratch directory under `base` on `node`.
    async fn scratch(
        &self,
        node: &NodeHandle,
        base: &str,
        plugin: &str,
    ) -> Result<String, RunError> {
        let template = format!(
            "{}/coffer-drill-{plugin}-XXXXXX",
            base.trim_end_matches('/')
        );
        let argv = ["mktemp".to_string(), "-d".into(), template];
        let out = process::run(node, &argv, Vec::new(), SCRATCH_TIMEOUT, 1 << 16)
            .await
            .map_err(|e| RunError::Config(format!("drill on {}: {e}", node.name)))?;
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.exit_code != Some(0) || !dir.starts_with('/') {
            return Err(RunError::Config(format!(
                "drill on {}: cannot create a scratch directory under {base} ({}); give another \
                 with --scratch",
                node.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(dir)
    }

    /// Remove the scratch directory; a failure is said, not fatal.
    async fn remove_scratch(&self, node: &NodeHandle, plugin: &str, dir: &str) {
        let argv = [
            "rm".to_string(),
            "-rf".into(),
            "--one-file-system".into(),
            dir.into(),
        ];
        let removed = process::run(node, &argv, Vec::new(), SCRATCH_TIMEOUT, 1 << 16).await;
        if !matches!(&removed, Ok(out) if out.exit_code == Some(0)) {
            self.reporter.report(Event::Log {
                plugin: plugin.into(),
                level: Level::Warn,
                message: format!("the drill's scratch directory {dir} on {} stays", node.name),
            });
        }
    }
}
