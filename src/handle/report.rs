//! What a [`PoolGuard`] reports and records: the application's requests,
//! the breaker's handle, rule states, forecast, scale hint, snapshot,
//! health, level, events, and what it has learned for the next guard.

use std::time::Duration;

use sqlx::Database;

use super::admission::BreakerHandle;
use super::guard::PoolGuard;
use crate::alert::rule::Rule;
use crate::alert::saturation::Level;
use crate::hot::handles::{method_index, scheme_index};
use crate::report::events::EventStream;
use crate::report::health::Health;
use crate::report::snapshot::{AlertStatus, Snapshot};
use crate::stats::forecast::Forecast;
use crate::stats::learned::Learned;
use crate::stats::scale::{ScaleHint, ServerCapacity};

impl<DB: Database> PoolGuard<DB> {
    /// Records one HTTP request the application served, so the request
    /// rules (5xx rate, 504 count, request P95) run on the app's own
    /// numbers and `http.server.request.duration` carries the attributes
    /// the conventions require: `method` as sent (`"GET"`; one the
    /// conventions do not know is recorded as `_OTHER`), `scheme`
    /// (`"http"`/`"https"`), the integer `status`. With the `tower` feature
    /// the layer `poolguard::tower::PoolGuardLayer` calls it for
    /// every response. A few atomic adds and a shared-lock map read.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), poolguard::Error> {
    /// # let pool = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await?;
    /// # let guard = poolguard::PoolGuard::builder(pool).build()?;
    /// let started = std::time::Instant::now();
    /// // ... handle the request ...
    /// guard.record_http("GET", "https", 504, started.elapsed());
    /// # Ok(()) }
    /// ```
    pub fn record_http(&self, method: &str, scheme: &str, status: u16, latency: Duration) {
        self.shared().acct.record_request(
            method_index(method),
            scheme_index(scheme),
            status,
            latency,
        );
    }

    /// Records one request with its status only: the method is recorded
    /// as `_OTHER` and the scheme as `http`, which the conventions' required
    /// attributes then misstate.
    #[deprecated(
        since = "0.1.0",
        note = "use `record_http` (method and scheme are required attributes) or the tower layer"
    )]
    pub fn record_request(&self, status: u16, latency: Duration) {
        self.record_http("_OTHER", "http", status, latency);
    }

    /// The circuit breaker: its state and manual control.
    pub fn breaker(&self) -> BreakerHandle<'_> {
        BreakerHandle {
            shared: self.shared(),
        }
    }

    /// Every rule's state, in rule order.
    pub fn alerts(&self) -> Vec<AlertStatus> {
        self.monitor().alerts()
    }

    /// The rules this guard evaluates.
    pub fn rules(&self) -> &[Rule] {
        &self.monitor().rules
    }

    /// What this guard has learned about its pool's load, to hand to the
    /// guard that replaces it after a deploy
    /// ([`PoolGuardBuilder::resume`](crate::PoolGuardBuilder::resume)).
    pub fn learned(&self) -> Learned {
        self.monitor().learned()
    }

    /// The exhaustion forecast as of the last tick.
    pub fn forecast(&self) -> Forecast {
        self.monitor().forecast()
    }

    /// The pool size the current load needs for the scale target.
    pub fn scale_hint(&self) -> ScaleHint {
        self.monitor().scale_hint()
    }

    /// The server's connection capacity, when watched (PostgreSQL,
    /// `PoolGuardBuilder::watch_server` (feature `postgres`)) and read at least once.
    pub fn server_capacity(&self) -> Option<ServerCapacity> {
        *self.monitor().server.lock()
    }

    /// The pool now, with percentiles over the recent window.
    pub fn snapshot(&self) -> Snapshot {
        self.monitor().snapshot()
    }

    /// Healthy, degraded or unhealthy, and why: the firing rules (a
    /// critical one makes it unhealthy, a warning degraded) and the circuit
    /// breaker (open: unhealthy; half-open: degraded; ignored in
    /// metrics-only mode), with the snapshot behind them. One call for a
    /// `/health` endpoint; with the `serde` feature it serializes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), poolguard::Error> {
    /// # let pool = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await?;
    /// # let guard = poolguard::PoolGuard::builder(pool).build()?;
    /// use poolguard::HealthStatus;
    /// let health = guard.health();
    /// assert_eq!(health.status, HealthStatus::Healthy);
    /// guard.breaker().force_open();
    /// let health = guard.health();
    /// assert_eq!(health.status, HealthStatus::Unhealthy);
    /// assert_eq!(health.reasons, ["circuit breaker forced_open"]);
    /// # Ok(()) }
    /// ```
    pub fn health(&self) -> Health {
        let breaker = self.breaker();
        Health::judge(
            self.alerts(),
            breaker.state(),
            breaker.is_metrics_only(),
            self.snapshot(),
        )
    }

    /// The current saturation level: the highest severity among the firing
    /// pool rules.
    pub fn level(&self) -> Level {
        self.monitor().level()
    }

    /// A stream of every event from now on. Any number may be open.
    pub fn events(&self) -> EventStream {
        self.shared().hub.subscribe()
    }

    /// Ends the current tick and evaluates it now, windows, forecast and
    /// every rule included: a hook for the benchmarks of the tick's cost
    /// (feature `bench-hooks`; not a stable API).
    #[cfg(feature = "bench-hooks")]
    #[doc(hidden)]
    pub fn evaluate_tick_now(&self) {
        self.monitor().evaluate_until(crate::monitor::TickEnd::Now);
    }

    /// Evaluates levels and publishes gauges now, without waiting for the
    /// monitor's next wake (which comes within one tick anyway).
    pub fn evaluate_now(&self) {
        self.monitor().evaluate();
    }
}
