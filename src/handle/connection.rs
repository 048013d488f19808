//! Connections and transactions handed out by the guard.
//!
//! Each owns a [`HoldTicket`]: the connection counts as in use until the
//! value is dropped, whichever way that happens (end of scope, `?`, a
//! cancelled future, a panicking task).

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::{Acquire, Database, Transaction};

use std::sync::Arc;

use super::guarded::{Guarded, Held};
use super::held::TimedConnection;
use crate::hot::tickets::HoldTicket;
use crate::monitor::Shared;

/// A pooled connection checked out through a [`PoolGuard`](crate::PoolGuard).
///
/// Dereferences to [`Guarded`], so `&mut *conn` is an executor exactly as
/// with a [`PoolConnection`], and its queries are timed, counted and
/// protected by the guard's query timeout; `&mut **conn` is the driver
/// connection itself.
pub struct GuardedConnection<DB: Database> {
    inner: Guarded<DB>,
    // Declared after `inner`: the connection is released before the count drops.
    ticket: HoldTicket,
}

impl<DB: Database> GuardedConnection<DB> {
    pub(crate) fn new(conn: PoolConnection<DB>, ticket: HoldTicket, shared: Arc<Shared>) -> Self {
        Self {
            inner: Guarded::new(Held::Conn(conn), shared),
            ticket,
        }
    }

    pub(crate) fn into_parts(self) -> (PoolConnection<DB>, HoldTicket) {
        match self.inner.held {
            Held::Conn(c) => (c, self.ticket),
            Held::Tx(_) => unreachable!("a GuardedConnection holds a connection"),
        }
    }

    /// The driver connection.
    pub(crate) fn raw(&mut self) -> &mut DB::Connection {
        self.inner.held.conn()
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Drops the connection without returning it to the pool (its session
    /// is in doubt after a timeout); the pool may open a replacement.
    pub(crate) fn discard(self) {
        drop(self.into_parts().0.detach());
    }

    /// Says this connection is meant to be held for up to `hold` (a
    /// nightly batch job, a long migration): with
    /// [`leak_detection`](crate::PoolGuardBuilder::leak_detection) on, it
    /// is reported as a suspected leak only once held past `hold` (if
    /// longer than the guard's threshold), so a job that keeps a
    /// connection on purpose does not page. Without leak detection it does
    /// nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await?;
    /// use std::time::Duration;
    /// let guard = poolguard::PoolGuard::builder(pool)
    ///     .leak_detection(Duration::from_secs(300))
    ///     .build()?;
    /// let conn = guard.acquire().await?;
    /// conn.expect_hold(Duration::from_secs(15 * 60)); // the nightly rollup
    /// # Ok(()) }
    /// ```
    pub fn expect_hold(&self, hold: Duration) {
        self.ticket.expect_hold(hold);
    }

    /// An executor on this connection whose queries time out after `limit`
    /// and are then cancelled on the server; if the connection cannot be
    /// proven clean afterwards it is closed when dropped instead of
    /// returned to the pool.
    pub fn with_timeout(&mut self, limit: Duration) -> TimedConnection<'_, DB> {
        self.inner.timed(Some(limit))
    }

    /// How long this connection has been held.
    pub fn held_for(&self) -> Duration {
        self.ticket.held_for()
    }

    /// The sqlx pool connection, for functions that take `&mut PoolConnection<DB>`.
    pub fn as_pool_connection_mut(&mut self) -> &mut PoolConnection<DB> {
        match &mut self.inner.held {
            Held::Conn(c) => c,
            Held::Tx(_) => unreachable!("a GuardedConnection holds a connection"),
        }
    }

    /// Closes the connection instead of returning it to the pool.
    pub async fn close(self) -> Result<(), sqlx::Error> {
        let (conn, _ticket) = self.into_parts();
        conn.close().await
    }

    /// Takes the connection out of the pool for good (see
    /// [`PoolConnection::detach`]); it stops counting as in use.
    pub fn detach(self) -> DB::Connection {
        self.into_parts().0.detach()
    }
}

impl<DB: Database> Deref for GuardedConnection<DB> {
    type Target = Guarded<DB>;
    fn deref(&self) -> &Guarded<DB> {
        &self.inner
    }
}

impl<DB: Database> DerefMut for GuardedConnection<DB> {
    fn deref_mut(&mut self) -> &mut Guarded<DB> {
        &mut self.inner
    }
}

impl<DB: Database> AsMut<DB::Connection> for GuardedConnection<DB> {
    fn as_mut(&mut self) -> &mut DB::Connection {
        self.inner.held.conn()
    }
}

impl<DB: Database> AsRef<DB::Connection> for GuardedConnection<DB> {
    fn as_ref(&self) -> &DB::Connection {
        &self.inner
    }
}

impl<DB: Database> std::fmt::Debug for GuardedConnection<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedConnection")
            .field("conn", &self.inner.held)
            .field("held_for", &self.held_for())
            .finish()
    }
}

/// A connection from the generic [`sqlx::Acquire::acquire`] on `&PoolGuard`:
/// counted in use until dropped like a [`GuardedConnection`], but it
/// dereferences to the driver connection, as that trait requires, so its
/// queries are not timed (use [`PoolGuard::acquire`](crate::PoolGuard::acquire)
/// for that).
pub struct CountedConnection<DB: Database> {
    conn: PoolConnection<DB>,
    // Declared after `conn`: the connection is released before the count drops.
    _ticket: HoldTicket,
}

impl<DB: Database> From<GuardedConnection<DB>> for CountedConnection<DB> {
    fn from(c: GuardedConnection<DB>) -> Self {
        let (conn, ticket) = c.into_parts();
        Self {
            conn,
            _ticket: ticket,
        }
    }
}

