//! Protection on the call path: admission (circuit breaker, load shedding)
//! before an acquire waits, outcome recording after the call, and query
//! timeouts. The decisions live in `protect/` (breaker, classify, shed,
//! timeout); this file applies them to the guard's calls, through the
//! guard's [`Shared`] part, and reports what happened.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::error::{Cancelled, Error, TimeoutKind};
use crate::handle::scope;
use crate::monitor::Shared;
use crate::protect::breaker::{Breaker, BreakerState, Change, Outcome, Permit};
use crate::protect::shed::{self, ShedReason};
use crate::report::events::{BreakerEvent, Event};

/// One admitted call. Finish it with the call's result; dropping it
/// unfinished (a cancelled call) records nothing and gives a half-open trial
/// permit back.
#[derive(Debug)]
pub(crate) struct CallTicket<'a> {
    shared: &'a Shared,
    trial: Option<u32>,
    /// When the call started, for calls that time themselves (an acquire
    /// times itself with its wait ticket's clock reads instead).
    started: Option<Instant>,
    done: bool,
}

impl CallTicket<'_> {
    /// Starts the call's clock.
    pub(crate) fn timed(mut self) -> Self {
        self.started = Some(Instant::now());
        self
    }

    /// Finishes a call that timed itself.
    pub(crate) fn finish(self, outcome: Outcome) {
        let now = Instant::now();
        let took = self
            .started
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        self.finish_at(outcome, now, took);
    }

    /// Finishes a call that ended at `now` after `took`.
    pub(crate) fn finish_at(mut self, outcome: Outcome, now: Instant, took: Duration) {
        self.done = true;
        let p = &self.shared.protect;
        match outcome {
            Outcome::Success => p.metrics.success.increment(1),
            Outcome::Failure => p.metrics.failure.increment(1),
            _ => {}
        }
        if let Some(c) = p.breaker.record(now, self.trial, outcome, took) {
            self.shared.breaker_changed(c);
        }
    }

    /// Finishes with the outcome of a guard result, judged on the guard's
    /// own error: its refusals say nothing about the database (ignored), a
    /// query timeout is a failure, an acquire timeout is ignored when the
    /// request's deadline ended it (the client gave up) or when the pool
    /// kept serving others (overload), and otherwise judged as sqlx's
    /// `PoolTimedOut` by the classifier, like every sqlx error.
    pub(crate) fn finish_guard<T>(self, r: &Result<T, Error>) {
        match r {
            Ok(_) => self.finish(Outcome::Success),
            Err(e) => self.finish_error(e),
        }
    }

    /// Finishes with a guard error (see [`finish_guard`](Self::finish_guard)).
    pub(crate) fn finish_error(self, e: &Error) {
        let outcome = match e {
            Error::AcquireTimeout {
                timeout: TimeoutKind::Request,
                ..
            } => Outcome::Ignored,
            Error::AcquireTimeout { state, .. } if state.overloaded() => Outcome::Ignored,
            Error::AcquireTimeout { source, .. } | Error::Sqlx(source) => {
                self.shared.classify(source)
            }
            Error::QueryTimeout { .. } => Outcome::Failure,
            _ => Outcome::Ignored,
        };
        self.finish(outcome);
    }
}

impl Drop for CallTicket<'_> {
    fn drop(&mut self) {
        if !self.done && self.trial.is_some() {
            self.shared.protect.breaker.record(
                Instant::now(),
                self.trial,
                Outcome::Ignored,
                Duration::ZERO,
            );
        }
    }
}

impl Shared {
    /// The configured classifier's verdict on an error: one judgement for
    /// the breaker and for the query-error signals.
    pub(crate) fn classify(&self, e: &sqlx::Error) -> Outcome {
        (self.protect.breaker.classifier)(e)
    }

    /// Whether `e` is evidence of a failing database (the classifier says
    /// `Failure`); anything else is an answer, not an error for the
    /// error-rate rules.
    pub(crate) fn is_failure(&self, e: &sqlx::Error) -> bool {
        self.classify(e) == Outcome::Failure
    }

