//! Blobs into pack files, written by Coffer itself in restic's format: each blob compressed
//! (zstd, when the repository's version has compression), encrypted with the repository's
//! master key (AES-256-CTR and Poly1305-AES) and appended to an open pack of its type; a full
//! pack gets its encrypted header and is stored under the SHA-256 of its bytes. Compression and
//! encryption run on worker threads (one a core) while the caller chunks and hashes what comes
//! next. [`PackWriter::finish`] stores the last packs and then the index naming them: only
//! then may a snapshot refer to the blobs (a pack without an index is an orphan a later prune
//! removes, never a dangling reference).

use std::num::NonZeroU32;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::AeadInPlace;
use bytes::Bytes;
use rustic_core::repofile::{BlobType, ConfigFile, MasterKey};
use rustic_core::{BlobId, BytesList, FileType, Id, WriteBackend};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Encryption overhead of a blob or file: the nonce before, the MAC after.
pub(crate) const CRYPT_OVERHEAD: u32 = 32;

/// The repository's key and compression: how any file or blob is sealed.
#[derive(Clone)]
pub(crate) struct Sealer {
    key: aes256ctr_poly1305aes::Key,
    zstd: Option<i32>,
}

impl Sealer {
    /// The sealer of a repository opened with `key`, configured by `config`.
    pub(crate) fn new(key: &MasterKey, config: &ConfigFile) -> Result<Self, String> {
        let mut k = aes256ctr_poly1305aes::Key::default();
        if key.encrypt.len() != 32 || key.mac.k.len() != 16 || key.mac.r.len() != 16 {
            return Err("the repository's master key has an unexpected length".into());
        }
        k[0..32].copy_from_slice(&key.encrypt);
        k[32..48].copy_from_slice(&key.mac.k);
        k[48..64].copy_from_slice(&key.mac.r);
        Ok(Self {
            key: k,
            zstd: config.zstd().map_err(|e| e.to_string())?,
        })
    }

    /// `plain` encrypted: nonce, ciphertext, MAC.
    pub(crate) fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = aes256ctr_poly1305aes::aead::Nonce::<Aes256CtrPoly1305Aes>::default();
        getrandom::fill(&mut nonce).expect("the system's random source");
        let mut out = Vec::with_capacity(plain.len() + CRYPT_OVERHEAD as usize);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = Aes256CtrPoly1305Aes::new(&self.key)
            .encrypt_in_place_detached(&nonce, &[], &mut out[16..])
            .expect("a blob within AES-CTR's limits");
        out.extend_from_slice(&tag);
        out
    }

    /// A blob as a pack holds it, with its uncompressed length when compressed. Data that
    /// does not compress (random, or compressed already: most of a Glance image, a zipped
    /// log) is stored as it is, as restic's format allows in any version: compressing it
    /// would cost the most CPU of anything here for nothing.
    fn blob(&self, data: &[u8]) -> std::io::Result<(Vec<u8>, Option<NonZeroU32>)> {
        Ok(match self.zstd {
            Some(_) if incompressible(data) => (self.encrypt(data), None),
            None => (self.encrypt(data), None),
            Some(level) => {
                let packed = zstd::bulk::compress(data, level)?;
                (self.encrypt(&packed), NonZeroU32::new(data.len() as u32))
            }
        })
    }

    /// A repository file (index, snapshot) as stored: JSON, compressed behind a version byte
    /// when the repository compresses, encrypted.
    pub(crate) fn file(&self, file: &impl Serialize) -> std::io::Result<Vec<u8>> {
        let json = serde_json::to_vec(file)?;
        Ok(match self.zstd {
            None => self.encrypt(&json),
            Some(level) => {
                let mut plain = vec![2u8];
                plain.extend_from_slice(&zstd::bulk::compress(&json, level)?);
                self.encrypt(&plain)
            }
        })
    }
}

/// Whether `data` looks incompressible: three 16 KiB samples (start, middle, end) each
/// shrink by less than 2% at zstd's fastest level. Small data is always compressed.
fn incompressible(data: &[u8]) -> bool {
    const SAMPLE: usize = 16 << 10;
    if data.len() < 8 * SAMPLE {
        return false;
    }
    let mid = data.len() / 2 - SAMPLE / 2;
    [0, mid, data.len() - SAMPLE].iter().all(|&at| {
        let sample = &data[at..at + SAMPLE];
        zstd::bulk::compress(sample, 1).is_ok_and(|c| c.len() * 100 >= sample.len() * 98)
    })
}

