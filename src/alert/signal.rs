//! Signals: what a rule can watch, and how each value is computed from the
//! counts, the window, the forecast and the baseline (off the hot path).

use std::time::Duration;

use tokio::time::Instant;

use crate::hot::accounting::Counters;
use crate::hot::histogram::Counts;
use crate::hot::histogram::HistSet;
use crate::stats::anomaly::Anomaly;
use crate::stats::scale::ServerCapacity;
use crate::stats::window::Window;

/// A quantile of a latency distribution.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Quantile {
    /// Median.
    P50,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
}

impl Quantile {
    /// The quantile as a fraction (0.5, 0.95, 0.99).
    pub fn as_f64(self) -> f64 {
        match self {
            Quantile::P50 => 0.50,
            Quantile::P95 => 0.95,
            Quantile::P99 => 0.99,
        }
    }
}

/// What a rule watches. Units: ratios are 0..=1 (demand may exceed 1),
/// latencies and the ETA are seconds, rates are per second.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Signal {
    /// `min(busy + waiters, max) / max_connections`, time-weighted over
    /// each tick: the post-mortem's "DB connection pool %". Busy is in use
    /// through the guard plus sqlx's untracked connections
    /// (`Snapshot::untracked`); a waiter claims the next free connection,
    /// so a pool with requests waiting is full. The same quantity as
    /// `Snapshot::utilization` and the `poolguard.utilization` gauge.
    #[default]
    Utilization,
    /// `(busy + waiters) / max_connections` (busy as for `Utilization`):
    /// keeps rising once the pool is full, so it also measures how far past
    /// full the demand is.
    Demand,
    /// Acquires waiting for a connection (a count).
    Waiters,
    /// Acquire wait over the rule's window, seconds (timed-out waits included).
    AcquireWait(Quantile),
    /// Query latency through the guard's `Executor`, seconds, over the window.
    QueryLatency(Quantile),
    /// Failed / all queries through the guard's `Executor` in the window.
    QueryErrorRate,
    /// Acquire timeouts plus query timeouts in the window (what became 504s
    /// in INC-EX3).
    Timeouts,
    /// Successful acquires per second over the window.
    AcquireRate,
    /// z-score of the *arrival* rate (acquires started: the offered
    /// traffic, refused and timed-out ones included, so a saturated pool
    /// still shows a spike)
    /// over the last minute against the last hour's per-minute rates, the
    /// latest 10 minutes left out; samples = baseline minutes (warm-up).
    TrafficAnomaly,
    /// Seconds until demand reaches 100 % (the guard's [`Forecast`](crate::Forecast)); no
    /// value when no exhaustion is in sight, 0 when exhausted now.
    ExhaustionEta,
    /// 5xx / all requests the app recorded in the window.
    RequestErrorRate,
    /// 504 responses the app recorded in the window.
    GatewayTimeouts,
    /// Request latency the app recorded, seconds, over the window.
    RequestLatency(Quantile),
    /// Server-wide connection slots in use (PostgreSQL, with
    /// `PoolGuardBuilder::watch_server` (feature `postgres`)).
    ServerUtilization,
    /// How long the oldest acquire still waiting has waited, seconds
    /// (pgbouncer's `maxwait`): the earliest sign of starvation. No value
    /// while nobody waits.
    OldestWait,
    /// How long the pool has been stalled, seconds: acquires wait, none
    /// completes, and the guard's own holds leave slots free (connections
    /// sqlx cannot open or keeps testing and dropping). 0 when not stalled.
    Stall,
    /// Connections the pool opened per second over the window, while
    /// acquires timed out in it (0 when none did): connections opened and
    /// dropped in a loop as acquire timeouts fire (sqlx #3132). Needs a
    /// [`ConnectCounter`](crate::ConnectCounter) (`PoolGuardBuilder::connects`);
    /// no value without one.
    Churn,
}

impl Signal {
    /// Whether the signal is computed over the rule's window.
    pub fn is_windowed(self) -> bool {
        matches!(
            self,
            Signal::AcquireWait(_)
                | Signal::QueryLatency(_)
                | Signal::QueryErrorRate
                | Signal::Timeouts
                | Signal::AcquireRate
                | Signal::RequestErrorRate
                | Signal::GatewayTimeouts
                | Signal::RequestLatency(_)
                | Signal::Churn
        )
    }

