//! `coffer plugins`: list, describe, lock, verify, install and upgrade plugins.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use coffer_config::deployment::Deployment;
use coffer_core::pins::PinFile;
use coffer_core::registry::Registry;
use coffer_core::signing::{TrustedKeys, signature_path};
use coffer_runtime::{LoadedPlugin, PluginOrigin, Runtime};

use super::{Global, RunConfig, UsageError, exit};

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
    /// Pin every installed plugin by SHA-256 in the deployment's lock file (DEPLOYMENT.lock).
    Lock,
    /// Compare the installed plugins with the lock file.
    Verify,
    /// Install a plugin component into the plugin directory and pin it.
    Install {
        /// The `.wasm` component.
        path: PathBuf,
    },
    /// Write a new plugin crate (./NAME) that builds and passes its own tests at once.
    New {
        /// Plugin name, lower-case kebab.
        name: String,
        /// Where to write it (default ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The Coffer SDK to depend on (default: the checkout this coffer was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Run a plugin's backup and validate on the deployment's real nodes (--node, --role) into
    /// a throwaway repository: see it work without touching the deployment's backups.
    Test(super::plugin_test::Args),
    /// Replace an installed plugin by a new build: shows what changes in what it asks for and
    /// needs --yes to accept.
    Upgrade {
        /// Plugin name.
        name: String,
        /// The new `.wasm` component.
        path: PathBuf,
        /// Accept the change.
        #[arg(long)]
        yes: bool,
    },
}

fn lock_path(g: &Global) -> Result<PathBuf> {
    g.config
        .as_ref()
        .map(|c| coffer_core::pins::path_for(c))
        .ok_or_else(|| {
            UsageError("a lock file belongs to a deployment file: give -c/--config".into()).into()
        })
}

fn asks(p: &LoadedPlugin) -> Vec<String> {
    let caps = &p.info.capabilities;
    caps.commands
        .iter()
        .map(|c| {
            format!("run  {} {}", c.program, c.args.join(" "))
                .trim_end()
                .to_string()
        })
        .chain(caps.paths.iter().map(|p| format!("path {p}")))
        .collect()
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
        "adapted": p.adapted(),
        "roles": i.roles,
        "operations": {"backup": i.operations.backup, "restore": i.operations.restore, "validate": i.operations.validate},
        "settings": i.settings.iter().map(|s| serde_json::json!({"key": s.key, "description": s.description, "default": s.default_value, "multiple": s.multiple})).collect::<Vec<_>>(),
        "commands": i.capabilities.commands.iter().map(|c| { let mut v = vec![c.program.clone()]; v.extend(c.args.clone()); v }).collect::<Vec<_>>(),
        "reads": i.capabilities.commands.iter().map(|c| c.effect == coffer_sdk::Effect::Reads).collect::<Vec<_>>(),
        "paths": i.capabilities.paths,
        "compile": p.compile,
        "restores": p.restores(),
        "presets": i.presets,
        "cluster_artifacts": i.cluster_artifacts,
    })
}

