//! One [`Reading`] of the pool per evaluation (and per snapshot), from
//! which the rules' signals, the gauges, the snapshot, the events and the
//! call path's [`Hints`](crate::hot::hints::Hints) are all built; and
//! [`Derived`], what is computed from a reading at most once (the
//! diagnosis, the ranked holders and statements).
//!
//! sqlx's own counts are reconciled here, in one place ([`Reconcile`]):
//! connections busy in sqlx but not checked out through the guard
//! (generic `Acquire::begin` transactions, listeners, the bare pool, a
//! pool busy pinging under load) count as busy once they persisted over
//! two ticks. sqlx pings every returned connection before it is idle again
//! (FINDINGS: its counts lag a release), so a quiet pool's release would
//! otherwise read as busy for a moment and move the level.

use std::time::Duration;

use tokio::time::Instant;

use super::{Monitor, PoolStats, State};
use crate::alert::signal::{EndedTick, Instantaneous};
use crate::diagnose::{Diagnosis, Holder, StatementShare};
use crate::hot::accounting::Counters;
use crate::hot::histogram::HistSet;
use crate::stats::scale::ServerCapacity;

/// `n` of `max` as a ratio (0 for an empty pool).
pub(crate) fn ratio(n: u32, max: u32) -> f64 {
    if max == 0 {
        0.0
    } else {
        f64::from(n) / f64::from(max)
    }
}

/// sqlx's busy connections beyond the guard's count, as far as they
/// persisted: at most two ticks late, never a moment's ping.
#[derive(Debug, Default)]
pub(super) struct Reconcile {
    /// The least of the raw difference at the last two ticks.
    seen: u32,
    /// The raw difference at the last tick.
    last_tick: u32,
}

impl Reconcile {
    /// The untracked connections now.
    pub(super) fn untracked(&self, stats: PoolStats, in_use: u32) -> u32 {
        stats.not_idle().saturating_sub(in_use).min(self.seen)
    }

    /// At the end of a tick: remembers the raw difference.
    pub(super) fn end_tick(&mut self, stats: PoolStats, in_use: u32) {
        let raw = stats.not_idle().saturating_sub(in_use);
        self.seen = raw.min(self.last_tick);
        self.last_tick = raw;
    }
}

/// The pool as one evaluation (or one snapshot) reads it.
pub(super) struct Reading {
    pub(super) now: Instant,
    /// Every count at `now`, the in-use area and the opens included.
    pub(super) counters: Counters,
    /// sqlx's open and idle counts.
    pub(super) stats: PoolStats,
    pub(super) max: u32,
    /// sqlx's busy connections beyond the guard's ([`Reconcile`]).
    pub(super) untracked: u32,
    /// Utilization, demand and waiters now (untracked counted as busy).
    pub(super) current: Instantaneous,
    /// The tick that ended at this evaluation, if one did.
    pub(super) tick: Option<EndedTick>,
    /// Copies of the histograms (on ticks, and for snapshots).
    pub(super) hist: Option<HistSet>,
    pub(super) server: Option<ServerCapacity>,
    /// The oldest waiter's age, when anyone waits.
    pub(super) oldest_wait: Option<Duration>,
    /// How long the pool has been stalled (zero: it is not).
    pub(super) stalled: Duration,
}

/// What a reading yields when the pool is looked at closely: computed at
/// most once per evaluation or snapshot, shared by the gauges, the
/// snapshot and the events.
pub(super) struct Derived {
    pub(super) diagnosis: Option<Diagnosis>,
    pub(super) holders: Vec<Holder>,
    pub(super) statements: Vec<StatementShare>,
}

impl Monitor {
    /// Reads the pool at `now` against the monitor's state, changing
    /// nothing (an evaluation then moves the state on: `evaluate.rs`).
    pub(super) fn read(&self, st: &State, now: Instant, with_hist: bool) -> Reading {
        let acct = &self.shared.acct;
        let stats = self.shared.pool_stats();
        let server = *self.server.lock();
        let counters = acct.counters(now);
        let max = acct.max();
        let untracked = st.reconcile.untracked(stats, counters.in_use);
        let busy = counters.in_use.saturating_add(untracked);
        let wanted = busy.saturating_add(counters.waiters);
        let current = Instantaneous {
            utilization: ratio(wanted.min(max), max),
            demand: ratio(wanted, max),
            waiters: f64::from(counters.waiters),
            tracked: ratio(counters.in_use, max),
        };
        Reading {
            now,
            stalled: st.stalled_for(now, &counters, max),
            counters,
            stats,
            max,
            untracked,
            current,
            tick: None,
            hist: with_hist.then(|| acct.hist_set()),
            server,
            oldest_wait: acct.oldest_wait(now),
        }
    }

    /// The diagnosis and the top holders and statements of `reading`
    /// (whose histograms must be copied). `for_snapshot`: all of it;
    /// otherwise (the cause gauges) only a diagnosis, and nothing when the
    /// pool is not under pressure.
    pub(super) fn derive(&self, st: &State, reading: &Reading, for_snapshot: bool) -> Derived {
        if !for_snapshot && !self.pressed(st, reading) {
            return Derived {
                diagnosis: None,
                holders: Vec::new(),
                statements: Vec::new(),
            };
        }
        let mut holders = self.top_holders(st, reading.now);
        let mut statements = self.top_statements(st, reading, crate::diagnose::TOP);
        let diagnosis = self.diagnosis(st, reading, &holders, &statements);
        // Measured in wall time; said in the guard's own (under a time
        // scale, the incident's).
        let k = self.timing.time_scale;
        if k != 1.0 {
            holders.iter_mut().for_each(|h| h.in_guard_time(k));
            statements.iter_mut().for_each(|s| s.in_guard_time(k));
        }
        Derived {
            diagnosis: diagnosis.map(|d| d.in_guard_time(k)),
            holders,
            statements,
        }
    }
}
