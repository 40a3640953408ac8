//! The `container` capability (2.2): which container a plugin's commands run in on a node, and
//! commands and reversals on the node itself, outside it — the steps a containerised service
//! needs from its node (stop and start the container, replace the datadir behind its volume).
//! The same policy as `exec` and `undo`: declared, granted, planned in a dry run.

use super::HostState;
use crate::contract::v2::coffer::plugin::container;
use crate::contract::v2::types;

impl container::Host for HostState {
    async fn on_node(
        &mut self,
        node: String,
    ) -> wasmtime::Result<Option<container::ContainerInfo>> {
        let env = &self.env;
        Ok(match (&env.container, env.nodes.get(&node)) {
            (Some(c), Some(handle)) if c.applies(&handle.roles) => Some(container::ContainerInfo {
                runtime: c.runtime.clone(),
                name: c.name_on(&node).to_string(),
            }),
            _ => None,
        })
    }

    async fn run_outside(
        &mut self,
        cmd: types::Command,
    ) -> wasmtime::Result<Result<types::Output, types::ExecError>> {
        Ok(self.run_command(cmd, true).await)
    }

    async fn push_undo_outside(
        &mut self,
        node: String,
        argv: Vec<String>,
        what: String,
    ) -> wasmtime::Result<Result<u64, types::ExecError>> {
        Ok(self.push_reversal(node, argv, what, true))
    }
}