/// The component at `path`, loaded; with trusted keys configured, refused unless signed by one.
async fn candidate(
    runtime: &Runtime,
    d: &Deployment,
    path: &std::path::Path,
) -> Result<(Vec<u8>, LoadedPlugin)> {
    let wasm = std::fs::read(path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    let trusted = TrustedKeys::load(&d.trusted_keys)?;
    if trusted.required() {
        let key = trusted.verify(path, &wasm)?;
        println!("{}: signed by trusted key {key}", path.display());
    }
    let plugin = runtime
        .load(&wasm, PluginOrigin::File(path.to_path_buf()))
        .await?;
    Ok((wasm, plugin))
}

/// Write `wasm` (read from `from`, with its signature) to `target` and pin the plugin set
/// again; the lock file's path.
async fn put_in_place(
    g: &Global,
    cfg: &RunConfig,
    wasm: &[u8],
    from: &std::path::Path,
    target: &std::path::Path,
) -> Result<PathBuf> {
    let lock = lock_path(g)?;
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(target, wasm)?;
    copy_signature(from, target)?;
    let (_, registry) = cfg.load_plugins().await?;
    PinFile::of(&registry).save(&lock)?;
    Ok(lock)
}

/// Put `from`'s signature file (if any) next to `to`; remove a stale one otherwise.
fn copy_signature(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    let (from, to) = (signature_path(from), signature_path(to));
    if from.exists() {
        std::fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    } else if to.exists() {
        std::fs::remove_file(&to)?;
    }
    Ok(())
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    if let Some(Sub::New { name, dir, sdk }) = &args.command {
        let dir = super::scaffold::new_plugin(name, dir.as_deref(), sdk.as_deref())?;
        println!(
            "wrote plugin `{name}` in {0}\nnext: cd {0} && cargo test; then see its README.md",
            dir.display()
        );
        return Ok(exit::OK);
    }
    if let Some(Sub::Test(a)) = args.command {
        return super::plugin_test::run(g, a).await;
    }
    let cfg = RunConfig::resolve(g)?;
    let (runtime, registry) = cfg.load_plugins().await?;
    for b in &registry.broken {
        eprintln!("warning: {b}");
    }
    if !matches!(args.command, Some(Sub::Verify)) {
        for r in &registry.refused {
            eprintln!("warning: not loaded: {r}");
        }
    }
    match args.command.unwrap_or(Sub::List) {
        Sub::Lock => lock(g, &registry),
        Sub::Verify => verify(g, &registry),
        Sub::Install { path } => install(g, &cfg, &runtime, &registry, path).await,
        Sub::Upgrade { name, path, yes } => {
            upgrade(g, &cfg, &runtime, &registry, name, path, yes).await
        }
        Sub::New { .. } | Sub::Test(_) => unreachable!("handled before the plugins are loaded"),
        Sub::List => list(g, &registry),
        Sub::Describe { name } => describe(g, &cfg.deployment, &registry, name),
    }
}

/// `plugins lock`: pin every installed plugin.
fn lock(g: &Global, registry: &Registry) -> Result<u8> {
    let path = lock_path(g)?;
    let lock = PinFile::of(registry);
    lock.save(&path)?;
    println!(
        "pinned {} plugin(s) in {}",
        lock.plugins.len(),
        path.display()
    );
    Ok(exit::OK)
}

/// `plugins verify`: compare the installed plugins with the lock file.
fn verify(g: &Global, registry: &Registry) -> Result<u8> {
    let path = lock_path(g)?;
    let Some(lock) = PinFile::load(&path)? else {
        return Err(UsageError(format!(
            "no lock file at {}; `coffer plugins lock` writes one",
            path.display()
        ))
        .into());
    };
    let mut problems = lock.problems(registry);
    problems.extend(registry.refused.iter().map(|r| format!("  {r}")));
    if problems.is_empty() {
        println!(
            "{} plugin(s) match {}",
            registry.iter().count(),
            path.display()
        );
        for (name, key) in &registry.signed_by {
            println!("  {name}: signed by trusted key {key}");
        }
    } else {
        println!("{}", problems.join("\n"));
        return Ok(exit::PLUGIN);
    }
    Ok(exit::OK)
}

/// `plugins install`: put a component in the plugin directory and pin it.
async fn install(
    g: &Global,
    cfg: &RunConfig,
    runtime: &Runtime,
    registry: &Registry,
    path: PathBuf,
) -> Result<u8> {
    let (wasm, new) = candidate(runtime, &cfg.deployment, &path).await?;
    let name = new.info.name.clone();
    if let Some(old) = registry.get(&name) {
        return Err(UsageError(format!(
            "plugin `{name}` {} is already installed ({}); use `coffer plugins upgrade {name} {}`",
            old.info.version,
            old.origin,
            path.display()
        ))
        .into());
    }
    let target = cfg.plugin_dir.clone().join(format!("{name}.wasm"));
    let lock = put_in_place(g, cfg, &wasm, &path, &target).await?;
    println!(
        "installed {name} {} (contract {}, sha256 {}) as {}; pinned in {}",
        new.info.version,
        new.identity.contract,
        new.identity.digest,
        target.display(),
        lock.display()
    );
    println!("it asks for (grant what you accept in [plugin.{name}.grant]):");
    for a in asks(&new) {
        println!("  {a}");
    }
    Ok(exit::OK)
}

/// `plugins upgrade`: show what a new build changes in what it asks for; replace it with --yes.
async fn upgrade(
    g: &Global,
    cfg: &RunConfig,
    runtime: &Runtime,
    registry: &Registry,
    name: String,
    path: PathBuf,
    yes: bool,
) -> Result<u8> {
    let old = registry.get(&name).ok_or_else(|| {
        UsageError(format!(
            "no plugin `{name}` installed; `coffer plugins install` it"
        ))
    })?;
    let (wasm, new) = candidate(runtime, &cfg.deployment, &path).await?;
    if new.info.name != name {
        return Err(UsageError(format!(
            "{} is plugin `{}`, not `{name}`",
            path.display(),
            new.info.name
        ))
        .into());
    }
    // From what the lock file pins, when it pins this plugin: a rebuild dropped into the
    // plugin directory is then the candidate, not the baseline.
    let pinned = match lock_path(g) {
        Ok(lock) => PinFile::load(&lock)?.and_then(|f| f.pin(&name).cloned()),
        Err(_) => None,
    };
    let (from_version, from_contract, from_digest, from) = match &pinned {
        Some(p) => (
            p.version.clone(),
            p.contract.clone(),
            p.sha256.clone(),
            "pinned ",
        ),
        None => (
            old.info.version.clone(),
            old.identity.contract.clone(),
            old.identity.digest.clone(),
            "",
        ),
    };
    println!(
        "{name}: {from}{from_version} (contract {from_contract}, sha256 {}) -> {} (contract {}, \
         sha256 {})",
        &from_digest[..12.min(from_digest.len())],
        new.info.version,
        new.identity.contract,
        &new.identity.digest[..12]
    );
    if pinned.is_some() && old.identity.digest != from_digest {
        println!(
            "  (the plugin directory now holds another build, sha256 {}: the capabilities below \
             are compared with it)",
            &old.identity.digest[..12]
        );
    }
    let (before, after) = (asks(old), asks(&new));
    let added: Vec<_> = after.iter().filter(|a| !before.contains(a)).collect();
    let removed: Vec<_> = before.iter().filter(|b| !after.contains(b)).collect();
    if added.is_empty() && removed.is_empty() {
        println!("  asks for the same capabilities");
    }
    for a in &added {
        println!("  + {a}");
    }
    for r in &removed {
        println!("  - {r}");
    }
    if !yes {
        println!("not upgraded: re-run with --yes to accept");
        return Ok(exit::FAILURE);
    }
    let target = match &old.origin {
        PluginOrigin::File(p) => p.clone(),
        PluginOrigin::Builtin => cfg.plugin_dir.clone().join(format!("{name}.wasm")),
    };
    let lock = put_in_place(g, cfg, &wasm, &path, &target).await?;
    println!(
        "upgraded {name} in {}; pinned in {}",
        target.display(),
        lock.display()
    );
    Ok(exit::OK)
}

/// `plugins list`.
fn list(g: &Global, registry: &Registry) -> Result<u8> {
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
    Ok(exit::OK)
}

/// `plugins describe`: what a plugin does, accepts, asks for and is granted.
fn describe(g: &Global, d: &Deployment, registry: &Registry, name: String) -> Result<u8> {
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
            "{} {} ({}), contract {}{}",
            i.name,
            i.version,
            p.origin,
            p.identity.contract,
            if p.adapted() {
                " (frozen 1.x, served through the adapter; not called in dry runs)"
            } else {
                ""
            }
        );
        println!("  sha256 {}", p.identity.digest);
        println!("  {}", i.description);
        let roles = if i.roles.is_empty() {
            "every node".into()
        } else {
            i.roles.join(", ")
        };
        println!("  runs on: {roles}");
        println!("  restores artifacts written by versions: {}", p.restores());
        if !i.presets.is_empty() {
            let flags: Vec<_> = i.presets.iter().map(|p| format!("--{p}")).collect();
            println!("  backed up by: coffer backup {}", flags.join(", "));
        }
        if !i.cluster_artifacts.is_empty() {
            println!(
                "  artifacts of the whole cluster: {}",
                i.cluster_artifacts.join(", ")
            );
        }
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
        println!("  asks to run (argument globs; ** = any rest; `reads`: runs in a dry run):");
        for c in &i.capabilities.commands {
            let effect = match c.effect {
                coffer_sdk::Effect::Reads => "reads  ",
                coffer_sdk::Effect::Changes => "changes",
            };
            println!("    {effect} {} {}", c.program, c.args.join(" "));
        }
        println!("  asks to read/write paths:");
        for path in &i.capabilities.paths {
            println!("    {path}");
        }
        // Ready to paste: TOML literal strings keep `\`, `*` and `**` as the plugin wrote
        // them (a double-quoted string would read `\t` as a tab).
        println!("  to grant all of it, paste into {}:", d.source_name);
        println!("    [plugin.{name}.grant]");
        let entries: Vec<String> = i
            .capabilities
            .commands
            .iter()
            .map(coffer_sdk::capability::grant_entry)
            .collect();
        println!(
            "    commands = [\n      {},\n    ]",
            entries.join(",\n      ")
        );
        let paths: Vec<String> = i
            .capabilities
            .paths
            .iter()
            .map(|p| coffer_sdk::capability::toml_string(p))
            .collect();
        println!("    paths = [{}]", paths.join(", "));
        let source = &d.source_name;
        match coffer_core::run::grant_of(d, p) {
            None => println!(
                "  granted by {source}: everything it asks for (a built-in plugin without a [plugin.{name}.grant] section)"
            ),
            Some(g) if g == Default::default() => println!(
                "  granted by {source}: nothing (a plugin from the plugin directory needs a [plugin.{name}.grant] section)"
            ),
            Some(g) => {
                println!("  granted by {source}; a call needs both keys (asked for and granted):");
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
                        &format!("on nodes with role `{role}` ([plugin.{name}.grant.role.{role}])"),
                        caps,
                    );
                }
            }
        }
    }
    Ok(exit::OK)
}
