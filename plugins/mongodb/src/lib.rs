//! The `mongodb` plugin. Backup: `mongodump --archive` streamed into the repository — on a
//! replica set with `--oplog`, from a secondary that is caught up (lag at most `max-lag-seconds`)
//! or else the primary — and the document count of every collection recorded. Restore:
//! `mongorestore --archive --drop` (with `--oplogReplay` for a replica-set dump) on the primary.
//! Validate: the counts.
//!
//! Credentials (`user`, `password`) never go in argv: the tools get a 0600 `--config` file
//! written through stdin and removed afterwards (its removal registered with the host); mongosh
//! reads the connection string from stdin.
//!
//! No MongoDB server can be installed on the machines this is developed on: the command plan is
//! tested with the SDK's harness only.

use coffer_sdk::*;

/// The archive artifact.
pub const ARCHIVE: &str = "mongodump.archive";
/// Record: `db.collection \t count`.
pub const COUNT: &str = "count";
/// Record: the member dumped from, and whether the dump carries an oplog.
pub const SOURCE: &str = "source";

const WRITE_PRIVATE: &str = "umask 077 && cat > \"$1\"";

/// Prints `{"set": name|null, "primary": bool, "lag": seconds|null}` for the member.
const HELLO: &str = "const cfg = JSON.parse(require('fs').readFileSync(0, 'utf8')); \
db = connect(cfg.uri); const h = db.hello(); let lag = null; \
if (h.setName && h.secondary) { const s = rs.status(); \
const p = s.members.find(m => m.stateStr === 'PRIMARY'); const me = s.members.find(m => m.self); \
if (p && me) lag = (p.optimeDate - me.optimeDate) / 1000; } \
print(JSON.stringify({set: h.setName || null, primary: !!h.isWritablePrimary, lag: lag}));";

/// Prints one `db.collection<TAB>count` line per user collection.
const COUNTS: &str = "const cfg = JSON.parse(require('fs').readFileSync(0, 'utf8')); \
db = connect(cfg.uri); for (const d of db.adminCommand({listDatabases: 1}).databases) { \
if (['admin', 'local', 'config'].includes(d.name)) continue; const x = db.getSiblingDB(d.name); \
for (const c of x.getCollectionNames().sort()) { if (c.startsWith('system.')) continue; \
print(d.name + '.' + c + '\\t' + x.getCollection(c).countDocuments({})); } }";

/// The mongodb plugin.
pub struct Mongodb;

/// What a member says about itself.
#[derive(Debug, PartialEq)]
struct Hello {
    set: Option<String>,
    primary: bool,
    lag: Option<f64>,
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn uri(ctx: &Context<'_>, node: &Node) -> String {
    let host = ctx
        .settings
        .get("host")
        .map(str::to_string)
        .unwrap_or_else(|| {
            if node.address == "local" {
                "127.0.0.1".into()
            } else {
                node.address.clone()
            }
        });
    let port = ctx.settings.get("port").unwrap_or("27017");
    match (ctx.settings.get("user"), ctx.settings.get("password")) {
        (Some(u), Some(p)) => format!(
            "mongodb://{}:{}@{host}:{port}/?authSource=admin",
            percent(u),
            percent(p)
        ),
        _ => format!("mongodb://{host}:{port}/"),
    }
}

/// `mongosh` running `script` on `node`, the connection string on stdin.
fn mongosh(ctx: &Context<'_>, node: &Node, script: &str) -> Result<String, PluginError> {
    let stdin = format!("{{\"uri\": {:?}}}", uri(ctx, node));
    Ok(ctx
        .run_ok(
            &Command::on(&node.name, "mongosh")
                .args(["--quiet", "--nodb", "--norc", "--eval", script])
                .stdin(stdin),
        )?
        .stdout_text())
}

fn hello(ctx: &Context<'_>, node: &Node) -> Result<Hello, PluginError> {
    let text = mongosh(ctx, node, HELLO)?;
    let field = |name: &str| {
        let key = format!("\"{name}\":");
        text.find(&key).map(|i| {
            let rest = text[i + key.len()..].trim_start();
            rest[..rest.find([',', '}']).unwrap_or(rest.len())]
                .trim()
                .to_string()
        })
    };
    Ok(Hello {
        set: field("set")
            .filter(|s| s != "null")
            .map(|s| s.trim_matches('"').to_string()),
        primary: field("primary").as_deref() == Some("true"),
        lag: field("lag").and_then(|l| l.parse().ok()),
    })
}

fn counts(ctx: &Context<'_>, node: &Node) -> Result<Vec<(String, String)>, PluginError> {
    Ok(mongosh(ctx, node, COUNTS)?
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(ns, n)| (ns.to_string(), n.trim().to_string()))
        .collect())
}

