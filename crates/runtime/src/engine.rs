//! The wasmtime engine, plugin loading (with the on-disk component cache), and calls into a
//! plugin under its limits: memory, guest CPU time, wall-clock time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A boxed future that borrows for `'a` (what an export call returns).
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

use coffer_sdk::capability::CapabilityMatcher;
use coffer_sdk::{
    Capabilities, Check, CommandPattern, Effect, Operations, PluginError, PluginInfo, SettingSpec,
};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

pub use crate::cache::CompileStats;
use crate::cache::ComponentCache;

use crate::capabilities::{CommandLimits, HostState, OperationEnv, PluginIdentity};
use crate::contract::v2::types;
use crate::contract::{Bound, Exports};
use crate::report::Silent;
use coffer_repository::{ArtifactRecord, ArtifactScope};
use coffer_transport::NodeHandle;

/// The contract version this host serves (`wit/plugin.wit`); 1.x is served through
/// [`crate::contract::v1`].
pub const CONTRACT_VERSION: &str = "2.4.0";
/// The export every plugin provides.
const HANDLER: &str = "coffer:plugin/handler@";
/// How often the epoch advances; the CPU limit is checked at this granularity.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits applied to every plugin call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory per plugin instance.
    pub memory_bytes: usize,
    /// Guest (wasm) time per call, not counting time in host calls.
    pub cpu: Duration,
    /// Wall-clock time per call, host calls included.
    pub call_timeout: Duration,
    /// Commands the plugin runs.
    pub commands: CommandLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            cpu: Duration::from_secs(60),
            call_timeout: Duration::from_secs(24 * 3600),
            commands: CommandLimits {
                default_timeout: Duration::from_secs(3600),
                max_output: 16 << 20,
            },
        }
    }
}

/// Why a plugin could not be loaded or did not complete a call. Every variant names the plugin
/// and the step.
#[derive(Debug, thiserror::Error)]
pub enum PluginFault {
    /// The file is not a usable Coffer plugin.
    #[error("plugin {origin}: {reason}")]
    Invalid {
        /// Where it came from.
        origin: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// It targets a contract version this host does not serve.
    #[error(
        "plugin {origin} targets contract coffer:plugin@{found}; this coffer serves coffer:plugin@{served}: use a plugin built for one of those or a coffer that serves {found}"
    )]
    Contract {
        /// Where it came from.
        origin: String,
        /// Version it targets.
        found: String,
        /// Version served.
        served: String,
    },
    /// The installed plugin cannot restore artifacts written by the version in a snapshot.
    #[error("{reason}")]
    Incompatible {
        /// Plugin name.
        plugin: String,
        /// Which versions wrote and can read, and what to install.
        reason: String,
    },
    /// It used more guest CPU time than allowed.
    #[error(
        "plugin `{plugin}` was stopped in {step}: it ran for more than its CPU limit of {limit:?} (a loop?)"
    )]
    CpuLimit {
        /// Plugin.
        plugin: String,
        /// Step.
        step: String,
        /// The limit.
        limit: Duration,
    },
    /// It tried to grow its memory beyond the cap.
    #[error("plugin `{plugin}` was stopped in {step}: it exceeded its memory limit of {mib} MiB")]
    MemoryLimit {
        /// Plugin.
        plugin: String,
        /// Step.
        step: String,
        /// The limit.
        mib: usize,
    },
    /// The call did not finish in time.
    #[error("plugin `{plugin}` did not finish {step} within {limit:?}")]
    Timeout {
        /// Plugin.
        plugin: String,
        /// Step.
        step: String,
        /// The limit.
        limit: Duration,
    },
    /// It trapped (a panic, an invalid operation).
    #[error("plugin `{plugin}` crashed in {step}: {message}")]
    Trap {
        /// Plugin.
        plugin: String,
        /// Step.
        step: String,
        /// What wasmtime reported.
        message: String,
    },
    /// A node was lost (its connection broke) while the plugin worked on it.
    #[error("node `{node}` was lost during plugin `{plugin}`'s {step}: {detail}")]
    NodeLost {
        /// Plugin.
        plugin: String,
        /// Step.
        step: String,
        /// Node.
        node: String,
        /// What the transport said, and what the plugin then reported.
        detail: String,
    },
    /// A command the plugin ran on a node passed its timeout and was killed.
    #[error("plugin `{plugin}` timed out in {step} on node `{node}`: {detail}")]
    CommandTimedOut {
        /// Plugin.
        plugin: String,
        /// Step.
        step: String,
        /// Node.
        node: String,
        /// Which timeout, and what the plugin then reported.
        detail: String,
    },
    /// It returned an error.
    #[error("plugin `{plugin}` failed in {step}: {error}")]
    Failed {
        /// Plugin.
        plugin: String,
        /// Step.
        step: String,
        /// Its error.
        error: PluginError,
    },
}

