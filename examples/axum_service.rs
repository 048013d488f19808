//! A small axum service behind a [`PoolGuard`]: Prometheus metrics, a
//! health check that follows the guard's alert rules, and handlers that use
//! the guard as their sqlx executor.
//!
//! ```text
//! cargo run --example axum_service --features tower          # in-memory SQLite, nothing to install
//! PORT=8080 cargo run --example axum_service --features tower # another port (default 3000)
//! DATABASE_URL=postgres://postgres@127.0.0.1/test cargo run --example axum_service --features tower,postgres
//! DATABASE_URL=mysql://root@127.0.0.1/test cargo run --example axum_service --features tower,mysql
//! ```
//!
//! (The crate's `postgres` / `mysql` feature is what lets a timed-out query be
//! cancelled on the server; without it the example still runs against those
//! databases, and a timed-out query's connection is closed instead.)
//!
//! Then, in another terminal:
//!
//! ```text
//! curl -i localhost:3000/items/1         # 200 "apple": a query through `&guard`
//! curl -i localhost:3000/items/9         # 404
//! curl -i 'localhost:3000/slow?secs=5'   # 504 after the 2 s query timeout
//! curl -i localhost:3000/health          # 200, or 503 while a critical rule fires
//! curl -s localhost:3000/metrics | grep -E '^(db_client|poolguard|http_server)'
//! ```
//!
//! - `GET /items/{id}` reads a row of a small `items` table (a temporary table
//!   each connection creates, so nothing is written to your database).
//! - `GET /slow?secs=N` keeps a connection busy inside the database for `N`
//!   seconds (`pg_sleep`, `SLEEP`, or on SQLite, which has no sleep, a
//!   counting query that takes about that long). Run a few at once to see
//!   the pool fill: `for i in $(seq 30); do curl -s 'localhost:3000/slow?secs=3' & done`
//!   answers some at once with 503 + `Retry-After` (load shed: their
//!   expected wait is past the 1 s acquire deadline; the layer adds the
//!   header from the expected queue time) and the rest after the
//!   2 s query timeout with 504. Query timeouts count for the circuit
//!   breaker (acquire timeouts on a pool that keeps serving do not: that is
//!   overload); enough of them open it (then 503 + `Retry-After` at once, no
//!   query sent) and fire the critical `timeouts` rule, so `/health`
//!   answers 503.
//! - `GET /health` is `guard.health()` as plain text (status, pool level, in
//!   use, size, waiters, breaker state, the rules now firing, the reasons);
//!   it answers 503 while the guard is unhealthy: a `Severity::Critical`
//!   rule fires (with the default rules, for example: pool utilization above
//!   90 % for 2 minutes, or more than 10 acquire/query timeouts or 504s in 5
//!   minutes) or the circuit breaker is open.
//! - `GET /metrics` is the Prometheus text format: the pool and query
//!   metrics (`db_client_*`), the guard's own (`poolguard_*`, alert states
//!   included) and the request histogram (`http_server_request_duration`,
//!   by method, scheme and status code) fed by the guard's tower layer,
//!   which records every `/items` and `/slow` request.
//!
//! Ctrl-C stops accepting connections, lets requests in flight finish, and
//! closes the pool.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use poolguard::tower::PoolGuardLayer;
use poolguard::{BreakerConfig, HealthStatus, PoolGuard, ShedConfig};
use sqlx::mysql::MySql;
use sqlx::pool::PoolOptions;
use sqlx::postgres::Postgres;
use sqlx::sqlite::Sqlite;
use sqlx::{Database, Pool};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // First the recorder, then the guard: the guard registers its metric
    // handles when it is built, and handles taken before a recorder is
    // installed record into the void.
    let metrics = install_recorder()?;
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite::memory:".to_owned());
    let port = match std::env::var("PORT") {
        Ok(p) => p.parse()?,
        Err(_) => 3000,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // No `sqlx::Any` here: one generic `serve` per driver.
    match url.split(':').next().unwrap_or_default() {
        "sqlite" => serve::<Sqlite>(&url, addr, metrics).await,
        "postgres" | "postgresql" => serve::<Postgres>(&url, addr, metrics).await,
        "mysql" | "mariadb" => serve::<MySql>(&url, addr, metrics).await,
        other => Err(format!("DATABASE_URL: unsupported scheme `{other}`").into()),
    }
}

