//! Leak detection, as HikariCP's `leakDetectionThreshold`: a connection held
//! longer than the threshold is reported with the place it was acquired
//! (`#[track_caller]`), and reported again when it comes back.
//!
//! Off by default. When on, each hold claims one slot of a table allocated
//! at build time (twice `max_connections`): claiming and releasing are a scan
//! and a compare-and-swap, with no allocation and no lock. The monitor scans
//! the table on its tick. Each slot's state shares one atomic word with a
//! generation that every claim bumps, so a scan that read hold A can never
//! mark hold B, which reused the slot in between (no ABA).
//!
//! Uses the atomics of `super::sync`, so the loom model in `loom/`
//! runs this very file.

use std::panic::Location;
use std::time::Duration;

use tokio::time::Instant;

use super::clock::{Clock, Nanos};
use super::sync::{AtomicPtr, AtomicU64, Ordering};

const FREE: u64 = 0;
const HELD: u64 = 1;
/// Held, and already reported as a suspected leak.
const REPORTED: u64 = 2;
/// Came back after being reported; the monitor reports that and frees it.
const RETURNED: u64 = 3;
/// Being written by the claiming thread.
const CLAIMING: u64 = 4;

/// `generation << 3 | state` in one word.
fn word(generation: u64, state: u64) -> u64 {
    (generation << 3) | state
}

fn state_of(w: u64) -> u64 {
    w & 7
}

fn generation_of(w: u64) -> u64 {
    w >> 3
}

/// A claimed slot: its index and the generation of this claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    idx: u32,
    generation: u64,
}

#[derive(Debug)]
struct Slot {
    state: AtomicU64,
    /// When acquired, on the guard's clock.
    since: AtomicU64,
    /// Nanoseconds held, once returned.
    held: AtomicU64,
    /// This hold's own threshold in nanoseconds, when its owner expects to
    /// hold it longer than the table's (0: the table's).
    expected: AtomicU64,
    location: AtomicPtr<Location<'static>>,
}

/// Something the monitor found in the table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Finding {
    pub(crate) location: &'static Location<'static>,
    pub(crate) held_for: Duration,
    pub(crate) returned: bool,
}

#[derive(Debug)]
pub(crate) struct LeakTable {
    clock: Clock,
    pub(crate) threshold: Duration,
    slots: Box<[Slot]>,
}

impl LeakTable {
    pub(crate) fn new(clock: Clock, threshold: Duration, max: u32) -> Self {
        let n = (max as usize).saturating_mul(2).max(2);
        Self {
            clock,
            threshold,
            slots: (0..n)
                .map(|_| Slot {
                    state: AtomicU64::new(FREE),
                    since: AtomicU64::new(0),
                    held: AtomicU64::new(0),
                    expected: AtomicU64::new(0),
                    location: AtomicPtr::new(std::ptr::null_mut()),
                })
                .collect(),
        }
    }

    /// Claims a slot for a hold starting at `since` (on the guard's
    /// clock); `None` if the table is full (not expected: holds are bounded
    /// by `max_connections`).
    pub(crate) fn claim(
        &self,
        since: Nanos,
        location: &'static Location<'static>,
    ) -> Option<Claim> {
        for (i, slot) in self.slots.iter().enumerate() {
            let w = slot.state.load(Ordering::Relaxed);
            if state_of(w) != FREE {
                continue;
            }
            let generation = generation_of(w).wrapping_add(1) & (u64::MAX >> 3);
            if slot
                .state
                .compare_exchange(
                    w,
                    word(generation, CLAIMING),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                slot.since.store(since.raw(), Ordering::Relaxed);
                slot.expected.store(0, Ordering::Relaxed);
                slot.location
                    .store(std::ptr::from_ref(location).cast_mut(), Ordering::Relaxed);
                slot.state.store(word(generation, HELD), Ordering::Release);
                return Some(Claim {
                    idx: u32::try_from(i).ok()?,
                    generation,
                });
            }
        }
        None
    }

