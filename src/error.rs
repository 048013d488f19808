//! Errors: [`BuildError`] for a configuration `build()` refuses, [`Error`]
//! for what a call through the guard can refuse or report, and the checks
//! every setting's validation shares.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::protect::breaker::BreakerState;
use crate::protect::shed::ShedReason;

/// Longest accepted hold, recovery time, tick or window: one year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why [`PoolGuardBuilder::build`](crate::PoolGuardBuilder::build) refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
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
}

impl BuildError {
    pub(crate) fn config(
        field: &'static str,
        value: impl fmt::Display,
        reason: &'static str,
    ) -> Self {
        BuildError::InvalidConfig {
            field,
            value: value.to_string(),
            reason,
        }
    }

    /// `d` must be at most [`MAX_DURATION`] (zero allowed).
    pub(crate) fn check_span(field: &'static str, d: Duration) -> Result<(), Self> {
        if d > MAX_DURATION {
            return Err(Self::config(
                field,
                format!("{d:?}"),
                "must be at most one year",
            ));
        }
        Ok(())
    }

    /// `d` must be above zero and at most [`MAX_DURATION`].
    pub(crate) fn check_positive_span(field: &'static str, d: Duration) -> Result<(), Self> {
        if d.is_zero() || d > MAX_DURATION {
            return Err(Self::config(
                field,
                format!("{d:?}"),
                "must be above zero and at most one year",
            ));
        }
        Ok(())
    }
}

/// What a call through the guard can refuse or report.
///
/// Convert into [`sqlx::Error`] with `?` or `.into()` where your code speaks
/// sqlx errors: an acquire timeout becomes [`sqlx::Error::PoolTimedOut`].
/// A [`BuildError`] converts into this type too, so one `?` serves a
/// function that builds a guard and uses it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The guard could not be built (only from `?` on a [`BuildError`]).
    #[error(transparent)]
    Build(#[from] BuildError),

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

    /// The circuit breaker rejected the call without touching the pool.
    #[error("pool `{pool}` circuit breaker is {state}: failing fast{}", retry_text(*retry_in))]
    CircuitOpen {
        /// Name of the guarded pool.
        pool: Arc<str>,
        /// `Open`, `HalfOpen` (trial calls taken) or `ForcedOpen`.
        state: BreakerState,
        /// When the breaker lets a trial call through (`None`: forced open,
        /// until changed by hand).
        retry_in: Option<Duration>,
    },

    /// Load shedding rejected the acquire: waiting would have been hopeless.
    #[error("pool `{pool}` shed the acquire: {reason}")]
    LoadShed {
        /// Name of the guarded pool.
        pool: Arc<str>,
        /// Why, with the numbers.
        reason: ShedReason,
    },

    /// A query ran past its timeout. The statement was cancelled on the
    /// server where the backend allows it (see `server`), and the connection
    /// was returned clean or closed.
    #[error("query on pool `{pool}` timed out after {limit:?} ({server})")]
    QueryTimeout {
        /// Name of the guarded pool.
        pool: Arc<str>,
        /// The limit that passed.
        limit: Duration,
        /// What happened to the statement and the connection.
        server: Cancelled,
    },

    /// An error from sqlx (connect failure, closed pool, query error, ...).
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
}

fn retry_text(retry_in: Option<Duration>) -> String {
    match retry_in {
        Some(d) => format!(", retrying in {d:?}"),
        None => ", forced open until changed".to_owned(),
    }
}

