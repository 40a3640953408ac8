//! What the host saw go wrong on a node under a plugin call, whatever the plugin makes of it:
//! it tells a lost node and a timeout from a plugin's own failure.

use std::time::Duration;

use super::OperationEnv;
use crate::contract::v2::types;

/// Something the host saw go wrong on a node during a plugin call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incident {
    /// The node stopped answering (its connection broke).
    Lost {
        /// Node.
        node: String,
        /// What the transport said.
        detail: String,
    },
    /// A command ran past its timeout and was killed.
    TimedOut {
        /// Node.
        node: String,
        /// Which timeout.
        detail: String,
    },
}

impl OperationEnv {
    /// Remember `e` from `node` if it is a lost node or a timeout.
    pub(super) fn note(&self, node: &str, e: &types::ExecError) {
        let incident = match e {
            types::ExecError::Unreachable(d) => Incident::Lost {
                node: node.into(),
                detail: d.clone(),
            },
            types::ExecError::TimedOut(ms) => Incident::TimedOut {
                node: node.into(),
                detail: format!("a command ran past its timeout of {}", human_ms(*ms)),
            },
            _ => return,
        };
        self.incidents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(incident);
    }

    /// [`Self::note`] for a stream call's error, and [`Self::note_exit`] for a failed command.
    pub(super) async fn note_stream(&self, node: &str, e: &types::StreamError) {
        match e {
            types::StreamError::Exec(e) => self.note(node, e),
            types::StreamError::CommandFailed(f) => self.note_exit(node, f.exit_code).await,
            _ => {}
        }
    }

    /// A command on an SSH node that ended with 255 (`ssh`'s own failure) or without a status
    /// may mean the connection broke rather than the command failed: a `true` sent the same way
    /// tells. If it fails too, the node is lost.
    pub(super) async fn note_exit(&self, node: &str, code: Option<i32>) {
        let Some(handle) = self.nodes.get(node).filter(|n| !n.is_local()) else {
            return;
        };
        if code.is_some_and(|c| c != 255) {
            return;
        }
        let probe = async {
            let mut p = handle
                .spawn(&["true".to_string()])
                .await
                .map_err(|e| e.to_string())?;
            match p.wait().await {
                Ok(Some(0)) => Ok(()),
                Ok(other) => Err(format!("it ended with {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        };
        let answer = tokio::time::timeout(Duration::from_secs(10), probe)
            .await
            .unwrap_or_else(|_| Err("no answer in 10 s".into()));
        if let Err(why) = answer {
            self.incidents
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Incident::Lost {
                    node: node.into(),
                    detail: format!(
                        "its connection broke under a command (a `true` sent after it failed too: {why})"
                    ),
                });
        }
    }
}

fn human_ms(ms: u64) -> String {
    format!("{:?}", Duration::from_millis(ms))
}