/// Run `f` with the tools' `--config` file on `node`.
fn with_config<T>(
    ctx: &Context<'_>,
    node: &Node,
    f: impl FnOnce(&str) -> Result<T, PluginError>,
) -> Result<T, PluginError> {
    let run = ctx.run_slug();
    let file = format!("/run/coffer-mongo-{run}.yaml");
    let remove = Command::on(&node.name, "rm").args(["-f", &file]);
    let undo = ctx.undo_with(&remove, "remove the tools' config file")?;
    ctx.run_ok(
        &Command::on(&node.name, "sh")
            .args(["-c", WRITE_PRIVATE, "coffer", &file])
            .stdin(format!("uri: {:?}\n", uri(ctx, node))),
    )?;
    let result = f(&file);
    ctx.run_ok(&remove)?;
    ctx.keep(undo);
    result
}

/// The member to dump from: a caught-up secondary, else the primary (or the only server).
fn choose(ctx: &Context<'_>) -> Result<(Node, bool), PluginError> {
    let max_lag: f64 = ctx.settings.parse_or("max-lag-seconds", 10.0)?;
    let mut primary = None;
    let mut why = Vec::new();
    for node in &ctx.nodes {
        match hello(ctx, node) {
            Ok(Hello { set: None, .. }) => return Ok((node.clone(), false)),
            Ok(Hello { primary: true, .. }) => primary = Some(node.clone()),
            Ok(Hello { lag: Some(l), .. }) if l <= max_lag => return Ok((node.clone(), true)),
            Ok(h) => why.push(format!("{}: lag {:?}s", node.name, h.lag)),
            Err(e) => why.push(format!("{}: {e}", node.name)),
        }
    }
    match primary {
        Some(p) => {
            if !why.is_empty() {
                ctx.warn(format!(
                    "no secondary is caught up ({}); dumping from the primary {}",
                    why.join("; "),
                    p.name
                ));
            }
            Ok((p, true))
        }
        None => Err(PluginError::Precondition(format!(
            "no primary and no caught-up secondary ({})",
            why.join("; ")
        ))),
    }
}

fn primary(ctx: &Context<'_>) -> Result<Node, PluginError> {
    for node in &ctx.nodes {
        if let Ok(h) = hello(ctx, node)
            && (h.primary || h.set.is_none())
        {
            return Ok(node.clone());
        }
    }
    Err(PluginError::Precondition("no primary answers".into()))
}

