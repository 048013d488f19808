//! The hot path: exact, cancel- and panic-safe counts of connections.
//!
//! Every count that goes up on entry goes down in a `Drop`:
//! [`WaitTicket`] holds one waiter from the start of an acquire until it
//! succeeds, fails or its future is dropped; [`HoldTicket`] holds one
//! connection in use until the connection (or the transaction owning it) is
//! dropped, including while a panicking task unwinds.
//!
//! Cost per acquire/release pair: two `Instant::now()`, a handful of relaxed
//! atomics, two cached histogram records. No allocation, no lock. The level
//! decision is not made here: when a count crosses one of the four level edges
//! the monitor task is woken through a [`Notify`] (a permit, no allocation).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::histogram::AtomicHistogram;
use crate::metrics::HotMetrics;
use crate::saturation::{SaturationPolicy, Signal};

/// Shared counters of one guarded pool.
#[derive(Debug)]
pub(crate) struct Accounting {
    in_use: AtomicU32,
    waiters: AtomicU32,
    acquires_total: AtomicU64,
    timeouts_total: AtomicU64,
    errors_total: AtomicU64,
    pub(crate) wait: AtomicHistogram,
    pub(crate) hold: AtomicHistogram,
    max: u32,
    signal: Signal,
    /// Counts at which the saturation decision may change (ascending).
    edges: [u32; 4],
    /// Number of edges at or below the signal when last checked.
    band: AtomicU8,
    /// Wakes the monitor (edge crossed, or shutdown).
    pub(crate) wake: Notify,
    closed: AtomicBool,
    metrics: HotMetrics,
}

/// Plain copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) in_use: u32,
    pub(crate) waiters: u32,
    pub(crate) acquires_total: u64,
    pub(crate) timeouts_total: u64,
    pub(crate) errors_total: u64,
}

/// Smallest count `n` with `n / max >= ratio`.
fn edge(ratio: f64, max: u32) -> u32 {
    let exact = ratio * f64::from(max);
    // Tolerate float noise such as 0.8 * 10 = 8.000000000000002.
    (exact - 1e-9).ceil().max(0.0) as u32
}

impl Accounting {
    pub(crate) fn new(max: u32, policy: &SaturationPolicy, metrics: HotMetrics) -> Self {
        Self {
            in_use: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            acquires_total: AtomicU64::new(0),
            timeouts_total: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            wait: AtomicHistogram::new(),
            hold: AtomicHistogram::new(),
            max,
            signal: policy.signal,
            edges: policy.edges().map(|r| edge(r, max)),
            band: AtomicU8::new(0),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            metrics,
        }
    }

    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    pub(crate) fn counters(&self) -> Counters {
        Counters {
            in_use: self.in_use.load(Relaxed),
            waiters: self.waiters.load(Relaxed),
            acquires_total: self.acquires_total.load(Relaxed),
            timeouts_total: self.timeouts_total.load(Relaxed),
            errors_total: self.errors_total.load(Relaxed),
        }
    }

    /// Starts one acquire: counts a waiter until the ticket is resolved or dropped.
    #[inline]
    pub(crate) fn start_wait(self: &Arc<Self>) -> WaitTicket {
        self.waiters.fetch_add(1, Relaxed);
        self.check_edges();
        WaitTicket {
            acct: Some(Arc::clone(self)),
            started: Instant::now(),
        }
    }

    #[inline]
    fn check_edges(&self) {
        let mut value = self.in_use.load(Relaxed);
        if self.signal == Signal::Demand {
            value = value.saturating_add(self.waiters.load(Relaxed));
        }
        let band = self.edges.iter().filter(|&&e| value >= e).count() as u8;
        if self.band.load(Relaxed) != band {
            self.band.store(band, Relaxed);
            self.wake.notify_one();
        }
    }

    /// Tells the monitor to stop.
    pub(crate) fn close(&self) {
        self.closed.store(true, Relaxed);
        self.wake.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }
}

/// One acquire in progress. Dropping it unresolved (a cancelled future)
/// removes the waiter without counting an outcome.
#[derive(Debug)]
pub(crate) struct WaitTicket {
    acct: Option<Arc<Accounting>>,
    started: Instant,
}

impl WaitTicket {
    /// The acquire succeeded: the waiter becomes a connection in use.
    #[inline]
    pub(crate) fn acquired(mut self) -> HoldTicket {
        let acct = self.acct.take().expect("ticket resolved once");
        let now = Instant::now();
        let waited = now.saturating_duration_since(self.started);
        // In use first, then one waiter fewer: demand never dips in between.
        acct.in_use.fetch_add(1, Relaxed);
        acct.waiters.fetch_sub(1, Relaxed);
        acct.acquires_total.fetch_add(1, Relaxed);
        acct.wait.record(waited);
        acct.metrics.wait_time.record(waited.as_secs_f64());
        acct.check_edges();
        HoldTicket { acct, since: now }
    }

    /// The acquire timed out; returns how long it waited.
    pub(crate) fn timed_out(mut self) -> Duration {
        let acct = self.acct.take().expect("ticket resolved once");
        acct.timeouts_total.fetch_add(1, Relaxed);
        acct.metrics.timeouts.increment(1);
        acct.waiters.fetch_sub(1, Relaxed);
        acct.check_edges();
        self.started.elapsed()
    }

    /// The acquire failed for another reason (connect error, pool closed).
    pub(crate) fn failed(mut self) {
        let acct = self.acct.take().expect("ticket resolved once");
        acct.errors_total.fetch_add(1, Relaxed);
        acct.waiters.fetch_sub(1, Relaxed);
        acct.check_edges();
    }
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        if let Some(acct) = self.acct.take() {
            acct.waiters.fetch_sub(1, Relaxed);
            acct.check_edges();
        }
    }
}

/// One connection in use; dropping it records the hold time.
#[derive(Debug)]
pub(crate) struct HoldTicket {
    acct: Arc<Accounting>,
    since: Instant,
}

impl HoldTicket {
    pub(crate) fn held_for(&self) -> Duration {
        self.since.elapsed()
    }
}

impl Drop for HoldTicket {
    #[inline]
    fn drop(&mut self) {
        let held = self.since.elapsed();
        self.acct.in_use.fetch_sub(1, Relaxed);
        self.acct.hold.record(held);
        self.acct.metrics.use_time.record(held.as_secs_f64());
        self.acct.check_edges();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_round_up_to_whole_connections() {
        assert_eq!(edge(0.8, 10), 8);
        assert_eq!(edge(0.9, 10), 9);
        assert_eq!(edge(0.8, 50), 40);
        assert_eq!(edge(0.75, 10), 8);
        assert_eq!(edge(0.85, 7), 6);
        assert_eq!(edge(1.0, 3), 3);
    }
}
