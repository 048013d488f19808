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
//! always implemented: this crate turns on sqlx-core's `offline` feature,
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

use super::connection::{CountedConnection, Guarded, Held};
use super::guard::PoolGuard;
use super::in_flight::InFlight;
use super::query::{after_timeout, many_on, optional_on, Rows, Timeboxed, TimedOut};
use crate::monitor::Shared;

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
        let core = Arc::clone(guard.shared());
        core.call(async {
            let mut flight = InFlight::new(guard.acquire_at(Location::caller()).await?);
            let (conn, id) = flight.parts();
            let r = optional_on::<DB, E>(&core, conn, query, limit, id).await;
            flight.settle(&core, r).await
        })
        .await
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
        let core = Arc::clone(guard.shared());
        core.call(async {
            let mut flight = InFlight::new(guard.acquire_at(Location::caller()).await?);
            let (conn, id) = flight.parts();
            let r = many_on::<DB, E>(&core, conn, query, limit, id, &yielder).await;
            flight.settle(&core, r).await
        })
        .await
    }))
}

impl<'p, DB: Database> Executor<'p> for &'_ PoolGuard<DB>
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
        let limit = self.shared().protect.query_timeout;
        fetch_many_guarded::<DB, E>(self.clone(), query, limit)
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        E: 'q + Execute<'q, DB>,
    {
        let limit = self.shared().protect.query_timeout;
        fetch_optional_guarded::<DB, E>(self.clone(), query, limit)
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>>
    where
        'p: 'e,
    {
        let guard = self.clone();
        Box::pin(async move {
            let core = Arc::clone(guard.shared());
            core.call(async {
                let mut conn = guard.acquire_at(Location::caller()).await?;
                conn.raw().prepare_with(sql, parameters).await
            })
            .await
        })
    }

    #[doc(hidden)]
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<DB>, sqlx::Error>> {
        let guard = self.clone();
        Box::pin(async move {
            let core = Arc::clone(guard.shared());
            core.call(async {
                let mut conn = guard.acquire_at(Location::caller()).await?;
                conn.raw().describe(sql).await
            })
            .await
        })
    }
}

impl<'p, DB: Database> Executor<'p> for TimedGuard<'_, DB>
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
        fetch_many_guarded::<DB, E>(self.guard.clone(), query, self.limit)
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        E: 'q + Execute<'q, DB>,
    {
        fetch_optional_guarded::<DB, E>(self.guard.clone(), query, self.limit)
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>>
    where
        'p: 'e,
    {
        self.guard.prepare_with(sql, parameters)
    }

    #[doc(hidden)]
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<DB>, sqlx::Error>> {
        self.guard.describe(sql)
    }
}

/// A held connection or transaction with a query timeout, from
/// [`GuardedConnection::with_timeout`] and
/// [`GuardedTransaction::with_timeout`](crate::GuardedTransaction::with_timeout):
/// an `Executor` whose queries are cancelled on the server when they run past
/// the limit.
pub struct TimedConnection<'c, DB: Database> {
    pub(crate) target: &'c mut Held<DB>,
    pub(crate) core: &'c Shared,
    pub(crate) backend_id: &'c mut Option<u64>,
    /// `None`: no timeout (the guard's default when it has none).
    pub(crate) limit: Option<Duration>,
}

impl<DB: Database> std::fmt::Debug for TimedConnection<'_, DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedConnection")
            .field("pool", &self.core.name)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<DB: Database> TimedConnection<'_, DB> {
    /// The query's result; after a timeout that left the session in doubt
    /// the target is poisoned. Either timeout counts for the breaker.
    async fn settle<T>(&mut self, r: Timeboxed<T>) -> Result<T, sqlx::Error> {
        let TimedOut { limit, server } = match r {
            Ok(r) => return r,
            Err(t) => t,
        };
        if !after_timeout(self.core, *self.backend_id, server).await {
            self.target.poison();
        }
        self.core.held_query_timed_out(limit);
        Err(self.core.query_timed_out(limit, server).into())
    }
}