/// Store repository file `file` of type `tpe` under the SHA-256 of its stored bytes; its id.
pub(crate) fn save_file(
    be: &dyn WriteBackend,
    sealer: &Sealer,
    tpe: FileType,
    file: &impl Serialize,
) -> Result<Id, String> {
    let bytes = sealer.file(file).map_err(|e| e.to_string())?;
    let id = crate::archiver::hash(&bytes);
    be.write_bytes(tpe, &id, false, Bytes::from(bytes).into())
        .map_err(|e| e.display_log())?;
    Ok(id)
}

/// What a writer stored.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Written {
    /// New blobs of each type.
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Their bytes before and after compression.
    pub data_added: u64,
    pub data_added_packed: u64,
    pub trees_added: u64,
    pub trees_added_packed: u64,
}

struct Job {
    tpe: BlobType,
    id: BlobId,
    data: Bytes,
}

/// An index file, as restic writes it.
#[derive(Serialize)]
struct IndexJson {
    packs: Vec<PackJson>,
}

/// A pack in an index.
#[derive(Serialize)]
struct PackJson {
    id: Id,
    blobs: Vec<BlobJson>,
}

/// A blob in a pack, in an index.
#[derive(Serialize)]
struct BlobJson {
    id: BlobId,
    #[serde(rename = "type")]
    tpe: BlobType,
    offset: u32,
    length: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    uncompressed_length: Option<NonZeroU32>,
}

/// A pack being filled.
#[derive(Default)]
struct OpenPack {
    blobs: Vec<BlobJson>,
    parts: Vec<Bytes>,
    size: u32,
}

struct Shared {
    sealer: Sealer,
    be: Arc<dyn WriteBackend>,
    /// Target sizes of a data and a tree pack.
    targets: (u32, u32),
    open: Mutex<(OpenPack, OpenPack)>,
    index: Mutex<Vec<PackJson>>,
    written: Mutex<Written>,
    error: Mutex<Option<String>>,
}

/// Packs blobs on worker threads; see the module's documentation.
pub(crate) struct PackWriter {
    shared: Arc<Shared>,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl PackWriter {
    /// A writer into `be`, its packs sized as `config` says (their default sizes).
    pub(crate) fn new(be: Arc<dyn WriteBackend>, sealer: Sealer, config: &ConfigFile) -> Self {
        let targets = (
            config.packsize(BlobType::Data).0,
            config.packsize(BlobType::Tree).0,
        );
        let shared = Arc::new(Shared {
            sealer,
            be,
            targets,
            open: Mutex::default(),
            index: Mutex::default(),
            written: Mutex::default(),
            error: Mutex::default(),
        });
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (tx, rx) = sync_channel::<Job>(2 * threads);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads)
            .map(|_| {
                let shared = shared.clone();
                let rx = rx.clone();
                std::thread::spawn(move || work(&shared, &rx))
            })
            .collect();
        Self {
            shared,
            jobs: Some(tx),
            workers,
        }
    }

