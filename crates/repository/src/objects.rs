//! Repositories on object storage (S3, OpenStack Swift, SFTP): restic's layout as object keys
//! under a prefix (`config`, `keys/ID`, `snapshots/ID`, `index/ID`, `data/ab/ab…`), so restic
//! and rustic read the same bucket; [`ObjectBackend`] is what rustic_core reads and writes
//! through, over any [`ObjectStore`]. Packs are read ahead (`read_ahead.rs`). HTTP requests
//! that may pass (no answer, 5xx, 429) are tried four times, 1 s, 2 s and 4 s apart; a refusal
//! (4xx) is not tried again.

use std::sync::Arc;
use std::time::Duration;

use crate::read_ahead::{Fetch, PlanGuard, ReadAhead};
use crate::uploads::Uploads;
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::blocking::{RequestBuilder, Response};
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

/// A bucket (S3) or container (Swift) holding objects by key.
pub(crate) trait ObjectStore: Send + Sync + 'static {
    /// `s3:…` or `swift:…`, for messages.
    fn location(&self) -> String;
    /// Every key under `prefix`, with its size.
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError>;
    /// An object, or `length` bytes of it from `offset`.
    fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Bytes, StoreError>;
    /// Store an object (replacing one of that key).
    fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError>;
    /// Delete an object; one already gone is no error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Whether the bucket (container) exists: the first request of a run, which tells a
    /// refused credential or a server that does not answer.
    fn bucket_exists(&self) -> Result<bool, StoreError>;
    /// Create the bucket (container).
    fn create_bucket(&self) -> Result<(), StoreError>;
}

/// Why a request to object storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The server refuses the credentials (401, or 403 on the first request).
    #[error("refuses the credentials ({status}): {fix}")]
    Unauthorized {
        /// HTTP status.
        status: u16,
        /// Where the credentials come from.
        fix: String,
    },
    /// No answer at all.
    #[error("does not answer ({0})")]
    Down(String),
    /// No such object (or bucket).
    #[error("{0}: not found")]
    NotFound(String),
    /// A failed SFTP request.
    #[error("{request}: {message}")]
    Protocol {
        /// `read key`, …
        request: String,
        /// What the server or client said.
        message: String,
    },
    /// Any other failed request.
    #[error("{request}: {status} {body}")]
    Http {
        /// `GET key`, …
        request: String,
        /// HTTP status.
        status: u16,
        /// The start of what the server said.
        body: String,
    },
}

impl StoreError {
    /// The error rustic_core carries, naming the repository.
    fn into_rustic(self, location: &str) -> Box<RusticError> {
        RusticError::new(ErrorKind::Backend, "{location}: {error}")
            .attach_context("location", location.to_string())
            .attach_context("error", self.to_string())
    }
}

/// Send the request `build` makes, trying again what may pass; the response when its status
/// is a success, else the error it is. `fix` says where credentials come from, for a 401.
pub(crate) fn send(
    what: &str,
    fix: &str,
    build: impl Fn() -> RequestBuilder,
) -> Result<Response, StoreError> {
    let mut pause = Duration::from_secs(1);
    for attempt in 0.. {
        let last = attempt == 3;
        let started = std::time::Instant::now();
        let sent = build().send();
        tracing::trace!("{what}: {:?}", started.elapsed());
        match sent {
            Err(e) if last || !(e.is_connect() || e.is_timeout() || e.is_request()) => {
                return Err(StoreError::Down(root_cause(&e)));
            }
            Ok(r) if r.status().is_success() => return Ok(r),
            Ok(r) if r.status() == StatusCode::NOT_FOUND => {
                return Err(StoreError::NotFound(what.to_string()));
            }
            Ok(r) if r.status() == StatusCode::UNAUTHORIZED => {
                return Err(StoreError::Unauthorized {
                    status: 401,
                    fix: fix.to_string(),
                });
            }
            Ok(r)
                if last
                    || !(r.status().is_server_error()
                        || r.status() == StatusCode::TOO_MANY_REQUESTS) =>
            {
                let status = r.status().as_u16();
                let body: String = r.text().unwrap_or_default().chars().take(300).collect();
                return Err(StoreError::Http {
                    request: what.to_string(),
                    status,
                    body: body.split_whitespace().collect::<Vec<_>>().join(" "),
                });
            }
            _ => {
                std::thread::sleep(pause);
                pause *= 2;
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// The innermost cause of an HTTP client error ("Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// The HTTP client of object stores: connections time out after 30 s, a request after an hour.
pub(crate) fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(3600))
        .build()
        .expect("the TLS backend initialises")
}

/// A restic repository in an [`ObjectStore`] under `prefix`.
pub(crate) struct ObjectBackend {
    store: Arc<dyn ObjectStore>,
    /// Empty, or ending in `/`.
    prefix: String,
    read_ahead: Arc<ReadAhead>,
    /// Packs being stored (see `uploads.rs`): every other request waits for them first.
    uploads: Arc<Uploads>,
}

impl ObjectBackend {
    /// The repository under `prefix` (`""` for the whole bucket) of `store`.
    pub(crate) fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        Self {
            store,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            read_ahead: Arc::default(),
            uploads: Arc::default(),
        }
    }

    /// The store.
    pub(crate) fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }

    /// The key of a Coffer file outside restic's layout (`coffer-locks/…`).
    pub(crate) fn key_of(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn key(&self, tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => format!("{}config", self.prefix),
            FileType::Pack => format!("{}data/{}/{}", self.prefix, &hex[0..2], hex.as_str()),
            _ => format!("{}{}/{}", self.prefix, tpe.dirname(), hex.as_str()),
        }
    }

    /// Plan reads of these ranges of packs (pack, offset, length), in the order they will be
    /// read: they are fetched ahead, several at once, until the guard is dropped.
    pub(crate) fn plan(&self, ranges: &[(Id, u64, u64)]) -> PlanGuard {
        // One fetch per run of ranges in the same pack (an artifact's blobs mostly are).
        let mut last: Option<(Id, Fetch)> = None;
        self.read_ahead
            .plan(ranges.iter().map(|&(pack, offset, length)| {
                let fetch = match &last {
                    Some((p, fetch)) if *p == pack => fetch.clone(),
                    _ => {
                        let fetch = self.pack_fetch(&pack);
                        last = Some((pack, fetch.clone()));
                        fetch
                    }
                };
                (pack, offset, length, fetch)
            }))
    }

    /// What fetches a range of pack `id`.
    fn pack_fetch(&self, id: &Id) -> Fetch {
        let (store, key) = (self.store.clone(), self.key(FileType::Pack, id));
        Arc::new(move |offset, n| store.get(&key, Some((offset, n))))
    }

    fn fail(&self) -> impl Fn(StoreError) -> Box<RusticError> + '_ {
        |e| e.into_rustic(&self.store.location())
    }

    /// Wait for the packs being stored; the first that was not, as rustic's error.
    fn settle(&self) -> RusticResult<()> {
        self.uploads.settle().map_err(|e| self.upload_failed(e))
    }

    fn upload_failed(&self, (key, e): (String, StoreError)) -> Box<RusticError> {
        RusticError::new(ErrorKind::Backend, "{location}: storing {key}: {error}")
            .attach_context("location", self.store.location())
            .attach_context("key", key)
            .attach_context("error", e.to_string())
    }
}

