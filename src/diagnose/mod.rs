//! Diagnosis: *why* the pool fills, with the evidence in numbers and the
//! action that fits.
//!
//! A pool fills for different reasons with opposite remedies. Little's law
//! (connections in use = arrival rate x mean hold) splits the two common
//! ones exactly: the growth of the in-use count over its baseline is the
//! growth of the arrival rate times the growth of the mean hold, so in
//! logarithms each factor's share of the growth is its share of the sum.
//! The others have their own signatures:
//!
//! - **more arrivals** at the usual hold (the INC-EX3 campaign): add
//!   connections or instances (Little's law with the server's limit), shed;
//! - **longer holds** at the usual arrivals (a slow statement, a lock, a
//!   slow database): do not grow the pool, which makes a slow database
//!   slower (HikariCP's "About Pool Sizing"); find what holds;
//! - a **leak**: in-use area that no ended hold accounts for (connections
//!   taken and not returned), with the acquiring call site (leak
//!   detection's report, or the site whose held connections are oldest);
//! - the **server's limit**: the database's `max_connections` nearly all
//!   used across instances (with `watch_server`), so the pool cannot open
//!   what it needs;
//! - a **stalled** pool: acquires wait, none completes, the guard's holds
//!   leave slots free (connections that cannot be opened, or sqlx testing
//!   and dropping them in a loop as acquire timeouts fire, sqlx #3132).
//!
//! Everything here is pure: the monitor gathers [`Inputs`] on its tick.

mod holders;

use std::panic::Location;
use std::time::Duration;

pub use holders::{Holder, StatementShare};
pub(crate) use holders::{HolderHistory, StatementHistory, TOP};

use crate::stats::history::Usual;
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

/// What the monitor gathers for a diagnosis (window deltas).
#[derive(Clone, Debug, Default)]
pub(crate) struct Inputs {
    pub(crate) max: u32,
    pub(crate) waiters: u32,
    /// Seconds the window covers.
    pub(crate) window: f64,
    /// Acquires offered, completed, and the in-use area (ms) in the window.
    pub(crate) attempts: u64,
    pub(crate) acquires: u64,
    pub(crate) busy_ms: u64,
    /// Holds that ended in the window and their area (ms, each clipped to
    /// the window).
    pub(crate) holds_ended: u64,
    pub(crate) ended_ms: f64,
    pub(crate) hold_p50: Option<Duration>,
    pub(crate) hold_p95: Option<Duration>,
    /// The usual load.
    pub(crate) baseline: Option<Usual>,
    /// Buckets since the arrival rate and the mean hold rose past the
    /// usual (see `History::onsets`).
    pub(crate) onsets: (Option<u32>, Option<u32>),
    pub(crate) stalled_for: Duration,
    pub(crate) stall_after: Duration,
    pub(crate) server: Option<ServerCapacity>,
    /// The oldest reported leak's call site, when leak detection is on.
    pub(crate) leak_at: Option<&'static Location<'static>>,
    /// The call sites holding the most pool time in the window.
    pub(crate) holders: Vec<Holder>,
    /// The statements through the guard holding the most pool time.
    pub(crate) statements: Vec<StatementShare>,
}

impl Inputs {
    /// Where the leak is: the leak table's oldest report, else the call
    /// site whose connections held now are the oldest on average, once that
    /// average is half the window or more.
    fn leak_site(&self) -> Option<&'static Location<'static>> {
        let window = Duration::from_secs_f64(self.window.max(0.0));
        self.leak_at.or_else(|| {
            self.holders
                .iter()
                .filter(|h| h.open_for.is_some_and(|a| a >= window / 2))
                .max_by_key(|h| h.open_for)
                .and_then(|h| h.site)
        })
    }
}

/// Growth under this factor is "as usual"; past it, risen (the one
/// threshold for both the causes' split and `History::onsets`).
pub(crate) const USUAL: f64 = 1.2;
/// Server slots this full leave the pool nothing to open.
const SERVER_FULL: f64 = 0.95;

