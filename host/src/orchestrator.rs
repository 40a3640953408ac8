//! Runs an operation across the deployment's plugins and nodes: a backup that is either a whole
//! snapshot or nothing, a restore from a snapshot, a validation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::capabilities::{OperationEnv, SnapshotSource};
use crate::deployment::{Deployment, Grant, PluginConfig};
use crate::dry_run::{DryRun, Plan, Step};
use crate::registry::Registry;
use crate::report::{Event, Reporter};
use crate::repository::RepoLocation;
use crate::repository::{
    ArtifactRecord, ArtifactWriter, CofferSnapshot, MANIFEST_FORMAT, Manifest, PluginRecord, Repo,
    RepoError,
};
use crate::resume::{RestoreJournal, ResumeError};
use crate::runtime::{CallContext, LoadedPlugin, PluginFault, PluginOrigin, Runtime};
use crate::transport::NodeHandle;
use crate::undo::UndoStack;
use coffer_sdk::capability::CapabilityMatcher;
use tokio_util::sync::CancellationToken;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] RepoError),
    /// A plugin failed.
    #[error(transparent)]
    Plugin(#[from] PluginFault),
    /// The deployment and the installed plugins or the snapshot do not fit together.
    #[error("{0}")]
    Config(String),
    /// Ctrl-C.
    #[error("interrupted; nothing of this run was kept as a snapshot")]
    Interrupted,
}

/// Extra settings from the command line, per plugin.
pub type Overrides = BTreeMap<String, Vec<(String, String)>>;

/// What one plugin did in a run.
#[derive(Clone, Debug, Serialize)]
pub struct PluginRun {
    /// Plugin.
    pub plugin: String,
    /// Nodes it worked on.
    pub nodes: Vec<String>,
    /// Bytes it stored (backup) or wrote back from the snapshot (restore).
    pub bytes: u64,
    /// Seconds it took.
    pub seconds: f64,
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
}

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
    pub checks: Vec<CheckResult>,
    /// Seconds it took.
    pub seconds: f64,
}

impl RestoreSummary {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// One check a plugin's validation made.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// Plugin.
    pub plugin: String,
    /// Node.
    pub node: String,
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
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
}

/// A deployment with its plugins, ready to run operations.
pub struct Coffer {
    /// The engine.
    pub runtime: Runtime,
    /// The deployment.
    pub deployment: Deployment,
    /// Installed plugins.
    pub registry: Registry,
    /// The deployment's nodes, reached.
    pub nodes: Vec<NodeHandle>,
    reporter: Arc<dyn Reporter>,
    interrupt: Option<CancellationToken>,
    filter: NodeFilter,
    /// Set by [`Coffer::dry_run`]: nothing that changes state runs.
    dry: Option<Arc<DryRun>>,
}

/// Which nodes a run acts on: all, or those named or carrying one of the roles.
#[derive(Clone, Debug, Default)]
pub struct NodeFilter {
    /// Only these nodes (empty: no limit by name).
    pub nodes: Vec<String>,
    /// Only nodes with one of these roles (empty: no limit by role).
    pub roles: Vec<String>,
}

impl NodeFilter {
    /// Whether `node` is in the run.
    pub fn admits(&self, node: &NodeHandle) -> bool {
        (self.nodes.is_empty() || self.nodes.contains(&node.name))
            && (self.roles.is_empty() || node.roles.iter().any(|r| self.roles.contains(r)))
    }
}

/// A journal problem, as a run error (exit 2: how coffer was called).
fn config(e: ResumeError) -> RunError {
    RunError::Config(e.to_string())
}

fn run_id() -> String {
    format!(
        "{}-{}",
        jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ"),
        std::process::id()
    )
}

impl Coffer {
    /// Stop a run when `token` is cancelled (also if it already is when the run starts)
    /// instead of on Ctrl-C.
    pub fn with_interrupt(mut self, token: CancellationToken) -> Self {
        self.interrupt = Some(token);
        self
    }

