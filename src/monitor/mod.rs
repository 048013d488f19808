//! The monitor: the background task that turns the hot path's counts into
//! rule states, levels, forecasts, gauges and events.
//!
//! The task wakes on a tick (default 1 s), when the hot path reports that a
//! count crossed a rule's edge, and exactly when a timer (a hold, a recovery,
//! a leak threshold) runs out. Each wake is one evaluation
//! (`evaluate.rs`): read the counts, roll the windows, feed the forecast and
//! the baseline once per tick, judge every rule, derive the level, then
//! publish gauges and events (`publish.rs`). `view.rs` builds what the
//! guard's readers see (snapshot, alert states, scale hint). The task holds
//! the monitor strongly but stops as soon as the last `PoolGuard` clone is
//! dropped (the accounting is closed).
//!
//! [`Shared`] is the call path's part of a guard; [`Monitor`] is this
//! task's.

mod diagnosis;
mod evaluate;
mod publish;
mod reading;
#[cfg(feature = "postgres")]
pub(crate) mod server;
mod shared;
mod tick;
mod view;

use std::collections::HashMap;
use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use metrics::Gauge;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::alert::rule_set::RuleSet;
use crate::alert::saturation::Level;
use crate::alert::tracker::RuleTracker;
use crate::diagnose::{HolderHistory, StatementHistory};
use crate::hot::accounting::{Accounting, Counters};
use crate::report::registry::Gauges;
use crate::stats::anomaly::Anomaly;
use crate::stats::forecast::{Forecast, Forecaster};
use crate::stats::history::{History, Usual};
use crate::stats::learned::Learned;
use crate::stats::scale::ServerCapacity;
use crate::stats::window::Window;

pub(crate) use shared::{PoolStats, Shared, StatsFn};
use tick::TickAverage;
#[cfg(feature = "bench-hooks")]
pub(crate) use tick::TickEnd;

/// The latest server reading, written by the server watcher.
pub(crate) type ServerSlot = Arc<Mutex<Option<ServerCapacity>>>;

/// Starts a background task that feeds the server slot (`server.rs`).
pub(crate) type ServerTask =
    Box<dyn FnOnce(ServerSlot, Arc<Accounting>, &tokio::runtime::Handle) + Send>;

/// What the monitor keeps between evaluations, under one lock.
#[derive(Debug)]
struct State {
    trackers: Vec<RuleTracker>,
    level: Level,
    level_since: Instant,
    average: TickAverage,
    /// Demand (in connections) averaged over the last whole tick.
    tick_demand: Option<f64>,
    window: Window,
    forecaster: Forecaster,
    forecast: Forecast,
    /// The one per-minute history: the anomaly's baseline and the usual
    /// load a diagnosis compares with.
    history: History,
    /// The traffic anomaly, judged once a tick.
    anomaly: Option<Anomaly>,
    /// The usual load (the history's medians), once a tick.
    usual: Option<Usual>,
    /// Who held the pool, per call site, over the stats window.
    holders: HolderHistory,
    /// And per statement through the guard.
    statements: StatementHistory,
    /// `acquires_total` at the last evaluation that was not stalled, and
    /// when (a stall is measured from there).
    progress: (u64, Instant),
    /// sqlx's counts against the guard's (`reading.rs`).
    reconcile: reading::Reconcile,
}

impl State {
    /// Whether the pool is stalled now: acquires wait, none completed since
    /// the last evaluation that was not stalled, and the guard's own holds
    /// leave room (otherwise a release is what they wait for: exhaustion,
    /// not a stall).
    fn stuck(&self, c: &Counters, max: u32) -> bool {
        c.waiters > 0 && c.in_use < max && c.acquires_total == self.progress.0
    }

    /// How long the pool has been stalled at `now` (zero: it is not).
    fn stalled_for(&self, now: Instant, c: &Counters, max: u32) -> Duration {
        if self.stuck(c, max) {
            now.saturating_duration_since(self.progress.1)
        } else {
            Duration::ZERO
        }
    }
}

/// How the monitor runs (validated by the builder).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) tick: Duration,
    pub(crate) stats_window: Duration,
    pub(crate) forecast_window: Duration,
    /// Bucket of the traffic baseline (one minute unless time-scaled).
    pub(crate) baseline_bucket: Duration,
    /// `PoolGuardBuilder::time_scale`: the diagnosis reports its rates
    /// and durations in the guard's own time.
    pub(crate) time_scale: f64,
}

