//! The run configuration: the global flags and the deployment file resolved once, before any
//! work starts, into one value every subcommand reads (ripgrep's low and high arguments).
//! Resolving reads the deployment file and where the password comes from, and nothing else:
//! it reaches no node. Reaching is explicit — [`RunConfig::reach`] installs the run's temporary
//! access key when `[access] temporary` is on — and everything that connects goes through it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};

use coffer_config::deployment::Deployment;
use coffer_core::registry::Registry;
use coffer_core::run::{Coffer, NodeFilter, needed_nodes};
use coffer_repository::{Password, Repo, RepoError, RepoLocation};
use coffer_runtime::Runtime;
use coffer_runtime::dry_run::Unreachable;

use super::{Global, INTERRUPT, UsageError, access, output};

/// Where a repository is, before anything is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoPlace {
    /// A directory on this machine.
    Local(PathBuf),
    /// A directory on a node of the deployment (the external backup host), over SSH.
    OnNode {
        /// The node.
        node: String,
        /// The directory there.
        path: String,
    },
    /// A server, as restic spells it: `rest:http://host:8000/path`, `s3:https://host/bucket`,
    /// `swift:container:/prefix`, `sftp:user@host:/path`.
    Server(String),
}

impl RepoPlace {
    /// `path` as a place on this machine, or a server when it says `rest:`, `s3:`, `swift:` or
    /// `sftp:`.
    pub fn of(path: &Path) -> Self {
        match path.to_str() {
            Some(spec)
                if RepoLocation::parse_url(spec).is_some()
                    || coffer_repository::SftpPlace::parse(spec).is_some() =>
            {
                Self::Server(spec.to_string())
            }
            _ => Self::Local(path.to_path_buf()),
        }
    }
}

/// What part of the deployment a run works on, known before any node is reached.
#[derive(Clone, Debug, Default)]
pub struct RunScope {
    /// Which nodes (`--node`, `--role`, a preset's role).
    pub filter: NodeFilter,
    /// Which plugins: their nodes are the ones needed. `None`: every node the filter admits.
    pub plugins: Option<Vec<String>>,
    /// A dry run: a needed node that does not answer is listed, not fatal.
    pub dry_run: bool,
    /// A backup: a needed node that does not answer is recorded missing and the others are
    /// backed up (a degraded backup), not fatal.
    pub degraded: bool,
    /// A preset (`--controllers`, `--undercloud`): resolved, once the plugins are loaded, into
    /// the enabled plugins that name it and its role.
    pub preset: Option<Preset>,
}

/// A named backup of one kind of node: the plugins that declare themselves part of it (the
/// contract's `presets`), on the nodes with its role.
#[derive(Clone, Copy, Debug)]
pub struct Preset {
    /// The name plugins declare (`controllers`).
    pub name: &'static str,
    /// The role of its nodes (`controller`).
    pub role: &'static str,
}

impl Preset {
    /// `--undercloud`: on the nodes with role `undercloud`.
    pub const UNDERCLOUD: Preset = Preset {
        name: "undercloud",
        role: "undercloud",
    };
    /// `--controllers`: on the nodes with role `controller`.
    pub const CONTROLLERS: Preset = Preset {
        name: "controllers",
        role: "controller",
    };
}

impl RunScope {
    /// Replace the preset by what it means in this deployment: its role joins the filter and
    /// its plugins are the enabled ones that name it (in the deployment's order).
    fn resolve_preset(&mut self, deployment: &Deployment, registry: &Registry) -> Result<()> {
        let Some(preset) = self.preset.take() else {
            return Ok(());
        };
        let names: Vec<String> = deployment
            .plugins
            .iter()
            .filter(|p| {
                registry
                    .get(&p.name)
                    .is_some_and(|l| l.info.presets.iter().any(|n| n == preset.name))
            })
            .map(|p| p.name.clone())
            .collect();
        if names.is_empty() {
            return Err(UsageError(format!(
                "no plugin the deployment enables belongs to the {} preset (a plugin joins it by \
                 declaring it; `coffer plugins describe NAME` shows `backed up by: coffer \
                 backup --{}`)",
                preset.name, preset.name
            ))
            .into());
        }
        self.filter.roles.push(preset.role.to_string());
        self.plugins = Some(names);
        Ok(())
    }
}

