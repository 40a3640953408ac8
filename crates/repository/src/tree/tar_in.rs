//! A streaming reader of the POSIX (pax) tar streams GNU tar writes with `--format=posix
//! --xattrs --acls --sparse`: one member at a time, its metadata as a restic node and its
//! content read in place (holes of sparse members given back as zeros), nothing buffered.

use std::io::{self, Read};

use rustic_core::repofile::{Metadata, NodeType};
use tar::{EntryType, Header};

use super::mode;

const BLOCK: u64 = 512;

/// One member's header: where it goes and what it is.
#[derive(Debug)]
pub struct Member {
    /// Its name in the archive, without a leading `./` or `/` nor a trailing `/`.
    pub path: Vec<u8>,
    /// File, directory, symlink, device or fifo; a hard link is [`Member::link`].
    pub node_type: NodeType,
    /// Mode (restic's Go mode), owner, nanosecond mtime, size, xattrs (ACLs among them as the
    /// `system.posix_acl_*` attributes).
    pub meta: Metadata,
    /// For a hard link: the earlier member it names.
    pub link: Option<Vec<u8>>,
}

/// What is left to read of the current member.
#[derive(Default)]
struct Data {
    /// Bytes of the data section not yet read, padding excluded.
    stored: u64,
    /// Padding after the data section.
    padding: u64,
    /// For a sparse member: the data segments not yet reached, (offset, length) in the file.
    segments: Vec<(u64, u64)>,
    /// The position in the file (logical, holes included).
    at: u64,
    /// The file's length.
    real: u64,
    sparse: bool,
}

/// Reads members from a tar stream.
pub struct TarIn<R> {
    r: R,
    data: Data,
    done: bool,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn parse_num(v: &[u8], what: &str) -> io::Result<u64> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| bad(format!("tar: bad {what} `{}`", String::from_utf8_lossy(v))))
}

/// A pax time (`1700000000.123456789`, possibly negative) as a timestamp.
fn parse_time(v: &[u8]) -> io::Result<jiff::Timestamp> {
    let s = std::str::from_utf8(v).map_err(|_| bad("tar: bad pax time"))?;
    super::timestamp(s).ok_or_else(|| bad(format!("tar: bad time `{s}`")))
}

/// The records of a pax extended header: `LEN KEY=VALUE\n`, LEN counting the whole record
/// (a value may hold newlines and any byte: the length, not the newline, ends it).
fn pax_records(mut raw: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while !raw.is_empty() && raw[0] != 0 {
        let space = raw
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| bad("tar: malformed pax record"))?;
        let len: usize = std::str::from_utf8(&raw[..space])
            .ok()
            .and_then(|l| l.parse().ok())
            .filter(|&l| l > space + 1 && l <= raw.len())
            .ok_or_else(|| bad("tar: malformed pax record length"))?;
        let record = &raw[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad("tar: pax record without `=`"))?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        raw = &raw[len..];
    }
    Ok(out)
}

/// Linux's `makedev`.
pub fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xfffff000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffffff00) << 12)
        | (minor & 0xff)
}

/// Linux's `major` and `minor` of a device number.
pub fn split_dev(dev: u64) -> (u64, u64) {
    (
        ((dev >> 32) & 0xfffff000) | ((dev >> 8) & 0xfff),
        ((dev >> 12) & 0xffffff00) | (dev & 0xff),
    )
}

fn strip(mut p: &[u8]) -> Vec<u8> {
    while let Some(rest) = p.strip_prefix(b"./").or_else(|| p.strip_prefix(b"/")) {
        p = rest;
    }
    while let Some(rest) = p.strip_suffix(b"/") {
        p = rest;
    }
    if p == b"." { Vec::new() } else { p.to_vec() }
}

