//! `coffer backup`: back up the deployment into a new snapshot.

use super::output::human_duration;
use anyhow::Result;
use coffer_core::run::{BackupOptions, Overrides};

use super::config::Preset;
use super::output::bytes;
use super::{Global, RunConfig, RunScope, UsageError, exit};

/// Back up every enabled plugin on its nodes. The snapshot is written only when every plugin
/// succeeded; a failed or interrupted run leaves nothing that looks like a snapshot.
#[derive(clap::Args)]
pub struct Args {
    /// Also back up this path (filesystem plugin); repeatable.
    #[arg(long = "add-path", value_name = "PATH")]
    add_path: Vec<String>,
    /// Leave out paths matching this glob (filesystem plugin): `/var/log/*.gz` from the root,
    /// `*.pyc` anywhere; repeatable.
    #[arg(long = "exclude-path", value_name = "GLOB")]
    exclude_path: Vec<String>,
    /// Only these plugins; repeatable.
    #[arg(long = "plugin", value_name = "NAME")]
    plugins: Vec<String>,
    /// Set a plugin setting for this run: PLUGIN.KEY=VALUE; repeatable.
    #[arg(long = "set", value_name = "PLUGIN.KEY=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    target: super::Target,
    /// Back up the undercloud (before an upgrade): every enabled plugin that declares itself
    /// part of `undercloud` (of Coffer's own: filesystem and mysql), on the nodes with role
    /// `undercloud`.
    #[arg(long, conflicts_with_all = ["controllers", "plugins"])]
    undercloud: bool,
    /// Back up the overcloud controllers: every enabled plugin that declares itself part of
    /// `controllers` (of Coffer's own: galera, redis, pacemaker, swift and filesystem), on the
    /// nodes with role `controller`.
    #[arg(long, conflicts_with = "plugins")]
    controllers: bool,
    /// Print the plan — plugins in order, their nodes, every command that would change state
    /// or store an artifact, and the read-only ones (which run) — and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Parse `--set` values into per-plugin settings.
pub fn overrides(set: &[String]) -> Result<Overrides> {
    let mut o = Overrides::new();
    for s in set {
        let (lhs, value) = s
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--set {s}: expected PLUGIN.KEY=VALUE")))?;
        let (plugin, key) = lhs
            .split_once('.')
            .ok_or_else(|| UsageError(format!("--set {s}: expected PLUGIN.KEY=VALUE")))?;
        o.entry(plugin.to_string())
            .or_default()
            .push((key.to_string(), value.to_string()));
    }
    Ok(o)
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let cfg = RunConfig::resolve(g)?;
    let preset = match (args.undercloud, args.controllers) {
        (true, _) => Some(Preset::UNDERCLOUD),
        (_, true) => Some(Preset::CONTROLLERS),
        _ => None,
    };
    let mut scope = RunScope {
        filter: args.target.filter(),
        plugins: Some(if args.plugins.is_empty() {
            cfg.deployment
                .plugins
                .iter()
                .map(|p| p.name.clone())
                .collect()
        } else {
            args.plugins.clone()
        }),
        dry_run: args.dry_run,
        degraded: true,
        preset,
    };
    let (coffer, printer) = cfg.coffer(&mut scope).await?;
    // Only the plugins asked for (`--plugin`, a preset's); none named is every enabled one.
    let plugins = if preset.is_some() {
        scope.plugins.unwrap_or_default()
    } else {
        args.plugins.clone()
    };
    let mut o = overrides(&args.set)?;
    let fs = o.entry("filesystem".into()).or_default();
    fs.extend(
        args.add_path
            .iter()
            .map(|p| ("add-path".to_string(), p.clone())),
    );
    fs.extend(
        args.exclude_path
            .iter()
            .map(|p| ("exclude-path".to_string(), p.clone())),
    );
    let repo = cfg.open_repo().await?;
    let opts = BackupOptions {
        plugins,
        overrides: o,
    };
    if args.dry_run {
        let plan = coffer.dry_run().plan_backup(repo, &opts).await?;
        printer.summary(&plan, || super::output::plan(&plan));
        return Ok(exit::OK);
    }
    let s = coffer.backup(repo, &opts).await?;
    // `[retention]`: applied after every successful backup, degraded ones included.
    let retention = match cfg.deployment.retention.clone() {
        Some(policy) => {
            let (forgot, pruned) =
                super::forget::apply(cfg.open_repo().await?, policy, false).await?;
            Some((forgot, pruned))
        }
        None => None,
    };
    /// The summary with what retention did.
    #[derive(serde::Serialize)]
    struct WithRetention<'a> {
        #[serde(flatten)]
        backup: &'a coffer_core::run::BackupSummary,
        #[serde(skip_serializing_if = "Option::is_none")]
        retention: Option<&'a coffer_repository::ForgetReport>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pruned: Option<&'a coffer_repository::PruneReport>,
    }
    let out = WithRetention {
        backup: &s,
        retention: retention.as_ref().map(|(f, _)| f),
        pruned: retention.as_ref().and_then(|(_, p)| p.as_ref()),
    };
    printer.summary(&out, || {
        let mut text = format!(
            "snapshot {} saved: {} artifact(s), {} in {} ({}/s)",
            &s.snapshot[..8],
            s.artifacts.len(),
            bytes(s.bytes),
            human_duration(s.seconds),
            bytes((s.bytes as f64 / s.seconds.max(0.001)) as u64)
        );
        for p in &s.plugins {
            text.push_str(&format!("\n{}", super::output::plugin_run(p)));
        }
        for a in &s.artifacts {
            text.push_str(&format!(
                "\n  {:<12} {:<16} {:<20} {}",
                a.plugin,
                a.node,
                a.name,
                bytes(a.size)
            ));
        }
        for m in &s.missing {
            text.push_str(&format!(
                "\n  MISSING {}: {} ({} not backed up there)",
                m.node,
                m.reason,
                m.plugins.join(", ")
            ));
        }
        if let Some((f, p)) = &retention {
            text.push_str(&format!(
                "\nretention: kept {} snapshot(s), forgot {} ({} artifact(s), {} of runs that never \
                 completed){}",
                f.snapshots.iter().filter(|d| d.keep).count(),
                f.forgotten,
                f.forgotten_artifacts,
                f.orphans,
                p.as_ref()
                    .map(|p| format!(
                        "; pruned: {} before, {} after",
                        bytes(p.bytes_before),
                        bytes(p.bytes_after)
                    ))
                    .unwrap_or_default()
            ));
        }
        if s.removed_orphans > 0 {
            text.push_str(&format!(
                "\n  (removed {} artifact(s) left by an interrupted run)",
                s.removed_orphans
            ));
        }
        text
    });
    if s.degraded() {
        eprintln!(
            "warning: degraded backup: {} missing; snapshot {} holds what the other nodes had \
             (exit {})",
            s.missing
                .iter()
                .map(|m| m.node.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            &s.snapshot[..8],
            exit::DEGRADED
        );
        return Ok(exit::DEGRADED);
    }
    Ok(exit::OK)
}
