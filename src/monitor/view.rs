//! What the guard's readers see, built from the monitor's state: the
//! snapshot, every rule's status and the scale hint.

use std::sync::Arc;

use tokio::time::Instant;

use super::reading::{Derived, Reading};
use super::{Monitor, State};
use crate::report::snapshot::{AlertStatus, Percentiles, Snapshot};
use crate::stats::scale::{recommend, ScaleHint};

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
        let st = self.state.lock();
        let reading = self.read(&st, Instant::now(), false);
        self.hint(&st, &reading)
    }

    /// Needed connections: the largest of the last tick's average demand,
    /// the demand now, and Little's law's offered load. (The demand now
    /// counts: a rule that fires between ticks on a pool that just filled
    /// would otherwise read a quiet tick's average and recommend fewer
    /// connections than are in use; seen in CI on a loaded machine.)
    pub(super) fn hint(&self, st: &State, reading: &Reading) -> ScaleHint {
        let c = &reading.counters;
        let now = f64::from(c.in_use.saturating_add(c.waiters));
        let needed = st
            .tick_demand
            .unwrap_or(0.0)
            .max(now)
            .max(st.forecast.offered_load.unwrap_or(0.0));
        recommend(
            needed,
            self.scale.utilization,
            reading.max,
            self.scale.instances,
            reading.server,
        )
    }

    /// The pool now, with window statistics.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let st = self.state.lock();
        let reading = self.read(&st, Instant::now(), true);
        let derived = self.derive(&st, &reading, true);
        self.build_snapshot(&st, &reading, derived)
    }

    /// The snapshot of `reading` (histograms copied) and what it yields.
    pub(super) fn build_snapshot(&self, st: &State, r: &Reading, derived: Derived) -> Snapshot {
        let (now, c) = (r.now, &r.counters);
        let hist = r
            .hist
            .as_ref()
            .expect("a snapshot's reading has histograms");
        let window = self.timing.stats_window;
        let (older, covered) = st.window.counters_at(now, window);
        let d = c.since(&older);
        let old = st.window.hist_at(now, window);
        Snapshot {
            pool: Arc::clone(&self.shared.name),
            level: st.level,
            in_use: c.in_use,
            untracked: r.untracked,
            idle: r.stats.idle,
            size: r.stats.size,
            max: r.max,
            waiters: c.waiters,
            utilization: r.current.utilization,
            demand: r.current.demand,
            acquire_wait: Percentiles::from_counts(&hist.wait.since(&old.wait)),
            hold_time: Percentiles::from_counts(&hist.hold.since(&old.hold)),
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
            oldest_wait: r.oldest_wait,
            stalled_for: r.stalled,
            diagnosis: derived.diagnosis,
            holders: derived.holders,
            statements: derived.statements,
        }
    }
}
