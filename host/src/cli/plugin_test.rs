//! `coffer plugins test NAME`: run a plugin's backup and validate against the deployment's real
//! nodes, into a throwaway repository, so that a service team (or an operator about to upgrade
//! a plugin) sees it work on a real node without touching the deployment's backups.

use anyhow::{Context as _, Result};
use coffer_repository::{Password, Repo, RepoLocation};

use super::backup::overrides;
use super::output::bytes;
use super::{Global, RunConfig, Target, restore};

/// What to test.
#[derive(clap::Args)]
pub struct Args {
    /// The plugin (enabled in the deployment, with its settings and grants).
    name: String,
    #[command(flatten)]
    target: Target,
    /// Set a setting for this test: KEY=VALUE; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let cfg = RunConfig::resolve(g)?;
    let mut scope = super::RunScope {
        filter: args.target.filter(),
        plugins: Some(vec![args.name.clone()]),
        ..Default::default()
    };
    let (coffer, printer) = cfg.coffer(&mut scope).await?;
    let scratch = tempfile::Builder::new()
        .prefix("coffer-plugin-test-")
        .tempdir()
        .context("creating the throwaway repository")?;
    let mut key = [0u8; 24];
    getrandom::fill(&mut key).context("a password for the throwaway repository")?;
    let location = RepoLocation::Local(scratch.path().join("repo"));
    let password = Password::new(hex::encode(key));
    {
        let (location, password) = (location.clone(), password.clone());
        coffer_core::run::blocking(move || Repo::init(&location, &password)).await?;
    }
    let open = move || {
        let (location, password) = (location.clone(), password.clone());
        coffer_core::run::blocking(move || Repo::open(&location, &password))
    };
    let repo = open().await?;
    let set: Vec<String> = args
        .set
        .iter()
        .map(|s| format!("{}.{s}", args.name))
        .collect();
    let plugins = vec![args.name.clone()];
    let backup = coffer_core::run::BackupOptions {
        plugins: plugins.clone(),
        overrides: overrides(&set)?,
    };
    let s = coffer.backup(repo, &backup).await?;
    eprintln!(
        "{}: backup ok, {} artifact(s), {} (into a throwaway repository; the deployment's is untouched)",
        args.name,
        s.artifacts.len(),
        bytes(s.bytes)
    );
    for a in &s.artifacts {
        eprintln!("  {:<16} {:<24} {}", a.node, a.name, bytes(a.size));
    }
    let opts = coffer_core::run::RestoreOptions {
        plugins,
        validate: true,
        ..Default::default()
    };
    let v = coffer.validate(open().await?, "latest", &opts).await?;
    let code = restore::finish(&printer, &v, "validated");
    drop(scratch);
    Ok(code)
}