impl Drop for ObjectBackend {
    fn drop(&mut self) {
        let _ = self.uploads.settle();
    }
}

impl ReadBackend for ObjectBackend {
    fn location(&self) -> String {
        self.store.location()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.settle()?;
        let size = |s: u64| u32::try_from(s).unwrap_or(u32::MAX);
        if tpe == FileType::Config {
            let key = self.key(tpe, &Id::default());
            return Ok(self
                .store
                .list(&key)
                .map_err(self.fail())?
                .into_iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, s)| (Id::default(), size(s)))
                .collect());
        }
        let dir = format!("{}{}/", self.prefix, tpe.dirname());
        Ok(self
            .store
            .list(&dir)
            .map_err(self.fail())?
            .into_iter()
            .filter_map(|(k, s)| Some((k.rsplit('/').next()?.parse::<Id>().ok()?, size(s))))
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.settle()?;
        self.store
            .get(&self.key(tpe, id), None)
            .map_err(self.fail())
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.settle()?;
        let (offset, length) = (u64::from(offset), u64::from(length));
        if tpe != FileType::Pack {
            return self
                .store
                .get(&self.key(tpe, id), Some((offset, length)))
                .map_err(self.fail());
        }
        self.read_ahead
            .read(id, offset, length, self.pack_fetch(id))
            .map_err(self.fail())
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.key(tpe, id)
    }
}

impl WriteBackend for ObjectBackend {
    fn create(&self) -> RusticResult<()> {
        if !self.store.bucket_exists().map_err(self.fail())? {
            self.store.create_bucket().map_err(self.fail())?;
        }
        Ok(())
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let data = joined(content);
        let key = self.key(tpe, id);
        // One PUT: an object store never shows half an object. A pack's runs beside the next
        // ones; anything else waits for them (an index must not name a pack not stored).
        if tpe == FileType::Pack {
            let store = self.store.clone();
            let put_key = key.clone();
            return self
                .uploads
                .start(key, move || store.put(&put_key, data))
                .map_err(|e| self.upload_failed(e));
        }
        self.settle()?;
        self.store.put(&key, data).map_err(self.fail())
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        self.settle()?;
        if tpe == FileType::Pack {
            self.read_ahead.forget(id);
        }
        self.store.delete(&self.key(tpe, id)).map_err(self.fail())
    }
}

/// The `Range` header of `length` bytes from `offset`.
pub(crate) fn range(offset: u64, length: u64) -> String {
    format!("bytes={offset}-{}", offset + length.max(1) - 1)
}

/// The pieces of a file to write, in one buffer.
pub(crate) fn joined(content: BytesList) -> Vec<u8> {
    let mut data = Vec::with_capacity(content.size());
    for b in content.into_vec() {
        data.extend_from_slice(&b);
    }
    data
}
