//! What a dry run records: every command a run would execute, in order, with whether it
//! changes state. Commands declared `reads` run for real (the plugin sees real answers); the
//! rest, and everything that would store or extract an artifact, are only recorded.

use std::sync::Mutex;

use serde::Serialize;

use crate::report::Operation;

/// What one planned action is: a plugin's command, by what its declaration says it does
/// ([`coffer_sdk::Effect`]), or one of the host's own (storing an artifact, a reversal).
/// Serialised as an action's `effect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Declared `reads`: it ran for real.
    Reads,
    /// It may change the node or the service: not run.
    Changes,
    /// Its output would be stored in the repository as an artifact: not run.
    Stores,
    /// A reversal a plugin registers: it runs only if the run fails.
    Reversal,
}

impl From<coffer_sdk::Effect> for ActionKind {
    fn from(effect: coffer_sdk::Effect) -> Self {
        match effect {
            coffer_sdk::Effect::Reads => Self::Reads,
            coffer_sdk::Effect::Changes => Self::Changes,
        }
    }
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
    pub effect: ActionKind,
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
    /// Backup or restore.
    pub operation: Operation,
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
    /// Backup or restore.
    pub operation: Operation,
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
    /// Nodes the run needs that could not be reached: the plan is made without them, and the
    /// real run would stop on them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<Unreachable>,
}

/// A node a run needs that did not answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unreachable {
    /// The node.
    pub node: String,
    /// What reaching it said.
    pub reason: String,
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
    pub fn plan(&self, operation: Operation, snapshot: Option<String>) -> Plan {
        Plan {
            operation,
            snapshot,
            steps: self.steps.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            actions: self.actions(),
            then: None,
            unreachable: Vec::new(),
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

/// Whether a command a plugin asked for runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Run it.
    Run,
    /// Do not run it: it was recorded for the plan.
    Recorded,
}

/// Decides, for every command and artifact movement of a run, whether it really happens. A
/// run holds one executor from its start: [`Live`] lets everything happen, a [`DryRun`]
/// records everything and lets only what reads happen (rustic_core's `DryRunBackend` is the
/// model). The capabilities ask it before every command they run, so a dry run cannot change a
/// node or store an artifact by a forgotten check.
pub trait Executor: Send + Sync {
    /// Admit `action`, or record it instead.
    fn admit(&self, action: Action) -> Admission;
    /// Note that a plugin operation is part of the run (a plan lists them).
    fn step(&self, step: Step);
    /// Whether this executor only records: a plugin is then called with `dry-run` set, and
    /// nothing durable (a snapshot, a restore's progress) is written.
    fn is_dry_run(&self) -> bool;
}

/// The executor of a real run: everything happens.
#[derive(Clone, Copy, Debug, Default)]
pub struct Live;

impl Executor for Live {
    fn admit(&self, _action: Action) -> Admission {
        Admission::Run
    }

    fn step(&self, _step: Step) {}

    fn is_dry_run(&self) -> bool {
        false
    }
}

impl Executor for DryRun {
    fn admit(&self, action: Action) -> Admission {
        let reads = action.effect == ActionKind::Reads;
        self.record(action);
        if reads {
            Admission::Run
        } else {
            Admission::Recorded
        }
    }

    fn step(&self, step: Step) {
        DryRun::step(self, step)
    }

    fn is_dry_run(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(effect: ActionKind) -> Action {
        Action {
            plugin: "p".into(),
            node: "n".into(),
            argv: vec!["x".into()],
            effect,
            note: None,
        }
    }

    #[test]
    fn a_dry_run_admits_only_what_reads_and_records_everything() {
        let dry = DryRun::default();
        let admitted: Vec<Admission> = [
            ActionKind::Reads,
            ActionKind::Changes,
            ActionKind::Stores,
            ActionKind::Reversal,
        ]
        .into_iter()
        .map(|e| Executor::admit(&dry, action(e)))
        .collect();
        assert_eq!(
            admitted,
            [
                Admission::Run,
                Admission::Recorded,
                Admission::Recorded,
                Admission::Recorded
            ]
        );
        assert_eq!(dry.actions().len(), 4);
        assert!(Executor::is_dry_run(&dry));
    }

    #[test]
    fn a_live_run_admits_everything_and_records_nothing() {
        for e in [ActionKind::Reads, ActionKind::Changes, ActionKind::Stores] {
            assert_eq!(Live.admit(action(e)), Admission::Run);
        }
        assert!(!Live.is_dry_run());
    }
}
