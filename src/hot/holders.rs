//! Who holds the pool: connection time per acquiring call site, exact and
//! including holds still in progress (a leak shows before it returns).
//!
//! A fixed table, allocated at build time: [`SITES`] slots keyed by the
//! call site's `&'static Location` (captured with `#[track_caller]`),
//! claimed by compare-and-swap on first use, and one overflow slot for
//! every site after the table is full. Each slot keeps, in one word, its
//! holds in progress (top 16 bits) and the sum of their start times in
//! milliseconds since the origin (low 48 bits), plus the connection-ms of
//! its holds that ended and its acquire count. The area of a slot at `now`
//! is `done + n * now - starts`: exact between any two reads. The
//! whole pool's in-use area is the sum over the slots. No allocation, no
//! lock; the monitor reads the table on its tick.

use super::sync::{AtomicPtr, AtomicU64, Ordering::Relaxed};
use std::panic::Location;
use std::ptr;

/// Call-site slots (the overflow slot is extra).
pub(crate) const SITES: usize = 64;
/// One hold in a slot's `holding` word.
const HOLD: u64 = 1 << 48;
/// Slots probed before a site goes to the overflow slot.
const PROBES: usize = 8;

#[derive(Debug, Default)]
struct Slot {
    site: AtomicPtr<Location<'static>>,
    holding: AtomicU64,
    done_ms: AtomicU64,
    acquires: AtomicU64,
}

/// One call site's totals at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SiteReading {
    /// `None`: the overflow slot (sites past the table's size).
    pub(crate) site: Option<&'static Location<'static>>,
    /// Connection-ms held since the origin, holds in progress included.
    pub(crate) area_ms: u64,
    pub(crate) acquires: u64,
    /// Holds in progress.
    pub(crate) holding: u32,
    /// Connection-ms of the holds in progress alone.
    pub(crate) open_ms: u64,
}

/// The first slot `site` probes (a multiplicative hash of its address).
pub(crate) fn start_of(site: &'static Location<'static>) -> usize {
    let hash = (ptr::from_ref(site) as usize >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize);
    hash >> (usize::BITS - SITES.trailing_zeros())
}

#[derive(Debug)]
pub(crate) struct Holders {
    slots: Box<[Slot]>,
}

impl Holders {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..=SITES).map(|_| Slot::default()).collect(),
        }
    }

    /// The slot of `site`, claimed on first use; the overflow slot when
    /// the table is full around it.
    #[inline]
    pub(crate) fn slot_of(&self, site: &'static Location<'static>) -> u16 {
        let want = ptr::from_ref(site).cast_mut();
        let start = start_of(site);
        for i in 0..PROBES {
            let idx = (start + i) % SITES;
            let slot = &self.slots[idx];
            let seen = slot.site.load(Relaxed);
            if seen == want {
                return idx as u16;
            }
            if seen.is_null() {
                match slot
                    .site
                    .compare_exchange(ptr::null_mut(), want, Relaxed, Relaxed)
                {
                    Ok(_) => return idx as u16,
                    Err(other) if other == want => return idx as u16,
                    Err(_) => {}
                }
            }
        }
        SITES as u16
    }

    /// A hold from `slot` starts at `now_ms`.
    #[inline]
    pub(crate) fn start(&self, slot: u16, now_ms: u64) {
        let s = &self.slots[usize::from(slot)];
        s.holding.fetch_add(HOLD + now_ms, Relaxed);
        s.acquires.fetch_add(1, Relaxed);
    }

    /// A hold from `slot` that started at `since_ms` ends at `now_ms`.
    #[inline]
    pub(crate) fn end(&self, slot: u16, since_ms: u64, now_ms: u64) {
        let s = &self.slots[usize::from(slot)];
        s.done_ms
            .fetch_add(now_ms.saturating_sub(since_ms), Relaxed);
        s.holding.fetch_sub(HOLD + since_ms, Relaxed);
    }

    /// Every used slot at `now_ms`.
    pub(crate) fn read(&self, now_ms: u64, mut each: impl FnMut(SiteReading)) {
        for (idx, s) in self.slots.iter().enumerate() {
            let site = s.site.load(Relaxed);
            let overflow = idx == SITES;
            if site.is_null() && !overflow {
                continue;
            }
            let holding = s.holding.load(Relaxed);
            let n = holding >> 48;
            let open_ms = n
                .saturating_mul(now_ms)
                .saturating_sub(holding & (HOLD - 1));
            let acquires = s.acquires.load(Relaxed);
            if overflow && acquires == 0 {
                continue;
            }
            each(SiteReading {
                // SAFETY: only `&'static Location`s are ever stored.
                site: (!overflow).then(|| unsafe { &*site.cast_const() }),
                area_ms: s.done_ms.load(Relaxed).saturating_add(open_ms),
                acquires,
                holding: n as u32,
                open_ms,
            });
        }
    }

    /// The whole pool's in-use area at `now_ms` (connection-ms).
    pub(crate) fn area_ms(&self, now_ms: u64) -> u64 {
        let mut total = 0u64;
        self.read(now_ms, |r| total = total.saturating_add(r.area_ms));
        total
    }
}

#[cfg(test)]
mod tests;
