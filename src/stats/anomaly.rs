//! Traffic anomaly: how far the arrival rate over the last minute is above
//! what the last hour predicts, in standard deviations (the post-mortem's
//! "traffic > 2 std dev", applied to the surprise, not to the level).
//!
//! The baseline is the per-minute history's (`history.rs`): an hour of
//! completed minutes, the 10 newest left out, so a spike does not teach it
//! that it is normal before its 5-minute hold has passed. The number
//! of minutes in the baseline is the signal's sample count, so a rule's
//! `min_samples` is its warm-up (10 minutes of baseline after the 10-minute
//! lag: 20 minutes).
//!
//! The prediction is the level of the baseline's newest [`RECENT`]
//! minutes, carried forward to now by their trend (the change from the
//! [`RECENT`] minutes before them) when it rises: a morning ramp that grows
//! traffic five-fold over hours is expected to keep growing. A falling
//! trend is not carried (an evening decline is not expected to continue
//! into the night, which would make the night's flat traffic a surprise).
//! The spread is the larger of the minute-to-minute noise (the scatter of
//! the minutes' differences, which a smooth trend does not inflate), the
//! Poisson noise of the rate (perfectly steady synthetic traffic does not
//! turn every blip into an anomaly), and a tenth of the prediction
//! ([`ORDINARY`]: a few percent off a forecast is ordinary at any traffic
//! level). INC-EX3's campaign (3x in 23 minutes) passes 2 spreads about 3
//! minutes after its onset; a five-fold morning ramp over three hours, a
//! +30 % lunch and an evening decline stay under one (unit tests).

use super::history::{History, LAG};

/// Baseline minutes whose mean is the level the prediction starts from
/// (and, before them, as many again for the trend).
pub(crate) const RECENT: usize = 10;

/// The share of the predicted rate that is ordinary forecast error: the
/// spread's floor (a z of 2 needs 20 % more traffic than predicted).
pub(crate) const ORDINARY: f64 = 0.1;

/// How unusual the current rate is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Anomaly {
    /// The current rate's surprise in spreads: (observed - expected) /
    /// spread.
    pub(crate) z: f64,
    /// Minutes (buckets) the baseline has learned: the warm-up.
    pub(crate) minutes: u64,
    /// The rate the baseline predicted for now, per second.
    pub(crate) expected: f64,
    /// The rate over the last bucket, per second.
    pub(crate) observed: f64,
}

/// The surprise of `current_rate` (over the last bucket, when the window
/// covers it) against the history's baseline rates; `None` before two
/// buckets are older than the lag.
pub(crate) fn judge(history: &History, current_rate: Option<f64>) -> Option<Anomaly> {
    let rates: Vec<f64> = history.baseline_rates().collect();
    let n = rates.len();
    if n < 2 {
        return None;
    }
    let current = current_rate?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let k = RECENT.min(n);
    let level = mean(&rates[n - k..]);
    // Per minute, from the k minutes before the newest k.
    let trend = (n >= 2 * k).then(|| (level - mean(&rates[n - 2 * k..n - k])) / k as f64);
    // From the middle of the newest k minutes to now (the lag between).
    let ahead = k as f64 / 2.0 + LAG as f64;
    let expected = (level + trend.unwrap_or(0.0).max(0.0) * ahead).max(0.0);
    let diffs: Vec<f64> = rates.windows(2).map(|w| w[1] - w[0]).collect();
    let noise = if diffs.len() >= 2 {
        let m = mean(&diffs);
        let var = diffs.iter().map(|d| (d - m).powi(2)).sum::<f64>() / (diffs.len() - 1) as f64;
        // A difference of two minutes carries twice one minute's variance.
        (var / 2.0).sqrt()
    } else {
        0.0
    };
    let b = history.bucket().as_secs_f64();
    let poisson = (expected.max(1.0 / b) / b).sqrt();
    let spread = noise.max(poisson).max(ORDINARY * expected);
    Some(Anomaly {
        z: (current - expected) / spread,
        minutes: n as u64,
        expected,
        observed: current,
    })
}

#[cfg(test)]
mod tests;
