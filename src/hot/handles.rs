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
/// lock after that. Bounded: past `cap` label sets a key maps to the
/// overflow key's histogram. Not on the acquire/release path.
struct Lazy<K> {
    name: &'static str,
    base: Vec<Label>,
    cap: usize,
    map: RwLock<HashMap<K, Histogram>>,
}

/// Makes the labels of a key (the label names live in `report/metrics.rs`).
pub(crate) type LabelsOf<K> = Box<dyn Fn(K) -> Vec<Label> + Send + Sync>;

impl<K: std::hash::Hash + Eq + Copy> Lazy<K> {
    fn new(name: &'static str, base: Vec<Label>, cap: usize) -> Self {
        Self {
            name,
            base,
            cap,
            map: RwLock::new(HashMap::new()),
        }
    }

    /// Records `value` under `key`'s labels (`labels` makes them, once).
    fn record(&self, key: K, overflow: K, value: f64, labels: impl Fn(K) -> Vec<Label>) {
        if let Some(h) = self.map.read().get(&key) {
            h.record(value);
            return;
        }
        let mut map = self.map.write();
        let key = if map.len() >= self.cap && !map.contains_key(&key) {
            overflow
        } else {
            key
        };
        map.entry(key)
            .or_insert_with(|| {
                let mut l = self.base.clone();
                l.extend(labels(key));
                metrics::histogram!(self.name, l)
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
pub(crate) struct RequestMetrics {
    by: Lazy<RequestKey>,
    labels: LabelsOf<RequestKey>,
}

impl RequestMetrics {
    pub(crate) fn new(name: &'static str, base: Vec<Label>, labels: LabelsOf<RequestKey>) -> Self {
        // 11 methods x 3 schemes x 500 codes bound it already; the cap
        // only guards the map's size.
        Self {
            by: Lazy::new(name, base, 4096),
            labels,
        }
    }

    /// Records one request: `status` outside 100..=599 is recorded with
    /// status 0 (no status code label).
    pub(crate) fn record(&self, method: u8, scheme: u8, status: u16, seconds: f64) {
        let status = if (100..=599).contains(&status) {
            status
        } else {
            0
        };
        let over = (HTTP_METHODS.len() as u8, 2, 0);
        self.by
            .record((method, scheme, status), over, seconds, &self.labels);
    }
}

/// `db.client.operation.duration`: one cached handle for queries that
/// succeeded (the common case, no lookup), and the failed ones by
/// `error.type` and `db.response.status_code`.
pub(crate) struct OperationMetrics {
    ok: Histogram,
    failed: Lazy<u32>,
    /// The error keys' texts, by key (index); the key is the position.
    kinds: RwLock<Vec<(String, Option<String>)>>,
    /// The labels of (`error.type`, `db.response.status_code`); `None`:
    /// the overflow kind.
    labels: ErrorLabels,
}

/// Makes the labels of one failure kind.
pub(crate) type ErrorLabels = Box<dyn Fn(Option<(&str, Option<&str>)>) -> Vec<Label> + Send + Sync>;

/// Distinct failure label sets kept per pool; past it, `_OTHER`.
const ERROR_KINDS: usize = 64;

impl OperationMetrics {
    pub(crate) fn new(name: &'static str, base: Vec<Label>, labels: ErrorLabels) -> Self {
        Self {
            ok: metrics::histogram!(name, base.clone()),
            failed: Lazy::new(name, base, ERROR_KINDS + 1),
            kinds: RwLock::new(Vec::new()),
            labels,
        }
    }

    /// A query that completed without an error.
    #[inline]
    pub(crate) fn ok(&self, seconds: f64) {
        self.ok.record(seconds);
    }

    /// A query that failed: `error_type` and the database's status code.
    pub(crate) fn failed(&self, error_type: &str, status: Option<&str>, seconds: f64) {
        let find = |k: &Vec<(String, Option<String>)>| {
            k.iter()
                .position(|(t, s)| t == error_type && s.as_deref() == status)
        };
        let found = find(&self.kinds.read());
        let key = found.unwrap_or_else(|| {
            let mut kinds = self.kinds.write();
            find(&kinds).unwrap_or_else(|| {
                if kinds.len() >= ERROR_KINDS {
                    return ERROR_KINDS;
                }
                kinds.push((error_type.to_owned(), status.map(str::to_owned)));
                kinds.len() - 1
            })
        }) as u32;
        self.failed.record(key, ERROR_KINDS as u32, seconds, |k| {
            let kinds = self.kinds.read();
            (self.labels)(
                kinds
                    .get(k as usize)
                    .map(|(t, s)| (t.as_str(), s.as_deref())),
            )
        });
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
