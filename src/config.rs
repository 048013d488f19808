//! The builder: every setting, its default, and its validation.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Database, Pool};

use crate::accounting::{Accounting, Edges};
use crate::breaker::{BreakerCell, BreakerConfig, Classifier, Outcome};
use crate::error::Error;
use crate::events::{AlertEvent, Callback, Event, EventHub, SaturationEvent};
use crate::guard::PoolGuard;
use crate::monitor::{Core, CoreParts, PoolStats, ServerSlot, StatsFn};
use crate::protect::Protection;
use crate::rules::{default_rules, Rule};
use crate::saturation::SaturationPolicy;
use crate::shed::ShedConfig;
use crate::signals::Signal;
use crate::timeout::{Killer, DEFAULT_DRAIN};

/// Default pool name when [`PoolGuardBuilder::name`] is not called.
pub const DEFAULT_NAME: &str = "default";
/// Default evaluation tick.
pub const DEFAULT_TICK: Duration = Duration::from_secs(1);
/// Default window for acquire-wait / hold-time percentiles and window counts.
pub const DEFAULT_STATS_WINDOW: Duration = Duration::from_secs(60);
/// Default capacity of the event channel (per stream backlog).
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;
/// Largest accepted `event_capacity` (the channel preallocates its slots).
pub const MAX_EVENT_CAPACITY: usize = 1 << 16;
/// Longest accepted hold, recovery time, tick or window: one year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default window of the exhaustion forecast's trend.
pub const DEFAULT_FORECAST_WINDOW: Duration = Duration::from_secs(300);
/// Default utilization the scale hint aims for.
pub const DEFAULT_SCALE_TARGET: f64 = 0.60;

/// Starts a background task that feeds the server slot (see `server.rs`).
pub(crate) type ServerTask =
    Box<dyn FnOnce(ServerSlot, Arc<Accounting>, &tokio::runtime::Handle) + Send>;

/// Configures and builds a [`PoolGuard`]; see [`PoolGuard::builder`].
///
/// The pool thresholds are ratios of `max_connections` in `(0, 1)`, crossed
/// when utilization is strictly *above* them, as in the post-mortem's
/// "> 80%": with 50 connections, 41 in use warns, 40 does not. Defaults are
/// the post-mortem's alert table ([`SaturationPolicy::default`] for the pool
/// rules, [`default_rules`] for the rest).
pub struct PoolGuardBuilder<DB: Database> {
    pool: Pool<DB>,
    name: Arc<str>,
    policy: SaturationPolicy,
    tick: Duration,
    stats_window: Duration,
    event_capacity: usize,
    callbacks: Vec<Callback>,
    warn_recover_set: bool,
    critical_recover_set: bool,
    pool_rules: bool,
    pub(crate) rules: Vec<Rule>,
    removed: Vec<String>,
    leak_threshold: Option<Duration>,
    forecast_window: Duration,
    scale_target: f64,
    instances: u32,
    pub(crate) server_task: Option<ServerTask>,
    pub(crate) server_interval: Option<Duration>,
    breaker: BreakerConfig,
    classifier: Classifier,
    shed: ShedConfig,
    query_timeout: Option<Duration>,
    drain_timeout: Duration,
    time_scale: f64,
}

impl<DB: Database> std::fmt::Debug for PoolGuardBuilder<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolGuardBuilder")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .field("tick", &self.tick)
            .field("stats_window", &self.stats_window)
            .field("event_capacity", &self.event_capacity)
            .field("callbacks", &self.callbacks.len())
            .field("pool_rules", &self.pool_rules)
            .field("rules", &self.rules)
            .field("removed", &self.removed)
            .field("leak_threshold", &self.leak_threshold)
            .field("forecast_window", &self.forecast_window)
            .field("scale_target", &self.scale_target)
            .field("instances", &self.instances)
            .field("watch_server", &self.server_task.is_some())
            .field("breaker", &self.breaker)
            .field("shed", &self.shed)
            .field("query_timeout", &self.query_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field("time_scale", &self.time_scale)
            .finish_non_exhaustive()
    }
}

