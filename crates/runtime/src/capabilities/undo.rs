//! The `undo` capability: a plugin registers the reversal of a step that changes a node as
//! it begins (an iptables DROP, `pcs resource unmanage`); the host runs the reversals, newest
//! first, when the run fails, times out or is interrupted, and forgets them when it succeeds.

use super::HostState;
use crate::contract::v2::coffer::plugin::undo;
use crate::contract::v2::types;
use crate::dry_run::{ActionKind, Admission};

impl HostState {
    /// `undo.push` and `container.push-undo-outside`: register `argv`, to run in the plugin's
    /// container on `node` where it has one, or on the node itself when `outside`.
    pub(super) fn push_reversal(
        &mut self,
        node: String,
        argv: Vec<String>,
        what: String,
        outside: bool,
    ) -> Result<u64, types::ExecError> {
        let env = self.env.clone();
        let handle = env.allow_command(&node, &argv)?;
        let wrapped = if outside {
            argv
        } else {
            env.on_node(handle, &argv)
        };
        if env.admit(&node, &wrapped, ActionKind::Reversal, Some(what.clone()))
            == Admission::Recorded
        {
            return Ok(0);
        }
        let Some(stack) = &env.undo else {
            return Err(types::ExecError::Refused(format!(
                "plugin `{}` may not register reversals outside a run",
                env.plugin.name
            )));
        };
        stack
            .push(&env.plugin.name, &node, wrapped, &what)
            .map_err(|e| types::ExecError::SpawnFailed(e.to_string()))
    }
}

impl undo::Host for HostState {
    async fn push(
        &mut self,
        node: String,
        argv: Vec<String>,
        what: String,
    ) -> wasmtime::Result<Result<u64, types::ExecError>> {
        Ok(self.push_reversal(node, argv, what, false))
    }

    async fn release(&mut self, id: u64) -> wasmtime::Result<()> {
        if let Some(stack) = &self.env.undo {
            stack.release(id)?;
        }
        Ok(())
    }
}