impl PluginFault {
    /// Where it happened, for machines: (plugin, node, step), each when known.
    pub fn place(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
        match self {
            Self::NodeLost {
                plugin, step, node, ..
            }
            | Self::CommandTimedOut {
                plugin, step, node, ..
            } => (Some(plugin), Some(node), Some(step)),
            Self::CpuLimit { plugin, step, .. }
            | Self::MemoryLimit { plugin, step, .. }
            | Self::Timeout { plugin, step, .. }
            | Self::Trap { plugin, step, .. }
            | Self::Failed { plugin, step, .. } => (Some(plugin), None, Some(step)),
            Self::Incompatible { plugin, .. } => (Some(plugin), None, Some("restore")),
            Self::Invalid { .. } | Self::Contract { .. } => (None, None, Some("load")),
        }
    }
}

/// Where a plugin came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginOrigin {
    /// Shipped inside the `coffer` binary.
    Builtin,
    /// Loaded from a file.
    File(PathBuf),
}

impl std::fmt::Display for PluginOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Builtin => f.write_str("built-in"),
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A plugin ready to be called.
pub struct LoadedPlugin {
    /// What it said about itself.
    pub info: PluginInfo,
    /// Name, version, digest and contract, as recorded in snapshots.
    pub identity: PluginIdentity,
    /// Where it came from.
    pub origin: PluginOrigin,
    /// How its component was obtained.
    pub compile: CompileStats,
    matcher: Arc<CapabilityMatcher>,
    pre: InstancePre<HostState>,
    exports: Exports,
}

impl LoadedPlugin {
    /// Its compiled capabilities.
    pub fn matcher(&self) -> Arc<CapabilityMatcher> {
        self.matcher.clone()
    }

    /// Whether it is built against the frozen 1.x contract and served through the adapter: it
    /// cannot say which of its commands only read, so a dry run does not call it.
    pub fn adapted(&self) -> bool {
        self.exports.adapted()
    }
}

/// What a plugin operation receives (the host's side of `types.context`).
#[derive(Clone, Debug, Default)]
pub struct CallContext {
    /// Deployment name.
    pub deployment: String,
    /// Run id.
    pub run_id: String,
    /// Nodes it acts on.
    pub nodes: Vec<NodeHandle>,
    /// Its settings.
    pub settings: Vec<(String, String)>,
    /// Its artifacts in the snapshot.
    pub artifacts: Vec<ArtifactRecord>,
    /// Its records from the backup.
    pub records: Vec<(String, String)>,
    /// Restore under this root.
    pub target_root: Option<String>,
    /// Restore only these.
    pub selection: Vec<String>,
    /// A dry run: nothing that changes state runs.
    pub dry_run: bool,
}

impl CallContext {
    /// The calls for one operation: this context whole, or with `per_node` (the plugin does the
    /// operation one node at a time) one context per node, holding only that node, its
    /// artifacts and the cluster's.
    pub fn split(&self, per_node: bool) -> Vec<CallContext> {
        if !per_node || self.nodes.len() < 2 {
            return vec![self.clone()];
        }
        self.nodes
            .iter()
            .map(|n| CallContext {
                nodes: vec![n.clone()],
                artifacts: self
                    .artifacts
                    .iter()
                    .filter(|a| a.node == n.name || a.scope == ArtifactScope::Cluster)
                    .cloned()
                    .collect(),
                ..self.clone()
            })
            .collect()
    }

