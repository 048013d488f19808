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

use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::edges::Edges;
use super::handles::HotMetrics;
use super::histogram::{AtomicHistogram, HistSet};
use super::holders::Holders;
use super::leak::{Claim, LeakTable};
use super::statements::Statements;

/// One waiter in [`Accounting::slots`] (high half).
const WAITER: u64 = 1 << 32;
/// One connection in use in [`Accounting::slots`] (low half).
const IN_USE: u64 = 1;
/// Most waiters whose start times the oldest-waiter ring keeps.
const WAIT_RING: usize = 1024;
/// Bits of a waiter's sequence number kept beside its start time.
const RING_TAG_SHIFT: u32 = 44;

/// Whole microseconds of `d` (u64 arithmetic, unlike `as_micros`).
#[inline]
fn micros(d: Duration) -> u64 {
    d.as_secs()
        .wrapping_mul(1_000_000)
        .wrapping_add(u64::from(d.subsec_micros()))
}

fn split(slots: u64) -> (u32, u32) {
    ((slots & 0xFFFF_FFFF) as u32, (slots >> 32) as u32)
}

/// Shared counters of one guarded pool.
#[derive(Debug)]
pub(crate) struct Accounting {
    /// `in_use` (low 32 bits) and `waiters` (high 32 bits) in one word, so a
    /// waiter becoming a user is one atomic step and every read is consistent.
    slots: AtomicU64,
    attempts_total: AtomicU64,
    acquires_total: AtomicU64,
    timeouts_total: AtomicU64,
    errors_total: AtomicU64,
    queries_total: AtomicU64,
    query_timeouts_total: AtomicU64,
    query_errors_total: AtomicU64,
    requests_total: AtomicU64,
    requests_5xx_total: AtomicU64,
    requests_504_total: AtomicU64,
    pub(crate) wait: AtomicHistogram,
    pub(crate) hold: AtomicHistogram,
    pub(crate) query: AtomicHistogram,
    pub(crate) request: AtomicHistogram,
    max: u32,
    /// Counts at which a rule on an instantaneous signal may change.
    edges: Edges,
    /// Edges at or below the counts when last checked (see [`Edges::band`]).
    band: AtomicU32,
    /// Wakes the monitor (edge crossed, or shutdown).
    pub(crate) wake: Notify,
    closed: AtomicBool,
    pub(crate) leaks: Option<LeakTable>,
    metrics: HotMetrics,
    /// A `ConnectCounter` counts the pool's opens.
    counts_opens: bool,
    /// Clock origin of the millisecond times below.
    origin: Instant,
    /// Connection time per acquiring call site, holds in progress
    /// included: the exact in-use area is its sum.
    pub(crate) holders: Holders,
    /// Query time per normalised statement through the guard.
    pub(crate) statements: Statements,
    /// Acquires refused before they waited (counted in the offered
    /// traffic, `Counters::attempts_total`, with the waits).
    rejected_total: AtomicU64,
    /// Start time of the waits by sequence number, `seq` tag in the top
    /// bits and ms since `origin` below: the oldest waiter's age.
    wait_ring: Box<[AtomicU64]>,
}

/// Plain copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) in_use: u32,
    pub(crate) waiters: u32,
    /// Acquires started, rejected ones included (the offered traffic).
    pub(crate) attempts_total: u64,
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
    /// (exact: the integral of `in_use`), read by the monitor; zero in
    /// [`Accounting::counters`].
    pub(crate) busy_ms: u64,
    /// Connections the pool opened (a `ConnectCounter`'s total, set by the
    /// monitor; zero in [`Accounting::counters`]).
    pub(crate) opened_total: u64,
}

impl Counters {
    /// The cumulative totals minus an older copy (counts are copied as is).
    pub(crate) fn since(&self, o: &Counters) -> Counters {
        Counters {
            in_use: self.in_use,
            waiters: self.waiters,
            attempts_total: self.attempts_total.saturating_sub(o.attempts_total),
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
            busy_ms: self.busy_ms.saturating_sub(o.busy_ms),
            opened_total: self.opened_total.saturating_sub(o.opened_total),
        }
    }
}

