//! Metric names, descriptions and cached handles.
//!
//! Names follow the OpenTelemetry semantic conventions for database client
//! connection pools (`db.client.connection.*`); Prometheus exporters turn the
//! dots into underscores. Handles are registered once when the guard is built,
//! so the hot path records through cached handles and never looks a key up.
//! Install the global recorder *before* building the guard: handles
//! registered earlier point at the no-op recorder.

use std::sync::Arc;

use metrics::{Counter, Gauge, Unit};

use crate::alert::rule::Rule;
use crate::diagnose::{Cause, Diagnosis};
use crate::hot::handles::{HotMetrics, ProtectMetrics, RequestMetrics};

/// `db.client.connection.count`: connections by state (`idle` or `used`).
pub const CONNECTION_COUNT: &str = "db.client.connection.count";
/// `db.client.connection.max`: the pool's `max_connections`.
pub const CONNECTION_MAX: &str = "db.client.connection.max";
/// `db.client.connection.pending_requests`: acquires waiting for a connection.
pub const PENDING_REQUESTS: &str = "db.client.connection.pending_requests";
/// `db.client.connection.timeouts`: acquires that timed out.
pub const TIMEOUTS: &str = "db.client.connection.timeouts";
/// `db.client.connection.wait_time`: seconds spent acquiring a connection.
pub const WAIT_TIME: &str = "db.client.connection.wait_time";
/// `db.client.connection.use_time`: seconds a connection was held.
pub const USE_TIME: &str = "db.client.connection.use_time";
/// `poolguard.utilization`: `in_use / max`.
pub const UTILIZATION: &str = "poolguard.utilization";
/// `poolguard.demand`: `(in_use + waiters) / max`.
pub const DEMAND: &str = "poolguard.demand";
/// `poolguard.saturation.level`: 0 normal, 1 warning, 2 critical.
pub const SATURATION_LEVEL: &str = "poolguard.saturation.level";
/// `db.client.operation.duration`: seconds per query through the guard's executor.
pub const OPERATION_DURATION: &str = "db.client.operation.duration";
/// `poolguard.alert.state`: per rule (labels [`RULE`], [`SEVERITY`]);
/// 0 inactive or resolved, 1 pending, 2 firing.
pub const ALERT_STATE: &str = "poolguard.alert.state";
/// `poolguard.exhaustion.eta`: seconds until demand reaches 100 % (`+Inf`
/// when no exhaustion is in sight).
pub const EXHAUSTION_ETA: &str = "poolguard.exhaustion.eta";
/// `poolguard.scale.recommended_max`: pool size for the scale target.
pub const SCALE_RECOMMENDED: &str = "poolguard.scale.recommended_max";
/// `poolguard.server.utilization`: server-wide connection slots in use
/// (PostgreSQL, with `watch_server`).
pub const SERVER_UTILIZATION: &str = "poolguard.server.utilization";
/// `poolguard.leaks`: connections reported held past the leak threshold.
pub const LEAKS: &str = "poolguard.leaks";
/// Gauge: seconds the oldest acquire still waiting has waited (0: none).
pub const OLDEST_WAIT: &str = "poolguard.oldest_wait";
/// Counter: connections the pool opened (with a `ConnectCounter`).
pub const CONNECTION_OPENS: &str = "poolguard.connection.opens";
/// Gauge: seconds the pool has been stalled (0: it is not).
pub const STALLED: &str = "poolguard.stalled";
/// Gauge: each cause's share of why the pool fills (label `cause`; all 0
/// while the pool is not under pressure). See [`Cause`](crate::Cause).
pub const DIAGNOSIS: &str = "poolguard.diagnosis.share";
/// Gauge: connections held on average over the stats window, per acquiring
/// call site (label `site`, `file:line:column`, or `other` past the table of
/// 64 sites): who holds the pool. Bounded: at most 65 series per pool.
pub const HOLDER_CONNECTIONS: &str = "poolguard.holder.connections";
/// Gauge: each statement's query time through the guard over the pool's
/// connection time in the stats window (label `db.query.summary`, the
/// normalised text, or `other` past the table of 64). At most 65 series.
pub const STATEMENT_SHARE: &str = "poolguard.statement.share";
/// `poolguard.breaker.state`: 0 closed, 1 open, 2 half-open, 3 forced open,
/// 4 disabled.
pub const BREAKER_STATE: &str = "poolguard.breaker.state";
/// `poolguard.breaker.calls`: calls by [`OUTCOME`] (`success`, `failure`,
/// `rejected`).
pub const BREAKER_CALLS: &str = "poolguard.breaker.calls";
/// `poolguard.shed`: acquires refused by load shedding, by [`REASON`]
/// (`waiters`, `hopeless`).
pub const SHED: &str = "poolguard.shed";
/// `poolguard.query.timeouts`: queries that ran past their timeout.
pub const QUERY_TIMEOUTS: &str = "poolguard.query.timeouts";

