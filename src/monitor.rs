//! The monitor: the guard's shared core and its background task.
//!
//! The task wakes on a tick (default 1 s), when the hot path reports that a
//! count crossed a rule's edge, and exactly when a timer (a hold, a recovery,
//! a leak threshold) runs out. Each wake it reads the counters, rolls the
//! windows, feeds the forecast and the baseline once per tick, evaluates
//! every rule, publishes gauges and sends events. It holds the core strongly
//! but stops as soon as the last `PoolGuard` clone is dropped.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::accounting::{Accounting, Counters};
use crate::anomaly::Baseline;
use crate::events::{AlertEvent, Event, EventHub, LeakEvent, SaturationEvent};
use crate::forecast::{Forecast, Forecaster, TickInput};
use crate::leak::Finding;
use crate::metrics::{GaugeValues, Gauges};
use crate::rules::{AlertState, Rule, RuleTracker, Severity, Transition, POOL_RULE, SCALE_RULE};
use crate::saturation::Level;
use crate::scale::{recommend, ScaleHint, ServerCapacity};
use crate::signals::{Inputs, Instantaneous, Signal};
use crate::snapshot::{AlertStatus, Percentiles, Snapshot};
use crate::window::{HistSet, Window};

/// Open and idle connections as sqlx reports them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PoolStats {
    pub(crate) size: u32,
    pub(crate) idle: u32,
}

impl PoolStats {
    /// Connections sqlx counts as not idle: checked out (through the guard
    /// or not), being opened, or being pinged after a release.
    pub(crate) fn busy(&self) -> u32 {
        self.size.saturating_sub(self.idle)
    }
}

pub(crate) type StatsFn = Box<dyn Fn() -> PoolStats + Send + Sync>;

/// The latest server reading, written by the server watcher.
pub(crate) type ServerSlot = Arc<Mutex<Option<ServerCapacity>>>;

/// Time-weighted average of the instantaneous signals over the current
/// tick, integrated from the values seen at each evaluation (ticks and edge
/// crossings).
#[derive(Debug)]
struct TickAverage {
    started: Instant,
    last_at: Instant,
    last: Instantaneous,
    area: Instantaneous,
}

impl TickAverage {
    fn new(now: Instant) -> Self {
        Self {
            started: now,
            last_at: now,
            last: Instantaneous::default(),
            area: Instantaneous::default(),
        }
    }

    /// Adds the values that held since the last call; at the end of a tick
    /// returns the tick's averages and when it started, and starts the next.
    fn advance(
        &mut self,
        now: Instant,
        value: Instantaneous,
        tick: Duration,
        force: bool,
    ) -> Option<(Instantaneous, Instant)> {
        let dt = now.saturating_duration_since(self.last_at).as_secs_f64();
        self.area.utilization += self.last.utilization * dt;
        self.area.demand += self.last.demand * dt;
        self.area.waiters += self.last.waiters * dt;
        self.last_at = now;
        self.last = value;
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < tick && !force {
            return None;
        }
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            self.started = now;
            return Some((value, now));
        }
        let avg = Instantaneous {
            utilization: self.area.utilization / secs,
            demand: self.area.demand / secs,
            waiters: self.area.waiters / secs,
        };
        let started = self.started;
        self.area = Instantaneous::default();
        self.started = now;
        Some((avg, started))
    }

    fn tick_ends(&self, tick: Duration) -> Instant {
        self.started.checked_add(tick).unwrap_or(self.started)
    }
}

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
    baseline: Baseline,
    anomaly: Option<(f64, u64)>,
}

/// Shared by the guard handles and the monitor task.
pub(crate) struct Core {
    pub(crate) name: Arc<str>,
    pub(crate) acct: Arc<Accounting>,
    pub(crate) rules: Vec<Rule>,
    tick: Duration,
    stats_window: Duration,
    scale_target: f64,
    instances: u32,
    pub(crate) server: ServerSlot,
    pub(crate) protect: crate::protect::Protection,
    state: Mutex<State>,
    gauges: Gauges,
    pub(crate) hub: EventHub,
    stats: StatsFn,
    /// Connections busy in sqlx but not checked out through the guard, as
    /// of the last evaluation (written by the monitor, read by shedding).
    busy_untracked: AtomicU32,
    /// The least of that difference at the last two ticks: what persisted.
    untracked_seen: AtomicU32,
    /// That difference at the last tick.
    untracked_last_tick: AtomicU32,
    /// Whether the latest acquire timeout came while others were served.
    last_timeout_overloaded: AtomicBool,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.name)
            .field("acct", &self.acct)
            .field("rules", &self.rules.len())
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

