//! One evaluation, in named steps: read the pool, observe a tick that
//! ended (windows, hold estimate, forecast, baseline), judge the rules,
//! derive the level and the scale hint, scan for leaks, find the next wake,
//! then publish (`publish.rs`).

use std::time::Duration;

use tokio::time::Instant;

use super::reading::Reading;
use super::tick::TickEnd;
use super::{Monitor, State};
use crate::alert::rule::{AlertState, Severity};
use crate::alert::saturation::Level;
use crate::alert::signal::{EndedTick, Signal, SignalInputs};
use crate::alert::tracker::Transition;
use crate::hot::leak::Finding;
use crate::stats::anomaly;
use crate::stats::forecast::TickInput;
use crate::stats::scale::ScaleHint;

/// Fewest acquires in the stats window for the forecast's mean hold.
const MIN_HOLDS: u64 = 20;

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
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let mut pool = self.read_pool(st, end);
        if let Some(tick) = pool.tick {
            self.observe_tick(st, &pool, tick);
        }
        let mut found = Findings {
            rules: self.judge_rules(st, &pool),
            ..Findings::default()
        };
        let level = self.level_of(st);
        found.level = Self::update_level(st, level, pool.now);
        let hint = self.hint(st, &pool);
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
        // What the gauges (on a tick) and the events' snapshot share,
        // derived once; between ticks only an event needs it, and copies
        // the histograms for it.
        let events = !found.rules.is_empty() || found.level.is_some();
        if events && pool.hist.is_none() {
            pool.hist = Some(self.shared.acct.hist_set());
        }
        let derived = (pool.tick.is_some() || events).then(|| self.derive(st, &pool, events));
        self.publish_gauges(st, &pool, hint, derived.as_ref());
        // Published under the lock: an `evaluate_now()` racing the monitor
        // task cannot deliver a later transition before an earlier one.
        self.publish(st, pool, derived.filter(|_| events), found);
        drop(guard);
        next
    }

    /// Reads the pool, tells the call path what it needs (`Hints`), ends
    /// the tick when due and rolls the windows.
    fn read_pool(&self, st: &mut State, end: TickEnd) -> Reading {
        let now = Instant::now();
        let acct = &self.shared.acct;
        let mut pool = self.read(st, now, false);
        acct.hints.set_untracked(pool.untracked);
        let (c, max) = (pool.counters, pool.max);
        pool.tick =
            st.average
                .advance(now, pool.current, (c.in_use_ms, max), self.timing.tick, end);
        if pool.tick.is_some() {
            st.reconcile.end_tick(pool.stats, c.in_use);
        }
        // Windowed signals move with the window, which moves on ticks; the
        // wakes in between (a count crossed a line, a timer ran out) only
        // re-judge the instantaneous signals and the timers, and copy no
        // histograms, so a pool hovering at a line costs little.
        pool.hist = pool.tick.map(|_| acct.hist_set());
        if let Some(h) = &pool.hist {
            st.window.push(now, c, || h.clone());
        }
        if !st.stuck(&c, max) {
            st.progress = (c.acquires_total, now);
        }
        pool.stalled = st.stalled_for(now, &c, max);
        pool
    }

    /// Once per tick: the tick's demand, the hold estimate for load
    /// shedding, the forecast and the per-minute history.
    fn observe_tick(&self, st: &mut State, pool: &Reading, tick: EndedTick) {
        let (now, c, max) = (pool.now, &pool.counters, pool.max);
        st.tick_demand = Some(tick.average.demand * f64::from(max));
        // Little's W over the recent (stats) window: the in-use area over
        // the acquires in it. A hold longer than the window counts only its
        // part inside (one connection held 20 minutes no longer reads as a
        // 20-minute mean hold once it returns).
        let (older, _) = st.window.counters_at(now, self.timing.stats_window);
        let d = c.since(&older);
        let hold = (d.acquires_total > 0)
            .then(|| d.in_use_ms as f64 / 1000.0 / d.acquires_total as f64)
            .filter(|h| *h > 0.0);
        // No acquire in the window (a stuck pool): keep the last
        // estimate for load shedding rather than switching it off.
        if let Some(h) = hold {
            self.shared.acct.hints.set_hold_secs(h);
        }
        // The forecast extrapolates it: a handful of acquires is no mean.
        let mean_hold = hold.filter(|_| d.acquires_total >= MIN_HOLDS);
        st.forecast = st.forecaster.observe(
            now,
            TickInput {
                demand: tick.average.demand,
                arrivals_total: c.arrivals_total,
                mean_hold,
                max,
            },
        );
        let bucket = st.history.bucket();
        let (older, covered) = st.window.counters_at(now, bucket);
        let rate = (covered >= bucket).then(|| {
            c.arrivals_total.saturating_sub(older.arrivals_total) as f64 / covered.as_secs_f64()
        });
        let hist = pool.hist.as_ref().expect("histograms are copied on ticks");
        st.history.observe(now, *c, &hist.hold);
        st.anomaly = anomaly::judge(&st.history, rate);
        st.usual = st.history.usual();
        let sites = self.site_readings(now);
        self.publish_holders(st, now, &sites);
        st.holders.push(now, sites);
        self.publish_statements(st, pool);
        let totals = self.statement_totals();
        st.statements.push(now, totals);
    }

    /// Feeds every rule its signal's reading; returns the state changes.
    fn judge_rules(&self, st: &mut State, pool: &Reading) -> Vec<RuleChange> {
        let inputs = SignalInputs {
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
            connects_counted: self.shared.acct.counts_opens(),
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
    fn next_wake(&self, st: &State, pool: &Reading) -> Instant {
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
