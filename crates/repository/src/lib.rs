//! Where snapshots live: a restic-format repository, through `rustic_core`.
//!
//! Layout, so that an operator can read a Coffer repository with restic or rustic in a
//! disaster:
//! - every artifact is its own restic snapshot (label `coffer-artifact`, host = node, tag
//!   `run=<id>`): a command's output as one file, `/<node>/<plugin>/<artifact>`, a path set as
//!   the restic tree of those paths ([`tree`], [`Layout::Tree`]);
//! - a Coffer snapshot is a restic snapshot labelled `coffer`, written last, holding
//!   `/coffer/manifest.json` (also kept in the snapshot's description for fast listing).
//!
//! A run that fails or is killed never writes its `coffer` snapshot, so it never looks
//! complete; its artifact snapshots are deleted when it fails, or by the next backup when it
//! was killed ([`Repo::prepare_backup`]).
//!
//! Open a [`Repo`] at a [`RepoLocation`] (a local directory, a directory on a backup host
//! reached over SSH, a REST server, an S3 bucket, a Swift container or an SFTP server) with
//! its [`Password`]; [`Repo::into_writer`] gives the
//! [`ArtifactWriter`] a backup streams artifacts into and commits a [`Manifest`] with,
//! [`Repo::into_reader`] the [`ArtifactReader`] a restore streams them back from.

#![deny(missing_docs)]

mod archiver;
mod blob_ahead;
mod chunker;
mod copy;
mod manifest;
mod object_lock;
mod objects;
mod pack_writer;
mod private;
mod read_ahead;
mod remote;
mod retention;
mod s3;
mod sftp;
mod spool;
mod stream;
mod swift;
pub mod tree;
mod uploads;

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use rustic_core::{FileType, ReadBackend, WriteBackend};

use coffer_transport::{NodeHandle, Process};
use rustic_core::repofile::{BlobType, Node, SnapshotFile, Tree};
use rustic_core::{
    CheckOptions, ConfigOptions, Credentials, DataId, IndexedFullStatus, KeyOptions, OpenStatus,
    ReadSource, Repository, RepositoryBackends, RepositoryOptions, RusticError, SnapshotOptions,
    TreeId,
};

pub use copy::Copied;

pub use manifest::*;
use object_lock::NotTaken;
pub use object_lock::ObjectLock;
pub use objects::StoreError;
pub use retention::{Decision, ForgetReport, PruneReport, Retention};
pub use s3::S3Place;
pub use sftp::{SftpPlace, SftpRepo};
use spool::{Kept, Room, Spool};
use stream::{HashingReader, HashingWriter, StreamStats};
pub use swift::SwiftPlace;

/// File name of the writer lock at the top of a local repository.
const LOCK_FILE: &str = "coffer.lock";
/// Who holds a lock when only its existence is known.
const ANOTHER_RUN: &str = "another coffer run";
/// Label of Coffer snapshots (manifests).
const RUN_LABEL: &str = "coffer";
/// Label of artifact snapshots.
const ARTIFACT_LABEL: &str = "coffer-artifact";
/// Path of the manifest inside a Coffer snapshot.
const MANIFEST_PATH: &str = "/coffer/manifest.json";

/// A repository password. Never printed: `Debug` shows `***`.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Wrap a password.
    pub fn new(p: impl Into<String>) -> Self {
        Self(p.into())
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Errors of the repository layer.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// No repository at the path.
    #[error("no repository at {0}: create one with `coffer init`")]
    NotFound(PathBuf),
    /// The password opens no key.
    #[error("wrong password for the repository at {0}")]
    WrongPassword(PathBuf),
    /// `init` on an existing repository.
    #[error("a repository already exists at {0}")]
    AlreadyExists(PathBuf),
    /// Another writer holds the lock.
    #[error(
        "the repository at {0} is in use by {1}; wait for it to finish, or give \
         --retry-lock DURATION (e.g. `--retry-lock 30m`) to wait for it"
    )]
    Pin(PathBuf, String),
    /// Another writer held the lock for the whole retry time.
    #[error(
        "the repository at {0} was still in use by {1} after waiting {secs}s",
        secs = .2.as_secs()
    )]
    StillLocked(PathBuf, String, std::time::Duration),
    /// No snapshot matches.
    #[error("no snapshot `{0}` in the repository (see `coffer snapshots`)")]
    SnapshotNotFound(String),
    /// A manifest could not be read.
    #[error("snapshot {id} has an unreadable manifest: {reason}")]
    BadManifest {
        /// Snapshot id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Artifact bytes do not match their recorded digest.
    #[error(
        "artifact {path} in snapshot {snapshot} is corrupt: expected sha256 {expected}, read {actual}"
    )]
    Integrity {
        /// Artifact snapshot.
        snapshot: String,
        /// Path in it.
        path: String,
        /// Recorded digest.
        expected: String,
        /// Digest of what was read.
        actual: String,
    },
    /// The stream feeding an artifact failed.
    #[error("reading the stream for {path} failed: {source}")]
    StreamRead {
        /// Artifact path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The stream consumer failed while an artifact was being written to it.
    #[error("writing artifact {path} failed: {source}")]
    StreamWrite {
        /// Artifact path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The engine failed.
    #[error("repository {path}: {message}")]
    Engine {
        /// Repository.
        path: PathBuf,
        /// What the engine said.
        message: String,
    },
    /// A retention policy that cannot be applied.
    #[error("retention policy: {0}")]
    Retention(String),
    /// The server refuses to delete: it keeps the repository append-only.
    #[error(
        "the REST server of {0} refuses to delete anything (403 Forbidden): it serves the \
         repository append-only (`rest-server --append-only`, `rclone serve restic \
         --append-only`), which protects the backups from a compromised Coffer host; nothing \
         was deleted. Run forget and prune where the repository may be changed (on the backup \
         server itself, or against a server started without --append-only)"
    )]
    AppendOnly(PathBuf),
    /// The server refuses the credentials.
    #[error("the {server} of {path} refuses the credentials ({status}): {fix}")]
    Unauthorized {
        /// Repository.
        path: PathBuf,
        /// "REST server", "S3 endpoint", "Swift service".
        server: &'static str,
        /// The HTTP status.
        status: String,
        /// Where the credentials come from.
        fix: String,
    },
    /// The server does not answer.
    #[error(
        "the {server} of {path} does not answer ({message}): is it running, and reachable \
         from this host at that address?"
    )]
    ServerDown {
        /// Repository.
        path: PathBuf,
        /// "REST server", "S3 endpoint", "Swift service".
        server: &'static str,
        /// What the HTTP client said.
        message: String,
    },
    /// No credentials for the repository's server.
    #[error("repository {path}: {message}")]
    Credentials {
        /// Repository.
        path: PathBuf,
        /// What is missing, and where it is read from.
        message: String,
    },
    /// Local I/O failed.
    #[error("repository {path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

type Result<T, E = RepoError> = std::result::Result<T, E>;

fn engine(path: &Path) -> impl Fn(Box<RusticError>) -> RepoError + '_ {
    move |e| RepoError::Engine {
        path: path.to_path_buf(),
        message: without_userinfo(&e.display_log().replace('\n', " ")),
    }
}