/// Installs the global Prometheus recorder and keeps its histograms drained.
pub fn install_recorder() -> Result<PrometheusHandle, BoxError> {
    let handle = PrometheusBuilder::new()
        // Real histograms (not summaries) with bounds at the alert thresholds.
        .set_buckets(poolguard::metrics::LATENCY_BUCKETS)?
        .install_recorder()?;
    // `install_recorder` leaves upkeep to us (`install` would spawn it, but
    // also its own HTTP listener); 5 s is the exporter's own interval.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

async fn serve<DB: Backend>(
    url: &str,
    addr: SocketAddr,
    metrics: PrometheusHandle,
) -> Result<(), BoxError> {
    let guard = build_guard(pool_options::<DB>().connect(url).await?)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "poolguard axum_service on {} (pool `{}`, max {} connections)",
        DB::NAME,
        guard.name(),
        guard.pool().options().get_max_connections()
    );
    for path in ["/items/1", "/slow?secs=3", "/health", "/metrics"] {
        println!("  http://{addr}{path}");
    }
    axum::serve(listener, app(guard.clone(), metrics))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            println!("shutting down");
        })
        .await?;
    guard.pool().close().await;
    Ok(())
}

/// The pool: small, and quick to give up on a connection.
pub fn pool_options<DB: Backend>() -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(10)
        // sqlx's default is 30 s, longer than any client waits for an
        // answer; a request that cannot get a connection within 1 s gets a
        // 503 instead (and the guard counts the timeout).
        .acquire_timeout(Duration::from_secs(1))
        .after_connect(|conn, _| DB::setup(conn))
}

/// The guard, with the protection this service wants.
pub fn build_guard<DB: Database>(pool: Pool<DB>) -> Result<PoolGuard<DB>, poolguard::BuildError> {
    // The alert rules stay the defaults (the post-mortem's table: pool above
    // 80 % for 5 min warns, above 90 % for 2 min is critical, plus error
    // rate, timeouts and P95 on queries and on the requests recorded below).
    PoolGuard::builder(pool)
        .name("axum_service")
        // No query of this service should take more than a few hundred ms;
        // one stuck for 2 s is stopped (cancelled on PostgreSQL / MySQL)
        // and its connection freed, instead of holding a slot until the
        // client gives up. Handlers answer 504.
        .query_timeout(Duration::from_secs(2))
        .breaker(
            BreakerConfig::default()
                // Judged over the last 10 s, once they hold 20 calls, so a
                // quiet service does not open on one error ...
                .window(Duration::from_secs(10))
                .minimum_calls(20)
                // ... open when half the calls fail (connection errors and
                // timeouts count; constraint violations are answers) ...
                .failure_rate(0.5)
                // ... or when 80 % take over 1 s, half the query timeout:
                // the database is struggling before queries start timing out.
                .slow_call_duration(Duration::from_secs(1))
                .slow_call_rate(0.8)
                // Fail fast for 5 s, doubling on each reopening up to 1 min;
                // the layer sends the remaining wait as `Retry-After`.
                .base_wait(Duration::from_secs(5))
                .max_wait(Duration::from_secs(60)),
        )
        .shed(
            ShedConfig::default()
                // At most 2 waiting requests per connection (20 here) ...
                .max_waiters_per_connection(2)
                // ... and none whose estimated wait exceeds the 1 s acquire
                // timeout: it is told 503 at once rather than after 1 s.
                .max_wait(Duration::from_secs(1)),
        )
        // A connection held for 30 s in a web request is a bug: report where
        // it was acquired.
        .leak_detection(Duration::from_secs(30))
        .build()
}

