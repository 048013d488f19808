//! What a diagnosis says: the [`Cause`], the [`Action`], the
//! [`Evidence`] in numbers, and the [`Diagnosis`] that holds them, with
//! the one-line text a log or an alert prints.

use std::panic::Location;
use std::time::Duration;

use super::guard_duration;
use super::holders::{Holder, StatementShare};
use crate::stats::scale::{ScaleHint, ServerCapacity};

/// Why the pool fills.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// More acquires arrive than usual, each holding about as long.
    MoreArrivals,
    /// Acquires arrive as usual but hold their connections longer.
    LongerHolds,
    /// Connections are taken and not returned.
    Leak,
    /// The database server has (nearly) no connection slots left.
    ServerLimit,
    /// Acquires wait and none completes although the guard's holds leave
    /// slots free.
    Stalled,
    /// Arrivals and holds are as usual: the pool is small for the usual
    /// load.
    Undersized,
    /// No baseline yet (the guard learns one over its first minutes): the
    /// split between arrivals and holds is unknown.
    Unknown,
}

impl Cause {
    /// Every cause, in a fixed order (metrics label values).
    pub const ALL: &'static [Cause] = &[
        Cause::MoreArrivals,
        Cause::LongerHolds,
        Cause::Leak,
        Cause::ServerLimit,
        Cause::Stalled,
        Cause::Undersized,
        Cause::Unknown,
    ];

    /// Lower-case name, as on metrics and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::MoreArrivals => "more_arrivals",
            Cause::LongerHolds => "longer_holds",
            Cause::Leak => "leak",
            Cause::ServerLimit => "server_limit",
            Cause::Stalled => "stalled",
            Cause::Undersized => "undersized",
            Cause::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do about it.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Grow the pool (or the instances) as the hint says: the load needs
    /// it by Little's law at the usual hold, within the server's limit.
    Grow(ScaleHint),
    /// Do not grow the pool: holds are this many times their baseline.
    /// Find the statement or lock that holds (the hold percentiles, the
    /// query latency, the database's own view).
    FindSlowHolds {
        /// Mean hold now over its baseline.
        hold_ratio: f64,
        /// The call site holding the most pool time in the window.
        top: Option<Holder>,
        /// The statement through the guard holding the most pool time.
        statement: Option<StatementShare>,
    },
    /// Find the code that keeps connections.
    FixLeak {
        /// Where the unreturned connections were acquired: leak detection's
        /// oldest report, else the call site whose held connections are
        /// oldest; `None` when only the count is known.
        #[cfg_attr(feature = "serde", serde(serialize_with = "location_text"))]
        at: Option<&'static Location<'static>>,
    },
    /// Raise the server's `max_connections` or put a pooler (pgbouncer) in
    /// front of it; growing pools cannot help.
    RaiseServerLimit {
        /// Slots in use server-wide.
        used: u32,
        /// Slots ordinary clients can use.
        available: u32,
    },
    /// The pool hands out nothing: check that the database accepts
    /// connections; under acquire timeouts with sqlx's
    /// `test_before_acquire(true)`, turn the test off or raise
    /// `acquire_timeout` (sqlx #3132); shed until it recovers.
    Unstick,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Grow(h) if h.exceeds_server => write!(
                f,
                "the load needs {} connections per instance x {} instances, more than the \
                 server's slots: add server capacity or a pooler, and shed",
                h.recommended_max, h.instances
            ),
            Action::Grow(h) if h.recommended_max <= h.current_max => write!(
                f,
                "the load now needs {:.0} connections, {} at the scale target: the pool still \
                 suffices, but demand is rising; be ready to add instances or shed",
                h.needed, h.recommended_max
            ),
            Action::Grow(h) => write!(
                f,
                "grow the pool from {} to {} connections (x {} instances), or add instances; \
                 shed meanwhile",
                h.current_max, h.recommended_max, h.instances
            ),
            Action::FindSlowHolds {
                hold_ratio,
                top,
                statement,
            } => {
                write!(
                    f,
                    "do not grow the pool: connections are held {hold_ratio:.1}x longer than \
                     usual; find the slow statement or lock"
                )?;
                if let Some(s) = statement {
                    write!(f, "; {s}")?;
                }
                if let Some(top) = top {
                    write!(f, "; {top}")?;
                }
                Ok(())
            }
            Action::FixLeak { at: Some(at) } => {
                write!(f, "connections are not returned: leak at {at}")
            }
            Action::FixLeak { at: None } => write!(
                f,
                "connections are not returned, and no call site stands out yet (leak \
                 detection reports each one past its threshold)"
            ),
            Action::RaiseServerLimit { used, available } => write!(
                f,
                "the server has {used} of {available} connection slots in use across \
                 instances: raise max_connections or add a pooler; do not grow pools"
            ),
            Action::Unstick => write!(
                f,
                "the pool hands out no connections with slots free: check that the database \
                 accepts connections; with test_before_acquire(true) under acquire timeouts \
                 turn it off or raise acquire_timeout (sqlx #3132)"
            ),
        }
    }
}

