//! One evaluation, in named steps: read the pool, observe a tick that
//! ended (windows, hold estimate, forecast, baseline), judge the rules,
//! derive the level and the scale hint, scan for leaks, find the next wake,
//! then publish (`publish.rs`).

use std::time::Duration;

use tokio::time::Instant;

use super::tick::TickEnd;
use super::view::ratio;
use super::{Monitor, PoolStats, State};
use crate::alert::rule::{AlertState, Severity};
use crate::alert::saturation::Level;
use crate::alert::signal::{EndedTick, Inputs, Instantaneous, Signal};
use crate::alert::tracker::Transition;
use crate::hot::accounting::Counters;
use crate::hot::connects::ConnectCounter;
use crate::hot::histogram::HistSet;
use crate::hot::leak::Finding;
use crate::stats::anomaly;
use crate::stats::forecast::TickInput;
use crate::stats::scale::{ScaleHint, ServerCapacity};

/// Fewest acquires in the stats window for the forecast's mean hold.
const MIN_HOLDS: u64 = 20;

/// The pool as one evaluation reads it.
pub(super) struct PoolReading {
    pub(super) now: Instant,
    pub(super) counters: Counters,
    pub(super) stats: PoolStats,
    /// Utilization, demand and waiters now (sqlx's untracked connections
    /// counted as busy).
    pub(super) current: Instantaneous,
    /// The tick that ended at this evaluation, if one did.
    pub(super) tick: Option<EndedTick>,
    /// Copies of the histograms (ticks only).
    pub(super) hist: Option<HistSet>,
    pub(super) server: Option<ServerCapacity>,
    /// The oldest waiter's age, when anyone waits.
    pub(super) oldest_wait: Option<std::time::Duration>,
    /// How long the pool has been stalled (zero: it is not).
    pub(super) stalled: std::time::Duration,
}

/// A rule's state change found by an evaluation.
pub(super) struct RuleChange {
    /// Index of the rule.
    pub(super) rule: usize,
    pub(super) transition: Transition,
    pub(super) value: Option<f64>,
}

/// A change of the pool's level.
pub(super) struct LevelChange {
    pub(super) previous: Level,
    pub(super) level: Level,
    pub(super) time_in_previous: std::time::Duration,
}

/// What one evaluation found, published after it.
#[derive(Default)]
pub(super) struct Findings {
    pub(super) rules: Vec<RuleChange>,
    pub(super) level: Option<LevelChange>,
    pub(super) scale: Option<ScaleHint>,
    pub(super) leaks: Vec<Finding>,
}

impl Monitor {
    /// One evaluation; returns when the monitor must evaluate next (end of
    /// the tick, or earlier when a timer runs out). Time and counts are read
    /// under the lock, so concurrent calls apply in order.
    pub(crate) fn evaluate(&self) -> Instant {
        self.evaluate_until(TickEnd::WhenDue)
    }

    /// [`evaluate`](Self::evaluate), ending the current tick as `end` says.
    pub(crate) fn evaluate_until(&self, end: TickEnd) -> Instant {
        let stats = self.shared.pool_stats();
        let server = *self.server.lock();
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let pool = self.read_pool(st, stats, server, end);
        if let Some(tick) = pool.tick {
            self.observe_tick(st, &pool, tick);
        }
        let mut found = Findings {
            rules: self.judge_rules(st, &pool),
            ..Findings::default()
        };
        let level = self.level_of(st);
        found.level = Self::update_level(st, level, pool.now);
        let hint = self.hint(st, server);
        if found
            .rules
            .iter()
            .any(|c| self.rules.is_scale(c.rule) && c.transition.to == AlertState::Firing)
        {
            found.scale = Some(hint);
        }
        if let Some(table) = &self.shared.acct.leaks {
            table.scan(pool.now, |f| found.leaks.push(f));
        }
        let next = self.next_wake(st, &pool);
        self.publish_gauges(st, &pool, hint);
        // Published under the lock: an `evaluate_now()` racing the monitor
        // task cannot deliver a later transition before an earlier one.
        self.publish(st, &pool, found);
        drop(guard);
        next
    }

