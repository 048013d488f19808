//! Saturation levels: the pool-utilization rules of the rule engine, summed
//! up as one level.
//!
//! [`SaturationPolicy`] describes the two pool rules (warning and critical,
//! named [`POOL_RULE`](crate::rules::POOL_RULE)); the guard's [`Level`] is
//! the highest severity among them that is firing. The timing (holds,
//! hysteresis, tick averages) is the rule engine's, in `alert/tracker.rs`.

use crate::alert::defaults::POOL_RULE;
use crate::alert::rule::{Comparison, Rule, Severity};
use crate::alert::signal::Signal;
use std::time::Duration;

/// How saturated the pool is.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    /// Below the warning threshold (or recovered from it).
    #[default]
    Normal,
    /// The pool's warning rule is firing (above the warning threshold for
    /// its hold time, not yet recovered).
    Warning,
    /// The pool's critical rule is firing.
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

/// Thresholds and hold times of the saturation levels (validated by the builder).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SaturationPolicy {
    /// Signal the levels are computed from ([`Signal::Utilization`] or
    /// [`Signal::Demand`]).
    pub signal: Signal,
    /// Warning when the signal is above this ratio ...
    pub warn_at: f64,
    /// ... continuously for this long.
    pub warn_for: Duration,
    /// Critical when the signal is above this ratio ...
    pub critical_at: f64,
    /// ... continuously for this long.
    pub critical_for: Duration,
    /// Warning clears only when the signal stays below this ratio ...
    pub warn_recover_below: f64,
    /// Critical clears only when the signal stays below this ratio ...
    pub critical_recover_below: f64,
    /// ... for this long (also the rules' keep-firing time).
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
    /// The two pool rules this policy stands for.
    ///
    /// ```
    /// let [warn, crit] = poolguard::SaturationPolicy::default().rules();
    /// assert_eq!((warn.threshold, warn.hold.as_secs()), (0.80, 300));
    /// assert_eq!((crit.threshold, crit.hold.as_secs()), (0.90, 120));
    /// ```
    pub fn rules(&self) -> [Rule; 2] {
        [
            Rule::new(POOL_RULE, self.signal, Comparison::Above, self.warn_at)
                .severity(Severity::Warning)
                .hold(self.warn_for)
                .recover_at(self.warn_recover_below)
                .recover_for(self.recover_for)
                .keep_firing_for(self.recover_for),
            Rule::new(POOL_RULE, self.signal, Comparison::Above, self.critical_at)
                .severity(Severity::Critical)
                .hold(self.critical_for)
                .recover_at(self.critical_recover_below)
                .recover_for(self.recover_for)
                .keep_firing_for(self.recover_for),
        ]
    }
}

impl Level {
    /// The level the firing pool rules amount to.
    pub(crate) fn from_firing(warning: bool, critical: bool) -> Level {
        if critical {
            Level::Critical
        } else if warning {
            Level::Warning
        } else {
            Level::Normal
        }
    }
}
