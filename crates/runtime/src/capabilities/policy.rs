//! The policy every capability call passes first: the node must be one of the operation's,
//! and what is asked must be allowed by both keys — the plugin's own declaration (its
//! manifest) and the operator's grant in the deployment file. A refusal names the plugin, the
//! node, what was asked and which key is missing. Here too: how a command is wrapped to run in
//! the plugin's container, what it does by the declaration, and the run's executor asked
//! whether it really runs.

use coffer_sdk::capability::CapabilityMatcher;
use coffer_transport::NodeHandle;

use super::OperationEnv;
use crate::contract::v2::types;
use crate::dry_run::{Action, ActionKind, Admission};
use crate::report::Event;

impl OperationEnv {
    pub(super) fn node(&self, name: &str) -> Result<&NodeHandle, types::ExecError> {
        self.nodes.get(name).ok_or_else(|| {
            types::ExecError::UnknownNode(format!(
                "plugin `{}` has no node `{name}` in this operation (nodes: {})",
                self.plugin.name,
                self.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Pass when both keys allow it: the plugin's declaration (`allows` on its manifest) and
    /// the deployment's grant; otherwise refuse, saying which key is missing.
    pub(super) fn both_keys(
        &self,
        node: &str,
        allows: impl Fn(&CapabilityMatcher) -> bool,
        what: impl FnOnce() -> String,
    ) -> Result<(), types::ExecError> {
        let declared = allows(&self.matcher);
        let granted = self
            .grant
            .as_ref()
            .is_none_or(|g| g.get(node).is_some_and(|m| allows(m)));
        if declared && granted {
            Ok(())
        } else {
            Err(self.refuse(node, what(), declared))
        }
    }

    pub(super) fn refuse(&self, node: &str, what: String, declared: bool) -> types::ExecError {
        let why = if declared {
            format!(
                "not granted by the deployment (add it to [plugin.{0}.grant], or to \
                 [plugin.{0}.grant.role.ROLE] for a role of this node){1}",
                self.plugin.name,
                self.all_ungranted(node)
            )
        } else {
            "not declared in its manifest".to_string()
        };
        let detail = format!(
            "plugin `{}` may not {what} on node `{node}`: {why}",
            self.plugin.name
        );
        self.reporter.report(Event::Refused {
            plugin: self.plugin.name.clone(),
            node: node.into(),
            detail: detail.clone(),
        });
        types::ExecError::Refused(detail)
    }

    /// Everything the plugin declares that the grant on `node` lacks, as lines to paste into
    /// the grant section: one run shows every missing grant, not only the first.
    fn all_ungranted(&self, node: &str) -> String {
        let Some(granted) = self.grant.as_ref().and_then(|g| g.get(node)) else {
            return String::new();
        };
        let (commands, paths) = coffer_sdk::capability::ungranted(&self.declared, granted);
        let mut text = String::from(
            "\n  everything it declares that this node is not granted (the lines to add):",
        );
        if !commands.is_empty() {
            text.push_str(&format!("\n    commands = [{}]", commands.join(", ")));
        }
        if !paths.is_empty() {
            text.push_str(&format!("\n    paths = [{}]", paths.join(", ")));
        }
        text
    }

    /// Check a command against the node list and the plugin's declarations.
    pub(super) fn allow_command(
        &self,
        node: &str,
        argv: &[String],
    ) -> Result<&NodeHandle, types::ExecError> {
        let handle = self.node(node)?;
        self.both_keys(
            node,
            |m| m.allows_command(argv),
            || format!("run `{}`", argv.join(" ")),
        )?;
        Ok(handle)
    }

    /// Check paths against the node list and the plugin's declarations.
    pub(super) fn allow_paths(
        &self,
        node: &str,
        paths: &[String],
    ) -> Result<&NodeHandle, types::ExecError> {
        let handle = self.node(node)?;
        for p in paths {
            self.both_keys(node, |m| m.allows_path(p), || format!("access path `{p}`"))?;
        }
        Ok(handle)
    }

    /// The command line that runs the plugin's `argv` on `node`: inside the plugin's container
    /// (`podman exec -i NAME …`, streams included) where one is configured for the node.
    /// Grants are checked on the plugin's own `argv`, before this.
    pub fn on_node(&self, node: &NodeHandle, argv: &[String]) -> Vec<String> {
        match &self.container {
            Some(c) if c.applies(&node.roles) => {
                let mut wrapped = vec![
                    c.runtime.clone(),
                    "exec".into(),
                    "-i".into(),
                    c.name_on(&node.name).to_string(),
                ];
                wrapped.extend_from_slice(argv);
                wrapped
            }
            _ => argv.to_vec(),
        }
    }

    /// What the plugin's `argv` does, by its declaration.
    pub(super) fn effect_of(&self, argv: &[String]) -> ActionKind {
        if self.matcher.changes_state(argv) {
            coffer_sdk::Effect::Changes.into()
        } else {
            coffer_sdk::Effect::Reads.into()
        }
    }

    /// Ask the run's executor whether `argv` (as it would run on `node`) may run: always in a
    /// real run; in a dry run it is recorded, and only runs when it only reads.
    pub(super) fn admit(
        &self,
        node: &str,
        argv: &[String],
        effect: ActionKind,
        note: Option<String>,
    ) -> Admission {
        self.executor.admit(Action {
            plugin: self.plugin.name.clone(),
            node: node.into(),
            argv: argv.to_vec(),
            effect,
            note,
        })
    }

    pub(super) fn command_event(&self, node: &str, argv: &[String], effect: ActionKind) {
        self.reporter.report(Event::Command {
            plugin: self.plugin.name.clone(),
            node: node.into(),
            argv: argv.to_vec(),
            effect,
        });
    }
}
