//! A restore from a snapshot, recorded in its resumable progress file, followed by a
//! validation unless told not to.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use coffer_repository::{
    ArtifactReader, ArtifactRecord, ArtifactScope, CofferSnapshot, Manifest, PluginRecord, Repo,
    RepoError,
};
use coffer_runtime::capabilities::{Phase, SnapshotSource};
use coffer_runtime::dry_run::Plan;
use coffer_runtime::report::{Event, Level, Operation, Status};
use coffer_runtime::undo::UndoStack;
use coffer_runtime::{CallContext, LoadedPlugin, PluginFault};
use coffer_transport::NodeHandle;

use super::plan::{plan_order, plan_waits, run_plan};
use super::{Coffer, Planner, PluginRun, RunError, blocking, config, run_id};
use crate::resume::RestoreProgress;
use coffer_runtime::report::PluginCheck;

/// What a restore or a validation did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreSummary {
    /// The snapshot.
    pub snapshot: String,
    /// Plugins restored (empty for a validation alone), with those a resumed run had done.
    pub restored: Vec<String>,
    /// Each plugin this run restored, in plan order.
    pub plugins: Vec<PluginRun>,
    /// Checks made.
    pub checks: Vec<PluginCheck>,
    /// Seconds it took.
    pub seconds: f64,
}

impl RestoreSummary {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.check.ok)
    }
}

/// What to restore.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Restore under this directory instead of in place.
    pub target_root: Option<String>,
    /// Only these paths.
    pub selection: Vec<String>,
    /// Only these plugins (empty: all in the snapshot).
    pub plugins: Vec<String>,
    /// Validate afterwards.
    pub validate: bool,
    /// Continue this failed restore run (its journal names the snapshot and what is done).
    pub resume: Option<String>,
    /// Replacement nodes: what the snapshot recorded for the first node of each pair is
    /// restored onto the second (`--map controller-0=controller-3`).
    pub map: Vec<(String, String)>,
    /// Make each restored path set exactly the snapshot (`--delete`): remove what is under
    /// its paths and not in it (what the backup left out stays).
    pub delete: bool,
}

impl Planner {
    /// The plan of a restore of snapshot `spec` (see [`Coffer::dry_run`]). Every artifact the
    /// restore would write back is read and verified; nothing is written, no progress file is
    /// kept, and the validation that follows a restore is not run.
    pub async fn plan_restore(
        &self,
        repo: Repo,
        spec: &str,
        opts: &RestoreOptions,
    ) -> Result<Plan, RunError> {
        let opts = RestoreOptions {
            validate: false,
            ..opts.clone()
        };
        let s = self.coffer.restore(repo, spec, &opts).await?;
        let mut plan = self.recorder.plan(Operation::Restore, Some(s.snapshot));
        plan.unreachable = self.coffer.unreachable.clone();
        Ok(plan)
    }
}

impl Coffer {
    /// Find snapshot `spec` and a reader of its artifacts.
    async fn find(
        &self,
        repo: Repo,
        spec: &str,
    ) -> Result<(CofferSnapshot, ArtifactReader), RunError> {
        let spec = spec.to_string();
        Ok(blocking(move || -> Result<_, RepoError> {
            let snap = repo.find(&spec)?;
            Ok((snap, repo.into_reader()?))
        })
        .await?)
    }

