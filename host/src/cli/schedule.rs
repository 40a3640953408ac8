//! `coffer schedule`: runs nobody has to remember. `install` writes a systemd service and
//! timer (or a cron line, for machines without systemd) that run a coffer command of this
//! deployment on a calendar; `list` shows them; `remove` deletes them.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Subcommand;

use super::{Global, UsageError, exit};

/// Schedule coffer commands with systemd timers (or cron).
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand)]
enum Sub {
    /// Write `coffer-NAME.service` and `coffer-NAME.timer` running `coffer COMMAND…` for this
    /// deployment file, e.g. `coffer -c d.toml schedule install nightly --on-calendar
    /// '*-*-* 02:00' -- backup --controllers`.
    Install {
        /// The schedule's name (`nightly`, `before-upgrade`, `retention`).
        name: String,
        /// When, as systemd says it (`daily`, `*-*-* 02:00`, `Sun 03:00`).
        #[arg(long, value_name = "CALENDAR", required_unless_present = "cron")]
        on_calendar: Option<String>,
        /// Start up to this much later, at random, so that many hosts do not start at once.
        #[arg(long, default_value = "30m", value_name = "DURATION")]
        randomized_delay: String,
        /// A cron line instead (`0 2 * * *`), in `/etc/cron.d/coffer-NAME` (or --dir).
        #[arg(long, value_name = "CRON", conflicts_with = "on_calendar")]
        cron: Option<String>,
        /// Where the units go.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The coffer command and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// List the schedules (their timers or cron lines).
    List {
        /// Where the units are.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Delete a schedule's units (or cron file).
    Remove {
        /// The schedule's name.
        name: String,
        /// Where the units are.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

const SYSTEMD: &str = "/etc/systemd/system";
const CRON: &str = "/etc/cron.d";

/// Names a unit file can carry without quoting.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(UsageError(format!(
            "schedule name `{name}`: use letters, digits, `-` and `_`"
        ))
        .into());
    }
    Ok(())
}