/// The numbers behind a diagnosis, over the recent (stats) window.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Evidence {
    /// Acquires offered per second (refused ones included).
    pub arrival_rate: f64,
    /// The usual arrival rate (median of the last hour's minutes, the
    /// latest 10 left out); `None` before the guard has learned it.
    pub baseline_arrival_rate: Option<f64>,
    /// Mean hold of the holds that ended in the window (each counted
    /// within it).
    pub mean_hold: Option<Duration>,
    /// The usual mean hold: Little's W of the baseline minutes (in-use area
    /// over acquires; equal to the above for steady load).
    pub baseline_mean_hold: Option<Duration>,
    /// Hold time percentiles of the holds that ended.
    pub hold_p50: Option<Duration>,
    /// 95th percentile of the hold time.
    pub hold_p95: Option<Duration>,
    /// The usual median hold (median over the baseline's minutes).
    pub baseline_hold_p50: Option<Duration>,
    /// The usual 95th percentile of the hold.
    pub baseline_hold_p95: Option<Duration>,
    /// Connections in use through the guard, time-weighted mean.
    pub in_use: f64,
    /// Connections in use that no ended hold accounts for (not returned).
    pub not_returned: f64,
    /// Acquires completed per second.
    pub acquires_per_second: f64,
    /// Acquires waiting now.
    pub waiters: u32,
    /// The pool's `max_connections`.
    pub max: u32,
    /// How long the pool has been stalled (zero: it is not).
    pub stalled_for: Duration,
    /// The server's slots, when watched.
    pub server: Option<ServerCapacity>,
}

/// Why the pool fills, the evidence and what to do: on every saturation
/// event and pool-rule alert, in the snapshot and in `health()`.
///
/// ```
/// # async fn demo(guard: poolguard::PoolGuard<sqlx::Sqlite>) {
/// if let Some(d) = guard.snapshot().diagnosis {
///     println!("pool fills: {} ({})", d.cause, d.action);
/// }
/// # }
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Diagnosis {
    /// The cause named first: the largest share, except that when both
    /// arrivals and holds rose, the one that rose first (the root) leads.
    pub cause: Cause,
    /// Every cause that contributes, with its share of the growth (0..=1;
    /// shares under 0.5 % left out), `cause` first, then largest first.
    pub shares: Vec<(Cause, f64)>,
    /// The numbers.
    pub evidence: Evidence,
    /// What fits the dominant cause.
    pub action: Action,
}

impl Evidence {
    /// The figures measured in wall time, in the guard's own time (`k`:
    /// the time scale; rates divide by it, durations multiply).
    fn in_guard_time(&mut self, k: f64) {
        let d = |d: &mut Option<Duration>| *d = d.map(|d| guard_duration(d, k));
        self.arrival_rate /= k;
        self.baseline_arrival_rate = self.baseline_arrival_rate.map(|r| r / k);
        self.acquires_per_second /= k;
        d(&mut self.mean_hold);
        d(&mut self.baseline_mean_hold);
        d(&mut self.hold_p50);
        d(&mut self.hold_p95);
        d(&mut self.baseline_hold_p50);
        d(&mut self.baseline_hold_p95);
        self.stalled_for = guard_duration(self.stalled_for, k);
    }
}

impl Diagnosis {
    /// Every rate and duration in the guard's own time under a time scale
    /// `k` (the incident's seconds, not the wall's); `k = 1` changes
    /// nothing.
    pub(crate) fn in_guard_time(mut self, k: f64) -> Self {
        if k == 1.0 {
            return self;
        }
        self.evidence.in_guard_time(k);
        if let Action::FindSlowHolds { top, statement, .. } = &mut self.action {
            if let Some(h) = top {
                h.in_guard_time(k);
            }
            if let Some(s) = statement {
                s.in_guard_time(k);
            }
        }
        self
    }
}

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.evidence;
        write!(f, "{}", self.cause)?;
        if self.shares.len() > 1 {
            write!(f, " {:.0} %", self.shares[0].1 * 100.0)?;
        }
        for (c, s) in self.shares.iter().skip(1) {
            write!(f, " (+{c} {:.0} %)", s * 100.0)?;
        }
        write!(f, ": {:.0}/s", e.arrival_rate)?;
        if let Some(b) = e.baseline_arrival_rate {
            write!(f, " (usual {b:.0}/s)")?;
        }
        if let Some(h) = e.mean_hold {
            write!(f, ", hold {:.0} ms", h.as_secs_f64() * 1e3)?;
        }
        if let Some(b) = e.baseline_mean_hold {
            write!(f, " (usual {:.0} ms)", b.as_secs_f64() * 1e3)?;
        }
        if let (Some(p95), Some(b)) = (e.hold_p95, e.baseline_hold_p95) {
            write!(
                f,
                ", hold p95 {:.0} ms (usual {:.0} ms)",
                p95.as_secs_f64() * 1e3,
                b.as_secs_f64() * 1e3
            )?;
        }
        if e.not_returned >= 1.0 {
            write!(f, ", {:.0} not returned", e.not_returned)?;
        }
        write!(f, "; {}", self.action)
    }
}

/// A call site as `file:line:column`.
#[cfg(feature = "serde")]
fn location_text<S: serde::Serializer>(
    location: &Option<&'static Location<'static>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match location {
        Some(l) => s.collect_str(l),
        None => s.serialize_none(),
    }
}
