//! `coffer access`: temporary SSH access keys, by hand (`grant`, `list`, `revoke`) and for the
//! length of one run (`[access] temporary = true`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use coffer_config::deployment::Deployment;
use coffer_transport::NodeHandle;
use coffer_transport::access::{self, AccessKey, TAG};

use super::{Global, RunConfig, UsageError, exit};

/// Manage temporary access keys on the deployment's SSH nodes.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Generate an ed25519 key and install it on every SSH node (or --node), usable only from
    /// --from and only until it expires. Prints its id and private key file.
    Grant {
        /// Address patterns the key may be used from (authorized_keys `from=`); default:
        /// `[access] from` of the deployment.
        #[arg(long)]
        from: Option<String>,
        /// Minutes until the key expires by itself (`expiry-time=`); default: `[access]
        /// ttl-minutes`, else 240.
        #[arg(long)]
        ttl_minutes: Option<u64>,
        /// Only on these nodes; repeatable.
        #[arg(long = "node", value_name = "NAME")]
        nodes: Vec<String>,
        /// Directory for the key pair (default: ~/.ssh/coffer-access-ID).
        #[arg(long)]
        key_dir: Option<PathBuf>,
    },
    /// Show the Coffer access keys present on each SSH node.
    List,
    /// Remove an access key (or every Coffer access key with --all) from every SSH node, and
    /// verify that it is gone.
    Revoke {
        /// The key's id, as `grant` printed it.
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Every key tagged `coffer-access:`, e.g. after a run killed with SIGKILL.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

/// The deployment's SSH nodes (optionally only `names`), connected with the operator's keys.
async fn ssh_nodes(g: &Global, d: &Deployment, names: &[String]) -> Result<Vec<NodeHandle>> {
    for n in names {
        if !d.nodes.iter().any(|x| &x.name == n) {
            return Err(UsageError(format!("no node `{n}` in {}", d.source_name)).into());
        }
    }
    let wanted: Vec<String> = if names.is_empty() {
        d.nodes.iter().map(|n| n.name.clone()).collect()
    } else {
        names.to_vec()
    };
    // Only the nodes asked for are reached: a dead node elsewhere stops nothing.
    let mut nodes = Vec::new();
    for (_, node) in d.connect_each(&wanted, g.accept_new_host_keys).await {
        nodes.push(node?);
    }
    Ok(nodes.into_iter().filter(|n| !n.is_local()).collect())
}

/// A fixed-length random id, so that no key's tag is a prefix of another's.
fn new_id() -> Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a key id: {e}"))?;
    Ok(hex::encode(bytes))
}

async fn install_everywhere(
    nodes: &[NodeHandle],
    file: &str,
    line: &str,
) -> Result<(), access::AccessError> {
    for n in nodes {
        access::install(n, file, line).await?;
    }
    Ok(())
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let cfg = RunConfig::resolve(g)?;
    let d = &cfg.deployment;
    let file = d.access.authorized_keys.clone();
    match args.command {
        Action::Grant {
            from,
            ttl_minutes,
            nodes,
            key_dir,
        } => {
            let from = from
                .or_else(|| Some(d.access.from.clone()).filter(|f| !f.is_empty()))
                .ok_or_else(|| {
                    UsageError("give --from (or `[access] from` in the deployment file): where the key may be used from".into())
                })?;
            let ttl = ttl_minutes
                .map(|m| Duration::from_secs(60 * m))
                .unwrap_or(d.access.ttl);
            let targets = ssh_nodes(g, d, &nodes).await?;
            if targets.is_empty() {
                return Err(UsageError(
                    "the deployment has no SSH nodes to grant access to".into(),
                )
                .into());
            }
            let id = new_id()?;
            let dir = match key_dir {
                Some(d) => d,
                None => dirs::home_dir()
                    .context("no home directory for the key; give --key-dir")?
                    .join(format!(".ssh/coffer-access-{id}")),
            };
            let key = AccessKey::generate(&dir, &id).await?;
            let expires = jiff::Timestamp::now() + jiff::SignedDuration::try_from(ttl)?;
            let line = key.authorized_line(&from, expires);
            if let Err(e) = install_everywhere(&targets, &file, &line).await {
                // Leave nothing half-granted.
                for n in &targets {
                    let _ = access::revoke(n, &file, &format!("{TAG}{id}")).await;
                }
                key.destroy();
                return Err(e.into());
            }
            println!("access key {id} installed on {} node(s)", targets.len());
            println!("  private key: {}", key.private.display());
            println!("  usable from: {from}");
            println!("  expires:     {expires}");
            println!("  remove with: coffer access revoke {id}");
        }
        Action::List => {
            for n in ssh_nodes(g, d, &[]).await? {
                let lines = access::list(&n, &file, TAG).await?;
                println!("{}: {} access key(s)", n.name, lines.len());
                for l in lines {
                    let tag = l.split_whitespace().last().unwrap_or("");
                    let opts = l.split_whitespace().next().unwrap_or("");
                    println!("  {tag}  {opts}");
                }
            }
        }
        Action::Revoke { id, all } => {
            let tag = match (&id, all) {
                (_, true) => TAG.to_string(),
                (Some(id), false) => format!("{TAG}{id}"),
                (None, false) => unreachable!("clap requires an id or --all"),
            };
            let mut removed = 0;
            for n in ssh_nodes(g, d, &[]).await? {
                let k = access::revoke(&n, &file, &tag).await?;
                println!("{}: removed {k} key line(s); verified none is left", n.name);
                removed += k;
            }
            if let (Some(id), Some(home)) = (&id, dirs::home_dir()) {
                let _ = std::fs::remove_dir_all(home.join(format!(".ssh/coffer-access-{id}")));
            }
            if removed == 0 {
                eprintln!("no node had the key `{tag}`");
            }
        }
    }
    Ok(exit::OK)
}

