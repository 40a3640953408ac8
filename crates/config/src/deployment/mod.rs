//! The operator's deployment file: nodes, plugins per role with their settings, the repository,
//! limits. Parsed and validated whole before any work starts; every error names its line and
//! field.

mod check;
mod file;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_runtime::{ContainerSpec, Limits};
use coffer_sdk::Capabilities;
use coffer_transport::access::AccessConfig;
use coffer_transport::{Become, NodeHandle, SshOptions, SshTarget, TransportError};

use check::{Checker, all_roles, default_known_hosts, line_of};
use file::File;

/// The deployment used when no file is given: the local node as an undercloud, backed up by
/// the filesystem plugin into `/var/backups/coffer`.
pub const DEFAULT_DEPLOYMENT: &str = r#"# Coffer's built-in deployment: this machine, as an undercloud.
name = "local"

[repository]
path = "/var/backups/coffer"
password-file = "/etc/coffer/password"

[[node]]
name = "local"
address = "local"
roles = ["undercloud"]

[plugin.filesystem]
"#;

/// One problem in a deployment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Line (1-based), when known.
    pub line: Option<usize>,
    /// The field, e.g. `node[2].address`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Everything wrong with a deployment file.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// The file could not be read.
    #[error("cannot read deployment file {path}: {source}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is malformed or inconsistent.
    #[error("deployment file {source_name} is invalid:\n{}", format_problems(.problems))]
    Invalid {
        /// File name.
        source_name: String,
        /// Each problem.
        problems: Vec<Problem>,
    },
}

fn format_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| match p.line {
            Some(l) => format!("  line {l}, `{}`: {}", p.field, p.message),
            None => format!("  `{}`: {}", p.field, p.message),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A node as the deployment file describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Unique name.
    pub name: String,
    /// Roles it carries.
    pub roles: Vec<String>,
    /// How to reach it over SSH; `None` for the local node.
    pub ssh: Option<SshTarget>,
    /// How its commands gain privileges (`become = "sudo"`); `None`: as the login user.
    pub escalation: Option<Become>,
}

impl NodeSpec {
    /// Reach the node: the local one directly, any other over SSH with `options`.
    pub async fn reach(&self, options: &SshOptions) -> Result<NodeHandle, TransportError> {
        let (node, login) = match &self.ssh {
            None => (
                NodeHandle::local(&self.name, self.roles.clone()),
                std::env::var("USER").unwrap_or_else(|_| "the user running coffer".into()),
            ),
            Some(target) => (
                NodeHandle::connect(&self.name, self.roles.clone(), target, options).await?,
                target.user.clone(),
            ),
        };
        match &self.escalation {
            None => Ok(node),
            Some(b) => node.with_become(b.clone(), &login).await,
        }
    }
}

/// What the operator grants a plugin: `[plugin.NAME.grant]` on every node of the plugin, plus
/// `[plugin.NAME.grant.role.ROLE]` on the nodes carrying that role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// Granted on every node.
    pub all: Capabilities,
    /// Granted on nodes with the role, in addition.
    pub roles: BTreeMap<String, Capabilities>,
}

impl Grant {
    /// Everything granted on a node carrying `roles`.
    pub fn on(&self, roles: &[String]) -> Capabilities {
        let mut caps = self.all.clone();
        for (role, extra) in &self.roles {
            if roles.contains(role) {
                caps.commands.extend(extra.commands.iter().cloned());
                caps.paths.extend(extra.paths.iter().cloned());
            }
        }
        caps
    }
}

/// A plugin enabled in the deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginConfig {
    /// Plugin name.
    pub name: String,
    /// Roles it runs on; `None` means the roles the plugin declares.
    pub roles: Option<Vec<String>>,
    /// Settings, in file order, list values flattened.
    pub settings: Vec<(String, String)>,
    /// Line of its section, for later errors.
    pub line: Option<usize>,
    /// Line of each setting key.
    pub setting_lines: BTreeMap<String, usize>,
    /// What the operator grants it (`[plugin.NAME.grant]`, per role
    /// `[plugin.NAME.grant.role.ROLE]`). Without a grant section, a built-in plugin may do what
    /// it declares and a plugin from the plugin directory may do nothing.
    pub grant: Option<Grant>,
    /// The container its commands run in, if any (`[plugin.NAME.container]`).
    pub container: Option<ContainerSpec>,
    /// Its limits: `[limits]` with what `[plugin.NAME.limits]` overrides.
    pub limits: Limits,
    /// At most this many of its nodes are worked on at once (`members-down`): a restore that
    /// takes each member down keeps the others up. `None`: `[ssh] parallel`.
    pub members_down: Option<usize>,
}

