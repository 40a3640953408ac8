//! The manifest of a Coffer snapshot: which artifacts a run wrote, from which node, by which
//! plugin (name, version, digest) against which contract version.

use serde::{Deserialize, Serialize};

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

/// How an artifact's bytes were produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// A command's standard output.
    Stream,
    /// A POSIX tar stream of paths (GNU tar, with xattrs and ACLs).
    Paths,
}

/// Whom an artifact belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactScope {
    /// The node it was taken on: restored only there.
    #[default]
    Node,
    /// The plugin's whole cluster: restorable through any member.
    Cluster,
}

impl ArtifactScope {
    fn is_node(&self) -> bool {
        *self == Self::Node
    }
}

/// One artifact of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// Node it was taken from.
    pub node: String,
    /// Plugin that wrote it.
    pub plugin: String,
    /// That plugin's version.
    pub plugin_version: String,
    /// SHA-256 of that plugin's component.
    pub plugin_digest: String,
    /// Contract version that plugin was built against.
    pub contract: String,
    /// Artifact name, unique per node and plugin.
    pub name: String,
    /// How it was produced.
    pub kind: ArtifactKind,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// The restic-format snapshot holding its bytes.
    pub snapshot: String,
    /// Its path in that snapshot (`restic dump SNAPSHOT PATH` reads it).
    pub path: String,
    /// Whom it belongs to, as the plugin declared when it was written (absent: its node).
    #[serde(default, skip_serializing_if = "ArtifactScope::is_node")]
    pub scope: ArtifactScope,
    /// For a `paths` artifact, the globs its archive left out (the path set's excludes and
    /// the repository itself), so that `restore --delete` never removes what the backup did
    /// not take. Absent in artifacts written before Coffer recorded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Vec<String>>,
    /// How its bytes are kept (absent: as one file, as Coffer kept every artifact before
    /// trees).
    #[serde(default, skip_serializing_if = "Layout::is_blob")]
    pub layout: Layout,
    /// What changed or vanished while it was read (kept as read, or left out), said so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// For one read of a tree artifact, not kept: only these paths (relative to `/`, as tar
    /// names them) and what is under them, so that restoring one file reads only its blobs.
    #[serde(skip)]
    pub only: Vec<String>,
}

/// How an artifact's bytes are kept in its restic snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One file at the artifact's path: the bytes as they came.
    #[default]
    Blob,
    /// A `paths` artifact as a restic tree, a node per file, directory, symlink, device and
    /// fifo, under the snapshot's root as on the node; read back as a POSIX tar stream. Its
    /// `size` is that stream's, its `sha256` names the tree (`tree:ID`): restic's own hashes
    /// of every blob and tree vouch for the bytes.
    Tree,
}

impl Layout {
    fn is_blob(&self) -> bool {
        *self == Self::Blob
    }
}

/// A node a backup needed but could not reach: its node-scoped data is not in the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingNode {
    /// The node.
    pub node: String,
    /// Why it could not be reached.
    pub reason: String,
    /// The plugins that would have worked on it.
    pub plugins: Vec<String>,
}

/// What a plugin reported for one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// Plugin name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of its component.
    pub digest: String,
    /// Contract version it targets.
    pub contract: String,
    /// Nodes it acted on.
    pub nodes: Vec<String>,
    /// Records returned by its backup (key, value).
    pub records: Vec<(String, String)>,
}

/// The manifest of one Coffer snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// The run that wrote it.
    pub run_id: String,
    /// Deployment name.
    pub deployment: String,
    /// Version of the `coffer` that wrote it.
    pub coffer_version: String,
    /// When the run started (RFC 3339).
    pub started: String,
    /// When the run finished (RFC 3339).
    pub finished: String,
    /// Plugins that took part.
    pub plugins: Vec<PluginRecord>,
    /// Artifacts written.
    pub artifacts: Vec<ArtifactRecord>,
    /// Nodes the run needed and could not reach (a degraded backup); empty when all were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<MissingNode>,
    /// Plugins whose artifacts a per-plugin retention policy removed from this snapshot
    /// afterwards (`[retention.plugin.NAME]`); they are no longer in `plugins`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trimmed: Vec<String>,
}

impl Manifest {
    /// Total bytes of all artifacts.
    pub fn total_size(&self) -> u64 {
        self.artifacts.iter().map(|a| a.size).sum()
    }
}
