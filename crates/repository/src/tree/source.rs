//! A node's paths as the archiver's entries (through rustic's `ReadSource` shape), one node of
//! the snapshot's tree per listed entry: unchanged files keep their parent's content without a
//! byte read; small changed files and everything else come, in listing order, from one tar
//! stream of just them (a file's content read whole into memory); each large changed file
//! comes from a tar stream of its own, started when the listing reaches it. Metadata is the
//! listing's (ctime, inode and link count: what tells the next run what changed) and the tar
//! member's (mode, owner, mtime, size, xattrs and ACLs, device numbers: what matches the
//! content read). A failure anywhere is kept for the writer to report, which then writes no
//! snapshot.

use std::io::{self, Cursor, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{ReadSource, ReadSourceEntry, RusticResult};

use super::listing::Listed;
use super::render::{Count, Render};
use super::tar_in::{Member, TarIn};

/// Files larger than this are read from a stream of their own.
pub const ALONE: u64 = 8 << 20;

/// Opens the tar stream of one file on the node (a reader that fails at its end if the
/// command failed).
pub trait FetchOne: Send + Sync {
    /// `path` (absolute) as a one-member tar stream.
    fn fetch(&self, path: &[u8]) -> io::Result<Box<dyn Read + Send>>;
}

/// How an entry's node is made.
#[derive(Debug)]
pub enum How {
    /// Unchanged since the parent: the parent's xattrs, if it has any (the rest of this
    /// metadata is not used); rustic takes its content.
    Parent(Option<Box<Metadata>>),
    /// A member of the shared tar stream.
    Tar,
    /// A large file from its own stream.
    Alone,
}

/// One entry of the plan.
#[derive(Debug)]
pub struct Planned {
    /// What the listing says.
    pub listed: Listed,
    /// Where its node comes from.
    pub how: How,
}

/// What a [`NodeSource`] saw.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Entries given to the archiver.
    pub entries: u64,
    /// Files whose content was read (the others were unchanged).
    pub files_read: u64,
    /// Bytes of file content read.
    pub bytes_read: u64,
    /// Entries that changed or vanished between the listing and their reading, said so.
    pub changed: Vec<String>,
    /// The first failure, if any: the artifact must not be kept.
    pub error: Option<io::Error>,
    /// The length of the tar stream the tree reads back as (known at the end).
    pub rendered: u64,
}

type Shared = Arc<Mutex<SourceStats>>;

fn fail(shared: &Shared, e: io::Error) {
    let mut s = shared.lock().expect("stats lock");
    if s.error.is_none() {
        s.error = Some(e);
    }
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// The entries of a plan, as rustic reads them.
pub struct NodeSource {
    inner: Mutex<Option<Entries>>,
    shared: Shared,
}

impl NodeSource {
    /// The source of `plan` (in tree order), whose `Tar` entries are `tar`'s members in the
    /// same order and whose `Alone` files `fetch` opens.
    pub fn new(plan: Vec<Planned>, tar: Box<dyn Read + Send>, fetch: Arc<dyn FetchOne>) -> Self {
        let shared = Shared::default();
        Self {
            inner: Mutex::new(Some(Entries {
                tar: Some(TarIn::new(tar)),
                ahead: None,
                render: Some(Render::counting(Count::default())),
                alone: plan
                    .iter()
                    .filter(|p| matches!(p.how, How::Alone))
                    .map(|p| p.listed.path.to_vec())
                    .collect(),
                plan: plan.into_iter(),
                opened: None,
                fetch,
                shared: shared.clone(),
            })),
            shared,
        }
    }

    /// Where the stats are collected.
    pub fn stats(&self) -> Arc<Mutex<SourceStats>> {
        self.shared.clone()
    }
}

/// A file's content, for the archiver (which reads a stream in blocks of megabytes).
pub struct Content(Inner);

enum Inner {
    /// Read already.
    Memory(Cursor<Vec<u8>>),
    /// From its own tar stream, exactly `left` bytes.
    Stream {
        tar: TarIn<Box<dyn Read + Send>>,
        left: u64,
        path: Vec<u8>,
        shared: Shared,
    },
    /// Unchanged: the archiver takes the parent's content and never reads it.
    Unchanged(Vec<u8>),
}

impl Content {
    /// The archiver's entry of `e`.
    pub(crate) fn entry(e: ReadSourceEntry<Content>) -> crate::archiver::Entry {
        use crate::archiver::Body;
        let body = e.open.map(|Content(inner)| match inner {
            Inner::Memory(c) => Body::Memory(bytes::Bytes::from(c.into_inner())),
            Inner::Unchanged(_) => Body::Parent,
            stream => Body::Stream(Box::new(stream)),
        });
        crate::archiver::Entry {
            path: e.path.into_os_string().into_vec(),
            node: e.node,
            body,
        }
    }
}

impl Read for Content {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Read for Inner {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Memory(c) => c.read(buf),
            Self::Stream {
                tar,
                left,
                path,
                shared,
            } => {
                if *left == 0 || buf.is_empty() {
                    return Ok(0);
                }
                let k = (buf.len() as u64).min(*left) as usize;
                let r = tar.read_content(&mut buf[..k]).and_then(|n| {
                    if n == 0 {
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("{} ended {left} bytes early", show(path)),
                        ))
                    } else {
                        Ok(n)
                    }
                });
                match r {
                    Ok(n) => {
                        *left -= n as u64;
                        if *left == 0 {
                            // The rest (padding, end of archive) and the command's exit.
                            let end = tar.finish();
                            if let Err(e) = end {
                                fail(
                                    shared,
                                    io::Error::new(e.kind(), format!("{}: {e}", show(path))),
                                );
                            }
                        }
                        Ok(n)
                    }
                    Err(e) => {
                        let e = io::Error::new(e.kind(), format!("reading {}: {e}", show(path)));
                        fail(shared, io::Error::new(e.kind(), e.to_string()));
                        Err(e)
                    }
                }
            }
            Self::Unchanged(path) => {
                let e = io::Error::other(format!(
                    "{} was taken as unchanged but the archiver wants its content",
                    show(path)
                ));
                Err(e)
            }
        }
    }
}