    /// The hold ended; returns whether it had been reported (the monitor
    /// then reports the return).
    pub(crate) fn release(&self, claim: Claim, held: Duration) -> bool {
        let slot = &self.slots[claim.idx as usize];
        if slot
            .state
            .compare_exchange(
                word(claim.generation, HELD),
                word(claim.generation, FREE),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            return false;
        }
        // Reported: the word stays (generation, REPORTED) until this claim's
        // owner moves it on; anything else means the claim is stale.
        if slot.state.load(Ordering::Acquire) != word(claim.generation, REPORTED) {
            return false;
        }
        slot.held
            .store(Nanos::from_duration(held).raw(), Ordering::Relaxed);
        slot.state
            .store(word(claim.generation, RETURNED), Ordering::Release);
        true
    }

    /// The owner of `claim` expects to hold it for `hold`: it is reported
    /// only past that (when longer than the table's threshold). Called by
    /// the claim's owner while it holds the claim, so the slot is its own.
    pub(crate) fn expect_hold(&self, claim: Claim, hold: Duration) {
        let slot = &self.slots[claim.idx as usize];
        if generation_of(slot.state.load(Ordering::Acquire)) == claim.generation {
            slot.expected
                .store(Nanos::from_duration(hold).raw(), Ordering::Release);
        }
    }

    /// The threshold of the hold in `slot`: the table's, or the longer
    /// one its owner expects.
    fn threshold_of(&self, slot: &Slot) -> u64 {
        Nanos::from_duration(self.threshold)
            .raw()
            .max(slot.expected.load(Ordering::Acquire))
    }

    /// Where the longest-held connection already reported as a leak was
    /// acquired (off the hot path).
    pub(crate) fn oldest_reported(&self) -> Option<&'static Location<'static>> {
        self.slots
            .iter()
            .filter(|slot| state_of(slot.state.load(Ordering::Acquire)) == REPORTED)
            .min_by_key(|slot| slot.since.load(Ordering::Relaxed))
            .map(|slot| self.location(slot))
    }

    /// Reports holds past the threshold (once each) and returns of reported
    /// holds, calling `found` for each.
    pub(crate) fn scan(&self, now: Instant, mut found: impl FnMut(Finding)) {
        let now_ns = self.clock.at(now).raw();
        for slot in self.slots.iter() {
            let w = slot.state.load(Ordering::Acquire);
            match state_of(w) {
                HELD => {
                    let location = self.location(slot);
                    let held = now_ns.saturating_sub(slot.since.load(Ordering::Relaxed));
                    // The CAS on the exact word fails if the slot was
                    // released or claimed again since `w` was read, so the
                    // values read above belong to this hold when it succeeds.
                    if held >= self.threshold_of(slot)
                        && slot
                            .state
                            .compare_exchange(
                                w,
                                word(generation_of(w), REPORTED),
                                Ordering::AcqRel,
                                Ordering::Relaxed,
                            )
                            .is_ok()
                    {
                        found(Finding {
                            location,
                            held_for: Duration::from_nanos(held),
                            returned: false,
                        });
                    }
                }
                RETURNED => {
                    let finding = Finding {
                        location: self.location(slot),
                        held_for: Duration::from_nanos(slot.held.load(Ordering::Relaxed)),
                        returned: true,
                    };
                    slot.state
                        .store(word(generation_of(w), FREE), Ordering::Release);
                    found(finding);
                }
                _ => {}
            }
        }
    }

    /// When the first unreported hold crosses its threshold.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|s| state_of(s.state.load(Ordering::Acquire)) == HELD)
            .map(|s| {
                Nanos::from_raw(s.since.load(Ordering::Relaxed))
                    .plus(Duration::from_nanos(self.threshold_of(s)))
            })
            .min()
            .and_then(|at| self.clock.instant(at))
    }

    fn location(&self, slot: &Slot) -> &'static Location<'static> {
        let p = slot.location.load(Ordering::Relaxed);
        // SAFETY: the pointer is null only before a slot's first claim, and
        // this is only called on slots that were claimed (HELD, REPORTED or
        // RETURNED, read with Acquire after the claimer's Release store); every
        // value stored is a `&'static Location<'static>`, valid forever. A
        // stale read between claims still yields some valid `'static` location.
        unsafe { &*p }
    }
}

#[cfg(test)]
mod tests;