/// The routes. The guard's layer covers the API routes only: health checks
/// and scrapes would dilute the request rate and latency. It records every
/// response (status, latency, method, scheme), gives each request 3 s, which
/// bounds the guard's acquires made for it, and turns a refusal of the
/// guard (breaker open, load shed) into 503 with `Retry-After`.
pub fn app<DB: Backend>(guard: PoolGuard<DB>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/items/{id}", get(item::<DB>))
        .route("/slow", get(slow::<DB>))
        .route_layer(PoolGuardLayer::new(guard.clone()).request_timeout(Duration::from_secs(3)))
        .route("/health", get(health::<DB>))
        .with_state(guard)
        .route(
            "/metrics",
            get(move || {
                let body = metrics.render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
            }),
        )
}

/// `GET /items/{id}`: one query with `&guard` as the executor.
async fn item<DB: Backend>(
    State(guard): State<PoolGuard<DB>>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    Ok(match DB::find_item(&guard, id).await? {
        Some(name) => format!("{name}\n").into_response(),
        None => (StatusCode::NOT_FOUND, format!("no item {id}\n")).into_response(),
    })
}

/// `GET /slow?secs=N`: holds a connection inside the database for N seconds.
async fn slow<DB: Backend>(
    State(guard): State<PoolGuard<DB>>,
    Query(params): Query<HashMap<String, f64>>,
) -> Result<String, ApiError> {
    let secs = params.get("secs").copied().unwrap_or(1.0).clamp(0.0, 60.0);
    DB::sleep(&guard, secs).await?;
    Ok(format!("slept {secs} s\n"))
}

/// `GET /health`: 503 while any critical rule fires, 200 otherwise.
async fn health<DB: Database>(State(guard): State<PoolGuard<DB>>) -> (StatusCode, String) {
    // One call: the verdict (a critical rule or an open breaker is
    // unhealthy, a warning degraded), the reasons and the figures.
    let health = guard.health();
    let snap = &health.snapshot;
    let mut body =
        format!(
        "status: {}\npool: {}\nlevel: {}\nin_use: {}\nuntracked: {}\nidle: {}\nsize: {}\nmax: {}\n\
         waiters: {}\nutilization: {:.2}\nbreaker: {}\nfiring:{}\n",
        match health.status {
            HealthStatus::Healthy => "ok",
            HealthStatus::Degraded => "degraded",
            _ => "unavailable",
        },
        snap.pool,
        health.level,
        snap.in_use,
        snap.untracked,
        snap.idle,
        snap.size,
        snap.max,
        snap.waiters,
        snap.utilization,
        health.breaker,
        if health.firing.is_empty() { " none" } else { "" },
    );
    for a in &health.firing {
        let value = a.value.map_or("-".to_owned(), |v| format!("{v:.3}"));
        body += &format!(
            "  - {} ({}): value {value}, threshold {}, for {:.0?}\n",
            a.rule, a.severity, a.threshold, a.in_state_for
        );
    }
    for r in &health.reasons {
        body += &format!("reason: {r}\n");
    }
    let status = if health.status == HealthStatus::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, body)
}

/// A failed query, answered with the status that tells the client what to do.
pub struct ApiError(sqlx::Error);

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unavailable = |retry_after: Duration, msg: String| {
            // Whole seconds, rounded up: `Retry-After: 0` would invite a retry storm.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            let headers = [(header::RETRY_AFTER, secs.max(1).to_string())];
            (StatusCode::SERVICE_UNAVAILABLE, headers, msg + "\n").into_response()
        };
        match poolguard::Error::from_sqlx(&self.0) {
            // The query ran past `query_timeout` and was stopped (an
            // `Io(TimedOut)` carrying the guard's error).
            Some(e @ poolguard::Error::QueryTimeout { .. }) => {
                (StatusCode::GATEWAY_TIMEOUT, e.to_string() + "\n").into_response()
            }
            // No connection was to be had, nothing was sent: a busy pool,
            // an open breaker, load shedding, as sqlx reports a pool with
            // nothing to give. Safe to retry. For the guard's own refusals
            // the layer sets `Retry-After` from the breaker's wait or the
            // queue time (the guard logs the pool state with a timeout).
            _ if matches!(self.0, sqlx::Error::PoolTimedOut) => unavailable(
                Duration::from_secs(1),
                "no database connection available".to_owned(),
            ),
            // Anything else: log the details, do not send them.
            _ => {
                eprintln!("query failed: {}", self.0);
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
            }
        }
    }
}