/// Coffer's state directory: `COFFER_STATE_DIR`, else the user's state directory's `coffer`
/// (`/var/lib/coffer` without one).
pub fn state_dir() -> PathBuf {
    std::env::var_os("COFFER_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::state_dir().map(|d| d.join("coffer")))
        .unwrap_or_else(|| PathBuf::from("/var/lib/coffer"))
}

/// `text` with the credentials of every URL in it (`://user:password@`) replaced by `***`: an
/// HTTP client's error may quote the URL it was given.
fn without_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let host_end = rest.find(['/', ' ', '`', '"', '\'']).unwrap_or(rest.len());
        if let Some(at) = rest[..host_end].rfind('@') {
            out.push_str("***");
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

/// A Coffer snapshot: a manifest and the id of the restic snapshot holding it.
#[derive(Clone, Debug)]
pub struct CofferSnapshot {
    /// Full id.
    pub id: String,
    /// When it was written (RFC 3339).
    pub time: String,
    /// What it holds.
    pub manifest: Manifest,
}

/// What [`Repo::prepare_backup`] found.
#[derive(Debug)]
pub struct BackupStart {
    /// Artifact snapshots of killed runs removed.
    pub removed_orphans: usize,
    /// The newest Coffer snapshot, if any.
    pub latest: Option<CofferSnapshot>,
}

impl CofferSnapshot {
    /// The first 8 characters of the id, as restic shows them.
    pub fn short_id(&self) -> &str {
        &self.id[..8.min(self.id.len())]
    }
}

/// What `check` found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    /// Problems that mean data is missing or damaged.
    pub errors: Vec<String>,
    /// Oddities that do not affect integrity (e.g. packs left by an interrupted run).
    pub warnings: Vec<String>,
    /// Coffer snapshots checked.
    pub snapshots: usize,
}

/// An exclusive lock for writers; released on drop.
pub enum RepoLock {
    /// `flock` on a local file.
    Local(File),
    /// A `flock … cat` on the backup host, held while its stdin stays open.
    Remote(Box<Process>),
    /// This host's `flock` and a lock object in the bucket, for other hosts.
    Objects(File, ObjectLock),
}

/// Where a repository lives.
#[derive(Clone, Debug)]
pub enum RepoLocation {
    /// A directory of the Coffer host.
    Local(PathBuf),
    /// A directory of another machine (the backup host), reached over SSH.
    Remote {
        /// The backup host.
        node: NodeHandle,
        /// The directory there.
        path: String,
    },
    /// A server speaking restic's REST protocol (`rest-server`, `rclone serve restic`).
    Rest(RestServer),
    /// An S3 bucket (`s3:https://host/bucket/prefix`).
    S3(S3Place),
    /// An OpenStack Swift container (`swift:container:/prefix`).
    Swift(SwiftPlace),
    /// A directory on an SFTP server (`sftp:user@host:/path`), connected.
    Sftp(SftpRepo),
}

impl RepoLocation {
    /// `rest:…`, `s3:…` or `swift:…` as restic spells them; `None` when `spec` is none of
    /// them (a path). A REST server's credentials are set on the answer by the caller.
    pub fn parse_url(spec: &str) -> Option<std::result::Result<Self, String>> {
        RestServer::parse(spec)
            .map(|r| r.map(Self::Rest))
            .or_else(|| S3Place::parse(spec).map(|r| r.map(Self::S3)))
            .or_else(|| SwiftPlace::parse(spec).map(|r| r.map(Self::Swift)))
    }

    /// The server's kind, for messages.
    fn server(&self) -> &'static str {
        match self {
            Self::Rest(_) => "REST server",
            Self::S3(_) => "S3 endpoint",
            Self::Swift(_) => "Swift service",
            Self::Sftp(_) => "SFTP server",
            Self::Local(_) | Self::Remote { .. } => "backup host",
        }
    }
}

/// A REST server's address and its HTTP credentials (basic auth), kept apart from the URL so
/// that the password is never shown.
#[derive(Clone)]
pub struct RestServer {
    /// `http(s)://host:port/path`, without credentials.
    pub url: String,
    /// HTTP user, if the server asks for one.
    pub user: Option<String>,
    /// Its password.
    pub password: Option<Password>,
}

impl std::fmt::Debug for RestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rest:{}", self.url)
    }
}

impl RestServer {
    /// Parse `rest:URL` (restic's spelling); `None` when `spec` is not one. A password in the
    /// URL is refused: it would sit on command lines and in files; it comes from the
    /// environment instead.
    pub fn parse(spec: &str) -> Option<std::result::Result<Self, String>> {
        let url = spec.strip_prefix("rest:")?;
        Some(match url::Url::parse(url) {
            Err(e) => Err(format!("`{spec}` is not a URL: {e}")),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => Err(format!(
                "`{spec}`: a REST server is reached over http or https"
            )),
            Ok(u) if u.password().is_some() => Err(
                "the REST repository URL holds a password: remove it from the URL and give it \
                 in COFFER_REST_PASSWORD (the user in COFFER_REST_USERNAME or the URL)"
                    .into(),
            ),
            Ok(mut u) => {
                let user = (!u.username().is_empty()).then(|| u.username().to_string());
                let _ = u.set_username("");
                Ok(Self {
                    url: u.to_string(),
                    user,
                    password: None,
                })
            }
        })
    }

    /// The URL with the credentials, for the HTTP client only.
    fn with_credentials(&self) -> String {
        let mut u = url::Url::parse(&self.url).expect("checked when parsed");
        if let Some(user) = &self.user {
            let _ = u.set_username(user);
            if let Some(p) = &self.password {
                let _ = u.set_password(Some(&p.0));
            }
        }
        u.to_string()
    }
}

impl std::fmt::Display for RepoLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::Remote { node, path } => write!(f, "{}:{path}", node.name),
            Self::Rest(r) => write!(f, "rest:{}", r.url),
            Self::S3(p) => write!(f, "{p}"),
            Self::Swift(p) => write!(f, "{p}"),
            Self::Sftp(r) => write!(f, "{}", r.place),
        }
    }
}

/// An open repository.
pub struct Repo {
    path: PathBuf,
    location: RepoLocation,
    /// The repository's object store, when it is in one (for its lock objects).
    objects: Option<Arc<objects::ObjectBackend>>,
    inner: Repository<OpenStatus>,
    /// The backend under `inner`.
    be: Arc<dyn WriteBackend>,
    retry_lock: std::time::Duration,
    /// Kept to open a second handle for writing (a per-plugin retention's new manifests).
    password: Password,
}

/// The backend of `location`; `objects`: its object store's, when it is in one.
fn backend(
    location: &RepoLocation,
    objects: Option<Arc<objects::ObjectBackend>>,
) -> Result<Arc<dyn WriteBackend>> {
    let label = PathBuf::from(location.to_string());
    Ok(match location {
        RepoLocation::Local(path) => {
            Arc::new(private::PrivateLocal::new(path).map_err(engine(&label))?)
        }
        RepoLocation::Remote { node, path } => {
            Arc::new(remote::RemoteBackend::new(node.clone(), path))
        }
        // Three retries (1 s, 2 s, 4 s apart) for what may pass (a server restarting); a
        // refusal (4xx) is not retried.
        RepoLocation::Rest(server) => Arc::new(
            rustic_backend::RestBackend::new(
                server.with_credentials(),
                [("retry".to_string(), "3".to_string())],
            )
            .map_err(engine(&label))?,
        ),
        RepoLocation::S3(_) | RepoLocation::Swift(_) | RepoLocation::Sftp(_) => match objects {
            Some(objects) => objects,
            None => object_backend(location)?.expect("an object store"),
        },
    })
}

