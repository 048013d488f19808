//! Names, labels, units and values of the exported metrics after a known
//! sequence of operations, read through `metrics-util`'s debugging recorder.

use crate::common;

use std::time::Duration;

use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshot};
use poolguard::{metrics as m, PoolGuard};

/// Name, labels, unit, description, value.
type Entry = (
    String,
    Vec<(String, String)>,
    Option<Unit>,
    Option<String>,
    DebugValue,
);

struct Seen(Vec<Entry>);

impl Seen {
    fn from(s: Snapshot) -> Self {
        Seen(
            s.into_vec()
                .into_iter()
                .map(|(ck, unit, desc, v)| {
                    let (_, key) = ck.into_parts();
                    let labels = key
                        .labels()
                        .map(|l| (l.key().to_string(), l.value().to_string()))
                        .collect();
                    (
                        key.name().to_string(),
                        labels,
                        unit,
                        desc.map(|d| d.to_string()),
                        v,
                    )
                })
                .collect(),
        )
    }

    fn get(&self, name: &str, state: Option<&str>) -> &Entry {
        let found: Vec<_> = self
            .0
            .iter()
            .filter(|(n, labels, ..)| {
                n == name
                    && labels.contains(&(m::POOL_NAME.to_string(), "orders-db".to_string()))
                    && state.is_none_or(|s| labels.contains(&(m::STATE.to_string(), s.to_string())))
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{name} {state:?}: {:?}",
            self.0.iter().map(|x| (&x.0, &x.1)).collect::<Vec<_>>()
        );
        found[0]
    }

    /// The gauge of one rule's state.
    fn alert(&self, rule: &str, severity: &str) -> f64 {
        let found: Vec<_> = self
            .0
            .iter()
            .filter(|(n, labels, ..)| {
                n == m::ALERT_STATE
                    && labels.contains(&(m::RULE.to_string(), rule.to_string()))
                    && labels.contains(&(m::SEVERITY.to_string(), severity.to_string()))
            })
            .collect();
        assert_eq!(found.len(), 1, "{rule}/{severity}");
        match &found[0].4 {
            DebugValue::Gauge(v) => v.0,
            other => panic!("not a gauge: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, state: Option<&str>) -> f64 {
        match &self.get(name, state).4 {
            DebugValue::Gauge(v) => v.0,
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }
}

#[tokio::test]
async fn exported_metrics_follow_otel_names_and_values() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let pool = common::sqlite(2, Duration::from_millis(100)).await;
    // Most handles are registered at build; a request's and a failed
    // query's when they first occur. This test runs on one thread (the
    // current-thread runtime), so a thread-local recorder sees both.
    let _local = metrics::set_default_local_recorder(&recorder);
    let guard = PoolGuard::builder(pool)
        .name("orders-db")
        .warn_for(Duration::ZERO)
        .critical_for(Duration::ZERO)
        .build()
        .unwrap();

    let a = guard.acquire().await.unwrap();
    let b = guard.acquire().await.unwrap();
    // A third caller waits on the full pool (and will time out).
    let g = guard.clone();
    let waiter = tokio::spawn(async move { g.acquire().await.map(drop) });
    while guard.snapshot().waiters < 1 {
        tokio::task::yield_now().await;
    }
    guard.evaluate_now();
    let full = Seen::from(snapshotter.snapshot());
    assert_eq!(full.gauge(m::CONNECTION_COUNT, Some("used")), 2.0);
    assert_eq!(full.gauge(m::CONNECTION_LIMIT, None), 2.0);
    assert_eq!(full.gauge(m::PENDING_REQUESTS, None), 1.0);
    assert_eq!(full.gauge(m::UTILIZATION, None), 1.0);
    assert_eq!(full.gauge(m::DEMAND, None), 1.5);
    // Zero hold times: 100 % is critical at once.
    assert_eq!(full.gauge(m::SATURATION_LEVEL, None), 2.0);
    // Every rule's state is a gauge: the pool rules fire (2), the scale rule
    // holds for its minute (1), the timeout rules are inactive (0).
    assert_eq!(full.alert("pool_utilization", "critical"), 2.0);
    assert_eq!(full.alert("pool_utilization", "warning"), 2.0);
    assert_eq!(full.alert("scale_up", "info"), 1.0);
    assert_eq!(full.alert("timeouts", "warning"), 0.0);
    assert_eq!(
        full.gauge(m::SCALE_RECOMMENDED, None),
        f64::from(guard.scale_hint().recommended_max)
    );
    assert_eq!(
        full.gauge(m::EXHAUSTION_ETA, None),
        guard
            .forecast()
            .eta
            .map_or(f64::INFINITY, |d| d.as_secs_f64())
    );
    // (Histogram values are drained by each debugging snapshot.)
    match &full.get(m::WAIT_TIME, None).4 {
        DebugValue::Histogram(v) => assert_eq!(v.len(), 2, "two successful acquires"),
        other => panic!("wait_time: {other:?}"),
    }

    let timeout = waiter.await.unwrap().expect_err("pool of 2 is full");
    assert!(matches!(timeout, sqlx::Error::PoolTimedOut), "{timeout:?}");
    guard.evaluate_now();
    let full = Seen::from(snapshotter.snapshot());
    assert_eq!(full.gauge(m::PENDING_REQUESTS, None), 0.0);
    match &full.get(m::TIMEOUTS, None).4 {
        DebugValue::Counter(n) => assert_eq!(*n, 1),
        other => panic!("timeouts: {other:?}"),
    }

    tokio::time::sleep(Duration::from_millis(20)).await;
    drop((a, b));
    // One query through the guard's executor.
    sqlx::query("SELECT 1").execute(&guard).await.unwrap();
    common::settle_pool(guard.pool()).await;
    guard.evaluate_now();
    let after = Seen::from(snapshotter.snapshot());
    assert_eq!(after.gauge(m::CONNECTION_COUNT, Some("used")), 0.0);
    assert_eq!(after.gauge(m::CONNECTION_COUNT, Some("idle")), 2.0);
    assert_eq!(after.gauge(m::UTILIZATION, None), 0.0);
    assert_eq!(after.gauge(m::DEMAND, None), 0.0);
    match &after.get(m::USE_TIME, None).4 {
        DebugValue::Histogram(v) => {
            assert_eq!(v.len(), 3, "two releases and the query's connection");
            assert!(
                v.iter().filter(|s| s.0 >= 0.020).count() == 2,
                "the two held connections >= 20 ms, in seconds: {v:?}"
            );
        }
        other => panic!("use_time: {other:?}"),
    }
    match &after.get(m::OPERATION_DURATION, None).4 {
        DebugValue::Histogram(v) => assert_eq!(v.len(), 1, "one query"),
        other => panic!("operation duration: {other:?}"),
    }

    // Requests the app reports: one histogram per method, scheme and
    // integer status code (registered when first seen); a code outside
    // 100..=599 has no status code and `error.type` `_OTHER`; a 5xx has its
    // code as `error.type`.
    for (status, n) in [(200, 3), (504, 2), (418, 1), (999, 1)] {
        for _ in 0..n {
            guard.record_http("GET", "https", status, Duration::from_millis(250));
        }
    }
    guard.record_http("BREW", "coap", 200, Duration::from_millis(250));
    let requests = Seen::from(snapshotter.snapshot());
    let label = |k: &str, v: &str| (k.to_string(), v.to_string());
    for (status, method, scheme, error, n) in [
        (Some("200"), "GET", "https", None, 3),
        (Some("504"), "GET", "https", Some("504"), 2),
        (Some("418"), "GET", "https", None, 1),
        (None, "GET", "https", Some("_OTHER"), 1),
        (Some("200"), "_OTHER", "_OTHER", None, 1),
        (Some("503"), "GET", "https", Some("503"), 0),
    ] {
        let found: Vec<_> = requests
            .0
            .iter()
            .filter(|(name, labels, ..)| {
                name == m::REQUEST_DURATION
                    && labels.contains(&label(m::POOL_NAME, "orders-db"))
                    && labels.contains(&label(m::HTTP_METHOD, method))
                    && labels.contains(&label(m::URL_SCHEME, scheme))
                    && status.is_none_or(|c| labels.contains(&label(m::STATUS_CODE, c)))
                    && (status.is_some() || !labels.iter().any(|(k, _)| k == m::STATUS_CODE))
                    && error.is_none_or(|e| labels.contains(&label(m::ERROR_TYPE, e)))
                    && (error.is_some() || !labels.iter().any(|(k, _)| k == m::ERROR_TYPE))
            })
            .collect();
        if n == 0 {
            assert!(found.is_empty(), "{status:?}: registered only when seen");
            continue;
        }
        assert_eq!(found.len(), 1, "{status:?} {method} {scheme}");
        match &found[0].4 {
            DebugValue::Histogram(v) => {
                assert_eq!(v.len(), n, "{status:?}");
                assert!(v.iter().all(|s| s.0 == 0.25), "{status:?}: seconds");
            }
            other => panic!("request duration: {other:?}"),
        }
        let (_, _, unit, desc, _) = found[0];
        assert_eq!(unit.as_ref(), Some(&Unit::Seconds));
        assert!(desc.as_ref().is_some_and(|d| !d.is_empty()));
    }

    // A failed query: `error.type` and `db.response.status_code` (SQLite's
    // result code 1, a syntax error), beside the database attributes.
    sqlx::query("SELEC 1").execute(&guard).await.unwrap_err();
    let failed = Seen::from(snapshotter.snapshot());
    let op: Vec<_> = failed
        .0
        .iter()
        .filter(|(name, labels, ..)| {
            name == m::OPERATION_DURATION && labels.contains(&label(m::ERROR_TYPE, "1"))
        })
        .collect();
    assert_eq!(
        op.len(),
        1,
        "{:?}",
        failed.0.iter().map(|x| (&x.0, &x.1)).collect::<Vec<_>>()
    );
    let labels = &op[0].1;
    for want in [
        label(m::DB_STATUS_CODE, "1"),
        label(m::DB_SYSTEM, "sqlite"),
        label(m::POOL_NAME, "orders-db"),
    ] {
        assert!(labels.contains(&want), "{want:?} in {labels:?}");
    }

    // Every metric is described, with its unit.
    for (name, unit) in [
        (m::CONNECTION_COUNT, Unit::Count),
        (m::CONNECTION_LIMIT, Unit::Count),
        (m::PENDING_REQUESTS, Unit::Count),
        (m::TIMEOUTS, Unit::Count),
        (m::WAIT_TIME, Unit::Seconds),
        (m::USE_TIME, Unit::Seconds),
        (m::UTILIZATION, Unit::Count),
        (m::DEMAND, Unit::Count),
        (m::SATURATION_LEVEL, Unit::Count),
        (m::OPERATION_DURATION, Unit::Seconds),
        (m::EXHAUSTION_ETA, Unit::Seconds),
        (m::SCALE_RECOMMENDED, Unit::Count),
    ] {
        let state = (name == m::CONNECTION_COUNT).then_some("used");
        let (_, _, u, desc, _) = after.get(name, state);
        assert_eq!(u.as_ref(), Some(&unit), "{name} unit");
        assert!(
            desc.as_ref().is_some_and(|d| !d.is_empty()),
            "{name} described"
        );
    }
}
