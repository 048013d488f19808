//! Saturation levels: the pure decision, with time passed in.
//!
//! [`LevelTracker::observe`] takes the current value of the saturation signal
//! and the current instant and returns at most one [`Transition`]. It never
//! reads a clock, so the monitor can drive it from tokio's (pausable) clock and
//! tests can drive it with synthetic instants.
//!
//! Semantics (as Prometheus' `for:`): a level is entered when its threshold has
//! been met *continuously* for its hold time; it is left only when the value
//! has stayed below the level's recovery threshold for the recovery time
//! (hysteresis), so a pool hovering at the line does not flap.

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
}

fn track(marker: &mut Option<Instant>, holds: bool, now: Instant) {
    if holds {
        marker.get_or_insert(now);
    } else {
        *marker = None;
    }
}

fn held(marker: Option<Instant>, hold: Duration, now: Instant) -> bool {
    marker.is_some_and(|since| now.saturating_duration_since(since) >= hold)
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
        }
    }

    pub(crate) fn level(&self) -> Level {
        self.level
    }

    /// Feeds the signal's value at `now`; the value is taken to have held
    /// since the previous call.
    pub(crate) fn observe(&mut self, now: Instant, value: f64) -> Option<Transition> {
        let p = &self.policy;
        track(&mut self.warn_since, value >= p.warn_at, now);
        track(&mut self.critical_since, value >= p.critical_at, now);
        track(
            &mut self.below_warn_since,
            value < p.warn_recover_below,
            now,
        );
        track(
            &mut self.below_critical_since,
            value < p.critical_recover_below,
            now,
        );

        let critical = held(self.critical_since, p.critical_for, now);
        let warning = held(self.warn_since, p.warn_for, now);
        let cleared_warn = held(self.below_warn_since, p.recover_for, now);
        let cleared_critical = held(self.below_critical_since, p.recover_for, now);

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
        let due = |marker: Option<Instant>, hold: Duration| marker.map(|s| s + hold);
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
