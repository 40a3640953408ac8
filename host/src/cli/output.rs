//! What the operator sees: events as lines (with a spinner on a terminal), or JSON lines.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use coffer_runtime::report::{Event, Level, PluginCheck, Reporter, Status};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Prints events: on a terminal, a spinner for the run and one progress bar per artifact that
/// is streaming (bytes, rate, and the ETA when its size is known), lines above them.
pub struct Printer {
    json: bool,
    verbose: bool,
    multi: MultiProgress,
    spinner: ProgressBar,
    /// Bars of the artifacts streaming now, by `plugin/node/name`.
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Printer {
    /// A printer for `--json` or for people.
    pub fn new(json: bool, verbose: bool) -> Self {
        let multi = if json {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        } else {
            MultiProgress::new()
        };
        let spinner = multi.add(ProgressBar::new_spinner());
        spinner.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}")
                .expect("valid template"),
        );
        if !json {
            spinner.enable_steady_tick(Duration::from_millis(120));
        }
        Self {
            json,
            verbose,
            multi,
            spinner,
            bars: Mutex::new(BTreeMap::new()),
        }
    }

    /// A line for people (stderr), kept clear of the bars.
    pub fn line(&self, text: impl AsRef<str>) {
        if !self.json {
            self.multi.suspend(|| eprintln!("{}", text.as_ref()));
        }
    }

    /// Show `bytes` of artifact `key` after `seconds` (out of `total`, if known) on its own bar,
    /// with the average rate and, against the total, the time left.
    fn progress(&self, key: String, bytes: u64, total: Option<u64>, seconds: f64) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bars.entry(key.clone()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(0));
            let template = if total.is_some() {
                "  {prefix} [{bar:24}] {bytes}/{total_bytes} {msg}"
            } else {
                "  {prefix} {bytes} {msg}"
            };
            bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
            bar.set_prefix(key);
            bar
        });
        // A backup's total is the previous snapshot's size: an estimate it may pass.
        if let Some(t) = total {
            bar.set_length(t.max(bytes));
        }
        bar.set_position(bytes);
        let rate = bytes as f64 / seconds.max(0.001);
        let eta = match total {
            Some(t) if t > bytes && rate > 0.0 => {
                format!(", about {} left", human_duration((t - bytes) as f64 / rate))
            }
            _ => String::new(),
        };
        bar.set_message(format!("{}/s{eta}", self::bytes(rate as u64)));
    }

    /// Remove the bars of artifacts whose key starts with `prefix`.
    fn done(&self, prefix: &str) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.retain(|key, bar| {
            let keep = !key.starts_with(prefix);
            if !keep {
                bar.finish_and_clear();
                self.multi.remove(bar);
            }
            keep
        });
    }

    /// The final result: JSON on stdout, or text for people.
    pub fn summary<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        self.done("");
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
        self.done("");
        self.spinner.finish_and_clear();
    }
}

/// One line for a plugin's part of a run: nodes, bytes, time.
pub fn plugin_run(p: &coffer_core::run::PluginRun) -> String {
    let nodes = match p.nodes.len() {
        0..=3 => p.nodes.join(", "),
        n => format!("{n} nodes"),
    };
    format!(
        "  {:<12} on {nodes}: {} in {}",
        p.plugin,
        bytes(p.bytes),
        human_duration(p.seconds)
    )
}

/// A dry run's plan as text: each plugin operation in order with its commands.
pub fn plan(p: &coffer_runtime::dry_run::Plan) -> String {
    use coffer_runtime::dry_run::ActionKind;
    let mut text = format!(
        "dry run of {}{}: nothing was changed and nothing was stored",
        p.operation,
        p.snapshot
            .as_ref()
            .map(|s| format!(" of snapshot {}", &s[..8.min(s.len())]))
            .unwrap_or_default()
    );
    for u in &p.unreachable {
        text.push_str(&format!(
            "\nUNREACHABLE {}: {} — planned without it; {}",
            u.node,
            u.reason,
            if p.operation == coffer_runtime::report::Operation::Backup {
                "the backup goes on without it and records it missing"
            } else {
                "the run stops on it unless --node leaves it out"
            }
        ));
    }
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
                ActionKind::Reads => "reads (ran)",
                ActionKind::Changes => "would change",
                ActionKind::Stores => "would store",
                ActionKind::Reversal => "if it fails",
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
    let count = |e: ActionKind| p.actions.iter().filter(|a| a.effect == e).count();
    text.push_str(&format!(
        "\n{} command(s) would change state, {} would store an artifact, {} reversal(s) would be \
         registered; {} read-only command(s) ran",
        count(ActionKind::Changes),
        count(ActionKind::Stores),
        count(ActionKind::Reversal),
        count(ActionKind::Reads)
    ));
    text
}

/// The first line of `text`, with `…` when more follows.
fn first_line(text: &str) -> String {
    match text.split_once('\n') {
        Some((first, _)) => format!("{first} …"),
        None => text.to_string(),
    }
}

/// Time as the summary shows it.
pub fn human_duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        let whole = seconds as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
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
                if level != Level::Debug || self.verbose {
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
                total,
                seconds,
            } => self.progress(format!("{plugin}/{node}/{name}"), n, total, seconds),
            Event::Refused {
                plugin,
                node,
                detail,
            } => self.line(format!(
                "[{plugin}] refused on {node}: {}",
                first_line(&detail)
            )),
            Event::Artifact {
                plugin,
                node,
                name,
                size,
                seconds,
            } => {
                self.done(&format!("{plugin}/{node}/{name}"));
                self.line(format!(
                    "[{plugin}] stored {node}/{name}: {} in {seconds:.1}s ({}/s)",
                    bytes(size),
                    bytes((size as f64 / seconds.max(0.001)) as u64)
                ))
            }
            Event::Step {
                plugin,
                operation,
                status,
                detail,
            } => {
                // A failure's whole text ends the run's output once; here its first line.
                let detail = if detail.is_empty() {
                    String::new()
                } else if status == Status::Failed {
                    format!(": {}", first_line(&detail))
                } else {
                    format!(": {detail}")
                };
                if status != Status::Started {
                    self.done(&format!("{plugin}/"));
                }
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
            Event::Check(PluginCheck { plugin, check: c }) => self.line(format!(
                "[{plugin}] {} {}: {} ({})",
                if c.ok { "ok  " } else { "FAIL" },
                c.node,
                c.name,
                c.detail
            )),
        }
    }
}

/// Report a failure: always on stderr, and as a JSON line on stdout with `--json`.
pub fn error(e: &anyhow::Error, code: u8, json: bool) {
    if json {
        let mut v =
            serde_json::json!({"event": "error", "message": format!("{e:#}"), "exit": code});
        // Where it happened, when a plugin failed: plugin, node and step for automation.
        if let Some(f) = e.chain().find_map(|c| {
            c.downcast_ref::<coffer_runtime::PluginFault>().or_else(|| {
                match c.downcast_ref::<coffer_core::run::RunError>() {
                    Some(coffer_core::run::RunError::Plugin(f)) => Some(f),
                    _ => None,
                }
            })
        }) {
            let (plugin, node, step) = f.place();
            v["plugin"] = plugin.into();
            v["node"] = node.into();
            v["step"] = step.into();
        }
        println!("{v}");
    }
    eprintln!("error: {e:#}");
}
