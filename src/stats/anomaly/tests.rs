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
    let Anomaly { z, minutes: n } = last.unwrap();
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
