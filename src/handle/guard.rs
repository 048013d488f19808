//! `PoolGuard`: the handle users hold instead of (or beside) their `Pool`.

use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::MaybePoolConnection;
use sqlx::{Database, Pool, Transaction};

use super::acquire::{counted_acquire, Admission};
use super::connection::{GuardedConnection, GuardedTransaction};
use crate::error::Error;
use crate::monitor::{Monitor, Shared};
use crate::protect::breaker::Outcome;

/// A watched `sqlx::Pool`. Cheap to clone (one `Arc`); all clones share the
/// same counts, levels and events. The monitor task stops when the last clone
/// is dropped.
///
/// `&PoolGuard<DB>` is an [`sqlx::Executor`] and [`sqlx::Acquire`], so it goes
/// wherever `&Pool<DB>` went.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use poolguard::{PoolGuard, SaturationEvent};
///
/// let pool = sqlx::sqlite::SqlitePoolOptions::new()
///     .max_connections(5)
///     .connect("sqlite::memory:")
///     .await?;
/// let guard = PoolGuard::builder(pool)
///     .name("orders-db")
///     .warn_at(0.80).warn_for(Duration::from_secs(300))
///     .critical_at(0.90).critical_for(Duration::from_secs(120))
///     .on_saturation(|e: &SaturationEvent| eprintln!("{} -> {}", e.previous, e.level))
///     .build()?;
///
/// let mut conn = guard.acquire().await?;                 // timed, counted
/// sqlx::query("SELECT 1").execute(&mut *conn).await?;
/// drop(conn);
/// let tx = guard.begin().await?;                         // same accounting
/// tx.commit().await?;
/// sqlx::query("SELECT 1").execute(&guard).await?;        // &PoolGuard is an Executor
/// let snap = guard.snapshot();                           // for /health
/// assert_eq!(snap.in_use, 0);
/// assert_eq!(snap.acquires_total, 3);
/// # Ok(()) }
/// ```
pub struct PoolGuard<DB: Database> {
    inner: Arc<Inner<DB>>,
}

struct Inner<DB: Database> {
    pool: Pool<DB>,
    /// What the call path needs (connections and transactions hold it too).
    shared: Arc<Shared>,
    /// The monitor's state, for the readers (snapshot, alerts, level).
    monitor: Arc<Monitor>,
}

impl<DB: Database> Drop for Inner<DB> {
    fn drop(&mut self) {
        self.shared.acct.close();
    }
}

impl<DB: Database> Clone for PoolGuard<DB> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<DB: Database> std::fmt::Debug for PoolGuard<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolGuard")
            .field("name", &self.inner.shared.name)
            .field("pool", &self.inner.pool)
            .field(
                "counters",
                &self.inner.shared.acct.counters(tokio::time::Instant::now()),
            )
            .finish()
    }
}