    /// Asks the breaker whether a call may go ahead. Rejections touch
    /// nothing but an atomic or two and the breaker's lock.
    pub(crate) fn admit(&self) -> Result<CallTicket<'_>, Error> {
        let (permit, change) = self.protect.breaker.permit();
        if let Some(c) = change {
            self.breaker_changed(c);
        }
        match permit {
            Permit::Granted { trial } => Ok(CallTicket {
                shared: self,
                trial,
                started: None,
                done: false,
            }),
            Permit::Rejected { retry_in } => {
                self.acct.rejected_arrival();
                self.protect.metrics.rejected.increment(1);
                // A request's scope (the tower layer) answers 503 with it.
                scope::note_refusal(retry_in);
                Err(Error::CircuitOpen {
                    pool: Arc::clone(&self.name),
                    state: self.protect.breaker.state().0,
                    retry_in,
                })
            }
        }
    }

    /// Runs one call under the breaker: admission, then `call`, then its
    /// outcome, judged on the call's own error ([`CallTicket::finish_guard`])
    /// before any conversion to sqlx's. A rejection never polls `call`.
    pub(crate) async fn call<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let ticket = self.admit()?.timed();
        let r = call.await;
        ticket.finish_guard(&r);
        r
    }

    /// Refuses an acquire whose wait is hopeless. Called right after the
    /// acquire counted itself as a waiter, with the counts that step saw;
    /// `deadline` is the caller's own, if shorter than the configured one.
    pub(crate) fn shed_check(
        &self,
        in_use: u32,
        waiters_ahead: u32,
        deadline: Option<Duration>,
    ) -> Result<(), Error> {
        let p = &self.protect;
        if !p.shed.enabled {
            return Ok(());
        }
        let busy = in_use.saturating_add(self.acct.hints.untracked());
        let max = self.acct.max();
        // The common case, decided without the estimate: no cap, and a
        // free connection for this acquire.
        if p.max_waiters == 0 && shed::behind(busy, waiters_ahead, max) == 0 {
            return Ok(());
        }
        let Some(reason) = shed::decide(
            busy,
            waiters_ahead,
            max,
            self.acct.hints.hold(),
            deadline.map_or(p.shed_deadline, |d| d.min(p.shed_deadline)),
            p.max_waiters,
        ) else {
            return Ok(());
        };
        match reason {
            ShedReason::TooManyWaiters { .. } => p.metrics.shed_waiters.increment(1),
            _ => p.metrics.shed_hopeless.increment(1),
        }
        let retry_in = self.queue_wait(in_use, waiters_ahead);
        scope::note_refusal(retry_in);
        Err(Error::LoadShed {
            pool: Arc::clone(&self.name),
            reason,
            retry_in,
        })
    }

    /// The expected wait of an acquire with `ahead` waiters before it and
    /// `in_use` connections busy: Little's law on the recent hold times,
    /// as load shedding estimates it (`None` before any hold ended).
    pub(crate) fn queue_wait(&self, in_use: u32, ahead: u32) -> Option<Duration> {
        let busy = in_use.saturating_add(self.acct.hints.untracked());
        let behind = shed::behind(busy, ahead, self.acct.max());
        let hold = self.acct.hints.hold()?;
        Some(hold.mul_f64(f64::from(behind.max(1)) / f64::from(self.acct.max().max(1))))
    }

    /// Reports a breaker transition: event, gauge, log.
    pub(crate) fn breaker_changed(&self, c: Change) {
        self.protect
            .metrics
            .breaker_state
            .set(f64::from(c.to.as_number()));
        tracing::warn!(pool = %self.name, from = %c.from, to = %c.to, failure_rate = c.failure_rate,
            slow_call_rate = c.slow_call_rate, calls = c.calls, retry_in = ?c.retry_in, shadow = c.shadow,
            "circuit breaker");
        self.hub.publish(Event::Breaker(BreakerEvent {
            from: c.from,
            to: c.to,
            failure_rate: c.failure_rate,
            slow_call_rate: c.slow_call_rate,
            calls: c.calls,
            retry_in: c.retry_in,
            shadow: c.shadow,
            at: SystemTime::now(),
        }));
    }

    /// A query on a held connection or transaction (not admitted as a call)
    /// timed out: still a failure for the breaker.
    pub(crate) fn held_query_timed_out(&self, limit: Duration) {
        if let Some(c) = self
            .protect
            .breaker
            .record(Instant::now(), None, Outcome::Failure, limit)
        {
            self.breaker_changed(c);
        }
        self.protect.metrics.failure.increment(1);
    }

    /// A query ran past its limit: counts it and builds the error.
    pub(crate) fn query_timed_out(&self, limit: Duration, server: Cancelled) -> Error {
        self.acct.query_timed_out();
        self.protect.metrics.query_timeouts.increment(1);
        tracing::warn!(pool = %self.name, ?limit, %server, "query timed out");
        Error::QueryTimeout {
            pool: Arc::clone(&self.name),
            limit,
            server,
        }
    }
}

