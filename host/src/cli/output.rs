//! What the operator sees: events as lines (with a spinner on a terminal), or JSON lines.

use std::time::Duration;

use coffer::report::{Event, Reporter};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Prints events.
pub struct Printer {
    json: bool,
    verbose: bool,
    spinner: ProgressBar,
}

impl Printer {
    /// A printer for `--json` or for people.
    pub fn new(json: bool, verbose: bool) -> Self {
        let spinner = if json {
            ProgressBar::hidden()
        } else {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .expect("valid template"),
            );
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        };
        Self {
            json,
            verbose,
            spinner,
        }
    }

    /// A line for people (stderr), kept clear of the spinner.
    pub fn line(&self, text: impl AsRef<str>) {
        if !self.json {
            self.spinner.suspend(|| eprintln!("{}", text.as_ref()));
        }
    }

    /// The final result: JSON on stdout, or text for people.
    pub fn summary<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        self.spinner.finish_and_clear();
        if self.json {
            let mut v = serde_json::to_value(value).expect("summary serialises");
            if let Some(o) = v.as_object_mut() {
                o.insert("event".into(), "summary".into());
            }
            println!("{v}");
        } else {
            println!("{}", text());
        }
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        self.spinner.finish_and_clear();
    }
}

/// A dry run's plan as text: each plugin operation in order with its commands.
pub fn plan(p: &coffer::dry_run::Plan) -> String {
    use coffer::dry_run::Effect;
    let mut text = format!(
        "dry run of {}{}: nothing was changed and nothing was stored",
        p.operation,
        p.snapshot
            .as_ref()
            .map(|s| format!(" of snapshot {}", &s[..8.min(s.len())]))
            .unwrap_or_default()
    );
    for (i, step) in p.steps.iter().enumerate() {
        text.push_str(&format!(
            "\n{}. {} {} on {}{}",
            i + 1,
            step.plugin,
            step.operation,
            step.nodes.join(", "),
            if step.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", step.note)
            }
        ));
        for a in p.actions.iter().filter(|a| a.plugin == step.plugin) {
            let effect = match a.effect {
                Effect::Reads => "reads (ran)",
                Effect::Changes => "would change",
                Effect::Stores => "would store",
                Effect::Reversal => "if it fails",
            };
            text.push_str(&format!(
                "\n     {:<14} {:<12} {}{}",
                a.node,
                effect,
                a.argv.join(" "),
                a.note
                    .as_ref()
                    .map(|n| format!("  [{n}]"))
                    .unwrap_or_default()
            ));
        }
    }
    if let Some(then) = &p.then {
        text.push_str(&format!("\nthen: {}", then.join(" ")));
    }
    let count = |e: Effect| p.actions.iter().filter(|a| a.effect == e).count();
    text.push_str(&format!(
        "\n{} command(s) would change state, {} would store an artifact, {} reversal(s) would be \
         registered; {} read-only command(s) ran",
        count(Effect::Changes),
        count(Effect::Stores),
        count(Effect::Reversal),
        count(Effect::Reads)
    ));
    text
}

/// Bytes as people read them.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

impl Reporter for Printer {
    fn report(&self, event: Event) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string(&event).expect("event serialises")
            );
            return;
        }
        match event {
            Event::Log {
                plugin,
                level,
                message,
            } => {
                if level != "debug" || self.verbose {
                    self.line(format!("[{plugin}] {level}: {message}"));
                }
            }
            Event::Progress {
                plugin,
                step,
                done,
                total,
            } => {
                let of = total.map(|t| format!("/{t}")).unwrap_or_default();
                self.spinner
                    .set_message(format!("{plugin}: {step} {done}{of}"));
            }
            Event::Command {
                plugin, node, argv, ..
            } => {
                self.spinner
                    .set_message(format!("{plugin} on {node}: {}", argv.join(" ")));
                if self.verbose {
                    self.line(format!("[{plugin}] {node}$ {}", argv.join(" ")));
                }
            }
            Event::Bytes {
                plugin,
                node,
                name,
                bytes: n,
                seconds,
            } => self.spinner.set_message(format!(
                "{plugin}: {node}/{name} {} ({}/s)",
                bytes(n),
                bytes((n as f64 / seconds.max(0.001)) as u64)
            )),
            Event::Refused {
                plugin,
                node,
                detail,
            } => self.line(format!("[{plugin}] refused on {node}: {detail}")),
            Event::Artifact {
                plugin,
                node,
                name,
                size,
                seconds,
            } => self.line(format!(
                "[{plugin}] stored {node}/{name}: {} in {seconds:.1}s ({}/s)",
                bytes(size),
                bytes((size as f64 / seconds.max(0.001)) as u64)
            )),
            Event::Step {
                plugin,
                operation,
                status,
                detail,
            } => {
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                };
                self.spinner.set_message(format!("{plugin}: {operation}"));
                self.line(format!("[{plugin}] {operation} {status}{detail}"));
            }
            Event::Undo {
                plugin,
                node,
                what,
                ok,
                detail,
            } => self.line(if ok {
                format!("[{plugin}] undone on {node}: {what}")
            } else {
                format!("[{plugin}] UNDO FAILED on {node}: {what}: {detail}")
            }),
            Event::Check {
                plugin,
                node,
                name,
                ok,
                detail,
            } => self.line(format!(
                "[{plugin}] {} {node}: {name} ({detail})",
                if ok { "ok  " } else { "FAIL" }
            )),
        }
    }
}

/// Report a failure: always on stderr, and as a JSON line on stdout with `--json`.
pub fn error(e: &anyhow::Error, code: u8, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "error", "message": format!("{e:#}"), "exit": code})
        );
    }
    eprintln!("error: {e:#}");
}
