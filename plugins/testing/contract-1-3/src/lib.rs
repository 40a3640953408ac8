//! A plugin built against `coffer:plugin@1.3.0`, the last 1.x (`wit/v1.3/`, frozen when 2.0 was
//! published), with wit-bindgen directly and no SDK: it uses what 1.1 to 1.3 added — the
//! `fan-out` and `compat` exports and the `undo` import — so the test suite proves each goes
//! through the host's 1.x adapter. It backs up `echo` output of each node; with setting
//! `fail = yes` it registers a reversal (appending to `DIR/undone`) and fails.

#![allow(missing_docs)]

#[cfg(target_arch = "wasm32")]
// The generated export glue is `unsafe` (ABI entry points); nothing hand-written is.
#[allow(unsafe_code)]
mod plugin {
    wit_bindgen::generate!({
        path: "../../../wit/v1.3",
        world: "plugin",
    });

    use self::coffer::plugin::types::{
        BackupReport, Capabilities, Check, CommandPattern, Context, Operations, PluginError,
        PluginInfo, Setting, SettingSpec,
    };
    use self::coffer::plugin::{log, stream, undo};
    use self::exports::coffer::plugin::{compat, fan_out, handler};

    struct Legacy;

    fn setting<'a>(ctx: &'a Context, key: &str) -> Option<&'a str> {
        ctx.settings
            .iter()
            .find(|s| s.key == key)
            .map(|s| s.value.as_str())
    }

    fn pattern(program: &str, args: &[&str]) -> CommandPattern {
        CommandPattern {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    impl handler::Guest for Legacy {
        fn describe() -> PluginInfo {
            PluginInfo {
                name: "legacy13".into(),
                version: "1.3.0".into(),
                description: "Built against contract 1.3.0 (test fixture)".into(),
                operations: Operations::BACKUP | Operations::VALIDATE,
                roles: vec![],
                settings: ["dir", "fail"]
                    .map(|key| SettingSpec {
                        key: key.into(),
                        description: key.into(),
                        default_value: None,
                        multiple: false,
                    })
                    .to_vec(),
                after: vec![],
                before: vec![],
                capabilities: Capabilities {
                    commands: vec![pattern("echo", &["**"]), pattern("sh", &["-c", "**"])],
                    paths: vec![],
                },
            }
        }

        fn backup(ctx: Context) -> Result<BackupReport, PluginError> {
            let mut records = Vec::new();
            for node in &ctx.nodes {
                let mut reversal = None;
                if let Some(dir) = setting(&ctx, "dir") {
                    let argv = [
                        "sh",
                        "-c",
                        "echo reversed >> \"$1\"",
                        "coffer",
                        &format!("{dir}/undone"),
                    ]
                    .map(String::from);
                    reversal = Some(
                        undo::push(&node.name, &argv, "note the reversal")
                            .map_err(|e| PluginError::Other(format!("{e:?}")))?,
                    );
                }
                if setting(&ctx, "fail") == Some("yes") {
                    return Err(PluginError::Other(format!("failing on {}", node.name)));
                }
                let argv = vec!["echo".to_string(), format!("legacy13 on {}", node.name)];
                stream::capture(&node.name, &argv, "legacy13")
                    .map_err(|e| PluginError::CommandFailed(format!("{e:?}")))?;
                if let Some(id) = reversal {
                    undo::release(id);
                }
                records.push(Setting {
                    key: "node".into(),
                    value: node.name.clone(),
                });
            }
            log::log(log::Level::Info, "backed up by a 1.3 plugin");
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
                        .any(|a| a.node == n.name && a.name == "legacy13"),
                    detail: String::new(),
                })
                .collect())
        }
    }

    impl fan_out::Guest for Legacy {
        fn node_scoped() -> Operations {
            Operations::BACKUP | Operations::VALIDATE
        }
    }

    impl compat::Guest for Legacy {
        fn restores() -> String {
            ">=1.0, <2".into()
        }
    }

    export!(Legacy);
}
