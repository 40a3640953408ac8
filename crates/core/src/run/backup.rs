//! A backup: every enabled plugin (or a chosen few) streams its artifacts into one new
//! snapshot, which is either written whole or not at all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use coffer_config::deployment::PluginConfig;
use coffer_repository::{
    ArtifactRecord, ArtifactScope, MANIFEST_FORMAT, Manifest, MissingNode, PluginRecord, Repo,
};
use coffer_runtime::CallContext;
use coffer_runtime::LoadedPlugin;
use coffer_runtime::capabilities::{BackupSink, Phase};
use coffer_runtime::dry_run::{Plan, Unreachable};
use coffer_runtime::undo::UndoStack;

use super::plan::{plan_order, plan_waits, run_plan};
use super::{Coffer, Overrides, Planner, PluginRun, RunError, blocking, run_id};
use coffer_runtime::report::{Event, Level, Operation, Status};

/// What to back up.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    /// Only these plugins (empty: every enabled plugin).
    pub plugins: Vec<String>,
    /// Settings from the command line that override the deployment file's, per plugin.
    pub overrides: Overrides,
}

/// What one backup run shares between its plugins.
struct BackupRun {
    /// Where artifacts go, and what was written.
    sink: Arc<BackupSink>,
    /// The reversals plugins registered.
    undo: Arc<UndoStack>,
    /// This run's id.
    run_id: String,
}

/// What a backup did.
#[derive(Clone, Debug, Serialize)]
pub struct BackupSummary {
    /// The new snapshot's id.
    pub snapshot: String,
    /// Run id.
    pub run_id: String,
    /// Each plugin, in plan order.
    pub plugins: Vec<PluginRun>,
    /// Its artifacts.
    pub artifacts: Vec<ArtifactRecord>,
    /// Bytes read from the nodes.
    pub bytes: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// Orphaned artifacts of killed runs that were removed first.
    pub removed_orphans: usize,
    /// Nodes the run needed and could not reach: their node-scoped data is not in the
    /// snapshot (a degraded backup). Empty when every needed node was reached.
    pub missing: Vec<MissingNode>,
}

impl BackupSummary {
    /// Whether nodes were missing: the snapshot holds what the reached nodes had.
    pub fn degraded(&self) -> bool {
        !self.missing.is_empty()
    }
}