/// The repository in object storage at `location`; `None` for the other kinds.
fn object_backend(location: &RepoLocation) -> Result<Option<Arc<objects::ObjectBackend>>> {
    let credentials = |message: String| RepoError::Credentials {
        path: PathBuf::from(location.to_string()),
        message,
    };
    Ok(match location {
        RepoLocation::S3(place) => Some(Arc::new(objects::ObjectBackend::new(
            Arc::new(place.open().map_err(credentials)?),
            &place.prefix,
        ))),
        RepoLocation::Swift(place) => Some(Arc::new(objects::ObjectBackend::new(
            Arc::new(place.open().map_err(credentials)?),
            &place.prefix,
        ))),
        RepoLocation::Sftp(repo) => Some(Arc::new(objects::ObjectBackend::new(
            Arc::new(repo.clone()),
            "",
        ))),
        _ => None,
    })
}

/// A failed request to the server of `location`, as the user reads it.
fn store_error(location: &RepoLocation, e: StoreError) -> RepoError {
    let path = PathBuf::from(location.to_string());
    let server = location.server();
    match e {
        StoreError::Unauthorized { status, fix } => RepoError::Unauthorized {
            path,
            server,
            status: status.to_string(),
            fix,
        },
        StoreError::Down(message) => RepoError::ServerDown {
            path,
            server,
            message,
        },
        other => RepoError::Engine {
            path,
            message: other.to_string(),
        },
    }
}

/// The engine's handle on `location`, through `objects` when given (its object store).
fn repository(
    location: &RepoLocation,
    objects: Option<Arc<objects::ObjectBackend>>,
) -> Result<Repository<()>> {
    Ok(repository_and_backend(location, objects)?.0)
}

/// [`repository`], with the backend under it (Coffer writes packs there itself).
fn repository_and_backend(
    location: &RepoLocation,
    objects: Option<Arc<objects::ObjectBackend>>,
) -> Result<(Repository<()>, Arc<dyn WriteBackend>)> {
    let label = PathBuf::from(location.to_string());
    let opts = RepositoryOptions::default().no_cache(true);
    let be = backend(location, objects)?;
    let repo = Repository::new(&opts, &RepositoryBackends::new(be.clone(), None))
        .map_err(engine(&label))?;
    Ok((repo, be))
}

/// Whether a repository exists at `location` (it has a config file). The first request a
/// run makes: a server that does not answer or refuses the credentials is said so here.
fn exists(location: &RepoLocation) -> Result<bool> {
    let label = PathBuf::from(location.to_string());
    if let Some(objects) = object_backend(location)? {
        return match objects.store().bucket_exists() {
            Ok(false) => Ok(false),
            Ok(true) => Ok(!objects
                .list_with_size(FileType::Config)
                .map_err(engine(&label))?
                .is_empty()),
            Err(e) => Err(store_error(location, e)),
        };
    }
    let backend = backend(location, None)?;
    match backend.list_with_size(FileType::Config) {
        Ok(config) if !config.is_empty() => Ok(true),
        // A REST server's config is looked for with a HEAD, whose refusal reads as "none":
        // ask for the keys, which says why.
        Ok(_) if matches!(location, RepoLocation::Rest(_)) => {
            match backend.list(FileType::Key).map_err(engine(&label)) {
                Err(RepoError::Engine { message, .. }) if message.contains("401") => {
                    Err(RepoError::Unauthorized {
                        path: label,
                        server: location.server(),
                        status: "401 Unauthorized".into(),
                        fix: "give its user in COFFER_REST_USERNAME (or the URL) and its \
                              password in COFFER_REST_PASSWORD"
                            .into(),
                    })
                }
                _ => Ok(false),
            }
        }
        Ok(_) => Ok(false),
        Err(e) => Err(match (location, engine(&label)(e)) {
            (RepoLocation::Rest(_), RepoError::Engine { path, message })
                if message.contains("error sending request") =>
            {
                let cause = message
                    .rsplit("(source: ")
                    .next()
                    .unwrap_or(&message)
                    .trim_end_matches(')')
                    .to_string();
                RepoError::ServerDown {
                    path,
                    server: location.server(),
                    message: cause,
                }
            }
            (_, other) => other,
        }),
    }
}

/// An engine error while deleting: a REST server's 403 is its append-only mode.
fn deleting(location: &RepoLocation, path: &Path) -> impl Fn(Box<RusticError>) -> RepoError {
    let rest = matches!(location, RepoLocation::Rest(_));
    let path = path.to_path_buf();
    move |e| match engine(&path)(e) {
        RepoError::Engine { message, .. } if rest && message.contains("403 Forbidden") => {
            RepoError::AppendOnly(path.clone())
        }
        other => other,
    }
}

impl Repo {
    /// Create a repository at `location` protected by `password`. Blocking.
    pub fn init(location: &RepoLocation, password: &Password) -> Result<()> {
        let label = PathBuf::from(location.to_string());
        if let RepoLocation::Local(path) = location {
            private::create_private_dir(path).map_err(|source| RepoError::Io {
                path: path.clone(),
                source,
            })?;
        }
        if exists(location)? {
            return Err(RepoError::AlreadyExists(label));
        }
        if let Some(objects) = object_backend(location)? {
            objects.create().map_err(engine(&label))?;
        }
        let config = ConfigOptions::default();
        repository(location, None)?
            .init(
                &Credentials::password(&password.0),
                &KeyOptions::default(),
                &config,
            )
            .map_err(engine(&label))?;
        Ok(())
    }

