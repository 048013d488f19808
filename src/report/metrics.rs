//! Metric names, descriptions and cached handles.
//!
//! Names, units and attributes follow the OpenTelemetry semantic conventions
//! (`db.client.connection.*` as of the `limit` rename of 2026-09-03,
//! `db.client.operation.duration` and `http.server.request.duration`, both
//! Stable). Every pool instrument carries [`POOL_NAME`]; the operation
//! histogram carries [`DB_SYSTEM`] (required) and [`DB_NAMESPACE`],
//! [`SERVER_ADDRESS`], [`SERVER_PORT`] where known; the request histogram
//! carries [`HTTP_METHOD`], [`URL_SCHEME`] (required) and the integer
//! [`STATUS_CODE`]; failures carry [`ERROR_TYPE`]. The table below is the
//! one `tests/it/conventions.rs` checks a real render against.
//!
//! | name | instrument | unit | Prometheus (plain / `with_recommended_naming`) |
//! |---|---|---|---|
//! | `db.client.connection.count` | gauge (up-down) | `{connection}` | `db_client_connection_count` |
//! | `db.client.connection.limit` | gauge (up-down) | `{connection}` | `db_client_connection_limit` |
//! | `db.client.connection.idle.max` | gauge (up-down) | `{connection}` | `db_client_connection_idle_max` |
//! | `db.client.connection.idle.min` | gauge (up-down) | `{connection}` | `db_client_connection_idle_min` |
//! | `db.client.connection.pending_requests` | gauge (up-down) | `{request}` | `db_client_connection_pending_requests` |
//! | `db.client.connection.timeouts` | counter | `{timeout}` | `..._timeouts` / `..._timeouts_total` |
//! | `db.client.connection.create_time` | histogram | `s` | `..._create_time` / `..._create_time_seconds` |
//! | `db.client.connection.wait_time` | histogram | `s` | `..._wait_time` / `..._wait_time_seconds` |
//! | `db.client.connection.use_time` | histogram | `s` | `..._use_time` / `..._use_time_seconds` |
//! | `db.client.operation.duration` | histogram | `s` | `..._duration` / `..._duration_seconds` |
//! | `http.server.request.duration` | histogram | `s` | `..._duration` / `..._duration_seconds` |
//!
//! The `metrics` facade has no unit for `{connection}` and its kin: they
//! are described as [`Unit::Count`], which Prometheus exporters render
//! without a suffix, as the OpenTelemetry-to-Prometheus rules do for
//! curly-brace units. The guard's own `poolguard.*` ratios (unit `1`) carry
//! no suffix either (the `_ratio` special case left the specification in
//! 2026-04).
//!
//! Handles are registered once when the guard is built, so the hot path
//! records through cached handles and never looks a key up. Install the
//! global recorder *before* building the guard: handles registered earlier
//! point at the no-op recorder. The label sets that cannot be known at
//! build (a request's method and status code, a failed query's error) are
//! registered the first time they occur, with the recorder installed then.

use std::sync::Arc;

use metrics::{Counter, Gauge, Label, Unit};

use crate::alert::rule::Rule;
use crate::diagnose::{Cause, Diagnosis};
use crate::hot::handles::{
    method_label, scheme_label, ErrorKey, HotMetrics, OperationMetrics, ProtectMetrics, RequestKey,
    RequestMetrics,
};
use crate::report::identity::PoolIdentity;

/// `db.client.connection.count`: connections by state (`idle` or `used`).
pub const CONNECTION_COUNT: &str = "db.client.connection.count";
/// `db.client.connection.limit`: the pool's `max_connections` (the
/// conventions' name since 2026-09-03).
pub const CONNECTION_LIMIT: &str = "db.client.connection.limit";
/// `db.client.connection.max`: the old name of [`CONNECTION_LIMIT`],
/// **deprecated**; emitted (beside `limit`) only with
/// [`PoolGuardBuilder::deprecated_connection_max`](crate::PoolGuardBuilder::deprecated_connection_max),
/// for dashboards that still read it. Will be removed in the next release.
pub const CONNECTION_MAX: &str = "db.client.connection.max";
/// `db.client.connection.idle.max`: the most idle connections the pool
/// keeps (sqlx keeps up to `max_connections` idle).
pub const IDLE_MAX: &str = "db.client.connection.idle.max";
/// `db.client.connection.idle.min`: the pool's `min_connections`.
pub const IDLE_MIN: &str = "db.client.connection.idle.min";
/// `db.client.connection.create_time`: seconds it took to open a
/// connection, measured where the guard can see the open (a
/// [`ConnectCounter`](crate::ConnectCounter) installed, the connection
/// opened for one of the guard's acquires that did not wait for a slot).
pub const CREATE_TIME: &str = "db.client.connection.create_time";
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
/// `db.client.operation.duration`: seconds per query through the guard's
/// executor, with [`DB_SYSTEM`] and, when known, [`DB_NAMESPACE`],
/// [`SERVER_ADDRESS`], [`SERVER_PORT`] (non-default ports only); a failed
/// query adds [`ERROR_TYPE`] and, when the database gave one,
/// [`DB_STATUS_CODE`]. Give the exporter [`OPERATION_DURATION_BUCKETS`].
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
/// reported (the tower layer, or `PoolGuard::record_http`), labelled with
/// [`HTTP_METHOD`], [`URL_SCHEME`], the integer [`STATUS_CODE`] and, for
/// 5xx, [`ERROR_TYPE`]. The request rows of a dashboard (rate, success
/// and error rate, P50/P95/P99, 504s) read this histogram.
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

