//! The rule engine through the public API on a real SQLite pool: custom
//! rules, replacing and removing defaults, app-fed request outcomes, query
//! errors through the executor, leak reports and rule validation. (Rule
//! *timing* is tested on the paused clock in `src/monitor/tests.rs`.)

use crate::common;

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use poolguard::rules::{default_rules, POOL_RULE};
use poolguard::{
    AlertEvent, AlertState, BuildError, Comparison, Event, PoolGuard, Quantile, Rule, Severity,
    Signal,
};
use sqlx::Executor;

const WAIT: Duration = Duration::from_secs(5);

async fn next_alert(
    events: &mut poolguard::EventStream,
    rule: &str,
    state: AlertState,
) -> AlertEvent {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(Ok(Event::Alert(a)))) if &*a.rule == rule && a.state == state => return a,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no {rule} {state} within {WAIT:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn default_rules_are_the_post_mortem_table_and_readable() {
    let pool = common::sqlite(4, Duration::from_secs(1)).await;
    let guard = PoolGuard::builder(pool).build().unwrap();
    let rules = guard.rules();
    assert_eq!(rules.len(), 2 + default_rules().len());
    let find = |name: &str, sev: Severity| {
        rules
            .iter()
            .find(|r| &*r.name == name && r.severity == sev)
            .unwrap_or_else(|| panic!("{name}/{sev}"))
    };
    let mins = |m: u64| Duration::from_secs(60 * m);
    for (name, sev, threshold, hold) in [
        (POOL_RULE, Severity::Warning, 0.80, mins(5)),
        (POOL_RULE, Severity::Critical, 0.90, mins(2)),
        ("error_rate", Severity::Warning, 0.01, mins(3)),
        ("error_rate", Severity::Critical, 0.025, mins(2)),
        ("gateway_timeouts", Severity::Warning, 5.0, Duration::ZERO),
        ("gateway_timeouts", Severity::Critical, 10.0, Duration::ZERO),
        ("request_latency_p95", Severity::Warning, 0.400, mins(5)),
        ("request_latency_p95", Severity::Critical, 0.600, mins(3)),
        ("traffic_anomaly", Severity::Warning, 2.0, mins(5)),
        ("exhaustion_forecast", Severity::Warning, 900.0, mins(1)),
        ("scale_up", Severity::Info, 0.75, mins(1)),
    ] {
        let r = find(name, sev);
        assert_eq!((r.threshold, r.hold), (threshold, hold), "{name}/{sev}");
    }
    assert_eq!(find("gateway_timeouts", Severity::Warning).window, mins(5));
    let statuses = guard.alerts();
    assert_eq!(statuses.len(), rules.len());
    assert!(statuses.iter().all(|s| s.state == AlertState::Inactive));
}

#[tokio::test]
async fn app_recorded_504s_fire_the_gateway_timeout_rules() {
    let pool = common::sqlite(4, Duration::from_secs(1)).await;
    let guard = PoolGuard::builder(pool)
        .tick(Duration::from_millis(50))
        .build()
        .unwrap();
    let mut events = guard.events();
    for _ in 0..5 {
        guard.record_http("GET", "http", 504, Duration::from_secs(30));
        guard.record_http("GET", "http", 200, Duration::from_millis(20));
    }
    guard.evaluate_now();
    assert!(guard
        .alerts()
        .iter()
        .all(|a| &*a.rule != "gateway_timeouts" || a.state == AlertState::Inactive));
    guard.record_http("GET", "http", 504, Duration::from_secs(30));
    let e = next_alert(&mut events, "gateway_timeouts", AlertState::Firing).await;
    assert_eq!(e.severity, Severity::Warning);
    assert_eq!(e.value, Some(6.0), "six 504s in the window: above 5");
    for _ in 0..5 {
        guard.record_http("GET", "http", 504, Duration::from_secs(30));
    }
    let e = next_alert(&mut events, "gateway_timeouts", AlertState::Firing).await;
    assert_eq!((e.severity, e.value), (Severity::Critical, Some(11.0)));
}

#[tokio::test]
async fn custom_rules_replace_add_and_remove() {
    let pool = common::sqlite(2, Duration::from_secs(1)).await;
    let guard = PoolGuard::builder(pool)
        .tick(Duration::from_millis(50))
        .without_rule("traffic_anomaly")
        // By default a syntax error is an answer, not an error (issue 12);
        // this app counts every database error.
        .classifier(|e| match e {
            sqlx::Error::Database(_) => poolguard::Outcome::Failure,
            e => poolguard::breaker::classify(e),
        })
        .rule(
            Rule::new("error_rate", Signal::QueryErrorRate, Comparison::Above, 0.2)
                .severity(Severity::Critical)
                .min_samples(3),
        )
        .rule(
            Rule::new(
                "slow_queries",
                Signal::QueryLatency(Quantile::P99),
                Comparison::AtOrAbove,
                0.0,
            )
            .min_samples(1),
        )
        .build()
        .unwrap();
    let names: Vec<_> = guard.rules().iter().map(|r| r.key()).collect();
    assert!(!names.iter().any(|n| n.starts_with("traffic_anomaly")));
    assert_eq!(
        names.iter().filter(|n| *n == "error_rate/critical").count(),
        1
    );
    let mut events = guard.events();
    guard.execute("SELECT 1").await.unwrap();
    let e = next_alert(&mut events, "slow_queries", AlertState::Firing).await;
    assert!(e.value.unwrap() >= 0.0);
    // Errors through the executor: a syntax error is a query error here.
    for _ in 0..3 {
        guard.execute("SELEKT 1").await.unwrap_err();
    }
    let e = next_alert(&mut events, "error_rate", AlertState::Firing).await;
    assert_eq!(e.severity, Severity::Critical);
    assert_eq!(e.value, Some(0.75));
    let snap = guard.snapshot();
    assert_eq!(
        (snap.queries_in_window, snap.query_errors_in_window),
        (4, 3)
    );
    assert_eq!(snap.query_latency.samples, 4);
    assert_eq!(snap.in_use, 0);
}

#[tokio::test]
async fn replacing_every_rule_keeps_only_those() {
    let pool = common::sqlite(2, Duration::from_secs(1)).await;
    let guard = PoolGuard::builder(pool)
        .rules([Rule::new(
            "waiters",
            Signal::Waiters,
            Comparison::Above,
            0.0,
        )])
        .build()
        .unwrap();
    assert_eq!(guard.rules().len(), 1);
    assert_eq!(guard.alerts()[0].rule.as_ref(), "waiters");
}

#[tokio::test]
async fn invalid_rules_are_typed_errors_naming_the_rule() {
    let pool = common::sqlite(2, Duration::from_secs(1)).await;
    let b = || PoolGuard::builder(pool.clone());
    let r = || Rule::new("r", Signal::QueryErrorRate, Comparison::Above, 0.1);
    let cases = [
        (
            b().rule(r().recover_at(0.2)),
            "rule.recover_at",
            "rule `r/warning`: 0.2 (threshold > 0.1)",
        ),
        (
            b().rule(r().window(Duration::from_millis(5))),
            "rule.window",
            "rule `r/warning`: 5ms (tick 1s)",
        ),
        (
            b().rule(r().hold(Duration::MAX)),
            "rule.hold",
            "rule `r/warning`: 18446744073709551615.999999999s",
        ),
        (b().rules([r(), r()]), "rules", "r/warning"),
        (b().scale_target(1.5), "scale_target", "1.5"),
        (b().instances(0), "instances", "0"),
        (b().leak_detection(Duration::ZERO), "leak_detection", "0ns"),
        (
            b().forecast_window(Duration::from_secs(5)),
            "forecast_window",
            "5s (tick = 1s)",
        ),
        (b().time_scale(0.0), "time_scale", "0"),
        (b().time_scale(f64::NAN), "time_scale", "NaN"),
        (
            b().tick(Duration::from_millis(50)).time_scale(100.0),
            "time_scale",
            "100",
        ),
    ];
    for (builder, field, value) in cases {
        match builder.build() {
            Err(BuildError::InvalidConfig {
                field: f, value: v, ..
            }) => {
                assert_eq!((f, v.as_str()), (field, value))
            }
            other => panic!("{field}: expected InvalidConfig, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn time_scale_converts_every_rule_duration_and_time_valued_threshold() {
    let builder = || async {
        let pool = common::sqlite(4, Duration::from_secs(1)).await;
        PoolGuard::builder(pool).rule(Rule::new(
            "busy",
            Signal::AcquireRate,
            Comparison::Above,
            10.0,
        ))
    };
    let guard = builder().await.time_scale(60.0).build().unwrap();
    let unscaled = builder().await.build().unwrap();
    assert_eq!(guard.rules().len(), unscaled.rules().len());
    for (s, u) in guard.rules().iter().zip(unscaled.rules()) {
        assert_eq!((&s.name, s.severity), (&u.name, u.severity));
        assert_eq!(s.hold * 60, u.hold, "{}", u.key());
        assert_eq!(s.window * 60, u.window, "{}", u.key());
        assert_eq!(s.recover_for * 60, u.recover_for, "{}", u.key());
        let unit = match u.signal {
            Signal::RequestLatency(_)
            | Signal::QueryLatency(_)
            | Signal::ExhaustionEta
            | Signal::OldestWait
            | Signal::Stall => 1.0 / 60.0,
            Signal::AcquireRate | Signal::Churn => 60.0,
            _ => 1.0,
        };
        assert!(
            (s.threshold - u.threshold * unit).abs() < 1e-9,
            "{}: {} vs {}",
            u.key(),
            s.threshold,
            u.threshold
        );
        assert!(
            (s.recover_at - u.recover_at * unit).abs() < 1e-9,
            "{}",
            u.key()
        );
    }
}

#[tokio::test]
async fn leaked_connection_is_reported_with_its_call_site_and_its_return() {
    let pool = common::sqlite(2, Duration::from_secs(1)).await;
    let guard = PoolGuard::builder(pool)
        .tick(Duration::from_millis(20))
        .leak_detection(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut events = guard.events();
    let line = line!() + 1;
    let conn = guard.acquire().await.unwrap();
    let leak = loop {
        match tokio::time::timeout(WAIT, events.next()).await {
            Ok(Some(Ok(Event::Leak(l)))) => break l,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no leak report: {other:?}"),
        }
    };
    assert!(!leak.returned);
    assert!(leak.held_for >= Duration::from_millis(100));
    assert_eq!(
        (leak.acquired_at.file(), leak.acquired_at.line()),
        (file!(), line)
    );
    drop(conn);
    let back = loop {
        match tokio::time::timeout(WAIT, events.next()).await {
            Ok(Some(Ok(Event::Leak(l)))) => break l,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no return report: {other:?}"),
        }
    };
    assert!(back.returned);
    assert_eq!(back.acquired_at.line(), line);
    assert!(back.held_for >= leak.held_for);
}

/// A nightly batch job holds its connection for 10 minutes on purpose:
/// with `expect_hold` it is not reported at the guard's 5-minute threshold,
/// only past the 15 minutes it said (paused clock, the model pool).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hold_its_owner_expects_is_not_a_leak_until_past_it() {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy("sqlite::memory:")
        .unwrap();
    let sim = PoolGuard::builder(pool)
        .leak_detection(Duration::from_secs(300))
        .build_sim()
        .unwrap();
    let mut events = sim.guard().events();
    let batch = sim.acquire().await.unwrap();
    batch.expect_hold(Duration::from_secs(900));
    let other = sim.acquire().await.unwrap();
    let leak = |e: Option<Result<Event, _>>| match e {
        Some(Ok(Event::Leak(l))) => Some(l),
        _ => None,
    };
    // Within the first 10 minutes only the other connection is reported.
    let mut reported = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(600);
    while let Ok(e) = tokio::time::timeout_at(until, events.next()).await {
        reported.extend(leak(e));
    }
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert!(reported[0].held_for >= Duration::from_secs(300));
    assert!(reported[0].held_for < Duration::from_secs(900));
    drop(other);
    // Past 15 minutes the batch job's connection is reported too.
    let until = tokio::time::Instant::now() + Duration::from_secs(400);
    let mut late = Vec::new();
    while let Ok(e) = tokio::time::timeout_at(until, events.next()).await {
        late.extend(leak(e).filter(|l| !l.returned));
    }
    assert_eq!(late.len(), 1, "{late:?}");
    assert!(late[0].held_for >= Duration::from_secs(900), "{late:?}");
    drop(batch);
}

/// Flat traffic of `per_second` acquires (each held 50 ms) for `minutes`
/// on the model pool (paused clock).
async fn traffic(sim: &poolguard::sim::SimPool<sqlx::Sqlite>, per_second: u32, minutes: u64) {
    for _ in 0..minutes * 60 {
        for _ in 0..per_second {
            let c = sim.acquire().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(c);
        }
        tokio::time::sleep(Duration::from_millis(1000 - 50 * u64::from(per_second))).await;
    }
}

fn model_pool() -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(20)
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy("sqlite::memory:")
        .unwrap()
}

/// When the traffic anomaly first fired, in minutes after `from`, within
/// `minutes` of 3x traffic.
async fn anomaly_after_spike(
    sim: &poolguard::sim::SimPool<sqlx::Sqlite>,
    minutes: u64,
) -> Option<u64> {
    let mut events = sim.guard().events();
    for m in 1..=minutes {
        traffic(sim, 15, 1).await;
        while let Some(Some(Ok(e))) = events.next().now_or_never() {
            if let Event::Alert(a) = e {
                if &*a.rule == "traffic_anomaly" && a.state == AlertState::Firing {
                    let t = a.traffic.expect("expected and observed");
                    assert!(t.observed > 2.0 * t.expected, "{t}");
                    return Some(m);
                }
            }
        }
    }
    None
}

/// A deploy in the middle of the day: the new guard resumes what the old
/// one learned and sees a traffic spike at once; a guard that starts
/// blind does not (its baseline needs 20 minutes).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_resumed_guard_keeps_its_traffic_baseline_across_a_restart() {
    let old = PoolGuard::builder(model_pool()).build_sim().unwrap();
    traffic(&old, 5, 30).await;
    let learned = old.guard().learned();
    assert!(learned.minutes.len() >= 29, "{}", learned.minutes.len());
    assert!(learned
        .minutes
        .iter()
        .all(|m| (m.arrival_rate - 5.0).abs() < 0.5));
    drop(old);
    #[cfg(feature = "serde")]
    {
        let text = serde_json::to_string(&learned).unwrap();
        let back: poolguard::Learned = serde_json::from_str(&text).unwrap();
        assert_eq!(back, learned);
    }
    let resumed = PoolGuard::builder(model_pool())
        .resume(learned.clone())
        .build_sim()
        .unwrap();
    let fired = anomaly_after_spike(&resumed, 10).await;
    assert!(fired.is_some_and(|m| m <= 7), "resumed: {fired:?}");
    let blind = PoolGuard::builder(model_pool()).build_sim().unwrap();
    assert_eq!(
        anomaly_after_spike(&blind, 10).await,
        None,
        "blind for 20 minutes"
    );
    // A history of another minute length, or with a bad figure, is refused.
    let scaled = PoolGuard::builder(model_pool())
        .time_scale(60.0)
        .resume(learned.clone())
        .build();
    assert!(
        matches!(
            &scaled,
            Err(BuildError::InvalidConfig {
                field: "resume.bucket",
                ..
            })
        ),
        "{scaled:?}"
    );
    let bad = poolguard::Learned::new(
        learned.bucket,
        learned.at,
        vec![poolguard::LearnedMinute::new(f64::NAN, None, None, None)],
    );
    let refused = PoolGuard::builder(model_pool()).resume(bad).build();
    assert!(
        matches!(
            &refused,
            Err(BuildError::InvalidConfig {
                field: "resume.minutes",
                ..
            })
        ),
        "{refused:?}"
    );
}
