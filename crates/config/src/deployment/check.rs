//! The deployment file's checks: one validator per section, each turning its section into the
//! validated type and recording every problem it finds with its line and field, so that one
//! run of `coffer` lists everything wrong with a file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use coffer_runtime::{ContainerSpec, Limits};
use coffer_sdk::{Capabilities, CommandPattern};
use coffer_transport::access::AccessConfig;
use coffer_transport::{Become, SshTarget};

use super::file::{
    AccessSection, ContainerSection, File, GrantSection, NodeSection, PluginSection,
    RepositorySection, RoleSection, SshSection,
};
use super::{Grant, NodeSpec, PluginConfig, Problem};

/// The problems found so far in one file's text.
pub(super) struct Checker<'t> {
    text: &'t str,
    /// Every problem, in the order found.
    pub(super) problems: Vec<Problem>,
}

impl<'t> Checker<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        Self {
            text,
            problems: Vec::new(),
        }
    }

    /// The 1-based line of byte `offset`.
    pub(super) fn line(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// A problem at byte `offset` of the text.
    fn at(&mut self, offset: usize, field: impl Into<String>, message: impl Into<String>) {
        let line = Some(self.line(offset));
        self.on_line(line, field, message);
    }

    /// A problem on `line` (`None`: the file as a whole).
    fn on_line(
        &mut self,
        line: Option<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            line,
            field: field.into(),
            message: message.into(),
        });
    }

    /// `name`: not empty; `local` when not given.
    pub(super) fn name(&mut self, name: Option<&Spanned<String>>) -> String {
        match name {
            Some(n) if n.get_ref().trim().is_empty() => {
                self.at(n.span().start, "name", "must not be empty");
                String::new()
            }
            Some(n) => n.get_ref().clone(),
            None => "local".into(),
        }
    }

    /// `[[node]]`: at least one, valid unique names, an address (or `local`, which takes no
    /// SSH fields).
    /// `[retention]`: at least one rule, and rules that parse.
    pub(super) fn retention(
        &mut self,
        section: Option<&Spanned<coffer_repository::Retention>>,
    ) -> Option<coffer_repository::Retention> {
        let section = section?;
        if let Err(e) = section.get_ref().check() {
            self.at(section.span().start, "retention", e.to_string());
            return None;
        }
        Some(section.get_ref().clone())
    }

    /// `[notify] command`: a program to run.
    pub(super) fn notify(&mut self, section: Option<&super::file::NotifySection>) {
        if let Some(n) = section
            && n.command.get_ref().first().is_none_or(|p| p.is_empty())
        {
            self.at(
                n.command.span().start,
                "notify.command",
                "give the program and its arguments, e.g. [\"/usr/local/bin/page-oncall\"]",
            );
        }
    }

    /// `[drill]`: its node is one of this file's, its scratch directory absolute.
    pub(super) fn drill(
        &mut self,
        section: Option<&super::file::DrillSection>,
        nodes: &[NodeSpec],
    ) {
        let Some(d) = section else {
            return;
        };
        if let Some(n) = &d.node
            && !nodes.iter().any(|x| &x.name == n.get_ref())
        {
            self.at(
                n.span().start,
                "drill.node",
                format!("no node `{}` in this file", n.get_ref()),
            );
        }
        if let Some(s) = &d.scratch
            && !s.get_ref().starts_with('/')
        {
            self.at(
                s.span().start,
                "drill.scratch",
                "give an absolute directory, e.g. \"/var/tmp\"",
            );
        }
    }

    /// How node `i` gains privileges: its own `become`, else its roles' (`[role.NAME]`, which
    /// must agree), else `[ssh] become`; `"none"` turns a wider default off.
    fn escalation(
        &mut self,
        i: usize,
        n: &NodeSection,
        ssh: Option<&SshSection>,
        roles: &BTreeMap<Spanned<String>, RoleSection>,
    ) -> Option<Become> {
        let by_role: Vec<(&String, &RoleSection)> = n
            .roles
            .iter()
            .filter_map(|r| {
                roles
                    .iter()
                    .find(|(name, _)| name.get_ref() == r)
                    .filter(|(_, section)| section.escalation.is_some())
                    .map(|(name, section)| (name.get_ref(), section))
            })
            .collect();
        let (method, user, field) = match (&n.escalation, by_role.first()) {
            (Some(b), _) => (Some(b), n.become_user.clone(), format!("node[{i}].become")),
            (None, Some((role, section))) => {
                let differs = by_role.iter().find(|(_, other)| {
                    other.escalation.as_ref().map(|e| e.get_ref())
                        != section.escalation.as_ref().map(|e| e.get_ref())
                        || other.become_user != section.become_user
                });
                if let Some((other, _)) = differs {
                    self.at(
                        n.name.span().start,
                        format!("node[{i}].become"),
                        format!(
                            "the roles `{role}` and `{other}` of node `{}` say different things \
                             about `become`: set it on the node",
                            n.name.get_ref()
                        ),
                    );
                }
                (
                    section.escalation.as_ref(),
                    n.become_user
                        .clone()
                        .or_else(|| section.become_user.clone()),
                    format!("role.{role}.become"),
                )
            }
            (None, None) => (
                ssh.and_then(|s| s.escalation.as_ref()),
                n.become_user
                    .clone()
                    .or_else(|| ssh.and_then(|s| s.become_user.clone())),
                "ssh.become".to_string(),
            ),
        };
        match method.map(|m| (m.get_ref().as_str(), m.span().start)) {
            Some(("sudo", _)) => Some(Become {
                user: user.unwrap_or_else(|| "root".into()),
            }),
            Some(("none", _)) => None,
            Some((other, at)) => {
                self.at(
                    at,
                    field,
                    format!("`{other}` is not a way to gain privileges: use \"sudo\" or \"none\""),
                );
                None
            }
            None => {
                if n.become_user.is_some() {
                    self.at(
                        n.name.span().start,
                        format!("node[{i}].become-user"),
                        "become-user needs become = \"sudo\" (on the node, its role or in [ssh])",
                    );
                }
                None
            }
        }
    }

    /// Every `[role.NAME]` must name a role some node has (a misspelt role would leave its
    /// nodes without what it says).
    pub(super) fn roles(
        &mut self,
        roles: &BTreeMap<Spanned<String>, RoleSection>,
        nodes: &[NodeSection],
    ) {
        for name in roles.keys() {
            if !nodes.iter().any(|n| n.roles.contains(name.get_ref())) {
                self.at(
                    name.span().start,
                    format!("role.{}", name.get_ref()),
                    format!(
                        "no node has the role `{}` (the nodes' `roles` name theirs)",
                        name.get_ref()
                    ),
                );
            }
        }
    }

    pub(super) fn nodes(
        &mut self,
        sections: &[NodeSection],
        ssh: Option<&SshSection>,
        roles: &BTreeMap<Spanned<String>, RoleSection>,
    ) -> Vec<NodeSpec> {
        let mut nodes = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, n) in sections.iter().enumerate() {
            let node_name = n.name.get_ref();
            if node_name.is_empty()
                || !node_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                self.at(
                    n.name.span().start,
                    format!("node[{i}].name"),
                    format!(
                        "`{node_name}` is not a valid node name (letters, digits, `-`, `_`, `.`)"
                    ),
                );
            }
            if !seen.insert(node_name.clone()) {
                self.at(
                    n.name.span().start,
                    format!("node[{i}].name"),
                    format!("node `{node_name}` is defined twice"),
                );
            }
            nodes.push(NodeSpec {
                name: node_name.clone(),
                roles: n.roles.clone(),
                ssh: self.ssh_target(i, n),
                escalation: self.escalation(i, n, ssh, roles),
            });
        }
        if sections.is_empty() {
            self.on_line(
                None,
                "node",
                "no nodes: add a [[node]] section (name, address, roles)",
            );
        }
        nodes
    }

    /// How node `i` is reached: `None` for the local node.
    fn ssh_target(&mut self, i: usize, n: &NodeSection) -> Option<SshTarget> {
        let address = n.address.get_ref();
        if address == "local" {
            for (field, set) in [
                ("user", n.user.is_some()),
                ("port", n.port.is_some()),
                ("key", n.key.is_some()),
            ] {
                if set {
                    self.at(
                        n.address.span().start,
                        format!("node[{i}].{field}"),
                        "the local node is not reached over SSH; remove it or give an address",
                    );
                }
            }
            None
        } else if address.trim().is_empty() || address.contains(char::is_whitespace) {
            self.at(
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
        }
    }

    /// `[plugin.NAME]` of an enabled plugin: roles some node carries, scalar settings, its
    /// grant, container, limits (over the file's `limits`) and `members-down`.
    pub(super) fn plugin(
        &mut self,
        name: &Spanned<String>,
        section: &PluginSection,
        all_roles: &BTreeSet<&String>,
        limits: &Limits,
    ) -> PluginConfig {
        let pname = name.get_ref();
        let line = self.line(name.span().start);
        if let Some(roles) = &section.roles {
            for r in roles.iter().filter(|r| !all_roles.contains(r)) {
                self.on_line(
                    Some(line),
                    format!("plugin.{pname}.roles"),
                    format!("no node carries role `{r}`"),
                );
            }
        }
        let (settings, setting_lines) = self.settings(pname, &section.settings);
        let grant = section
            .grant
            .as_ref()
            .map(|g| self.grant(pname, g, all_roles));
        let container = section
            .container
            .as_ref()
            .and_then(|c| self.container(pname, c));
        let config = PluginConfig {
            name: pname.clone(),
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
        };
        if section.members_down == Some(0) {
            self.on_line(
                Some(line),
                format!("plugin.{pname}.members-down"),
                "must be at least 1",
            );
        }
        config
    }

    /// `[plugin.NAME.settings]`: scalars or lists of them, flattened in file order, with the
    /// line of each key.
    #[allow(clippy::type_complexity)]
    fn settings(
        &mut self,
        pname: &str,
        section: &BTreeMap<String, Spanned<toml::Value>>,
    ) -> (Vec<(String, String)>, BTreeMap<String, usize>) {
        let mut settings = Vec::new();
        let mut setting_lines = BTreeMap::new();
        for (key, value) in section {
            let at = self.line(value.span().start);
            setting_lines.insert(key.clone(), at);
            let values = match value.get_ref() {
                toml::Value::Array(vs) => vs.iter().collect(),
                v => vec![v],
            };
            for v in values {
                match scalar(v) {
                    Some(s) => settings.push((key.clone(), s)),
                    None => self.on_line(
                        Some(at),
                        format!("plugin.{pname}.settings.{key}"),
                        "a setting is a string, number, boolean, or a list of them",
                    ),
                }
            }
        }
        (settings, setting_lines)
    }

    /// `[plugin.NAME.grant]` and its `role.ROLE` parts: commands and paths that compile.
    fn grant(
        &mut self,
        pname: &str,
        g: &Spanned<GrantSection>,
        all_roles: &BTreeSet<&String>,
    ) -> Grant {
        let at = self.line(g.span().start);
        let g = g.get_ref();
        let field = format!("plugin.{pname}.grant");
        let all = self.capabilities(at, &g.commands, &g.paths, &field);
        let mut roles = BTreeMap::new();
        for (role, r) in &g.role {
            let role_field = format!("{field}.role.{role}");
            roles.insert(
                role.clone(),
                self.capabilities(at, &r.commands, &r.paths, &role_field),
            );
        }
        for role in g.role.keys().filter(|r| !all_roles.contains(r)) {
            self.on_line(
                Some(at),
                format!("{field}.role.{role}"),
                format!("no node carries role `{role}`"),
            );
        }
        Grant { all, roles }
    }

    /// One grant's commands and paths, checked to compile into a matcher.
    fn capabilities(
        &mut self,
        at: usize,
        commands: &[String],
        paths: &[String],
        field: &str,
    ) -> Capabilities {
        let mut patterns = Vec::new();
        for c in commands {
            let mut words = c.split_whitespace().map(str::to_string);
            match words.next() {
                Some(program) => patterns.push(CommandPattern {
                    program,
                    args: words.collect(),
                    // A grant says what may run, not what it does.
                    effect: Default::default(),
                }),
                None => self.on_line(Some(at), format!("{field}.commands"), "an empty command"),
            }
        }
        let caps = Capabilities {
            commands: patterns,
            paths: paths.to_vec(),
        };
        if let Err(e) = coffer_sdk::capability::CapabilityMatcher::new(&caps) {
            self.on_line(Some(at), field, e.to_string());
        }
        caps
    }

    /// `[plugin.NAME.container]`: podman or docker, and a name.
    fn container(&mut self, pname: &str, c: &Spanned<ContainerSection>) -> Option<ContainerSpec> {
        let at = Some(self.line(c.span().start));
        let c = c.get_ref();
        if c.runtime != "podman" && c.runtime != "docker" {
            self.on_line(
                at,
                format!("plugin.{pname}.container.runtime"),
                format!("`{}`: use `podman` or `docker`", c.runtime),
            );
            return None;
        }
        if c.name.trim().is_empty() && c.filter.is_none() {
            self.on_line(
                at,
                format!("plugin.{pname}.container.name"),
                "name the container (or a glob of names, e.g. `galera-bundle-podman-*`), or \
                 give a `filter` (e.g. `label=kolla_service=mariadb`)",
            );
            return None;
        }
        let name = if c.name.trim().is_empty() {
            "*".to_string()
        } else {
            c.name.clone()
        };
        if let Err(e) = coffer_sdk::capability::check_name_pattern(&name) {
            self.on_line(at, format!("plugin.{pname}.container.name"), e.to_string());
            return None;
        }
        Some(ContainerSpec {
            runtime: c.runtime.clone(),
            name,
            filter: c.filter.clone(),
            roles: c.roles.clone(),
            found: Default::default(),
        })
    }

    /// `[repository] node`: an SSH node of this file, with a `path` on it.
    pub(super) fn repository(
        &mut self,
        repository: Option<&RepositorySection>,
        nodes: &[NodeSpec],
    ) {
        let Some(n) = repository.and_then(|r| r.node.as_ref()) else {
            return;
        };
        let start = n.span().start;
        match nodes.iter().find(|x| &x.name == n.get_ref()) {
            None => self.at(
                start,
                "repository.node",
                format!("no node `{}` in this file", n.get_ref()),
            ),
            Some(x) if x.ssh.is_none() => self.at(
                start,
                "repository.node",
                "the local node holds a repository by `path` alone; remove `node`",
            ),
            Some(_) if repository.and_then(|r| r.path.as_ref()).is_none() => self.at(
                start,
                "repository.path",
                "give the repository's directory on that node",
            ),
            Some(_) => {}
        }
    }

    /// A count that must be at least 1 (`[run] parallel-plugins`, `[ssh] parallel`).
    pub(super) fn at_least_one(&mut self, value: Option<usize>, field: &str) {
        if value == Some(0) {
            self.on_line(None, field, "must be at least 1");
        }
    }

    /// `[access]`: temporary keys need `from`, a list of address patterns, and a ttl.
    pub(super) fn access(&mut self, access: Option<&Spanned<AccessSection>>) -> AccessConfig {
        let Some(spanned) = access else {
            return AccessConfig {
                temporary: false,
                from: String::new(),
                ttl: Duration::from_secs(60 * 240),
                authorized_keys: "~/.ssh/authorized_keys".into(),
            };
        };
        let at = Some(self.line(spanned.span().start));
        let a = spanned.get_ref();
        if a.temporary && a.from.as_deref().is_none_or(|f| f.trim().is_empty()) {
            self.on_line(
                at,
                "access.from",
                "temporary access needs `from`: the address(es) Coffer connects from, as the \
                 nodes see it (authorized_keys from= patterns)",
            );
        }
        if a.from
            .as_deref()
            .is_some_and(|f| f.contains(['"', ' ', '\n']))
        {
            self.on_line(
                at,
                "access.from",
                "a comma-separated list of address patterns, without quotes or spaces",
            );
        }
        if a.ttl_minutes == Some(0) {
            self.on_line(at, "access.ttl-minutes", "must be at least 1");
        }
        AccessConfig {
            temporary: a.temporary,
            from: a.from.clone().unwrap_or_default(),
            ttl: Duration::from_secs(60 * a.ttl_minutes.unwrap_or(240)),
            authorized_keys: a
                .authorized_keys
                .clone()
                .unwrap_or_else(|| "~/.ssh/authorized_keys".into()),
        }
    }
}

/// Where known hosts are read when `[ssh] known-hosts` is not given.
pub(super) fn default_known_hosts() -> PathBuf {
    dirs::home_dir()
        .map(|h| h.join(".ssh/known_hosts"))
        .unwrap_or_else(|| PathBuf::from("/root/.ssh/known_hosts"))
}

/// Every role some node of `file` carries.
pub(super) fn all_roles(file: &File) -> BTreeSet<&String> {
    file.node.iter().flat_map(|n| &n.roles).collect()
}

/// The 1-based line of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// A setting's value as text, if it is a scalar.
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}
