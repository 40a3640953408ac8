//! A snapshot's tree written out as the POSIX (pax) tar stream GNU tar extracts with
//! `--xattrs --acls --numeric-owner`: nanosecond mtimes, owners, modes, xattrs and ACLs (as
//! text, the way GNU tar wrote them), symlinks, devices, fifos, and hard links for files that
//! shared an inode. The directories a snapshot only holds as the way to its paths (which the
//! backup did not archive) are not written: extracting never touches them.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;

use rustic_core::repofile::{Node, NodeType, Tree};
use tar::{EntryType, Header};

use super::mode;
use super::tar_in::split_dev;

/// What a render needs of the repository: subtrees and file content.
pub trait Files {
    /// The subtree of directory `node`.
    fn tree(&mut self, node: &Node) -> io::Result<Tree>;
    /// Where file `node` has data, as (offset, length) segments, when it also has holes (runs
    /// of zeros stored as all-zero blobs); `None` when it is all data.
    fn segments(&mut self, node: &Node) -> io::Result<Option<Vec<(u64, u64)>>>;
    /// Write the content of file `node` into `w`: all of it, or with `sparse` only the bytes
    /// of its [`Self::segments`].
    fn content(&mut self, node: &Node, sparse: bool, w: &mut dyn Write) -> io::Result<()>;
}

/// A writer that counts what passes.
struct Tally<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes members to a tar stream.
pub struct Render<W: Write> {
    out: Tally<W>,
    /// What the stream would weigh with every file written whole, less what it weighs: its
    /// length as recorded at backup, where holes are not known, is `written + dense`.
    dense: u64,
    /// The first path written of each (device, inode) with more than one link.
    linked: HashMap<(u64, u64), Vec<u8>>,
    /// Only the stream's length is wanted: file content is counted, not read.
    count_only: bool,
    /// Content bytes (with their padding) counted and not written.
    counted: u64,
}

fn record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    // "LEN KEY=VALUE\n", LEN counting itself.
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A binary POSIX ACL (the `system.posix_acl_*` xattr) as text, ids numeric.
pub fn acl_text(bin: &[u8]) -> Option<String> {
    if bin.len() < 4 || u32::from_le_bytes(bin[..4].try_into().ok()?) != 2 {
        return None;
    }
    let mut lines = Vec::new();
    for e in bin[4..].chunks(8) {
        if e.len() != 8 {
            return None;
        }
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let bits: String = [(4, 'r'), (2, 'w'), (1, 'x')]
            .iter()
            .map(|&(b, c)| if perm & b != 0 { c } else { '-' })
            .collect();
        lines.push(match tag {
            0x01 => format!("user::{bits}"),
            0x02 => format!("user:{id}:{bits}"),
            0x04 => format!("group::{bits}"),
            0x08 => format!("group:{id}:{bits}"),
            0x10 => format!("mask::{bits}"),
            0x20 => format!("other::{bits}"),
            _ => return None,
        });
    }
    Some(lines.join("\n") + "\n")
}

impl<W: Write> Render<W> {
    /// A tar stream into `out`.
    pub fn new(out: W) -> Self {
        Self {
            out: Tally { inner: out, n: 0 },
            dense: 0,
            linked: HashMap::new(),
            count_only: false,
            counted: 0,
        }
    }

    /// A render that writes headers into `out` but only counts file content: the length of
    /// the stream is what gets into `out` plus [`Self::finish_counted`]'s count.
    pub fn counting(out: W) -> Self {
        Self {
            count_only: true,
            ..Self::new(out)
        }
    }

    fn header(
        &mut self,
        path: &[u8],
        node: &Node,
        kind: EntryType,
        size: u64,
        link: Option<&[u8]>,
    ) -> io::Result<Header> {
        self.header_with(path, node, kind, size, link, Vec::new())
    }

