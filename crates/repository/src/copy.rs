//! Copying a Coffer snapshot into a second repository (the 3-2-1 rule: one copy off-site).
//!
//! Each artifact is read back from the source, its SHA-256 verified, stored again in the
//! target and checked once more against the manifest; the manifest is written last, naming the
//! new artifact snapshots and keeping the original time (so retention judges the copy by when
//! the backup ran). A failure deletes what the copy stored: the target never holds a half
//! copy that looks complete. Artifacts are stored by the target's own chunker, so copies of
//! nightly runs deduplicate against each other there. A tree artifact is copied as the tar
//! stream it reads back as (one file in the target).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::Serialize;

use crate::{ArtifactReader, ArtifactWriter, CofferSnapshot, RepoError, Result};

/// One snapshot copied.
#[derive(Clone, Debug, Serialize)]
pub struct Copied {
    /// Its id in the source.
    pub from: String,
    /// Its id in the target.
    pub to: String,
    /// The run that wrote it (the same in both: it says which snapshots a target has).
    pub run_id: String,
    /// Artifacts copied.
    pub artifacts: usize,
    /// Their bytes.
    pub bytes: u64,
}

impl ArtifactWriter {
    /// Copy Coffer snapshot `snap` of `source` into this repository, counting bytes into
    /// `progress`. Blocking: call it from a blocking thread, holding this repository's lock.
    pub fn copy_from(
        &self,
        source: &ArtifactReader,
        snap: &CofferSnapshot,
        progress: Arc<AtomicU64>,
    ) -> Result<Copied> {
        let time = source.snapshot_time(&snap.id)?;
        let mut manifest = snap.manifest.clone();
        let mut stored = Vec::new();
        let outcome = (|| {
            for a in &mut manifest.artifacts {
                let new = self.copy_artifact(source, a, &snap.manifest.run_id, &progress)?;
                stored.push(new.snapshot.clone());
                if a.layout == crate::Layout::Tree {
                    // A tree is copied as the tar stream it reads back as, kept whole.
                    a.layout = crate::Layout::Blob;
                    a.path = crate::artifact_path(&a.node, &a.plugin, &a.name);
                    a.size = new.size;
                    a.sha256 = new.sha256;
                }
                a.snapshot = new.snapshot;
            }
            self.commit_at(&manifest, Some(time))
        })();
        match outcome {
            Ok(to) => Ok(Copied {
                from: snap.id.clone(),
                to,
                run_id: manifest.run_id.clone(),
                artifacts: manifest.artifacts.len(),
                bytes: manifest.total_size(),
            }),
            Err(e) => {
                if let Err(cleanup) = self.discard(&stored) {
                    tracing::warn!(
                        "the {} artifact(s) copied before the failure stay in {} as leftovers \
                         of a run that never completed (the next backup or copy there removes \
                         them): {cleanup}",
                        stored.len(),
                        self.path.display()
                    );
                }
                Err(e)
            }
        }
    }

    /// Store artifact `a` of `source` here; its new artifact snapshot. A tree artifact is
    /// stored as the tar stream it reads back as (its reading checked its length and restic's
    /// MACs every blob): the copy restores on its own, though not as a tree.
    fn copy_artifact(
        &self,
        source: &ArtifactReader,
        a: &crate::ArtifactRecord,
        run_id: &str,
        progress: &Arc<AtomicU64>,
    ) -> Result<crate::Stored> {
        let (rx, tx) = std::io::pipe().map_err(|source| RepoError::StreamRead {
            path: a.path.clone(),
            source,
        })?;
        let (read, stored) = std::thread::scope(|scope| {
            // The reader verifies the source's SHA-256 as it goes; the pipe closes when it ends.
            let reading = scope.spawn(move || source.read(a, tx));
            let stored = self.store(&a.node, &a.plugin, &a.name, run_id, rx, progress.clone());
            (reading.join().expect("the reading thread"), stored)
        });
        let stored = match (read, stored) {
            (Ok(()), Ok(stored)) => stored,
            (Err(e), stored) => {
                if let Ok(s) = stored {
                    self.discard(&[s.snapshot])?;
                }
                return Err(e);
            }
            (Ok(()), Err(e)) => return Err(e),
        };
        if a.layout == crate::Layout::Tree {
            return Ok(stored);
        }
        if stored.sha256 != a.sha256 || stored.size != a.size {
            self.discard(std::slice::from_ref(&stored.snapshot))?;
            return Err(RepoError::Integrity {
                snapshot: a.snapshot.clone(),
                path: a.path.clone(),
                expected: a.sha256.clone(),
                actual: stored.sha256,
            });
        }
        Ok(stored)
    }
}
