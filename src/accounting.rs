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

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::histogram::AtomicHistogram;
use crate::metrics::HotMetrics;
use crate::saturation::{SaturationPolicy, Signal};

/// One waiter in [`Accounting::slots`] (high half).
const WAITER: u64 = 1 << 32;
/// One connection in use in [`Accounting::slots`] (low half).
const IN_USE: u64 = 1;

fn split(slots: u64) -> (u32, u32) {
    ((slots & 0xFFFF_FFFF) as u32, (slots >> 32) as u32)
}

/// Shared counters of one guarded pool.
#[derive(Debug)]
pub(crate) struct Accounting {
    /// `in_use` (low 32 bits) and `waiters` (high 32 bits) in one word, so a
    /// waiter becoming a user is one atomic step and every read is consistent.
    slots: AtomicU64,
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
            slots: AtomicU64::new(0),
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
        let (in_use, waiters) = split(self.slots.load(Relaxed));
        Counters {
            in_use,
            waiters,
            acquires_total: self.acquires_total.load(Relaxed),
            timeouts_total: self.timeouts_total.load(Relaxed),
            errors_total: self.errors_total.load(Relaxed),
        }
    }

    /// Starts one acquire: counts a waiter until the ticket is resolved or dropped.
    #[inline]
    pub(crate) fn start_wait(self: &Arc<Self>) -> WaitTicket {
        self.change(WAITER, true);
        WaitTicket {
            acct: Some(Arc::clone(self)),
            started: Instant::now(),
        }
    }

    /// Adds (`up`) or subtracts `delta` and wakes the monitor if the new
    /// value lies in another band between level edges than the last one seen.
    /// Two threads racing here can leave a stale band behind; the next change
    /// or the next tick corrects it, so a wake is at worst one op late.
    #[inline]
    fn change(&self, delta: u64, up: bool) {
        let slots = if up {
            self.slots.fetch_add(delta, Relaxed).wrapping_add(delta)
        } else {
            self.slots.fetch_sub(delta, Relaxed).wrapping_sub(delta)
        };
        let (in_use, waiters) = split(slots);
        let value = match self.signal {
            Signal::Demand => in_use.saturating_add(waiters),
            _ => in_use,
        };
        let band = self.edges.iter().filter(|&&e| value >= e).count() as u8;
        if self.band.load(Relaxed) != band && self.band.swap(band, Relaxed) != band {
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
        // One waiter fewer and one more in use, in a single atomic step:
        // `WAITER - IN_USE` subtracted (wrapping) is exactly that.
        acct.change(WAITER - IN_USE, false);
        acct.acquires_total.fetch_add(1, Relaxed);
        acct.wait.record(waited);
        acct.metrics.wait_time.record(waited.as_secs_f64());
        HoldTicket { acct, since: now }
    }

    /// The acquire timed out; returns how long it waited. The wait goes
    /// into the guard's own wait percentiles (the longest waits are the ones
    /// that matter), not into the OTel `wait_time`, which is for acquires
    /// that obtained a connection.
    pub(crate) fn timed_out(mut self) -> Duration {
        let acct = self.acct.take().expect("ticket resolved once");
        let waited = self.started.elapsed();
        acct.timeouts_total.fetch_add(1, Relaxed);
        acct.metrics.timeouts.increment(1);
        acct.wait.record(waited);
        acct.change(WAITER, false);
        waited
    }

    /// The acquire failed for another reason (connect error, pool closed).
    pub(crate) fn failed(mut self) {
        let acct = self.acct.take().expect("ticket resolved once");
        acct.errors_total.fetch_add(1, Relaxed);
        acct.change(WAITER, false);
    }
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        if let Some(acct) = self.acct.take() {
            acct.change(WAITER, false);
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
        self.acct.change(IN_USE, false);
        self.acct.hold.record(held);
        self.acct.metrics.use_time.record(held.as_secs_f64());
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

    #[test]
    fn waiter_becomes_user_in_one_step() {
        let slots = AtomicU64::new(0);
        slots.fetch_add(WAITER, Relaxed);
        slots.fetch_add(WAITER, Relaxed);
        slots.fetch_add(IN_USE, Relaxed);
        let after = slots
            .fetch_sub(WAITER - IN_USE, Relaxed)
            .wrapping_sub(WAITER - IN_USE);
        assert_eq!(split(after), (2, 1));
        slots.fetch_sub(IN_USE, Relaxed);
        slots.fetch_sub(IN_USE, Relaxed);
        slots.fetch_sub(WAITER, Relaxed);
        assert_eq!(split(slots.load(Relaxed)), (0, 0));
    }
}