/// A validated deployment.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// Its name.
    pub name: String,
    /// Where it was read from (`built-in default` or a path).
    pub source_name: String,
    /// Repository path, if configured.
    pub repository: Option<PathBuf>,
    /// The node the repository lives on (the external backup host); `None`: this machine.
    pub repository_node: Option<String>,
    /// Password file, if configured.
    pub password_file: Option<PathBuf>,
    /// The private key an `sftp:` repository is reached with (`[repository] key`); `None`:
    /// the user's default keys.
    pub repository_key: Option<PathBuf>,
    /// Third-party plugin directory, if configured.
    pub plugin_dir: Option<PathBuf>,
    /// Compiled-component cache directory, if configured.
    pub cache_dir: Option<PathBuf>,
    /// Limits for plugins.
    pub limits: Limits,
    /// Nodes, in file order.
    pub nodes: Vec<NodeSpec>,
    /// The known_hosts file SSH nodes are verified against.
    pub known_hosts: PathBuf,
    /// How many nodes are connected to at once, and worked on at once by one plugin.
    pub ssh_parallel: usize,
    /// How many plugins run at once (`[run] parallel-plugins`): those the plan does not order
    /// against each other.
    pub parallel_plugins: usize,
    /// `[retention]`: applied after every successful backup.
    pub retention: Option<coffer_repository::Retention>,
    /// How long a connection may take.
    pub connect_timeout: Duration,
    /// Enabled plugins, in file order of their names.
    pub plugins: Vec<PluginConfig>,
    /// Temporary access keys (`[access]`).
    pub access: AccessConfig,
    /// Public key files whose ed25519 keys sign plugins (`[plugin-signing] trusted-keys`);
    /// when any is given, plugins from the plugin directory must be signed by one.
    pub trusted_keys: Vec<PathBuf>,
    /// What `coffer restore --undercloud` runs on the undercloud after the restore
    /// (`[undercloud] reinstall-command`, e.g. `openstack undercloud install`).
    pub reinstall_command: Option<Vec<String>>,
    /// `[notify]`: a command given each run's record on stdin, after a failed run (or every
    /// run with `always`).
    pub notify: Option<Notify>,
    /// `[metrics] textfile`: where Prometheus metrics are written after every run (the node
    /// exporter's textfile collector reads them).
    pub metrics_textfile: Option<PathBuf>,
    /// `[drill] node`: where `coffer drill` restores (default: the repository's node, else the
    /// Coffer host).
    pub drill_node: Option<String>,
    /// `[drill] scratch`: the directory on that node its scratch directories go in.
    pub drill_scratch: Option<String>,
}

/// A command told how runs ended (`[notify]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    /// Program and arguments, run on the Coffer host.
    pub command: Vec<String>,
    /// After every run, not only failed ones.
    pub always: bool,
}

