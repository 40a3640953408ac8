//! `coffer runs`: the runs this machine made, with their outcome. Every backup, restore,
//! validate and recover appends one JSON line to `runs.jsonl` in the state directory when it ends.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Result;

use super::{Global, exit};

/// List past runs, oldest first.
#[derive(clap::Args)]
pub struct Args {
    /// Only the last N.
    #[arg(long, default_value_t = 20)]
    last: usize,
}

pub(super) fn runs_file() -> PathBuf {
    coffer_runtime::undo::journal_dir()
        .parent()
        .map(|p| p.join("runs.jsonl"))
        .unwrap_or_else(|| PathBuf::from("runs.jsonl"))
}

/// Append the record of a run that just ended (best effort: a run never fails because its
/// record could not be written).
pub fn record(
    command: &str,
    started: jiff::Timestamp,
    code: u8,
    error: Option<String>,
) -> serde_json::Value {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dry_run = args.iter().any(|a| a == "--dry-run");
    let outcome = match code {
        // A dry run changed nothing: its success is a plan, not a backup or a restore.
        exit::OK if dry_run => "planned (dry run)",
        exit::OK => "ok",
        exit::DEGRADED => "degraded",
        exit::INTERRUPTED => "interrupted",
        exit::VALIDATION => "validation failed",
        _ => "failed",
    };
    let line = serde_json::json!({
        "command": command,
        "dry_run": dry_run,
        "args": args,
        "started": started.to_string(),
        "seconds": (jiff::Timestamp::now() - started).get_milliseconds() as f64 / 1000.0,
        "outcome": outcome,
        "exit": code,
        "error": error,
    });
    let path = runs_file();
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::DirBuilderExt as _;
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
    }
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
    {
        let _ = writeln!(f, "{line}");
        let _ = f.sync_all();
    }
    line
}

/// `[notify]`: give the run's record to the deployment's command on stdin, after a failed
/// run (or every run with `always`). Best effort: what the command does never changes the
/// run's exit code; a command that fails or hangs (a minute) is said on stderr.
pub fn notify(
    notify: Option<&coffer_config::deployment::Notify>,
    line: &serde_json::Value,
    code: u8,
) {
    let Some(notify) = notify else {
        return;
    };
    if code == exit::OK && !notify.always {
        return;
    }
    let Some((program, args)) = notify.command.split_first() else {
        return;
    };
    let run = || -> std::io::Result<std::process::ExitStatus> {
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .spawn()?;
        // A command that does not read its stdin (or exits first) is not a failure here.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = writeln!(stdin, "{line}");
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                return Err(std::io::Error::other("still running after 60 s; killed"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    match run() {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("warning: [notify] command `{program}` failed: {status}"),
        Err(e) => eprintln!("warning: [notify] command `{program}`: {e}"),
    }
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let text = std::fs::read_to_string(runs_file()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let shown = &lines[lines.len().saturating_sub(args.last)..];
    if shown.is_empty() {
        println!("no runs recorded yet ({})", runs_file().display());
    }
    for l in shown {
        if g.json {
            println!("{l}");
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        println!(
            "{}  {:<9} {:<18} {:>7.1}s  {}",
            v["started"].as_str().unwrap_or("?"),
            v["command"].as_str().unwrap_or("?"),
            v["outcome"].as_str().unwrap_or("?"),
            v["seconds"].as_f64().unwrap_or(0.0),
            v["error"]
                .as_str()
                .map(|e| e.lines().next().unwrap_or(""))
                .unwrap_or("")
        );
    }
    Ok(exit::OK)
}
