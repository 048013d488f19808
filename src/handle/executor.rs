//! The guard as an `sqlx::Executor` and `sqlx::Acquire`, so code that took
//! `&Pool` keeps the guard's accounting and protection when handed `&guard`.
//!
//! Each call through `&PoolGuard` (or [`TimedGuard`], its per-call timeout
//! variant) asks the circuit breaker first, then acquires through the guard
//! (counted, load-shed like [`PoolGuard::acquire`]) and holds the connection
//! until the returned future or stream finishes or is dropped. Queries
//! (`fetch_*`, `execute*`) are timed from after the acquire to the last row,
//! counted as succeeded or failed for the latency and error-rate signals and
//! for the breaker; a dropped future or stream counts nothing.
//!
//! With a query timeout, the connection's backend id is read first (one
//! round trip), and an expired query is cancelled on the server and drained
//! (`query.rs`); a connection that cannot be proven clean is closed, and a
//! call abandoned mid-query is settled in the background (`in_flight.rs`).
//! [`TimedConnection`] does the same on a connection or transaction already held.
//!
//! Leak reports for connections taken here name this file: sqlx calls the
//! trait, so the application's call site is not visible. `describe` is
//! always implemented: this crate turns on sqlx-shared's `offline` feature,
//! which sqlx's default `macros` feature turns on too, so the trait has the
//! same shape whatever the application enables.

use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sqlx::pool::MaybePoolConnection;
use sqlx::{Acquire, Database, Either, Execute, Executor, SqlStr, Transaction};
use sqlx_core::ext::async_stream::TryAsyncStream;

use super::connection::CountedConnection;
use super::guard::PoolGuard;
use super::in_flight::InFlight;
use super::query::{many_on, optional_on, Rows};

/// `&PoolGuard` with a timeout for the calls made through it, from
/// [`PoolGuard::with_timeout`]: an `Executor` like `&PoolGuard`.
pub struct TimedGuard<'g, DB: Database> {
    guard: &'g PoolGuard<DB>,
    limit: Option<Duration>,
}

impl<DB: Database> Clone for TimedGuard<'_, DB> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<DB: Database> Copy for TimedGuard<'_, DB> {}

impl<DB: Database> std::fmt::Debug for TimedGuard<'_, DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedGuard")
            .field("pool", &self.guard.name())
            .field("limit", &self.limit)
            .finish()
    }
}

impl<DB: Database> PoolGuard<DB> {
    /// An executor like `&self` whose queries time out after `limit` (the
    /// guard's default [`query_timeout`](crate::PoolGuardBuilder::query_timeout)
    /// is replaced for these calls).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sqlx::Error> {
    /// # let pool = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await?;
    /// # let guard = poolguard::PoolGuard::builder(pool).build().unwrap();
    /// use std::time::Duration;
    /// sqlx::query("SELECT 1").execute(guard.with_timeout(Duration::from_millis(500))).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_timeout(&self, limit: Duration) -> TimedGuard<'_, DB> {
        TimedGuard {
            guard: self,
            limit: Some(limit),
        }
    }
}

fn fetch_optional_guarded<'e, 'q: 'e, DB, E>(
    guard: PoolGuard<DB>,
    query: E,
    limit: Option<Duration>,
) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    E: 'q + Execute<'q, DB>,
{
    Box::pin(async move {
        let shared = Arc::clone(guard.shared());
        shared
            .call(async {
                let mut flight = InFlight::new(guard.acquire_admitted(Location::caller()).await?);
                let (conn, id) = flight.parts();
                let r = optional_on::<DB, E>(&shared, conn, query, limit, id).await;
                flight.settle(&shared, r).await
            })
            .await
            .map_err(sqlx::Error::from)
    })
}

fn fetch_many_guarded<'e, 'q: 'e, DB, E>(
    guard: PoolGuard<DB>,
    query: E,
    limit: Option<Duration>,
) -> Rows<'e, DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    E: 'q + Execute<'q, DB>,
{
    Box::pin(TryAsyncStream::new(move |yielder| async move {
        let shared = Arc::clone(guard.shared());
        shared
            .call(async {
                let mut flight = InFlight::new(guard.acquire_admitted(Location::caller()).await?);
                let (conn, id) = flight.parts();
                let r = many_on::<DB, E>(&shared, conn, query, limit, id, &yielder).await;
                flight.settle(&shared, r).await
            })
            .await
            .map_err(sqlx::Error::from)
    }))
}

