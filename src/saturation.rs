//! Saturation levels: the pure decision, with time passed in.
//!
//! `LevelTracker::observe` takes the current value of the saturation signal
//! and the current instant and returns at most one transition. It never
//! reads a clock, so the monitor can drive it from tokio's (pausable) clock and
//! tests can drive it with synthetic instants.
//!
//! Semantics (as Prometheus' `for:`): a level is entered when its threshold has
//! been met for its hold time; it is left only when the value has stayed
//! below the level's recovery threshold for the recovery time (hysteresis),
//! so a pool hovering at the line does not flap.
//!
//! "Met" is judged twice. A crossing of the instantaneous value starts the
//! hold at once (so a zero hold fires at the crossing, and timing is exact).
//! What *stops* a hold is the time-weighted average over a whole tick: a busy
//! pool's in-use count dips for microseconds between each release and the
//! next acquire, and judging every dip would restart a 5-minute hold forever.

use std::time::Duration;
use tokio::time::Instant;

/// How saturated the pool is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    /// Below the warning threshold (or recovered from it).
    #[default]
    Normal,
    /// At or above the warning threshold for its hold time.
    Warning,
    /// At or above the critical threshold for its hold time.
    Critical,
}

impl Level {
    /// The level as a number for metrics: 0 normal, 1 warning, 2 critical.
    pub fn as_number(self) -> u8 {
        self as u8
    }

    /// Lower-case name: `normal`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Normal => "normal",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which ratio the saturation levels are computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Signal {
    /// `in_use / max_connections`: the post-mortem's "DB connection pool %".
    #[default]
    Utilization,
    /// `(in_use + waiters) / max_connections`: keeps rising once the pool is
    /// full, so it also measures how far past full the demand is.
    Demand,
}

/// Thresholds and hold times of the saturation levels (validated by the builder).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SaturationPolicy {
    /// Signal the levels are computed from.
    pub signal: Signal,
    /// Warning when the signal is at or above this ratio ...
    pub warn_at: f64,
    /// ... continuously for this long.
    pub warn_for: Duration,
    /// Critical when the signal is at or above this ratio ...
    pub critical_at: f64,
    /// ... continuously for this long.
    pub critical_for: Duration,
    /// Warning clears only when the signal stays below this ratio ...
    pub warn_recover_below: f64,
    /// Critical clears only when the signal stays below this ratio ...
    pub critical_recover_below: f64,
    /// ... for this long.
    pub recover_for: Duration,
}

impl Default for SaturationPolicy {
    /// The post-mortem's alert table: > 80 % for 5 min warns, > 90 % for
    /// 2 min is critical; recovery 5 points lower, held for 1 min.
    fn default() -> Self {
        Self {
            signal: Signal::Utilization,
            warn_at: 0.80,
            warn_for: Duration::from_secs(300),
            critical_at: 0.90,
            critical_for: Duration::from_secs(120),
            warn_recover_below: 0.75,
            critical_recover_below: 0.85,
            recover_for: Duration::from_secs(60),
        }
    }
}

impl SaturationPolicy {
    /// The four ratios at which the level decision can change, ascending.
    pub(crate) fn edges(&self) -> [f64; 4] {
        let mut e = [
            self.warn_recover_below,
            self.warn_at,
            self.critical_recover_below,
            self.critical_at,
        ];
        e.sort_by(f64::total_cmp);
        e
    }
}

/// A change of level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) from: Level,
    pub(crate) to: Level,
    pub(crate) time_in_previous: Duration,
}

/// Tracks how long each condition has held and decides the level.
#[derive(Debug, Clone)]
pub(crate) struct LevelTracker {
    policy: SaturationPolicy,
    level: Level,
    level_since: Instant,
    warn_since: Option<Instant>,
    critical_since: Option<Instant>,
    below_warn_since: Option<Instant>,
    below_critical_since: Option<Instant>,
    /// Average over the last whole tick.
    last_tick: Option<f64>,
}

