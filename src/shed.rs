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

use std::time::Duration;

use crate::error::ShedReason;

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
    // Connections that must come back before this acquire gets one.
    let behind = waiters
        .saturating_add(1)
        .saturating_sub(max.saturating_sub(in_use));
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
    fn a_burst_on_a_free_pool_waits_behind_the_acquires_ahead() {
        // 60 at once on 2 connections held 100 ms, deadline 1 s: nobody is
        // in use yet, but the k-th waits for k - 2 returns of 2 connections.
        let hold = Some(Duration::from_millis(100));
        let served = (0..60)
            .filter(|&ahead| decide(0, ahead, 2, hold, S, 0).is_none())
            .count();
        assert_eq!(served, 22, "2 free + 20 returns within 1 s");
        // No cap by default: 10,000 waiting is fine when they move fast.
        assert_eq!(decide(50, 10_000, 50, Some(S / 1000), S, 0), None);
    }

    #[test]
    fn no_hold_history_no_estimate() {
        assert_eq!(decide(5, 3, 5, None, S, 10), None);
    }
}