    /// [`Self::header`] with `pax`, pax records of the caller's, first.
    fn header_with(
        &mut self,
        path: &[u8],
        node: &Node,
        kind: EntryType,
        size: u64,
        link: Option<&[u8]>,
        mut pax: Vec<u8>,
    ) -> io::Result<Header> {
        let meta = &node.meta;
        let mut h = Header::new_ustar();
        h.set_entry_type(kind);
        let name: &[u8] = if kind == EntryType::Directory && path.len() < 99 {
            &[path, b"/"].concat()
        } else {
            path
        };
        if name.len() > 100 {
            record(&mut pax, "path", name);
        }
        let n = name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
        if let Some(target) = link {
            if target.len() > 100 {
                record(&mut pax, "linkpath", target);
            }
            let n = target.len().min(100);
            h.as_old_mut().linkname[..n].copy_from_slice(&target[..n]);
        }
        h.set_mode(mode::permissions(meta.mode.unwrap_or(0o644)));
        let (uid, gid) = (meta.uid.unwrap_or(0), meta.gid.unwrap_or(0));
        for (key, id) in [("uid", uid), ("gid", gid)] {
            if u64::from(id) > 0o7777777 {
                record(&mut pax, key, id.to_string().as_bytes());
            }
        }
        h.set_uid(u64::from(uid).min(0o7777777));
        h.set_gid(u64::from(gid).min(0o7777777));
        if let Some(t) = meta.mtime {
            h.set_mtime(t.as_second().max(0) as u64);
            let (s, ns) = (t.as_second(), t.subsec_nanosecond());
            if ns != 0 || s < 0 {
                let sign = if s < 0 || ns < 0 { "-" } else { "" };
                let v = format!("{sign}{}.{:09}", s.unsigned_abs(), ns.unsigned_abs());
                record(&mut pax, "mtime", v.as_bytes());
            }
        }
        if size > 0o77777777777 {
            record(&mut pax, "size", size.to_string().as_bytes());
        }
        h.set_size(size);
        for x in &meta.extended_attributes {
            let value = x.value.as_deref().unwrap_or_default();
            record(&mut pax, &format!("SCHILY.xattr.{}", x.name), value);
            let acl = match x.name.as_str() {
                "system.posix_acl_access" => Some("SCHILY.acl.access"),
                "system.posix_acl_default" => Some("SCHILY.acl.default"),
                _ => None,
            };
            if let (Some(key), Some(text)) = (acl, acl_text(value)) {
                record(&mut pax, key, text.as_bytes());
            }
        }
        if !pax.is_empty() {
            let mut x = Header::new_ustar();
            x.set_entry_type(EntryType::XHeader);
            let xname = b"././@PaxHeader";
            x.as_old_mut().name[..xname.len()].copy_from_slice(xname);
            x.set_mode(0o644);
            x.set_size(pax.len() as u64);
            x.set_cksum();
            let len = pax.len() as u64;
            self.write(&x, &mut pax.as_slice(), len)?;
        }
        Ok(h)
    }