impl<R: Read> TarIn<R> {
    /// Members of the tar stream `r`.
    pub fn new(r: R) -> Self {
        Self {
            r,
            data: Data::default(),
            done: false,
        }
    }

    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            self.r.read_exact(&mut buf[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    fn block(&mut self) -> io::Result<Option<[u8; 512]>> {
        let mut b = [0u8; 512];
        let mut got = 0;
        while got < 512 {
            match self.r.read(&mut b[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(bad("tar: the stream ends inside a header")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(b))
    }

    fn section(&mut self, size: u64) -> io::Result<Vec<u8>> {
        if size > 64 << 20 {
            return Err(bad(format!("tar: a {size}-byte extended header")));
        }
        let mut v = vec![0u8; size as usize];
        self.r.read_exact(&mut v)?;
        self.skip(size.next_multiple_of(BLOCK) - size)?;
        Ok(v)
    }

    /// The next member, after skipping what is left of the current one's content; `None`
    /// at the end of the archive.
    pub fn next_member(&mut self) -> io::Result<Option<Member>> {
        let left = self.data.stored + self.data.padding;
        self.data = Data::default();
        self.skip(left)?;
        if self.done {
            return Ok(None);
        }
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        loop {
            let Some(block) = self.block()? else {
                self.done = true;
                return Ok(None);
            };
            if block.iter().all(|&b| b == 0) {
                // The end-of-archive marker (two zero blocks; the second is not required).
                self.done = true;
                return Ok(None);
            }
            let h = Header::from_byte_slice(&block);
            let size = h.entry_size()?;
            match h.entry_type() {
                EntryType::XHeader => {
                    let raw = self.section(size)?;
                    pax.extend(pax_records(&raw)?);
                    continue;
                }
                // Global headers, GNU long names (not written with --format=posix): skipped.
                EntryType::XGlobalHeader | EntryType::GNULongName | EntryType::GNULongLink => {
                    self.section(size)?;
                    continue;
                }
                _ => {}
            }
            return self.member(h, size, pax).map(Some);
        }
    }

    fn member(
        &mut self,
        h: &Header,
        size: u64,
        pax: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> io::Result<Member> {
        let mut path = h.path_bytes().into_owned();
        let mut link = h.link_name_bytes().map(|l| l.into_owned());
        let mut meta = Metadata {
            uid: Some(h.uid()? as u32),
            gid: Some(h.gid()? as u32),
            mtime: jiff::Timestamp::from_second(h.mtime()? as i64).ok(),
            ..Metadata::default()
        };
        let mut size = size;
        let (mut major, mut minor) = (0, 0);
        let mut sparse = (None, None, None);
        let mut xattrs = Vec::new();
        for (k, v) in pax {
            match k.as_slice() {
                b"path" => path = v,
                b"linkpath" => link = Some(v),
                b"size" => size = parse_num(&v, "size")?,
                b"uid" => meta.uid = Some(parse_num(&v, "uid")? as u32),
                b"gid" => meta.gid = Some(parse_num(&v, "gid")? as u32),
                b"uname" if !v.is_empty() => meta.user = Some(String::from_utf8_lossy(&v).into()),
                b"gname" if !v.is_empty() => meta.group = Some(String::from_utf8_lossy(&v).into()),
                b"mtime" => meta.mtime = Some(parse_time(&v)?),
                b"GNU.sparse.major" => sparse.0 = Some(parse_num(&v, "sparse version")?),
                b"GNU.sparse.name" => sparse.1 = Some(v),
                b"GNU.sparse.realsize" => sparse.2 = Some(parse_num(&v, "sparse size")?),
                k => {
                    if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                        xattrs.push((String::from_utf8_lossy(name).into_owned(), v));
                    }
                    // SCHILY.acl.* repeat the system.posix_acl_* xattrs as text: the xattrs
                    // are what is kept (as restic does).
                }
            }
        }
        super::set_xattrs(&mut meta, &xattrs);
        // Device numbers mean something only for devices (other writers leave them blank).
        if matches!(h.entry_type(), EntryType::Char | EntryType::Block) {
            if let Some(m) = h.device_major()? {
                major = u64::from(m);
            }
            if let Some(m) = h.device_minor()? {
                minor = u64::from(m);
            }
        }
        let unix = h.mode()? & 0o7777;
        let (node_type, type_bits) = match h.entry_type() {
            EntryType::Regular | EntryType::Continuous => (NodeType::File, 0o100000),
            EntryType::Link => (NodeType::File, 0o100000),
            EntryType::Directory => (NodeType::Dir, 0o040000),
            EntryType::Symlink => {
                let target = link.take().unwrap_or_default();
                (
                    NodeType::Symlink {
                        linktarget: String::from_utf8_lossy(&target).into(),
                        linktarget_raw: std::str::from_utf8(&target).is_err().then_some(target),
                    },
                    0o120000,
                )
            }
            EntryType::Char => (
                NodeType::Chardev {
                    device: makedev(major, minor),
                },
                0o020000,
            ),
            EntryType::Block => (
                NodeType::Dev {
                    device: makedev(major, minor),
                },
                0o060000,
            ),
            EntryType::Fifo => (NodeType::Fifo, 0o010000),
            other => {
                return Err(bad(format!(
                    "tar: member {} has type {other:?}, which Coffer does not archive",
                    String::from_utf8_lossy(&path)
                )));
            }
        };
        meta.mode = Some(mode::to_go(type_bits | unix));
        let is_link = h.entry_type() == EntryType::Link;
        if !is_link {
            link = None;
        }
        let stored = if matches!(node_type, NodeType::File) && !is_link {
            size
        } else {
            // Only regular members carry content; anything else's size is not data.
            if size > 0 && matches!(node_type, NodeType::Dir) {
                self.skip(size.next_multiple_of(BLOCK))?;
            }
            0
        };
        self.data = Data {
            stored,
            padding: stored.next_multiple_of(BLOCK) - stored,
            real: stored,
            ..Data::default()
        };
        if let (Some(1), Some(name)) = (sparse.0, sparse.1) {
            path = name;
            self.data.sparse = true;
            self.data.real = sparse.2.unwrap_or(stored);
            self.sparse_map()?;
        }
        meta.size = if matches!(node_type, NodeType::File) && !is_link {
            self.data.real
        } else {
            0
        };
        Ok(Member {
            path: strip(&path),
            node_type,
            meta,
            link: link.as_deref().map(strip),
        })
    }

    /// After the last member: the end-of-archive marker and whatever follows it, read to the
    /// end of the stream (where the reader underneath checks how its command ended). An error
    /// if another member follows.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Some(m) = self.next_member()? {
            return Err(bad(format!(
                "tar: unexpected member {}",
                String::from_utf8_lossy(&m.path)
            )));
        }
        io::copy(&mut self.r, &mut io::sink())?;
        Ok(())
    }

    /// Read the map at the start of a pax 1.0 sparse member's data: the number of segments,
    /// then each one's offset and length, one decimal number per line, padded to a block.
    fn sparse_map(&mut self) -> io::Result<()> {
        let mut consumed = 0u64;
        let mut line = || -> io::Result<u64> {
            let mut digits = Vec::new();
            loop {
                let mut b = [0u8; 1];
                self.r.read_exact(&mut b)?;
                consumed += 1;
                if b[0] == b'\n' {
                    break;
                }
                digits.push(b[0]);
                if digits.len() > 20 {
                    return Err(bad("tar: bad sparse map"));
                }
            }
            parse_num(&digits, "sparse map entry")
        };
        let n = line()?;
        if n > 1 << 24 {
            return Err(bad("tar: bad sparse map"));
        }
        let mut segments = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let offset = line()?;
            let length = line()?;
            segments.push((offset, length));
        }
        let pad = consumed.next_multiple_of(BLOCK) - consumed;
        self.skip(pad)?;
        let used = consumed + pad;
        if used > self.data.stored {
            return Err(bad("tar: sparse map longer than the member"));
        }
        self.data.stored -= used;
        segments.reverse();
        self.data.segments = segments;
        Ok(())
    }

    /// Read the current member's content (holes as zeros) into `buf`; 0 at its end.
    pub fn read_content(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let d = &mut self.data;
        if buf.is_empty() || d.at >= d.real {
            return Ok(0);
        }
        if !d.sparse {
            let k = (buf.len() as u64).min(d.stored) as usize;
            let n = self.r.read(&mut buf[..k])?;
            if n == 0 && k > 0 {
                return Err(bad("tar: the stream ends inside a member"));
            }
            self.data.stored -= n as u64;
            self.data.at += n as u64;
            return Ok(n);
        }
        // Sparse: zeros up to the next segment, then its bytes.
        let next = d.segments.last().copied();
        match next {
            Some((offset, _)) if d.at < offset => {
                let k = (buf.len() as u64).min(offset - d.at) as usize;
                buf[..k].fill(0);
                d.at += k as u64;
                Ok(k)
            }
            Some((offset, length)) => {
                let left = offset + length - d.at;
                let k = (buf.len() as u64).min(left).min(d.stored) as usize;
                if k == 0 {
                    d.segments.pop();
                    return self.read_content(buf);
                }
                let n = self.r.read(&mut buf[..k])?;
                if n == 0 {
                    return Err(bad("tar: the stream ends inside a member"));
                }
                let d = &mut self.data;
                d.stored -= n as u64;
                d.at += n as u64;
                if d.at == offset + length {
                    d.segments.pop();
                }
                Ok(n)
            }
            None => {
                let k = (buf.len() as u64).min(d.real - d.at) as usize;
                buf[..k].fill(0);
                d.at += k as u64;
                Ok(k)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_keep_their_nanoseconds() {
        let t = parse_time(b"1796138558.125162335").unwrap();
        assert_eq!(t.as_second(), 1796138558);
        assert_eq!(t.subsec_nanosecond(), 125162335);
        assert_eq!(
            parse_time(b"12.5").unwrap().subsec_nanosecond(),
            500_000_000
        );
        assert!(parse_time(b"12.x").is_err());
    }

    #[test]
    fn pax_values_may_hold_newlines() {
        let raw = b"30 mtime=1796138558.125162335\n26 SCHILY.acl.access=a\nb\n\n";
        let r = pax_records(raw).unwrap();
        assert_eq!(r[0], (b"mtime".to_vec(), b"1796138558.125162335".to_vec()));
        assert_eq!(r[1], (b"SCHILY.acl.access".to_vec(), b"a\nb\n".to_vec()));
        assert!(pax_records(b"99 k=v\n").is_err());
    }

    #[test]
    fn device_numbers_go_both_ways() {
        for (ma, mi) in [(1, 3), (8, 17), (259, 65537), (4095, 255)] {
            assert_eq!(split_dev(makedev(ma, mi)), (ma, mi));
        }
        assert_eq!(makedev(1, 3), 0x103);
    }
}
