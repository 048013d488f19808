//! Alert rules: what a rule is, the default table, and the pure state
//! machine that decides each rule's state, with time passed in.
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

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::MAX_DURATION;
use crate::error::Error;
use crate::signals::{Quantile, Signal};

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

    fn is_upward(self) -> bool {
        matches!(self, Comparison::Above | Comparison::AtOrAbove)
    }

    fn symbol(self) -> &'static str {
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

    /// Checks the rule against itself and the guard's tick.
    pub(crate) fn validate(&self, tick: Duration) -> Result<(), Error> {
        let bad = |field, value: String, reason| {
            Err(Error::config(
                field,
                format!("rule `{}`: {value}", self.key()),
                reason,
            ))
        };
        if self.name.is_empty() || self.name.contains('\0') {
            return bad(
                "rule.name",
                format!("{:?}", self.name),
                "must be non-empty without NUL",
            );
        }
        if !self.threshold.is_finite() {
            return bad(
                "rule.threshold",
                self.threshold.to_string(),
                "must be finite",
            );
        }
        if !self.recover_at.is_finite() {
            return bad(
                "rule.recover_at",
                self.recover_at.to_string(),
                "must be finite",
            );
        }
        let wrong_side = if self.comparison.is_upward() {
            self.recover_at > self.threshold
        } else {
            self.recover_at < self.threshold
        };
        if wrong_side {
            return bad(
                "rule.recover_at",
                format!(
                    "{} (threshold {} {})",
                    self.recover_at,
                    self.comparison.symbol(),
                    self.threshold
                ),
                "must be on the recovered side of the threshold (hysteresis)",
            );
        }
        for (field, d) in [
            ("rule.hold", self.hold),
            ("rule.keep_firing_for", self.keep_firing_for),
            ("rule.recover_for", self.recover_for),
            ("rule.window", self.window),
        ] {
            if d > MAX_DURATION {
                return bad(field, format!("{d:?}"), "must be at most one year");
            }
        }
        if self.signal.is_windowed() && self.window < tick {
            return bad(
                "rule.window",
                format!("{:?} (tick {tick:?})", self.window),
                "must be at least one tick",
            );
        }
        Ok(())
    }
}

/// Name of the pool-utilization rules; their state is the guard's [`Level`](crate::Level).
pub const POOL_RULE: &str = "pool_utilization";
/// Name of the scale-hint rule.
pub const SCALE_RULE: &str = "scale_up";
/// Name of the exhaustion-forecast rule.
pub const FORECAST_RULE: &str = "exhaustion_forecast";

fn mins(m: u64) -> Duration {
    Duration::from_secs(60 * m)
}

