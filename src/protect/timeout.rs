//! Query timeouts that stop the statement on the server and free the slot.
//!
//! sqlx measured here: a client-side `tokio::time::timeout` returns on time
//! but the statement runs on, the connection's slot stays taken, and a later
//! server-side cancel leaves a stale error for the *next* query on that
//! connection. So on expiry the guard
//!
//! 1. asks the server to cancel, from a dedicated connection of its own
//!    (PostgreSQL `pg_cancel_backend(pid)`, MySQL/MariaDB `KILL QUERY id`; the
//!    backend id is read on the connection before the query runs);
//! 2. keeps polling the original query, bounded by the drain time, so the
//!    cancellation's error is consumed on *this* call;
//! 3. returns the connection to the pool only if that error proves the
//!    cancel landed (PostgreSQL 57014, MySQL 1317); otherwise (the query
//!    finished first, the server did not answer, MySQL's `SLEEP` returning 1)
//!    it ends the server session (`pg_terminate_backend` / `KILL`) and closes
//!    the connection, so nobody inherits a stale error or a busy connection.
//!
//! SQLite has no server: the connection is closed (the statement runs on in
//! sqlx's worker thread until it finishes). The backend is found by
//! downcasting the driver connection, so it needs this crate's `postgres` or
//! `mysql` feature; without it the connection is closed the same way.

use std::any::Any;
use std::future::Future;
use std::time::Duration;

use sqlx::{Connection, Database};

use crate::error::Cancelled;

/// Default bound on cancelling and draining after a timeout.
pub const DEFAULT_DRAIN: Duration = Duration::from_millis(250);

/// A query that ran past its limit, and what happened on the server
/// (`Cancelled::Clean`: the connection may be reused).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PastLimit {
    pub(crate) limit: Duration,
    pub(crate) server: Cancelled,
}

/// A query under a limit: its own result, or that it ran past the limit.
pub(crate) type Limited<T> = Result<Result<T, sqlx::Error>, PastLimit>;

/// What to stop on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The running statement (`pg_cancel_backend`, `KILL QUERY`).
    Statement,
    /// The whole session (`pg_terminate_backend`, `KILL CONNECTION`).
    Session,
}

/// The server-side side of timeouts: reads backend ids and cancels.
pub(crate) struct ServerCancel {
    backend: Backend,
}

enum Backend {
    #[cfg(feature = "postgres")]
    Postgres {
        options: sqlx::postgres::PgConnectOptions,
        conn: tokio::sync::Mutex<Option<sqlx::postgres::PgConnection>>,
    },
    #[cfg(feature = "mysql")]
    MySql {
        options: sqlx::mysql::MySqlConnectOptions,
        conn: tokio::sync::Mutex<Option<sqlx::mysql::MySqlConnection>>,
    },
    None,
}

impl std::fmt::Debug for ServerCancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres { .. } => "postgres",
            #[cfg(feature = "mysql")]
            Backend::MySql { .. } => "mysql",
            Backend::None => "none",
        };
        f.debug_struct("ServerCancel")
            .field("backend", &kind)
            .finish()
    }
}

impl ServerCancel {
    /// Picks the backend from the pool's connect options.
    pub(crate) fn new<DB: Database>(options: &<DB::Connection as Connection>::Options) -> Self {
        let any = options as &dyn Any;
        #[cfg(feature = "postgres")]
        if let Some(o) = any.downcast_ref::<sqlx::postgres::PgConnectOptions>() {
            return Self {
                backend: Backend::Postgres {
                    options: o.clone(),
                    conn: tokio::sync::Mutex::new(None),
                },
            };
        }
        #[cfg(feature = "mysql")]
        if let Some(o) = any.downcast_ref::<sqlx::mysql::MySqlConnectOptions>() {
            return Self {
                backend: Backend::MySql {
                    options: o.clone(),
                    conn: tokio::sync::Mutex::new(None),
                },
            };
        }
        let _ = any;
        Self {
            backend: Backend::None,
        }
    }

