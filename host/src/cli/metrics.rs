//! `[metrics] textfile`: after every run, Prometheus metrics in the node exporter's
//! textfile-collector format, written atomically (a temporary file renamed over the old one, so
//! the collector never reads half a file): per plugin and node the last good backup's time,
//! size and run time, the number of snapshots, per plugin its last drill's time and result,
//! and per command the last run's time, duration and outcome.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};

use super::{Global, RunConfig};

/// A label value, escaped as the text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Write the metrics for the deployment `g` names into `textfile`.
pub async fn write(g: &Global, textfile: &Path) -> Result<()> {
    let cfg = RunConfig::resolve(g)?;
    let d = label(&cfg.deployment.name);
    let mut text = String::new();
    let mut family = |name: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(text, "{name}{{deployment=\"{d}\"{labels}}} {value}");
        }
    };
    // What the repository holds; a run that could not reach it still reports itself below.
    // (A repository on a node reached by a per-run access key is not read again: the run's key
    // is gone, and a new one is not installed for metrics.)
    let keyed = cfg.deployment.access.temporary
        && matches!(
            cfg.repository,
            Some(super::config::RepoPlace::OnNode { .. })
        );
    let held = if keyed {
        None
    } else {
        super::status::entries(&cfg).await.ok()
    };
    if let Some((entries, snapshots)) = held {
        let done: Vec<_> = entries
            .iter()
            .filter(|e| e.last_success.is_some())
            .collect();
        let key = |e: &super::status::Entry| {
            format!(
                ",plugin=\"{}\",node=\"{}\"",
                label(&e.plugin),
                label(&e.node)
            )
        };
        family(
            "coffer_last_success_timestamp_seconds",
            "When the last good backup of the plugin on the node finished (Unix time).",
            done.iter()
                .filter_map(|e| {
                    let t: jiff::Timestamp = e.last_success.as_deref()?.parse().ok()?;
                    Some((key(e), t.as_second().to_string()))
                })
                .collect(),
        );
        family(
            "coffer_last_backup_bytes",
            "Bytes of the plugin's artifacts from the node in that backup.",
            done.iter().map(|e| (key(e), e.bytes.to_string())).collect(),
        );
        family(
            "coffer_last_backup_duration_seconds",
            "How long the run that took that backup took.",
            done.iter()
                .filter_map(|e| Some((key(e), e.run_seconds?.to_string())))
                .collect(),
        );
        family(
            "coffer_snapshots",
            "Coffer snapshots in the repository.",
            vec![(String::new(), snapshots.to_string())],
        );
    }
    // The last drill of each plugin.
    let drills = super::drill::last_drills();
    let drill_key = |p: &str| format!(",plugin=\"{}\"", label(p));
    family(
        "coffer_drill_last_timestamp_seconds",
        "When the plugin's last restore drill ended (Unix time).",
        drills
            .iter()
            .filter_map(|(p, d)| {
                let t: jiff::Timestamp = d.time.parse().ok()?;
                Some((drill_key(p), t.as_second().to_string()))
            })
            .collect(),
    );
    family(
        "coffer_drill_passed",
        "Whether the plugin's last restore drill passed (1), failed or could not drill it (0).",
        drills
            .iter()
            .map(|(p, d)| (drill_key(p), u8::from(d.outcome == "passed").to_string()))
            .collect(),
    );
    // The last run of each command, from the run log (this run included).
    let mut last: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for line in std::fs::read_to_string(super::runs::runs_file())
        .unwrap_or_default()
        .lines()
    {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
            && let Some(c) = v["command"].as_str()
            && !v["dry_run"].as_bool().unwrap_or(false)
        {
            last.insert(c.to_string(), v);
        }
    }
    let per_command = |f: &dyn Fn(&serde_json::Value) -> Option<String>| {
        last.iter()
            .filter_map(|(c, v)| Some((format!(",command=\"{}\"", label(c)), f(v)?)))
            .collect::<Vec<_>>()
    };
    family(
        "coffer_last_run_timestamp_seconds",
        "When the last run of the command started (Unix time).",
        per_command(&|v| {
            let t: jiff::Timestamp = v["started"].as_str()?.parse().ok()?;
            Some(t.as_second().to_string())
        }),
    );
    family(
        "coffer_last_run_duration_seconds",
        "How long the last run of the command took.",
        per_command(&|v| Some(v["seconds"].as_f64()?.to_string())),
    );
    family(
        "coffer_last_run_exit_code",
        "The exit code of the last run of the command (0 ok, 8 degraded, see coffer --help).",
        per_command(&|v| Some(v["exit"].as_u64()?.to_string())),
    );
    family(
        "coffer_last_run_success",
        "1 when the last run of the command succeeded, else 0.",
        per_command(&|v| Some(u8::from(v["exit"].as_u64()? == 0).to_string())),
    );
    let tmp = textfile.with_extension("prom.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, textfile))
        .with_context(|| format!("writing metrics to {}", textfile.display()))
}
