//! The operator's deployment file: nodes, plugins per role with their settings, the repository,
//! limits. Parsed and validated whole before any work starts; every error names its line and
//! field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use coffer_sdk::{Capabilities, CommandPattern};

use crate::access::AccessConfig;
use crate::runtime::Limits;
use crate::transport::{NodeHandle, SshOptions, SshTarget, TransportError};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    name: Option<Spanned<String>>,
    repository: Option<RepositorySection>,
    plugin_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    limits: Option<LimitsSection>,
    ssh: Option<SshSection>,
    access: Option<Spanned<AccessSection>>,
    plugin_signing: Option<SigningSection>,
    undercloud: Option<UndercloudSection>,
    run: Option<RunSection>,
    #[serde(default)]
    node: Vec<NodeSection>,
    #[serde(default)]
    plugin: BTreeMap<Spanned<String>, PluginSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RepositorySection {
    path: Option<PathBuf>,
    password_file: Option<PathBuf>,
    node: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LimitsSection {
    memory_mib: Option<u64>,
    cpu_seconds: Option<u64>,
    call_timeout_seconds: Option<u64>,
    command_timeout_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct UndercloudSection {
    reinstall_command: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SigningSection {
    #[serde(default)]
    trusted_keys: Vec<PathBuf>,
}

impl LimitsSection {
    /// Override `limits` with what this section sets.
    fn apply(&self, limits: &mut Limits) {
        if let Some(m) = self.memory_mib {
            limits.memory_bytes = (m as usize) << 20;
        }
        if let Some(s) = self.cpu_seconds {
            limits.cpu = Duration::from_secs(s);
        }
        if let Some(s) = self.call_timeout_seconds {
            limits.call_timeout = Duration::from_secs(s);
        }
        if let Some(s) = self.command_timeout_seconds {
            limits.commands.default_timeout = Duration::from_secs(s);
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RunSection {
    parallel_plugins: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SshSection {
    known_hosts: Option<PathBuf>,
    parallel: Option<usize>,
    connect_timeout_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct AccessSection {
    #[serde(default)]
    temporary: bool,
    from: Option<String>,
    ttl_minutes: Option<u64>,
    authorized_keys: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct NodeSection {
    name: Spanned<String>,
    address: Spanned<String>,
    #[serde(default)]
    roles: Vec<String>,
    user: Option<String>,
    port: Option<u16>,
    key: Option<PathBuf>,
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
}

impl NodeSpec {
    /// Reach the node: the local one directly, any other over SSH with `options`.
    pub async fn reach(&self, options: &SshOptions) -> Result<NodeHandle, TransportError> {
        match &self.ssh {
            None => Ok(NodeHandle::local(&self.name, self.roles.clone())),
            Some(target) => {
                NodeHandle::connect(&self.name, self.roles.clone(), target, options).await
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PluginSection {
    #[serde(default = "yes")]
    enabled: bool,
    roles: Option<Vec<String>>,
    #[serde(default)]
    settings: BTreeMap<String, Spanned<toml::Value>>,
    grant: Option<Spanned<GrantSection>>,
    container: Option<Spanned<ContainerSection>>,
    limits: Option<LimitsSection>,
    members_down: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ContainerSection {
    runtime: String,
    name: String,
    roles: Option<Vec<String>>,
}

/// The container a plugin's commands run in (TripleO: podman, kolla: docker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    /// `podman` or `docker`.
    pub runtime: String,
    /// Container name, e.g. `galera-bundle-podman-0`.
    pub name: String,
    /// Only on nodes with one of these roles; `None`: on every node of the plugin.
    pub roles: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GrantSection {
    #[serde(default)]
    commands: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    role: BTreeMap<String, RoleGrantSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RoleGrantSection {
    #[serde(default)]
    commands: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
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

fn yes() -> bool {
    true
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
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
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
        let mut problems = Vec::new();
        let mut problem = |offset: usize, field: String, message: String| {
            problems.push(Problem {
                line: Some(line_of(text, offset)),
                field,
                message,
            })
        };

        let name = match &file.name {
            Some(n) if n.get_ref().trim().is_empty() => {
                problem(n.span().start, "name".into(), "must not be empty".into());
                String::new()
            }
            Some(n) => n.get_ref().clone(),
            None => "local".into(),
        };

        let mut nodes = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, n) in file.node.iter().enumerate() {
            let node_name = n.name.get_ref();
            if node_name.is_empty()
                || !node_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                problem(
                    n.name.span().start,
                    format!("node[{i}].name"),
                    format!(
                        "`{node_name}` is not a valid node name (letters, digits, `-`, `_`, `.`)"
                    ),
                );
            }
            if !seen.insert(node_name.clone()) {
                problem(
                    n.name.span().start,
                    format!("node[{i}].name"),
                    format!("node `{node_name}` is defined twice"),
                );
            }
            let address = n.address.get_ref();
            let ssh = if address == "local" {
                for (field, set) in [
                    ("user", n.user.is_some()),
                    ("port", n.port.is_some()),
                    ("key", n.key.is_some()),
                ] {
                    if set {
                        problem(
                            n.address.span().start,
                            format!("node[{i}].{field}"),
                            "the local node is not reached over SSH; remove it or give an address"
                                .into(),
                        );
                    }
                }
                None
            } else if address.trim().is_empty() || address.contains(char::is_whitespace) {
                problem(
                    n.address.span().start,
                    format!("node[{i}].address"),
                    format!("`{address}` is not a host name or address (or `local`)"),
                );
                None
            } else {
                Some(SshTarget {
                    address: address.clone(),
                    port: n.port.unwrap_or(22),
                    user: n.user.clone().unwrap_or_else(|| "root".into()),
                    key: n.key.clone(),
                })
            };
            nodes.push(NodeSpec {
                name: node_name.clone(),
                roles: n.roles.clone(),
                ssh,
            });
        }
        if file.node.is_empty() {
            problems.push(Problem {
                line: None,
                field: "node".into(),
                message: "no nodes: add a [[node]] section (name, address, roles)".into(),
            });
        }
        let all_roles: BTreeSet<&String> = file.node.iter().flat_map(|n| &n.roles).collect();

        let mut plugins = Vec::new();
        let mut limits = Limits::default();
        if let Some(l) = &file.limits {
            l.apply(&mut limits);
        }

        for (pname, section) in &file.plugin {
            if !section.enabled {
                continue;
            }
            let line = line_of(text, pname.span().start);
            if let Some(roles) = &section.roles {
                for r in roles.iter().filter(|r| !all_roles.contains(r)) {
                    problems.push(Problem {
                        line: Some(line),
                        field: format!("plugin.{}.roles", pname.get_ref()),
                        message: format!("no node carries role `{r}`"),
                    });
                }
            }
            let mut settings = Vec::new();
            let mut setting_lines = BTreeMap::new();
            for (key, value) in &section.settings {
                let at = line_of(text, value.span().start);
                setting_lines.insert(key.clone(), at);
                let values = match value.get_ref() {
                    toml::Value::Array(vs) => vs.iter().collect(),
                    v => vec![v],
                };
                for v in values {
                    match scalar(v) {
                        Some(s) => settings.push((key.clone(), s)),
                        None => problems.push(Problem {
                            line: Some(at),
                            field: format!("plugin.{}.settings.{key}", pname.get_ref()),
                            message: "a setting is a string, number, boolean, or a list of them"
                                .into(),
                        }),
                    }
                }
            }
            let grant = section.grant.as_ref().map(|g| {
                let at = line_of(text, g.span().start);
                let g = g.get_ref();
                let field = format!("plugin.{}.grant", pname.get_ref());
                let mut caps = |commands: &[String], paths: &[String], field: String| {
                    let caps = Capabilities {
                        commands: commands
                            .iter()
                            .filter_map(|c| {
                                let mut words = c.split_whitespace().map(str::to_string);
                                let program = words.next();
                                if program.is_none() {
                                    problems.push(Problem {
                                        line: Some(at),
                                        field: format!("{field}.commands"),
                                        message: "an empty command".into(),
                                    });
                                }
                                program.map(|program| CommandPattern {
                                    program,
                                    args: words.collect(),
                                    // A grant says what may run, not what it does.
                                    effect: Default::default(),
                                })
                            })
                            .collect(),
                        paths: paths.to_vec(),
                    };
                    if let Err(e) = coffer_sdk::capability::CapabilityMatcher::new(&caps) {
                        problems.push(Problem {
                            line: Some(at),
                            field: field.clone(),
                            message: e.to_string(),
                        });
                    }
                    caps
                };
                let all = caps(&g.commands, &g.paths, field.clone());
                let mut roles = BTreeMap::new();
                for (role, r) in &g.role {
                    let role_field = format!("{field}.role.{role}");
                    roles.insert(role.clone(), caps(&r.commands, &r.paths, role_field));
                }
                for role in g.role.keys().filter(|r| !all_roles.contains(r)) {
                    problems.push(Problem {
                        line: Some(at),
                        field: format!("{field}.role.{role}"),
                        message: format!("no node carries role `{role}`"),
                    });
                }
                Grant { all, roles }
            });
            let container = section.container.as_ref().and_then(|c| {
                let at = line_of(text, c.span().start);
                let c = c.get_ref();
                if c.runtime != "podman" && c.runtime != "docker" {
                    problems.push(Problem {
                        line: Some(at),
                        field: format!("plugin.{}.container.runtime", pname.get_ref()),
                        message: format!("`{}`: use `podman` or `docker`", c.runtime),
                    });
                    return None;
                }
                if c.name.trim().is_empty() {
                    problems.push(Problem {
                        line: Some(at),
                        field: format!("plugin.{}.container.name", pname.get_ref()),
                        message: "must name the container".into(),
                    });
                    return None;
                }
                Some(ContainerSpec {
                    runtime: c.runtime.clone(),
                    name: c.name.clone(),
                    roles: c.roles.clone(),
                })
            });
            plugins.push(PluginConfig {
                name: pname.get_ref().clone(),
                roles: section.roles.clone(),
                settings,
                line: Some(line),
                setting_lines,
                grant,
                container,
                limits: {
                    let mut own = limits.clone();
                    if let Some(l) = &section.limits {
                        l.apply(&mut own);
                    }
                    own
                },
                members_down: section.members_down,
            });
            if section.members_down == Some(0) {
                problems.push(Problem {
                    line: Some(line),
                    field: format!("plugin.{}.members-down", pname.get_ref()),
                    message: "must be at least 1".into(),
                });
            }
        }

        let repository_node = file.repository.as_ref().and_then(|r| r.node.as_ref());
        if let Some(n) = repository_node {
            match nodes.iter().find(|x: &&NodeSpec| &x.name == n.get_ref()) {
                None => problems.push(Problem {
                    line: Some(line_of(text, n.span().start)),
                    field: "repository.node".into(),
                    message: format!("no node `{}` in this file", n.get_ref()),
                }),
                Some(x) if x.ssh.is_none() => problems.push(Problem {
                    line: Some(line_of(text, n.span().start)),
                    field: "repository.node".into(),
                    message: "the local node holds a repository by `path` alone; remove `node`"
                        .into(),
                }),
                Some(_)
                    if file
                        .repository
                        .as_ref()
                        .and_then(|r| r.path.as_ref())
                        .is_none() =>
                {
                    problems.push(Problem {
                        line: Some(line_of(text, n.span().start)),
                        field: "repository.path".into(),
                        message: "give the repository's directory on that node".into(),
                    })
                }
                Some(_) => {}
            }
        }
        let parallel_plugins = file.run.as_ref().and_then(|r| r.parallel_plugins);
        if parallel_plugins == Some(0) {
            problems.push(Problem {
                line: None,
                field: "run.parallel-plugins".into(),
                message: "must be at least 1".into(),
            });
        }
        let ssh = file.ssh.as_ref();
        if ssh.and_then(|s| s.parallel) == Some(0) {
            problems.push(Problem {
                line: None,
                field: "ssh.parallel".into(),
                message: "must be at least 1".into(),
            });
        }
        let access = file
            .access
            .as_ref()
            .map(|a| (line_of(text, a.span().start), a.get_ref()));
        let access = AccessConfig {
            temporary: access.is_some_and(|(_, a)| a.temporary),
            from: access.and_then(|(_, a)| a.from.clone()).unwrap_or_default(),
            ttl: Duration::from_secs(60 * access.and_then(|(_, a)| a.ttl_minutes).unwrap_or(240)),
            authorized_keys: access
                .and_then(|(_, a)| a.authorized_keys.clone())
                .unwrap_or_else(|| "~/.ssh/authorized_keys".into()),
        };
        if let Some((at, a)) = file
            .access
            .as_ref()
            .map(|a| (line_of(text, a.span().start), a.get_ref()))
        {
            if a.temporary && a.from.as_deref().is_none_or(|f| f.trim().is_empty()) {
                problems.push(Problem {
                    line: Some(at),
                    field: "access.from".into(),
                    message: "temporary access needs `from`: the address(es) Coffer connects from, as the nodes see it (authorized_keys from= patterns)".into(),
                });
            }
            if a.from
                .as_deref()
                .is_some_and(|f| f.contains(['"', ' ', '\n']))
            {
                problems.push(Problem {
                    line: Some(at),
                    field: "access.from".into(),
                    message: "a comma-separated list of address patterns, without quotes or spaces"
                        .into(),
                });
            }
            if a.ttl_minutes == Some(0) {
                problems.push(Problem {
                    line: Some(at),
                    field: "access.ttl-minutes".into(),
                    message: "must be at least 1".into(),
                });
            }
        }
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        Ok(Self {
            access,
            name,
            source_name: source_name.into(),
            repository: file.repository.as_ref().and_then(|r| r.path.clone()),
            repository_node: repository_node.map(|n| n.get_ref().clone()),
            password_file: file
                .repository
                .as_ref()
                .and_then(|r| r.password_file.clone()),
            plugin_dir: file.plugin_dir,
            trusted_keys: file
                .plugin_signing
                .map(|s| s.trusted_keys)
                .unwrap_or_default(),
            reinstall_command: file
                .undercloud
                .and_then(|u| u.reinstall_command)
                .filter(|c| !c.is_empty()),
            cache_dir: file.cache_dir,
            limits,
            nodes,
            known_hosts: ssh
                .and_then(|s| s.known_hosts.clone())
                .or_else(|| dirs::home_dir().map(|h| h.join(".ssh/known_hosts")))
                .unwrap_or_else(|| PathBuf::from("/root/.ssh/known_hosts")),
            ssh_parallel: ssh.and_then(|s| s.parallel).unwrap_or(8),
            parallel_plugins: parallel_plugins.unwrap_or(4),
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
        let options = self.ssh_options(accept_new);
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(self.ssh_parallel));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, spec) in self.nodes.iter().enumerate() {
            let (spec, options, limit) = (spec.clone(), options.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore open");
                (i, spec.reach(&options).await)
            });
        }
        let mut nodes: Vec<Option<NodeHandle>> = vec![None; self.nodes.len()];
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let (i, node) = joined.expect("connect task");
            match node {
                Ok(n) => nodes[i] = Some(n),
                Err(e) if first_error.is_none() => first_error = Some(e),
                Err(_) => {}
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(nodes.into_iter().map(|n| n.expect("connected")).collect()),
        }
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
