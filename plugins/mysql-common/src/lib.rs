//! What the `mysql` and `galera` plugins share: client commands that take their credentials
//! from an option file (never argv), the streamed dumps, the import, and the datadir steps of
//! the talk's restore runbook.
//!
//! Credentials: root's `~/.my.cnf` or socket authentication on the node (the talk's way), an
//! option file already on the node (`defaults-file`), or `user`/`password` in the deployment
//! file, which reach each node as a 0600 option file written through stdin for the length of
//! one operation. A new datadir has only root over the socket, so the import into one runs as
//! root.

use coffer_sdk::*;

pub mod container;
pub mod drill;

/// Record: `node \t schema.table \t checksum`, every user table's `CHECKSUM TABLE` at backup.
pub const CHECKSUM: &str = "checksum";

/// The (table, checksum) pairs the backup recorded for node `n`.
pub fn recorded_checksums(ctx: &Context<'_>, n: &str) -> Vec<(String, String)> {
    ctx.records
        .all(CHECKSUM)
        .iter()
        .filter_map(|r| {
            let mut f = r.splitn(3, '\t');
            let (node, table, sum) = (f.next()?, f.next()?, f.next()?);
            (node == n).then(|| (table.to_string(), sum.to_string()))
        })
        .collect()
}

/// Record: `node \t schema.table`, a table written while the dump ran (its checksum moved
/// between before and after it): no checksum is exact for the dump, so a drill checks only that
/// it is there.
pub const CHANGED: &str = "changed-during-backup";

/// The tables the backup saw written while it dumped node `n`.
pub fn changed_tables(ctx: &Context<'_>, n: &str) -> Vec<String> {
    ctx.records
        .all(CHANGED)
        .iter()
        .filter_map(|r| r.split_once('\t'))
        .filter(|(node, _)| *node == n)
        .map(|(_, table)| table.to_string())
        .collect()
}

/// The checksum of every user table on `node`, now.
pub fn table_checksums(
    ctx: &Context<'_>,
    node: &str,
) -> Result<Vec<(String, String)>, PluginError> {
    let tables = user_tables(ctx, node)?;
    checksums(ctx, node, &tables)
}

/// Take the checksums again after the dump and record them against `before` (taken before
/// it): a table equal in both is recorded with its checksum (exact for the dump), one that
/// moved as [`CHANGED`]. (tables, changed ones).
pub fn record_checksums(
    ctx: &Context<'_>,
    node: &str,
    before: &[(String, String)],
    report: &mut BackupReport,
) -> Result<(usize, usize), PluginError> {
    let after = table_checksums(ctx, node)?;
    let mut changed = 0;
    for (table, sum) in &after {
        if before.iter().any(|(t, s)| t == table && s == sum) {
            report
                .records
                .push(CHECKSUM, format!("{node}\t{table}\t{sum}"));
        } else {
            report.records.push(CHANGED, format!("{node}\t{table}"));
            changed += 1;
        }
    }
    Ok((after.len(), changed))
}

/// The logical dump of every database.
pub const DUMP: &str = "databases.sql";
/// The accounts and their grants.
pub const GRANTS: &str = "grants.sql";
/// Schemas that are the server's own.
const SYSTEM_SCHEMAS: &str = "'mysql','information_schema','performance_schema','sys'";

/// Settings every MariaDB plugin accepts.
pub fn settings(info: PluginInfo) -> PluginInfo {
    info.setting(
        "datadir",
        "The server's data directory on the node",
        Some("/var/lib/mysql"),
    )
    .setting(
        "service",
        "The server's systemd unit; for a server in a container, the unit that runs the \
         container (TripleO's undercloud: tripleo_mysql; default: the unit podman labelled \
         it with, else none: the container is stopped and started by its runtime)",
        Some("mariadb"),
    )
    .setting(
        "defaults-file",
        "Client option file on the node with the credentials (default: root's ~/.my.cnf, \
             or socket authentication)",
        None,
    )
    .setting(
        "user",
        "Database user (with `password`; default root)",
        None,
    )
    .setting(
        "password",
        "Its password; reaches each node only as a 0600 option file written through stdin",
        None,
    )
    .setting(
        "socket",
        "The server's socket on the node, for the clients (default: the clients' own)",
        None,
    )
    .setting(
        "host",
        "The server's address, for the clients (instead of the socket)",
        None,
    )
    .setting("port", "The server's port, with `host`", None)
}