impl Plugin for Mongodb {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "mongodb",
            env!("CARGO_PKG_VERSION"),
            "MongoDB: mongodump --archive (with --oplog on a replica set, from a caught-up \
             secondary or the primary) streamed into the repository; mongorestore --archive \
             --drop on the primary; validate by collection counts. Command plan tested with \
             the SDK harness only (no MongoDB server available to the test suite).",
        )
        .roles(&["mongodb"])
        .setting(
            "host",
            "Address mongod listens on (default: the node's address)",
            None,
        )
        .setting("port", "Its port", Some("27017"))
        .setting("user", "User (with `password`)", None)
        .setting(
            "password",
            "Password; reaches the node only through stdin",
            None,
        )
        .setting(
            "max-lag-seconds",
            "Most a secondary may lag to be dumped from",
            Some("10"),
        )
        // Its scripts only read: `hello` and the document counts.
        .reads("mongosh", &["--quiet", "--nodb", "--norc", "--eval", "*"])
        .reads(
            "mongodump",
            &["--config=/run/coffer-mongo-*.yaml", "--archive", "**"],
        )
        .command(
            "mongorestore",
            &[
                "--config=/run/coffer-mongo-*.yaml",
                "--archive",
                "--drop",
                "**",
            ],
        )
        .command(
            "sh",
            &[
                "-c",
                &literal(WRITE_PRIVATE),
                "coffer",
                "/run/coffer-mongo-*.yaml",
            ],
        )
        .command("rm", &["-f", "/run/coffer-mongo-*.yaml"])
    }

    fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
        let (node, oplog) = choose(ctx)?;
        let mut report = BackupReport::default();
        for (ns, n) in counts(ctx, &node)? {
            report.records.push(COUNT, format!("{ns}\t{n}"));
        }
        let a = with_config(ctx, &node, |config| {
            let mut dump = Command::on(&node.name, "mongodump")
                .args([format!("--config={config}"), "--archive".into()]);
            if oplog {
                dump = dump.arg("--oplog");
            }
            ctx.capture(&dump, ARCHIVE)
        })?;
        report.records.push(
            SOURCE,
            format!(
                "{}\t{}",
                node.name,
                if oplog { "oplog" } else { "no-oplog" }
            ),
        );
        ctx.info(format!("{}: archive of {} bytes", node.name, a.size));
        Ok(report)
    }

    fn restore(ctx: &Context<'_>) -> Result<(), PluginError> {
        let archive = ctx
            .artifacts
            .iter()
            .find(|a| a.name == ARCHIVE)
            .ok_or_else(|| PluginError::Precondition(format!("the snapshot has no {ARCHIVE}")))?;
        let oplog = ctx
            .records
            .get(SOURCE)
            .is_some_and(|s| s.ends_with("\toplog"));
        let target = primary(ctx)?;
        with_config(ctx, &target, |config| {
            let mut cmd = Command::on(&target.name, "mongorestore").args([
                format!("--config={config}"),
                "--archive".into(),
                "--drop".into(),
            ]);
            if oplog {
                cmd = cmd.arg("--oplogReplay");
            }
            ctx.feed(&archive.reference(), &cmd)
        })?;
        ctx.info(format!("{}: archive restored", target.name));
        Ok(())
    }

    fn validate(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        let target = primary(ctx)?;
        let now = counts(ctx, &target)?;
        Ok(ctx
            .records
            .all(COUNT)
            .into_iter()
            .filter_map(|r| r.split_once('\t'))
            .map(|(ns, want)| {
                let got = now
                    .iter()
                    .find(|(n, _)| n == ns)
                    .map(|(_, c)| c.as_str())
                    .unwrap_or("absent");
                Check::new(
                    &target.name,
                    &format!("documents in {ns}"),
                    got == want,
                    format!("{got}, backup had {want}"),
                )
            })
            .collect())
    }
}

