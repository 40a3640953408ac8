//! The host side of each WIT import: `exec`, `stream`, `log`. Every call is checked against
//! the plugin's declared capabilities and the operation's nodes, and fails closed.

pub mod process;
mod stream;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_sdk::capability::CapabilityMatcher;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::deployment::ContainerSpec;
use crate::dry_run::{Action, DryRun, Effect};
use crate::report::{Event, Reporter};
use crate::repository::{ArtifactReader, ArtifactRecord, ArtifactWriter, Manifest};
use crate::runtime::bindings::coffer::plugin::{exec, log, stream as wstream, types, undo};
use crate::runtime::limits::MemoryCap;
use crate::transport::NodeHandle;

use process::RunError;

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
}

/// Everything one plugin operation may use: its nodes, its capabilities, the repository.
pub struct OperationEnv {
    /// The plugin.
    pub plugin: PluginIdentity,
    /// What it declared.
    pub matcher: Arc<CapabilityMatcher>,
    /// What the deployment grants it on each node, by node name; `None` grants everything it
    /// declares.
    pub grant: Option<BTreeMap<String, Arc<CapabilityMatcher>>>,
    /// The container its commands run in, on the nodes it applies to.
    pub container: Option<ContainerSpec>,
    /// Nodes of this operation, by name.
    pub nodes: BTreeMap<String, NodeHandle>,
    /// The run.
    pub run_id: String,
    /// For backup: where artifacts go.
    pub writer: Option<Arc<ArtifactWriter>>,
    /// Artifacts written so far in this run (shared by all plugins of the run).
    pub written: Arc<Mutex<Vec<ArtifactRecord>>>,
    /// What went wrong on a node under this call, whatever the plugin makes of it: it tells a
    /// lost node and a timeout from a plugin's own failure.
    pub incidents: Arc<Mutex<Vec<Incident>>>,
    /// For restore and validate: the snapshot.
    pub source: Option<Arc<SnapshotSource>>,
    /// The repository of this run: never archived from the node it lives on.
    pub repository: Option<crate::repository::RepoLocation>,
    /// Command limits.
    pub limits: CommandLimits,
    /// The call's own limits: memory, guest CPU time, wall-clock time.
    pub call: crate::runtime::Limits,
    /// Where events go.
    pub reporter: Arc<dyn Reporter>,
    /// The run's undo stack; `None` where nothing may change (describe).
    pub undo: Option<Arc<crate::undo::UndoStack>>,
    /// Set in a dry run: where the commands it would run are recorded.
    pub dry_run: Option<Arc<DryRun>>,
    /// For a backup: the size each artifact (`plugin/node/name`) had in the previous snapshot,
    /// to show progress against.
    pub expected: Arc<BTreeMap<String, u64>>,
}

