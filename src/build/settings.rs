//! Every setting of a guard, its default, and its validation. The builder
//! only writes these fields; `build()` validates them here and resolves the
//! defaults that depend on other settings (recovery thresholds, time
//! scale) before `assemble.rs` makes the running parts.

use crate::hot::connects::ConnectCounter;
use std::sync::Arc;
use std::time::Duration;

use crate::alert::defaults::default_rules;
use crate::alert::rule::Rule;
use crate::alert::rule_set::RuleSet;
use crate::alert::saturation::SaturationPolicy;
use crate::protect::breaker::BreakerConfig;
use crate::protect::shed::ShedConfig;
use crate::protect::timeout::DEFAULT_DRAIN;
use crate::stats::history;
use crate::stats::learned::Learned;

/// Pool name when [`PoolGuardBuilder::name`](crate::PoolGuardBuilder::name)
/// is not called and the pool's connect options name nothing to build the
/// conventions' default from (`server.address:server.port/db.namespace`;
/// SQLite: the file name).
pub const DEFAULT_NAME: &str = "default";
/// Default evaluation tick.
pub const DEFAULT_TICK: Duration = Duration::from_secs(1);
/// Default window for acquire-wait / hold-time percentiles and window counts.
pub const DEFAULT_STATS_WINDOW: Duration = Duration::from_secs(60);
/// Default capacity of the event channel (per stream backlog).
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;
/// Largest accepted `event_capacity` (the channel preallocates its slots).
pub const MAX_EVENT_CAPACITY: usize = 1 << 16;
/// Default window of the exhaustion forecast's trend.
pub const DEFAULT_FORECAST_WINDOW: Duration = Duration::from_secs(300);
/// Default utilization the scale hint aims for.
pub const DEFAULT_SCALE_TARGET: f64 = 0.60;

/// Which rules the guard runs besides the ones given one by one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RuleBase {
    /// The pool rules of the policy, then [`default_rules`], minus the
    /// names removed.
    Defaults {
        /// Names removed with `without_rule`.
        removed: Vec<String>,
    },
    /// Exactly the list given to `rules()` (a duplicate name and severity
    /// in it, kept here, fails the build).
    Replaced {
        /// The first duplicate found in the list.
        duplicate: Option<String>,
    },
}

/// What the builder collects (everything but the pool, the callbacks, the
/// classifier and the server watch, which are not plain settings).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// `None`: named from the pool's connect options at build.
    pub(crate) name: Option<Arc<str>>,
    /// Also emit the deprecated `db.client.connection.max`.
    pub(crate) deprecated_max: bool,
    pub(crate) policy: SaturationPolicy,
    /// `None`: 5 points under the level's threshold.
    pub(crate) warn_recover_below: Option<f64>,
    pub(crate) critical_recover_below: Option<f64>,
    pub(crate) tick: Duration,
    pub(crate) stats_window: Duration,
    pub(crate) event_capacity: usize,
    pub(crate) base: RuleBase,
    /// Rules added one by one (or the `rules()` list), in order.
    pub(crate) rules: RuleSet,
    pub(crate) leak_threshold: Option<Duration>,
    /// Counts the pool's connection opens (the churn signal).
    pub(crate) connects: Option<ConnectCounter>,
    pub(crate) forecast_window: Duration,
    /// Bucket of the traffic baseline (one minute unless time-scaled).
    pub(crate) baseline_bucket: Duration,
    pub(crate) scale_target: f64,
    pub(crate) instances: u32,
    pub(crate) server_interval: Option<Duration>,
    pub(crate) breaker: BreakerConfig,
    pub(crate) shed: ShedConfig,
    pub(crate) query_timeout: Option<Duration>,
    pub(crate) drain_timeout: Duration,
    pub(crate) time_scale: f64,
    /// What an earlier guard learned (`PoolGuardBuilder::resume`).
    pub(crate) resume: Option<Learned>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            name: None,
            deprecated_max: false,
            policy: SaturationPolicy::default(),
            warn_recover_below: None,
            critical_recover_below: None,
            tick: DEFAULT_TICK,
            stats_window: DEFAULT_STATS_WINDOW,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            base: RuleBase::Defaults {
                removed: Vec::new(),
            },
            rules: RuleSet::of(default_rules()),
            leak_threshold: None,
            connects: None,
            forecast_window: DEFAULT_FORECAST_WINDOW,
            baseline_bucket: history::BUCKET,
            scale_target: DEFAULT_SCALE_TARGET,
            instances: 1,
            server_interval: None,
            breaker: BreakerConfig::default(),
            shed: ShedConfig::default(),
            query_timeout: None,
            drain_timeout: DEFAULT_DRAIN,
            time_scale: 1.0,
            resume: None,
        }
    }
}

impl Settings {
    /// Replaces every rule with `rules` (no pool rules, no defaults).
    pub(crate) fn replace_rules(&mut self, rules: impl IntoIterator<Item = Rule>) {
        let list: Vec<Rule> = rules.into_iter().collect();
        let duplicate = list.iter().enumerate().find_map(|(i, r)| {
            list[..i]
                .iter()
                .any(|o| o.name == r.name && o.severity == r.severity)
                .then(|| r.key())
        });
        self.base = RuleBase::Replaced { duplicate };
        self.rules = RuleSet::of(list);
    }

    /// Removes every rule named `name`, the pool rules included.
    pub(crate) fn remove_rule(&mut self, name: &str) {
        self.rules.remove(name);
        if let RuleBase::Defaults { removed } = &mut self.base {
            removed.push(name.to_owned());
        }
    }

    /// The policy with its recovery thresholds resolved: not given, they
    /// follow their level down 5 points.
    pub(super) fn resolved_policy(&self) -> SaturationPolicy {
        let below = |at: f64| if at > 0.1 { at - 0.05 } else { at / 2.0 };
        let mut p = self.policy.clone();
        p.warn_recover_below = self.warn_recover_below.unwrap_or(below(p.warn_at));
        p.critical_recover_below = self.critical_recover_below.unwrap_or(below(p.critical_at));
        p
    }
}
