//! Circuit breaker, in the manner of Resilience4j: Closed / Open / HalfOpen,
//! plus ForcedOpen, Disabled and MetricsOnly, over a time-based sliding
//! window of fixed buckets with subtract-on-evict (recording and reading are
//! O(1)). The decision is pure: every call takes the instant, so tests drive
//! it with synthetic time.
//!
//! - **Closed**: calls pass; once the window holds at least `minimum_calls`
//!   and the failure rate or the slow-call rate reaches its threshold, Open.
//! - **Open**: calls are rejected without touching the pool until the wait
//!   passes: `base_wait * multiplier^(n-1)` for the n-th consecutive opening,
//!   capped at `max_wait`, with +-`jitter` randomness; then HalfOpen.
//! - **HalfOpen**: `half_open_calls` trial calls pass, others are rejected;
//!   when all trials have finished, their rates decide: Closed (the backoff
//!   resets) or Open again (the backoff grows).
//! - **ForcedOpen** rejects everything, **Disabled** passes everything and
//!   records nothing, **MetricsOnly** records and runs the state machine in
//!   the shadow (its transitions are events marked `shadow`) but never rejects.

mod cell;
mod config;
mod fast;
mod machine;

pub use crate::protect::classify::{classify, Outcome};
pub use config::BreakerConfig;
pub use machine::BreakerState;

pub(crate) use cell::BreakerCell;
pub(crate) use machine::{Breaker, Change, Permit};
