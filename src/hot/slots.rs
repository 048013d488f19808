//! The pool's two live counts, connections in use and acquires waiting, in
//! one atomic word (in use in the low 32 bits, waiters in the high 32), so
//! a waiter becoming a user is one atomic step and every read of the pair
//! is consistent (no moment where a connection is counted both as waited
//! for and in use, or as neither).
//!
//! Uses the atomics of `super::sync`, so the loom model in `loom/`
//! runs this very file.

use super::sync::{AtomicU64, Ordering::Relaxed};

/// One waiter (high half).
pub(crate) const WAITER: u64 = 1 << 32;
/// One connection in use (low half).
pub(crate) const IN_USE: u64 = 1;
/// A waiter becoming a connection in use, subtracted in one step
/// (wrapping: it adds one to the low half).
pub(crate) const WAITER_TO_IN_USE: u64 = WAITER - IN_USE;

/// `(in_use, waiters)` of a packed word.
#[inline]
pub(crate) fn split(word: u64) -> (u32, u32) {
    ((word & 0xFFFF_FFFF) as u32, (word >> 32) as u32)
}

/// The packed counts.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    word: AtomicU64,
}

impl Slots {
    /// Adds `delta` ([`WAITER`] or [`IN_USE`]); returns the word after.
    #[inline]
    pub(crate) fn add(&self, delta: u64) -> u64 {
        self.word.fetch_add(delta, Relaxed).wrapping_add(delta)
    }

    /// Subtracts `delta` (wrapping, for [`WAITER_TO_IN_USE`]); returns the
    /// word after.
    #[inline]
    pub(crate) fn sub(&self, delta: u64) -> u64 {
        self.word.fetch_sub(delta, Relaxed).wrapping_sub(delta)
    }

    /// `(in_use, waiters)` now.
    #[inline]
    pub(crate) fn read(&self) -> (u32, u32) {
        split(self.word.load(Relaxed))
    }
}
