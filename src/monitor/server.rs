//! PostgreSQL server watch: reads the server's connection capacity
//! (`max_connections`, reserved slots, client backends of every instance)
//! on its own connection, so a full pool never blocks the reading.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};

use super::{ServerSlot, ServerTask};
use crate::hot::accounting::Accounting;
use crate::stats::scale::ServerCapacity;

/// `reserved_connections` exists from PostgreSQL 16; `current_setting(.., true)`
/// gives NULL where it does not.
const QUERY: &str = "SELECT current_setting('max_connections')::int4, \
    current_setting('superuser_reserved_connections')::int4 \
      + COALESCE(current_setting('reserved_connections', true)::int4, 0), \
    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int4";

async fn read(conn: &mut PgConnection) -> Result<ServerCapacity, sqlx::Error> {
    let row = sqlx::query(QUERY).fetch_one(conn).await?;
    let get = |i: usize| -> Result<u32, sqlx::Error> {
        let v: i32 = row.try_get(i)?;
        Ok(u32::try_from(v).unwrap_or(0))
    };
    Ok(ServerCapacity {
        max_connections: get(0)?,
        reserved: get(1)?,
        backends: get(2)?,
    })
}

/// The task that reads the server's capacity every `interval` on its own
/// connection into the monitor's server slot (see
/// `PoolGuardBuilder::watch_server`).
pub(crate) fn watcher(options: Arc<PgConnectOptions>, interval: Duration) -> ServerTask {
    Box::new(
        move |slot: ServerSlot, acct: Arc<Accounting>, rt: &tokio::runtime::Handle| {
            rt.spawn(async move {
                let mut conn: Option<PgConnection> = None;
                while !acct.is_closed() {
                    if conn.is_none() {
                        match PgConnection::connect_with(&options).await {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                tracing::warn!(error = %e, "poolguard server watch: connect failed")
                            }
                        }
                    }
                    if let Some(c) = conn.as_mut() {
                        match read(c).await {
                            Ok(cap) => *slot.lock() = Some(cap),
                            Err(e) => {
                                tracing::warn!(error = %e, "poolguard server watch: read failed");
                                *slot.lock() = None;
                                conn = None;
                            }
                        }
                    }
                    tokio::time::sleep(interval).await;
                }
                if let Some(c) = conn {
                    let _ = c.close().await;
                }
            });
        },
    )
}
