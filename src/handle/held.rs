//! Executors on a connection or transaction already held: `&mut *conn` /
//! `&mut *tx` (`&mut Guarded<DB>`, with the guard's default query
//! timeout, through the sealed [`Driver`] trait) and [`TimedConnection`]
//! (its own limit). Each query is timed and counted (`query.rs`); a
//! timeout that leaves the session in doubt poisons the connection.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sqlx::{Database, Either, Execute, Executor, SqlStr};
use sqlx_core::ext::async_stream::TryAsyncStream;

use super::guarded::{Guarded, Held};
use super::query::{after_timeout, many_on, optional_on, Rows};
use crate::monitor::Shared;
use crate::protect::timeout::{Limited, PastLimit};

/// A held connection or transaction with a query timeout, from
/// [`GuardedConnection::with_timeout`](crate::GuardedConnection::with_timeout) and
/// [`GuardedTransaction::with_timeout`](crate::GuardedTransaction::with_timeout):
/// an `Executor` whose queries are cancelled on the server when they run past
/// the limit.
pub struct TimedConnection<'c, DB: Database> {
    pub(crate) target: &'c mut Held<DB>,
    pub(crate) shared: &'c Shared,
    pub(crate) backend_id: &'c mut Option<u64>,
    /// `None`: no timeout (the guard's default when it has none).
    pub(crate) limit: Option<Duration>,
}

impl<DB: Database> Guarded<DB> {
    /// An executor on this connection with its own query timeout (see
    /// [`GuardedConnection::with_timeout`](crate::GuardedConnection::with_timeout)).
    pub(crate) fn timed(&mut self, limit: Option<Duration>) -> TimedConnection<'_, DB> {
        TimedConnection {
            target: &mut self.held,
            shared: &self.shared,
            backend_id: &mut self.backend_id,
            limit,
        }
    }
}

impl<DB: Database> std::fmt::Debug for TimedConnection<'_, DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedConnection")
            .field("pool", &self.shared.name)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<DB: Database> TimedConnection<'_, DB> {
    /// The query's result; after a timeout that left the session in doubt
    /// the target is poisoned. Either timeout counts for the breaker.
    async fn settle<T>(&mut self, r: Limited<T>) -> Result<T, sqlx::Error> {
        let PastLimit { limit, server } = match r {
            Ok(r) => return r,
            Err(t) => t,
        };
        if !after_timeout(self.shared, *self.backend_id, server).await {
            self.target.poison();
        }
        self.shared.held_query_timed_out(limit);
        Err(self.shared.query_timed_out(limit, server).into())
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
            let shared = self.shared;
            let r = many_on::<DB, E>(
                shared,
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
            let shared = self.shared;
            let r = optional_on::<DB, E>(
                shared,
                self.target.conn(),
                query,
                self.limit,
                self.backend_id,
            )
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
                let limit = conn.shared.protect.query_timeout;
                conn.timed(limit).fetch_many(query)
            }

            fn guarded_fetch_optional<'e, 'q: 'e, E>(
                conn: &'e mut Guarded<Self>,
                query: E,
            ) -> BoxFuture<'e, Result<Option<Self::Row>, sqlx::Error>>
            where
                E: 'q + Execute<'q, Self>,
            {
                let limit = conn.shared.protect.query_timeout;
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