impl OperationEnv {
    fn node(&self, name: &str) -> Result<&NodeHandle, types::ExecError> {
        self.nodes.get(name).ok_or_else(|| {
            types::ExecError::UnknownNode(format!(
                "plugin `{}` has no node `{name}` in this operation (nodes: {})",
                self.plugin.name,
                self.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Pass when both keys allow it: the plugin's declaration (`allows` on its manifest) and
    /// the deployment's grant; otherwise refuse, saying which key is missing.
    fn both_keys(
        &self,
        node: &str,
        allows: impl Fn(&CapabilityMatcher) -> bool,
        what: impl FnOnce() -> String,
    ) -> Result<(), types::ExecError> {
        let declared = allows(&self.matcher);
        let granted = self
            .grant
            .as_ref()
            .is_none_or(|g| g.get(node).is_some_and(|m| allows(m)));
        if declared && granted {
            Ok(())
        } else {
            Err(self.refuse(node, what(), declared))
        }
    }

    fn refuse(&self, node: &str, what: String, declared: bool) -> types::ExecError {
        let why = if declared {
            format!(
                "not granted by the deployment (add it to [plugin.{0}.grant], or to \
                 [plugin.{0}.grant.role.ROLE] for a role of this node)",
                self.plugin.name
            )
        } else {
            "not declared in its manifest".to_string()
        };
        let detail = format!(
            "plugin `{}` may not {what} on node `{node}`: {why}",
            self.plugin.name
        );
        self.reporter.report(Event::Refused {
            plugin: self.plugin.name.clone(),
            node: node.into(),
            detail: detail.clone(),
        });
        types::ExecError::Refused(detail)
    }

    /// Check a command against the node list and the plugin's declarations.
    fn allow_command(&self, node: &str, argv: &[String]) -> Result<&NodeHandle, types::ExecError> {
        let handle = self.node(node)?;
        self.both_keys(
            node,
            |m| m.allows_command(argv),
            || format!("run `{}`", argv.join(" ")),
        )?;
        Ok(handle)
    }

    /// Check paths against the node list and the plugin's declarations.
    fn allow_paths(&self, node: &str, paths: &[String]) -> Result<&NodeHandle, types::ExecError> {
        let handle = self.node(node)?;
        for p in paths {
            self.both_keys(node, |m| m.allows_path(p), || format!("access path `{p}`"))?;
        }
        Ok(handle)
    }

    /// The command line that runs the plugin's `argv` on `node`: inside the plugin's container
    /// (`podman exec -i NAME …`, streams included) where one is configured for the node.
    /// Grants are checked on the plugin's own `argv`, before this.
    pub fn on_node(&self, node: &NodeHandle, argv: &[String]) -> Vec<String> {
        match &self.container {
            Some(c)
                if c.roles
                    .as_ref()
                    .is_none_or(|roles| node.roles.iter().any(|r| roles.contains(r))) =>
            {
                let mut wrapped = vec![
                    c.runtime.clone(),
                    "exec".into(),
                    "-i".into(),
                    c.name.clone(),
                ];
                wrapped.extend_from_slice(argv);
                wrapped
            }
            _ => argv.to_vec(),
        }
    }

    /// What the plugin's `argv` does, by its declaration.
    fn effect_of(&self, argv: &[String]) -> Effect {
        if self.matcher.changes_state(argv) {
            Effect::Changes
        } else {
            Effect::Reads
        }
    }

    /// In a dry run, record `argv` (as it would run on `node`) with its effect and return
    /// true when it must not run; outside one, false.
    fn dry(&self, node: &str, argv: &[String], effect: Effect, note: Option<String>) -> bool {
        let Some(dry) = &self.dry_run else {
            return false;
        };
        dry.record(Action {
            plugin: self.plugin.name.clone(),
            node: node.into(),
            argv: argv.to_vec(),
            effect,
            note,
        });
        effect != Effect::Reads
    }

    fn command_event(&self, node: &str, argv: &[String], effect: Effect) {
        self.reporter.report(Event::Command {
            plugin: self.plugin.name.clone(),
            node: node.into(),
            argv: argv.to_vec(),
            effect,
        });
    }

    async fn exec(&self, cmd: types::Command) -> Result<types::Output, types::ExecError> {
        let node = self.allow_command(&cmd.node, &cmd.argv)?;
        let argv = self.on_node(node, &cmd.argv);
        let effect = self.effect_of(&cmd.argv);
        if self.dry(&cmd.node, &argv, effect, None) {
            return Ok(types::Output {
                exit_code: Some(0),
                stdout: Vec::new(),
                stderr: Vec::new(),
            });
        }
        self.command_event(&cmd.node, &argv, effect);
        let timeout = cmd
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.limits.default_timeout);
        process::run(node, &argv, cmd.stdin, timeout, self.limits.max_output)
            .await
            .map(|f| types::Output {
                exit_code: f.exit_code,
                stdout: f.stdout,
                stderr: f.stderr,
            })
            .map_err(exec_error)
    }
}

fn exec_error(e: RunError) -> types::ExecError {
    match e {
        RunError::Spawn(e) => types::ExecError::SpawnFailed(e.to_string()),
        RunError::TimedOut(d) => types::ExecError::TimedOut(d.as_millis() as u64),
        RunError::OutputTooLarge(n) => types::ExecError::OutputTooLarge(n),
        RunError::Io(e) => types::ExecError::Unreachable(e.to_string()),
    }
}

/// Something the host saw go wrong on a node during a plugin call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incident {
    /// The node stopped answering (its connection broke).
    Lost {
        /// Node.
        node: String,
        /// What the transport said.
        detail: String,
    },
    /// A command ran past its timeout and was killed.
    TimedOut {
        /// Node.
        node: String,
        /// Which timeout.
        detail: String,
    },
}

impl OperationEnv {
    /// Remember `e` from `node` if it is a lost node or a timeout.
    fn note(&self, node: &str, e: &types::ExecError) {
        let incident = match e {
            types::ExecError::Unreachable(d) => Incident::Lost {
                node: node.into(),
                detail: d.clone(),
            },
            types::ExecError::TimedOut(ms) => Incident::TimedOut {
                node: node.into(),
                detail: format!("a command ran past its timeout of {}", human_ms(*ms)),
            },
            _ => return,
        };
        self.incidents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(incident);
    }

    /// [`Self::note`] for a stream call's error, and [`Self::note_exit`] for a failed command.
    async fn note_stream(&self, node: &str, e: &types::StreamError) {
        match e {
            types::StreamError::Exec(e) => self.note(node, e),
            types::StreamError::CommandFailed(f) => self.note_exit(node, f.exit_code).await,
            _ => {}
        }
    }

    /// A command on an SSH node that ended with 255 (`ssh`'s own failure) or without a status
    /// may mean the connection broke rather than the command failed: a `true` sent the same way
    /// tells. If it fails too, the node is lost.
    async fn note_exit(&self, node: &str, code: Option<i32>) {
        let Some(handle) = self.nodes.get(node).filter(|n| !n.is_local()) else {
            return;
        };
        if code.is_some_and(|c| c != 255) {
            return;
        }
        let probe = async {
            let mut p = handle
                .spawn(&["true".to_string()])
                .await
                .map_err(|e| e.to_string())?;
            match p.wait().await {
                Ok(Some(0)) => Ok(()),
                Ok(other) => Err(format!("it ended with {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        };
        let answer = tokio::time::timeout(Duration::from_secs(10), probe)
            .await
            .unwrap_or_else(|_| Err("no answer in 10 s".into()));
        if let Err(why) = answer {
            self.incidents
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Incident::Lost {
                    node: node.into(),
                    detail: format!(
                        "its connection broke under a command (a `true` sent after it failed too: {why})"
                    ),
                });
        }
    }
}

fn human_ms(ms: u64) -> String {
    format!("{:?}", Duration::from_millis(ms))
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

impl undo::Host for HostState {
    async fn push(
        &mut self,
        node: String,
        argv: Vec<String>,
        what: String,
    ) -> wasmtime::Result<Result<u64, types::ExecError>> {
        let env = self.env.clone();
        let handle = match env.allow_command(&node, &argv) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        let wrapped = env.on_node(handle, &argv);
        if env.dry(&node, &wrapped, Effect::Reversal, Some(what.clone())) {
            return Ok(Ok(0));
        }
        let Some(stack) = &env.undo else {
            return Ok(Err(types::ExecError::Refused(format!(
                "plugin `{}` may not register reversals outside a run",
                env.plugin.name
            ))));
        };
        Ok(stack
            .push(&env.plugin.name, &node, wrapped, &what)
            .map_err(|e| types::ExecError::SpawnFailed(e.to_string())))
    }

    async fn release(&mut self, id: u64) -> wasmtime::Result<()> {
        if let Some(stack) = &self.env.undo {
            stack.release(id)?;
        }
        Ok(())
    }
}

impl exec::Host for HostState {
    async fn run(
        &mut self,
        cmd: types::Command,
    ) -> wasmtime::Result<Result<types::Output, types::ExecError>> {
        let env = self.env.clone();
        let t = Instant::now();
        let node = cmd.node.clone();
        let r = env.exec(cmd).await;
        match &r {
            Err(e) => env.note(&node, e),
            Ok(out) if out.exit_code != Some(0) => env.note_exit(&node, out.exit_code).await,
            Ok(_) => {}
        }
        self.host_time += t.elapsed();
        Ok(r)
    }
}

impl wstream::Host for HostState {
    async fn capture(
        &mut self,
        node: String,
        argv: Vec<String>,
        name: String,
    ) -> wasmtime::Result<Result<types::Artifact, types::StreamError>> {
        let env = self.env.clone();
        let t = Instant::now();
        let r = stream::capture(&env, &node, argv, &name).await;
        if let Err(e) = &r {
            env.note_stream(&node, e).await;
        }
        self.host_time += t.elapsed();
        Ok(r)
    }

    async fn capture_paths(
        &mut self,
        node: String,
        paths: wstream::PathSet,
        name: String,
    ) -> wasmtime::Result<Result<types::Artifact, types::StreamError>> {
        let env = self.env.clone();
        let t = Instant::now();
        let r = stream::capture_paths(&env, &node, paths, &name).await;
        if let Err(e) = &r {
            env.note_stream(&node, e).await;
        }
        self.host_time += t.elapsed();
        Ok(r)
    }

    async fn feed(
        &mut self,
        artifact: wstream::ArtifactRef,
        node: String,
        argv: Vec<String>,
    ) -> wasmtime::Result<Result<(), types::StreamError>> {
        let env = self.env.clone();
        let t = Instant::now();
        let r = stream::feed(&env, artifact, &node, argv).await;
        if let Err(e) = &r {
            env.note_stream(&node, e).await;
        }
        self.host_time += t.elapsed();
        Ok(r)
    }

    async fn restore_paths(
        &mut self,
        artifact: wstream::ArtifactRef,
        node: String,
        target: String,
        select: Vec<String>,
    ) -> wasmtime::Result<Result<(), types::StreamError>> {
        let env = self.env.clone();
        let t = Instant::now();
        let r = stream::restore_paths(&env, artifact, &node, &target, select).await;
        if let Err(e) = &r {
            env.note_stream(&node, e).await;
        }
        self.host_time += t.elapsed();
        Ok(r)
    }
}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.env.reporter.report(Event::Log {
            plugin: self.env.plugin.name.clone(),
            level: level.into(),
            message,
        });
        Ok(())
    }

    async fn progress(
        &mut self,
        step: String,
        done: u64,
        total: Option<u64>,
    ) -> wasmtime::Result<()> {
        self.env.reporter.report(Event::Progress {
            plugin: self.env.plugin.name.clone(),
            step,
            done,
            total,
        });
        Ok(())
    }
}
