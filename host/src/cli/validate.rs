//! `coffer validate`: check the deployment against a snapshot.

use anyhow::Result;

use super::{Global, RunConfig, restore};

/// Ask every plugin of a snapshot to check its service (and compare it with the snapshot).
#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id (or a unique prefix), or `latest`.
    #[arg(default_value = "latest")]
    snapshot: String,
    #[command(flatten)]
    scope: restore::Scope,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let cfg = RunConfig::resolve(g)?;
    let (coffer, printer) = cfg.coffer(&mut args.scope.run_scope(false)?).await?;
    let repo = cfg.open_repo().await?;
    let opts = args.scope.options(true)?;
    let s = coffer.validate(repo, &args.snapshot, &opts).await?;
    Ok(restore::finish(&printer, &s, "validated"))
}
