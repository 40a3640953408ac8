//! A plugin that misbehaves on purpose, for the sandbox tests. Its `mode` setting picks the
//! misdeed; if the host ever lets one succeed, `backup` reports `escaped` in its records.

use coffer_sdk::*;

/// The hostile plugin.
pub struct Hostile;

impl Plugin for Hostile {
    fn describe() -> PluginInfo {
        PluginInfo::new("hostile", "0.1.0", "Misbehaves on purpose (test fixture).")
            .setting("mode", "Which misdeed", None)
            .setting("text", "What `stream` mode captures", None)
            .setting("port", "Port to connect to in `socket` mode", None)
            .command("echo", &["**"])
            .command("sh", &["-c", "**"])
            .command("cat", &["/etc/marker"])
            .setting("dir", "Shared directory of `barrier` mode", None)
            .setting("count", "How many calls `barrier` mode waits for", None)
            .setting(
                "mark",
                "Name `barrier` mode marks its arrival with (default: the node's)",
                None,
            )
            .setting(
                "tries",
                "How many tenths of a second `barrier` mode waits",
                None,
            )
            .command("sleep", &["*"])
            .path("/tmp/**")
            .node_scoped(Operations {
                backup: true,
                ..Operations::default()
            })
    }

    fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
        let mode = ctx.settings.get("mode").unwrap_or("");
        let node = ctx
            .nodes
            .first()
            .map(|n| n.name.clone())
            .unwrap_or_default();
        let mut report = BackupReport::default();
        match mode {
            "read-file" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => report.records.push("escaped", text),
                Err(e) => return Err(PluginError::Other(format!("reading /etc/passwd: {e}"))),
            },
            "socket" => {
                let port = ctx.settings.get("port").unwrap_or("22");
                match std::net::TcpStream::connect(format!("127.0.0.1:{port}")) {
                    Ok(_) => report.records.push("escaped", "connected"),
                    Err(e) => return Err(PluginError::Other(format!("connecting: {e}"))),
                }
            }
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                if !vars.is_empty() {
                    report.records.push("escaped", vars.join(","));
                }
            }
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("hostile plugin panics on purpose"),
            "exec-undeclared" => {
                let out = ctx.run(&Command::on(&node, "cat").arg("/etc/shadow"));
                match out {
                    Ok(o) => report.records.push("escaped", o.stdout_text()),
                    Err(e) => return Err(PluginError::CommandFailed(e.to_string())),
                }
            }
            "path-undeclared" => {
                let set = PathSet {
                    paths: vec!["/root".into()],
                    excludes: vec![],
                };
                ctx.capture_paths(&node, &set, "root.tar")?;
                report.records.push("escaped", "captured /root");
            }
            "failing-stream" => {
                // Writes data, then fails: nothing of it may be kept.
                ctx.capture(
                    &Command::on(&node, "sh")
                        .args(["-c", "head -c 3000000 /dev/zero; echo boom >&2; exit 3"]),
                    "partial",
                )?;
                report.records.push("escaped", "kept a failed stream");
            }
            "marker" => {
                // One exec and one stream, wherever the host runs them (bare node or container).
                let cmd = Command::on(&node, "cat").arg("/etc/marker");
                let out = ctx
                    .run(&cmd)
                    .map_err(|e| PluginError::CommandFailed(e.to_string()))?;
                report.records.push(
                    "marker",
                    if out.success() {
                        out.stdout_text()
                    } else {
                        "missing".into()
                    },
                );
                if out.success() {
                    ctx.capture(&cmd, "marker")?;
                }
            }
            "undo-fail" | "undo-hang" => {
                // Register reversals that append a word to DIR/undone, keep one, then fail (or
                // hang in a command, to be interrupted or killed).
                let dir = ctx.settings.get("dir").unwrap_or("/tmp");
                let note = |word: &str| {
                    Command::on(&node, "sh").args([
                        "-c",
                        "echo \"$2\" >> \"$1/undone\"",
                        "undo",
                        dir,
                        word,
                    ])
                };
                let _first = ctx.undo_with(&note("first"), "first change")?;
                let second = ctx.undo_with(&note("second"), "second change")?;
                let _third = ctx.undo_with(&note("third"), "third change")?;
                ctx.keep(second);
                if mode == "undo-hang" {
                    ctx.run(&Command::on(&node, "sleep").arg("30"))
                        .map_err(|e| PluginError::CommandFailed(e.to_string()))?;
                }
                return Err(PluginError::Other(
                    "failing on purpose after three changes".into(),
                ));
            }
            "barrier" => {
                // Each call marks its node in a shared directory, then waits until `count`
                // calls have: it completes only if the host runs the nodes' calls at once.
                let dir = ctx.settings.get("dir").unwrap_or("/tmp");
                let count = ctx.settings.get("count").unwrap_or("1");
                let tries = ctx.settings.get("tries").unwrap_or("300");
                let mark = ctx.settings.get("mark").unwrap_or(&node);
                let script = "touch \"$1/$2\"; i=0; \
                    while [ \"$(ls \"$1\" | wc -l)\" -lt \"$3\" ]; do \
                    i=$((i+1)); [ $i -lt \"$4\" ] || exit 7; sleep 0.1; done";
                let out = ctx.run_ok(
                    &Command::on(&node, "sh")
                        .args(["-c", script, "barrier", dir, mark, count, tries]),
                )?;
                report
                    .records
                    .push("barrier", format!("{node}:{}", out.exit_code.unwrap_or(-1)));
            }
            "stream" => {
                let text = ctx.settings.get("text").unwrap_or("hello");
                ctx.capture(&Command::on(&node, "echo").arg(text), "echo")?;
            }
            other => {
                return Err(PluginError::InvalidSettings(format!(
                    "unknown mode `{other}`"
                )));
            }
        }
        Ok(report)
    }
}

export_plugin!(Hostile);
