//! Blobs decoded ahead of the one reading them: a list of blobs known in advance (a whole
//! tree's content, in the order its render writes it) is read, decrypted and decompressed by
//! worker threads while the reader writes earlier blobs out, and handed over in list order.
//! At most [`WINDOW`] blobs wait decoded, so memory stays bounded (a blob is at most 8 MiB).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Condvar, Mutex};

use bytes::Bytes;
use rustic_core::DataId;

/// Most blobs decoded ahead of the reader.
const WINDOW: usize = 16;

/// The reader's side: the blobs of the list, in order.
pub(crate) struct Ahead<'a> {
    ids: &'a [DataId],
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The next list index a worker takes.
    taken: usize,
    /// The next list index the reader takes.
    handed: usize,
    /// Decoded, not yet handed over.
    ready: BTreeMap<usize, io::Result<Bytes>>,
    /// The reader is gone: workers stop.
    stop: bool,
}

impl<'a> Ahead<'a> {
    /// Run `read` with the blobs of `ids` decoded ahead by `workers` threads calling `decode`.
    pub(crate) fn run<R>(
        ids: &'a [DataId],
        workers: usize,
        decode: impl Fn(&DataId) -> io::Result<Bytes> + Sync,
        read: impl FnOnce(&Ahead<'a>) -> R,
    ) -> R {
        let ahead = Ahead {
            ids,
            state: Mutex::default(),
            changed: Condvar::new(),
        };
        std::thread::scope(|s| {
            for _ in 0..workers.max(1) {
                s.spawn(|| ahead.work(&decode));
            }
            let out = read(&ahead);
            ahead.lock().stop = true;
            ahead.changed.notify_all();
            out
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("blob_ahead lock")
    }

    /// A worker: take the next index within the window, decode it, put it ready.
    fn work(&self, decode: &(impl Fn(&DataId) -> io::Result<Bytes> + Sync)) {
        loop {
            let i = {
                let mut s = self.lock();
                while !s.stop && s.taken < self.ids.len() && s.taken >= s.handed + WINDOW {
                    s = self.changed.wait(s).expect("blob_ahead lock");
                }
                if s.stop || s.taken >= self.ids.len() {
                    return;
                }
                s.taken += 1;
                s.taken - 1
            };
            let blob = decode(&self.ids[i]);
            self.lock().ready.insert(i, blob);
            self.changed.notify_all();
        }
    }

    /// The next blob of the list, which must be `id`.
    pub(crate) fn next(&self, id: &DataId) -> io::Result<Bytes> {
        let mut s = self.lock();
        let i = s.handed;
        if self.ids.get(i) != Some(id) {
            return Err(io::Error::other(format!(
                "blob {id} read out of the order planned (expected {})",
                self.ids.get(i).map_or("none".into(), |x| x.to_string())
            )));
        }
        loop {
            if let Some(blob) = s.ready.remove(&i) {
                s.handed += 1;
                drop(s);
                self.changed.notify_all();
                return blob;
            }
            s = self.changed.wait(s).expect("blob_ahead lock");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> DataId {
        DataId::from(rustic_core::Id::new([n; 32]))
    }

    #[test]
    fn blobs_come_in_list_order_whatever_order_they_are_decoded_in() {
        let ids: Vec<DataId> = (0..100).map(id).collect();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let got: Vec<u8> = Ahead::run(
            &ids,
            3,
            |i| {
                // Every other call is slow: workers finish out of order.
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u64;
                std::thread::sleep(std::time::Duration::from_micros(n % 2 * 300));
                Ok(Bytes::from(i.to_string()))
            },
            |a| {
                ids.iter()
                    .map(|i| {
                        assert_eq!(a.next(i).unwrap(), Bytes::from(i.to_string()));
                        1u8
                    })
                    .collect()
            },
        );
        assert_eq!(got.len(), 100);
    }

    #[test]
    fn a_failed_decode_reaches_the_reader_and_a_reader_that_stops_early_ends_the_workers() {
        let ids: Vec<DataId> = (0..50).map(id).collect();
        let err = Ahead::run(
            &ids,
            2,
            |i| {
                if *i == id(3) {
                    Err(io::Error::other("pack missing"))
                } else {
                    Ok(Bytes::new())
                }
            },
            |a| {
                for i in &ids {
                    if let Err(e) = a.next(i) {
                        return e.to_string();
                    }
                }
                String::new()
            },
        );
        assert_eq!(err, "pack missing");
        let wrong = Ahead::run(&ids, 2, |_| Ok(Bytes::new()), |a| a.next(&id(9)));
        assert!(wrong.unwrap_err().to_string().contains("out of the order"));
    }
}
