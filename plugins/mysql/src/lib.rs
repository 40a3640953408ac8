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

use coffer_mysql_common::{self as sql, Datadir};
use coffer_sdk::*;

/// Record: `node \t schema.table \t checksum`.
pub const CHECKSUM: &str = "checksum";

/// The physical copy of the datadir (`mariabackup --stream=xbstream`).
pub const PHYSICAL: &str = "datadir.xbstream";

/// The mysql plugin.
pub struct Mysql;

impl Plugin for Mysql {
    fn describe() -> PluginInfo {
        let info = PluginInfo::new(
            "mysql",
            env!("CARGO_PKG_VERSION"),
            "MariaDB/MySQL on one node (the undercloud): a consistent logical dump of every \
             database (routines, events, triggers) and the accounts with their grants, streamed \
             into the repository; restore moves the old datadir aside, creates a new one and \
             imports them; validate compares every user table's CHECKSUM TABLE with the backup's.",
        )
        .roles(&["undercloud", "mysql"])
        // Configuration files and certificates first, databases after (the talk's order).
        .after(&["filesystem"])
        .setting(
            "method",
            "`dump`: logical (mysqldump); `mariabackup`: a physical copy, faster for large \
             databases (restored by the same runbook, the copy in place of the new datadir)",
            Some("dump"),
        )
        .setting(
            "restore-mode",
            "`reinit`: a new datadir, the old one moved aside; `import`: into the running server",
            Some("reinit"),
        )
        .node_scoped(Operations::ALL)
        .command("mariabackup", &["**"])
        .command("mkdir", &["-p", "*"])
        .command("mbstream", &["-x", "-C", "*"])
        .command("chown", &["-R", "mysql:mysql", "*"]);
        sql::commands(sql::settings(info))
    }

    fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
        sql::with_credentials(ctx, || backup(ctx))
    }

    fn restore(ctx: &Context<'_>) -> Result<(), PluginError> {
        sql::with_credentials(ctx, || restore(ctx))
    }

    fn validate(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        sql::with_credentials(ctx, || validate(ctx))
    }
}

fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
    let mut report = BackupReport::default();
    for node in &ctx.nodes {
        let n = node.name.as_str();
        if ctx.settings.get("method") == Some("mariabackup") {
            let physical =
                sql::client(ctx, n, "mariabackup").args(["--backup", "--stream=xbstream"]);
            let a = ctx.capture(&physical, PHYSICAL)?;
            ctx.info(format!(
                "{n}: physical copy of the datadir (mariabackup), {} bytes",
                a.size
            ));
        } else {
            let size = sql::dump(ctx, n)?;
            ctx.info(format!(
                "{n}: dump of every database and the grants, {size} bytes"
            ));
        }
        let tables = sql::user_tables(ctx, n)?;
        for (table, sum) in sql::checksums(ctx, n, &tables)? {
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
        if mode == "import" {
            sql::import(ctx, n, false)?;
        } else {
            reinit(ctx, n)?;
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
            .run(&sql::client(ctx, n, "mysqladmin").arg("ping"))
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
                let (node, table, sum) = (f.next()?, f.next()?, f.next()?);
                (node == n).then(|| (table.to_string(), sum.to_string()))
            })
            .collect();
        let tables: Vec<String> = expected.iter().map(|(t, _)| t.clone()).collect();
        let found = sql::checksums(ctx, n, &tables)?;
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

/// The talk's runbook on node `n`: stop, move the datadir aside, create a new one (or unpack
/// the physical copy), start, import. Each step registers its reversal first, so if anything
/// fails the host stops the server, keeps the new datadir as `.failed-restore-<run>`, puts the
/// old one back and starts the server on it.
fn reinit(ctx: &Context<'_>, n: &str) -> Result<(), PluginError> {
    let datadir = Datadir::of(ctx, n);
    let (dir, aside) = (datadir.path.as_str(), datadir.aside.as_str());
    let failed = format!("{dir}.failed-restore-{}", ctx.run_id);
    let mut undo = Vec::new();
    let had_datadir = ctx
        .run(&Command::on(n, "test").args(["-e", dir]))
        .map_err(|e| PluginError::CommandFailed(e.to_string()))?
        .success();
    if had_datadir {
        undo.push(ctx.undo_with(&datadir.service_command("start"), "start the server again")?);
    }
    datadir.service("stop")?;
    if had_datadir {
        undo.push(
            ctx.undo_with(
                &Command::on(n, "sh")
                    .args(sql::MOVE_IF_PRESENT)
                    .args(["undo", aside, dir]),
                "put the previous datadir back",
            )?,
        );
        undo.push(
            ctx.undo_with(
                &Command::on(n, "sh")
                    .args(sql::MOVE_IF_PRESENT)
                    .args(["undo", dir, &failed]),
                &format!("keep the failed datadir as {failed}"),
            )?,
        );
        datadir.move_aside()?;
    }
    match ctx.artifacts_of(n).find(|a| a.name == PHYSICAL) {
        // The copy becomes the new datadir: unpack, prepare, hand it to the server's user.
        Some(copy) => {
            ctx.run_ok(&Command::on(n, "mkdir").args(["-p", dir]))?;
            ctx.feed(
                &copy.reference(),
                &Command::on(n, "mbstream").args(["-x", "-C", dir]),
            )?;
            ctx.run_ok(
                &Command::on(n, "mariabackup").args(["--prepare", &format!("--target-dir={dir}")]),
            )?;
            ctx.run_ok(&Command::on(n, "chown").args(["-R", "mysql:mysql", dir]))?;
        }
        None => datadir.create()?,
    }
    if had_datadir {
        undo.push(ctx.undo_with(&datadir.service_command("stop"), "stop the restored server")?);
    }
    datadir.service("start")?;
    if ctx.artifacts_of(n).all(|a| a.name != PHYSICAL) {
        sql::import(ctx, n, true)?;
    }
    for u in undo {
        ctx.keep(u);
    }
    Ok(())
}

export_plugin!(Mysql);
