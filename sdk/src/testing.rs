//! A harness that plays the host, so a plugin's tests run without a cluster.
//!
//! The harness answers each command from a script (first matching rule; unscripted commands
//! succeed with no output), keeps captured artifacts in memory, applies the plugin's declared
//! capabilities exactly as the host does, and records every call for the test to check:
//!
//! ```ignore
//! let h = Harness::new()
//!     .node("undercloud", &["undercloud"])
//!     .reply(&["test", "-e", "/srv/node"], Reply::exit(1));
//! h.backup::<Filesystem>().unwrap();
//! assert!(h.commands().contains(&"undercloud: test -e /etc".to_string()));
//! ```

use std::cell::RefCell;

use crate::Plugin;
use crate::capability::CapabilityMatcher;
use crate::context::{Context, Host};
use crate::types::*;

/// A scripted answer to a command.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    output: Output,
    error: Option<ExecError>,
}

impl Reply {
    /// Exit 0 with this standard output (also the content of an artifact it is captured into).
    pub fn stdout(stdout: impl Into<Vec<u8>>) -> Self {
        Self {
            output: Output {
                exit_code: Some(0),
                stdout: stdout.into(),
                stderr: Vec::new(),
            },
            error: None,
        }
    }

    /// Exit with `code` and no output.
    pub fn exit(code: i32) -> Self {
        Self {
            output: Output {
                exit_code: Some(code),
                ..Output::default()
            },
            error: None,
        }
    }

    /// Exit with `code`, writing `stderr`.
    pub fn fail(code: i32, stderr: &str) -> Self {
        Self {
            output: Output {
                exit_code: Some(code),
                stdout: Vec::new(),
                stderr: stderr.as_bytes().to_vec(),
            },
            error: None,
        }
    }

    /// Fail to run at all, e.g. `ExecError::Unreachable`.
    pub fn error(error: ExecError) -> Self {
        Self {
            output: Output::default(),
            error: Some(error),
        }
    }
}

/// One call the plugin made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `exec.run`.
    Exec(Command),
    /// `stream.capture`.
    Capture {
        /// Node.
        node: String,
        /// Command line.
        argv: Vec<String>,
        /// Artifact name.
        name: String,
    },
    /// `stream.capture-paths`.
    CapturePaths {
        /// Node.
        node: String,
        /// What to archive.
        paths: PathSet,
        /// Artifact name.
        name: String,
    },
    /// `stream.feed`.
    Feed {
        /// Artifact.
        artifact: ArtifactRef,
        /// Node.
        node: String,
        /// Command line.
        argv: Vec<String>,
    },
    /// `undo.push`: a reversal registered, with the id the harness gave it.
    UndoPush {
        /// Id.
        id: u64,
        /// Node.
        node: String,
        /// Command line.
        argv: Vec<String>,
        /// What it reverses.
        what: String,
        /// It runs on the node itself, outside the plugin's container.
        outside: bool,
    },
    /// `undo.release`.
    UndoRelease(u64),
    /// `stream.restore-paths`.
    RestorePaths {
        /// Artifact.
        artifact: ArtifactRef,
        /// Node.
        node: String,
        /// Target directory.
        target: String,
        /// Selected paths.
        select: Vec<String>,
    },
}

struct Rule {
    node: Option<String>,
    prefix: Vec<String>,
    reply: Reply,
}

/// Plays the host for a plugin's tests. Configure it with the builder methods, run an
/// operation with [`Harness::backup`], [`Harness::restore`] or [`Harness::validate`], then
/// look at [`Harness::calls`], [`Harness::commands`] and [`Harness::logs`].
#[derive(Default)]
pub struct Harness {
    nodes: Vec<Node>,
    settings: Settings,
    records: Settings,
    target_root: Option<String>,
    selection: Vec<String>,
    dry_run: bool,
    rules: Vec<Rule>,
    caps: RefCell<Option<CapabilityMatcher>>,
    calls: RefCell<Vec<Call>>,
    logs: RefCell<Vec<(Level, String)>>,
    stored: RefCell<Vec<(Artifact, Vec<u8>)>>,
    artifacts: Vec<Artifact>,
    containers: Vec<(String, Container)>,
}

