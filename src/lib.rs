//! # poolguard
//!
//! Notices sqlx connection-pool exhaustion inside the service, minutes before
//! its users do. Wrap an existing [`sqlx::Pool`] in a [`PoolGuard`] and keep
//! writing sqlx code: the guard acquires, begins transactions and executes
//! like the pool does, and on the way it
//!
//! - counts every connection exactly (in use, waiters, acquire wait, hold
//!   time, timeouts, query latency and errors), cancel- and panic-safe;
//! - evaluates alert [`Rule`]s in-process: the post-mortem's whole alert
//!   table by default (pool > 80 % / 90 %, error rate, timeouts, P95,
//!   traffic anomaly), with hold times, hysteresis and keep-firing times;
//! - forecasts exhaustion ([`Forecast`]: least-squares trend and Little's
//!   law) and says what size the pool needs ([`ScaleHint`]);
//! - reports leaked connections with where they were acquired;
//! - protects the app: a circuit breaker, query timeouts that stop the
//!   statement on the server and free the slot, and load shedding;
//! - delivers every transition to callbacks and [`EventStream`]s;
//! - exports OpenTelemetry-named metrics through the `metrics` facade.
//!
//! ## Data flow
//!
//! ```text
//!  guard.acquire() / &guard as Executor / guard.record_http() / tower layer   handle/
//!        │
//!        ├─► admission: breaker, load shedding       (before the wait)  handle/admission
//!        │   query timeout + server cancel           (around the query) handle/query, protect/
//!        ▼
//!  accounting  (atomics + histograms on one clock; the only hot path)   hot/
//!        │  a count crosses a rule's edge ─► Notify          ▲ hints (untracked, hold)
//!        ▼                                                   │
//!  monitor task (tick / edge wake / timer deadline)          │          monitor/
//!        ├─► one Reading of the pool ────────────────────────┘          monitor/reading
//!        ├─► on a tick: windows, forecast, per-minute history, anomaly  stats/
//!        ├─► signals ─► each rule's tracker (pure state machine)        alert/
//!        │                └─► the pool level (summary of the pool rules)
//!        ├─► scale hint, leak table scan                                stats/, hot/
//!        ├─► diagnosis, top holders and statements (once: Derived)      diagnose/
//!        └─► gauges, events (broadcast) ─► callbacks, EventStreams      report/
//!  guard.snapshot() / alerts() / health() ◄── a Reading + monitor state  monitor/view
//!  PoolGuard::builder(pool)...build() ─► settings ─► validate ─► assemble  build/
//! ```
//!
//! | layer | concern | files |
//! |---|---|---|
//! | `hot/` | hot-path counts on one clock, edges, histograms, leak table, call sites and statements, hints to the call path, metric handles | `clock`, `accounting`, `slots`, `wait_ring`, `tickets`, `hints`, `edges`, `histogram`, `leak`, `holders`, `statements`, `connects`, `handles`, `sync` |
//! | `stats/` | windows, the per-minute history and what a guard hands the next (`Learned`), traffic anomaly, exhaustion forecast, scale hint | `window`, `history`, `learned`, `anomaly`, `forecast`, `scale` |
//! | `alert/` | signals, rules, default table, rule set, state machine, level | `signal`, `rule`, `defaults`, `rule_set`, `tracker`, `saturation` |
//! | `diagnose/` | why the pool fills: the judgement (pure), what a diagnosis says, holders' and statements' histories | `mod`, `diagnosis`, `holders` |
//! | `protect/` | circuit breaker (pure), classifier, load shedding (pure), query cancel | [`breaker`], `classify`, `shed`, `timeout` |
//! | `report/` | events, snapshot, metric names, their registration and gauges, `error.type`, OpenTelemetry identity, spans, health | `events`, `snapshot`, [`metrics`], `registry`, `error_type`, `identity`, `spans`, `health` |
//! | `monitor/` | the background task: the call path's shared part, one reading per evaluation, evaluation, diagnosis, views, publishing, server watch | `shared`, `reading`, `evaluate`, `tick`, `diagnosis`, `view`, `publish`, `server` |
//! | `handle/` | the guard, connections, admission, `Executor` plumbing, a request's scope, model pool | `guard`, `report`, `acquire`, `connection`, `guarded`, `admission`, `executor`, `held`, `query`, `statement`, `in_flight`, `scope`, [`sim`] |
//! | `tower.rs` | the tower layer (feature `tower`): records responses, sets a request's scope | |
//! | `build/` | builder (setters), settings, validation, assembly | `builder`, `settings`, `validate`, `assemble` |
//! | `error.rs` | [`BuildError`], [`Error`] | |
//!
//! Imports point up this table, never down; the [`guide`] says more.
//!
//! ## Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), poolguard::Error> {
//! use futures::StreamExt;
//! use poolguard::{AlertState, Event, Level};
//! use std::time::Duration;
//!
//! let pool = sqlx::sqlite::SqlitePoolOptions::new()
//!     .max_connections(2)
//!     .connect("sqlite::memory:")
//!     .await?;
//! let guard = poolguard::PoolGuard::builder(pool)
//!     .warn_at(0.4).warn_for(Duration::ZERO)
//!     .critical_at(0.9).critical_for(Duration::ZERO)
//!     .build()?;
//! let mut events = guard.events();
//! let held = guard.acquire().await?;          // 1 of 2 = 50 % > 40 %
//! // The pool's warning rule fires, then the level changes.
//! let Some(Ok(Event::Alert(a))) = events.next().await else { panic!() };
//! assert_eq!((&*a.rule, a.state), ("pool_utilization", AlertState::Firing));
//! let Some(Ok(Event::Saturation(e))) = events.next().await else { panic!() };
//! assert_eq!(e.level, Level::Warning);
//! // Counted from the moment the acquire waits: it takes the free slot.
//! assert_eq!(e.snapshot.utilization, 0.5);
//! drop(held);
//! # Ok(()) }
//! ```
#![deny(missing_docs, missing_debug_implementations)]
#![warn(rust_2018_idioms)]

