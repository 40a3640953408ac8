//! Read-ahead for packs on a remote store: a read of part of a pack brings up to
//! [`READ_AHEAD`] bytes from there, and the next reads inside it are served from memory. A
//! restore reads an artifact's blobs in order (on several threads at once), so one request
//! serves many reads; a read that falls in a window still being fetched waits for it instead
//! of fetching the same bytes again. Once a read passes the middle of a window, the next
//! window of that pack (reaching [`OVERLAP`] back, for the blob across the border) is fetched
//! in the background, so the network and the restore overlap.
//!
//! A reader that knows which ranges it will read (an artifact's blobs, from the index) can
//! [`ReadAhead::plan`] them: the ranges are grouped into windows of at most [`PLANNED`] bytes,
//! and each read that reaches a planned window has the [`DEPTH`] windows after it fetched at
//! once, across packs — several requests in flight, as restic's restore keeps them.

use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use rustic_core::Id;

use crate::objects::StoreError;

/// How much one fetch brings.
pub(crate) const READ_AHEAD: u64 = 16 << 20;
/// How many fetched windows are kept (the newest), at most 96 MiB.
const WINDOWS: usize = 6;
/// Largest planned window.
pub(crate) const PLANNED: u64 = 8 << 20;
/// How many planned windows past the one being read are fetched at once.
const DEPTH: usize = 4;
/// How far a background window reaches back into the one before it, so that a blob across
/// their border (most are 0.5–2 MiB) is still in one window.
const OVERLAP: u64 = 2 << 20;

/// Bytes of a pack from `start`; `data` is `None` while being fetched, `end` where it is
/// expected to end (or, once fetched, does); `whole`: as long as asked (not the pack's end),
/// and not planned (a plan says what comes next, not the pack's layout).
struct Window {
    pack: Id,
    start: u64,
    end: u64,
    data: Option<Bytes>,
    whole: bool,
    planned: bool,
}

/// A range of a pack a reader will read, and how to fetch it.
pub(crate) struct Planned {
    pack: Id,
    start: u64,
    end: u64,
    fetch: Fetch,
}

/// The windows one reader will read, in order; those before `requested` were asked for.
struct Plan {
    id: u64,
    windows: Vec<Planned>,
    requested: usize,
}

/// Forgets its plan when dropped.
pub(crate) struct PlanGuard {
    read_ahead: Arc<ReadAhead>,
    id: u64,
}

impl Drop for PlanGuard {
    fn drop(&mut self) {
        let mut plans = self
            .read_ahead
            .plans
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        plans.1.retain(|p| p.id != self.id);
    }
}

/// What one fetch brought.
struct WindowBytes {
    start: u64,
    data: Bytes,
}

impl WindowBytes {
    fn cut(&self, offset: u64, length: u64) -> Option<Bytes> {
        let from = usize::try_from(offset.checked_sub(self.start)?).ok()?;
        let to = from.checked_add(usize::try_from(length).ok()?)?;
        (to <= self.data.len()).then(|| self.data.slice(from..to))
    }
}

impl Window {
    fn covers(&self, pack: &Id, offset: u64, length: u64) -> bool {
        self.pack == *pack && offset >= self.start && offset + length <= self.end
    }

    fn cut(&self, offset: u64, length: u64) -> Option<Bytes> {
        WindowBytes {
            start: self.start,
            data: self.data.clone()?,
        }
        .cut(offset, length)
    }
}

/// What fetches `n` bytes at an offset of one pack (fewer at its end).
pub(crate) type Fetch = Arc<dyn Fn(u64, u64) -> Result<Bytes, StoreError> + Send + Sync>;

/// The windows of one backend.
#[derive(Default)]
pub(crate) struct ReadAhead {
    windows: Mutex<Vec<Window>>,
    fetched: Condvar,
    /// The plans of readers at work, and the next plan's id.
    plans: Mutex<(u64, Vec<Plan>)>,
}

impl ReadAhead {
    /// Plan reads of `ranges` (pack, offset, length, and how to fetch from that pack), in the
    /// order they will be read; the plan holds until the guard is dropped.
    pub(crate) fn plan(
        self: &Arc<Self>,
        ranges: impl IntoIterator<Item = (Id, u64, u64, Fetch)>,
    ) -> PlanGuard {
        let mut windows: Vec<Planned> = Vec::new();
        for (pack, offset, length, fetch) in ranges {
            match windows.last_mut() {
                Some(w)
                    if w.pack == pack
                        && offset >= w.start
                        && offset <= w.end + OVERLAP
                        && (offset + length).max(w.end) - w.start <= PLANNED =>
                {
                    w.end = w.end.max(offset + length);
                }
                _ => windows.push(Planned {
                    pack,
                    start: offset,
                    end: offset + length,
                    fetch,
                }),
            }
        }
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        let id = plans.0;
        plans.0 += 1;
        plans.1.push(Plan {
            id,
            windows,
            requested: 0,
        });
        PlanGuard {
            read_ahead: self.clone(),
            id,
        }
    }

