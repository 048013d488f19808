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
//!  guard.acquire() / &guard as Executor / guard.record_request()
//!        │
//!        ├─► protect: breaker admission, load shedding     (before the wait)
//!        │            query timeout + server cancel       (around the query)
//!        ▼
//!  accounting  (atomics + histograms; the only hot path)
//!        │  a count crosses a rule's edge ─► Notify
//!        ▼
//!  monitor task (tick / edge wake / timer deadline)
//!        ├─► window      (bounded marks of counters and histograms)
//!        ├─► forecast, anomaly baseline   (once per tick)
//!        ├─► signals ─► rules::RuleTracker (pure state machine, per rule)
//!        │                └─► saturation::Level (summary of the pool rules)
//!        ├─► scale hint, leak table scan
//!        ├─► metrics gauges
//!        └─► events (broadcast) ─► callbacks, EventStreams
//!  guard.snapshot() / alerts() / forecast() ◄── accounting + monitor state
//! ```
//!
//! | concern | module |
//! |---|---|
//! | hot-path counts | `accounting` |
//! | latency histograms | `histogram` |
//! | windows over counts | `window` |
//! | what rules can watch | `signals` |
//! | rules, defaults, state machine (pure) | [`rules`] |
//! | pool level | `saturation` |
//! | exhaustion forecast | `forecast` |
//! | traffic anomaly | `anomaly` |
//! | scale hint, server capacity | `scale`, `server` (PostgreSQL) |
//! | leak detection | `leak` |
//! | circuit breaker (pure) | [`breaker`] |
//! | load shedding (pure) | `shed` |
//! | query timeouts, server cancel | `timeout` |
//! | protection on the call path | `protect` |
//! | background evaluation | `monitor` |
//! | event delivery | `events` |
//! | metric names and handles | [`metrics`] |
//! | settings and validation | `config` |
//! | the handle | `guard`, `connection`, `executor` |
//! | one answer for `/health` | `health` |
//! | a model pool (replays, paused clock) | [`sim`] |
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
//! assert_eq!(e.snapshot.in_use, 1);
//! drop(held);
//! # Ok(()) }
//! ```
#![deny(missing_docs, missing_debug_implementations)]
#![warn(rust_2018_idioms)]

mod accounting;
mod anomaly;
pub mod breaker;
mod config;
mod connection;
mod error;
mod events;
mod executor;
mod forecast;
mod guard;
mod health;
mod histogram;
mod leak;
pub mod metrics;
mod monitor;
mod protect;
pub mod rules;
mod saturation;
mod scale;
#[cfg(feature = "postgres")]
mod server;
mod shed;
mod signals;
pub mod sim;
mod snapshot;
mod timeout;
mod window;

pub use breaker::{BreakerConfig, BreakerState, Outcome};
pub use config::{
    PoolGuardBuilder, DEFAULT_EVENT_CAPACITY, DEFAULT_FORECAST_WINDOW, DEFAULT_NAME,
    DEFAULT_SCALE_TARGET, DEFAULT_STATS_WINDOW, DEFAULT_TICK, MAX_DURATION, MAX_EVENT_CAPACITY,
};
pub use connection::{CountedConnection, Guarded, GuardedConnection, GuardedTransaction};
pub use error::{Cancelled, Error, PoolState, ShedReason};
pub use events::{
    AlertEvent, BreakerEvent, Event, EventStream, EventsMissed, LeakEvent, SaturationEvent,
};
pub use executor::{Driver, TimedConnection, TimedGuard};
pub use forecast::Forecast;
pub use guard::PoolGuard;
pub use health::{Health, HealthStatus};
pub use protect::BreakerHandle;
pub use rules::{AlertState, Comparison, Rule, Severity};
pub use saturation::{Level, SaturationPolicy};
pub use scale::{ScaleHint, ServerCapacity};
pub use shed::ShedConfig;
pub use signals::{Quantile, Signal};
pub use snapshot::{AlertStatus, Percentiles, Snapshot};
