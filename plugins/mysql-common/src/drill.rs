//! The drill of the mysql and galera plugins: each dump imported into a throwaway MariaDB
//! server on the drill node —
//! a new datadir, a socket and no TCP port, all in the scratch directory — and every user
//! table's `CHECKSUM TABLE` compared with the one the backup recorded. The live server is never
//! contacted; a drill node where the plugin runs in a container is refused (the dump would be
//! fed into the container).
//! The accounts script (`grants.sql`) is not applied: see [`Throwaway::load_and_compare`].

use coffer_sdk::*;

use crate::{self as sql, recorded_checksums};

/// Starts a server detached from the command that starts it, its output in "$1".
const START: &str = "setsid -f mariadbd --no-defaults --datadir=\"$1/data\" \
    --socket=\"$1/s\" --pid-file=\"$1/mysqld.pid\" --log-error=\"$1/error.log\" \
    --skip-networking --user=root --innodb-buffer-pool-size=64M --max-allowed-packet=1G \
    </dev/null >/dev/null 2>&1";

/// Declare the drill's commands for `plugin`: each under a scratch directory of its drills
/// (`…/coffer-drill-PLUGIN-…`).
pub fn commands(info: PluginInfo, plugin: &str) -> PluginInfo {
    let scratch = format!("*/coffer-drill-{plugin}-*");
    let socket = format!("--socket={scratch}/s");
    let client = |args: &[&str]| -> Vec<String> {
        ["--no-defaults", socket.as_str(), "-u", "root"]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect()
    };
    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    info.command("mkdir", &["-p", &format!("{scratch}/*")])
        .reads("sleep", &["1"])
        .command(
            "mariadb-install-db",
            &[
                "--no-defaults",
                &format!("--datadir={scratch}/data"),
                "--user=root",
                "--skip-test-db",
            ],
        )
        .command("sh", &["-c", &literal(START), "coffer", &scratch])
        .reads("mariadb-admin", &strs(&client(&["ping"])))
        .command("mariadb-admin", &strs(&client(&["shutdown"])))
        .command("mariadb", &strs(&client(&["--max-allowed-packet=1G"])))
        .reads(
            "mariadb",
            &strs(&client(&["-N", "-B", "-e", "CHECKSUM TABLE *"])),
        )
}

/// The drill (see the module). A snapshot holding the artifact `physical` (a datadir copy) is
/// not drillable.
pub fn run(ctx: &Context<'_>, physical: Option<&str>) -> Result<Vec<Check>, PluginError> {
    if let Some(name) = physical
        && ctx.artifacts.iter().any(|a| a.name == name)
    {
        return Err(PluginError::Unsupported(
            "the drill imports logical dumps; this snapshot holds a physical copy".into(),
        ));
    }
    let (on, root) = ctx.drill_place()?;
    let mut checks = Vec::new();
    // One numbered directory per dump (short: the server's socket lives there).
    let dumps = ctx.artifacts.iter().filter(|a| a.name == sql::DUMP);
    for (i, dump) in dumps.enumerate() {
        let n = dump.node.as_str();
        let dir = format!("{root}/{i}");
        let server = Throwaway::start(ctx, &on, &dir)?;
        let result = server.load_and_compare(n, dump);
        server.stop();
        checks.extend(result?);
    }
    Ok(checks)
}

/// A drill's MariaDB server.
struct Throwaway<'c, 'a> {
    ctx: &'c Context<'a>,
    node: String,
    socket: String,
    shutdown: Undo,
}