/// `http.server.request.duration`: seconds per request the application
/// reported with `PoolGuard::record_request`, labelled with
/// [`STATUS_CODE`]. The request rows of a dashboard (rate, success and
/// error rate, P50/P95/P99, 504s) read this histogram.
pub const REQUEST_DURATION: &str = "http.server.request.duration";

/// Histogram bucket bounds (seconds) that resolve the post-mortem's
/// latency targets and alert thresholds (250 ms, 400 ms, 500 ms, 600 ms,
/// 1 s) as well as fast acquires. Give them to the exporter, e.g.
/// `PrometheusBuilder::new().set_buckets(poolguard::metrics::LATENCY_BUCKETS)`:
/// without buckets `metrics-exporter-prometheus` renders summaries, whose
/// quantiles cannot be aggregated across instances.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.4, 0.5, 0.6, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Label with the pool's name, on every metric.
pub const POOL_NAME: &str = "db.client.connection.pool.name";
/// Label with the connection state on [`CONNECTION_COUNT`].
pub const STATE: &str = "db.client.connection.state";
/// Label with the rule's name on [`ALERT_STATE`].
pub const RULE: &str = "rule";
/// Label with the rule's severity on [`ALERT_STATE`].
pub const SEVERITY: &str = "severity";
/// Label with the call outcome on [`BREAKER_CALLS`].
pub const OUTCOME: &str = "outcome";
/// Label with the reason on [`SHED`].
pub const REASON: &str = "reason";
/// Label: a diagnosis' cause (`more_arrivals`, `longer_holds`, `leak`,
/// `server_limit`, `stalled`, `undersized`, `unknown`).
pub const CAUSE: &str = "cause";
/// Label: an acquiring call site.
pub const SITE: &str = "site";
/// Label: a normalised statement (the OpenTelemetry attribute for a
/// low-cardinality query summary).
pub const QUERY_SUMMARY: &str = "db.query.summary";
/// Label with the HTTP status code on [`REQUEST_DURATION`] (`"200"`,
/// `"504"`, ...; see [`STATUS_CODES`] for codes recorded by class).
pub const STATUS_CODE: &str = "http.response.status_code";