    /// How the signal's unit depends on time: `1` for seconds (latencies,
    /// the ETA), `-1` for per-second rates, `0` for ratios, counts and
    /// z-scores. [`Rule::time_scaled`](crate::Rule::time_scaled) uses it.
    pub fn time_dimension(self) -> i32 {
        match self {
            Signal::AcquireWait(_)
            | Signal::QueryLatency(_)
            | Signal::RequestLatency(_)
            | Signal::ExhaustionEta
            | Signal::OldestWait
            | Signal::Stall => 1,
            Signal::AcquireRate | Signal::Churn => -1,
            _ => 0,
        }
    }

    /// A latency percentile (computed from histograms).
    pub(crate) fn is_latency(self) -> bool {
        matches!(
            self,
            Signal::AcquireWait(_) | Signal::QueryLatency(_) | Signal::RequestLatency(_)
        )
    }

    /// The pool's instantaneous counts (utilization, demand, waiters), which
    /// rules judge on time-weighted means.
    pub(crate) fn is_instantaneous(self) -> bool {
        matches!(self, Signal::Utilization | Signal::Demand | Signal::Waiters)
    }

    /// Stable lower-case name (used in logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Utilization => "utilization",
            Signal::Demand => "demand",
            Signal::Waiters => "waiters",
            Signal::AcquireWait(_) => "acquire_wait",
            Signal::QueryLatency(_) => "query_latency",
            Signal::QueryErrorRate => "query_error_rate",
            Signal::Timeouts => "timeouts",
            Signal::AcquireRate => "acquire_rate",
            Signal::TrafficAnomaly => "traffic_anomaly",
            Signal::ExhaustionEta => "exhaustion_eta",
            Signal::RequestErrorRate => "request_error_rate",
            Signal::GatewayTimeouts => "gateway_timeouts",
            Signal::RequestLatency(_) => "request_latency",
            Signal::ServerUtilization => "server_utilization",
            Signal::OldestWait => "oldest_wait",
            Signal::Stall => "stall",
            Signal::Churn => "churn",
        }
    }
}

/// The three instantaneous values, in this order, and the part of
/// utilization the guard counts itself.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Instantaneous {
    /// Busy connections, and the free ones a waiter is about to take,
    /// over `max`: while requests wait the pool is full, even when sqlx
    /// still pings a released connection or opens a new one.
    pub(crate) utilization: f64,
    pub(crate) demand: f64,
    pub(crate) waiters: f64,
    /// Connections in use through the guard over `max` (the part of
    /// `utilization` a tick replaces by its exact area).
    pub(crate) tracked: f64,
}

/// A signal's value over one whole tick (time-weighted average for
/// instantaneous signals; `None`: no value) and when the tick started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TickReading {
    pub(crate) value: Option<f64>,
    pub(crate) started: Instant,
}

/// A tick that ended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EndedTick {
    /// The instantaneous signals, time-weighted over the tick.
    pub(crate) average: Instantaneous,
    /// When the tick started.
    pub(crate) started: Instant,
}

/// Everything a signal can be computed from at one evaluation.
pub(crate) struct SignalInputs<'a> {
    pub(crate) now: Instant,
    pub(crate) counters: &'a Counters,
    /// Copies of the histograms (ticks only).
    pub(crate) hist: Option<&'a HistSet>,
    pub(crate) window: &'a Window,
    pub(crate) current: Instantaneous,
    /// The tick that just ended, if one did.
    pub(crate) tick: Option<EndedTick>,
    /// The traffic anomaly, when a baseline exists.
    pub(crate) anomaly: Option<Anomaly>,
    pub(crate) eta: Option<Duration>,
    pub(crate) server: Option<ServerCapacity>,
    /// The oldest waiter's age, when anyone waits.
    pub(crate) oldest_wait: Option<Duration>,
    /// How long the pool has been stalled (zero: it is not).
    pub(crate) stalled: Duration,
    /// Whether a `ConnectCounter` counts the pool's connection opens.
    pub(crate) connects_counted: bool,
}

