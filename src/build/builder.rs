//! The builder: one setter per setting, each writing into [`Settings`];
//! `build()` hands them to `settings.rs` (validation) and `assemble.rs`.

use crate::stats::learned::Learned;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Database, Pool};

use super::assemble::{self, PoolFacts};
use super::settings::Settings;
use crate::alert::rule::Rule;
use crate::alert::saturation::SaturationPolicy;
use crate::alert::signal::Signal;
use crate::error::BuildError;
use crate::handle::guard::PoolGuard;
use crate::handle::sim::{SimModel, SimPool};
use crate::monitor::{PoolStats, ServerTask, StatsFn};
use crate::protect::breaker::BreakerConfig;
use crate::protect::classify::{classify, Classifier, Outcome};
use crate::protect::shed::ShedConfig;
use crate::protect::timeout::ServerCancel;
use crate::report::events::{AlertEvent, Callback, Event, SaturationEvent};
use crate::report::identity::PoolIdentity;

/// Configures and builds a [`PoolGuard`]; see [`PoolGuard::builder`].
///
/// The pool thresholds are ratios of `max_connections` in `(0, 1)`, crossed
/// when utilization is strictly *above* them, as in the post-mortem's
/// "> 80%": with 50 connections, 41 in use warns, 40 does not. Defaults are
/// the post-mortem's alert table ([`SaturationPolicy::default`] for the pool
/// rules, [`default_rules`](crate::rules::default_rules) for the rest).
pub struct PoolGuardBuilder<DB: Database> {
    pool: Pool<DB>,
    settings: Settings,
    callbacks: Vec<Callback>,
    classifier: Classifier,
    server_task: Option<ServerTask>,
}

impl<DB: Database> std::fmt::Debug for PoolGuardBuilder<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolGuardBuilder")
            .field("settings", &self.settings)
            .field("callbacks", &self.callbacks.len())
            .field("watch_server", &self.server_task.is_some())
            .finish_non_exhaustive()
    }
}

impl<DB: Database> PoolGuardBuilder<DB> {
    fn new(pool: Pool<DB>) -> Self {
        Self {
            pool,
            settings: Settings::default(),
            callbacks: Vec::new(),
            classifier: Arc::new(classify),
            server_task: None,
        }
    }

