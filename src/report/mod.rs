//! What the guard says: events and their delivery ([`events`]), the
//! snapshot ([`snapshot`]), metric names, registration and gauges
//! ([`metrics`]) and the one answer for `/health` ([`health`]).

pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod identity;
pub mod metrics;
pub(crate) mod snapshot;
pub(crate) mod spans;
