//! The command line: parsing, the shared setup every subcommand needs, and exit codes.

mod access;
mod backup;
mod check;
mod config;
mod copy;
mod docs;
mod drill;
mod forget;
mod import;
mod init;
mod metrics;
mod output;
mod plugin_test;
mod plugins;
mod recover;
mod restore;
mod runs;
mod scaffold;
mod schedule;
mod snapshots;
mod status;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use coffer_core::run::RunError;
use coffer_repository::RepoError;
use coffer_runtime::PluginFault;

pub use config::{PasswordSource, RunConfig, RunScope};

/// Exit codes a script can rely on.
pub mod exit {
    /// Everything worked.
    pub const OK: u8 = 0;
    /// A failure not covered below.
    pub const FAILURE: u8 = 1;
    /// Bad usage, deployment file or password source.
    pub const USAGE: u8 = 2;
    /// The repository: missing, wrong password, locked, damaged.
    pub const REPOSITORY: u8 = 3;
    /// A plugin failed: returned an error, crashed, hit a limit, was refused.
    pub const PLUGIN: u8 = 4;
    /// The operation ran but validation found problems.
    pub const VALIDATION: u8 = 5;
    /// A node could not be reached, its host key is wrong, or it was lost during the run.
    pub const NODE: u8 = 6;
    /// A plugin call or a command it ran passed its time limit.
    pub const TIMEOUT: u8 = 7;
    /// A degraded backup: the snapshot was written from the nodes that answered, and the
    /// nodes that did not are recorded missing (their node-scoped data is not in it).
    pub const DEGRADED: u8 = 8;
    /// `coffer status`: a plugin on a node has no backup younger than `--max-age`.
    pub const STALE: u8 = 9;
    /// Interrupted by Ctrl-C.
    pub const INTERRUPTED: u8 = 130;
}

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 other failure, 2 usage or deployment file, 3 repository (missing, wrong \
password, locked, damaged), 4 plugin failed, 5 validation failed, 6 node unreachable or wrong \
host key, 7 a plugin call or a command it ran passed its time limit, 8 degraded backup (written \
from the nodes that answered; the others are recorded missing), 9 `coffer status` found a \
backup older than --max-age (or none), 130 interrupted.

The password never goes on the command line: use --password-file, COFFER_PASSWORD_FILE, \
COFFER_PASSWORD, or `password-file` in the deployment file.";

/// Automated, composable backup and recovery for an OpenStack control plane.
#[derive(Parser)]
#[command(name = "coffer", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(clap::Args, Clone)]
pub struct Global {
    /// Deployment file (TOML); without it, the built-in deployment backs up this machine.
    #[arg(short = 'c', long, env = "COFFER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Repository directory (overrides the deployment file).
    #[arg(short = 'r', long = "repo", env = "COFFER_REPOSITORY", global = true)]
    pub repo: Option<PathBuf>,
    /// File holding the repository password (first line).
    #[arg(long, env = "COFFER_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Directory of third-party plugin components (*.wasm).
    #[arg(long, env = "COFFER_PLUGIN_DIR", global = true)]
    pub plugin_dir: Option<PathBuf>,
    /// Directory for compiled plugins.
    #[arg(long, env = "COFFER_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Print JSON lines (events, then a summary) on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail (plugin debug messages, every command run).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Record the SSH host key of a node seen for the first time in known_hosts (a changed
    /// key is still refused).
    #[arg(long, global = true)]
    pub accept_new_host_keys: bool,
    /// When another run holds the repository's lock, wait for it this long (`90s`, `30m`,
    /// `2h`), trying again with growing pauses, before giving up.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_wait)]
    pub retry_lock: Option<std::time::Duration>,
}

/// A duration as restic writes it: `90s`, `30m`, `2h`, `1h30m`.
fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    let span: jiff::Span = s
        .parse()
        .map_err(|e| format!("`{s}` is not a duration (e.g. `90s`, `30m`, `2h`): {e}"))?;
    let signed = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("`{s}`: {e}"))?;
    std::time::Duration::try_from(signed).map_err(|_| format!("`{s}` is negative"))
}

