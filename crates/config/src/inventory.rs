//! Import an Ansible inventory (INI or YAML), as TripleO and kolla operators already keep one,
//! into a Coffer deployment file: every host becomes a node, every group it belongs to
//! (directly or through `children`) becomes one of its roles.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use yaml_rust2::{Yaml, YamlLoader};

/// What is wrong with an inventory.
#[derive(Debug, thiserror::Error)]
#[error("inventory {source_name}, {}: {message}", .line.map(|l| format!("line {l}")).unwrap_or_else(|| "whole file".into()))]
pub struct InventoryError {
    /// File name.
    pub source_name: String,
    /// Line (1-based), when known.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

/// A host of the inventory with its variables (group variables applied) and groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    /// Inventory host name.
    pub name: String,
    /// Variables: group variables, outer groups first, then the host's own.
    pub vars: BTreeMap<String, String>,
    /// Every group the host belongs to, through `children` too (`all`/`ungrouped` left out).
    pub groups: BTreeSet<String>,
}

#[derive(Default)]
struct Group {
    hosts: Vec<(String, BTreeMap<String, String>)>,
    children: Vec<String>,
    vars: BTreeMap<String, String>,
}

/// A parsed inventory.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Hosts, by the name of the first group that lists them, then in file order.
    pub hosts: Vec<Host>,
}