/// What the scale hint aims for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScaleTarget {
    /// Utilization the recommended size aims for.
    pub(crate) utilization: f64,
    /// Application instances sharing the server.
    pub(crate) instances: u32,
}

/// The background task's part of a guard: the rules, their state and the
/// statistics between ticks.
pub(crate) struct Monitor {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rules: RuleSet,
    timing: Timing,
    scale: ScaleTarget,
    pub(crate) server: ServerSlot,
    state: Mutex<State>,
    gauges: Gauges,
    /// One gauge per call site seen (at most 65).
    holder_gauges: Mutex<HashMap<Option<&'static Location<'static>>, Gauge>>,
    /// One gauge per statement seen (at most 65), by key.
    statement_gauges: Mutex<HashMap<u64, Gauge>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("shared", &self.shared)
            .field("rules", &self.rules.len())
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    pub(crate) fn new(
        shared: Arc<Shared>,
        rules: RuleSet,
        timing: Timing,
        scale: ScaleTarget,
        gauges: Gauges,
    ) -> Self {
        let now = Instant::now();
        let counter_span = rules
            .iter()
            .filter(|r| r.signal.is_windowed())
            .map(|r| r.window)
            .chain([timing.stats_window, timing.baseline_bucket])
            .max()
            .unwrap_or(timing.baseline_bucket);
        let hist_windows: Vec<Duration> = rules
            .iter()
            .filter(|r| r.signal.is_latency())
            .map(|r| r.window)
            .chain([timing.stats_window])
            .collect();
        let acct = &shared.acct;
        let c = acct.counters(now);
        Self {
            state: Mutex::new(State {
                trackers: rules.iter().map(|_| RuleTracker::new(now)).collect(),
                level: Level::Normal,
                level_since: now,
                average: TickAverage::new(now, c.in_use_ms),
                tick_demand: None,
                window: Window::new(
                    now,
                    timing.tick,
                    counter_span,
                    &hist_windows,
                    c,
                    acct.hist_set(),
                ),
                forecaster: Forecaster::new(acct.clock, timing.forecast_window),
                forecast: Forecast::default(),
                anomaly: None,
                usual: None,
                progress: (c.acquires_total, now),
                reconcile: reading::Reconcile::default(),
                history: History::new(now, c, acct.hold.counts(), timing.baseline_bucket),
                // Zero at the start: the first tick has a baseline.
                holders: HolderHistory::starting(now, timing.stats_window),
                statements: StatementHistory::starting(now, timing.stats_window),
            }),
            shared,
            rules,
            timing,
            scale,
            server: Arc::new(Mutex::new(None)),
            gauges,
            holder_gauges: Mutex::new(HashMap::new()),
            statement_gauges: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn level(&self) -> Level {
        self.state.lock().level
    }

    pub(crate) fn forecast(&self) -> Forecast {
        self.state.lock().forecast
    }

    /// What this guard has learned (its per-minute history).
    pub(crate) fn learned(&self) -> Learned {
        let st = self.state.lock();
        Learned {
            bucket: st.history.bucket(),
            at: SystemTime::now(),
            minutes: st.history.export(),
        }
    }

    /// Starts from what an earlier guard learned (validated by the
    /// builder): the time since its export is a gap.
    pub(crate) fn resume(&self, learned: &Learned) {
        let gap = SystemTime::now()
            .duration_since(learned.at)
            .unwrap_or(Duration::ZERO);
        let mut st = self.state.lock();
        st.history.resume(&learned.minutes, gap);
        st.usual = st.history.usual();
    }
}

/// Runs the monitor until the accounting is closed (last guard dropped).
pub(crate) fn spawn(monitor: Arc<Monitor>, rt: &tokio::runtime::Handle) {
    rt.spawn(async move {
        let acct = Arc::clone(&monitor.shared.acct);
        while !acct.is_closed() {
            let wake_at = monitor.evaluate();
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => {}
                () = acct.wake.notified() => {}
            }
        }
    });
}

#[cfg(test)]
mod tests;
