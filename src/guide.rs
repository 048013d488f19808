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
//! | `hot/` | accounting (packed in-use/waiter word, drop tickets), edges, histograms, leak table, cached metric handles | nothing of the crate |
//! | `stats/` | windows, forecast, traffic baseline, scale hint | `hot` |
//! | `alert/` | signals, rules, the default table, the rule set, each rule's state machine, the pool level | `hot`, `stats` |
//! | `protect/` | breaker machine and cell, classifier, shedding, query cancel (pure decisions) and what one guard holds of them | `hot`, `error` |
//! | `report/` | events and their delivery, snapshot, metric names and registration, health | the above |
//! | `monitor/` | `Shared` (the call path's part) and `Monitor` (the task's part): evaluation in named steps, views, publishing | the above |
//! | `handle/` | the guard, connections, transactions, admission on the call path, the `Executor` plumbing, the model pool | the above |
//! | `build/` | the builder (setters only), settings and their validation, assembly | everything |
//!
//! `error.rs` sits beside them: [`BuildError`](crate::BuildError), the
//! call-time [`Error`](crate::Error) and the checks every validation
//! shares.
//!
//! Time is passed in, never read, by every model (`stats/`, `alert/`,
//! the breaker machine, shedding): their tests drive synthetic instants,
//! and the monitor's tests run the whole evaluation on tokio's paused
//! clock with guards assembled exactly as `build()` assembles them.
//!
//! To change a rule's default, edit `alert/defaults.rs`; a metric's name,
//! `report/metrics.rs`; a validation, `build/settings.rs`. None of these
//! touches `hot/`.
