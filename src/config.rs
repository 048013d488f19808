//! The builder: every setting, its default, and its validation.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Database, Pool};

use crate::accounting::Accounting;
use crate::error::Error;
use crate::events::{Callback, Event, EventHub, SaturationEvent};
use crate::guard::PoolGuard;
use crate::monitor::{Core, CoreParts, PoolStats};
use crate::saturation::{SaturationPolicy, Signal};

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

/// Configures and builds a [`PoolGuard`]; see [`PoolGuard::builder`].
///
/// Every threshold is a ratio of `max_connections` in `(0, 1]`; defaults are
/// the post-mortem's alert table ([`SaturationPolicy::default`]).
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
        }
    }

    /// Pool name used in metrics labels, events and errors (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Arc::from(name.into());
        self
    }

    /// Warning threshold as a ratio of `max_connections` (default 0.80).
    pub fn warn_at(mut self, ratio: f64) -> Self {
        self.policy.warn_at = ratio;
        self
    }

    /// How long the warning threshold must hold (default 5 min; 0 = instant).
    pub fn warn_for(mut self, hold: Duration) -> Self {
        self.policy.warn_for = hold;
        self
    }

    /// Critical threshold as a ratio of `max_connections` (default 0.90).
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
            // More event kinds are coming; today this is the only one.
            #[allow(irrefutable_let_patterns)]
            if let Event::Saturation(s) = e {
                f(s);
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
        let ratio = |field, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 1.0 {
                Ok(())
            } else {
                Err(Error::config(field, v, "must be a ratio in (0, 1]"))
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
        Ok(())
    }

    /// Validates the settings, starts the monitor task and returns the guard.
    ///
    /// Must run inside a tokio runtime. Install your `metrics` recorder before
    /// calling it: metric handles are registered here.
    pub fn build(mut self) -> Result<PoolGuard<DB>, Error> {
        // Recovery thresholds not given follow their level down 5 points.
        let below = |at: f64| if at > 0.1 { at - 0.05 } else { at / 2.0 };
        if !self.warn_recover_set {
            self.policy.warn_recover_below = below(self.policy.warn_at);
        }
        if !self.critical_recover_set {
            self.policy.critical_recover_below = below(self.policy.critical_at);
        }
        self.validate()?;
        let rt = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let max = self.pool.options().get_max_connections();
        let (hot, gauges) = crate::metrics::register(&self.name);
        let acct = Arc::new(Accounting::new(max, &self.policy, hot));
        let stats_pool = self.pool.clone();
        let core = Arc::new(Core::new(CoreParts {
            name: self.name,
            acct,
            policy: self.policy,
            tick: self.tick,
            window: self.stats_window,
            gauges,
            hub: EventHub::new(self.event_capacity),
            stats: Box::new(move || PoolStats {
                size: stats_pool.size(),
                idle: u32::try_from(stats_pool.num_idle()).unwrap_or(u32::MAX),
            }),
        }));
        for cb in self.callbacks {
            core.hub
                .spawn_callback(cb, Arc::clone(&core.name))
                .map_err(Error::CallbackThread)?;
        }
        crate::monitor::spawn(Arc::clone(&core), &rt);
        Ok(PoolGuard::from_parts(self.pool, core))
    }
}
