//! Load shedding: refuse an acquire at once when waiting is hopeless,
//! instead of holding the request until the pool's acquire timeout (sqlx's
//! default is 30 s) turns it into a 504.
//!
//! Two checks, on the hot path before the acquire waits (atomics only):
//! a cap on waiters, and, when every connection is in use, Little's law: with
//! `max` connections each held `W` on average, the pool serves `max / W`
//! acquires a second, so the `k`-th in line waits about `k x W / max`. An
//! estimate above the caller's remaining deadline is hopeless.

use std::time::Duration;

use crate::error::ShedReason;

/// Load-shedding settings (validated by the builder).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShedConfig {
    /// Shedding on (default) or off.
    pub enabled: bool,
    /// Most acquires that may wait, as a multiple of `max_connections`
    /// (default 2: a 50-connection pool queues at most 100).
    pub max_waiters_per_connection: u32,
    /// The deadline an acquire is judged against: the pool's
    /// `acquire_timeout` or this, whichever is shorter (default 1 s).
    pub max_wait: Duration,
}

impl Default for ShedConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_waiters_per_connection: 2,
            max_wait: Duration::from_secs(1),
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

    /// Sets the waiter cap per connection.
    pub fn max_waiters_per_connection(mut self, n: u32) -> Self {
        self.max_waiters_per_connection = n;
        self
    }

    /// Sets the longest acceptable estimated wait.
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = d;
        self
    }
}

/// The decision for one acquire; `waiters` excludes this one.
pub(crate) fn decide(
    in_use: u32,
    waiters: u32,
    max: u32,
    mean_hold: Option<Duration>,
    deadline: Duration,
    max_waiters: u32,
) -> Option<ShedReason> {
    if waiters >= max_waiters {
        return Some(ShedReason::TooManyWaiters {
            waiters,
            limit: max_waiters,
        });
    }
    if in_use < max || max == 0 {
        return None;
    }
    let hold = mean_hold?;
    let estimated_wait = hold
        .checked_mul(waiters.saturating_add(1))
        .map_or(Duration::MAX, |d| d / max);
    (estimated_wait > deadline).then_some(ShedReason::HopelessWait {
        waiters,
        estimated_wait,
        deadline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn room_in_the_pool_never_sheds_on_the_estimate() {
        assert_eq!(decide(49, 0, 50, Some(S * 100), S, 100), None);
    }

    #[test]
    fn incident_numbers() {
        // 50 connections each held 3 s (INC-EX3's P50 at the peak): the
        // pool serves 16.7 acquires/s. With 20 waiting, the 21st waits
        // 21 x 3 / 50 = 1.26 s: hopeless against 1 s, fine against 2 s.
        let hold = Some(S * 3);
        match decide(50, 20, 50, hold, S, 100) {
            Some(ShedReason::HopelessWait { estimated_wait, .. }) => {
                assert_eq!(estimated_wait, Duration::from_millis(1260))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(decide(50, 20, 50, hold, S * 2, 100), None);
        assert_eq!(
            decide(50, 100, 50, hold, S * 60, 100),
            Some(ShedReason::TooManyWaiters {
                waiters: 100,
                limit: 100
            })
        );
    }

    #[test]
    fn no_hold_history_no_estimate() {
        assert_eq!(decide(5, 3, 5, None, S, 10), None);
    }
}