impl Harness {
    /// An empty harness: no nodes, no settings, every command succeeds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a node with these roles.
    pub fn node(mut self, name: &str, roles: &[&str]) -> Self {
        self.nodes.push(Node {
            name: name.into(),
            address: format!("{name}.test"),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        });
        self
    }

    /// Put the plugin's commands on `node` in container `name` of `runtime` (`podman`), as
    /// `[plugin.NAME.container]` does: [`Context::container`] names it there, and commands
    /// built with [`Command::outside`] show as `node outside: argv` in the transcript.
    pub fn container(mut self, node: &str, runtime: &str, name: &str) -> Self {
        self.containers.push((
            node.into(),
            Container {
                runtime: runtime.into(),
                name: name.into(),
            },
        ));
        self
    }

    /// Add a setting.
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings.push(key, value);
        self
    }

    /// Add a record, as `backup` would have returned it.
    pub fn record(mut self, key: &str, value: &str) -> Self {
        self.records.push(key, value);
        self
    }

    /// Restore under `root`.
    pub fn target_root(mut self, root: &str) -> Self {
        self.target_root = Some(root.into());
        self
    }

    /// Restore only `path`.
    pub fn select(mut self, path: &str) -> Self {
        self.selection.push(path.into());
        self
    }

    /// Answer commands whose argv starts with `prefix`, on any node.
    pub fn reply(mut self, prefix: &[&str], reply: Reply) -> Self {
        self.rules.push(Rule {
            node: None,
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
            reply,
        });
        self
    }

    /// Answer commands whose argv starts with `prefix`, on `node` only.
    pub fn reply_on(mut self, node: &str, prefix: &[&str], reply: Reply) -> Self {
        self.rules.push(Rule {
            node: Some(node.into()),
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
            reply,
        });
        self
    }

    /// Put an artifact in the snapshot, for restore and validate.
    pub fn artifact(mut self, node: &str, name: &str, kind: ArtifactKind, bytes: &[u8]) -> Self {
        let a = Artifact {
            name: name.into(),
            node: node.into(),
            kind,
            size: bytes.len() as u64,
            sha256: String::new(),
        };
        self.stored.get_mut().push((a.clone(), bytes.to_vec()));
        self.artifacts.push(a);
        self
    }

    /// Run `P::backup`. Artifacts it captures become available to a later restore.
    pub fn backup<P: Plugin>(&self) -> Result<BackupReport, PluginError> {
        self.prepare::<P>();
        P::backup(&self.context())
    }

    /// Run `P::restore` with the artifacts given or captured so far.
    pub fn restore<P: Plugin>(&self) -> Result<(), PluginError> {
        self.prepare::<P>();
        P::restore(&self.snapshot_context())
    }

    /// Run `P::validate`.
    pub fn validate<P: Plugin>(&self) -> Result<Vec<Check>, PluginError> {
        self.prepare::<P>();
        P::validate(&self.snapshot_context())
    }

    /// Run `P::drill` (set the scratch directory with [`Harness::target_root`] first).
    pub fn drill<P: Plugin>(&self) -> Result<Vec<Check>, PluginError> {
        self.prepare::<P>();
        P::drill(&self.snapshot_context())
    }

    /// Every call made so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// Every command run so far (exec, capture, feed), as `node: argv`.
    pub fn commands(&self) -> Vec<String> {
        self.calls
            .borrow()
            .iter()
            .filter_map(|c| match c {
                Call::Exec(c) => Some(format!("{}: {}", c.node, c.argv.join(" "))),
                Call::Capture { node, argv, .. } | Call::Feed { node, argv, .. } => {
                    Some(format!("{node}: {}", argv.join(" ")))
                }
                _ => None,
            })
            .collect()
    }

    /// Every call made so far, one line each, in order — what a runbook test asserts on:
    /// `node: argv` for a command (`node: argv <<< stdin` when it has stdin; `node outside:
    /// argv` for one built with [`Command::outside`]), `capture NAME node: argv`,
    /// `capture-paths NAME node: paths`, `feed NAME node: argv`, `restore-paths NAME node:
    /// target`, `undo-push node: argv` (`undo-push node outside: argv`), `undo-release ID`.
    pub fn transcript(&self) -> Transcript {
        Transcript(
            self.calls
                .borrow()
                .iter()
                .map(|c| match c {
                    Call::Exec(c) if c.stdin.is_empty() => {
                        format!("{}{}: {}", c.node, outside(c.outside), c.argv.join(" "))
                    }
                    Call::Exec(c) => format!(
                        "{}{}: {} <<< {}",
                        c.node,
                        outside(c.outside),
                        c.argv.join(" "),
                        String::from_utf8_lossy(&c.stdin)
                    ),
                    Call::Capture { node, argv, name } => {
                        format!("capture {name} {node}: {}", argv.join(" "))
                    }
                    Call::CapturePaths { node, paths, name } => {
                        format!("capture-paths {name} {node}: {}", paths.paths.join(" "))
                    }
                    Call::Feed {
                        artifact,
                        node,
                        argv,
                    } => format!("feed {} {node}: {}", artifact.name, argv.join(" ")),
                    Call::RestorePaths {
                        artifact,
                        node,
                        target,
                        ..
                    } => format!("restore-paths {} {node}: {target}", artifact.name),
                    Call::UndoPush {
                        node,
                        argv,
                        outside: o,
                        ..
                    } => {
                        format!("undo-push {node}{}: {}", outside(*o), argv.join(" "))
                    }
                    Call::UndoRelease(id) => format!("undo-release {id}"),
                })
                .collect(),
        )
    }

    /// Every message logged so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.logs.borrow().clone()
    }

    /// The bytes of an artifact captured or given.
    pub fn artifact_bytes(&self, node: &str, name: &str) -> Option<Vec<u8>> {
        self.stored
            .borrow()
            .iter()
            .find(|(a, _)| a.node == node && a.name == name)
            .map(|(_, b)| b.clone())
    }

    /// Call the plugin as in a dry run: `ctx.dry_run` is set and, as the host does, only
    /// commands declared `reads` get their scripted replies; any other command succeeds with
    /// no output and nothing is stored. [`Harness::calls`] lists what the plugin would do.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    fn prepare<P: Plugin>(&self) {
        let info = P::describe();
        let caps = CapabilityMatcher::new(&info.capabilities)
            .unwrap_or_else(|e| panic!("plugin `{}` declares {e}", info.name));
        *self.caps.borrow_mut() = Some(caps);
    }

    fn context(&self) -> Context<'_> {
        let mut ctx = Context::new(self);
        ctx.deployment = "test".into();
        ctx.run_id = "test-run".into();
        ctx.nodes = self.nodes.clone();
        ctx.settings = self.settings.clone();
        ctx.records = self.records.clone();
        ctx.target_root = self.target_root.clone();
        ctx.selection = self.selection.clone();
        ctx.dry_run = self.dry_run;
        ctx
    }

    /// The context of a restore or validate: with the artifacts given or captured so far.
    fn snapshot_context(&self) -> Context<'_> {
        let mut ctx = self.context();
        ctx.artifacts = self
            .stored
            .borrow()
            .iter()
            .map(|(a, _)| a.clone())
            .collect();
        ctx
    }

    fn check(&self, node: &str, argv: &[String]) -> Result<(), ExecError> {
        if !self.nodes.iter().any(|n| n.name == node) {
            return Err(ExecError::UnknownNode(node.into()));
        }
        let caps = self.caps.borrow();
        if !caps.as_ref().is_some_and(|c| c.allows_command(argv)) {
            return Err(ExecError::Refused(format!(
                "`{}` is not declared in the plugin's capabilities",
                argv.join(" ")
            )));
        }
        Ok(())
    }

    fn check_path(&self, node: &str, path: &str) -> Result<(), StreamError> {
        if !self.nodes.iter().any(|n| n.name == node) {
            return Err(StreamError::Exec(ExecError::UnknownNode(node.into())));
        }
        let caps = self.caps.borrow();
        if !caps.as_ref().is_some_and(|c| c.allows_path(path)) {
            return Err(StreamError::Exec(ExecError::Refused(format!(
                "path `{path}` is not declared in the plugin's capabilities"
            ))));
        }
        Ok(())
    }

    fn answer(&self, node: &str, argv: &[String]) -> Result<Output, ExecError> {
        let rule = self.rules.iter().find(|r| {
            r.node.as_deref().is_none_or(|n| n == node)
                && argv.len() >= r.prefix.len()
                && r.prefix.iter().zip(argv).all(|(p, a)| p == a)
        });
        match rule {
            Some(Rule {
                reply: Reply { error: Some(e), .. },
                ..
            }) => Err(e.clone()),
            Some(r) => Ok(r.reply.output.clone()),
            None => Ok(Output {
                exit_code: Some(0),
                ..Output::default()
            }),
        }
    }

    fn store(
        &self,
        node: &str,
        name: &str,
        kind: ArtifactKind,
        bytes: Vec<u8>,
    ) -> Result<Artifact, StreamError> {
        let mut stored = self.stored.borrow_mut();
        if stored.iter().any(|(a, _)| a.node == node && a.name == name) {
            return Err(StreamError::ArtifactExists(name.into()));
        }
        let a = Artifact {
            name: name.into(),
            node: node.into(),
            kind,
            size: bytes.len() as u64,
            sha256: String::new(),
        };
        stored.push((a.clone(), bytes));
        Ok(a)
    }

    fn find(&self, artifact: &ArtifactRef) -> Result<(), StreamError> {
        self.artifact_bytes(&artifact.node, &artifact.name)
            .map(|_| ())
            .ok_or_else(|| StreamError::ArtifactNotFound(artifact.name.clone()))
    }
}

