//! A point-in-time view of the guarded pool, for `/health` pages and events.

use std::sync::Arc;
use std::time::Duration;

use crate::diagnose::{Diagnosis, Holder, StatementShare};

use crate::alert::rule::{AlertState, Severity};
use crate::alert::saturation::Level;
use crate::alert::signal::Signal;

/// The guarded pool at one moment.
///
/// `in_use` and `waiters` are the guard's exact counts; `size` and `idle`
/// come from sqlx (`pool.size()`, `pool.num_idle()`), which lag a release by
/// the background ping sqlx runs on every returned connection.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Name of the pool (`db.client.connection.pool.name`).
    pub pool: Arc<str>,
    /// Current saturation level.
    pub level: Level,
    /// Connections checked out through the guard (exact).
    pub in_use: u32,
    /// Connections sqlx counts as busy beyond `in_use` (`size - idle -
    /// in_use`) that persisted over the monitor's last two ticks:
    /// transactions begun through the generic `sqlx::Acquire` (whose
    /// `Transaction` cannot carry the guard's count), listeners and other
    /// users of the bare pool, a pool busy pinging under load. A moment's
    /// release ping or connect is not counted. Nobody can acquire them, so
    /// they count in `utilization` and `demand`; the same value as
    /// `PoolState::untracked` and the rules'.
    pub untracked: u32,
    /// Idle connections according to sqlx.
    pub idle: u32,
    /// Open connections according to sqlx.
    pub size: u32,
    /// `max_connections` of the pool.
    pub max: u32,
    /// Acquires in progress (waiting for a connection).
    pub waiters: u32,
    /// `min(in_use + untracked + waiters, max) / max`: busy connections,
    /// and while requests wait the pool is full (a free slot sqlx is still
    /// pinging or opening is taken by the next waiter).
    pub utilization: f64,
    /// `(in_use + untracked + waiters) / max`; above 1 when requests queue.
    pub demand: f64,
    /// Acquire wait over the recent window.
    pub acquire_wait: Percentiles,
    /// Connection hold (use) time over the recent window.
    pub hold_time: Percentiles,
    /// Query latency through the guard's executor over the recent window.
    pub query_latency: Percentiles,
    /// Acquires that succeeded within the recent window.
    pub acquires_in_window: u64,
    /// Acquire timeouts within the recent window.
    pub acquire_timeouts_in_window: u64,
    /// Queries through the guard's executor within the recent window.
    pub queries_in_window: u64,
    /// Of those, the ones that returned an error.
    pub query_errors_in_window: u64,
    /// How much time the window actually covers (at most the configured window).
    pub window: Duration,
    /// Successful acquires since the guard was built.
    pub acquires_total: u64,
    /// Acquire timeouts since the guard was built.
    pub acquire_timeouts_total: u64,
    /// Acquires that failed otherwise (connect error, closed pool).
    pub acquire_errors_total: u64,
    /// Forecast time until demand reaches 100 % (see [`Forecast`](crate::Forecast)).
    pub exhaustion_eta: Option<Duration>,
    /// How long the oldest acquire still waiting has waited (pgbouncer's
    /// `maxwait`); `None` while nobody waits.
    pub oldest_wait: Option<Duration>,
    /// How long acquires have waited with none completing while the
    /// guard's holds leave slots free (a stalled pool); zero when not.
    pub stalled_for: Duration,
    /// Why the pool fills and what to do, while it is under pressure
    /// (from 75 %, a level above normal, stalled, or exhaustion in sight);
    /// `None`
    /// otherwise. See "Reading a diagnosis" in the README.
    pub diagnosis: Option<Diagnosis>,
    /// The call sites holding the most pool time over the window (at most
    /// five), largest first.
    pub holders: Vec<Holder>,
    /// The statements run through the guard holding the most pool time
    /// over the window (at most five), largest first.
    pub statements: Vec<StatementShare>,
}

/// One rule's state, from [`PoolGuard::alerts`](crate::PoolGuard::alerts).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AlertStatus {
    /// The rule's name.
    pub rule: Arc<str>,
    /// The rule's severity.
    pub severity: Severity,
    /// What the rule watches.
    pub signal: Signal,
    /// Where it stands.
    pub state: AlertState,
    /// The signal's value at the last evaluation.
    pub value: Option<f64>,
    /// The rule's threshold.
    pub threshold: f64,
    /// How long the rule has been in `state`.
    pub in_state_for: Duration,
}

/// p50 / p95 / p99 of a duration over a window (bucket midpoints, within
/// 6.25 % of the true value). All zero when `samples` is 0.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Percentiles {
    /// Number of samples in the window.
    pub samples: u64,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

impl Percentiles {
    pub(crate) fn from_counts(c: &crate::hot::histogram::Counts) -> Self {
        let q = |q| c.quantile(q).unwrap_or_default();
        Self {
            samples: c.total(),
            p50: q(0.50),
            p95: q(0.95),
            p99: q(0.99),
        }
    }
}
