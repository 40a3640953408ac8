//! A repository on an SFTP server, spelled as restic spells it: `sftp:user@host:/path` (or
//! `sftp://user@host:port//path`). The connection is an SSH master of the `openssh` crate, as
//! for nodes, verified against the deployment's known_hosts; files go over the SFTP
//! subsystem (`openssh-sftp-client`), so a chrooted `internal-sftp` account with no shell is
//! enough. Every file is written under a temporary name and renamed: a reader never sees half
//! a file. Directories are created 0700 and files 0600, as restic does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use openssh_sftp_client::error::SftpErrorKind;
use openssh_sftp_client::{Error, Sftp, SftpOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::runtime::Handle;

use crate::objects::{ObjectStore, StoreError};

/// An SFTP repository's address.
#[derive(Clone, PartialEq, Eq)]
pub struct SftpPlace {
    /// Login user; `None`: the one running Coffer.
    pub user: Option<String>,
    /// Host name or address.
    pub host: String,
    /// Port; `None`: 22.
    pub port: Option<u16>,
    /// The repository's directory (relative to the login directory unless absolute).
    pub path: String,
}

impl std::fmt::Debug for SftpPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for SftpPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self
            .user
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        match self.port {
            Some(port) => write!(f, "sftp://{user}{}:{port}/{}", self.host, self.path),
            None => write!(f, "sftp:{user}{}:{}", self.host, self.path),
        }
    }
}

impl SftpPlace {
    /// Parse `sftp:[user@]host:path` or `sftp://[user@]host[:port]/path` (a second `/` for an
    /// absolute path); `None` when `spec` is neither.
    pub fn parse(spec: &str) -> Option<Result<Self, String>> {
        let rest = spec.strip_prefix("sftp:")?;
        let bad = || {
            Err(format!(
                "`{spec}` is not an SFTP location: write sftp:user@host:/path or \
                 sftp://user@host:port//path"
            ))
        };
        let (login, port, path) = if let Some(url) = rest.strip_prefix("//") {
            let Some((authority, path)) = url.split_once('/') else {
                return Some(bad());
            };
            match authority.rsplit_once(':') {
                Some((login, port)) => match port.parse() {
                    Ok(port) => (login, Some(port), path),
                    Err(_) => return Some(bad()),
                },
                None => (authority, None, path),
            }
        } else {
            match rest.split_once(':') {
                Some((login, path)) => (login, None, path),
                None => return Some(bad()),
            }
        };
        let (user, host) = match login.rsplit_once('@') {
            Some((user, host)) => (Some(user.to_string()), host),
            None => (None, login),
        };
        if host.is_empty() || path.is_empty() {
            return Some(bad());
        }
        Some(Ok(Self {
            user,
            host: host.to_string(),
            port,
            path: path.trim_end_matches('/').to_string(),
        }))
    }
}

/// An SFTP session to the repository's server.
#[derive(Clone)]
pub struct SftpRepo {
    /// Where.
    pub place: SftpPlace,
    sftp: Arc<Sftp>,
    handle: Handle,
}

impl std::fmt::Debug for SftpRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.place, f)
    }
}

impl SftpRepo {
    /// Open the SFTP subsystem over `session` (connected to `place`). Call from within the
    /// tokio runtime: file operations block on it from rustic_core's threads.
    pub async fn open(
        place: SftpPlace,
        session: Arc<openssh_sftp_client::openssh::Session>,
    ) -> Result<Self, StoreError> {
        let sftp = Sftp::from_clonable_session(session, SftpOptions::default())
            .await
            .map_err(|e| StoreError::Down(format!("starting its SFTP subsystem: {e}")))?;
        Ok(Self {
            place,
            sftp: Arc::new(sftp),
            handle: Handle::current(),
        })
    }
}

fn failed(request: &str, e: Error) -> StoreError {
    match e {
        Error::SftpError(SftpErrorKind::NoSuchFile, _) => StoreError::NotFound(request.into()),
        Error::SftpError(SftpErrorKind::PermDenied, msg) => StoreError::Unauthorized {
            status: 0,
            fix: format!(
                "{request}: permission denied ({msg}): the login must own the repository's \
                 directory"
            ),
        },
        other => StoreError::Protocol {
            request: request.into(),
            message: other.to_string(),
        },
    }
}

impl SftpRepo {
    fn path(&self, key: &str) -> PathBuf {
        Path::new(&self.place.path).join(key)
    }

    /// Make `dir` and its parents, 0700.
    async fn make_dirs(&self, dir: &Path) -> Result<(), StoreError> {
        let mut fs = self.sftp.fs();
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at {
            if d.as_os_str().is_empty() || fs.metadata(d).await.is_ok() {
                break;
            }
            missing.push(d.to_path_buf());
            at = d.parent();
        }
        for d in missing.iter().rev() {
            let made = fs
                .dir_builder()
                .permissions(openssh_sftp_client::metadata::Permissions::from(0o700u16))
                .create(d)
                .await;
            // Made meanwhile by another run: fine.
            if let Err(e) = made
                && fs.metadata(d).await.is_err()
            {
                return Err(failed(&format!("mkdir {}", d.display()), e));
            }
        }
        Ok(())
    }