impl Inventory {
    /// Parse `text`: YAML when the file is named `*.yml`/`*.yaml` or its text is a YAML
    /// mapping, else INI.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, InventoryError> {
        let yaml_name = [".yml", ".yaml"].iter().any(|e| source_name.ends_with(e));
        let yaml_text = matches!(
            YamlLoader::load_from_str(text).as_deref(),
            Ok([Yaml::Hash(_), ..])
        );
        let groups = if yaml_name || yaml_text {
            parse_yaml(text, source_name)?
        } else {
            parse_ini(text, source_name)?
        };
        Ok(resolve(groups))
    }

    /// Which deployment tool wrote it: kolla-ansible (a `mariadb` group, or `kolla_*`
    /// variables), TripleO (`container_cli`, or an `overcloud`/`undercloud` group), or neither.
    fn flavour(&self) -> Flavour {
        let has_group = |g: &str| self.hosts.iter().any(|h| h.groups.contains(g));
        let has_var =
            |pred: &dyn Fn(&str) -> bool| self.hosts.iter().any(|h| h.vars.keys().any(|k| pred(k)));
        if has_group("mariadb") || has_var(&|k| k.starts_with("kolla_")) {
            Flavour::Kolla
        } else if has_var(&|k| k == "container_cli")
            || has_group("overcloud")
            || has_group("undercloud")
        {
            Flavour::Tripleo
        } else {
            Flavour::Plain
        }
    }

    /// The container runtime the deployment uses: `container_cli` (TripleO) or
    /// `kolla_container_engine` (kolla), else the tool's default (podman, docker).
    fn container_runtime(&self, flavour: Flavour) -> (String, String) {
        for var in ["container_cli", "kolla_container_engine"] {
            if let Some(v) = self.hosts.iter().find_map(|h| h.vars.get(var)) {
                return (v.clone(), format!("from `{var}`"));
            }
        }
        let default = if flavour == Flavour::Kolla {
            "docker"
        } else {
            "podman"
        };
        (default.into(), format!("{flavour:?}'s default"))
    }

    /// The hosts in group `group`.
    fn in_group(&self, group: &str) -> usize {
        self.hosts
            .iter()
            .filter(|h| h.groups.contains(group))
            .count()
    }

    /// A deployment file (TOML) with these hosts as nodes and the plugins their service groups
    /// call for; `name` is the deployment's name. Comments say what was inferred from what.
    pub fn to_deployment(&self, name: &str) -> String {
        let q = |s: &str| toml::Value::String(s.into()).to_string();
        let flavour = self.flavour();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Imported from an Ansible inventory by `coffer import-inventory` ({}).\n\
             # Groups became roles. Review the repository and the plugins below.\n\
             name = {}\n\n[repository]\npath = \"/var/backups/coffer\"\n\
             password-file = \"/etc/coffer/password\"\n\
             # node = \"backup-host\"   # keep the repository on one of the nodes below",
            match flavour {
                Flavour::Kolla => "kolla-ansible, from its groups and `kolla_*` variables",
                Flavour::Tripleo => "TripleO, from `container_cli` or its groups",
                Flavour::Plain => "no deployment tool recognised",
            },
            q(name)
        );
        for h in &self.hosts {
            let local = h.vars.get("ansible_connection").map(String::as_str) == Some("local");
            let address = if local {
                "local".to_string()
            } else {
                h.vars
                    .get("ansible_host")
                    .cloned()
                    .unwrap_or_else(|| h.name.clone())
            };
            let _ = write!(
                out,
                "\n[[node]]\nname = {}\naddress = {}\nroles = [{}]\n",
                q(&node_name(&h.name)),
                q(&address),
                h.groups.iter().map(|g| q(g)).collect::<Vec<_>>().join(", ")
            );
            if local {
                continue;
            }
            let user = ["ansible_user", "ansible_ssh_user"]
                .iter()
                .find_map(|k| h.vars.get(*k).map(|u| (u, *k)));
            if let Some((u, from)) = user {
                let _ = writeln!(out, "user = {}            # from `{from}`", q(u));
            }
            let become_var = h
                .vars
                .get("ansible_become")
                .map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "1" | "on"));
            match (become_var, user) {
                (Some(true), _) => {
                    let _ = writeln!(out, "become = \"sudo\"           # from `ansible_become`");
                }
                (None, Some((u, _))) if u != "root" => {
                    let _ = writeln!(
                        out,
                        "become = \"sudo\"           # the login user is not root"
                    );
                }
                _ => {}
            }
            if let Some(bu) = h.vars.get("ansible_become_user") {
                let _ = writeln!(
                    out,
                    "become-user = {}   # from `ansible_become_user`",
                    q(bu)
                );
            }
            if let Some(p) = h.vars.get("ansible_port") {
                let _ = writeln!(out, "port = {p}");
            }
            if let Some(k) = h
                .vars
                .get("ansible_ssh_private_key_file")
                .or_else(|| h.vars.get("ansible_private_key_file"))
            {
                let _ = writeln!(out, "key = {}", q(k));
            }
        }
        out.push_str("\n[plugin.filesystem]\n");
        let (runtime, runtime_from) = self.container_runtime(flavour);
        let containerised = flavour != Flavour::Plain;
        let container = |out: &mut String, plugin: &str, name: &str, what: &str| {
            if containerised {
                let _ = writeln!(
                    out,
                    "[plugin.{plugin}.container]   # {what}\nruntime = {}   # {runtime_from}\nname = {}",
                    q(&runtime),
                    q(name)
                );
            }
        };
        let database = ["mariadb", "mysql"]
            .into_iter()
            .find(|g| self.in_group(g) > 0);
        if let Some(group) = database {
            let n = self.in_group(group);
            let (plugin, kind) = if n >= 2 {
                ("galera", "a Galera cluster")
            } else {
                ("mysql", "a single server")
            };
            let _ = writeln!(
                out,
                "\n[plugin.{plugin}]   # group `{group}` has {n} host(s): {kind}\nroles = [{}]",
                q(group)
            );
            match (flavour, plugin) {
                (Flavour::Kolla, _) => container(&mut out, plugin, "mariadb", "kolla's container"),
                (Flavour::Tripleo, "galera") => container(
                    &mut out,
                    plugin,
                    "galera-bundle-podman-*",
                    "Pacemaker's bundle: one per node, found by name",
                ),
                _ => container(&mut out, plugin, "mysql", "TripleO's container"),
            }
        }
        if self.in_group("redis") > 0 {
            out.push_str("\n[plugin.redis]   # group `redis`\nroles = [\"redis\"]\n");
            match flavour {
                Flavour::Kolla => container(&mut out, "redis", "redis", "kolla's container"),
                _ => container(
                    &mut out,
                    "redis",
                    "redis-bundle-podman-*",
                    "Pacemaker's bundle: one per node, found by name",
                ),
            }
        }
        if self.in_group("mongodb") > 0 {
            out.push_str("\n[plugin.mongodb]   # group `mongodb`\nroles = [\"mongodb\"]\n");
            if flavour == Flavour::Kolla {
                container(&mut out, "mongodb", "mongodb", "kolla's container");
            }
        }
        if self.in_group("pacemaker") > 0 {
            out.push_str(
                "\n[plugin.pacemaker]   # group `pacemaker`: pcs and cibadmin on the nodes\n\
                 roles = [\"pacemaker\"]\n",
            );
        }
        if let Some(group) = ["swift_storage", "swift-object-server"]
            .into_iter()
            .find(|g| self.in_group(g) > 0)
        {
            let _ = writeln!(
                out,
                "\n[plugin.swift]   # group `{group}`: /srv/node with xattrs, rings, /etc/swift\n\
                 roles = [{}]",
                q(group)
            );
        }
        if containerised && database.is_some() {
            out.push_str(
                "\n# Coffer's restore runbook for MariaDB inside a container is not yet proven \
                 (see the README's\n# support table): try `coffer restore --dry-run` first.\n",
            );
        }
        out
    }
}

