//! Protection of the app: the circuit breaker ([`breaker`]), the error
//! classifier ([`classify`]), load shedding ([`shed`]), query timeouts with a
//! server-side cancel ([`timeout`]), and [`Protection`], what one guard
//! holds of them. The call path applies them in `handle/admission.rs`.

pub mod breaker;
pub(crate) mod classify;
pub(crate) mod shed;
pub(crate) mod timeout;

use std::sync::Arc;
use std::time::Duration;

use crate::hot::handles::ProtectMetrics;
use breaker::BreakerCell;
use shed::ShedConfig;
use timeout::ServerCancel;

/// The protection settings and state of one guard.
pub(crate) struct Protection {
    pub(crate) breaker: BreakerCell,
    pub(crate) shed: ShedConfig,
    /// `max_waiters_per_connection x max_connections`.
    pub(crate) max_waiters: u32,
    /// min(pool's acquire_timeout, shed.max_wait).
    pub(crate) shed_deadline: Duration,
    pub(crate) query_timeout: Option<Duration>,
    pub(crate) drain: Duration,
    pub(crate) server_cancel: Arc<ServerCancel>,
    pub(crate) metrics: ProtectMetrics,
}

impl std::fmt::Debug for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protection")
            .field("breaker", &self.breaker)
            .field("shed", &self.shed)
            .field("query_timeout", &self.query_timeout)
            .field("server_cancel", &self.server_cancel)
            .finish_non_exhaustive()
    }
}
