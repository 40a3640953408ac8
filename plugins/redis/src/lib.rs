//! The `redis` plugin. Backup: `BGSAVE` (never a blocking `SAVE`), wait until `rdb_saves` moves
//! on with no save in progress and the last one `ok`, then stream the `dump.rdb` that save wrote
//! (through a hard link, so a later save renaming a new file into place cannot swap it
//! mid-read) and record its key count (`redis-check-rdb`) and the keys per database. With AOF on,
//! `BGREWRITEAOF` first and the append-only directory is kept too. Restore: stop Redis, move the
//! old files aside, put the dump (and AOF) in place with the right owner, start, wait until it
//! has loaded. Validate: `PING`, and the keys loaded and per database against the record.
//!
//! The password comes from the node's config (`requirepass`) or the deployment file and reaches
//! `redis-cli` through stdin (`--askpass`), never argv.

use coffer_sdk::*;

/// The RDB artifact.
pub const RDB: &str = "dump.rdb";
/// The append-only directory artifact.
pub const AOF: &str = "appendonly";
/// Record: `node \t keys in the RDB`.
pub const RDB_KEYS: &str = "rdb-keys";
/// Record: `node \t append-only directory name`.
pub const AOF_DIR: &str = "aof-dir";
/// Record: `node \t db \t keys`.
pub const DB_KEYS: &str = "db-keys";

/// Writes stdin to "$1" (via a temporary file, renamed) owned by "$2"; on failure (a full
/// disk) the temporary file is removed.
/// (No braces: the manifest's argument patterns are globs.)
const PUT_FILE: &str = "umask 077 && if cat > \"$1.coffer\" && chown \"$2\" \"$1.coffer\" && \
     mv -f \"$1.coffer\" \"$1\"; then :; else rm -f \"$1.coffer\"; exit 1; fi";
/// Moves "$1" to "$2" if "$1" exists.
const MOVE_IF_PRESENT: &str = "test ! -e \"$1\" || mv -T \"$1\" \"$2\"";

/// The redis plugin.
pub struct Redis;

struct Server<'c, 'a> {
    ctx: &'c Context<'a>,
    node: String,
    host: String,
    password: Option<String>,
}

impl<'c, 'a> Server<'c, 'a> {
    fn of(ctx: &'c Context<'a>, node: &Node) -> Result<Self, PluginError> {
        let host = match ctx.settings.get("host") {
            Some(h) => h.to_string(),
            None if node.address == "local" => "127.0.0.1".into(),
            None => node.address.clone(),
        };
        let mut server = Self {
            ctx,
            node: node.name.clone(),
            host,
            password: ctx.settings.get("password").map(str::to_string),
        };
        if server.password.is_none() {
            let conf = ctx
                .settings
                .get("config")
                .unwrap_or("/etc/redis/redis.conf");
            let out = ctx
                .run(&Command::on(&node.name, "grep").args(["-m1", "^requirepass", conf]))
                .map_err(|e| PluginError::CommandFailed(e.to_string()))?;
            server.password = out
                .stdout_text()
                .split_once(char::is_whitespace)
                .map(|(_, p)| p.trim().trim_matches('"').to_string())
                .filter(|p| !p.is_empty());
        }
        Ok(server)
    }

    fn dir(&self) -> &str {
        self.ctx.settings.get("dir").unwrap_or("/var/lib/redis")
    }

    /// `redis-cli … ARGS`; the password goes through stdin.
    fn cli(&self, args: &[&str]) -> Result<String, PluginError> {
        let port = self.ctx.settings.get("port").unwrap_or("6379");
        let mut cmd = Command::on(&self.node, "redis-cli").args([
            "--no-auth-warning",
            "-h",
            &self.host,
            "-p",
            port,
        ]);
        if let Some(p) = &self.password {
            cmd = cmd.arg("--askpass").stdin(format!("{p}\n"));
        }
        let out = self.ctx.run_ok(&cmd.args(args.iter().copied()))?;
        let text = out.stdout_text();
        let first = text.lines().next().unwrap_or("");
        let err = out.stderr_text();
        if ["ERR", "NOAUTH", "WRONGPASS", "LOADING", "MISCONF"]
            .iter()
            .any(|e| first.starts_with(e))
            || err.contains("AUTH failed")
        {
            return Err(PluginError::CommandFailed(format!(
                "{}: redis-cli {}: {} {}",
                self.node,
                args.join(" "),
                first,
                err.trim()
            )));
        }
        Ok(text)
    }