    /// Open the repository at `location`. Blocking.
    pub fn open(location: &RepoLocation, password: &Password) -> Result<Self> {
        let label = PathBuf::from(location.to_string());
        if !exists(location)? {
            return Err(RepoError::NotFound(label));
        }
        if let RepoLocation::Local(path) = location
            && let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "the repository at {} can be read by other users of this machine (its key \
                 files invite an offline attack on the password): `chmod -R go-rwx {}`",
                path.display(),
                path.display()
            );
        }
        // One object store for the engine and for Coffer's own requests (locks, planned reads).
        let objects = object_backend(location)?;
        let (inner, be) = repository_and_backend(location, objects.clone())?;
        let inner = inner
            .open(&Credentials::password(&password.0))
            .map_err(|e| {
                if e.is_incorrect_password() {
                    RepoError::WrongPassword(label.clone())
                } else {
                    engine(&label)(e)
                }
            })?;
        Ok(Self {
            path: label,
            location: location.clone(),
            objects,
            inner,
            be,
            retry_lock: std::time::Duration::ZERO,
            password: password.clone(),
        })
    }

    /// Where it is, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where it is.
    pub fn location(&self) -> &RepoLocation {
        &self.location
    }

    /// How long [`Repo::lock`] waits for another run's lock (restic's `--retry-lock`).
    pub fn set_retry_lock(&mut self, wait: std::time::Duration) {
        self.retry_lock = wait;
    }

    /// Take the writer lock. When another run holds it, try again (after 1 s, then twice as
    /// long each time, at most 30 s) until the retry time set by [`Repo::set_retry_lock`] has
    /// passed; by default fail at once.
    pub async fn lock(&self) -> Result<RepoLock> {
        let deadline = tokio::time::Instant::now() + self.retry_lock;
        let mut pause = std::time::Duration::from_secs(1);
        loop {
            match self.try_lock().await {
                Err(RepoError::Pin(p, holder)) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(if self.retry_lock.is_zero() {
                            RepoError::Pin(p, holder)
                        } else {
                            RepoError::StillLocked(p, holder, self.retry_lock)
                        });
                    }
                    if pause.as_secs() == 1 {
                        tracing::warn!(
                            "the repository at {} is in use by {holder}: waiting up to {}s for \
                             it (--retry-lock)",
                            p.display(),
                            self.retry_lock.as_secs()
                        );
                    }
                    // A little jitter: two hosts that met on object storage do not meet again.
                    let jitter = std::time::Duration::from_millis(u64::from(
                        getrandom::u32().unwrap_or(0) % 500,
                    ));
                    tokio::time::sleep((pause + jitter).min(deadline - now)).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(30));
                }
                other => return other,
            }
        }
    }

    /// Take the writer lock, failing at once when another run holds it.
    async fn try_lock(&self) -> Result<RepoLock> {
        let local = |p: PathBuf| -> Result<File> {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(private::FILE_MODE)
                .open(&p)
                .map_err(|source| RepoError::Io {
                    path: p.clone(),
                    source,
                })?;
            match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
                Ok(true) => Ok(file),
                Ok(false) => Err(RepoError::Pin(self.path.clone(), ANOTHER_RUN.into())),
                Err(source) => Err(RepoError::Io { path: p, source }),
            }
        };
        match &self.location {
            RepoLocation::Local(dir) => local(dir.join(LOCK_FILE)).map(RepoLock::Local),
            // A server has no flock: this host's own lock (in the state directory, by the
            // location's digest) keeps runs from this host apart; on object storage a lock
            // object keeps other hosts out too.
            RepoLocation::Rest(_)
            | RepoLocation::S3(_)
            | RepoLocation::Swift(_)
            | RepoLocation::Sftp(_) => {
                let dir = state_dir().join("locks");
                private::create_private_dir(&dir).map_err(|source| RepoError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let (kind, place) = match &self.location {
                    RepoLocation::Rest(server) => ("rest", server.url.clone()),
                    other => ("objects", other.to_string()),
                };
                let digest = hex::encode(Sha256::digest(place.as_bytes()));
                let here = local(dir.join(format!("{kind}-{}.lock", &digest[..16])))?;
                let Some(backend) = self.objects.clone() else {
                    return Ok(RepoLock::Local(here));
                };
                let taken = tokio::task::spawn_blocking(move || ObjectLock::take(backend))
                    .await
                    .expect("taking the lock does not panic");
                match taken {
                    Ok(lock) => Ok(RepoLock::Objects(here, lock)),
                    Err(NotTaken::Held(info)) => {
                        Err(RepoError::Pin(self.path.clone(), info.holder()))
                    }
                    Err(NotTaken::Store(e)) => Err(store_error(&self.location, e)),
                }
            }
            RepoLocation::Remote { node, path } => {
                // `cat` holds the lock until our end of its stdin closes (end of run, or a
                // lost connection): it cannot outlive us. `locked` on stdout says we have it.
                let argv: Vec<String> = vec![
                    "sh".into(),
                    "-c".into(),
                    "umask 077 && exec flock -n -E 75 \"$1\" sh -c 'echo locked; exec cat'".into(),
                    "sh".into(),
                    format!("{path}/{LOCK_FILE}"),
                ];
                let io = |e: String| RepoError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other(e),
                };
                let mut p = node.spawn(&argv).await.map_err(|e| io(e.to_string()))?;
                let mut first = [0u8; 7];
                use tokio::io::AsyncReadExt;
                match p.stdout.read_exact(&mut first).await {
                    Ok(_) if &first == b"locked\n" => Ok(RepoLock::Remote(Box::new(p))),
                    _ => match p.wait().await {
                        Ok(Some(75)) => Err(RepoError::Pin(self.path.clone(), ANOTHER_RUN.into())),
                        other => Err(io(format!("taking the lock with flock failed: {other:?}"))),
                    },
                }
            }
        }
    }

    fn all_snapshots(&self) -> Result<Vec<SnapshotFile>> {
        self.inner.get_all_snapshots().map_err(engine(&self.path))
    }

    /// Every Coffer snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<CofferSnapshot>> {
        coffer_snapshots(&self.all_snapshots()?)
    }

    /// The snapshot named by `spec`: `latest`, a full id or a unique id prefix.
    pub fn find(&self, spec: &str) -> Result<CofferSnapshot> {
        find_in(&self.snapshots()?, spec)
    }

    /// Before a backup, holding the lock: delete artifact snapshots that no Coffer snapshot
    /// references (what a killed run left), and find the newest Coffer snapshot. One listing
    /// of the snapshot files serves both (on a backup host each file is a command over SSH).
    pub fn prepare_backup(&self) -> Result<BackupStart> {
        let all = self.all_snapshots()?;
        let mut snaps = coffer_snapshots(&all)?;
        let referenced: BTreeSet<String> = snaps
            .iter()
            .flat_map(|s| s.manifest.artifacts.iter().map(|a| a.snapshot.clone()))
            .collect();
        let orphans: Vec<_> = all
            .iter()
            .filter(|s| s.label == ARTIFACT_LABEL && !referenced.contains(&full_id(&s.id)))
            .map(|s| s.id)
            .collect();
        let mut removed = orphans.len();
        if !orphans.is_empty() {
            match self
                .inner
                .delete_snapshots(&orphans)
                .map_err(deleting(&self.location, &self.path))
            {
                // An append-only server keeps them: they name no run, so nothing restores
                // them, and a forget where deleting is allowed removes them.
                Err(RepoError::AppendOnly(_)) => {
                    tracing::warn!(
                        "{} artifact(s) of runs that never completed stay in the append-only \
                         repository at {} until a forget where deleting is allowed",
                        orphans.len(),
                        self.path.display()
                    );
                    removed = 0;
                }
                other => other?,
            }
        }
        Ok(BackupStart {
            removed_orphans: removed,
            latest: snaps.pop(),
        })
    }

    /// Prepare for writing artifacts.
    pub fn into_writer(self) -> Result<ArtifactWriter> {
        let path = self.path.clone();
        let inner = self.inner.to_indexed().map_err(engine(&path))?;
        ArtifactWriter::new(path, inner, self.be)
    }

    /// A writer beside this handle (the repository opened again).
    fn writer(&self) -> Result<ArtifactWriter> {
        let (inner, be) = repository_and_backend(&self.location, None)?;
        let inner = inner
            .open(&Credentials::password(&self.password.0))
            .map_err(engine(&self.path))?
            .to_indexed()
            .map_err(engine(&self.path))?;
        ArtifactWriter::new(self.path.clone(), inner, be)
    }

    /// Prepare for reading artifacts.
    pub fn into_reader(self) -> Result<ArtifactReader> {
        let path = self.path.clone();
        let inner = self.inner.to_indexed().map_err(engine(&path))?;
        Ok(ArtifactReader {
            path,
            inner,
            objects: self.objects,
            local: matches!(self.location, RepoLocation::Local(_)),
            spool: Spool::new(None),
        })
    }

    /// Check the repository's structure and, with `read_data`, read every pack back; then
    /// check that every Coffer snapshot's artifacts are present.
    pub fn check(&self, read_data: bool) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let results = self
            .inner
            .check(CheckOptions::default().read_data(read_data))
            .map_err(engine(&self.path))?;
        for (level, err) in &results.0 {
            let msg = err.to_string();
            if format!("{level:?}") == "Warn" {
                report.warnings.push(msg);
            } else {
                report.errors.push(msg);
            }
        }
        let present: BTreeSet<String> = self
            .all_snapshots()?
            .iter()
            .map(|s| full_id(&s.id))
            .collect();
        match self.snapshots() {
            Ok(snaps) => {
                report.snapshots = snaps.len();
                for s in snaps {
                    for a in &s.manifest.artifacts {
                        if !present.contains(&a.snapshot) {
                            report.errors.push(format!(
                                "snapshot {}: artifact {} (restic snapshot {}) is missing",
                                s.short_id(),
                                a.path,
                                a.snapshot
                            ));
                        }
                    }
                }
            }
            Err(e) => report.errors.push(e.to_string()),
        }
        Ok(report)
    }
}

