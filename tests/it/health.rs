//! `guard.health()`: one verdict for a /health endpoint, and the `serde`
//! feature for it, the snapshot and the events.

use crate::common;

use std::time::Duration;

use futures::StreamExt;
use poolguard::{BreakerConfig, HealthStatus, PoolGuard};

#[tokio::test]
async fn health_follows_the_firing_rules_and_the_breaker() {
    let pool = common::sqlite(4, Duration::from_secs(1)).await;
    let guard = PoolGuard::builder(pool)
        .warn_at(0.3)
        .warn_for(Duration::ZERO)
        .critical_at(0.6)
        .critical_for(Duration::ZERO)
        .recover_for(Duration::ZERO)
        .build()
        .unwrap();
    let h = guard.health();
    assert_eq!(h.status, HealthStatus::Healthy, "{h:?}");
    assert!(h.reasons.is_empty() && h.firing.is_empty());

    let a = guard.acquire().await.unwrap();
    let b = guard.acquire().await.unwrap(); // 2 of 4 = 50 %: warning
    guard.evaluate_now();
    let h = guard.health();
    assert_eq!(h.status, HealthStatus::Degraded, "{h:?}");
    assert_eq!(h.level, poolguard::Level::Warning);
    assert!(
        h.reasons[0].starts_with("pool_utilization (warning) firing"),
        "{h:?}"
    );

    let c = guard.acquire().await.unwrap(); // 75 %: critical
    guard.evaluate_now();
    let h = guard.health();
    assert_eq!(h.status, HealthStatus::Unhealthy, "{h:?}");
    assert_eq!(h.snapshot.in_use, 3);
    drop((a, b, c));
    common::settle_pool(guard.pool()).await;
    guard.evaluate_now();
    assert_eq!(guard.health().status, HealthStatus::Healthy);

    guard.breaker().force_open();
    let h = guard.health();
    assert_eq!(h.status, HealthStatus::Unhealthy);
    assert_eq!(h.reasons, ["circuit breaker forced_open"]);
    guard.breaker().reset();
    assert_eq!(guard.health().status, HealthStatus::Healthy);
}

#[tokio::test]
async fn a_shadow_breaker_does_not_make_the_guard_unhealthy() {
    let pool = common::sqlite(2, Duration::from_secs(1)).await;
    let guard = PoolGuard::builder(pool)
        .breaker(BreakerConfig::default().metrics_only(true))
        .build()
        .unwrap();
    guard.breaker().force_open();
    let h = guard.health();
    assert!(h.breaker_metrics_only);
    assert_eq!(h.status, HealthStatus::Healthy, "{h:?}");
}

#[cfg(feature = "serde")]
#[tokio::test]
async fn health_snapshot_and_events_serialize() {
    let pool = common::sqlite(2, Duration::from_secs(1)).await;
    let guard = PoolGuard::builder(pool)
        .warn_at(0.4)
        .warn_for(Duration::ZERO)
        .leak_detection(Duration::from_millis(1))
        .build()
        .unwrap();
    let mut events = guard.events();
    let held = guard.acquire().await.unwrap();
    guard.evaluate_now();
    let h = serde_json::to_value(guard.health()).unwrap();
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["snapshot"]["in_use"], 1, "{h}");
    assert_eq!(h["firing"][0]["rule"], "pool_utilization", "{h}");
    assert_eq!(h["firing"][0]["signal"], "utilization", "{h}");
    assert!(h["snapshot"]["hold_time"]["p95"].is_object(), "{h}");
    // Every event kind that fired serializes, the leak with its call site.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut kinds = Vec::new();
    while let Ok(Some(Ok(e))) =
        tokio::time::timeout(Duration::from_millis(200), events.next()).await
    {
        let v = serde_json::to_value(&e).unwrap();
        let kind = v.as_object().unwrap().keys().next().unwrap().clone();
        if kind == "leak" {
            assert!(
                v["leak"]["acquired_at"]
                    .as_str()
                    .unwrap()
                    .contains("tests/it/health.rs"),
                "{v}"
            );
        }
        kinds.push(kind);
    }
    assert!(kinds.contains(&"alert".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"saturation".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"leak".to_string()), "{kinds:?}");
    drop(held);
}
