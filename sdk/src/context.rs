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
    /// Register a reversal with the host (the contract's `undo.push`).
    fn undo_push(&self, node: &str, argv: &[String], what: &str) -> Result<u64, ExecError>;
    /// Forget a reversal (`undo.release`).
    fn undo_release(&self, id: u64);
    /// The container the plugin's commands run in on `node` (`container.on-node`, 2.2).
    fn container(&self, _node: &str) -> Option<Container> {
        None
    }
    /// Register a reversal that runs on the node itself (`container.push-undo-outside`).
    fn undo_push_outside(&self, node: &str, argv: &[String], what: &str) -> Result<u64, ExecError> {
        self.undo_push(node, argv, what)
    }
}

/// A reversal registered with the host; give it back to [`Context::keep`] once the change is
/// reversed by the plugin or meant to stay.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a registered reversal runs if the run fails; keep() it once the change may stay"]
pub struct Undo(u64);

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
    /// A dry run: only commands declared [`crate::PluginInfo::reads`] really run; every other
    /// command, stream and reversal is listed for the plan and answered as if it succeeded
    /// (exit 0, no output). Skip waits for changes that will not happen.
    pub dry_run: bool,
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
            dry_run: false,
            host,
        }
    }

    /// Where a drill works (contract 2.4): the drill node and the scratch directory (no trailing
    /// `/`) under which it restores. A node where this plugin's commands run in a container is
    /// refused: what the drill restores would go into the container.
    pub fn drill_place(&self) -> Result<(String, String), PluginError> {
        let (Some(root), Some(node)) = (&self.target_root, self.nodes.first()) else {
            return Err(PluginError::Precondition(
                "a drill needs a node and a scratch directory (`coffer drill` gives both)".into(),
            ));
        };
        if self.container(&node.name).is_some() {
            return Err(PluginError::Precondition(format!(
                "{}: this plugin's commands run in a container there, and the drill would \
                 restore into it: drill on another node (`coffer drill --on NODE`)",
                node.name
            )));
        }
        Ok((node.name.clone(), root.trim_end_matches('/').to_string()))
    }

    /// The Unix socket of a drill's throwaway server in `dir` on `node`: `dir/s`, refused when
    /// longer than the 107 bytes a socket's path may have (a long scratch directory).
    pub fn drill_socket(&self, node: &str, dir: &str) -> Result<String, PluginError> {
        let socket = format!("{dir}/s");
        if socket.len() > 107 {
            return Err(PluginError::Precondition(format!(
                "{node}: the drill's socket {socket} is longer than a Unix socket's path may be \
                 (107 bytes): give a shorter scratch directory (`--scratch` or `[drill] scratch`)"
            )));
        }
        Ok(socket)
    }

    /// `program` on `node` itself: outside this plugin's container where it has one there
    /// ([`Command::outside`]), as it is elsewhere — for what belongs to the node, not the
    /// service (its firewall, Pacemaker).
    pub fn on_the_node(&self, node: &str, program: &str) -> Command {
        let cmd = Command::on(node, program);
        if self.container(node).is_some() {
            cmd.outside()
        } else {
            cmd
        }
    }

    /// The container this plugin's commands run in on `node` (the deployment's
    /// `[plugin.NAME.container]`, found per node), or `None` where they run on the node itself.
    /// What [`Command::outside`] commands act on: stop it, start it, run its image once.
    pub fn container(&self, node: &str) -> Option<Container> {
        self.host.container(node)
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

    /// The run id with every character but ASCII letters and digits turned into `-`: for the
    /// names of files a plugin keeps on a node for the length of the run.
    pub fn run_slug(&self) -> String {
        self.run_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    }

    /// Before changing a node, register how to reverse the change: `cmd` (declared like any
    /// command). If the run fails, times out or is interrupted before [`Context::keep`], the
    /// host runs it, newest first; a run killed outright leaves it for `coffer recover`.
    pub fn undo_with(&self, cmd: &Command, what: &str) -> Result<Undo, PluginError> {
        let pushed = if cmd.outside {
            self.host.undo_push_outside(&cmd.node, &cmd.argv, what)
        } else {
            self.host.undo_push(&cmd.node, &cmd.argv, what)
        };
        pushed.map(Undo).map_err(|e| {
            PluginError::CommandFailed(format!(
                "registering `{}` on {} to undo {what}: {e}",
                cmd.display(),
                cmd.node
            ))
        })
    }

    /// The change behind `undo` may stay (or was reversed by the plugin): forget its reversal.
    pub fn keep(&self, undo: Undo) {
        self.host.undo_release(undo.0);
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
