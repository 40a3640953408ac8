//! The restore journal: which plugins of a restore have started and finished, written durably
//! at each start and end, so that `coffer restore --resume RUN` continues a failed restore from the plugin that
//! failed instead of starting over (a Galera cluster already rebuilt is not rebuilt again).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One restore run's progress.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestoreProgress {
    /// The run.
    pub run_id: String,
    /// The deployment file it ran for.
    pub deployment: String,
    /// The snapshot it restores.
    pub snapshot: String,
    /// Plugins whose restore started, in order (one started and not done was cut off).
    #[serde(default)]
    pub started: Vec<String>,
    /// Plugins whose restore completed, in order.
    pub done: Vec<String>,
    /// The plugin whose restore failed last, if any.
    pub failed: Option<String>,
    /// Whether every plugin's restore completed.
    pub finished: bool,
}

/// Why a journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// No journal for that run.
    #[error("no restore journal for run `{run}` in {dir} (`coffer runs` lists past runs)")]
    Unknown {
        /// The run asked for.
        run: String,
        /// Where journals are.
        dir: PathBuf,
    },
    /// It cannot be read or written.
    #[error("restore journal {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// It is for another deployment, or already finished.
    #[error("cannot resume run `{run}`: {reason}")]
    NotResumable {
        /// The run.
        run: String,
        /// Why.
        reason: String,
    },
}

/// Where restore journals live: next to the undo journals, in the state directory.
pub fn dir() -> PathBuf {
    coffer_runtime::undo::journal_dir()
        .parent()
        .map(|p| p.join("restores"))
        .unwrap_or_else(|| PathBuf::from("restores"))
}

impl RestoreProgress {
    /// A new journal for run `run_id`.
    pub fn new(run_id: &str, deployment: &str, snapshot: &str) -> Self {
        Self {
            run_id: run_id.into(),
            deployment: deployment.into(),
            snapshot: snapshot.into(),
            started: Vec::new(),
            done: Vec::new(),
            failed: None,
            finished: false,
        }
    }

    fn path_of(run: &str) -> PathBuf {
        dir().join(format!("{run}.json"))
    }

    /// The journal of `run`, checked to be resumable for `deployment`.
    pub fn resume(run: &str, deployment: &str) -> Result<Self, ResumeError> {
        let path = Self::path_of(run);
        let text = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ResumeError::Unknown {
                run: run.into(),
                dir: dir(),
            },
            _ => ResumeError::File {
                path: path.clone(),
                reason: e.to_string(),
            },
        })?;
        let j: Self = serde_json::from_slice(&text).map_err(|e| ResumeError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let refuse = |reason: String| ResumeError::NotResumable {
            run: run.into(),
            reason,
        };
        if j.deployment != deployment {
            return Err(refuse(format!(
                "it restored deployment {}, not {deployment}",
                j.deployment
            )));
        }
        if j.finished {
            return Err(refuse("it finished; there is nothing to resume".into()));
        }
        Ok(j)
    }

    /// Write it durably (temporary file, fsync, rename).
    pub fn save(&self) -> Result<(), ResumeError> {
        let path = Self::path_of(&self.run_id);
        coffer_runtime::undo::write_json_durably(&path, self).map_err(|e| ResumeError::File {
            path: path.clone(),
            reason: e.to_string(),
        })
    }
}