    fn write(&mut self, h: &Header, data: &mut dyn io::Read, size: u64) -> io::Result<()> {
        self.out.write_all(h.as_bytes())?;
        let copied = io::copy(&mut io::Read::take(data, size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{copied} bytes of content where the node says {size}"),
            ));
        }
        let pad = (size.next_multiple_of(512) - size) as usize;
        self.out.write_all(&[0u8; 512][..pad])
    }

    /// Write `node` at `path` (relative, no leading `/`); a file's content comes from
    /// `content`, which writes it into the writer it is given.
    pub fn node(
        &mut self,
        path: &[u8],
        node: &Node,
        content: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let meta = &node.meta;
        match &node.node_type {
            NodeType::File => {
                let key = (meta.device_id, meta.inode);
                if meta.links > 1 && meta.inode != 0 {
                    if let Some(first) = self.linked.get(&key).cloned() {
                        let mut h = self.header(path, node, EntryType::Link, 0, Some(&first))?;
                        h.set_cksum();
                        return self.write(&h, &mut io::empty(), 0);
                    }
                    self.linked.insert(key, path.to_vec());
                }
                let mut h = self.header(path, node, EntryType::Regular, meta.size, None)?;
                h.set_cksum();
                self.out.write_all(h.as_bytes())?;
                if self.count_only {
                    self.counted += meta.size.next_multiple_of(512);
                    return Ok(());
                }
                self.body(path, meta.size, content)
            }
            NodeType::Dir => {
                let mut h = self.header(path, node, EntryType::Directory, 0, None)?;
                h.set_cksum();
                self.write(&h, &mut io::empty(), 0)
            }
            NodeType::Symlink { .. } => {
                let target = node.node_type.to_link();
                let target = target.as_os_str().as_bytes().to_vec();
                let mut h = self.header(path, node, EntryType::Symlink, 0, Some(&target))?;
                h.set_cksum();
                self.write(&h, &mut io::empty(), 0)
            }
            NodeType::Dev { device } | NodeType::Chardev { device } => {
                let kind = if matches!(node.node_type, NodeType::Dev { .. }) {
                    EntryType::Block
                } else {
                    EntryType::Char
                };
                let mut h = self.header(path, node, kind, 0, None)?;
                let (major, minor) = split_dev(*device);
                h.set_device_major(major as u32)?;
                h.set_device_minor(minor as u32)?;
                h.set_cksum();
                self.write(&h, &mut io::empty(), 0)
            }
            NodeType::Fifo => {
                let mut h = self.header(path, node, EntryType::Fifo, 0, None)?;
                h.set_cksum();
                self.write(&h, &mut io::empty(), 0)
            }
            // A socket is not archived by tar either.
            NodeType::Socket => Ok(()),
        }
    }

    /// Write file `node` at `path` as a GNU pax 1.0 sparse member: a map of its data
    /// `segments`, then only their bytes; GNU tar leaves the rest holes.
    fn sparse(
        &mut self,
        path: &[u8],
        node: &Node,
        segments: &[(u64, u64)],
        files: &mut dyn Files,
    ) -> io::Result<()> {
        let size = node.meta.size;
        let mut map = Vec::new();
        let mut segs = segments.to_vec();
        if segs.last().is_none_or(|&(o, l)| o + l < size) {
            segs.push((size, 0));
        }
        map.extend(format!("{}\n", segs.len()).as_bytes());
        for (o, l) in &segs {
            map.extend(format!("{o}\n{l}\n").as_bytes());
        }
        map.resize(map.len().next_multiple_of(512), 0);
        let data: u64 = segs.iter().map(|s| s.1).sum();
        // What the member would weigh written whole.
        let whole = {
            let mut r = Render::counting(Count::default());
            r.node(path, node, |_| Ok(()))?;
            r.out.n + r.counted
        };
        let before = self.out.n;
        let name = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
        let base = name.file_name().map(|n| n.as_bytes()).unwrap_or(b"file");
        let shown = [b"GNUSparseFile.0/".as_slice(), base].concat();
        let mut extra = Vec::new();
        record(&mut extra, "GNU.sparse.major", b"1");
        record(&mut extra, "GNU.sparse.minor", b"0");
        record(&mut extra, "GNU.sparse.name", path);
        record(
            &mut extra,
            "GNU.sparse.realsize",
            size.to_string().as_bytes(),
        );
        let stored = map.len() as u64 + data;
        let mut h = self.header_with(&shown, node, EntryType::Regular, stored, None, extra)?;
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(&map)?;
        // The map fills whole blocks: the data's padding is the member's.
        self.body(path, data, |w| files.content(node, true, w))?;
        let written = self.out.n - before;
        self.dense = self.dense + whole - written;
        Ok(())
    }

    /// A member's content after its header: what `content` writes, which must be `due` bytes,
    /// then the padding to a whole block.
    fn body(
        &mut self,
        path: &[u8],
        due: u64,
        content: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut counted = Tally {
            inner: &mut self.out,
            n: 0,
        };
        content(&mut counted)?;
        let n = counted.n;
        if n != due {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: {n} bytes of content where {due} were due",
                    String::from_utf8_lossy(path)
                ),
            ));
        }
        let pad = (n.next_multiple_of(512) - n) as usize;
        self.out.write_all(&[0u8; 512][..pad])
    }

    /// Write every node under `tree` (whose path is `dir`), depth first; with `only`, just
    /// the nodes at or under those paths (relative, `.` for all), the directories on the way
    /// to them left out as tar leaves them out.
    pub fn tree(
        &mut self,
        dir: &[u8],
        tree: &Tree,
        only: &[Vec<u8>],
        files: &mut dyn Files,
    ) -> io::Result<()> {
        let all = only.is_empty() || only.iter().any(|o| o == b".");
        self.walk(dir, tree, if all { None } else { Some(only) }, files)
    }

    fn walk(
        &mut self,
        dir: &[u8],
        tree: &Tree,
        only: Option<&[Vec<u8>]>,
        files: &mut dyn Files,
    ) -> io::Result<()> {
        for node in &tree.nodes {
            let name = node.name();
            // A node's name is one component. One that is not (`..`, `/`, a `/` inside, a NUL)
            // comes from a forged or broken repository: nothing of it is written, so no entry
            // can land outside the directory the stream is extracted under.
            let n = name.as_bytes();
            if n.is_empty() || n == b"." || n == b".." || n.contains(&b'/') || n.contains(&0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the tree at `{}` holds an entry named `{}`, which is no file name: \
                         the repository is damaged or forged (run `coffer check`)",
                        String::from_utf8_lossy(dir),
                        name.to_string_lossy()
                    ),
                ));
            }
            let path = if dir.is_empty() {
                name.as_bytes().to_vec()
            } else {
                [dir, b"/", name.as_bytes()].concat()
            };
            let (wanted, below) = match only {
                None => (true, None),
                Some(only) => {
                    let under =
                        |o: &Vec<u8>, p: &[u8]| p.starts_with(o) && p.get(o.len()) == Some(&b'/');
                    if only.iter().any(|o| *o == path || under(o, &path)) {
                        (true, None)
                    } else if only.iter().any(|o| under(&path, o)) {
                        (false, Some(only))
                    } else {
                        continue;
                    }
                }
            };
            if node.is_dir() {
                // A directory with no mtime is one rustic made up on the way to a path.
                if wanted && node.meta.mtime.is_some() {
                    self.node(&path, node, |_| Ok(()))?;
                }
                if node.subtree.is_some() {
                    let sub = files.tree(node)?;
                    self.walk(&path, &sub, below, files)?;
                }
            } else if !wanted {
            } else if matches!(node.node_type, NodeType::File)
                && !(node.meta.links > 1
                    && self
                        .linked
                        .contains_key(&(node.meta.device_id, node.meta.inode)))
                && let Some(segments) = files.segments(node)?
            {
                if node.meta.links > 1 && node.meta.inode != 0 {
                    self.linked
                        .insert((node.meta.device_id, node.meta.inode), path.clone());
                }
                self.sparse(&path, node, &segments, files)?;
            } else {
                self.node(&path, node, |w| files.content(node, false, w))?;
            }
        }
        Ok(())
    }

    /// End the archive: its writer, and the length the archive would have with every file
    /// written whole (what [`Self::counting`] counts at backup).
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.out.write_all(&[0u8; 1024])?;
        Ok((self.out.inner, self.out.n + self.dense + self.counted))
    }
}

