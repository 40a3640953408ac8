//! The host's undo stack: reversals plugins register (`undo.push`) while they change nodes.
//! When a run fails, times out or is interrupted, the host runs the ones still registered,
//! newest first, and reports each. Every change to the stack is written to a journal file
//! first, so a run killed outright leaves what `coffer recover` needs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::report::{Event, Reporter};
use coffer_transport::NodeHandle;
use coffer_transport::process;

/// How long one reversal may take.
const REVERSAL_TIMEOUT: Duration = Duration::from_secs(600);

/// One registered reversal.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reversal {
    /// Its id within the run.
    pub id: u64,
    /// The plugin that registered it.
    pub plugin: String,
    /// The node it runs on.
    pub node: String,
    /// The command line, as the node runs it (container wrapping included).
    pub argv: Vec<String>,
    /// What it reverses.
    pub what: String,
}

/// The journal of one run: its deployment and its pending reversals.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Journal {
    /// The run.
    pub run_id: String,
    /// The deployment file it ran with.
    pub deployment: String,
    /// Pending reversals, oldest first.
    pub pending: Vec<Reversal>,
}

/// Why the stack could not be kept or unwound.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    /// The journal could not be written or read.
    #[error("undo journal {path}: {source}")]
    Journal {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Some reversals failed; they stay in the journal.
    #[error(
        "{failed} reversal(s) failed and stay in {path}; fix the cause and run `coffer recover`"
    )]
    Failed {
        /// How many.
        failed: usize,
        /// The journal.
        path: PathBuf,
    },
}

/// A run's undo stack, mirrored in its journal file.
pub struct UndoStack {
    journal: Mutex<Journal>,
    next: Mutex<u64>,
    path: PathBuf,
}

/// Where journals live: `COFFER_STATE_DIR`, else the user's state directory.
pub fn journal_dir() -> PathBuf {
    coffer_repository::state_dir().join("undo")
}