impl Deployment {
    /// Read and validate the file at `path`.
    pub fn load(path: &Path) -> Result<Self, DeploymentError> {
        let text = std::fs::read_to_string(path).map_err(|source| DeploymentError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The built-in deployment.
    pub fn builtin() -> Self {
        Self::parse(DEFAULT_DEPLOYMENT, "built-in default")
            .expect("the built-in deployment is valid")
    }

    /// Parse and validate `text`, naming it `source_name` in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, DeploymentError> {
        let invalid = |problems: Vec<Problem>| DeploymentError::Invalid {
            source_name: source_name.into(),
            problems,
        };
        let file: File = toml::from_str(text).map_err(|e| {
            invalid(vec![Problem {
                line: e.span().map(|s| line_of(text, s.start)),
                field: "(syntax)".into(),
                message: e.message().trim().to_string(),
            }])
        })?;
        let mut check = Checker::new(text);
        let name = check.name(file.name.as_ref());
        let nodes = check.nodes(&file.node, file.ssh.as_ref(), &file.role);
        check.roles(&file.role, &file.node);
        let all_roles = all_roles(&file);
        let mut limits = Limits::default();
        if let Some(l) = &file.limits {
            l.apply(&mut limits);
        }
        let plugins: Vec<PluginConfig> = file
            .plugin
            .iter()
            .filter(|(_, section)| section.enabled)
            .map(|(name, section)| check.plugin(name, section, &all_roles, &limits))
            .collect();
        check.repository(file.repository.as_ref(), &nodes);
        let parallel_plugins = file.run.as_ref().and_then(|r| r.parallel_plugins);
        check.at_least_one(parallel_plugins, "run.parallel-plugins");
        let ssh = file.ssh.as_ref();
        check.at_least_one(ssh.and_then(|s| s.parallel), "ssh.parallel");
        let access = check.access(file.access.as_ref());
        let retention = check.retention(file.retention.as_ref());
        check.notify(file.notify.as_ref());
        check.drill(file.drill.as_ref(), &nodes);
        if !check.problems.is_empty() {
            return Err(invalid(check.problems));
        }
        let repository = file.repository.as_ref();
        Ok(Self {
            access,
            name,
            source_name: source_name.into(),
            repository: repository.and_then(|r| r.path.clone()),
            repository_node: repository.and_then(|r| r.node.as_ref().map(|n| n.get_ref().clone())),
            password_file: repository.and_then(|r| r.password_file.clone()),
            repository_key: repository.and_then(|r| r.key.clone()),
            plugin_dir: file.plugin_dir.clone(),
            trusted_keys: file
                .plugin_signing
                .as_ref()
                .map(|s| s.trusted_keys.clone())
                .unwrap_or_default(),
            reinstall_command: file
                .undercloud
                .as_ref()
                .and_then(|u| u.reinstall_command.clone())
                .filter(|c| !c.is_empty()),
            notify: file.notify.as_ref().map(|n| Notify {
                command: n.command.get_ref().clone(),
                always: n.always,
            }),
            metrics_textfile: file.metrics.as_ref().map(|m| m.textfile.clone()),
            drill_node: file
                .drill
                .as_ref()
                .and_then(|d| d.node.as_ref().map(|n| n.get_ref().clone())),
            drill_scratch: file
                .drill
                .as_ref()
                .and_then(|d| d.scratch.as_ref().map(|s| s.get_ref().clone())),
            cache_dir: file.cache_dir.clone(),
            limits,
            nodes,
            known_hosts: ssh
                .and_then(|s| s.known_hosts.clone())
                .unwrap_or_else(default_known_hosts),
            ssh_parallel: ssh.and_then(|s| s.parallel).unwrap_or(8),
            parallel_plugins: parallel_plugins.unwrap_or(4),
            retention,
            connect_timeout: Duration::from_secs(
                ssh.and_then(|s| s.connect_timeout_seconds).unwrap_or(10),
            ),
            plugins,
        })
    }

    /// The same deployment with every SSH node reached with the private key `key` (a run's
    /// temporary access key).
    pub fn with_identity(&self, key: &Path) -> Self {
        let mut d = self.clone();
        for n in &mut d.nodes {
            if let Some(t) = &mut n.ssh {
                t.key = Some(key.to_path_buf());
            }
        }
        d
    }

    fn ssh_options(&self, accept_new: bool) -> SshOptions {
        SshOptions {
            known_hosts: self.known_hosts.clone(),
            accept_new,
            connect_timeout: self.connect_timeout,
        }
    }

    /// Reach the SFTP server of an `sftp:` repository as the deployment's nodes are reached
    /// (its known_hosts, `accept_new`, its connect timeout), with `[repository] key`.
    pub async fn connect_sftp(
        &self,
        place: &coffer_repository::SftpPlace,
        accept_new: bool,
    ) -> Result<NodeHandle, TransportError> {
        let target = SshTarget {
            address: place.host.clone(),
            port: place.port.unwrap_or(22),
            user: place
                .user
                .clone()
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "root".into()),
            key: self.repository_key.clone(),
        };
        NodeHandle::connect(
            &place.to_string(),
            Vec::new(),
            &target,
            &self.ssh_options(accept_new),
        )
        .await
    }

