//! A guard `Executor` call's connection while its query is in flight, and
//! what happens to it when the caller walks away (see [`InFlight`]).

use std::sync::Arc;

use sqlx::Database;

use super::connection::GuardedConnection;
use super::query::after_timeout;
use crate::error::Error;
use crate::monitor::Shared;
use crate::protect::timeout::{Limited, PastLimit};

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
pub(crate) struct InFlight<DB: Database> {
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
    let bound = conn.shared().protect.drain;
    if let Ok(Ok(())) = tokio::time::timeout(bound, sqlx::Connection::ping(conn.raw())).await {
        return drop(conn);
    }
    if id.is_some() {
        let cancel = Arc::clone(&conn.shared().protect.server_cancel);
        let rest = sqlx::Connection::ping(conn.raw());
        let server = cancel.cancel_and_drain(id, rest, bound).await;
        if after_timeout(conn.shared(), id, server).await {
            return drop(conn);
        }
    }
    conn.discard();
}

impl<DB: Database> InFlight<DB> {
    pub(crate) fn new(conn: GuardedConnection<DB>) -> Self {
        Self {
            conn: Some(conn),
            id: None,
            done: false,
        }
    }

    /// The connection and its backend-id cache.
    pub(crate) fn parts(&mut self) -> (&mut DB::Connection, &mut Option<u64>) {
        let conn = self.conn.as_mut().expect("taken only on drop").raw();
        (conn, &mut self.id)
    }

    /// The call's result; after a timeout the connection stays marked for
    /// closing unless the cancel was confirmed clean.
    pub(crate) async fn settle<T>(&mut self, shared: &Shared, r: Limited<T>) -> Result<T, Error> {
        match r {
            Ok(r) => {
                self.done = true;
                Ok(r?)
            }
            Err(PastLimit { limit, server }) => {
                // A session in doubt was ended on the server: close the
                // connection now (never settle it as an abandoned call,
                // which could hand it on or signal a reused id). SQLite has
                // nothing to end and keeps it (see `Drop`).
                if !after_timeout(shared, self.id, server).await && DB::NAME != "SQLite" {
                    if let Some(conn) = self.conn.take() {
                        conn.discard();
                    }
                }
                self.done = true;
                Err(shared.query_timed_out(limit, server))
            }
        }
    }
}