/// Write `value` as JSON to `path` durably: a temporary file beside it, fsync, rename (its
/// directory created if needed). A crash leaves the old file or the new one, never half.
pub fn write_json_durably(path: &Path, value: &impl serde::Serialize) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    if let Some(dir) = path.parent() {
        // Private, as the state directory should be: only its owner reads what runs did.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec_pretty(value).expect("a journal serializes");
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn write_atomically(path: &Path, journal: &Journal) -> Result<(), UndoError> {
    write_json_durably(path, journal).map_err(|source| UndoError::Journal {
        path: path.to_path_buf(),
        source,
    })
}

impl UndoStack {
    /// An empty stack for run `run_id` of `deployment`, journalled in [`journal_dir`].
    pub fn new(run_id: &str, deployment: &str) -> Self {
        Self {
            journal: Mutex::new(Journal {
                run_id: run_id.into(),
                deployment: deployment.into(),
                pending: Vec::new(),
            }),
            next: Mutex::new(1),
            path: journal_dir().join(format!("{run_id}.json")),
        }
    }

    /// A stack resumed from a journal file (for `coffer recover`).
    pub fn load(path: &Path) -> Result<Self, UndoError> {
        let err = |source| UndoError::Journal {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read(path).map_err(err)?;
        let journal: Journal = serde_json::from_slice(&text)
            .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let next = journal.pending.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        Ok(Self {
            journal: Mutex::new(journal),
            next: Mutex::new(next),
            path: path.to_path_buf(),
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The deployment file the run used.
    pub fn deployment(&self) -> String {
        self.journal.lock().expect("undo lock").deployment.clone()
    }

    /// Pending reversals, oldest first.
    pub fn pending(&self) -> Vec<Reversal> {
        self.journal.lock().expect("undo lock").pending.clone()
    }

    /// Register a reversal; it is in the journal before this returns.
    pub fn push(
        &self,
        plugin: &str,
        node: &str,
        argv: Vec<String>,
        what: &str,
    ) -> Result<u64, UndoError> {
        let id = {
            let mut next = self.next.lock().expect("undo lock");
            let id = *next;
            *next += 1;
            id
        };
        let mut journal = self.journal.lock().expect("undo lock");
        journal.pending.push(Reversal {
            id,
            plugin: plugin.into(),
            node: node.into(),
            argv,
            what: what.into(),
        });
        write_atomically(&self.path, &journal)?;
        Ok(id)
    }

    /// Forget reversal `id` (unknown ids are ignored).
    pub fn release(&self, id: u64) -> Result<(), UndoError> {
        let mut journal = self.journal.lock().expect("undo lock");
        journal.pending.retain(|r| r.id != id);
        if journal.pending.is_empty() {
            return self.discard_locked();
        }
        write_atomically(&self.path, &journal)
    }

    fn discard_locked(&self) -> Result<(), UndoError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(UndoError::Journal {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// The run succeeded: every change stays; forget all reversals and the journal.
    pub fn discard(&self) -> Result<(), UndoError> {
        let mut journal = self.journal.lock().expect("undo lock");
        journal.pending.clear();
        self.discard_locked()
    }

    /// Run every pending reversal, newest first, on `nodes`, reporting each. Those that fail
    /// stay in the journal; the others leave it.
    pub async fn unwind(
        &self,
        nodes: &[NodeHandle],
        reporter: &dyn Reporter,
    ) -> Result<usize, UndoError> {
        let pending = self.pending();
        let mut done = 0;
        let mut failed = 0;
        for r in pending.iter().rev() {
            let outcome = match nodes.iter().find(|n| n.name == r.node) {
                None => Err(format!("node `{}` is not reachable in this run", r.node)),
                Some(node) => {
                    match process::run(node, &r.argv, Vec::new(), REVERSAL_TIMEOUT, 1 << 20).await {
                        Ok(f) if f.exit_code == Some(0) => Ok(()),
                        Ok(f) => Err(format!(
                            "exit {:?}: {}",
                            f.exit_code,
                            String::from_utf8_lossy(&f.stderr).trim()
                        )),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            reporter.report(Event::Undo {
                plugin: r.plugin.clone(),
                node: r.node.clone(),
                what: r.what.clone(),
                ok: outcome.is_ok(),
                detail: outcome.clone().err().unwrap_or_default(),
            });
            match outcome {
                Ok(()) => {
                    self.release(r.id)?;
                    done += 1;
                }
                Err(_) => failed += 1,
            }
        }
        if failed > 0 {
            return Err(UndoError::Failed {
                failed,
                path: self.path.clone(),
            });
        }
        self.discard()?;
        Ok(done)
    }
}

/// The journals left by runs that did not finish.
pub fn leftover_journals() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(journal_dir())
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_release_and_load_keep_the_journal_in_step() {
        let dir = std::env::temp_dir().join(format!("coffer-undo-test-{}", std::process::id()));
        let path = dir.join("r1.json");
        let stack = UndoStack {
            path: path.clone(),
            ..UndoStack::new("r1", "d.toml")
        };
        let a = stack.push("p", "n", vec!["true".into()], "first").unwrap();
        let b = stack
            .push("p", "n", vec!["false".into()], "second")
            .unwrap();
        let loaded = UndoStack::load(&path).unwrap();
        assert_eq!(loaded.pending().len(), 2);
        stack.release(a).unwrap();
        assert_eq!(UndoStack::load(&path).unwrap().pending()[0].id, b);
        stack.release(b).unwrap();
        assert!(!path.exists(), "an empty stack leaves no journal");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Records every event it is given.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<Event>>);

    impl Reporter for Recorder {
        fn report(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
    }

    #[tokio::test]
    async fn a_failed_run_unwinds_newest_first_and_keeps_what_could_not_be_undone() {
        let dir = std::env::temp_dir().join(format!("coffer-unwind-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let trail = dir.join("trail");
        let step = |n: &str| {
            vec![
                "sh".to_string(),
                "-c".into(),
                format!("echo {n} >> {}", trail.display()),
            ]
        };
        let stack = UndoStack {
            path: dir.join("r2.json"),
            ..UndoStack::new("r2", "d.toml")
        };
        // Two plugins' reversals, interleaved as they registered them; one fails, one is for
        // a node this run does not reach, one was released (its change undone by the plugin).
        stack.push("galera", "n1", step("1"), "unblock").unwrap();
        stack.push("redis", "n1", step("2"), "start redis").unwrap();
        let gone = stack.push("galera", "n1", step("x"), "released").unwrap();
        stack
            .push("galera", "n1", vec!["false".into()], "fails")
            .unwrap();
        stack.push("galera", "n9", step("y"), "elsewhere").unwrap();
        stack
            .push("redis", "n1", step("3"), "put the dump back")
            .unwrap();
        stack.release(gone).unwrap();
        let reporter = Recorder::default();
        let nodes = [NodeHandle::local("n1", Vec::new())];
        let err = stack.unwind(&nodes, &reporter).await.unwrap_err();
        assert!(matches!(err, UndoError::Failed { failed: 2, .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&trail).unwrap(), "3\n2\n1\n");
        let left: Vec<String> = UndoStack::load(stack.path())
            .unwrap()
            .pending()
            .into_iter()
            .map(|r| r.what)
            .collect();
        assert_eq!(
            left,
            ["fails", "elsewhere"],
            "what failed stays for `coffer recover`"
        );
        let undone: Vec<(String, bool)> = reporter
            .0
            .into_inner()
            .unwrap()
            .into_iter()
            .filter_map(|e| match e {
                Event::Undo { what, ok, .. } => Some((what, ok)),
                _ => None,
            })
            .collect();
        assert_eq!(
            undone,
            [
                ("put the dump back".to_string(), true),
                ("elsewhere".to_string(), false),
                ("fails".to_string(), false),
                ("start redis".to_string(), true),
                ("unblock".to_string(), true),
            ]
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
