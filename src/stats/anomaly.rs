//! Traffic anomaly: the z-score of the acquire rate over the last minute
//! against the per-minute rates of the last hour (the post-mortem's
//! "traffic > 2 std dev").
//!
//! The baseline is the per-minute history's (`history.rs`): an hour of
//! completed minutes, the 10 newest left out, so a spike does not teach it
//! that it is normal before its 5-minute hold has passed. The number
//! of minutes in the baseline is the signal's sample count, so a rule's
//! `min_samples` is its warm-up (10 minutes of baseline after the 10-minute
//! lag: 20 minutes). The standard deviation is floored at the Poisson noise
//! of the rate, so perfectly steady synthetic traffic does not turn every
//! blip into an anomaly.

use super::history::History;

/// How unusual the current rate is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Anomaly {
    /// The current rate's z-score against the baseline.
    pub(crate) z: f64,
    /// Minutes (buckets) the baseline has learned: the warm-up.
    pub(crate) minutes: u64,
}

/// The z-score of `current_rate` (over the last bucket, when the window
/// covers it) against the history's baseline rates; `None` before two
/// buckets are older than the lag.
pub(crate) fn judge(history: &History, current_rate: Option<f64>) -> Option<Anomaly> {
    let n = history.baseline_rates().count();
    if n < 2 {
        return None;
    }
    let current = current_rate?;
    let nf = n as f64;
    let mean = history.baseline_rates().sum::<f64>() / nf;
    let var = history
        .baseline_rates()
        .map(|r| (r - mean).powi(2))
        .sum::<f64>()
        / (nf - 1.0);
    let b = history.bucket().as_secs_f64();
    let poisson = (mean.max(1.0 / b) / b).sqrt();
    let std = var.sqrt().max(poisson);
    Some(Anomaly {
        z: (current - mean) / std,
        minutes: n as u64,
    })
}

#[cfg(test)]
mod tests;