/// An argument as systemd's `ExecStart=` and a shell read it: quoted when it must be.
fn quoted(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// `coffer -c DEPLOYMENT --json --retry-lock 2h COMMAND…`: another run on the repository (a
/// retention schedule next to a backup) is waited for, and the JSON events go to the journal.
fn command_line(g: &Global, command: &[String]) -> Result<Vec<String>> {
    let exe = std::env::current_exe().context("finding the coffer binary")?;
    let config = g
        .config
        .as_ref()
        .ok_or_else(|| UsageError("a schedule runs a deployment file: give -c/--config".into()))?;
    let config = std::fs::canonicalize(config)
        .with_context(|| format!("reading deployment file {}", config.display()))?;
    let mut argv = vec![
        exe.display().to_string(),
        "-c".into(),
        config.display().to_string(),
        "--json".into(),
        "--retry-lock".into(),
        "2h".into(),
    ];
    argv.extend(command.iter().cloned());
    Ok(argv)
}

/// Check a calendar with `systemd-analyze calendar`, where it is installed.
fn check_calendar(spec: &str) -> Result<()> {
    match std::process::Command::new("systemd-analyze")
        .args(["calendar", spec])
        .output()
    {
        Ok(out) if !out.status.success() => Err(UsageError(format!(
            "--on-calendar `{spec}` is not a systemd calendar: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .into()),
        _ => Ok(()),
    }
}

pub fn run(g: &Global, args: Args) -> Result<u8> {
    match args.command {
        Sub::Install {
            name,
            on_calendar,
            randomized_delay,
            cron,
            dir,
            command,
        } => {
            check_name(&name)?;
            let argv = command_line(g, &command)?;
            let line: Vec<String> = argv.iter().map(|a| quoted(a)).collect();
            let what = command.join(" ");
            if let Some(cron) = cron {
                let dir = dir.unwrap_or_else(|| PathBuf::from(CRON));
                let file = dir.join(format!("coffer-{name}"));
                let text = format!(
                    "# Coffer schedule `{name}`: coffer {what}\n\
                     SHELL=/bin/sh\n\
                     {cron} root flock -n /run/lock/coffer-{name}.lock {} >> /var/log/coffer-{name}.log 2>&1\n",
                    line.join(" ")
                );
                write(&file, &text)?;
                println!("wrote {}", file.display());
                return Ok(exit::OK);
            }
            let calendar = on_calendar.expect("clap requires it");
            check_calendar(&calendar)?;
            let dir = dir.unwrap_or_else(|| PathBuf::from(SYSTEMD));
            let service = format!(
                "[Unit]\n\
                 Description=Coffer: {what} ({name})\n\
                 Wants=network-online.target\n\
                 After=network-online.target\n\n\
                 [Service]\n\
                 Type=oneshot\n\
                 ExecStart={}\n\
                 # The run's JSON events and summary go to the journal (journalctl -u coffer-{name}).\n\
                 StandardOutput=journal\n\
                 StandardError=journal\n",
                line.join(" ")
            );
            let timer = format!(
                "[Unit]\n\
                 Description=Coffer: {what} ({name}), on a calendar\n\n\
                 [Timer]\n\
                 OnCalendar={calendar}\n\
                 # A run missed while the machine was off happens when it is back.\n\
                 Persistent=true\n\
                 RandomizedDelaySec={randomized_delay}\n\n\
                 [Install]\n\
                 WantedBy=timers.target\n"
            );
            let (s, t) = (
                dir.join(format!("coffer-{name}.service")),
                dir.join(format!("coffer-{name}.timer")),
            );
            write(&s, &service)?;
            write(&t, &timer)?;
            println!(
                "wrote {} and {}\nenable it: systemctl daemon-reload && systemctl enable --now \
                 coffer-{name}.timer",
                s.display(),
                t.display()
            );
            Ok(exit::OK)
        }
        Sub::List { dir } => {
            let mut found = 0;
            for (dir, cron) in [
                (dir.clone().unwrap_or_else(|| PathBuf::from(SYSTEMD)), false),
                (dir.unwrap_or_else(|| PathBuf::from(CRON)), true),
            ] {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
                names.sort();
                for p in names {
                    let file = p
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .to_string();
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    let field = |key: &str| {
                        text.lines()
                            .find_map(|l| l.strip_prefix(key))
                            .unwrap_or("?")
                            .to_string()
                    };
                    if !cron && file.starts_with("coffer-") && file.ends_with(".timer") {
                        let name = &file["coffer-".len()..file.len() - ".timer".len()];
                        let service = dir.join(format!("coffer-{name}.service"));
                        let exec = std::fs::read_to_string(service)
                            .unwrap_or_default()
                            .lines()
                            .find_map(|l| l.strip_prefix("ExecStart=").map(String::from))
                            .unwrap_or_default();
                        println!("{name:<16} systemd  {:<24} {exec}", field("OnCalendar="));
                        found += 1;
                    } else if cron && file.starts_with("coffer-") && !file.contains('.') {
                        let line = text.lines().find(|l| l.contains(" root ")).unwrap_or("");
                        println!("{:<16} cron     {line}", &file["coffer-".len()..]);
                        found += 1;
                    }
                }
            }
            if found == 0 {
                println!("no schedules");
            }
            Ok(exit::OK)
        }
        Sub::Remove { name, dir } => {
            check_name(&name)?;
            let mut removed = Vec::new();
            for (d, file) in [
                (SYSTEMD, format!("coffer-{name}.service")),
                (SYSTEMD, format!("coffer-{name}.timer")),
                (CRON, format!("coffer-{name}")),
            ] {
                let p = dir.clone().unwrap_or_else(|| PathBuf::from(d)).join(file);
                if p.exists() {
                    std::fs::remove_file(&p)
                        .with_context(|| format!("removing {}", p.display()))?;
                    removed.push(p.display().to_string());
                }
            }
            if removed.is_empty() {
                return Err(UsageError(format!("no schedule `{name}`")).into());
            }
            println!(
                "removed {}\n(if the timer was enabled: systemctl disable --now coffer-{name}.timer; \
                 systemctl daemon-reload)",
                removed.join(", ")
            );
            Ok(exit::OK)
        }
    }
}

/// Write `text` to `path`, readable by all (a unit is not secret: no password is in it).
fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
