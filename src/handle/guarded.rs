//! [`Guarded`]: the driver connection seen through the guard, what
//! `&mut *conn` and `&mut *tx` give; the connection and transaction types
//! (`connection.rs`) own one, the executors on it live in `held.rs`.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::{Acquire, Database, Transaction};

use crate::monitor::Shared;

/// What `&mut *conn` and `&mut *tx` give on a
/// [`GuardedConnection`](crate::GuardedConnection) or a
/// [`GuardedTransaction`](crate::GuardedTransaction): the driver connection
/// seen through the guard.
///
/// `&mut Guarded<DB>` is an [`sqlx::Executor`] like `&mut DB::Connection`,
/// but each query is timed and counted (query latency and errors) and, with
/// the guard's [`query_timeout`](crate::PoolGuardBuilder::query_timeout),
/// cancelled on the server when it runs past it, exactly as on `&guard`.
/// For everything else it dereferences to the driver connection, so
/// `conn.ping()`, functions taking `&mut PgConnection` (deref coercion) and
/// `&mut **conn` reach sqlx's own type.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let pool = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await?;
/// let guard = poolguard::PoolGuard::builder(pool).build()?;
/// let mut conn = guard.acquire().await?;
/// sqlx::query("SELECT 1").execute(&mut *conn).await?; // timed and counted
/// assert_eq!(guard.snapshot().queries_in_window, 1);
/// # Ok(()) }
/// ```
pub struct Guarded<DB: Database> {
    pub(crate) held: Held<DB>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) backend_id: Option<u64>,
}

/// The sqlx value a [`Guarded`] wraps.
pub(crate) enum Held<DB: Database> {
    Conn(PoolConnection<DB>),
    Tx(Transaction<'static, DB>),
}

impl<DB: Database> Held<DB> {
    pub(crate) fn conn(&mut self) -> &mut DB::Connection {
        match self {
            Held::Conn(c) => c,
            Held::Tx(t) => t,
        }
    }

    /// After a timeout that left the session in doubt: a pooled connection
    /// is closed instead of returned; a transaction's session is ended on
    /// the server (its rollback then fails and sqlx discards it).
    pub(crate) fn poison(&mut self) {
        if let Held::Conn(c) = self {
            c.close_on_drop();
        }
    }
}

impl<DB: Database> Guarded<DB> {
    pub(super) fn new(held: Held<DB>, shared: Arc<Shared>) -> Self {
        Self {
            held,
            shared,
            backend_id: None,
        }
    }
}

impl<DB: Database> Deref for Guarded<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        match &self.held {
            Held::Conn(c) => c,
            Held::Tx(t) => t,
        }
    }
}

impl<DB: Database> DerefMut for Guarded<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.held.conn()
    }
}

/// As sqlx's `PoolConnection` and `Transaction` are: for functions that
/// take `impl AsMut<PgConnection>` (sqlx's `PgAdvisoryLock::acquire`).
impl<DB: Database> AsMut<DB::Connection> for Guarded<DB> {
    fn as_mut(&mut self) -> &mut DB::Connection {
        self.held.conn()
    }
}

impl<DB: Database> AsRef<DB::Connection> for Guarded<DB> {
    fn as_ref(&self) -> &DB::Connection {
        self
    }
}

/// `&mut *conn` and `&mut *tx` go wherever sqlx's `&mut *conn` went:
/// `Migrator::run(&mut *conn)` and functions written against
/// `impl Acquire<'_>`. What they acquire is the driver connection itself
/// (their queries are not timed by the guard; the connection stays counted
/// as in use); `begin` starts a transaction on it, a savepoint inside a
/// transaction, as on sqlx's own types.
impl<'c, DB: Database> Acquire<'c> for &'c mut Guarded<DB> {
    type Database = DB;
    type Connection = &'c mut DB::Connection;

    fn acquire(self) -> BoxFuture<'c, Result<Self::Connection, sqlx::Error>> {
        Box::pin(std::future::ready(Ok(self.held.conn())))
    }

    fn begin(self) -> BoxFuture<'c, Result<Transaction<'c, DB>, sqlx::Error>> {
        Transaction::begin(self.held.conn(), None)
    }
}

impl<DB: Database> std::fmt::Debug for Guarded<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("pool", &self.shared.name)
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

impl<DB: Database> std::fmt::Debug for Held<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Held::Conn(c) => c.fmt(f),
            Held::Tx(t) => t.fmt(f),
        }
    }
}