impl<DB: Database> PoolGuardBuilder<DB> {
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        Self {
            pool,
            name: Arc::from(DEFAULT_NAME),
            policy: SaturationPolicy::default(),
            tick: DEFAULT_TICK,
            stats_window: DEFAULT_STATS_WINDOW,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            callbacks: Vec::new(),
            warn_recover_set: false,
            critical_recover_set: false,
            pool_rules: true,
            rules: default_rules(),
            removed: Vec::new(),
            leak_threshold: None,
            forecast_window: DEFAULT_FORECAST_WINDOW,
            scale_target: DEFAULT_SCALE_TARGET,
            instances: 1,
            server_task: None,
            server_interval: None,
            breaker: BreakerConfig::default(),
            classifier: Arc::new(crate::breaker::classify),
            shed: ShedConfig::default(),
            query_timeout: None,
            drain_timeout: DEFAULT_DRAIN,
            time_scale: 1.0,
        }
    }

    /// Circuit-breaker settings (default [`BreakerConfig::default`]); set
    /// `metrics_only` for shadow mode. The breaker guards `acquire`, `begin`
    /// and every call through the guard's `Executor`.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// Replaces the error classifier (default
    /// [`classify`](crate::breaker::classify)): which errors are evidence
    /// of a failing database. One judgement serves the circuit breaker and
    /// the query-error signals (the `error_rate` rules), so the two never
    /// disagree; an error classified `Success` or `Ignored` is an answer,
    /// not an error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), poolguard::Error> {
    /// # let pool = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await?;
    /// use poolguard::{breaker::classify, Outcome};
    /// // Also count "row not found" as a failure (a table that must never be empty).
    /// let guard = poolguard::PoolGuard::builder(pool)
    ///     .classifier(|e| match e {
    ///         sqlx::Error::RowNotFound => Outcome::Failure,
    ///         e => classify(e),
    ///     })
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn classifier(
        mut self,
        f: impl Fn(&sqlx::Error) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        self.classifier = Arc::new(f);
        self
    }

    /// Load-shedding settings (default [`ShedConfig::default`]: no acquire
    /// whose expected wait exceeds the pool's acquire timeout or the
    /// caller's `acquire_within` deadline; no waiter cap).
    pub fn shed(mut self, config: ShedConfig) -> Self {
        self.shed = config;
        self
    }

    /// Default timeout of queries through the guard's `Executor` (off by
    /// default; [`PoolGuard::with_timeout`] and
    /// [`GuardedTransaction::with_timeout`](crate::GuardedTransaction::with_timeout)
    /// override it per call). On PostgreSQL and MySQL/MariaDB an expired
    /// query is cancelled on the server; each timed query first reads the
    /// connection's backend id (one round trip).
    pub fn query_timeout(mut self, limit: Duration) -> Self {
        self.query_timeout = Some(limit);
        self
    }

    /// Bound on cancelling and draining a timed-out query before its
    /// connection is closed instead (default 250 ms).
    pub fn drain_timeout(mut self, bound: Duration) -> Self {
        self.drain_timeout = bound;
        self
    }

    pub(crate) fn pool_ref(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Adds a rule, replacing a rule of the same name and severity (the
    /// pool rules included).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules
            .retain(|r| !(r.name == rule.name && r.severity == rule.severity));
        self.rules.push(rule);
        self
    }

    /// Replaces every rule, the pool rules and the defaults of
    /// [`default_rules`] included, with `rules`. The guard's [`Level`](crate::Level)
    /// then follows whatever rules named [`POOL_RULE`](crate::rules::POOL_RULE) are in the list.
    pub fn rules(mut self, rules: impl IntoIterator<Item = Rule>) -> Self {
        self.pool_rules = false;
        self.removed.clear();
        self.rules = rules.into_iter().collect();
        self
    }

    /// Removes every rule of this name (all severities), including the
    /// pool rules; a later [`rule`](Self::rule) of that name adds just itself.
    pub fn without_rule(mut self, name: &str) -> Self {
        self.rules.retain(|r| &*r.name != name);
        self.removed.push(name.to_owned());
        self
    }

    /// Reports connections held longer than `threshold`, with where they
    /// were acquired, and again when they come back (off by default;
    /// HikariCP's `leakDetectionThreshold`).
    pub fn leak_detection(mut self, threshold: Duration) -> Self {
        self.leak_threshold = Some(threshold);
        self
    }

    /// Window of the exhaustion forecast's trend (default 5 min).
    pub fn forecast_window(mut self, window: Duration) -> Self {
        self.forecast_window = window;
        self
    }

    /// Utilization the scale hint's recommended size aims for (default 0.60).
    pub fn scale_target(mut self, ratio: f64) -> Self {
        self.scale_target = ratio;
        self
    }

    /// Application instances sharing the database server (default 1); the
    /// scale hint multiplies its recommendation by this to compare it with
    /// the server's capacity.
    pub fn instances(mut self, n: u32) -> Self {
        self.instances = n;
        self
    }

    /// Pool name used in metrics labels, events and errors (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Arc::from(name.into());
        self
    }

    /// Warning when utilization is above this ratio of `max_connections`
    /// (default 0.80).
    pub fn warn_at(mut self, ratio: f64) -> Self {
        self.policy.warn_at = ratio;
        self
    }

    /// How long the warning threshold must hold (default 5 min; 0 = instant).
    pub fn warn_for(mut self, hold: Duration) -> Self {
        self.policy.warn_for = hold;
        self
    }

    /// Critical when utilization is above this ratio (default 0.90).
    pub fn critical_at(mut self, ratio: f64) -> Self {
        self.policy.critical_at = ratio;
        self
    }

    /// How long the critical threshold must hold (default 2 min; 0 = instant).
    pub fn critical_for(mut self, hold: Duration) -> Self {
        self.policy.critical_for = hold;
        self
    }

    /// Warning clears only below this ratio (default: 5 points under
    /// `warn_at`, i.e. 0.75).
    pub fn warn_recover_below(mut self, ratio: f64) -> Self {
        self.policy.warn_recover_below = ratio;
        self.warn_recover_set = true;
        self
    }

    /// Critical clears only below this ratio (default: 5 points under
    /// `critical_at`, i.e. 0.85).
    pub fn critical_recover_below(mut self, ratio: f64) -> Self {
        self.policy.critical_recover_below = ratio;
        self.critical_recover_set = true;
        self
    }

    /// How long the signal must stay below a recovery threshold (default 1 min).
    pub fn recover_for(mut self, hold: Duration) -> Self {
        self.policy.recover_for = hold;
        self
    }

    /// Compute levels from utilization (default) or demand.
    pub fn signal(mut self, signal: Signal) -> Self {
        self.policy.signal = signal;
        self
    }

    /// Replaces the whole saturation policy (recovery thresholds included).
    pub fn policy(mut self, policy: SaturationPolicy) -> Self {
        self.policy = policy;
        self.warn_recover_set = true;
        self.critical_recover_set = true;
        self
    }

    /// Background evaluation interval (default 1 s). Levels also update as
    /// soon as a count crosses a threshold, and exactly when a hold time ends.
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// Runs the monitoring clock `factor` times faster than the wall clock,
    /// for replays, simulations and load tests in compressed time (default
    /// 1: real time). At `build()` the tick, the stats and forecast windows,
    /// the traffic baseline's one-minute buckets and every rule (through
    /// [`Rule::time_scaled`]: holds, windows, recovery and keep-firing times,
    /// thresholds in seconds or per second) are converted, so you keep
    /// writing them in incident time. What the guard measures and reports
    /// (latencies, ETAs, events' durations, snapshots) stays in wall-clock
    /// units: multiply by `factor` to read it in incident time. Protection
    /// settings (breaker, shedding, query and drain timeouts), leak
    /// detection and the `watch_server` interval act on real calls and are
    /// *not* converted.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), poolguard::Error> {
    /// # let pool = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await?;
    /// use std::time::Duration;
    /// // 1 s of wall time = 1 incident minute: the 5-minute warning holds 5 s.
    /// let guard = poolguard::PoolGuard::builder(pool).time_scale(60.0).build()?;
    /// let warn = guard.rules().iter().find(|r| &*r.name == "pool_utilization").unwrap();
    /// assert_eq!(warn.hold, Duration::from_secs(5));
    /// # Ok(()) }
    /// ```
    ///
    /// An invalid factor (not finite, outside `1e-3..=1e6`, or leaving a
    /// tick under 1 ms) fails `build()` with [`Error::InvalidConfig`]
    /// naming `time_scale`.
    pub fn time_scale(mut self, factor: f64) -> Self {
        self.time_scale = factor;
        self
    }

    /// Window for percentiles and window counts in snapshots (default 60 s).
    pub fn stats_window(mut self, window: Duration) -> Self {
        self.stats_window = window;
        self
    }

    /// Events a stream may fall behind before it misses some (default 1024,
    /// at most 65536; rounded up to a power of two by the channel).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Calls `f` for every saturation level change.
    pub fn on_saturation(self, f: impl Fn(&SaturationEvent) + Send + Sync + 'static) -> Self {
        self.on_event(move |e| {
            if let Event::Saturation(s) = e {
                f(s);
            }
        })
    }

    /// Calls `f` for every rule transition (see [`AlertEvent`]).
    pub fn on_alert(self, f: impl Fn(&AlertEvent) + Send + Sync + 'static) -> Self {
        self.on_event(move |e| {
            if let Event::Alert(a) = e {
                f(a);
            }
        })
    }

    /// Calls `f` for every event, on a thread of its own (one per callback),
    /// so a slow or blocking callback never holds up `acquire()` or the other
    /// callbacks. A panic in `f` is logged and `f` keeps receiving events.
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.callbacks.push(Arc::new(f));
        self
    }

    fn validate(&self) -> Result<(), Error> {
        let p = &self.policy;
        // The pool rules fire *above* their threshold (the post-mortem's
        // "> 80%"), so 1.0 could never fire on utilization.
        let ratio = |field, v: f64| {
            if v.is_finite() && v > 0.0 && v < 1.0 {
                Ok(())
            } else {
                Err(Error::config(field, v, "must be a ratio in (0, 1)"))
            }
        };
        ratio("warn_at", p.warn_at)?;
        ratio("critical_at", p.critical_at)?;
        ratio("warn_recover_below", p.warn_recover_below)?;
        ratio("critical_recover_below", p.critical_recover_below)?;
        if p.warn_at >= p.critical_at {
            return Err(Error::config(
                "warn_at",
                format!("{} (critical_at = {})", p.warn_at, p.critical_at),
                "must be below critical_at",
            ));
        }
        if p.warn_recover_below > p.warn_at {
            return Err(Error::config(
                "warn_recover_below",
                format!("{} (warn_at = {})", p.warn_recover_below, p.warn_at),
                "must not be above warn_at",
            ));
        }
        if p.critical_recover_below > p.critical_at {
            return Err(Error::config(
                "critical_recover_below",
                format!(
                    "{} (critical_at = {})",
                    p.critical_recover_below, p.critical_at
                ),
                "must not be above critical_at",
            ));
        }
        if p.warn_recover_below > p.critical_recover_below {
            return Err(Error::config(
                "warn_recover_below",
                format!(
                    "{} (critical_recover_below = {})",
                    p.warn_recover_below, p.critical_recover_below
                ),
                "must not be above critical_recover_below",
            ));
        }
        for (field, d) in [
            ("warn_for", p.warn_for),
            ("critical_for", p.critical_for),
            ("recover_for", p.recover_for),
            ("tick", self.tick),
            ("stats_window", self.stats_window),
        ] {
            if d > MAX_DURATION {
                return Err(Error::config(
                    field,
                    format!("{d:?}"),
                    "must be at most one year",
                ));
            }
        }
        if self.tick.is_zero() {
            return Err(Error::config(
                "tick",
                format!("{:?}", self.tick),
                "must be above zero",
            ));
        }
        if self.stats_window < self.tick {
            return Err(Error::config(
                "stats_window",
                format!("{:?} (tick = {:?})", self.stats_window, self.tick),
                "must be at least one tick",
            ));
        }
        if self.event_capacity == 0 || self.event_capacity > MAX_EVENT_CAPACITY {
            return Err(Error::config(
                "event_capacity",
                self.event_capacity,
                "must be in 1..=65536",
            ));
        }
        if self.name.is_empty() || self.name.contains('\0') {
            return Err(Error::config(
                "name",
                format!("{:?}", self.name),
                "must be non-empty, without NUL",
            ));
        }
        if !matches!(p.signal, Signal::Utilization | Signal::Demand) {
            return Err(Error::config(
                "signal",
                format!("{:?}", p.signal),
                "the pool rules take Signal::Utilization or Signal::Demand",
            ));
        }
        if !(self.scale_target.is_finite() && self.scale_target > 0.0 && self.scale_target <= 1.0) {
            return Err(Error::config(
                "scale_target",
                self.scale_target,
                "must be a ratio in (0, 1]",
            ));
        }
        if let Some(i) = self.server_interval {
            if i.is_zero() || i > MAX_DURATION {
                return Err(Error::config(
                    "watch_server",
                    format!("{i:?}"),
                    "must be above zero and at most one year",
                ));
            }
        }
        self.breaker.validate()?;
        for (field, d) in [
            (
                "query_timeout",
                self.query_timeout.unwrap_or(Duration::from_secs(1)),
            ),
            ("drain_timeout", self.drain_timeout),
            (
                "shed.max_wait",
                self.shed.max_wait.unwrap_or(Duration::from_secs(1)),
            ),
        ] {
            if d.is_zero() || d > MAX_DURATION {
                return Err(Error::config(
                    field,
                    format!("{d:?}"),
                    "must be above zero and at most one year",
                ));
            }
        }
        if !(self.time_scale.is_finite() && (1e-3..=1e6).contains(&self.time_scale)) {
            return Err(Error::config(
                "time_scale",
                self.time_scale,
                "must be a finite factor in 0.001..=1000000",
            ));
        }
        if self.instances == 0 {
            return Err(Error::config("instances", 0, "must be at least 1"));
        }
        if let Some(t) = self.leak_threshold {
            if t.is_zero() || t > MAX_DURATION {
                return Err(Error::config(
                    "leak_detection",
                    format!("{t:?}"),
                    "must be above zero and at most one year",
                ));
            }
        }
        if self.forecast_window < self.tick * 10 || self.forecast_window > MAX_DURATION {
            return Err(Error::config(
                "forecast_window",
                format!("{:?} (tick = {:?})", self.forecast_window, self.tick),
                "must span at least 10 ticks and at most one year",
            ));
        }
        Ok(())
    }

    /// The pool rules (unless replaced by [`rules`](Self::rules)), then the
    /// other rules; a later rule with the same name and severity wins.
    fn assemble_rules(&mut self) -> Result<Vec<Rule>, Error> {
        let mut all: Vec<Rule> = Vec::new();
        if self.pool_rules {
            all.extend(
                self.policy
                    .rules()
                    .into_iter()
                    .filter(|r| !self.removed.iter().any(|n| **n == *r.name)),
            );
        }
        // `rule()` replaces; a duplicate here came from one `rules()` list.
        for (i, r) in self.rules.iter().enumerate() {
            r.validate(self.tick)?;
            if self.rules[..i]
                .iter()
                .any(|o| o.name == r.name && o.severity == r.severity)
            {
                return Err(Error::config(
                    "rules",
                    r.key(),
                    "two rules with the same name and severity",
                ));
            }
        }
        for rule in std::mem::take(&mut self.rules) {
            all.retain(|r| !(r.name == rule.name && r.severity == rule.severity));
            all.push(rule);
        }
        for r in &all {
            r.validate(self.tick)?;
            if r.signal == Signal::ServerUtilization && self.server_task.is_none() {
                return Err(Error::config(
                    "rule.signal",
                    format!("rule `{}`: {:?}", r.key(), r.signal),
                    "needs watch_server (PostgreSQL): without it the signal never has a value",
                ));
            }
        }
        Ok(all)
    }

    /// Validates the settings, starts the monitor task and returns the guard.
    ///
    /// Must run inside a tokio runtime. Install your `metrics` recorder before
    /// calling it: metric handles are registered here.
    pub fn build(self) -> Result<PoolGuard<DB>, Error> {
        self.build_with(|pool| {
            let pool = pool.clone();
            Box::new(move || PoolStats {
                size: pool.size(),
                idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            })
        })
    }

    /// [`build`](Self::build) with the pool's own (size, idle) read by
    /// `stats` (the simulated pool reads its model instead).
    pub(crate) fn build_with(
        mut self,
        stats: impl FnOnce(&Pool<DB>) -> StatsFn,
    ) -> Result<PoolGuard<DB>, Error> {
        // Recovery thresholds not given follow their level down 5 points.
        let below = |at: f64| if at > 0.1 { at - 0.05 } else { at / 2.0 };
        if !self.warn_recover_set {
            self.policy.warn_recover_below = below(self.policy.warn_at);
        }
        if !self.critical_recover_set {
            self.policy.critical_recover_below = below(self.policy.critical_at);
        }
        self.validate()?;
        let mut rules = self.assemble_rules()?;
        let k = self.time_scale;
        let mut baseline_bucket = crate::anomaly::BUCKET;
        if k != 1.0 {
            rules = rules.into_iter().map(|r| r.time_scaled(k)).collect();
            for d in [
                &mut self.tick,
                &mut self.stats_window,
                &mut self.forecast_window,
                &mut baseline_bucket,
            ] {
                *d = d.div_f64(k);
            }
            if self.tick < Duration::from_millis(1) {
                return Err(Error::config(
                    "time_scale",
                    k,
                    "leaves a tick under 1 ms (tokio's timer resolution): raise the tick or lower the factor",
                ));
            }
        }
        let rt = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let max = self.pool.options().get_max_connections();
        let (hot, gauges) = crate::metrics::register(&self.name, &rules);
        let acct = Arc::new(Accounting::new(
            max,
            Edges::for_rules(&rules, max),
            self.leak_threshold,
            hot,
        ));
        let acquire_timeout = self.pool.options().get_acquire_timeout();
        let protect = Protection {
            breaker: BreakerCell::new(self.breaker.clone(), Arc::clone(&self.classifier)),
            max_waiters: self.shed.max_waiters_per_connection.saturating_mul(max),
            shed_deadline: self
                .shed
                .max_wait
                .map_or(acquire_timeout, |w| w.min(acquire_timeout)),
            shed: self.shed.clone(),
            query_timeout: self.query_timeout,
            drain: self.drain_timeout,
            killer: Arc::new(Killer::new::<DB>(&self.pool.connect_options())),
            metrics: crate::metrics::register_protect(&self.name),
        };
        protect
            .metrics
            .breaker_state
            .set(f64::from(protect.breaker.state().0.as_number()));
        if protect.query_timeout.is_some() && protect.killer.supported() {
            // The first cancel should not pay for a connect, nor find a full
            // server refusing it.
            let killer = Arc::clone(&protect.killer);
            rt.spawn(async move { killer.preconnect().await });
        }
        let stats = stats(&self.pool);
        let core = Arc::new(Core::new(CoreParts {
            name: self.name,
            acct,
            rules,
            tick: self.tick,
            stats_window: self.stats_window,
            forecast_window: self.forecast_window,
            baseline_bucket,
            scale_target: self.scale_target,
            instances: self.instances,
            protect,
            gauges,
            hub: EventHub::new(self.event_capacity),
            stats,
        }));
        for cb in self.callbacks {
            core.hub
                .spawn_callback(cb, Arc::clone(&core.name))
                .map_err(Error::CallbackThread)?;
        }
        if let Some(task) = self.server_task {
            task(Arc::clone(&core.server), Arc::clone(&core.acct), &rt);
        }
        crate::monitor::spawn(Arc::clone(&core), &rt);
        Ok(PoolGuard::from_parts(self.pool, core))
    }
}
