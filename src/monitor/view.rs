//! What the guard's readers see, built from the monitor's state: the
//! snapshot, every rule's status and the scale hint.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Monitor, PoolStats, State};
use crate::hot::accounting::Counters;
use crate::hot::histogram::HistSet;
use crate::report::snapshot::{AlertStatus, Percentiles, Snapshot};
use crate::stats::scale::{recommend, ScaleHint, ServerCapacity};

/// `n` of `max` as a ratio (0 for an empty pool).
pub(crate) fn ratio(n: u32, max: u32) -> f64 {
    if max == 0 {
        0.0
    } else {
        f64::from(n) / f64::from(max)
    }
}

impl Monitor {
    /// Every rule's state, in rule order.
    pub(crate) fn alerts(&self) -> Vec<AlertStatus> {
        let now = Instant::now();
        let st = self.state.lock();
        self.statuses(&st, now)
    }

    fn statuses(&self, st: &State, now: Instant) -> Vec<AlertStatus> {
        self.rules
            .iter()
            .zip(&st.trackers)
            .map(|(r, t)| AlertStatus {
                rule: Arc::clone(&r.name),
                severity: r.severity,
                signal: r.signal,
                state: t.state(),
                value: t.value,
                threshold: r.threshold,
                in_state_for: now.saturating_duration_since(t.since()),
            })
            .collect()
    }

    /// The scale hint for the load now.
    pub(crate) fn scale_hint(&self) -> ScaleHint {
        let server = *self.server.lock();
        let st = self.state.lock();
        self.hint(&st, server)
    }

    /// Needed connections: the largest of the last tick's average demand,
    /// the demand now, and Little's law's offered load. (The demand now
    /// counts: a rule that fires between ticks on a pool that just filled
    /// would otherwise read a quiet tick's average and recommend fewer
    /// connections than are in use; seen in CI on a loaded machine.)
    pub(super) fn hint(&self, st: &State, server: Option<ServerCapacity>) -> ScaleHint {
        let acct = &self.shared.acct;
        let c = acct.counters();
        let now = f64::from(c.in_use.saturating_add(c.waiters));
        let needed = st
            .tick_demand
            .unwrap_or(0.0)
            .max(now)
            .max(st.forecast.offered_load.unwrap_or(0.0));
        recommend(
            needed,
            self.scale.utilization,
            acct.max(),
            self.scale.instances,
            server,
        )
    }

    /// The pool now, with window statistics.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let acct = &self.shared.acct;
        let mut c = acct.counters();
        c.busy_ms = acct.busy_ms(now);
        let stats = self.shared.pool_stats();
        let hist = acct.hist_set();
        let st = self.state.lock();
        self.build_snapshot(&st, now, c, stats, &hist)
    }

    pub(super) fn build_snapshot(
        &self,
        st: &State,
        now: Instant,
        c: Counters,
        stats: PoolStats,
        hist: &HistSet,
    ) -> Snapshot {
        let window = self.timing.stats_window;
        let (older, covered) = st.window.counters_at(now, window);
        let d = c.since(&older);
        let old = st.window.hist_at(now, window);
        let max = self.shared.acct.max();
        let untracked = self.shared.untracked.persisted(stats, c.in_use);
        let busy = c.in_use.saturating_add(untracked);
        let wanted = busy.saturating_add(c.waiters);
        let hold_time = Percentiles::from_counts(&hist.hold.since(&old.hold));
        let stalled_for = st.stalled_for(now, &c, max);
        let diagnosis = self.diagnosis(st, now, &c, wanted, hist);
        let holders = self.top_holders(st, now);
        let statements = self.top_statements(st, now, &c, crate::diagnose::TOP);
        Snapshot {
            pool: Arc::clone(&self.shared.name),
            level: st.level,
            in_use: c.in_use,
            untracked,
            idle: stats.idle,
            size: stats.size,
            max,
            waiters: c.waiters,
            utilization: ratio(wanted.min(max), max),
            demand: ratio(wanted, max),
            acquire_wait: Percentiles::from_counts(&hist.wait.since(&old.wait)),
            hold_time,
            query_latency: Percentiles::from_counts(&hist.query.since(&old.query)),
            acquires_in_window: d.acquires_total,
            acquire_timeouts_in_window: d.timeouts_total,
            queries_in_window: d.queries_total,
            query_errors_in_window: d.query_errors_total,
            window: covered,
            acquires_total: c.acquires_total,
            acquire_timeouts_total: c.timeouts_total,
            acquire_errors_total: c.errors_total,
            exhaustion_eta: st.forecast.eta,
            oldest_wait: self.shared.acct.oldest_wait(now),
            stalled_for,
            diagnosis,
            holders,
            statements,
        }
    }
}