/// The deployment tool an inventory comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    Kolla,
    Tripleo,
    Plain,
}

/// Roles are lower case: TripleO's `Controller` group is the `controller` role.
fn role_name(group: &str) -> String {
    group.to_ascii_lowercase()
}

fn node_name(host: &str) -> String {
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Expand Ansible's host ranges: `ctl[0:2]` is ctl0, ctl1, ctl2; `web[01:03]` keeps the width.
fn expand_range(pattern: &str) -> Result<Vec<String>, String> {
    let (Some(open), Some(close)) = (pattern.find('['), pattern.find(']')) else {
        return Ok(vec![pattern.to_string()]);
    };
    let (head, inner, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let bad = || format!("`{pattern}`: a host range is [FIRST:LAST] with numbers");
    let (a, b) = inner.split_once(':').ok_or_else(bad)?;
    let (first, last): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if last < first || last - first > 10_000 {
        return Err(bad());
    }
    let width = if a.starts_with('0') { a.len() } else { 0 };
    let mut out = Vec::new();
    for i in first..=last {
        for rest in expand_range(tail)? {
            out.push(format!("{head}{i:0width$}{rest}"));
        }
    }
    Ok(out)
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

/// Split `a=1 b="x y"` into pairs, honouring quotes.
fn key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() || chars.peek() == Some(&'#') {
            return Ok(out);
        }
        let mut word = String::new();
        let mut quote = None;
        while let Some(&c) = chars.peek() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c.is_whitespace() => break,
                None => {}
            }
            word.push(c);
            chars.next();
        }
        if quote.is_some() {
            return Err(format!("unclosed quote in `{word}`"));
        }
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| format!("`{word}` is not key=value"))?;
        out.push((k.to_string(), unquote(v)));
    }
}

