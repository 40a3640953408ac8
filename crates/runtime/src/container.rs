//! Which container a plugin's commands run in on a node.

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
