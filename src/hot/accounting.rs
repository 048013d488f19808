//! The hot path's shared counters: exact, cancel- and panic-safe counts of
//! connections, read by the monitor.
//!
//! Every count that goes up on entry goes down in a `Drop` (the tickets,
//! `tickets.rs`): a `WaitTicket` holds one waiter from the start of an
//! acquire until it succeeds, fails or its future is dropped; a
//! `HoldTicket` holds one connection in use until the connection (or the
//! transaction owning it) is dropped, including while a panicking task
//! unwinds.
//!
//! Cost per acquire/release pair: two clock reads, a handful of relaxed
//! atomics, two cached histogram records. No allocation, no lock (see
//! `mod.rs` for what off the pair does lock). The level decision is not made here: when a count
//! crosses one of the rules' edges the monitor task is woken through a
//! [`Notify`] (a permit, no allocation).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::clock::Clock;
use super::connects::ConnectCounter;
use super::edges::Edges;
use super::handles::HotMetrics;
use super::hints::Hints;
use super::histogram::{AtomicHistogram, HistSet};
use super::holders::Holders;
use super::leak::LeakTable;
use super::slots::Slots;
use super::statements::Statements;
use super::wait_ring::WaitRing;

/// Most waiters whose start times the oldest-waiter ring keeps.
const WAIT_RING: usize = 1024;

/// Shared counters of one guarded pool.
#[derive(Debug)]
pub(crate) struct Accounting {
    /// `in_use` and `waiters` in one word (`slots.rs`).
    pub(super) slots: Slots,
    /// Acquires that started waiting (the waits' sequence numbers).
    pub(super) waits_started: AtomicU64,
    pub(super) acquires_total: AtomicU64,
    pub(super) timeouts_total: AtomicU64,
    pub(super) errors_total: AtomicU64,
    pub(super) queries_total: AtomicU64,
    pub(super) query_timeouts_total: AtomicU64,
    pub(super) query_errors_total: AtomicU64,
    pub(super) requests_total: AtomicU64,
    pub(super) requests_5xx_total: AtomicU64,
    pub(super) requests_504_total: AtomicU64,
    pub(crate) wait: AtomicHistogram,
    pub(crate) hold: AtomicHistogram,
    pub(crate) query: AtomicHistogram,
    pub(crate) request: AtomicHistogram,
    pub(super) max: u32,
    /// Counts at which a rule on an instantaneous signal may change.
    pub(super) edges: Edges,
    /// Edges at or below the counts when last checked (see [`Edges::band`]).
    pub(super) band: AtomicU32,
    /// Wakes the monitor (edge crossed, or shutdown).
    pub(crate) wake: Notify,
    pub(super) closed: AtomicBool,
    pub(crate) leaks: Option<LeakTable>,
    pub(super) metrics: HotMetrics,
    /// Counts the pool's opens, when installed.
    pub(super) connects: Option<ConnectCounter>,
    /// The monitor's word to the call path (`hints.rs`).
    pub(crate) hints: Hints,
    /// The guard's one clock (`clock.rs`).
    pub(crate) clock: Clock,
    /// Connection time per acquiring call site, holds in progress
    /// included: the exact in-use area is its sum.
    pub(crate) holders: Holders,
    /// Query time per normalised statement through the guard.
    pub(crate) statements: Statements,
    /// Acquires refused before they waited (counted in the offered
    /// traffic, `Counters::arrivals_total`, with the waits).
    pub(super) rejected_total: AtomicU64,
    /// Start time of the waits by sequence number: the oldest waiter's age.
    pub(super) wait_ring: WaitRing,
}

/// Plain copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) in_use: u32,
    pub(crate) waiters: u32,
    /// Acquires started, rejected ones included (the offered traffic).
    pub(crate) arrivals_total: u64,
    pub(crate) acquires_total: u64,
    pub(crate) timeouts_total: u64,
    pub(crate) errors_total: u64,
    pub(crate) queries_total: u64,
    pub(crate) query_timeouts_total: u64,
    pub(crate) query_errors_total: u64,
    pub(crate) requests_total: u64,
    pub(crate) requests_5xx_total: u64,
    pub(crate) requests_504_total: u64,
    /// Connection-milliseconds in use through the guard since the origin
    /// (exact: the integral of `in_use`).
    pub(crate) in_use_ms: u64,
    /// Connections the pool opened (a `ConnectCounter`'s total; zero
    /// without one).
    pub(crate) opened_total: u64,
}

