//! The one per-minute history of the pool's load: one bucket a minute
//! (unless time-scaled) with the arrival rate, the mean hold (Little's W)
//! and the hold percentiles, an hour of them plus the 10 newest, which
//! every baseline leaves out so an incident does not become its own
//! baseline (with no lag a 3x spike's anomaly z-score falls under 2 within
//! 5 minutes).
//!
//! Two readers judge against it: the traffic anomaly (`anomaly.rs`: the
//! mean and spread of the rates) and the diagnosis (`diagnose/`: the
//! [`Usual`] medians and when each quantity rose past them).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::learned::LearnedMinute;
use crate::hot::accounting::Counters;
use crate::hot::histogram::Counts;

/// Default length of one bucket, and of the "current" rate the anomaly
/// compares (the builder's `time_scale` shortens it).
pub(crate) const BUCKET: Duration = Duration::from_secs(60);
/// Buckets a baseline uses (one hour).
const BUCKETS: usize = 60;
/// Most recent buckets every baseline leaves out.
pub(crate) const LAG: usize = 10;
/// Fewest buckets for the usual medians.
const MIN_BUCKETS: usize = 3;

/// One bucket: arrival rate (per second), mean hold (seconds), when any
/// acquire completed in it, and the hold percentiles of the holds that
/// ended in it.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    rate: f64,
    hold: Option<f64>,
    p50: Option<Duration>,
    p95: Option<Duration>,
}

/// The usual load: medians over the baseline's buckets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Usual {
    /// Arrivals per second.
    pub(crate) rate: f64,
    /// Mean hold (Little's W), seconds.
    pub(crate) hold: f64,
    pub(crate) hold_p50: Option<Duration>,
    pub(crate) hold_p95: Option<Duration>,
}

/// The per-minute history (bounded: `BUCKETS + LAG` buckets).
#[derive(Debug)]
pub(crate) struct History {
    buckets: VecDeque<Bucket>,
    started: Instant,
    start: Counters,
    start_hold: Counts,
    bucket: Duration,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.len() < MIN_BUCKETS {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

impl History {
    pub(crate) fn new(now: Instant, c: Counters, hold: Counts, bucket: Duration) -> Self {
        Self {
            buckets: VecDeque::with_capacity(BUCKETS + LAG),
            started: now,
            start: c,
            start_hold: hold,
            bucket,
        }
    }

    /// Length of one bucket.
    pub(crate) fn bucket(&self) -> Duration {
        self.bucket
    }

    /// The buckets, oldest first, as a `Learned` history's minutes.
    pub(crate) fn export(&self) -> Vec<LearnedMinute> {
        self.buckets
            .iter()
            .map(|b| LearnedMinute::new(b.rate, b.hold, b.p50, b.p95))
            .collect()
    }

    /// Starts from a learned history (validated by the builder): its
    /// minutes, the newest kept when the `gap` since it was exported and
    /// they would not fit the history's span, the gap's minutes left out.
    pub(crate) fn resume(&mut self, minutes: &[LearnedMinute], gap: Duration) {
        let span = BUCKETS + LAG;
        let gap_buckets = (gap.as_secs_f64() / self.bucket.as_secs_f64().max(1e-9)).floor();
        let keep = span.saturating_sub(gap_buckets.min(span as f64) as usize);
        let from = minutes.len().saturating_sub(keep);
        self.buckets.clear();
        self.buckets.extend(minutes[from..].iter().map(|m| Bucket {
            rate: m.arrival_rate,
            hold: m.mean_hold,
            p50: m.hold_p50,
            p95: m.hold_p95,
        }));
    }

    /// Feeds the cumulative counters (with `in_use_ms`) and the hold
    /// histogram; closes a bucket when one has passed.
    pub(crate) fn observe(&mut self, now: Instant, c: Counters, hold: &Counts) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < self.bucket {
            return;
        }
        let d = c.since(&self.start);
        let ended = hold.since(&self.start_hold);
        let bucket = Bucket {
            rate: d.arrivals_total as f64 / elapsed.as_secs_f64(),
            hold: (d.acquires_total > 0)
                .then(|| d.in_use_ms as f64 / 1e3 / d.acquires_total as f64),
            p50: ended.quantile(0.50),
            p95: ended.quantile(0.95),
        };
        self.start_hold = hold.clone();
        if self.buckets.len() == BUCKETS + LAG {
            self.buckets.pop_front();
        }
        self.buckets.push_back(bucket);
        self.started = now;
        self.start = c;
    }

    /// The arrival rates of the buckets older than the lag, oldest first
    /// (the traffic anomaly's baseline).
    pub(crate) fn baseline_rates(&self) -> impl Iterator<Item = f64> + '_ {
        let n = self.buckets.len().saturating_sub(LAG);
        self.buckets.iter().take(n).map(|b| b.rate)
    }

    /// How many buckets ago the arrival rate and the mean hold each rose
    /// past `factor` times the usual and stayed there (to the newest
    /// bucket); `None`: not risen now. Which rose first is the root cause
    /// when both did: holds that lengthen after the traffic rose are the
    /// database slowing under the load; arrivals that rise after the holds
    /// lengthened are retries.
    pub(crate) fn onsets(&self, usual: &Usual, factor: f64) -> (Option<u32>, Option<u32>) {
        let run = |risen: &dyn Fn(&Bucket) -> bool| {
            let n = self.buckets.iter().rev().take_while(|b| risen(b)).count();
            (n > 0).then_some(n as u32)
        };
        (
            run(&|b| b.rate > usual.rate * factor),
            run(&|b| b.hold.is_some_and(|h| h > usual.hold * factor)),
        )
    }

    /// The usual (arrival rate, mean hold), once enough buckets are older
    /// than the lag.
    pub(crate) fn usual(&self) -> Option<Usual> {
        let n = self.buckets.len().saturating_sub(LAG);
        let old = || self.buckets.iter().take(n);
        let rate = median(old().map(|b| b.rate).collect())?;
        let hold = median(old().filter_map(|b| b.hold).collect())?;
        let secs = |pick: fn(&Bucket) -> Option<Duration>| {
            median(old().filter_map(pick).map(|d| d.as_secs_f64()).collect())
                .map(Duration::from_secs_f64)
        };
        Some(Usual {
            rate,
            hold,
            hold_p50: secs(|b| b.p50),
            hold_p95: secs(|b| b.p95),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hot::histogram::Counts;

    fn minutes(n: usize) -> Vec<LearnedMinute> {
        (0..n)
            .map(|i| LearnedMinute::new(i as f64, Some(0.2), None, None))
            .collect()
    }

    #[test]
    fn a_resumed_history_keeps_the_newest_minutes_that_fit_after_the_gap() {
        let new = || History::new(Instant::now(), Counters::default(), Counts::empty(), BUCKET);
        let mut h = new();
        h.resume(&minutes(70), Duration::from_secs(5 * 60 + 30));
        let kept = h.export();
        assert_eq!(kept.len(), 65, "70 - 5 whole minutes of gap");
        assert_eq!(kept[0].arrival_rate, 5.0, "the oldest dropped");
        assert_eq!(h.baseline_rates().count(), 55, "the newest 10 lag");
        let mut h = new();
        h.resume(&minutes(70), Duration::from_secs(2 * 3600));
        assert!(h.export().is_empty(), "older than the history's span");
        let mut h = new();
        h.resume(&minutes(12), Duration::ZERO);
        assert_eq!(h.export(), minutes(12));
    }
}
