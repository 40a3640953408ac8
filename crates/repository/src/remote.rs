//! A repository on another machine (the external backup host), reached over the same SSH
//! transport as the nodes. Every file operation is one command on the backup host through the
//! node's multiplexed master: `cat`, `dd`, `find`, `rm`, and an atomic `cat > tmp && mv`.
//! Nothing is staged on the Coffer host: packs go from memory to the backup host.

use std::time::Duration;

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};
use tokio::runtime::Handle;

use coffer_transport::NodeHandle;
use coffer_transport::process::{self, Finished};

/// Most bytes one read brings back (a pack is far smaller).
const MAX_READ: u64 = 4 << 30;
/// Timeout of one file operation.
const OP_TIMEOUT: Duration = Duration::from_secs(3600);

/// A restic-format repository in a directory of a node reached over SSH.
pub struct RemoteBackend {
    node: NodeHandle,
    root: String,
    handle: Handle,
}

impl RemoteBackend {
    /// The repository at `root` on `node`. Call from within the tokio runtime: file operations
    /// block on it from rustic_core's threads.
    pub fn new(node: NodeHandle, root: &str) -> Self {
        Self {
            node,
            root: root.trim_end_matches('/').to_string(),
            handle: Handle::current(),
        }
    }

    fn dir(&self, tpe: FileType, id: &Id) -> String {
        match tpe {
            FileType::Config => self.root.clone(),
            FileType::Pack => format!("{}/data/{}", self.root, &id.to_hex()[0..2]),
            _ => format!("{}/{}", self.root, tpe.dirname()),
        }
    }

    fn path(&self, tpe: FileType, id: &Id) -> String {
        match tpe {
            FileType::Config => format!("{}/config", self.root),
            _ => format!("{}/{}", self.dir(tpe, id), id.to_hex().as_str()),
        }
    }

    fn run(&self, argv: &[&str], stdin: Vec<u8>) -> RusticResult<Finished> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let done = self
            .handle
            .block_on(process::run(&self.node, &argv, stdin, OP_TIMEOUT, MAX_READ))
            .map_err(|e| {
                RusticError::new(
                    ErrorKind::Backend,
                    "backup host {node}: `{command}` could not run: {error}",
                )
                .attach_context("node", self.node.name.clone())
                .attach_context("command", argv.join(" "))
                .attach_context("error", e.to_string())
            })?;
        if done.exit_code != Some(0) {
            return Err(RusticError::new(
                ErrorKind::Backend,
                "backup host {node}: `{command}` failed: {stderr}",
            )
            .attach_context("node", self.node.name.clone())
            .attach_context("command", argv.join(" "))
            .attach_context(
                "stderr",
                String::from_utf8_lossy(&done.stderr).trim().to_string(),
            ));
        }
        Ok(done)
    }
}

impl ReadBackend for RemoteBackend {
    fn location(&self) -> String {
        format!("{}:{}", self.node.name, self.root)
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        let dir = format!("{}/{}", self.root, tpe.dirname());
        if tpe == FileType::Config {
            let out = self.run(
                &[
                    "sh",
                    "-c",
                    "test ! -f \"$1/config\" || stat -c %s \"$1/config\"",
                    "sh",
                    &self.root,
                ],
                Vec::new(),
            )?;
            return Ok(String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .map(|size| (Id::default(), size))
                .collect());
        }
        let out = self.run(
            &[
                "sh",
                "-c",
                "test ! -d \"$1\" || find \"$1\" -type f -printf '%f %s\\n'",
                "sh",
                &dir,
            ],
            Vec::new(),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (name, size) = l.split_once(' ')?;
                Some((name.parse::<Id>().ok()?, size.parse().ok()?))
            })
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let out = self.run(&["cat", "--", &self.path(tpe, id)], Vec::new())?;
        Ok(Bytes::from(out.stdout))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let out = self.run(
            &[
                "dd",
                &format!("if={}", self.path(tpe, id)),
                "iflag=skip_bytes,count_bytes",
                &format!("skip={offset}"),
                &format!("count={length}"),
                "status=none",
            ],
            Vec::new(),
        )?;
        Ok(Bytes::from(out.stdout))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.path(tpe, id)
    }
}

impl WriteBackend for RemoteBackend {
    fn create(&self) -> RusticResult<()> {
        let mut dirs: Vec<String> = ["index", "keys", "locks", "snapshots"]
            .iter()
            .map(|d| format!("{}/{d}", self.root))
            .collect();
        dirs.extend((0..=255u8).map(|b| format!("{}/data/{b:02x}", self.root)));
        // Private, as restic makes them: directories 0700, files 0600.
        let mut argv = vec!["sh", "-c", "umask 077 && mkdir -p -- \"$@\"", "sh"];
        argv.extend(dirs.iter().map(String::as_str));
        self.run(&argv, Vec::new()).map(|_| ())
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let data = crate::objects::joined(content);
        // Written under a temporary name and renamed: a reader never sees half a file.
        self.run(
            &[
                "sh",
                "-c",
                "umask 077 && mkdir -p \"$1\" && cat > \"$2.tmp\" && mv \"$2.tmp\" \"$2\"",
                "sh",
                &self.dir(tpe, id),
                &self.path(tpe, id),
            ],
            data,
        )
        .map(|_| ())
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        self.run(&["rm", "-f", "--", &self.path(tpe, id)], Vec::new())
            .map(|_| ())
    }
}