    /// A read at `offset` of `pack` reached: fetch the planned windows from there to
    /// [`DEPTH`] past it that were not asked for yet.
    fn advance(self: &Arc<Self>, pack: &Id, offset: u64) {
        let mut wanted = Vec::new();
        {
            let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
            for plan in plans.1.iter_mut() {
                // Reads come in order: look from a little before what was asked.
                let from = plan.requested.saturating_sub(DEPTH + 1);
                let Some(at) = plan.windows[from..]
                    .iter()
                    .position(|w| w.pack == *pack && offset >= w.start && offset < w.end)
                    .map(|i| i + from)
                else {
                    continue;
                };
                let until = (at + 1 + DEPTH).min(plan.windows.len());
                for w in &plan.windows[plan.requested.max(at)..until] {
                    wanted.push((w.pack, w.start, w.end, w.fetch.clone()));
                }
                plan.requested = plan.requested.max(until);
            }
        }
        for (pack, start, end, fetch) in wanted {
            {
                let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
                if windows.iter().any(|w| w.covers(&pack, start, end - start)) {
                    continue;
                }
                windows.push(Window {
                    pack,
                    start,
                    end,
                    data: None,
                    whole: false,
                    planned: true,
                });
            }
            let this = self.clone();
            std::thread::spawn(move || {
                let got = fetch(start, end - start);
                this.complete(&pack, start, end - start, got);
            });
        }
    }

