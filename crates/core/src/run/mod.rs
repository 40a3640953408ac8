//! Runs an operation across the deployment's plugins and nodes. [`Coffer`] is the facade: it
//! holds the deployment, the installed plugins and the reached nodes, and what every operation
//! shares (node selection, the call environment, fan-out, unwinding). Each operation lives in
//! its own module: [`plan`] (plugin order and the scheduler), [`backup`], [`restore`] (with
//! its resumable progress) and [`validate`].

pub mod backup;
pub mod drill;
pub mod plan;
pub mod restore;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use coffer_config::deployment::{Deployment, Grant, PluginConfig};
use coffer_repository::RepoError;
use coffer_runtime::capabilities::OperationEnv;
use coffer_runtime::dry_run::{DryRun, Executor, Live, Step, Unreachable};
use coffer_runtime::report::{Event, Level, Operation, Reporter, Status};
use coffer_runtime::undo::UndoStack;
use coffer_runtime::{CallContext, LoadedPlugin, PluginFault, PluginOrigin, Runtime};
use coffer_sdk::capability::CapabilityMatcher;
use coffer_transport::NodeHandle;

use crate::registry::Registry;
use crate::resume::ResumeError;

pub use backup::{BackupOptions, BackupSummary};
pub use coffer_runtime::report::PluginCheck;
pub use drill::{DrillOutcome, DrillResult, DrillSummary};
pub use plan::{plan_order, plan_waits, run_plan};
pub use restore::{RestoreOptions, RestoreSummary};

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
    /// The nodes the run needs could not be reached.
    #[error("{0}")]
    Unreachable(String),
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

/// A deployment with its plugins, ready to run operations.
pub struct Coffer {
    /// The engine.
    pub runtime: Runtime,
    /// The deployment.
    pub deployment: Deployment,
    /// Installed plugins.
    pub registry: Registry,
    /// The nodes this run needs, reached (see [`needed_nodes`]).
    pub nodes: Vec<NodeHandle>,
    reporter: Arc<dyn Reporter>,
    interrupt: Option<CancellationToken>,
    filter: NodeFilter,
    /// Whether what plugins ask for happens ([`Live`]) or is recorded ([`Coffer::dry_run`]).
    executor: Arc<dyn Executor>,
    /// Needed nodes that could not be reached: a dry run plans without them, a backup goes
    /// on without them and records them missing.
    unreachable: Vec<Unreachable>,
}

/// A [`Coffer`] whose runs only record (see [`Coffer::dry_run`]): it can only make plans.
pub struct Planner {
    coffer: Coffer,
    recorder: Arc<DryRun>,
}

impl Planner {
    /// The deployment, plugins and nodes the plans are made for.
    pub fn coffer(&self) -> &Coffer {
        &self.coffer
    }
}

/// Which nodes a run acts on: all, or those named or carrying one of the roles.
#[derive(Clone, Debug, Default)]
pub struct NodeFilter {
    /// Only these nodes (empty: no limit by name).
    pub nodes: Vec<String>,
    /// Only nodes with one of these roles (empty: no limit by role).
    pub roles: Vec<String>,
    /// Never these nodes (those a restore's `--map` replaces), whatever else admits them.
    pub except: Vec<String>,
}

impl NodeFilter {
    /// Whether `node` is in the run.
    pub fn admits(&self, node: &NodeHandle) -> bool {
        self.admits_named(&node.name, &node.roles)
    }

    /// Whether the node `name` with `roles` is in the run.
    pub fn admits_named(&self, name: &str, roles: &[String]) -> bool {
        !self.except.iter().any(|n| n == name)
            && (self.nodes.is_empty() || self.nodes.iter().any(|n| n == name))
            && (self.roles.is_empty() || roles.iter().any(|r| self.roles.contains(r)))
    }

    /// Refuse node names and roles the deployment does not have.
    pub fn check(&self, deployment: &Deployment) -> Result<(), RunError> {
        for n in &self.nodes {
            if !deployment.nodes.iter().any(|x| &x.name == n) {
                return Err(RunError::Config(format!(
                    "no node `{n}` in deployment {}",
                    deployment.source_name
                )));
            }
        }
        for r in &self.roles {
            if !deployment.nodes.iter().any(|x| x.roles.contains(r)) {
                return Err(RunError::Config(format!(
                    "no node carries role `{r}` in deployment {}",
                    deployment.source_name
                )));
            }
        }
        Ok(())
    }
}