/// The conventions' advisory bucket bounds for
/// [`OPERATION_DURATION`] (seconds), e.g.
/// `.set_buckets_for_metric(Matcher::Full("db_client_operation_duration".into()), OPERATION_DURATION_BUCKETS)`.
pub const OPERATION_DURATION_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

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
/// Label with the HTTP status code on [`REQUEST_DURATION`]: the integer
/// code (`"200"`, `"504"`, ...), never a class.
pub const STATUS_CODE: &str = "http.response.status_code";
/// Label: the request's method on [`REQUEST_DURATION`] (`GET`, `POST`, ...;
/// a method the conventions do not know is `_OTHER`).
pub const HTTP_METHOD: &str = "http.request.method";
/// Label: the request's URL scheme on [`REQUEST_DURATION`] (`http`,
/// `https`; anything else `_OTHER`).
pub const URL_SCHEME: &str = "url.scheme";
/// Label: what failed. On [`OPERATION_DURATION`] the database's status
/// code when it gave one (PostgreSQL's SQLSTATE, MySQL's error number,
/// SQLite's extended result code), else the sqlx error's kind (`io`,
/// `tls`, `protocol`, `pool_timed_out`, `timeout` for a query past the
/// guard's limit, ...); on [`REQUEST_DURATION`] the status code of a 5xx.
pub const ERROR_TYPE: &str = "error.type";
/// Label: `db.system.name` (`postgresql`, `mysql`, `sqlite`).
pub const DB_SYSTEM: &str = "db.system.name";
/// Label: `db.namespace`, the database name (SQLite: the file).
pub const DB_NAMESPACE: &str = "db.namespace";
/// Label: `db.response.status_code` of a failed query.
pub const DB_STATUS_CODE: &str = "db.response.status_code";
/// Label: `server.address` on [`OPERATION_DURATION`].
pub const SERVER_ADDRESS: &str = "server.address";
/// Label: `server.port` on [`OPERATION_DURATION`] (a non-default port).
pub const SERVER_PORT: &str = "server.port";

fn describe_all() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        CONNECTION_COUNT,
        Unit::Count,
        "Connections currently in the state given by db.client.connection.state"
    );
    describe_gauge!(
        CONNECTION_LIMIT,
        Unit::Count,
        "The maximum number of open connections allowed"
    );
    describe_gauge!(
        CONNECTION_MAX,
        Unit::Count,
        "Deprecated: use db.client.connection.limit. The maximum number of open connections allowed"
    );
    describe_gauge!(
        IDLE_MAX,
        Unit::Count,
        "The maximum number of idle open connections allowed"
    );
    describe_gauge!(
        IDLE_MIN,
        Unit::Count,
        "The minimum number of idle open connections allowed"
    );
    describe_histogram!(
        CREATE_TIME,
        Unit::Seconds,
        "The time it took to create a new connection"
    );
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
        "Duration of database client operations (queries through the guard's executor)"
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
        "Duration of HTTP server requests"
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

/// The labels every instrument of one pool carries, and the database
/// attributes of its operation histogram.
#[derive(Clone, Debug)]
pub(crate) struct PoolLabels {
    /// The pool's name.
    pub(crate) pool: Arc<str>,
    /// Who the pool talks to.
    pub(crate) identity: PoolIdentity,
    /// Also emit the deprecated `db.client.connection.max`.
    pub(crate) deprecated_max: bool,
    /// The pool's `min_connections` (`idle.min`).
    pub(crate) min_connections: u32,
}

impl PoolLabels {
    fn pool(&self) -> Vec<Label> {
        vec![Label::new(POOL_NAME, self.pool.to_string())]
    }

    /// [`POOL_NAME`], [`DB_SYSTEM`] and the known database attributes.
    fn operation(&self) -> Vec<Label> {
        let id = &self.identity;
        let mut l = self.pool();
        l.push(Label::new(DB_SYSTEM, id.system));
        if let Some(ns) = &id.namespace {
            l.push(Label::new(DB_NAMESPACE, ns.clone()));
        }
        if let Some(a) = &id.address {
            l.push(Label::new(SERVER_ADDRESS, a.clone()));
        }
        if let Some(p) = id.non_default_port() {
            l.push(Label::new(SERVER_PORT, p.to_string()));
        }
        l
    }
}

