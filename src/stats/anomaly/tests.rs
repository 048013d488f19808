use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::hot::accounting::Counters;
use crate::hot::histogram::Counts;
use crate::stats::history::BUCKET;

/// The history fed only arrivals, judged as the monitor does each tick.
struct Baseline(History);

impl Baseline {
    fn new(now: Instant, count: u64, bucket: Duration) -> Self {
        Baseline(History::new(now, arrivals(count), Counts::empty(), bucket))
    }

    fn observe(&mut self, now: Instant, count: u64, rate: Option<f64>) -> Option<Anomaly> {
        self.0.observe(now, arrivals(count), &Counts::empty());
        judge(&self.0, rate)
    }
}

fn arrivals(count: u64) -> Counters {
    Counters {
        arrivals_total: count,
        ..Counters::default()
    }
}

#[test]
fn steady_traffic_scores_near_zero_and_a_3x_spike_scores_high() {
    let t0 = Instant::now();
    let mut b = Baseline::new(t0, 0, BUCKET);
    let mut count = 0u64;
    let mut last = None;
    // 30 minutes at 10/s +- 1/s (alternating), evaluated every second.
    for s in 1..=1800u64 {
        count += if (s / 60) % 2 == 0 { 11 } else { 9 };
        last = b.observe(t0 + Duration::from_secs(s), count, Some(10.0));
    }
    let Anomaly { z, minutes: n, .. } = last.unwrap();
    assert_eq!(n, 20, "30 minutes learned, the last 10 left out");
    assert!(z.abs() < 0.5, "{z}");
    let Anomaly { z, .. } = b
        .observe(t0 + Duration::from_secs(1801), count, Some(30.0))
        .unwrap();
    assert!(z > 10.0, "3x traffic is far past 2 std dev: {z}");
}

#[test]
fn no_score_before_two_minutes_past_the_lag() {
    let t0 = Instant::now();
    let mut b = Baseline::new(t0, 0, BUCKET);
    for m in 1..=11u64 {
        let at = t0 + Duration::from_secs(60 * m);
        assert_eq!(b.observe(at, 600 * m, Some(10.0)), None, "minute {m}");
    }
    let at = t0 + Duration::from_secs(60 * 12);
    assert_eq!(
        b.observe(at, 600 * 12, Some(10.0)).map(|s| s.minutes),
        Some(2)
    );
}

#[test]
fn a_spike_stays_anomalous_for_the_lag() {
    let t0 = Instant::now();
    let mut b = Baseline::new(t0, 0, BUCKET);
    let mut count = 0;
    for m in 1..=30u64 {
        count += if m % 2 == 0 { 660 } else { 540 };
        b.observe(t0 + Duration::from_secs(60 * m), count, Some(10.0));
    }
    for m in 31..=40u64 {
        count += 1800;
        let Anomaly { z, .. } = b
            .observe(t0 + Duration::from_secs(60 * m), count, Some(30.0))
            .unwrap();
        assert!(z > 2.0, "minute {m} of the spike: z = {z}");
    }
}

/// Per-minute counts of a rate that follows `rate(minute)`, fed minute by
/// minute; returns each minute's anomaly (the current rate = that minute's).
fn run(minutes: u64, rate: impl Fn(f64) -> f64) -> Vec<Option<Anomaly>> {
    let t0 = Instant::now();
    let mut b = Baseline::new(t0, 0, BUCKET);
    let mut count = 0u64;
    (1..=minutes)
        .map(|m| {
            let r = rate(m as f64);
            count += (r * 60.0).round() as u64;
            b.observe(t0 + Duration::from_secs(60 * m), count, Some(r))
        })
        .collect()
}

#[test]
fn a_morning_ramp_is_expected_and_a_campaign_is_not() {
    // An hour flat at 20/s, then a three-hour smooth ramp to 100/s (five-fold,
    // a morning), at a rate whose Poisson noise is tiny against it.
    let ease = |x: f64| 0.5 - 0.5 * (std::f64::consts::PI * x.clamp(0.0, 1.0)).cos();
    let morning = |m: f64| 20.0 + 80.0 * ease((m - 60.0) / 180.0);
    let z: Vec<f64> = run(300, morning)
        .into_iter()
        .flatten()
        .map(|a| a.z)
        .collect();
    let worst = z.iter().copied().fold(f64::MIN, f64::max);
    assert!(worst < 2.0, "the ramp scored {worst}");
    // Lunch: +30 % over 45 minutes and back.
    let lunch = |m: f64| 100.0 * (1.0 + 0.3 * (ease((m - 60.0) / 45.0) - ease((m - 105.0) / 45.0)));
    let worst = run(200, lunch)
        .into_iter()
        .flatten()
        .map(|a| a.z)
        .fold(f64::MIN, f64::max);
    assert!(worst < 2.0, "lunch scored {worst}");
    // INC-EX3's campaign from a flat 85/s: 3x in 23 minutes.
    let campaign = |m: f64| 85.0 * (1.0 + 2.0 * ((m - 60.0) / 23.0).clamp(0.0, 1.0));
    let a = run(70, campaign);
    let first = a
        .iter()
        .position(|a| a.is_some_and(|a| a.z > 2.0))
        .expect("the campaign is a surprise");
    assert!(first <= 63, "minute {first}: within 3 minutes of the onset");
    let last = a[63].unwrap();
    assert!(last.observed > last.expected * 1.2, "{last:?}");
}

#[test]
fn an_evening_decline_does_not_make_the_night_a_surprise() {
    // 100/s falling to 20/s over two hours, then flat: a falling trend is
    // held, not carried into the night.
    let evening = |m: f64| 20.0 + 80.0 * (1.0 - ((m - 60.0) / 120.0).clamp(0.0, 1.0));
    let worst = run(300, evening)
        .into_iter()
        .flatten()
        .map(|a| a.z)
        .fold(f64::MIN, f64::max);
    assert!(worst < 2.0, "the night scored {worst}");
}
