//! The integration tests, one binary: every file here is a module, so the
//! crate and its dependencies are compiled and linked once for all of them
//! (20 binaries took most of CI's test build). Tests that need the process
//! to themselves (a global allocator, tracing's process-wide state) live
//! apart in `tests/alone/`.
//!
//! Tests of different modules run at once, as tests within a file always
//! did: each uses its own pools, tables, markers and ports.

#[path = "../common/mod.rs"]
mod common;

mod accounting_props;
mod api;
#[cfg(feature = "tower")]
mod axum_service;
mod conventions;
mod diagnosis;
mod drop_in;
mod exhaustion;
mod exported_metrics;
mod health;
mod incident_replay;
mod layers;
mod ops_kit;
mod protection;
mod rules;
#[cfg(feature = "postgres")]
mod server;
mod sqlx_idioms;
#[cfg(all(feature = "tower", feature = "bench-hooks"))]
mod tower_layer;