    fn to_wit(&self) -> types::Context {
        let setting = |(key, value): &(String, String)| types::Setting {
            key: key.clone(),
            value: value.clone(),
        };
        types::Context {
            deployment: self.deployment.clone(),
            run_id: self.run_id.clone(),
            nodes: self
                .nodes
                .iter()
                .map(|n| types::Node {
                    name: n.name.clone(),
                    address: n.address.clone(),
                    roles: n.roles.clone(),
                })
                .collect(),
            settings: self.settings.iter().map(setting).collect(),
            artifacts: self
                .artifacts
                .iter()
                .map(|a| types::Artifact {
                    name: a.name.clone(),
                    node: a.node.clone(),
                    kind: a.kind.into(),
                    size: a.size,
                    sha256: a.sha256.clone(),
                })
                .collect(),
            records: self.records.iter().map(setting).collect(),
            target_root: self.target_root.clone(),
            selection: self.selection.clone(),
            dry_run: self.dry_run,
        }
    }
}

/// The engine, linker and cache shared by all plugins of a process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<ComponentCache>,
    /// Limits for every call.
    pub limits: Limits,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// The release series of `version`: `1.*` for 1.4.2, `0.2.*` for 0.2.5 (unparsable: itself).
pub fn release_series(version: &str) -> String {
    match semver::Version::parse(version) {
        Ok(v) if v.major == 0 => format!("0.{}.*", v.minor),
        Ok(v) => format!("{}.*", v.major),
        Err(_) => format!("={version}"),
    }
}

impl LoadedPlugin {
    /// The semver requirement on plugin versions whose artifacts it restores: what it declares
    /// (the contract's `compat` export) or its own release series.
    pub fn restores(&self) -> String {
        if self.info.restores.is_empty() {
            release_series(&self.info.version)
        } else {
            self.info.restores.clone()
        }
    }

    /// Whether it can restore artifacts its version `written` wrote.
    pub fn can_restore(&self, written: &str) -> bool {
        let req = semver::VersionReq::parse(&self.restores());
        let written = semver::Version::parse(written);
        matches!((req, written), (Ok(r), Ok(w)) if r.matches(&w))
    }
}

