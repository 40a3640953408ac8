//! Packs uploaded in the background, several at once. rustic_core hands packs to its backend
//! one at a time and waits for each; on an object store a PUT takes long enough that the
//! packer stalls behind it. Here a pack's PUT starts on a thread of its own and the write
//! returns; at most [`IN_FLIGHT`] run at once. Everything else written or removed — an index
//! naming those packs, a snapshot, a deletion — first waits until every pack in flight is
//! stored, and fails if one was not: nothing ever refers to a pack that is not there.

use std::sync::{Arc, Condvar, Mutex};

use crate::objects::StoreError;

/// Most pack uploads at once (each holds its pack, up to tens of MiB, in memory).
const IN_FLIGHT: usize = 3;

/// The uploads of one backend.
#[derive(Default)]
pub(crate) struct Uploads {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    running: usize,
    /// The first upload that failed, with its key, until it is reported.
    failed: Option<(String, StoreError)>,
}

impl Uploads {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("uploads lock")
    }

    /// Start `put` (storing `key`) on its own thread once fewer than [`IN_FLIGHT`] run; an
    /// earlier upload's failure is returned instead.
    pub(crate) fn start(
        self: &Arc<Self>,
        key: String,
        put: impl FnOnce() -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), (String, StoreError)> {
        {
            let mut s = self.lock();
            while s.running >= IN_FLIGHT && s.failed.is_none() {
                s = self.changed.wait(s).expect("uploads lock");
            }
            if let Some(failed) = s.failed.take() {
                return Err(failed);
            }
            s.running += 1;
        }
        let this = self.clone();
        std::thread::spawn(move || {
            let done = put();
            let mut s = this.lock();
            s.running -= 1;
            if let Err(e) = done
                && s.failed.is_none()
            {
                s.failed = Some((key, e));
            }
            drop(s);
            this.changed.notify_all();
        });
        Ok(())
    }

    /// Wait until no upload runs; the first that failed, if one did.
    pub(crate) fn settle(&self) -> Result<(), (String, StoreError)> {
        let mut s = self.lock();
        while s.running > 0 {
            s = self.changed.wait(s).expect("uploads lock");
        }
        match s.failed.take() {
            Some(failed) => Err(failed),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn uploads_overlap_up_to_the_limit_and_settle_waits_for_all() {
        let uploads = Arc::new(Uploads::default());
        let (now, most, done) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        for i in 0..10 {
            let (now, most, done) = (now.clone(), most.clone(), done.clone());
            uploads
                .start(format!("data/{i}"), move || {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    now.fetch_sub(1, Ordering::SeqCst);
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .unwrap();
        }
        uploads.settle().unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 10);
        assert!(most.load(Ordering::SeqCst) > 1, "uploads never overlapped");
        assert!(most.load(Ordering::SeqCst) <= IN_FLIGHT);
    }

    #[test]
    fn a_failed_upload_fails_the_next_write_with_its_key() {
        let uploads = Arc::new(Uploads::default());
        uploads
            .start("data/ab/abcd".into(), || {
                Err(StoreError::Down("reset".into()))
            })
            .unwrap();
        uploads.start("data/cd/cdef".into(), || Ok(())).unwrap();
        let (key, e) = uploads.settle().unwrap_err();
        assert_eq!(key, "data/ab/abcd");
        assert!(e.to_string().contains("reset"));
        // Reported once; the backend goes on (rustic stops the run on the error).
        uploads.settle().unwrap();
    }
}
