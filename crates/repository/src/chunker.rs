//! Content-defined chunking as restic and rustic_core cut files: a Rabin fingerprint of a
//! 64-byte window rolled over the data, a cut where its low bits are zero, no chunk shorter
//! than the minimum (but the last) nor longer than the maximum. The cuts are exactly
//! rustic_core 0.13's (its window skips the byte before the minimum, and so does this one), so
//! a file stored by either dedups against the other; the loop runs over a slice with the
//! tables at hand instead of pushing each byte into a vector, several times faster.

use rustic_core::repofile::{Chunker as Kind, ConfigFile};

/// Bytes in the rolling window.
const WINDOW: usize = 64;

/// Where a repository's chunks end.
pub(crate) struct Chunker {
    cut: Cut,
    /// The longest chunk: a caller holding this many bytes (or the end) always gets a cut.
    pub(crate) max: usize,
}

enum Cut {
    Rabin(Box<Rabin>),
    Fixed(usize),
}

struct Rabin {
    out: [u64; 256],
    modulo: [u64; 256],
    shift: u32,
    mask: u64,
    min: usize,
}

fn degree(p: u64) -> i32 {
    63 - p.leading_zeros() as i32
}

fn modulo(mut p: u64, m: u64) -> u64 {
    while degree(p) >= degree(m) {
        p ^= m << (degree(p) - degree(m));
    }
    p
}

impl Chunker {
    /// The chunker `config` names.
    pub(crate) fn from_config(config: &ConfigFile) -> Result<Self, String> {
        let size = config.chunk_size();
        Ok(match config.chunker() {
            Kind::FixedSize => Self {
                cut: Cut::Fixed(size),
                max: size,
            },
            Kind::Rabin => {
                let min = config.chunk_min_size();
                let max = config.chunk_max_size();
                if !size.is_power_of_two() || min > size || max < size || min < WINDOW {
                    return Err(format!(
                        "the repository's chunk sizes (min {min}, average {size}, max {max}) \
                         are not a Rabin chunker's"
                    ));
                }
                let poly = config.poly().map_err(|e| e.to_string())?;
                Self {
                    cut: Cut::Rabin(Box::new(Rabin::new(poly, size as u64 - 1, min))),
                    max,
                }
            }
        })
    }

    /// A Rabin chunker of the given sizes (tests use small ones).
    #[cfg(test)]
    pub(crate) fn rabin(poly: u64, min: usize, size: usize, max: usize) -> Self {
        Self {
            cut: Cut::Rabin(Box::new(Rabin::new(poly, size as u64 - 1, min))),
            max,
        }
    }

    /// The length of the chunk that starts at `data[0]`, when `data` decides it: it holds
    /// [`Self::max`] bytes, or `end` says nothing follows. `None` for empty data.
    pub(crate) fn cut(&self, data: &[u8], end: bool) -> Option<usize> {
        if data.is_empty() {
            return None;
        }
        match &self.cut {
            Cut::Fixed(size) => (data.len() >= *size || end).then_some(data.len().min(*size)),
            Cut::Rabin(r) => r.cut(data, self.max, end),
        }
    }
}

impl Rabin {
    fn new(poly: u64, mask: u64, min: usize) -> Self {
        let k = degree(poly);
        let mut out = [0u64; 256];
        let mut modt = [0u64; 256];
        for b in 0..256u64 {
            let mut h = modulo(b, poly);
            for _ in 0..WINDOW - 1 {
                h = modulo(h << 8, poly);
            }
            out[b as usize] = h;
            let p = b << k;
            modt[b as usize] = modulo(p, poly) | p;
        }
        Self {
            out,
            modulo: modt,
            shift: (k - 8) as u32,
            mask,
            min,
        }
    }

    #[inline(always)]
    fn push(&self, h: u64, b: u8) -> u64 {
        let i = ((h >> self.shift) & 255) as usize;
        ((h << 8) | u64::from(b)) ^ self.modulo[i]
    }

    fn cut(&self, data: &[u8], max: usize, end: bool) -> Option<usize> {
        let n = data.len();
        let min = self.min;
        if n <= min {
            // Not past the minimum: only the end makes a (last) chunk.
            return (end || n >= max).then_some(n.min(max));
        }
        // The window starts with the 63 bytes before the minimum's last byte, which rustic's
        // chunker never hashes; from then on each byte in pushes the one 64 places back out
        // (the skipped byte excepted).
        let mut h = 0u64;
        for &b in &data[min - WINDOW..min - 1] {
            h = self.push(h, b);
        }
        if min >= max || h & self.mask == 0 {
            return Some(min);
        }
        let limit = n.min(max);
        let first = limit.min(min + WINDOW);
        for i in min..first {
            let out = if i == min { 0 } else { data[i - WINDOW - 1] };
            h ^= self.out[out as usize];
            h = self.push(h, data[i]);
            if h & self.mask == 0 {
                return Some(i + 1);
            }
        }
        // From here the fingerprint at byte `i` is that of the 64 bytes ending there, nothing
        // else: it is computed in four lanes at once.
        if let Some(i) = self.search(data, first, limit) {
            return Some(i + 1);
        }
        (limit == max || end).then_some(limit)
    }

    /// The fingerprint of the 64 bytes before `i`.
    fn window(&self, data: &[u8], i: usize) -> u64 {
        data[i - WINDOW..i].iter().fold(0, |h, &b| self.push(h, b))
    }

    /// One step: the byte 64 back out, byte `i` in.
    #[inline(always)]
    fn roll(&self, h: u64, data: &[u8], i: usize) -> u64 {
        self.push(h ^ self.out[data[i - WINDOW] as usize], data[i])
    }