/// `prepare_with` through the guard: admitted, acquired and counted like a
/// query, not timed.
fn prepare_guarded<'e, DB>(
    guard: PoolGuard<DB>,
    sql: SqlStr,
    parameters: &'e [DB::TypeInfo],
) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    Box::pin(async move {
        let shared = Arc::clone(guard.shared());
        shared
            .call(async {
                let mut conn = guard.acquire_admitted(Location::caller()).await?;
                Ok(conn.raw().prepare_with(sql, parameters).await?)
            })
            .await
            .map_err(sqlx::Error::from)
    })
}

/// `describe` through the guard, like [`prepare_guarded`].
fn describe_guarded<'e, DB>(
    guard: PoolGuard<DB>,
    sql: SqlStr,
) -> BoxFuture<'e, Result<sqlx::Describe<DB>, sqlx::Error>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    Box::pin(async move {
        let shared = Arc::clone(guard.shared());
        shared
            .call(async {
                let mut conn = guard.acquire_admitted(Location::caller()).await?;
                Ok(conn.raw().describe(sql).await?)
            })
            .await
            .map_err(sqlx::Error::from)
    })
}

/// One `Executor` impl for `&PoolGuard` (the guard's default query timeout)
/// and for `TimedGuard` (its own): `|$s| guard, limit` say where each
/// finds the guard and the limit.
macro_rules! guard_executor {
    ($ty:ty, |$s:ident| $guard:expr, $limit:expr) => {
        impl<'p, DB: Database> Executor<'p> for $ty
        where
            for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        {
            type Database = DB;

            fn fetch_many<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, sqlx::Error>>
            where
                E: 'q + Execute<'q, DB>,
            {
                let $s = self;
                fetch_many_guarded::<DB, E>($guard.clone(), query, $limit)
            }

            fn fetch_optional<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
            where
                E: 'q + Execute<'q, DB>,
            {
                let $s = self;
                fetch_optional_guarded::<DB, E>($guard.clone(), query, $limit)
            }

            fn prepare_with<'e>(
                self,
                sql: SqlStr,
                parameters: &'e [DB::TypeInfo],
            ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>>
            where
                'p: 'e,
            {
                let $s = self;
                prepare_guarded($guard.clone(), sql, parameters)
            }

            #[doc(hidden)]
            fn describe<'e>(
                self,
                sql: SqlStr,
            ) -> BoxFuture<'e, Result<sqlx::Describe<DB>, sqlx::Error>> {
                let $s = self;
                describe_guarded($guard.clone(), sql)
            }
        }
    };
}

guard_executor!(&'_ PoolGuard<DB>, |g| g, g.shared().protect.query_timeout);
guard_executor!(TimedGuard<'_, DB>, |t| t.guard, t.limit);

/// `acquire()` is fully counted. `begin()` must return sqlx's own
/// `Transaction`, which cannot carry the guard's hold ticket: its acquire
/// (wait, timeout, total) is counted, and while the transaction is open the
/// connection counts as busy through sqlx's own counts (`Snapshot::untracked`,
/// reconciled at every evaluation and in every timeout's pool state); its
/// hold time is not recorded. The inherent [`PoolGuard::begin`] (what
/// `guard.begin()` resolves to) counts it exactly.
impl<'a, DB: Database> Acquire<'a> for &'_ PoolGuard<DB> {
    type Database = DB;
    type Connection = CountedConnection<DB>;

    fn acquire(self) -> BoxFuture<'a, Result<CountedConnection<DB>, sqlx::Error>> {
        let guard = self.clone();
        Box::pin(async move { Ok(guard.acquire_from(Location::caller()).await?.into()) })
    }

    fn begin(self) -> BoxFuture<'a, Result<Transaction<'a, DB>, sqlx::Error>> {
        let guard = self.clone();
        Box::pin(async move {
            let shared = Arc::clone(guard.shared());
            shared
                .call(async {
                    let (conn, ticket) = guard
                        .acquire_admitted(Location::caller())
                        .await?
                        .into_parts();
                    let tx =
                        Transaction::begin(MaybePoolConnection::PoolConnection(conn), None).await;
                    // sqlx's `Transaction` cannot carry the ticket: the monitor
                    // counts the connection through sqlx from here (`untracked`).
                    ticket.hand_over();
                    Ok(tx?)
                })
                .await
                .map_err(sqlx::Error::from)
        })
    }
}
