//! `coffer plugins`: list installed plugins or describe one.

use anyhow::Result;
use clap::Subcommand;
use coffer::runtime::LoadedPlugin;

use super::{Global, UsageError, deployment, exit, load_plugins};

/// List installed plugins (default) or describe one.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Subcommand)]
enum Sub {
    /// List installed plugins.
    List,
    /// Show what a plugin does, accepts and asks for.
    Describe {
        /// Plugin name.
        name: String,
    },
}

fn json(p: &LoadedPlugin) -> serde_json::Value {
    let i = &p.info;
    serde_json::json!({
        "name": i.name,
        "version": i.version,
        "description": i.description,
        "origin": p.origin.to_string(),
        "digest": p.identity.digest,
        "contract": p.identity.contract,
        "roles": i.roles,
        "operations": {"backup": i.operations.backup, "restore": i.operations.restore, "validate": i.operations.validate},
        "settings": i.settings.iter().map(|s| serde_json::json!({"key": s.key, "description": s.description, "default": s.default_value, "multiple": s.multiple})).collect::<Vec<_>>(),
        "commands": i.capabilities.commands.iter().map(|c| { let mut v = vec![c.program.clone()]; v.extend(c.args.clone()); v }).collect::<Vec<_>>(),
        "paths": i.capabilities.paths,
        "compile": p.compile,
    })
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let d = deployment(g)?;
    let (_runtime, registry) = load_plugins(g, &d).await?;
    for b in &registry.broken {
        eprintln!("warning: {b}");
    }
    match args.command.unwrap_or(Sub::List) {
        Sub::List => {
            for p in registry.iter() {
                if g.json {
                    println!("{}", json(p));
                } else {
                    println!(
                        "{:<12} {:<8} contract {:<6} {:<9} {} ({} in {:.0?})",
                        p.info.name,
                        p.info.version,
                        p.identity.contract,
                        p.origin.to_string(),
                        &p.identity.digest[..12],
                        if p.compile.cached {
                            "loaded from cache"
                        } else {
                            "compiled"
                        },
                        p.compile.duration
                    );
                }
            }
        }
        Sub::Describe { name } => {
            let p = registry.get(&name).ok_or_else(|| {
                UsageError(format!(
                    "no plugin `{name}` (installed: {})",
                    registry.names().join(", ")
                ))
            })?;
            if g.json {
                println!("{}", json(p));
            } else {
                let i = &p.info;
                println!(
                    "{} {} ({}), contract {}",
                    i.name, i.version, p.origin, p.identity.contract
                );
                println!("  sha256 {}", p.identity.digest);
                println!("  {}", i.description);
                let roles = if i.roles.is_empty() {
                    "every node".into()
                } else {
                    i.roles.join(", ")
                };
                println!("  runs on: {roles}");
                println!("  settings:");
                for s in &i.settings {
                    let default = s
                        .default_value
                        .as_ref()
                        .map(|d| format!(" [default: {d}]"))
                        .unwrap_or_default();
                    let many = if s.multiple { " (repeatable)" } else { "" };
                    println!("    {}{many}: {}{default}", s.key, s.description);
                }
                let ops = |o: &coffer_sdk::Operations| {
                    [
                        ("backup", o.backup),
                        ("restore", o.restore),
                        ("validate", o.validate),
                    ]
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
                };
                let scoped = ops(&i.node_scoped);
                println!(
                    "  one node at a time, nodes in parallel: {}",
                    if scoped.is_empty() {
                        "no (one call for all its nodes)".into()
                    } else {
                        scoped
                    }
                );
                println!("  asks to run (argument globs; ** = any rest):");
                for c in &i.capabilities.commands {
                    println!("    {} {}", c.program, c.args.join(" "));
                }
                println!("  asks to read/write paths:");
                for path in &i.capabilities.paths {
                    println!("    {path}");
                }
                let source = &d.source_name;
                match coffer::orchestrator::grant_of(&d, p) {
                    None => println!(
                        "  granted by {source}: everything it asks for (a built-in plugin without a [plugin.{name}.grant] section)"
                    ),
                    Some(g) if g == Default::default() => println!(
                        "  granted by {source}: nothing (a plugin from the plugin directory needs a [plugin.{name}.grant] section)"
                    ),
                    Some(g) => {
                        println!(
                            "  granted by {source}; a call needs both keys (asked for and granted):"
                        );
                        let show = |scope: &str, caps: &coffer_sdk::Capabilities| {
                            println!("    {scope}:");
                            for c in &caps.commands {
                                println!("      run  {} {}", c.program, c.args.join(" "));
                            }
                            for path in &caps.paths {
                                println!("      path {path}");
                            }
                        };
                        show(&format!("on every node ([plugin.{name}.grant])"), &g.all);
                        for (role, caps) in &g.roles {
                            show(
                                &format!(
                                    "on nodes with role `{role}` ([plugin.{name}.grant.role.{role}])"
                                ),
                                caps,
                            );
                        }
                    }
                }
            }
        }
    }
    Ok(exit::OK)
}