impl<'c, DB: Database> Executor<'c> for TimedConnection<'c, DB>
where
    for<'x> &'x mut DB::Connection: Executor<'x, Database = DB>,
{
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(
        mut self,
        query: E,
    ) -> BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, DB>,
    {
        Box::pin(TryAsyncStream::new(move |yielder| async move {
            let core = self.core;
            let r = many_on::<DB, E>(
                core,
                self.target.conn(),
                query,
                self.limit,
                self.backend_id,
                &yielder,
            )
            .await;
            self.settle(r).await
        }))
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        mut self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, DB>,
    {
        Box::pin(async move {
            let core = self.core;
            let r =
                optional_on::<DB, E>(core, self.target.conn(), query, self.limit, self.backend_id)
                    .await;
            self.settle(r).await
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(async move { self.target.conn().prepare_with(sql, parameters).await })
    }

    #[doc(hidden)]
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<DB>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(async move { self.target.conn().describe(sql).await })
    }
}

/// The drivers a [`Guarded`] connection executes on: PostgreSQL, MySQL and
/// SQLite (with this crate's feature of the same name). Generic code that
/// runs queries on `&mut *conn` bounds its database type with it, as it
/// bounds `&mut DB::Connection` with `Executor` for sqlx.
///
/// (`&mut Guarded<DB>` cannot be an `Executor` for every `DB` whose
/// connection is one: the compiler's search for that bound would recurse
/// through `Guarded<Guarded<..>>` in every generic caller.)
pub trait Driver: Database + sealed::Sealed {
    #[doc(hidden)]
    fn guarded_fetch_many<'e, 'q: 'e, E>(conn: &'e mut Guarded<Self>, query: E) -> Rows<'e, Self>
    where
        E: 'q + Execute<'q, Self>;

    #[doc(hidden)]
    fn guarded_fetch_optional<'e, 'q: 'e, E>(
        conn: &'e mut Guarded<Self>,
        query: E,
    ) -> BoxFuture<'e, Result<Option<Self::Row>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Self>;

    #[doc(hidden)]
    fn guarded_prepare_with<'e>(
        conn: &'e mut Guarded<Self>,
        sql: SqlStr,
        parameters: &'e [Self::TypeInfo],
    ) -> BoxFuture<'e, Result<Self::Statement, sqlx::Error>>;

    #[doc(hidden)]
    fn guarded_describe(
        conn: &mut Guarded<Self>,
        sql: SqlStr,
    ) -> BoxFuture<'_, Result<sqlx::Describe<Self>, sqlx::Error>>;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! driver {
    ($feature:literal, $db:ty) => {
        #[cfg(feature = $feature)]
        impl sealed::Sealed for $db {}

        #[cfg(feature = $feature)]
        impl Driver for $db {
            fn guarded_fetch_many<'e, 'q: 'e, E>(
                conn: &'e mut Guarded<Self>,
                query: E,
            ) -> Rows<'e, Self>
            where
                E: 'q + Execute<'q, Self>,
            {
                let limit = conn.core.protect.query_timeout;
                conn.timed(limit).fetch_many(query)
            }

            fn guarded_fetch_optional<'e, 'q: 'e, E>(
                conn: &'e mut Guarded<Self>,
                query: E,
            ) -> BoxFuture<'e, Result<Option<Self::Row>, sqlx::Error>>
            where
                E: 'q + Execute<'q, Self>,
            {
                let limit = conn.core.protect.query_timeout;
                conn.timed(limit).fetch_optional(query)
            }

            fn guarded_prepare_with<'e>(
                conn: &'e mut Guarded<Self>,
                sql: SqlStr,
                parameters: &'e [Self::TypeInfo],
            ) -> BoxFuture<'e, Result<Self::Statement, sqlx::Error>> {
                conn.held.conn().prepare_with(sql, parameters)
            }

            fn guarded_describe(
                conn: &mut Guarded<Self>,
                sql: SqlStr,
            ) -> BoxFuture<'_, Result<sqlx::Describe<Self>, sqlx::Error>> {
                conn.held.conn().describe(sql)
            }
        }
    };
}

driver!("postgres", sqlx::Postgres);
driver!("mysql", sqlx::MySql);
driver!("sqlite", sqlx::Sqlite);

/// `&mut *conn` and `&mut *tx`: the held connection's queries with the
/// guard's default query timeout (if any), timed and counted.
impl<'c, DB: Driver> Executor<'c> for &'c mut Guarded<DB> {
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, DB>,
    {
        DB::guarded_fetch_many(self, query)
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, DB>,
    {
        DB::guarded_fetch_optional(self, query)
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>>
    where
        'c: 'e,
    {
        DB::guarded_prepare_with(self, sql, parameters)
    }

    #[doc(hidden)]
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<DB>, sqlx::Error>>
    where
        'c: 'e,
    {
        DB::guarded_describe(self, sql)
    }
}

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
        Box::pin(async move { Ok(guard.acquire_guarded(Location::caller()).await?.into()) })
    }

    fn begin(self) -> BoxFuture<'a, Result<Transaction<'a, DB>, sqlx::Error>> {
        let guard = self.clone();
        Box::pin(async move {
            let core = Arc::clone(guard.shared());
            core.call(async {
                let (conn, ticket) = guard.acquire_at(Location::caller()).await?.into_parts();
                let tx = Transaction::begin(MaybePoolConnection::PoolConnection(conn), None).await;
                // sqlx's `Transaction` cannot carry the ticket: the monitor
                // counts the connection through sqlx from here (`untracked`).
                ticket.hand_over();
                tx
            })
            .await
        })
    }
}
