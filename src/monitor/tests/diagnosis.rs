//! The diagnosis on saturation events (issue 15.1), on the paused clock
//! with synthetic load: 15 minutes of the usual traffic (85 acquires a
//! second held 0.2 s: 17 of 50), then one cause fills the pool to 90 %.

use std::collections::VecDeque;

use super::*;
use crate::diagnose::{Action, Cause};

/// Holds in flight: when each is due back.
struct Load {
    holds: VecDeque<(Instant, HoldTicket)>,
    leaked: Vec<HoldTicket>,
    carry: f64,
    leak_site: Option<&'static Location<'static>>,
}

impl Load {
    fn new() -> Self {
        Self {
            holds: VecDeque::new(),
            leaked: Vec::new(),
            carry: 0.0,
            leak_site: None,
        }
    }

    /// Runs `secs` of `rate` acquires a second held `hold` each, and
    /// `leaks` connections a minute never returned, in 100 ms steps.
    async fn run(&mut self, h: &mut Harness, secs: u64, rate: f64, hold: f64, leaks: f64) {
        let step = Duration::from_millis(100);
        for i in 0..secs * 10 {
            let now = Instant::now();
            while self.holds.front().is_some_and(|(due, _)| *due <= now) {
                self.holds.pop_front();
            }
            self.carry += rate * 0.1;
            while self.carry >= 1.0 {
                self.carry -= 1.0;
                let t = h.acct().start_wait(Location::caller()).acquired();
                self.holds
                    .push_back((now + Duration::from_secs_f64(hold), t));
            }
            if leaks > 0.0 && i % ((600.0 / leaks) as u64) == 0 {
                let site = Location::caller();
                self.leak_site = Some(site);
                self.leaked.push(h.acct().start_wait(site).acquired());
            }
            tokio::time::advance(step).await;
            if i % 10 == 9 {
                settle().await;
            }
        }
        h.drain();
    }
}

async fn diagnosed(
    rate: f64,
    hold: f64,
    leaks: f64,
) -> (
    crate::diagnose::Diagnosis,
    Option<&'static Location<'static>>,
) {
    let mut h = harness(50, all_default_rules());
    let mut load = Load::new();
    load.run(&mut h, 15 * 60, 85.0, 0.2, 0.0).await;
    assert!(h.levels.is_empty(), "the usual load is quiet");
    assert!(h.monitor.snapshot().diagnosis.is_none(), "no pressure");
    load.run(&mut h, 10 * 60, rate, hold, leaks).await;
    let warned = h
        .levels
        .iter()
        .find(|e| e.level != Level::Normal)
        .expect("a pool rule fired");
    let d = warned
        .snapshot
        .diagnosis
        .clone()
        .expect("a saturation event carries its diagnosis");
    (d, load.leak_site)
}

#[tokio::test(start_paused = true)]
async fn more_arrivals_at_the_usual_hold() {
    let (d, _) = diagnosed(225.0, 0.2, 0.0).await;
    assert_eq!(d.cause, Cause::MoreArrivals, "{d}");
    let Action::Grow(hint) = d.action else {
        panic!("{d}")
    };
    // 225/s x 0.2 s = 45 connections at 60 %: 75.
    assert!((74..=76).contains(&hint.recommended_max), "{hint:?}");
    let base = d.evidence.baseline_arrival_rate.unwrap();
    assert!((base - 85.0).abs() < 2.0, "{d:?}");
}

#[tokio::test(start_paused = true)]
async fn the_usual_arrivals_holding_longer() {
    // 85/s held 0.5 s: 42.5 of 50.
    let (d, _) = diagnosed(85.0, 0.5, 0.0).await;
    assert_eq!(d.cause, Cause::LongerHolds, "{d}");
    let Action::FindSlowHolds {
        hold_ratio, top, ..
    } = d.action
    else {
        panic!("{d}")
    };
    assert!((2.3..2.8).contains(&hold_ratio), "{hold_ratio}");
    // The hold percentiles now and as usual (each bucket's, median).
    let ms = |d: Option<Duration>| d.unwrap().as_secs_f64() * 1e3;
    let (p95, usual) = (ms(d.evidence.hold_p95), ms(d.evidence.baseline_hold_p95));
    assert!(
        (480.0..530.0).contains(&p95) && (190.0..215.0).contains(&usual),
        "{d:?}"
    );
    // One call site does all the holding.
    let top = top.expect("the top holder");
    assert!(
        top.site.is_some() && (top.share - 1.0).abs() < 1e-9,
        "{top:?}"
    );
    assert!(d.to_string().contains("holds 100 % of pool time"), "{d}");
}

#[tokio::test(start_paused = true)]
async fn connections_that_never_come_back() {
    // 6 a minute never returned: over 40 of 50 after 4 minutes.
    let (d, leak_site) = diagnosed(85.0, 0.2, 6.0).await;
    assert_eq!(d.cause, Cause::Leak, "{d}");
    assert!(d.evidence.not_returned > 15.0, "{d:?}");
    // Without leak detection, the call site whose connections stay out.
    assert_eq!(d.action, Action::FixLeak { at: leak_site }, "{d}");
}

/// Pool time per acquiring call site: one site holds its connections four
/// times as long as the other at the same rate, so 80 % of the pool time.
#[tokio::test(start_paused = true)]
async fn pool_time_is_attributed_to_the_acquiring_call_site() {
    let h = harness(50, all_default_rules());
    let (short, long) = (Location::caller(), {
        #[track_caller]
        fn other() -> &'static Location<'static> {
            Location::caller()
        }
        other()
    });
    let mut holds: VecDeque<(Instant, HoldTicket)> = VecDeque::new();
    for _ in 0..1200 {
        let now = Instant::now();
        while holds.front().is_some_and(|(due, _)| *due <= now) {
            holds.pop_front();
        }
        let a = h.acct().start_wait(short).acquired();
        holds.push_back((now + Duration::from_millis(100), a));
        let b = h.acct().start_wait(long).acquired();
        holds.push_back((now + Duration::from_millis(400), b));
        let mut sorted: Vec<_> = holds.drain(..).collect();
        sorted.sort_by_key(|(due, _)| *due);
        holds.extend(sorted);
        tokio::time::advance(Duration::from_millis(100)).await;
        settle().await;
    }
    let s = h.monitor.snapshot();
    let [first, second] = &s.holders[..] else {
        panic!("{:?}", s.holders)
    };
    assert_eq!((first.site, second.site), (Some(long), Some(short)));
    assert!((first.share - 0.8).abs() < 0.02, "{first:?}");
    assert!((first.connections - 4.0).abs() < 0.1, "{first:?}");
    assert!((first.rate - 10.0).abs() < 0.2, "{first:?}");
    let hold = first.mean_hold.unwrap().as_secs_f64();
    assert!((hold - 0.4).abs() < 0.02, "{hold}");
}