/// A writer that only counts what it is given.
#[derive(Debug, Default)]
pub struct Count(pub u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository side that serves a two-level tree from memory and notes what is read.
    struct Served {
        sub: Tree,
        read: Vec<String>,
    }

    impl Files for Served {
        fn tree(&mut self, _: &Node) -> io::Result<Tree> {
            Ok(self.sub.clone())
        }
        fn segments(&mut self, _: &Node) -> io::Result<Option<Vec<(u64, u64)>>> {
            Ok(None)
        }
        fn content(&mut self, node: &Node, _: bool, w: &mut dyn Write) -> io::Result<()> {
            self.read.push(node.name().to_string_lossy().into_owned());
            w.write_all(&vec![b'x'; node.meta.size as usize])
        }
    }

    fn file(name: &str, size: u64) -> Node {
        let meta = rustic_core::repofile::Metadata {
            size,
            mtime: Some(jiff::Timestamp::from_second(1).unwrap()),
            mode: Some(0o644),
            ..Default::default()
        };
        Node::new_node(std::ffi::OsStr::new(name), NodeType::File, meta)
    }

    #[test]
    fn a_selected_path_reads_only_its_own_files() {
        let mut dir = Node::new_node(
            std::ffi::OsStr::new("etc"),
            NodeType::Dir,
            rustic_core::repofile::Metadata {
                mtime: Some(jiff::Timestamp::from_second(1).unwrap()),
                ..Default::default()
            },
        );
        dir.subtree = Some(rustic_core::TreeId::from(rustic_core::Id::random()));
        let root = Tree {
            nodes: vec![dir, file("big.img", 1 << 20)],
        };
        let mut served = Served {
            sub: Tree {
                nodes: vec![file("a.conf", 3), file("b.conf", 4)],
            },
            read: Vec::new(),
        };
        let mut out = Vec::new();
        let mut r = Render::new(&mut out);
        r.tree(b"", &root, &[b"etc/b.conf".to_vec()], &mut served)
            .unwrap();
        r.finish().unwrap();
        assert_eq!(served.read, ["b.conf"]);
        let mut names = Vec::new();
        let mut archive = tar::Archive::new(out.as_slice());
        for e in archive.entries().unwrap() {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        assert_eq!(names, ["etc/b.conf"]);
        // Everything, by default.
        served.read.clear();
        let mut r = Render::new(io::sink());
        r.tree(b"", &root, &[], &mut served).unwrap();
        assert_eq!(served.read, ["a.conf", "b.conf", "big.img"]);
    }

    #[test]
    fn a_forged_entry_name_writes_nothing() {
        for bad in ["..", ".", "a/../../etc", "/etc"] {
            let mut bad_node = file("x", 1);
            bad_node.name = bad.to_string();
            let root = Tree {
                nodes: vec![file("ok", 1), bad_node],
            };
            let mut served = Served {
                sub: Tree::default(),
                read: Vec::new(),
            };
            let mut out = Vec::new();
            let mut r = Render::new(&mut out);
            let err = r.tree(b"", &root, &[], &mut served).unwrap_err();
            assert!(err.to_string().contains("no file name"), "{bad}: {err}");
        }
    }

    #[test]
    fn pax_records_count_their_own_length() {
        let mut v = Vec::new();
        record(&mut v, "path", b"a");
        assert_eq!(v, b"9 path=a\n");
        let mut v = Vec::new();
        record(&mut v, "k", &[b'x'; 95]);
        assert_eq!(v.len(), 102);
        assert!(v.starts_with(b"102 k="));
    }

    #[test]
    fn acls_read_as_gnu_tar_writes_them() {
        let mut bin = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (8, 6, 27),
            (0x10, 6, u32::MAX),
            (0x20, 4, u32::MAX),
        ] {
            bin.extend(tag.to_le_bytes());
            bin.extend(perm.to_le_bytes());
            bin.extend(id.to_le_bytes());
        }
        assert_eq!(
            acl_text(&bin).unwrap(),
            "user::rw-\nuser:1000:r--\ngroup::r--\ngroup:27:rw-\nmask::rw-\nother::r--\n"
        );
        assert_eq!(acl_text(b"\x01\0\0\0"), None);
    }
}
