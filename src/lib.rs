//! # poolguard
//!
//! Notices sqlx connection-pool exhaustion inside the service, minutes before
//! its users do. Wrap an existing [`sqlx::Pool`] in a [`PoolGuard`] and keep
//! writing sqlx code: the guard acquires, begins transactions and executes
//! like the pool does, and on the way it
//!
//! - counts every connection exactly (in use, waiters, acquire wait, hold
//!   time, timeouts), cancel- and panic-safe;
//! - raises saturation levels (Normal / Warning / Critical) with hold times
//!   and hysteresis, defaults from a real incident's alert table;
//! - delivers each level change to callbacks and [`EventStream`]s;
//! - exports OpenTelemetry-named metrics through the `metrics` facade.
//!
//! ## Data flow
//!
//! ```text
//!  guard.acquire() ──► accounting  (atomics + histograms; the only hot path)
//!                        │  count crosses a level edge ─► Notify
//!                        ▼
//!                     monitor task (tick / wake / hold deadline)
//!                        ├─► saturation::LevelTracker (pure decision)
//!                        ├─► metrics gauges
//!                        └─► events (broadcast) ─► callbacks, EventStreams
//!  guard.snapshot() ◄── accounting + monitor window
//! ```
//!
//! | concern | module |
//! |---|---|
//! | hot-path counts | `accounting` |
//! | latency histograms | `histogram` |
//! | levels (pure) | [`saturation`] |
//! | background evaluation | `monitor` |
//! | event delivery | `events` |
//! | metric names and handles | [`metrics`] |
//! | settings and validation | `config` |
//! | the handle | `guard`, `connection`, `executor` |
//!
//! ## Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), poolguard::Error> {
//! use futures::StreamExt;
//! use std::time::Duration;
//!
//! let pool = sqlx::sqlite::SqlitePoolOptions::new()
//!     .max_connections(2)
//!     .connect("sqlite::memory:")
//!     .await?;
//! let guard = poolguard::PoolGuard::builder(pool)
//!     .warn_at(0.5).warn_for(Duration::ZERO)
//!     .critical_at(1.0).critical_for(Duration::ZERO)
//!     .build()?;
//! let mut events = guard.events();
//! let held = guard.acquire().await?;          // 1 of 2: warning
//! let Some(Ok(poolguard::Event::Saturation(e))) = events.next().await else { panic!() };
//! assert_eq!(e.level, poolguard::Level::Warning);
//! assert_eq!(e.snapshot.in_use, 1);
//! drop(held);
//! # Ok(()) }
//! ```
#![deny(missing_docs, missing_debug_implementations)]
#![warn(rust_2018_idioms)]

mod accounting;
mod config;
mod connection;
mod error;
mod events;
mod executor;
mod guard;
mod histogram;
pub mod metrics;
mod monitor;
pub mod saturation;
mod snapshot;

pub use config::{
    PoolGuardBuilder, DEFAULT_EVENT_CAPACITY, DEFAULT_NAME, DEFAULT_STATS_WINDOW, DEFAULT_TICK,
    MAX_DURATION, MAX_EVENT_CAPACITY,
};
pub use connection::{GuardedConnection, GuardedTransaction};
pub use error::{Error, PoolState};
pub use events::{Event, EventStream, EventsMissed, SaturationEvent};
pub use guard::PoolGuard;
pub use saturation::{Level, SaturationPolicy, Signal};
pub use snapshot::{Percentiles, Snapshot};
