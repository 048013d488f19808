//! Each default rule on the paused clock: when it fires, when it does not,
//! its hysteresis and keep-firing time.

use super::*;

#[tokio::test(start_paused = true)]
async fn every_default_rule_fires_exactly_when_its_hold_passes() {
    for rule in all_default_rules() {
        let mut h = harness(50, all_default_rules());
        let mut t = 0;
        for _ in 0..warm_up(&rule) {
            second(&mut h, &rule, Drive::Low, t).await;
            t += 1;
        }
        assert_eq!(h.state(&rule), AlertState::Inactive, "{}", rule.key());
        let start = h.elapsed();
        let limit = rule.hold + secs(20 * 60);
        let mut pending_at = None;
        while h.state(&rule) != AlertState::Firing {
            assert!(h.elapsed() - start < limit, "{} never fired", rule.key());
            second(&mut h, &rule, Drive::High, t).await;
            t += 1;
            if pending_at.is_none() && h.state(&rule) == AlertState::Pending {
                pending_at = Some(h.elapsed());
            }
        }
        // The condition is met within seconds of the input (the forecast
        // first needs half its window of history; the anomaly a few seconds
        // of the spike in its one-minute rate; the timeout counts six).
        let reacts_within = match rule.signal {
            Signal::ExhaustionEta => secs(20 * 60),
            _ => secs(12),
        };
        let condition_at = pending_at.unwrap_or(h.elapsed());
        assert!(
            condition_at - start <= reacts_within,
            "{}: condition met {:?} after the input started",
            rule.key(),
            condition_at - start
        );
        let tr = h.transitions(&rule);
        let fired = tr.last().unwrap();
        assert_eq!(fired.state, AlertState::Firing, "{}", rule.key());
        if rule.hold.is_zero() {
            assert_eq!(fired.previous, AlertState::Inactive, "{}", rule.key());
        } else {
            assert_eq!(fired.previous, AlertState::Pending, "{}", rule.key());
            assert_eq!(
                fired.time_in_previous,
                rule.hold,
                "{} fired after {:?} pending",
                rule.key(),
                fired.time_in_previous
            );
        }
        assert_eq!(fired.threshold, rule.threshold);
        let v = fired.value.expect("a firing rule has a value");
        assert!(rule.met(v), "{}: {v}", rule.key());
        if rule.signal == Signal::ExhaustionEta {
            let f = fired.forecast.expect("forecast on the event");
            assert_eq!(f.eta.map(|d| d.as_secs_f64()), Some(v));
        }
        if rule.signal == Signal::TrafficAnomaly {
            // 10 a second expected, 30 came (the last minute, all spike).
            let t = fired.traffic.expect("expected and observed on the event");
            assert!((t.expected - 10.0).abs() < 1.0, "{t}");
            assert!((t.observed - 30.0).abs() < 1e-9, "{t}");
        } else {
            assert_eq!(fired.traffic, None, "{}", rule.key());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn ratio_and_percentile_rules_do_not_fire_below_their_minimum_samples() {
    let with_minimum = all_default_rules()
        .into_iter()
        .filter(|r| r.min_samples > 0 && r.signal != Signal::TrafficAnomaly);
    let mut n = 0;
    for rule in with_minimum {
        n += 1;
        let status = |h: &Harness| {
            h.monitor
                .alerts()
                .into_iter()
                .find(|a| a.rule == rule.name && a.severity == rule.severity)
                .unwrap()
        };
        let mut h = harness(50, all_default_rules());
        for t in 0..(rule.hold + secs(300)).as_secs() {
            second(&mut h, &rule, Drive::Sparse, t).await;
        }
        assert_eq!(h.state(&rule), AlertState::Inactive, "{}", rule.key());
        assert!(h.transitions(&rule).is_empty(), "{}", rule.key());
        assert_eq!(
            status(&h).value,
            None,
            "{}: too few samples, no value",
            rule.key()
        );
        // The same signal with just enough samples fires.
        let mut h = harness(50, all_default_rules());
        let mut t = 0;
        while h.state(&rule) != AlertState::Firing {
            assert!(
                t < (rule.hold + secs(300)).as_secs(),
                "{} never fired",
                rule.key()
            );
            second(&mut h, &rule, Drive::Enough, t).await;
            t += 1;
        }
        assert!(
            status(&h).value.is_some_and(|v| rule.met(v)),
            "{}",
            rule.key()
        );
    }
    assert_eq!(n, 8, "error rates, request error rates, two P95 pairs");
}

#[tokio::test(start_paused = true)]
async fn traffic_anomaly_waits_for_its_warm_up() {
    let rule = all_default_rules()
        .into_iter()
        .find(|r| r.signal == Signal::TrafficAnomaly)
        .unwrap();
    let value = |h: &Harness| {
        h.monitor
            .alerts()
            .into_iter()
            .find(|a| a.rule == rule.name)
            .unwrap()
            .value
    };
    let mut h = harness(50, all_default_rules());
    // The baseline leaves out the latest 10 minutes and needs 10 more: no
    // value before minute 20 of steady traffic, a calm one after.
    let mut t = 0;
    while t < 21 * 60 {
        second(&mut h, &rule, Drive::Low, t).await;
        if t < 20 * 60 - 1 {
            assert_eq!(value(&h), None, "no z-score during warm-up, t={t}");
        }
        t += 1;
    }
    assert!(value(&h).is_some_and(|z| z.abs() < 2.0), "{:?}", value(&h));
    assert!(h.transitions(&rule).is_empty());
    // 3x traffic: pending within seconds, firing exactly 5 minutes later.
    let spike = t;
    while h.state(&rule) != AlertState::Pending {
        second(&mut h, &rule, Drive::High, t).await;
        t += 1;
        assert!(t - spike <= 12, "pending within seconds of the spike");
    }
    let pending_at = h.elapsed();
    while h.state(&rule) != AlertState::Firing {
        second(&mut h, &rule, Drive::High, t).await;
        t += 1;
        assert!(t - spike <= 12 + 300, "{:?}", h.state(&rule));
    }
    assert_eq!(
        h.elapsed() - pending_at,
        rule.hold,
        "fires exactly after the hold"
    );
}

#[tokio::test(start_paused = true)]
async fn flapping_within_keep_firing_does_not_resolve_pool_and_scale_rules() {
    for rule in all_default_rules()
        .into_iter()
        .filter(|r| r.signal == Signal::Utilization)
    {
        let mut h = harness(50, all_default_rules());
        let mut t = 0;
        while h.state(&rule) != AlertState::Firing {
            second(&mut h, &rule, Drive::High, t).await;
            t += 1;
        }
        // 30 s recovered, 10 s past the threshold, for 10 minutes.
        for k in 0..(10 * 60) {
            let drive = if k % 40 < 30 { Drive::Low } else { Drive::High };
            second(&mut h, &rule, drive, t).await;
            t += 1;
            assert_eq!(
                h.state(&rule),
                AlertState::Firing,
                "{} at +{k} s",
                rule.key()
            );
        }
        // The last high second just ended; stay low.
        let last_high = h.elapsed();
        while h.state(&rule) == AlertState::Firing {
            second(&mut h, &rule, Drive::Low, t).await;
            t += 1;
            assert!(
                h.elapsed() - last_high <= secs(61),
                "{} did not resolve",
                rule.key()
            );
        }
        let resolved = h.transitions(&rule).last().cloned().unwrap();
        assert_eq!(resolved.state, AlertState::Resolved);
        assert_eq!(
            h.elapsed() - last_high,
            rule.keep_firing_for.max(rule.recover_for),
            "{} resolves exactly when the keep-firing time has passed",
            rule.key()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn pool_warning_hysteresis_holds_between_the_lines() {
    let rules = all_default_rules();
    let warn = rules[0].clone();
    assert_eq!((warn.threshold, warn.recover_at), (0.80, 0.75));
    let mut h = harness(50, rules);
    h.hold(41); // 82 %
    h.advance(secs(300)).await;
    assert_eq!(h.state(&warn), AlertState::Firing);
    assert_eq!(h.monitor.level(), Level::Warning);
    // 78 %: below the threshold, above the recovery line, for 10 minutes.
    h.hold(39);
    h.advance(secs(600)).await;
    assert_eq!(h.state(&warn), AlertState::Firing);
    // 74 %: recovered after exactly one minute.
    h.hold(37);
    h.advance(secs(60) - Duration::from_millis(100)).await;
    assert_eq!(h.state(&warn), AlertState::Firing);
    h.advance(Duration::from_millis(100)).await;
    assert_eq!(h.state(&warn), AlertState::Resolved);
    assert_eq!(h.monitor.level(), Level::Normal);
    let changes: Vec<_> = h.levels.iter().map(|e| (e.previous, e.level)).collect();
    assert_eq!(
        changes,
        [
            (Level::Normal, Level::Warning),
            (Level::Warning, Level::Normal)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn stuck_pool_goes_critical_at_exactly_120_s_without_new_acquires() {
    let mut h = harness(20, all_default_rules());
    settle().await;
    // 19 of 20 in use (95 %), then nothing changes.
    h.hold(19);
    settle().await;
    tokio::time::advance(secs(120) - Duration::from_nanos(1)).await;
    settle().await;
    h.drain();
    assert_eq!(h.monitor.level(), Level::Normal);
    assert!(h.levels.is_empty());
    tokio::time::advance(Duration::from_nanos(1)).await;
    settle().await;
    h.drain();
    let e = h.levels.last().expect("critical at exactly 120 s");
    assert_eq!((e.previous, e.level), (Level::Normal, Level::Critical));
    assert_eq!(e.time_in_previous, secs(120));
    assert_eq!((e.snapshot.in_use, e.snapshot.max), (19, 20));
    assert!((e.snapshot.utilization - 0.95).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn crossing_in_the_middle_of_a_tick_is_timed_from_the_crossing() {
    let mut h = harness(20, all_default_rules());
    h.advance(Duration::from_millis(2500)).await;
    // Crossing at 2.5 s: the tick [2 s, 3 s) averages 47.5 %, under 90 %,
    // and the hold must survive it.
    h.hold(19);
    settle().await;
    h.advance(secs(120) - Duration::from_millis(100)).await;
    tokio::time::advance(Duration::from_millis(100) - Duration::from_nanos(1)).await;
    settle().await;
    h.drain();
    assert!(h.levels.is_empty());
    tokio::time::advance(Duration::from_nanos(1)).await;
    settle().await;
    h.drain();
    let e = h.levels.last().expect("critical 120 s after the crossing");
    assert_eq!(e.level, Level::Critical);
    assert_eq!(e.time_in_previous, Duration::from_millis(122_500));
}

#[tokio::test(start_paused = true)]
async fn demand_signal_counts_waiters() {
    let policy = SaturationPolicy {
        signal: Signal::Demand,
        warn_for: Duration::ZERO,
        critical_for: Duration::ZERO,
        ..SaturationPolicy::default()
    };
    let mut h = harness(10, policy.rules().into());
    h.hold(8);
    let _waiting: Vec<_> = (0..2)
        .map(|_| h.acct().start_wait(Location::caller()))
        .collect();
    settle().await;
    h.drain();
    let e = h.levels.last().expect("demand 1.0 is critical");
    assert_eq!(e.level, Level::Critical);
    assert_eq!((e.snapshot.in_use, e.snapshot.waiters), (8, 2));
    assert!((e.snapshot.demand - 1.0).abs() < 1e-9);
    // While requests wait the pool is full (8 in use, the 2 waiters take
    // the 2 slots sqlx has yet to hand out).
    assert!((e.snapshot.utilization - 1.0).abs() < 1e-9);
}
