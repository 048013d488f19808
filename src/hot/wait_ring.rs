//! The oldest waiter's age (pgbouncer's `maxwait`) without a lock: each
//! acquire writes its start time into a ring slot chosen by its sequence
//! number, tagged with that number's low bits, so a reader can tell a slot
//! written for the waiter it looks for from one not yet written (a racing
//! start) or already overwritten (more arrivals than the ring holds).
//!
//! Uses the atomics of `super::sync`, so the loom model in `loom/`
//! runs this very file.

use super::sync::{AtomicU64, Ordering::Relaxed};

/// Bits of a waiter's sequence number kept beside its start time.
const TAG_SHIFT: u32 = 44;
/// The start time's bits (milliseconds on the guard's clock: 557 years).
const TIME_MASK: u64 = (1 << TAG_SHIFT) - 1;
/// The tag's bits, as they are compared.
const TAG_MASK: u64 = (1 << (64 - TAG_SHIFT)) - 1;
/// Slots a reader looks past the oldest one for a slot that is its own.
const LOOK_AHEAD: u64 = 8;

/// Start times of the waits by sequence number.
#[derive(Debug)]
pub(crate) struct WaitRing {
    slots: Box<[AtomicU64]>,
}

impl WaitRing {
    /// A ring of `len` slots (at least one).
    pub(crate) fn new(len: usize) -> Self {
        Self {
            slots: (0..len.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, seq: u64) -> &AtomicU64 {
        &self.slots[(seq % self.slots.len() as u64) as usize]
    }

    /// Wait number `seq` started at `start_ms` on the guard's clock.
    #[inline]
    pub(crate) fn started(&self, seq: u64, start_ms: u64) {
        self.slot(seq)
            .store((seq << TAG_SHIFT) | (start_ms & TIME_MASK), Relaxed);
    }

    /// When the oldest of the waits numbered `oldest..total` started: the
    /// first of them (at most [`LOOK_AHEAD`] on) whose slot is still its
    /// own. Exact while waiters leave in the order they came (sqlx's queue
    /// is fair); a waiter that leaves early makes it read the next one's.
    pub(crate) fn oldest_start(&self, oldest: u64, total: u64) -> Option<u64> {
        (oldest..total.min(oldest.saturating_add(LOOK_AHEAD))).find_map(|seq| {
            let w = self.slot(seq).load(Relaxed);
            (w >> TAG_SHIFT == seq & TAG_MASK).then_some(w & TIME_MASK)
        })
    }
}
