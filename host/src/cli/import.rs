//! `coffer import-inventory`: turn an Ansible inventory into a deployment file.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use coffer_config::deployment::Deployment;
use coffer_config::inventory::Inventory;

use super::{UsageError, exit};

/// Write a deployment file from an Ansible inventory (INI or YAML). Every host becomes a node
/// (`ansible_host`, `ansible_user`, `ansible_port`, `ansible_ssh_private_key_file`;
/// `ansible_connection=local` is the local node); every group it is in, directly or through
/// `children`, becomes a role (lower case: TripleO's `Controller` is `controller`).
#[derive(clap::Args)]
pub struct Args {
    /// The inventory file.
    inventory: PathBuf,
    /// The deployment's name (default: the inventory's file name without extension).
    #[arg(long)]
    name: Option<String>,
    /// Write the deployment file here instead of standard output (never over an existing file).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

pub async fn run(_g: &super::Global, args: Args) -> Result<u8> {
    let text = std::fs::read_to_string(&args.inventory).map_err(|e| {
        UsageError(format!(
            "cannot read inventory {}: {e}",
            args.inventory.display()
        ))
    })?;
    let source = args.inventory.display().to_string();
    let inventory = Inventory::parse(&text, &source).map_err(|e| UsageError(e.to_string()))?;
    if inventory.hosts.is_empty() {
        return Err(UsageError(format!("inventory {source} lists no hosts")).into());
    }
    let name = args.name.unwrap_or_else(|| {
        args.inventory
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "imported".into())
    });
    let toml = inventory.to_deployment(&name);
    // What we write must load: refuse to hand the operator a file Coffer would reject.
    Deployment::parse(&toml, "the imported deployment").map_err(|e| {
        UsageError(format!(
            "{e}\n(fix the inventory {source} and import again)"
        ))
    })?;
    match &args.output {
        None => print!("{toml}"),
        Some(path) => {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(toml.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} with {} nodes; review its repository and plugin sections",
                path.display(),
                inventory.hosts.len()
            );
        }
    }
    Ok(exit::OK)
}
