use std::sync::Arc;

use super::*;
use crate::hot::clock::Clock;
use crate::protect::classify::classify;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Window 10 s in 10 buckets, 4 calls at least, open at 50 % failures.
fn cell() -> BreakerCell {
    let config = BreakerConfig {
        minimum_calls: 4,
        jitter: 0.0,
        ..BreakerConfig::default()
    };
    BreakerCell::new(config, Arc::new(classify), Clock::start())
}

/// Records `n` failures from `at`, 1 ms apart; the failure that opened the
/// breaker (1-based), if one did.
fn fail_until_open(c: &BreakerCell, at: Instant, n: u32) -> Option<u32> {
    (1..=n).find(|&i| {
        c.record(at + ms(u64::from(i)), None, Outcome::Failure, ms(1))
            .is_some_and(|ch| ch.to == BreakerState::Open)
    })
}

#[test]
fn fast_successes_count_in_the_failure_rate() {
    let c = cell();
    let t0 = Instant::now();
    for i in 0..6 {
        assert_eq!(c.record(t0 + ms(i), None, Outcome::Success, ms(1)), None);
    }
    assert!(
        c.clean.load(Relaxed),
        "six successes leave the window clean"
    );
    // 6 successes: the 6th failure makes 6 / 12 = 50 %; without them the
    // 4th would (4 of 4).
    assert_eq!(fail_until_open(&c, t0 + ms(10), 10), Some(6));
}

#[test]
fn fast_successes_that_left_the_window_do_not_count() {
    let c = cell();
    let t0 = Instant::now();
    for i in 0..6 {
        c.record(t0 + ms(i), None, Outcome::Success, ms(1));
    }
    // Eleven seconds later every bucket has turned over.
    assert_eq!(fail_until_open(&c, t0 + ms(11_000), 10), Some(4));
}

#[test]
fn a_failure_in_the_window_sends_successes_through_the_lock() {
    let c = cell();
    let t0 = Instant::now();
    c.record(t0, None, Outcome::Failure, ms(1));
    assert!(!c.clean.load(Relaxed));
    for i in 1..=5 {
        c.record(t0 + ms(i), None, Outcome::Success, ms(1));
    }
    assert_eq!(c.tally().calls, 6);
    assert_eq!(c.tally().failures, 1);
    // A slow success is never fast either.
    let slow = BreakerConfig::default().slow_call_duration;
    let c = cell();
    c.record(t0, None, Outcome::Success, slow);
    assert!(!c.clean.load(Relaxed), "a slow call is in the window");
}

#[test]
fn concurrent_fast_successes_are_all_counted() {
    let c = Arc::new(cell());
    let t0 = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                for i in 0..1000 {
                    c.record(t0 + ms(i % 50), None, Outcome::Success, ms(1));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(c.tally().calls, 4000);
}
