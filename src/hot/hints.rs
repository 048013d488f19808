//! [`Hints`]: what the monitor tells the call path between evaluations,
//! owned in one place. The monitor writes both values on its evaluations;
//! admission (load shedding, the queue-time estimate behind Retry-After)
//! and the hot path's edge watch read them with one relaxed load each.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The monitor's latest word to the call path.
#[derive(Debug, Default)]
pub(crate) struct Hints {
    /// Connections busy in sqlx beyond the guard's count, as the last
    /// evaluation reconciled them (see `monitor/reading.rs`).
    untracked: AtomicU32,
    /// Mean hold over the stats window, nanoseconds; 0: unknown.
    hold_ns: AtomicU64,
}

impl Hints {
    /// sqlx's busy connections beyond the guard's own, as of the last
    /// evaluation.
    #[inline]
    pub(crate) fn untracked(&self) -> u32 {
        self.untracked.load(Relaxed)
    }

    pub(crate) fn set_untracked(&self, n: u32) {
        self.untracked.store(n, Relaxed);
    }

    /// The recent mean hold (`None` before any hold ended).
    pub(crate) fn hold(&self) -> Option<Duration> {
        match self.hold_ns.load(Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// Sets the recent mean hold, in seconds (at least a nanosecond: zero
    /// means unknown).
    pub(crate) fn set_hold_secs(&self, secs: f64) {
        let ns = (secs * 1e9).clamp(1.0, u64::MAX as f64) as u64;
        self.hold_ns.store(ns, Relaxed);
    }
}