impl Counters {
    /// The cumulative totals minus an older copy (counts are copied as is).
    pub(crate) fn since(&self, o: &Counters) -> Counters {
        Counters {
            in_use: self.in_use,
            waiters: self.waiters,
            arrivals_total: self.arrivals_total.saturating_sub(o.arrivals_total),
            acquires_total: self.acquires_total.saturating_sub(o.acquires_total),
            query_timeouts_total: self
                .query_timeouts_total
                .saturating_sub(o.query_timeouts_total),
            timeouts_total: self.timeouts_total.saturating_sub(o.timeouts_total),
            errors_total: self.errors_total.saturating_sub(o.errors_total),
            queries_total: self.queries_total.saturating_sub(o.queries_total),
            query_errors_total: self.query_errors_total.saturating_sub(o.query_errors_total),
            requests_total: self.requests_total.saturating_sub(o.requests_total),
            requests_5xx_total: self.requests_5xx_total.saturating_sub(o.requests_5xx_total),
            requests_504_total: self.requests_504_total.saturating_sub(o.requests_504_total),
            in_use_ms: self.in_use_ms.saturating_sub(o.in_use_ms),
            opened_total: self.opened_total.saturating_sub(o.opened_total),
        }
    }
}

impl Accounting {
    pub(crate) fn new(
        clock: Clock,
        max: u32,
        edges: Edges,
        leak_threshold: Option<Duration>,
        metrics: HotMetrics,
        connects: Option<ConnectCounter>,
    ) -> Self {
        Self {
            slots: Slots::default(),
            waits_started: AtomicU64::new(0),
            query_timeouts_total: AtomicU64::new(0),
            acquires_total: AtomicU64::new(0),
            timeouts_total: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            queries_total: AtomicU64::new(0),
            query_errors_total: AtomicU64::new(0),
            requests_total: AtomicU64::new(0),
            requests_5xx_total: AtomicU64::new(0),
            requests_504_total: AtomicU64::new(0),
            wait: AtomicHistogram::new(),
            hold: AtomicHistogram::new(),
            query: AtomicHistogram::new(),
            request: AtomicHistogram::new(),
            max,
            edges,
            band: AtomicU32::new(0),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            leaks: leak_threshold.map(|t| LeakTable::new(clock, t, max)),
            metrics,
            connects,
            hints: Hints::default(),
            clock,
            holders: Holders::new(),
            statements: Statements::new(),
            rejected_total: AtomicU64::new(0),
            wait_ring: WaitRing::new(WAIT_RING),
        }
    }

    /// Connection-milliseconds in use through the guard from the origin to
    /// `now`: exact, whatever happened between two reads. (A release racing
    /// this read may count its hold once twice or not at all, by at most
    /// that hold's length.)
    pub(crate) fn in_use_ms(&self, now: Instant) -> u64 {
        self.holders.area_ms(self.clock.at(now).as_millis())
    }

    /// How long the oldest acquire still waiting has waited (pgbouncer's
    /// `maxwait`); `None` with no waiter. Exact while waiters leave in the
    /// order they came (sqlx's queue is fair); a waiter that leaves early
    /// (cancelled, a shorter deadline) makes it read the next one's age.
    pub(crate) fn oldest_wait(&self, now: Instant) -> Option<Duration> {
        let (_, waiters) = self.slots.read();
        if waiters == 0 {
            return None;
        }
        let total = self.waits_started.load(Relaxed);
        let oldest = total.saturating_sub(u64::from(waiters));
        let start_ms = self.wait_ring.oldest_start(oldest, total)?;
        let now_ms = self.clock.at(now).as_millis();
        Some(Duration::from_millis(now_ms.saturating_sub(start_ms)))
    }