/// Where the password comes from, in order: --password-file / COFFER_PASSWORD_FILE,
/// COFFER_PASSWORD, the deployment's password-file.
#[derive(Clone, Debug)]
pub enum PasswordSource {
    /// A file.
    File(PathBuf),
    /// The COFFER_PASSWORD variable.
    Env(String),
}

/// Everything a subcommand needs to know before it works, resolved once.
pub struct RunConfig {
    /// The flags every subcommand takes.
    pub global: Global,
    /// The deployment file, validated (the built-in deployment without `-c`).
    pub deployment: Deployment,
    /// Where the repository is: `-r` (a local directory), else the deployment's `[repository]`
    /// (a local directory, or a directory on its `node`); `None` when neither says.
    pub repository: Option<RepoPlace>,
    /// Where the repository password comes from, if anywhere.
    pub password: Option<PasswordSource>,
    /// Where third-party plugin components are installed.
    pub plugin_dir: PathBuf,
    /// Where compiled plugins are cached (none: no cache).
    pub cache_dir: Option<PathBuf>,
}

impl RunConfig {
    /// Resolve the flags `g` and the deployment file they name (the built-in one without).
    pub fn resolve(g: &Global) -> Result<Self> {
        let deployment = match &g.config {
            Some(path) => Deployment::load(path)?,
            None => Deployment::builtin(),
        };
        Ok(Self::of(g, deployment))
    }

    /// Resolve the flags `g` with a deployment already read (`coffer recover` reads the one a
    /// journal names).
    pub fn of(g: &Global, deployment: Deployment) -> Self {
        let d = &deployment;
        let repository = match (&g.repo, &d.repository, &d.repository_node) {
            (Some(path), _, _) => Some(RepoPlace::of(path)),
            (None, Some(path), Some(node)) => Some(RepoPlace::OnNode {
                node: node.clone(),
                path: path.display().to_string(),
            }),
            (None, Some(path), None) => Some(RepoPlace::of(path)),
            (None, None, _) => None,
        };
        let password = match (&g.password_file, std::env::var("COFFER_PASSWORD")) {
            (Some(p), _) => Some(PasswordSource::File(p.clone())),
            (None, Ok(p)) => Some(PasswordSource::Env(p)),
            (None, Err(_)) => d.password_file.clone().map(PasswordSource::File),
        };
        let plugin_dir = g
            .plugin_dir
            .clone()
            .or_else(|| d.plugin_dir.clone())
            .unwrap_or_else(|| PathBuf::from("/usr/local/lib/coffer/plugins"));
        let cache_dir = g
            .cache_dir
            .clone()
            .or_else(|| d.cache_dir.clone())
            .or_else(|| dirs::cache_dir().map(|c| c.join("coffer").join("components")));
        Self {
            global: g.clone(),
            deployment,
            repository,
            password,
            plugin_dir,
            cache_dir,
        }
    }

    /// Where the repository is, or what to set when nothing says.
    pub fn repository(&self) -> Result<&RepoPlace> {
        self.repository.as_ref().ok_or_else(|| {
            UsageError(
                "no repository: give -r/--repo, set COFFER_REPOSITORY, or set [repository] path \
                 in the deployment file"
                    .into(),
            )
            .into()
        })
    }

    /// The repository password.
    pub fn password(&self) -> Result<Password> {
        match &self.password {
            Some(PasswordSource::File(p)) => read_password(p),
            Some(PasswordSource::Env(p)) if !p.is_empty() => Ok(Password::new(p.clone())),
            _ => Err(UsageError(
                "no repository password: use --password-file, COFFER_PASSWORD_FILE or \
                 COFFER_PASSWORD"
                    .into(),
            )
            .into()),
        }
    }

    /// The deployment as this run reaches it: with `[access] temporary`, every SSH node
    /// through the run's own key, which the first call installs on `nodes` (every node when
    /// empty) and on the repository's node; the CLI removes it when the run ends.
    pub async fn reach(&self, nodes: &[String]) -> Result<Deployment> {
        let mut nodes = nodes.to_vec();
        if let Some(RepoPlace::OnNode { node, .. }) = &self.repository
            && !nodes.is_empty()
            && !nodes.contains(node)
        {
            nodes.push(node.clone());
        }
        Ok(
            match access::run_key(&self.global, &self.deployment, &nodes).await? {
                Some(key) => self.deployment.with_identity(&key),
                None => self.deployment.clone(),
            },
        )
    }

    /// The repository's location, its node reached when it lives on one.
    pub async fn repo_location(&self) -> Result<RepoLocation> {
        self.location_of(self.repository()?, "COFFER_REST_").await
    }