/// The diagnosis of a pool that fills; `grow` turns connections needed
/// into the scale hint (Little's law with the server's limit).
pub(crate) fn diagnose(i: &Inputs, grow: impl Fn(f64) -> ScaleHint) -> Diagnosis {
    let secs = i.window.max(1e-9);
    let in_use = i.busy_ms as f64 / 1e3 / secs;
    let ended = i.ended_ms / 1e3 / secs;
    let mean_hold = (i.holds_ended > 0).then(|| i.ended_ms / 1e3 / i.holds_ended as f64);
    let evidence = Evidence {
        arrival_rate: i.attempts as f64 / secs,
        baseline_arrival_rate: i.baseline.map(|b| b.rate),
        mean_hold: mean_hold.map(Duration::from_secs_f64),
        baseline_mean_hold: i.baseline.map(|b| Duration::from_secs_f64(b.hold)),
        hold_p50: i.hold_p50,
        hold_p95: i.hold_p95,
        baseline_hold_p50: i.baseline.and_then(|b| b.hold_p50),
        baseline_hold_p95: i.baseline.and_then(|b| b.hold_p95),
        in_use,
        not_returned: (in_use - ended).max(0.0),
        acquires_per_second: i.acquires as f64 / secs,
        waiters: i.waiters,
        max: i.max,
        stalled_for: i.stalled_for,
        server: i.server,
    };
    let (shares, action) = judge(i, &evidence, grow);
    Diagnosis {
        cause: shares[0].0,
        shares,
        evidence,
        action,
    }
}

fn judge(i: &Inputs, e: &Evidence, grow: impl Fn(f64) -> ScaleHint) -> (Vec<(Cause, f64)>, Action) {
    if !i.stalled_for.is_zero() && i.stalled_for >= i.stall_after {
        return (vec![(Cause::Stalled, 1.0)], Action::Unstick);
    }
    if let Some(s) = i.server.filter(|s| s.utilization() >= SERVER_FULL) {
        return (
            vec![(Cause::ServerLimit, 1.0)],
            Action::RaiseServerLimit {
                used: s.backends,
                available: s.available(),
            },
        );
    }
    // Little's law: in use = arrivals x hold, now against the baseline.
    let hold = e.mean_hold.map(|h| h.as_secs_f64());
    let Some(((rate0, hold0), hold)) = i
        .baseline
        .map(|b| (b.rate, b.hold))
        .zip(hold)
        .filter(|((r, h), _)| *r > 0.0 && *h > 0.0)
    else {
        let needed = e.arrival_rate * hold.unwrap_or(0.0);
        return leak_or(e, i, vec![(Cause::Unknown, 1.0)], || {
            Action::Grow(grow(needed.max(e.in_use)))
        });
    };
    let arrivals = (e.arrival_rate / rate0).max(1.0).ln();
    let holds = (hold / hold0).max(1.0).ln();
    // Connections not returned against the growth over the usual load.
    let usual = rate0 * hold0;
    let leak = if e.not_returned >= 1.0 {
        (e.not_returned / (e.in_use - usual).max(e.not_returned)).min(1.0)
    } else {
        0.0
    };
    let grown = arrivals + holds;
    let mut shares = if grown < USUAL.ln() {
        vec![(Cause::Undersized, 1.0 - leak)]
    } else {
        vec![
            (Cause::MoreArrivals, (1.0 - leak) * arrivals / grown),
            (Cause::LongerHolds, (1.0 - leak) * holds / grown),
        ]
    };
    if leak > 0.0 {
        shares.push((Cause::Leak, leak));
    }
    shares.retain(|(_, s)| *s > 0.005);
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    // Both grew: the one that rose first is the root, whichever is larger
    // now (a database slowing under a traffic spike lengthens holds more
    // than the spike grew; retries after slow statements raise arrivals).
    if let (Some(a), Some(h)) = i.onsets {
        let root = match a.cmp(&h) {
            std::cmp::Ordering::Greater => Some(Cause::MoreArrivals),
            std::cmp::Ordering::Less => Some(Cause::LongerHolds),
            std::cmp::Ordering::Equal => None,
        };
        if let Some(pos) = root.and_then(|r| shares.iter().position(|(c, _)| *c == r)) {
            // A leak that explains most of the pool stays first.
            if shares[0].0 != Cause::Leak {
                let first = shares.remove(pos);
                shares.insert(0, first);
            }
        }
    }
    let action = match shares[0].0 {
        Cause::LongerHolds => Action::FindSlowHolds {
            hold_ratio: hold / hold0,
            top: i.holders.first().copied(),
            statement: i.statements.first().cloned(),
        },
        Cause::Leak => Action::FixLeak { at: i.leak_site() },
        // At the usual hold: longer holds are not something to size for.
        _ => Action::Grow(grow(e.arrival_rate * hold0)),
    };
    (shares, action)
}

/// Without a baseline only a leak can still be told apart.
fn leak_or(
    e: &Evidence,
    i: &Inputs,
    otherwise: Vec<(Cause, f64)>,
    action: impl FnOnce() -> Action,
) -> (Vec<(Cause, f64)>, Action) {
    if e.not_returned >= 1.0 && e.not_returned >= 0.5 * e.in_use {
        (
            vec![(Cause::Leak, 1.0)],
            Action::FixLeak { at: i.leak_site() },
        )
    } else {
        (otherwise, action())
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

#[cfg(test)]
mod tests;
