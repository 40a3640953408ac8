//! `coffer check`: verify the repository.

use anyhow::Result;

use super::{Global, RunConfig, exit};

/// Verify the repository's structure and every snapshot's artifacts; with --read-data, read
/// and decrypt every pack.
#[derive(clap::Args)]
pub struct Args {
    /// Read all data back (slow, thorough).
    #[arg(long)]
    read_data: bool,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let repo = RunConfig::resolve(g)?.open_repo().await?;
    let read = args.read_data;
    let report = coffer_core::run::blocking(move || repo.check(read)).await?;
    if g.json {
        let mut v = serde_json::to_value(&report)?;
        v["event"] = "summary".into();
        v["ok"] = report.errors.is_empty().into();
        println!("{v}");
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        for e in &report.errors {
            eprintln!("ERROR: {e}");
        }
        if report.errors.is_empty() {
            println!(
                "no errors found ({} snapshot(s){})",
                report.snapshots,
                if read { ", all data read back" } else { "" }
            );
        } else {
            println!(
                "{} error(s) found: the repository is damaged",
                report.errors.len()
            );
        }
    }
    Ok(if report.errors.is_empty() {
        exit::OK
    } else {
        exit::REPOSITORY
    })
}