    /// Where `place` is; a REST server's credentials come from the variables `{env}USERNAME`
    /// and `{env}PASSWORD`.
    pub async fn location_of(&self, place: &RepoPlace, env: &str) -> Result<RepoLocation> {
        Ok(match place {
            RepoPlace::Local(path) => RepoLocation::Local(path.clone()),
            RepoPlace::OnNode { node, path } => RepoLocation::Remote {
                node: self
                    .reach(std::slice::from_ref(node))
                    .await?
                    .connect_one(node, self.global.accept_new_host_keys)
                    .await?,
                path: path.clone(),
            },
            RepoPlace::Server(spec) if coffer_repository::SftpPlace::parse(spec).is_some() => {
                let place = coffer_repository::SftpPlace::parse(spec)
                    .expect("an sftp: place")
                    .map_err(UsageError)?;
                let path = PathBuf::from(spec);
                let server = self
                    .deployment
                    .connect_sftp(&place, self.global.accept_new_host_keys)
                    .await
                    .map_err(|e| match e {
                        coffer_transport::TransportError::Unreachable { reason, .. } => {
                            RepoError::ServerDown {
                                path: path.clone(),
                                server: "SFTP server",
                                message: reason,
                            }
                        }
                        coffer_transport::TransportError::LoginRefused { reason, .. } => {
                            RepoError::Unauthorized {
                                path: path.clone(),
                                server: "SFTP server",
                                status: "login refused".into(),
                                fix: format!(
                                    "{reason}; give the private key in [repository] key and \
                                     its public half in that user's authorized_keys"
                                ),
                            }
                        }
                        other => RepoError::Credentials {
                            path: path.clone(),
                            message: other.to_string(),
                        },
                    })?;
                let coffer_transport::Transport::Ssh(session) = server.transport else {
                    unreachable!("an SFTP server is reached over SSH")
                };
                RepoLocation::Sftp(
                    coffer_repository::SftpRepo::open(place, session)
                        .await
                        .map_err(|e| RepoError::ServerDown {
                            path,
                            server: "SFTP server",
                            message: e.to_string(),
                        })?,
                )
            }
            RepoPlace::Server(spec) => match RepoLocation::parse_url(spec)
                .expect("a server's place")
                .map_err(UsageError)?
            {
                RepoLocation::Rest(mut server) => {
                    if let Ok(user) = std::env::var(format!("{env}USERNAME")) {
                        server.user = Some(user);
                    }
                    if let Ok(p) = std::env::var(format!("{env}PASSWORD")) {
                        server.user.get_or_insert_with(|| "coffer".into());
                        server.password = Some(Password::new(p));
                    }
                    RepoLocation::Rest(server)
                }
                other => other,
            },
        })
    }

    /// Open the repository.
    pub async fn open_repo(&self) -> Result<Repo> {
        let location = self.repo_location().await?;
        let password = self.password()?;
        let mut repo = coffer_core::run::blocking(move || Repo::open(&location, &password)).await?;
        if let Some(wait) = self.global.retry_lock {
            repo.set_retry_lock(wait);
        }
        Ok(repo)
    }

    /// The engine with every installed plugin loaded.
    pub async fn load_plugins(&self) -> Result<(Runtime, Registry)> {
        let d = &self.deployment;
        let runtime = Runtime::new(d.limits.clone(), self.cache_dir.as_deref())
            .context("starting the WebAssembly engine")?;
        let trusted = coffer_core::signing::TrustedKeys::load(&d.trusted_keys)?;
        let registry = Registry::load(&runtime, Some(&self.plugin_dir), &trusted)
            .await
            .with_context(|| format!("reading plugin directory {}", self.plugin_dir.display()))?;
        Ok((runtime, registry))
    }

