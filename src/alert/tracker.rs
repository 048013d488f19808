//! The pure state machine that decides each rule's state, with time
//! passed in.
//!
//! A rule compares one [`Signal`] with a threshold. Its states follow
//! Prometheus' alerting: `Inactive -> Pending` when the condition is first
//! met, `Pending -> Firing` once it has held for the rule's hold time
//! (`for:`), `Firing -> Resolved` once the value has stayed past the recovery
//! threshold for the recovery time (hysteresis) *and* the condition has been
//! false for the keep-firing time (so flapping input does not resolve it).
//! `Resolved` behaves like `Inactive` until the condition is met again.
//!
//! `RuleTracker::observe` never reads a clock: the monitor drives it from
//! tokio's (pausable) clock and tests drive it with synthetic instants.
//!
//! "Met" is judged twice. A crossing of the instantaneous value starts the
//! hold at once (a zero hold fires at the crossing, timing is exact). What
//! *stops* a hold is a whole tick judged on its time-weighted average: a busy
//! pool's in-use count dips for microseconds between each release and the
//! next acquire, and judging every dip would restart a 5-minute hold forever.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::rule::{AlertState, Rule};
use super::signal::TickReading;

/// A change of a rule's state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Transition {
    pub(crate) from: AlertState,
    pub(crate) to: AlertState,
    pub(crate) time_in_previous: Duration,
}

/// One rule's timers and state.
#[derive(Debug, Clone)]
pub(crate) struct RuleTracker {
    state: AlertState,
    since: Instant,
    met_since: Option<Instant>,
    cleared_since: Option<Instant>,
    last_met: Option<Instant>,
    /// The last whole tick's reading.
    last_tick: Option<TickReading>,
    /// Instantaneous signals: the tick averages of the last `window`,
    /// bounded by `window / tick` entries.
    ticks: VecDeque<TickMean>,
    /// Value at the last observation.
    pub(crate) value: Option<f64>,
}

/// One tick's average of an instantaneous signal, with its length.
#[derive(Clone, Copy, Debug, PartialEq)]
struct TickMean {
    started: Instant,
    secs: f64,
    value: f64,
}

/// Most tick averages a tracker keeps for the mean since a hold began.
const MAX_TICKS: usize = 3600;

/// Time-weighted mean of the tick averages of ticks that started at or
/// after `from` (plain mean if they carry no duration); `None` without any.
fn mean_since(ticks: &VecDeque<TickMean>, from: Instant) -> Option<f64> {
    let (mut area, mut secs, mut sum, mut n) = (0.0, 0.0, 0.0, 0u32);
    for t in ticks.iter().rev() {
        if t.started < from {
            break;
        }
        area += t.value * t.secs;
        secs += t.secs;
        sum += t.value;
        n += 1;
    }
    match (n, secs > 0.0) {
        (0, _) => None,
        (_, true) => Some(area / secs),
        (n, false) => Some(sum / f64::from(n)),
    }
}

/// Starts a hold when the condition holds now; ends it only when a whole
/// tick spent in the hold says the condition no longer holds (a hold that
/// began inside the tick is judged by the next one).
fn track(
    marker: &mut Option<Instant>,
    now_holds: bool,
    tick: Option<TickReading>,
    holds: impl Fn(Option<f64>) -> bool,
    now: Instant,
) {
    if let Some(t) = tick {
        if !holds(t.value) && marker.is_some_and(|since| since <= t.started) {
            *marker = None;
        }
    }
    if now_holds {
        marker.get_or_insert(now);
    }
}

/// The hold has lasted long enough and the condition is true now or over
/// the last whole tick.
fn held(marker: Option<Instant>, hold: Duration, now: Instant, holds: bool) -> bool {
    holds && marker.is_some_and(|since| now.saturating_duration_since(since) >= hold)
}