mod alert;
mod build;
mod diagnose;
mod error;
pub mod guide;
mod handle;
mod hot;
mod monitor;
mod protect;
mod report;
mod stats;
#[cfg(feature = "tower")]
pub mod tower;

pub use handle::sim;
pub use protect::breaker;
pub use report::metrics;

/// Alert rules: what a rule is, the default table, and the names the guard
/// knows rules by (the state machine is internal; see [`Rule`]).
pub mod rules {
    pub use crate::alert::defaults::{
        default_rules, server_rules, CHURN_RULE, FORECAST_RULE, OLDEST_WAIT_RULE, POOL_RULE,
        SCALE_RULE, STALL_RULE,
    };
    pub use crate::alert::rule::{AlertState, Comparison, Rule, Severity, DEFAULT_RULE_WINDOW};
}

pub use alert::rule::{AlertState, Comparison, Rule, Severity};
pub use alert::saturation::{Level, SaturationPolicy};
pub use alert::signal::{Quantile, Signal};
pub use breaker::{BreakerConfig, BreakerState, Outcome};
pub use build::builder::PoolGuardBuilder;
pub use build::settings::{
    DEFAULT_EVENT_CAPACITY, DEFAULT_FORECAST_WINDOW, DEFAULT_NAME, DEFAULT_SCALE_TARGET,
    DEFAULT_STATS_WINDOW, DEFAULT_TICK, MAX_EVENT_CAPACITY,
};
pub use diagnose::{Action, Cause, Diagnosis, Evidence, Holder, StatementShare};
pub use error::{BuildError, Cancelled, Error, PoolState, TimeoutKind, MAX_DURATION};
pub use handle::admission::BreakerHandle;
pub use handle::connection::{CountedConnection, GuardedConnection, GuardedTransaction};
pub use handle::executor::TimedGuard;
pub use handle::guard::PoolGuard;
pub use handle::guarded::Guarded;
pub use handle::held::{Driver, TimedConnection};
pub use hot::connects::ConnectCounter;
pub use protect::shed::{ShedConfig, ShedReason};
pub use report::events::{
    AlertEvent, BreakerEvent, Event, EventStream, EventsMissed, LeakEvent, SaturationEvent,
    TrafficSurprise,
};
pub use report::health::{Health, HealthStatus};
pub use report::snapshot::{AlertStatus, Percentiles, Snapshot};
pub use stats::forecast::Forecast;
pub use stats::learned::{Learned, LearnedMinute};
pub use stats::scale::{ScaleHint, ServerCapacity};