    /// Everything an operation needs: the plugins (checked against their signatures and the
    /// lock file), the nodes `scope` needs reached — and only those, so that a dead node the
    /// run does not use cannot stop it — and the reporter. In a dry run a needed node that
    /// does not answer is listed in the plan instead of stopping it. A preset in `scope` is
    /// resolved in place, so the caller sees its plugins.
    pub async fn coffer(&self, scope: &mut RunScope) -> Result<(Coffer, Arc<output::Printer>)> {
        let (runtime, mut registry) = self.load_plugins().await?;
        // A plugin refused for its signature stops the run (the rest are said first).
        if let Some(last) = registry.refused.pop() {
            for other in &registry.refused {
                eprintln!("error: {other}");
            }
            return Err(last.into());
        }
        if let Some(path) = &self.global.config {
            let pins = coffer_core::pins::path_for(path);
            if let Some(pinned) = coffer_core::pins::PinFile::load(&pins)? {
                pinned.check(&registry, &pins, &self.plugin_dir)?;
            }
        }
        scope.resolve_preset(&self.deployment, &registry)?;
        scope.filter.check(&self.deployment)?;
        let needed = needed_nodes(
            &self.deployment,
            &registry,
            &scope.filter,
            scope.plugins.as_deref(),
        );
        let reached = self
            .reach(&needed)
            .await?
            .connect_each(&needed, self.global.accept_new_host_keys)
            .await;
        let (mut nodes, mut unreachable) = (Vec::new(), Vec::new());
        for (node, outcome) in reached {
            match outcome {
                Ok(n) => nodes.push(n),
                // A dead node may be left out; a wrong host key never is, outside a plan.
                Err(e)
                    if scope.dry_run
                        || (scope.degraded
                            && matches!(
                                e,
                                coffer_transport::TransportError::Unreachable { .. }
                            )) =>
                {
                    if scope.dry_run {
                        eprintln!("warning: {e}; the plan is made without {node}");
                    } else {
                        eprintln!(
                            "warning: {e}; backing up without {node}, which the snapshot \
                             records as missing"
                        );
                    }
                    unreachable.push(Unreachable {
                        node,
                        reason: e.to_string(),
                    });
                }
                Err(e) if !matches!(e, coffer_transport::TransportError::Unreachable { .. }) => {
                    return Err(e.into());
                }
                Err(e) => {
                    return Err(anyhow::Error::from(e).context(format!(
                        "this run needs node {node}: to go on without it, name the nodes to \
                         act on with --node (a cluster's data is restored through the members \
                         taking part); --dry-run shows the plan without it"
                    )));
                }
            }
        }
        let printer = Arc::new(output::Printer::new(self.global.json, self.global.verbose));
        let coffer = Coffer::new(
            runtime,
            self.deployment.clone(),
            registry,
            nodes,
            printer.clone(),
        )?
        .restrict(scope.filter.clone())?
        .with_unreachable(unreachable)
        .with_interrupt(INTERRUPT.clone())
        .find_containers()
        .await?;
        Ok((coffer, printer))
    }
}

pub(super) fn read_password(path: &Path) -> Result<Password> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (`coffer init` creates it with a random password when the deployment names it)"
        } else {
            ""
        };
        UsageError(format!(
            "cannot read password file {}: {e}{hint}",
            path.display()
        ))
    })?;
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "password file {} can be read by other users of this machine: `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(UsageError(format!("password file {} is empty", path.display())).into());
    }
    Ok(Password::new(line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn global(args: &[&str]) -> Global {
        let mut argv = vec!["coffer"];
        argv.extend_from_slice(args);
        argv.push("snapshots");
        super::super::Cli::parse_from(argv).global
    }

    #[test]
    fn the_repository_is_resolved_without_reaching_any_node() {
        let text = "[repository]\npath = \"/srv/backups\"\nnode = \"backup\"\n\
                    [[node]]\nname = \"backup\"\naddress = \"192.0.2.1\"\n";
        let d = Deployment::parse(text, "test").unwrap();
        // 192.0.2.1 (TEST-NET-1) answers nothing: resolving must not try.
        let cfg = RunConfig::of(&global(&[]), d.clone());
        assert_eq!(
            cfg.repository().unwrap(),
            &RepoPlace::OnNode {
                node: "backup".into(),
                path: "/srv/backups".into()
            }
        );
        // -r wins over the deployment file, and is local.
        let cfg = RunConfig::of(&global(&["-r", "/tmp/r"]), d);
        assert_eq!(
            cfg.repository().unwrap(),
            &RepoPlace::Local(PathBuf::from("/tmp/r"))
        );
    }

    #[test]
    fn a_missing_repository_is_an_error_only_when_one_is_needed() {
        let d = Deployment::parse("[[node]]\nname = \"n\"\naddress = \"local\"\n", "t").unwrap();
        let cfg = RunConfig::of(&global(&[]), d);
        let e = cfg.repository().unwrap_err().to_string();
        assert!(e.contains("no repository"), "{e}");
    }
}
