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

/// What a call through the guard can refuse or report, in detail.
///
/// The guard's everyday methods (`acquire`, `acquire_within`, `begin`,
/// `begin_with`, `try_begin`, and `&guard` as an `Executor`) return
/// [`sqlx::Error`], as the pool does, so swapping a `Pool` for a guard
/// compiles in code whose errors convert only from `sqlx::Error`. Every
/// refusal before a statement is sent reads as
/// [`sqlx::Error::PoolTimedOut`] there (busy, safe to retry: what sqlx
/// itself returns when every connection is busy and when the database
/// refuses connections). The `_detailed` variants
/// ([`acquire_detailed`](crate::PoolGuard::acquire_detailed),
/// [`begin_detailed`](crate::PoolGuard::begin_detailed), ...) return this
/// type: which timeout fired, the pool's state, why the call was refused
/// and when to retry, for that call alone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), poolguard::Error> {
/// # let pool = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await?;
/// # let guard = poolguard::PoolGuard::builder(pool).build()?;
/// use poolguard::Error;
/// guard.breaker().force_open();
/// // The everyday method: sqlx's own error, "busy".
/// assert!(matches!(guard.acquire().await, Err(sqlx::Error::PoolTimedOut)));
/// // The detailed one: why.
/// match guard.acquire_detailed().await {
///     Err(Error::CircuitOpen { retry_in, .. }) => assert_eq!(retry_in, None),
///     other => panic!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The guard could not be built (only from `?` on a [`BuildError`]).
    #[error(transparent)]
    Build(#[from] BuildError),

    /// No connection came in time. `timeout` says whose time ran out;
    /// `state` is the pool as it was when the wait gave up
    /// ([`PoolState::overloaded`]: others were served meanwhile).
    #[error("pool `{pool}` timed out waiting for a connection ({timeout}; {state})")]
    AcquireTimeout {
        /// Name of the guarded pool.
        pool: Arc<str>,
        /// Which timeout fired.
        timeout: TimeoutKind,
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
        /// The expected wait for a connection when the acquire was refused
        /// (Little's law on recent holds; `None` before any hold ended).
        retry_in: Option<Duration>,
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

/// Which timeout ended an acquire's wait (deadpool's `TimeoutType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// The pool's own `acquire_timeout`: counted as a timeout, and for the
    /// breaker a failure unless the pool kept serving others meanwhile
    /// (overload, not a failing database).
    Pool,
    /// The caller's [`acquire_within`](crate::PoolGuard::acquire_within)
    /// deadline, shorter than the pool's: counted like the pool's.
    Deadline,
    /// The request's deadline (the tower layer's, or a `grpc-timeout`): the
    /// client gave up, which says nothing of the pool or the database. Not
    /// counted as a timeout, nothing for the breaker.
    Request,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::Pool => "the pool's acquire_timeout",
            TimeoutKind::Deadline => "the caller's deadline",
            TimeoutKind::Request => "the request's deadline",
        })
    }
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

    /// The guard's own error inside an `sqlx::Error`: a query timeout
    /// travels as `sqlx::Error::Io` (kind `TimedOut`) carrying
    /// [`Error::QueryTimeout`].
    ///
    /// ```
    /// # async fn f(guard: &poolguard::PoolGuard<sqlx::Sqlite>) {
    /// match sqlx::query("SELECT 1").execute(guard).await {
    ///     Err(e) => match poolguard::Error::from_sqlx(&e) {
    ///         Some(poolguard::Error::QueryTimeout { limit, .. }) => eprintln!("slow: {limit:?}"),
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

    /// When a retry may succeed, for a refusal: the breaker's wait until a
    /// trial call, or the expected queue time of a shed acquire (`None`:
    /// not known, or not a refusal).
    pub fn retry_in(&self) -> Option<Duration> {
        match self {
            Error::CircuitOpen { retry_in, .. } | Error::LoadShed { retry_in, .. } => *retry_in,
            _ => None,
        }
    }
}

/// As sqlx would report it: every refusal before a statement is sent (an
/// acquire timeout of any kind, an open breaker, load shedding) becomes
/// [`sqlx::Error::PoolTimedOut`], what sqlx returns when no connection is
/// to be had; a query timeout, which happened mid-statement and is not
/// safe to retry blindly, becomes `Io` of kind `TimedOut` carrying this
/// error ([`Error::from_sqlx`] gets it back); sqlx's own errors pass
/// through unchanged.
impl From<Error> for sqlx::Error {
    fn from(e: Error) -> Self {
        use std::io::{Error as IoError, ErrorKind};
        match e {
            Error::Sqlx(source) => source,
            Error::AcquireTimeout { .. } | Error::CircuitOpen { .. } | Error::LoadShed { .. } => {
                sqlx::Error::PoolTimedOut
            }
            e @ Error::QueryTimeout { .. } => sqlx::Error::Io(IoError::new(ErrorKind::TimedOut, e)),
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
    /// Connections busy in sqlx beyond `in_use` (generic `Acquire::begin`
    /// transactions, listeners, the bare pool), as the monitor counted them
    /// at its last evaluation: the same value as `Snapshot::untracked`, so
    /// a moment's release ping or connect is not counted.
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