/// The access key of this run, installed on its SSH nodes.
pub struct RunAccess {
    key: AccessKey,
    bootstrap: Vec<NodeHandle>,
    file: String,
}

static RUN: tokio::sync::OnceCell<Option<RunAccess>> = tokio::sync::OnceCell::const_new();

/// With `[access] temporary = true`: on the first call of a run, connect to the SSH nodes
/// `nodes` (every node when empty) with the operator's keys, install a per-run key, and
/// return its private key file, with which the run then connects. `None` when temporary
/// access is off.
pub async fn run_key(g: &Global, d: &Deployment, nodes: &[String]) -> Result<Option<PathBuf>> {
    if !d.access.temporary {
        return Ok(None);
    }
    let run = RUN
        .get_or_try_init(|| async {
            let bootstrap = ssh_nodes(g, d, nodes).await?;
            let id = new_id()?;
            let dir = std::env::temp_dir().join(format!("coffer-access-{id}"));
            let key = AccessKey::generate(&dir, &id).await?;
            let expires = jiff::Timestamp::now() + jiff::SignedDuration::try_from(d.access.ttl)?;
            let line = key.authorized_line(&d.access.from, expires);
            let file = d.access.authorized_keys.clone();
            let run = RunAccess { key, bootstrap, file };
            if let Err(e) = install_everywhere(&run.bootstrap, &run.file, &line).await {
                let _ = finish(&run).await;
                return Err(anyhow::Error::from(e).context("granting temporary access"));
            }
            tracing::info!(
                "temporary access key {TAG}{id} installed on {} node(s), from {}, expires {expires}",
                run.bootstrap.len(),
                d.access.from
            );
            anyhow::Ok(Some(run))
        })
        .await?;
    Ok(run.as_ref().map(|r| r.key.private.clone()))
}

async fn finish(run: &RunAccess) -> Result<(), access::AccessError> {
    let tag = format!("{TAG}{}", run.key.id);
    let mut first_error = None;
    for n in &run.bootstrap {
        if let Err(e) = access::revoke(n, &run.file, &tag).await {
            tracing::error!("{e}");
            first_error.get_or_insert(e);
        }
    }
    run.key.destroy();
    first_error.map_or(Ok(()), Err)
}

/// At the end of every run, whatever its outcome: remove this run's access key from every node
/// and verify it is gone.
pub async fn end_run() -> Result<()> {
    if let Some(Some(run)) = RUN.get() {
        finish(run).await.context(
            "removing the temporary access key (it expires by itself; `coffer access revoke --all` removes it now)",
        )?;
        tracing::info!(
            "temporary access key {TAG}{} removed from {} node(s) and verified gone",
            run.key.id,
            run.bootstrap.len()
        );
    }
    Ok(())
}
