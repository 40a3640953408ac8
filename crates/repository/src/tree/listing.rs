//! What is under a node's paths, with the metadata that tells a changed file from an
//! unchanged one, listed by GNU `find` on the node itself (nothing else installed there).

use std::cmp::Ordering;

use rustic_core::repofile::{Metadata, NodeType};

use super::mode;

/// `find -printf`'s format: a line of metadata, the path and the symlink's target, each
/// ended by a NUL (a name may hold any other byte).
const FORMAT: &str = "%y %m %U %G %s %T@ %C@ %i %D %n\\0%p\\0%l\\0";

/// An entry's type, as find's `%y` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
}

/// One listed entry. A listing holds every entry of a path set at once, so this is kept
/// compact (numbers, not rustic's `Metadata` and `NodeType`, which are made when the entry
/// goes to the archiver).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its absolute path.
    pub path: Box<[u8]>,
    /// Its type.
    pub kind: Kind,
    /// A symlink's target.
    pub target: Option<Box<[u8]>>,
    /// Mode, in Go's bits as restic keeps it.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Size (a file's; 0 for the rest).
    pub size: u64,
    /// Modification time, nanoseconds.
    pub mtime: jiff::Timestamp,
    /// Change time, nanoseconds.
    pub ctime: jiff::Timestamp,
    /// Inode number.
    pub inode: u64,
    /// Device of the filesystem it is on.
    pub device: u64,
    /// Link count.
    pub links: u64,
    /// A device's own number: not in the listing (the tar member, or the parent, gives it).
    pub rdev: u64,
}

impl Listed {
    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }

    /// Its type as a restic node has it.
    pub fn node_type(&self) -> NodeType {
        match self.kind {
            Kind::File => NodeType::File,
            Kind::Dir => NodeType::Dir,
            Kind::Symlink => {
                let t = self.target.as_deref().unwrap_or_default();
                NodeType::Symlink {
                    linktarget: String::from_utf8_lossy(t).into(),
                    linktarget_raw: std::str::from_utf8(t).is_err().then(|| t.to_vec()),
                }
            }
            Kind::Char => NodeType::Chardev { device: self.rdev },
            Kind::Block => NodeType::Dev { device: self.rdev },
            Kind::Fifo => NodeType::Fifo,
            Kind::Socket => NodeType::Socket,
        }
    }

    /// Its metadata as a restic node has it (no xattrs: the tar member or the parent has
    /// them).
    pub fn metadata(&self) -> Metadata {
        Metadata {
            mode: Some(self.mode),
            uid: Some(self.uid),
            gid: Some(self.gid),
            size: self.size,
            mtime: Some(self.mtime),
            ctime: Some(self.ctime),
            inode: self.inode,
            device_id: self.device,
            links: self.links,
            ..Metadata::default()
        }
    }
}

/// The `find` command line listing `paths` (absolute) without what matches `excludes`
/// (tar's `--exclude` globs: an absolute one is anchored at the root, any other matches a
/// trailing part of a path), pruned as tar prunes them.
pub fn command(paths: &[String], excludes: &[String]) -> Vec<String> {
    let mut argv = vec!["find".to_string()];
    argv.extend(paths.iter().cloned());
    if !excludes.is_empty() {
        argv.push("(".into());
        for (i, glob) in excludes.iter().enumerate() {
            if i > 0 {
                argv.push("-o".into());
            }
            argv.push("-path".into());
            argv.push(if glob.starts_with('/') {
                glob.trim_end_matches('/').to_string()
            } else {
                format!("*/{}", glob.trim_end_matches('/'))
            });
        }
        argv.push(")".into());
        argv.push("-prune".into());
        argv.push("-o".into());
    }
    argv.push("-printf".into());
    argv.push(FORMAT.into());
    argv
}

fn bad(what: &str, line: &[u8]) -> String {
    format!(
        "find printed a {what} Coffer cannot read: `{}` (is it GNU find?)",
        String::from_utf8_lossy(line)
    )
}