impl RuleTracker {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            state: AlertState::Inactive,
            since: now,
            met_since: None,
            cleared_since: None,
            last_met: None,
            last_tick: None,
            ticks: VecDeque::new(),
            value: None,
        }
    }

    pub(crate) fn state(&self) -> AlertState {
        self.state
    }

    pub(crate) fn since(&self) -> Instant {
        self.since
    }

    /// Feeds a tick: `value` is both the value now and the tick's value.
    #[cfg(test)]
    pub(crate) fn observe(
        &mut self,
        rule: &Rule,
        now: Instant,
        value: Option<f64>,
    ) -> Option<Transition> {
        self.observe_with(
            rule,
            now,
            value,
            Some(TickReading {
                value,
                started: now,
            }),
        )
    }

    /// Feeds the signal's value at `now` (`None`: no value, e.g. too few
    /// samples) and, at the end of a tick, the tick's value (time-weighted
    /// average for instantaneous signals) and when that tick started.
    pub(crate) fn observe_with(
        &mut self,
        rule: &Rule,
        now: Instant,
        value: Option<f64>,
        tick: Option<TickReading>,
    ) -> Option<Transition> {
        self.value = value;
        let met = |v: Option<f64>| v.is_some_and(|v| rule.met(v));
        let cleared = |v: Option<f64>| v.is_none_or(|v| rule.cleared(v));
        let met_now = met(value);
        let cleared_now = cleared(value);
        // What may end a hold at the end of a tick. Instantaneous signals
        // (the pool's counts) are judged on their time-weighted mean since
        // the hold began, over at most the rule's window: a busy pool at
        // 85 % averages 80-90 % over single 1-s ticks, and judging each tick
        // alone restarted a 5-minute hold within seconds. (Recovery keeps
        // the per-tick judgement: the recovery line below the threshold
        // already absorbs that noise, and a tick back over the threshold
        // should restart it.)
        let (met_tick, cleared_tick) = match tick {
            None => (None, None),
            Some(t) if rule.signal.is_instantaneous() => {
                let started = t.started;
                if let Some(value) = t.value {
                    let secs = now.saturating_duration_since(started).as_secs_f64();
                    self.ticks.push_back(TickMean {
                        started,
                        secs,
                        value,
                    });
                }
                // Bounded like the windows' marks: a window of more than
                // MAX_TICKS ticks judges the latest MAX_TICKS.
                while self.ticks.len() > MAX_TICKS {
                    self.ticks.pop_front();
                }
                // The window, but never less than the tick that just ended.
                let oldest = now
                    .checked_sub(rule.window)
                    .map_or(started, |o| o.min(started));
                while self.ticks.front().is_some_and(|t| t.started < oldest) {
                    self.ticks.pop_front();
                }
                let since = |marker: Option<Instant>| mean_since(&self.ticks, marker?.max(oldest));
                let held = since(self.met_since).map(|mean| TickReading {
                    value: Some(mean),
                    started,
                });
                (held, Some(t))
            }
            Some(t) => (Some(t), Some(t)),
        };
        if tick.is_some() {
            self.last_tick = tick;
        }
        track(&mut self.met_since, met_now, met_tick, met, now);
        track(
            &mut self.cleared_since,
            cleared_now,
            cleared_tick,
            cleared,
            now,
        );
        let met_eff = met_now || self.last_tick.is_some_and(|t| met(t.value));
        let cleared_eff = cleared_now || self.last_tick.is_some_and(|t| cleared(t.value));
        if met_eff {
            self.last_met = Some(now);
        }
        let fire = held(self.met_since, rule.hold, now, met_eff);
        let resolve = held(self.cleared_since, rule.recover_for, now, cleared_eff)
            && self
                .last_met
                .is_none_or(|t| now.saturating_duration_since(t) >= rule.keep_firing_for);

        let next = match self.state {
            AlertState::Inactive | AlertState::Resolved | AlertState::Pending if fire => {
                AlertState::Firing
            }
            AlertState::Inactive | AlertState::Resolved if self.met_since.is_some() && met_eff => {
                AlertState::Pending
            }
            AlertState::Pending if self.met_since.is_none() => AlertState::Inactive,
            AlertState::Firing if resolve => AlertState::Resolved,
            same => same,
        };
        if next == self.state {
            return None;
        }
        let t = Transition {
            from: self.state,
            to: next,
            time_in_previous: now.saturating_duration_since(self.since),
        };
        self.state = next;
        self.since = now;
        if next == AlertState::Resolved {
            // A new episode starts from scratch.
            self.met_since = None;
        }
        Some(t)
    }

    /// The earliest instant at which a timer completes, so the monitor can
    /// wake exactly then instead of at its next tick.
    pub(crate) fn next_deadline(&self, rule: &Rule) -> Option<Instant> {
        // `checked_add`: a very long hold means "never", not a panic.
        let due = |m: Option<Instant>, d: Duration| m.and_then(|s| s.checked_add(d));
        match self.state {
            AlertState::Firing => {
                let recovered = due(self.cleared_since, rule.recover_for)?;
                let keep = due(self.last_met, rule.keep_firing_for);
                Some(keep.map_or(recovered, |k| k.max(recovered)))
            }
            _ => due(self.met_since, rule.hold),
        }
    }
}