#[derive(Subcommand)]
enum Command {
    /// Create a repository.
    Init(init::Args),
    /// Back up the deployment into a new snapshot.
    Backup(backup::Args),
    /// Restore a snapshot (in place, or under --target), then validate.
    Restore(restore::Args),
    /// Check that the deployment matches a snapshot.
    Validate(validate::Args),
    /// Prove a snapshot restores: into throwaway places, checked, nothing live touched.
    Drill(drill::Args),
    /// List snapshots, or show one.
    Snapshots(snapshots::Args),
    /// Verify the repository (with --read-data, read every byte back).
    Check(check::Args),
    /// Forget snapshots a retention policy does not keep (restic's --keep-* rules).
    Forget(forget::Args),
    /// Remove the data no snapshot needs any more.
    Prune(forget::PruneArgs),
    /// Copy snapshots into a second repository (an off-site one): those it lacks, verified.
    Copy(copy::Args),
    /// List installed plugins, or describe one; install, pin, verify, upgrade; start a new one.
    #[command(alias = "plugin")]
    Plugins(plugins::Args),
    /// Run the reversals a run left behind (killed with SIGKILL, or its unwinding failed).
    Recover(recover::Args),
    /// List past backups, restores, validations and recoveries with their outcome.
    Runs(runs::Args),
    /// The last good backup of every plugin on every node, and how old it is (exit 9 when
    /// older than --max-age): for monitoring.
    Status(status::Args),
    /// Temporary SSH access keys on the nodes: grant, list, revoke.
    Access(access::Args),
    /// Write a deployment file from an Ansible inventory (INI or YAML; groups become roles).
    ImportInventory(import::Args),
    /// Run coffer commands on a calendar: systemd timers (or cron lines).
    Schedule(schedule::Args),
    /// Print the shell completion script (`source <(coffer completions bash)`).
    Completions(docs::CompletionsArgs),
    /// Print the manual page (roff: `coffer man | man -l -`).
    Man,
}

/// Run the CLI.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let recorded = match &cli.command {
        Command::Backup(_) => Some("backup"),
        Command::Restore(_) => Some("restore"),
        Command::Validate(_) => Some("validate"),
        Command::Drill(_) => Some("drill"),
        Command::Recover(_) => Some("recover"),
        Command::Forget(_) => Some("forget"),
        Command::Prune(_) => Some("prune"),
        Command::Copy(_) => Some("copy"),
        Command::Completions(a) => return docs::completions(a),
        Command::Man => return docs::man(),
        _ => None,
    };
    let started = jiff::Timestamp::now();
    let filter = if cli.global.verbose {
        "coffer=debug"
    } else {
        "coffer=info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let global = cli.global.clone();
    let json = global.json;
    let config = global.config.clone();
    let metrics_global = global.clone();
    let command = async move {
        match cli.command {
            Command::Init(a) => init::run(&global, a).await,
            Command::Backup(a) => backup::run(&global, a).await,
            Command::Restore(a) => restore::run(&global, a).await,
            Command::Validate(a) => validate::run(&global, a).await,
            Command::Drill(a) => drill::run(&global, a).await,
            Command::Snapshots(a) => snapshots::run(&global, a).await,
            Command::Check(a) => check::run(&global, a).await,
            Command::Forget(a) => forget::run(&global, a).await,
            Command::Prune(a) => forget::prune(&global, a).await,
            Command::Copy(a) => copy::run(&global, a).await,
            Command::Plugins(a) => plugins::run(&global, a).await,
            Command::ImportInventory(a) => import::run(&global, a).await,
            Command::Access(a) => access::run(&global, a).await,
            Command::Recover(a) => recover::run(&global, a).await,
            Command::Runs(a) => runs::run(&global, a).await,
            Command::Status(a) => status::run(&global, a).await,
            Command::Schedule(a) => schedule::run(&global, a),
            Command::Completions(_) | Command::Man => unreachable!("answered before the runtime"),
        }
    };
    let result = runtime.block_on(async move {
        let result = until_interrupted(command).await;
        // Whatever happened, this run's temporary access key leaves every node.
        let ended = access::end_run().await;
        match (result, ended) {
            (Ok(code), Err(e)) if code == exit::OK => Err(e),
            (r, _) => r,
        }
    });
    let (code, error) = match &result {
        Ok(code) => (*code, None),
        Err(e) => (exit_code(e), Some(format!("{e:#}"))),
    };
    if let Err(e) = &result {
        output::error(e, code, json);
    }
    if let Some(command) = recorded {
        let line = runs::record(command, started, code, error);
        // `[notify]` and `[metrics]`: best effort, like the record; the file read once.
        let deployment = config
            .as_deref()
            .and_then(|c| coffer_config::deployment::Deployment::load(c).ok());
        runs::notify(
            deployment.as_ref().and_then(|d| d.notify.as_ref()),
            &line,
            code,
        );
        if let Some(textfile) = deployment.and_then(|d| d.metrics_textfile)
            && let Err(e) = runtime.block_on(metrics::write(&metrics_global, &textfile))
        {
            eprintln!("warning: {e:#}");
        }
    }
    // Work still running on blocking threads (an artifact being stored when Ctrl-C came) is
    // not waited for: what it leaves is not a snapshot and the next backup removes it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    ExitCode::from(code)
}

