//! Which container a plugin's commands run in on a node.

use std::collections::BTreeMap;

/// The container a plugin's commands run in (TripleO: podman, kolla: docker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    /// `podman` or `docker`.
    pub runtime: String,
    /// Container name, e.g. `clustercheck`, or a glob of names found per node at the start of
    /// a run (`galera-bundle-podman-*`: Pacemaker bundles number them per node).
    pub name: String,
    /// A filter for `RUNTIME ps --filter` (e.g. `label=kolla_service=mariadb`), found per node
    /// like a glob.
    pub filter: Option<String>,
    /// Only on nodes with one of these roles; `None`: on every node of the plugin.
    pub roles: Option<Vec<String>>,
    /// The container found on each node for a glob or filter (see [`ContainerSpec::is_found`]).
    pub found: BTreeMap<String, String>,
}

impl ContainerSpec {
    /// Whether the container is found per node (a glob or a filter) rather than named.
    pub fn is_found(&self) -> bool {
        self.filter.is_some() || self.name.contains(['*', '?', '['])
    }

    /// Whether it applies on a node carrying `roles`.
    pub fn applies(&self, roles: &[String]) -> bool {
        self.roles
            .as_ref()
            .is_none_or(|only| roles.iter().any(|r| only.contains(r)))
    }

    /// The container's name on `node`: the one found there, else the configured name.
    pub fn name_on(&self, node: &str) -> &str {
        self.found.get(node).map_or(&self.name, String::as_str)
    }

    /// `RUNTIME ps` listing the names of the running containers that pass the filter.
    pub fn list_argv(&self) -> Vec<String> {
        let mut argv = vec![
            self.runtime.clone(),
            "ps".into(),
            "--format".into(),
            "{{.Names}}".into(),
        ];
        if let Some(f) = &self.filter {
            argv.extend(["--filter".into(), f.clone()]);
        }
        argv
    }
}
