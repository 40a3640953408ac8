//! How the host reaches a node and runs a command there: the local machine directly, any other
//! node over SSH (the `openssh` crate: the system's `ssh`, one multiplexed master per node,
//! host keys always verified). Exec and streams go through one [`Process`] shape whatever the
//! transport, so they behave the same on every node.
//!
//! Use [`NodeHandle::local`] for the machine Coffer runs on and [`NodeHandle::connect`] for an
//! [`SshTarget`]; [`process::run`] runs a command to completion under a timeout and an output
//! cap, [`NodeHandle::spawn`] starts one whose stdin and stdout are streamed. [`access`]
//! installs and revokes the temporary SSH keys a backup host uses to reach the nodes.

#![deny(missing_docs)]

pub mod access;
pub mod process;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder};
use tokio::io::{AsyncRead, AsyncWrite};

/// Errors reaching a node or starting a command on it.
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
    /// The node could not be reached over SSH.
    #[error("node {node} ({destination}) is unreachable over SSH: {reason}")]
    Unreachable {
        /// Node.
        node: String,
        /// user@address:port.
        destination: String,
        /// What ssh said.
        reason: String,
    },
    /// The node's host key is not the one in known_hosts.
    #[error(
        "node {node} ({destination}): its SSH host key does not match {known_hosts} (or is not in it); \
         check the node's identity, then fix known_hosts or run with --accept-new-host-keys for a new node. ssh said: {reason}"
    )]
    HostKey {
        /// Node.
        node: String,
        /// user@address:port.
        destination: String,
        /// The known_hosts file used.
        known_hosts: String,
        /// What ssh said.
        reason: String,
    },
    /// The node answered but refused the login (wrong user or key).
    #[error(
        "node {node} ({destination}) refused the login: {reason}; check the node's `user` and \
         `key` in the deployment file and that the key is in that user's authorized_keys"
    )]
    LoginRefused {
        /// Node name.
        node: String,
        /// `user@address:port`.
        destination: String,
        /// What ssh said.
        reason: String,
    },
    /// The command line is empty.
    #[error("empty command line for node {0}")]
    EmptyCommand(String),
    /// The login user cannot run commands as the `become-user` without a password.
    #[error(
        "node {node}: login user `{login}` cannot run commands as `{user}` through `sudo -n` \
         ({reason}); Coffer never answers a password prompt, so password-less sudo is needed: \
         add `{login} ALL=({user}) NOPASSWD: ALL` to /etc/sudoers.d/coffer on the node (or \
         narrow it to the commands the plugins declare: `coffer plugins describe`)"
    )]
    Become {
        /// Node name.
        node: String,
        /// The login user.
        login: String,
        /// The user commands were to run as.
        user: String,
        /// What `sudo -n` said.
        reason: String,
    },
}

/// How commands on a node gain the privileges they need: `sudo -n -u USER --` before every
/// command (never a password prompt that could hang a run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Become {
    /// The user commands run as (`become-user`; default root).
    pub user: String,
}

impl Become {
    /// `argv` run as [`Become::user`].
    pub fn wrap(&self, argv: &[String]) -> Vec<String> {
        let mut wrapped: Vec<String> = ["sudo", "-n", "-u", &self.user, "--"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        wrapped.extend(argv.iter().cloned());
        wrapped
    }
}

/// How to reach a node over SSH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// Host name or address.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key file, if not the user's default.
    pub key: Option<PathBuf>,
}

impl SshTarget {
    /// `user@address:port`, for messages.
    pub fn destination(&self) -> String {
        format!("{}@{}:{}", self.user, self.address, self.port)
    }
}

/// Host-key policy and files shared by every SSH connection of a run.
#[derive(Clone, Debug)]
pub struct SshOptions {
    /// The known_hosts file to verify against (and to add to with `accept_new`).
    pub known_hosts: PathBuf,
    /// Record the key of a node seen for the first time (never replaces a known key).
    pub accept_new: bool,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
}

