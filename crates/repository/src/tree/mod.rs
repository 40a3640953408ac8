//! Paths stored as restic trees: one node per file, directory, symlink, device and fifo, so
//! that restic's own tools read a Coffer repository (`restic ls`, `find`, `diff`, `restore
//! --include`), a re-run reads only what changed since the last one, and a restore of one file
//! reads only that file's blobs.
//!
//! Backup: the node's paths are listed with GNU `find` ([`listing`]), each entry compared with
//! the parent (the same artifact of the last run: [`plan`]), and only new and changed entries
//! read, through GNU tar ([`source`], [`tar_in`]). Restore: the tree is written back out as the
//! POSIX tar stream GNU tar extracts on the node ([`render`]).

pub mod listing;
pub mod mode;
pub mod render;
pub mod source;
pub mod tar_in;
#[cfg(test)]
mod tests;

use std::os::unix::ffi::OsStrExt;

use base64::Engine;
use rustic_core::repofile::{Metadata, Node, NodeType, Tree};

use listing::{Kind, Listed};
use source::{How, Planned};

/// GNU tar's options for the entries of a tree, read from `/`: pax, nanosecond times (no
/// atime nor ctime: they are the listing's business), sparse files, numeric owners, ACLs and
/// every xattr, each member once (a file's hard links each with its content: the listing's
/// inode and link count make them links again on restore), only the names given.
pub const TAR_OPTIONS: &[&str] = &[
    "--create",
    "--file=-",
    "--format=posix",
    "--pax-option=delete=atime,delete=ctime",
    "--sparse",
    "--numeric-owner",
    "--acls",
    "--xattrs",
    "--xattrs-include=*",
    "--hard-dereference",
    "--no-recursion",
    "--directory=/",
];

/// The tar command line of a plan's `Tar` entries, their names NUL-separated on stdin
/// ([`tar_names`]).
pub fn tar_command() -> Vec<String> {
    let mut argv: Vec<String> = std::iter::once("tar")
        .chain(TAR_OPTIONS.iter().copied())
        .map(String::from)
        .collect();
    argv.extend(["--null", "--verbatim-files-from", "--files-from=-"].map(String::from));
    argv
}

/// The names [`tar_command`] reads: each `Tar` entry's path, relative to `/`, NUL-ended.
pub fn tar_names(plan: &[Planned]) -> Vec<u8> {
    let mut names = Vec::new();
    for p in plan.iter().filter(|p| matches!(p.how, How::Tar)) {
        names.extend_from_slice(p.listed.path.strip_prefix(b"/").unwrap_or(&p.listed.path));
        names.push(0);
    }
    names
}

/// A time as find's `%T@` and tar's pax records write it: seconds (possibly negative), a dot,
/// a fraction of which the first nine digits count.
pub(crate) fn timestamp(s: &str) -> Option<jiff::Timestamp> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i32 = 0;
    for (i, c) in frac.bytes().take(9).enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        nanos += i32::from(c - b'0') * 10_i32.pow(8 - i as u32);
    }
    let negative = secs < 0 || s.starts_with('-');
    jiff::Timestamp::new(secs, if negative { -nanos } else { nanos }).ok()
}

/// Set `meta`'s extended attributes to `pairs` (name, value). rustic_core does not export its
/// attribute type, so they go in through its serde form: `{"name", "value": base64}`.
pub fn set_xattrs(meta: &mut Metadata, pairs: &[(String, Vec<u8>)]) {
    let json: Vec<serde_json::Value> = pairs
        .iter()
        .map(|(name, value)| {
            serde_json::json!({
                "name": name,
                "value": base64::engine::general_purpose::STANDARD.encode(value),
            })
        })
        .collect();
    meta.extended_attributes =
        serde_json::from_value(serde_json::Value::Array(json)).expect("xattrs in restic's form");
}

/// Finds the parent's node of a path, walking the parent's trees as the listing goes (it is
/// in tree order: only the trees of the current directory's ancestors are held).
pub struct ParentWalk<F> {
    get: F,
    /// (directory path, its tree) from the root down to the current directory.
    stack: Vec<(Vec<u8>, Option<Tree>)>,
}

