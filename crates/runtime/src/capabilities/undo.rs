//! The `undo` capability: a plugin registers the reversal of a step that changes a node as
//! it begins (an iptables DROP, `pcs resource unmanage`); the host runs the reversals, newest
//! first, when the run fails, times out or is interrupted, and forgets them when it succeeds.

use super::HostState;
use crate::contract::v2::coffer::plugin::undo;
use crate::contract::v2::types;
use crate::dry_run::{Admission, Effect};

impl undo::Host for HostState {
    async fn push(
        &mut self,
        node: String,
        argv: Vec<String>,
        what: String,
    ) -> wasmtime::Result<Result<u64, types::ExecError>> {
        let env = self.env.clone();
        let handle = match env.allow_command(&node, &argv) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        let wrapped = env.on_node(handle, &argv);
        if env.admit(&node, &wrapped, Effect::Reversal, Some(what.clone())) == Admission::Recorded {
            return Ok(Ok(0));
        }
        let Some(stack) = &env.undo else {
            return Ok(Err(types::ExecError::Refused(format!(
                "plugin `{}` may not register reversals outside a run",
                env.plugin.name
            ))));
        };
        Ok(stack
            .push(&env.plugin.name, &node, wrapped, &what)
            .map_err(|e| types::ExecError::SpawnFailed(e.to_string())))
    }

    async fn release(&mut self, id: u64) -> wasmtime::Result<()> {
        if let Some(stack) = &self.env.undo {
            stack.release(id)?;
        }
        Ok(())
    }
}
