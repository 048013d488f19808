//! Successes counted without the breaker's lock: per window bucket, an
//! atomic word with the low 32 bits of the bucket's index in the high half
//! and the count in the low half (Resilience4j's fixed buckets). A word
//! whose tag is a full window old holds only counts that fell out of the
//! window, so a new bucket simply overwrites it; draining moves the counts
//! out, with the index each belongs to, under the breaker's lock.
//!
//! Uses the hot path's atomics (`hot/sync.rs`), so the loom model in
//! `loom/` runs this very file.

use crate::hot::sync::{AtomicU64, Ordering::Relaxed};

/// The count's bits of a word.
const COUNT: u64 = 0xFFFF_FFFF;

/// The tagged per-bucket success counters.
pub(crate) struct TaggedBuckets {
    words: Box<[AtomicU64]>,
}

impl TaggedBuckets {
    /// `n` buckets (at least one).
    pub(crate) fn new(n: usize) -> Self {
        Self {
            words: (0..n.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts one success in the bucket of window index `index`.
    #[inline]
    pub(crate) fn add(&self, index: u64) {
        let slot = &self.words[(index % self.words.len() as u64) as usize];
        let tag = u64::from(index as u32) << 32;
        let mut seen = slot.load(Relaxed);
        loop {
            if seen & !COUNT == tag {
                slot.fetch_add(1, Relaxed);
                return;
            }
            // A bucket a window old: its counts fell out of the window.
            match slot.compare_exchange_weak(seen, tag | 1, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(now_there) => seen = now_there,
            }
        }
    }

    /// Takes every count out, calling `absorb(index, n)` for each word with
    /// counts; `current` is the window index now (a tag ahead of it, a
    /// concurrent caller's later clock read, counts as now).
    pub(crate) fn drain(&self, current: u64, mut absorb: impl FnMut(u64, u32)) {
        for slot in self.words.iter() {
            let mut seen = slot.load(Relaxed);
            while seen & COUNT != 0 {
                match slot.compare_exchange_weak(seen, seen & !COUNT, Relaxed, Relaxed) {
                    Ok(_) => {
                        // Back from the low 32 bits to the whole index.
                        let behind = (current as u32).wrapping_sub((seen >> 32) as u32);
                        let index = if (behind as i32) < 0 {
                            current
                        } else {
                            current.saturating_sub(u64::from(behind))
                        };
                        absorb(index, (seen & COUNT) as u32);
                        break;
                    }
                    Err(now_there) => seen = now_there,
                }
            }
        }
    }
}