fn parse_ini(text: &str, source_name: &str) -> Result<BTreeMap<String, Group>, InventoryError> {
    let err = |line: usize, message: String| InventoryError {
        source_name: source_name.into(),
        line: Some(line),
        message,
    };
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let (mut group, mut kind) = ("ungrouped".to_string(), "hosts".to_string());
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[') {
            let section = section
                .strip_suffix(']')
                .ok_or_else(|| err(i + 1, format!("`{line}`: a section ends with `]`")))?;
            let (g, k) = section.split_once(':').unwrap_or((section, "hosts"));
            if !["hosts", "children", "vars"].contains(&k) {
                return Err(err(
                    i + 1,
                    format!("`[{section}]`: use [GROUP], [GROUP:children] or [GROUP:vars]"),
                ));
            }
            (group, kind) = (g.to_string(), k.to_string());
            groups.entry(group.clone()).or_default();
            continue;
        }
        let entry = groups.entry(group.clone()).or_default();
        match kind.as_str() {
            "vars" => {
                let (k, v) = line
                    .split_once('=')
                    .ok_or_else(|| err(i + 1, format!("`{line}` is not key=value")))?;
                entry.vars.insert(k.trim().to_string(), unquote(v));
            }
            "children" => entry.children.push(line.to_string()),
            _ => {
                let (pattern, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                let vars: BTreeMap<_, _> = key_values(rest)
                    .map_err(|m| err(i + 1, m))?
                    .into_iter()
                    .collect();
                for host in expand_range(pattern).map_err(|m| err(i + 1, m))? {
                    entry.hosts.push((host, vars.clone()));
                }
            }
        }
    }
    Ok(groups)
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn yaml_vars(y: &Yaml) -> BTreeMap<String, String> {
    match y {
        Yaml::Hash(h) => h
            .iter()
            .filter_map(|(k, v)| Some((scalar(k)?, scalar(v)?)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn walk_yaml(name: &str, node: &Yaml, groups: &mut BTreeMap<String, Group>) -> Result<(), String> {
    groups.entry(name.to_string()).or_default();
    let Yaml::Hash(h) = node else {
        return match node {
            Yaml::Null => Ok(()),
            _ => Err(format!(
                "group `{name}` must be a mapping with hosts, children or vars"
            )),
        };
    };
    for (key, value) in h {
        match key.as_str() {
            Some("hosts") => {
                if let Yaml::Hash(hosts) = value {
                    for (host, vars) in hosts {
                        let host = scalar(host)
                            .ok_or_else(|| format!("group `{name}`: a host name is a string"))?;
                        for h in expand_range(&host)? {
                            let vars = yaml_vars(vars);
                            groups
                                .get_mut(name)
                                .expect("inserted")
                                .hosts
                                .push((h, vars));
                        }
                    }
                } else if !matches!(value, Yaml::Null) {
                    return Err(format!("group `{name}`: `hosts` must be a mapping"));
                }
            }
            Some("children") => {
                if let Yaml::Hash(children) = value {
                    for (child, body) in children {
                        let child = scalar(child)
                            .ok_or_else(|| format!("group `{name}`: a child is a group name"))?;
                        groups
                            .get_mut(name)
                            .expect("inserted")
                            .children
                            .push(child.clone());
                        walk_yaml(&child, body, groups)?;
                    }
                } else if !matches!(value, Yaml::Null) {
                    return Err(format!("group `{name}`: `children` must be a mapping"));
                }
            }
            Some("vars") => {
                let vars = yaml_vars(value);
                groups.get_mut(name).expect("inserted").vars.extend(vars);
            }
            other => {
                return Err(format!(
                    "group `{name}`: unexpected key `{}` (hosts, children, vars)",
                    other.unwrap_or("?")
                ));
            }
        }
    }
    Ok(())
}

fn parse_yaml(text: &str, source_name: &str) -> Result<BTreeMap<String, Group>, InventoryError> {
    let err = |line: Option<usize>, message: String| InventoryError {
        source_name: source_name.into(),
        line,
        message,
    };
    let docs = YamlLoader::load_from_str(text).map_err(|e| {
        err(
            Some(e.marker().line()),
            format!("not YAML nor an INI inventory: {}", e.info()),
        )
    })?;
    let Some(Yaml::Hash(top)) = docs.first() else {
        return Err(err(None, "an inventory is a mapping of groups".into()));
    };
    let mut groups = BTreeMap::new();
    for (name, body) in top {
        let name = scalar(name).ok_or_else(|| err(None, "a group name is a string".into()))?;
        walk_yaml(&name, body, &mut groups).map_err(|m| err(None, m))?;
    }
    Ok(groups)
}

/// Every host with its groups (through `children`) and variables (outer groups first).
fn resolve(groups: BTreeMap<String, Group>) -> Inventory {
    // Parents of each group, to walk upwards.
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, g) in &groups {
        for c in &g.children {
            parents.entry(c.as_str()).or_default().push(name.as_str());
        }
    }
    // Depth of each group below `all`: outer groups' variables apply first.
    fn ancestors<'a>(
        g: &'a str,
        parents: &BTreeMap<&'a str, Vec<&'a str>>,
        seen: &mut BTreeSet<&'a str>,
    ) {
        if seen.insert(g) {
            for p in parents.get(g).into_iter().flatten() {
                ancestors(p, parents, seen);
            }
        }
    }
    let mut order: Vec<String> = Vec::new();
    let mut hosts: BTreeMap<String, Host> = BTreeMap::new();
    let mut own_vars: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (gname, g) in &groups {
        for (h, vars) in &g.hosts {
            if !hosts.contains_key(h) {
                order.push(h.clone());
            }
            let host = hosts.entry(h.clone()).or_insert_with(|| Host {
                name: h.clone(),
                ..Host::default()
            });
            let mut all = BTreeSet::new();
            ancestors(gname, &parents, &mut all);
            host.groups.extend(all.into_iter().map(str::to_string));
            own_vars.entry(h.clone()).or_default().extend(vars.clone());
        }
    }
    let depth = |g: &str| {
        let mut seen = BTreeSet::new();
        ancestors(g, &parents, &mut seen);
        seen.len()
    };
    let all_vars = groups
        .get("all")
        .map(|g| g.vars.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for name in order {
        let mut host = hosts.remove(&name).expect("collected");
        let mut by_depth: Vec<&String> = host.groups.iter().collect();
        by_depth.sort_by_key(|g| depth(g));
        let mut vars = all_vars.clone();
        for g in by_depth {
            vars.extend(groups[g.as_str()].vars.clone());
        }
        vars.extend(own_vars.remove(&name).unwrap_or_default());
        host.vars = vars;
        host.groups = host
            .groups
            .iter()
            .filter(|g| *g != "all" && *g != "ungrouped")
            .map(|g| role_name(g))
            .collect();
        out.push(host);
    }
    Inventory { hosts: out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::Deployment;

    const INI: &str = "\
# kolla-style
undercloud ansible_connection=local

[control]
ctl[0:2] ansible_user=heat-admin

[control:vars]
ansible_port=2222

[mysql:children]
control

[backup]
bk ansible_host=10.0.0.9 ansible_ssh_private_key_file=\"/root/.ssh/id backup\"
";

    #[test]
    fn ini_groups_become_roles_and_vars_apply() {
        let inv = Inventory::parse(INI, "hosts").unwrap();
        let names: Vec<_> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["bk", "ctl0", "ctl1", "ctl2", "undercloud"]);
        let ctl1 = &inv.hosts[2];
        assert_eq!(
            ctl1.groups.iter().map(String::as_str).collect::<Vec<_>>(),
            ["control", "mysql"]
        );
        assert_eq!(ctl1.vars["ansible_port"], "2222");
        assert_eq!(ctl1.vars["ansible_user"], "heat-admin");
        assert_eq!(
            inv.hosts[0].vars["ansible_ssh_private_key_file"],
            "/root/.ssh/id backup"
        );
        let d = Deployment::parse(&inv.to_deployment("kolla"), "generated").unwrap();
        assert_eq!(d.nodes.len(), 5);
        assert!(
            d.nodes
                .iter()
                .any(|n| n.name == "undercloud" && n.ssh.is_none())
        );
        let t = d.nodes[1].ssh.as_ref().unwrap();
        assert_eq!(t.destination(), "heat-admin@ctl0:2222");
        // Not root: through sudo. Three hosts in `mysql`: Galera on them, on the host.
        assert_eq!(d.nodes[1].escalation.as_ref().unwrap().user, "root");
        let galera = d.plugins.iter().find(|p| p.name == "galera").unwrap();
        assert_eq!(galera.roles.as_deref(), Some(&["mysql".to_string()][..]));
        assert!(galera.container.is_none());
    }

    /// kolla-ansible's `multinode`, in its shape: host groups, then service groups made of
    /// them with `:children`, the deploy user with `ansible_become`.
    const KOLLA: &str = "\
[control]
control01 ansible_host=10.0.0.11
control02 ansible_host=10.0.0.12
control03 ansible_host=10.0.0.13

[network]
network01 ansible_host=10.0.0.21

[compute]
compute01 ansible_host=10.0.0.31

[monitoring]
monitoring01 ansible_host=10.0.0.41

[storage]
storage01 ansible_host=10.0.0.51

[deployment]
localhost ansible_connection=local

[all:vars]
ansible_user=kolla
ansible_become=true
kolla_container_engine=podman

[baremetal:children]
control
network
compute
storage
monitoring

[common:children]
control
network
compute
storage
monitoring

[mariadb:children]
control

[rabbitmq:children]
control

[mongodb:children]
control

[redis:children]
control

[swift:children]
control

[swift-object-server:children]
storage
";

    #[test]
    fn kolla_multinode_imports_with_its_services_in_their_containers() {
        let inv = Inventory::parse(KOLLA, "multinode").unwrap();
        let text = inv.to_deployment("kolla");
        let d = Deployment::parse(&text, "generated").unwrap();
        let c2 = d.nodes.iter().find(|n| n.name == "control02").unwrap();
        assert_eq!(
            c2.roles,
            [
                "baremetal",
                "common",
                "control",
                "mariadb",
                "mongodb",
                "rabbitmq",
                "redis",
                "swift"
            ]
        );
        assert_eq!(c2.ssh.as_ref().unwrap().destination(), "kolla@10.0.0.12:22");
        assert!(c2.escalation.is_some(), "{text}");
        let plugin = |name: &str| {
            d.plugins
                .iter()
                .find(|p| p.name == name)
                .unwrap_or_else(|| panic!("no {name}:\n{text}"))
        };
        let galera = plugin("galera");
        assert_eq!(galera.roles.as_deref(), Some(&["mariadb".to_string()][..]));
        let c = galera.container.as_ref().unwrap();
        assert_eq!((c.runtime.as_str(), c.name.as_str()), ("podman", "mariadb"));
        assert_eq!(plugin("redis").container.as_ref().unwrap().name, "redis");
        assert_eq!(
            plugin("mongodb").container.as_ref().unwrap().name,
            "mongodb"
        );
        assert_eq!(
            plugin("swift").roles.as_deref(),
            Some(&["swift-object-server".to_string()][..])
        );
        assert!(d.plugins.iter().all(|p| p.name != "pacemaker"), "{text}");
        assert!(
            text.contains("kolla-ansible")
                && text.contains("# from `kolla_container_engine`")
                && text.contains("# from `ansible_become`"),
            "{text}"
        );
    }

    #[test]
    fn tripleo_yaml_inventory_imports() {
        let yaml = "\
Undercloud:
  hosts:
    undercloud:
      ansible_connection: local
Controller:
  hosts:
    overcloud-controller-0:
      ansible_host: 192.168.24.10
    overcloud-controller-1: {ansible_host: 192.168.24.11}
  vars:
    ansible_ssh_user: tripleo-admin
    container_cli: podman
overcloud:
  children:
    Controller: {}
mysql:
  children:
    Controller:
redis:
  children:
    Controller:
pacemaker:
  children:
    Controller:
";
        let inv = Inventory::parse(yaml, "inventory.yaml").unwrap();
        let c1 = inv
            .hosts
            .iter()
            .find(|h| h.name == "overcloud-controller-1")
            .unwrap();
        assert_eq!(
            c1.groups.iter().map(String::as_str).collect::<Vec<_>>(),
            ["controller", "mysql", "overcloud", "pacemaker", "redis"]
        );
        assert_eq!(c1.vars["ansible_ssh_user"], "tripleo-admin");
        let text = inv.to_deployment("overcloud");
        let d = Deployment::parse(&text, "generated").unwrap();
        // TripleO's bundles: one container per node, found by a glob.
        let galera = d.plugins.iter().find(|p| p.name == "galera").unwrap();
        let c = galera.container.as_ref().unwrap();
        assert_eq!(
            (c.runtime.as_str(), c.name.as_str()),
            ("podman", "galera-bundle-podman-*")
        );
        assert!(c.is_found());
        assert!(d.plugins.iter().any(|p| p.name == "pacemaker"), "{text}");
        assert!(text.contains("# from `ansible_ssh_user`"), "{text}");
        let n = d
            .nodes
            .iter()
            .find(|n| n.name == "overcloud-controller-0")
            .unwrap();
        assert_eq!(
            n.ssh.as_ref().unwrap().destination(),
            "tripleo-admin@192.168.24.10:22"
        );
    }

    #[test]
    fn mistakes_name_their_line() {
        let e = Inventory::parse("[control]\nctl[a:b]\n", "hosts").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("host range"), "{e}");
        let e = Inventory::parse("[control:hostvars]\n", "hosts").unwrap_err();
        assert_eq!(e.line, Some(1));
        let e = Inventory::parse("all:\n  hosts: [a, b]\n", "i.yaml").unwrap_err();
        assert!(e.to_string().contains("`hosts` must be a mapping"), "{e}");
    }
}
