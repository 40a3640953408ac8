//! The plugin-facing types of the contract, as plain Rust values.

use std::fmt;
use std::time::Duration;

/// A node of the deployment, as a plugin sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Unique name, e.g. `controller-0`; every call names its node with it.
    pub name: String,
    /// Address the host reaches it at (`local` for the host's own machine).
    pub address: String,
    /// Roles it carries.
    pub roles: Vec<String>,
}

impl Node {
    /// Whether the node carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// A plugin's settings: ordered key/value pairs, a key may repeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings(pub Vec<(String, String)>);

impl Settings {
    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of `key` parsed as `T`, or `default` when absent.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, PluginError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                PluginError::InvalidSettings(format!("setting `{key}`: cannot parse `{v}`"))
            }),
        }
    }

    /// Add a value.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.push((key.into(), value.into()));
    }
}

/// How an artifact's bytes were produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A command's standard output.
    Stream,
    /// A POSIX tar stream of paths with their metadata.
    Paths,
}

/// An artifact stored in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// Name the plugin gave it.
    pub name: String,
    /// Node it was taken from.
    pub node: String,
    /// How it was produced.
    pub kind: ArtifactKind,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

impl Artifact {
    /// A reference to this artifact for `feed` and `restore-paths`.
    pub fn reference(&self) -> ArtifactRef {
        ArtifactRef {
            node: self.node.clone(),
            name: self.name.clone(),
        }
    }
}

/// Identifies an artifact of the calling plugin in the snapshot being restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactRef {
    /// Node it was taken from.
    pub node: String,
    /// Its name.
    pub name: String,
}

/// Paths to archive with [`crate::Context::capture_paths`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathSet {
    /// Absolute paths, taken recursively.
    pub paths: Vec<String>,
    /// Globs to leave out: absolute ones match from the root, relative ones any path's tail.
    pub excludes: Vec<String>,
}

/// A command to run on a node. Build it with [`Command::on`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Node to run on.
    pub node: String,
    /// Program and arguments; no shell.
    pub argv: Vec<String>,
    /// Bytes for standard input (how secrets travel).
    pub stdin: Vec<u8>,
    /// Kill it after this long; `None` is the host's default.
    pub timeout: Option<Duration>,
    /// Run it on the node itself, outside the plugin's container (contract 2.2): see
    /// [`Command::outside`].
    pub outside: bool,
}

impl Command {
    /// A command running `program` on `node`.
    pub fn on(node: impl Into<String>, program: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            argv: vec![program.into()],
            stdin: Vec::new(),
            timeout: None,
            outside: false,
        }
    }

    /// Add one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.argv.push(arg.into());
        self
    }

    /// Add several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Give the command these bytes on standard input.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = bytes.into();
        self
    }

    /// Kill the command after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Run it on the node itself even where the deployment puts the plugin's commands in a
    /// container (`[plugin.NAME.container]`): the steps only the node can take for a
    /// containerised service — `podman stop`/`start` of the container, moving the datadir
    /// behind its volume, a one-shot container of the same image ([`crate::Context::container`]
    /// says which container it is). Where the plugin has no container, no different. Declared
    /// and granted like any command; a reversal registered with it runs outside too.
    pub fn outside(mut self) -> Self {
        self.outside = true;
        self
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        self.argv.join(" ")
    }
}

/// The container a plugin's commands run in on a node ([`crate::Context::container`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// `podman` or `docker`.
    pub runtime: String,
    /// Its name on that node.
    pub name: String,
}

/// What a finished command produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when killed by a signal.
    pub exit_code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error (its last 64 KiB).
    pub stderr: Vec<u8>,
}

impl Output {
    /// Whether the command exited with 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// Standard output as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text (lossy), trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Why a command could not be run to completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecError {
    /// Not declared by the plugin or not granted on this node.
    Refused(String),
    /// No such node in this operation.
    UnknownNode(String),
    /// The node could not be reached.
    Unreachable(String),
    /// The program could not be started.
    SpawnFailed(String),
    /// Killed after this many milliseconds.
    TimedOut(u64),
    /// Wrote more than this many bytes of output.
    OutputTooLarge(u64),
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(why) => write!(f, "refused: {why}"),
            Self::UnknownNode(n) => write!(f, "unknown node `{n}`"),
            Self::Unreachable(why) => write!(f, "node unreachable: {why}"),
            Self::SpawnFailed(why) => write!(f, "could not start: {why}"),
            Self::TimedOut(ms) => write!(f, "timed out after {ms} ms"),
            Self::OutputTooLarge(n) => write!(f, "output larger than {n} bytes"),
        }
    }
}

/// A command that failed while a stream was moving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandFailure {
    /// Its command line.
    pub argv: Vec<String>,
    /// Exit code; `None` when killed by a signal.
    pub exit_code: Option<i32>,
    /// The end of its standard error.
    pub stderr: Vec<u8>,
}