impl<F: FnMut(&Node) -> Option<Tree>> ParentWalk<F> {
    /// The walk of the tree `root`; `get` loads a directory node's subtree.
    pub fn new(root: Tree, get: F) -> Self {
        Self {
            get,
            stack: vec![(Vec::new(), Some(root))],
        }
    }

    fn find<'t>(tree: &'t Tree, name: &[u8]) -> Option<&'t Node> {
        tree.nodes.iter().find(|n| n.name().as_bytes() == name)
    }

    /// The parent's node at the absolute path `path`, if it has one.
    pub fn node(&mut self, path: &[u8]) -> Option<Node> {
        let cut = path.iter().rposition(|&b| b == b'/')?;
        let (dir, name) = (&path[..cut], &path[cut + 1..]);
        while let Some((top, _)) = self.stack.last() {
            let ancestor = dir == top.as_slice()
                || (dir.starts_with(top) && dir.get(top.len()) == Some(&b'/'));
            if ancestor || self.stack.len() == 1 {
                break;
            }
            self.stack.pop();
        }
        loop {
            let (top, tree) = self.stack.last().expect("root");
            if top.as_slice() == dir {
                return tree.as_ref().and_then(|t| Self::find(t, name)).cloned();
            }
            let rest = &dir[top.len() + 1..];
            let comp = rest.split(|&b| b == b'/').next().unwrap_or_default();
            let next_path = dir[..top.len() + 1 + comp.len()].to_vec();
            let sub = tree
                .as_ref()
                .and_then(|t| Self::find(t, comp))
                .filter(|n| n.is_dir())
                .cloned()
                .and_then(|n| (self.get)(&n));
            self.stack.push((next_path, sub));
        }
    }
}

/// Whether `listed` is what the parent has in `p`, as rustic's archiver compares them (type,
/// size, mtime, ctime) and stricter (the inode too): only then is nothing read of it.
fn unchanged(listed: &Listed, p: &Node) -> bool {
    let same_type = match (listed.kind, &p.node_type) {
        (Kind::Symlink, NodeType::Symlink { linktarget, .. }) => {
            String::from_utf8_lossy(listed.target.as_deref().unwrap_or_default()) == *linktarget
        }
        (Kind::File, NodeType::File)
        | (Kind::Dir, NodeType::Dir)
        | (Kind::Char, NodeType::Chardev { .. })
        | (Kind::Block, NodeType::Dev { .. })
        | (Kind::Fifo, NodeType::Fifo)
        | (Kind::Socket, NodeType::Socket) => true,
        _ => false,
    };
    let m = &p.meta;
    same_type
        && listed.size == m.size
        && Some(listed.mtime) == m.mtime
        && Some(listed.ctime) == m.ctime
        && listed.inode == m.inode
        && listed.device == m.device_id
}

/// The parent's node at an absolute path ([`crate::ArtifactWriter::parent`]).
pub type ParentLookup<'a> = dyn FnMut(&[u8]) -> Option<Node> + 'a;

/// How each listed entry is archived: from the parent when unchanged, else from the shared
/// tar stream.
pub fn plan(listing: Vec<Listed>, mut parent: Option<&mut ParentLookup<'_>>) -> Vec<Planned> {
    listing
        .into_iter()
        // The root itself has no node in a restic tree (and tar leaves `/` alone).
        .filter(|l| &*l.path != b"/")
        .map(|mut listed| {
            let found = parent.as_mut().and_then(|p| p(&listed.path));
            let how = match found {
                Some(p) if unchanged(&listed, &p) => {
                    // A device's number is not in the listing: the parent's is kept.
                    if let NodeType::Dev { device } | NodeType::Chardev { device } = p.node_type {
                        listed.rdev = device;
                    }
                    listed.mode = p.meta.mode.unwrap_or(listed.mode);
                    listed.uid = p.meta.uid.unwrap_or(listed.uid);
                    listed.gid = p.meta.gid.unwrap_or(listed.gid);
                    // Only the xattrs are kept, and only when there are some: a plan holds
                    // every entry of the listing.
                    How::Parent((!p.meta.extended_attributes.is_empty()).then(|| {
                        Box::new(Metadata {
                            extended_attributes: p.meta.extended_attributes,
                            ..Metadata::default()
                        })
                    }))
                }
                _ => How::Tar,
            };
            Planned { listed, how }
        })
        .collect()
}