    /// Every file under `dir` (recursively) with its size, as keys relative to the root.
    async fn walk(&self, dir: &Path, out: &mut Vec<(String, u64)>) -> Result<(), StoreError> {
        let request = format!("list {}", dir.display());
        let mut fs = self.sftp.fs();
        let listing = match fs.open_dir(dir).await {
            Ok(d) => d,
            Err(e) => {
                return match failed(&request, e) {
                    StoreError::NotFound(_) => Ok(()),
                    other => Err(other),
                };
            }
        };
        let entries: Vec<_> = listing.read_dir().collect().await;
        let root = Path::new(&self.place.path);
        for entry in entries {
            let entry = entry.map_err(|e| failed(&request, e))?;
            let name = entry.filename();
            if name == Path::new(".") || name == Path::new("..") {
                continue;
            }
            let path = dir.join(name);
            let meta = entry.metadata();
            if meta.file_type().is_some_and(|t| t.is_dir()) {
                Box::pin(self.walk(&path, out)).await?;
            } else if let Ok(key) = path.strip_prefix(root) {
                out.push((key.to_string_lossy().into_owned(), meta.len().unwrap_or(0)));
            }
        }
        Ok(())
    }
}

impl ObjectStore for SftpRepo {
    fn location(&self) -> String {
        self.place.to_string()
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        // Keys are paths: list the directory the prefix names (or holds), keep the matches;
        // a prefix in the top directory (`config`) is the file of that name.
        let Some((dir, _)) = prefix.rsplit_once('/') else {
            let path = self.path(prefix);
            return match self
                .handle
                .block_on(async { self.sftp.fs().metadata(&path).await })
            {
                Ok(meta) if !meta.file_type().is_some_and(|t| t.is_dir()) => {
                    Ok(vec![(prefix.to_string(), meta.len().unwrap_or(0))])
                }
                Ok(_) => Ok(Vec::new()),
                Err(e) => match failed(&format!("stat {prefix}"), e) {
                    StoreError::NotFound(_) => Ok(Vec::new()),
                    other => Err(other),
                },
            };
        };
        let dir = self.path(dir);
        let mut all = Vec::new();
        self.handle.block_on(self.walk(&dir, &mut all))?;
        all.retain(|(k, _)| k.starts_with(prefix));
        Ok(all)
    }

    fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Bytes, StoreError> {
        let request = format!("read {key}");
        self.handle.block_on(async {
            let path = self.path(key);
            let Some((offset, length)) = range else {
                let mut fs = self.sftp.fs();
                return fs
                    .read(&path)
                    .await
                    .map(BytesMut::freeze)
                    .map_err(|e| failed(&request, e));
            };
            let file = self
                .sftp
                .open(&path)
                .await
                .map_err(|e| failed(&request, e))?;
            // Reads split to the server's limits.
            let mut file = Box::pin(openssh_sftp_client::file::TokioCompatFile::new(file));
            let io = |e: std::io::Error| failed(&request, e.into());
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(io)?;
            // At most `length`: fewer at the end of the file.
            let mut data = Vec::with_capacity(length as usize);
            file.take(length).read_to_end(&mut data).await.map_err(io)?;
            Ok(Bytes::from(data))
        })
    }

    fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let request = format!("write {key}");
        self.handle.block_on(async {
            let path = self.path(key);
            if let Some(dir) = path.parent() {
                self.make_dirs(dir).await?;
            }
            let temporary = path.with_extension("tmp");
            let mut file = self
                .sftp
                .options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temporary)
                .await
                .map_err(|e| failed(&request, e))?;
            file.set_permissions(openssh_sftp_client::metadata::Permissions::from(0o600u16))
                .await
                .map_err(|e| failed(&request, e))?;
            file.write_all(&body)
                .await
                .map_err(|e| failed(&request, e))?;
            file.close().await.map_err(|e| failed(&request, e))?;
            let mut fs = self.sftp.fs();
            // SFTP's rename does not replace: a lock object is written again in place.
            if fs.metadata(&path).await.is_ok() {
                fs.remove_file(&path)
                    .await
                    .map_err(|e| failed(&request, e))?;
            }
            fs.rename(&temporary, &path)
                .await
                .map_err(|e| failed(&request, e))
        })
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let request = format!("delete {key}");
        match self
            .handle
            .block_on(async { self.sftp.fs().remove_file(self.path(key)).await })
        {
            Ok(()) => Ok(()),
            Err(e) => match failed(&request, e) {
                StoreError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    fn bucket_exists(&self) -> Result<bool, StoreError> {
        let root = PathBuf::from(&self.place.path);
        match self
            .handle
            .block_on(async { self.sftp.fs().metadata(&root).await })
        {
            Ok(_) => Ok(true),
            Err(e) => match failed(&format!("stat {}", root.display()), e) {
                StoreError::NotFound(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    fn create_bucket(&self) -> Result<(), StoreError> {
        let root = PathBuf::from(&self.place.path);
        self.handle.block_on(async {
            self.make_dirs(&root).await?;
            for dir in ["index", "keys", "snapshots", "locks"] {
                self.make_dirs(&root.join(dir)).await?;
            }
            for b in 0..=255u8 {
                self.make_dirs(&root.join(format!("data/{b:02x}"))).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sftp_locations_are_read_as_restic_spells_them() {
        let p = SftpPlace::parse("sftp:backup@10.0.0.9:/srv/coffer")
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.user.as_deref(), p.host.as_str(), p.port, p.path.as_str()),
            (Some("backup"), "10.0.0.9", None, "/srv/coffer")
        );
        assert_eq!(p.to_string(), "sftp:backup@10.0.0.9:/srv/coffer");
        let p = SftpPlace::parse("sftp://backup@host:2222//srv/coffer/")
            .unwrap()
            .unwrap();
        assert_eq!((p.port, p.path.as_str()), (Some(2222), "/srv/coffer"));
        let p = SftpPlace::parse("sftp:host:repo").unwrap().unwrap();
        assert_eq!((p.user, p.path.as_str()), (None, "repo"));
        assert!(SftpPlace::parse("sftp:host").unwrap().is_err());
        assert!(SftpPlace::parse("s3:host/b").is_none());
    }
}
