//! `coffer snapshots`: list snapshots or show one.

use anyhow::Result;
use clap::Subcommand;

use super::output::bytes;
use super::{Global, RunConfig, exit};

/// List snapshots (default) or show one.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Subcommand)]
enum Sub {
    /// List every snapshot, oldest first.
    List,
    /// Show one snapshot's artifacts: node, plugin (version, digest), contract, size.
    Show {
        /// Snapshot id (or a unique prefix), or `latest`.
        snapshot: String,
    },
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let repo = RunConfig::resolve(g)?.open_repo().await?;
    match args.command.unwrap_or(Sub::List) {
        Sub::List => {
            let snaps = coffer_core::run::blocking(move || repo.snapshots()).await?;
            if g.json {
                for s in &snaps {
                    println!(
                        "{}",
                        serde_json::json!({"id": s.id, "time": s.time, "manifest": s.manifest})
                    );
                }
            } else {
                println!(
                    "{:<9} {:<22} {:<12} {:>10}  plugins (nodes)",
                    "ID", "TIME", "DEPLOYMENT", "SIZE"
                );
                for s in &snaps {
                    let plugins: Vec<String> = s
                        .manifest
                        .plugins
                        .iter()
                        .map(|p| format!("{} ({})", p.name, p.nodes.join(",")))
                        .collect();
                    let missing: String = s
                        .manifest
                        .missing
                        .iter()
                        .map(|m| format!(" MISSING {}", m.node))
                        .chain(
                            s.manifest
                                .trimmed
                                .iter()
                                .map(|p| format!(" {p}-REMOVED-BY-RETENTION")),
                        )
                        .collect();
                    println!(
                        "{:<9} {:<22} {:<12} {:>10}  {}{missing}",
                        s.short_id(),
                        &s.time[..s.time.len().min(19)],
                        s.manifest.deployment,
                        bytes(s.manifest.total_size()),
                        plugins.join(" ")
                    );
                }
                println!("{} snapshot(s)", snaps.len());
            }
        }
        Sub::Show { snapshot } => {
            let s = coffer_core::run::blocking(move || repo.find(&snapshot)).await?;
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"id": s.id, "time": s.time, "manifest": s.manifest})
                );
            } else {
                let m = &s.manifest;
                println!(
                    "snapshot {} of deployment {} (run {})",
                    s.id, m.deployment, m.run_id
                );
                println!(
                    "  started {}, finished {}, coffer {}",
                    m.started, m.finished, m.coffer_version
                );
                for missing in &m.missing {
                    println!(
                        "  MISSING {}: {} ({} not backed up there)",
                        missing.node,
                        missing.reason,
                        missing.plugins.join(", ")
                    );
                }
                for a in &m.artifacts {
                    let scope = match a.scope {
                        coffer_repository::ArtifactScope::Cluster => " (the cluster's)",
                        coffer_repository::ArtifactScope::Node => "",
                    };
                    let short = |s: &str, n: usize| s.get(..n).unwrap_or(s).to_string();
                    let (digest, restic) = match a.layout {
                        coffer_repository::Layout::Tree => (
                            short(&a.sha256, 21),
                            format!("ls --recursive {}", short(&a.snapshot, 8)),
                        ),
                        coffer_repository::Layout::Blob => (
                            format!("sha256 {}", short(&a.sha256, 16)),
                            format!("dump {} {}", short(&a.snapshot, 8), a.path),
                        ),
                    };
                    println!(
                        "  {}/{}/{}{scope}: {} {:?}, {digest}\n    plugin {} {} (sha256 {}), contract {}; restic: {restic}",
                        a.node,
                        a.plugin,
                        a.name,
                        bytes(a.size),
                        a.kind,
                        a.plugin,
                        a.plugin_version,
                        short(&a.plugin_digest, 16),
                        a.contract,
                    );
                    for c in &a.changed {
                        println!("    changed while read: {c}");
                    }
                }
            }
        }
    }
    Ok(exit::OK)
}