/// What differs between the drivers: SQL dialect and the demo table. Each
/// method runs its query with `&PoolGuard` as the executor, like code that
/// used to take `&Pool`.
pub trait Backend: Database {
    /// Creates and fills the connection's temporary `items` table (run by
    /// the pool for every new connection).
    fn setup(conn: &mut Self::Connection) -> BoxFuture<'_, sqlx::Result<()>>;

    /// The name of item `id`.
    fn find_item(guard: &PoolGuard<Self>, id: i64) -> BoxFuture<'_, sqlx::Result<Option<String>>>;

    /// Keeps a connection busy in the database for `secs` seconds.
    fn sleep(guard: &PoolGuard<Self>, secs: f64) -> BoxFuture<'_, sqlx::Result<()>>;
}

/// Same text on all three databases: a per-connection temporary table.
const SETUP: &str = "\
    CREATE TEMPORARY TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
    INSERT INTO items (id, name) VALUES (1, 'apple'), (2, 'pear'), (3, 'plum');";

impl Backend for Sqlite {
    fn setup(conn: &mut Self::Connection) -> BoxFuture<'_, sqlx::Result<()>> {
        sqlx::raw_sql(SETUP).execute(conn).map_ok(drop).boxed()
    }

    fn find_item(guard: &PoolGuard<Self>, id: i64) -> BoxFuture<'_, sqlx::Result<Option<String>>> {
        sqlx::query_scalar("SELECT name FROM items WHERE id = ?")
            .bind(id)
            .fetch_optional(guard)
            .boxed()
    }

    fn sleep(guard: &PoolGuard<Self>, secs: f64) -> BoxFuture<'_, sqlx::Result<()>> {
        // No sleep() in SQLite: count up to a number that takes about `secs`
        // (a few million rows a second on a current CPU).
        let rows = (secs * 5_000_000.0) as i64;
        sqlx::query(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) \
             SELECT count(*) FROM c",
        )
        .bind(rows)
        .execute(guard)
        .map_ok(drop)
        .boxed()
    }
}

impl Backend for Postgres {
    fn setup(conn: &mut Self::Connection) -> BoxFuture<'_, sqlx::Result<()>> {
        sqlx::raw_sql(SETUP).execute(conn).map_ok(drop).boxed()
    }

    fn find_item(guard: &PoolGuard<Self>, id: i64) -> BoxFuture<'_, sqlx::Result<Option<String>>> {
        sqlx::query_scalar("SELECT name FROM items WHERE id = $1")
            .bind(id)
            .fetch_optional(guard)
            .boxed()
    }

    fn sleep(guard: &PoolGuard<Self>, secs: f64) -> BoxFuture<'_, sqlx::Result<()>> {
        sqlx::query("SELECT pg_sleep($1)")
            .bind(secs)
            .execute(guard)
            .map_ok(drop)
            .boxed()
    }
}

impl Backend for MySql {
    fn setup(conn: &mut Self::Connection) -> BoxFuture<'_, sqlx::Result<()>> {
        sqlx::raw_sql(SETUP).execute(conn).map_ok(drop).boxed()
    }

    fn find_item(guard: &PoolGuard<Self>, id: i64) -> BoxFuture<'_, sqlx::Result<Option<String>>> {
        sqlx::query_scalar("SELECT name FROM items WHERE id = ?")
            .bind(id)
            .fetch_optional(guard)
            .boxed()
    }

    fn sleep(guard: &PoolGuard<Self>, secs: f64) -> BoxFuture<'_, sqlx::Result<()>> {
        sqlx::query("SELECT SLEEP(?)")
            .bind(secs)
            .execute(guard)
            .map_ok(drop)
            .boxed()
    }
}
