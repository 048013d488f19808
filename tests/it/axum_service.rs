//! Smoke test of `examples/axum_service.rs`: its router, served in-process
//! on an ephemeral port against in-memory SQLite, answers as documented.
//! The example is compiled in as a module (examples cannot be imported);
//! its `main` goes unused here.

#[allow(dead_code)]
#[path = "../../examples/axum_service.rs"]
mod example;
use crate::common::http as web;

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use poolguard::metrics as names;
use poolguard::PoolGuard;
use sqlx::Sqlite;

/// Prometheus spelling of a metric or label name.
fn prom(name: &str) -> String {
    name.replace('.', "_")
}

#[tokio::test]
async fn routes_errors_and_metrics() {
    let metrics = example::install_recorder().unwrap();
    // The example's own protection settings pass the builder's validation.
    let pool = example::pool_options::<Sqlite>()
        .connect("sqlite::memory:")
        .await
        .unwrap();
    example::build_guard(pool).unwrap();

    let pool = example::pool_options::<Sqlite>()
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let guard = PoolGuard::builder(pool)
        .name("axum_test")
        .query_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let addr = web::start(example::app(guard.clone(), metrics)).await;

    let r = web::get(addr, "/items/1").await;
    assert_eq!((r.status, r.body.as_str()), (200, "apple\n"));
    assert_eq!(web::get(addr, "/items/9").await.status, 404);
    assert_eq!(web::get(addr, "/slow?secs=0").await.status, 200);

    // Past the query timeout: 504.
    let r = web::get(addr, "/slow?secs=1").await;
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(r.body.contains("timed out"), "{}", r.body);

    // Breaker open: 503 at once, with Retry-After.
    guard.breaker().force_open();
    let r = web::get(addr, "/items/1").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.head.contains("\r\nretry-after: 30"), "{}", r.head);
    guard.breaker().reset();
    assert_eq!(web::get(addr, "/items/2").await.status, 200);

    let r = web::get(addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.head
            .contains("\r\ncontent-type: text/plain; version=0.0.4"),
        "{}",
        r.head
    );
    let pool_label = format!("{}=\"axum_test\"", prom(names::POOL_NAME));
    for name in [
        names::CONNECTION_COUNT,
        names::CONNECTION_LIMIT,
        names::WAIT_TIME,
        names::QUERY_TIMEOUTS,
        names::ALERT_STATE,
        names::BREAKER_STATE,
    ] {
        let metric = prom(name);
        assert!(
            r.body
                .lines()
                .any(|l| l.starts_with(&metric) && l.contains(&pool_label)),
            "{metric} missing from /metrics"
        );
    }
    // The middleware recorded the API requests, the 504 included, as
    // histograms (the buckets are set).
    let requests = format!("{}_bucket{{", prom(names::REQUEST_DURATION));
    let recorded = |status: &str| {
        let label = format!("{}=\"{status}\"", prom(names::STATUS_CODE));
        r.body
            .lines()
            .any(|l| l.starts_with(&requests) && l.contains(&pool_label) && l.contains(&label))
    };
    assert!(recorded("504"), "no 504 in the request histogram");
    assert!(recorded("404"), "no 404 in the request histogram");
}

#[tokio::test]
async fn health_is_503_while_a_critical_rule_fires() {
    // Not installed: this test only needs a handle for the router.
    let metrics = PrometheusBuilder::new().build_recorder().handle();
    // Two connections: holding one is 50 %.
    let pool = example::pool_options::<Sqlite>()
        .max_connections(2)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let guard = PoolGuard::builder(pool)
        .warn_at(0.2)
        .warn_for(Duration::ZERO)
        .critical_at(0.4)
        .critical_for(Duration::ZERO)
        .recover_for(Duration::ZERO)
        .build()
        .unwrap();
    let addr = web::start(example::app(guard.clone(), metrics)).await;

    let r = web::get(addr, "/health").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.starts_with("status: ok\n"), "{}", r.body);

    let held = guard.acquire().await.unwrap();
    guard.evaluate_now();
    let r = web::get(addr, "/health").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("in_use: 1\n"), "{}", r.body);
    assert!(
        r.body.contains("- pool_utilization (critical)"),
        "{}",
        r.body
    );

    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        guard.evaluate_now();
        let r = web::get(addr, "/health").await;
        if r.status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
