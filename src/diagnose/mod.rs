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
//! Everything here is pure: the monitor gathers [`Facts`] on its tick.

mod diagnosis;
mod holders;

use std::panic::Location;
use std::time::Duration;

pub use diagnosis::{Action, Cause, Diagnosis, Evidence};
pub use holders::{Holder, StatementShare};
pub(crate) use holders::{HolderHistory, StatementHistory, TOP};

use crate::stats::history::Usual;
use crate::stats::scale::{ScaleHint, ServerCapacity};

/// A wall duration of a guard running `k` times faster than its incident
/// (`PoolGuardBuilder::time_scale`) in the guard's own time.
pub(crate) fn guard_duration(d: Duration, k: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * k).unwrap_or(Duration::MAX)
}

/// What the monitor gathers for a diagnosis (window deltas).
#[derive(Clone, Debug, Default)]
pub(crate) struct Facts {
    pub(crate) max: u32,
    pub(crate) waiters: u32,
    /// Seconds the window covers.
    pub(crate) window: f64,
    /// Acquires offered, completed, and the in-use area (ms) in the window.
    pub(crate) arrivals: u64,
    pub(crate) acquires: u64,
    pub(crate) in_use_ms: u64,
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

impl Facts {
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
pub(crate) fn diagnose(i: &Facts, grow: impl Fn(f64) -> ScaleHint) -> Diagnosis {
    let secs = i.window.max(1e-9);
    let in_use = i.in_use_ms as f64 / 1e3 / secs;
    let ended = i.ended_ms / 1e3 / secs;
    let mean_hold = (i.holds_ended > 0).then(|| i.ended_ms / 1e3 / i.holds_ended as f64);
    let evidence = Evidence {
        arrival_rate: i.arrivals as f64 / secs,
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

fn judge(i: &Facts, e: &Evidence, grow: impl Fn(f64) -> ScaleHint) -> (Vec<(Cause, f64)>, Action) {
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
    i: &Facts,
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

#[cfg(test)]
mod tests;
