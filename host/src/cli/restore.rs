//! `coffer restore`: restore a snapshot, then validate it.

use super::output::human_duration;
use anyhow::{Context as _, Result};
use coffer_core::run::{PluginCheck, RestoreOptions, RestoreSummary};

use super::config::Preset;
use super::output::Printer;
use super::{Global, RunConfig, RunScope, UsageError, exit};

/// Restore a snapshot with each plugin's runbook, in place or under --target, then validate.
#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id (or a unique prefix), or `latest`.
    #[arg(required_unless_present = "resume")]
    snapshot: Option<String>,
    /// Continue the failed restore run RUN (printed when it failed): its snapshot, skipping
    /// the plugins it completed.
    #[arg(long, value_name = "RUN", conflicts_with = "snapshot")]
    resume: Option<String>,
    #[command(flatten)]
    scope: Scope,
    /// Do not validate after restoring.
    #[arg(long)]
    no_validate: bool,
    /// Make each restored set of paths exactly the snapshot: remove files and directories
    /// under its paths that the snapshot does not have (what the backup left out stays).
    /// Try it with --dry-run first: the plan names what would go.
    #[arg(long)]
    delete: bool,
    /// Rebuild the undercloud: every enabled plugin that declares itself part of `undercloud`
    /// (of Coffer's own: the filesystem set, then mysql), on the nodes with role `undercloud`,
    /// then the deployment's `[undercloud] reinstall-command` (e.g. `openstack undercloud
    /// install`) on them.
    #[arg(long)]
    undercloud: bool,
    /// Print the plan — plugins in order, their nodes, every command that would change state,
    /// and the read-only ones (which run) — and change nothing. The artifacts are verified.
    #[arg(long)]
    dry_run: bool,
}

/// What part of a snapshot a restore or a validation covers.
#[derive(clap::Args)]
pub struct Scope {
    /// Restore (or compare) under this directory instead of in place.
    #[arg(long, value_name = "DIR")]
    target: Option<String>,
    /// Only this absolute path (filesystem plugin); repeatable.
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// Only these plugins; repeatable.
    #[arg(long = "plugin", value_name = "NAME")]
    plugins: Vec<String>,
    #[command(flatten)]
    pub nodes: super::Target,
    /// Restore what the snapshot has of node OLD onto node NEW, a replacement in the
    /// deployment file (OLD is then never contacted); repeatable.
    #[arg(long = "map", value_name = "OLD=NEW")]
    map: Vec<String>,
}

impl Scope {
    /// The restore options for this scope.
    pub fn options(&self, validate: bool) -> Result<RestoreOptions> {
        Ok(RestoreOptions {
            map: self.map()?,
            target_root: absolute_target(self.target.clone())?,
            selection: self.paths.clone(),
            plugins: self.plugins.clone(),
            validate,
            resume: None,
            delete: false,
        })
    }

    /// The nodes this scope needs: those `--node`/`--role` admit, of the `--plugin`s when
    /// given (without, every admitted node: the snapshot says which it has data of).
    pub fn run_scope(&self, dry_run: bool) -> Result<RunScope> {
        let mut filter = self.nodes.filter();
        filter.except = self.map()?.into_iter().map(|(old, _)| old).collect();
        Ok(RunScope {
            filter,
            plugins: (!self.plugins.is_empty()).then(|| self.plugins.clone()),
            dry_run,
            degraded: false,
            preset: None,
        })
    }

    /// The `--map OLD=NEW` pairs.
    fn map(&self) -> Result<Vec<(String, String)>> {
        self.map
            .iter()
            .map(|m| match m.split_once('=') {
                Some((old, new)) if !old.is_empty() && !new.is_empty() => {
                    Ok((old.to_string(), new.to_string()))
                }
                _ => Err(UsageError(format!(
                    "--map {m}: expected OLD=NEW, e.g. --map controller-0=controller-3"
                ))
                .into()),
            })
            .collect()
    }
}

