//! `coffer recover`: run the reversals a run left behind (killed with SIGKILL, or its
//! unwinding failed).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use coffer_config::deployment::Deployment;
use coffer_runtime::undo::{self, UndoStack};

use super::{Global, exit, output::Printer};

/// Run the pending reversals of unfinished runs, newest first, on their nodes.
#[derive(clap::Args)]
pub struct Args {
    /// Only show what is pending.
    #[arg(long)]
    list: bool,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let journals = undo::leftover_journals();
    if journals.is_empty() {
        println!("nothing to recover: no run left reversals behind");
        return Ok(exit::OK);
    }
    let printer = Printer::new(g.json, g.verbose);
    let mut failed = false;
    for path in journals {
        let stack = UndoStack::load(&path)?;
        println!(
            "{}: {} pending reversal(s) (deployment {})",
            path.display(),
            stack.pending().len(),
            stack.deployment()
        );
        for r in stack.pending().iter().rev() {
            println!(
                "  [{}] on {}: {} ({})",
                r.plugin,
                r.node,
                r.what,
                r.argv.join(" ")
            );
        }
        if args.list {
            continue;
        }
        let d = match (&g.config, stack.deployment().as_str()) {
            (Some(c), _) => Deployment::load(c)?,
            (None, "built-in default") => Deployment::builtin(),
            (None, file) => Deployment::load(&PathBuf::from(file))
                .with_context(|| format!("the deployment of {}", path.display()))?,
        };
        let nodes = super::RunConfig::of(g, d)
            .reach(&[])
            .await?
            .connect(g.accept_new_host_keys)
            .await?;
        match stack.unwind(&nodes, &printer).await {
            Ok(n) => println!("  {n} reversal(s) done; journal removed"),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { exit::FAILURE } else { exit::OK })
}