/// The labels of a request key: [`HTTP_METHOD`], [`URL_SCHEME`], the
/// integer [`STATUS_CODE`] (none when the code was not valid), and
/// [`ERROR_TYPE`] for a 5xx (the code) or an invalid code (`_OTHER`).
fn request_labels(&(method, scheme, status): &RequestKey) -> Vec<Label> {
    let mut l = vec![
        Label::new(HTTP_METHOD, method_label(method)),
        Label::new(URL_SCHEME, scheme_label(scheme)),
    ];
    match status {
        0 => l.push(Label::new(ERROR_TYPE, "_OTHER")),
        s => {
            l.push(Label::new(STATUS_CODE, s.to_string()));
            if s >= 500 {
                l.push(Label::new(ERROR_TYPE, s.to_string()));
            }
        }
    }
    l
}

/// The labels of a failed query: [`ERROR_TYPE`] and, when the database
/// gave one, [`DB_STATUS_CODE`] (past the table of kinds, `_OTHER` alone).
fn error_labels((error_type, status): &ErrorKey) -> Vec<Label> {
    let mut l = vec![Label::new(ERROR_TYPE, error_type.clone())];
    if let Some(s) = status {
        l.push(Label::new(DB_STATUS_CODE, s.clone()));
    }
    l
}

/// Gauges published by the monitor.
pub(crate) struct Gauges {
    used: Gauge,
    idle: Gauge,
    limit: Gauge,
    /// The deprecated `db.client.connection.max`, when asked for.
    max: Option<Gauge>,
    idle_max: Gauge,
    idle_min: Gauge,
    min_connections: u32,
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

pub(crate) fn register(labels: &PoolLabels, rules: &[Rule]) -> (HotMetrics, Gauges) {
    // Described at every build: the recorder may have changed since the last.
    describe_all();
    let name = labels.pool.to_string();
    let pool = labels.pool();
    let hot = HotMetrics {
        wait_time: metrics::histogram!(WAIT_TIME, pool.clone()),
        use_time: metrics::histogram!(USE_TIME, pool.clone()),
        create_time: metrics::histogram!(CREATE_TIME, pool.clone()),
        timeouts: metrics::counter!(TIMEOUTS, pool.clone()),
        operations: OperationMetrics::new(OPERATION_DURATION, labels.operation(), error_labels),
        requests: RequestMetrics::new(REQUEST_DURATION, pool.clone(), request_labels),
    };
    let gauges = Gauges {
        used: metrics::gauge!(CONNECTION_COUNT, POOL_NAME => name.clone(), STATE => "used"),
        idle: metrics::gauge!(CONNECTION_COUNT, POOL_NAME => name.clone(), STATE => "idle"),
        limit: metrics::gauge!(CONNECTION_LIMIT, pool.clone()),
        max: labels
            .deprecated_max
            .then(|| metrics::gauge!(CONNECTION_MAX, pool.clone())),
        idle_max: metrics::gauge!(IDLE_MAX, pool.clone()),
        idle_min: metrics::gauge!(IDLE_MIN, pool.clone()),
        min_connections: labels.min_connections,
        pending: metrics::gauge!(PENDING_REQUESTS, pool.clone()),
        utilization: metrics::gauge!(UTILIZATION, pool.clone()),
        demand: metrics::gauge!(DEMAND, pool.clone()),
        level: metrics::gauge!(SATURATION_LEVEL, pool.clone()),
        rules: rules
            .iter()
            .map(|r| {
                metrics::gauge!(ALERT_STATE, POOL_NAME => name.clone(),
                    RULE => r.name.to_string(), SEVERITY => r.severity.as_str())
            })
            .collect(),
        eta: metrics::gauge!(EXHAUSTION_ETA, pool.clone()),
        scale: metrics::gauge!(SCALE_RECOMMENDED, pool.clone()),
        server: metrics::gauge!(SERVER_UTILIZATION, pool.clone()),
        leaks: metrics::counter!(LEAKS, pool.clone()),
        oldest_wait: metrics::gauge!(OLDEST_WAIT, pool.clone()),
        opens: metrics::counter!(CONNECTION_OPENS, pool.clone()),
        stalled: metrics::gauge!(STALLED, pool.clone()),
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
        self.limit.set(f64::from(v.max));
        if let Some(max) = &self.max {
            max.set(f64::from(v.max));
        }
        self.idle_max.set(f64::from(v.max));
        self.idle_min.set(f64::from(self.min_connections));
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
