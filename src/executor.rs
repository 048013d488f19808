//! `&PoolGuard` as an `sqlx::Executor` and `sqlx::Acquire`, so code that took
//! `&Pool` keeps the guard's accounting when handed `&guard` instead.
//!
//! Each call acquires through the guard (counted like [`PoolGuard::acquire`])
//! and holds the connection until the returned future or stream finishes or
//! is dropped. Queries (`fetch_*`, `execute*`) are timed from after the
//! acquire to the last row and counted as succeeded or failed for the
//! latency and error-rate signals; a dropped future or stream counts
//! nothing. Leak reports for connections taken here name this file: sqlx
//! calls the trait, so the application's call site is not visible. `describe` is always implemented: this crate turns on
//! sqlx-core's `offline` feature, which sqlx's default `macros` feature turns
//! on too, so the trait has the same shape whatever the application enables.

use std::panic::Location;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::TryStreamExt;
use sqlx::pool::MaybePoolConnection;
use sqlx::{Acquire, Database, Either, Execute, Executor, SqlStr, Transaction};
use sqlx_core::ext::async_stream::TryAsyncStream;

use crate::connection::GuardedConnection;
use crate::guard::PoolGuard;

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
        let guard = self.clone();
        Box::pin(TryAsyncStream::new(move |yielder| async move {
            let mut conn = guard.acquire_at(Location::caller()).await?;
            let ticket = guard.core().acct.start_query();
            let mut rows = (&mut *conn).fetch_many(query);
            loop {
                match rows.try_next().await {
                    Ok(Some(v)) => yielder.r#yield(v).await,
                    Ok(None) => break,
                    Err(e) => {
                        ticket.finish(false);
                        return Err(e);
                    }
                }
            }
            ticket.finish(true);
            Ok(())
        }))
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        E: 'q + Execute<'q, DB>,
    {
        let guard = self.clone();
        Box::pin(async move {
            let mut conn = guard.acquire_at(Location::caller()).await?;
            let ticket = guard.core().acct.start_query();
            let result = (&mut *conn).fetch_optional(query).await;
            ticket.finish(result.is_ok());
            result
        })
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
            let mut conn = guard.acquire_at(Location::caller()).await?;
            (&mut *conn).prepare_with(sql, parameters).await
        })
    }

    #[doc(hidden)]
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<DB>, sqlx::Error>> {
        let guard = self.clone();
        Box::pin(async move {
            let mut conn = guard.acquire_at(Location::caller()).await?;
            (&mut *conn).describe(sql).await
        })
    }
}

/// `acquire()` is fully counted. `begin()` must return sqlx's own
/// `Transaction`, which cannot carry the guard's hold ticket: its acquire
/// (wait, timeout, total) is counted, but the connection stops counting as in
/// use when the transaction starts. Call the inherent [`PoolGuard::begin`]
/// (what `guard.begin()` resolves to) for a fully counted transaction.
impl<'a, DB: Database> Acquire<'a> for &'_ PoolGuard<DB> {
    type Database = DB;
    type Connection = GuardedConnection<DB>;

    fn acquire(self) -> BoxFuture<'a, Result<GuardedConnection<DB>, sqlx::Error>> {
        let guard = self.clone();
        Box::pin(async move { Ok(guard.acquire_at(Location::caller()).await?) })
    }

    fn begin(self) -> BoxFuture<'a, Result<Transaction<'a, DB>, sqlx::Error>> {
        let guard = self.clone();
        Box::pin(async move {
            let (conn, _ticket) = guard.acquire_at(Location::caller()).await?.into_parts();
            Transaction::begin(MaybePoolConnection::PoolConnection(conn), None).await
        })
    }
}