    /// Circuit-breaker settings (default [`BreakerConfig::default`]); set
    /// `metrics_only` for shadow mode. The breaker guards `acquire`, `begin`
    /// and every call through the guard's `Executor`.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.settings.breaker = config;
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
        self.settings.shed = config;
        self
    }

    /// Default timeout of queries through the guard's `Executor` (off by
    /// default; [`PoolGuard::with_timeout`] and
    /// [`GuardedTransaction::with_timeout`](crate::GuardedTransaction::with_timeout)
    /// override it per call). On PostgreSQL and MySQL/MariaDB an expired
    /// query is cancelled on the server; each timed query first reads the
    /// connection's backend id (one round trip).
    pub fn query_timeout(mut self, limit: Duration) -> Self {
        self.settings.query_timeout = Some(limit);
        self
    }

    /// Bound on cancelling and draining a timed-out query before its
    /// connection is closed instead (default 250 ms).
    pub fn drain_timeout(mut self, bound: Duration) -> Self {
        self.settings.drain_timeout = bound;
        self
    }

    /// Adds a rule, replacing a rule of the same name and severity (the
    /// pool rules included).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.settings.rules.upsert(rule);
        self
    }

    /// Replaces every rule, the pool rules and the defaults of
    /// [`default_rules`](crate::rules::default_rules) included, with `rules`. The guard's [`Level`](crate::Level)
    /// then follows whatever rules named [`POOL_RULE`](crate::rules::POOL_RULE) are in the list.
    pub fn rules(mut self, rules: impl IntoIterator<Item = Rule>) -> Self {
        self.settings.replace_rules(rules);
        self
    }

    /// Removes every rule of this name (all severities), including the
    /// pool rules; a later [`rule`](Self::rule) of that name adds just itself.
    pub fn without_rule(mut self, name: &str) -> Self {
        self.settings.remove_rule(name);
        self
    }

    /// Starts from what an earlier guard learned ([`PoolGuard::learned`]):
    /// its per-minute history becomes this guard's, so a deploy in the
    /// middle of the day keeps the traffic anomaly and the diagnosis'
    /// usual load instead of starting blind (the minutes since the export
    /// are a gap; minutes older than the history's hour and ten are
    /// dropped). `build` refuses a history of another minute length (a
    /// different `time_scale`) or with a negative or non-finite figure.
    ///
    /// [`PoolGuard::learned`]: crate::PoolGuard::learned
    pub fn resume(mut self, learned: Learned) -> Self {
        self.settings.resume = Some(learned);
        self
    }

    /// Reports connections held longer than `threshold`, with where they
    /// were acquired, and again when they come back (off by default;
    /// HikariCP's `leakDetectionThreshold`).
    pub fn leak_detection(mut self, threshold: Duration) -> Self {
        self.settings.leak_threshold = Some(threshold);
        self
    }

    /// Counts the connections the pool opens, for the connection-churn
    /// signal (see [`ConnectCounter`](crate::ConnectCounter)); without it
    /// [`Signal::Churn`](crate::Signal::Churn) has no value.
    pub fn connects(mut self, counter: crate::ConnectCounter) -> Self {
        self.settings.connects = Some(counter);
        self
    }

    /// Window of the exhaustion forecast's trend (default 5 min).
    pub fn forecast_window(mut self, window: Duration) -> Self {
        self.settings.forecast_window = window;
        self
    }

    /// Utilization the scale hint's recommended size aims for (default 0.60).
    pub fn scale_target(mut self, ratio: f64) -> Self {
        self.settings.scale_target = ratio;
        self
    }

    /// Application instances sharing the database server (default 1); the
    /// scale hint multiplies its recommendation by this to compare it with
    /// the server's capacity.
    pub fn instances(mut self, n: u32) -> Self {
        self.settings.instances = n;
        self
    }

    /// Pool name used in metrics labels (`db.client.connection.pool.name`),
    /// events and errors. Default: as the OpenTelemetry conventions advise
    /// for a pool without a name, `server.address:server.port/db.namespace`
    /// from the pool's connect options (e.g. `127.0.0.1:5432/test`; SQLite:
    /// the file name, `:memory:` in memory; [`DEFAULT_NAME`](crate::DEFAULT_NAME)
    /// when the options name nothing). The password never appears.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = Some(Arc::from(name.into()));
        self
    }

    /// Also emit the pool's limit under its old OpenTelemetry name,
    /// `db.client.connection.max` (beside `db.client.connection.limit`),
    /// for dashboards and alerts not yet moved to the new name. Default
    /// off. **Deprecated**: the old name is kept for this release only.
    pub fn deprecated_connection_max(mut self, emit: bool) -> Self {
        self.settings.deprecated_max = emit;
        self
    }

    /// Warning when utilization is above this ratio of `max_connections`
    /// (default 0.80).
    pub fn warn_at(mut self, ratio: f64) -> Self {
        self.settings.policy.warn_at = ratio;
        self
    }

    /// How long the warning threshold must hold (default 5 min; 0 = instant).
    pub fn warn_for(mut self, hold: Duration) -> Self {
        self.settings.policy.warn_for = hold;
        self
    }

    /// Critical when utilization is above this ratio (default 0.90).
    pub fn critical_at(mut self, ratio: f64) -> Self {
        self.settings.policy.critical_at = ratio;
        self
    }

    /// How long the critical threshold must hold (default 2 min; 0 = instant).
    pub fn critical_for(mut self, hold: Duration) -> Self {
        self.settings.policy.critical_for = hold;
        self
    }

    /// Warning clears only below this ratio (default: 5 points under
    /// `warn_at`, i.e. 0.75).
    pub fn warn_recover_below(mut self, ratio: f64) -> Self {
        self.settings.warn_recover_below = Some(ratio);
        self
    }

    /// Critical clears only below this ratio (default: 5 points under
    /// `critical_at`, i.e. 0.85).
    pub fn critical_recover_below(mut self, ratio: f64) -> Self {
        self.settings.critical_recover_below = Some(ratio);
        self
    }

    /// How long the signal must stay below a recovery threshold (default 1 min).
    pub fn recover_for(mut self, hold: Duration) -> Self {
        self.settings.policy.recover_for = hold;
        self
    }

    /// Compute levels from utilization (default) or demand.
    pub fn signal(mut self, signal: Signal) -> Self {
        self.settings.policy.signal = signal;
        self
    }

    /// Replaces the whole saturation policy (recovery thresholds included).
    pub fn policy(mut self, policy: SaturationPolicy) -> Self {
        self.settings.warn_recover_below = Some(policy.warn_recover_below);
        self.settings.critical_recover_below = Some(policy.critical_recover_below);
        self.settings.policy = policy;
        self
    }

    /// Background evaluation interval (default 1 s). Levels also update as
    /// soon as a count crosses a threshold, and exactly when a hold time ends.
    pub fn tick(mut self, tick: Duration) -> Self {
        self.settings.tick = tick;
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
    /// tick under 1 ms) fails `build()` with [`BuildError::InvalidConfig`]
    /// naming `time_scale`.
    pub fn time_scale(mut self, factor: f64) -> Self {
        self.settings.time_scale = factor;
        self
    }

    /// Window for percentiles and window counts in snapshots (default 60 s).
    pub fn stats_window(mut self, window: Duration) -> Self {
        self.settings.stats_window = window;
        self
    }

    /// Events a stream may fall behind before it misses some (default 1024,
    /// at most 65536; rounded up to a power of two by the channel).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.settings.event_capacity = capacity;
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

    /// Validates the settings, starts the monitor task and returns the guard.
    ///
    /// Must run inside a tokio runtime. Install your `metrics` recorder before
    /// calling it: metric handles are registered here.
    pub fn build(self) -> Result<PoolGuard<DB>, BuildError> {
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
        self,
        stats: impl FnOnce(&Pool<DB>) -> StatsFn,
    ) -> Result<PoolGuard<DB>, BuildError> {
        let (settings, rules) = self.settings.resolve()?;
        let rt = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let options = self.pool.options();
        let facts = PoolFacts {
            max: options.get_max_connections(),
            min: options.get_min_connections(),
            acquire_timeout: options.get_acquire_timeout(),
            identity: PoolIdentity::of(&self.pool),
        };
        let server_cancel = ServerCancel::new::<DB>(&self.pool.connect_options());
        let parts = assemble::assemble(
            settings,
            rules,
            facts,
            server_cancel,
            self.classifier,
            stats(&self.pool),
        );
        parts.start(self.callbacks, self.server_task, &rt)?;
        Ok(PoolGuard::from_parts(
            self.pool,
            parts.shared,
            parts.monitor,
        ))
    }

    /// Builds a guard over a model of the pool instead of the pool itself
    /// (see [`SimPool`]). Validation and errors are those of
    /// [`build`](Self::build).
    pub fn build_sim(self) -> Result<SimPool<DB>, BuildError> {
        let options = self.pool.options();
        let model = SimModel::new(options.get_max_connections(), options.get_acquire_timeout());
        let guard = self.build_with(|_| model.stats())?;
        Ok(model.around(guard))
    }
}

impl<DB: Database> PoolGuard<DB> {
    /// Starts configuring a guard around an existing pool.
    pub fn builder(pool: Pool<DB>) -> PoolGuardBuilder<DB> {
        PoolGuardBuilder::new(pool)
    }
}

#[cfg(feature = "postgres")]
impl PoolGuardBuilder<sqlx::Postgres> {
    /// Reads the server's connection capacity every `interval` on a
    /// dedicated connection (one backend), adds the `server_connections`
    /// rules (> 80 % for 5 min, > 90 % for 2 min of the server's available
    /// slots, across all instances) and fills [`ScaleHint::server`](crate::ScaleHint).
    /// A failed read clears the reading (the rules see no value) and is
    /// retried on the next interval.
    pub fn watch_server(mut self, interval: Duration) -> Self {
        let options = self.pool.connect_options();
        self.settings.server_interval = Some(interval);
        for rule in crate::alert::defaults::server_rules() {
            self.settings.rules.upsert(rule);
        }
        self.server_task = Some(crate::monitor::server::watcher(options, interval));
        self
    }
}