/// What happened on the server when a query timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cancelled {
    /// The server cancelled the statement and the connection went back to
    /// the pool clean (the cancellation's error was consumed).
    Clean,
    /// The cancel could not be confirmed in time (the statement finished
    /// first, the server or the network stalled, or MariaDB's `SLEEP`
    /// returned instead of failing): the server session was ended where
    /// possible and the connection closed, not reused.
    Closed,
    /// The backend offers no server-side cancel (SQLite, or the crate's
    /// `postgres`/`mysql` feature is off): the statement runs on to its end.
    /// A server connection is closed; an SQLite connection goes back to the
    /// pool (closing the last one would destroy an in-memory database), and
    /// its next user waits for the statement to finish.
    NotSupported,
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cancelled::Clean => "cancelled on the server, connection reused",
            Cancelled::Closed => "cancel not confirmed: session ended, connection closed",
            Cancelled::NotSupported => "no server-side cancel: the statement runs to its end",
        })
    }
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
            _ => None,
        }
    }

    /// The guard's own error inside an `sqlx::Error` returned through the
    /// `Executor` path (query timeouts, open breaker, load shedding travel as
    /// `sqlx::Error::Io` carrying this error).
    ///
    /// ```
    /// # async fn f(guard: &poolguard::PoolGuard<sqlx::Sqlite>) {
    /// match sqlx::query("SELECT 1").execute(guard).await {
    ///     Err(e) => match poolguard::Error::from_sqlx(&e) {
    ///         Some(poolguard::Error::QueryTimeout { limit, .. }) => eprintln!("slow: {limit:?}"),
    ///         Some(poolguard::Error::CircuitOpen { retry_in, .. }) => eprintln!("open: {retry_in:?}"),
    ///         _ => eprintln!("{e}"),
    ///     },
    ///     Ok(_) => {}
    /// }
    /// # }
    /// ```
    pub fn from_sqlx(err: &sqlx::Error) -> Option<&Error> {
        match err {
            sqlx::Error::Io(io) => io.get_ref()?.downcast_ref::<Error>(),
            _ => None,
        }
    }

    /// True for [`Error::QueryTimeout`].
    pub fn is_query_timeout(&self) -> bool {
        matches!(self, Error::QueryTimeout { .. })
    }

    /// True for a call the guard refused without waiting:
    /// [`Error::CircuitOpen`] or [`Error::LoadShed`].
    pub fn is_rejected(&self) -> bool {
        matches!(self, Error::CircuitOpen { .. } | Error::LoadShed { .. })
    }

    /// True for [`Error::AcquireTimeout`].
    pub fn is_acquire_timeout(&self) -> bool {
        matches!(self, Error::AcquireTimeout { .. })
    }
}

/// An acquire timeout becomes `PoolTimedOut` and an sqlx error itself; a
/// query timeout becomes `Io(TimedOut)`, an open breaker or a shed acquire
/// `Io(ConnectionRefused)`, each carrying this error ([`Error::from_sqlx`]
/// gets it back).
impl From<Error> for sqlx::Error {
    fn from(e: Error) -> Self {
        use std::io::{Error as IoError, ErrorKind};
        match e {
            Error::AcquireTimeout { source, .. } | Error::Sqlx(source) => source,
            e @ Error::QueryTimeout { .. } => sqlx::Error::Io(IoError::new(ErrorKind::TimedOut, e)),
            e @ (Error::CircuitOpen { .. } | Error::LoadShed { .. }) => {
                sqlx::Error::Io(IoError::new(ErrorKind::ConnectionRefused, e))
            }
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
    /// Connections busy in sqlx beyond `in_use` (`total - idle - in_use`:
    /// generic `Acquire::begin` transactions, listeners, the bare pool,
    /// connections being opened or pinged; see `Snapshot::untracked`).
    pub untracked: u32,
    /// Idle connections (`pool.num_idle()`, eventually consistent).
    pub idle: u32,
    /// `max_connections` of the pool.
    pub max: u32,
    /// Other acquires still waiting (this one excluded).
    pub waiting: u32,
    /// How long this acquire waited.
    pub waited: Duration,
    /// Acquires the pool served to others while this one waited.
    pub served_while_waiting: u64,
}

impl PoolState {
    /// The pool served others while this acquire waited: the timeout came
    /// from overload (more demand than connections), not from a database
    /// that gives no connections (refusing, unreachable or stalled: then
    /// nothing is served, and sqlx reports that as a timeout too). sqlx's
    /// counts cannot tell the two apart: it counts a connection it is
    /// still trying to open as busy.
    pub fn overloaded(&self) -> bool {
        self.served_while_waiting > 0
    }
}

impl fmt::Display for PoolState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "total={}, in_use={}, untracked={}, idle={}, max={}, waiting={}, waited={:?}, served_while_waiting={}",
            self.total,
            self.in_use,
            self.untracked,
            self.idle,
            self.max,
            self.waiting,
            self.waited,
            self.served_while_waiting
        )
    }
}