/// Cancelled on the first Ctrl-C; a run checks it when it starts and while it works.
static INTERRUPT: std::sync::LazyLock<tokio_util::sync::CancellationToken> =
    std::sync::LazyLock::new(tokio_util::sync::CancellationToken::new);

/// Run `command`; on Ctrl-C let it stop by itself (a backup discards what it wrote, a run
/// that has not started yet stops when it does), waiting at most a minute.
async fn until_interrupted(command: impl std::future::Future<Output = Result<u8>>) -> Result<u8> {
    let mut command = std::pin::pin!(command);
    tokio::select! {
        r = &mut command => r,
        _ = tokio::signal::ctrl_c() => {
            INTERRUPT.cancel();
            match tokio::time::timeout(std::time::Duration::from_secs(60), &mut command).await {
                Ok(r) => r,
                Err(_) => Err(RunError::Interrupted.into()),
            }
        }
    }
}

/// A plugin failure's exit code: a lost node and a timeout are told apart from the rest.
fn plugin_exit(f: &PluginFault) -> u8 {
    match f {
        PluginFault::NodeLost { .. } => exit::NODE,
        PluginFault::CommandTimedOut { .. } | PluginFault::Timeout { .. } => exit::TIMEOUT,
        _ => exit::PLUGIN,
    }
}

/// The exit code for an error, from its typed cause.
///
/// The error policy, in one place:
/// - Library crates return typed errors (`thiserror`), each carrying what a user needs to act:
///   `coffer_transport::TransportError` (the node, its address, what failed),
///   `coffer_repository::RepoError` (the repository and the cause),
///   `coffer_runtime::PluginFault` (plugin, node and step; its kind tells a lost node and a
///   timeout from a plugin's own error), `coffer_config::deployment::DeploymentError` (every
///   problem with its line and field), `coffer_core::run::RunError` (which of those a run met,
///   or a deployment that does not fit the installed plugins or the snapshot).
/// - The CLI wraps them in `anyhow` with the context of the step it was taking, and maps the
///   first typed cause in the chain to an exit code here: repository 3, plugin 4 (a lost node
///   6, a timeout 7), node 6, deployment file or usage 2, interrupted 130, anything else 1.
///   Validation failures are not errors: the command returns 5 itself.
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(r) = cause.downcast_ref::<RunError>() {
            return match r {
                RunError::Repository(_) => exit::REPOSITORY,
                RunError::Plugin(f) => plugin_exit(f),
                RunError::Config(_) => exit::USAGE,
                RunError::Interrupted => exit::INTERRUPTED,
                RunError::Unreachable(_) => exit::NODE,
            };
        }
        if let Some(e) = cause.downcast_ref::<RepoError>() {
            return match e {
                RepoError::Retention(_) => exit::USAGE,
                _ => exit::REPOSITORY,
            };
        }
        if cause
            .downcast_ref::<coffer_transport::TransportError>()
            .is_some()
        {
            return exit::NODE;
        }
        if let Some(f) = cause.downcast_ref::<PluginFault>() {
            return plugin_exit(f);
        }
        if cause
            .downcast_ref::<coffer_core::pins::PinError>()
            .is_some()
            || cause
                .downcast_ref::<coffer_core::signing::SignatureError>()
                .is_some()
        {
            return exit::PLUGIN;
        }
        if cause
            .downcast_ref::<coffer_config::deployment::DeploymentError>()
            .is_some()
            || cause.downcast_ref::<UsageError>().is_some()
        {
            return exit::USAGE;
        }
    }
    exit::FAILURE
}

/// Which nodes a run acts on (`--node`, `--role`); the default is every node.
#[derive(clap::Args, Clone, Default)]
pub struct Target {
    /// Only this node; repeatable.
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
    /// Only nodes carrying this role; repeatable.
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
}

impl Target {
    /// The orchestrator's filter.
    pub fn filter(&self) -> coffer_core::run::NodeFilter {
        coffer_core::run::NodeFilter {
            nodes: self.nodes.clone(),
            roles: self.roles.clone(),
            except: Vec::new(),
        }
    }
}

/// A mistake in how coffer was called or configured.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