/// What the core is built from (validated by the builder).
pub(crate) struct CoreParts {
    pub(crate) name: Arc<str>,
    pub(crate) acct: Arc<Accounting>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) tick: Duration,
    pub(crate) stats_window: Duration,
    pub(crate) forecast_window: Duration,
    /// Bucket of the traffic baseline (one minute unless time-scaled).
    pub(crate) baseline_bucket: Duration,
    pub(crate) scale_target: f64,
    pub(crate) instances: u32,
    pub(crate) protect: crate::protect::Protection,
    pub(crate) gauges: Gauges,
    pub(crate) hub: EventHub,
    pub(crate) stats: StatsFn,
}

/// Events found during one evaluation, sent after the lock is released.
struct Found {
    alerts: Vec<(usize, Transition, Option<f64>)>,
    level: Option<(Level, Level, Duration)>,
    scale: Option<ScaleHint>,
    leaks: Vec<Finding>,
}

impl Core {
    pub(crate) fn new(p: CoreParts) -> Self {
        let now = Instant::now();
        let counter_span = p
            .rules
            .iter()
            .filter(|r| r.signal.is_windowed())
            .map(|r| r.window)
            .chain([p.stats_window, p.baseline_bucket])
            .max()
            .unwrap_or(p.baseline_bucket);
        let hist_windows: Vec<Duration> = p
            .rules
            .iter()
            .filter(|r| {
                matches!(
                    r.signal,
                    Signal::AcquireWait(_) | Signal::QueryLatency(_) | Signal::RequestLatency(_)
                )
            })
            .map(|r| r.window)
            .chain([p.stats_window])
            .collect();
        let c = p.acct.counters();
        Self {
            name: p.name,
            state: Mutex::new(State {
                trackers: p.rules.iter().map(|_| RuleTracker::new(now)).collect(),
                level: Level::Normal,
                level_since: now,
                average: TickAverage::new(now),
                tick_demand: None,
                window: Window::new(
                    now,
                    p.tick,
                    counter_span,
                    &hist_windows,
                    c,
                    p.acct.hist_set(),
                ),
                forecaster: Forecaster::new(now, p.forecast_window),
                forecast: Forecast::default(),
                baseline: Baseline::new(now, c.attempts_total, p.baseline_bucket),
                anomaly: None,
            }),
            acct: p.acct,
            rules: p.rules,
            tick: p.tick,
            stats_window: p.stats_window,
            scale_target: p.scale_target,
            instances: p.instances,
            server: Arc::new(Mutex::new(None)),
            protect: p.protect,
            gauges: p.gauges,
            hub: p.hub,
            stats: p.stats,
            busy_untracked: AtomicU32::new(0),
            untracked_seen: AtomicU32::new(0),
            untracked_last_tick: AtomicU32::new(0),
            last_timeout_overloaded: AtomicBool::new(false),
        }
    }

    /// Connections busy in sqlx beyond the guard's `in_use`, counted only
    /// as far as the last two ticks saw them too: sqlx pings every returned
    /// connection before it is idle again (FINDINGS: its counts lag a
    /// release), so a quiet pool's release would otherwise read as busy
    /// for a moment and move the level; a transaction begun through generic
    /// `Acquire`, a listener, or a pool busy pinging under load persists
    /// and counts from the second tick on (at most two ticks late).
    fn untracked(&self, stats: PoolStats, in_use: u32) -> u32 {
        stats
            .busy()
            .saturating_sub(in_use)
            .min(self.untracked_seen.load(Relaxed))
    }

    /// Connections busy in sqlx but not through the guard, as of the last
    /// evaluation.
    pub(crate) fn busy_untracked(&self) -> u32 {
        self.busy_untracked.load(Relaxed)
    }