/// Manual control and a view of the circuit breaker, from
/// [`PoolGuard::breaker`](crate::PoolGuard::breaker). Every change of state
/// is an [`Event::Breaker`] like the automatic ones (switching shadow mode on
/// or off is not a change of state and sends none).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), poolguard::Error> {
/// # let pool = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await?;
/// # let guard = poolguard::PoolGuard::builder(pool).build()?;
/// use poolguard::BreakerState;
/// guard.breaker().force_open();                  // maintenance: fail fast
/// assert!(guard.acquire_detailed().await.unwrap_err().is_rejected());
/// guard.breaker().reset();                       // back to Closed
/// assert_eq!(guard.breaker().state(), BreakerState::Closed);
/// # Ok(()) }
/// ```
pub struct BreakerHandle<'a> {
    pub(crate) shared: &'a Shared,
}

impl std::fmt::Debug for BreakerHandle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerHandle")
            .field("state", &self.state())
            .field("metrics_only", &self.is_metrics_only())
            .finish()
    }
}

impl BreakerHandle<'_> {
    fn apply(&self, f: impl FnOnce(&mut Breaker, Instant) -> Option<Change>) {
        if let Some(c) = self.shared.protect.breaker.control(f) {
            self.shared.breaker_changed(c);
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.shared.protect.breaker.state().0
    }

    /// Whether the breaker runs in shadow (MetricsOnly) mode.
    pub fn is_metrics_only(&self) -> bool {
        self.shared.protect.breaker.state().1
    }

    /// (calls, failures, slow calls) in the sliding window now.
    pub fn window(&self) -> (u32, u32, u32) {
        let t = self.shared.protect.breaker.tally();
        (t.calls, t.failures, t.slow)
    }

    /// Rejects every call until changed by hand (Resilience4j's FORCED_OPEN).
    pub fn force_open(&self) {
        self.apply(|b, now| b.transition(BreakerState::ForcedOpen, now));
    }

    /// Moves to Closed now (with an empty window and no backoff, as any
    /// move to Closed).
    pub fn force_closed(&self) {
        self.apply(|b, now| b.transition(BreakerState::Closed, now));
    }

    /// Passes every call and records nothing (DISABLED).
    pub fn disable(&self) {
        self.apply(|b, now| b.transition(BreakerState::Disabled, now));
    }

    /// Shadow mode on or off: the state machine runs and reports, but no
    /// call is rejected (METRICS_ONLY).
    pub fn set_metrics_only(&self, on: bool) {
        self.apply(|b, _| {
            b.set_metrics_only(on);
            None
        });
    }

    /// Back to Closed with an empty window and no backoff.
    pub fn reset(&self) {
        self.apply(|b, now| b.reset(now));
    }
}