    /// Copies of the four histograms (off the hot path; allocates).
    pub(crate) fn hist_set(&self) -> HistSet {
        HistSet {
            wait: self.wait.counts(),
            hold: self.hold.counts(),
            query: self.query.counts(),
            request: self.request.counts(),
        }
    }

    /// Whether a `ConnectCounter` counts the pool's opens (then acquires
    /// time the connects they make).
    #[inline]
    pub(crate) fn counts_opens(&self) -> bool {
        self.connects.is_some()
    }

    /// One connection opened for an acquire, in `took`.
    pub(crate) fn connect_took(&self, took: Duration) {
        self.metrics.create_time.record(took.as_secs_f64());
    }

    /// Records one request outcome the application observed (`method`,
    /// `scheme`: indexes of `hot::handles`).
    pub(crate) fn record_request(&self, method: u8, scheme: u8, status: u16, latency: Duration) {
        self.requests_total.fetch_add(1, Relaxed);
        if (500..600).contains(&status) {
            self.requests_5xx_total.fetch_add(1, Relaxed);
        }
        if status == 504 {
            self.requests_504_total.fetch_add(1, Relaxed);
        }
        self.request.record(latency);
        self.metrics
            .requests
            .record(method, scheme, status, latency.as_secs_f64());
    }

    /// An acquire refused before it waited (open breaker, load shedding):
    /// still offered traffic.
    pub(crate) fn rejected_arrival(&self) {
        self.rejected_total.fetch_add(1, Relaxed);
    }

    /// A query ran past its timeout.
    pub(crate) fn query_timed_out(&self) {
        self.query_timeouts_total.fetch_add(1, Relaxed);
    }

    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    /// Connections in use and acquires waiting now (one atomic read).
    pub(crate) fn live(&self) -> (u32, u32) {
        self.slots.read()
    }

    /// Every count at `now` (the in-use area read up to `now`).
    pub(crate) fn counters(&self, now: Instant) -> Counters {
        let (in_use, waiters) = self.slots.read();
        Counters {
            in_use,
            waiters,
            arrivals_total: self
                .waits_started
                .load(Relaxed)
                .saturating_add(self.rejected_total.load(Relaxed)),
            acquires_total: self.acquires_total.load(Relaxed),
            timeouts_total: self.timeouts_total.load(Relaxed),
            query_timeouts_total: self.query_timeouts_total.load(Relaxed),
            errors_total: self.errors_total.load(Relaxed),
            queries_total: self.queries_total.load(Relaxed),
            query_errors_total: self.query_errors_total.load(Relaxed),
            requests_total: self.requests_total.load(Relaxed),
            requests_5xx_total: self.requests_5xx_total.load(Relaxed),
            requests_504_total: self.requests_504_total.load(Relaxed),
            in_use_ms: self.in_use_ms(now),
            opened_total: self.connects.as_ref().map_or(0, ConnectCounter::total),
        }
    }

    /// Adds `delta` to the packed counts; see [`wake_on_new_band`](Self::wake_on_new_band).
    #[inline]
    pub(super) fn add(&self, delta: u64) -> u64 {
        let slots = self.slots.add(delta);
        self.wake_on_new_band(slots);
        slots
    }

    /// Subtracts `delta` from the packed counts (wrapping: `WAITER - IN_USE`
    /// turns a waiter into a user in one step).
    #[inline]
    pub(super) fn sub(&self, delta: u64) {
        let slots = self.slots.sub(delta);
        self.wake_on_new_band(slots);
    }

    /// Wakes the monitor if the counts now lie in another band between
    /// edges than the last one seen. Two threads racing here can leave a
    /// stale band behind; the next change or the next tick corrects it, so
    /// a wake is at worst one op late.
    #[inline]
    fn wake_on_new_band(&self, slots: u64) {
        let (in_use, waiters) = super::slots::split(slots);
        // Busy as the rules judge it: sqlx's untracked connections too.
        let busy = in_use.saturating_add(self.hints.untracked());
        let band = self.edges.band(busy, waiters);
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

#[cfg(test)]
mod tests;
