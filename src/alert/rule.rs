//! What a rule is: the signal it watches, the comparison, the hold and
//! recovery times, and its validation.

use std::sync::Arc;
use std::time::Duration;

use crate::alert::signal::Signal;

/// How bad a firing rule is.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Severity {
    /// Informational (the scale hint).
    Info,
    /// Worth a look (Slack `#alerts` in the post-mortem's routing).
    Warning,
    /// Page someone (PagerDuty in the post-mortem's routing).
    Critical,
}

impl Severity {
    /// Lower-case name: `info`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a rule compares the signal with its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Comparison {
    /// `value > threshold` (the post-mortem's "> 80%").
    Above,
    /// `value >= threshold`.
    AtOrAbove,
    /// `value < threshold` (the forecast's "ETA < 15 min").
    Below,
    /// `value <= threshold`.
    AtOrBelow,
}

impl Comparison {
    /// Whether `value` meets `threshold` under this comparison.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Above => value > threshold,
            Comparison::AtOrAbove => value >= threshold,
            Comparison::Below => value < threshold,
            Comparison::AtOrBelow => value <= threshold,
        }
    }

    pub(crate) fn is_upward(self) -> bool {
        matches!(self, Comparison::Above | Comparison::AtOrAbove)
    }

    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Comparison::Above => ">",
            Comparison::AtOrAbove => ">=",
            Comparison::Below => "<",
            Comparison::AtOrBelow => "<=",
        }
    }
}

/// Where a rule stands.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AlertState {
    /// Condition not met (and the rule never fired, or fired long ago).
    #[default]
    Inactive,
    /// Condition met, hold time not yet passed.
    Pending,
    /// Condition met for the hold time.
    Firing,
    /// Was firing; the value recovered. Acts as `Inactive` from here.
    Resolved,
}

impl AlertState {
    /// For the `poolguard.alert.state` metric: 0 inactive or resolved,
    /// 1 pending, 2 firing.
    pub fn as_number(self) -> u8 {
        match self {
            AlertState::Inactive | AlertState::Resolved => 0,
            AlertState::Pending => 1,
            AlertState::Firing => 2,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

impl std::fmt::Display for AlertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert rule. Build with [`Rule::new`] and the chained setters; the
/// guard validates it at `build()`.
///
/// ```
/// use std::time::Duration;
/// use poolguard::{Comparison, Rule, Severity, Signal, Quantile};
///
/// // Page when the acquire wait's p99 stays above 250 ms for 2 minutes.
/// let rule = Rule::new("acquire_wait_p99", Signal::AcquireWait(Quantile::P99), Comparison::Above, 0.250)
///     .severity(Severity::Critical)
///     .hold(Duration::from_secs(120))
///     .recover_at(0.200)
///     .recover_for(Duration::from_secs(60))
///     .min_samples(20);
/// assert_eq!(rule.threshold, 0.250);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Rule {
    /// Name, unique together with the severity (label `rule` on metrics).
    pub name: Arc<str>,
    /// Severity (label `severity` on metrics).
    pub severity: Severity,
    /// What is compared.
    pub signal: Signal,
    /// How it is compared.
    pub comparison: Comparison,
    /// With what, in the signal's unit.
    pub threshold: f64,
    /// How long the condition must hold before the rule fires (`for:`).
    pub hold: Duration,
    /// A firing rule resolves only after the condition has been false this
    /// long (Prometheus' `keep_firing_for`).
    pub keep_firing_for: Duration,
    /// A firing rule resolves only once the value is past this threshold
    /// (hysteresis; defaults to `threshold`) ...
    pub recover_at: f64,
    /// ... continuously for this long.
    pub recover_for: Duration,
    /// Below this many samples in the window the signal has no value (the
    /// condition is not met); for ratios, rates and percentiles.
    pub min_samples: u64,
    /// Window of windowed signals (rates, counts, percentiles); the ETA
    /// uses the builder's `forecast_window`, the anomaly its own baseline.
    pub window: Duration,
}

/// Default window of windowed signals.
pub const DEFAULT_RULE_WINDOW: Duration = Duration::from_secs(60);

impl Rule {
    /// A warning rule with no hold, no hysteresis and a 60 s window.
    pub fn new(
        name: impl Into<String>,
        signal: Signal,
        comparison: Comparison,
        threshold: f64,
    ) -> Self {
        Self {
            name: Arc::from(name.into()),
            severity: Severity::Warning,
            signal,
            comparison,
            threshold,
            hold: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            recover_at: threshold,
            recover_for: Duration::ZERO,
            min_samples: 0,
            window: DEFAULT_RULE_WINDOW,
        }
    }

    /// Sets the severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Sets the hold time (`for:`).
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// Sets the keep-firing time.
    pub fn keep_firing_for(mut self, d: Duration) -> Self {
        self.keep_firing_for = d;
        self
    }

    /// Sets the recovery threshold (hysteresis).
    pub fn recover_at(mut self, v: f64) -> Self {
        self.recover_at = v;
        self
    }

    /// Sets how long the value must stay recovered.
    pub fn recover_for(mut self, d: Duration) -> Self {
        self.recover_for = d;
        self
    }

    /// Sets the minimum sample count.
    pub fn min_samples(mut self, n: u64) -> Self {
        self.min_samples = n;
        self
    }

    /// Sets the window of a windowed signal.
    pub fn window(mut self, w: Duration) -> Self {
        self.window = w;
        self
    }

    /// The same rule on a clock running `factor` times faster than the wall
    /// clock (a replay or load test in compressed time): every duration is
    /// divided by `factor`, and so is a threshold in seconds (latency, ETA);
    /// a per-second threshold (acquire rate) is multiplied by it. Ratios,
    /// counts and z-scores are unchanged. The builder's
    /// [`time_scale`](crate::PoolGuardBuilder::time_scale) applies this to
    /// every rule.
    ///
    /// ```
    /// use std::time::Duration;
    /// use poolguard::{Comparison, Quantile, Rule, Signal};
    ///
    /// let p95 = Rule::new("p95", Signal::RequestLatency(Quantile::P95), Comparison::Above, 0.6)
    ///     .hold(Duration::from_secs(180))
    ///     .time_scaled(60.0); // 1 s of wall time = 1 minute
    /// assert_eq!(p95.hold, Duration::from_secs(3));
    /// assert!((p95.threshold - 0.01).abs() < 1e-12);
    /// ```
    pub fn time_scaled(mut self, factor: f64) -> Self {
        let d = |d: Duration| d.div_f64(factor);
        self.hold = d(self.hold);
        self.keep_firing_for = d(self.keep_firing_for);
        self.recover_for = d(self.recover_for);
        self.window = d(self.window);
        let unit = factor.powi(-self.signal.time_dimension());
        self.threshold *= unit;
        self.recover_at *= unit;
        self
    }

    /// `name/severity`, how errors and logs name the rule.
    pub fn key(&self) -> String {
        format!("{}/{}", self.name, self.severity)
    }

    pub(crate) fn met(&self, v: f64) -> bool {
        self.comparison.holds(v, self.threshold)
    }

    pub(crate) fn cleared(&self, v: f64) -> bool {
        !self.comparison.holds(v, self.recover_at)
    }
}