impl Accounting {
    pub(crate) fn new(
        max: u32,
        edges: Edges,
        leak_threshold: Option<Duration>,
        metrics: HotMetrics,
        counts_opens: bool,
    ) -> Self {
        Self {
            slots: AtomicU64::new(0),
            attempts_total: AtomicU64::new(0),
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
            leaks: leak_threshold.map(|t| LeakTable::new(t, max)),
            metrics,
            counts_opens,
            origin: Instant::now(),
            holders: Holders::new(),
            statements: Statements::new(),
            rejected_total: AtomicU64::new(0),
            wait_ring: (0..WAIT_RING).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Milliseconds from the origin to `at`.
    #[inline]
    fn ms(&self, at: Instant) -> u64 {
        micros(at.saturating_duration_since(self.origin)) / 1000
    }

    /// Connection-milliseconds in use through the guard from the origin to
    /// `now`: exact, whatever happened between two reads. (A release racing
    /// this read may count its hold once twice or not at all, by at most
    /// that hold's length.)
    pub(crate) fn busy_ms(&self, now: Instant) -> u64 {
        self.holders.area_ms(self.ms(now))
    }

    /// Milliseconds from the origin to `now` (the holders table's clock).
    pub(crate) fn ms_at(&self, now: Instant) -> u64 {
        self.ms(now)
    }

    /// How long the oldest acquire still waiting has waited (pgbouncer's
    /// `maxwait`); `None` with no waiter. Exact while waiters leave in the
    /// order they came (sqlx's queue is fair); a waiter that leaves early
    /// (cancelled, a shorter deadline) makes it read the next one's age.
    pub(crate) fn oldest_wait(&self, now: Instant) -> Option<Duration> {
        let (_, waiters) = split(self.slots.load(Relaxed));
        if waiters == 0 {
            return None;
        }
        let total = self.attempts_total.load(Relaxed);
        let oldest = total.saturating_sub(u64::from(waiters));
        // A slot not yet written (a racing start) or overwritten (more than
        // the ring's length arrived since): the next that is this seq's.
        (oldest..total.min(oldest + 8)).find_map(|seq| {
            let w = self.wait_ring[seq as usize % WAIT_RING].load(Relaxed);
            (w >> RING_TAG_SHIFT == seq & ((1 << (64 - RING_TAG_SHIFT)) - 1)).then(|| {
                Duration::from_millis(self.ms(now).saturating_sub(w & ((1 << RING_TAG_SHIFT) - 1)))
            })
        })
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
        self.counts_opens
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
    pub(crate) fn rejected_attempt(&self) {
        self.rejected_total.fetch_add(1, Relaxed);
    }

    /// A query ran past its timeout.
    pub(crate) fn query_timed_out(&self) {
        self.query_timeouts_total.fetch_add(1, Relaxed);
    }

    /// Starts timing one query through the guard's executor.
    #[inline]
    pub(crate) fn start_query(self: &Arc<Self>) -> QueryTicket {
        QueryTicket {
            acct: Arc::clone(self),
            started: Instant::now(),
            statement: None,
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
            attempts_total: self
                .attempts_total
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
            busy_ms: 0,
            opened_total: 0,
        }
    }

    /// Starts one acquire: counts a waiter until the ticket is resolved or
    /// dropped. `location` is where the caller acquires (for leak reports).
    #[inline]
    pub(crate) fn start_wait(self: &Arc<Self>, location: &'static Location<'static>) -> WaitTicket {
        self.start_wait_seen(location).0
    }

    /// Like [`start_wait`](Self::start_wait), and returns `in_use` and the
    /// waiters ahead of this one, as counted in the same atomic step (so a
    /// burst cannot all see room under a cap).
    #[inline]
    pub(crate) fn start_wait_seen(
        self: &Arc<Self>,
        location: &'static Location<'static>,
    ) -> (WaitTicket, u32, u32) {
        let seq = self.attempts_total.fetch_add(1, Relaxed);
        let (in_use, waiters) = split(self.add(WAITER));
        let started = Instant::now();
        // The one conversion to the origin's clock per acquire/release pair;
        // the acquire and the release add the durations they measure anyway.
        let started_us = micros(started.saturating_duration_since(self.origin));
        self.wait_ring[seq as usize % WAIT_RING]
            .store((seq << RING_TAG_SHIFT) | (started_us / 1000), Relaxed);
        let ticket = WaitTicket {
            acct: Some(Arc::clone(self)),
            started,
            started_us,
            location,
            acquires_before: self.acquires_total.load(Relaxed),
        };
        (ticket, in_use, waiters.saturating_sub(1))
    }

    /// Adds `delta` to the packed counts; see [`wake_on_new_band`](Self::wake_on_new_band).
    #[inline]
    fn add(&self, delta: u64) -> u64 {
        let slots = self.slots.fetch_add(delta, Relaxed).wrapping_add(delta);
        self.wake_on_new_band(slots);
        slots
    }

    /// Subtracts `delta` from the packed counts (wrapping: `WAITER - IN_USE`
    /// turns a waiter into a user in one step).
    #[inline]
    fn sub(&self, delta: u64) {
        let slots = self.slots.fetch_sub(delta, Relaxed).wrapping_sub(delta);
        self.wake_on_new_band(slots);
    }

    /// Wakes the monitor if the counts now lie in another band between
    /// edges than the last one seen. Two threads racing here can leave a
    /// stale band behind; the next change or the next tick corrects it, so
    /// a wake is at worst one op late.
    #[inline]
    fn wake_on_new_band(&self, slots: u64) {
        let (in_use, waiters) = split(slots);
        let band = self.edges.band(in_use, waiters);
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
    /// `started` in microseconds from the accounting's origin.
    started_us: u64,
    location: &'static Location<'static>,
    /// `acquires_total` when this acquire started: whether the pool served
    /// others while it waited tells overload from a database that gives no
    /// connections.
    acquires_before: u64,
}

impl WaitTicket {
    /// The acquire succeeded: the waiter becomes a connection in use.
    #[inline]
    pub(crate) fn acquired(self) -> HoldTicket {
        self.acquired_at().0
    }

    /// [`acquired`](Self::acquired), also returning when (the clock read
    /// that ends the wait and starts the hold) and how long it waited, so
    /// no caller reads the clock again.
    #[inline]
    pub(crate) fn acquired_at(mut self) -> (HoldTicket, Instant, Duration) {
        let acct = self.acct.take().expect("ticket resolved once");
        let now = Instant::now();
        let waited = now.saturating_duration_since(self.started);
        // One waiter fewer and one more in use, in a single atomic step:
        // `WAITER - IN_USE` subtracted (wrapping) is exactly that.
        acct.sub(WAITER - IN_USE);
        let since_us = self.started_us + micros(waited);
        let site = acct.holders.slot_of(self.location);
        acct.holders.start(site, since_us / 1000);
        acct.acquires_total.fetch_add(1, Relaxed);
        acct.wait.record(waited);
        acct.metrics.wait_time.record(waited.as_secs_f64());
        let leak = acct
            .leaks
            .as_ref()
            .and_then(|t| t.claim(now, self.location));
        let hold = HoldTicket {
            acct,
            since: now,
            since_us,
            site,
            leak,
            handed_over: false,
        };
        (hold, now, waited)
    }

    /// The acquire timed out; returns how long it waited. The wait goes
    /// into the guard's own wait percentiles (the longest waits are the ones
    /// that matter), not into the OTel `wait_time`, which is for acquires
    /// that obtained a connection.
    /// Also returns how many acquires the pool served while this one
    /// waited.
    pub(crate) fn timed_out(mut self) -> (Duration, u64) {
        let acct = self.acct.take().expect("ticket resolved once");
        let waited = self.started.elapsed();
        acct.timeouts_total.fetch_add(1, Relaxed);
        acct.metrics.timeouts.increment(1);
        acct.wait.record(waited);
        acct.sub(WAITER);
        (waited, self.served(&acct))
    }

    /// The caller's own deadline passed (a request's, through the tower
    /// layer): the waiter leaves as a cancelled one does, no timeout and no
    /// wait recorded. Returns the wait and the acquires served meanwhile.
    pub(crate) fn gave_up(mut self) -> (Duration, u64) {
        let acct = self.acct.take().expect("ticket resolved once");
        acct.sub(WAITER);
        (self.started.elapsed(), self.served(&acct))
    }

    /// Acquires others completed while this one waited.
    fn served(&self, acct: &Accounting) -> u64 {
        acct.acquires_total
            .load(Relaxed)
            .saturating_sub(self.acquires_before)
    }

    /// The acquire failed for another reason (connect error, pool closed).
    pub(crate) fn failed(mut self) {
        let acct = self.acct.take().expect("ticket resolved once");
        acct.errors_total.fetch_add(1, Relaxed);
        acct.sub(WAITER);
    }
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        if let Some(acct) = self.acct.take() {
            acct.sub(WAITER);
        }
    }
}

/// One connection in use; dropping it records the hold time.
#[derive(Debug)]
pub(crate) struct HoldTicket {
    acct: Arc<Accounting>,
    since: Instant,
    /// `since` in microseconds from the accounting's origin.
    since_us: u64,
    /// The acquiring call site's slot in the holders table.
    site: u16,
    /// Slot in the leak table, when leak detection is on.
    leak: Option<Claim>,
    /// Given up while the connection stays busy outside the guard's view.
    handed_over: bool,
}

impl HoldTicket {
    pub(crate) fn held_for(&self) -> Duration {
        self.since.elapsed()
    }

    /// The connection leaves the guard's count but stays busy (a generic
    /// `Acquire::begin` returns sqlx's own `Transaction`, which cannot
    /// carry this ticket): from here the monitor sees it through sqlx's
    /// counts (`untracked`), and no hold is recorded, since the hold has
    /// not ended.
    pub(crate) fn hand_over(mut self) {
        self.handed_over = true;
    }
}

impl Drop for HoldTicket {
    #[inline]
    fn drop(&mut self) {
        let now = Instant::now();
        let held = now.saturating_duration_since(self.since);
        self.acct.sub(IN_USE);
        // The hold's area moves from the holds in progress to the ended
        // ones (a handed-over connection is counted as untracked from here).
        let acct = &self.acct;
        let until_us = self.since_us + micros(held);
        acct.holders
            .end(self.site, self.since_us / 1000, until_us / 1000);
        if self.handed_over {
            if let (Some(claim), Some(table)) = (self.leak, &self.acct.leaks) {
                table.release(claim, held);
            }
            return;
        }
        self.acct.hold.record(held);
        self.acct.metrics.use_time.record(held.as_secs_f64());
        if let (Some(claim), Some(table)) = (self.leak, &self.acct.leaks) {
            if table.release(claim, held) {
                // A reported leak came back: let the monitor say so now.
                self.acct.wake.notify_one();
            }
        }
    }
}

/// One query through the guard's executor. Dropped without [`finish`]
/// (a cancelled future or an abandoned stream) it counts nothing.
///
/// [`finish`]: QueryTicket::finish
#[derive(Debug)]
pub(crate) struct QueryTicket {
    acct: Arc<Accounting>,
    started: Instant,
    /// The statement's slot, once the driver read its text.
    statement: Option<u16>,
}

impl QueryTicket {
    /// The statement this query runs (its slot in the statement table).
    pub(crate) fn statement(&mut self, slot: Option<u16>) {
        if slot.is_some() {
            self.statement = slot;
        }
    }

    /// The query completed without an error.
    #[inline]
    pub(crate) fn finish_ok(self) {
        let took = self.count(true);
        self.acct.metrics.operations.ok(took.as_secs_f64());
    }

    /// The query failed: `ok` when the failure is an answer the breaker
    /// does not count (a constraint violation), with the OpenTelemetry
    /// `error.type` and `db.response.status_code` of the failure.
    pub(crate) fn finish_err(self, ok: bool, error_type: &str, status: Option<&str>) {
        let took = self.count(ok);
        self.acct
            .metrics
            .operations
            .failed(error_type, status, took.as_secs_f64());
    }

    /// Test shorthand: success, or a failure of kind `_OTHER`.
    #[cfg(test)]
    pub(crate) fn finish(self, ok: bool) {
        if ok {
            self.finish_ok();
        } else {
            self.finish_err(false, "_OTHER", None);
        }
    }

    #[inline]
    fn count(&self, ok: bool) -> Duration {
        let took = self.started.elapsed();
        if let Some(slot) = self.statement {
            self.acct.statements.record(slot, took);
        }
        self.acct.queries_total.fetch_add(1, Relaxed);
        if !ok {
            self.acct.query_errors_total.fetch_add(1, Relaxed);
        }
        self.acct.query.record(took);
        took
    }
}

#[cfg(test)]
mod tests;
