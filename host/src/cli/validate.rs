//! `coffer validate`: check the deployment against a snapshot.

use anyhow::Result;
use coffer::orchestrator::RestoreOptions;

use super::{Global, coffer, open_repo, restore};

/// Ask every plugin of a snapshot to check its service (and compare it with the snapshot).
#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id (or a unique prefix), or `latest`.
    #[arg(default_value = "latest")]
    snapshot: String,
    /// Compare what was restored under this directory.
    #[arg(long, value_name = "DIR")]
    target: Option<String>,
    /// Only this absolute path (filesystem plugin); repeatable.
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// Only these plugins; repeatable.
    #[arg(long = "plugin", value_name = "NAME")]
    plugins: Vec<String>,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let (coffer, printer) = coffer(g).await?;
    let repo = open_repo(g, &coffer.deployment).await?;
    let opts = RestoreOptions {
        target_root: restore::absolute_target(args.target)?,
        selection: args.paths,
        plugins: args.plugins,
        validate: true,
    };
    let s = coffer.validate(repo, &args.snapshot, &opts).await?;
    Ok(restore::finish(&printer, &s, "validated"))
}