    /// `length` bytes at `offset` of `pack`: from a window, or by `fetch(offset, n)` of up to
    /// `n` bytes (fewer at the pack's end).
    pub(crate) fn read(
        self: &Arc<Self>,
        pack: &Id,
        offset: u64,
        length: u64,
        fetch: Fetch,
    ) -> Result<Bytes, StoreError> {
        self.advance(pack, offset);
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match windows
                .iter()
                .rev()
                .find(|w| w.covers(pack, offset, length))
            {
                Some(w) if w.data.is_some() => {
                    let Some(bytes) = w.cut(offset, length) else {
                        break;
                    };
                    let next = w.end - OVERLAP.min(w.end - w.start);
                    let past_middle = offset + length > w.start + (w.end - w.start) / 2;
                    if w.whole
                        && past_middle
                        && !windows.iter().any(|o| o.pack == *pack && o.start == next)
                    {
                        windows.push(Window {
                            pack: *pack,
                            start: next,
                            end: next + READ_AHEAD,
                            data: None,
                            whole: false,
                            planned: false,
                        });
                        let (this, pack) = (self.clone(), *pack);
                        std::thread::spawn(move || {
                            let got = fetch(next, READ_AHEAD);
                            this.complete(&pack, next, READ_AHEAD, got);
                        });
                    }
                    return Ok(bytes);
                }
                Some(_) => {
                    windows = self
                        .fetched
                        .wait(windows)
                        .unwrap_or_else(|e| e.into_inner());
                }
                None => break,
            }
        }
        tracing::trace!("read-ahead miss {pack} {offset}+{length}");
        let want = length.max(READ_AHEAD);
        windows.push(Window {
            pack: *pack,
            start: offset,
            end: offset + want,
            data: None,
            whole: false,
            planned: false,
        });
        drop(windows);
        let got = fetch(offset, want);
        self.complete(pack, offset, want, got)
            .ok_or_else(|| StoreError::Protocol {
                request: format!("read pack {pack}"),
                message: "the read-ahead window vanished".into(),
            })?
            .and_then(|w| {
                w.cut(offset, length).ok_or_else(|| StoreError::Protocol {
                    request: format!("read pack {pack}"),
                    message: format!("{length} bytes at {offset} asked, fewer there"),
                })
            })
    }

    /// Fill the pending window at `start` of `pack` with what a fetch of `want` bytes got (or
    /// drop it on an error), wake its waiters, keep the newest windows; the window's bytes.
    fn complete(
        &self,
        pack: &Id,
        start: u64,
        want: u64,
        got: Result<Bytes, StoreError>,
    ) -> Option<Result<WindowBytes, StoreError>> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let at = windows
            .iter()
            .position(|w| w.pack == *pack && w.start == start && w.data.is_none())?;
        let result = match got {
            Ok(data) => {
                let w = &mut windows[at];
                w.end = w.start + data.len() as u64;
                w.whole = data.len() as u64 == want && !w.planned;
                w.data = Some(data.clone());
                Ok(WindowBytes { start, data })
            }
            Err(e) => {
                windows.remove(at);
                Err(e)
            }
        };
        // The oldest fetched windows go; pending ones stay (their readers wait on them).
        while windows.iter().filter(|w| w.data.is_some()).count() > WINDOWS {
            let oldest = windows
                .iter()
                .position(|w| w.data.is_some())
                .expect("counted above");
            windows.remove(oldest);
        }
        self.fetched.notify_all();
        Some(result)
    }

    /// Forget what is held of `pack` (deleted).
    pub(crate) fn forget(&self, pack: &Id) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|w| w.pack != *pack || w.data.is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn reads_inside_a_window_are_served_from_it_and_the_end_of_a_pack_is_kept_short() {
        let ra = Arc::new(ReadAhead::default());
        let pack = Id::default();
        let body: Arc<Vec<u8>> = Arc::new((0..100u8).collect());
        let fetches = Arc::new(AtomicUsize::new(0));
        let fetch: Fetch = {
            let (body, fetches) = (body.clone(), fetches.clone());
            Arc::new(move |offset: u64, n: u64| {
                fetches.fetch_add(1, Ordering::SeqCst);
                let end = (offset + n).min(body.len() as u64) as usize;
                Ok(Bytes::copy_from_slice(&body[offset as usize..end]))
            })
        };
        let read = |o, l| ra.read(&pack, o, l, fetch.clone());
        assert_eq!(&read(10, 5).unwrap()[..], &body[10..15]);
        assert_eq!(&read(50, 20).unwrap()[..], &body[50..70]);
        assert_eq!(&read(95, 5).unwrap()[..], &body[95..100]);
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "one fetch served every read"
        );
        // Before the window: fetched again; past the pack's end: an error, not short bytes.
        assert_eq!(&read(0, 10).unwrap()[..], &body[0..10]);
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert!(read(99, 5).is_err());
    }

    #[test]
    fn planned_reads_are_fetched_ahead_across_packs_once_each() {
        let ra = Arc::new(ReadAhead::default());
        let packs: Vec<Id> = (0..6u8)
            .map(|i| {
                let mut hex = String::new();
                for _ in 0..32 {
                    hex.push_str(&format!("{i:02x}"));
                }
                hex.parse().unwrap()
            })
            .collect();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let marker = |pack: &Id| packs.iter().position(|p| p == pack).unwrap() as u8;
        let fetch_for = |pack: Id| -> Fetch {
            let (asked, mark) = (asked.clone(), marker(&pack));
            Arc::new(move |offset: u64, n: u64| {
                asked.lock().unwrap().push((pack, offset, n));
                Ok(Bytes::from(vec![mark; n as usize]))
            })
        };
        // Two blobs of 3 MiB at the start of each pack: one window per pack.
        let blob = 3u64 << 20;
        let ranges: Vec<(Id, u64, u64)> = packs
            .iter()
            .flat_map(|p| [(*p, 0, blob), (*p, blob, blob)])
            .collect();
        let guard = ra.plan(ranges.iter().map(|(p, o, l)| (*p, *o, *l, fetch_for(*p))));
        let first = ra.read(&packs[0], 0, blob, fetch_for(packs[0])).unwrap();
        assert_eq!(first[0], 0);
        // The first read asked for its window and the DEPTH after it, in other packs.
        let mut early: Vec<Id> = ra.windows.lock().unwrap().iter().map(|w| w.pack).collect();
        early.sort();
        assert_eq!(early, packs[..=DEPTH].to_vec());
        for (p, o, l) in &ranges[1..] {
            let bytes = ra.read(p, *o, *l, fetch_for(*p)).unwrap();
            assert_eq!(bytes.len() as u64, *l);
            assert_eq!(bytes[0], marker(p));
        }
        let mut asked = asked.lock().unwrap().clone();
        asked.sort();
        let want: Vec<(Id, u64, u64)> = packs.iter().map(|p| (*p, 0, 2 * blob)).collect();
        assert_eq!(asked, want, "each pack fetched once, whole window, no miss");
        drop(guard);
        assert!(ra.plans.lock().unwrap().1.is_empty());
    }

    #[test]
    fn the_next_window_is_fetched_in_the_background_past_the_middle() {
        let ra = Arc::new(ReadAhead::default());
        let pack = Id::default();
        let size = 3 * READ_AHEAD;
        let asked = Arc::new(Mutex::new(Vec::new()));
        let fetch: Fetch = {
            let asked = asked.clone();
            Arc::new(move |offset: u64, n: u64| {
                asked.lock().unwrap().push(offset);
                let end = (offset + n).min(size).max(offset);
                Ok(Bytes::from(
                    (offset..end).map(|i| i as u8).collect::<Vec<u8>>(),
                ))
            })
        };
        let mut offset = 0;
        while offset < size {
            let bytes = ra.read(&pack, offset, 1 << 20, fetch.clone()).unwrap();
            assert_eq!(bytes[0], offset as u8);
            offset += 1 << 20;
        }
        // Each window fetched once (from the second on, in the background); a last one past
        // the end may still be on its way.
        let mut asked: Vec<u64> = asked.lock().unwrap().clone();
        asked.retain(|o| *o < size);
        let step = READ_AHEAD - OVERLAP;
        assert_eq!(asked, (0..4).map(|i| i * step).collect::<Vec<_>>());
    }
}