/// The rest of the post-mortem's alert table (INC-EX3) as rules: the two
/// pool rules come from [`SaturationPolicy`](crate::SaturationPolicy) and
/// are added by the builder in front of these:
///
/// - error rate > 1 % for 3 min (warning) / > 2.5 % for 2 min (critical),
///   on the guard's query errors and on the requests the app records;
/// - timeouts > 5 / > 10 in 5 min, on the guard's acquire and query timeouts and on
///   the app's 504s;
/// - P95 > 400 ms for 5 min / > 600 ms for 3 min, on the guard's query
///   latency and on the app's request latency;
/// - traffic > 2 std dev for 5 min (acquire rate against an hour's baseline
///   that leaves out the last 10 minutes; 20 minutes of warm-up);
/// - the forecast: exhaustion ETA < 15 min, held 1 min;
/// - the scale hint: utilization > 75 % for 1 min (the post-mortem's
///   auto-scaling trigger "> 75% -> scale"; an autoscaler's stabilization
///   minute, so a burst at a third of the pool does not ask for more).
///
/// Every default rule keeps firing for 1 min after its condition last held
/// (flapping does not resolve it); the rules with a hold also need 1 min of
/// recovered values. Error rates and latencies recover 20 % below their
/// threshold (0.8 % / 2 %, 320 ms / 480 ms), the scale hint below 70 %; the
/// timeout counts recover when the 5-minute window drops to the threshold.
pub fn default_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for (name, signal) in [
        ("error_rate", Signal::QueryErrorRate),
        ("request_error_rate", Signal::RequestErrorRate),
    ] {
        rules.push(
            Rule::new(name, signal, Comparison::Above, 0.01)
                .hold(mins(3))
                .recover_at(0.008)
                .recover_for(mins(1))
                .min_samples(50),
        );
        rules.push(
            Rule::new(name, signal, Comparison::Above, 0.025)
                .severity(Severity::Critical)
                .hold(mins(2))
                .recover_at(0.02)
                .recover_for(mins(1))
                .min_samples(50),
        );
    }
    for (name, signal) in [
        ("timeouts", Signal::Timeouts),
        ("gateway_timeouts", Signal::GatewayTimeouts),
    ] {
        rules.push(Rule::new(name, signal, Comparison::Above, 5.0).window(mins(5)));
        rules.push(
            Rule::new(name, signal, Comparison::Above, 10.0)
                .severity(Severity::Critical)
                .window(mins(5)),
        );
    }
    for (name, signal) in [
        ("latency_p95", Signal::QueryLatency(Quantile::P95)),
        ("request_latency_p95", Signal::RequestLatency(Quantile::P95)),
    ] {
        rules.push(
            Rule::new(name, signal, Comparison::Above, 0.400)
                .hold(mins(5))
                .recover_at(0.320)
                .recover_for(mins(1))
                .min_samples(20),
        );
        rules.push(
            Rule::new(name, signal, Comparison::Above, 0.600)
                .severity(Severity::Critical)
                .hold(mins(3))
                .recover_at(0.480)
                .recover_for(mins(1))
                .min_samples(20),
        );
    }
    rules.push(
        Rule::new(
            "traffic_anomaly",
            Signal::TrafficAnomaly,
            Comparison::Above,
            2.0,
        )
        .hold(mins(5))
        .recover_for(mins(1))
        .min_samples(10),
    );
    rules.push(
        Rule::new(
            FORECAST_RULE,
            Signal::ExhaustionEta,
            Comparison::Below,
            mins(15).as_secs_f64(),
        )
        .hold(mins(1))
        .recover_for(mins(1)),
    );
    rules.push(
        Rule::new(SCALE_RULE, Signal::Utilization, Comparison::Above, 0.75)
            .severity(Severity::Info)
            .hold(mins(1))
            .recover_at(0.70)
            .recover_for(mins(1)),
    );
    rules
        .into_iter()
        .map(|r| r.keep_firing_for(mins(1)))
        .collect()
}

/// The rules added by `PoolGuardBuilder::watch_server` (feature `postgres`), with fixed
/// thresholds (80 % / 90 %, whatever the pool's own are):
/// the server's connection slots, with the pool's own thresholds.
pub fn server_rules() -> Vec<Rule> {
    vec![
        Rule::new(
            "server_connections",
            Signal::ServerUtilization,
            Comparison::Above,
            0.80,
        )
        .hold(mins(5))
        .recover_at(0.75)
        .recover_for(mins(1))
        .keep_firing_for(mins(1)),
        Rule::new(
            "server_connections",
            Signal::ServerUtilization,
            Comparison::Above,
            0.90,
        )
        .severity(Severity::Critical)
        .hold(mins(2))
        .recover_at(0.85)
        .recover_for(mins(1))
        .keep_firing_for(mins(1)),
    ]
}

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
    /// Value over the last whole tick (`None` inside: no value).
    last_tick: Option<Option<f64>>,
    /// Instantaneous signals: the tick averages of the last `window`
    /// (tick start, seconds, value), bounded by `window / tick` entries.
    ticks: std::collections::VecDeque<(Instant, f64, f64)>,
    /// Value at the last observation.
    pub(crate) value: Option<f64>,
}

/// Most tick averages a tracker keeps for the mean since a hold began.
const MAX_TICKS: usize = 3600;