    /// Reach one node by name.
    pub async fn connect_one(
        &self,
        name: &str,
        accept_new: bool,
    ) -> Result<NodeHandle, TransportError> {
        let spec = self
            .nodes
            .iter()
            .find(|n| n.name == name)
            .expect("validated node name");
        spec.reach(&self.ssh_options(accept_new)).await
    }

    /// Reach every node: the local one directly, the others over SSH, `ssh_parallel` at a
    /// time. `accept_new` records the host key of a node seen for the first time.
    pub async fn connect(&self, accept_new: bool) -> Result<Vec<NodeHandle>, TransportError> {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        self.connect_each(&names, accept_new)
            .await
            .into_iter()
            .map(|(_, node)| node)
            .collect()
    }

    /// Reach the nodes `names` (in the file's order), `[ssh] parallel` at a time; each with
    /// its own outcome, so that a caller can go on without one that does not answer.
    pub async fn connect_each(
        &self,
        names: &[String],
        accept_new: bool,
    ) -> Vec<(String, Result<NodeHandle, TransportError>)> {
        let options = self.ssh_options(accept_new);
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(self.ssh_parallel));
        let mut tasks = tokio::task::JoinSet::new();
        let specs: Vec<&NodeSpec> = self
            .nodes
            .iter()
            .filter(|n| names.contains(&n.name))
            .collect();
        for (i, spec) in specs.iter().enumerate() {
            let (spec, options, limit) = ((*spec).clone(), options.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore open");
                (i, spec.reach(&options).await)
            });
        }
        let mut reached: Vec<Option<Result<NodeHandle, TransportError>>> =
            (0..specs.len()).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            let (i, node) = joined.expect("connect task");
            reached[i] = Some(node);
        }
        specs
            .iter()
            .zip(reached)
            .map(|(spec, node)| (spec.name.clone(), node.expect("every task joined")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Problem> {
        match Deployment::parse(text, "t.toml") {
            Err(DeploymentError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn builtin_is_the_local_undercloud() {
        let d = Deployment::builtin();
        assert_eq!(d.nodes.len(), 1);
        assert_eq!(d.nodes[0].roles, vec!["undercloud".to_string()]);
        assert_eq!(d.plugins[0].name, "filesystem");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let p = problems("name = \"x\"\n[[node]]\nname = \"a\"\naddress = \n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, Some(4));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let p = problems("[[node]]\nname = \"a\"\naddress = \"local\"\nrole = [\"x\"]\n");
        assert!(p[0].message.contains("unknown field `role`"), "{p:?}");
        assert_eq!(p[0].line, Some(4));
    }

    #[test]
    fn every_semantic_problem_is_reported_with_its_line() {
        let text = "[[node]]\nname = \"a\"\naddress = \"local\"\nroles = [\"undercloud\"]\n\
                    [[node]]\nname = \"a\"\naddress = \"10.0.0.2\"\n\
                    [plugin.filesystem]\nroles = [\"controller\"]\n\
                    [plugin.filesystem.settings]\npaths = [{ x = 1 }]\n";
        let p = problems(text);
        let fields: Vec<_> = p.iter().map(|p| (p.field.as_str(), p.line)).collect();
        assert!(fields.contains(&("node[1].name", Some(6))), "{fields:?}");
        assert!(
            fields.contains(&("plugin.filesystem.roles", Some(8))),
            "{fields:?}"
        );
        assert!(
            fields.contains(&("plugin.filesystem.settings.paths", Some(11))),
            "{fields:?}"
        );
    }

    #[test]
    fn become_comes_from_the_node_then_its_roles_then_ssh() {
        let d = Deployment::parse(
            "[ssh]\nbecome = \"sudo\"\n\
             [role.controller]\nbecome = \"sudo\"\nbecome-user = \"mysql\"\n\
             [role.compute]\nbecome = \"none\"\n\
             [[node]]\nname = \"c0\"\naddress = \"10.0.0.5\"\nroles = [\"controller\"]\n\
             [[node]]\nname = \"n0\"\naddress = \"10.0.0.6\"\nroles = [\"compute\"]\n\
             [[node]]\nname = \"s0\"\naddress = \"10.0.0.7\"\nroles = [\"storage\"]\n\
             [[node]]\nname = \"c1\"\naddress = \"10.0.0.8\"\nroles = [\"controller\"]\n\
             become = \"none\"\n",
            "t",
        )
        .unwrap();
        let users: Vec<Option<&str>> = d
            .nodes
            .iter()
            .map(|n| n.escalation.as_ref().map(|b| b.user.as_str()))
            .collect();
        assert_eq!(users, [Some("mysql"), None, Some("root"), None]);

        let p = problems(
            "[role.controller]\nbecome = \"sudo\"\n[role.galera]\nbecome = \"none\"\n\
             [role.contoller]\nbecome = \"sudo\"\n\
             [[node]]\nname = \"c0\"\naddress = \"10.0.0.5\"\nroles = [\"controller\", \"galera\"]\n",
        );
        let found: Vec<(&str, Option<usize>)> =
            p.iter().map(|p| (p.field.as_str(), p.line)).collect();
        assert!(found.contains(&("node[0].become", Some(8))), "{p:?}");
        assert!(found.contains(&("role.contoller", Some(5))), "{p:?}");
        assert!(
            p.iter()
                .any(|p| p.message.contains("`controller` and `galera`")),
            "{p:?}"
        );
    }

    #[test]
    fn ssh_nodes_get_defaults_and_local_nodes_refuse_ssh_fields() {
        let d = Deployment::parse(
            "[ssh]\nknown-hosts = \"/k\"\n[[node]]\nname = \"c0\"\naddress = \"10.0.0.5\"\n\
             [[node]]\nname = \"c1\"\naddress = \"c1.example\"\nport = 2222\nuser = \"heat-admin\"\nkey = \"/id\"\n",
            "t",
        )
        .unwrap();
        let t0 = d.nodes[0].ssh.as_ref().unwrap();
        assert_eq!(
            (t0.port, t0.user.as_str(), t0.key.clone()),
            (22, "root", None)
        );
        let t1 = d.nodes[1].ssh.as_ref().unwrap();
        assert_eq!(t1.destination(), "heat-admin@c1.example:2222");
        assert_eq!(d.known_hosts, PathBuf::from("/k"));
        let p = problems("[[node]]\nname = \"l\"\naddress = \"local\"\nport = 22\n");
        assert_eq!(p[0].field, "node[0].port");
        assert_eq!(p[0].line, Some(3));
    }

    #[test]
    fn the_drill_section_names_a_node_of_the_file_and_an_absolute_scratch() {
        let nodes = "[[node]]\nname = \"a\"\naddress = \"local\"\n";
        let d = Deployment::parse(
            &format!("{nodes}[drill]\nnode = \"a\"\nscratch = \"/srv/drills\"\n"),
            "t",
        )
        .unwrap();
        assert_eq!(
            (d.drill_node.as_deref(), d.drill_scratch.as_deref()),
            (Some("a"), Some("/srv/drills"))
        );
        let p = problems(&format!(
            "{nodes}[drill]\nnode = \"backup\"\nscratch = \"tmp\"\n"
        ));
        assert_eq!(
            p.iter()
                .map(|p| (p.field.as_str(), p.line))
                .collect::<Vec<_>>(),
            [("drill.node", Some(5)), ("drill.scratch", Some(6))],
            "{p:?}"
        );
        assert!(p[0].message.contains("no node `backup`"), "{p:?}");
    }

    #[test]
    fn list_settings_flatten_in_order() {
        let d = Deployment::parse(
            "[[node]]\nname = \"a\"\naddress = \"local\"\n[plugin.filesystem.settings]\n\
             add-path = [\"/a\", \"/b\"]\nexclude-path = \"*.pyc\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            d.plugins[0].settings,
            vec![
                ("add-path".into(), "/a".into()),
                ("add-path".into(), "/b".into()),
                ("exclude-path".into(), "*.pyc".into())
            ]
        );
    }
}