/// The nodes a run needs, in the deployment's order: those `filter` admits that carry a role
/// of one of `plugins` (each plugin's roles from the deployment file, else its own; a plugin
/// without roles needs every node). `None`: every node the filter admits (a restore before its
/// snapshot is read). Only these are connected, so a dead node the run does not need cannot
/// stop it.
pub fn needed_nodes(
    deployment: &Deployment,
    registry: &Registry,
    filter: &NodeFilter,
    plugins: Option<&[String]>,
) -> Vec<String> {
    let roles: Option<Vec<Vec<String>>> = plugins.map(|names| {
        names
            .iter()
            .map(|name| {
                deployment
                    .plugins
                    .iter()
                    .find(|p| &p.name == name)
                    .and_then(|p| p.roles.clone())
                    .or_else(|| registry.get(name).map(|p| p.info.roles.clone()))
                    .unwrap_or_default()
            })
            .collect()
    });
    deployment
        .nodes
        .iter()
        .filter(|n| filter.admits_named(&n.name, &n.roles))
        .filter(|n| {
            roles.as_ref().is_none_or(|per_plugin| {
                per_plugin
                    .iter()
                    .any(|r| r.is_empty() || n.roles.iter().any(|x| r.contains(x)))
            })
        })
        .map(|n| n.name.clone())
        .collect()
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
    /// stored or extracted, reversals) is recorded for [`Planner::plan_backup`] and
    /// [`Planner::plan_restore`]. No repository, journal or node is changed.
    pub fn dry_run(mut self) -> Planner {
        let recorder = Arc::new(DryRun::default());
        self.executor = recorder.clone();
        Planner {
            coffer: self,
            recorder,
        }
    }

    /// Whether this is a dry run's facade (see [`Coffer::dry_run`]).
    fn is_dry_run(&self) -> bool {
        self.executor.is_dry_run()
    }

    /// In a dry run, record `plugin`'s `operation` on `nodes` for the plan, and say whether to
    /// call it: a plugin built against contract 1.x cannot mark what only reads, so it is
    /// listed, not called.
    fn plan_step(
        &self,
        plugin: &LoadedPlugin,
        operation: Operation,
        nodes: &[NodeHandle],
        detail: &str,
    ) -> bool {
        if !self.is_dry_run() {
            return true;
        }
        let called = !plugin.adapted();
        self.executor.step(Step {
            plugin: plugin.identity.name.clone(),
            operation,
            nodes: nodes.iter().map(|n| n.name.clone()).collect(),
            called,
            note: if called {
                detail.into()
            } else {
                format!(
                    "not called: built against contract {}, which cannot mark the commands that \
                     only read, so its commands are not known before it runs",
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
        filter.check(&self.deployment)?;
        self.filter = filter;
        Ok(self)
    }

    /// Nodes the run needed but could not reach, with why: a dry run goes on without them and
    /// its plan lists them; a backup goes on without them and records them missing.
    pub fn with_unreachable(mut self, unreachable: Vec<Unreachable>) -> Self {
        self.unreachable = unreachable;
        self
    }

    /// Find each plugin's container given by a glob or a filter (`[plugin.NAME.container]`) on
    /// every reached node it applies to, before anything runs: exactly one running container
    /// must match there; none or several is an error naming the plugin, the node and what runs.
    pub async fn find_containers(mut self) -> Result<Self, RunError> {
        for i in 0..self.deployment.plugins.len() {
            let pc = &self.deployment.plugins[i];
            let (Some(spec), Some(plugin)) = (&pc.container, self.registry.get(&pc.name)) else {
                continue;
            };
            if !spec.is_found() {
                continue;
            }
            let wanted = match &spec.filter {
                Some(f) if spec.name == "*" => format!("filter `{f}`"),
                Some(f) => format!("`{}` with filter `{f}`", spec.name),
                None => format!("`{}`", spec.name),
            };
            let mut found = BTreeMap::new();
            for node in self
                .nodes_for(pc, plugin)
                .iter()
                .filter(|n| spec.applies(&n.roles))
            {
                let argv = spec.list_argv();
                let at = |detail: String| {
                    RunError::Config(format!(
                        "plugin `{}`: finding its container {wanted} on node {}: {detail}",
                        pc.name, node.name
                    ))
                };
                let done = coffer_transport::process::run(
                    node,
                    &argv,
                    Vec::new(),
                    std::time::Duration::from_secs(60),
                    1 << 20,
                )
                .await
                .map_err(|e| at(format!("`{}` failed: {e}", argv.join(" "))))?;
                let listed = String::from_utf8_lossy(&done.stdout).into_owned();
                if done.exit_code != Some(0) {
                    return Err(at(format!(
                        "`{}` exited with {:?}: {}",
                        argv.join(" "),
                        done.exit_code,
                        String::from_utf8_lossy(&done.stderr).trim()
                    )));
                }
                let running: Vec<&str> = listed.lines().filter(|l| !l.is_empty()).collect();
                let matching: Vec<&str> = running
                    .iter()
                    .copied()
                    .filter(|n| coffer_sdk::capability::name_matches(&spec.name, n))
                    .collect();
                match matching[..] {
                    [one] => {
                        found.insert(node.name.clone(), one.to_string());
                    }
                    [] => {
                        return Err(at(format!(
                            "no running container matches (running: {})",
                            if running.is_empty() {
                                "none".to_string()
                            } else {
                                running.join(", ")
                            }
                        )));
                    }
                    _ => {
                        return Err(at(format!(
                            "{} running containers match ({}); make the glob or the filter \
                             pick one",
                            matching.len(),
                            matching.join(", ")
                        )));
                    }
                }
            }
            for (node, name) in &found {
                self.reporter.report(Event::Log {
                    plugin: pc.name.clone(),
                    level: Level::Info,
                    message: format!("{node}: runs in container {name}"),
                });
            }
            if let Some(spec) = self.deployment.plugins[i].container.as_mut() {
                spec.found = found;
            }
        }
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
    /// `nodes` are the nodes the run needs, connected (see [`needed_nodes`] and
    /// [`Deployment::connect_each`]).
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
                // Said once each: every built-in plugin of a mismatched build fails alike.
                let mut why = String::new();
                for line in registry.broken.iter().map(|b| format!("\n    ({b})")) {
                    if !why.contains(&line) {
                        why.push_str(&line);
                    }
                }
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
            executor: Arc::new(Live),
            unreachable: Vec::new(),
        })
    }

    /// The roles of plugin `name`'s nodes: the deployment file's, else its own (empty: all).
    fn roles_of(&self, name: &str, plugin: &LoadedPlugin) -> Vec<String> {
        self.deployment
            .plugins
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.roles.clone())
            .unwrap_or_else(|| plugin.info.roles.clone())
    }

    /// The nodes `pc` acts on: those carrying one of its roles (all nodes when none).
    fn nodes_for(&self, pc: &PluginConfig, plugin: &LoadedPlugin) -> Vec<NodeHandle> {
        let roles = self.roles_of(&pc.name, plugin);
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
        env.executor = self.executor.clone();
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
        self.unwind_on(undo, &self.nodes).await;
    }

    /// [`Self::unwind`] on `nodes` (a drill's node need not be one of the run's).
    async fn unwind_on(&self, undo: &UndoStack, nodes: &[NodeHandle]) {
        if undo.pending().is_empty() {
            return;
        }
        if let Err(e) = undo.unwind(nodes, self.reporter.as_ref()).await {
            self.reporter.report(Event::Log {
                plugin: "coffer".into(),
                level: Level::Error,
                message: e.to_string(),
            });
        }
    }

    /// The run succeeded: its changes stay; forget their reversals.
    fn keep_changes(&self, undo: &UndoStack) {
        if let Err(e) = undo.discard() {
            self.reporter.report(Event::Log {
                plugin: "coffer".into(),
                level: Level::Warn,
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

    fn step(&self, plugin: &str, operation: Operation, status: Status, detail: String) {
        // A dry run changes nothing: what ends well there is planned, not done.
        let status = match status {
            Status::Ok if self.is_dry_run() => Status::Planned,
            other => other,
        };
        self.reporter.report(Event::Step {
            plugin: plugin.into(),
            operation,
            status,
            detail,
        });
    }
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
