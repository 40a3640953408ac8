//! The writer lock of a repository on object storage, where there is no `flock` and two Coffer
//! hosts (two operators' underclouds) may reach one bucket: restic's protocol. A run writes
//! its lock object, then lists the others; a live one means another run holds the repository,
//! and the run deletes its own and waits or gives up. A lock is refreshed every five minutes
//! and counts as stale (ignored) thirty minutes after its last refresh, or at once when it
//! names a process of this host that no longer runs. The objects live in `coffer-locks/`:
//! restic reads its own `locks/` as encrypted files and would stop at ours.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::objects::{ObjectBackend, StoreError};

/// Where lock objects live, under the repository's prefix.
const DIR: &str = "coffer-locks/";
/// How often a held lock is written again.
const REFRESH: Duration = Duration::from_secs(300);
/// How long after its last refresh a lock no longer counts.
const STALE: Duration = Duration::from_secs(1800);

/// What a lock object says.
#[derive(Serialize, Deserialize)]
pub(crate) struct LockInfo {
    /// The Coffer host.
    pub host: String,
    /// The run's process there.
    pub pid: u32,
    /// When the lock was taken.
    pub since: jiff::Timestamp,
    /// When it was last written.
    pub refreshed: jiff::Timestamp,
}

impl LockInfo {
    fn now() -> Self {
        let now = jiff::Timestamp::now();
        Self {
            host: host_name(),
            pid: std::process::id(),
            since: now,
            refreshed: now,
        }
    }

    fn stale(&self) -> bool {
        let age = jiff::Timestamp::now().duration_since(self.refreshed);
        Duration::try_from(age).is_ok_and(|age| age > STALE)
            || (self.host == host_name()
                && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists())
    }

    /// "coffer on HOST (pid N) since T", for messages.
    pub(crate) fn holder(&self) -> String {
        format!(
            "a coffer run on {} (pid {}) since {}",
            self.host,
            self.pid,
            self.since.strftime("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Why the lock was not taken.
pub(crate) enum NotTaken {
    /// Another live run holds it.
    Held(LockInfo),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for NotTaken {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// A held lock: refreshed by a thread, deleted when dropped.
pub struct ObjectLock {
    backend: Arc<ObjectBackend>,
    key: String,
    stop: Arc<(Mutex<bool>, Condvar)>,
    refresher: Option<JoinHandle<()>>,
}

impl ObjectLock {
    /// Take the lock of the repository in `backend`, or say who holds it.
    pub(crate) fn take(backend: Arc<ObjectBackend>) -> Result<Self, NotTaken> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("the system's random source");
        let key = backend.key_of(&format!("{DIR}{}", hex::encode(id)));
        let mine = LockInfo::now();
        let store = backend.store();
        store.put(&key, serde_json::to_vec(&mine).expect("plain data"))?;
        let others = match store.list(&backend.key_of(DIR)) {
            Ok(l) => l,
            Err(e) => {
                let _ = store.delete(&key);
                return Err(e.into());
            }
        };
        for (other, _) in others.into_iter().filter(|(k, _)| *k != key) {
            let info = match store.get(&other, None) {
                Ok(bytes) => serde_json::from_slice::<LockInfo>(&bytes).ok(),
                // Deleted since it was listed: released.
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => {
                    let _ = store.delete(&key);
                    return Err(e.into());
                }
            };
            match info {
                Some(info) if info.stale() => {
                    tracing::warn!(
                        "{}: removing the stale lock of {} (last refreshed {})",
                        store.location(),
                        info.holder(),
                        info.refreshed
                    );
                    let _ = store.delete(&other);
                }
                Some(info) => {
                    let _ = store.delete(&key);
                    return Err(NotTaken::Held(info));
                }
                // Not a lock Coffer wrote: not ours to judge or remove.
                None => tracing::warn!("{}: ignoring `{other}`, not a lock", store.location()),
            }
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let refresher = {
            let (backend, key, stop) = (backend.clone(), key.clone(), stop.clone());
            std::thread::spawn(move || refresh(&backend, &key, mine, &stop))
        };
        Ok(Self {
            backend,
            key,
            stop,
            refresher: Some(refresher),
        })
    }
}

/// Write the lock again every [`REFRESH`] until told to stop.
fn refresh(backend: &ObjectBackend, key: &str, mut info: LockInfo, stop: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stop;
    let mut done = stopped.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let (guard, timeout) = wake
            .wait_timeout_while(done, REFRESH, |stop| !*stop)
            .unwrap_or_else(|e| e.into_inner());
        done = guard;
        if !timeout.timed_out() {
            return;
        }
        info.refreshed = jiff::Timestamp::now();
        if let Err(e) = backend
            .store()
            .put(key, serde_json::to_vec(&info).expect("plain data"))
        {
            tracing::warn!(
                "{}: refreshing this run's lock failed ({e}); another host may take the \
                 repository {} minutes after the last refresh",
                backend.store().location(),
                STALE.as_secs() / 60
            );
        }
    }
}

impl Drop for ObjectLock {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        // On a thread of its own: the blocking HTTP client must not run on the async
        // runtime's threads, where a run's lock is often dropped.
        let (backend, key) = (&self.backend, &self.key);
        let released = std::thread::scope(|s| s.spawn(|| backend.store().delete(key)).join());
        if let Ok(Err(e)) = released {
            tracing::warn!(
                "{}: releasing this run's lock failed ({e}): other runs wait until it is \
                 stale ({} minutes), or delete `{key}`",
                backend.store().location(),
                STALE.as_secs() / 60,
            );
        }
    }
}
