//! How the host reaches a node and runs a command there. Exec and streams go through one
//! [`Process`] shape whatever the transport, so they behave the same on every node.

use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::{Child, Command};

/// Errors starting a command on a node.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The program could not be started.
    #[error("could not start `{program}` on node {node}: {source}")]
    Spawn {
        /// Node.
        node: String,
        /// Program.
        program: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The command line is empty.
    #[error("empty command line for node {0}")]
    EmptyCommand(String),
}

/// How a node is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The host's own machine: commands run as child processes.
    Local,
}

/// A node the host can run commands on.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    /// Node name.
    pub name: String,
    /// Address as configured (`local` for the host's own machine).
    pub address: String,
    /// Roles it carries.
    pub roles: Vec<String>,
    /// How it is reached.
    pub transport: Transport,
}

/// A running command with piped standard streams.
pub struct Process {
    /// Its standard input; dropping it closes it.
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Its standard output.
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    /// Its standard error.
    pub stderr: Box<dyn AsyncRead + Send + Unpin>,
    child: Child,
}

impl Process {
    /// Wait for it to exit: `Some(code)`, or `None` when killed by a signal.
    pub async fn wait(&mut self) -> std::io::Result<Option<i32>> {
        self.stdin.take();
        Ok(self.child.wait().await?.code())
    }

    /// Kill it (and wait, so no zombie stays behind).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

impl NodeHandle {
    /// The host's own machine.
    pub fn local(name: &str, roles: Vec<String>) -> Self {
        Self {
            name: name.into(),
            address: "local".into(),
            roles,
            transport: Transport::Local,
        }
    }

    /// Start `argv` on this node with piped stdin, stdout and stderr. The process is killed if
    /// the returned handle is dropped before it exits.
    pub fn spawn(&self, argv: &[String]) -> Result<Process, TransportError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| TransportError::EmptyCommand(self.name.clone()))?;
        match self.transport {
            Transport::Local => {
                let mut cmd = Command::new(program);
                cmd.args(args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true);
                let mut child = cmd.spawn().map_err(|source| TransportError::Spawn {
                    node: self.name.clone(),
                    program: program.clone(),
                    source,
                })?;
                let stdin = child.stdin.take().map(|s| Box::new(s) as _);
                let stdout = Box::new(child.stdout.take().expect("piped stdout"));
                let stderr = Box::new(child.stderr.take().expect("piped stderr"));
                Ok(Process {
                    stdin,
                    stdout,
                    stderr,
                    child,
                })
            }
        }
    }
}