    /// `INFO section` as key/value pairs.
    fn info(&self, section: &str) -> Result<Vec<(String, String)>, PluginError> {
        Ok(self
            .cli(&["INFO", section])?
            .lines()
            .filter_map(|l| l.trim().split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    fn value(&self, info: &[(String, String)], key: &str) -> String {
        info.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    fn sleep(&self) -> Result<(), PluginError> {
        self.ctx
            .run_ok(&Command::on(&self.node, "sleep").arg("0.1"))
            .map(drop)
    }

    /// Wait until `done(persistence info)`, at most `timeout-seconds`.
    fn wait(
        &self,
        what: &str,
        done: impl Fn(&[(String, String)]) -> bool,
    ) -> Result<Vec<(String, String)>, PluginError> {
        let limit: u64 = self.ctx.settings.parse_or("timeout-seconds", 3600)?;
        // By the clock (WASI's monotonic clock): each poll is a command on the node and takes
        // its own time.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(limit);
        loop {
            let info = self.info("persistence")?;
            // In a dry run the save or restart it waits for does not happen.
            if done(&info) || self.ctx.dry_run {
                return Ok(info);
            }
            if std::time::Instant::now() >= deadline {
                break;
            }
            self.sleep()?;
        }
        Err(PluginError::CommandFailed(format!(
            "{}: {what} did not finish in {limit}s",
            self.node
        )))
    }

    /// Keys per database: (`db0`, count).
    fn keyspace(&self) -> Result<Vec<(String, u64)>, PluginError> {
        Ok(self
            .info("keyspace")?
            .into_iter()
            .filter(|(k, _)| k.starts_with("db"))
            .map(|(db, v)| {
                let keys = v
                    .split(',')
                    .find_map(|f| f.strip_prefix("keys="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                (db, keys)
            })
            .collect())
    }

    fn service(&self, verb: &str) -> Command {
        let unit = self.ctx.settings.get("service").unwrap_or("redis-server");
        Command::on(&self.node, "systemctl").args([verb, unit])
    }
}

fn records_of<'r>(ctx: &'r Context<'_>, key: &str, node: &str) -> Vec<Vec<&'r str>> {
    ctx.records
        .all(key)
        .into_iter()
        .map(|r| r.split('\t').collect::<Vec<_>>())
        .filter(|f| f.first() == Some(&node))
        .collect()
}

impl Plugin for Redis {
    fn describe() -> PluginInfo {
        let mut info = PluginInfo::new(
            "redis",
            env!("CARGO_PKG_VERSION"),
            "Redis: a BGSAVE snapshot (and the append-only files when AOF is on), streamed from \
             the node that wrote it; restore puts it back with the right owner and restarts \
             Redis; validate checks PING and the keys per database.",
        )
        .roles(&["controller", "redis"])
        .presets(&["controllers"])
        .after(&["filesystem", "pacemaker"])
        .node_scoped(Operations::ALL)
        .setting(
            "dir",
            "Redis's data directory on the node",
            Some("/var/lib/redis"),
        )
        .setting(
            "host",
            "Address Redis listens on (default: the node's address)",
            None,
        )
        .setting("port", "Its port", Some("6379"))
        .setting(
            "config",
            "Redis's config on the node, read for `requirepass`",
            Some("/etc/redis/redis.conf"),
        )
        .setting(
            "password",
            "The password (else the config's requirepass); sent through stdin",
            None,
        )
        .setting("service", "The systemd unit", Some("redis-server"))
        .setting("owner", "Owner of the restored files", Some("redis:redis"))
        .setting(
            "timeout-seconds",
            "Longest wait for a save, rewrite or load",
            Some("3600"),
        )
        .reads("grep", &["-m1", "^requirepass", "*"])
        .reads("sleep", &["0.1"])
        .command("ln", &["-f", "*/dump.rdb", "*/dump.rdb.coffer-*"])
        .reads("redis-check-rdb", &["*/dump.rdb.coffer-*"])
        .reads("cat", &["*/dump.rdb.coffer-*"])
        .command("rm", &["-f", "*/dump.rdb.coffer-*"])
        .command("systemctl", &["stop", "*"])
        .command("systemctl", &["start", "*"])
        .command(
            "sh",
            &["-c", &literal(PUT_FILE), "coffer", "*/dump.rdb", "*"],
        )
        .path("/var/lib/redis/**")
        .path("/var/lib/redis")
        // A drill's throwaway server, in its scratch directory.
        .command("mkdir", &["-p", "*/coffer-drill-redis-*/*"])
        .command(
            "sh",
            &[
                "-c",
                &literal(WRITE_FILE),
                "coffer",
                "*/coffer-drill-redis-*/dump.rdb",
            ],
        )
        .reads("redis-check-rdb", &["*/coffer-drill-redis-*/dump.rdb"])
        .command(
            "redis-server",
            &[
                "--port",
                "0",
                "--unixsocket",
                "*/coffer-drill-redis-*/s",
                "**",
            ],
        )
        .reads(
            "redis-cli",
            &["-s", "*/coffer-drill-redis-*/s", "INFO", "*"],
        )
        .command(
            "redis-cli",
            &["-s", "*/coffer-drill-redis-*/s", "SHUTDOWN", "NOSAVE"],
        );
        // The moves aside, back, and of a failed restore's files.
        let script = literal(MOVE_IF_PRESENT);
        for (from, to) in [
            ("*", "*.before-restore-*"),
            ("*.before-restore-*", "*"),
            ("*", "*.failed-restore-*"),
        ] {
            info = info.command("sh", &["-c", &script, "coffer", from, to]);
        }
        // `redis-cli --no-auth-warning -h HOST -p PORT [--askpass] COMMAND…`: what only reads
        // runs in a dry run, the saves do not.
        for askpass in [None, Some("--askpass")] {
            let cli = |command: &[&'static str]| -> Vec<&'static str> {
                ["--no-auth-warning", "-h", "*", "-p", "*"]
                    .into_iter()
                    .chain(askpass)
                    .chain(command.iter().copied())
                    .collect()
            };
            for command in [&["INFO", "*"][..], &["PING"], &["CONFIG", "GET", "*"]] {
                info = info.reads("redis-cli", &cli(command));
            }
            for command in ["BGSAVE", "BGREWRITEAOF"] {
                info = info.command("redis-cli", &cli(&[command]));
            }
        }
        info
    }

    fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
        let mut report = BackupReport::default();
        for node in &ctx.nodes {
            let r = Server::of(ctx, node)?;
            let n = node.name.as_str();
            let info = r.info("persistence")?;
            let aof = r.value(&info, "aof_enabled") == "1";
            // Let a save already running finish, then make our own.
            let info = r.wait("a save already running", |i| {
                r.value(i, "rdb_bgsave_in_progress") == "0"
            })?;
            let saves: u64 = r.value(&info, "rdb_saves").parse().unwrap_or(0);
            r.cli(&["BGSAVE"])?;
            let info = r.wait("BGSAVE", |i| {
                r.value(i, "rdb_bgsave_in_progress") == "0"
                    && r.value(i, "rdb_saves").parse::<u64>().unwrap_or(0) > saves
            })?;
            if r.value(&info, "rdb_last_bgsave_status") != "ok" {
                return Err(PluginError::CommandFailed(format!(
                    "{n}: BGSAVE failed (rdb_last_bgsave_status {}); see Redis's log",
                    r.value(&info, "rdb_last_bgsave_status")
                )));
            }
            // The keys per database now; exact for the RDB when nothing was written since.
            for (db, keys) in r.keyspace()? {
                report.records.push(DB_KEYS, format!("{n}\t{db}\t{keys}"));
            }
            let dir = r.dir();
            let link = format!("{dir}/dump.rdb.coffer-{}", ctx.run_slug());
            let cleanup = ctx.undo_with(
                &Command::on(n, "rm").args(["-f", &link]),
                "remove the temporary link to dump.rdb",
            )?;
            ctx.run_ok(&Command::on(n, "ln").args(["-f", &format!("{dir}/dump.rdb"), &link]))?;
            // In a dry run there is no link to check.
            let check = if ctx.dry_run {
                Output {
                    stdout: b"[info] ? keys read".to_vec(),
                    ..Output::default()
                }
            } else {
                ctx.run_ok(&Command::on(n, "redis-check-rdb").arg(&link))?
            };
            let keys = check
                .stdout_text()
                .lines()
                .find_map(|l| {
                    l.strip_prefix("[info] ")?
                        .strip_suffix(" keys read")
                        .map(str::to_string)
                })
                .ok_or_else(|| {
                    PluginError::CommandFailed(format!(
                        "{n}: redis-check-rdb found no keys count: {}",
                        check.stdout_text()
                    ))
                })?;
            report.records.push(RDB_KEYS, format!("{n}\t{keys}"));
            let a = ctx.capture(&Command::on(n, "cat").arg(&link), RDB)?;
            ctx.run_ok(&Command::on(n, "rm").args(["-f", &link]))?;
            ctx.keep(cleanup);
            ctx.info(format!("{n}: dump.rdb with {keys} keys, {} bytes", a.size));
            if aof {
                let info = r.info("persistence")?;
                let rewrites = r.value(&info, "aof_rewrites").parse::<u64>().unwrap_or(0);
                r.cli(&["BGREWRITEAOF"])?;
                r.wait("BGREWRITEAOF", |i| {
                    r.value(i, "aof_rewrite_in_progress") == "0"
                        && r.value(i, "aof_rewrite_scheduled") == "0"
                        && r.value(i, "aof_rewrites").parse::<u64>().unwrap_or(0) > rewrites
                })?;
                let dirname = r.cli(&["CONFIG", "GET", "appenddirname"])?;
                let dirname = dirname
                    .lines()
                    .nth(1)
                    .unwrap_or("appendonlydir")
                    .to_string();
                let set = PathSet {
                    paths: vec![format!("{dir}/{dirname}")],
                    excludes: vec![],
                };
                ctx.capture_paths(n, &set, AOF)?;
                report.records.push(AOF_DIR, format!("{n}\t{dirname}"));
                ctx.info(format!("{n}: append-only files {dirname} kept too"));
            }
        }
        Ok(report)
    }

    fn restore(ctx: &Context<'_>) -> Result<(), PluginError> {
        for node in &ctx.nodes {
            let n = node.name.as_str();
            let r = Server::of(ctx, node)?;
            let dir = r.dir();
            let rdb = ctx.artifacts_of(n).find(|a| a.name == RDB).ok_or_else(|| {
                PluginError::Precondition(format!("{n}: the snapshot has no {RDB}"))
            })?;
            let aof = ctx.artifacts_of(n).find(|a| a.name == AOF);
            let owner = ctx.settings.get("owner").unwrap_or("redis:redis");
            let dump = format!("{dir}/dump.rdb");
            let aside = format!("{dump}.before-restore-{}", ctx.run_id);
            let failed = format!("{dump}.failed-restore-{}", ctx.run_id);
            let mv = |from: &str, to: &str| {
                Command::on(n, "sh").args(["-c", MOVE_IF_PRESENT, "coffer", from, to])
            };
            let mut undo = vec![ctx.undo_with(&r.service("start"), "start Redis again")?];
            ctx.run_ok(&r.service("stop"))?;
            undo.push(ctx.undo_with(&mv(&aside, &dump), "put the previous dump.rdb back")?);
            ctx.run_ok(&mv(&dump, &aside))?;
            // Only once the old dump is aside: what is at `dump` from now on is the new one.
            undo.push(ctx.undo_with(&mv(&dump, &failed), "keep the failed dump.rdb aside")?);
            ctx.info(format!("{n}: the previous dump.rdb is kept as {aside}"));
            ctx.feed(
                &rdb.reference(),
                &Command::on(n, "sh").args(["-c", PUT_FILE, "coffer", &dump, owner]),
            )?;
            if let Some(aof) = aof {
                let dirname = ctx
                    .records
                    .all(AOF_DIR)
                    .into_iter()
                    .find_map(|r| r.strip_prefix(&format!("{n}\t")).map(str::to_string))
                    .unwrap_or_else(|| "appendonlydir".into());
                let aof_dir = format!("{dir}/{dirname}");
                let aof_aside = format!("{aof_dir}.before-restore-{}", ctx.run_id);
                undo.push(ctx.undo_with(
                    &mv(&aof_aside, &aof_dir),
                    "put the previous append-only files back",
                )?);
                ctx.run_ok(&mv(&aof_dir, &aof_aside))?;
                undo.push(ctx.undo_with(
                    &mv(
                        &aof_dir,
                        &format!("{aof_dir}.failed-restore-{}", ctx.run_id),
                    ),
                    "keep the failed append-only files aside",
                )?);
                ctx.restore_paths(&aof.reference(), n, "/", &[])?;
            }
            undo.push(ctx.undo_with(&r.service("stop"), "stop the restored Redis")?);
            ctx.run_ok(&r.service("start"))?;
            r.wait("loading the dump", |i| r.value(i, "loading") == "0")?;
            for u in undo {
                ctx.keep(u);
            }
            ctx.info(format!("{n}: Redis restarted on the restored data"));
        }
        Ok(())
    }

    fn validate(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        let mut checks = Vec::new();
        for node in &ctx.nodes {
            let n = node.name.as_str();
            let r = Server::of(ctx, node)?;
            let pong = r.cli(&["PING"]);
            let alive = pong.as_deref().map(str::trim) == Ok("PONG");
            checks.push(Check::new(
                n,
                "PING",
                alive,
                pong.err().map(|e| e.to_string()).unwrap_or_default(),
            ));
            if !alive {
                continue;
            }
            let now = r.keyspace()?;
            for f in records_of(ctx, DB_KEYS, n) {
                let (db, want) = (
                    f.get(1).copied().unwrap_or(""),
                    f.get(2).copied().unwrap_or(""),
                );
                let got = now
                    .iter()
                    .find(|(d, _)| d == db)
                    .map(|(_, k)| *k)
                    .unwrap_or(0);
                checks.push(Check::new(
                    n,
                    &format!("keys in {db}"),
                    got.to_string() == want,
                    format!("{got}, backup had {want}"),
                ));
            }
        }
        Ok(checks)
    }

    /// Each node's `dump.rdb` into the scratch directory: `redis-check-rdb` reads the keys the
    /// backup recorded, then a throwaway `redis-server` (no TCP port, a socket in the scratch
    /// directory) loads it and holds as many keys. The live Redis is never contacted.
    fn drill(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        let (on, root) = ctx.drill_place()?;
        let mut checks = Vec::new();
        // One numbered directory per dump (short: the server's socket lives there).
        for (i, rdb) in ctx.artifacts.iter().filter(|a| a.name == RDB).enumerate() {
            let n = rdb.node.as_str();
            let want = records_of(ctx, RDB_KEYS, n)
                .first()
                .and_then(|f| f.get(1).map(|k| k.to_string()))
                .ok_or_else(|| {
                    PluginError::Precondition(format!("{n}: the snapshot recorded no key count"))
                })?;
            let dir = format!("{root}/{i}");
            let file = format!("{dir}/{RDB}");
            ctx.run_ok(&Command::on(&on, "mkdir").args(["-p", &dir]))?;
            ctx.feed(
                &rdb.reference(),
                &Command::on(&on, "sh").args(["-c", WRITE_FILE, "coffer", &file]),
            )?;
            let read = ctx
                .run(&Command::on(&on, "redis-check-rdb").arg(&file))
                .map_err(|e| PluginError::CommandFailed(format!("{on}: {e}")))?;
            let keys = read.stdout_text().lines().find_map(|l| {
                l.strip_prefix("[info] ")?
                    .strip_suffix(" keys read")
                    .map(str::to_string)
            });
            checks.push(Check::new(
                &on,
                &format!("{RDB} of {n}: redis-check-rdb reads the keys the backup recorded"),
                read.success() && keys.as_deref() == Some(want.as_str()),
                format!(
                    "{} keys, backup had {want}{}",
                    keys.as_deref().unwrap_or("no"),
                    if read.success() {
                        String::new()
                    } else {
                        format!(": {}", read.stdout_text().trim())
                    }
                ),
            ));
            let server = Throwaway::start(ctx, &on, &dir)?;
            let loaded = server.keys();
            server.stop()?;
            let (ok, detail) = match loaded {
                Ok(k) => (
                    k.to_string() == want,
                    format!("{k} keys, backup had {want}"),
                ),
                Err(e) => (false, e.to_string()),
            };
            checks.push(Check::new(
                &on,
                &format!("{RDB} of {n} loads into a throwaway redis-server"),
                ok,
                detail,
            ));
        }
        Ok(checks)
    }
}

/// Writes stdin to "$1".
const WRITE_FILE: &str = "umask 077 && cat > \"$1\"";

/// A `redis-server` of a drill: no TCP port, its socket, data and log in a scratch directory.
struct Throwaway<'c, 'a> {
    ctx: &'c Context<'a>,
    node: String,
    socket: String,
    /// Its shutdown, registered before it starts (so a failed drill stops it too).
    shutdown: Undo,
}

impl<'c, 'a> Throwaway<'c, 'a> {
    /// Start one on `node` over the `dump.rdb` in `dir`, and wait until it has loaded it.
    fn start(ctx: &'c Context<'a>, node: &str, dir: &str) -> Result<Self, PluginError> {
        let socket = ctx.drill_socket(node, dir)?;
        let shutdown = ctx.undo_with(
            &Command::on(node, "redis-cli").args(["-s", &socket, "SHUTDOWN", "NOSAVE"]),
            "stop the drill's throwaway redis-server",
        )?;
        let server = Self {
            ctx,
            node: node.into(),
            socket,
            shutdown,
        };
        ctx.run_ok(&Command::on(node, "redis-server").args([
            "--port",
            "0",
            "--unixsocket",
            &server.socket,
            "--dir",
            dir,
            "--dbfilename",
            RDB,
            "--daemonize",
            "yes",
            "--pidfile",
            &format!("{dir}/redis.pid"),
            "--logfile",
            &format!("{dir}/redis.log"),
            "--save",
            "",
            "--appendonly",
            "no",
        ]))?;
        let limit: u64 = ctx.settings.parse_or("timeout-seconds", 3600)?;
        let started = std::time::Instant::now();
        let deadline = started + std::time::Duration::from_secs(limit);
        // A server that never answers is not loading: it did not start (its log says why).
        let silent = std::time::Duration::from_secs(30);
        let mut answered = false;
        loop {
            let info = server.cli(&["INFO", "persistence"]);
            answered |= info.is_ok();
            if info.is_ok_and(|i| i.lines().any(|l| l.trim() == "loading:0")) {
                return Ok(server);
            }
            let now = std::time::Instant::now();
            if now > deadline || (!answered && now - started > silent) {
                server.stop()?;
                return Err(PluginError::CommandFailed(format!(
                    "{node}: the throwaway redis-server did not load {dir}/{RDB} (see \
                     {dir}/redis.log)"
                )));
            }
            ctx.run_ok(&Command::on(node, "sleep").arg("0.1"))?;
        }
    }

    /// `redis-cli -s SOCKET ARGS`: its output.
    fn cli(&self, args: &[&str]) -> Result<String, PluginError> {
        let cmd = Command::on(&self.node, "redis-cli")
            .args(["-s", &self.socket])
            .args(args.iter().copied());
        Ok(self.ctx.run_ok(&cmd)?.stdout_text())
    }

    /// The keys it holds, in every database.
    fn keys(&self) -> Result<u64, PluginError> {
        Ok(self
            .cli(&["INFO", "keyspace"])?
            .lines()
            .filter(|l| l.starts_with("db"))
            .filter_map(|l| {
                l.split([':', ','])
                    .find_map(|f| f.strip_prefix("keys="))
                    .and_then(|k| k.parse::<u64>().ok())
            })
            .sum())
    }

    fn stop(self) -> Result<(), PluginError> {
        // The connection closes as it stops: the exit status says nothing.
        let _ = self.ctx.run(&Command::on(&self.node, "redis-cli").args([
            "-s",
            &self.socket,
            "SHUTDOWN",
            "NOSAVE",
        ]));
        self.ctx.keep(self.shutdown);
        Ok(())
    }
}

export_plugin!(Redis);

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_sdk::testing::{Call, Harness, Reply};

    const LINK: &str = "/var/lib/redis/dump.rdb.coffer-test-run";
    const DUMP: &str = "/var/lib/redis/dump.rdb";

    /// `redis-cli` on r1 with `args` (after `--askpass` when `askpass`).
    fn cli(askpass: bool, args: &[&str]) -> Vec<String> {
        let mut argv = vec![
            "redis-cli",
            "--no-auth-warning",
            "-h",
            "r1.test",
            "-p",
            "6379",
        ];
        if askpass {
            argv.push("--askpass");
        }
        argv.extend(args);
        argv.into_iter().map(str::to_string).collect()
    }

    fn reply_cli(h: Harness, askpass: bool, args: &[&str], reply: Reply) -> Harness {
        let argv = cli(askpass, args);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        h.reply(&argv, reply)
    }

    fn persistence(saves: u64, loading: u8) -> Reply {
        Reply::stdout(format!(
            "# Persistence\r\nloading:{loading}\r\nrdb_bgsave_in_progress:0\r\n\
             rdb_saves:{saves}\r\nrdb_last_bgsave_status:ok\r\naof_enabled:0\r\n"
        ))
    }

    /// `r1: sh -c MOVE_IF_PRESENT coffer FROM TO`.
    fn mv(from: &str, to: &str) -> String {
        format!("r1: sh -c {MOVE_IF_PRESENT} coffer {from} {to}")
    }

    #[test]
    fn backup_saves_waits_then_streams_the_dump_through_a_link() {
        // A dry run: the harness cannot make `rdb_saves` move on between two polls, and a dry
        // run does not wait for the save. The reads still get their scripted answers.
        let h = reply_cli(
            Harness::new().node("r1", &["redis"]).dry_run(),
            false,
            &["INFO", "persistence"],
            persistence(4, 0),
        );
        let h = reply_cli(
            h,
            false,
            &["INFO", "keyspace"],
            Reply::stdout(
                "# Keyspace\r\ndb0:keys=12,expires=0,avg_ttl=0\r\ndb3:keys=2,expires=1\r\n",
            ),
        );
        let report = h.backup::<Redis>().unwrap();
        let log = h.transcript();
        let line = |args: &[&str]| format!("r1: {}", cli(false, args).join(" "));
        let info = line(&["INFO", "persistence"]);
        let polls: Vec<usize> = (0..log.len()).filter(|&i| log[i] == info).collect();
        let bgsave = log.first(&line(&["BGSAVE"]));
        let keyspace = log.first(&line(&["INFO", "keyspace"]));
        let cleanup = log.first(&format!("undo-push r1: rm -f {LINK}"));
        let link = log.first(&format!("r1: ln -f {DUMP} {LINK}"));
        let capture = log.first(&format!("capture {RDB} r1: cat {LINK}"));
        let rm = log.first(&format!("r1: rm -f {LINK}"));

        assert!(log.first("r1: grep -m1 ^requirepass /etc/redis/redis.conf") < polls[0]);
        // Before BGSAVE: the first look and the wait for a save already running; after it,
        // the wait for this save.
        assert_eq!(polls.len(), 3, "{log:#?}");
        assert!(polls[1] < bgsave && bgsave < polls[2], "{log:#?}");
        assert!(polls[2] < keyspace && keyspace < cleanup, "{log:#?}");
        assert!(cleanup < link && link < capture && capture < rm, "{log:#?}");
        assert!(h.pending_undo().is_empty(), "{:?}", h.pending_undo());
        assert!(
            !log.iter().any(|l| l.contains("BGREWRITEAOF")),
            "AOF is off"
        );
        assert_eq!(report.records.all(DB_KEYS), ["r1\tdb0\t12", "r1\tdb3\t2"]);
    }

    #[test]
    fn backup_fails_when_bgsave_never_finishes_and_keeps_the_password_on_stdin() {
        let h = Harness::new()
            .node("r1", &["redis"])
            .setting("timeout-seconds", "0")
            .reply(
                &["grep", "-m1", "^requirepass"],
                Reply::stdout("requirepass \"pw0rd\"\n"),
            );
        // `rdb_saves` stays at 4: the save never completes.
        let h = reply_cli(h, true, &["INFO", "persistence"], persistence(4, 0));
        let err = h.backup::<Redis>().unwrap_err();
        assert!(
            matches!(&err, PluginError::CommandFailed(m) if m.contains("BGSAVE did not finish")),
            "{err:?}"
        );
        let log = h.transcript();
        assert!(log.first(&format!("r1: {}", cli(true, &["BGSAVE"]).join(" "))) > 0);
        // Nothing was linked or captured.
        assert!(
            !log.iter()
                .any(|l| l.contains(" ln ") || l.starts_with("capture"))
        );
        let mut clis = 0;
        for call in h.calls() {
            let Call::Exec(c) = call else { continue };
            assert!(!c.argv.concat().contains("pw0rd"), "{:?}", c.argv);
            if c.argv[0] == "redis-cli" {
                clis += 1;
                assert_eq!(c.argv[6], "--askpass");
                assert_eq!(c.stdin, b"pw0rd\n");
            }
        }
        assert_eq!(clis, 4, "{log:#?}");
    }

    #[test]
    fn restore_stops_moves_aside_puts_back_rdb_and_aof_then_starts_and_waits() {
        let h = Harness::new()
            .node("r1", &["redis"])
            .record(AOF_DIR, "r1\tappendonlydir")
            .artifact("r1", RDB, ArtifactKind::Stream, b"REDIS0011")
            .artifact("r1", AOF, ArtifactKind::Paths, b"tar");
        let h = reply_cli(h, false, &["INFO", "persistence"], persistence(0, 0));
        h.restore::<Redis>().unwrap();
        let log = h.transcript();
        let aside = format!("{DUMP}.before-restore-test-run");
        let aof = "/var/lib/redis/appendonlydir";
        let aof_aside = format!("{aof}.before-restore-test-run");

        let start_again = log.first("undo-push r1: systemctl start redis-server");
        let stop = log.first("r1: systemctl stop redis-server");
        let put_back = log.first(&format!("undo-push {}", mv(&aside, DUMP)));
        let keep_failed = log.first(&format!(
            "undo-push {}",
            mv(DUMP, &format!("{DUMP}.failed-restore-test-run"))
        ));
        let move_aside = log.first(&mv(DUMP, &aside));
        let put = log.first(&format!(
            "feed {RDB} r1: sh -c {PUT_FILE} coffer {DUMP} redis:redis"
        ));
        let aof_back = log.first(&format!("undo-push {}", mv(&aof_aside, aof)));
        let aof_move = log.first(&mv(aof, &aof_aside));
        let aof_restore = log.first(&format!("restore-paths {AOF} r1: /"));
        let stop_restored = log.first("undo-push r1: systemctl stop redis-server");
        let start = log.first("r1: systemctl start redis-server");
        let loaded = log.first(&format!(
            "r1: {}",
            cli(false, &["INFO", "persistence"]).join(" ")
        ));

        assert!(start_again < stop, "{log:#?}");
        assert!(stop < put_back && put_back < move_aside && move_aside < keep_failed);
        assert!(move_aside < put && put < aof_back && aof_back < aof_move);
        assert!(aof_move < aof_restore && aof_restore < stop_restored);
        assert!(stop_restored < start && start < loaded, "{log:#?}");
        assert!(h.pending_undo().is_empty(), "{:?}", h.pending_undo());
    }

    #[test]
    fn a_restore_that_never_loads_leaves_the_reversals_to_the_host() {
        let h = Harness::new()
            .node("r1", &["redis"])
            .setting("timeout-seconds", "0")
            .artifact("r1", RDB, ArtifactKind::Stream, b"REDIS0011");
        let h = reply_cli(h, false, &["INFO", "persistence"], persistence(0, 1));
        let err = h.restore::<Redis>().unwrap_err();
        assert!(format!("{err:?}").contains("loading the dump"), "{err:?}");
        let pending = h.pending_undo_lines();
        let aside = format!("{DUMP}.before-restore-test-run");
        let failed = format!("{DUMP}.failed-restore-test-run");
        // Run newest first: stop, keep the new dump aside, put the old one back, start.
        assert_eq!(
            pending,
            [
                "r1: systemctl start redis-server".to_string(),
                mv(&aside, DUMP),
                mv(DUMP, &failed),
                "r1: systemctl stop redis-server".to_string(),
            ]
        );
    }

    #[test]
    fn a_drill_loads_each_dump_into_a_throwaway_server_and_never_asks_the_live_one() {
        let root = "/var/tmp/coffer-drill-redis-abc";
        let sock = format!("{root}/0/s");
        let h = Harness::new()
            .node("host", &[])
            .target_root(root)
            .artifact("r1", RDB, ArtifactKind::Stream, b"REDIS0011")
            .record(RDB_KEYS, "r1\t12")
            .reply(&["redis-check-rdb"], Reply::stdout("[info] 12 keys read\n"))
            .reply(
                &["redis-cli", "-s", &sock, "INFO", "persistence"],
                Reply::stdout("# Persistence\r\nloading:0\r\n"),
            )
            .reply(
                &["redis-cli", "-s", &sock, "INFO", "keyspace"],
                Reply::stdout("# Keyspace\r\ndb0:keys=10,expires=0\r\ndb3:keys=1\r\n"),
            );
        let checks = h.drill::<Redis>().unwrap();
        // 11 keys loaded where the dump had 12: the second check fails, saying both.
        assert_eq!(
            checks
                .iter()
                .map(|c| (c.ok, c.detail.as_str()))
                .collect::<Vec<_>>(),
            [
                (true, "12 keys, backup had 12"),
                (false, "11 keys, backup had 12")
            ]
        );
        let log = h.transcript();
        let write = log.first(&format!("feed {RDB} host: sh -c"));
        let check = log.first(&format!("host: redis-check-rdb {root}/0/dump.rdb"));
        let undo = log.first(&format!(
            "undo-push host: redis-cli -s {sock} SHUTDOWN NOSAVE"
        ));
        let start = log.first("host: redis-server --port 0 --unixsocket");
        let keys = log.first(&format!("host: redis-cli -s {sock} INFO keyspace"));
        let stop = log.last(&format!("host: redis-cli -s {sock} SHUTDOWN NOSAVE"));
        assert!(log.first(&format!("host: mkdir -p {root}/0")) < write);
        assert!(write < check && check < undo && undo < start && start < keys && keys < stop);
        assert!(
            h.pending_undo().is_empty(),
            "the throwaway's stop was released"
        );
        assert!(
            !log.0.iter().any(|l| l.contains(" -h ")),
            "the live Redis was asked: {:#?}",
            log.0
        );
    }
}