    /// The call context of `record`'s plugin for a snapshot.
    pub(super) fn snapshot_context(
        &self,
        record: &PluginRecord,
        manifest: &Manifest,
        opts: &RestoreOptions,
    ) -> Result<(&LoadedPlugin, CallContext), RunError> {
        let plugin = self.registry.get(&record.name).ok_or_else(|| {
            RunError::Config(format!(
                "snapshot needs plugin `{}` {} which is not installed (installed: {})",
                record.name,
                record.version,
                self.registry.names().join(", ")
            ))
        })?;
        // Its artifacts, each with its scope: as recorded, or as the installed plugin declares
        // it (a snapshot written before the plugin declared it).
        let artifacts: Vec<ArtifactRecord> = manifest
            .artifacts
            .iter()
            .filter(|a| a.plugin == record.name)
            .map(|a| {
                let mut a = a.clone();
                if plugin.info.is_cluster_artifact(&a.name) {
                    a.scope = ArtifactScope::Cluster;
                }
                a
            })
            .collect();
        let cluster = artifacts.iter().any(|a| a.scope == ArtifactScope::Cluster);
        // The nodes it acts on, in the deployment's order, among those this run reached and
        // admits: the recorded ones and, when the cluster's state is in the snapshot, every
        // current member (a member that was dead or replaced at backup time rejoins).
        let roles = self.roles_of(&record.name, plugin);
        let nodes: Vec<NodeHandle> = self
            .nodes
            .iter()
            .filter(|n| self.filter.admits(n))
            .filter(|n| {
                record.nodes.contains(&n.name)
                    || (cluster && (roles.is_empty() || n.roles.iter().any(|r| roles.contains(r))))
            })
            .cloned()
            .collect();
        // Recorded nodes the deployment no longer has: said, not refused.
        for gone in record
            .nodes
            .iter()
            .filter(|name| !self.deployment.nodes.iter().any(|n| &n.name == *name))
        {
            let left: Vec<&str> = artifacts
                .iter()
                .filter(|a| &a.node == gone && a.scope == ArtifactScope::Node)
                .map(|a| a.name.as_str())
                .collect();
            let message = if left.is_empty() {
                format!(
                    "the snapshot has data of node `{gone}`, which is not in deployment {}: \
                     only its cluster artifacts, restored through the members taking part",
                    self.deployment.source_name
                )
            } else {
                format!(
                    "the snapshot has data of node `{gone}`, which is not in deployment {}: its \
                     node artifacts ({}) are not restored; add the node back, or restore them \
                     onto another node with `--map {gone}=NODE`",
                    self.deployment.source_name,
                    left.join(", ")
                )
            };
            self.reporter.report(Event::Log {
                plugin: record.name.clone(),
                level: Level::Warn,
                message,
            });
        }
        let settings = self
            .deployment
            .plugins
            .iter()
            .find(|p| p.name == record.name)
            .map(|p| p.settings.clone())
            .unwrap_or_default();
        let artifacts = artifacts
            .into_iter()
            .filter(|a| a.scope == ArtifactScope::Cluster || nodes.iter().any(|n| n.name == a.node))
            .collect();
        Ok((
            plugin,
            CallContext {
                deployment: self.deployment.name.clone(),
                run_id: run_id(),
                nodes,
                settings,
                artifacts,
                records: record.records.clone(),
                target_root: opts.target_root.clone(),
                selection: opts.selection.clone(),
                dry_run: self.is_dry_run(),
            },
        ))
    }

