//! Validation of every setting: each check names the field and shows the
//! value it refused ([`BuildError::InvalidConfig`]), and durations share the
//! bounds of `error.rs` ([`MAX_DURATION`]).

use std::time::Duration;

use super::settings::{RuleBase, Settings, MAX_EVENT_CAPACITY};
use crate::alert::rule::Rule;
use crate::alert::rule_set::RuleSet;
use crate::alert::saturation::SaturationPolicy;
use crate::alert::signal::Signal;
use crate::error::{BuildError, MAX_DURATION};
use crate::protect::breaker::BreakerConfig;
use crate::stats::learned::Learned;

/// A ratio in `(0, 1)`: the pool rules fire *above* their threshold (the
/// post-mortem's "> 80%"), so 1.0 could never fire on utilization.
fn open_ratio(field: &'static str, v: f64) -> Result<(), BuildError> {
    if v.is_finite() && v > 0.0 && v < 1.0 {
        Ok(())
    } else {
        Err(BuildError::config(field, v, "must be a ratio in (0, 1)"))
    }
}

/// `low` must not be above `high`.
fn not_above(
    (low_field, low): (&'static str, f64),
    (high_field, high): (&'static str, f64),
    reason: &'static str,
) -> Result<(), BuildError> {
    if low > high {
        return Err(BuildError::config(
            low_field,
            format!("{low} ({high_field} = {high})"),
            reason,
        ));
    }
    Ok(())
}

pub(crate) fn policy(p: &SaturationPolicy) -> Result<(), BuildError> {
    open_ratio("warn_at", p.warn_at)?;
    open_ratio("critical_at", p.critical_at)?;
    open_ratio("warn_recover_below", p.warn_recover_below)?;
    open_ratio("critical_recover_below", p.critical_recover_below)?;
    if p.warn_at >= p.critical_at {
        return Err(BuildError::config(
            "warn_at",
            format!("{} (critical_at = {})", p.warn_at, p.critical_at),
            "must be below critical_at",
        ));
    }
    not_above(
        ("warn_recover_below", p.warn_recover_below),
        ("warn_at", p.warn_at),
        "must not be above warn_at",
    )?;
    not_above(
        ("critical_recover_below", p.critical_recover_below),
        ("critical_at", p.critical_at),
        "must not be above critical_at",
    )?;
    not_above(
        ("warn_recover_below", p.warn_recover_below),
        ("critical_recover_below", p.critical_recover_below),
        "must not be above critical_recover_below",
    )?;
    for (field, d) in [
        ("warn_for", p.warn_for),
        ("critical_for", p.critical_for),
        ("recover_for", p.recover_for),
    ] {
        BuildError::check_span(field, d)?;
    }
    if !matches!(p.signal, Signal::Utilization | Signal::Demand) {
        return Err(BuildError::config(
            "signal",
            format!("{:?}", p.signal),
            "the pool rules take Signal::Utilization or Signal::Demand",
        ));
    }
    Ok(())
}

pub(crate) fn monitoring(s: &Settings) -> Result<(), BuildError> {
    BuildError::check_positive_span("tick", s.tick)?;
    BuildError::check_span("stats_window", s.stats_window)?;
    if s.stats_window < s.tick {
        return Err(BuildError::config(
            "stats_window",
            format!("{:?} (tick = {:?})", s.stats_window, s.tick),
            "must be at least one tick",
        ));
    }
    if s.forecast_window < s.tick * 10 || s.forecast_window > MAX_DURATION {
        return Err(BuildError::config(
            "forecast_window",
            format!("{:?} (tick = {:?})", s.forecast_window, s.tick),
            "must span at least 10 ticks and at most one year",
        ));
    }
    if s.event_capacity == 0 || s.event_capacity > MAX_EVENT_CAPACITY {
        return Err(BuildError::config(
            "event_capacity",
            s.event_capacity,
            "must be in 1..=65536",
        ));
    }
    if let Some(name) = s
        .name
        .as_deref()
        .filter(|n| n.is_empty() || n.contains('\0'))
    {
        return Err(BuildError::config(
            "name",
            format!("{name:?}"),
            "must be non-empty, without NUL",
        ));
    }
    if !(s.scale_target.is_finite() && s.scale_target > 0.0 && s.scale_target <= 1.0) {
        return Err(BuildError::config(
            "scale_target",
            s.scale_target,
            "must be a ratio in (0, 1]",
        ));
    }
    if s.instances == 0 {
        return Err(BuildError::config("instances", 0, "must be at least 1"));
    }
    if let Some(i) = s.server_interval {
        BuildError::check_positive_span("watch_server", i)?;
    }
    if let Some(t) = s.leak_threshold {
        BuildError::check_positive_span("leak_detection", t)?;
    }
    if !(s.time_scale.is_finite() && (1e-3..=1e6).contains(&s.time_scale)) {
        return Err(BuildError::config(
            "time_scale",
            s.time_scale,
            "must be a finite factor in 0.001..=1000000",
        ));
    }
    Ok(())
}

pub(crate) fn protection(s: &Settings) -> Result<(), BuildError> {
    breaker(&s.breaker)?;
    if let Some(t) = s.query_timeout {
        BuildError::check_positive_span("query_timeout", t)?;
    }
    BuildError::check_positive_span("drain_timeout", s.drain_timeout)?;
    if let Some(w) = s.shed.max_wait {
        BuildError::check_positive_span("shed.max_wait", w)?;
    }
    Ok(())
}

/// A rule, as `rule()`, `rules()` and the defaults give it.
pub(crate) fn rule(r: &Rule, tick: Duration) -> Result<(), BuildError> {
    let bad = |field, value: String, reason| {
        Err(BuildError::config(
            field,
            format!("rule `{}`: {value}", r.key()),
            reason,
        ))
    };
    if r.name.is_empty() || r.name.contains('\0') {
        return bad(
            "rule.name",
            format!("{:?}", r.name),
            "must be non-empty without NUL",
        );
    }
    if !r.threshold.is_finite() {
        return bad("rule.threshold", r.threshold.to_string(), "must be finite");
    }
    if !r.recover_at.is_finite() {
        return bad(
            "rule.recover_at",
            r.recover_at.to_string(),
            "must be finite",
        );
    }
    let wrong_side = if r.comparison.is_upward() {
        r.recover_at > r.threshold
    } else {
        r.recover_at < r.threshold
    };
    if wrong_side {
        return bad(
            "rule.recover_at",
            format!(
                "{} (threshold {} {})",
                r.recover_at,
                r.comparison.symbol(),
                r.threshold
            ),
            "must be on the recovered side of the threshold (hysteresis)",
        );
    }
    for (field, d) in [
        ("rule.hold", r.hold),
        ("rule.keep_firing_for", r.keep_firing_for),
        ("rule.recover_for", r.recover_for),
        ("rule.window", r.window),
    ] {
        if d > MAX_DURATION {
            return bad(field, format!("{d:?}"), "must be at most one year");
        }
    }
    if r.signal.is_windowed() && r.window < tick {
        return bad(
            "rule.window",
            format!("{:?} (tick {tick:?})", r.window),
            "must be at least one tick",
        );
    }
    Ok(())
}

/// The circuit breaker's settings.
pub(crate) fn breaker(c: &BreakerConfig) -> Result<(), BuildError> {
    let bad = |field, value: String, reason| Err(BuildError::config(field, value, reason));
    let rate = |field, v: f64| {
        if v.is_finite() && v > 0.0 && v <= 1.0 {
            Ok(())
        } else {
            bad(field, v.to_string(), "must be a ratio in (0, 1]")
        }
    };
    rate("breaker.failure_rate", c.failure_rate)?;
    rate("breaker.slow_call_rate", c.slow_call_rate)?;
    if !(c.jitter.is_finite() && (0.0..1.0).contains(&c.jitter)) {
        return bad("breaker.jitter", c.jitter.to_string(), "must be in [0, 1)");
    }
    if !(c.multiplier.is_finite() && c.multiplier >= 1.0) {
        return bad(
            "breaker.multiplier",
            c.multiplier.to_string(),
            "must be at least 1",
        );
    }
    if c.buckets == 0 || c.buckets > 1000 {
        return bad(
            "breaker.buckets",
            c.buckets.to_string(),
            "must be in 1..=1000",
        );
    }
    if c.window < Duration::from_millis(u64::from(c.buckets)) || c.window > MAX_DURATION {
        return bad(
            "breaker.window",
            format!("{:?} ({} buckets)", c.window, c.buckets),
            "must be at least 1 ms per bucket and at most one year",
        );
    }
    if c.minimum_calls == 0 {
        return bad("breaker.minimum_calls", "0".into(), "must be at least 1");
    }
    if c.half_open_calls == 0 {
        return bad("breaker.half_open_calls", "0".into(), "must be at least 1");
    }
    for (field, d) in [
        ("breaker.base_wait", c.base_wait),
        ("breaker.max_wait", c.max_wait),
        ("breaker.slow_call_duration", c.slow_call_duration),
    ] {
        if d > MAX_DURATION {
            return bad(field, format!("{d:?}"), "must be at most one year");
        }
    }
    if c.base_wait.is_zero() || c.max_wait < c.base_wait {
        return bad(
            "breaker.base_wait",
            format!("{:?} (max_wait {:?})", c.base_wait, c.max_wait),
            "must be above zero and at most max_wait",
        );
    }
    Ok(())
}

/// Resolving the settings is validating them: here, beside the checks.
impl Settings {
    /// The rules the guard runs: the pool rules (unless replaced), then the
    /// other rules; a later rule with the same name and severity wins.
    fn rule_set(&self, policy: &SaturationPolicy) -> Result<RuleSet, BuildError> {
        let mut all = RuleSet::default();
        match &self.base {
            RuleBase::Defaults { removed } => {
                for r in policy.rules() {
                    if !removed.iter().any(|n| **n == *r.name) {
                        all.upsert(r);
                    }
                }
            }
            RuleBase::Replaced {
                duplicate: Some(key),
            } => {
                return Err(BuildError::config(
                    "rules",
                    key,
                    "two rules with the same name and severity",
                ));
            }
            RuleBase::Replaced { duplicate: None } => {}
        }
        for r in self.rules.iter() {
            rule(r, self.tick)?;
            all.upsert(r.clone());
        }
        for r in all.iter() {
            rule(r, self.tick)?;
            if r.signal == Signal::ServerUtilization && self.server_interval.is_none() {
                return Err(BuildError::config(
                    "rule.signal",
                    format!("rule `{}`: {:?}", r.key(), r.signal),
                    "needs watch_server (PostgreSQL): without it the signal never has a value",
                ));
            }
        }
        Ok(all)
    }

    /// Validates every setting and returns the settings as the monitor runs
    /// them: recovery thresholds resolved, every monitoring duration and
    /// rule converted by the time scale, and the rule set assembled.
    pub(crate) fn resolve(mut self) -> Result<(Self, RuleSet), BuildError> {
        self.policy = self.resolved_policy();
        policy(&self.policy)?;
        monitoring(&self)?;
        protection(&self)?;
        let mut rules = self.rule_set(&self.policy)?;
        let k = self.time_scale;
        if k != 1.0 {
            rules = rules.map(|r| r.time_scaled(k));
            for d in [
                &mut self.tick,
                &mut self.stats_window,
                &mut self.forecast_window,
                &mut self.baseline_bucket,
            ] {
                *d = d.div_f64(k);
            }
            if self.tick < Duration::from_millis(1) {
                return Err(BuildError::config(
                    "time_scale",
                    k,
                    "leaves a tick under 1 ms (tokio's timer resolution): raise the tick or lower the factor",
                ));
            }
        }
        if let Some(learned) = &self.resume {
            learned_history(learned, self.baseline_bucket)?;
        }
        Ok((self, rules))
    }
}

/// A learned history fits this guard: its minute is the guard's (after
/// the time scale), and every figure is finite and not negative.
fn learned_history(learned: &Learned, bucket: Duration) -> Result<(), BuildError> {
    if learned.bucket != bucket {
        return Err(BuildError::config(
            "resume.bucket",
            format!("{:?} (this guard's: {bucket:?})", learned.bucket),
            "the learned minute is not this guard's (a different time_scale?)",
        ));
    }
    let bad = |v: f64| !v.is_finite() || v < 0.0;
    if let Some((i, m)) = learned
        .minutes
        .iter()
        .enumerate()
        .find(|(_, m)| bad(m.arrival_rate) || m.mean_hold.is_some_and(bad))
    {
        return Err(BuildError::config(
            "resume.minutes",
            format!("minute {i}: {m:?}"),
            "rates and holds must be finite and not negative",
        ));
    }
    Ok(())
}
