//! The tickets: one per acquire in progress, connection in use and query
//! through the guard. Each undoes its count in `Drop`, so a cancelled
//! future, an abandoned stream or a panicking task leaves the counts exact.

use std::panic::Location;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::accounting::Accounting;
use super::clock::Nanos;
use super::leak::Claim;
use super::slots::{split, IN_USE, WAITER, WAITER_TO_IN_USE};

/// The tickets are made here, so the accounting needs none of this file.
impl Accounting {
    /// Starts timing one query through the guard's executor.
    #[inline]
    pub(crate) fn start_query(self: &Arc<Self>) -> QueryTicket {
        QueryTicket::new(Arc::clone(self))
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
        let seq = self.waits_started.fetch_add(1, Relaxed);
        let (in_use, waiters) = split(self.add(WAITER));
        let started = Instant::now();
        // The one conversion to the guard's clock per acquire/release pair;
        // the acquire and the release add the durations they measure anyway.
        let started_on_clock = self.clock.at(started);
        self.wait_ring.started(seq, started_on_clock.as_millis());
        let ticket = WaitTicket::new(
            Arc::clone(self),
            started,
            started_on_clock,
            location,
            self.acquires_total.load(Relaxed),
        );
        (ticket, in_use, waiters.saturating_sub(1))
    }
}

/// One acquire in progress. Dropping it unresolved (a cancelled future)
/// removes the waiter without counting an outcome.
#[derive(Debug)]
pub(crate) struct WaitTicket {
    acct: Option<Arc<Accounting>>,
    started: Instant,
    /// `started` on the guard's clock.
    started_on_clock: Nanos,
    location: &'static Location<'static>,
    /// `acquires_total` when this acquire started: whether the pool served
    /// others while it waited tells overload from a database that gives no
    /// connections.
    acquires_before: u64,
}

impl WaitTicket {
    /// The waiter is already counted (`Accounting::start_wait_seen`).
    #[inline]
    pub(super) fn new(
        acct: Arc<Accounting>,
        started: Instant,
        started_on_clock: Nanos,
        location: &'static Location<'static>,
        acquires_before: u64,
    ) -> Self {
        Self {
            acct: Some(acct),
            started,
            started_on_clock,
            location,
            acquires_before,
        }
    }

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
        acct.sub(WAITER_TO_IN_USE);
        let since_on_clock = self.started_on_clock.plus(waited);
        let site = acct.holders.slot_of(self.location);
        acct.holders.start(site, since_on_clock.as_millis());
        acct.acquires_total.fetch_add(1, Relaxed);
        acct.wait.record(waited);
        acct.metrics.wait_time.record(waited.as_secs_f64());
        let leak = acct
            .leaks
            .as_ref()
            .and_then(|t| t.claim(since_on_clock, self.location));
        let hold = HoldTicket {
            acct,
            since: now,
            since_on_clock,
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
    /// `since` on the guard's clock.
    since_on_clock: Nanos,
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

    /// The owner means to hold this connection for `hold` (a batch job):
    /// leak detection reports it only past that.
    pub(crate) fn expect_hold(&self, hold: Duration) {
        if let (Some(claim), Some(table)) = (self.leak, &self.acct.leaks) {
            table.expect_hold(claim, hold);
        }
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
        let until = self.since_on_clock.plus(held);
        acct.holders.end(
            self.site,
            self.since_on_clock.as_millis(),
            until.as_millis(),
        );
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
    /// Starts timing now.
    #[inline]
    pub(super) fn new(acct: Arc<Accounting>) -> Self {
        Self {
            acct,
            started: Instant::now(),
            statement: None,
        }
    }

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