impl<'c, 'a> Throwaway<'c, 'a> {
    /// A new datadir in `dir` on `node`, and a server on it, answering.
    fn start(ctx: &'c Context<'a>, node: &str, dir: &str) -> Result<Self, PluginError> {
        let socket = ctx.drill_socket(node, dir)?;
        ctx.run_ok(&Command::on(node, "mkdir").args(["-p", dir]))?;
        ctx.run_ok(&Command::on(node, "mariadb-install-db").args([
            "--no-defaults",
            &format!("--datadir={dir}/data"),
            "--user=root",
            "--skip-test-db",
        ]))?;
        let shutdown = ctx.undo_with(
            &Command::on(node, "mariadb-admin").args([
                "--no-defaults",
                &format!("--socket={socket}"),
                "-u",
                "root",
                "shutdown",
            ]),
            "stop the drill's throwaway MariaDB server",
        )?;
        let server = Self {
            ctx,
            node: node.into(),
            socket,
            shutdown,
        };
        ctx.run_ok(&Command::on(node, "sh").args(["-c", START, "coffer", dir]))?;
        for _ in 0..120 {
            let ping = ctx.run(&server.client("mariadb-admin").arg("ping"));
            if ping.is_ok_and(|o| o.success()) {
                return Ok(server);
            }
            ctx.run_ok(&Command::on(node, "sleep").arg("1"))?;
        }
        server.stop();
        Err(PluginError::CommandFailed(format!(
            "{node}: the drill's throwaway MariaDB server did not answer in 120 s (see \
             {dir}/error.log)"
        )))
    }

    /// `PROGRAM --no-defaults --socket=… -u root`.
    fn client(&self, program: &str) -> Command {
        Command::on(&self.node, program).args([
            "--no-defaults",
            &format!("--socket={}", self.socket),
            "-u",
            "root",
        ])
    }

    /// Import `dump`, then compare the checksums recorded for node `n`.
    fn load_and_compare(&self, n: &str, dump: &Artifact) -> Result<Vec<Check>, PluginError> {
        let import = self.client("mariadb").arg("--max-allowed-packet=1G");
        let imported = self.ctx.feed(&dump.reference(), &import);
        let mut checks = vec![Check::new(
            &self.node,
            &format!("{} of {n} imports into a throwaway server", sql::DUMP),
            imported.is_ok(),
            imported.err().map(|e| e.to_string()).unwrap_or_default(),
        )];
        // The accounts script is not applied: once the dump's privilege tables are loaded, the
        // throwaway's root would be the backed-up server's, with its credentials.
        if !checks.iter().all(|c| c.ok) {
            return Ok(checks);
        }
        // Tables unchanged across the dump: their checksum, exactly. Tables written while it
        // ran: only that they are there (`CHECKSUM TABLE` says NULL for a missing one).
        let mut expected: Vec<(String, Option<String>)> = recorded_checksums(self.ctx, n)
            .into_iter()
            .map(|(t, sum)| (t, Some(sum)))
            .collect();
        expected.extend(
            sql::changed_tables(self.ctx, n)
                .into_iter()
                .map(|t| (t, None)),
        );
        if expected.is_empty() {
            return Ok(checks);
        }
        let tables: Vec<&str> = expected.iter().map(|(t, _)| t.as_str()).collect();
        let out = self.ctx.run_ok(&self.client("mariadb").args([
            "-N",
            "-B",
            "-e",
            &format!("CHECKSUM TABLE {}", tables.join(", ")),
        ]))?;
        let text = out.stdout_text();
        let found: Vec<&str> = text
            .lines()
            .map(|l| l.split('\t').nth(1).unwrap_or(""))
            .collect();
        for (i, (table, want)) in expected.iter().enumerate() {
            let got = found.get(i).copied().unwrap_or("");
            let (ok, detail) = match want {
                Some(want) if got == want => (true, String::new()),
                Some(want) => (false, format!("checksum {got}, backup had {want}")),
                None if got.is_empty() || got == "NULL" => (false, "missing".to_string()),
                None => (
                    true,
                    "written during the backup: present, its checksum not compared".to_string(),
                ),
            };
            checks.push(Check::new(
                &self.node,
                &format!("table {table} of {n}"),
                ok,
                detail,
            ));
        }
        Ok(checks)
    }

    /// Shut it down (its datadir goes with the scratch directory).
    fn stop(self) {
        if self
            .ctx
            .run(&self.client("mariadb-admin").arg("shutdown"))
            .is_ok_and(|o| o.success())
        {
            self.ctx.keep(self.shutdown);
        }
    }
}
