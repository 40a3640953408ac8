//! What a plugin operation receives: its nodes, settings, artifacts, and the host's capabilities.

use crate::types::*;

/// The host's capabilities, as the SDK calls them. In a plugin this is the real host (through
/// the WIT imports); in a plugin's own tests it is [`crate::testing::Harness`].
pub trait Host {
    /// Run a command on a node and wait for it.
    fn exec(&self, cmd: &Command) -> Result<Output, ExecError>;
    /// Store a command's standard output as an artifact.
    fn capture(&self, node: &str, argv: &[String], name: &str) -> Result<Artifact, StreamError>;
    /// Store a set of paths with their metadata as an artifact.
    fn capture_paths(
        &self,
        node: &str,
        paths: &PathSet,
        name: &str,
    ) -> Result<Artifact, StreamError>;
    /// Write an artifact into a command's standard input.
    fn feed(&self, artifact: &ArtifactRef, node: &str, argv: &[String]) -> Result<(), StreamError>;
    /// Extract a paths artifact under `target`, limited to `select` when not empty.
    fn restore_paths(
        &self,
        artifact: &ArtifactRef,
        node: &str,
        target: &str,
        select: &[String],
    ) -> Result<(), StreamError>;
    /// Log a message.
    fn log(&self, level: Level, message: &str);
    /// Report progress.
    fn progress(&self, step: &str, done: u64, total: Option<u64>);
}

/// Everything one operation of a plugin receives.
pub struct Context<'h> {
    /// Deployment name.
    pub deployment: String,
    /// This run's identifier.
    pub run_id: String,
    /// The nodes the plugin acts on.
    pub nodes: Vec<Node>,
    /// The plugin's settings.
    pub settings: Settings,
    /// For restore and validate: the plugin's artifacts in the snapshot.
    pub artifacts: Vec<Artifact>,
    /// For restore and validate: the records `backup` returned.
    pub records: Settings,
    /// For restore: restore under this directory instead of in place.
    pub target_root: Option<String>,
    /// For restore: only these paths.
    pub selection: Vec<String>,
    host: &'h dyn Host,
}

impl<'h> Context<'h> {
    /// A context served by `host`. Plugins receive theirs; this is for hosts and harnesses.
    pub fn new(host: &'h dyn Host) -> Self {
        Self {
            deployment: String::new(),
            run_id: String::new(),
            nodes: Vec::new(),
            settings: Settings::default(),
            artifacts: Vec::new(),
            records: Settings::default(),
            target_root: None,
            selection: Vec::new(),
            host,
        }
    }

    /// Run a command; a non-zero exit is returned, not an error.
    pub fn run(&self, cmd: &Command) -> Result<Output, ExecError> {
        self.host.exec(cmd)
    }

    /// Run a command and require it to exit with 0; the error names the node and the command
    /// and carries its standard error.
    pub fn run_ok(&self, cmd: &Command) -> Result<Output, PluginError> {
        let out = self.host.exec(cmd).map_err(|e| {
            PluginError::CommandFailed(format!("{} on {}: {e}", cmd.display(), cmd.node))
        })?;
        if out.success() {
            Ok(out)
        } else {
            let code = out
                .exit_code
                .map_or("a signal".into(), |c| format!("code {c}"));
            Err(PluginError::CommandFailed(format!(
                "`{}` on {} exited with {code}: {}",
                cmd.display(),
                cmd.node,
                out.stderr_text()
            )))
        }
    }

    /// Store the standard output of `cmd` (its node and argv; stdin and timeout are not used)
    /// as artifact `name`.
    pub fn capture(&self, cmd: &Command, name: &str) -> Result<Artifact, PluginError> {
        self.host
            .capture(&cmd.node, &cmd.argv, name)
            .map_err(|e| stream_failed("capture", &cmd.node, name, e))
    }

    /// Store `paths` on `node` with their metadata as artifact `name`.
    pub fn capture_paths(
        &self,
        node: &str,
        paths: &PathSet,
        name: &str,
    ) -> Result<Artifact, PluginError> {
        self.host
            .capture_paths(node, paths, name)
            .map_err(|e| stream_failed("capture-paths", node, name, e))
    }

    /// Write `artifact` into the standard input of `cmd`.
    pub fn feed(&self, artifact: &ArtifactRef, cmd: &Command) -> Result<(), PluginError> {
        self.host
            .feed(artifact, &cmd.node, &cmd.argv)
            .map_err(|e| stream_failed("feed", &cmd.node, &artifact.name, e))
    }

    /// Extract a paths artifact on `node` under `target`, limited to `select` when not empty.
    pub fn restore_paths(
        &self,
        artifact: &ArtifactRef,
        node: &str,
        target: &str,
        select: &[String],
    ) -> Result<(), PluginError> {
        self.host
            .restore_paths(artifact, node, target, select)
            .map_err(|e| stream_failed("restore-paths", node, &artifact.name, e))
    }

    /// The artifacts taken from `node`.
    pub fn artifacts_of<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Artifact> + 'a {
        self.artifacts.iter().filter(move |a| a.node == node)
    }

    /// Log at info level.
    pub fn info(&self, message: impl AsRef<str>) {
        self.host.log(Level::Info, message.as_ref());
    }

    /// Log at warn level.
    pub fn warn(&self, message: impl AsRef<str>) {
        self.host.log(Level::Warn, message.as_ref());
    }

    /// Log at debug level.
    pub fn debug(&self, message: impl AsRef<str>) {
        self.host.log(Level::Debug, message.as_ref());
    }

    /// Report progress of `step`.
    pub fn progress(&self, step: &str, done: u64, total: Option<u64>) {
        self.host.progress(step, done, total);
    }
}

fn stream_failed(op: &str, node: &str, name: &str, e: StreamError) -> PluginError {
    PluginError::CommandFailed(format!("{op} of artifact `{name}` on {node}: {e}"))
}