impl Coffer {
    /// Back up every enabled plugin (or only `opts.plugins`) into `repo`. Either the whole
    /// snapshot is written, or nothing of this run stays in the repository.
    pub async fn backup(
        &self,
        repo: Repo,
        opts: &BackupOptions,
    ) -> Result<BackupSummary, RunError> {
        let started = Instant::now();
        let started_at = jiff::Timestamp::now();
        let _lock = repo.lock().await?;
        let location = repo.location().clone();
        let (start, repo) = blocking(move || (repo.prepare_backup(), repo)).await;
        let start = start?;
        let removed_orphans = start.removed_orphans;
        // What each artifact weighed last time: the progress shown is measured against it.
        let parents: BTreeMap<String, String> = start
            .latest
            .iter()
            .flat_map(|snap| snap.manifest.artifacts.iter())
            .filter(|a| a.layout == coffer_repository::Layout::Tree)
            .map(|a| {
                (
                    format!("{}/{}/{}", a.plugin, a.node, a.name),
                    a.snapshot.clone(),
                )
            })
            .collect();
        let expected: BTreeMap<String, u64> = start
            .latest
            .map(|snap| {
                snap.manifest
                    .artifacts
                    .iter()
                    .map(|a| (format!("{}/{}/{}", a.plugin, a.node, a.name), a.size))
                    .collect()
            })
            .unwrap_or_default();
        let writer = Arc::new(blocking(move || repo.into_writer()).await?);
        let run_id = run_id();
        let run = BackupRun {
            sink: Arc::new(BackupSink {
                writer: Some(writer.clone()),
                expected: Arc::new(expected),
                parents: Arc::new(parents),
                written: Arc::default(),
                repository: location,
            }),
            undo: Arc::new(UndoStack::new(&run_id, &self.deployment.source_name)),
            run_id: run_id.clone(),
        };
        let work = async {
            let records = self.backup_plugins(&run, opts).await?;
            if records.is_empty() {
                return Err(if self.unreachable.is_empty() {
                    nothing_ran()
                } else {
                    RunError::Unreachable(format!(
                        "nothing was backed up: every node the plugins work on is unreachable \
                         ({})",
                        self.unreachable
                            .iter()
                            .map(|u| format!("{}: {}", u.node, u.reason))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                });
            }
            Ok(records)
        };
        let outcome = tokio::select! {
            r = work => r,
            _ = self.interrupted() => Err(RunError::Interrupted),
        };
        let (plugins, seconds): (Vec<PluginRecord>, Vec<f64>) = match outcome {
            Ok(p) => p.into_iter().unzip(),
            Err(e) => {
                let ids: Vec<String> = run
                    .sink
                    .written
                    .lock()
                    .expect("written lock")
                    .iter()
                    .map(|a| a.snapshot.clone())
                    .collect();
                let w = writer.clone();
                // Nothing of a failed run is kept; if this fails too, the next backup removes it.
                let _ = blocking(move || w.discard(&ids)).await;
                self.unwind(&run.undo).await;
                return Err(e);
            }
        };
        self.keep_changes(&run.undo);
        // Each artifact's scope, as the plugin that wrote it declares.
        let artifacts: Vec<ArtifactRecord> = run
            .sink
            .written
            .lock()
            .expect("written lock")
            .iter()
            .map(|a| {
                let mut a = a.clone();
                if self
                    .registry
                    .get(&a.plugin)
                    .is_some_and(|p| p.info.is_cluster_artifact(&a.name))
                {
                    a.scope = ArtifactScope::Cluster;
                }
                a
            })
            .collect();
        let missing = self.missing_nodes(&plugins);
        let runs = plugins
            .iter()
            .zip(seconds)
            .map(|(p, seconds)| PluginRun {
                plugin: p.name.clone(),
                nodes: p.nodes.clone(),
                bytes: artifacts
                    .iter()
                    .filter(|a| a.plugin == p.name)
                    .map(|a| a.size)
                    .sum(),
                seconds,
            })
            .collect();
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            run_id: run_id.clone(),
            deployment: self.deployment.name.clone(),
            coffer_version: env!("CARGO_PKG_VERSION").into(),
            started: started_at.to_string(),
            finished: jiff::Timestamp::now().to_string(),
            plugins,
            artifacts: artifacts.clone(),
            missing: missing.clone(),
            trimmed: Vec::new(),
        };
        let snapshot = {
            let w = writer.clone();
            let m = manifest.clone();
            blocking(move || w.commit(&m)).await?
        };
        Ok(BackupSummary {
            snapshot,
            run_id,
            plugins: runs,
            bytes: manifest.total_size(),
            artifacts,
            seconds: started.elapsed().as_secs_f64(),
            removed_orphans,
            missing,
        })
    }

    /// The needed nodes of plugin `pc` this run could not reach.
    fn missing_for(&self, pc: &PluginConfig, plugin: &LoadedPlugin) -> Vec<&Unreachable> {
        let roles = self.roles_of(&pc.name, plugin);
        self.unreachable
            .iter()
            .filter(|u| {
                self.deployment.nodes.iter().any(|n| {
                    n.name == u.node
                        && self.filter.admits_named(&n.name, &n.roles)
                        && (roles.is_empty() || n.roles.iter().any(|r| roles.contains(r)))
                })
            })
            .collect()
    }

    /// The unreachable nodes, each with the plugins of this run that needed it.
    fn missing_nodes(&self, ran: &[PluginRecord]) -> Vec<MissingNode> {
        let mut names: Vec<String> = ran.iter().map(|p| p.name.clone()).collect();
        // Plugins whose every node was missing wrote no record.
        for pc in &self.deployment.plugins {
            if !names.contains(&pc.name) {
                names.push(pc.name.clone());
            }
        }
        self.unreachable
            .iter()
            .map(|u| MissingNode {
                node: u.node.clone(),
                reason: u.reason.clone(),
                plugins: names
                    .iter()
                    .filter_map(|name| {
                        let pc = self.deployment.plugins.iter().find(|p| &p.name == name)?;
                        let plugin = self.registry.get(name)?;
                        self.missing_for(pc, plugin)
                            .iter()
                            .any(|m| m.node == u.node)
                            .then(|| name.clone())
                    })
                    .collect(),
            })
            .filter(|m| !m.plugins.is_empty())
            .collect()
    }

    /// Call every plugin of the backup in plan order; each plugin's record and seconds.
    async fn backup_plugins(
        &self,
        run: &BackupRun,
        opts: &BackupOptions,
    ) -> Result<Vec<(PluginRecord, f64)>, RunError> {
        let (only, overrides) = (&opts.plugins, &opts.overrides);
        let run_id = run.run_id.as_str();
        for name in only {
            if !self.deployment.plugins.iter().any(|p| &p.name == name) {
                return Err(RunError::Config(format!(
                    "plugin `{name}` is not enabled in deployment {}",
                    self.deployment.source_name
                )));
            }
        }
        let enabled: Vec<String> = self
            .deployment
            .plugins
            .iter()
            .map(|p| p.name.clone())
            .collect();
        let info = |n: &str| self.registry.get(n).map(|p| &p.info);
        let order: Vec<String> = plan_order(&enabled, info)
            .map_err(RunError::Config)?
            .into_iter()
            .filter(|n| only.is_empty() || only.contains(n))
            .collect();
        let waits = plan_waits(&order, info);
        let (done, failed) = run_plan(
            &order,
            &waits,
            self.deployment.parallel_plugins,
            |name| async move {
                let pc = self
                    .deployment
                    .plugins
                    .iter()
                    .find(|p| p.name == name)
                    .expect("ordered from the enabled plugins");
                let plugin = self.registry.get(&pc.name).expect("checked in new");
                if !plugin.info.operations.backup {
                    return Ok(None);
                }
                let nodes = self.nodes_for(pc, plugin);
                let missing = self.missing_for(pc, plugin);
                let lost = missing
                    .iter()
                    .map(|u| format!("{} ({})", u.node, u.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                if nodes.is_empty() {
                    let detail = if missing.is_empty() {
                        "no node carries its roles".to_string()
                    } else {
                        format!("MISSING: every node it works on is unreachable: {lost}")
                    };
                    self.step(&pc.name, Operation::Backup, Status::Skipped, detail);
                    return Ok(None);
                }
                if !missing.is_empty() {
                    self.reporter.report(Event::Log {
                        plugin: pc.name.clone(),
                        level: Level::Warn,
                        message: format!(
                            "MISSING from this backup: {lost}; backing up from {}",
                            nodes
                                .iter()
                                .map(|n| n.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
                let mut settings = pc.settings.clone();
                settings.extend(overrides.get(&pc.name).cloned().unwrap_or_default());
                let ctx = CallContext {
                    deployment: self.deployment.name.clone(),
                    run_id: run_id.into(),
                    nodes: nodes.clone(),
                    settings,
                    dry_run: self.is_dry_run(),
                    ..CallContext::default()
                };
                let calls = ctx.split(plugin.info.node_scoped.backup);
                let detail = self.fan_detail(&pc.name, &calls);
                if !self.plan_step(plugin, Operation::Backup, &nodes, &detail) {
                    return Ok(None);
                }
                self.step(&pc.name, Operation::Backup, Status::Started, detail);
                let t = Instant::now();
                let result = self
                    .fan_out(&pc.name, calls, |ctx| {
                        let mut env = self.env(plugin, &ctx.nodes, run_id);
                        env.phase = Phase::Backup(run.sink.clone());
                        env.undo = Some(run.undo.clone());
                        async move { self.runtime.backup(plugin, env, &ctx).await }
                    })
                    .await
                    .map(|per_call| per_call.concat());
                match result {
                    Ok(recs) => {
                        self.step(&pc.name, Operation::Backup, Status::Ok, String::new());
                        let record = PluginRecord {
                            name: plugin.identity.name.clone(),
                            version: plugin.identity.version.clone(),
                            digest: plugin.identity.digest.clone(),
                            contract: plugin.identity.contract.clone(),
                            nodes: nodes.iter().map(|n| n.name.clone()).collect(),
                            records: recs,
                        };
                        Ok(Some((record, t.elapsed().as_secs_f64())))
                    }
                    Err(e) => {
                        self.step(&pc.name, Operation::Backup, Status::Failed, e.to_string());
                        Err(e.into())
                    }
                }
            },
        )
        .await;
        if let Some((_, e)) = failed {
            return Err(e);
        }
        let records: Vec<(PluginRecord, f64)> = done.into_iter().flatten().collect();
        Ok(records)
    }
}

impl Planner {
    /// The plan of a backup (see [`Coffer::dry_run`]): the plugins in order, on their nodes,
    /// with every command they would run. Nothing is stored and the repository is not locked.
    pub async fn plan_backup(&self, repo: Repo, opts: &BackupOptions) -> Result<Plan, RunError> {
        let run_id = run_id();
        let run = BackupRun {
            sink: Arc::new(BackupSink {
                writer: None,
                expected: Arc::default(),
                parents: Arc::default(),
                written: Arc::default(),
                repository: repo.location().clone(),
            }),
            undo: Arc::new(UndoStack::new(&run_id, &self.coffer.deployment.source_name)),
            run_id,
        };
        self.coffer.backup_plugins(&run, opts).await?;
        if !self.recorder.has_steps() {
            return Err(nothing_ran());
        }
        let mut plan = self.recorder.plan(Operation::Backup, None);
        plan.unreachable = self.coffer.unreachable.clone();
        Ok(plan)
    }
}

/// A backup in which no plugin had a node to work on.
fn nothing_ran() -> RunError {
    RunError::Config("no plugin ran: no enabled plugin applies to any node".into())
}