/// How a node is reached.
#[derive(Clone)]
pub enum Transport {
    /// The host's own machine: commands run as child processes.
    Local,
    /// Over SSH, through a connected master session.
    Ssh(Arc<Session>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("Local"),
            Self::Ssh(_) => f.write_str("Ssh"),
        }
    }
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
    /// How its commands gain privileges; `None`: they run as the login user.
    pub escalation: Option<Become>,
}

enum ChildKind {
    Local(tokio::process::Child),
    Ssh(Option<openssh::Child<Arc<Session>>>),
}

/// A running command with piped standard streams.
pub struct Process {
    /// Its standard input; dropping it closes it.
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Its standard output.
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    /// Its standard error.
    pub stderr: Box<dyn AsyncRead + Send + Unpin>,
    child: ChildKind,
}

impl Process {
    /// Wait for it to exit: `Some(code)`, or `None` when killed by a signal. A lost SSH
    /// connection is an error.
    pub async fn wait(&mut self) -> std::io::Result<Option<i32>> {
        self.stdin.take();
        match &mut self.child {
            ChildKind::Local(c) => Ok(c.wait().await?.code()),
            ChildKind::Ssh(c) => {
                let child = c
                    .take()
                    .ok_or_else(|| std::io::Error::other("process already waited for"))?;
                match child.wait().await {
                    Ok(status) => Ok(status.code()),
                    Err(openssh::Error::RemoteProcessTerminated) => Ok(None),
                    Err(e) => Err(std::io::Error::other(format!("SSH connection lost: {e}"))),
                }
            }
        }
    }

