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

use crate::accounting::HoldTicket;
use crate::executor::{Target, TimedConnection};
use crate::monitor::Core;

/// A pooled connection checked out through a [`PoolGuard`](crate::PoolGuard).
///
/// Dereferences to the driver connection, so `&mut *conn` is an executor
/// exactly as with a [`PoolConnection`].
pub struct GuardedConnection<DB: Database> {
    conn: PoolConnection<DB>,
    ticket: HoldTicket,
    core: Arc<Core>,
    backend_id: Option<u64>,
}

impl<DB: Database> GuardedConnection<DB> {
    pub(crate) fn new(conn: PoolConnection<DB>, ticket: HoldTicket, core: Arc<Core>) -> Self {
        Self {
            conn,
            ticket,
            core,
            backend_id: None,
        }
    }

    pub(crate) fn into_parts(self) -> (PoolConnection<DB>, HoldTicket) {
        (self.conn, self.ticket)
    }

    /// Drops the connection without returning it to the pool (its session
    /// is in doubt after a timeout); the pool may open a replacement.
    pub(crate) fn discard(self) {
        drop(self.conn.detach());
    }

    /// An executor on this connection whose queries time out after `limit`
    /// and are then cancelled on the server; if the connection cannot be
    /// proven clean afterwards it is closed when dropped instead of
    /// returned to the pool.
    pub fn with_timeout(&mut self, limit: Duration) -> TimedConnection<'_, DB> {
        TimedConnection {
            target: Target::Conn(&mut self.conn),
            core: &self.core,
            backend_id: &mut self.backend_id,
            limit,
        }
    }

    /// How long this connection has been held.
    pub fn held_for(&self) -> Duration {
        self.ticket.held_for()
    }

    /// The sqlx pool connection, for functions that take `&mut PoolConnection<DB>`.
    pub fn as_pool_connection_mut(&mut self) -> &mut PoolConnection<DB> {
        &mut self.conn
    }

    /// Closes the connection instead of returning it to the pool.
    pub async fn close(self) -> Result<(), sqlx::Error> {
        let (conn, _ticket) = self.into_parts();
        conn.close().await
    }

    /// Takes the connection out of the pool for good (see
    /// [`PoolConnection::detach`]); it stops counting as in use.
    pub fn detach(self) -> DB::Connection {
        self.conn.detach()
    }
}

impl<DB: Database> Deref for GuardedConnection<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<DB: Database> DerefMut for GuardedConnection<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

impl<DB: Database> std::fmt::Debug for GuardedConnection<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedConnection")
            .field("conn", &self.conn)
            .field("held_for", &self.held_for())
            .finish()
    }
}

impl<'c, DB: Database> Acquire<'c> for &'c mut GuardedConnection<DB> {
    type Database = DB;
    type Connection = &'c mut DB::Connection;

    fn acquire(self) -> BoxFuture<'c, Result<Self::Connection, sqlx::Error>> {
        Box::pin(std::future::ready(Ok(&mut **self)))
    }

    fn begin(self) -> BoxFuture<'c, Result<Transaction<'c, DB>, sqlx::Error>> {
        Transaction::begin(&mut **self, None)
    }
}

/// A transaction on a connection checked out through the guard.
///
/// Dereferences to the driver connection (`&mut *tx` is an executor); commit
/// or roll back as with [`Transaction`]. Dropped without either, it rolls back.
pub struct GuardedTransaction<DB: Database> {
    tx: Transaction<'static, DB>,
    // Declared after `tx`: the connection is released before the count drops.
    ticket: HoldTicket,
    core: Arc<Core>,
    backend_id: Option<u64>,
}

impl<DB: Database> GuardedTransaction<DB> {
    pub(crate) fn new(tx: Transaction<'static, DB>, ticket: HoldTicket, core: Arc<Core>) -> Self {
        Self {
            tx,
            ticket,
            core,
            backend_id: None,
        }
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
        TimedConnection {
            target: Target::Tx(&mut self.tx),
            core: &self.core,
            backend_id: &mut self.backend_id,
            limit,
        }
    }

    /// Commits the transaction.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Rolls the transaction back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }

    /// How long the connection has been held.
    pub fn held_for(&self) -> Duration {
        self.ticket.held_for()
    }

    /// The sqlx transaction, for functions that take `&mut Transaction<'_, DB>`.
    /// It stays counted as in use: the guard still owns it.
    pub fn as_transaction_mut(&mut self) -> &mut Transaction<'static, DB> {
        &mut self.tx
    }
}

impl<DB: Database> Deref for GuardedTransaction<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.tx
    }
}

impl<DB: Database> DerefMut for GuardedTransaction<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.tx
    }
}

impl<DB: Database> std::fmt::Debug for GuardedTransaction<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedTransaction")
            .field("tx", &self.tx)
            .field("held_for", &self.held_for())
            .finish()
    }
}

impl<'t, DB: Database> Acquire<'t> for &'t mut GuardedTransaction<DB> {
    type Database = DB;
    type Connection = &'t mut DB::Connection;

    fn acquire(self) -> BoxFuture<'t, Result<Self::Connection, sqlx::Error>> {
        (&mut self.tx).acquire()
    }

    fn begin(self) -> BoxFuture<'t, Result<Transaction<'t, DB>, sqlx::Error>> {
        (&mut self.tx).begin()
    }
}