impl Runtime {
    /// A runtime with `limits`, caching compiled components in `cache_dir` (none: no cache).
    pub fn new(limits: Limits, cache_dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        // WASI is linked so that components built by rustc load, but every store's WASI
        // context is empty: no files, no sockets, no environment.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        {
            use crate::contract::v2::coffer::plugin::{container, exec, log, stream, types, undo};
            types::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
            exec::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
            stream::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
            log::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
            undo::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
            container::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        }
        crate::contract::v1::add_to_linker(&mut linker)?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("coffer-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })?;
        }
        Ok(Self {
            engine,
            linker,
            cache: cache_dir.map(ComponentCache::new),
            limits,
            stop_ticker,
        })
    }

    /// Load a plugin from its component bytes: check the contract it targets, compile (or
    /// take from the cache), link, and ask it to describe itself.
    pub async fn load(
        &self,
        wasm: &[u8],
        origin: PluginOrigin,
    ) -> Result<LoadedPlugin, PluginFault> {
        let invalid = |reason: String| PluginFault::Invalid {
            origin: origin.to_string(),
            reason,
        };
        let digest = hex::encode(Sha256::digest(wasm));
        let (component, compile) = match &self.cache {
            Some(cache) => cache.load(&self.engine, wasm, &digest),
            None => {
                let started = Instant::now();
                Component::new(&self.engine, wasm).map(|c| {
                    (
                        c,
                        CompileStats {
                            cached: false,
                            duration: started.elapsed(),
                        },
                    )
                })
            }
        }
        .map_err(|e| invalid(format!("not a WebAssembly component: {e:#}")))?;
        let contract = self.contract_of(&component).ok_or_else(|| {
            invalid("not a Coffer plugin: it does not export coffer:plugin/handler".into())
        })?;
        // 2.x up to the served version directly, 1.x up to the frozen one through the
        // adapter; another major, or a newer minor than served (it may need imports this host
        // does not have), is refused before instantiating, naming the versions.
        let served = |v: &str| semver::Version::parse(v).expect("a semver version");
        let major = match semver::Version::parse(&contract) {
            Ok(v) if v.major == 2 && v <= served(CONTRACT_VERSION) => Some(2),
            Ok(v) if v.major == 1 && v <= served(crate::contract::v1::FROZEN) => Some(1),
            _ => None,
        };
        let Some(major) = major else {
            return Err(PluginFault::Contract {
                origin: origin.to_string(),
                found: contract,
                served: format!(
                    "{CONTRACT_VERSION} (and 1.0.0 to {} through its adapter)",
                    crate::contract::v1::FROZEN
                ),
            });
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("cannot be linked: {e:#}")))?;
        let exports = Exports::new(&pre, major)
            .map_err(|e| invalid(format!("its handler export does not match: {e:#}")))?;
        let (has_fan_out, has_compat, has_scope, has_presets) = (
            exports.has_fan_out(),
            exports.has_compat(),
            exports.has_scope(),
            exports.has_presets(),
        );
        let mut plugin = LoadedPlugin {
            info: PluginInfo::new("", "", ""),
            identity: PluginIdentity {
                name: format!("{origin}"),
                version: String::new(),
                digest,
                contract,
            },
            origin: origin.clone(),
            compile,
            matcher: Arc::new(
                CapabilityMatcher::new(&Capabilities::default()).expect("empty capabilities"),
            ),
            pre,
            exports,
        };
        let env = self.env(&plugin, BTreeMap::new(), String::new());
        let info = plugin_info(
            self.invoke(&plugin, env, "describe", |b, s| Box::pin(b.describe(s)))
                .await?,
        );
        if !is_kebab(&info.name) {
            return Err(invalid(format!(
                "plugin name `{}` must be lower-case kebab",
                info.name
            )));
        }
        plugin.matcher = Arc::new(
            CapabilityMatcher::new(&info.capabilities)
                .map_err(|e| invalid(format!("declares {e}")))?,
        );
        plugin.identity.name = info.name.clone();
        plugin.identity.version = info.version.clone();
        plugin.info = info;
        if has_fan_out {
            let env = self.env(&plugin, BTreeMap::new(), String::new());
            let ops = self
                .invoke(&plugin, env, "describe", |b, s| Box::pin(b.node_scoped(s)))
                .await?;
            plugin.info.node_scoped = Operations {
                backup: ops.contains(types::Operations::BACKUP),
                restore: ops.contains(types::Operations::RESTORE),
                validate: ops.contains(types::Operations::VALIDATE),
            };
        }
        if has_compat {
            let env = self.env(&plugin, BTreeMap::new(), String::new());
            plugin.info.restores = self
                .invoke(&plugin, env, "describe", |b, s| Box::pin(b.restores(s)))
                .await?;
        }
        if has_scope {
            let env = self.env(&plugin, BTreeMap::new(), String::new());
            plugin.info.cluster_artifacts = self
                .invoke(&plugin, env, "describe", |b, s| {
                    Box::pin(b.cluster_artifacts(s))
                })
                .await?;
            for p in &plugin.info.cluster_artifacts {
                coffer_sdk::capability::check_name_pattern(p)
                    .map_err(|e| invalid(format!("names cluster artifacts with {e}")))?;
            }
        }
        if has_presets {
            let env = self.env(&plugin, BTreeMap::new(), String::new());
            plugin.info.presets = self
                .invoke(&plugin, env, "describe", |b, s| Box::pin(b.presets(s)))
                .await?;
            if let Some(bad) = plugin.info.presets.iter().find(|p| !is_kebab(p)) {
                return Err(invalid(format!(
                    "names preset `{bad}`, which is not a lower-case kebab name"
                )));
            }
        }
        if !plugin.info.restores.is_empty() {
            semver::VersionReq::parse(&plugin.info.restores).map_err(|e| {
                invalid(format!(
                    "it restores versions `{}`, which is not a semver requirement: {e}",
                    plugin.info.restores
                ))
            })?;
        }
        Ok(plugin)
    }

    /// The contract version a component targets, read from its exports before instantiating.
    fn contract_of(&self, component: &Component) -> Option<String> {
        component
            .component_type()
            .exports(&self.engine)
            .find_map(|(name, _)| name.strip_prefix(HANDLER).map(str::to_string))
    }

    /// The environment for one operation of `plugin`, without repository access.
    pub fn env(
        &self,
        plugin: &LoadedPlugin,
        nodes: BTreeMap<String, NodeHandle>,
        run_id: String,
    ) -> OperationEnv {
        OperationEnv {
            plugin: plugin.identity.clone(),
            matcher: plugin.matcher.clone(),
            declared: Arc::new(plugin.info.capabilities.clone()),
            grant: None,
            container: None,
            nodes,
            run_id,
            incidents: Arc::new(Mutex::new(Vec::new())),
            phase: crate::capabilities::Phase::Describe,
            limits: self.limits.commands.clone(),
            call: self.limits.clone(),
            reporter: Arc::new(Silent),
            undo: None,
            executor: Arc::new(crate::dry_run::Live),
        }
    }

    /// Call one export of `plugin` (`call` picks it) in a fresh instance, under the limits:
    /// a trap, the memory and CPU limits and the wall-clock timeout become a [`PluginFault`]
    /// naming `step`.
    async fn invoke<T>(
        &self,
        plugin: &LoadedPlugin,
        env: OperationEnv,
        step: &str,
        call: impl for<'a> FnOnce(
            &'a Bound,
            &'a mut Store<HostState>,
        ) -> BoxFuture<'a, wasmtime::Result<T>>,
    ) -> Result<T, PluginFault> {
        let name = plugin.identity.name.clone();
        let trap = |message: String| PluginFault::Trap {
            plugin: name.clone(),
            step: step.into(),
            message,
        };
        let limits = env.call.clone();
        let state = HostState::new(
            Arc::new(env),
            crate::limits::MemoryCap::new(limits.memory_bytes),
            limits.cpu,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let data = ctx.data_mut();
            if data.guest_time() > data.cpu_limit {
                data.cpu_exceeded = true;
                return Err(wasmtime::format_err!("CPU limit reached"));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        let instance = plugin
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| trap(format!("{e:#}")))?;
        store.data_mut().call_started = Instant::now();
        let load = |e: wasmtime::Error| trap(format!("{e:#}"));
        let work = async {
            let bound = plugin.exports.bind(&mut store, &instance).map_err(load)?;
            Ok::<_, PluginFault>(call(&bound, &mut store).await)
        };
        let result = tokio::time::timeout(limits.call_timeout, work).await;
        let result = match result {
            Ok(Err(fault)) => return Err(fault),
            Ok(Ok(r)) => Ok(r),
            Err(e) => Err(e),
        };
        match result {
            Err(_) => Err(PluginFault::Timeout {
                plugin: name.clone(),
                step: step.into(),
                limit: limits.call_timeout,
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let data = store.data();
                Err(if data.memory.exceeded {
                    PluginFault::MemoryLimit {
                        plugin: name.clone(),
                        step: step.into(),
                        mib: limits.memory_bytes >> 20,
                    }
                } else if data.cpu_exceeded {
                    PluginFault::CpuLimit {
                        plugin: name.clone(),
                        step: step.into(),
                        limit: limits.cpu,
                    }
                } else {
                    trap(format!("{e:#}"))
                })
            }
        }
    }

    /// Call `backup`; the returned records are kept with the snapshot.
    pub async fn backup(
        &self,
        plugin: &LoadedPlugin,
        env: OperationEnv,
        ctx: &CallContext,
    ) -> Result<Vec<(String, String)>, PluginFault> {
        let ctx = ctx.to_wit();
        let incidents = env.incidents.clone();
        self.invoke(plugin, env, "backup", move |b, s| {
            Box::pin(async move { b.backup(s, &ctx).await })
        })
        .await?
        .map(|r| r.records.into_iter().map(|s| (s.key, s.value)).collect())
        .map_err(|e| failed(plugin, "backup", e, &incidents))
    }

    /// Call `restore`.
    pub async fn restore(
        &self,
        plugin: &LoadedPlugin,
        env: OperationEnv,
        ctx: &CallContext,
    ) -> Result<(), PluginFault> {
        let ctx = ctx.to_wit();
        let incidents = env.incidents.clone();
        self.invoke(plugin, env, "restore", move |b, s| {
            Box::pin(async move { b.restore(s, &ctx).await })
        })
        .await?
        .map_err(|e| failed(plugin, "restore", e, &incidents))
    }

    /// Call `validate`.
    pub async fn validate(
        &self,
        plugin: &LoadedPlugin,
        env: OperationEnv,
        ctx: &CallContext,
    ) -> Result<Vec<Check>, PluginFault> {
        let ctx = ctx.to_wit();
        let incidents = env.incidents.clone();
        self.invoke(plugin, env, "validate", move |b, s| {
            Box::pin(async move { b.validate(s, &ctx).await })
        })
        .await?
        .map(|checks| checks.into_iter().map(check).collect())
        .map_err(|e| failed(plugin, "validate", e, &incidents))
    }

    /// Call `drill`: the checks, or `None` when the plugin cannot be drilled (it lacks the
    /// export, or answers `unsupported`).
    pub async fn drill(
        &self,
        plugin: &LoadedPlugin,
        env: OperationEnv,
        ctx: &CallContext,
    ) -> Result<Option<Vec<Check>>, PluginFault> {
        let ctx = ctx.to_wit();
        let incidents = env.incidents.clone();
        match self
            .invoke(plugin, env, "drill", move |b, s| {
                Box::pin(async move { b.drill(s, &ctx).await })
            })
            .await?
        {
            None | Some(Err(types::PluginError::Unsupported(_))) => Ok(None),
            Some(Err(e)) => Err(failed(plugin, "drill", e, &incidents)),
            Some(Ok(checks)) => Ok(Some(checks.into_iter().map(check).collect())),
        }
    }
}

/// A check as the SDK has it.
fn check(c: types::Check) -> Check {
    Check {
        node: c.node,
        name: c.name,
        ok: c.ok,
        detail: c.detail,
    }
}

/// The plugin's error `e`, as a lost node or a timeout when the host saw one under the call
/// (the first such incident names the node).
fn failed(
    plugin: &LoadedPlugin,
    step: &str,
    e: types::PluginError,
    incidents: &Mutex<Vec<crate::capabilities::Incident>>,
) -> PluginFault {
    use crate::capabilities::Incident;
    let error = match e {
        types::PluginError::InvalidSettings(m) => PluginError::InvalidSettings(m),
        types::PluginError::Precondition(m) => PluginError::Precondition(m),
        types::PluginError::CommandFailed(m) => PluginError::CommandFailed(m),
        types::PluginError::Unsupported(m) => PluginError::Unsupported(m),
        types::PluginError::Other(m) => PluginError::Other(m),
    };
    let (plugin, step) = (plugin.identity.name.clone(), step.to_string());
    let first = incidents
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .first()
        .cloned();
    match first {
        Some(Incident::Lost { node, detail }) => PluginFault::NodeLost {
            plugin,
            step,
            node,
            detail: format!("{detail}; the plugin then reported: {error}"),
        },
        Some(Incident::TimedOut { node, detail }) => PluginFault::CommandTimedOut {
            plugin,
            step,
            node,
            detail: format!("{detail}; the plugin then reported: {error}"),
        },
        None => PluginFault::Failed {
            plugin,
            step,
            error,
        },
    }
}

fn plugin_info(i: types::PluginInfo) -> PluginInfo {
    PluginInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        operations: Operations {
            backup: i.operations.contains(types::Operations::BACKUP),
            restore: i.operations.contains(types::Operations::RESTORE),
            validate: i.operations.contains(types::Operations::VALIDATE),
        },
        roles: i.roles,
        settings: i
            .settings
            .into_iter()
            .map(|s| SettingSpec {
                key: s.key,
                description: s.description,
                default_value: s.default_value,
                multiple: s.multiple,
            })
            .collect(),
        after: i.after,
        before: i.before,
        capabilities: Capabilities {
            commands: i
                .capabilities
                .commands
                .into_iter()
                .map(|c| CommandPattern {
                    program: c.program,
                    args: c.args,
                    effect: match c.effect {
                        types::Effect::Reads => Effect::Reads,
                        types::Effect::Changes => Effect::Changes,
                    },
                })
                .collect(),
            paths: i.capabilities.paths,
        },
        node_scoped: Operations::default(),
        restores: String::new(),
        cluster_artifacts: Vec::new(),
        presets: Vec::new(),
    }
}

/// A plugin or preset name: lower-case letters, digits and `-`, not empty.
fn is_kebab(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