/// Why a stream operation failed; nothing of a failed capture is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// The command could not be run.
    Exec(ExecError),
    /// The command exited with a failure.
    CommandFailed(CommandFailure),
    /// An artifact of this name already exists for this node in this run.
    ArtifactExists(String),
    /// No such artifact in the snapshot.
    ArtifactNotFound(String),
    /// The bytes read back do not match the recorded SHA-256.
    Integrity(String),
    /// The repository failed.
    Repository(String),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exec(e) => e.fmt(f),
            Self::CommandFailed(c) => {
                let code = c
                    .exit_code
                    .map_or("a signal".into(), |c| format!("code {c}"));
                write!(
                    f,
                    "`{}` failed with {code}: {}",
                    c.argv.join(" "),
                    String::from_utf8_lossy(&c.stderr).trim()
                )
            }
            Self::ArtifactExists(n) => write!(f, "artifact `{n}` already written in this run"),
            Self::ArtifactNotFound(n) => write!(f, "artifact `{n}` not in the snapshot"),
            Self::Integrity(why) => write!(f, "integrity check failed: {why}"),
            Self::Repository(why) => write!(f, "repository error: {why}"),
        }
    }
}

/// Which operations a plugin implements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Operations {
    /// Implements `backup`.
    pub backup: bool,
    /// Implements `restore`.
    pub restore: bool,
    /// Implements `validate`.
    pub validate: bool,
}

impl Operations {
    /// Backup, restore and validate.
    pub const ALL: Self = Self {
        backup: true,
        restore: true,
        validate: true,
    };
}

/// A setting a plugin accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingSpec {
    /// Name, kebab-case.
    pub key: String,
    /// One line for operators.
    pub description: String,
    /// Default, as shown.
    pub default_value: Option<String>,
    /// Whether it may repeat.
    pub multiple: bool,
}

/// `arg` as a pattern that matches exactly `arg`: its glob characters (`*?[]{}` and `\`)
/// escaped. For a declared argument that is literal text, such as a shell script:
/// `.command("sh", &["-c", &literal(SCRIPT), "*"])`.
pub fn literal(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    for c in arg.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What running a command does to its node (contract 2.0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Effect {
    /// It only reads: a dry run runs it for real.
    Reads,
    /// It may change the node or the service: a dry run lists it and does not run it.
    #[default]
    Changes,
}

/// A command a plugin may run: program, then one glob per argument; a final `**` matches
/// any remaining arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandPattern {
    /// Program name as in `argv[0]`.
    pub program: String,
    /// Argument globs.
    pub args: Vec<String>,
    /// Whether it only reads or may change state.
    pub effect: Effect,
}

/// What a plugin asks the host to let it do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Commands it may run.
    pub commands: Vec<CommandPattern>,
    /// Absolute path globs it may archive or restore.
    pub paths: Vec<String>,
}

/// What a plugin is. Build it with [`PluginInfo::new`] and the chained setters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    /// Name, lower-case kebab.
    pub name: String,
    /// Semver version.
    pub version: String,
    /// One paragraph for operators.
    pub description: String,
    /// Operations it implements.
    pub operations: Operations,
    /// Roles of the nodes it acts on; empty is every node.
    pub roles: Vec<String>,
    /// Settings it accepts.
    pub settings: Vec<SettingSpec>,
    /// Plugins that must run before it.
    pub after: Vec<String>,
    /// Plugins that must run after it.
    pub before: Vec<String>,
    /// What it needs from the host.
    pub capabilities: Capabilities,
    /// Operations it does one node at a time (the contract's `fan-out` export): the host calls
    /// it once per node, in parallel. Empty: one call for all its nodes.
    pub node_scoped: Operations,
    /// Semver requirement on the plugin versions whose artifacts it restores (the contract's
    /// `compat`); empty: its own release series.
    pub restores: String,
    /// Globs of the names of its artifacts that belong to the cluster, not to the node they
    /// were taken on (the contract's `scope`, 2.1): a restore hands them to the plugin whatever
    /// nodes take part.
    pub cluster_artifacts: Vec<String>,
    /// The presets it belongs to (the contract's `presets`, 2.3): `coffer backup --controllers`
    /// runs every enabled plugin that names `controllers`, `--undercloud` those naming
    /// `undercloud`.
    pub presets: Vec<String>,
}

