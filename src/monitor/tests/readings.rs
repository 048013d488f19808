//! False readings (issue 15.5): the tick's utilization is exact between
//! evaluations, a pool with waiters reads full, and a long hold that
//! returns does not inflate Little's law.

use super::*;

/// Demand over the last whole tick, in connections.
fn tick_demand(h: &Harness) -> f64 {
    h.monitor.state.lock().tick_demand.expect("a tick ended")
}

#[tokio::test(start_paused = true)]
async fn tick_utilization_is_time_weighted_between_evaluations() {
    let mut h = harness(50, all_default_rules());
    h.hold(20);
    h.advance(secs(1)).await;
    assert!((tick_demand(&h) - 20.0).abs() < 1e-9);
    // Eight switches between 20 and 21 inside one tick, none of them at an
    // edge the monitor wakes on: half the tick at 21.
    for _ in 0..8 {
        h.hold(21);
        tokio::time::advance(Duration::from_micros(62_500)).await;
        h.hold(20);
        tokio::time::advance(Duration::from_micros(62_500)).await;
    }
    settle().await;
    let d = tick_demand(&h);
    assert!((d - 20.5).abs() < 0.01, "tick average {d}, not 20.5");
}

#[tokio::test(start_paused = true)]
async fn a_pool_with_waiters_is_full_even_when_sqlx_holds_slots_back() {
    // 44 of 50 through the guard (88 %); the other 6 are being pinged or
    // opened by sqlx, and 100 acquires wait: nobody can get a connection,
    // so the pool is full and the critical rule fires after its 2 minutes.
    let mut h = harness(50, all_default_rules());
    h.hold(44);
    let _waiting: Vec<_> = (0..100)
        .map(|_| h.acct().start_wait(Location::caller()))
        .collect();
    h.advance(secs(121)).await;
    assert_eq!(h.monitor.level(), Level::Critical);
    let e = h.levels.last().expect("a level change");
    assert_eq!(e.level, Level::Critical);
    assert!((e.snapshot.utilization - 1.0).abs() < 1e-9);
}

/// Flat noisy load, 30 +- 3 of 50, with one connection held 20 minutes:
/// when it returns, Little's law must not read the pool as needing 60
/// connections and the forecast must not say "exhausted now".
#[tokio::test(start_paused = true)]
async fn a_long_hold_returning_leaves_the_forecast_alone() {
    let rule = all_default_rules()
        .into_iter()
        .find(|r| &*r.name == FORECAST_RULE)
        .unwrap();
    let mut h = harness(50, all_default_rules());
    let mut fifo = std::collections::VecDeque::new();
    let mut long = None;
    let step = Duration::from_millis(100);
    let mut worst_load: f64 = 0.0;
    for i in 0..(35 * 600u32) {
        if i == 2 * 600 {
            long = Some(h.acct().start_wait(Location::caller()).acquired());
        }
        if i == 22 * 600 {
            long = None;
        }
        // 60 arrivals a second, each held 0.5 s (5 steps), the count
        // wandering 27..33 around 30.
        let target = 30 + [0, 3, 1, 0, 2, 3, 0, 1][(i / 10 % 8) as usize] - 2;
        while fifo.len() > target - 6 {
            fifo.pop_front();
        }
        while fifo.len() < target {
            fifo.push_back(h.acct().start_wait(Location::caller()).acquired());
        }
        tokio::time::advance(step).await;
        if i % 10 == 9 {
            settle().await;
            let f = h.monitor.forecast();
            assert_ne!(f.eta, Some(Duration::ZERO), "t={}: {f:?}", i / 10);
            if i > 7 * 600 {
                worst_load = worst_load.max(f.offered_load.unwrap_or(0.0));
            }
        }
    }
    drop(long);
    h.drain();
    assert!(worst_load < 40.0, "offered load read {worst_load:.1}");
    assert!(
        h.transitions(&rule).is_empty(),
        "{:?}",
        h.transitions(&rule)
    );
}

/// Ramps stay as accurate as they were: 17 -> 50 connections over 35 and
/// over 60 minutes, the ETA within 5 % of the truth once the 5-minute
/// window holds only the ramp, and the forecast rule firing about 14
/// minutes before 100 %.
#[tokio::test(start_paused = true)]
async fn ramps_are_forecast_within_five_percent() {
    for minutes in [35.0, 60.0] {
        let rule = all_default_rules()
            .into_iter()
            .find(|r| &*r.name == FORECAST_RULE)
            .unwrap();
        let mut h = harness(50, all_default_rules());
        // Ten minutes flat (the forecast's warm-up), then the ramp.
        for _ in 0..600 {
            h.hold(17);
            h.advance(secs(1)).await;
        }
        let total = (minutes * 60.0) as u64;
        let (mut checked, mut fired_at) = (0, None);
        for s in 0..total {
            // The exact count, held as a whole number for part of each
            // second and one more for the rest (the tick's exact area
            // averages it).
            let exact = 17.0 + 33.0 * s as f64 / total as f64;
            let (whole, part) = (exact.floor(), exact - exact.floor());
            let more = Duration::from_secs_f64(part);
            h.hold(whole as usize);
            tokio::time::advance(secs(1) - more).await;
            settle().await;
            h.hold(whole as usize + 1);
            tokio::time::advance(more).await;
            settle().await;
            h.drain();
            let truth = (total - s) as f64;
            if fired_at.is_none() && h.state(&rule) == AlertState::Firing {
                fired_at = Some(truth);
            }
            // Once the 5-minute window holds only the ramp.
            if s >= 360 && s % 30 == 0 && truth >= 300.0 {
                if let Some(eta) = h.monitor.forecast().eta {
                    let eta = eta.as_secs_f64();
                    assert!(
                        (eta - truth).abs() <= 0.05 * truth,
                        "{minutes}-min ramp, t={s}: eta {eta:.0} s, truth {truth:.0} s"
                    );
                    checked += 1;
                }
            }
        }
        assert!(
            checked >= 20,
            "{minutes}-min ramp: {checked} forecasts checked"
        );
        let fired = fired_at.expect("the forecast rule fires") / 60.0;
        assert!(
            (13.0..=15.0).contains(&fired),
            "{minutes}-min ramp: fired {fired:.1} min before 100 %"
        );
    }
}
