//! The crate's one error type.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Everything a guard can refuse or report.
///
/// Convert into [`sqlx::Error`] with `?` or `.into()` where your code speaks
/// sqlx errors: an acquire timeout becomes [`sqlx::Error::PoolTimedOut`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder refused a setting; `field` names it and `value` shows it.
    #[error("invalid poolguard configuration: `{field}` = {value}: {reason}")]
    InvalidConfig {
        /// Builder method / policy field that is wrong.
        field: &'static str,
        /// The value it was given (with related values where the rule involves them).
        value: String,
        /// What the value must satisfy.
        reason: &'static str,
    },

    /// `build()` ran outside a tokio runtime, which the monitor task needs.
    #[error("PoolGuard::build() must be called inside a tokio runtime (the guard spawns its monitor task)")]
    NoRuntime,

    /// The thread that runs an event callback could not be started.
    #[error("could not start a poolguard event-callback thread: {0}")]
    CallbackThread(#[source] std::io::Error),

    /// No connection became available within the pool's `acquire_timeout`.
    /// `state` is the pool as it was when the wait gave up.
    #[error("pool `{pool}` timed out waiting for a connection ({state})")]
    AcquireTimeout {
        /// Name of the guarded pool.
        pool: Arc<str>,
        /// Pool state at the moment of the timeout.
        state: PoolState,
        /// Always [`sqlx::Error::PoolTimedOut`].
        #[source]
        source: sqlx::Error,
    },

    /// An error from sqlx (connect failure, closed pool, query error, ...).
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
}

impl Error {
    /// The underlying sqlx error, if there is one: `Some(&PoolTimedOut)` for
    /// an acquire timeout, the error itself for [`Error::Sqlx`].
    ///
    /// ```
    /// # use poolguard::Error;
    /// fn is_pool_timeout(e: &Error) -> bool {
    ///     matches!(e.as_sqlx(), Some(sqlx::Error::PoolTimedOut))
    /// }
    /// ```
    pub fn as_sqlx(&self) -> Option<&sqlx::Error> {
        match self {
            Error::AcquireTimeout { source, .. } | Error::Sqlx(source) => Some(source),
            Error::InvalidConfig { .. } | Error::NoRuntime | Error::CallbackThread(_) => None,
        }
    }

    /// True for [`Error::AcquireTimeout`].
    pub fn is_acquire_timeout(&self) -> bool {
        matches!(self, Error::AcquireTimeout { .. })
    }

    pub(crate) fn config(
        field: &'static str,
        value: impl fmt::Display,
        reason: &'static str,
    ) -> Self {
        Error::InvalidConfig {
            field,
            value: value.to_string(),
            reason,
        }
    }
}

impl From<Error> for sqlx::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::AcquireTimeout { source, .. } | Error::Sqlx(source) => source,
            other => sqlx::Error::Configuration(Box::new(other)),
        }
    }
}

/// The pool as seen when an acquire gave up (HikariCP style:
/// `total=, in_use=, idle=, waiting=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolState {
    /// Connections open (`pool.size()`, eventually consistent).
    pub total: u32,
    /// Connections checked out through the guard (exact).
    pub in_use: u32,
    /// Idle connections (`pool.num_idle()`, eventually consistent).
    pub idle: u32,
    /// `max_connections` of the pool.
    pub max: u32,
    /// Other acquires still waiting (this one excluded).
    pub waiting: u32,
    /// How long this acquire waited.
    pub waited: Duration,
}

impl fmt::Display for PoolState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "total={}, in_use={}, idle={}, max={}, waiting={}, waited={:?}",
            self.total, self.in_use, self.idle, self.max, self.waiting, self.waited
        )
    }
}
