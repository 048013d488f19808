//! Helpers shared by the integration tests: real servers only.
#![allow(dead_code)]

pub mod http;
pub mod proxy;

use std::time::Duration;

use futures::StreamExt;
use poolguard::{Event, EventStream, SaturationEvent};
use sqlx::mysql::MySqlPool;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

pub const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const MYSQL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";

pub fn pg_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| PG_DEFAULT.to_string())
}

pub fn mysql_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| MYSQL_DEFAULT.to_string())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// No server: a failure in CI, a loud skip elsewhere.
fn missing<T>(what: &str, url: &str, e: sqlx::Error) -> Option<T> {
    if in_ci() {
        panic!("{what} is required in CI (CI=true) but {url} did not answer: {e}");
    }
    // Straight to the process's stderr: libtest captures `eprintln!`, and a
    // skip must be seen without `--nocapture`.
    use std::io::Write;
    let _ = write!(
        std::io::stderr(),
        "\n==================== SKIPPED ====================\n\
         {what} not reachable at {url}: {e}\n\
         this test did NOT run; start the server or set the URL variable\n\
         =================================================\n"
    );
    None
}

pub async fn sqlite(max: u32, acquire_timeout: Duration) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(max)
        .acquire_timeout(acquire_timeout)
        .connect("sqlite::memory:")
        .await
        .expect("in-memory SQLite")
}

/// A pool on a real server, or `None` (after a loud skip) when it is down.
async fn server<DB: sqlx::Database>(
    what: &str,
    url: &str,
    max: u32,
    acquire_timeout: Duration,
) -> Option<sqlx::Pool<DB>> {
    match sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(max)
        .acquire_timeout(acquire_timeout)
        .connect(url)
        .await
    {
        Ok(p) => Some(p),
        Err(e) => missing(what, url, e),
    }
}

pub async fn postgres(max: u32, acquire_timeout: Duration) -> Option<PgPool> {
    server("PostgreSQL", &pg_url(), max, acquire_timeout).await
}

pub async fn mysql(max: u32, acquire_timeout: Duration) -> Option<MySqlPool> {
    server("MariaDB/MySQL", &mysql_url(), max, acquire_timeout).await
}

/// The next saturation event, waiting at most `within` (real time).
pub async fn next_saturation(events: &mut EventStream, within: Duration) -> SaturationEvent {
    loop {
        match tokio::time::timeout(within, events.next()).await {
            Ok(Some(Ok(Event::Saturation(e)))) => return e,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(missed))) => panic!("stream lagged: {missed}"),
            Ok(None) => panic!("event stream ended"),
            Err(_) => panic!("no saturation event within {within:?}"),
        }
    }
}

/// Waits (real time, bounded) until sqlx reports every connection idle:
/// `pool.size()` / `num_idle()` lag a release by sqlx's background ping.
pub async fn settle_pool<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) {
    settle_in_use(pool, 0).await;
}

/// Waits (real time, bounded) until sqlx's `size() - num_idle()` equals
/// `in_use`; panics with both figures if it never does.
pub async fn settle_in_use<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, in_use: usize) {
    for _ in 0..400 {
        if (pool.size() as usize).checked_sub(pool.num_idle()) == Some(in_use) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "sqlx never agreed on {in_use} in use: size={} idle={}",
        pool.size(),
        pool.num_idle()
    );
}
