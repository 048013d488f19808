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
//! are described as [`Unit::Count`](::metrics::Unit::Count), which Prometheus exporters render
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
/// `poolguard.utilization`: `min(busy + waiters, max) / max`, as the
/// utilization rules judge it (busy: in use through the guard and sqlx's
/// untracked connections).
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
