//! The `mysql` plugin: MariaDB/MySQL on a single node (the undercloud). Backup streams a
//! consistent logical dump (`mysqldump --single-transaction`) and the accounts with their grants
//! (`mysqldump --system=users`) straight into the repository, and records a `CHECKSUM TABLE`
//! of every user table; restore imports both; validate compares the checksums.
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
            "defaults-file",
            "Client option file on the node with the credentials (default: root's ~/.my.cnf, \
             or socket authentication)",
            None,
        )
        .node_scoped(Operations::ALL)
        .command("mysql", &["**"])
        .command("mysqldump", &["**"])
        .command("mysqladmin", &["**"])
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
        for node in &ctx.nodes {
            let n = node.name.as_str();
            let find = |name: &str| {
                ctx.artifacts_of(n).find(|a| a.name == name).ok_or_else(|| {
                    PluginError::Precondition(format!("{n}: the snapshot has no {name}"))
                })
            };
            let (dump, grants) = (find(DUMP)?.reference(), find(GRANTS)?.reference());
            // A dump holds rows up to the server's packet limit at backup time; allow the most.
            query(ctx, n, "SET GLOBAL max_allowed_packet = 1073741824")?;
            let import = || client(ctx, n, "mysql").arg("--max-allowed-packet=1G");
            ctx.feed(&dump, &import())?;
            // The dump rewrote the privilege tables; load them before the grants refer to them.
            query(ctx, n, "FLUSH PRIVILEGES")?;
            ctx.feed(&grants, &import())?;
            query(ctx, n, "FLUSH PRIVILEGES")?;
            ctx.info(format!("{n}: databases and grants imported"));
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

export_plugin!(Mysql);
