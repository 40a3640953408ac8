//! The `rabbitmq` plugin, written step by step in the SDK tutorial (`sdk/README.md`) as a
//! service team would: RabbitMQ's definitions — virtual hosts, users (with their password
//! hashes), permissions, exchanges, queues, bindings, policies, parameters — exported with
//! `rabbitmqctl export_definitions -` straight into the repository and imported back with
//! `rabbitmqctl import_definitions` (which reads stdin). Messages are not kept: on an OpenStack
//! control plane they are transient RPC traffic. The tutorial ships outside the `coffer` binary:
//! it is installed like any third-party plugin.

use coffer_sdk::*;

/// The definitions artifact (JSON).
pub const DEFINITIONS: &str = "definitions.json";
/// Record: `kind \t vhost \t name` of every vhost, user, queue and exchange at backup time.
pub const OBJECT: &str = "object";

/// The plugin.
pub struct Rabbitmq;

/// The kinds of objects recorded and checked: (kind, `rabbitmqctl` list command, per vhost).
const KINDS: &[(&str, &str, bool)] = &[
    ("vhost", "list_vhosts", false),
    ("user", "list_users", false),
    ("queue", "list_queues", true),
    ("exchange", "list_exchanges", true),
];

/// `rabbitmqctl -q --no-table-headers LIST [-p VHOST] [name]` on `node`: the names (the first
/// column; `list_users` takes no column list).
fn names(
    ctx: &Context<'_>,
    node: &str,
    list: &str,
    vhost: Option<&str>,
) -> Result<Vec<String>, PluginError> {
    let mut cmd = Command::on(node, "rabbitmqctl").args(["-q", "--no-table-headers", list]);
    if let Some(v) = vhost {
        cmd = cmd.args(["-p", v]);
    }
    if list != "list_users" {
        cmd = cmd.arg("name");
    }
    let out = ctx.run_ok(&cmd)?;
    Ok(out
        .stdout_text()
        .lines()
        .filter_map(|l| l.split('\t').next())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect())
}

/// Every object on `node` as `kind \t vhost \t name`, sorted.
fn objects(ctx: &Context<'_>, node: &str) -> Result<Vec<String>, PluginError> {
    let vhosts = names(ctx, node, "list_vhosts", None)?;
    let mut all = Vec::new();
    for (kind, list, per_vhost) in KINDS {
        if *per_vhost {
            for v in &vhosts {
                for n in names(ctx, node, list, Some(v))? {
                    all.push(format!("{kind}\t{v}\t{n}"));
                }
            }
        } else {
            for n in names(ctx, node, list, None)? {
                all.push(format!("{kind}\t\t{n}"));
            }
        }
    }
    all.sort();
    Ok(all)
}

/// The first node whose broker answers; the definitions are the cluster's, not a node's.
fn broker<'c>(ctx: &'c Context<'_>) -> Result<&'c str, PluginError> {
    let mut errors = Vec::new();
    for node in &ctx.nodes {
        match names(ctx, &node.name, "list_vhosts", None) {
            Ok(_) => return Ok(&node.name),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(PluginError::Precondition(format!(
        "no RabbitMQ broker answers (is rabbitmq-server running?): {}",
        errors.join("; ")
    )))
}

/// The recorded objects missing on `node` now.
fn missing(ctx: &Context<'_>, node: &str) -> Result<Vec<String>, PluginError> {
    let now = objects(ctx, node)?;
    Ok(ctx
        .records
        .all(OBJECT)
        .into_iter()
        .filter(|o| !now.iter().any(|n| n == o))
        .map(str::to_string)
        .collect())
}

impl Plugin for Rabbitmq {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "rabbitmq",
            env!("CARGO_PKG_VERSION"),
            "RabbitMQ definitions (vhosts, users, permissions, exchanges, queues, bindings, \
             policies): exported from one broker, imported back, checked object by object. \
             Messages are not kept.",
        )
        .roles(&["controller", "rabbitmq"])
        .setting(
            "wait-seconds",
            "How long to wait for an import to be applied",
            Some("60"),
        )
        .reads("rabbitmqctl", &["export_definitions", "-"])
        .command("rabbitmqctl", &["import_definitions"])
        .reads("rabbitmqctl", &["-q", "--no-table-headers", "list_*", "**"])
        .reads("sleep", &["1"])
    }

    fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
        let n = broker(ctx)?;
        let artifact = ctx.capture(
            &Command::on(n, "rabbitmqctl").args(["export_definitions", "-"]),
            DEFINITIONS,
        )?;
        let mut report = BackupReport::default();
        let all = objects(ctx, n)?;
        ctx.info(format!(
            "{n}: definitions ({} bytes, {} vhosts/users/queues/exchanges)",
            artifact.size,
            all.len()
        ));
        for o in all {
            report.records.push(OBJECT, o);
        }
        Ok(report)
    }

    fn restore(ctx: &Context<'_>) -> Result<(), PluginError> {
        let n = broker(ctx)?;
        let definitions = ctx
            .artifacts
            .iter()
            .find(|a| a.name == DEFINITIONS)
            .ok_or_else(|| {
                PluginError::Precondition(format!("no {DEFINITIONS} in the snapshot"))
            })?;
        // Reads stdin without a path argument; merges into what the broker has.
        ctx.feed(
            &definitions.reference(),
            &Command::on(n, "rabbitmqctl").arg("import_definitions"),
        )?;
        // In a dry run nothing was imported: nothing to wait for.
        if ctx.dry_run {
            return Ok(());
        }
        // The import is applied asynchronously: wait until every recorded object is there.
        let wait: u64 = ctx.settings.parse_or("wait-seconds", 60)?;
        for _ in 0..wait {
            let left = missing(ctx, n)?;
            if left.is_empty() {
                ctx.info(format!(
                    "{n}: definitions imported; every recorded object is back"
                ));
                return Ok(());
            }
            ctx.run_ok(&Command::on(n, "sleep").arg("1"))?;
        }
        let left = missing(ctx, n)?;
        if left.is_empty() {
            return Ok(());
        }
        Err(PluginError::CommandFailed(format!(
            "{n}: after {wait}s of import, still missing: {}",
            left.join(", ").replace('\t', "/")
        )))
    }

    fn validate(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        let n = broker(ctx)?;
        let left = missing(ctx, n)?;
        let mut checks = Vec::new();
        for (kind, _, _) in KINDS {
            let gone: Vec<String> = left
                .iter()
                .filter(|o| o.starts_with(&format!("{kind}\t")))
                .map(|o| {
                    o.split_once('\t')
                        .map_or("", |(_, rest)| rest)
                        .replace('\t', "/")
                })
                .collect();
            let recorded = ctx
                .records
                .all(OBJECT)
                .iter()
                .filter(|o| o.starts_with(&format!("{kind}\t")))
                .count();
            checks.push(Check::new(
                n,
                &format!("{kind}s"),
                gone.is_empty(),
                if gone.is_empty() {
                    format!("all {recorded} present")
                } else {
                    format!("missing: {}", gone.join(", "))
                },
            ));
        }
        Ok(checks)
    }
}

