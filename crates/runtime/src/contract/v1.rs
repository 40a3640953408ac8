//! Contract 1.x, frozen at 1.3 (`wit/v1.3/`): host-side bindings, and the adapter that serves
//! plugins built against it on a host that speaks 2.x.
//!
//! 2.0 changed two records: `command-pattern` gained `effect` and `context` gained `dry-run`.
//! Every import kept its types, so a 1.x plugin's imports (`exec`, `stream`, `log`, `undo` at
//! `@1.x`) are bound from `wit/v1.3` like any contract's and served by the 2.x implementation,
//! their values converted field for field (the types are the same; the bindings differ).
//! Its exports are called through the 1.x bindings and their values converted here: a 1.x
//! context is a 2.x one without `dry-run`, and every command a 1.x plugin declares is taken
//! to change state (1.x could not say otherwise), so a dry run runs none of them.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../../wit/v1.3",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

use wasmtime::component::{HasSelf, Linker};

use self::coffer::plugin::types as v1;
use self::coffer::plugin::{exec as v1_exec, log as v1_log, stream as v1_stream, undo as v1_undo};
use super::v2::coffer::plugin::{exec, log, stream as wstream, undo};
use super::v2::types as v2;
use crate::capabilities::HostState;

/// The newest 1.x contract: the adapter serves 1.0 up to this one.
pub const FROZEN: &str = "1.3.0";

/// Register the 1.x imports (`@1.3.0`, which the linker's semver matching also gives to 1.0
/// to 1.2 plugins) from their bindings; each is served by the 2.x host function, its values
/// converted below.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    v1::add_to_linker::<_, HasSelf<HostState>>(linker, |s| s)?;
    v1_exec::add_to_linker::<_, HasSelf<HostState>>(linker, |s| s)?;
    v1_stream::add_to_linker::<_, HasSelf<HostState>>(linker, |s| s)?;
    v1_log::add_to_linker::<_, HasSelf<HostState>>(linker, |s| s)?;
    v1_undo::add_to_linker::<_, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

impl v1::Host for HostState {}

impl v1_exec::Host for HostState {
    async fn run(
        &mut self,
        cmd: v1::Command,
    ) -> wasmtime::Result<Result<v1::Output, v1::ExecError>> {
        let r = exec::Host::run(self, cmd.into()).await?;
        Ok(r.map(Into::into).map_err(Into::into))
    }
}

impl v1_stream::Host for HostState {
    async fn capture(
        &mut self,
        node: String,
        argv: Vec<String>,
        name: String,
    ) -> wasmtime::Result<Result<v1::Artifact, v1::StreamError>> {
        let r = wstream::Host::capture(self, node, argv, name).await?;
        Ok(r.map(Into::into).map_err(Into::into))
    }

    async fn capture_paths(
        &mut self,
        node: String,
        paths: v1_stream::PathSet,
        name: String,
    ) -> wasmtime::Result<Result<v1::Artifact, v1::StreamError>> {
        let paths = wstream::PathSet {
            paths: paths.paths,
            excludes: paths.excludes,
        };
        let r = wstream::Host::capture_paths(self, node, paths, name).await?;
        Ok(r.map(Into::into).map_err(Into::into))
    }

    async fn feed(
        &mut self,
        artifact: v1_stream::ArtifactRef,
        node: String,
        argv: Vec<String>,
    ) -> wasmtime::Result<Result<(), v1::StreamError>> {
        let r = wstream::Host::feed(self, artifact.into(), node, argv).await?;
        Ok(r.map_err(Into::into))
    }

    async fn restore_paths(
        &mut self,
        artifact: v1_stream::ArtifactRef,
        node: String,
        target: String,
        select: Vec<String>,
    ) -> wasmtime::Result<Result<(), v1::StreamError>> {
        let r = wstream::Host::restore_paths(self, artifact.into(), node, target, select).await?;
        Ok(r.map_err(Into::into))
    }
}

impl v1_log::Host for HostState {
    async fn log(&mut self, level: v1_log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            v1_log::Level::Debug => log::Level::Debug,
            v1_log::Level::Info => log::Level::Info,
            v1_log::Level::Warn => log::Level::Warn,
            v1_log::Level::Error => log::Level::Error,
        };
        log::Host::log(self, level, message).await
    }

    async fn progress(
        &mut self,
        step: String,
        done: u64,
        total: Option<u64>,
    ) -> wasmtime::Result<()> {
        log::Host::progress(self, step, done, total).await
    }
}

impl v1_undo::Host for HostState {
    async fn push(
        &mut self,
        node: String,
        argv: Vec<String>,
        what: String,
    ) -> wasmtime::Result<Result<u64, v1::ExecError>> {
        let r = undo::Host::push(self, node, argv, what).await?;
        Ok(r.map_err(Into::into))
    }

    async fn release(&mut self, id: u64) -> wasmtime::Result<()> {
        undo::Host::release(self, id).await
    }
}

/// A 1.x command is a 2.x one (same fields).
impl From<v1::Command> for v2::Command {
    fn from(c: v1::Command) -> Self {
        v2::Command {
            node: c.node,
            argv: c.argv,
            stdin: c.stdin,
            timeout_ms: c.timeout_ms,
        }
    }
}

impl From<v2::Output> for v1::Output {
    fn from(o: v2::Output) -> Self {
        v1::Output {
            exit_code: o.exit_code,
            stdout: o.stdout,
            stderr: o.stderr,
        }
    }
}

