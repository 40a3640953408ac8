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

use coffer_mysql_common::container::Contained;
use coffer_mysql_common::{self as sql, Datadir};
use coffer_sdk::*;

/// Record: `node \t schema.table \t checksum`.
pub use sql::CHECKSUM;

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
        .presets(&["undercloud"])
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
        .reads("sleep", &["1"]);
        // A server in a container: the steps around it, on its node (contract 2.2).
        let info = coffer_mysql_common::container::commands(info)
            .command("mkdir", &["-p", "*"])
            .command("mbstream", &["-x", "-C", "*"])
            .command("chown", &["-R", "mysql:mysql", "*"]);
        sql::commands(sql::settings(sql::drill::commands(info, "mysql")))
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

    fn drill(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        sql::drill::run(ctx, Some(PHYSICAL))
    }
}

fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
    let mut report = BackupReport::default();
    for node in &ctx.nodes {
        let n = node.name.as_str();
        let before = sql::table_checksums(ctx, n)?;
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
        let (tables, changed) = sql::record_checksums(ctx, n, &before, &mut report)?;
        ctx.info(format!(
            "{n}: {tables} user table(s) checksummed, {changed} written during the backup"
        ));
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
        if ctx.dry_run {
            ctx.info(format!(
                "{n}: databases and grants would be restored ({mode})"
            ));
        } else {
            ctx.info(format!("{n}: databases and grants restored ({mode})"));
        }
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
        let expected = sql::recorded_checksums(ctx, n);
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
    if let Some(c) = ctx.container(n) {
        return reinit_in_container(ctx, n, c);
    }
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
        datadir.move_aside()?;
        // Only once the old datadir is aside: what is at `dir` from now on is the new one.
        undo.push(
            ctx.undo_with(
                &Command::on(n, "sh")
                    .args(sql::MOVE_IF_PRESENT)
                    .args(["undo", dir, &failed]),
                &format!("keep the failed datadir as {failed}"),
            )?,
        );
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

/// The runbook for a server in a container (TripleO's `tripleo_mysql`, kolla's `mariadb`):
/// the same steps, taken on the node around the container ([`Contained::new_datadir`]), then
/// the container started and the dump imported. Every step registers its reversal first: a
/// failure stops the container, keeps the new datadir as `.failed-restore-<run>`, puts the old
/// one back and starts the container on it.
fn reinit_in_container(ctx: &Context<'_>, n: &str, c: Container) -> Result<(), PluginError> {
    let server = Contained::inspect(ctx, n, c)?;
    let mut undo = server.new_datadir()?;
    undo.push(server.start()?);
    sql::wait_until_up(ctx, n)?;
    sql::import(ctx, n, true)?;
    for u in undo {
        ctx.keep(u);
    }
    Ok(())
}

export_plugin!(Mysql);

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_sdk::testing::{Call, Harness, Reply};

    const DATADIR: &str = "/var/lib/mysql";
    const ASIDE: &str = "/var/lib/mysql.before-restore-test-run";
    const FAILED: &str = "/var/lib/mysql.failed-restore-test-run";

    /// `sh -c MOVE_IF_PRESENT undo FROM TO`, as the undo registers it.
    fn move_if_present(from: &str, to: &str) -> String {
        format!(
            "sh {} {} undo {from} {to}",
            sql::MOVE_IF_PRESENT[0],
            sql::MOVE_IF_PRESENT[1]
        )
    }

    fn restore_harness() -> Harness {
        Harness::new()
            .node("uc", &["undercloud"])
            .artifact("uc", sql::DUMP, ArtifactKind::Stream, b"-- dump")
            .artifact("uc", sql::GRANTS, ArtifactKind::Stream, b"-- grants")
    }

    #[test]
    fn backup_captures_dump_and_grants_then_checksums_every_user_table() {
        let checksum = "CHECKSUM TABLE `nova`.`instances`, `keystone`.`user`";
        let h = Harness::new()
            .node("uc", &["undercloud"])
            .reply(
                &["mysql", "-N", "-B", "-e", checksum],
                Reply::stdout("nova.instances\t111\nkeystone.user\t222\n"),
            )
            .reply(
                &["mysql", "-N", "-B", "-e"],
                Reply::stdout("`nova`.`instances`\n`keystone`.`user`\n"),
            )
            .reply(&["mysqldump", "--opt"], Reply::stdout("-- dump"))
            .reply(&["mysqldump", "--system=users"], Reply::stdout("-- grants"));
        let report = h.backup::<Mysql>().unwrap();
        let log = h.transcript();
        let dump = log.first("capture databases.sql uc: mysqldump --opt --single-transaction");
        let grants = log.first("capture grants.sql uc: mysqldump --system=users --insert-ignore");
        // Checksums before the dump and after it: a table equal in both is exact for the dump.
        let tables = log.first("uc: mysql -N -B -e SELECT CONCAT(");
        let sums = log.first(&format!("uc: mysql -N -B -e {checksum}"));
        let tables_after = log.last("uc: mysql -N -B -e SELECT CONCAT(");
        let sums_after = log.last(&format!("uc: mysql -N -B -e {checksum}"));
        assert!(
            tables < sums
                && sums < dump
                && dump < grants
                && grants < tables_after
                && tables_after < sums_after,
            "{log:#?}"
        );
        assert!(report.records.all(sql::CHANGED).is_empty());
        assert!(log[dump].contains("--all-databases"), "{}", log[dump]);
        assert_eq!(h.artifact_bytes("uc", sql::DUMP).unwrap(), b"-- dump");
        assert_eq!(h.artifact_bytes("uc", sql::GRANTS).unwrap(), b"-- grants");
        assert_eq!(
            report.records.all(CHECKSUM),
            ["uc\t`nova`.`instances`\t111", "uc\t`keystone`.`user`\t222"]
        );
        // A backup changes nothing on the node.
        assert!(h.pending_undo().is_empty());
        assert!(!log.iter().any(|l| l.contains("systemctl")), "{log:#?}");
    }

    #[test]
    fn credentials_reach_the_node_only_as_an_option_file_removed_afterwards() {
        let file = "/run/coffer-mysql-test-run.cnf";
        let h = Harness::new()
            .node("uc", &["undercloud"])
            .setting("user", "backup")
            .setting("password", "s3cr\"t")
            .reply(&["mysqldump"], Reply::stdout("--"));
        h.backup::<Mysql>().unwrap();
        let log = h.transcript();
        let write = log.first(&format!(
            "uc: sh -c umask 077 && cat > \"$1\" coffer {file}"
        ));
        assert!(
            log[write].ends_with("<<< [client]\nuser=\"backup\"\npassword=\"s3cr\\\"t\"\n"),
            "{}",
            log[write]
        );
        let rm = log.last(&format!("uc: rm -f {file}"));
        assert_eq!(rm, log.len() - 1, "removed last: {log:#?}");
        assert!(write < log.first("capture databases.sql"));
        for call in h.calls() {
            let argv = match call {
                Call::Exec(c) => c.argv,
                Call::Capture { argv, .. } => argv,
                _ => continue,
            };
            assert!(
                !argv.concat().contains("s3cr"),
                "password in argv: {argv:?}"
            );
            if matches!(argv[0].as_str(), "mysql" | "mysqldump") {
                assert_eq!(argv[1], format!("--defaults-extra-file={file}"));
            }
        }
    }

    #[test]
    fn a_socket_or_address_reaches_the_clients_through_the_option_file() {
        let file = "/run/coffer-mysql-test-run.cnf";
        let h = Harness::new()
            .node("uc", &["undercloud"])
            .setting("defaults-file", "/root/.backup.cnf")
            .setting("socket", "/var/lib/mysql/mysql.sock")
            .reply(&["mysqldump"], Reply::stdout("--"));
        h.backup::<Mysql>().unwrap();
        let log = h.transcript();
        let write = log.first(&format!(
            "uc: sh -c umask 077 && cat > \"$1\" coffer {file}"
        ));
        // The operator's file keeps the credentials; the socket is added.
        assert!(
            log[write].ends_with(
                "<<< !include /root/.backup.cnf\n[client]\nsocket=\"/var/lib/mysql/mysql.sock\"\n"
            ),
            "{}",
            log[write]
        );
        assert!(log.iter().any(|l| l.starts_with(&format!(
            "capture databases.sql uc: mysqldump --defaults-extra-file={file}"
        ))));
        // A fresh datadir's root goes through the same socket.
        let h = restore_harness().setting("socket", "/var/lib/mysql/mysql.sock");
        h.restore::<Mysql>().unwrap();
        assert!(
            h.transcript().iter().any(|l| l.starts_with(
                "uc: mysql --socket=/var/lib/mysql/mysql.sock -N -B <<< SET GLOBAL max_allowed_packet"
            )),
            "{:#?}",
            h.transcript()
        );
    }

    #[test]
    fn restore_stops_moves_aside_creates_starts_then_imports() {
        let h = restore_harness();
        h.restore::<Mysql>().unwrap();
        let log = h.transcript();
        let start_again = log.first("undo-push uc: systemctl start mariadb");
        let stop = log.first("uc: systemctl stop mariadb");
        let put_back = log.first(&format!(
            "undo-push uc: {}",
            move_if_present(ASIDE, DATADIR)
        ));
        let keep_failed = log.first(&format!(
            "undo-push uc: {}",
            move_if_present(DATADIR, FAILED)
        ));
        let aside = log.first(&format!("uc: mv -T {DATADIR} {ASIDE}"));
        let create = log.first(&format!(
            "uc: mariadb-install-db --user=mysql --datadir={DATADIR} --skip-test-db"
        ));
        let stop_restored = log.first("undo-push uc: systemctl stop mariadb");
        let start = log.first("uc: systemctl start mariadb");
        let packet = log.first("uc: mysql -N -B <<< SET GLOBAL max_allowed_packet = 1073741824");
        let dump = log.first("feed databases.sql uc: mysql --max-allowed-packet=1G");
        let flush = log.first("uc: mysql -N -B <<< FLUSH PRIVILEGES");
        let grants = log.first("feed grants.sql uc: mysql --max-allowed-packet=1G");
        let last_flush = log.last("uc: mysql -N -B <<< FLUSH PRIVILEGES");

        // Each reversal is registered before the change it reverses.
        assert!(start_again < stop, "{log:#?}");
        assert!(stop < put_back && put_back < aside && aside < keep_failed);
        assert!(aside < create && create < stop_restored && stop_restored < start);
        assert!(start < packet && packet < dump && dump < flush && flush < grants);
        assert!(grants < last_flush, "{log:#?}");
        // The import into the new datadir runs as root over the socket.
        assert!(!log.iter().any(|l| l.contains("--defaults-extra-file")));
        assert!(h.pending_undo().is_empty(), "{:?}", h.pending_undo());
    }

    #[test]
    fn a_failed_move_aside_leaves_the_datadir_where_it_is() {
        let h = restore_harness().reply(
            &["mv", "-T", DATADIR, ASIDE],
            Reply::fail(1, "mv: cannot move: Device or resource busy"),
        );
        h.restore::<Mysql>().unwrap_err();
        // Nothing would move the untouched datadir away: the server is only started again.
        assert_eq!(
            h.pending_undo_lines(),
            [
                "uc: systemctl start mariadb".to_string(),
                format!("uc: {}", move_if_present(ASIDE, DATADIR)),
            ]
        );
    }

    #[test]
    fn a_failed_import_leaves_the_reversals_to_put_the_old_datadir_back() {
        let h = restore_harness().reply(
            &["mysql", "--max-allowed-packet=1G"],
            Reply::fail(1, "ERROR 1064"),
        );
        h.restore::<Mysql>().unwrap_err();
        let pending = h.pending_undo_lines();
        // The host runs them newest first: stop the restored server, keep its datadir as
        // .failed-restore, put the old one back, start the server on it.
        assert_eq!(
            pending,
            [
                "uc: systemctl start mariadb".to_string(),
                format!("uc: {}", move_if_present(ASIDE, DATADIR)),
                format!("uc: {}", move_if_present(DATADIR, FAILED)),
                "uc: systemctl stop mariadb".to_string(),
            ]
        );
        let log = h.transcript();
        assert!(
            !log.iter().any(|l| l.starts_with("feed grants.sql")),
            "{log:#?}"
        );
    }

    const VOLUME: &str = "/var/lib/containers/storage/volumes/db/_data";

    fn inspection(rootfs: &str, image: &str) -> String {
        format!(
            r#"[{{"Rootfs":"{rootfs}","Config":{{"Image":"{image}"}},"Mounts":[{{"Type":"volume","Source":"/srv/logs","Destination":"/var/log/mysql"}},{{"Type":"volume","Source":"{VOLUME}","Destination":"/var/lib/mysql"}}]}}]"#
        )
    }

    #[test]
    fn a_server_in_a_container_is_reinitialised_from_its_node() {
        let h = restore_harness()
            .container("uc", "podman", "mariadb")
            .reply(
                &["podman", "inspect", "mariadb"],
                Reply::stdout(inspection("", "quay.io/kolla/mariadb-server:2024.1")),
            );
        h.restore::<Mysql>().unwrap();
        let log = h.transcript();
        let aside = format!("{VOLUME}.before-restore-test-run");
        let failed = format!("{VOLUME}.failed-restore-test-run");
        let start_again = log.first("undo-push uc outside: podman start mariadb");
        let stop = log.first("uc outside: podman stop -t 120 mariadb");
        let put_back = log.first(&format!(
            "undo-push uc outside: {}",
            move_if_present(&aside, VOLUME)
        ));
        let moved = log.first(&format!("uc outside: mv -T {VOLUME} {aside}"));
        let keep_failed = log.first(&format!(
            "undo-push uc outside: {}",
            move_if_present(VOLUME, &failed)
        ));
        let mkdir = log.first(&format!("uc outside: mkdir {VOLUME}"));
        let chown = log.first(&format!("uc outside: chown --reference={aside} {VOLUME}"));
        let install = log.first(
            "uc outside: podman run --rm --volumes-from mariadb --user root --entrypoint \
             mariadb-install-db quay.io/kolla/mariadb-server:2024.1 --user=mysql \
             --datadir=/var/lib/mysql --skip-test-db",
        );
        let stop_restored = log.first("undo-push uc outside: podman stop -t 120 mariadb");
        let start = log.first("uc outside: podman start mariadb");
        let ping = log.first("uc: mysqladmin ping");
        let dump = log.first("feed databases.sql uc: mysql --max-allowed-packet=1G");
        assert!(
            start_again < stop && stop < put_back && put_back < moved,
            "{log:#?}"
        );
        assert!(moved < keep_failed && keep_failed < mkdir && mkdir < chown);
        assert!(chown < install && install < stop_restored && stop_restored < start);
        assert!(start < ping && ping < dump, "{log:#?}");
        // Nothing of the datadir's steps runs inside the stopped container.
        assert!(
            !log.iter()
                .any(|l| l.starts_with("uc: systemctl") || l.starts_with("uc: mv"))
        );
        assert!(h.pending_undo().is_empty(), "{:?}", h.pending_undo());
    }

    #[test]
    fn a_container_run_by_a_unit_is_stopped_and_started_through_it() {
        let h = restore_harness()
            .container("uc", "podman", "mysql")
            .setting("service", "tripleo_mysql")
            .reply(
                &["podman", "inspect", "mysql"],
                Reply::stdout(inspection("", "mariadb:10.11")),
            );
        h.restore::<Mysql>().unwrap();
        let log = h.transcript();
        let stop = log.first("uc outside: systemctl stop tripleo_mysql");
        let install = log.first("uc outside: podman run --rm --volumes-from mysql");
        let start = log.first("uc outside: systemctl start tripleo_mysql");
        assert!(stop < install && install < start, "{log:#?}");
        assert_eq!(
            log.first("undo-push uc outside: systemctl start tripleo_mysql"),
            stop - 1
        );
        assert!(
            !log.iter()
                .any(|l| l.contains("podman stop") || l.contains("podman start"))
        );
        assert!(h.pending_undo().is_empty(), "{:?}", h.pending_undo());
    }

    #[test]
    fn a_rootfs_container_is_initialised_on_an_overlay_and_a_failure_puts_it_back() {
        let h = restore_harness()
            .container("uc", "podman", "db")
            .reply(
                &["podman", "inspect", "db"],
                Reply::stdout(inspection("/", "")),
            )
            .reply(
                &["mysql", "--max-allowed-packet=1G"],
                Reply::fail(1, "ERROR 1064"),
            );
        h.restore::<Mysql>().unwrap_err();
        let log = h.transcript();
        log.first(
            "uc outside: podman run --rm --volumes-from db --rootfs /:O mariadb-install-db \
             --user=mysql",
        );
        let aside = format!("{VOLUME}.before-restore-test-run");
        let failed = format!("{VOLUME}.failed-restore-test-run");
        assert_eq!(
            h.pending_undo_lines(),
            [
                "uc outside: podman start db".to_string(),
                format!("uc outside: {}", move_if_present(&aside, VOLUME)),
                format!("uc outside: {}", move_if_present(VOLUME, &failed)),
                "uc outside: podman stop -t 120 db".to_string(),
            ]
        );
    }

    #[test]
    fn a_datadir_in_the_containers_own_layer_is_refused_before_anything_changes() {
        let h = restore_harness().container("uc", "podman", "db").reply(
            &["podman", "inspect", "db"],
            Reply::stdout(r#"[{"Rootfs":"","Config":{"Image":"mariadb"},"Mounts":[]}]"#),
        );
        let err = h.restore::<Mysql>().unwrap_err().to_string();
        assert!(
            err.contains("not a volume or a bind mount") && err.contains("import"),
            "{err}"
        );
        assert_eq!(h.transcript().len(), 1, "{:#?}", h.transcript());
    }
}
