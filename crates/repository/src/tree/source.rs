//! A node's paths as the archiver's entries (through rustic's `ReadSource` shape), one node of
//! the snapshot's tree per listed entry: unchanged files keep their parent's content without a
//! byte read; changed files and everything else come, in listing order, from one tar stream of
//! just them (a small file's content read whole into memory, a large one's read by the
//! archiver out of the stream before the next entry is taken). Metadata is the
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

/// Files larger than this are not read into memory: the archiver reads them out of the
/// shared stream (ahead, on a thread of its own) before the next entry is taken.
pub const ALONE: u64 = 8 << 20;

/// How an entry's node is made.
#[derive(Debug)]
pub enum How {
    /// Unchanged since the parent: the parent's xattrs, if it has any (the rest of this
    /// metadata is not used); rustic takes its content.
    Parent(Option<Box<Metadata>>),
    /// A member of the shared tar stream.
    Tar,
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
    /// same order.
    pub fn new(plan: Vec<Planned>, tar: Box<dyn Read + Send>) -> Self {
        let shared = Shared::default();
        Self {
            inner: Mutex::new(Some(Entries {
                tar: Some(Arc::new(Mutex::new(TarIn::new(tar)))),
                ahead: None,
                render: Some(Render::counting(Count::default())),
                plan: plan.into_iter(),
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
    /// A large member of the shared tar stream, exactly `left` bytes.
    Member {
        tar: SharedTar,
        left: u64,
        path: Vec<u8>,
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
            Self::Member { tar, left, path } => {
                if *left == 0 || buf.is_empty() {
                    return Ok(0);
                }
                let k = (buf.len() as u64).min(*left) as usize;
                match tar.lock().expect("tar lock").read_content(&mut buf[..k])? {
                    0 => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("tar ended inside {} ({left} bytes early)", show(path)),
                    )),
                    n => {
                        *left -= n as u64;
                        Ok(n)
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

/// A tar stream.
type Stream = Box<dyn Read + Send>;

/// The shared tar stream.
type SharedTar = Arc<Mutex<TarIn<Stream>>>;

/// A file member's content: read whole, or (a large file) still in the shared stream.
enum Held {
    Memory(Vec<u8>),
    InStream,
}

/// The iterator over a plan.
pub struct Entries {
    plan: std::vec::IntoIter<Planned>,
    /// The shared stream; a large member's content is read from it by the archiver, before
    /// the next entry is asked for.
    tar: Option<SharedTar>,
    /// A tar member read past an entry that vanished, with its content if a file.
    ahead: Option<(Member, Option<Held>)>,
    /// Counts the tar stream a restore will read, entry by entry as they go to the archiver.
    render: Option<Render<Count>>,
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
    /// The next member of the shared tar, content read if it is a file (left in the stream if
    /// a large one).
    fn member(&mut self) -> io::Result<Option<(Member, Option<Held>)>> {
        if let Some(a) = self.ahead.take() {
            return Ok(Some(a));
        }
        let Some(tar) = self.tar.as_ref() else {
            return Ok(None);
        };
        let mut tar = tar.lock().expect("tar lock");
        let Some(m) = tar.next_member()? else {
            return Ok(None);
        };
        let file = matches!(m.node_type, NodeType::File) && m.link.is_none();
        if file && m.meta.size > ALONE {
            return Ok(Some((m, Some(Held::InStream))));
        }
        let content = if file {
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
            Some(Held::Memory(v))
        } else {
            None
        };
        Ok(Some((m, content)))
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
                    s.bytes_read += m.meta.size;
                    match c {
                        Held::Memory(c) => Content(Inner::Memory(Cursor::new(c))),
                        Held::InStream => Content(Inner::Member {
                            tar: self.tar.clone().expect("the shared stream"),
                            left: m.meta.size,
                            path: p.listed.path.to_vec(),
                        }),
                    }
                });
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
                if let Some(tar) = self.tar.as_ref()
                    && let Err(e) = tar.lock().expect("tar lock").finish()
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
