//! # Guide
//!
//! A tour for users, then a map for contributors. (Documentation only: this
//! module holds no code.)
//!
//! ## 1. Wrap the pool, keep writing sqlx
//!
//! [`PoolGuard::builder`](crate::PoolGuard::builder) takes the pool you
//! already have. The guard acquires, begins and executes like the pool:
//! `&guard` is an `sqlx::Executor` and `sqlx::Acquire`, `&mut *conn` and
//! `&mut *tx` run queries, and nothing is refused with the defaults that the
//! pool would have served in time.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), poolguard::Error> {
//! let pool = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await?;
//! let guard = poolguard::PoolGuard::builder(pool).name("orders-db").build()?;
//! sqlx::query("SELECT 1").execute(&guard).await?;
//! let mut conn = guard.acquire().await?;
//! sqlx::query("SELECT 1").execute(&mut *conn).await?;
//! # Ok(()) }
//! ```
//!
//! ## 2. Hear about saturation
//!
//! The post-mortem's alert table runs by default
//! ([`rules::default_rules`](crate::rules::default_rules) and the two pool
//! rules of [`SaturationPolicy`](crate::SaturationPolicy)). Every transition
//! is an [`Event`](crate::Event): take them as a stream
//! ([`PoolGuard::events`](crate::PoolGuard::events)) or a callback
//! ([`on_alert`](crate::PoolGuardBuilder::on_alert)); read the state at any
//! time with [`snapshot`](crate::PoolGuard::snapshot),
//! [`alerts`](crate::PoolGuard::alerts) or
//! [`health`](crate::PoolGuard::health).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), poolguard::Error> {
//! # let pool = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await?;
//! use poolguard::{Comparison, Rule, Signal};
//! use std::time::Duration;
//! let guard = poolguard::PoolGuard::builder(pool)
//!     .rule(Rule::new("waiters", Signal::Waiters, Comparison::Above, 5.0)
//!         .hold(Duration::from_secs(30)))
//!     .on_alert(|a| eprintln!("{} {} -> {}", a.rule, a.previous, a.state))
//!     .build()?;
//! assert!(guard.alerts().iter().any(|a| &*a.rule == "waiters"));
//! # Ok(()) }
//! ```
//!
//! ## 3. Fail fast
//!
//! The circuit breaker ([`BreakerConfig`](crate::BreakerConfig)), load
//! shedding ([`ShedConfig`](crate::ShedConfig)) and query timeouts
//! ([`query_timeout`](crate::PoolGuardBuilder::query_timeout)) turn a
//! hopeless wait into an immediate [`Error`](crate::Error); one classifier
//! ([`breaker::classify`](crate::breaker::classify)) decides which errors
//! are the database failing, for the breaker and the error-rate rules alike.
//!
//! ## 4. For contributors: the layers
//!
//! Each folder of `src/` is one layer; a file imports only from layers
//! above it in this list (which is below it in the data flow):
//!
//! | layer | holds | imports |
//! |---|---|---|
//! | `hot/` | the one clock (`clock`), accounting (the packed in-use/waiter word `slots`, the oldest-waiter ring `wait_ring`, drop `tickets`), the monitor's `hints` to the call path, edges, histograms, leak table, holders and statements tables, connect counter, cached metric handles | nothing of the crate |
//! | `stats/` | windows, the one per-minute history, traffic anomaly, forecast, scale hint | `hot` |
//! | `alert/` | signals, rules, the default table, the rule set, each rule's state machine, the pool level | `hot`, `stats` |
//! | `diagnose/` | why the pool fills: causes, evidence, action (pure), holders' and statements' histories | `hot`, `stats` |
//! | `protect/` | breaker machine and cell, classifier, shedding, query cancel (pure decisions) and what one guard holds of them | `hot` |
//! | `report/` | events and their delivery, snapshot, metric names and registration, a failed query's `error.type`, OpenTelemetry identity, spans, health | the above, `error` |
//! | `monitor/` | `Shared` (the call path's part) and `Monitor` (the task's part): one `Reading` per evaluation, evaluation in named steps, diagnosis gathering, views, publishing, the server watch | the above |
//! | `handle/` | the guard, connections, transactions, admission on the call path, the `Executor` plumbing, a request's scope, the model pool | the above |
//! | `build/` | the builder (setters only), settings, their validation (`validate.rs`), assembly | everything |
//!
//! `error.rs` sits beside them: [`BuildError`](crate::BuildError), the
//! call-time [`Error`](crate::Error) and the checks every validation
//! shares; `tower.rs` (feature `tower`) uses the guard like an
//! application. `tests/it/layers.rs` checks that every import names a layer
//! listed above the file's own, and that no two files import each other,
//! directly or around a cycle (a module's `mod.rs` and its children are
//! one module: a child's `super::` and a parent's `child::` paths are the
//! module tree, not a cycle).
//!
//! Time is passed in, never read, by every model (`stats/`, `alert/`,
//! the breaker machine, shedding): their tests drive synthetic instants,
//! and the monitor's tests run the whole evaluation on tokio's paused
//! clock with guards assembled exactly as `build()` assembles them. Stored
//! times are `Nanos` on the guard's one clock (`hot/clock.rs`).
//!
//! One evaluation of the monitor, in order: `read` the pool once into a
//! `Reading` (`monitor/reading.rs`: counts, sqlx's reconciled untracked
//! connections, the current utilization), tell the call path its `Hints`,
//! end the tick (windows, forecast, per-minute history, anomaly, usual
//! load), judge the rules, derive the level and the scale hint, scan for
//! leaks, derive the diagnosis and the top holders and statements once
//! (`Derived`), then publish the gauges and the events from that reading.
//! A snapshot is built the same way from its own reading.
//!
//! To change a rule's default, edit `alert/defaults.rs`; a metric's name,
//! `report/metrics.rs`; a validation, `build/validate.rs`. None of these
//! touches `hot/`.