impl PluginInfo {
    /// A plugin implementing every operation, on every node, needing nothing yet.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            operations: Operations::ALL,
            roles: Vec::new(),
            settings: Vec::new(),
            after: Vec::new(),
            before: Vec::new(),
            capabilities: Capabilities::default(),
            node_scoped: Operations::default(),
            restores: String::new(),
            cluster_artifacts: Vec::new(),
            presets: Vec::new(),
        }
    }

    /// Belong to these presets: `coffer backup --controllers` runs every enabled plugin that
    /// names `controllers` on the nodes with role `controller`, `--undercloud` those naming
    /// `undercloud` on role `undercloud`.
    pub fn presets(mut self, names: &[&str]) -> Self {
        self.presets = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// These artifacts (names or globs: `*` any text, `?` one character) hold the state of
    /// the whole cluster, taken on one member and restorable through any, such as a database
    /// dump of a replicated cluster: a restore hands them to the plugin even when the node they
    /// were taken on is dead, left out or gone, and runs on the deployment's current members.
    pub fn cluster_artifacts(mut self, names: &[&str]) -> Self {
        self.cluster_artifacts = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Whether artifact `name` belongs to the cluster (see [`PluginInfo::cluster_artifacts`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn is_cluster_artifact(&self, name: &str) -> bool {
        self.cluster_artifacts
            .iter()
            .any(|p| crate::capability::name_matches(p, name))
    }

    /// Restore artifacts written by the plugin versions `requirement` (Cargo's semver syntax,
    /// e.g. `>=0.1, <0.3`) matches; by default, only those of its own release series.
    pub fn restores(mut self, requirement: &str) -> Self {
        self.restores = requirement.into();
        self
    }

    /// Do these operations one node at a time: the host then calls the plugin once per node,
    /// several nodes at once, each call seeing only its node (and that node's artifacts).
    pub fn node_scoped(mut self, operations: Operations) -> Self {
        self.node_scoped = operations;
        self
    }

    /// Act only on nodes carrying one of these roles.
    pub fn roles(mut self, roles: &[&str]) -> Self {
        self.roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }

    /// Accept a setting.
    pub fn setting(mut self, key: &str, description: &str, default: Option<&str>) -> Self {
        self.settings.push(SettingSpec {
            key: key.into(),
            description: description.into(),
            default_value: default.map(Into::into),
            multiple: false,
        });
        self
    }

    /// Accept a setting that may repeat.
    pub fn multi_setting(mut self, key: &str, description: &str) -> Self {
        self.settings.push(SettingSpec {
            key: key.into(),
            description: description.into(),
            default_value: None,
            multiple: true,
        });
        self
    }

    /// Declare a command that may change state: `program` then one glob per argument (`**`
    /// last: any rest). A dry run lists it and does not run it.
    pub fn command(self, program: &str, args: &[&str]) -> Self {
        self.declare(program, args, Effect::Changes)
    }

    /// Declare a command that only reads (a status query, a checksum, a dump to standard
    /// output): a dry run runs it for real, so the plugin sees the real answers.
    pub fn reads(self, program: &str, args: &[&str]) -> Self {
        self.declare(program, args, Effect::Reads)
    }

    fn declare(mut self, program: &str, args: &[&str], effect: Effect) -> Self {
        self.capabilities.commands.push(CommandPattern {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            effect,
        });
        self
    }

    /// Declare a path glob the plugin may archive or restore.
    pub fn path(mut self, glob: &str) -> Self {
        self.capabilities.paths.push(glob.into());
        self
    }

    /// Run after these plugins.
    pub fn after(mut self, plugins: &[&str]) -> Self {
        self.after = plugins.iter().map(|p| p.to_string()).collect();
        self
    }

    /// Run before these plugins.
    pub fn before(mut self, plugins: &[&str]) -> Self {
        self.before = plugins.iter().map(|p| p.to_string()).collect();
        self
    }
}

/// What a backup produced besides its artifacts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// Facts kept with the snapshot; restore and validate get them back as `ctx.records`.
    pub records: Settings,
}

/// One check made by `validate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Node it ran on.
    pub node: String,
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

impl Check {
    /// A check on `node` named `name` with the outcome `ok`.
    pub fn new(node: &str, name: &str, ok: bool, detail: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            name: name.into(),
            ok,
            detail: detail.into(),
        }
    }
}

/// Why a plugin operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginError {
    /// A setting is missing or malformed.
    InvalidSettings(String),
    /// The service is not in a state that allows the operation.
    Precondition(String),
    /// A command failed.
    CommandFailed(String),
    /// The operation is not implemented.
    Unsupported(String),
    /// Anything else.
    Other(String),
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSettings(m) => write!(f, "invalid settings: {m}"),
            Self::Precondition(m) => write!(f, "precondition failed: {m}"),
            Self::CommandFailed(m) => write!(f, "command failed: {m}"),
            Self::Unsupported(m) => write!(f, "unsupported: {m}"),
            Self::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for PluginError {}

/// Severity of a log message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fine detail.
    Debug,
    /// Normal progress.
    Info,
    /// Worth the operator's attention.
    Warn,
    /// A failure.
    Error,
}