impl Host for Harness {
    fn exec(&self, cmd: &Command) -> Result<Output, ExecError> {
        self.calls.borrow_mut().push(Call::Exec(cmd.clone()));
        self.check(&cmd.node, &cmd.argv)?;
        let changes = self
            .caps
            .borrow()
            .as_ref()
            .is_some_and(|c| c.changes_state(&cmd.argv));
        if self.dry_run && changes {
            return Ok(Output {
                exit_code: Some(0),
                ..Output::default()
            });
        }
        self.answer(&cmd.node, &cmd.argv)
    }

    fn capture(&self, node: &str, argv: &[String], name: &str) -> Result<Artifact, StreamError> {
        self.calls.borrow_mut().push(Call::Capture {
            node: node.into(),
            argv: argv.to_vec(),
            name: name.into(),
        });
        self.check(node, argv).map_err(StreamError::Exec)?;
        if self.dry_run {
            return Ok(Artifact {
                name: name.into(),
                node: node.into(),
                kind: ArtifactKind::Stream,
                size: 0,
                sha256: String::new(),
            });
        }
        let out = self.answer(node, argv).map_err(StreamError::Exec)?;
        if !out.success() {
            return Err(StreamError::CommandFailed(CommandFailure {
                argv: argv.to_vec(),
                exit_code: out.exit_code,
                stderr: out.stderr,
            }));
        }
        self.store(node, name, ArtifactKind::Stream, out.stdout)
    }