    /// The first failure, if any.
    fn failed(&self) -> Result<(), String> {
        match &*self.shared.error.lock().expect("pack error lock") {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Store blob `id` of type `tpe` holding `data` (the caller knows it is new).
    pub(crate) fn add(&self, tpe: BlobType, id: BlobId, data: Bytes) -> Result<(), String> {
        self.failed()?;
        let jobs = self.jobs.as_ref().expect("a writer not finished");
        jobs.send(Job { tpe, id, data })
            .map_err(|_| "the pack writer's workers stopped".to_string())?;
        Ok(())
    }

    /// Store the last packs and the index of every pack written; what was written.
    pub(crate) fn finish(mut self) -> Result<Written, String> {
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            if w.join().is_err() {
                fail(&self.shared, "a pack writer's worker panicked".into());
            }
        }
        self.failed()?;
        let (data, tree) = std::mem::take(&mut *self.shared.open.lock().expect("open packs"));
        for pack in [data, tree] {
            if !pack.blobs.is_empty() {
                seal(&self.shared, pack)?;
            }
        }
        let packs = std::mem::take(&mut *self.shared.index.lock().expect("index lock"));
        if !packs.is_empty() {
            let index = IndexJson { packs };
            save_file(
                &*self.shared.be,
                &self.shared.sealer,
                FileType::Index,
                &index,
            )
            .map_err(|e| format!("storing the index: {e}"))?;
        }
        Ok(*self.shared.written.lock().expect("written lock"))
    }
}

impl Drop for PackWriter {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn fail(shared: &Shared, e: String) {
    let mut error = shared.error.lock().expect("pack error lock");
    if error.is_none() {
        *error = Some(e);
    }
}

/// A worker: seal each blob, append it to its pack, store packs that are full.
fn work(shared: &Shared, jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = jobs.lock().expect("job queue").recv();
        let Ok(Job { tpe, id, data }) = job else {
            return;
        };
        if shared.error.lock().expect("pack error lock").is_some() {
            continue;
        }
        let (sealed, uncompressed) = match shared.sealer.blob(&data) {
            Ok(s) => s,
            Err(e) => {
                fail(
                    shared,
                    format!("compressing blob {}: {e}", id.to_hex().as_str()),
                );
                continue;
            }
        };
        let length = sealed.len() as u32;
        let full = {
            let mut open = shared.open.lock().expect("open packs");
            let (pack, target) = match tpe {
                BlobType::Tree => (&mut open.1, shared.targets.1),
                BlobType::Data => (&mut open.0, shared.targets.0),
            };
            pack.blobs.push(BlobJson {
                id,
                tpe,
                offset: pack.size,
                length,
                uncompressed_length: uncompressed,
            });
            pack.size += length;
            pack.parts.push(Bytes::from(sealed));
            (pack.size >= target).then(|| std::mem::take(pack))
        };
        {
            let mut w = shared.written.lock().expect("written lock");
            match tpe {
                BlobType::Data => {
                    w.data_blobs += 1;
                    w.data_added += data.len() as u64;
                    w.data_added_packed += u64::from(length);
                }
                BlobType::Tree => {
                    w.tree_blobs += 1;
                    w.trees_added += data.len() as u64;
                    w.trees_added_packed += u64::from(length);
                }
            }
        }
        if let Some(pack) = full
            && let Err(e) = seal(shared, pack)
        {
            fail(shared, e);
        }
    }
}

/// A pack's header entry: type, length, uncompressed length when compressed, id.
fn header_entry(out: &mut Vec<u8>, blob: &BlobJson) {
    let tpe: u8 = match (blob.tpe, blob.uncompressed_length) {
        (BlobType::Data, None) => 0,
        (BlobType::Tree, None) => 1,
        (BlobType::Data, Some(_)) => 2,
        (BlobType::Tree, Some(_)) => 3,
    };
    out.push(tpe);
    out.extend_from_slice(&blob.length.to_le_bytes());
    if let Some(u) = blob.uncompressed_length {
        out.extend_from_slice(&u.get().to_le_bytes());
    }
    let mut id = [0u8; 32];
    hex::decode_to_slice(blob.id.to_hex().as_str(), &mut id).expect("an id's hex");
    out.extend_from_slice(&id);
}

/// Give `pack` its header, store it, note it for the index.
fn seal(shared: &Shared, pack: OpenPack) -> Result<(), String> {
    let mut header = Vec::with_capacity(pack.blobs.len() * 41);
    for b in &pack.blobs {
        header_entry(&mut header, b);
    }
    let header = shared.sealer.encrypt(&header);
    let header_len = (header.len() as u32).to_le_bytes();
    let mut parts = pack.parts;
    parts.push(Bytes::from(header));
    parts.push(Bytes::copy_from_slice(&header_len));
    let mut hasher = Sha256::new();
    for p in &parts {
        hasher.update(p);
    }
    let id = Id::new(hasher.finalize().into());
    let mut parts = parts.into_iter();
    let mut list = BytesList::from(parts.next().expect("a header"));
    for p in parts {
        list.add(p);
    }
    let tpe = pack.blobs.first().map_or(BlobType::Data, |b| b.tpe);
    shared
        .be
        .write_bytes(FileType::Pack, &id, tpe == BlobType::Tree, list)
        .map_err(|e| format!("storing pack {}: {}", id.to_hex().as_str(), e.display_log()))?;
    shared.index.lock().expect("index lock").push(PackJson {
        id,
        blobs: pack.blobs,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_data_is_stored_as_it_is_and_anything_compressible_is_compressed() {
        let mut random = vec![0u8; 1 << 20];
        getrandom::fill(&mut random).unwrap();
        assert!(incompressible(&random));
        let text: Vec<u8> = (0..1 << 20)
            .map(|i| b"INSERT INTO t VALUES (1,'abc');\n"[i % 32])
            .collect();
        assert!(!incompressible(&text));
        // Random but for a compressible middle: compressed.
        let mut mixed = random.clone();
        mixed[400 << 10..600 << 10].fill(b'a');
        assert!(!incompressible(&mixed));
        // Small blobs are always compressed.
        assert!(!incompressible(&random[..64 << 10]));
    }
}