impl<DB: Database> PoolGuard<DB> {
    pub(crate) fn from_parts(pool: Pool<DB>, shared: Arc<Shared>, monitor: Arc<Monitor>) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                shared,
                monitor,
            }),
        }
    }

    pub(crate) fn monitor(&self) -> &Arc<Monitor> {
        &self.inner.monitor
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The wrapped pool. Connections taken from it directly are not counted.
    pub fn pool(&self) -> &Pool<DB> {
        &self.inner.pool
    }

    /// The pool's name as used in metrics and events.
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// Acquires a connection like [`Pool::acquire`], counting the wait, the
    /// hold and a timeout. Every refusal (the pool's timeout, a request's
    /// deadline, load shedding, an open breaker) is
    /// [`sqlx::Error::PoolTimedOut`], as sqlx reports a pool with nothing
    /// to give; [`acquire_detailed`](Self::acquire_detailed) says which.
    ///
    /// Cancel-safe: dropping the future removes the waiter. The caller's
    /// location is recorded for leak reports (`#[track_caller]`).
    #[track_caller]
    pub fn acquire(&self) -> impl Future<Output = Result<GuardedConnection<DB>, sqlx::Error>> + '_ {
        self.acquire_until(Location::caller(), None, Admission::Ask)
    }

    /// [`acquire`](Self::acquire) with the guard's own [`Error`]: which
    /// timeout fired and the pool's state then, or why the call was
    /// refused and when to retry, for this call alone.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), poolguard::Error> {
    /// # let pool = sqlx::sqlite::SqlitePoolOptions::new()
    /// #     .max_connections(1)
    /// #     .acquire_timeout(std::time::Duration::from_millis(500))
    /// #     .connect("sqlite::memory:").await?;
    /// # let guard = poolguard::PoolGuard::builder(pool).build()?;
    /// use poolguard::{Error, TimeoutKind};
    /// let held = guard.acquire().await?;
    /// // The pool's acquire timeout (500 ms here) passes.
    /// match guard.acquire_detailed().await {
    ///     Err(Error::AcquireTimeout { timeout, state, .. }) => {
    ///         assert_eq!(timeout, TimeoutKind::Pool);
    ///         assert_eq!((state.in_use, state.max), (1, 1));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # drop(held); Ok(()) }
    /// ```
    #[track_caller]
    pub fn acquire_detailed(
        &self,
    ) -> impl Future<Output = Result<GuardedConnection<DB>, Error>> + '_ {
        self.acquire_until(Location::caller(), None, Admission::Ask)
    }

    /// [`acquire`](Self::acquire) from the call site `location` (for leak
    /// reports and the holders table): breaker admission, load shedding,
    /// the counted wait; the acquire's outcome counts for the breaker.
    pub(crate) fn acquire_from(
        &self,
        location: &'static Location<'static>,
    ) -> impl Future<Output = Result<GuardedConnection<DB>, sqlx::Error>> + '_ {
        self.acquire_until(location, None, Admission::Ask)
    }

    /// The counted acquire of a call the breaker already admitted (an
    /// `Executor` call or a `begin`, whose outcome is the whole call's).
    pub(crate) fn acquire_admitted(
        &self,
        location: &'static Location<'static>,
    ) -> impl Future<Output = Result<GuardedConnection<DB>, Error>> + '_ {
        self.acquire_until(location, None, Admission::Admitted)
    }

    /// Like [`acquire`](Self::acquire), but gives up after `deadline` (the
    /// caller's remaining time, e.g. what is left of a request's budget)
    /// instead of the pool's `acquire_timeout`, if that is sooner; load
    /// shedding judges the estimated wait against it too.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), poolguard::Error> {
    /// # let pool = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await?;
    /// # let guard = poolguard::PoolGuard::builder(pool).build()?;
    /// use std::time::Duration;
    /// let conn = guard.acquire_within(Duration::from_millis(250)).await?;
    /// # drop(conn); Ok(()) }
    /// ```
    #[track_caller]
    pub fn acquire_within(
        &self,
        deadline: Duration,
    ) -> impl Future<Output = Result<GuardedConnection<DB>, sqlx::Error>> + '_ {
        self.acquire_until(Location::caller(), Some(deadline), Admission::Ask)
    }

    /// [`acquire_within`](Self::acquire_within) with the guard's own
    /// [`Error`] (see [`acquire_detailed`](Self::acquire_detailed)); a
    /// wait ended by `deadline` is [`TimeoutKind::Deadline`](crate::TimeoutKind::Deadline).
    #[track_caller]
    pub fn acquire_within_detailed(
        &self,
        deadline: Duration,
    ) -> impl Future<Output = Result<GuardedConnection<DB>, Error>> + '_ {
        self.acquire_until(Location::caller(), Some(deadline), Admission::Ask)
    }

    /// One future for the whole acquire (each async layer around the
    /// pool's future would copy it once more; see `acquire.rs`), in the
    /// error type the caller asked for.
    async fn acquire_until<E: From<Error>>(
        &self,
        location: &'static Location<'static>,
        deadline: Option<Duration>,
        admission: Admission,
    ) -> Result<GuardedConnection<DB>, E> {
        let shared = &self.inner.shared;
        let pool = &self.inner.pool;
        let (conn, ticket) =
            counted_acquire(shared, location, deadline, admission, || pool.acquire())
                .await
                .map_err(E::from)?;
        Ok(GuardedConnection::new(conn, ticket, Arc::clone(shared)))
    }

    /// Takes an idle connection if one is available right now, like
    /// [`Pool::try_acquire`] (which fails often just after a release, while
    /// sqlx pings the returned connection).
    #[track_caller]
    pub fn try_acquire(&self) -> Option<GuardedConnection<DB>> {
        self.try_acquire_from(Location::caller())
    }

    fn try_acquire_from(
        &self,
        location: &'static Location<'static>,
    ) -> Option<GuardedConnection<DB>> {
        let ticket = self.inner.shared.acct.start_wait(location);
        // A `None` drops the ticket: no waiter, no outcome counted.
        let conn = self.inner.pool.try_acquire()?;
        Some(GuardedConnection::new(
            conn,
            ticket.acquired(),
            Arc::clone(&self.inner.shared),
        ))
    }

    /// Acquires a connection and begins a transaction; the connection counts
    /// as in use until the transaction is committed, rolled back or dropped.
    /// Refusals are `PoolTimedOut`, as for [`acquire`](Self::acquire).
    #[track_caller]
    pub fn begin(&self) -> impl Future<Output = Result<GuardedTransaction<DB>, sqlx::Error>> + '_ {
        self.begin_at(Location::caller(), None)
    }

    /// [`begin`](Self::begin) with the guard's own [`Error`] (see
    /// [`acquire_detailed`](Self::acquire_detailed)).
    #[track_caller]
    pub fn begin_detailed(
        &self,
    ) -> impl Future<Output = Result<GuardedTransaction<DB>, Error>> + '_ {
        self.begin_at(Location::caller(), None)
    }

    /// Like [`begin`](Self::begin) with a custom `BEGIN` statement, as
    /// [`Pool::begin_with`] (e.g. `"BEGIN ISOLATION LEVEL SERIALIZABLE"`).
    #[track_caller]
    pub fn begin_with(
        &self,
        statement: impl sqlx::SqlSafeStr,
    ) -> impl Future<Output = Result<GuardedTransaction<DB>, sqlx::Error>> + '_ {
        self.begin_at(Location::caller(), Some(statement.into_sql_str()))
    }

    /// [`begin_with`](Self::begin_with) with the guard's own [`Error`].
    #[track_caller]
    pub fn begin_with_detailed(
        &self,
        statement: impl sqlx::SqlSafeStr,
    ) -> impl Future<Output = Result<GuardedTransaction<DB>, Error>> + '_ {
        self.begin_at(Location::caller(), Some(statement.into_sql_str()))
    }

    /// Begins a transaction on an idle connection if one is available right
    /// now, as [`Pool::try_begin`]; asks the circuit breaker first, like
    /// [`begin`](Self::begin) (a refusal is `PoolTimedOut`). Finding no idle
    /// connection says nothing of the database: the breaker counts it not.
    #[track_caller]
    pub fn try_begin(
        &self,
    ) -> impl Future<Output = Result<Option<GuardedTransaction<DB>>, sqlx::Error>> + '_ {
        let location = Location::caller();
        let shared = &self.inner.shared;
        async move {
            let call = shared.admit()?.timed();
            let Some(conn) = self.try_acquire_from(location) else {
                call.finish(Outcome::Ignored);
                return Ok(None);
            };
            let (conn, ticket) = conn.into_parts();
            let r = Transaction::begin(MaybePoolConnection::PoolConnection(conn), None)
                .await
                .map_err(Error::Sqlx);
            call.finish_guard(&r);
            Ok(Some(GuardedTransaction::new(
                r?,
                ticket,
                Arc::clone(shared),
            )))
        }
    }

    /// The counted acquire and `BEGIN` of one call under the breaker, in
    /// the error type the caller asked for.
    fn begin_at<E: From<Error>>(
        &self,
        location: &'static Location<'static>,
        statement: Option<sqlx::SqlStr>,
    ) -> impl Future<Output = Result<GuardedTransaction<DB>, E>> + '_ {
        let shared = &self.inner.shared;
        let begin = shared.call(async move {
            let (conn, ticket) = self.acquire_admitted(location).await?.into_parts();
            let tx =
                Transaction::begin(MaybePoolConnection::PoolConnection(conn), statement).await?;
            Ok(GuardedTransaction::new(tx, ticket, Arc::clone(shared)))
        });
        async move { begin.await.map_err(E::from) }
    }

    /// Closes the pool, as [`Pool::close`]: new acquires fail with
    /// `PoolClosed` (not counted against the database by the breaker), and
    /// the future resolves once every connection is returned and closed.
    pub fn close(&self) -> impl Future<Output = ()> + '_ {
        self.inner.pool.close()
    }

    /// Whether [`close`](Self::close) was called, as [`Pool::is_closed`].
    pub fn is_closed(&self) -> bool {
        self.inner.pool.is_closed()
    }

    /// Open connections, idle ones included, as [`Pool::size`] (sqlx's
    /// count, which lags a release by its ping).
    pub fn size(&self) -> u32 {
        self.inner.pool.size()
    }

    /// Idle connections, as [`Pool::num_idle`] (sqlx's count).
    pub fn num_idle(&self) -> usize {
        self.inner.pool.num_idle()
    }
}
