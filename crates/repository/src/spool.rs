//! Artifacts read and verified once, kept for the rest of the run.
//!
//! A restore must not change a node before the artifact it writes from has been read whole and
//! found intact; a validation then reads the same artifact again, and `restore --delete` lists
//! its members first. Reading it from the repository each time costs a decryption and, on an
//! object store, a download per read. The spool keeps the verified bytes instead: small
//! artifacts in memory, larger ones in an unlinked temporary file (in `TMPDIR`), which the
//! kernel reclaims however the process ends. What does not fit — too little free space where
//! the temporary file would go — is not kept, and is read from the repository again.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Largest artifact kept in memory.
const MEMORY_ARTIFACT: u64 = 32 << 20;
/// Most bytes kept in memory for a run.
const MEMORY_TOTAL: u64 = 128 << 20;
/// Free space a spool file leaves on its filesystem besides its own size again.
const LEAVE_FREE: u64 = 2 << 30;
/// Size of the pieces a spool file is read back in.
const PIECE: usize = 1 << 20;

/// Where a kept artifact's bytes are.
#[derive(Clone)]
pub(crate) enum Kept {
    /// In memory.
    Memory(Arc<Vec<u8>>),
    /// In an unlinked temporary file, `len` bytes long.
    File(Arc<File>, u64),
}

impl Kept {
    /// Write the bytes into `w`.
    pub(crate) fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        match self {
            Kept::Memory(bytes) => w.write_all(bytes),
            Kept::File(file, len) => {
                let mut buf = vec![0u8; PIECE];
                let mut at = 0u64;
                while at < *len {
                    let want = PIECE.min((*len - at) as usize);
                    let n = file.read_at(&mut buf[..want], at)?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the spooled artifact is shorter than it was written",
                        ));
                    }
                    w.write_all(&buf[..n])?;
                    at += n as u64;
                }
                Ok(())
            }
        }
    }
}

/// Where a new spool for `size` bytes goes.
pub(crate) enum Room {
    /// Into memory.
    Memory,
    /// Into this temporary file.
    File(File),
    /// Nowhere: read the artifact from the repository each time.
    None,
}

/// The artifacts of one reader that were read whole and verified.
pub(crate) struct Spool {
    dir: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    kept: HashMap<String, Kept>,
    /// Verified but not kept (no room).
    verified: HashSet<String>,
    in_memory: u64,
}

impl Spool {
    /// A spool whose files go to `dir` (the system's temporary directory when `None`).
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            state: Mutex::default(),
        }
    }

    fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// The kept bytes of artifact `key`.
    pub(crate) fn get(&self, key: &str) -> Option<Kept> {
        self.state.lock().expect("spool").kept.get(key).cloned()
    }

    /// Whether artifact `key` was read whole and verified.
    pub(crate) fn verified(&self, key: &str) -> bool {
        let s = self.state.lock().expect("spool");
        s.kept.contains_key(key) || s.verified.contains(key)
    }

    /// Where `size` bytes would be kept, reserving memory for them.
    pub(crate) fn room(&self, size: u64) -> Room {
        {
            let mut s = self.state.lock().expect("spool");
            if size <= MEMORY_ARTIFACT && s.in_memory + size <= MEMORY_TOTAL {
                s.in_memory += size;
                return Room::Memory;
            }
        }
        let dir = self.dir();
        if !fits(&dir, size) {
            return Room::None;
        }
        match tempfile::tempfile_in(&dir) {
            Ok(file) => Room::File(file),
            Err(_) => Room::None,
        }
    }

    /// Give back memory reserved by [`Self::room`] for bytes that were not kept.
    pub(crate) fn release(&self, size: u64) {
        let mut s = self.state.lock().expect("spool");
        s.in_memory = s.in_memory.saturating_sub(size);
    }

    /// Remember artifact `key` as verified, kept in `kept` if any.
    pub(crate) fn keep(&self, key: String, kept: Option<Kept>) {
        let mut s = self.state.lock().expect("spool");
        match kept {
            Some(kept) => {
                s.kept.insert(key, kept);
            }
            None => {
                s.verified.insert(key);
            }
        }
    }
}

/// Whether `size` more bytes fit on the filesystem of `dir` and leave enough free: as much
/// again (a restore may write the same bytes to the same filesystem), and [`LEAVE_FREE`].
fn fits(dir: &Path, size: u64) -> bool {
    let Ok(free) = fs4::available_space(dir) else {
        return false;
    };
    free.saturating_sub(size.saturating_mul(2)) >= LEAVE_FREE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_artifacts_go_to_memory_until_the_budget_is_spent() {
        let spool = Spool::new(None);
        let mut memory = 0;
        for _ in 0..(MEMORY_TOTAL / MEMORY_ARTIFACT) {
            assert!(matches!(spool.room(MEMORY_ARTIFACT), Room::Memory));
            memory += 1;
        }
        assert_eq!(memory, 4);
        assert!(!matches!(spool.room(MEMORY_ARTIFACT), Room::Memory));
        spool.release(MEMORY_ARTIFACT);
        assert!(matches!(spool.room(1), Room::Memory));
    }

    #[test]
    fn a_spool_file_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(Some(dir.path().into()));
        let Room::File(mut file) = spool.room(MEMORY_ARTIFACT + 1) else {
            panic!("an artifact above the memory limit goes to a file");
        };
        let bytes: Vec<u8> = (0..3 * PIECE + 17).map(|i| (i % 251) as u8).collect();
        file.write_all(&bytes).unwrap();
        let kept = Kept::File(Arc::new(file), bytes.len() as u64);
        spool.keep("a".into(), Some(kept));
        let mut out = Vec::new();
        spool.get("a").unwrap().write_to(&mut out).unwrap();
        assert_eq!(out, bytes);
        assert!(spool.verified("a") && !spool.verified("b"));
        // Nothing is left in the directory: the file has no name.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn nothing_is_spooled_that_would_fill_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let free = fs4::available_space(dir.path()).unwrap();
        assert!(!fits(dir.path(), free / 2));
        assert!(matches!(
            Spool::new(Some(dir.path().into())).room(free / 2),
            Room::None
        ));
    }
}
