//! The `exec` capability: run a command on one of the operation's nodes, with stdin, a
//! timeout and an output cap, and give the plugin its exit status, stdout and stderr.

use std::time::{Duration, Instant};

use coffer_transport::process::{self, CommandError};

use super::{HostState, OperationEnv};
use crate::contract::v2::coffer::plugin::exec;
use crate::contract::v2::types;
use crate::dry_run::Admission;

impl OperationEnv {
    /// Run `cmd`: in the plugin's container where it has one on the node, or on the node
    /// itself when `outside` (the `container` interface's `run-outside`).
    pub(super) async fn exec(
        &self,
        cmd: types::Command,
        outside: bool,
    ) -> Result<types::Output, types::ExecError> {
        let node = self.allow_command(&cmd.node, &cmd.argv)?;
        let argv = if outside {
            cmd.argv.clone()
        } else {
            self.on_node(node, &cmd.argv)
        };
        let effect = self.effect_of(&cmd.argv);
        if self.admit(&cmd.node, &argv, effect, None) == Admission::Recorded {
            return Ok(types::Output {
                exit_code: Some(0),
                stdout: Vec::new(),
                stderr: Vec::new(),
            });
        }
        self.command_event(&cmd.node, &argv, effect);
        let timeout = cmd
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.limits.default_timeout);
        process::run(node, &argv, cmd.stdin, timeout, self.limits.max_output)
            .await
            .map(|f| types::Output {
                exit_code: f.exit_code,
                stdout: f.stdout,
                stderr: f.stderr,
            })
            .map_err(exec_error)
    }
}

/// A command that did not complete, as the contract says it.
pub(super) fn exec_error(e: CommandError) -> types::ExecError {
    match e {
        CommandError::Spawn(e) => types::ExecError::SpawnFailed(e.to_string()),
        CommandError::TimedOut(d) => types::ExecError::TimedOut(d.as_millis() as u64),
        CommandError::OutputTooLarge(n) => types::ExecError::OutputTooLarge(n),
        CommandError::Io(e) => types::ExecError::Unreachable(e.to_string()),
    }
}

impl HostState {
    /// `exec.run` and `container.run-outside`: the command, with what went wrong on its node
    /// noted for the run's error, and the time counted as the host's.
    pub(super) async fn run_command(
        &mut self,
        cmd: types::Command,
        outside: bool,
    ) -> Result<types::Output, types::ExecError> {
        let env = self.env.clone();
        let t = Instant::now();
        let node = cmd.node.clone();
        let r = env.exec(cmd, outside).await;
        match &r {
            Err(e) => env.note(&node, e),
            Ok(out) if out.exit_code != Some(0) => env.note_exit(&node, out.exit_code).await,
            Ok(_) => {}
        }
        self.host_time += t.elapsed();
        r
    }
}

impl exec::Host for HostState {
    async fn run(
        &mut self,
        cmd: types::Command,
    ) -> wasmtime::Result<Result<types::Output, types::ExecError>> {
        Ok(self.run_command(cmd, false).await)
    }
}