    /// Reads the counts, reconciles them with sqlx's, ends the tick when
    /// due and rolls the windows.
    fn read_pool(
        &self,
        st: &mut State,
        stats: PoolStats,
        server: Option<ServerCapacity>,
        end: TickEnd,
    ) -> PoolReading {
        let now = Instant::now();
        let acct = &self.shared.acct;
        let mut c = acct.counters();
        c.busy_ms = acct.busy_ms(now);
        c.opened_total = self.connects.as_ref().map_or(0, ConnectCounter::total);
        let max = acct.max();
        // Reconciled with sqlx: connections busy there but not through the
        // guard (generic `Acquire::begin` transactions, listeners, the pool
        // used directly, connections sqlx is pinging after a release) are
        // busy too; nobody can acquire them.
        let untracked = self.shared.untracked.persisted(stats, c.in_use);
        self.shared.untracked.store(untracked);
        let busy = c.in_use.saturating_add(untracked);
        let wanted = busy.saturating_add(c.waiters);
        let current = Instantaneous {
            utilization: ratio(wanted.min(max), max),
            demand: ratio(wanted, max),
            waiters: f64::from(c.waiters),
            tracked: ratio(c.in_use, max),
        };
        let tick = st
            .average
            .advance(now, current, (c.busy_ms, max), self.timing.tick, end);
        if tick.is_some() {
            self.shared.untracked.end_tick(stats, c.in_use);
        }
        // Windowed signals move with the window, which moves on ticks; the
        // wakes in between (a count crossed a line, a timer ran out) only
        // re-judge the instantaneous signals and the timers, and copy no
        // histograms, so a pool hovering at a line costs little.
        let hist = tick.map(|_| acct.hist_set());
        if let Some(h) = &hist {
            st.window.push(now, c, || h.clone());
        }
        if !st.stuck(&c, max) {
            st.progress = (c.acquires_total, now);
        }
        PoolReading {
            oldest_wait: acct.oldest_wait(now),
            stalled: st.stalled_for(now, &c, max),
            now,
            counters: c,
            stats,
            current,
            tick,
            hist,
            server,
        }
    }

    /// Once per tick: the tick's demand, the hold estimate for load
    /// shedding, the forecast and the traffic baseline.
    fn observe_tick(&self, st: &mut State, pool: &PoolReading, tick: EndedTick) {
        let (now, c) = (pool.now, &pool.counters);
        let max = self.shared.acct.max();
        st.tick_demand = Some(tick.average.demand * f64::from(max));
        // Little's W over the recent (stats) window: the in-use area over
        // the acquires in it. A hold longer than the window counts only its
        // part inside (one connection held 20 minutes no longer reads as a
        // 20-minute mean hold once it returns).
        let (older, _) = st.window.counters_at(now, self.timing.stats_window);
        let d = c.since(&older);
        let hold = (d.acquires_total > 0)
            .then(|| d.busy_ms as f64 / 1000.0 / d.acquires_total as f64)
            .filter(|h| *h > 0.0);
        // No acquire in the window (a stuck pool): keep the last
        // estimate for load shedding rather than switching it off.
        if let Some(h) = hold {
            self.shared.protect.hold_estimate.set_secs(h);
        }
        // The forecast extrapolates it: a handful of acquires is no mean.
        let mean_hold = hold.filter(|_| d.acquires_total >= MIN_HOLDS);
        st.forecast = st.forecaster.observe(
            now,
            TickInput {
                demand: tick.average.demand,
                arrivals_total: c.attempts_total,
                mean_hold,
                max,
            },
        );
        let bucket = st.history.bucket();
        let (older, covered) = st.window.counters_at(now, bucket);
        let rate = (covered >= bucket).then(|| {
            c.attempts_total.saturating_sub(older.attempts_total) as f64 / covered.as_secs_f64()
        });
        let hist = pool.hist.as_ref().expect("histograms are copied on ticks");
        st.history.observe(now, *c, &hist.hold);
        st.anomaly = anomaly::judge(&st.history, rate);
        st.usual = st.history.usual();
        let sites = self.site_readings(now);
        self.publish_holders(st, now, &sites);
        st.holders.push(now, sites);
        self.publish_statements(st, now, c);
        let totals = self.statement_totals();
        st.statements.push(now, totals);
    }