export_plugin!(Rabbitmq);

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_sdk::testing::{Call, Harness, Reply};

    fn broker_with(queues: &str) -> Harness {
        Harness::new()
            .node("controller-0", &["controller"])
            .reply(
                &["rabbitmqctl", "-q", "--no-table-headers", "list_vhosts"],
                Reply::stdout("/\nnova\n"),
            )
            .reply(
                &["rabbitmqctl", "-q", "--no-table-headers", "list_users"],
                Reply::stdout("guest\n"),
            )
            .reply(
                &[
                    "rabbitmqctl",
                    "-q",
                    "--no-table-headers",
                    "list_queues",
                    "-p",
                    "nova",
                ],
                Reply::stdout(queues),
            )
            .reply(
                &["rabbitmqctl", "-q", "--no-table-headers", "list_queues"],
                Reply::stdout(""),
            )
            .reply(
                &["rabbitmqctl", "-q", "--no-table-headers", "list_exchanges"],
                Reply::stdout(""),
            )
            .reply(
                &["rabbitmqctl", "export_definitions"],
                Reply::stdout("{\"users\":[]}"),
            )
    }

    #[test]
    fn backup_exports_the_definitions_and_records_every_object() {
        let h = broker_with("conductor\nscheduler\n");
        let report = h.backup::<Rabbitmq>().unwrap();
        assert_eq!(
            h.artifact_bytes("controller-0", DEFINITIONS).unwrap(),
            b"{\"users\":[]}"
        );
        let objects = report.records.all(OBJECT);
        assert!(objects.contains(&"queue\tnova\tconductor"), "{objects:?}");
        assert!(objects.contains(&"vhost\t\tnova"), "{objects:?}");
    }

    #[test]
    fn restore_imports_from_stdin_and_fails_naming_what_never_came_back() {
        let h = broker_with("scheduler\n")
            .setting("wait-seconds", "2")
            .record(OBJECT, "queue\tnova\tconductor")
            .artifact("controller-0", DEFINITIONS, ArtifactKind::Stream, b"{}");
        let err = h.restore::<Rabbitmq>().unwrap_err().to_string();
        assert!(err.contains("still missing: queue/nova/conductor"), "{err}");
        assert!(h.calls().iter().any(|c| matches!(c,
            Call::Feed { argv, .. } if argv == &["rabbitmqctl", "import_definitions"])));
        let checks = h.validate::<Rabbitmq>().unwrap();
        assert!(
            checks
                .iter()
                .any(|c| !c.ok && c.detail.contains("nova/conductor"))
        );
    }

    #[test]
    fn a_broker_that_does_not_answer_is_named() {
        let h = Harness::new().node("controller-0", &["controller"]).reply(
            &["rabbitmqctl"],
            Reply::fail(69, "Error: unable to perform an operation on node"),
        );
        let err = h.backup::<Rabbitmq>().unwrap_err().to_string();
        assert!(err.contains("no RabbitMQ broker answers"), "{err}");
    }
}
