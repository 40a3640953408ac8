//! What a dry run records: every command a run would execute, in order, with whether it
//! changes state. Commands declared `reads` run for real (the plugin sees real answers); the
//! rest, and everything that would store or extract an artifact, are only recorded.

use std::sync::Mutex;

use serde::Serialize;

/// What one recorded command does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// Declared `reads`: it ran for real.
    Reads,
    /// It may change the node or the service: not run.
    Changes,
    /// Its output would be stored in the repository as an artifact: not run.
    Stores,
    /// A reversal a plugin registers: it runs only if the run fails.
    Reversal,
}

/// One command of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Action {
    /// Plugin.
    pub plugin: String,
    /// Node.
    pub node: String,
    /// The command line, as the real run would execute it (container wrapping included).
    pub argv: Vec<String>,
    /// What it does.
    pub effect: Effect,
    /// What it is for, when the host adds it: `stores artifact dump.rdb`, `from artifact …`,
    /// `reversal: …`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One plugin operation of the plan, in run order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Plugin.
    pub plugin: String,
    /// `backup` or `restore`.
    pub operation: String,
    /// Nodes it acts on.
    pub nodes: Vec<String>,
    /// Whether the plugin was called to list its commands (a 1.x plugin is not).
    pub called: bool,
    /// How it runs or why it was not called.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// What a dry run found: the plugin operations in order and every command they would run.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// `backup` or `restore`.
    pub operation: String,
    /// For a restore: the snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Plugin operations, in run order.
    pub steps: Vec<Step>,
    /// Commands, in the order the plugins asked for them.
    pub actions: Vec<Action>,
    /// Run afterwards on the undercloud nodes (`coffer restore --undercloud`), if configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub then: Option<Vec<String>>,
}

/// The commands a dry run met, shared by every plugin call of the run.
#[derive(Debug, Default)]
pub struct DryRun {
    actions: Mutex<Vec<Action>>,
    steps: Mutex<Vec<Step>>,
}

impl DryRun {
    /// Record a plugin operation.
    pub fn step(&self, step: Step) {
        self.steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(step);
    }

    /// Whether a plugin operation was recorded.
    pub fn has_steps(&self) -> bool {
        !self
            .steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// The plan of `operation` so far.
    pub fn plan(&self, operation: &str, snapshot: Option<String>) -> Plan {
        Plan {
            operation: operation.into(),
            snapshot,
            steps: self.steps.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            actions: self.actions(),
            then: None,
        }
    }

    /// Record an action.
    pub fn record(&self, action: Action) {
        self.actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(action);
    }

    /// Everything recorded so far, in order.
    pub fn actions(&self) -> Vec<Action> {
        self.actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
