//! Lock-free latency histogram for the hot path, and the windowed read side.
//!
//! The hot path only adds to cumulative atomic buckets (one `fetch_add` per
//! record). Windows are built off the hot path by the monitor, which keeps
//! cumulative copies and subtracts the oldest from the newest, so the memory is
//! bounded and recording never takes a lock or allocates.
//!
//! Buckets are log-linear over microseconds: exact below 8 us, then 8 linear
//! sub-buckets per power of two (buckets 12.5 % wide; a quantile is reported
//! as its bucket's midpoint, within 6.25 % of the true value), up to about
//! 2^41 us (25 days); longer values land in the last bucket.

use super::clock::Nanos;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const MAX_EXP: u32 = 40;
/// Number of buckets.
pub(crate) const BUCKETS: usize = (MAX_EXP - SUB_BITS + 2) as usize * SUB;

fn index(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros();
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let mantissa = (us >> (exp - SUB_BITS)) as usize & (SUB - 1);
    (exp - SUB_BITS + 1) as usize * SUB + mantissa
}

/// Lower and upper bound (exclusive) of a bucket, in microseconds.
fn bounds(idx: usize) -> (u64, u64) {
    if idx < SUB {
        return (idx as u64, idx as u64 + 1);
    }
    let exp = (idx / SUB) as u32 + SUB_BITS - 1;
    let mantissa = (idx % SUB) as u64;
    let width = 1u64 << (exp - SUB_BITS);
    let lower = (SUB as u64 + mantissa) * width;
    (lower, lower + width)
}

/// Cumulative histogram of durations, recorded with atomics only.
pub(crate) struct AtomicHistogram {
    buckets: [AtomicU64; BUCKETS],
}

impl AtomicHistogram {
    pub(crate) fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    #[inline]
    pub(crate) fn record(&self, d: Duration) {
        let us = Nanos::micros_of(d);
        self.buckets[index(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// Copies the cumulative counts (off the hot path; allocates).
    pub(crate) fn counts(&self) -> Counts {
        Counts(
            self.buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        )
    }
}

impl std::fmt::Debug for AtomicHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicHistogram")
            .field("count", &self.counts().total())
            .finish()
    }
}

/// A copy of bucket counts, cumulative or the difference of two copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Counts(Vec<u64>);

impl Counts {
    #[cfg(test)]
    pub(crate) fn empty() -> Self {
        Counts(vec![0; BUCKETS])
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `self - older`, bucket by bucket (cumulative counts only grow).
    pub(crate) fn since(&self, older: &Counts) -> Counts {
        Counts(
            self.0
                .iter()
                .zip(&older.0)
                .map(|(n, o)| n.saturating_sub(*o))
                .collect(),
        )
    }

    /// The sum of the samples, each at its bucket's midpoint and at most
    /// `cap`, seconds.
    pub(crate) fn clipped_sum_secs(&self, cap: Duration) -> f64 {
        let cap = cap.as_secs_f64() * 1e6;
        self.0
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(idx, n)| {
                let (lo, hi) = bounds(idx);
                ((lo + hi) as f64 / 2.0).min(cap) * *n as f64
            })
            .sum::<f64>()
            / 1e6
    }

    /// The `q` quantile (0..=1), reported as the midpoint of its bucket;
    /// `None` when there are no samples.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (idx, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (lo, hi) = bounds(idx);
                let mid = if hi - lo == 1 { lo } else { lo + (hi - lo) / 2 };
                return Some(Duration::from_micros(mid));
            }
        }
        None
    }
}

/// The four latency histograms at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HistSet {
    pub(crate) wait: Counts,
    pub(crate) hold: Counts,
    pub(crate) query: Counts,
    pub(crate) request: Counts,
}

#[cfg(test)]
mod tests;
