//! Adapters between byte streams and `rustic_core`: a one-entry source, and readers and writers
//! that count and hash what passes through them.

use std::ffi::OsStr;
use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustic_core::repofile::{Metadata, Node, NodeType};
use sha2::{Digest, Sha256};

/// Read size towards the source. rustic_core's chunker reads in tiny pieces; without this
/// buffer every one of them would be a read on a pipe (ten times slower, measured).
pub const READ_BUFFER: usize = 1 << 20;

/// The node of a stream stored at `path`: a file, readable by its owner, dated now (nothing
/// is ever taken from a parent snapshot for it).
pub(crate) fn stream_node(path: &str) -> Node {
    let name = std::path::Path::new(path)
        .file_name()
        .unwrap_or(OsStr::new("stream"));
    let meta = Metadata {
        mtime: Some(jiff::Timestamp::now()),
        mode: Some(0o600),
        ..Metadata::default()
    };
    Node::new_node(name, NodeType::File, meta)
}

/// What a [`HashingReader`] saw.
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Bytes read.
    pub size: u64,
    /// SHA-256 of them, hex.
    pub sha256: String,
    /// Whether the end of the stream was reached.
    pub finished: bool,
    /// The first read error, if any.
    pub error: Option<io::Error>,
}

#[derive(Default)]
struct State {
    hasher: Sha256,
    size: u64,
    finished: bool,
    error: Option<io::Error>,
}

/// Where the stats of a [`HashingReader`] are collected once the reader is gone.
pub struct StatsHandle(Arc<Mutex<State>>);

impl StatsHandle {
    /// The stats so far.
    pub fn finish(self) -> StreamStats {
        let mut s = self.0.lock().expect("stats lock");
        let hasher = std::mem::take(&mut s.hasher);
        StreamStats {
            size: s.size,
            sha256: hex::encode(hasher.finalize()),
            finished: s.finished,
            error: s.error.take(),
        }
    }
}

/// A reader that counts and hashes, and remembers the first error (which rustic_core would
/// otherwise only log).
pub struct HashingReader<R> {
    inner: R,
    state: Arc<Mutex<State>>,
    progress: Arc<AtomicU64>,
    /// Whether to hash at all (a tree's streams are checked by restic's own hashes).
    hash: bool,
}

/// The reader rustic_core gets: a large buffer in front of a [`HashingReader`], so its tiny
/// reads are served from memory while the pipe is read, and hashed, a megabyte at a time.
pub type MeteredReader<R> = BufReader<HashingReader<R>>;

impl<R: Read> HashingReader<R> {
    /// Wrap `inner` for rustic_core; the handle gives the stats afterwards, `progress` counts
    /// bytes as they pass.
    pub fn metered(inner: R, progress: Arc<AtomicU64>) -> (MeteredReader<R>, StatsHandle) {
        Self::buffered(inner, progress, true)
    }

    /// [`Self::metered`] without the SHA-256: it counts, buffers and keeps the first error.
    pub fn counted(inner: R, progress: Arc<AtomicU64>) -> (MeteredReader<R>, StatsHandle) {
        Self::buffered(inner, progress, false)
    }

    fn buffered(inner: R, progress: Arc<AtomicU64>, hash: bool) -> (MeteredReader<R>, StatsHandle) {
        let state = Arc::new(Mutex::new(State::default()));
        let reader = Self {
            inner,
            state: state.clone(),
            progress,
            hash,
        };
        (
            BufReader::with_capacity(READ_BUFFER, reader),
            StatsHandle(state),
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let res = self.inner.read(buf);
        let mut s = self.state.lock().expect("stats lock");
        match &res {
            Ok(0) if !buf.is_empty() => s.finished = true,
            Ok(n) => {
                if self.hash {
                    s.hasher.update(&buf[..*n]);
                }
                s.size += *n as u64;
                self.progress.fetch_add(*n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                if s.error.is_none() {
                    s.error = Some(io::Error::new(e.kind(), e.to_string()));
                }
            }
        }
        res
    }
}

/// A writer that counts and hashes, and remembers the first write error.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Option<Sha256>,
    size: u64,
    error: Option<io::Error>,
}

impl<W: Write> HashingWriter<W> {
    /// Wrap `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Some(Sha256::new()),
            size: 0,
            error: None,
        }
    }

    /// Wrap `inner`, counting and keeping the first error but not hashing (for a stream
    /// restic's own hashes vouch for).
    pub fn unhashed(inner: W) -> Self {
        Self {
            hasher: None,
            ..Self::new(inner)
        }
    }

    /// The first write error, if any.
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    /// Bytes written and their SHA-256 (empty when [`Self::unhashed`]).
    pub fn finish(self) -> (u64, String) {
        let digest = self.hasher.map(|h| hex::encode(h.finalize()));
        (self.size, digest.unwrap_or_default())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&buf[..n]);
                }
                self.size += n as u64;
                Ok(n)
            }
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(io::Error::new(e.kind(), e.to_string()));
                }
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the reads made on it.
    struct Counting {
        left: usize,
        reads: Arc<Mutex<usize>>,
    }

    impl Read for Counting {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            *self.reads.lock().unwrap() += 1;
            let n = buf.len().min(self.left).min(64 * 1024);
            buf[..n].fill(7);
            self.left -= n;
            Ok(n)
        }
    }

    /// rustic_core's tiny reads must not reach the pipe: the trap in FIELD-NOTES.
    #[test]
    fn tiny_reads_are_buffered() {
        let reads = Arc::new(Mutex::new(0));
        let total = 32 << 20;
        let (mut r, stats) = HashingReader::metered(
            Counting {
                left: total,
                reads: reads.clone(),
            },
            Arc::default(),
        );
        let mut small = [0u8; 512];
        while r.read(&mut small).unwrap() > 0 {}
        let stats = stats.finish();
        assert_eq!(stats.size, total as u64);
        assert!(stats.finished);
        // 64 KiB per pipe read, so at least 512 reads; 512-byte reads would be 65536.
        assert!(
            *reads.lock().unwrap() <= total / (64 * 1024) + 64,
            "reads: {}",
            reads.lock().unwrap()
        );
    }

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "node went away"))
        }
    }

    /// rustic_core only logs a failed read: the reader must remember it.
    #[test]
    fn read_errors_are_remembered() {
        let (mut r, stats) = HashingReader::metered(Failing, Arc::default());
        assert!(r.read(&mut [0u8; 16]).is_err());
        let stats = stats.finish();
        assert!(!stats.finished);
        assert_eq!(stats.error.unwrap().kind(), io::ErrorKind::BrokenPipe);
    }
}