    /// No server-side cancel.
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        Self {
            backend: Backend::None,
        }
    }

    /// Whether the statement can be stopped on the server.
    pub(crate) fn supported(&self) -> bool {
        !matches!(self.backend, Backend::None)
    }

    /// The server's id of the session behind `conn` (one round trip).
    pub(crate) async fn backend_id<C: Any>(
        &self,
        conn: &mut C,
    ) -> Result<Option<u64>, sqlx::Error> {
        let any = conn as &mut dyn Any;
        #[cfg(feature = "postgres")]
        if let Some(pg) = any.downcast_mut::<sqlx::postgres::PgConnection>() {
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(pg)
                .await?;
            return Ok(u64::try_from(pid).ok());
        }
        #[cfg(feature = "mysql")]
        if let Some(my) = any.downcast_mut::<sqlx::mysql::MySqlConnection>() {
            let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
                .fetch_one(my)
                .await?;
            return Ok(Some(id));
        }
        let _ = any;
        Ok(None)
    }

    /// Runs `sql(id)` on its own connection (opened on first use,
    /// reopened after an error).
    async fn run(&self, id: u64, action: Stop) -> Result<(), sqlx::Error> {
        match &self.backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres { options, conn } => {
                // Taken out of the slot while in use: a run dropped half-way
                // (by the drain bound) drops its connection instead of
                // leaving a busy one for the next cancel, and concurrent
                // cancels do not queue behind each other.
                let taken = conn.lock().await.take();
                let mut c = match taken {
                    Some(c) => c,
                    None => sqlx::postgres::PgConnection::connect_with(options).await?,
                };
                let sql = match action {
                    Stop::Session => "SELECT pg_terminate_backend($1)",
                    Stop::Statement => "SELECT pg_cancel_backend($1)",
                };
                let pid = i32::try_from(id).unwrap_or(i32::MAX);
                sqlx::query(sql).bind(pid).execute(&mut c).await?;
                conn.lock().await.get_or_insert(c);
                Ok(())
            }
            #[cfg(feature = "mysql")]
            Backend::MySql { options, conn } => {
                use sqlx::Executor;
                let taken = conn.lock().await.take();
                let mut c = match taken {
                    Some(c) => c,
                    None => sqlx::mysql::MySqlConnection::connect_with(options).await?,
                };
                // An integer rendered by us: nothing to inject.
                let sql = match action {
                    Stop::Session => format!("KILL CONNECTION {id}"),
                    Stop::Statement => format!("KILL QUERY {id}"),
                };
                c.execute(sqlx::AssertSqlSafe(sql)).await?;
                conn.lock().await.get_or_insert(c);
                Ok(())
            }
            Backend::None => {
                let _ = (id, action);
                Ok(())
            }
        }
    }

    /// Whether `err` is the cancellation's own error, proving the cancel
    /// landed on the statement it was meant for.
    fn is_cancel_error(&self, err: &sqlx::Error) -> bool {
        let code = err.as_database_error().and_then(|e| e.code());
        match &self.backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres { .. } => code.as_deref() == Some("57014"),
            // MySQL's code() is the SQLSTATE; ER_QUERY_INTERRUPTED is 70100.
            #[cfg(feature = "mysql")]
            Backend::MySql { .. } => code.as_deref() == Some("70100"),
            Backend::None => {
                let _ = code;
                false
            }
        }
    }

    /// Ends the server session behind `id` (bounded), before its connection
    /// is closed or handed back: once the socket is gone the server may give
    /// the same id to a new session.
    pub(crate) async fn terminate(&self, id: u64, bound: Duration) {
        match tokio::time::timeout(bound, self.run(id, Stop::Session)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, id, "poolguard: could not end the timed-out session")
            }
            Err(_) => tracing::warn!(id, "poolguard: ending the timed-out session timed out"),
        }
    }

    /// Opens its connection ahead of the first timeout, so the
    /// first cancel does not pay for a connect (and a full server does not
    /// refuse it then).
    pub(crate) async fn preconnect(&self) {
        let r: Result<(), sqlx::Error> = match &self.backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres { options, conn } => {
                sqlx::postgres::PgConnection::connect_with(options)
                    .await
                    .map(|c| {
                        if let Ok(mut slot) = conn.try_lock() {
                            slot.get_or_insert(c);
                        }
                    })
            }
            #[cfg(feature = "mysql")]
            Backend::MySql { options, conn } => sqlx::mysql::MySqlConnection::connect_with(options)
                .await
                .map(|c| {
                    if let Ok(mut slot) = conn.try_lock() {
                        slot.get_or_insert(c);
                    }
                }),
            Backend::None => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "poolguard: could not open the query-cancel connection yet");
        }
    }

    /// Awaits `query` until `deadline` (`limit` after it started); then
    /// cancels it on the server and drains it (both within `drain`).
    pub(crate) async fn limited<T, F>(
        &self,
        query: F,
        (deadline, limit): (tokio::time::Instant, Duration),
        id: Option<u64>,
        drain: Duration,
    ) -> Limited<T>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        tokio::pin!(query);
        if let Ok(r) = tokio::time::timeout_at(deadline, &mut query).await {
            return Ok(r);
        }
        let rest = async { (&mut query).await.map(drop) };
        let server = self.cancel_and_drain(id, rest, drain).await;
        Err(PastLimit { limit, server })
    }

    /// Cancels the statement of session `id` and awaits `rest` (the rest of
    /// the timed-out query), both within `drain`; says whether the
    /// connection is clean.
    pub(crate) async fn cancel_and_drain<F>(
        &self,
        id: Option<u64>,
        rest: F,
        drain: Duration,
    ) -> Cancelled
    where
        F: Future<Output = Result<(), sqlx::Error>>,
    {
        let Some(id) = id.filter(|_| self.supported()) else {
            return Cancelled::NotSupported;
        };
        let both = async { tokio::join!(self.run(id, Stop::Statement), rest) };
        match tokio::time::timeout(drain, both).await {
            Ok((Ok(()), Err(e))) if self.is_cancel_error(&e) => Cancelled::Clean,
            Ok((Err(e), _)) => {
                tracing::warn!(error = %e, id, "poolguard: query cancel failed");
                Cancelled::Closed
            }
            _ => Cancelled::Closed,
        }
    }
}
