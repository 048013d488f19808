//! The breaker as the guard shares it.

use std::time::Duration;

use tokio::time::Instant;

use super::config::BreakerConfig;
use super::machine::{Breaker, BreakerState, Change, Permit, Tally};
use crate::protect::classify::{Classifier, Outcome};

/// The breaker as the guard shares it: the state machine under a short lock
/// (never held across an await), with a lock-free fast path while Closed.
pub(crate) struct BreakerCell {
    machine: parking_lot::Mutex<Breaker>,
    /// `true` while Closed (or Disabled) outside shadow mode: permission is
    /// granted without taking the lock.
    pass: std::sync::atomic::AtomicBool,
    /// `true` while Disabled: outcomes are not even locked for.
    off: std::sync::atomic::AtomicBool,
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
    pub(crate) fn new(config: BreakerConfig, classifier: Classifier) -> Self {
        let now = Instant::now();
        // Jitter seed: the address of a fresh allocation and the time; only
        // spread matters.
        let here = 0u8;
        let seed = (std::ptr::from_ref(&here) as usize as u64)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        let machine = Breaker::new(config, now, seed);
        let cell = Self {
            pass: std::sync::atomic::AtomicBool::new(false),
            off: std::sync::atomic::AtomicBool::new(false),
            machine: parking_lot::Mutex::new(machine),
            classifier,
        };
        cell.sync(&cell.machine.lock());
        cell
    }

    fn sync(&self, m: &Breaker) {
        use std::sync::atomic::Ordering::Relaxed;
        // Stored only on a change: callers on other cores read these on
        // every call, and a store each time would bounce the cache line.
        let pass = matches!(m.state(), BreakerState::Closed | BreakerState::Disabled);
        if self.pass.load(Relaxed) != pass {
            self.pass.store(pass, Relaxed);
        }
        let off = m.state() == BreakerState::Disabled;
        if self.off.load(Relaxed) != off {
            self.off.store(off, Relaxed);
        }
    }

    pub(crate) fn state(&self) -> (BreakerState, bool) {
        let m = self.machine.lock();
        (m.state(), m.metrics_only())
    }

    pub(crate) fn tally(&self) -> Tally {
        self.machine.lock().tally(Instant::now())
    }

    /// Permission for one call; the change to report, if any.
    pub(crate) fn permit(&self) -> (Permit, Option<Change>) {
        if self.pass.load(std::sync::atomic::Ordering::Relaxed) {
            return (Permit::Granted { trial: None }, None);
        }
        let mut m = self.machine.lock();
        let r = m.try_acquire_permission(Instant::now());
        self.sync(&m);
        r
    }

    pub(crate) fn record(
        &self,
        trial: Option<u32>,
        outcome: Outcome,
        took: Duration,
    ) -> Option<Change> {
        if (outcome == Outcome::Ignored && trial.is_none())
            || self.off.load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        let mut m = self.machine.lock();
        let c = m.on_result(Instant::now(), trial, outcome, took);
        self.sync(&m);
        c
    }

    pub(crate) fn control(
        &self,
        f: impl FnOnce(&mut Breaker, Instant) -> Option<Change>,
    ) -> Option<Change> {
        let mut m = self.machine.lock();
        let c = f(&mut m, Instant::now());
        self.sync(&m);
        c
    }
}
