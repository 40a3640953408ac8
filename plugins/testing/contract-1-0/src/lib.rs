//! A plugin built against `coffer:plugin@1.0.0` exactly as published (`wit/v1.0/`), with
//! wit-bindgen directly and no SDK: proof that a host serving a later 1.x loads and runs it
//! unchanged. It backs up `echo` output of each node and validates that it is there.

#![allow(missing_docs)]

#[cfg(target_arch = "wasm32")]
// The generated export glue is `unsafe` (ABI entry points); nothing hand-written is.
#[allow(unsafe_code)]
mod plugin {
    wit_bindgen::generate!({
        path: "../../../wit/v1.0",
        world: "plugin",
    });

    use self::coffer::plugin::types::{
        BackupReport, Capabilities, Check, CommandPattern, Context, Operations, PluginError,
        PluginInfo, Setting,
    };
    use self::coffer::plugin::{log, stream};
    use self::exports::coffer::plugin::handler::Guest;

    struct Legacy;

    impl Guest for Legacy {
        fn describe() -> PluginInfo {
            PluginInfo {
                name: "legacy".into(),
                version: "1.0.0".into(),
                description: "Built against contract 1.0.0 (test fixture)".into(),
                operations: Operations::BACKUP | Operations::VALIDATE,
                roles: vec![],
                settings: vec![],
                after: vec![],
                before: vec![],
                capabilities: Capabilities {
                    commands: vec![CommandPattern {
                        program: "echo".into(),
                        args: vec!["**".into()],
                    }],
                    paths: vec![],
                },
            }
        }

        fn backup(ctx: Context) -> Result<BackupReport, PluginError> {
            let mut records = Vec::new();
            for node in &ctx.nodes {
                let argv = vec!["echo".to_string(), format!("legacy on {}", node.name)];
                stream::capture(&node.name, &argv, "legacy")
                    .map_err(|e| PluginError::CommandFailed(format!("{e:?}")))?;
                records.push(Setting {
                    key: "node".into(),
                    value: node.name.clone(),
                });
            }
            log::log(log::Level::Info, "backed up by a 1.0 plugin");
            Ok(BackupReport { records })
        }

        fn restore(_ctx: Context) -> Result<(), PluginError> {
            Err(PluginError::Unsupported("restore".into()))
        }

        fn validate(ctx: Context) -> Result<Vec<Check>, PluginError> {
            Ok(ctx
                .nodes
                .iter()
                .map(|n| Check {
                    node: n.name.clone(),
                    name: "artifact recorded".into(),
                    ok: ctx
                        .artifacts
                        .iter()
                        .any(|a| a.node == n.name && a.name == "legacy"),
                    detail: String::new(),
                })
                .collect())
        }
    }

    export!(Legacy);
}