/// Starts a hold when the condition holds now; ends it only when the
/// average of a whole tick spent in the hold says the condition no longer
/// holds (a hold that began inside the tick is judged by the next one).
fn track(
    marker: &mut Option<Instant>,
    now_holds: bool,
    tick: Option<(bool, Instant)>,
    now: Instant,
) {
    if let Some((false, tick_started)) = tick {
        if marker.is_some_and(|since| since <= tick_started) {
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

impl LevelTracker {
    pub(crate) fn new(policy: SaturationPolicy, now: Instant) -> Self {
        Self {
            policy,
            level: Level::Normal,
            level_since: now,
            warn_since: None,
            critical_since: None,
            below_warn_since: None,
            below_critical_since: None,
            last_tick: None,
        }
    }

    pub(crate) fn level(&self) -> Level {
        self.level
    }

    /// Feeds a tick: `value` is both the value now and the tick's average.
    #[cfg(test)]
    pub(crate) fn observe(&mut self, now: Instant, value: f64) -> Option<Transition> {
        self.observe_with(now, value, Some((value, now)))
    }

    /// Feeds the signal's value at `now` and, at the end of a tick, the
    /// tick's time-weighted average and when that tick started.
    pub(crate) fn observe_with(
        &mut self,
        now: Instant,
        value: f64,
        tick: Option<(f64, Instant)>,
    ) -> Option<Transition> {
        if let Some((avg, _)) = tick {
            self.last_tick = Some(avg);
        }
        let p = &self.policy;
        let last = self.last_tick;
        let above = |t: f64| {
            (
                value >= t,
                tick.map(|(a, s)| (a >= t, s)),
                last.is_some_and(|a| a >= t),
            )
        };
        let below = |t: f64| {
            (
                value < t,
                tick.map(|(a, s)| (a < t, s)),
                last.is_some_and(|a| a < t),
            )
        };

        let (w_now, w_tick, w_last) = above(p.warn_at);
        let (c_now, c_tick, c_last) = above(p.critical_at);
        let (bw_now, bw_tick, bw_last) = below(p.warn_recover_below);
        let (bc_now, bc_tick, bc_last) = below(p.critical_recover_below);
        track(&mut self.warn_since, w_now, w_tick, now);
        track(&mut self.critical_since, c_now, c_tick, now);
        track(&mut self.below_warn_since, bw_now, bw_tick, now);
        track(&mut self.below_critical_since, bc_now, bc_tick, now);

        let critical = held(self.critical_since, p.critical_for, now, c_now || c_last);
        let warning = held(self.warn_since, p.warn_for, now, w_now || w_last);
        let cleared_warn = held(self.below_warn_since, p.recover_for, now, bw_now || bw_last);
        let cleared_critical = held(
            self.below_critical_since,
            p.recover_for,
            now,
            bc_now || bc_last,
        );

        let next = match self.level {
            Level::Normal if critical => Level::Critical,
            Level::Normal if warning => Level::Warning,
            Level::Warning if critical => Level::Critical,
            Level::Warning if cleared_warn => Level::Normal,
            Level::Critical if cleared_critical && cleared_warn => Level::Normal,
            Level::Critical if cleared_critical => Level::Warning,
            same => same,
        };
        if next == self.level {
            return None;
        }
        let t = Transition {
            from: self.level,
            to: next,
            time_in_previous: now.saturating_duration_since(self.level_since),
        };
        self.level = next;
        self.level_since = now;
        Some(t)
    }

    /// The earliest instant at which a condition being timed completes, so the
    /// monitor can wake exactly then instead of at its next tick.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let p = &self.policy;
        // `checked_add`: a hold of `Duration::MAX` means "never", not a panic.
        let due =
            |marker: Option<Instant>, hold: Duration| marker.and_then(|s| s.checked_add(hold));
        let candidates = match self.level {
            Level::Normal => [
                due(self.warn_since, p.warn_for),
                due(self.critical_since, p.critical_for),
                None,
            ],
            Level::Warning => [
                due(self.critical_since, p.critical_for),
                due(self.below_warn_since, p.recover_for),
                None,
            ],
            Level::Critical => [
                due(self.below_critical_since, p.recover_for),
                due(self.below_warn_since, p.recover_for),
                None,
            ],
        };
        candidates.into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn warning_fires_exactly_at_hold_time_not_before() {
        let t0 = Instant::now();
        let mut t = LevelTracker::new(SaturationPolicy::default(), t0);
        assert_eq!(t.observe(t0, 0.82), None);
        assert_eq!(t.next_deadline(), Some(t0 + secs(300)));
        assert_eq!(t.observe(t0 + secs(299), 0.82), None);
        let tr = t.observe(t0 + secs(300), 0.82).unwrap();
        assert_eq!((tr.from, tr.to), (Level::Normal, Level::Warning));
        assert_eq!(tr.time_in_previous, secs(300));
    }

    #[test]
    fn dip_below_threshold_restarts_the_hold() {
        let t0 = Instant::now();
        let mut t = LevelTracker::new(SaturationPolicy::default(), t0);
        t.observe(t0, 0.95);
        t.observe(t0 + secs(100), 0.70);
        t.observe(t0 + secs(101), 0.95);
        assert_eq!(t.observe(t0 + secs(220), 0.95), None);
        let tr = t.observe(t0 + secs(221), 0.95).unwrap();
        assert_eq!(tr.to, Level::Critical);
        assert_eq!(tr.from, Level::Normal);
    }

    #[test]
    fn hysteresis_keeps_level_while_hovering() {
        let t0 = Instant::now();
        let mut t = LevelTracker::new(SaturationPolicy::default(), t0);
        t.observe(t0, 0.81);
        assert_eq!(t.observe(t0 + secs(300), 0.81).unwrap().to, Level::Warning);
        // Hovers around the 80 % line, never below the 75 % recovery line.
        for i in 0..100 {
            let v = if i % 2 == 0 { 0.79 } else { 0.81 };
            assert_eq!(t.observe(t0 + secs(301 + i * 10), v), None);
        }
        // Below 75 %, but not for the full minute: still warning.
        let s = t0 + secs(2000);
        assert_eq!(t.observe(s, 0.70), None);
        assert_eq!(t.observe(s + secs(59), 0.70), None);
        let tr = t.observe(s + secs(60), 0.70).unwrap();
        assert_eq!((tr.from, tr.to), (Level::Warning, Level::Normal));
    }

    #[test]
    fn critical_steps_down_through_warning() {
        let t0 = Instant::now();
        let mut t = LevelTracker::new(SaturationPolicy::default(), t0);
        t.observe(t0, 1.0);
        assert_eq!(t.observe(t0 + secs(120), 1.0).unwrap().to, Level::Critical);
        t.observe(t0 + secs(130), 0.80);
        let tr = t.observe(t0 + secs(190), 0.80).unwrap();
        assert_eq!((tr.from, tr.to), (Level::Critical, Level::Warning));
        t.observe(t0 + secs(200), 0.10);
        let tr = t.observe(t0 + secs(260), 0.10).unwrap();
        assert_eq!((tr.from, tr.to), (Level::Warning, Level::Normal));
    }

    #[test]
    fn short_dips_inside_a_busy_tick_do_not_restart_the_hold() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = LevelTracker::new(SaturationPolicy::default(), t0);
        t.observe_with(t0, 0.92, None);
        for s in 0..120u64 {
            let tick = t0 + secs(s);
            // A dip to 0.88 between a release and the next acquire ...
            assert_eq!(t.observe_with(tick + ms(500), 0.88, None), None);
            assert_eq!(t.observe_with(tick + ms(501), 0.92, None), None);
            // ... while the tick as a whole averaged above 90 %.
            if s < 119 {
                assert_eq!(
                    t.observe_with(tick + secs(1), 0.92, Some((0.919, tick))),
                    None
                );
            }
        }
        let tr = t
            .observe_with(t0 + secs(120), 0.92, Some((0.919, t0 + secs(119))))
            .unwrap();
        assert_eq!(tr.to, Level::Critical);
        // A tick averaging below the line does restart it.
        let mut t = LevelTracker::new(SaturationPolicy::default(), t0);
        t.observe_with(t0, 0.92, None);
        t.observe_with(t0 + secs(60), 0.88, Some((0.89, t0 + secs(59))));
        t.observe_with(t0 + secs(61), 0.92, None);
        assert_eq!(
            t.observe_with(t0 + secs(180), 0.92, Some((0.92, t0 + secs(179)))),
            None
        );
        assert_eq!(
            t.observe_with(t0 + secs(181), 0.92, Some((0.92, t0 + secs(180))))
                .unwrap()
                .to,
            Level::Critical
        );
    }

    #[test]
    fn zero_hold_times_cross_instantly() {
        let p = SaturationPolicy {
            warn_for: Duration::ZERO,
            critical_for: Duration::ZERO,
            recover_for: Duration::ZERO,
            ..SaturationPolicy::default()
        };
        let t0 = Instant::now();
        let mut t = LevelTracker::new(p, t0);
        assert_eq!(t.observe(t0, 0.8).unwrap().to, Level::Warning);
        assert_eq!(t.observe(t0, 0.9).unwrap().to, Level::Critical);
        assert_eq!(t.observe(t0, 0.5).unwrap().to, Level::Normal);
    }
}