export_plugin!(Mongodb);

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_sdk::testing::{Call, Harness, Reply};

    const PW: &str = "m0ngo:p@ss";

    fn hello_reply(primary: bool, lag: Option<f64>) -> Reply {
        Reply::stdout(format!(
            "{{\"set\":\"rs0\",\"primary\":{primary},\"lag\":{}}}\n",
            lag.map(|l| l.to_string()).unwrap_or("null".into())
        ))
    }

    fn replica_set(lag1: f64, lag2: f64) -> Harness {
        Harness::new()
            .node("m0", &["mongodb"])
            .node("m1", &["mongodb"])
            .node("m2", &["mongodb"])
            .setting("user", "backup")
            .setting("password", PW)
            .reply_on(
                "m0",
                &["mongosh", "--quiet", "--nodb", "--norc", "--eval", HELLO],
                hello_reply(true, None),
            )
            .reply_on(
                "m1",
                &["mongosh", "--quiet", "--nodb", "--norc", "--eval", HELLO],
                hello_reply(false, Some(lag1)),
            )
            .reply_on(
                "m2",
                &["mongosh", "--quiet", "--nodb", "--norc", "--eval", HELLO],
                hello_reply(false, Some(lag2)),
            )
            .reply(
                &["mongosh", "--quiet", "--nodb", "--norc", "--eval", COUNTS],
                Reply::stdout("nova.servers\t1200\nkeystone.users\t40\n"),
            )
            .reply(&["mongodump"], Reply::stdout("ARCHIVE"))
    }

    fn execs(h: &Harness) -> Vec<Command> {
        h.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Exec(cmd) => Some(cmd),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn dumps_with_oplog_from_a_caught_up_secondary_and_keeps_the_password_out_of_argv() {
        let h = replica_set(120.0, 2.0);
        let report = h.backup::<Mongodb>().unwrap();
        let capture = h.calls().into_iter().find_map(|c| match c {
            Call::Capture { node, argv, name } => Some((node, argv, name)),
            _ => None,
        });
        let (node, argv, name) = capture.expect("one capture");
        assert_eq!(node, "m2", "m1 lags 120 s, m2 2 s");
        assert_eq!(name, ARCHIVE);
        assert!(argv[1].starts_with("--config=/run/coffer-mongo-"));
        assert_eq!(&argv[2..], ["--archive", "--oplog"]);
        assert_eq!(h.artifact_bytes("m2", ARCHIVE).unwrap(), b"ARCHIVE");
        for cmd in execs(&h) {
            assert!(
                !cmd.argv.concat().contains("p@ss"),
                "password in argv: {:?}",
                cmd.argv
            );
        }
        let config = execs(&h).into_iter().find(|c| c.argv[0] == "sh").unwrap();
        assert_eq!(
            String::from_utf8(config.stdin).unwrap(),
            "uri: \"mongodb://backup:m0ngo%3Ap%40ss@m2.test:27017/?authSource=admin\"\n"
        );
        assert!(
            h.pending_undo().is_empty(),
            "the config file is removed and its undo kept"
        );
        assert!(execs(&h).iter().any(|c| c.argv[0] == "rm"));
        assert_eq!(
            report.records.all(COUNT),
            ["nova.servers\t1200", "keystone.users\t40"]
        );
        assert_eq!(report.records.get(SOURCE), Some("m2\toplog"));
    }

    #[test]
    fn without_a_caught_up_secondary_the_primary_is_used_and_said() {
        let h = replica_set(120.0, 300.0);
        h.backup::<Mongodb>().unwrap();
        assert!(
            h.calls()
                .iter()
                .any(|c| matches!(c, Call::Capture { node, .. } if node == "m0"))
        );
        assert!(
            h.logs()
                .iter()
                .any(|(_, m)| m.contains("no secondary is caught up"))
        );
    }

    #[test]
    fn restore_replays_the_oplog_on_the_primary_and_validate_compares_counts() {
        let h = replica_set(1.0, 1.0)
            .record(SOURCE, "m1\toplog")
            .record(COUNT, "nova.servers\t1200")
            .record(COUNT, "keystone.users\t41")
            .artifact("m1", ARCHIVE, ArtifactKind::Stream, b"ARCHIVE");
        h.restore::<Mongodb>().unwrap();
        let feed = h.calls().into_iter().find_map(|c| match c {
            Call::Feed { node, argv, .. } => Some((node, argv)),
            _ => None,
        });
        let (node, argv) = feed.expect("one feed");
        assert_eq!(node, "m0");
        assert_eq!(&argv[2..], ["--archive", "--drop", "--oplogReplay"]);
        let checks = h.validate::<Mongodb>().unwrap();
        let failed: Vec<_> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failed, ["documents in keystone.users"]);
    }
}
