//! The glue between the WIT bindings and the SDK's types; compiled for wasm32 only.
//! Nothing here is for plugin authors: [`crate::export_plugin!`] uses it.

#![allow(missing_docs)]

use crate::Plugin;
use crate::context::{Context, Host};
use crate::types::*;

wit_bindgen::generate!({
    path: "../wit",
    world: "plugin",
    pub_export_macro: true,
    export_macro_name: "__export_coffer_world",
    default_bindings_module: "coffer_sdk::__private",
});

pub use self::__export_coffer_world as export_world;
use self::coffer::plugin::{
    container as wcontainer, exec as wexec, log as wlog, stream as wstream, types as w,
    undo as wundo,
};
use self::exports::coffer::plugin::handler as wh;

pub use self::exports::coffer::plugin::compat::Guest as CompatGuest;
pub use self::exports::coffer::plugin::drill::Guest as DrillGuest;
pub use self::exports::coffer::plugin::fan_out::Guest as FanOutGuest;
pub use self::exports::coffer::plugin::presets::Guest as PresetsGuest;
pub use self::exports::coffer::plugin::scope::Guest as ScopeGuest;
pub use wh::Guest;

/// The real host, reached through the component's imports.
struct WitHost;

impl Host for WitHost {
    fn exec(&self, cmd: &Command) -> Result<Output, ExecError> {
        let c = w::Command {
            node: cmd.node.clone(),
            argv: cmd.argv.clone(),
            stdin: cmd.stdin.clone(),
            timeout_ms: cmd.timeout.map(|t| t.as_millis() as u64),
        };
        let ran = if cmd.outside {
            wcontainer::run_outside(&c)
        } else {
            wexec::run(&c)
        };
        ran.map(|o| Output {
            exit_code: o.exit_code,
            stdout: o.stdout,
            stderr: o.stderr,
        })
        .map_err(exec_error)
    }

    fn capture(&self, node: &str, argv: &[String], name: &str) -> Result<Artifact, StreamError> {
        wstream::capture(node, argv, name)
            .map(artifact)
            .map_err(stream_error)
    }

    fn capture_paths(
        &self,
        node: &str,
        paths: &PathSet,
        name: &str,
    ) -> Result<Artifact, StreamError> {
        let set = wstream::PathSet {
            paths: paths.paths.clone(),
            excludes: paths.excludes.clone(),
        };
        wstream::capture_paths(node, &set, name)
            .map(artifact)
            .map_err(stream_error)
    }

    fn feed(&self, a: &ArtifactRef, node: &str, argv: &[String]) -> Result<(), StreamError> {
        wstream::feed(&artifact_ref(a), node, argv).map_err(stream_error)
    }

    fn restore_paths(
        &self,
        a: &ArtifactRef,
        node: &str,
        target: &str,
        select: &[String],
    ) -> Result<(), StreamError> {
        wstream::restore_paths(&artifact_ref(a), node, target, select).map_err(stream_error)
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Debug => wlog::Level::Debug,
            Level::Info => wlog::Level::Info,
            Level::Warn => wlog::Level::Warn,
            Level::Error => wlog::Level::Error,
        };
        wlog::log(level, message);
    }

    fn progress(&self, step: &str, done: u64, total: Option<u64>) {
        wlog::progress(step, done, total);
    }

    fn undo_push(&self, node: &str, argv: &[String], what: &str) -> Result<u64, ExecError> {
        wundo::push(node, argv, what).map_err(exec_error)
    }

    fn undo_release(&self, id: u64) {
        wundo::release(id);
    }

    fn container(&self, node: &str) -> Option<Container> {
        wcontainer::on_node(node).map(|c| Container {
            runtime: c.runtime,
            name: c.name,
        })
    }

    fn undo_push_outside(&self, node: &str, argv: &[String], what: &str) -> Result<u64, ExecError> {
        wcontainer::push_undo_outside(node, argv, what).map_err(exec_error)
    }
}

fn artifact_ref(a: &ArtifactRef) -> wstream::ArtifactRef {
    wstream::ArtifactRef {
        node: a.node.clone(),
        name: a.name.clone(),
    }
}

fn artifact(a: w::Artifact) -> Artifact {
    Artifact {
        name: a.name,
        node: a.node,
        kind: match a.kind {
            w::ArtifactKind::Stream => ArtifactKind::Stream,
            w::ArtifactKind::Paths => ArtifactKind::Paths,
        },
        size: a.size,
        sha256: a.sha256,
    }
}

fn exec_error(e: w::ExecError) -> ExecError {
    match e {
        w::ExecError::Refused(m) => ExecError::Refused(m),
        w::ExecError::UnknownNode(m) => ExecError::UnknownNode(m),
        w::ExecError::Unreachable(m) => ExecError::Unreachable(m),
        w::ExecError::SpawnFailed(m) => ExecError::SpawnFailed(m),
        w::ExecError::TimedOut(ms) => ExecError::TimedOut(ms),
        w::ExecError::OutputTooLarge(n) => ExecError::OutputTooLarge(n),
    }
}

