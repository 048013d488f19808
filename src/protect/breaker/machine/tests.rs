use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config() -> BreakerConfig {
    BreakerConfig {
        minimum_calls: 4,
        jitter: 0.0,
        base_wait: ms(1000),
        max_wait: ms(8000),
        half_open_calls: 2,
        ..BreakerConfig::default()
    }
}

#[test]
fn opens_at_the_failure_rate_once_enough_calls_are_seen() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(), t0, 1);
    for i in 0..3 {
        assert_eq!(
            b.on_result(t0, None, Outcome::Failure, ms(1)),
            None,
            "call {i}"
        );
    }
    let c = b.on_result(t0, None, Outcome::Success, ms(1)).unwrap();
    assert_eq!((c.from, c.to), (BreakerState::Closed, BreakerState::Open));
    assert_eq!(c.failure_rate, 0.75);
    assert_eq!(c.retry_in, Some(ms(1000)));
    let (p, _) = b.try_acquire_permission(t0 + ms(400));
    assert_eq!(
        p,
        Permit::Rejected {
            retry_in: Some(ms(600))
        }
    );
}

#[test]
fn slow_calls_open_it_too() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(), t0, 1);
    for _ in 0..3 {
        b.on_result(t0, None, Outcome::Success, Duration::from_secs(3));
    }
    let c = b
        .on_result(t0, None, Outcome::Success, Duration::from_secs(3))
        .unwrap();
    assert_eq!(c.to, BreakerState::Open);
    assert_eq!(c.slow_call_rate, 1.0);
}

#[test]
fn half_open_trials_decide_and_backoff_grows_then_resets() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(), t0, 1);
    for _ in 0..4 {
        b.on_result(t0, None, Outcome::Failure, ms(1));
    }
    assert_eq!(b.state(), BreakerState::Open);
    let (p, c) = b.try_acquire_permission(t0 + ms(1000));
    assert_eq!(
        p,
        Permit::Granted {
            trial: Some(b.episode)
        }
    );
    assert_eq!(c.unwrap().to, BreakerState::HalfOpen);
    assert_eq!(
        b.try_acquire_permission(t0 + ms(1000)).0,
        Permit::Granted {
            trial: Some(b.episode)
        }
    );
    assert!(matches!(
        b.try_acquire_permission(t0 + ms(1000)).0,
        Permit::Rejected { .. }
    ));
    b.on_result(t0 + ms(1001), Some(b.episode), Outcome::Failure, ms(1));
    let c = b
        .on_result(t0 + ms(1001), Some(b.episode), Outcome::Success, ms(1))
        .unwrap();
    assert_eq!((c.from, c.to), (BreakerState::HalfOpen, BreakerState::Open));
    assert_eq!(
        c.retry_in,
        Some(ms(2000)),
        "second opening waits twice as long"
    );
    let (_, c) = b.try_acquire_permission(t0 + ms(3001));
    assert_eq!(c.unwrap().to, BreakerState::HalfOpen);
    b.try_acquire_permission(t0 + ms(3001));
    b.try_acquire_permission(t0 + ms(3001));
    b.on_result(t0 + ms(3002), Some(b.episode), Outcome::Success, ms(1));
    let c = b
        .on_result(t0 + ms(3002), Some(b.episode), Outcome::Success, ms(1))
        .unwrap();
    assert_eq!(c.to, BreakerState::Closed);
    // Backoff reset: the next opening waits the base again.
    for _ in 0..4 {
        b.on_result(t0 + ms(4000), None, Outcome::Failure, ms(1));
    }
    assert_eq!(b.state(), BreakerState::Open);
    let (p, _) = b.try_acquire_permission(t0 + ms(4000));
    assert_eq!(
        p,
        Permit::Rejected {
            retry_in: Some(ms(1000))
        }
    );
}

#[test]
fn cancelled_trials_give_their_permit_back() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(), t0, 1);
    b.transition(BreakerState::Open, t0);
    b.try_acquire_permission(t0 + ms(1000));
    b.try_acquire_permission(t0 + ms(1000));
    assert!(matches!(
        b.try_acquire_permission(t0 + ms(1000)).0,
        Permit::Rejected { .. }
    ));
    b.on_result(t0 + ms(1000), Some(b.episode), Outcome::Ignored, ms(1));
    assert_eq!(
        b.try_acquire_permission(t0 + ms(1000)).0,
        Permit::Granted {
            trial: Some(b.episode)
        }
    );
}

#[test]
fn old_buckets_are_evicted() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(), t0, 1);
    for _ in 0..3 {
        b.on_result(t0, None, Outcome::Failure, ms(1));
    }
    // 11 s later the three failures are out of the 10 s window.
    let later = t0 + Duration::from_secs(11);
    assert_eq!(b.tally(later), Tally::default());
    assert_eq!(b.on_result(later, None, Outcome::Failure, ms(1)), None);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn metrics_only_never_rejects_but_reports_in_the_shadow() {
    let t0 = Instant::now();
    let mut b = Breaker::new(
        BreakerConfig {
            metrics_only: true,
            ..config()
        },
        t0,
        1,
    );
    for _ in 0..3 {
        b.on_result(t0, None, Outcome::Failure, ms(1));
    }
    let c = b.on_result(t0, None, Outcome::Failure, ms(1)).unwrap();
    assert!(c.shadow);
    assert_eq!(c.to, BreakerState::Open);
    assert_eq!(
        b.try_acquire_permission(t0).0,
        Permit::Granted { trial: None }
    );
}

#[test]
fn forced_open_and_disabled() {
    let t0 = Instant::now();
    let mut b = Breaker::new(config(), t0, 1);
    b.transition(BreakerState::ForcedOpen, t0);
    assert_eq!(
        b.try_acquire_permission(t0 + ms(100_000)).0,
        Permit::Rejected { retry_in: None }
    );
    b.transition(BreakerState::Disabled, t0);
    for _ in 0..10 {
        assert_eq!(b.on_result(t0, None, Outcome::Failure, ms(1)), None);
    }
    assert_eq!(
        b.try_acquire_permission(t0).0,
        Permit::Granted { trial: None }
    );
    assert_eq!(b.reset(t0).unwrap().to, BreakerState::Closed);
}

#[test]
fn jitter_stays_within_its_band() {
    let t0 = Instant::now();
    let mut b = Breaker::new(
        BreakerConfig {
            jitter: 0.2,
            ..config()
        },
        t0,
        42,
    );
    b.openings = 1;
    let waits: Vec<f64> = (0..1000).map(|_| b.wait().as_secs_f64()).collect();
    assert!(waits.iter().all(|w| (0.8..=1.2).contains(w)));
    let spread = waits.iter().cloned().fold(f64::MIN, f64::max)
        - waits.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.3, "jitter spreads the waits: {spread}");
}