    fn capture_paths(
        &self,
        node: &str,
        paths: &PathSet,
        name: &str,
    ) -> Result<Artifact, StreamError> {
        self.calls.borrow_mut().push(Call::CapturePaths {
            node: node.into(),
            paths: paths.clone(),
            name: name.into(),
        });
        for p in &paths.paths {
            self.check_path(node, p)?;
        }
        self.store(node, name, ArtifactKind::Paths, Vec::new())
    }

    fn feed(&self, artifact: &ArtifactRef, node: &str, argv: &[String]) -> Result<(), StreamError> {
        self.calls.borrow_mut().push(Call::Feed {
            artifact: artifact.clone(),
            node: node.into(),
            argv: argv.to_vec(),
        });
        self.check(node, argv).map_err(StreamError::Exec)?;
        self.find(artifact)?;
        let out = self.answer(node, argv).map_err(StreamError::Exec)?;
        if out.success() {
            Ok(())
        } else {
            Err(StreamError::CommandFailed(CommandFailure {
                argv: argv.to_vec(),
                exit_code: out.exit_code,
                stderr: out.stderr,
            }))
        }
    }

    fn restore_paths(
        &self,
        artifact: &ArtifactRef,
        node: &str,
        target: &str,
        select: &[String],
    ) -> Result<(), StreamError> {
        self.calls.borrow_mut().push(Call::RestorePaths {
            artifact: artifact.clone(),
            node: node.into(),
            target: target.into(),
            select: select.to_vec(),
        });
        for p in select {
            self.check_path(node, p)?;
        }
        self.find(artifact)
    }

    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.into()));
    }

    fn progress(&self, _step: &str, _done: u64, _total: Option<u64>) {}

    fn undo_push(&self, node: &str, argv: &[String], what: &str) -> Result<u64, ExecError> {
        self.push_reversal(node, argv, what, false)
    }

    fn undo_release(&self, id: u64) {
        self.calls.borrow_mut().push(Call::UndoRelease(id));
    }

    fn container(&self, node: &str) -> Option<Container> {
        self.containers
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, c)| c.clone())
    }

    fn undo_push_outside(&self, node: &str, argv: &[String], what: &str) -> Result<u64, ExecError> {
        self.push_reversal(node, argv, what, true)
    }
}

