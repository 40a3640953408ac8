//! A local repository only its owner can read, as restic makes them: directories 0700, files
//! 0600. The repository's key file is the password-protected master key; readable by others it
//! invites an offline attack on the password.

use std::fs::{DirBuilder, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rustic_backend::LocalBackend;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

/// Mode of the repository's directories.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the repository's files.
pub const FILE_MODE: u32 = 0o600;

/// rustic's local backend, with every directory it creates made 0700 and every file it writes
/// made 0600. The root is created 0700 first, so no file is ever reachable by others, even in
/// the moment between its creation and its `chmod`.
pub struct PrivateLocal {
    inner: LocalBackend,
    root: PathBuf,
}

fn failed(what: &str, path: &Path, err: std::io::Error) -> Box<RusticError> {
    RusticError::with_source(
        ErrorKind::InputOutput,
        "Failed to {what} `{path}`: check its owner and permissions.",
        err,
    )
    .attach_context("what", what.to_string())
    .attach_context("path", path.display().to_string())
}

fn chmod(path: &Path, mode: u32) -> RusticResult<()> {
    std::fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(|e| failed("make private", path, e))
}

/// Create `dir` and its missing parents, each 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

impl PrivateLocal {
    /// The local backend for `root`.
    pub fn new(root: &Path) -> RusticResult<Self> {
        Ok(Self {
            inner: LocalBackend::new(root.to_string_lossy(), Vec::<(String, String)>::new())?,
            root: root.to_path_buf(),
        })
    }

    /// Where `tpe`/`id` lives: the local backend's layout (`config`, `data/ab/ab…`, `keys/…`).
    fn file(&self, tpe: FileType, id: &Id) -> PathBuf {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => self.root.join("config"),
            FileType::Pack => self.root.join("data").join(&hex[0..2]).join(&*hex),
            _ => self.root.join(tpe.dirname()).join(&*hex),
        }
    }
}

impl ReadBackend for PrivateLocal {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.inner.list_with_size(tpe)
    }

    fn list(&self, tpe: FileType) -> RusticResult<Vec<Id>> {
        self.inner.list(tpe)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.inner.read_full(tpe, id)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.inner.read_partial(tpe, id, cacheable, offset, length)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
}

impl WriteBackend for PrivateLocal {
    fn create(&self) -> RusticResult<()> {
        create_private_dir(&self.root).map_err(|e| failed("create", &self.root, e))?;
        chmod(&self.root, DIR_MODE)?;
        self.inner.create()?;
        let mut dirs: Vec<PathBuf> = ["data", "index", "keys", "snapshots"]
            .iter()
            .map(|d| self.root.join(d))
            .collect();
        dirs.extend((0..=255u8).map(|b| self.root.join("data").join(format!("{b:02x}"))));
        dirs.iter().try_for_each(|d| chmod(d, DIR_MODE))
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        if tpe == FileType::Config {
            self.inner.write_bytes(tpe, id, cacheable, content)?;
            return chmod(&self.file(tpe, id), FILE_MODE);
        }
        // Written here, not through rustic's backend (which copies through an 8 KiB buffer, a
        // write call each): each part in one call, the file private from its creation.
        let path = self.file(tpe, id);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(|e| failed("create", &path, e))?;
        for part in content.slice() {
            file.write_all(part)
                .map_err(|e| failed("write", &path, e))?;
        }
        chmod(&path, FILE_MODE)
    }

    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.inner.remove(tpe, id, cacheable)
    }
}