impl<DB: Database> Deref for CountedConnection<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<DB: Database> DerefMut for CountedConnection<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

impl<DB: Database> AsMut<DB::Connection> for CountedConnection<DB> {
    fn as_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

impl<DB: Database> AsRef<DB::Connection> for CountedConnection<DB> {
    fn as_ref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<'c, DB: Database> Acquire<'c> for &'c mut CountedConnection<DB> {
    type Database = DB;
    type Connection = &'c mut DB::Connection;

    fn acquire(self) -> BoxFuture<'c, Result<Self::Connection, sqlx::Error>> {
        Box::pin(std::future::ready(Ok(&mut *self.conn)))
    }

    fn begin(self) -> BoxFuture<'c, Result<Transaction<'c, DB>, sqlx::Error>> {
        Transaction::begin(&mut *self.conn, None)
    }
}

impl<DB: Database> std::fmt::Debug for CountedConnection<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedConnection")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl<'c, DB: Database> Acquire<'c> for &'c mut GuardedConnection<DB> {
    type Database = DB;
    type Connection = &'c mut DB::Connection;

    fn acquire(self) -> BoxFuture<'c, Result<Self::Connection, sqlx::Error>> {
        (&mut self.inner).acquire()
    }

    fn begin(self) -> BoxFuture<'c, Result<Transaction<'c, DB>, sqlx::Error>> {
        (&mut self.inner).begin()
    }
}

/// A transaction on a connection checked out through the guard.
///
/// Dereferences to [`Guarded`] (`&mut *tx` is an executor whose queries are
/// timed, counted and protected like those on `&guard`); commit or roll
/// back as with [`Transaction`]. Dropped without either, it rolls back.
pub struct GuardedTransaction<DB: Database> {
    inner: Guarded<DB>,
    // Declared after `inner`: the connection is released before the count drops.
    ticket: HoldTicket,
}

impl<DB: Database> GuardedTransaction<DB> {
    pub(crate) fn new(
        tx: Transaction<'static, DB>,
        ticket: HoldTicket,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            inner: Guarded::new(Held::Tx(tx), shared),
            ticket,
        }
    }

    fn tx(&mut self) -> &mut Transaction<'static, DB> {
        match &mut self.inner.held {
            Held::Tx(t) => t,
            Held::Conn(_) => unreachable!("a GuardedTransaction holds a transaction"),
        }
    }

    fn into_tx(self) -> (Transaction<'static, DB>, HoldTicket) {
        match self.inner.held {
            Held::Tx(t) => (t, self.ticket),
            Held::Conn(_) => unreachable!("a GuardedTransaction holds a transaction"),
        }
    }

    /// Says this transaction is meant to be held for up to `hold`; see
    /// [`GuardedConnection::expect_hold`].
    pub fn expect_hold(&self, hold: Duration) {
        self.ticket.expect_hold(hold);
    }

    /// An executor in this transaction whose queries time out after `limit`
    /// and are then cancelled on the server (PostgreSQL then aborts the
    /// transaction: roll it back). If the cancel cannot be confirmed, the
    /// server session is ended, so the connection is discarded rather than
    /// reused.
    ///
    /// ```no_run
    /// # async fn f(guard: poolguard::PoolGuard<sqlx::Postgres>) -> Result<(), sqlx::Error> {
    /// use std::time::Duration;
    /// let mut tx = guard.begin().await?;
    /// sqlx::query("UPDATE t SET v = v + 1").execute(tx.with_timeout(Duration::from_secs(2))).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub fn with_timeout(&mut self, limit: Duration) -> TimedConnection<'_, DB> {
        self.inner.timed(Some(limit))
    }

    /// Commits the transaction.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let (tx, _ticket) = self.into_tx();
        tx.commit().await
    }

    /// Rolls the transaction back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        let (tx, _ticket) = self.into_tx();
        tx.rollback().await
    }

    /// How long the connection has been held.
    pub fn held_for(&self) -> Duration {
        self.ticket.held_for()
    }

    /// The sqlx transaction, for functions that take `&mut Transaction<'_, DB>`.
    /// It stays counted as in use: the guard still owns it.
    pub fn as_transaction_mut(&mut self) -> &mut Transaction<'static, DB> {
        self.tx()
    }
}

impl<DB: Database> Deref for GuardedTransaction<DB> {
    type Target = Guarded<DB>;
    fn deref(&self) -> &Guarded<DB> {
        &self.inner
    }
}

impl<DB: Database> DerefMut for GuardedTransaction<DB> {
    fn deref_mut(&mut self) -> &mut Guarded<DB> {
        &mut self.inner
    }
}

impl<DB: Database> AsMut<DB::Connection> for GuardedTransaction<DB> {
    fn as_mut(&mut self) -> &mut DB::Connection {
        self.inner.held.conn()
    }
}

impl<DB: Database> AsRef<DB::Connection> for GuardedTransaction<DB> {
    fn as_ref(&self) -> &DB::Connection {
        &self.inner
    }
}

impl<DB: Database> std::fmt::Debug for GuardedTransaction<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedTransaction")
            .field("tx", &self.inner.held)
            .field("held_for", &self.held_for())
            .finish()
    }
}

impl<'t, DB: Database> Acquire<'t> for &'t mut GuardedTransaction<DB> {
    type Database = DB;
    type Connection = &'t mut DB::Connection;

    fn acquire(self) -> BoxFuture<'t, Result<Self::Connection, sqlx::Error>> {
        self.tx().acquire()
    }

    fn begin(self) -> BoxFuture<'t, Result<Transaction<'t, DB>, sqlx::Error>> {
        self.tx().begin()
    }
}