fn quantile_secs(c: &Counts, q: Quantile, min: u64) -> Option<f64> {
    if c.total() < min.max(1) {
        return None;
    }
    c.quantile(q.as_f64()).map(|d| d.as_secs_f64())
}

fn ratio(part: u64, whole: u64, min: u64) -> Option<f64> {
    if whole == 0 || whole < min {
        None
    } else {
        Some(part as f64 / whole as f64)
    }
}

/// A signal's value now and, when a tick ended, the tick's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Reading {
    pub(crate) now: Option<f64>,
    pub(crate) tick: Option<TickReading>,
}

impl SignalInputs<'_> {
    /// Computes `signal` with the rule's window and minimum sample count.
    pub(crate) fn read(&self, signal: Signal, window: Duration, min_samples: u64) -> Reading {
        let instantaneous = |pick: fn(&Instantaneous) -> f64| Reading {
            now: Some(pick(&self.current)),
            tick: self.tick.map(|t| TickReading {
                value: Some(pick(&t.average)),
                started: t.started,
            }),
        };
        let value = match signal {
            Signal::Utilization => return instantaneous(|i| i.utilization),
            Signal::Demand => return instantaneous(|i| i.demand),
            Signal::Waiters => return instantaneous(|i| i.waiters),
            Signal::AcquireWait(q) => self.percentile(window, q, min_samples, |h| &h.wait),
            Signal::QueryLatency(q) => self.percentile(window, q, min_samples, |h| &h.query),
            Signal::RequestLatency(q) => self.percentile(window, q, min_samples, |h| &h.request),
            Signal::QueryErrorRate => {
                let d = self.delta(window);
                ratio(d.query_errors_total, d.queries_total, min_samples)
            }
            Signal::RequestErrorRate => {
                let d = self.delta(window);
                ratio(d.requests_5xx_total, d.requests_total, min_samples)
            }
            Signal::Timeouts => {
                let d = self.delta(window);
                Some(d.timeouts_total.saturating_add(d.query_timeouts_total) as f64)
            }
            Signal::GatewayTimeouts => Some(self.delta(window).requests_504_total as f64),
            Signal::AcquireRate => {
                let (older, covered) = self.window.counters_at(self.now, window);
                let secs = covered.as_secs_f64();
                let n = self
                    .counters
                    .acquires_total
                    .saturating_sub(older.acquires_total);
                (secs > 0.0 && covered >= window.mul_f64(0.5) && n >= min_samples)
                    .then(|| n as f64 / secs)
            }
            Signal::TrafficAnomaly => self
                .anomaly
                .filter(|a| a.minutes >= min_samples)
                .map(|a| a.z),
            Signal::ExhaustionEta => self.eta.map(|d| d.as_secs_f64()),
            Signal::ServerUtilization => self.server.map(|s| s.utilization()),
            Signal::OldestWait => self.oldest_wait.map(|d| d.as_secs_f64()),
            Signal::Stall => Some(self.stalled.as_secs_f64()),
            Signal::Churn => {
                let (older, covered) = self.window.counters_at(self.now, window);
                let d = self.counters.since(&older);
                let secs = covered.as_secs_f64();
                (self.connects_counted && secs > 0.0).then(|| {
                    if d.timeouts_total > 0 {
                        d.opened_total as f64 / secs
                    } else {
                        0.0
                    }
                })
            }
        };
        // Windowed and derived signals have one value per evaluation; at the
        // end of a tick that value is also the tick's.
        Reading {
            now: value,
            tick: self.tick.map(|t| TickReading {
                value,
                started: t.started,
            }),
        }
    }

    fn delta(&self, window: Duration) -> Counters {
        let (older, _) = self.window.counters_at(self.now, window);
        self.counters.since(&older)
    }

    fn percentile(
        &self,
        window: Duration,
        q: Quantile,
        min: u64,
        pick: fn(&HistSet) -> &Counts,
    ) -> Option<f64> {
        let older = self.window.hist_at(self.now, window);
        quantile_secs(&pick(self.hist?).since(pick(older)), q, min)
    }
}
