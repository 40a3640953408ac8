//! Contract 1.x, frozen at 1.3 (`wit/v1.3/`): host-side bindings, and the adapter that serves
//! plugins built against it on a host that speaks 2.x.
//!
//! 2.0 changed two records: `command-pattern` gained `effect` and `context` gained `dry-run`.
//! Every import kept its types, so a 1.x plugin's imports (`exec`, `stream`, `log`, `undo` at
//! `@1.x`) are served by the 2.x implementation itself, registered under the 1.x names
//! (components are typed structurally: a 1.x `command` and a 2.x `command` are the same type).
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

use wasmtime::component::Linker;

use self::coffer::plugin::types as v1;
use super::v2::coffer::plugin::{exec, log, stream as wstream, undo};
use super::v2::types as v2;
use crate::capabilities::HostState;

/// The newest 1.x contract: the adapter serves 1.0 up to this one.
pub const FROZEN: &str = "1.3.0";

/// Register the 1.x imports (`@1.3.0`, which the linker's semver matching also gives to 1.0
/// to 1.2 plugins), each served by the 2.x host function.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let name = |i: &str| format!("coffer:plugin/{i}@{FROZEN}");
    linker.instance(&name("types"))?;
    linker.instance(&name("exec"))?.func_wrap_async(
        "run",
        |mut store, (cmd,): (v2::Command,)| {
            Box::new(async move {
                let r = exec::Host::run(store.data_mut(), cmd).await?;
                Ok((r,))
            })
        },
    )?;
    let mut stream = linker.instance(&name("stream"))?;
    stream.func_wrap_async(
        "capture",
        |mut store, (node, argv, name): (String, Vec<String>, String)| {
            Box::new(async move {
                let r = wstream::Host::capture(store.data_mut(), node, argv, name).await?;
                Ok((r,))
            })
        },
    )?;
    stream.func_wrap_async(
        "capture-paths",
        |mut store, (node, paths, name): (String, wstream::PathSet, String)| {
            Box::new(async move {
                let r = wstream::Host::capture_paths(store.data_mut(), node, paths, name).await?;
                Ok((r,))
            })
        },
    )?;
    stream.func_wrap_async(
        "feed",
        |mut store, (artifact, node, argv): (wstream::ArtifactRef, String, Vec<String>)| {
            Box::new(async move {
                let r = wstream::Host::feed(store.data_mut(), artifact, node, argv).await?;
                Ok((r,))
            })
        },
    )?;
    stream.func_wrap_async(
        "restore-paths",
        |mut store,
         (artifact, node, target, select): (
            wstream::ArtifactRef,
            String,
            String,
            Vec<String>,
        )| {
            Box::new(async move {
                let r = wstream::Host::restore_paths(store.data_mut(), artifact, node, target, select)
                    .await?;
                Ok((r,))
            })
        },
    )?;
    let mut log = linker.instance(&name("log"))?;
    log.func_wrap_async(
        "log",
        |mut store, (level, message): (log::Level, String)| {
            Box::new(async move { log::Host::log(store.data_mut(), level, message).await })
        },
    )?;
    log.func_wrap_async(
        "progress",
        |mut store, (step, done, total): (String, u64, Option<u64>)| {
            Box::new(async move { log::Host::progress(store.data_mut(), step, done, total).await })
        },
    )?;
    let mut undo = linker.instance(&name("undo"))?;
    undo.func_wrap_async(
        "push",
        |mut store, (node, argv, what): (String, Vec<String>, String)| {
            Box::new(async move {
                let r = undo::Host::push(store.data_mut(), node, argv, what).await?;
                Ok((r,))
            })
        },
    )?;
    undo.func_wrap_async("release", |mut store, (id,): (u64,)| {
        Box::new(async move { undo::Host::release(store.data_mut(), id).await })
    })?;
    Ok(())
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
            artifacts: c
                .artifacts
                .iter()
                .map(|a| v1::Artifact {
                    name: a.name.clone(),
                    node: a.node.clone(),
                    kind: match a.kind {
                        v2::ArtifactKind::Stream => v1::ArtifactKind::Stream,
                        v2::ArtifactKind::Paths => v1::ArtifactKind::Paths,
                    },
                    size: a.size,
                    sha256: a.sha256.clone(),
                })
                .collect(),
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