/// Time-weighted mean of the tick averages of ticks that started at or
/// after `from` (plain mean if they carry no duration); `None` without any.
fn mean_since(
    ticks: &std::collections::VecDeque<(Instant, f64, f64)>,
    from: Instant,
) -> Option<f64> {
    let (mut area, mut secs, mut sum, mut n) = (0.0, 0.0, 0.0, 0u32);
    for &(start, dt, v) in ticks.iter().rev() {
        if start < from {
            break;
        }
        area += v * dt;
        secs += dt;
        sum += v;
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

impl RuleTracker {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            state: AlertState::Inactive,
            since: now,
            met_since: None,
            cleared_since: None,
            last_met: None,
            last_tick: None,
            ticks: std::collections::VecDeque::new(),
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
        self.observe_with(rule, now, value, Some((value, now)))
    }

    /// Feeds the signal's value at `now` (`None`: no value, e.g. too few
    /// samples) and, at the end of a tick, the tick's value (time-weighted
    /// average for instantaneous signals) and when that tick started.
    pub(crate) fn observe_with(
        &mut self,
        rule: &Rule,
        now: Instant,
        value: Option<f64>,
        tick: Option<(Option<f64>, Instant)>,
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
            Some((avg, started)) if rule.signal.is_instantaneous() => {
                if let Some(v) = avg {
                    let secs = now.saturating_duration_since(started).as_secs_f64();
                    self.ticks.push_back((started, secs, v));
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
                while self.ticks.front().is_some_and(|t| t.0 < oldest) {
                    self.ticks.pop_front();
                }
                let since = |marker: Option<Instant>| mean_since(&self.ticks, marker?.max(oldest));
                let held = since(self.met_since).map(|mean| (Some(mean), started));
                (held, Some((avg, started)))
            }
            Some((avg, started)) => (Some((avg, started)), Some((avg, started))),
        };
        if let Some((avg, _)) = tick {
            self.last_tick = Some(avg);
        }
        track(
            &mut self.met_since,
            met_now,
            met_tick.map(|(v, s)| (met(v), s)),
            now,
        );
        track(
            &mut self.cleared_since,
            cleared_now,
            cleared_tick.map(|(v, s)| (cleared(v), s)),
            now,
        );
        let met_eff = met_now || self.last_tick.is_some_and(met);
        let cleared_eff = cleared_now || self.last_tick.is_some_and(cleared);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn pool_warn() -> Rule {
        Rule::new(POOL_RULE, Signal::Utilization, Comparison::Above, 0.80)
            .hold(secs(300))
            .recover_at(0.75)
            .recover_for(secs(60))
    }

    #[test]
    fn fires_exactly_at_hold_time_not_before() {
        let r = pool_warn();
        let t0 = Instant::now();
        let mut t = RuleTracker::new(t0);
        let tr = t.observe(&r, t0, Some(0.82)).unwrap();
        assert_eq!(
            (tr.from, tr.to),
            (AlertState::Inactive, AlertState::Pending)
        );
        assert_eq!(t.next_deadline(&r), Some(t0 + secs(300)));
        assert_eq!(t.observe(&r, t0 + secs(299), Some(0.82)), None);
        let tr = t.observe(&r, t0 + secs(300), Some(0.82)).unwrap();
        assert_eq!((tr.from, tr.to), (AlertState::Pending, AlertState::Firing));
        assert_eq!(tr.time_in_previous, secs(300));
    }

    #[test]
    fn strict_comparison_at_the_line_does_not_fire() {
        let r = pool_warn().hold(Duration::ZERO);
        let t0 = Instant::now();
        let mut t = RuleTracker::new(t0);
        assert_eq!(t.observe(&r, t0, Some(0.80)), None);
        assert_eq!(
            t.observe(&r, t0, Some(0.81)).unwrap().to,
            AlertState::Firing
        );
    }

    #[test]
    fn dip_restarts_the_hold_and_pending_goes_back_to_inactive() {
        let r = pool_warn();
        let t0 = Instant::now();
        let mut t = RuleTracker::new(t0);
        t.observe(&r, t0, Some(0.95));
        let tr = t.observe(&r, t0 + secs(100), Some(0.70)).unwrap();
        assert_eq!(tr.to, AlertState::Inactive);
        t.observe(&r, t0 + secs(101), Some(0.95));
        assert_eq!(t.observe(&r, t0 + secs(400), Some(0.95)), None);
        assert_eq!(
            t.observe(&r, t0 + secs(401), Some(0.95)).unwrap().to,
            AlertState::Firing
        );
    }

    #[test]
    fn hysteresis_keeps_firing_while_hovering() {
        let r = pool_warn();
        let t0 = Instant::now();
        let mut t = RuleTracker::new(t0);
        t.observe(&r, t0, Some(0.81));
        assert_eq!(
            t.observe(&r, t0 + secs(300), Some(0.81)).unwrap().to,
            AlertState::Firing
        );
        for i in 0..100 {
            let v = if i % 2 == 0 { 0.76 } else { 0.81 };
            assert_eq!(t.observe(&r, t0 + secs(301 + i * 10), Some(v)), None);
        }
        let s = t0 + secs(2000);
        assert_eq!(t.observe(&r, s, Some(0.70)), None);
        assert_eq!(t.observe(&r, s + secs(59), Some(0.70)), None);
        let tr = t.observe(&r, s + secs(60), Some(0.70)).unwrap();
        assert_eq!((tr.from, tr.to), (AlertState::Firing, AlertState::Resolved));
        // Resolved behaves as inactive: a new episode needs the full hold.
        let tr = t.observe(&r, s + secs(61), Some(0.9)).unwrap();
        assert_eq!(tr.to, AlertState::Pending);
        assert_eq!(t.next_deadline(&r), Some(s + secs(361)));
    }

    #[test]
    fn flapping_within_keep_firing_does_not_resolve() {
        let r = Rule::new("errors", Signal::QueryErrorRate, Comparison::Above, 0.01)
            .keep_firing_for(secs(120));
        let t0 = Instant::now();
        let mut t = RuleTracker::new(t0);
        assert_eq!(
            t.observe(&r, t0, Some(0.05)).unwrap().to,
            AlertState::Firing
        );
        // Below for 90 s, above again, below again: never 120 s clear.
        for k in 0..10u64 {
            let base = t0 + secs(100 * k);
            assert_eq!(t.observe(&r, base + secs(10), Some(0.0)), None);
            assert_eq!(t.observe(&r, base + secs(100), Some(0.05)), None);
        }
        let last_met = t0 + secs(1000);
        assert_eq!(t.observe(&r, last_met + secs(1), Some(0.0)), None);
        assert_eq!(t.next_deadline(&r), Some(last_met + secs(120)));
        assert_eq!(t.observe(&r, last_met + secs(119), Some(0.0)), None);
        let tr = t.observe(&r, last_met + secs(120), Some(0.0)).unwrap();
        assert_eq!(tr.to, AlertState::Resolved);
    }

    #[test]
    fn no_value_is_not_met() {
        let r = Rule::new("errors", Signal::QueryErrorRate, Comparison::Above, 0.01);
        let t0 = Instant::now();
        let mut t = RuleTracker::new(t0);
        assert_eq!(t.observe(&r, t0, None), None);
        assert_eq!(t.state(), AlertState::Inactive);
    }

    #[test]
    fn below_rules_mirror_above_rules() {
        let r = Rule::new("eta", Signal::ExhaustionEta, Comparison::Below, 900.0)
            .hold(secs(60))
            .recover_at(1200.0);
        let t0 = Instant::now();
        let mut t = RuleTracker::new(t0);
        t.observe(&r, t0, Some(800.0));
        assert_eq!(
            t.observe(&r, t0 + secs(60), Some(700.0)).unwrap().to,
            AlertState::Firing
        );
        // 1000 s is past the threshold but not past the recovery line.
        assert_eq!(t.observe(&r, t0 + secs(70), Some(1000.0)), None);
        assert_eq!(t.observe(&r, t0 + secs(80), Some(1000.0)), None);
        assert_eq!(
            t.observe(&r, t0 + secs(90), None).unwrap().to,
            AlertState::Resolved
        );
    }

    #[test]
    fn short_dips_inside_a_busy_tick_do_not_restart_the_hold() {
        let r = Rule::new(POOL_RULE, Signal::Utilization, Comparison::Above, 0.90)
            .hold(secs(120))
            .recover_at(0.85);
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut t = RuleTracker::new(t0);
        t.observe_with(&r, t0, Some(0.92), None);
        for s in 0..120u64 {
            let tick = t0 + secs(s);
            assert_eq!(t.observe_with(&r, tick + ms(500), Some(0.88), None), None);
            assert_eq!(t.observe_with(&r, tick + ms(501), Some(0.92), None), None);
            if s < 119 {
                assert_eq!(
                    t.observe_with(&r, tick + secs(1), Some(0.92), Some((Some(0.919), tick))),
                    None
                );
            }
        }
        let tr = t
            .observe_with(
                &r,
                t0 + secs(120),
                Some(0.92),
                Some((Some(0.919), t0 + secs(119))),
            )
            .unwrap();
        assert_eq!(tr.to, AlertState::Firing);
        // A tick averaging below the line does restart it.
        let mut t = RuleTracker::new(t0);
        t.observe_with(&r, t0, Some(0.92), None);
        t.observe_with(
            &r,
            t0 + secs(60),
            Some(0.88),
            Some((Some(0.89), t0 + secs(59))),
        );
        t.observe_with(&r, t0 + secs(61), Some(0.92), None);
        assert_eq!(
            t.observe_with(
                &r,
                t0 + secs(180),
                Some(0.92),
                Some((Some(0.92), t0 + secs(179)))
            ),
            None
        );
        assert_eq!(
            t.observe_with(
                &r,
                t0 + secs(181),
                Some(0.92),
                Some((Some(0.92), t0 + secs(180)))
            )
            .unwrap()
            .to,
            AlertState::Firing
        );
    }

    #[test]
    fn validation_names_the_field_and_the_rule() {
        let tick = secs(1);
        let e = pool_warn()
            .recover_at(0.9)
            .validate(tick)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rule.recover_at") && e.contains("pool_utilization/warning"),
            "{e}"
        );
        let e = pool_warn()
            .threshold_nan()
            .validate(tick)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rule.threshold"), "{e}");
        let e = Rule::new("t", Signal::Timeouts, Comparison::Above, 5.0)
            .window(Duration::from_millis(10))
            .validate(tick)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rule.window"), "{e}");
        for r in default_rules().iter().chain(&server_rules()) {
            r.validate(tick).unwrap();
        }
    }

    /// A value that meets the rule and one that has clearly recovered.
    fn met_and_cleared(r: &Rule) -> (f64, f64) {
        let margin = r.threshold.abs().max(1.0) * 0.1;
        if r.comparison.is_upward() {
            (r.threshold + margin, r.recover_at - margin)
        } else {
            (r.threshold - margin, r.recover_at + margin)
        }
    }

    #[test]
    fn every_default_rule_keeps_firing_through_flapping_and_resolves_on_time() {
        let policy = crate::SaturationPolicy::default();
        for r in policy
            .rules()
            .iter()
            .chain(&default_rules())
            .chain(&server_rules())
        {
            let (met, cleared) = met_and_cleared(r);
            assert!(r.met(met) && r.cleared(cleared), "{}", r.key());
            let t0 = Instant::now();
            let mut t = RuleTracker::new(t0);
            let mut now = t0;
            t.observe(r, now, Some(met));
            // Fires exactly when the hold passes, not a second before.
            if !r.hold.is_zero() {
                now += r.hold - secs(1);
                assert_eq!(t.observe(r, now, Some(met)), None, "{}", r.key());
                now += secs(1);
            }
            assert_eq!(
                t.state(),
                if r.hold.is_zero() {
                    AlertState::Firing
                } else {
                    AlertState::Pending
                }
            );
            t.observe(r, now, Some(met));
            assert_eq!(t.state(), AlertState::Firing, "{}", r.key());
            // Flapping: recovered for less than the keep-firing time, then
            // met again, for an hour.
            let gap = r.keep_firing_for.max(r.recover_for) - secs(1);
            assert!(!gap.is_zero(), "{} has a keep-firing time", r.key());
            for _ in 0..(3600 / gap.as_secs().max(1)) {
                now += secs(1);
                t.observe(r, now, Some(cleared));
                now += gap - secs(1);
                assert_eq!(t.observe(r, now, Some(cleared)), None, "{}", r.key());
                now += secs(1);
                assert_eq!(t.observe(r, now, Some(met)), None, "{}", r.key());
            }
            // Recovered for good: resolves exactly then.
            let last_met = now;
            t.observe(r, now + secs(1), Some(cleared));
            let due = last_met + r.keep_firing_for.max(r.recover_for + secs(1));
            assert_eq!(t.next_deadline(r), Some(due), "{}", r.key());
            assert_eq!(
                t.observe(r, due - secs(1), Some(cleared)),
                None,
                "{}",
                r.key()
            );
            let tr = t.observe(r, due, Some(cleared)).unwrap();
            assert_eq!(tr.to, AlertState::Resolved, "{}", r.key());
        }
    }

    #[test]
    fn default_rules_with_a_band_keep_firing_inside_it() {
        let policy = crate::SaturationPolicy::default();
        let with_band: Vec<Rule> = policy
            .rules()
            .into_iter()
            .chain(default_rules())
            .chain(server_rules())
            .filter(|r| r.recover_at != r.threshold)
            .collect();
        assert_eq!(
            with_band.len(),
            2 + 8 + 1 + 2,
            "pool, rates, latencies, scale, server"
        );
        for r in with_band {
            let band = (r.threshold + r.recover_at) / 2.0;
            assert!(!r.met(band) && !r.cleared(band), "{}", r.key());
            let (met, cleared) = met_and_cleared(&r);
            let t0 = Instant::now();
            let mut t = RuleTracker::new(t0);
            t.observe(&r, t0, Some(met));
            t.observe(&r, t0 + r.hold, Some(met));
            assert_eq!(t.state(), AlertState::Firing, "{}", r.key());
            for m in 1..=60 {
                let at = t0 + r.hold + secs(60 * m);
                assert_eq!(t.observe(&r, at, Some(band)), None, "{}", r.key());
            }
            let out = t0 + r.hold + secs(3601);
            t.observe(&r, out, Some(cleared));
            let tr = t.observe(&r, out + r.recover_for, Some(cleared)).unwrap();
            assert_eq!(tr.to, AlertState::Resolved, "{}", r.key());
        }
    }

    impl Rule {
        fn threshold_nan(mut self) -> Self {
            self.threshold = f64::NAN;
            self
        }
    }
}
