//! `coffer copy`: copy snapshots into a second repository (an off-site one).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use coffer_repository::{Copied, Password, Repo};

use super::config::RepoPlace;
use super::output::bytes;
use super::{Global, INTERRUPT, RunConfig, UsageError, exit};

/// Copy snapshots into another repository — a second disk, a backup host's REST server — so
/// that a lost site or a lost repository still leaves one (the 3-2-1 rule). Only the snapshots
/// the target lacks are copied, oldest first, each artifact verified as it goes; the copy
/// restores on its own (`coffer --repo TARGET restore latest`).
#[derive(clap::Args)]
pub struct Args {
    /// The repository to copy into: a directory or `rest:URL`; its REST credentials come from
    /// COFFER_TO_REST_USERNAME and COFFER_TO_REST_PASSWORD. Create it first with
    /// `coffer --repo TARGET init`.
    #[arg(long, value_name = "REPO")]
    to: PathBuf,
    /// The target's password file (default: the source's password).
    #[arg(long, value_name = "FILE", env = "COFFER_TO_PASSWORD_FILE")]
    to_password_file: Option<PathBuf>,
    /// Only these snapshots (ids, id prefixes or `latest`); default: every one.
    snapshots: Vec<String>,
}

/// What a copy did.
#[derive(serde::Serialize)]
struct Summary {
    copied: Vec<Copied>,
    /// Snapshots the target already had (source ids).
    present: Vec<String>,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let cfg = RunConfig::resolve(g)?;
    let place = RepoPlace::of(&args.to);
    if Some(&place) == cfg.repository.as_ref() {
        return Err(UsageError(format!(
            "--to {} is the repository copied from",
            args.to.display()
        ))
        .into());
    }
    let password = match &args.to_password_file {
        Some(file) => super::config::read_password(file)?,
        None => cfg.password()?,
    };
    let source = cfg.open_repo().await?;
    let target = open_target(&cfg, &place, password)
        .await
        .with_context(|| format!("opening the copy's target {}", args.to.display()))?;
    let _lock = target.lock().await?;
    // The repositories are read on a blocking thread: an HTTP backend's client must not
    // block the async runtime.
    let (source, all) = coffer_core::run::blocking(move || {
        let all = source.snapshots()?;
        Ok::<_, coffer_repository::RepoError>((source, all))
    })
    .await?;
    let wanted = {
        if args.snapshots.is_empty() {
            all
        } else {
            let mut picked = Vec::new();
            for spec in &args.snapshots {
                // Found among the listing already read, not by listing again per name.
                let s = coffer_repository::find_in(&all, spec)?;
                if !picked
                    .iter()
                    .any(|p: &coffer_repository::CofferSnapshot| p.id == s.id)
                {
                    picked.push(s);
                }
            }
            picked.sort_by(|a, b| a.time.cmp(&b.time));
            picked
        }
    };
    let target = coffer_core::run::blocking(move || {
        // What a killed copy or backup left there goes first, under the lock.
        target.prepare_backup()?;
        let had: Vec<String> = target
            .snapshots()?
            .into_iter()
            .map(|s| s.manifest.run_id)
            .collect();
        Ok::<_, coffer_repository::RepoError>((target.into_writer()?, had))
    })
    .await?;
    let (writer, had) = target;
    let reader = coffer_core::run::blocking(move || source.into_reader()).await?;
    let (writer, reader) = (Arc::new(writer), Arc::new(reader));
    let mut summary = Summary {
        copied: Vec::new(),
        present: Vec::new(),
    };
    for snap in wanted {
        if had.contains(&snap.manifest.run_id) {
            summary.present.push(snap.id.clone());
            continue;
        }
        if INTERRUPT.is_cancelled() {
            return Err(coffer_core::run::RunError::Interrupted.into());
        }
        let (w, r) = (writer.clone(), reader.clone());
        let short = snap.short_id().to_string();
        let copied = coffer_core::run::blocking(move || w.copy_from(&r, &snap, Arc::default()))
            .await
            .with_context(|| {
                format!(
                    "copying snapshot {short}: the target keeps every snapshot copied before \
                     it, and nothing of this one"
                )
            })?;
        if g.json {
            let mut v = serde_json::to_value(&copied)?;
            v["event"] = "copied".into();
            println!("{v}");
        } else {
            println!(
                "copied {} as {}: {} artifact(s), {}, verified",
                &copied.from[..8],
                &copied.to[..8],
                copied.artifacts,
                bytes(copied.bytes)
            );
        }
        summary.copied.push(copied);
    }
    if g.json {
        let mut v = serde_json::to_value(&summary)?;
        v["event"] = "summary".into();
        println!("{v}");
    } else {
        println!(
            "{} snapshot(s) copied to {}, {} already there",
            summary.copied.len(),
            args.to.display(),
            summary.present.len()
        );
    }
    Ok(exit::OK)
}

/// The target repository, opened with `password`.
async fn open_target(cfg: &RunConfig, place: &RepoPlace, password: Password) -> Result<Repo> {
    let location = cfg.location_of(place, "COFFER_TO_REST_").await?;
    let mut repo = coffer_core::run::blocking(move || Repo::open(&location, &password)).await?;
    if let Some(wait) = cfg.global.retry_lock {
        repo.set_retry_lock(wait);
    }
    Ok(repo)
}
