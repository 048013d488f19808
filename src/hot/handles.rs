//! Metric handles the hot path records into, registered once at build
//! (names and registration: `report/metrics.rs`), so recording is a cached
//! handle call with no lock and no allocation.

use metrics::{Counter, Gauge, Histogram};

/// Handles recorded on the hot path (acquire / release).
pub(crate) struct HotMetrics {
    pub(crate) wait_time: Histogram,
    pub(crate) use_time: Histogram,
    pub(crate) timeouts: Counter,
    pub(crate) operation_duration: Histogram,
    pub(crate) requests: RequestMetrics,
}

impl std::fmt::Debug for HotMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotMetrics").finish_non_exhaustive()
    }
}

/// Status codes with their own `http.response.status_code` label value;
/// any other code is recorded under its class (`"1xx"` .. `"5xx"`), or
/// `"other"` outside 100..=599. Handles are registered at build (like every
/// handle here), so a recorder installed for the build alone still receives
/// them, and recording is a binary search with no lock and no allocation.
pub const STATUS_CODES: &[u16] = &[200, 201, 204, 400, 404, 429, 500, 502, 503, 504];

/// One request-duration histogram per status code of [`STATUS_CODES`], then
/// one per class, then `other`.
pub(crate) struct RequestMetrics {
    pub(crate) by_code: Vec<Histogram>,
    pub(crate) by_class: Vec<Histogram>,
}

impl RequestMetrics {
    pub(crate) fn record(&self, status: u16, seconds: f64) {
        let h = match STATUS_CODES.binary_search(&status) {
            Ok(i) => &self.by_code[i],
            Err(_) if (100..=599).contains(&status) => {
                &self.by_class[usize::from(status / 100 - 1)]
            }
            Err(_) => &self.by_class[5],
        };
        h.record(seconds);
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
