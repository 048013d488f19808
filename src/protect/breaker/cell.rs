//! The breaker as the guard shares it: the state machine under a short
//! lock, with two lock-free fast paths for the healthy case. Permission is
//! granted without the lock while Closed. A fast success (not slow, not a
//! trial) is counted without the lock while it cannot change the state
//! (Closed with no failure and no slow call in the window): into per-bucket
//! atomic counters tagged with the bucket's index (Resilience4j's fixed
//! buckets), which every locked operation first moves into the machine's
//! window. A counter whose tag is a full window old holds only counts that
//! fell out of the window, so a new bucket simply overwrites it.
//!
//! The fast count is not linearized with a concurrent failure: a success
//! counted a moment after a failure was judged is absorbed at the next
//! locked operation (the rates are then a call behind, never wrong for
//! long).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

use super::config::BreakerConfig;
use super::fast::TaggedBuckets;
use super::machine::{Breaker, BreakerState, Change, Permit, SlidingWindow, Tally};
use crate::hot::clock::Clock;
use crate::protect::classify::{Classifier, Outcome};

/// Successes counted outside the lock (`fast.rs`), with the window's
/// geometry to place them.
struct FastSuccesses {
    buckets: TaggedBuckets,
    /// The guard's clock (the window's buckets count on it).
    clock: Clock,
    width: Duration,
    /// A success this slow is a slow call: never counted here.
    slow: Duration,
}

impl FastSuccesses {
    fn new(config: &BreakerConfig, clock: Clock) -> Self {
        Self {
            buckets: TaggedBuckets::new(config.buckets.max(1) as usize),
            clock,
            width: config.window / config.buckets.max(1),
            slow: config.slow_call_duration,
        }
    }

    /// Counts one success at `now`.
    #[inline]
    fn add(&self, now: Instant) {
        self.buckets
            .add(SlidingWindow::index_of(self.clock, self.width, now));
    }

    /// Moves every count into the machine's window (under its lock).
    fn drain_into(&self, m: &mut Breaker, now: Instant) {
        let current = SlidingWindow::index_of(self.clock, self.width, now);
        self.buckets
            .drain(current, |index, n| m.absorb_successes(now, index, n));
    }
}

/// The breaker as the guard shares it (see the module docs).
pub(crate) struct BreakerCell {
    machine: parking_lot::Mutex<Breaker>,
    /// `true` while Closed (or Disabled) outside shadow mode: permission is
    /// granted without taking the lock.
    pass: AtomicBool,
    /// `true` while Disabled: outcomes are not even locked for.
    off: AtomicBool,
    /// `true` while a fast success cannot change the state.
    clean: AtomicBool,
    fast: FastSuccesses,
    pub(crate) classifier: Classifier,
}

impl std::fmt::Debug for BreakerCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerCell")
            .field("machine", &*self.machine.lock())
            .finish_non_exhaustive()
    }
}

impl BreakerCell {
    /// A breaker whose window counts on the guard's `clock`.
    pub(crate) fn new(config: BreakerConfig, classifier: Classifier, clock: Clock) -> Self {
        let now = clock.origin();
        // Jitter seed: the address of a fresh allocation and the time; only
        // spread matters.
        let here = 0u8;
        let seed = (std::ptr::from_ref(&here) as usize as u64)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        let fast = FastSuccesses::new(&config, clock);
        let machine = Breaker::new(config, now, seed);
        let cell = Self {
            pass: AtomicBool::new(false),
            off: AtomicBool::new(false),
            clean: AtomicBool::new(false),
            fast,
            machine: parking_lot::Mutex::new(machine),
            classifier,
        };
        cell.sync(&mut cell.machine.lock(), now);
        cell
    }

    /// The machine, locked, with the fast successes moved into it.
    fn lock(&self, now: Instant) -> parking_lot::MutexGuard<'_, Breaker> {
        let mut m = self.machine.lock();
        self.fast.drain_into(&mut m, now);
        m
    }

    fn sync(&self, m: &mut Breaker, now: Instant) {
        // Stored only on a change: callers on other cores read these on
        // every call, and a store each time would bounce the cache line.
        let set = |flag: &AtomicBool, v: bool| {
            if flag.load(Relaxed) != v {
                flag.store(v, Relaxed);
            }
        };
        let pass = matches!(m.state(), BreakerState::Closed | BreakerState::Disabled);
        set(&self.pass, pass);
        set(&self.off, m.state() == BreakerState::Disabled);
        set(&self.clean, m.success_changes_nothing(now));
    }

    pub(crate) fn state(&self) -> (BreakerState, bool) {
        let m = self.machine.lock();
        (m.state(), m.metrics_only())
    }

    pub(crate) fn tally(&self) -> Tally {
        let now = Instant::now();
        self.lock(now).tally(now)
    }

    /// Permission for one call; the change to report, if any.
    ///
    /// The closed breaker's pass is inlined at every call site; the rest is
    /// a call (measured: whether the compiler inlined the whole function
    /// into `admit` moved the model pool's pair by about 30 instructions
    /// from one build to the next).
    #[inline]
    pub(crate) fn permit(&self) -> (Permit, Option<Change>) {
        if self.pass.load(Relaxed) {
            return (Permit::Granted { trial: None }, None);
        }
        self.permit_locked()
    }

    #[inline(never)]
    fn permit_locked(&self) -> (Permit, Option<Change>) {
        let now = Instant::now();
        let mut m = self.lock(now);
        let r = m.try_acquire_permission(now);
        self.sync(&mut m, now);
        r
    }

    /// Records a call that ended at `now` after `took`.
    pub(crate) fn record(
        &self,
        now: Instant,
        trial: Option<u32>,
        outcome: Outcome,
        took: Duration,
    ) -> Option<Change> {
        if (outcome == Outcome::Ignored && trial.is_none()) || self.off.load(Relaxed) {
            return None;
        }
        if outcome == Outcome::Success
            && trial.is_none()
            && took < self.fast.slow
            && self.clean.load(Relaxed)
        {
            self.fast.add(now);
            return None;
        }
        let mut m = self.lock(now);
        let c = m.on_result(now, trial, outcome, took);
        self.sync(&mut m, now);
        c
    }

    pub(crate) fn control(
        &self,
        f: impl FnOnce(&mut Breaker, Instant) -> Option<Change>,
    ) -> Option<Change> {
        let now = Instant::now();
        let mut m = self.lock(now);
        let c = f(&mut m, now);
        self.sync(&mut m, now);
        c
    }
}

#[cfg(test)]
mod tests;