    /// Feeds every rule its signal's reading; returns the state changes.
    fn judge_rules(&self, st: &mut State, pool: &PoolReading) -> Vec<RuleChange> {
        let inputs = Inputs {
            now: pool.now,
            counters: &pool.counters,
            hist: pool.hist.as_ref(),
            window: &st.window,
            current: pool.current,
            tick: pool.tick,
            anomaly: st.anomaly,
            eta: st.forecast.eta,
            server: pool.server,
            oldest_wait: pool.oldest_wait,
            stalled: pool.stalled,
            connects_counted: self.connects.is_some(),
        };
        let mut changes = Vec::new();
        for (i, (rule, tracker)) in self.rules.iter().zip(&mut st.trackers).enumerate() {
            // Between ticks a windowed signal keeps its last value.
            let reading = if pool.tick.is_some() || !rule.signal.is_windowed() {
                inputs.read(rule.signal, rule.window, rule.min_samples)
            } else {
                crate::alert::signal::Reading {
                    now: tracker.value,
                    tick: None,
                }
            };
            if let Some(t) = tracker.observe_with(rule, pool.now, reading.now, reading.tick) {
                changes.push(RuleChange {
                    rule: i,
                    transition: t,
                    value: reading.now,
                });
            }
        }
        changes
    }

    /// The level the firing pool rules amount to.
    fn level_of(&self, st: &State) -> Level {
        let firing = |severity: Severity| {
            (0..self.rules.len()).any(|i| {
                self.rules.is_pool(i, severity) && st.trackers[i].state() == AlertState::Firing
            })
        };
        Level::from_firing(firing(Severity::Warning), firing(Severity::Critical))
    }

    fn update_level(st: &mut State, level: Level, now: Instant) -> Option<LevelChange> {
        if level == st.level {
            return None;
        }
        let change = LevelChange {
            previous: st.level,
            level,
            time_in_previous: now.saturating_duration_since(st.level_since),
        };
        st.level = level;
        st.level_since = now;
        Some(change)
    }

    /// The end of the tick, or the earliest timer (a hold, a recovery, a
    /// leak threshold) before it.
    fn next_wake(&self, st: &State, pool: &PoolReading) -> Instant {
        let now = pool.now;
        let mut next = st.average.tick_ends(self.timing.tick);
        // An age (oldest wait, stall) grows a second a second: wake just
        // after it passes a threshold, so the hold starts at the crossing.
        let ages = self.rules.iter().filter_map(|r| {
            let age = match r.signal {
                Signal::OldestWait => pool.oldest_wait?,
                Signal::Stall if !pool.stalled.is_zero() => pool.stalled,
                _ => return None,
            };
            let left = Duration::try_from_secs_f64(r.threshold)
                .ok()?
                .checked_sub(age)?;
            now.checked_add(left + Duration::from_millis(1))
        });
        let deadlines = self
            .rules
            .iter()
            .zip(&st.trackers)
            .filter_map(|(r, t)| t.next_deadline(r))
            .chain(
                self.shared
                    .acct
                    .leaks
                    .as_ref()
                    .and_then(|t| t.next_deadline()),
            )
            .chain(ages);
        for d in deadlines {
            if d > now && d < next {
                next = d;
            }
        }
        next
    }
}
