//! The guard's one clock: every time the crate stores or judges is a
//! [`Nanos`] since one origin, the [`Clock`] made when the guard is built
//! (as governor's `Nanos` and `Clock`). The origin is a tokio instant, so a
//! paused runtime (tests, `sim::SimPool`) pauses every judgement with it.
//!
//! Stored times are plain `u64` nanoseconds (584 years from the origin),
//! which is what an atomic word holds; a table that packs a time into
//! fewer bits (the holders' 48-bit start sums) stores
//! [`Nanos::as_millis`] and says so.

use std::time::Duration;

use tokio::time::Instant;

/// Nanoseconds since the guard's [`Clock`] origin, or a length of time in
/// nanoseconds. [`from_duration`](Nanos::from_duration) saturates (for
/// configured lengths, which may be `Duration::MAX`); the hot path's
/// [`Clock::at`] and [`plus`](Nanos::plus) wrap, which needs a guard
/// older than 584 years.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Nanos(u64);

impl Nanos {
    /// From a raw value (as loaded from an atomic word).
    #[inline]
    pub(crate) const fn from_raw(ns: u64) -> Self {
        Nanos(ns)
    }

    /// The raw value (to store in an atomic word).
    #[inline]
    pub(crate) const fn raw(self) -> u64 {
        self.0
    }

    /// A duration, saturating at `u64::MAX` nanoseconds. Plain u64
    /// arithmetic: this runs on the hot path (`as_nanos` is u128).
    #[inline]
    pub(crate) fn from_duration(d: Duration) -> Self {
        Nanos(
            d.as_secs()
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::from(d.subsec_nanos())),
        )
    }

    #[inline]
    pub(crate) fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Whole milliseconds (for tables that pack times into fewer bits).
    #[inline]
    pub(crate) fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// Whole microseconds of a measured duration, saturating, in u64
    /// arithmetic (the histograms' and the statement table's unit;
    /// `Duration::as_micros` is u128).
    #[inline]
    pub(crate) fn micros_of(d: Duration) -> u64 {
        d.as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_micros()))
    }

    #[inline]
    pub(crate) fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// `self` plus a measured duration, wrapping (the hot path's
    /// arithmetic: a time on the clock plus a wait or a hold).
    #[inline]
    pub(crate) fn plus(self, d: Duration) -> Nanos {
        Nanos(self.0.wrapping_add(wrapping_nanos(d)))
    }
}

/// `d` in nanoseconds, in wrapping u64 arithmetic.
#[inline]
fn wrapping_nanos(d: Duration) -> u64 {
    d.as_secs()
        .wrapping_mul(1_000_000_000)
        .wrapping_add(u64::from(d.subsec_nanos()))
}

/// The guard's origin: converts tokio instants to [`Nanos`] and back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose origin is now.
    pub(crate) fn start() -> Self {
        Self::from_origin(Instant::now())
    }

    /// A clock whose origin is `origin`.
    pub(crate) fn from_origin(origin: Instant) -> Self {
        Self { origin }
    }

    /// The instant this clock counts from.
    pub(crate) fn origin(&self) -> Instant {
        self.origin
    }

    /// `at` on this clock (zero before the origin). Wrapping u64
    /// arithmetic, the cheapest on the hot path: a guard does not live the
    /// 584 years that would wrap it.
    #[inline]
    pub(crate) fn at(&self, at: Instant) -> Nanos {
        Nanos(wrapping_nanos(at.saturating_duration_since(self.origin)))
    }

    /// The instant `n` after the origin (`None` past the end of time).
    pub(crate) fn instant(&self, n: Nanos) -> Option<Instant> {
        self.origin.checked_add(n.as_duration())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways_and_saturates() {
        let clock = Clock::start();
        let later = clock.origin() + Duration::from_millis(1500);
        let n = clock.at(later);
        assert_eq!(n.raw(), 1_500_000_000);
        assert_eq!(n.as_millis(), 1500);
        assert_eq!(Nanos::micros_of(n.as_duration()), 1_500_000);
        assert_eq!(Nanos::micros_of(Duration::MAX), u64::MAX);
        assert_eq!(clock.instant(n), Some(later));
        assert_eq!(
            Nanos::from_duration(Duration::MAX),
            Nanos::from_raw(u64::MAX)
        );
        if let Some(before) = clock.origin().checked_sub(Duration::from_secs(1)) {
            assert_eq!(clock.at(before), Nanos::from_raw(0));
        }
    }
}