    /// The pool's own open and idle counts (sqlx's, or a model's).
    pub(crate) fn pool_stats(&self) -> PoolStats {
        (self.stats)()
    }

    /// Records whether the latest acquire timeout came while the pool
    /// served others (see `PoolState::overloaded`).
    pub(crate) fn note_timeout(&self, overloaded: bool) {
        self.last_timeout_overloaded.store(overloaded, Relaxed);
    }

    /// Whether the latest acquire timeout was overload.
    pub(crate) fn last_timeout_overloaded(&self) -> bool {
        self.last_timeout_overloaded.load(Relaxed)
    }

    pub(crate) fn level(&self) -> Level {
        self.state.lock().level
    }

    pub(crate) fn forecast(&self) -> Forecast {
        self.state.lock().forecast
    }

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
    fn hint(&self, st: &State, server: Option<ServerCapacity>) -> ScaleHint {
        let c = self.acct.counters();
        let now = f64::from(c.in_use.saturating_add(c.waiters));
        let needed = st
            .tick_demand
            .unwrap_or(0.0)
            .max(now)
            .max(st.forecast.offered_load.unwrap_or(0.0));
        recommend(
            needed,
            self.scale_target,
            self.acct.max(),
            self.instances,
            server,
        )
    }

    /// The pool now, with window statistics.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let c = self.acct.counters();
        let stats = (self.stats)();
        let hist = self.acct.hist_set();
        let st = self.state.lock();
        self.build_snapshot(&st, now, c, stats, &hist)
    }

    fn build_snapshot(
        &self,
        st: &State,
        now: Instant,
        c: Counters,
        stats: PoolStats,
        hist: &HistSet,
    ) -> Snapshot {
        let (older, covered) = st.window.counters_at(now, self.stats_window);
        let d = c.since(&older);
        let old = st.window.hist_at(now, self.stats_window);
        let max = self.acct.max();
        let untracked = self.untracked(stats, c.in_use);
        let busy = c.in_use.saturating_add(untracked);
        Snapshot {
            pool: Arc::clone(&self.name),
            level: st.level,
            in_use: c.in_use,
            untracked,
            idle: stats.idle,
            size: stats.size,
            max,
            waiters: c.waiters,
            utilization: ratio(busy, max),
            demand: ratio(busy.saturating_add(c.waiters), max),
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
        }
    }

    /// One evaluation; returns when the monitor must evaluate next (end of
    /// the tick, or earlier when a timer runs out). Time and counts are read
    /// under the lock, so concurrent calls apply in order.
    pub(crate) fn evaluate(&self) -> Instant {
        self.evaluate_with(false)
    }

    /// `force`: end the current tick now (benchmarks measure a whole tick).
    pub(crate) fn evaluate_with(&self, force: bool) -> Instant {
        let stats = (self.stats)();
        let server = *self.server.lock();
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let now = Instant::now();
        let c = self.acct.counters();
        let max = self.acct.max();
        // Reconciled with sqlx: connections busy there but not through the
        // guard (generic `Acquire::begin` transactions, listeners, the pool
        // used directly, connections sqlx is pinging after a release) are
        // busy too; nobody can acquire them.
        let untracked = self.untracked(stats, c.in_use);
        self.busy_untracked.store(untracked, Relaxed);
        let busy = c.in_use.saturating_add(untracked);
        let current = Instantaneous {
            utilization: ratio(busy, max),
            demand: ratio(busy.saturating_add(c.waiters), max),
            waiters: f64::from(c.waiters),
        };
        let tick = st.average.advance(now, current, self.tick, force);
        if tick.is_some() {
            let raw = stats.busy().saturating_sub(c.in_use);
            let last = self.untracked_last_tick.swap(raw, Relaxed);
            self.untracked_seen.store(raw.min(last), Relaxed);
        }
        // Windowed signals move with the window, which moves on ticks; the
        // wakes in between (a count crossed a line, a timer ran out) only
        // re-judge the instantaneous signals and the timers, and copy no
        // histograms, so a pool hovering at a line costs little.
        let hist = tick.map(|_| self.acct.hist_set());
        if let Some(h) = &hist {
            st.window.push(now, c, || h.clone());
        }

        if let Some((avg, _)) = tick {
            st.tick_demand = Some(avg.demand * f64::from(max));
            // Little's W: the mean hold over the recent (stats) window.
            let hold = hist
                .as_ref()
                .expect("histograms are copied on ticks")
                .hold
                .since(&st.window.hist_at(now, self.stats_window).hold);
            let mean_hold = hold.mean_secs();
            // No hold ended in the window (a stuck pool): keep the last
            // estimate for load shedding rather than switching it off.
            if let Some(h) = mean_hold {
                let ns = (h * 1e9).clamp(1.0, u64::MAX as f64) as u64;
                self.acct
                    .mean_hold_ns
                    .store(ns, std::sync::atomic::Ordering::Relaxed);
            }
            st.forecast = st.forecaster.observe(
                now,
                TickInput {
                    demand: avg.demand,
                    arrivals_total: c.attempts_total,
                    mean_hold,
                    max,
                },
            );
            let bucket = st.baseline.bucket();
            let (older, covered) = st.window.counters_at(now, bucket);
            let rate = (covered >= bucket).then(|| {
                c.attempts_total.saturating_sub(older.attempts_total) as f64 / covered.as_secs_f64()
            });
            st.anomaly = st.baseline.observe(now, c.attempts_total, rate);
        }

        let inputs = Inputs {
            now,
            counters: &c,
            hist: hist.as_ref(),
            window: &st.window,
            current,
            tick: tick.map(|t| t.0),
            anomaly: st.anomaly,
            eta: st.forecast.eta,
            server,
        };
        let mut found = Found {
            alerts: Vec::new(),
            level: None,
            scale: None,
            leaks: Vec::new(),
        };
        for (i, (rule, tracker)) in self.rules.iter().zip(&mut st.trackers).enumerate() {
            let (value, tick_value) = if tick.is_some() || !rule.signal.is_windowed() {
                inputs.read(rule.signal, rule.window, rule.min_samples)
            } else {
                (tracker.value, None)
            };
            let tick_arg = tick_value.zip(tick.map(|t| t.1));
            if let Some(t) = tracker.observe_with(rule, now, value, tick_arg) {
                found.alerts.push((i, t, value));
            }
        }

        let firing = |severity: Severity| {
            self.rules.iter().zip(&st.trackers).any(|(r, t)| {
                &*r.name == POOL_RULE && r.severity == severity && t.state() == AlertState::Firing
            })
        };
        let level = Level::from_firing(firing(Severity::Warning), firing(Severity::Critical));
        if level != st.level {
            found.level = Some((
                st.level,
                level,
                now.saturating_duration_since(st.level_since),
            ));
            st.level = level;
            st.level_since = now;
        }
        let hint = self.hint(st, server);
        if found
            .alerts
            .iter()
            .any(|(i, t, _)| &*self.rules[*i].name == SCALE_RULE && t.to == AlertState::Firing)
        {
            found.scale = Some(hint);
        }
        if let Some(table) = &self.acct.leaks {
            table.scan(now, |f| found.leaks.push(f));
        }

        let mut next = st.average.tick_ends(self.tick);
        let deadlines = self
            .rules
            .iter()
            .zip(&st.trackers)
            .filter_map(|(r, t)| t.next_deadline(r))
            .chain(self.acct.leaks.as_ref().and_then(|t| t.next_deadline()));
        for d in deadlines {
            if d > now && d < next {
                next = d;
            }
        }

        self.gauges.publish(&GaugeValues {
            in_use: c.in_use,
            idle: stats.idle,
            max,
            waiters: c.waiters,
            utilization: current.utilization,
            demand: current.demand,
            level: level.as_number(),
        });
        for (g, t) in self.gauges.rules.iter().zip(&st.trackers) {
            g.set(f64::from(t.state().as_number()));
        }
        self.gauges
            .eta
            .set(st.forecast.eta.map_or(f64::INFINITY, |d| d.as_secs_f64()));
        self.gauges.scale.set(f64::from(hint.recommended_max));
        if let Some(s) = server {
            self.gauges.server.set(s.utilization());
        }

        let snapshot = (!found.alerts.is_empty() || found.level.is_some()).then(|| {
            let hist = hist.unwrap_or_else(|| self.acct.hist_set());
            self.build_snapshot(st, now, c, stats, &hist)
        });
        // Published under the lock: an `evaluate_now()` racing the monitor
        // task cannot deliver a later transition before an earlier one.
        self.publish(found, snapshot, st.forecast);
        drop(guard);
        next
    }

    fn publish(&self, found: Found, snapshot: Option<Snapshot>, forecast: Forecast) {
        let at = SystemTime::now();
        let name = &self.name;
        for (i, t, value) in found.alerts {
            let rule = &self.rules[i];
            let severity = rule.severity;
            let (state, previous) = (t.to, t.from);
            match (t.to, severity) {
                (AlertState::Firing, Severity::Critical) => {
                    tracing::error!(pool = %name, rule = %rule.name, %severity, %state, %previous, ?value, threshold = rule.threshold, "alert")
                }
                (AlertState::Firing, Severity::Warning) => {
                    tracing::warn!(pool = %name, rule = %rule.name, %severity, %state, %previous, ?value, threshold = rule.threshold, "alert")
                }
                (AlertState::Firing | AlertState::Resolved, _) => {
                    tracing::info!(pool = %name, rule = %rule.name, %severity, %state, %previous, ?value, threshold = rule.threshold, "alert")
                }
                _ => {
                    tracing::debug!(pool = %name, rule = %rule.name, %severity, %state, %previous, ?value, threshold = rule.threshold, "alert")
                }
            }
            self.hub.publish(Event::Alert(AlertEvent {
                rule: Arc::clone(&rule.name),
                severity,
                signal: rule.signal,
                state,
                previous,
                value,
                threshold: rule.threshold,
                time_in_previous: t.time_in_previous,
                at,
                forecast: (rule.signal == Signal::ExhaustionEta).then_some(forecast),
                snapshot: snapshot.clone().expect("snapshot built for alerts"),
            }));
        }
        if let Some((previous, level, time_in_previous)) = found.level {
            let snap = snapshot.clone().expect("snapshot built for level changes");
            let (in_use, waiters, max) = (snap.in_use, snap.waiters, snap.max);
            match level {
                Level::Critical => {
                    tracing::error!(pool = %name, %level, %previous, in_use, waiters, max, "pool saturation")
                }
                Level::Warning => {
                    tracing::warn!(pool = %name, %level, %previous, in_use, waiters, max, "pool saturation")
                }
                Level::Normal => {
                    tracing::info!(pool = %name, %level, %previous, in_use, waiters, max, "pool saturation")
                }
            }
            self.hub.publish(Event::Saturation(SaturationEvent {
                level,
                previous,
                time_in_previous,
                at,
                snapshot: snap,
            }));
        }
        if let Some(hint) = found.scale {
            tracing::warn!(pool = %name, current_max = hint.current_max, recommended_max = hint.recommended_max,
                exceeds_server = hint.exceeds_server, "pool needs scaling");
            self.hub.publish(Event::ScaleHint(hint));
        }
        for f in found.leaks {
            if f.returned {
                tracing::info!(pool = %name, acquired_at = %f.location, held_for = ?f.held_for, "leaked connection returned");
            } else {
                self.gauges.leaks.increment(1);
                tracing::warn!(pool = %name, acquired_at = %f.location, held_for = ?f.held_for, "connection leak suspected");
            }
            self.hub.publish(Event::Leak(LeakEvent {
                acquired_at: f.location,
                held_for: f.held_for,
                returned: f.returned,
                at,
            }));
        }
    }
}

fn ratio(n: u32, max: u32) -> f64 {
    if max == 0 {
        0.0
    } else {
        f64::from(n) / f64::from(max)
    }
}

/// Runs the monitor until the accounting is closed (last guard dropped).
pub(crate) fn spawn(core: Arc<Core>, rt: &tokio::runtime::Handle) {
    rt.spawn(async move {
        while !core.acct.is_closed() {
            let wake_at = core.evaluate();
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => {}
                () = core.acct.wake.notified() => {}
            }
        }
    });
}

#[cfg(test)]
mod tests;
