//! Registering the guard's metrics (their names are in `metrics.rs`):
//! descriptions, the handles the hot path records through, the gauges the
//! monitor sets, and the label sets registered when first seen.

use std::sync::Arc;

use metrics::{Counter, Gauge, Label, Unit};

use super::metrics::*;
use crate::alert::rule::Rule;
use crate::diagnose::{Cause, Diagnosis};
use crate::hot::handles::{
    method_label, scheme_label, ErrorKey, HotMetrics, OperationMetrics, ProtectMetrics, RequestKey,
    RequestMetrics,
};
use crate::report::identity::PoolIdentity;

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
    describe_gauge!(
        UTILIZATION,
        Unit::Count,
        "Busy connections plus waiters, capped at max, over max (0..=1)"
    );
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