fn stream_error(e: w::StreamError) -> StreamError {
    match e {
        w::StreamError::Exec(e) => StreamError::Exec(exec_error(e)),
        w::StreamError::CommandFailed(f) => StreamError::CommandFailed(CommandFailure {
            argv: f.argv,
            exit_code: f.exit_code,
            stderr: f.stderr,
        }),
        w::StreamError::ArtifactExists(m) => StreamError::ArtifactExists(m),
        w::StreamError::ArtifactNotFound(m) => StreamError::ArtifactNotFound(m),
        w::StreamError::Integrity(m) => StreamError::Integrity(m),
        w::StreamError::Repository(m) => StreamError::Repository(m),
    }
}

fn settings(list: Vec<w::Setting>) -> Settings {
    Settings(list.into_iter().map(|s| (s.key, s.value)).collect())
}

fn plugin_error(e: PluginError) -> w::PluginError {
    match e {
        PluginError::InvalidSettings(m) => w::PluginError::InvalidSettings(m),
        PluginError::Precondition(m) => w::PluginError::Precondition(m),
        PluginError::CommandFailed(m) => w::PluginError::CommandFailed(m),
        PluginError::Unsupported(m) => w::PluginError::Unsupported(m),
        PluginError::Other(m) => w::PluginError::Other(m),
    }
}

fn with_context<T>(ctx: w::Context, f: impl FnOnce(&Context<'_>) -> T) -> T {
    let host = WitHost;
    let mut c = Context::new(&host);
    c.deployment = ctx.deployment;
    c.run_id = ctx.run_id;
    c.nodes = ctx
        .nodes
        .into_iter()
        .map(|n| Node {
            name: n.name,
            address: n.address,
            roles: n.roles,
        })
        .collect();
    c.settings = settings(ctx.settings);
    c.artifacts = ctx.artifacts.into_iter().map(artifact).collect();
    c.records = settings(ctx.records);
    c.target_root = ctx.target_root;
    c.selection = ctx.selection;
    c.dry_run = ctx.dry_run;
    f(&c)
}

fn operations(o: Operations) -> w::Operations {
    let mut ops = w::Operations::empty();
    if o.backup {
        ops = ops | w::Operations::BACKUP;
    }
    if o.restore {
        ops = ops | w::Operations::RESTORE;
    }
    if o.validate {
        ops = ops | w::Operations::VALIDATE;
    }
    ops
}

pub fn node_scoped<P: Plugin>() -> w::Operations {
    operations(P::describe().node_scoped)
}

pub fn describe<P: Plugin>() -> w::PluginInfo {
    let i = P::describe();
    let ops = operations(i.operations);
    w::PluginInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        operations: ops,
        roles: i.roles,
        settings: i
            .settings
            .into_iter()
            .map(|s| w::SettingSpec {
                key: s.key,
                description: s.description,
                default_value: s.default_value,
                multiple: s.multiple,
            })
            .collect(),
        after: i.after,
        before: i.before,
        capabilities: w::Capabilities {
            commands: i
                .capabilities
                .commands
                .into_iter()
                .map(|c| w::CommandPattern {
                    program: c.program,
                    args: c.args,
                    effect: match c.effect {
                        Effect::Reads => w::Effect::Reads,
                        Effect::Changes => w::Effect::Changes,
                    },
                })
                .collect(),
            paths: i.capabilities.paths,
        },
    }
}

pub fn backup<P: Plugin>(ctx: w::Context) -> Result<w::BackupReport, w::PluginError> {
    with_context(ctx, |c| P::backup(c))
        .map(|r| w::BackupReport {
            records: r
                .records
                .0
                .into_iter()
                .map(|(key, value)| w::Setting { key, value })
                .collect(),
        })
        .map_err(plugin_error)
}

pub fn restore<P: Plugin>(ctx: w::Context) -> Result<(), w::PluginError> {
    with_context(ctx, |c| P::restore(c)).map_err(plugin_error)
}

pub fn validate<P: Plugin>(ctx: w::Context) -> Result<Vec<w::Check>, w::PluginError> {
    with_context(ctx, |c| P::validate(c))
        .map(checks)
        .map_err(plugin_error)
}

pub fn drill<P: Plugin>(ctx: w::Context) -> Result<Vec<w::Check>, w::PluginError> {
    with_context(ctx, |c| P::drill(c))
        .map(checks)
        .map_err(plugin_error)
}

fn checks(checks: Vec<crate::Check>) -> Vec<w::Check> {
    checks
        .into_iter()
        .map(|c| w::Check {
            node: c.node,
            name: c.name,
            ok: c.ok,
            detail: c.detail,
        })
        .collect()
}