impl From<v2::ExecError> for v1::ExecError {
    fn from(e: v2::ExecError) -> Self {
        match e {
            v2::ExecError::Refused(m) => Self::Refused(m),
            v2::ExecError::UnknownNode(m) => Self::UnknownNode(m),
            v2::ExecError::Unreachable(m) => Self::Unreachable(m),
            v2::ExecError::SpawnFailed(m) => Self::SpawnFailed(m),
            v2::ExecError::TimedOut(ms) => Self::TimedOut(ms),
            v2::ExecError::OutputTooLarge(n) => Self::OutputTooLarge(n),
        }
    }
}

impl From<v2::StreamError> for v1::StreamError {
    fn from(e: v2::StreamError) -> Self {
        match e {
            v2::StreamError::Exec(e) => Self::Exec(e.into()),
            v2::StreamError::CommandFailed(f) => Self::CommandFailed(v1::CommandFailure {
                argv: f.argv,
                exit_code: f.exit_code,
                stderr: f.stderr,
            }),
            v2::StreamError::ArtifactExists(m) => Self::ArtifactExists(m),
            v2::StreamError::ArtifactNotFound(m) => Self::ArtifactNotFound(m),
            v2::StreamError::Integrity(m) => Self::Integrity(m),
            v2::StreamError::Repository(m) => Self::Repository(m),
        }
    }
}

impl From<v2::ArtifactKind> for v1::ArtifactKind {
    fn from(k: v2::ArtifactKind) -> Self {
        match k {
            v2::ArtifactKind::Stream => Self::Stream,
            v2::ArtifactKind::Paths => Self::Paths,
        }
    }
}

impl From<&v2::Artifact> for v1::Artifact {
    fn from(a: &v2::Artifact) -> Self {
        v1::Artifact {
            name: a.name.clone(),
            node: a.node.clone(),
            kind: a.kind.into(),
            size: a.size,
            sha256: a.sha256.clone(),
        }
    }
}

impl From<v2::Artifact> for v1::Artifact {
    fn from(a: v2::Artifact) -> Self {
        (&a).into()
    }
}

impl From<v1_stream::ArtifactRef> for wstream::ArtifactRef {
    fn from(a: v1_stream::ArtifactRef) -> Self {
        wstream::ArtifactRef {
            node: a.node,
            name: a.name,
        }
    }
}

/// A 2.x context as 1.x sees it: the same without `dry-run` (the host never dry-runs a 1.x
/// plugin's commands, so it need not know).
impl From<&v2::Context> for v1::Context {
    fn from(c: &v2::Context) -> Self {
        let setting = |s: &v2::Setting| v1::Setting {
            key: s.key.clone(),
            value: s.value.clone(),
        };
        v1::Context {
            deployment: c.deployment.clone(),
            run_id: c.run_id.clone(),
            nodes: c
                .nodes
                .iter()
                .map(|n| v1::Node {
                    name: n.name.clone(),
                    address: n.address.clone(),
                    roles: n.roles.clone(),
                })
                .collect(),
            settings: c.settings.iter().map(setting).collect(),
            artifacts: c.artifacts.iter().map(Into::into).collect(),
            records: c.records.iter().map(setting).collect(),
            target_root: c.target_root.clone(),
            selection: c.selection.clone(),
        }
    }
}

/// A 1.x plugin's description in 2.x terms: each declared command changes state.
impl From<v1::PluginInfo> for v2::PluginInfo {
    fn from(i: v1::PluginInfo) -> Self {
        v2::PluginInfo {
            name: i.name,
            version: i.version,
            description: i.description,
            operations: i.operations.into(),
            roles: i.roles,
            settings: i
                .settings
                .into_iter()
                .map(|s| v2::SettingSpec {
                    key: s.key,
                    description: s.description,
                    default_value: s.default_value,
                    multiple: s.multiple,
                })
                .collect(),
            after: i.after,
            before: i.before,
            capabilities: v2::Capabilities {
                commands: i
                    .capabilities
                    .commands
                    .into_iter()
                    .map(|c| v2::CommandPattern {
                        program: c.program,
                        args: c.args,
                        effect: v2::Effect::Changes,
                    })
                    .collect(),
                paths: i.capabilities.paths,
            },
        }
    }
}

/// 1.x operation flags as 2.x ones.
impl From<v1::Operations> for v2::Operations {
    fn from(o: v1::Operations) -> Self {
        let mut out = v2::Operations::empty();
        for (old, new) in [
            (v1::Operations::BACKUP, v2::Operations::BACKUP),
            (v1::Operations::RESTORE, v2::Operations::RESTORE),
            (v1::Operations::VALIDATE, v2::Operations::VALIDATE),
        ] {
            if o.contains(old) {
                out |= new;
            }
        }
        out
    }
}

/// A 1.x plugin error as a 2.x one.
impl From<v1::PluginError> for v2::PluginError {
    fn from(e: v1::PluginError) -> Self {
        match e {
            v1::PluginError::InvalidSettings(m) => v2::PluginError::InvalidSettings(m),
            v1::PluginError::Precondition(m) => v2::PluginError::Precondition(m),
            v1::PluginError::CommandFailed(m) => v2::PluginError::CommandFailed(m),
            v1::PluginError::Unsupported(m) => v2::PluginError::Unsupported(m),
            v1::PluginError::Other(m) => v2::PluginError::Other(m),
        }
    }
}

/// A 1.x backup report as a 2.x one.
impl From<v1::BackupReport> for v2::BackupReport {
    fn from(r: v1::BackupReport) -> Self {
        v2::BackupReport {
            records: r
                .records
                .into_iter()
                .map(|s| v2::Setting {
                    key: s.key,
                    value: s.value,
                })
                .collect(),
        }
    }
}

/// A 1.x check as a 2.x one.
impl From<v1::Check> for v2::Check {
    fn from(c: v1::Check) -> Self {
        v2::Check {
            node: c.node,
            name: c.name,
            ok: c.ok,
            detail: c.detail,
        }
    }
}