/// A file's tar stream, as [`FetchOne`] opens it.
type Stream = Box<dyn Read + Send>;

/// The iterator over a plan.
pub struct Entries {
    plan: std::vec::IntoIter<Planned>,
    tar: Option<TarIn<Box<dyn Read + Send>>>,
    /// A tar member read past an entry that vanished, with its content if a file.
    ahead: Option<(Member, Option<Vec<u8>>)>,
    /// Counts the tar stream a restore will read, entry by entry as they go to the archiver.
    render: Option<Render<Count>>,
    fetch: Arc<dyn FetchOne>,
    /// The paths of the plan's `Alone` files, in order, not yet opened.
    alone: std::collections::VecDeque<Vec<u8>>,
    /// The next `Alone` file's stream, opened while the one before is read: on a remote node
    /// its command's start is then not waited for.
    opened: Option<(Vec<u8>, io::Result<Stream>)>,
    shared: Shared,
}

/// The node of `listed` with what the tar member says of it.
fn node(listed: &Listed, member: Option<&Member>) -> Node {
    let mut meta = listed.metadata();
    let mut node_type = listed.node_type();
    if let Some(m) = member {
        meta.mode = m.meta.mode;
        meta.uid = m.meta.uid;
        meta.gid = m.meta.gid;
        meta.mtime = m.meta.mtime;
        meta.size = m.meta.size;
        meta.extended_attributes = m.meta.extended_attributes.clone();
        if matches!(
            m.node_type,
            NodeType::Dev { .. } | NodeType::Chardev { .. } | NodeType::Symlink { .. }
        ) {
            node_type = m.node_type.clone();
        }
    }
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&listed.path));
    let name = path.file_name().unwrap_or_default();
    Node::new_node(name, node_type, meta)
}

