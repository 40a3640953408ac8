//! The `mysql` plugin: MariaDB/MySQL on a single node (the undercloud). Backup streams a
//! consistent logical dump (`mysqldump --single-transaction`) and the accounts with their grants
//! (`mysqldump --system=users`) straight into the repository, and records a `CHECKSUM TABLE`
//! of every user table. Restore follows the talk's runbook: stop the server, move the old
//! datadir aside (never deleted), create a new one, start, raise `max_allowed_packet`, import
//! dump and grants; if any of that fails, the old datadir is put back and the server started on
//! it. (`restore-mode = import` imports into the running server instead.) Validate compares the
//! checksums.
//!
//! Credentials come from the node: the client reads root's `~/.my.cnf` (or socket
//! authentication), or the `defaults-file` setting names another option file there. No
//! password ever travels in an argument.

use coffer_sdk::*;

/// The logical dump of every database.
pub const DUMP: &str = "databases.sql";
/// The accounts and their grants.
pub const GRANTS: &str = "grants.sql";
/// Record: `node \t schema.table \t checksum`.
pub const CHECKSUM: &str = "checksum";
/// Schemas that are the server's own.
const SYSTEM_SCHEMAS: &str = "'mysql','information_schema','performance_schema','sys'";

/// The mysql plugin.
pub struct Mysql;

/// A client command on `node`: `program`, then the option file if one is set (it must be the
/// first argument).
fn client(ctx: &Context<'_>, node: &str, program: &str) -> Command {
    let cmd = Command::on(node, program);
    match ctx.settings.get("defaults-file") {
        Some(f) => cmd.arg(format!("--defaults-extra-file={f}")),
        None => cmd,
    }
}

/// Run one SQL statement and return its rows, tab-separated.
fn query(ctx: &Context<'_>, node: &str, sql: &str) -> Result<Vec<Vec<String>>, PluginError> {
    let out = ctx.run_ok(&client(ctx, node, "mysql").args(["-N", "-B"]).stdin(sql))?;
    Ok(out
        .stdout_text()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

/// `schema.table` of every user table.
fn user_tables(ctx: &Context<'_>, node: &str) -> Result<Vec<String>, PluginError> {
    let rows = query(
        ctx,
        node,
        &format!(
            "SELECT CONCAT('`', table_schema, '`.`', table_name, '`') FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ({SYSTEM_SCHEMAS}) \
             ORDER BY 1"
        ),
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect())
}

/// `CHECKSUM TABLE` of `tables`: (table, checksum).
fn checksums(
    ctx: &Context<'_>,
    node: &str,
    tables: &[String],
) -> Result<Vec<(String, String)>, PluginError> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let rows = query(ctx, node, &format!("CHECKSUM TABLE {}", tables.join(", ")))?;
    Ok(tables
        .iter()
        .zip(rows)
        .map(|(t, r)| (t.clone(), r.get(1).cloned().unwrap_or_default()))
        .collect())
}

impl Plugin for Mysql {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "mysql",
            env!("CARGO_PKG_VERSION"),
            "MariaDB/MySQL on one node (the undercloud): a consistent logical dump of every \
             database (routines, events, triggers) and the accounts with their grants, streamed \
             into the repository; restore imports them; validate compares every user table's \
             CHECKSUM TABLE with the backup's.",
        )
        .roles(&["undercloud", "mysql"])
        .setting(
            "datadir",
            "The server's data directory on the node",
            Some("/var/lib/mysql"),
        )
        .setting(
            "service",
            "The systemd unit of the server (TripleO's undercloud: tripleo_mysql)",
            Some("mariadb"),
        )
        .setting(
            "restore-mode",
            "`reinit`: a new datadir, the old one moved aside; `import`: into the running server",
            Some("reinit"),
        )
        .setting(
            "defaults-file",
            "Client option file on the node with the credentials (default: root's ~/.my.cnf, \
             or socket authentication)",
            None,
        )
        .node_scoped(Operations::ALL)
        .command("mysql", &["**"])
        .command("mysqldump", &["**"])
        .command("mysqladmin", &["**"])
        .command("systemctl", &["stop", "*"])
        .command("systemctl", &["start", "*"])
        .command("test", &["-e", "*"])
        .command("mv", &["-T", "*", "*.before-restore-*"])
        .command("mv", &["-T", "*", "*.failed-restore-*"])
        .command("mv", &["-T", "*.before-restore-*", "*"])
        .command(
            "mariadb-install-db",
            &["--user=mysql", "--datadir=*", "--skip-test-db"],
        )
    }

    fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
        let mut report = BackupReport::default();
        for node in &ctx.nodes {
            let n = node.name.as_str();
            let dump = client(ctx, n, "mysqldump").args([
                "--opt",
                "--single-transaction",
                "--routines",
                "--events",
                "--triggers",
                "--all-databases",
                "--ignore-table=mysql.wsrep_streaming_log",
            ]);
            let a = ctx.capture(&dump, DUMP)?;
            ctx.info(format!("{n}: dump of every database, {} bytes", a.size));
            let grants = client(ctx, n, "mysqldump").args(["--system=users", "--insert-ignore"]);
            ctx.capture(&grants, GRANTS)?;
            let tables = user_tables(ctx, n)?;
            for (table, sum) in checksums(ctx, n, &tables)? {
                report
                    .records
                    .push(CHECKSUM, format!("{n}\t{table}\t{sum}"));
            }
            ctx.info(format!("{n}: {} user table(s) checksummed", tables.len()));
        }
        Ok(report)
    }

    fn restore(ctx: &Context<'_>) -> Result<(), PluginError> {
        let mode = ctx.settings.get("restore-mode").unwrap_or("reinit");
        if mode != "reinit" && mode != "import" {
            return Err(PluginError::InvalidSettings(format!(
                "restore-mode `{mode}`: use `reinit` or `import`"
            )));
        }
        for node in &ctx.nodes {
            let n = node.name.as_str();
            let find = |name: &str| {
                ctx.artifacts_of(n).find(|a| a.name == name).ok_or_else(|| {
                    PluginError::Precondition(format!("{n}: the snapshot has no {name}"))
                })
            };
            let (dump, grants) = (find(DUMP)?.reference(), find(GRANTS)?.reference());
            let import = || -> Result<(), PluginError> {
                // A dump holds rows up to the packet limit at backup time; allow the most.
                query(ctx, n, "SET GLOBAL max_allowed_packet = 1073741824")?;
                let client = || client(ctx, n, "mysql").arg("--max-allowed-packet=1G");
                ctx.feed(&dump, &client())?;
                // The dump rewrote the privilege tables; load them before the grants use them.
                query(ctx, n, "FLUSH PRIVILEGES")?;
                ctx.feed(&grants, &client())?;
                query(ctx, n, "FLUSH PRIVILEGES")?;
                Ok(())
            };
            if mode == "import" {
                import()?;
            } else {
                reinit(ctx, n, import)?;
            }
            ctx.info(format!("{n}: databases and grants restored ({mode})"));
        }
        Ok(())
    }

    fn validate(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        let mut checks = Vec::new();
        for node in &ctx.nodes {
            let n = node.name.as_str();
            let alive = ctx
                .run(&client(ctx, n, "mysqladmin").arg("ping"))
                .is_ok_and(|o| o.success());
            checks.push(Check::new(n, "server answers", alive, ""));
            if !alive {
                continue;
            }
            let expected: Vec<(String, String)> = ctx
                .records
                .all(CHECKSUM)
                .iter()
                .filter_map(|r| {
                    let mut f = r.splitn(3, '\t');
                    (f.next()? == n)
                        .then(|| Some((f.next()?.to_string(), f.next()?.to_string())))?
                })
                .collect();
            let tables: Vec<String> = expected.iter().map(|(t, _)| t.clone()).collect();
            let found = checksums(ctx, n, &tables)?;
            for ((table, want), (_, got)) in expected.iter().zip(found) {
                let detail = if &got == want {
                    String::new()
                } else {
                    format!("checksum {got}, backup had {want}")
                };
                checks.push(Check::new(
                    n,
                    &format!("table {table}"),
                    &got == want,
                    detail,
                ));
            }
        }
        Ok(checks)
    }
}

