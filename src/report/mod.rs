//! What the guard says: events and their delivery ([`events`]), the
//! snapshot ([`snapshot`]), metric names ([`metrics`]), their
//! registration and gauges ([`registry`]), a failed query's `error.type` ([`error_type`]), the
//! pool's OpenTelemetry identity ([`identity`]), tracing spans ([`spans`])
//! and the one answer for `/health` ([`health`]).

pub(crate) mod error_type;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod identity;
pub mod metrics;
pub(crate) mod registry;
pub(crate) mod snapshot;
pub(crate) mod spans;