/// Commands every MariaDB plugin declares: the clients, the service, the datadir steps.
/// Read-only SQL ([`query`]) is the statement in `-e` and declared `reads`, so a dry run runs
/// it; SQL that changes anything ([`execute`], the imports) goes through stdin.
pub fn commands(mut info: PluginInfo) -> PluginInfo {
    for defaults in [None, Some("--defaults-extra-file=*"), Some("--socket=*")] {
        let with = |args: &[&'static str]| -> Vec<&'static str> {
            defaults.into_iter().chain(args.iter().copied()).collect()
        };
        for statement in ["SELECT *", "CHECKSUM TABLE *"] {
            info = info.reads("mysql", &with(&["-N", "-B", "-e", statement]));
        }
        info = info
            .command("mysql", &with(&["-N", "-B"]))
            .command("mysql", &with(&["--max-allowed-packet=1G"]))
            .reads("mysqladmin", &with(&["ping"]));
    }
    info.reads("mysqldump", &["**"])
        .command("systemctl", &["stop", "*"])
        .command("systemctl", &["start", "*"])
        .reads("test", &["-e", "*"])
        .command("mv", &["-T", "*", "*.before-restore-*"])
        .command(
            "sh",
            &[
                MOVE_IF_PRESENT[0],
                &literal(MOVE_IF_PRESENT[1]),
                "undo",
                "*",
                "*.failed-restore-*",
            ],
        )
        .command(
            "sh",
            &[
                MOVE_IF_PRESENT[0],
                &literal(MOVE_IF_PRESENT[1]),
                "undo",
                "*.before-restore-*",
                "*",
            ],
        )
        .command(
            "mariadb-install-db",
            &["--user=mysql", "--datadir=*", "--skip-test-db"],
        )
        .command(
            "sh",
            &[
                "-c",
                &literal(WRITE_PRIVATE),
                "coffer",
                "/run/coffer-mysql-*.cnf",
            ],
        )
        .command("rm", &["-f", "/run/coffer-mysql-*.cnf"])
}

/// `sh` arguments that move "$1" to "$2" if "$1" exists.
pub const MOVE_IF_PRESENT: [&str; 2] = ["-c", "test ! -e \"$1\" || mv -T \"$1\" \"$2\""];

/// Writes stdin to "$1", readable by its owner only.
const WRITE_PRIVATE: &str = "umask 077 && cat > \"$1\"";

fn credentials(ctx: &Context<'_>) -> Option<(String, String)> {
    let password = ctx.settings.get("password")?;
    Some((
        ctx.settings.get("user").unwrap_or("root").into(),
        password.into(),
    ))
}

/// `[client]` lines for where the server listens (`socket`, `host`, `port`).
fn connection_lines(ctx: &Context<'_>) -> String {
    ["socket", "host", "port"]
        .iter()
        .filter_map(|k| ctx.settings.get(k).map(|v| format!("{k}={}\n", quoted(v))))
        .collect()
}

/// Whether this operation's clients read an option file Coffer writes: credentials or
/// connection settings are in the deployment file.
fn own_option_file(ctx: &Context<'_>) -> bool {
    credentials(ctx).is_some() || !connection_lines(ctx).is_empty()
}

/// The option file holding this operation's credentials on every node.
fn credentials_file(ctx: &Context<'_>) -> String {
    let run = ctx.run_slug();
    format!("/run/coffer-mysql-{run}.cnf")
}

/// An option-file value: quoted, with `\` and `"` escaped.
fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Run `f` with the deployment's credentials (if any) in an option file on every node of the
/// operation; the files are removed afterwards, whatever `f` returned.
pub fn with_credentials<T>(
    ctx: &Context<'_>,
    f: impl FnOnce() -> Result<T, PluginError>,
) -> Result<T, PluginError> {
    if !own_option_file(ctx) {
        return f();
    }
    let file = credentials_file(ctx);
    let mut text = String::new();
    match (credentials(ctx), ctx.settings.get("defaults-file")) {
        (Some((user, password)), _) => {
            text.push_str(&format!(
                "[client]\nuser={}\npassword={}\n",
                quoted(&user),
                quoted(&password)
            ));
        }
        // The operator's own file keeps the credentials; the connection is added to it.
        (None, Some(own)) => text.push_str(&format!("!include {own}\n[client]\n")),
        (None, None) => text.push_str("[client]\n"),
    }
    text.push_str(&connection_lines(ctx));
    let mut written = Vec::new();
    let mut result = Ok(());
    for node in &ctx.nodes {
        let write = Command::on(&node.name, "sh")
            .args(["-c", WRITE_PRIVATE, "coffer", &file])
            .stdin(text.clone());
        match ctx.run_ok(&write) {
            Ok(_) => written.push(node.name.clone()),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let outcome = result.and_then(|_| f());
    for node in written {
        if let Err(e) = ctx.run_ok(&Command::on(&node, "rm").args(["-f", &file])) {
            ctx.warn(format!("{node}: could not remove {file}: {e}"));
        }
    }
    outcome
}

/// A client command on `node`: `program`, then the option file if one is set (it must be the
/// first argument).
pub fn client(ctx: &Context<'_>, node: &str, program: &str) -> Command {
    let cmd = Command::on(node, program);
    if own_option_file(ctx) {
        return cmd.arg(format!("--defaults-extra-file={}", credentials_file(ctx)));
    }
    match ctx.settings.get("defaults-file") {
        Some(f) => cmd.arg(format!("--defaults-extra-file={f}")),
        None => cmd,
    }
}

/// Run SQL that changes something as root over the socket (the only account a new datadir
/// has), through stdin.
pub fn root_execute(
    ctx: &Context<'_>,
    node: &str,
    sql: &str,
) -> Result<Vec<Vec<String>>, PluginError> {
    rows(
        ctx.run_ok(
            &root_client(ctx, node, "mysql")
                .args(["-N", "-B"])
                .stdin(sql),
        )?,
    )
}

/// Wait, up to two minutes, until the server on `node` answers root over the socket (a
/// container was just started; `systemctl start` waits by itself). Not in a dry run.
pub fn wait_until_up(ctx: &Context<'_>, node: &str) -> Result<(), PluginError> {
    if ctx.dry_run {
        return Ok(());
    }
    for _ in 0..120 {
        let ping = ctx.run(&root_client(ctx, node, "mysqladmin").arg("ping"));
        if ping.is_ok_and(|o| o.success()) {
            return Ok(());
        }
        ctx.run_ok(&Command::on(node, "sleep").arg("1").outside())?;
    }
    Err(PluginError::Precondition(format!(
        "{node}: the server did not answer within 120 s of being started"
    )))
}

/// A client command as root over the socket (`socket` when set): the only account a new
/// datadir has.
fn root_client(ctx: &Context<'_>, node: &str, program: &str) -> Command {
    let cmd = Command::on(node, program);
    match ctx.settings.get("socket") {
        Some(socket) => cmd.arg(format!("--socket={socket}")),
        None => cmd,
    }
}

/// Run one read-only statement (`SELECT` or `CHECKSUM TABLE`; it runs in a dry run, and
/// it is in argv: never a secret) on `node` and return its rows, tab-separated.
pub fn query(ctx: &Context<'_>, node: &str, sql: &str) -> Result<Vec<Vec<String>>, PluginError> {
    rows(ctx.run_ok(&client(ctx, node, "mysql").args(["-N", "-B", "-e", sql]))?)
}

/// Run SQL that changes something on `node`, through stdin (a dry run lists it).
pub fn execute(ctx: &Context<'_>, node: &str, sql: &str) -> Result<(), PluginError> {
    ctx.run_ok(&client(ctx, node, "mysql").args(["-N", "-B"]).stdin(sql))
        .map(drop)
}

fn rows(out: Output) -> Result<Vec<Vec<String>>, PluginError> {
    Ok(out
        .stdout_text()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

/// One value: the first column of the first row.
pub fn value(ctx: &Context<'_>, node: &str, sql: &str) -> Result<String, PluginError> {
    Ok(query(ctx, node, sql)?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .unwrap_or_default())
}

/// `schema.table` of every user table.
pub fn user_tables(ctx: &Context<'_>, node: &str) -> Result<Vec<String>, PluginError> {
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
pub fn checksums(
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

/// Stream a consistent dump of every database and one of the accounts with their grants from
/// `node` into the repository (no file on the node).
pub fn dump(ctx: &Context<'_>, node: &str) -> Result<u64, PluginError> {
    let all = client(ctx, node, "mysqldump").args([
        "--opt",
        "--single-transaction",
        "--routines",
        "--events",
        "--triggers",
        "--all-databases",
        // Galera's streaming-replication log cannot be restored (and is empty at rest).
        "--ignore-table=mysql.wsrep_streaming_log",
    ]);
    let a = ctx.capture(&all, DUMP)?;
    let users = client(ctx, node, "mysqldump").args(["--system=users", "--insert-ignore"]);
    let g = ctx.capture(&users, GRANTS)?;
    Ok(a.size + g.size)
}

/// Import the dump and the grants of the snapshot into the running server on `node`; `fresh`:
/// a new datadir, where only root over the socket can log in.
pub fn import(ctx: &Context<'_>, node: &str, fresh: bool) -> Result<(), PluginError> {
    let client = |program: &str| {
        if fresh {
            root_client(ctx, node, program)
        } else {
            client(ctx, node, program)
        }
    };
    let query = |sql: &str| rows(ctx.run_ok(&client("mysql").args(["-N", "-B"]).stdin(sql))?);
    let find = |name: &str| {
        ctx.artifacts
            .iter()
            .find(|a| a.name == name)
            .map(Artifact::reference)
            .ok_or_else(|| PluginError::Precondition(format!("the snapshot has no {name}")))
    };
    let (dump, grants) = (find(DUMP)?, find(GRANTS)?);
    // A dump holds rows up to the packet limit at backup time; allow the most.
    query("SET GLOBAL max_allowed_packet = 1073741824")?;
    let mysql = || client("mysql").arg("--max-allowed-packet=1G");
    ctx.feed(&dump, &mysql())?;
    // The dump rewrote the privilege tables; load them before the grants use them.
    query("FLUSH PRIVILEGES")?;
    if let Err(e) = ctx.feed(&grants, &mysql()) {
        // mysqldump's grants script grants the importing account a role for the import and
        // drops it at its end: a script that stopped half-way leaves it.
        let _ = query(&format!("DROP ROLE IF EXISTS {IMPORT_ROLE}"));
        return Err(PluginError::CommandFailed(format!(
            "{node}: the databases were imported, the accounts and grants were not: {e}; the \
             importing account must be able to create users and grant what they hold (root, \
             or an account with CREATE USER and every privilege WITH GRANT OPTION); \
             {IMPORT_ROLE} was dropped"
        )));
    }
    query("FLUSH PRIVILEGES")?;
    Ok(())
}

/// The role mysqldump's `--system=users` script grants the importing account for the import.
const IMPORT_ROLE: &str = "mariadb_dump_import_role";

/// The datadir steps of the runbook on one node.
pub struct Datadir<'c, 'a> {
    ctx: &'c Context<'a>,
    node: String,
    /// The data directory.
    pub path: String,
    /// Where the old one is kept: `<datadir>.before-restore-<run>`.
    pub aside: String,
    service: String,
}

impl<'c, 'a> Datadir<'c, 'a> {
    /// The datadir of `node` as the settings name it.
    pub fn of(ctx: &'c Context<'a>, node: &str) -> Self {
        let path = ctx
            .settings
            .get("datadir")
            .unwrap_or("/var/lib/mysql")
            .to_string();
        Self {
            ctx,
            node: node.into(),
            aside: format!("{path}.before-restore-{}", ctx.run_id),
            path,
            service: ctx.settings.get("service").unwrap_or("mariadb").into(),
        }
    }

    /// `systemctl VERB SERVICE` on the node.
    pub fn service_command(&self, verb: &str) -> Command {
        Command::on(&self.node, "systemctl").args([verb, &self.service])
    }

    /// Run `systemctl VERB SERVICE` on the node.
    pub fn service(&self, verb: &str) -> Result<(), PluginError> {
        self.ctx.run_ok(&self.service_command(verb)).map(drop)
    }

    /// Move the datadir aside (never deleted); `false` when there was none.
    pub fn move_aside(&self) -> Result<bool, PluginError> {
        let exists = self
            .ctx
            .run(&Command::on(&self.node, "test").args(["-e", &self.path]))
            .map_err(|e| PluginError::CommandFailed(e.to_string()))?
            .success();
        if exists {
            self.ctx.run_ok(&Command::on(&self.node, "mv").args([
                "-T",
                &self.path,
                &self.aside,
            ]))?;
            self.ctx.info(format!(
                "{}: the old datadir {} kept at {}",
                self.node,
                if self.ctx.dry_run { "would be" } else { "is" },
                self.aside
            ));
        }
        Ok(exists)
    }

    /// Create a new, empty database in the datadir.
    pub fn create(&self) -> Result<(), PluginError> {
        self.ctx
            .run_ok(&Command::on(&self.node, "mariadb-install-db").args([
                "--user=mysql",
                &format!("--datadir={}", self.path),
                "--skip-test-db",
            ]))
            .map(drop)
    }
}