    /// Kill it (locally), or close its SSH channel (the remote side gets EOF and SIGPIPE).
    pub async fn kill(&mut self) {
        match &mut self.child {
            ChildKind::Local(c) => {
                let _ = c.kill().await;
            }
            ChildKind::Ssh(c) => {
                if let Some(c) = c.take() {
                    let _ = c.disconnect().await;
                }
            }
        }
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
            escalation: None,
        }
    }

    /// Connect to a node over SSH, verifying its host key.
    pub async fn connect(
        name: &str,
        roles: Vec<String>,
        target: &SshTarget,
        options: &SshOptions,
    ) -> Result<Self, TransportError> {
        let mut b = SessionBuilder::default();
        b.user(target.user.clone())
            .port(target.port)
            .user_known_hosts_file(&options.known_hosts)
            .known_hosts_check(if options.accept_new {
                KnownHosts::Add
            } else {
                KnownHosts::Strict
            })
            .connect_timeout(options.connect_timeout)
            .server_alive_interval(Duration::from_secs(15))
            .control_directory(std::env::temp_dir());
        if let Some(key) = &target.key {
            b.keyfile(key);
        }
        let session = b.connect(&target.address).await.map_err(|e| {
            let reason = e.to_string()
                + &std::error::Error::source(&e)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
            if reason.contains("Host key verification failed")
                || reason.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
                || reason.contains("No ED25519 host key is known")
                || reason.contains("host key")
            {
                TransportError::HostKey {
                    node: name.into(),
                    destination: target.destination(),
                    known_hosts: options.known_hosts.display().to_string(),
                    reason,
                }
            } else if reason.contains("Permission denied") {
                TransportError::LoginRefused {
                    node: name.into(),
                    destination: target.destination(),
                    reason,
                }
            } else {
                TransportError::Unreachable {
                    node: name.into(),
                    destination: target.destination(),
                    reason,
                }
            }
        })?;
        Ok(Self {
            name: name.into(),
            address: target.address.clone(),
            roles,
            transport: Transport::Ssh(Arc::new(session)),
            escalation: None,
        })
    }

    /// Run every command through `become` (see [`Become`]), after checking that it works
    /// without a password: a node where it does not fails here, before anything runs.
    pub async fn with_become(mut self, how: Become, login: &str) -> Result<Self, TransportError> {
        let probe = how.wrap(&["true".to_string()]);
        let done = process::run(&self, &probe, Vec::new(), Duration::from_secs(30), 1 << 16)
            .await
            .map_err(|e| TransportError::Become {
                node: self.name.clone(),
                login: login.into(),
                user: how.user.clone(),
                reason: e.to_string(),
            })?;
        if done.exit_code != Some(0) {
            let said = String::from_utf8_lossy(&done.stderr).trim().to_string();
            return Err(TransportError::Become {
                node: self.name.clone(),
                login: login.into(),
                user: how.user.clone(),
                reason: if said.is_empty() {
                    format!("exit {:?}", done.exit_code)
                } else {
                    said
                },
            });
        }
        self.escalation = Some(how);
        Ok(self)
    }

    /// This node as its login user, without [`Become`]: for what belongs to that user, such
    /// as its `authorized_keys`.
    pub fn as_login(&self) -> Self {
        Self {
            escalation: None,
            ..self.clone()
        }
    }

    /// Whether this is the host's own machine.
    pub fn is_local(&self) -> bool {
        matches!(self.transport, Transport::Local)
    }

    /// Start `argv` on this node with piped stdin, stdout and stderr. A local process is
    /// killed if the returned handle is dropped before it exits.
    pub async fn spawn(&self, argv: &[String]) -> Result<Process, TransportError> {
        let wrapped;
        let argv = match &self.escalation {
            Some(b) => {
                wrapped = b.wrap(argv);
                &wrapped[..]
            }
            None => argv,
        };
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| TransportError::EmptyCommand(self.name.clone()))?;
        let spawn_err = |source: std::io::Error| TransportError::Spawn {
            node: self.name.clone(),
            program: program.clone(),
            source,
        };
        match &self.transport {
            Transport::Local => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true);
                let mut child = cmd.spawn().map_err(spawn_err)?;
                if let Some(pipe) = &child.stdin {
                    widen(pipe);
                }
                if let Some(pipe) = &child.stdout {
                    widen(pipe);
                }
                let stdin = child.stdin.take().map(|s| Box::new(s) as _);
                let stdout = Box::new(child.stdout.take().expect("piped stdout"));
                let stderr = Box::new(child.stderr.take().expect("piped stderr"));
                Ok(Process {
                    stdin,
                    stdout,
                    stderr,
                    child: ChildKind::Local(child),
                })
            }
            Transport::Ssh(session) => {
                // `arg` quotes each argument for the remote shell: any byte survives.
                let mut cmd = Session::to_command(session.clone(), program.as_str());
                cmd.args(args)
                    .stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::piped());
                let mut child = cmd
                    .spawn()
                    .await
                    .map_err(|e| spawn_err(std::io::Error::other(e.to_string())))?;
                if let Some(pipe) = child.stdin() {
                    widen(pipe);
                }
                if let Some(pipe) = child.stdout() {
                    widen(pipe);
                }
                let stdin = child.stdin().take().map(|s| Box::new(s) as _);
                let stdout = Box::new(child.stdout().take().expect("piped stdout"));
                let stderr = Box::new(child.stderr().take().expect("piped stderr"));
                Ok(Process {
                    stdin,
                    stdout,
                    stderr,
                    child: ChildKind::Ssh(Some(child)),
                })
            }
        }
    }
}

/// Size of the pipes a command's artifact bytes go through.
const PIPE_SIZE: i32 = 1 << 20;

/// Widen a pipe to [`PIPE_SIZE`] (Linux's default is 64 KiB): an artifact then crosses it in
/// far fewer wakeups of either side (measured: GNU tar reading a restore spent a tenth of the
/// run's CPU spinning on the pipe's lock). Best effort: the size stays as it was where the
/// system refuses (`/proc/sys/fs/pipe-max-size`).
fn widen(pipe: &impl std::os::fd::AsFd) {
    let _ = nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
}