/// The outcome of storing one artifact.
#[derive(Debug)]
pub struct Stored {
    /// The artifact's restic snapshot.
    pub snapshot: String,
    /// Bytes stored.
    pub size: u64,
    /// Their SHA-256.
    pub sha256: String,
}

/// The outcome of storing a tree artifact.
#[derive(Debug)]
pub struct StoredTree {
    /// The artifact's restic snapshot.
    pub snapshot: String,
    /// Its tree.
    pub tree: String,
    /// The length of the tar stream it reads back as.
    pub size: u64,
    /// Entries in it.
    pub entries: u64,
    /// Files whose content was read (the others were unchanged since the parent).
    pub files_read: u64,
    /// Bytes of content read.
    pub bytes_read: u64,
    /// What changed or vanished while it was read.
    pub changed: Vec<String>,
}

/// Writes artifacts and, at the end of a run, the manifest.
pub struct ArtifactWriter {
    path: PathBuf,
    inner: Repository<IndexedFullStatus>,
    /// Where packs, indexes and snapshots are written (Coffer's [`archiver`]).
    be: Arc<dyn WriteBackend>,
    sealer: pack_writer::Sealer,
    chunker: chunker::Chunker,
    /// Blobs this run wrote and indexed (not in `inner`'s index, read at the start).
    seen: std::sync::Mutex<std::collections::HashSet<rustic_core::BlobId>>,
}

impl ArtifactWriter {
    fn new(
        path: PathBuf,
        inner: Repository<IndexedFullStatus>,
        be: Arc<dyn WriteBackend>,
    ) -> Result<Self> {
        let config = inner.config();
        let broken = |message: String| RepoError::Engine {
            path: path.clone(),
            message,
        };
        let sealer = pack_writer::Sealer::new(&inner.key(), config).map_err(broken)?;
        let chunker = chunker::Chunker::from_config(config).map_err(broken)?;
        Ok(Self {
            path,
            inner,
            be,
            sealer,
            chunker,
            seen: std::sync::Mutex::default(),
        })
    }

    /// The uncompressed length of a blob in the repository's index.
    fn indexed(&self, tpe: BlobType, id: &rustic_core::BlobId) -> Option<u32> {
        let entry = match tpe {
            BlobType::Data => self.inner.get_index_entry(&DataId::from(**id)),
            BlobType::Tree => self.inner.get_index_entry(&TreeId::from(**id)),
        }
        .ok()?;
        let l = entry.location;
        Some(
            l.uncompressed_length
                .map_or(l.length.saturating_sub(pack_writer::CRYPT_OVERHEAD), |u| {
                    u.get()
                }),
        )
    }

    /// Archive `entries` into snapshot `snap` of `paths`; `parent` finds the parent's nodes.
    /// `ok` is asked before the snapshot is written: a failure it reports (a source's, whose
    /// iterator just ends) keeps the snapshot from being written. The snapshot written.
    fn archive_entries(
        &self,
        entries: impl Iterator<Item = archiver::Entry>,
        mut snap: SnapshotFile,
        paths: &[String],
        parent: Option<(&str, &mut archiver::ParentNode<'_>)>,
        ok: impl FnOnce() -> std::result::Result<(), std::io::Error>,
        entry_path: &str,
    ) -> Result<SnapshotFile> {
        let start = jiff::Zoned::now();
        let packs =
            pack_writer::PackWriter::new(self.be.clone(), self.sealer.clone(), self.inner.config());
        let index = |tpe: BlobType, id: &rustic_core::BlobId| self.indexed(tpe, id);
        let (parent_id, parent_node) = match parent {
            Some((id, node)) => (Some(id), Some(node)),
            None => (None, None),
        };
        let mut arch =
            archiver::Archiver::new(&self.chunker, packs, &index, &self.seen, parent_node);
        let fail = |e: archiver::Failed| match e {
            archiver::Failed::Read(source) => RepoError::StreamRead {
                path: entry_path.to_string(),
                source,
            },
            archiver::Failed::Store(message) => RepoError::Engine {
                path: self.path.clone(),
                message,
            },
        };
        for entry in entries {
            arch.add(entry).map_err(fail)?;
        }
        let (tree, mut summary, _) = arch.finish().map_err(fail)?;
        ok().map_err(|source| RepoError::StreamRead {
            path: entry_path.to_string(),
            source,
        })?;
        for p in paths {
            snap.paths.add(p.clone());
        }
        if let Some(p) = parent_id.and_then(|p| p.parse().ok()) {
            snap.parent = Some(p);
            snap.parents = vec![p];
        }
        snap.tree = tree;
        let end = jiff::Zoned::now();
        let secs =
            (end.timestamp().as_millisecond() - start.timestamp().as_millisecond()) as f64 / 1000.0;
        summary.backup_start = start;
        summary.backup_end = end;
        summary.backup_duration = secs;
        summary.total_duration = secs;
        snap.summary = Some(summary);
        let id = pack_writer::save_file(&*self.be, &self.sealer, FileType::Snapshot, &snap)
            .map_err(|message| RepoError::Engine {
                path: self.path.clone(),
                message: format!("storing the snapshot: {message}"),
            })?;
        snap.id = id.into();
        Ok(snap)
    }

    fn archive(
        &self,
        entry: &str,
        options: SnapshotOptions,
        reader: impl Read + Send + 'static,
        progress: Arc<AtomicU64>,
    ) -> Result<(String, StreamStats)> {
        let (reader, stats) = HashingReader::metered(reader, progress);
        let snap = options.to_snapshot().map_err(engine(&self.path))?;
        // Never anything from a parent: a stream has no metadata to compare.
        let one = archiver::Entry {
            path: entry.as_bytes().to_vec(),
            node: stream::stream_node(entry),
            body: Some(archiver::Body::Stream(Box::new(reader))),
        };
        let snap = self.archive_entries(
            std::iter::once(one),
            snap,
            &[entry.to_string()],
            None,
            || Ok(()),
            entry,
        )?;
        let stats = stats.finish();
        let id = full_id(&snap.id);
        if let Some(source) = stats.error {
            self.discard(&[id])?;
            return Err(RepoError::StreamRead {
                path: entry.into(),
                source,
            });
        }
        if !stats.finished {
            self.discard(&[id])?;
            return Err(RepoError::StreamRead {
                path: entry.into(),
                source: std::io::Error::other("the stream was not read to its end"),
            });
        }
        Ok((id, stats))
    }

    /// Store everything `reader` yields as artifact `/<node>/<plugin>/<name>` of run `run_id`,
    /// counting bytes into `progress` as they go. Blocking: call it from a blocking thread.
    pub fn store(
        &self,
        node: &str,
        plugin: &str,
        name: &str,
        run_id: &str,
        reader: impl Read + Send + 'static,
        progress: Arc<AtomicU64>,
    ) -> Result<Stored> {
        let entry = artifact_path(node, plugin, name);
        let options = SnapshotOptions::default()
            .label(ARTIFACT_LABEL.to_string())
            .host(node.to_string())
            .add_tags(&format!("coffer,run={run_id},plugin={plugin}"))
            .map_err(engine(&self.path))?;
        let (snapshot, stats) = self.archive(&entry, options, reader, progress)?;
        Ok(Stored {
            snapshot,
            size: stats.size,
            sha256: stats.sha256,
        })
    }

    /// The tree of artifact snapshot `snapshot` (a parent for [`Self::store_tree`]), as a
    /// lookup of the node at an absolute path; `None` when it cannot be read (no parent then:
    /// everything is read).
    pub fn parent(&self, snapshot: &str) -> Option<impl FnMut(&[u8]) -> Option<Node> + '_> {
        let snap = self
            .inner
            .get_snapshots(&[snapshot])
            .ok()?
            .into_iter()
            .next()?;
        let root = self.inner.get_tree(&snap.tree).ok()?;
        let mut walk = tree::ParentWalk::new(root, |n: &Node| {
            n.subtree.and_then(|id| self.inner.get_tree(&id).ok())
        });
        Some(move |path: &[u8]| walk.node(path))
    }