    /// The first `i` in `from..to` whose window (the 64 bytes ending at `i`) fingerprints to a
    /// cut, one byte after another.
    fn scan(&self, data: &[u8], from: usize, to: usize) -> Option<usize> {
        let mut h = self.window(data, from);
        for i in from..to {
            h = self.roll(h, data, i);
            if h & self.mask == 0 {
                return Some(i);
            }
        }
        None
    }

    /// [`Self::scan`], the range cut in rounds of four consecutive segments rolled side by
    /// side: four chains of table lookups that do not wait on each other, where one chain
    /// waits on itself at every byte. The first cut is in the lowest segment that has one.
    fn search(&self, data: &[u8], from: usize, to: usize) -> Option<usize> {
        const SEGMENT: usize = 16 << 10;
        const BLOCK: usize = 4 << 10;
        let mut base = from;
        while to - base >= 4 * SEGMENT {
            let s = [base, base + SEGMENT, base + 2 * SEGMENT, base + 3 * SEGMENT];
            // Each lane's bytes, from the one 64 before its first: out at k, in at k + 64.
            let d = s.map(|i| &data[i - WINDOW..i + SEGMENT]);
            let mut h = s.map(|i| self.window(data, i));
            let mut hit = [usize::MAX; 4];
            let mut j = 0;
            while j < SEGMENT {
                for k in j..j + BLOCK {
                    h[0] = self.push(h[0] ^ self.out[d[0][k] as usize], d[0][k + WINDOW]);
                    h[1] = self.push(h[1] ^ self.out[d[1][k] as usize], d[1][k + WINDOW]);
                    h[2] = self.push(h[2] ^ self.out[d[2][k] as usize], d[2][k + WINDOW]);
                    h[3] = self.push(h[3] ^ self.out[d[3][k] as usize], d[3][k + WINDOW]);
                    let m = self.mask;
                    if (h[0] & m == 0) | (h[1] & m == 0) | (h[2] & m == 0) | (h[3] & m == 0) {
                        for l in 0..4 {
                            if h[l] & m == 0 && hit[l] == usize::MAX {
                                hit[l] = s[l] + k;
                            }
                        }
                    }
                }
                if hit[0] != usize::MAX {
                    return Some(hit[0]);
                }
                j += BLOCK;
            }
            if let Some(&i) = hit.iter().find(|&&i| i != usize::MAX) {
                return Some(i);
            }
            base += 4 * SEGMENT;
        }
        self.scan(data, base, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustic_cdc::{Rabin64, RollingHash64};

    const POLY: u64 = 0x003D_A335_8B4D_C173;

    /// rustic_core 0.13's loop, byte by byte, as the reference.
    fn reference(data: &[u8], min: usize, size: usize, max: usize) -> Vec<usize> {
        let mut rabin = Rabin64::new_with_polynom(6, &POLY);
        let mask = size as u64 - 1;
        let mut cuts = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            if data.len() - pos < min {
                cuts.push(data.len() - pos);
                break;
            }
            let mut len = min;
            rabin.reset_and_prefill_window(&mut data[pos + min - 64..pos + min].iter().copied());
            loop {
                if len >= max || rabin.hash & mask == 0 || pos + len == data.len() {
                    break;
                }
                rabin.slide(data[pos + len]);
                len += 1;
            }
            cuts.push(len);
            pos += len;
        }
        cuts
    }

    fn fast(data: &[u8], min: usize, size: usize, max: usize) -> Vec<usize> {
        let c = Chunker {
            cut: Cut::Rabin(Box::new(Rabin::new(POLY, size as u64 - 1, min))),
            max,
        };
        let mut cuts = Vec::new();
        let mut pos = 0;
        while let Some(n) = c.cut(&data[pos..], true) {
            cuts.push(n);
            pos += n;
        }
        cuts
    }

    fn data(len: usize) -> Vec<u8> {
        // Random bytes, then text-like runs: both kinds of content cut the same way.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if (i / 300_000) % 3 == 2 {
                    b"INSERT INTO t VALUES (1,'abc');\n"[i % 32]
                } else {
                    x as u8
                }
            })
            .collect()
    }

    #[test]
    fn cuts_where_rustic_cuts() {
        let d = data(24 << 20);
        let want = reference(&d, 512 << 10, 1 << 20, 8 << 20);
        assert!(want.len() > 8, "{want:?}");
        assert_eq!(fast(&d, 512 << 10, 1 << 20, 8 << 20), want);
        // Small parameters: many cuts, the max and the window's first bytes exercised.
        let want = reference(&d[..2 << 20], 256, 1024, 2048);
        assert!(want.contains(&2048) && want.iter().any(|&l| l < 2048));
        assert_eq!(fast(&d[..2 << 20], 256, 1024, 2048), want);
    }

    #[test]
    fn a_short_buffer_waits_for_more_unless_it_is_the_end() {
        let c = Chunker {
            cut: Cut::Rabin(Box::new(Rabin::new(POLY, (1 << 20) - 1, 256))),
            max: 1 << 20,
        };
        let d = data(4096);
        let k = reference(&d, 256, 1 << 20, 1 << 20)[0];
        assert!(k > 257 && k < 4096, "{k}");
        assert_eq!(
            c.cut(&d[..k - 1], false),
            None,
            "no cut yet: more may follow"
        );
        assert_eq!(c.cut(&d[..k - 1], true), Some(k - 1));
        assert_eq!(c.cut(&d, false), Some(k));
        assert_eq!(c.cut(&d[..10], true), Some(10));
        assert_eq!(c.cut(&[], true), None);
        // A window of zeros fingerprints to zero: a cut at the minimum.
        assert_eq!(c.cut(&[0; 4096], false), Some(256));
    }
}
