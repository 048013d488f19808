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
//! (see `timeout.rs`); a connection that cannot be proven clean is closed.
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
use futures::TryStreamExt;
use sqlx::pool::MaybePoolConnection;
use sqlx::{Acquire, Database, Either, Execute, Executor, SqlStr, Transaction};
use sqlx_core::ext::async_stream::TryAsyncStream;

use crate::connection::{CountedConnection, Guarded, GuardedConnection, Held};
use crate::error::Cancelled;
use crate::guard::PoolGuard;
use crate::monitor::Core;
use crate::timeout::Timed as Outcome;

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

/// After a timeout: whether the connection is clean. If it is not, the
/// server session is ended (awaited, bounded) before the connection is
/// closed, so its id cannot have been reused by then.
async fn after_timeout(core: &Core, id: Option<u64>, server: Cancelled) -> bool {
    let clean = server == Cancelled::Clean;
    if !clean {
        if let Some(id) = id {
            core.protect.killer.terminate(id, core.protect.drain).await;
        }
    }
    clean
}

async fn backend_id<DB: Database>(
    core: &Core,
    conn: &mut DB::Connection,
) -> Result<Option<u64>, sqlx::Error> {
    if core.protect.killer.supported() {
        core.protect.killer.backend_id(conn).await
    } else {
        Ok(None)
    }
}

/// One `fetch_optional` on `conn` with an optional limit; `Err(clean)` when
/// it timed out.
async fn optional_on<'q, DB, E>(
    core: &Core,
    conn: &mut DB::Connection,
    query: E,
    limit: Option<Duration>,
    id_cache: &mut Option<u64>,
) -> Result<Result<Option<DB::Row>, sqlx::Error>, (Duration, Cancelled)>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    E: 'q + Execute<'q, DB>,
{
    let q = core.acct.start_query();
    let Some(limit) = limit else {
        let r = conn.fetch_optional(query).await;
        q.finish(core.answered(&r));
        return Ok(r);
    };
    // The limit covers reading the backend id too: a stalled server must
    // not hang the call before its timeout even starts.
    let deadline = tokio::time::Instant::now() + limit;
    if id_cache.is_none() {
        match tokio::time::timeout_at(deadline, backend_id::<DB>(core, conn)).await {
            Ok(Ok(id)) => *id_cache = id,
            Ok(Err(e)) => return Ok(Err(e)),
            Err(_) => {
                q.finish(false);
                return Err((limit, Cancelled::Closed));
            }
        }
    }
    let id = *id_cache;
    let killer = Arc::clone(&core.protect.killer);
    match killer
        .timed(conn.fetch_optional(query), deadline, id, core.protect.drain)
        .await
    {
        Outcome::Done(r) => {
            q.finish(core.answered(&r));
            Ok(r)
        }
        Outcome::TimedOut(server) => {
            q.finish(false);
            Err((limit, server))
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
        let core = Arc::clone(guard.core());
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
        let core = Arc::clone(guard.core());
        core.call(async {
            let mut flight = InFlight::new(guard.acquire_at(Location::caller()).await?);
            let (conn, id) = flight.parts();
            let r = many_on::<DB, E>(&core, conn, query, limit, id, &yielder).await;
            flight.settle(&core, r).await
        })
        .await
    }))
}

/// A connection with a query in flight. Dropped before the query finished
/// (the caller dropped the future or stream, e.g. under its own
/// `tokio::time::timeout`, or stopped reading a stream before its end), it
/// is settled in the background: most often the rest of the result is
/// already on its way (a first-row read of a short result), so it is
/// drained (a ping waits for the pending results) within `drain_timeout`
/// and goes back to the pool like plain sqlx's. A statement still running
/// then is cancelled on the server and drained as after a query timeout
/// when its backend id is known (the call had a query timeout), and the
/// connection is closed when that fails or the id is unknown (the server
/// then runs the statement on), so the next caller never waits behind it.
/// After a timeout that left it in doubt it is closed. Not on SQLite,
/// where nothing keeps running.
struct InFlight<DB: Database> {
    conn: Option<GuardedConnection<DB>>,
    /// The session's backend id, when the call read it.
    id: Option<u64>,
    done: bool,
}

impl<DB: Database> Drop for InFlight<DB> {
    fn drop(&mut self) {
        // SQLite has no server still working on the statement, and closing
        // the last connection of an in-memory database would destroy it.
        if self.done || DB::NAME == "SQLite" {
            return;
        }
        let Some(conn) = self.conn.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(settle_abandoned(conn, self.id));
            }
            // Detached and dropped: the socket closes now and the pool slot
            // is free at once.
            Err(_) => conn.discard(),
        }
    }
}