    /// Store a node's `paths` as artifact `/<node>/<plugin>/<name>` of run `run_id` laid out as
    /// a restic tree ([`Layout::Tree`]): `plan` is the listing with how each entry is read,
    /// `tar` the stream of its `Tar` entries, and `parent` is the artifact snapshot the plan
    /// compared with (unchanged files take their content from it). Blocking.
    #[allow(clippy::too_many_arguments)]
    pub fn store_tree(
        &self,
        node: &str,
        plugin: &str,
        name: &str,
        run_id: &str,
        paths: &[String],
        plan: Vec<tree::source::Planned>,
        tar: impl Read + Send + 'static,
        parent: Option<&str>,
        progress: Arc<AtomicU64>,
    ) -> Result<StoredTree> {
        let entry = artifact_path(node, plugin, name);
        let options = SnapshotOptions::default()
            .label(ARTIFACT_LABEL.to_string())
            .host(node.to_string())
            .add_tags(&format!(
                "coffer,run={run_id},plugin={plugin},artifact={name}"
            ))
            .map_err(engine(&self.path))?;
        let snap = options.to_snapshot().map_err(engine(&self.path))?;
        let (tar, tar_stats) = HashingReader::counted(tar, progress);
        let source = tree::source::NodeSource::new(plan, Box::new(tar));
        let stats = source.stats();
        let taken = || stats.lock().expect("stats lock").error.take();
        let mut backup_paths: Vec<String> = paths.to_vec();
        backup_paths.sort();
        backup_paths.dedup();
        let mut lookup = parent.and_then(|id| self.parent(id).map(|l| (id, l)));
        let parent = lookup
            .as_mut()
            .map(|(id, l)| (*id, l as &mut archiver::ParentNode<'_>));
        let entries = source
            .entries()
            .map_while(|e| e.ok())
            .map(tree::source::Content::entry);
        let ok = || {
            let read = tar_stats.finish();
            taken().or(read.error).map_or(Ok(()), Err)
        };
        let snap = self
            .archive_entries(entries, snap, &backup_paths, parent, ok, &entry)
            .map_err(|e| match taken() {
                // What the source saw says more than a reader that stopped.
                Some(source) => RepoError::StreamRead {
                    path: entry.clone(),
                    source,
                },
                None => e,
            })?;
        let id = full_id(&snap.id);
        let stats = std::mem::take(&mut *stats.lock().expect("stats lock"));
        Ok(StoredTree {
            snapshot: id,
            tree: (*snap.tree).to_hex().as_str().to_string(),
            size: stats.rendered,
            entries: stats.entries,
            files_read: stats.files_read,
            bytes_read: stats.bytes_read,
            changed: stats.changed,
        })
    }

    /// Delete artifact snapshots of a run that will not complete.
    pub fn discard(&self, snapshots: &[String]) -> Result<()> {
        let ids = snapshots
            .iter()
            .map(|s| s.parse())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e: Box<RusticError>| engine(&self.path)(e))?;
        if ids.is_empty() {
            return Ok(());
        }
        self.inner
            .delete_snapshots(&ids)
            .map_err(engine(&self.path))
    }

    /// Write the Coffer snapshot for `manifest`: from now on the run is complete.
    pub fn commit(&self, manifest: &Manifest) -> Result<String> {
        self.commit_at(manifest, None)
    }

    /// [`Self::commit`], dated `time` instead of now (a copy keeps its original's time).
    fn commit_at(&self, manifest: &Manifest, time: Option<jiff::Zoned>) -> Result<String> {
        let json = serde_json::to_string(manifest).expect("manifest serialises");
        let options = SnapshotOptions::default()
            .time(time)
            .label(RUN_LABEL.to_string())
            .host(manifest.deployment.clone())
            .description(json.clone())
            .add_tags(&format!("coffer,run={}", manifest.run_id))
            .map_err(engine(&self.path))?;
        let (id, _) = self.archive(
            MANIFEST_PATH,
            options,
            std::io::Cursor::new(json.into_bytes()),
            Arc::default(),
        )?;
        Ok(id)
    }
}

/// The path of an artifact inside its restic snapshot.
pub fn artifact_path(node: &str, plugin: &str, name: &str) -> String {
    format!("/{node}/{plugin}/{name}")
}

/// Reads artifacts back. An artifact read whole once ([`ArtifactReader::verify`]) is kept
/// for the rest of the run where there is room, and later reads of it come from there.
pub struct ArtifactReader {
    path: PathBuf,
    inner: Repository<IndexedFullStatus>,
    /// The object store the repository is in, if it is: reads are planned there.
    objects: Option<Arc<objects::ObjectBackend>>,
    /// Whether the repository is on a local disk: reading a tree again there costs a
    /// decryption, less than keeping the tree's bytes on disk once more.
    local: bool,
    spool: Spool,
}

/// The spool's name of an artifact.
fn spool_key(artifact: &ArtifactRecord) -> String {
    format!(
        "{}{}\0{}",
        artifact.snapshot,
        artifact.path,
        artifact.only.join("\0")
    )
}

impl ArtifactReader {
    /// When snapshot `id` was written.
    fn snapshot_time(&self, id: &str) -> Result<jiff::Zoned> {
        Ok(self.snapshot(id)?.time)
    }

    /// Restic snapshot `id`.
    fn snapshot(&self, id: &str) -> Result<SnapshotFile> {
        let snaps = self
            .inner
            .get_snapshots(&[id])
            .map_err(|_| RepoError::SnapshotNotFound(id.to_string()))?;
        snaps
            .into_iter()
            .next()
            .ok_or_else(|| RepoError::SnapshotNotFound(id.to_string()))
    }

    /// Write the bytes of `artifact` into `w`: from the spool when [`Self::verify`] kept them,
    /// else from the repository, verifying their SHA-256 as they go (a mismatch is known only
    /// at the end). Blocking: call it from a blocking thread.
    pub fn read(&self, artifact: &ArtifactRecord, mut w: impl Write) -> Result<()> {
        match self.spool.get(&spool_key(artifact)) {
            Some(kept) => kept
                .write_to(&mut w)
                .and_then(|()| w.flush())
                .map_err(|source| RepoError::StreamWrite {
                    path: artifact.path.clone(),
                    source,
                }),
            None => self.read_stored(artifact, w),
        }
    }

    /// Read `artifact` whole from the repository and check its SHA-256, before anything is
    /// written from it; keep its bytes (in memory, or a temporary file in `TMPDIR` that leaves
    /// enough of its filesystem free) so that the reads that follow in this run cost no
    /// repository read. Once verified, an artifact is not read again here. Blocking.
    pub fn verify(&self, artifact: &ArtifactRecord) -> Result<()> {
        let key = spool_key(artifact);
        if self.spool.verified(&key) {
            return Ok(());
        }
        // A tree in a local repository is verified without keeping it (see `local`).
        let room = if self.local && artifact.layout == Layout::Tree {
            Room::None
        } else {
            self.spool.room(artifact.size)
        };
        let kept = match room {
            Room::Memory => {
                let mut bytes = Vec::with_capacity(artifact.size as usize);
                let read = self.read_stored(artifact, &mut bytes);
                if read.is_err() {
                    self.spool.release(artifact.size);
                }
                read?;
                Some(Kept::Memory(Arc::new(bytes)))
            }
            Room::File(file) => {
                match self.read_stored(artifact, std::io::BufWriter::new(&file)) {
                    // What was written (a tree's holes are not: it may be less than its size).
                    Ok(()) => {
                        let len = file.metadata().map(|m| m.len()).unwrap_or(artifact.size);
                        Some(Kept::File(Arc::new(file), len))
                    }
                    // The spool's own disk failed (filled up meanwhile): verify without it.
                    Err(RepoError::StreamWrite { .. }) => {
                        self.read_stored(artifact, std::io::sink())?;
                        None
                    }
                    Err(e) => return Err(e),
                }
            }
            Room::None => {
                self.read_stored(artifact, std::io::sink())?;
                None
            }
        };
        self.spool.keep(key, kept);
        Ok(())
    }