/// Print the checks and pick the exit code.
pub fn finish(printer: &Printer, s: &RestoreSummary, verb: &str) -> u8 {
    printer.summary(s, || {
        let failed = s.checks.iter().filter(|c| !c.check.ok).count();
        let mut text = format!(
            "snapshot {}: {verb} in {}; {} check(s), {failed} failed",
            &s.snapshot[..8],
            human_duration(s.seconds),
            s.checks.len()
        );
        for p in &s.plugins {
            text.push_str(&format!("\n{}", super::output::plugin_run(p)));
        }
        let mut validated: Vec<(&str, usize, usize)> = Vec::new();
        for c in &s.checks {
            match validated.iter_mut().find(|(p, _, _)| *p == c.plugin) {
                Some(v) => {
                    v.1 += 1;
                    v.2 += usize::from(!c.check.ok);
                }
                None => validated.push((&c.plugin, 1, usize::from(!c.check.ok))),
            }
        }
        for (plugin, n, failed) in validated {
            text.push_str(&format!(
                "\n  validated {plugin}: {n} check(s), {}",
                if failed == 0 {
                    "all passed".to_string()
                } else {
                    format!("{failed} FAILED")
                }
            ));
        }
        for PluginCheck { plugin, check: c } in s.checks.iter().filter(|c| !c.check.ok) {
            text.push_str(&format!(
                "\n  FAILED {plugin} on {}: {}: {}",
                c.node, c.name, c.detail
            ));
        }
        text
    });
    if s.ok() { exit::OK } else { exit::VALIDATION }
}

fn absolute_target(t: Option<String>) -> Result<Option<String>> {
    Ok(match t {
        None => None,
        Some(t) => {
            let p = std::path::absolute(&t)?;
            Some(p.display().to_string())
        }
    })
}

pub async fn run(g: &Global, mut args: Args) -> Result<u8> {
    let cfg = RunConfig::resolve(g)?;
    let mut scope = args.scope.run_scope(args.dry_run)?;
    if args.undercloud {
        scope.preset = Some(Preset::UNDERCLOUD);
    }
    let (coffer, printer) = cfg.coffer(&mut scope).await?;
    if args.undercloud {
        // The preset's plugins (the plan orders them: files before the database).
        args.scope.plugins = scope.plugins.unwrap_or_default();
        eprintln!(
            "plan: restore {} on the undercloud node(s), then {}",
            args.scope.plugins.join(", then "),
            match &cfg.deployment.reinstall_command {
                Some(c) => format!("run `{}` there", c.join(" ")),
                None => "no reinstall command ([undercloud] reinstall-command is not set)".into(),
            }
        );
    }
    let repo = cfg.open_repo().await?;
    let mut opts = args.scope.options(!args.no_validate)?;
    opts.delete = args.delete;
    opts.resume = args.resume.clone();
    let spec = args.snapshot.as_deref().unwrap_or("latest");
    if args.dry_run {
        let then = args
            .undercloud
            .then(|| coffer.deployment.reinstall_command.clone())
            .flatten();
        let mut plan = coffer.dry_run().plan_restore(repo, spec, &opts).await?;
        plan.then = then;
        printer.summary(&plan, || super::output::plan(&plan));
        return Ok(exit::OK);
    }
    let s = coffer.restore(repo, spec, &opts).await?;
    let code = finish(&printer, &s, "restored");
    if !args.undercloud || code != exit::OK {
        return Ok(code);
    }
    match &coffer.deployment.reinstall_command {
        Some(argv) => reinstall(&coffer, argv).await,
        None => {
            eprintln!(
                "no reinstall command configured: set [undercloud] reinstall-command (TripleO: \
                 [\"openstack\", \"undercloud\", \"install\"]) to run it after the restore"
            );
            Ok(code)
        }
    }
}

/// Run the reinstall command on every undercloud node of the run, its output passed through.
async fn reinstall(coffer: &coffer_core::run::Coffer, argv: &[String]) -> Result<u8> {
    for node in coffer.nodes.iter().filter(|n| coffer.admits(n)) {
        eprintln!("[reinstall] {}: {}", node.name, argv.join(" "));
        let mut p = node
            .spawn(argv)
            .await
            .with_context(|| format!("starting the reinstall command on {}", node.name))?;
        p.stdin.take();
        let mut out = std::mem::replace(&mut p.stdout, Box::new(tokio::io::empty()));
        let mut err = std::mem::replace(&mut p.stderr, Box::new(tokio::io::empty()));
        let (mut o, mut e) = (tokio::io::stderr(), tokio::io::stderr());
        let _ = tokio::join!(
            tokio::io::copy(&mut out, &mut o),
            tokio::io::copy(&mut err, &mut e)
        );
        let code = p
            .wait()
            .await
            .with_context(|| format!("the reinstall command on {}", node.name))?;
        if code != Some(0) {
            return Err(anyhow::anyhow!(
                "the reinstall command `{}` on {} ended with {}; the restore itself completed \
                 (run the command again by hand)",
                argv.join(" "),
                node.name,
                code.map_or("a signal".into(), |c| format!("exit code {c}"))
            ));
        }
        eprintln!("[reinstall] {}: done", node.name);
    }
    Ok(exit::OK)
}