/// Drains an abandoned call's connection (bounded) and returns it to the
/// pool, or closes it when the statement is still running. It counts as in
/// use until then: nobody else could have it.
async fn settle_abandoned<DB: Database>(mut conn: GuardedConnection<DB>, id: Option<u64>) {
    let bound = conn.core().protect.drain;
    if let Ok(Ok(())) = tokio::time::timeout(bound, sqlx::Connection::ping(conn.raw())).await {
        return drop(conn);
    }
    if id.is_some() {
        let killer = Arc::clone(&conn.core().protect.killer);
        let rest = sqlx::Connection::ping(conn.raw());
        let server = killer.cancel_and_drain(id, rest, bound).await;
        if after_timeout(conn.core(), id, server).await {
            return drop(conn);
        }
    }
    conn.discard();
}

impl<DB: Database> InFlight<DB> {
    fn new(conn: GuardedConnection<DB>) -> Self {
        Self {
            conn: Some(conn),
            id: None,
            done: false,
        }
    }

    /// The connection and its backend-id cache.
    fn parts(&mut self) -> (&mut DB::Connection, &mut Option<u64>) {
        let conn = self.conn.as_mut().expect("taken only on drop").raw();
        (conn, &mut self.id)
    }

    /// The call's result; after a timeout the connection stays marked for
    /// closing unless the cancel was confirmed clean.
    async fn settle<T>(
        &mut self,
        core: &Core,
        r: Result<Result<T, sqlx::Error>, (Duration, Cancelled)>,
    ) -> Result<T, sqlx::Error> {
        match r {
            Ok(r) => {
                self.done = true;
                r
            }
            Err((limit, server)) => {
                // A session in doubt was ended on the server: close the
                // connection now (never settle it as an abandoned call,
                // which could hand it on or signal a reused id). SQLite has
                // nothing to end and keeps it (see `Drop`).
                if !after_timeout(core, self.id, server).await && DB::NAME != "SQLite" {
                    if let Some(conn) = self.conn.take() {
                        conn.discard();
                    }
                }
                self.done = true;
                Err(core.query_timed_out(limit, server).into())
            }
        }
    }
}

/// What `fetch_many` streams.
pub(crate) type Rows<'e, DB> = BoxStream<
    'e,
    Result<Either<<DB as Database>::QueryResult, <DB as Database>::Row>, sqlx::Error>,
>;

type Yielder<DB> = sqlx_core::ext::async_stream::Yielder<
    Either<<DB as Database>::QueryResult, <DB as Database>::Row>,
>;

/// One `fetch_many` on `conn`, yielding as it goes; `Err` when it timed out.
async fn many_on<'q, DB, E>(
    core: &Core,
    conn: &mut DB::Connection,
    query: E,
    limit: Option<Duration>,
    id_cache: &mut Option<u64>,
    yielder: &Yielder<DB>,
) -> Result<Result<(), sqlx::Error>, (Duration, Cancelled)>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    E: 'q + Execute<'q, DB>,
{
    let q = core.acct.start_query();
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    if let (Some(at), None) = (deadline, *id_cache) {
        match tokio::time::timeout_at(at, backend_id::<DB>(core, conn)).await {
            Ok(Ok(id)) => *id_cache = id,
            Ok(Err(e)) => return Ok(Err(e)),
            Err(_) => {
                q.finish(false);
                return Err((limit.unwrap_or_default(), Cancelled::Closed));
            }
        }
    }
    let mut rows = conn.fetch_many(query);
    loop {
        let next = match deadline {
            None => rows.try_next().await,
            Some(at) => match tokio::time::timeout_at(at, rows.try_next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        match next {
            Ok(Some(v)) => yielder.r#yield(v).await,
            Ok(None) => {
                q.finish(true);
                return Ok(Ok(()));
            }
            Err(e) => {
                q.finish(!core.is_failure(&e));
                return Ok(Err(e));
            }
        }
    }
    // Timed out: cancel on the server and drain the rest of the stream.
    q.finish(false);
    let limit = limit.expect("only a deadline breaks the loop");
    let rest = async {
        while rows.try_next().await?.is_some() {}
        Ok(())
    };
    let server = core
        .protect
        .killer
        .cancel_and_drain(*id_cache, rest, core.protect.drain)
        .await;
    Err((limit, server))
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
        let limit = self.core().protect.query_timeout;
        fetch_many_guarded::<DB, E>(self.clone(), query, limit)
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        E: 'q + Execute<'q, DB>,
    {
        let limit = self.core().protect.query_timeout;
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
            let core = Arc::clone(guard.core());
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
            let core = Arc::clone(guard.core());
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
    pub(crate) core: &'c Core,
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
    async fn settle<T>(
        &mut self,
        r: Result<Result<T, sqlx::Error>, (Duration, Cancelled)>,
    ) -> Result<T, sqlx::Error> {
        let (limit, server) = match r {
            Ok(r) => return r,
            Err(e) => e,
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
            let core = Arc::clone(guard.core());
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