    /// [`Self::read`] from the repository.
    fn read_stored(&self, artifact: &ArtifactRecord, w: impl Write) -> Result<()> {
        let snap = self.snapshot(&artifact.snapshot)?;
        if artifact.layout == Layout::Tree {
            return self.read_tree(artifact, &snap, w);
        }
        let node = self
            .inner
            .node_from_snapshot_and_path(&snap, &artifact.path)
            .map_err(engine(&self.path))?;
        // On an object store, the packs holding the artifact are fetched ahead, several at once.
        let _plan = self
            .objects
            .as_ref()
            .map(|objects| objects.plan(&self.ranges(node.content.iter().flatten())));
        let mut writer = HashingWriter::new(w);
        if let Err(e) = self.inner.dump(&node, &mut writer) {
            return Err(match writer.take_error() {
                Some(source) => RepoError::StreamWrite {
                    path: artifact.path.clone(),
                    source,
                },
                None => engine(&self.path)(e),
            });
        }
        writer.flush().map_err(|source| RepoError::StreamWrite {
            path: artifact.path.clone(),
            source,
        })?;
        let (size, sha256) = writer.finish();
        if sha256 != artifact.sha256 || size != artifact.size {
            return Err(RepoError::Integrity {
                snapshot: artifact.snapshot.clone(),
                path: artifact.path.clone(),
                expected: artifact.sha256.clone(),
                actual: sha256,
            });
        }
        Ok(())
    }
}

impl ArtifactReader {
    /// The pack ranges of blobs `ids`, in order.
    fn ranges<'i>(
        &self,
        ids: impl IntoIterator<Item = &'i rustic_core::DataId>,
    ) -> Vec<(rustic_core::Id, u64, u64)> {
        ids.into_iter()
            .filter_map(|id| self.inner.get_index_entry(id).ok())
            .map(|e| {
                let at = e.location;
                (*e.pack, u64::from(at.offset), u64::from(at.length))
            })
            .collect()
    }

    /// Tree artifact `artifact` (of restic snapshot `snap`) written out as the tar stream it
    /// was read as ([`Layout::Tree`]); its length must be the one recorded (every blob and tree
    /// is checked by restic's own MACs).
    fn read_tree(
        &self,
        artifact: &ArtifactRecord,
        snap: &SnapshotFile,
        w: impl Write,
    ) -> Result<()> {
        let root = self
            .inner
            .get_tree(&snap.tree)
            .map_err(engine(&self.path))?;
        let only: Vec<Vec<u8>> = artifact
            .only
            .iter()
            .map(|o| o.as_bytes().to_vec())
            .collect();
        // The blobs the render will read, in its order, found by a render that only counts
        // (it reads no content); they are then decoded ahead of the render on both cores.
        let mut plan = RepoFiles::new(self, Reads::Plan(Vec::new()));
        let planned = tree::render::Render::new(tree::render::Count::default())
            .tree(b"", &root, &only, &mut plan)
            .map(|()| match plan.reads {
                Reads::Plan(ids) => ids,
                Reads::Ahead(_) => Vec::new(),
            });
        // On an object store, their packs are fetched ahead too, several at once.
        let _plan = match (&self.objects, &planned) {
            (Some(objects), Ok(ids)) => Some(objects.plan(&self.ranges(ids))),
            _ => None,
        };
        let mut out = HashingWriter::unhashed(w);
        let written = planned.and_then(|ids| {
            let decode = |id: &rustic_core::DataId| {
                self.inner
                    .get_blob_cached(&(*id).into(), rustic_core::repofile::BlobType::Data)
                    .map_err(|e| std::io::Error::other(e.display_log()))
            };
            blob_ahead::Ahead::run(&ids, DECODERS, decode, |ahead| {
                let mut render = tree::render::Render::new(&mut out);
                let mut files = RepoFiles::new(self, Reads::Ahead(ahead));
                render
                    .tree(b"", &root, &only, &mut files)
                    .and_then(|()| render.finish())
                    .map(|(_, length)| ((), length))
            })
        });
        let write_error = out.take_error();
        let length = match written {
            Ok((_, length)) => length,
            Err(e) => {
                return Err(match write_error {
                    Some(source) => RepoError::StreamWrite {
                        path: artifact.path.clone(),
                        source,
                    },
                    None => RepoError::Engine {
                        path: self.path.clone(),
                        message: format!("reading artifact {}: {e}", artifact.path),
                    },
                });
            }
        };
        out.flush().map_err(|source| RepoError::StreamWrite {
            path: artifact.path.clone(),
            source,
        })?;
        // Part of a tree is shorter than all of it: only a whole one has a length to check.
        if artifact.only.is_empty() && length != artifact.size {
            return Err(RepoError::Integrity {
                snapshot: artifact.snapshot.clone(),
                path: artifact.path.clone(),
                expected: format!("a tar stream of {} bytes", artifact.size),
                actual: format!("{length} bytes"),
            });
        }
        Ok(())
    }
}

/// Threads decoding a tree's blobs ahead of its render.
const DECODERS: usize = 2;

/// How a render's file content is read.
enum Reads<'a> {
    /// Not read: the blobs that would be are noted, in order, and zeros counted instead.
    Plan(Vec<rustic_core::DataId>),
    /// Taken from blobs decoded ahead, in the planned order.
    Ahead(&'a blob_ahead::Ahead<'a>),
}

/// What a tree's render reads from the repository.
struct RepoFiles<'a> {
    reader: &'a ArtifactReader,
    reads: Reads<'a>,
    /// The id of an all-zero blob of each length met.
    zeros: std::collections::HashMap<u32, rustic_core::Id>,
}

/// Zero runs shorter than this stay data: not worth a hole.
const HOLE_MIN: u32 = 64 * 1024;

impl<'a> RepoFiles<'a> {
    fn new(reader: &'a ArtifactReader, reads: Reads<'a>) -> Self {
        Self {
            reader,
            reads,
            zeros: std::collections::HashMap::new(),
        }
    }

    /// Each content blob of `node` with its length and whether it is all zeros.
    fn blobs(&mut self, node: &Node) -> std::io::Result<Vec<(rustic_core::DataId, u32, bool)>> {
        let mut out = Vec::new();
        for id in node.content.iter().flatten() {
            let entry = self
                .reader
                .inner
                .get_index_entry(id)
                .map_err(|e| std::io::Error::other(e.display_log()))?;
            let len = entry.location.data_length();
            // Zeros compress to almost nothing: only a blob stored that small can be all
            // zeros, and only then is its id compared with the zeros' (hashing a zero buffer
            // of every blob's length would cost a second SHA-256 of the whole tree).
            let zero = len >= HOLE_MIN && entry.location.length < len / 256 && {
                let z = self.zeros.entry(len).or_insert_with(|| {
                    let digest: [u8; 32] = Sha256::digest(vec![0u8; len as usize]).into();
                    rustic_core::Id::new(digest)
                });
                **id == *z
            };
            out.push((*id, len, zero));
        }
        Ok(out)
    }
}