impl Entries {
    /// The next member of the shared tar, content read if it is a file.
    fn member(&mut self) -> io::Result<Option<(Member, Option<Vec<u8>>)>> {
        if let Some(a) = self.ahead.take() {
            return Ok(Some(a));
        }
        let Some(tar) = self.tar.as_mut() else {
            return Ok(None);
        };
        let Some(m) = tar.next_member()? else {
            return Ok(None);
        };
        let content = if matches!(m.node_type, NodeType::File) && m.link.is_none() {
            // Read straight into a buffer of the member's size (no copy, no scratch buffer).
            let mut v = vec![0u8; m.meta.size as usize];
            let mut filled = 0;
            while filled < v.len() {
                match tar.read_content(&mut v[filled..])? {
                    0 => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("tar ended inside {}", show(&m.path)),
                        ));
                    }
                    n => filled += n,
                }
            }
            Some(v)
        } else {
            None
        };
        Ok(Some((m, content)))
    }

    /// The stream of `Alone` file `path`, and the next one's opened.
    fn open_alone(&mut self, path: &[u8]) -> io::Result<Stream> {
        while self.alone.front().is_some_and(|a| a.as_slice() != path) {
            self.alone.pop_front();
        }
        self.alone.pop_front();
        let stream = match self.opened.take() {
            Some((opened, stream)) if opened == path => stream,
            // Opened for an entry that was skipped: dropped (its command stopped).
            _ => self.fetch.fetch(path),
        };
        if let Some(next) = self.alone.front() {
            self.opened = Some((next.clone(), self.fetch.fetch(next)));
        }
        stream
    }

    fn vanished(&self, p: &[u8]) {
        self.shared
            .lock()
            .expect("stats lock")
            .changed
            .push(format!("{}: vanished before it was read", show(p)));
    }

    /// The entry of `p`, or `None` when it vanished in the meantime.
    fn entry(&mut self, p: Planned) -> io::Result<Option<ReadSourceEntry<Content>>> {
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(&p.listed.path));
        match p.how {
            How::Parent(parent) => {
                let mut n = node(&p.listed, None);
                if let Some(parent) = parent {
                    n.meta.extended_attributes = parent.extended_attributes;
                }
                let open = p
                    .listed
                    .is_file()
                    .then(|| Content(Inner::Unchanged(p.listed.path.to_vec())));
                Ok(Some(ReadSourceEntry {
                    path,
                    node: n,
                    open,
                }))
            }
            How::Tar => {
                let want = p.listed.path.strip_prefix(b"/").unwrap_or(&p.listed.path);
                let Some((m, content)) = self.member()? else {
                    self.vanished(&p.listed.path);
                    return Ok(None);
                };
                if m.path != want {
                    // tar skips what vanished; a member further on is kept for its entry.
                    if super::listing::tree_order(&m.path, want).is_gt() {
                        self.ahead = Some((m, content));
                        self.vanished(&p.listed.path);
                        return Ok(None);
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "tar gave {} where {} was expected",
                            show(&m.path),
                            show(want)
                        ),
                    ));
                }
                if m.link.is_some() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("tar gave {} as a hard link", show(&m.path)),
                    ));
                }
                if p.listed.is_file() != content.is_some() {
                    self.shared
                        .lock()
                        .expect("stats lock")
                        .changed
                        .push(format!(
                            "{}: changed its type before it was read",
                            show(&p.listed.path)
                        ));
                    return Ok(None);
                }
                let n = node(&p.listed, Some(&m));
                let open = content.map(|c| {
                    let mut s = self.shared.lock().expect("stats lock");
                    s.files_read += 1;
                    s.bytes_read += c.len() as u64;
                    Content(Inner::Memory(Cursor::new(c)))
                });
                Ok(Some(ReadSourceEntry {
                    path,
                    node: n,
                    open,
                }))
            }
            How::Alone => {
                let stream = self.open_alone(&p.listed.path)?;
                let mut tar = TarIn::new(stream);
                let Some(m) = tar.next_member()? else {
                    // Its command says why (the file is gone): nothing was read of it.
                    let _ = tar.finish();
                    self.vanished(&p.listed.path);
                    return Ok(None);
                };
                if !matches!(m.node_type, NodeType::File) || m.link.is_some() {
                    self.shared
                        .lock()
                        .expect("stats lock")
                        .changed
                        .push(format!(
                            "{}: no longer a regular file when read",
                            show(&p.listed.path)
                        ));
                    return Ok(None);
                }
                let n = node(&p.listed, Some(&m));
                {
                    let mut s = self.shared.lock().expect("stats lock");
                    s.files_read += 1;
                    s.bytes_read += m.meta.size;
                }
                let stream = Inner::Stream {
                    tar,
                    left: m.meta.size,
                    path: p.listed.path.to_vec(),
                    shared: self.shared.clone(),
                };
                let open = Some(Content(stream));
                Ok(Some(ReadSourceEntry {
                    path,
                    node: n,
                    open,
                }))
            }
        }
    }
}

impl Iterator for Entries {
    type Item = RusticResult<ReadSourceEntry<Content>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.shared.lock().expect("stats lock").error.is_some() {
                return None;
            }
            let Some(p) = self.plan.next() else {
                // The shared stream is read to its end: its command's exit is checked there.
                if let Some(tar) = self.tar.as_mut()
                    && let Err(e) = tar.finish()
                {
                    fail(&self.shared, e);
                }
                self.tar = None;
                if let Some(render) = self.render.take() {
                    match render.finish() {
                        Ok((_, length)) => {
                            self.shared.lock().expect("stats lock").rendered = length;
                        }
                        Err(e) => fail(&self.shared, e),
                    }
                }
                return None;
            };
            match self.entry(p) {
                Ok(Some(e)) => {
                    if let Some(render) = self.render.as_mut() {
                        let rel = e.path.as_os_str().as_bytes();
                        let rel = rel.strip_prefix(b"/").unwrap_or(rel);
                        if let Err(e) = render.node(rel, &e.node, |_| Ok(())) {
                            fail(&self.shared, e);
                            return None;
                        }
                    }
                    self.shared.lock().expect("stats lock").entries += 1;
                    return Some(Ok(e));
                }
                Ok(None) => {}
                Err(e) => {
                    fail(&self.shared, e);
                    return None;
                }
            }
        }
    }
}

impl ReadSource for NodeSource {
    type Open = Content;
    type Iter = Entries;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        self.inner
            .lock()
            .expect("source lock")
            .take()
            .expect("a source is archived once")
    }
}