fn describe_all() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        CONNECTION_COUNT,
        Unit::Count,
        "Connections currently in the state given by db.client.connection.state"
    );
    describe_gauge!(CONNECTION_MAX, Unit::Count, "Maximum connections allowed");
    describe_gauge!(
        PENDING_REQUESTS,
        Unit::Count,
        "Requests waiting for an open connection"
    );
    describe_counter!(TIMEOUTS, Unit::Count, "Connection acquires that timed out");
    describe_histogram!(
        WAIT_TIME,
        Unit::Seconds,
        "Time it took to obtain an open connection from the pool"
    );
    describe_histogram!(
        USE_TIME,
        Unit::Seconds,
        "Time between borrowing a connection and returning it to the pool"
    );
    describe_gauge!(UTILIZATION, Unit::Count, "Connections in use / max (0..=1)");
    describe_gauge!(
        DEMAND,
        Unit::Count,
        "(Connections in use + waiters) / max; above 1 when requests queue"
    );
    describe_gauge!(
        SATURATION_LEVEL,
        Unit::Count,
        "Saturation level: 0 normal, 1 warning, 2 critical"
    );
    describe_histogram!(
        OPERATION_DURATION,
        Unit::Seconds,
        "Duration of queries run through the guard's executor"
    );
    describe_gauge!(
        ALERT_STATE,
        Unit::Count,
        "Alert rule state: 0 inactive or resolved, 1 pending, 2 firing"
    );
    describe_gauge!(
        EXHAUSTION_ETA,
        Unit::Seconds,
        "Forecast time until demand reaches max connections (+Inf: none in sight)"
    );
    describe_gauge!(
        SCALE_RECOMMENDED,
        Unit::Count,
        "Pool size that would bring utilization to the scale target"
    );
    describe_gauge!(
        SERVER_UTILIZATION,
        Unit::Count,
        "Database server connection slots in use / available (0..=1)"
    );
    describe_gauge!(
        BREAKER_STATE,
        Unit::Count,
        "Circuit breaker: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled"
    );
    describe_counter!(
        BREAKER_CALLS,
        Unit::Count,
        "Calls seen by the circuit breaker, by outcome"
    );
    describe_counter!(
        SHED,
        Unit::Count,
        "Acquires refused by load shedding, by reason"
    );
    describe_counter!(
        QUERY_TIMEOUTS,
        Unit::Count,
        "Queries that ran past their timeout"
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Duration of requests the application reported, by status code"
    );
    describe_counter!(
        LEAKS,
        Unit::Count,
        "Connections held longer than the leak detection threshold"
    );
    describe_gauge!(
        OLDEST_WAIT,
        Unit::Seconds,
        "How long the oldest acquire still waiting has waited (0: none waits)"
    );
    describe_counter!(
        CONNECTION_OPENS,
        Unit::Count,
        "Connections the pool opened (counted by a ConnectCounter in after_connect)"
    );
    describe_gauge!(
        STALLED,
        Unit::Seconds,
        "How long acquires have waited with none completing and slots free"
    );
    describe_gauge!(
        HOLDER_CONNECTIONS,
        Unit::Count,
        "Connections held on average over the stats window, by acquiring call site"
    );
    describe_gauge!(
        STATEMENT_SHARE,
        Unit::Count,
        "Query time of each statement through the guard over the pool's connection time"
    );
    describe_gauge!(
        DIAGNOSIS,
        Unit::Count,
        "Share of each cause in why the pool fills (0 while not under pressure)"
    );
}

pub use crate::hot::handles::STATUS_CODES;

fn register_requests(pool: &str) -> RequestMetrics {
    let h = |label: String| metrics::histogram!(REQUEST_DURATION, POOL_NAME => pool.to_string(), STATUS_CODE => label);
    RequestMetrics {
        by_code: STATUS_CODES.iter().map(|c| h(c.to_string())).collect(),
        by_class: ["1xx", "2xx", "3xx", "4xx", "5xx", "other"]
            .into_iter()
            .map(|l| h(l.to_string()))
            .collect(),
    }
}

/// Gauges published by the monitor.
pub(crate) struct Gauges {
    used: Gauge,
    idle: Gauge,
    max: Gauge,
    pending: Gauge,
    utilization: Gauge,
    demand: Gauge,
    level: Gauge,
    /// One per rule, in rule order.
    pub(crate) rules: Vec<Gauge>,
    pub(crate) eta: Gauge,
    pub(crate) scale: Gauge,
    pub(crate) server: Gauge,
    pub(crate) leaks: Counter,
    pub(crate) oldest_wait: Gauge,
    pub(crate) opens: Counter,
    pub(crate) stalled: Gauge,
    /// One per cause, in [`Cause::ALL`] order.
    pub(crate) causes: Vec<Gauge>,
}

pub(crate) fn register_protect(pool: &Arc<str>) -> ProtectMetrics {
    let name = pool.to_string();
    let calls = |outcome: &'static str| metrics::counter!(BREAKER_CALLS, POOL_NAME => name.clone(), OUTCOME => outcome);
    let shed =
        |reason: &'static str| metrics::counter!(SHED, POOL_NAME => name.clone(), REASON => reason);
    ProtectMetrics {
        breaker_state: metrics::gauge!(BREAKER_STATE, POOL_NAME => name.clone()),
        success: calls("success"),
        failure: calls("failure"),
        rejected: calls("rejected"),
        shed_waiters: shed("waiters"),
        shed_hopeless: shed("hopeless"),
        query_timeouts: metrics::counter!(QUERY_TIMEOUTS, POOL_NAME => name.clone()),
    }
}

/// What the monitor publishes each evaluation.
pub(crate) struct GaugeValues {
    pub(crate) in_use: u32,
    pub(crate) idle: u32,
    pub(crate) max: u32,
    pub(crate) waiters: u32,
    pub(crate) utilization: f64,
    pub(crate) demand: f64,
    pub(crate) level: u8,
}