impl tree::render::Files for RepoFiles<'_> {
    fn tree(&mut self, node: &Node) -> std::io::Result<Tree> {
        let id = node
            .subtree
            .ok_or_else(|| std::io::Error::other("a directory without its tree"))?;
        self.reader
            .inner
            .get_tree(&id)
            .map_err(|e| std::io::Error::other(e.display_log()))
    }

    fn segments(&mut self, node: &Node) -> std::io::Result<Option<Vec<(u64, u64)>>> {
        let blobs = self.blobs(node)?;
        if !blobs.iter().any(|b| b.2) {
            return Ok(None);
        }
        let mut segments: Vec<(u64, u64)> = Vec::new();
        let mut at = 0u64;
        for (_, len, zero) in blobs {
            if !zero {
                match segments.last_mut() {
                    Some((o, l)) if *o + *l == at => *l += u64::from(len),
                    _ => segments.push((at, u64::from(len))),
                }
            }
            at += u64::from(len);
        }
        Ok(Some(segments))
    }

    fn content(&mut self, node: &Node, sparse: bool, w: &mut dyn Write) -> std::io::Result<()> {
        for (id, len, zero) in self.blobs(node)? {
            if sparse && zero {
                continue;
            }
            match &mut self.reads {
                Reads::Plan(ids) => {
                    ids.push(id);
                    let mut left = len as usize;
                    while left > 0 {
                        let k = left.min(ZEROS.len());
                        w.write_all(&ZEROS[..k])?;
                        left -= k;
                    }
                }
                Reads::Ahead(ahead) => w.write_all(&ahead.next(&id)?)?,
            }
        }
        Ok(())
    }
}

/// Zeros a planning render writes for content it does not read.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Coffer snapshot `spec` (`latest`, an id or a unique prefix) among `snaps` (oldest first, as
/// [`Repo::snapshots`] lists them).
pub fn find_in(snaps: &[CofferSnapshot], spec: &str) -> Result<CofferSnapshot> {
    if spec == "latest" {
        return snaps
            .last()
            .cloned()
            .ok_or_else(|| RepoError::SnapshotNotFound("latest".into()));
    }
    let mut matching = snaps.iter().filter(|s| s.id.starts_with(spec));
    match (matching.next(), matching.next()) {
        (Some(s), None) if !spec.is_empty() => Ok(s.clone()),
        _ => Err(RepoError::SnapshotNotFound(spec.into())),
    }
}

/// The full hex id of a snapshot (`Display` shows only the first 8 characters).
/// The Coffer snapshots among the repository's snapshot files `all`, oldest first.
fn coffer_snapshots(all: &[SnapshotFile]) -> Result<Vec<CofferSnapshot>> {
    let mut snaps: Vec<&SnapshotFile> = all.iter().filter(|s| s.label == RUN_LABEL).collect();
    snaps.sort_by(|a, b| a.time.cmp(&b.time));
    snaps
        .into_iter()
        .map(|s| {
            let id = full_id(&s.id);
            let manifest =
                serde_json::from_str(s.description.as_deref().unwrap_or("")).map_err(|e| {
                    RepoError::BadManifest {
                        id: id.clone(),
                        reason: e.to_string(),
                    }
                })?;
            Ok(CofferSnapshot {
                id,
                time: s.time.timestamp().to_string(),
                manifest,
            })
        })
        .collect()
}

fn full_id(id: &rustic_core::repofile::SnapshotId) -> String {
    (**id).to_hex().as_str().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rest_url_is_read_as_restic_spells_it_and_never_holds_a_password() {
        let s = RestServer::parse("rest:http://backup@10.0.0.5:8000/overcloud")
            .unwrap()
            .unwrap();
        assert_eq!(s.url, "http://10.0.0.5:8000/overcloud");
        assert_eq!(s.user.as_deref(), Some("backup"));
        assert!(RestServer::parse("/var/backups/coffer").is_none());
        let e = RestServer::parse("rest:https://u:pw@h/")
            .unwrap()
            .unwrap_err();
        assert!(
            e.contains("COFFER_REST_PASSWORD") && !e.contains("pw@"),
            "{e}"
        );
        assert!(RestServer::parse("rest:ftp://h/").unwrap().is_err());
        let with = RestServer {
            password: Some(Password::new("p@ss/word")),
            ..s
        };
        assert_eq!(
            with.with_credentials(),
            "http://backup:p%40ss%2Fword@10.0.0.5:8000/overcloud"
        );
        assert_eq!(format!("{with:?}"), "rest:http://10.0.0.5:8000/overcloud");
    }

    /// Store `bytes` as artifact `name` in the repository at `location`.
    fn stored(
        location: &RepoLocation,
        password: &Password,
        name: &str,
        bytes: Vec<u8>,
    ) -> ArtifactRecord {
        let writer = Repo::open(location, password)
            .unwrap()
            .into_writer()
            .unwrap();
        let stored = writer
            .store(
                "n1",
                "p",
                name,
                "run",
                std::io::Cursor::new(bytes),
                Arc::default(),
            )
            .unwrap();
        ArtifactRecord {
            node: "n1".into(),
            plugin: "p".into(),
            plugin_version: "0.1.0".into(),
            plugin_digest: String::new(),
            contract: "2.4.0".into(),
            name: name.into(),
            kind: ArtifactKind::Stream,
            size: stored.size,
            sha256: stored.sha256,
            snapshot: stored.snapshot,
            path: artifact_path("n1", "p", name),
            scope: ArtifactScope::Node,
            excludes: None,
            layout: Layout::Blob,
            changed: Vec::new(),
            only: Vec::new(),
        }
    }

    #[test]
    fn an_artifact_verified_once_is_read_again_without_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let location = RepoLocation::Local(dir.path().join("repo"));
        let password = Password::new("pw");
        Repo::init(&location, &password).unwrap();
        // One artifact small enough for memory, one that goes to a spool file, one not verified.
        let mut seed = 7u64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 33) as u8
                })
                .collect()
        };
        let (small, large, other) = (noise(1 << 20), noise(40 << 20), noise(1 << 16));
        let records = [
            stored(&location, &password, "small", small.clone()),
            stored(&location, &password, "large", large.clone()),
            stored(&location, &password, "other", other),
        ];
        let reader = Repo::open(&location, &password)
            .unwrap()
            .into_reader()
            .unwrap();
        reader.verify(&records[0]).unwrap();
        reader.verify(&records[1]).unwrap();
        // The packs are gone: what was verified still reads, byte for byte.
        std::fs::remove_dir_all(dir.path().join("repo/data")).unwrap();
        for (record, bytes) in records.iter().zip([&small, &large]) {
            let mut out = Vec::new();
            reader.read(record, &mut out).unwrap();
            assert!(out == *bytes, "{} read back changed", record.name);
            reader.verify(record).unwrap();
        }
        assert!(reader.read(&records[2], std::io::sink()).is_err());
        assert!(reader.verify(&records[2]).is_err());
    }

    #[test]
    fn credentials_in_an_error_message_are_hidden() {
        assert_eq!(
            without_userinfo("for url (http://backup:s3cret@10.0.0.5:8000/x/config) failed"),
            "for url (http://***@10.0.0.5:8000/x/config) failed"
        );
        assert_eq!(without_userinfo("no url here"), "no url here");
        assert_eq!(
            without_userinfo("http://h:1/a and https://u:p@g/b"),
            "http://h:1/a and https://***@g/b"
        );
    }
}