fn entry(line: &[u8], path: &[u8], target: &[u8]) -> Result<Listed, String> {
    let text = std::str::from_utf8(line).map_err(|_| bad("line", line))?;
    let f: Vec<&str> = text.split(' ').collect();
    let [kind, perm, uid, gid, size, mtime, ctime, inode, dev, links] = f[..] else {
        return Err(bad("line", line));
    };
    let num = |s: &str| s.parse::<u64>().map_err(|_| bad("number", line));
    let perm = u32::from_str_radix(perm, 8).map_err(|_| bad("mode", line))?;
    let (kind, bits) = match kind {
        "f" => (Kind::File, 0o100000),
        "d" => (Kind::Dir, 0o040000),
        "l" => (Kind::Symlink, 0o120000),
        "c" => (Kind::Char, 0o020000),
        "b" => (Kind::Block, 0o060000),
        "p" => (Kind::Fifo, 0o010000),
        "s" => (Kind::Socket, 0o140000),
        _ => return Err(bad("file type", line)),
    };
    Ok(Listed {
        path: path.into(),
        kind,
        target: (kind == Kind::Symlink).then(|| target.into()),
        mode: mode::to_go(bits | perm),
        uid: num(uid)? as u32,
        gid: num(gid)? as u32,
        size: if kind == Kind::File { num(size)? } else { 0 },
        mtime: super::timestamp(mtime).ok_or_else(|| bad("time", line))?,
        ctime: super::timestamp(ctime).ok_or_else(|| bad("time", line))?,
        inode: num(inode)?,
        device: num(dev)?,
        links: num(links)?,
        rdev: 0,
    })
}

/// Order of paths in a tree: component by component, bytes compared (a directory's entries
/// right after it, before its next sibling).
pub fn tree_order(a: &[u8], b: &[u8]) -> Ordering {
    let key = |c: u8| if c == b'/' { 0 } else { c };
    a.iter().map(|&c| key(c)).cmp(b.iter().map(|&c| key(c)))
}

/// Parse what [`command`] printed: every entry once, in tree order.
pub fn parse(out: &[u8]) -> Result<Vec<Listed>, String> {
    let mut fields = out.split(|&b| b == 0);
    let mut list = Vec::new();
    while let Some(line) = fields.next() {
        if line.is_empty() {
            // The end of the output (after the last record's NUL).
            if fields.next().is_none() {
                break;
            }
            return Err(bad("record", line));
        }
        let (Some(path), Some(target)) = (fields.next(), fields.next()) else {
            return Err(bad("record", line));
        };
        list.push(entry(line, path, target)?);
    }
    list.sort_by(|a, b| tree_order(&a.path, &b.path));
    list.dedup_by(|a, b| a.path == b.path);
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directorys_entries_come_before_its_next_sibling() {
        let mut v = vec!["/a.b", "/a/x", "/a", "/a/x/y", "/b", "/a-"];
        v.sort_by(|a, b| tree_order(a.as_bytes(), b.as_bytes()));
        assert_eq!(v, ["/a", "/a/x", "/a/x/y", "/a-", "/a.b", "/b"]);
    }

    #[test]
    fn excludes_are_pruned_as_tar_prunes_them() {
        let argv = command(
            &["/etc".into(), "/var/lib".into()],
            &["/etc/nova/*.log".into(), "*.pyc".into()],
        );
        let tail: Vec<&str> = argv.iter().map(String::as_str).collect();
        assert_eq!(
            tail[..12],
            [
                "find",
                "/etc",
                "/var/lib",
                "(",
                "-path",
                "/etc/nova/*.log",
                "-o",
                "-path",
                "*/*.pyc",
                ")",
                "-prune",
                "-o"
            ]
        );
    }

    /// The real GNU find on a real tree: every type, nanosecond times, a name with a newline
    /// and a space, a symlink's target, listed once though two paths overlap.
    #[test]
    fn real_find_output_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/a file\nwith newline"), b"12345").unwrap();
        std::os::unix::fs::symlink("../target path", d.join("sub/link")).unwrap();
        std::fs::write(d.join("skip.pyc"), b"x").unwrap();
        let root = d.display().to_string();
        let argv = command(&[root.clone(), format!("{root}/sub")], &["*.pyc".into()]);
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let list = parse(&out.stdout).unwrap();
        let names: Vec<String> = list
            .iter()
            .map(|l| String::from_utf8_lossy(&l.path[root.len()..]).into_owned())
            .collect();
        assert_eq!(
            names,
            ["", "/sub", "/sub/a file\nwith newline", "/sub/link"]
        );
        let file = &list[2];
        assert!(file.is_file());
        assert_eq!(file.size, 5);
        let m = std::fs::symlink_metadata(d.join("sub/a file\nwith newline")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(file.inode, m.ino());
        assert_eq!(file.mtime.subsec_nanosecond() as i64, m.mtime_nsec());
        assert_eq!(file.ctime.as_second(), m.ctime());
        assert_eq!(mode::permissions(file.mode), m.mode() & 0o7777);
        match &list[3].node_type() {
            NodeType::Symlink { linktarget, .. } => assert_eq!(linktarget, "../target path"),
            other => panic!("{other:?}"),
        }
        assert!(parse(b"f 644 0 0 1 x\0/p\0\0").is_err());
    }
}
