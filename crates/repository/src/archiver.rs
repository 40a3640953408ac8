//! Coffer's archiver: a stream of entries in tree order (a node's listed paths, or one stream)
//! made into restic trees and data blobs, written with [`PackWriter`]. rustic_core's archiver
//! did this before; it chunks byte by byte and lets no caller reuse what it knows, so Coffer
//! does it itself, in restic's format (restic and rustic read the result as their own):
//! - each file is cut by [`Chunker`] over whole buffers (a file read into memory is cut in
//!   place, without a copy), hashed here and compressed and encrypted on the workers;
//! - a changed file whose parent had content is first matched against the parent's chunks:
//!   where the bytes at a parent chunk's boundary hash to that chunk, it is the chunk the
//!   rolling hash would cut there too (a cut depends only on the bytes since the previous
//!   cut), so it is taken without rolling over it; the rolling hash runs only from a chunk that
//!   differs until its cuts meet the parent's boundaries again. The result is exactly a full
//!   pass's;
//! - an unchanged file takes the parent's content, whose blobs must be in the index.

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;

use bytes::Bytes;
use rustic_core::repofile::{BlobType, Metadata, Node, NodeType, SnapshotSummary, Tree};
use rustic_core::{BlobId, DataId, Id, TreeId};
use sha2::{Digest, Sha256};

use crate::chunker::Chunker;
use crate::pack_writer::{PackWriter, Written};

/// A file's content, as the archiver reads it.
pub(crate) enum Body {
    /// Read whole already.
    Memory(Bytes),
    /// To be read to its end.
    Stream(Box<dyn Read + Send>),
    /// Unchanged since the parent: its content is the parent's.
    Parent,
}

/// One entry: its absolute path, its node (content not yet set), a file's content.
pub(crate) struct Entry {
    pub path: Vec<u8>,
    pub node: Node,
    pub body: Option<Body>,
}

/// Why archiving stopped.
#[derive(Debug)]
pub(crate) enum Failed {
    /// Reading an entry's content failed.
    Read(io::Error),
    /// Storing failed, or the parent or index do not hold what they should.
    Store(String),
}

/// What the archiver knows of the repository: the uncompressed length of a blob in its index.
pub(crate) type IndexLookup<'a> = dyn Fn(BlobType, &BlobId) -> Option<u32> + Sync + 'a;

/// The parent's node at an absolute path.
pub(crate) type ParentNode<'a> = dyn FnMut(&[u8]) -> Option<Node> + 'a;

struct Dir {
    /// Relative to the root, no leading `/` (the root is empty).
    path: Vec<u8>,
    node: Node,
    tree: Tree,
}

/// Where blobs go: written unless the repository has them.
struct Store<'a> {
    packs: PackWriter,
    index: &'a IndexLookup<'a>,
    /// Blobs this run wrote and indexed before (the repository's index was read at its start).
    seen: &'a Mutex<HashSet<BlobId>>,
    /// Blobs this archiver writes. They join `seen` once their index is written: an archive
    /// running beside this one may then refer to them, never before (if this one failed,
    /// its snapshot would name blobs no index holds).
    mine: Mutex<HashSet<BlobId>>,
}

impl Store<'_> {
    /// Whether blob `id` is stored already (then it is not written again).
    fn known(&self, tpe: BlobType, id: &BlobId) -> bool {
        self.mine.lock().expect("blobs lock").contains(id)
            || self.seen.lock().expect("seen lock").contains(id)
            || (self.index)(tpe, id).is_some()
    }

    /// Store blob `data` unless it is there already.
    fn blob(&self, tpe: BlobType, id: BlobId, data: Bytes) -> Result<(), Failed> {
        if self.known(tpe, &id) {
            return Ok(());
        }
        self.mine.lock().expect("blobs lock").insert(id);
        self.packs.add(tpe, id, data).map_err(Failed::Store)
    }

    /// Hash and store a chunk; its id.
    fn chunk(&self, chunk: Bytes) -> Result<DataId, Failed> {
        let id = DataId::from(hash(&chunk));
        self.blob(BlobType::Data, BlobId::from(*id), chunk)?;
        Ok(id)
    }
}