/// How the transcript marks what runs outside the plugin's container.
fn outside(yes: bool) -> &'static str {
    if yes { " outside" } else { "" }
}

impl Harness {
    fn push_reversal(
        &self,
        node: &str,
        argv: &[String],
        what: &str,
        outside: bool,
    ) -> Result<u64, ExecError> {
        self.check(node, argv)?;
        let mut calls = self.calls.borrow_mut();
        let id = calls
            .iter()
            .filter(|c| matches!(c, Call::UndoPush { .. }))
            .count() as u64
            + 1;
        calls.push(Call::UndoPush {
            id,
            node: node.into(),
            argv: argv.to_vec(),
            what: what.into(),
            outside,
        });
        Ok(id)
    }
}

impl Harness {
    /// The reversals still registered (pushed and not released), oldest first: what the host
    /// would run if the operation failed now.
    pub fn pending_undo(&self) -> Vec<(String, Vec<String>, String)> {
        self.pending()
            .into_iter()
            .map(|(node, argv, what, _)| (node, argv, what))
            .collect()
    }

    /// [`Harness::pending_undo`] as `node: argv` lines (`node outside: argv` for a reversal
    /// that runs outside the container), the form of [`Harness::transcript`].
    pub fn pending_undo_lines(&self) -> Vec<String> {
        self.pending()
            .into_iter()
            .map(|(node, argv, _, o)| format!("{node}{}: {}", outside(o), argv.join(" ")))
            .collect()
    }

    fn pending(&self) -> Vec<(String, Vec<String>, String, bool)> {
        let calls = self.calls.borrow();
        let released: Vec<u64> = calls
            .iter()
            .filter_map(|c| match c {
                Call::UndoRelease(id) => Some(*id),
                _ => None,
            })
            .collect();
        calls
            .iter()
            .filter_map(|c| match c {
                Call::UndoPush {
                    id,
                    node,
                    argv,
                    what,
                    outside,
                } if !released.contains(id) => {
                    Some((node.clone(), argv.clone(), what.clone(), *outside))
                }
                _ => None,
            })
            .collect()
    }
}

/// Every call a plugin made, one line each (see [`Harness::transcript`]), with the lookups a
/// runbook test needs: where a step first or last happened, and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcript(pub Vec<String>);

impl Transcript {
    /// Index of the first line starting with `prefix`; panics, showing every line, if none.
    pub fn first(&self, prefix: &str) -> usize {
        self.0
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in {:#?}", self.0))
    }

    /// Index of the last line starting with `prefix`; panics, showing every line, if none.
    pub fn last(&self, prefix: &str) -> usize {
        self.0
            .iter()
            .rposition(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in {:#?}", self.0))
    }

    /// How many lines start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.0.iter().filter(|l| l.starts_with(prefix)).count()
    }
}

impl std::ops::Deref for Transcript {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.0
    }
}