    /// Restore snapshot `spec` (`latest` or an id), then validate unless told not to.
    pub async fn restore(
        &self,
        repo: Repo,
        spec: &str,
        opts: &RestoreOptions,
    ) -> Result<RestoreSummary, RunError> {
        let started = Instant::now();
        let name = &self.deployment.source_name;
        let resumed = match opts.resume.as_deref() {
            Some(run) => Some(RestoreProgress::resume(run, name).map_err(config)?),
            None => None,
        };
        let spec = resumed.as_ref().map_or(spec, |j| j.snapshot.as_str());
        let (snap, source, records) = self.open_snapshot(repo, spec, opts).await?;
        // One id for this run's undo journal and, unless it resumes another, its progress file.
        let run = run_id();
        let journal = resumed.unwrap_or_else(|| RestoreProgress::new(&run, name, &snap.id));
        let undo = Arc::new(UndoStack::new(&run, &self.deployment.source_name));
        // A dry run keeps no progress file.
        let keep_journal = !self.is_dry_run();
        if keep_journal {
            journal.save().map_err(config)?;
        }
        let names: Vec<String> = records.iter().map(|r| r.name.clone()).collect();

        let waits = plan_waits(&names, |n| self.registry.get(n).map(|p| &p.info));
        let journal = Mutex::new(journal);
        let (records_ref, journal_ref, source_ref, undo_ref) = (&records, &journal, &source, &undo);
        let manifest = &snap.manifest;
        let work = run_plan(
            &names,
            &waits,
            self.deployment.parallel_plugins,
            |name| async move {
                let record = records_ref
                    .iter()
                    .find(|r| r.name == name)
                    .expect("a name of the records");
                {
                    let j = journal_ref.lock().unwrap_or_else(|e| e.into_inner());
                    if j.done.contains(&name) {
                        let detail = format!("done in run {}", j.run_id);
                        self.step(&name, Operation::Restore, Status::Skipped, detail);
                        return Ok(Some((name, None)));
                    }
                }
                let (plugin, ctx) = self.snapshot_context(record, manifest, opts)?;
                if ctx.nodes.is_empty() {
                    return Ok(None);
                }
                // Said once, by the restore (a validation reads what any build restores).
                if plugin.identity.digest != record.digest {
                    self.reporter.report(Event::Log {
                        plugin: record.name.clone(),
                        level: Level::Warn,
                        message: format!(
                            "snapshot was written by {} {} (sha256 {}); restoring with {} \
                             (sha256 {})",
                            record.name,
                            record.version,
                            &record.digest[..12.min(record.digest.len())],
                            plugin.identity.version,
                            &plugin.identity.digest[..12]
                        ),
                    });
                }
                let (t, bytes) = (Instant::now(), ctx.artifacts.iter().map(|a| a.size).sum());
                let nodes = ctx.nodes.iter().map(|n| n.name.clone()).collect();
                let calls = ctx.split(plugin.info.node_scoped.restore);
                let detail = self.fan_detail(&name, &calls);
                if !self.plan_step(plugin, Operation::Restore, &ctx.nodes, &detail) {
                    return Ok(None);
                }
                if keep_journal {
                    let mut j = journal_ref.lock().unwrap_or_else(|e| e.into_inner());
                    j.started.push(name.clone());
                    j.save().map_err(config)?;
                }
                self.step(&name, Operation::Restore, Status::Started, detail);
                let result = self
                    .fan_out(&name, calls, |ctx| {
                        let mut env = self.env(plugin, &ctx.nodes, &ctx.run_id);
                        env.phase = Phase::Snapshot(source_ref.clone());
                        env.undo = Some(undo_ref.clone());
                        async move { self.runtime.restore(plugin, env, &ctx).await }
                    })
                    .await;
                if let Err(e) = result {
                    self.step(&name, Operation::Restore, Status::Failed, e.to_string());
                    return Err(e.into());
                }
                self.step(&name, Operation::Restore, Status::Ok, String::new());
                let mut j = journal_ref.lock().unwrap_or_else(|e| e.into_inner());
                j.done.push(name.clone());
                if keep_journal {
                    j.save().map_err(config)?;
                }
                let run = PluginRun {
                    plugin: name.clone(),
                    nodes,
                    bytes,
                    seconds: t.elapsed().as_secs_f64(),
                };
                Ok(Some((name, Some(run))))
            },
        );
        let (restored, failure) = tokio::select! {
            r = work => r,
            _ = self.interrupted() => (Vec::new(), Some((String::new(), RunError::Interrupted))),
        };
        let mut journal = journal.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some((failed, e)) = failure {
            self.unwind(&undo).await;
            let left: Vec<&str> = names
                .iter()
                .filter(|n| !journal.done.contains(n))
                .map(String::as_str)
                .collect();
            // Interrupted: the first plugin not done.
            let failed = if failed.is_empty() {
                left.first().map_or(String::new(), |n| n.to_string())
            } else {
                failed
            };
            journal.failed = Some(failed.clone());
            if keep_journal && journal.save().is_ok() {
                self.reporter.report(Event::Log {
                    plugin: failed,
                    level: Level::Warn,
                    message: format!(
                        "restored so far: {}; once the cause is fixed, `coffer restore \
                         --resume {}` continues from {}",
                        if journal.done.is_empty() {
                            "no plugin completely (what the failed one changed, its error \
                             says)"
                                .to_string()
                        } else {
                            journal.done.join(", ")
                        },
                        journal.run_id,
                        left.join(", ")
                    ),
                });
            }
            return Err(e);
        }
        let (restored, runs): (Vec<String>, Vec<Option<PluginRun>>) =
            restored.into_iter().flatten().unzip();
        if keep_journal {
            journal.failed = None;
            journal.finished = true;
            journal.save().map_err(config)?;
        }
        self.keep_changes(&undo);
        let checks = if opts.validate {
            self.validate_records(&records, &snap.manifest, &source, opts)
                .await?
        } else {
            Vec::new()
        };
        Ok(RestoreSummary {
            snapshot: snap.id,
            restored,
            plugins: runs.into_iter().flatten().collect(),
            checks,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Open snapshot `spec` and take its plugin records (only `only` when given) in plan
    /// order, after checking that every installed plugin can read what its version in the
    /// snapshot wrote: nothing runs when one cannot.
    pub(super) async fn open_snapshot(
        &self,
        repo: Repo,
        spec: &str,
        opts: &RestoreOptions,
    ) -> Result<(CofferSnapshot, Arc<SnapshotSource>, Vec<PluginRecord>), RunError> {
        let (mut snap, reader) = self.find(repo, spec).await?;
        self.remap(&mut snap.manifest, &opts.map)?;
        let source = Arc::new(SnapshotSource {
            manifest: snap.manifest.clone(),
            reader: Arc::new(reader),
            delete: opts.delete,
        });
        let records = self.selected(&snap.manifest, &opts.plugins)?;
        for record in &records {
            if let Some(plugin) = self.registry.get(&record.name)
                && !plugin.can_restore(&record.version)
            {
                let (name, written) = (&record.name, &record.version);
                return Err(PluginFault::Incompatible {
                    plugin: name.clone(),
                    reason: format!(
                        "snapshot {}: its `{name}` artifacts were written by {name} {written}, \
                         but the installed {name} {} restores only versions `{}`; install a \
                         {name} plugin that restores {written} (the {} series does) with \
                         `coffer plugins upgrade {name} PATH`, then restore again",
                        snap.id,
                        plugin.info.version,
                        plugin.restores(),
                        coffer_runtime::release_series(written)
                    ),
                }
                .into());
            }
        }
        Ok((snap, source, records))
    }

    /// Apply `--map FROM=TO` to a snapshot's manifest, in memory: what it recorded for node
    /// FROM (artifacts, the nodes of each plugin, and records naming the node: equal to it, or
    /// starting with it and a tab) is taken as TO's. The artifacts' bytes stay where they are.
    fn remap(&self, manifest: &mut Manifest, map: &[(String, String)]) -> Result<(), RunError> {
        let recorded = |m: &Manifest, node: &str| {
            m.artifacts.iter().any(|a| a.node == node)
                || m.plugins.iter().any(|p| p.nodes.iter().any(|n| n == node))
        };
        for (from, to) in map {
            let problem = if from == to {
                Some(format!("--map {from}={to}: a node cannot replace itself"))
            } else if !self.deployment.nodes.iter().any(|n| &n.name == to) {
                Some(format!(
                    "--map {from}={to}: no node `{to}` in deployment {} (add the new node's \
                     [[node]] section first)",
                    self.deployment.source_name
                ))
            } else if !recorded(manifest, from) {
                Some(format!(
                    "--map {from}={to}: the snapshot has no data of node `{from}`"
                ))
            } else if recorded(manifest, to) {
                Some(format!(
                    "--map {from}={to}: the snapshot already has data of node `{to}`; a node \
                     can take the place of one that has none in the snapshot"
                ))
            } else if map.iter().filter(|(_, t)| t == to).count() > 1 {
                Some(format!("--map: two nodes are mapped onto `{to}`"))
            } else {
                None
            };
            if let Some(p) = problem {
                return Err(RunError::Config(p));
            }
        }
        let rename = |node: &mut String| {
            if let Some((_, to)) = map.iter().find(|(from, _)| from == node) {
                *node = to.clone();
            }
        };
        for a in &mut manifest.artifacts {
            rename(&mut a.node);
        }
        for p in &mut manifest.plugins {
            p.nodes.iter_mut().for_each(rename);
            for (_, value) in &mut p.records {
                for (from, to) in map {
                    if value == from {
                        *value = to.clone();
                    } else if let Some(rest) = value.strip_prefix(&format!("{from}\t")) {
                        *value = format!("{to}\t{rest}");
                    }
                }
            }
        }
        for (from, to) in map {
            self.reporter.report(Event::Log {
                plugin: "coffer".into(),
                level: Level::Info,
                message: format!(
                    "what the snapshot has of node {from} is restored onto {to}; what names \
                     {from} on the other nodes is the deployment tool's to change (Galera's \
                     wsrep_cluster_address; Pacemaker: `pcs cluster node remove {from}`, then \
                     `pcs cluster node add {to}`)"
                ),
            });
        }
        Ok(())
    }

    /// The snapshot's plugin records (only `only` when given), in plan order.
    pub(super) fn selected(
        &self,
        manifest: &Manifest,
        only: &[String],
    ) -> Result<Vec<PluginRecord>, RunError> {
        let records = self.selected_unordered(manifest, only)?;
        let names: Vec<String> = records.iter().map(|r| r.name.clone()).collect();
        let order = plan_order(&names, |n| self.registry.get(n).map(|p| &p.info))
            .map_err(RunError::Config)?;
        Ok(order
            .iter()
            .filter_map(|n| records.iter().find(|r| &r.name == n).cloned())
            .collect())
    }

    fn selected_unordered(
        &self,
        manifest: &Manifest,
        only: &[String],
    ) -> Result<Vec<PluginRecord>, RunError> {
        for name in &manifest.trimmed {
            if only.is_empty() || only.contains(name) {
                tracing::warn!(
                    "plugin {name}: its artifacts were removed from this snapshot by its \
                     retention policy ([retention.plugin.{name}]): not restored from it; a newer \
                     snapshot holds them"
                );
            }
        }
        for name in only {
            if manifest.trimmed.contains(name) {
                return Err(RunError::Config(format!(
                    "plugin `{name}`: its artifacts were removed from this snapshot by its \
                     retention policy ([retention.plugin.{name}]); restore it from a newer \
                     snapshot (see `coffer snapshots`)"
                )));
            }
            if !manifest.plugins.iter().any(|p| &p.name == name) {
                return Err(RunError::Config(format!(
                    "the snapshot has no data of plugin `{name}` (it has: {})",
                    manifest
                        .plugins
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(manifest
            .plugins
            .iter()
            .filter(|p| only.is_empty() || only.contains(&p.name))
            .cloned()
            .collect())
    }
}