    /// Make every later run a dry run: plugins are called with `dry-run` set, only commands
    /// they declare `reads` run, and everything else (commands that change state, artifacts
    /// stored or extracted, reversals) is recorded for [`Coffer::plan_backup`] and
    /// [`Coffer::plan_restore`]. No repository, journal or node is changed.
    pub fn dry_run(mut self) -> Self {
        self.dry = Some(Arc::new(DryRun::default()));
        self
    }

    /// In a dry run, record `plugin`'s `operation` on `nodes` for the plan, and say whether to
    /// call it: a plugin built against contract 1.x cannot mark what only reads, so it is
    /// listed, not called.
    fn plan_step(
        &self,
        plugin: &LoadedPlugin,
        operation: &str,
        nodes: &[NodeHandle],
        detail: &str,
    ) -> bool {
        let Some(dry) = &self.dry else {
            return true;
        };
        let called = !plugin.adapted();
        dry.step(Step {
            plugin: plugin.identity.name.clone(),
            operation: operation.into(),
            nodes: nodes.iter().map(|n| n.name.clone()).collect(),
            called,
            note: if called {
                detail.into()
            } else {
                format!(
                    "not called: built against contract {}, which cannot mark the commands that                      only read, so its commands are not known before it runs",
                    plugin.identity.contract
                )
            },
        });
        called
    }

    /// Whether `node` is in this run (see [`Coffer::restrict`]).
    pub fn admits(&self, node: &NodeHandle) -> bool {
        self.filter.admits(node)
    }

    /// Act only on the nodes `filter` admits; unknown node names and roles are errors.
    pub fn restrict(mut self, filter: NodeFilter) -> Result<Self, RunError> {
        for n in &filter.nodes {
            if !self.nodes.iter().any(|x| &x.name == n) {
                return Err(RunError::Config(format!(
                    "no node `{n}` in deployment {}",
                    self.deployment.source_name
                )));
            }
        }
        for r in &filter.roles {
            if !self.nodes.iter().any(|x| x.roles.contains(r)) {
                return Err(RunError::Config(format!(
                    "no node carries role `{r}` in deployment {}",
                    self.deployment.source_name
                )));
            }
        }
        self.filter = filter;
        Ok(self)
    }

