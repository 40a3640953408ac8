//! `coffer init`: create a repository.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context as _, Result};
use coffer_repository::Repo;

use super::{Global, PasswordSource, RunConfig, exit};

/// Create a repository. When the deployment names a password file that does not exist yet and
/// no other password is given, a random password is generated into it (mode 0600).
#[derive(clap::Args)]
pub struct Args {}

pub async fn run(g: &Global, _args: Args) -> Result<u8> {
    let cfg = RunConfig::resolve(g)?;
    let location = cfg.repo_location().await?;
    if let Some(PasswordSource::File(file)) = &cfg.password
        && g.password_file.is_none()
        && !file.exists()
    {
        generate_password(file)?;
        eprintln!(
            "generated a repository password in {}: keep a copy off this machine, without it the backups cannot be read",
            file.display()
        );
    }
    let pw = cfg.password()?;
    let l = location.clone();
    coffer_core::run::blocking(move || Repo::init(&l, &pw)).await?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({"event": "summary", "repository": location.to_string()})
        );
    } else {
        println!("created repository {location}");
    }
    Ok(exit::OK)
}

fn generate_password(file: &std::path::Path) -> Result<()> {
    let mut raw = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .context("reading /dev/urandom")?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("creating password file {}", file.display()))?;
    use std::io::Write;
    writeln!(f, "{}", hex::encode(raw)).context("writing the password file")?;
    Ok(())
}
