//! Traffic anomaly: the z-score of the acquire rate over the last minute
//! against the per-minute rates of the last hour (the post-mortem's
//! "traffic > 2 std dev").
//!
//! The baseline learns one completed minute at a time and keeps at most an
//! hour (bounded memory), but leaves out the most recent 10 minutes: a spike
//! must not teach the baseline that it is normal before its 5-minute hold
//! has passed (with no lag a 3x spike's z-score falls under 2 within 5
//! minutes). The number of minutes in the baseline is the signal's sample
//! count, so a rule's `min_samples` is its warm-up (10 minutes of baseline
//! after the 10-minute lag: 20 minutes). The standard
//! deviation is floored at the Poisson noise of the rate, so perfectly steady
//! synthetic traffic does not turn every blip into an anomaly.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Default length of one baseline bucket and of the "current" rate (the
/// builder's `time_scale` shortens it).
pub(crate) const BUCKET: Duration = Duration::from_secs(60);
/// Buckets the baseline uses (one hour).
const BUCKETS: usize = 60;
/// Most recent buckets left out of the baseline.
const LAG: usize = 10;

/// How unusual the current rate is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Anomaly {
    /// The current rate's z-score against the baseline.
    pub(crate) z: f64,
    /// Minutes (buckets) the baseline has learned: the warm-up.
    pub(crate) minutes: u64,
}

#[derive(Debug)]
pub(crate) struct Baseline {
    rates: VecDeque<f64>,
    started: Instant,
    start_count: u64,
    bucket: Duration,
}

impl Baseline {
    pub(crate) fn new(now: Instant, count: u64, bucket: Duration) -> Self {
        Self {
            rates: VecDeque::with_capacity(BUCKETS + LAG),
            started: now,
            start_count: count,
            bucket,
        }
    }

    /// Length of one bucket (the span of the "current" rate).
    pub(crate) fn bucket(&self) -> Duration {
        self.bucket
    }

    /// Feeds the cumulative count; `current_rate` is the rate over the last
    /// bucket (when the window covers it).
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        count: u64,
        current_rate: Option<f64>,
    ) -> Option<Anomaly> {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= self.bucket {
            let rate = count.saturating_sub(self.start_count) as f64 / elapsed.as_secs_f64();
            if self.rates.len() == BUCKETS + LAG {
                self.rates.pop_front();
            }
            self.rates.push_back(rate);
            self.started = now;
            self.start_count = count;
        }
        let n = self.rates.len().saturating_sub(LAG);
        if n < 2 {
            return None;
        }
        let current = current_rate?;
        let base = || self.rates.iter().take(n);
        let nf = n as f64;
        let mean = base().sum::<f64>() / nf;
        let var = base().map(|r| (r - mean).powi(2)).sum::<f64>() / (nf - 1.0);
        let b = self.bucket.as_secs_f64();
        let poisson = (mean.max(1.0 / b) / b).sqrt();
        let std = var.sqrt().max(poisson);
        Some(Anomaly {
            z: (current - mean) / std,
            minutes: n as u64,
        })
    }
}

#[cfg(test)]
mod tests;
