//! Load shedding: refuse an acquire at once when waiting is hopeless,
//! instead of holding the request until the pool's acquire timeout (sqlx's
//! default is 30 s) turns it into a 504.
//!
//! On the hot path before the acquire waits (atomics only), by default one
//! check: the expected wait against the caller's deadline (the pool's
//! `acquire_timeout`, or `acquire_within`'s, or `max_wait` if set), so an
//! acquire the pool would serve in time is never refused. The acquire's
//! place in line counts everyone ahead, those still inside sqlx's acquire
//! included (they take the free connections first): with `f` connections
//! free, the `k`-th acquire waits for the `(k - f)`-th connection to come
//! back, which with `max` connections each held `W` on average (Little's
//! law; the `q`-th of `max` residual holds ends after about `q x W / max`)
//! is `(k - f) x W / max`. An estimate above the deadline is hopeless.
//! Measured before this rule (main as of issue 12): judging only a full
//! pool, a simultaneous burst on an idle pool all saw free connections and
//! waited out its deadline. A fixed cap on waiters is opt-in.

use std::fmt;
use std::time::Duration;

/// Load-shedding settings (validated by the builder).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShedConfig {
    /// Shedding on (default) or off.
    pub enabled: bool,
    /// Most acquires that may wait, as a multiple of `max_connections`
    /// (0, the default: no cap; 2 would queue at most 100 on a pool of 50).
    /// A cap refuses acquires whatever their deadline, so it is opt-in.
    pub max_waiters_per_connection: u32,
    /// The longest acceptable wait: an acquire is judged against the pool's
    /// `acquire_timeout`, the caller's `acquire_within` deadline, and this
    /// (`None`, the default: no limit of its own), whichever is shortest.
    pub max_wait: Option<Duration>,
}

impl Default for ShedConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_waiters_per_connection: 0,
            max_wait: None,
        }
    }
}

impl ShedConfig {
    /// Load shedding off.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Sets the waiter cap per connection (0: no cap).
    pub fn max_waiters_per_connection(mut self, n: u32) -> Self {
        self.max_waiters_per_connection = n;
        self
    }

    /// Sets the longest acceptable estimated wait.
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = Some(d);
        self
    }
}

/// The decision for one acquire; `waiters` excludes this one, `in_use`
/// counts every busy connection, `max_waiters` 0 means no cap.
/// Connections that must come back before an acquire with `waiters` ahead
/// of it gets one (0: a free connection is there for it).
#[inline]
pub(crate) fn behind(in_use: u32, waiters: u32, max: u32) -> u32 {
    waiters
        .saturating_add(1)
        .saturating_sub(max.saturating_sub(in_use))
}

pub(crate) fn decide(
    in_use: u32,
    waiters: u32,
    max: u32,
    mean_hold: Option<Duration>,
    deadline: Duration,
    max_waiters: u32,
) -> Option<ShedReason> {
    if max_waiters > 0 && waiters >= max_waiters {
        return Some(ShedReason::TooManyWaiters {
            waiters,
            limit: max_waiters,
        });
    }
    let behind = behind(in_use, waiters, max);
    if behind == 0 || max == 0 {
        return None;
    }
    let hold = mean_hold?;
    let estimated_wait = hold.checked_mul(behind).map_or(Duration::MAX, |d| d / max);
    (estimated_wait > deadline).then_some(ShedReason::HopelessWait {
        waiters,
        estimated_wait,
        deadline,
    })
}

/// Why load shedding rejected an acquire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShedReason {
    /// As many acquires were already waiting as allowed.
    TooManyWaiters {
        /// Acquires waiting.
        waiters: u32,
        /// The cap.
        limit: u32,
    },
    /// The pool is full and the wait, estimated from the queue and the
    /// recent hold times (Little's law), exceeds what the caller has left.
    HopelessWait {
        /// Acquires waiting ahead of this one.
        waiters: u32,
        /// `(waiters + 1) x mean hold / max_connections`.
        estimated_wait: Duration,
        /// The caller's remaining acquire deadline.
        deadline: Duration,
    },
}

impl fmt::Display for ShedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShedReason::TooManyWaiters { waiters, limit } => {
                write!(f, "{waiters} acquires waiting, limit {limit}")
            }
            ShedReason::HopelessWait {
                waiters,
                estimated_wait,
                deadline,
            } => write!(
                f,
                "pool full with {waiters} waiting: estimated wait {estimated_wait:?} exceeds the {deadline:?} left"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