/// A file's next chunk, as the chunker hands it on.
enum Piece {
    /// New bytes: to hash and store.
    New(Bytes),
    /// The parent's chunk, found again.
    Known(DataId),
}

/// Builds one snapshot's trees; `P` finds the parent's node at an absolute path.
pub(crate) struct Archiver<'a, P> {
    chunker: &'a Chunker,
    store: Store<'a>,
    parent: Option<P>,
    /// Buffers of files read before, for the next (fresh memory costs a page fault a page).
    pool: Vec<Vec<u8>>,
    stack: Vec<Dir>,
    summary: SnapshotSummary,
}

/// The SHA-256 of `data`: a blob's or a repository file's id.
pub(crate) fn hash(data: &[u8]) -> Id {
    Id::new(Sha256::digest(data).into())
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Whether `dir` is `top` or below it (relative paths; the root is empty).
fn within(top: &[u8], dir: &[u8]) -> bool {
    top.is_empty() || dir == top || (dir.starts_with(top) && dir.get(top.len()) == Some(&b'/'))
}

impl<'a, P: FnMut(&[u8]) -> Option<Node>> Archiver<'a, P> {
    pub(crate) fn new(
        chunker: &'a Chunker,
        packs: PackWriter,
        index: &'a IndexLookup<'a>,
        seen: &'a Mutex<HashSet<BlobId>>,
        parent: Option<P>,
    ) -> Self {
        Self {
            chunker,
            store: Store {
                packs,
                index,
                seen,
                mine: Mutex::default(),
            },
            parent,
            pool: Vec::new(),
            stack: vec![Dir {
                path: Vec::new(),
                node: Node::new_node(std::ffi::OsStr::new(""), NodeType::Dir, Metadata::default()),
                tree: Tree::default(),
            }],
            summary: SnapshotSummary::default(),
        }
    }

    /// Add `entry`, which comes after every entry added before in tree order.
    pub(crate) fn add(&mut self, entry: Entry) -> Result<(), Failed> {
        let full = entry
            .path
            .strip_prefix(b"/")
            .unwrap_or(&entry.path)
            .to_vec();
        let is_dir = entry.node.is_dir();
        let dir: &[u8] = if is_dir {
            &full
        } else {
            full.iter()
                .rposition(|&b| b == b'/')
                .map_or(&[][..], |cut| &full[..cut])
        };
        while !within(&self.stack.last().expect("root").path, dir) {
            self.close()?;
        }
        loop {
            let top = &self.stack.last().expect("root").path;
            if top.as_slice() == dir {
                break;
            }
            let start = if top.is_empty() { 0 } else { top.len() + 1 };
            let end = dir[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(dir.len(), |i| start + i);
            let path = dir[..end].to_vec();
            // A directory above the paths backed up: restic's archiver gives it 0755 (a listed
            // directory gets its own node below).
            let name = std::ffi::OsStr::from_bytes(&dir[start..end]);
            let meta = Metadata {
                mode: Some(0o755),
                ..Metadata::default()
            };
            let node = Node::new_node(name, NodeType::Dir, meta);
            self.stack.push(Dir {
                path,
                node,
                tree: Tree::default(),
            });
        }
        if is_dir {
            self.stack.last_mut().expect("root").node = entry.node;
            return Ok(());
        }
        let node = self.file(&entry.path, entry.node, entry.body)?;
        self.stack.last_mut().expect("root").tree.nodes.push(node);
        Ok(())
    }

    /// The node of a non-directory, a file's content stored.
    fn file(&mut self, path: &[u8], mut node: Node, body: Option<Body>) -> Result<Node, Failed> {
        self.summary.total_files_processed += 1;
        if !matches!(node.node_type, NodeType::File) {
            return Ok(node);
        }
        let parent = self.parent.as_mut().and_then(|p| p(path));
        let parent_content = parent
            .filter(|p| matches!(p.node_type, NodeType::File))
            .and_then(|p| p.content);
        let (content, size) = match body {
            Some(Body::Parent) => {
                let content = parent_content.ok_or_else(|| {
                    Failed::Store(format!(
                        "{} was taken as unchanged but the parent snapshot has no content for it",
                        show(path)
                    ))
                })?;
                for id in &content {
                    if !self.store.known(BlobType::Data, &BlobId::from(**id)) {
                        return Err(Failed::Store(format!(
                            "{}: the parent snapshot's blob {} is not in the repository's \
                             index (run `coffer check`)",
                            show(path),
                            id.to_hex().as_str()
                        )));
                    }
                }
                self.summary.files_unmodified += 1;
                self.summary.total_bytes_processed += node.meta.size;
                node.content = Some(content);
                return Ok(node);
            }
            None => (Vec::new(), 0),
            Some(body) => {
                let hints = parent_content
                    .as_deref()
                    .map(|c| self.hints(c))
                    .unwrap_or_default();
                if parent_content.is_some() {
                    self.summary.files_changed += 1;
                } else {
                    self.summary.files_new += 1;
                }
                self.chunks(body, &hints).map_err(|e| match e {
                    Failed::Read(e) => Failed::Read(io::Error::new(
                        e.kind(),
                        format!("reading {}: {e}", show(path)),
                    )),
                    other => other,
                })?
            }
        };
        self.summary.total_bytes_processed += size;
        node.meta.size = size;
        node.content = Some(content);
        Ok(node)
    }

    /// The parent's chunks with their offsets, or none when a length is not in the index.
    fn hints(&self, content: &[DataId]) -> Vec<(u64, DataId, u32)> {
        let mut out = Vec::with_capacity(content.len());
        let mut offset = 0u64;
        for id in content {
            let Some(len) = (self.store.index)(BlobType::Data, &BlobId::from(**id)) else {
                return Vec::new();
            };
            out.push((offset, *id, len));
            offset += u64::from(len);
        }
        out
    }

    /// Cut, hash and store `body`; its content and length. A stream's chunks are hashed and
    /// stored by a second thread while the next ones are read and cut.
    fn chunks(
        &mut self,
        body: Body,
        hints: &[(u64, DataId, u32)],
    ) -> Result<(Vec<DataId>, u64), Failed> {
        let (chunker, store) = (self.chunker, &self.store);
        match body {
            Body::Memory(b) => {
                let mut content = Vec::new();
                let length = cut(chunker, &mut Feed::Memory(b), hints, |piece| {
                    content.push(match piece {
                        Piece::Known(id) => id,
                        Piece::New(chunk) => store.chunk(chunk)?,
                    });
                    Ok(())
                })?;
                Ok((content, length))
            }
            Body::Stream(mut reader) => std::thread::scope(|s| {
                // A third thread reads ahead, so that the node's stream keeps flowing while
                // what came before is cut and hashed.
                let (blocks, ahead) = std::sync::mpsc::sync_channel(2);
                let (back, used) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
                let keep = self.pool.len().saturating_sub(1).min(3);
                let mut spare: Vec<Vec<u8>> = self.pool.drain(..keep).collect();
                let reading = s.spawn(move || {
                    loop {
                        // A block from an earlier file or one the chunker is done with, else
                        // a new one.
                        let mut block = spare
                            .pop()
                            .or_else(|| used.try_recv().ok())
                            .unwrap_or_else(|| vec![0; READ_AHEAD]);
                        let mut filled = 0;
                        let read = loop {
                            match reader.read(&mut block[filled..]) {
                                Ok(0) => break Ok(()),
                                Ok(n) => {
                                    filled += n;
                                    if filled == block.len() {
                                        break Ok(());
                                    }
                                }
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                                Err(e) => break Err(e),
                            }
                        };
                        let last = filled < block.len() || read.is_err();
                        if filled > 0 && blocks.send(Ok((block, filled))).is_err() {
                            break;
                        }
                        if let Err(e) = read {
                            let _ = blocks.send(Err(e));
                        }
                        if last {
                            break;
                        }
                    }
                    spare.extend(used.try_iter());
                    spare
                });
                let feed = Feed::Stream {
                    reader: Box::new(Blocks {
                        ahead,
                        back,
                        block: Vec::new(),
                        at: 0,
                        filled: 0,
                    }),
                    buf: self.pool.pop().unwrap_or_default(),
                    start: 0,
                    valid: 0,
                    end: false,
                };
                let mut feed = feed;
                let out = {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<Piece>(4);
                    let hasher = s.spawn(move || {
                        let mut content = Vec::new();
                        for piece in rx {
                            content.push(match piece {
                                Piece::Known(id) => id,
                                Piece::New(chunk) => store.chunk(chunk)?,
                            });
                        }
                        Ok::<_, Failed>(content)
                    });
                    let length = cut(chunker, &mut feed, hints, |piece| {
                        tx.send(piece)
                            .map_err(|_| Failed::Store("the hasher stopped".into()))
                    });
                    drop(tx);
                    let content = hasher.join().expect("the hasher does not panic")?;
                    Ok((content, length?))
                };
                if let Feed::Stream { buf, reader, .. } = feed {
                    drop(reader);
                    self.pool.push(buf);
                }
                self.pool
                    .extend(reading.join().expect("the reader does not panic"));
                out
            }),
            Body::Parent => unreachable!("handled by the caller"),
        }
    }

    /// Store the top directory's tree and add its node to the one above.
    fn close(&mut self) -> Result<(), Failed> {
        let mut dir = self.stack.pop().expect("a directory to close");
        dir.node.subtree = Some(self.tree(&dir.tree)?);
        self.summary.total_dirs_processed += 1;
        self.stack
            .last_mut()
            .expect("root")
            .tree
            .nodes
            .push(dir.node);
        Ok(())
    }

    /// Store `tree`; its id.
    fn tree(&mut self, tree: &Tree) -> Result<TreeId, Failed> {
        let (bytes, id) = tree
            .serialize()
            .map_err(|e| Failed::Store(format!("serialising a tree: {e}")))?;
        self.summary.total_dirsize_processed += bytes.len() as u64;
        self.store
            .blob(BlobType::Tree, BlobId::from(*id), Bytes::from(bytes))?;
        Ok(id)
    }

    /// Store every tree left, then the packs and their index: the root tree's id, the
    /// summary and what was written.
    pub(crate) fn finish(mut self) -> Result<(TreeId, SnapshotSummary, Written), Failed> {
        while self.stack.len() > 1 {
            self.close()?;
        }
        let root = self.stack.pop().expect("root");
        let id = self.tree(&root.tree)?;
        let written = self.store.packs.finish().map_err(Failed::Store)?;
        let mine = std::mem::take(&mut *self.store.mine.lock().expect("blobs lock"));
        self.store.seen.lock().expect("seen lock").extend(mine);
        let mut summary = self.summary;
        summary.data_blobs = written.data_blobs;
        summary.tree_blobs = written.tree_blobs;
        summary.data_added = written.data_added + written.trees_added;
        summary.data_added_packed = written.data_added_packed + written.trees_added_packed;
        summary.data_added_files = written.data_added;
        summary.data_added_files_packed = written.data_added_packed;
        summary.data_added_trees = written.trees_added;
        summary.data_added_trees_packed = written.trees_added_packed;
        Ok((id, summary, written))
    }
}

/// Cut `feed` into chunks, each handed to `sink` in order: a parent's chunk found again at
/// a boundary of the parent's (`hints`: offset, id, length) as known, else the next chunk the
/// rolling hash cuts. The length read.
fn cut(
    chunker: &Chunker,
    feed: &mut Feed,
    hints: &[(u64, DataId, u32)],
    mut sink: impl FnMut(Piece) -> Result<(), Failed>,
) -> Result<u64, Failed> {
    let mut pos = 0u64;
    let mut next_hint = 0;
    loop {
        feed.fill(chunker.max).map_err(Failed::Read)?;
        let (data, end) = feed.available();
        if data.is_empty() {
            return Ok(pos);
        }
        while next_hint < hints.len() && hints[next_hint].0 < pos {
            next_hint += 1;
        }
        if hints.get(next_hint).is_some_and(|h| h.0 == pos) {
            // The parent's chunks held from here on, hashed on both cores: the leading ones
            // that match are taken as they are.
            let mut span = 0;
            let mut n = 0;
            for (i, &(_, _, len)) in hints[next_hint..].iter().enumerate() {
                let len = len as usize;
                let last = next_hint + i + 1 == hints.len();
                if span + len > data.len() || (last && !(end && data.len() == span + len)) {
                    break;
                }
                span += len;
                n += 1;
            }
            let batch = &hints[next_hint..next_hint + n];
            let matched = matching(&data[..span], batch);
            if matched > 0 {
                let taken: usize = batch[..matched].iter().map(|h| h.2 as usize).sum();
                feed.consume(taken);
                for &(_, id, _) in &batch[..matched] {
                    sink(Piece::Known(id))?;
                }
                pos += taken as u64;
                continue;
            }
        }
        let len = chunker.cut(data, end).expect("data to cut");
        sink(Piece::New(feed.take(len)))?;
        pos += len as u64;
    }
}

/// How many of `hints` (consecutive chunks laid out from the start of `data`), from the first,
/// hash to their ids; two threads hash them.
fn matching(data: &[u8], hints: &[(u64, DataId, u32)]) -> usize {
    let mut ranges = Vec::with_capacity(hints.len());
    let mut at = 0;
    for &(_, id, len) in hints {
        ranges.push((at..at + len as usize, id));
        at += len as usize;
    }
    let same = |i: usize| hash(&data[ranges[i].0.clone()]) == *ranges[i].1;
    let ok: Vec<bool> = if ranges.len() < 2 {
        (0..ranges.len()).map(same).collect()
    } else {
        std::thread::scope(|s| {
            let odd = s.spawn(|| (1..ranges.len()).step_by(2).map(same).collect::<Vec<_>>());
            let even: Vec<bool> = (0..ranges.len()).step_by(2).map(same).collect();
            let odd = odd.join().expect("hashing does not panic");
            (0..ranges.len())
                .map(|i| if i % 2 == 0 { even[i / 2] } else { odd[i / 2] })
                .collect()
        })
    };
    ok.iter().take_while(|&&b| b).count()
}

/// Bytes read ahead of the chunker at a time.
const READ_AHEAD: usize = 4 << 20;

/// The blocks a read-ahead thread sends (each with how much of it is filled), as one stream;
/// each block read is handed back for the next read.
struct Blocks {
    ahead: std::sync::mpsc::Receiver<io::Result<(Vec<u8>, usize)>>,
    back: std::sync::mpsc::SyncSender<Vec<u8>>,
    block: Vec<u8>,
    at: usize,
    filled: usize,
}

impl Read for Blocks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.filled {
            if buf.is_empty() {
                return Ok(0);
            }
            let Ok(next) = self.ahead.recv() else {
                return Ok(0);
            };
            let (block, filled) = next?;
            let done = std::mem::replace(&mut self.block, block);
            if !done.is_empty() {
                let _ = self.back.try_send(done);
            }
            (self.at, self.filled) = (0, filled);
        }
        let n = buf.len().min(self.filled - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A file's bytes from where its next chunk starts.
enum Feed {
    Memory(Bytes),
    Stream {
        reader: Box<dyn Read + Send>,
        /// Initialised memory (reused from file to file): the bytes held are
        /// `buf[start..valid]`.
        buf: Vec<u8>,
        start: usize,
        valid: usize,
        end: bool,
    },
}

impl Feed {
    /// Hold at least `want` bytes, or all that is left.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        let Self::Stream {
            reader,
            buf,
            start,
            valid,
            end,
        } = self
        else {
            return Ok(());
        };
        if *end || *valid - *start >= want {
            return Ok(());
        }
        if buf.len() < 2 * want {
            buf.resize(2 * want, 0);
        }
        // Moved down only once as much was consumed as is wanted: each byte moves once at most.
        if *start >= want {
            buf.copy_within(*start..*valid, 0);
            *valid -= *start;
            *start = 0;
        }
        while *valid - *start < want {
            match reader.read(&mut buf[*valid..]) {
                Ok(0) => {
                    *end = true;
                    break;
                }
                Ok(n) => *valid += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The bytes held, and whether nothing follows them.
    fn available(&self) -> (&[u8], bool) {
        match self {
            Self::Memory(b) => (b, true),
            Self::Stream {
                buf,
                start,
                valid,
                end,
                ..
            } => (&buf[*start..*valid], *end),
        }
    }

    /// Drop the next `n` bytes.
    fn consume(&mut self, n: usize) {
        match self {
            Self::Memory(b) => {
                let _ = b.split_to(n);
            }
            Self::Stream { start, .. } => *start += n,
        }
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Bytes {
        match self {
            Self::Memory(b) => b.split_to(n),
            Self::Stream { buf, start, .. } => {
                let chunk = Bytes::copy_from_slice(&buf[*start..*start + n]);
                *start += n;
                chunk
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunks of `data` (ids and lengths), with `hints` from a parent; how many of them
    /// were the parent's, found without rolling.
    fn chunks_taken(
        c: &Chunker,
        data: &[u8],
        hints: &[(u64, DataId, u32)],
    ) -> (Vec<(DataId, u32)>, usize) {
        let mut out = Vec::new();
        let mut taken = 0;
        let mut feed = Feed::Stream {
            reader: Box::new(std::io::Cursor::new(data.to_vec())),
            buf: Vec::new(),
            start: 0,
            valid: 0,
            end: false,
        };
        cut(c, &mut feed, hints, |p| {
            match p {
                Piece::New(b) => out.push((DataId::from(hash(&b)), b.len() as u32)),
                Piece::Known(id) => {
                    taken += 1;
                    let len = hints.iter().find(|h| h.1 == id).unwrap().2;
                    out.push((id, len));
                }
            }
            Ok(())
        })
        .unwrap();
        (out, taken)
    }

    fn chunks(c: &Chunker, data: &[u8], hints: &[(u64, DataId, u32)]) -> Vec<(DataId, u32)> {
        chunks_taken(c, data, hints).0
    }

    fn hints(parent: &[(DataId, u32)]) -> Vec<(u64, DataId, u32)> {
        let mut at = 0;
        parent
            .iter()
            .map(|&(id, len)| {
                at += u64::from(len);
                (at - u64::from(len), id, len)
            })
            .collect()
    }

    #[test]
    fn a_file_cut_from_its_parents_chunks_is_cut_as_a_full_pass_cuts_it() {
        let c = Chunker::rabin(0x003D_A335_8B4D_C173, 4 << 10, 16 << 10, 64 << 10);
        let mut x = 7u64;
        let data: Vec<u8> = (0..3 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let parent = chunks(&c, &data, &[]);
        assert!(parent.len() > 50);
        let h = hints(&parent);
        // Unchanged: every chunk is the parent's, none rolled over.
        assert_eq!(chunks_taken(&c, &data, &h), (parent.clone(), parent.len()));
        let mut edits: Vec<Vec<u8>> = Vec::new();
        let mut middle = data.clone();
        middle[1 << 20..(1 << 20) + 5000].fill(0xAB);
        edits.push(middle);
        let mut grown = data.clone();
        grown.extend_from_slice(&data[..100_000]);
        edits.push(grown);
        edits.push(data[..2_000_000].to_vec());
        let mut shifted = data.clone();
        shifted.insert(500_000, 1);
        edits.push(shifted);
        for (i, new) in edits.iter().enumerate() {
            let full = chunks(&c, new, &[]);
            let (hinted, taken) = chunks_taken(&c, new, &h);
            assert_eq!(hinted, full, "edit {i}");
            assert!(taken > 0, "edit {i}: nothing taken from the parent");
            // Most of the file is found again.
            let same = full.iter().filter(|f| parent.contains(f)).count();
            assert!(same * 2 > full.len(), "edit {i}: {same} of {}", full.len());
        }
    }
}
