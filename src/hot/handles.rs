//! Metric handles the hot path records into, registered once at build
//! (names and registration: `report/metrics.rs`), so recording is a cached
//! handle call with no lock and no allocation.

use std::collections::HashMap;

use metrics::{Counter, Gauge, Histogram, Label};
use parking_lot::RwLock;

/// Handles recorded on the hot path (acquire / release).
pub(crate) struct HotMetrics {
    pub(crate) wait_time: Histogram,
    pub(crate) use_time: Histogram,
    pub(crate) create_time: Histogram,
    pub(crate) timeouts: Counter,
    pub(crate) operations: OperationMetrics,
    pub(crate) requests: RequestMetrics,
}

impl std::fmt::Debug for HotMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotMetrics").finish_non_exhaustive()
    }
}

/// Histograms of one name whose label sets are only known when they occur
/// (a request's status code, a query's error), registered the first time
/// each occurs (with the recorder installed then) and read under a shared
/// lock after that. Bounded: past `cap` keys a new key records under
/// `overflow`. Not on the acquire/release path.
struct Lazy<K> {
    name: &'static str,
    base: Vec<Label>,
    cap: usize,
    overflow: K,
    /// A key's labels (the label names live in `report/metrics.rs`).
    labels: fn(&K) -> Vec<Label>,
    map: RwLock<HashMap<K, Histogram>>,
}

impl<K: std::hash::Hash + Eq + Clone> Lazy<K> {
    fn new(
        name: &'static str,
        base: Vec<Label>,
        cap: usize,
        overflow: K,
        labels: fn(&K) -> Vec<Label>,
    ) -> Self {
        Self {
            name,
            base,
            cap,
            overflow,
            labels,
            map: RwLock::new(HashMap::new()),
        }
    }

    /// Records `value` under `key`'s histogram.
    fn record(&self, key: K, value: f64) {
        if let Some(h) = self.map.read().get(&key) {
            h.record(value);
            return;
        }
        let mut map = self.map.write();
        let key = if map.len() >= self.cap && !map.contains_key(&key) {
            self.overflow.clone()
        } else {
            key
        };
        let (name, base, labels) = (self.name, &self.base, self.labels);
        map.entry(key)
            .or_insert_with_key(|k| {
                let mut l = base.clone();
                l.extend(labels(k));
                metrics::histogram!(name, l)
            })
            .record(value);
    }
}

/// Methods with their own `http.request.method` value (the conventions'
/// known methods); any other is `_OTHER`.
pub(crate) const HTTP_METHODS: [&str; 10] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE",
];

/// `http.request.method` of a method as sent (case-sensitive, as the
/// conventions ask).
pub(crate) fn method_index(method: &str) -> u8 {
    HTTP_METHODS
        .iter()
        .position(|m| *m == method)
        .map_or(HTTP_METHODS.len() as u8, |i| i as u8)
}

/// The `http.request.method` value of a [`method_index`].
pub(crate) fn method_label(i: u8) -> &'static str {
    HTTP_METHODS
        .get(usize::from(i))
        .copied()
        .unwrap_or("_OTHER")
}

/// `url.scheme`: 0 `http`, 1 `https`, 2 anything else (`_OTHER`).
pub(crate) fn scheme_index(scheme: &str) -> u8 {
    match scheme {
        "http" => 0,
        "https" => 1,
        _ => 2,
    }
}

/// The `url.scheme` value of a [`scheme_index`].
pub(crate) fn scheme_label(i: u8) -> &'static str {
    ["http", "https", "_OTHER"][usize::from(i.min(2))]
}

/// A request's label key: method index, scheme index, status code (0:
/// none valid).
pub(crate) type RequestKey = (u8, u8, u16);

/// `http.server.request.duration` by method, scheme and status code.
pub(crate) struct RequestMetrics(Lazy<RequestKey>);

impl RequestMetrics {
    pub(crate) fn new(
        name: &'static str,
        base: Vec<Label>,
        labels: fn(&RequestKey) -> Vec<Label>,
    ) -> Self {
        // 11 methods x 3 schemes x 500 codes is 16,500: the cap bounds
        // the map below that.
        let overflow = (HTTP_METHODS.len() as u8, 2, 0);
        Self(Lazy::new(name, base, 4096, overflow, labels))
    }

    /// Records one request: `status` outside 100..=599 is recorded with
    /// status 0 (no status code label).
    pub(crate) fn record(&self, method: u8, scheme: u8, status: u16, seconds: f64) {
        let status = if (100..=599).contains(&status) {
            status
        } else {
            0
        };
        self.0.record((method, scheme, status), seconds);
    }
}

/// A failed query's label key: `error.type`, `db.response.status_code`.
pub(crate) type ErrorKey = (String, Option<String>);

/// `db.client.operation.duration`: one cached handle for queries that
/// succeeded (the common case, no lookup), and the failed ones by
/// `error.type` and `db.response.status_code`.
pub(crate) struct OperationMetrics {
    ok: Histogram,
    failed: Lazy<ErrorKey>,
}

/// Distinct failure label sets kept per pool; past it, `_OTHER`.
const ERROR_KINDS: usize = 64;

impl OperationMetrics {
    pub(crate) fn new(
        name: &'static str,
        base: Vec<Label>,
        labels: fn(&ErrorKey) -> Vec<Label>,
    ) -> Self {
        let overflow = ("_OTHER".to_owned(), None);
        Self {
            ok: metrics::histogram!(name, base.clone()),
            failed: Lazy::new(name, base, ERROR_KINDS, overflow, labels),
        }
    }

    /// A query that completed without an error.
    #[inline]
    pub(crate) fn ok(&self, seconds: f64) {
        self.ok.record(seconds);
    }

    /// A query that failed: `error_type` and the database's status code.
    pub(crate) fn failed(&self, error_type: &str, status: Option<&str>, seconds: f64) {
        let key = (error_type.to_owned(), status.map(str::to_owned));
        self.failed.record(key, seconds);
    }
}

/// Handles of the protection layer (breaker, shedding, query timeouts).
pub(crate) struct ProtectMetrics {
    pub(crate) breaker_state: Gauge,
    pub(crate) success: Counter,
    pub(crate) failure: Counter,
    pub(crate) rejected: Counter,
    pub(crate) shed_waiters: Counter,
    pub(crate) shed_hopeless: Counter,
    pub(crate) query_timeouts: Counter,
}

impl std::fmt::Debug for ProtectMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectMetrics").finish_non_exhaustive()
    }
}