pub(crate) fn register(pool: &Arc<str>, rules: &[Rule]) -> (HotMetrics, Gauges) {
    // Described at every build: the recorder may have changed since the last.
    describe_all();
    let name = pool.to_string();
    let hot = HotMetrics {
        wait_time: metrics::histogram!(WAIT_TIME, POOL_NAME => name.clone()),
        use_time: metrics::histogram!(USE_TIME, POOL_NAME => name.clone()),
        timeouts: metrics::counter!(TIMEOUTS, POOL_NAME => name.clone()),
        operation_duration: metrics::histogram!(OPERATION_DURATION, POOL_NAME => name.clone()),
        requests: register_requests(&name),
    };
    let gauges = Gauges {
        used: metrics::gauge!(CONNECTION_COUNT, POOL_NAME => name.clone(), STATE => "used"),
        idle: metrics::gauge!(CONNECTION_COUNT, POOL_NAME => name.clone(), STATE => "idle"),
        max: metrics::gauge!(CONNECTION_MAX, POOL_NAME => name.clone()),
        pending: metrics::gauge!(PENDING_REQUESTS, POOL_NAME => name.clone()),
        utilization: metrics::gauge!(UTILIZATION, POOL_NAME => name.clone()),
        demand: metrics::gauge!(DEMAND, POOL_NAME => name.clone()),
        level: metrics::gauge!(SATURATION_LEVEL, POOL_NAME => name.clone()),
        rules: rules
            .iter()
            .map(|r| {
                metrics::gauge!(ALERT_STATE, POOL_NAME => name.clone(),
                    RULE => r.name.to_string(), SEVERITY => r.severity.as_str())
            })
            .collect(),
        eta: metrics::gauge!(EXHAUSTION_ETA, POOL_NAME => name.clone()),
        scale: metrics::gauge!(SCALE_RECOMMENDED, POOL_NAME => name.clone()),
        server: metrics::gauge!(SERVER_UTILIZATION, POOL_NAME => name.clone()),
        leaks: metrics::counter!(LEAKS, POOL_NAME => name.clone()),
        oldest_wait: metrics::gauge!(OLDEST_WAIT, POOL_NAME => name.clone()),
        opens: metrics::counter!(CONNECTION_OPENS, POOL_NAME => name.clone()),
        stalled: metrics::gauge!(STALLED, POOL_NAME => name.clone()),
        causes: Cause::ALL
            .iter()
            .map(|c| metrics::gauge!(DIAGNOSIS, POOL_NAME => name.clone(), CAUSE => c.as_str()))
            .collect(),
    };
    (hot, gauges)
}

/// The holder gauge of one call site (registered by the monitor the first
/// time it sees the site).
pub(crate) fn holder_gauge(
    pool: &str,
    site: Option<&'static std::panic::Location<'static>>,
) -> Gauge {
    let site = site.map_or_else(|| "other".to_owned(), |s| s.to_string());
    metrics::gauge!(HOLDER_CONNECTIONS, POOL_NAME => pool.to_owned(), SITE => site)
}

/// The share gauge of one statement (registered by the monitor the first
/// time it sees it).
pub(crate) fn statement_gauge(pool: &str, statement: Option<&str>) -> Gauge {
    let text = statement.unwrap_or("other").to_owned();
    metrics::gauge!(STATEMENT_SHARE, POOL_NAME => pool.to_owned(), QUERY_SUMMARY => text)
}

impl Gauges {
    /// Each cause's share, or all zero without a diagnosis.
    pub(crate) fn publish_diagnosis(&self, d: Option<&Diagnosis>) {
        for (g, cause) in self.causes.iter().zip(Cause::ALL) {
            let share = d
                .and_then(|d| d.shares.iter().find(|(c, _)| c == cause))
                .map_or(0.0, |(_, s)| *s);
            g.set(share);
        }
    }

    pub(crate) fn publish(&self, v: &GaugeValues) {
        self.used.set(f64::from(v.in_use));
        self.idle.set(f64::from(v.idle));
        self.max.set(f64::from(v.max));
        self.pending.set(f64::from(v.waiters));
        self.utilization.set(v.utilization);
        self.demand.set(v.demand);
        self.level.set(f64::from(v.level));
    }
}

impl std::fmt::Debug for Gauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gauges").finish_non_exhaustive()
    }
}
