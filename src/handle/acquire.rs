//! The counted acquire every path shares (the guard's `acquire`,
//! `acquire_within`, `begin`, its `Executor` calls and the model pool):
//! breaker admission, a waiter from the start, load shedding on the counts
//! that step saw, the wait (bounded by a deadline), then a held connection,
//! a timeout carrying the pool state, or a failure, with the outcome
//! recorded for the breaker.
//!
//! One future does it all, and the pool's own future is made inside it:
//! every async layer around a future copies the inner one when it is made,
//! and sqlx's acquire future is large (measured: a moved-in sqlx future
//! cost about 1,000 instructions of `memcpy` per acquire, and three
//! wrapping layers about 700 more). The clock is read once at the start and
//! once when the connection arrives; the breaker's call duration is the
//! wait, read from the same instants.

use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, PoolState, TimeoutKind};
use crate::handle::scope;
use crate::hot::connects::poll_noting_opens;
use crate::hot::tickets::HoldTicket;
use crate::monitor::Shared;
use crate::protect::classify::Outcome;
use crate::report::spans::{self, AcquireOutcome};

/// Whether the acquire asks the breaker itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A call of its own: admission first, the acquire's outcome recorded.
    Ask,
    /// Part of a call already admitted (an `Executor` call, a `begin`),
    /// whose outcome the caller records.
    Admitted,
}

/// See the module docs. The timeout's pool state reads the pool's own
/// counts through the reader the monitor uses (sqlx's, or the model's for
/// a `SimPool`).
pub(crate) async fn counted_acquire<C, F>(
    shared: &Arc<Shared>,
    location: &'static Location<'static>,
    deadline: Option<Duration>,
    admission: Admission,
    acquire: impl FnOnce() -> F,
) -> Result<(C, HoldTicket), Error>
where
    F: Future<Output = Result<C, sqlx::Error>>,
{
    let span = spans::acquire(&shared.name, &shared.identity);
    let refused = |_: &Error| spans::acquire_ended(&span, AcquireOutcome::Refused, Duration::ZERO);
    let call = match admission {
        Admission::Ask => Some(shared.admit().inspect_err(refused)?),
        Admission::Admitted => None,
    };
    // A request's remaining time (the tower layer) bounds the wait too.
    let (deadline, by_request) = scope::bound(deadline);
    let (ticket, in_use, ahead) = shared.acct.start_wait_seen(location);
    // Refused: dropping the unresolved tickets removes the waiter again and
    // gives a half-open trial back (a refusal says nothing of the database).
    shared
        .shed_check(in_use, ahead, deadline)
        .inspect_err(refused)?;
    // A connection opened for this acquire, which found a slot free, times
    // the connect (`db.client.connection.create_time`).
    let watch = shared.acct.counts_opens() && in_use.saturating_add(ahead) < shared.acct.max();
    let mut opened = false;
    // The wait, bounded by the deadline. A macro, not a function: every
    // async layer copies the pool's (large) future into its own state.
    // `None`: the deadline passed first.
    macro_rules! bounded {
        ($wait:expr) => {
            match deadline {
                None => Some($wait.await),
                Some(d) => tokio::time::timeout(d, $wait).await.ok(),
            }
        };
    }
    // The pool's future is made here, in this future's own state, once
    // (sqlx's is about 3 KB: a second copy in one branch doubled this
    // future, and every layer that moves it pays for its size), and pinned
    // there: both waits hold a reference to it.
    let mut fut = std::pin::pin!(acquire());
    let acquired = if watch {
        // Noting whether this poll opened a connection.
        bounded!(std::future::poll_fn(|cx| poll_noting_opens(
            fut.as_mut(),
            cx,
            &mut opened
        )))
    } else {
        bounded!(fut.as_mut())
    };
    let err = match acquired {
        Some(Ok(conn)) => {
            let (hold, at, waited) = ticket.acquired_at();
            spans::acquire_ended(&span, AcquireOutcome::Acquired, waited);
            if opened {
                shared.acct.connect_took(waited);
            }
            if let Some(call) = call {
                call.finish_at(Outcome::Success, at, waited);
            }
            return Ok((conn, hold));
        }
        Some(Err(e)) if !matches!(e, sqlx::Error::PoolTimedOut) => {
            ticket.failed();
            spans::acquire_ended(&span, AcquireOutcome::Failed, Duration::ZERO);
            Error::Sqlx(e)
        }
        ended => {
            let timeout = match ended {
                None if by_request => TimeoutKind::Request,
                None => TimeoutKind::Deadline,
                Some(_) => TimeoutKind::Pool,
            };
            // The request's own deadline passed before the pool's: the
            // client gave up, which says nothing of the pool or the
            // database (a short `grpc-timeout` must not page or open the
            // breaker). Counted like a cancelled acquire; the caller still
            // gets the timeout, and its call's judgement ignores it.
            let (t, outcome) = if timeout == TimeoutKind::Request {
                (ticket.gave_up(), AcquireOutcome::Deadline)
            } else {
                (ticket.timed_out(), AcquireOutcome::TimedOut)
            };
            spans::acquire_ended(&span, outcome, t.0);
            timeout_error(shared, t, timeout)
        }
    };
    if let Some(call) = call {
        call.finish_error(&err);
    }
    Err(err)
}

/// The error of an acquire that timed out, with the pool as it was then
/// (HikariCP style), logged: a warning for the pool's timeout, at debug
/// level for a request's deadline.
fn timeout_error(
    shared: &Shared,
    (waited, served_while_waiting): (Duration, u64),
    timeout: TimeoutKind,
) -> Error {
    let (in_use, waiting) = shared.acct.live();
    let stats = shared.pool_stats();
    let state = PoolState {
        total: stats.size,
        in_use,
        // As the monitor reconciled them at its last evaluation, the value
        // snapshots and the rules use.
        untracked: shared.acct.hints.untracked(),
        idle: stats.idle,
        max: shared.acct.max(),
        // This acquire has left the count already.
        waiting,
        waited,
        served_while_waiting,
    };
    // Logged here too: the everyday methods convert the error to
    // `sqlx::Error::PoolTimedOut`, which cannot carry the state.
    if timeout == TimeoutKind::Request {
        tracing::debug!(pool = %shared.name, %state, "request deadline passed waiting for a connection");
    } else {
        tracing::warn!(pool = %shared.name, %timeout, %state, "connection acquire timed out");
    }
    Error::AcquireTimeout {
        pool: Arc::clone(&shared.name),
        timeout,
        state,
        source: sqlx::Error::PoolTimedOut,
    }
}
