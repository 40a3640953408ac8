//! The host side of each WIT import, one module per interface: [`exec`](self) (run a command),
//! `stream` (artifacts between a node and the repository), `log`, `undo` and `container`. Every call first
//! passes the policy (`policy.rs`): the plugin's declaration and the operator's grant, on one
//! of the operation's nodes; it fails closed. This module holds what they share: the
//! operation's environment ([`OperationEnv`]) and the store's data ([`HostState`]).

mod container;
mod exec;
mod incident;
mod log;
mod policy;
mod strays;
mod stream;
mod tree_paths;
mod undo;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_sdk::capability::CapabilityMatcher;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use coffer_repository::{ArtifactReader, ArtifactRecord, ArtifactWriter, Manifest};
use coffer_transport::NodeHandle;

use crate::container::ContainerSpec;
use crate::contract::v2::types;
use crate::dry_run::Executor;
use crate::limits::MemoryCap;
use crate::report::Reporter;

pub use incident::Incident;

/// Who a plugin is, as recorded in snapshots.
#[derive(Clone, Debug)]
pub struct PluginIdentity {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// SHA-256 of its component.
    pub digest: String,
    /// Contract version it targets.
    pub contract: String,
}

/// Limits on commands a plugin runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLimits {
    /// Timeout when the plugin gives none.
    pub default_timeout: Duration,
    /// Most stdout `exec` keeps in memory.
    pub max_output: u64,
}

/// Where a restore's artifacts come from.
pub struct SnapshotSource {
    /// The snapshot's manifest.
    pub manifest: Manifest,
    /// Reads artifacts.
    pub reader: Arc<ArtifactReader>,
    /// `restore --delete`: after a path set is extracted, what is under its paths and not in
    /// the snapshot (nor left out by the backup) is removed.
    pub delete: bool,
}

/// Where a backup's artifacts go, shared by every plugin call of the run.
pub struct BackupSink {
    /// The repository writer; `None` in a dry run, where nothing is stored.
    pub writer: Option<Arc<ArtifactWriter>>,
    /// Artifacts written so far in this run.
    pub written: Arc<Mutex<Vec<ArtifactRecord>>>,
    /// The size each artifact (`plugin/node/name`) had in the previous snapshot, to show
    /// progress against.
    pub expected: Arc<BTreeMap<String, u64>>,
    /// The restic snapshot of each tree artifact (`plugin/node/name`) of the previous
    /// snapshot: a path set compared with it reads only what changed.
    pub parents: Arc<BTreeMap<String, String>>,
    /// Where the repository is: a path set never archives the repository itself.
    pub repository: coffer_repository::RepoLocation,
}

/// What an operation moves artifacts to or from.
#[derive(Clone)]
pub enum Phase {
    /// `describe`: no artifact moves.
    Describe,
    /// A backup: artifacts are stored.
    Backup(Arc<BackupSink>),
    /// A restore or a validation: artifacts come from a snapshot.
    Snapshot(Arc<SnapshotSource>),
}

/// Everything one plugin operation may use: its nodes, its capabilities, the repository.
pub struct OperationEnv {
    /// The plugin.
    pub plugin: PluginIdentity,
    /// What it declared.
    pub matcher: Arc<CapabilityMatcher>,
    /// The same, as declared: what a refusal lists as still to grant.
    pub declared: Arc<coffer_sdk::Capabilities>,
    /// What the deployment grants it on each node, by node name; `None` grants everything it
    /// declares.
    pub grant: Option<BTreeMap<String, Arc<CapabilityMatcher>>>,
    /// The container its commands run in, on the nodes it applies to.
    pub container: Option<ContainerSpec>,
    /// Nodes of this operation, by name.
    pub nodes: BTreeMap<String, NodeHandle>,
    /// The run.
    pub run_id: String,
    /// What went wrong on a node under this call, whatever the plugin makes of it: it tells a
    /// lost node and a timeout from a plugin's own failure.
    pub incidents: Arc<Mutex<Vec<Incident>>>,
    /// Where artifacts go or come from.
    pub phase: Phase,
    /// Command limits.
    pub limits: CommandLimits,
    /// The call's own limits: memory, guest CPU time, wall-clock time.
    pub call: crate::Limits,
    /// Where events go.
    pub reporter: Arc<dyn Reporter>,
    /// The run's undo stack; `None` where nothing may change (describe).
    pub undo: Option<Arc<crate::undo::UndoStack>>,
    /// Whether what the plugin asks for really happens ([`crate::dry_run::Live`]) or is
    /// recorded for a plan (a [`crate::dry_run::DryRun`]).
    pub executor: Arc<dyn Executor>,
}

/// The data of a plugin's store: its (empty) WASI context, its limits, and its operation.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory cap.
    pub memory: MemoryCap,
    /// The operation's environment.
    pub env: Arc<OperationEnv>,
    /// Time spent in host calls during the current export call.
    pub host_time: Duration,
    /// When the current export call started.
    pub call_started: Instant,
    /// Most guest (non-host) time one export call may use.
    pub cpu_limit: Duration,
    /// Set when the CPU limit stopped the guest.
    pub cpu_exceeded: bool,
}

impl HostState {
    /// A store's data with no ambient authority: no preopened directories, no sockets, no
    /// environment, no arguments, no inherited stdio.
    pub fn new(env: Arc<OperationEnv>, memory: MemoryCap, cpu_limit: Duration) -> Self {
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory,
            env,
            host_time: Duration::ZERO,
            call_started: Instant::now(),
            cpu_limit,
            cpu_exceeded: false,
        }
    }

    /// Guest time used by the current call so far.
    pub fn guest_time(&self) -> Duration {
        self.call_started.elapsed().saturating_sub(self.host_time)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}