    /// Completes when the run must stop: the interrupt token, else Ctrl-C.
    async fn interrupted(&self) {
        match &self.interrupt {
            Some(t) => t.cancelled().await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }

    /// Check that every enabled plugin is installed and every setting is one it accepts.
    /// `nodes` are the deployment's nodes, connected (see [`Deployment::connect`]).
    pub fn new(
        runtime: Runtime,
        deployment: Deployment,
        registry: Registry,
        nodes: Vec<NodeHandle>,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Self, RunError> {
        let mut problems = Vec::new();
        for pc in &deployment.plugins {
            let at = pc.line.map(|l| format!("line {l}: ")).unwrap_or_default();
            let Some(p) = registry.get(&pc.name) else {
                let why = registry
                    .broken
                    .iter()
                    .map(|b| format!("\n    ({b})"))
                    .collect::<String>();
                problems.push(format!(
                    "{at}plugin `{}` is not installed (installed: {}){why}",
                    pc.name,
                    registry.names().join(", ")
                ));
                continue;
            };
            for (key, _) in &pc.settings {
                if !p.info.settings.iter().any(|s| &s.key == key) {
                    let line = pc
                        .setting_lines
                        .get(key)
                        .map(|l| format!("line {l}: "))
                        .unwrap_or_default();
                    problems.push(format!(
                        "{line}plugin `{}` has no setting `{key}` (it accepts: {})",
                        pc.name,
                        p.info
                            .settings
                            .iter()
                            .map(|s| s.key.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(RunError::Config(format!(
                "deployment {} does not fit the installed plugins:\n  {}",
                deployment.source_name,
                problems.join("\n  ")
            )));
        }
        let enabled: Vec<String> = deployment.plugins.iter().map(|p| p.name.clone()).collect();
        plan_order(&enabled, |n| registry.get(n).map(|p| &p.info)).map_err(RunError::Config)?;
        Ok(Self {
            runtime,
            deployment,
            registry,
            nodes,
            reporter,
            interrupt: None,
            filter: NodeFilter::default(),
            dry: None,
        })
    }

    /// The nodes `pc` acts on: those carrying one of its roles (all nodes when none).
    fn nodes_for(&self, pc: &PluginConfig, plugin: &LoadedPlugin) -> Vec<NodeHandle> {
        let roles = pc
            .roles
            .clone()
            .unwrap_or_else(|| plugin.info.roles.clone());
        self.nodes
            .iter()
            .filter(|n| roles.is_empty() || n.roles.iter().any(|r| roles.contains(r)))
            .filter(|n| self.filter.admits(n))
            .cloned()
            .collect()
    }

    fn env(&self, plugin: &LoadedPlugin, nodes: &[NodeHandle], run_id: &str) -> OperationEnv {
        let mut env = self.runtime.env(
            plugin,
            nodes.iter().map(|n| (n.name.clone(), n.clone())).collect(),
            run_id.into(),
        );
        env.reporter = self.reporter.clone();
        env.dry_run = self.dry.clone();
        env.grant = self.grant_of(plugin).map(|g| {
            nodes
                .iter()
                .map(|n| {
                    let caps = g.on(&n.roles);
                    let m = CapabilityMatcher::new(&caps)
                        .expect("grants are validated when the file is read");
                    (n.name.clone(), Arc::new(m))
                })
                .collect()
        });
        if let Some(p) = self
            .deployment
            .plugins
            .iter()
            .find(|p| p.name == plugin.identity.name)
        {
            env.container = p.container.clone();
            env.limits = p.limits.commands.clone();
            env.call = p.limits.clone();
        }
        env
    }

    /// The run failed: run the reversals plugins registered, newest first, each reported.
    async fn unwind(&self, undo: &UndoStack) {
        if undo.pending().is_empty() {
            return;
        }
        if let Err(e) = undo.unwind(&self.nodes, self.reporter.as_ref()).await {
            self.reporter.report(Event::Log {
                plugin: "coffer".into(),
                level: "error".into(),
                message: e.to_string(),
            });
        }
    }

    /// The run succeeded: its changes stay; forget their reversals.
    fn keep_changes(&self, undo: &UndoStack) {
        if let Err(e) = undo.discard() {
            self.reporter.report(Event::Log {
                plugin: "coffer".into(),
                level: "warn".into(),
                message: e.to_string(),
            });
        }
    }

    /// How many of `plugin`'s nodes are worked on at once: `[ssh] parallel`, or its
    /// `members-down` when lower.
    fn node_limit(&self, plugin: &str) -> usize {
        let members_down = self
            .deployment
            .plugins
            .iter()
            .find(|p| p.name == plugin)
            .and_then(|p| p.members_down);
        members_down.map_or(self.deployment.ssh_parallel, |m| {
            m.min(self.deployment.ssh_parallel)
        })
    }

    /// Make `calls` (one per node for a node-scoped operation, else one) of `plugin`, at most
    /// [`Coffer::node_limit`] at a time; the first failure stops the others.
    async fn fan_out<T, Fut>(
        &self,
        plugin: &str,
        calls: Vec<CallContext>,
        call: impl Fn(CallContext) -> Fut,
    ) -> Result<Vec<T>, PluginFault>
    where
        Fut: std::future::Future<Output = Result<T, PluginFault>>,
    {
        use futures::{StreamExt as _, TryStreamExt as _};
        futures::stream::iter(calls)
            .map(call)
            .buffer_unordered(self.node_limit(plugin))
            .try_collect()
            .await
    }

    fn fan_detail(&self, plugin: &str, calls: &[CallContext]) -> String {
        if calls.len() > 1 {
            format!(
                "one call per node on {} nodes, {} at a time",
                calls.len(),
                self.node_limit(plugin).min(calls.len())
            )
        } else {
            String::new()
        }
    }

    /// The second key: what the deployment grants `plugin`. `None` grants all it declares.
    pub fn grant_of(&self, plugin: &LoadedPlugin) -> Option<Grant> {
        grant_of(&self.deployment, plugin)
    }

    fn step(&self, plugin: &str, operation: &str, status: &str, detail: String) {
        self.reporter.report(Event::Step {
            plugin: plugin.into(),
            operation: operation.into(),
            status: status.into(),
            detail,
        });
    }

    /// Back up every enabled plugin (or only `only`) into `repo`. Either the whole snapshot is
    /// written, or nothing of this run stays in the repository.
    pub async fn backup(
        &self,
        repo: Repo,
        only: &[String],
        overrides: &Overrides,
    ) -> Result<BackupSummary, RunError> {
        let started = Instant::now();
        let started_at = jiff::Timestamp::now();
        let _lock = repo.lock().await?;
        let location = repo.location().clone();
        let (start, repo) = blocking(move || (repo.prepare_backup(), repo)).await;
        let start = start?;
        let removed_orphans = start.removed_orphans;
        // What each artifact weighed last time: the progress shown is measured against it.
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
        let expected = Arc::new(expected);
        let writer = Arc::new(blocking(move || repo.into_writer()).await?);
        let run_id = run_id();
        let written = Arc::new(Mutex::new(Vec::new()));
        let undo = Arc::new(UndoStack::new(&run_id, &self.deployment.source_name));
        let work = self.backup_plugins(
            Some(&writer),
            &expected,
            &written,
            &undo,
            &run_id,
            &location,
            only,
            overrides,
        );
        let outcome = tokio::select! {
            r = work => r,
            _ = self.interrupted() => Err(RunError::Interrupted),
        };
        let (plugins, seconds): (Vec<PluginRecord>, Vec<f64>) = match outcome {
            Ok(p) => p.into_iter().unzip(),
            Err(e) => {
                let ids: Vec<String> = written
                    .lock()
                    .expect("written lock")
                    .iter()
                    .map(|a| a.snapshot.clone())
                    .collect();
                let w = writer.clone();
                // Nothing of a failed run is kept; if this fails too, the next backup removes it.
                let _ = blocking(move || w.discard(&ids)).await;
                self.unwind(&undo).await;
                return Err(e);
            }
        };
        self.keep_changes(&undo);
        let artifacts = written.lock().expect("written lock").clone();
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
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn backup_plugins(
        &self,
        writer: Option<&Arc<ArtifactWriter>>,
        expected: &Arc<BTreeMap<String, u64>>,
        written: &Arc<Mutex<Vec<ArtifactRecord>>>,
        undo: &Arc<UndoStack>,
        run_id: &str,
        location: &RepoLocation,
        only: &[String],
        overrides: &Overrides,
    ) -> Result<Vec<(PluginRecord, f64)>, RunError> {
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
                if nodes.is_empty() {
                    self.step(
                        &pc.name,
                        "backup",
                        "skipped",
                        "no node carries its roles".into(),
                    );
                    return Ok(None);
                }
                let mut settings = pc.settings.clone();
                settings.extend(overrides.get(&pc.name).cloned().unwrap_or_default());
                let ctx = CallContext {
                    deployment: self.deployment.name.clone(),
                    run_id: run_id.into(),
                    nodes: nodes.clone(),
                    settings,
                    dry_run: self.dry.is_some(),
                    ..CallContext::default()
                };
                let calls = ctx.split(plugin.info.node_scoped.backup);
                let detail = self.fan_detail(&pc.name, &calls);
                if !self.plan_step(plugin, "backup", &nodes, &detail) {
                    return Ok(None);
                }
                self.step(&pc.name, "backup", "started", detail);
                let t = Instant::now();
                let result = self
                    .fan_out(&pc.name, calls, |ctx| {
                        let mut env = self.env(plugin, &ctx.nodes, run_id);
                        env.writer = writer.cloned();
                        env.expected = expected.clone();
                        env.written = written.clone();
                        env.repository = Some(location.clone());
                        env.undo = Some(undo.clone());
                        async move { self.runtime.backup(plugin, env, &ctx).await }
                    })
                    .await
                    .map(|per_call| per_call.concat());
                match result {
                    Ok(recs) => {
                        self.step(&pc.name, "backup", "ok", String::new());
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
                        self.step(&pc.name, "backup", "failed", e.to_string());
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
        if records.is_empty() && !self.dry.as_ref().is_some_and(|d| d.has_steps()) {
            return Err(RunError::Config(
                "no plugin ran: no enabled plugin applies to any node".into(),
            ));
        }
        Ok(records)
    }

    /// The plan of a backup (see [`Coffer::dry_run`]): the plugins in order, on their nodes,
    /// with every command they would run. Nothing is stored and the repository is not locked.
    pub async fn plan_backup(
        &self,
        repo: Repo,
        only: &[String],
        overrides: &Overrides,
    ) -> Result<Plan, RunError> {
        let dry = self.dry.clone().expect("plan_backup needs Coffer::dry_run");
        let run_id = run_id();
        let undo = Arc::new(UndoStack::new(&run_id, &self.deployment.source_name));
        self.backup_plugins(
            None,
            &Arc::default(),
            &Arc::new(Mutex::new(Vec::new())),
            &undo,
            &run_id,
            repo.location(),
            only,
            overrides,
        )
        .await?;
        Ok(dry.plan("backup", None))
    }

    /// The plan of a restore of snapshot `spec` (see [`Coffer::dry_run`]). Every artifact the
    /// restore would write back is read and verified; nothing is written, no journal is kept,
    /// and the validation that follows a restore is not run.
    pub async fn plan_restore(
        &self,
        repo: Repo,
        spec: &str,
        opts: &RestoreOptions,
    ) -> Result<Plan, RunError> {
        let dry = self
            .dry
            .clone()
            .expect("plan_restore needs Coffer::dry_run");
        let opts = RestoreOptions {
            validate: false,
            ..opts.clone()
        };
        let s = self.run_snapshot(repo, spec, &opts, true).await?;
        Ok(dry.plan("restore", Some(s.snapshot)))
    }

    /// Open a snapshot for restore or validate.
    async fn source(
        &self,
        repo: Repo,
        spec: &str,
    ) -> Result<(CofferSnapshot, Arc<SnapshotSource>), RunError> {
        let spec = spec.to_string();
        let (snap, reader) = blocking(move || -> Result<_, RepoError> {
            let snap = repo.find(&spec)?;
            Ok((snap, repo.into_reader()?))
        })
        .await?;
        let source = Arc::new(SnapshotSource {
            manifest: snap.manifest.clone(),
            reader: Arc::new(reader),
        });
        Ok((snap, source))
    }

    /// The call context of `record`'s plugin for a snapshot.
    fn snapshot_context(
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
        if plugin.identity.digest != record.digest {
            self.reporter.report(Event::Log {
                plugin: record.name.clone(),
                level: "warn".into(),
                message: format!(
                    "snapshot was written by {} {} (sha256 {}); restoring with {} (sha256 {})",
                    record.name,
                    record.version,
                    &record.digest[..12.min(record.digest.len())],
                    plugin.identity.version,
                    &plugin.identity.digest[..12]
                ),
            });
        }
        let mut nodes = Vec::new();
        for name in &record.nodes {
            let node = self
                .nodes
                .iter()
                .find(|n| &n.name == name)
                .ok_or_else(|| {
                    RunError::Config(format!(
                        "snapshot has data of plugin `{}` from node `{name}`, which is not in deployment {}",
                        record.name, self.deployment.source_name
                    ))
                })?;
            if self.filter.admits(node) {
                nodes.push(node.clone());
            }
        }
        let settings = self
            .deployment
            .plugins
            .iter()
            .find(|p| p.name == record.name)
            .map(|p| p.settings.clone())
            .unwrap_or_default();
        let artifacts = manifest
            .artifacts
            .iter()
            .filter(|a| a.plugin == record.name && nodes.iter().any(|n| n.name == a.node))
            .cloned()
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
                dry_run: self.dry.is_some(),
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
        self.run_snapshot(repo, spec, opts, true).await
    }

    /// Validate the deployment against snapshot `spec`.
    pub async fn validate(
        &self,
        repo: Repo,
        spec: &str,
        opts: &RestoreOptions,
    ) -> Result<RestoreSummary, RunError> {
        let opts = RestoreOptions {
            validate: true,
            ..opts.clone()
        };
        self.run_snapshot(repo, spec, &opts, false).await
    }

    /// Restore (when `restore`) and then validate (when `opts.validate`) from a snapshot.
    async fn run_snapshot(
        &self,
        repo: Repo,
        spec: &str,
        opts: &RestoreOptions,
        restore: bool,
    ) -> Result<RestoreSummary, RunError> {
        let started = Instant::now();
        let name = &self.deployment.source_name;
        let resumed = match opts.resume.as_deref().filter(|_| restore) {
            Some(run) => Some(RestoreJournal::resume(run, name).map_err(config)?),
            None => None,
        };
        let spec = resumed.as_ref().map_or(spec, |j| j.snapshot.as_str());
        let (snap, source) = self.source(repo, spec).await?;
        let records = self.selected(&snap.manifest, &opts.plugins)?;
        // One id for this run's undo journal and, unless it resumes another, its restore journal.
        let run = run_id();
        let journal = resumed.unwrap_or_else(|| RestoreJournal::new(&run, name, &snap.id));
        // Every plugin must be able to read what its version in the snapshot wrote, before
        // anything runs.
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
                        crate::runtime::release_series(written)
                    ),
                }
                .into());
            }
        }
        let undo = Arc::new(UndoStack::new(&run, &self.deployment.source_name));
        // A dry run keeps no journal.
        let keep_journal = restore && self.dry.is_none();
        if keep_journal {
            journal.save().map_err(config)?;
        }
        let names: Vec<String> = if restore {
            records.iter().map(|r| r.name.clone()).collect()
        } else {
            Vec::new()
        };
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
                        self.step(&name, "restore", "skipped", detail);
                        return Ok(Some((name, None)));
                    }
                }
                let (plugin, ctx) = self.snapshot_context(record, manifest, opts)?;
                if ctx.nodes.is_empty() {
                    return Ok(None);
                }
                let (t, bytes) = (Instant::now(), ctx.artifacts.iter().map(|a| a.size).sum());
                let nodes = ctx.nodes.iter().map(|n| n.name.clone()).collect();
                let calls = ctx.split(plugin.info.node_scoped.restore);
                let detail = self.fan_detail(&name, &calls);
                if !self.plan_step(plugin, "restore", &ctx.nodes, &detail) {
                    return Ok(None);
                }
                if keep_journal {
                    let mut j = journal_ref.lock().unwrap_or_else(|e| e.into_inner());
                    j.started.push(name.clone());
                    j.save().map_err(config)?;
                }
                self.step(&name, "restore", "started", detail);
                let result = self
                    .fan_out(&name, calls, |ctx| {
                        let mut env = self.env(plugin, &ctx.nodes, &ctx.run_id);
                        env.source = Some(source_ref.clone());
                        env.undo = Some(undo_ref.clone());
                        async move { self.runtime.restore(plugin, env, &ctx).await }
                    })
                    .await;
                if let Err(e) = result {
                    self.step(&name, "restore", "failed", e.to_string());
                    return Err(e.into());
                }
                self.step(&name, "restore", "ok", String::new());
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
                    level: "warn".into(),
                    message: format!(
                        "restored so far: {}; once the cause is fixed, `coffer restore \
                         --resume {}` continues from {}",
                        if journal.done.is_empty() {
                            "nothing".to_string()
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

    /// The snapshot's plugin records (only `only` when given), in plan order.
    fn selected(
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
        for name in only {
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

    async fn validate_records(
        &self,
        records: &[PluginRecord],
        manifest: &Manifest,
        source: &Arc<SnapshotSource>,
        opts: &RestoreOptions,
    ) -> Result<Vec<CheckResult>, RunError> {
        let mut checks = Vec::new();
        for record in records {
            let (plugin, ctx) = self.snapshot_context(record, manifest, opts)?;
            if !plugin.info.operations.validate || ctx.nodes.is_empty() {
                continue;
            }
            let calls = ctx.split(plugin.info.node_scoped.validate);
            self.step(
                &record.name,
                "validate",
                "started",
                self.fan_detail(&record.name, &calls),
            );
            let result = self
                .fan_out(&record.name, calls, |ctx| {
                    let mut env = self.env(plugin, &ctx.nodes, &ctx.run_id);
                    env.source = Some(source.clone());
                    async move { self.runtime.validate(plugin, env, &ctx).await }
                })
                .await
                .map(|per_call| per_call.concat());
            match result {
                Ok(found) => {
                    let failed = found.iter().filter(|c| !c.ok).count();
                    self.step(
                        &record.name,
                        "validate",
                        if failed == 0 { "ok" } else { "failed" },
                        format!("{} check(s), {failed} failed", found.len()),
                    );
                    for c in found {
                        self.reporter.report(Event::Check {
                            plugin: record.name.clone(),
                            node: c.node.clone(),
                            name: c.name.clone(),
                            ok: c.ok,
                            detail: c.detail.clone(),
                        });
                        checks.push(CheckResult {
                            plugin: record.name.clone(),
                            node: c.node,
                            name: c.name,
                            ok: c.ok,
                            detail: c.detail,
                        });
                    }
                }
                Err(e) => {
                    self.step(&record.name, "validate", "failed", e.to_string());
                    return Err(e.into());
                }
            }
        }
        Ok(checks)
    }
}

/// Order `names` so that each plugin runs after those it names in `after` and before those it
/// names in `before` (relations to plugins outside `names` are ignored); otherwise the given
/// order is kept. A cycle is an error that names it.
pub fn plan_order<'a>(
    names: &[String],
    info: impl Fn(&str) -> Option<&'a coffer_sdk::PluginInfo>,
) -> Result<Vec<String>, String> {
    // edges[a] contains b: a must run before b.
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in names {
        let Some(i) = info(n) else { continue };
        for a in i.after.iter().filter(|a| names.contains(a)) {
            edges.entry(a.as_str()).or_default().push(n.as_str());
        }
        for b in i.before.iter().filter(|b| names.contains(b)) {
            edges.entry(n.as_str()).or_default().push(b.as_str());
        }
    }
    let mut incoming: BTreeMap<&str, usize> = names.iter().map(|n| (n.as_str(), 0)).collect();
    for targets in edges.values() {
        for t in targets {
            *incoming.get_mut(t).expect("a target is a name") += 1;
        }
    }
    let mut order = Vec::new();
    let mut left: Vec<&str> = names.iter().map(String::as_str).collect();
    while !left.is_empty() {
        let Some(pos) = left.iter().position(|n| incoming[n] == 0) else {
            // Every plugin left waits for another: follow one chain to show the cycle.
            let mut chain = vec![left[0]];
            loop {
                let last = *chain.last().expect("non-empty");
                let next = left
                    .iter()
                    .find(|c| edges.get(*c).is_some_and(|t| t.contains(&last)))
                    .copied()
                    .expect("a waiting plugin waits for one that is left");
                if let Some(i) = chain.iter().position(|c| *c == next) {
                    let mut cycle: Vec<&str> = chain[i..].to_vec();
                    cycle.reverse();
                    cycle.push(cycle[0]);
                    return Err(format!(
                        "the plugins' before/after relations form a cycle: {}",
                        cycle.join(" -> ")
                    ));
                }
                chain.push(next);
            }
        };
        let n = left.remove(pos);
        for t in edges.get(n).into_iter().flatten() {
            *incoming.get_mut(t).expect("a target is a name") -= 1;
        }
        order.push(n.to_string());
    }
    Ok(order)
}

/// For each of `names`, the plugins among `names` that must finish before it starts (its
/// `after`, and those naming it in their `before`).
pub fn plan_waits<'a>(
    names: &[String],
    info: impl Fn(&str) -> Option<&'a coffer_sdk::PluginInfo>,
) -> BTreeMap<String, Vec<String>> {
    let mut waits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in names {
        let Some(i) = info(n) else { continue };
        for a in i.after.iter().filter(|a| names.contains(a)) {
            waits.entry(n.clone()).or_default().push(a.clone());
        }
        for b in i.before.iter().filter(|b| names.contains(b)) {
            waits.entry(b.clone()).or_default().push(n.clone());
        }
    }
    waits
}

/// Run `step` for every plugin of `order` (a plan order) as soon as the plugins it waits for
/// have finished, at most `limit` at once, in plan order when several are ready. After a
/// failure nothing new starts and the running steps finish. Returns the results in plan order
/// and the first failure with its plugin.
pub async fn run_plan<T, Fut>(
    order: &[String],
    waits: &BTreeMap<String, Vec<String>>,
    limit: usize,
    step: impl Fn(String) -> Fut,
) -> (Vec<T>, Option<(String, RunError)>)
where
    Fut: std::future::Future<Output = Result<T, RunError>>,
{
    use futures::StreamExt as _;
    let mut running = futures::stream::FuturesUnordered::new();
    let mut started = vec![false; order.len()];
    let mut finished: Vec<&str> = Vec::new();
    let mut results = Vec::new();
    let mut failure = None;
    loop {
        if failure.is_none() {
            for (i, name) in order.iter().enumerate() {
                if running.len() >= limit.max(1) {
                    break;
                }
                let ready = waits
                    .get(name)
                    .is_none_or(|w| w.iter().all(|d| finished.contains(&d.as_str())));
                if !started[i] && ready {
                    started[i] = true;
                    let work = step(name.clone());
                    running.push(async move { (i, work.await) });
                }
            }
        }
        let Some((i, result)) = running.next().await else {
            break;
        };
        finished.push(&order[i]);
        match result {
            Ok(t) => results.push((i, t)),
            Err(e) => {
                failure.get_or_insert((order[i].clone(), e));
            }
        }
    }
    results.sort_by_key(|(i, _)| *i);
    (results.into_iter().map(|(_, t)| t).collect(), failure)
}

/// What `deployment` grants `plugin`: its `[plugin.NAME.grant]` section if there is one;
/// otherwise everything it declares for a built-in plugin and nothing for a plugin from the
/// plugin directory. `None` means everything declared.
pub fn grant_of(deployment: &Deployment, plugin: &LoadedPlugin) -> Option<Grant> {
    let explicit = deployment
        .plugins
        .iter()
        .find(|p| p.name == plugin.identity.name)
        .and_then(|p| p.grant.clone());
    match (explicit, &plugin.origin) {
        (Some(grant), _) => Some(grant),
        (None, PluginOrigin::Builtin) => None,
        (None, PluginOrigin::File(_)) => Some(Grant::default()),
    }
}

/// Run blocking repository work off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}

/// Time as the summary shows it.
pub fn human_duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        let whole = seconds as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use coffer_sdk::PluginInfo;

    fn infos() -> Vec<PluginInfo> {
        vec![
            PluginInfo::new("filesystem", "1", ""),
            PluginInfo::new("galera", "1", "").after(&["pacemaker", "filesystem"]),
            PluginInfo::new("pacemaker", "1", "").after(&["filesystem"]),
            PluginInfo::new("redis", "1", "").before(&["filesystem"]),
        ]
    }

    fn order(names: &[&str], infos: &[PluginInfo]) -> Result<Vec<String>, String> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        plan_order(&names, |n| infos.iter().find(|i| i.name == n))
    }

    #[test]
    fn before_and_after_are_honoured_and_the_rest_keeps_its_order() {
        let i = infos();
        assert_eq!(
            order(&["filesystem", "galera", "pacemaker", "redis"], &i).unwrap(),
            ["redis", "filesystem", "pacemaker", "galera"]
        );
        // A relation to a plugin outside the run is ignored.
        assert_eq!(
            order(&["galera", "pacemaker"], &i).unwrap(),
            ["pacemaker", "galera"]
        );
    }

    #[test]
    fn a_cycle_is_named() {
        let mut i = infos();
        i[0] = PluginInfo::new("filesystem", "1", "").after(&["galera"]);
        let e = order(&["filesystem", "galera", "pacemaker"], &i).unwrap_err();
        assert!(
            e.contains("cycle") && e.contains("galera") && e.contains("filesystem"),
            "{e}"
        );
    }
}
