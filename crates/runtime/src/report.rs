//! Events a run reports as it goes: the CLI turns them into lines and progress on a terminal,
//! or into JSON lines for automation.

use serde::Serialize;

/// One thing that happened.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A plugin logged a message.
    Log {
        /// Plugin.
        plugin: String,
        /// How much it matters.
        level: Level,
        /// Message.
        message: String,
    },
    /// A plugin reported progress.
    Progress {
        /// Plugin.
        plugin: String,
        /// Step.
        step: String,
        /// Units done.
        done: u64,
        /// Units in all, if known.
        total: Option<u64>,
    },
    /// The host ran a command for a plugin.
    Command {
        /// Plugin.
        plugin: String,
        /// Node.
        node: String,
        /// Command line.
        argv: Vec<String>,
        /// What it does: `reads`, `changes` (the node or the service) or `stores` (its output
        /// becomes an artifact).
        effect: crate::dry_run::ActionKind,
    },
    /// The host refused a plugin's request.
    Refused {
        /// Plugin.
        plugin: String,
        /// Node.
        node: String,
        /// What was refused and why.
        detail: String,
    },
    /// Bytes of an artifact stored so far (every half second while it streams).
    Bytes {
        /// Plugin.
        plugin: String,
        /// Node.
        node: String,
        /// Artifact name.
        name: String,
        /// Bytes so far.
        bytes: u64,
        /// Bytes in all when known: the artifact's size for a restore, the size the same
        /// artifact had in the previous snapshot for a backup (an estimate).
        total: Option<u64>,
        /// Seconds so far.
        seconds: f64,
    },
    /// An artifact was stored.
    Artifact {
        /// Plugin.
        plugin: String,
        /// Node.
        node: String,
        /// Artifact name.
        name: String,
        /// Bytes.
        size: u64,
        /// Seconds it took.
        seconds: f64,
    },
    /// A plugin operation started or ended.
    Step {
        /// Plugin.
        plugin: String,
        /// Which operation.
        operation: Operation,
        /// Where it is.
        status: Status,
        /// Details (the error, or a summary).
        detail: String,
    },
    /// The host ran (or failed to run) a reversal a plugin registered, unwinding a run.
    Undo {
        /// Plugin that registered it.
        plugin: String,
        /// Node.
        node: String,
        /// What it reverses.
        what: String,
        /// Whether it worked.
        ok: bool,
        /// Why not.
        detail: String,
    },
    /// A validation check.
    Check(PluginCheck),
}

/// A check a plugin's `validate` made ([`coffer_sdk::Check`]), with the plugin that made it:
/// what a validation returns and reports. Serialised flat: `plugin`, `node`, `name`, `ok`,
/// `detail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginCheck {
    /// The plugin.
    pub plugin: String,
    /// Its check.
    pub check: coffer_sdk::Check,
}

impl Serialize for PluginCheck {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let c = &self.check;
        let mut st = s.serialize_struct("PluginCheck", 5)?;
        st.serialize_field("plugin", &self.plugin)?;
        st.serialize_field("node", &c.node)?;
        st.serialize_field("name", &c.name)?;
        st.serialize_field("ok", &c.ok)?;
        st.serialize_field("detail", &c.detail)?;
        st.end()
    }
}

/// How much a logged message matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Only shown with `--verbose`.
    Debug,
    /// Worth telling.
    Info,
    /// Something the operator should look at; the run goes on.
    Warn,
    /// Something failed.
    Error,
}

/// A plugin operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Back up into a new snapshot.
    Backup,
    /// Restore from a snapshot.
    Restore,
    /// Check the live service against a snapshot.
    Validate,
    /// Restore a snapshot into throwaway places and check it (a drill).
    Drill,
}

/// Where a plugin operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// It began.
    Started,
    /// It ended well.
    Ok,
    /// It ended with an error (the detail says which).
    Failed,
    /// It was not run: no node carries its roles, or a resumed restore had done it.
    Skipped,
    /// A dry run went through it without changing anything: what it would do is in the plan.
    Planned,
}

macro_rules! display_as_serialized {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let v = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
                f.write_str(v.as_str().unwrap_or_default())
            }
        }
    )*};
}
display_as_serialized!(Level, Operation, Status);

/// Receives events.
pub trait Reporter: Send + Sync {
    /// Handle one event.
    fn report(&self, event: Event);
}

/// A reporter that drops everything (for `describe`).
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _event: Event) {}
}