/// The talk's runbook on node `n`: stop, move the datadir aside, create a new one, start, then
/// `import`. On failure after the move, the old datadir is put back and the server started.
fn reinit(
    ctx: &Context<'_>,
    n: &str,
    import: impl FnOnce() -> Result<(), PluginError>,
) -> Result<(), PluginError> {
    let datadir = ctx.settings.get("datadir").unwrap_or("/var/lib/mysql");
    let service = ctx.settings.get("service").unwrap_or("mariadb");
    let aside = format!("{datadir}.before-restore-{}", ctx.run_id);
    let systemctl = |verb: &str| Command::on(n, "systemctl").args([verb, service]);
    ctx.run_ok(&systemctl("stop"))?;
    let had_datadir = ctx
        .run(&Command::on(n, "test").args(["-e", datadir]))
        .map_err(|e| PluginError::CommandFailed(e.to_string()))?
        .success();
    if had_datadir {
        ctx.run_ok(&Command::on(n, "mv").args(["-T", datadir, &aside]))?;
        ctx.info(format!("{n}: the old datadir is kept at {aside}"));
    }
    let fresh = || -> Result<(), PluginError> {
        ctx.run_ok(&Command::on(n, "mariadb-install-db").args([
            "--user=mysql",
            &format!("--datadir={datadir}"),
            "--skip-test-db",
        ]))?;
        ctx.run_ok(&systemctl("start"))?;
        import()
    };
    let Err(e) = fresh() else {
        return Ok(());
    };
    if !had_datadir {
        return Err(e);
    }
    // Put the node back as it was; keep the failed datadir for inspection.
    let failed = format!("{datadir}.failed-restore-{}", ctx.run_id);
    let back = ctx
        .run_ok(&systemctl("stop"))
        .and_then(|_| ctx.run_ok(&Command::on(n, "mv").args(["-T", datadir, &failed])))
        .and_then(|_| ctx.run_ok(&Command::on(n, "mv").args(["-T", &aside, datadir])))
        .and_then(|_| ctx.run_ok(&systemctl("start")));
    Err(PluginError::CommandFailed(match back {
        Ok(_) => format!(
            "{n}: restore failed ({e}); the previous datadir is back in {datadir} and the server \
             runs on it; the failed one is at {failed}"
        ),
        Err(b) => format!(
            "{n}: restore failed ({e}), and putting the previous datadir back failed too ({b}); \
             it is at {aside}"
        ),
    }))
}

export_plugin!(Mysql);
