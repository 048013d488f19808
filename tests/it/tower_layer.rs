//! The tower layer (feature `tower`) in a real axum server, in-process on
//! an ephemeral port, over SQLite: every response recorded with its method,
//! scheme and integer status; the request's deadline bounding the guard's
//! acquires; refusals turned into 503 with `Retry-After`; handlers that
//! recovered left alone.
//!
//! Each test runs on a current-thread runtime with its own Prometheus
//! recorder as the thread's recorder (server, client and guard share the
//! thread), so the tests do not see each other's metrics.

use crate::common::http as web;

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusBuilder;
use poolguard::tower::{PoolGuardLayer, RequestDeadline, UNKNOWN_WAIT};
use poolguard::{BreakerConfig, Outcome, PoolGuard, ShedConfig};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::Sqlite;

type Guard = PoolGuard<Sqlite>;

/// A pool of one connection whose acquires would wait 60 s.
async fn guard(
    configure: impl FnOnce(poolguard::PoolGuardBuilder<Sqlite>) -> poolguard::PoolGuardBuilder<Sqlite>,
) -> Guard {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(60))
        .connect("sqlite::memory:")
        .await
        .expect("SQLite");
    configure(PoolGuard::builder(pool).name("layer"))
        .build()
        .expect("guard")
}

/// `/ok`: a query through the guard. `/missing`: 404. `/fail`: a query,
/// any error a plain 500. `/recovered`: a query, an error answered 200
/// from a "cache". `/wait`: an acquire, its error's text in a 500.
fn routes(g: Guard) -> Router<()> {
    async fn ok(State(g): State<Guard>) -> StatusCode {
        sqlx::query("SELECT 1").execute(&g).await.expect("query");
        StatusCode::OK
    }
    async fn fail(State(g): State<Guard>) -> StatusCode {
        match sqlx::query_scalar::<_, i64>("SELECT x FROM nowhere")
            .fetch_one(&g)
            .await
        {
            Ok(_) => StatusCode::OK,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    async fn recovered(State(g): State<Guard>) -> (StatusCode, &'static str) {
        match sqlx::query("SELECT 1").execute(&g).await {
            Ok(_) => (StatusCode::OK, "fresh"),
            Err(_) => (StatusCode::OK, "cached"),
        }
    }
    async fn wait(State(g): State<Guard>) -> Response {
        match g.acquire_detailed().await {
            Ok(_) => StatusCode::OK.into_response(),
            Err(poolguard::Error::AcquireTimeout { state, .. }) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("waited_ms={}", state.waited.as_millis()),
            )
                .into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
    Router::new()
        .route("/ok", get(ok).post(ok))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route("/fail", get(fail))
        .route("/recovered", get(recovered))
        .route("/wait", get(wait))
        .with_state(g)
}

/// The count of `http_server_request_duration` with these labels.
fn requests(text: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("http_server_request_duration_count{"))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "current_thread")]
async fn every_response_is_recorded_with_method_scheme_and_code() {
    let recorder = PrometheusBuilder::new()
        .set_buckets(poolguard::metrics::LATENCY_BUCKETS)
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let g = guard(|b| b).await;
    let app = routes(g.clone()).layer(PoolGuardLayer::new(g.clone()));
    let addr = web::start(app).await;

    assert_eq!(web::get(addr, "/ok").await.status, 200);
    assert_eq!(web::get(addr, "/ok").await.status, 200);
    assert_eq!(web::send(addr, "POST", "/ok", "").await.status, 200);
    assert_eq!(web::get(addr, "/missing").await.status, 404);
    assert_eq!(web::get(addr, "/fail").await.status, 500);
    // No route: axum's own 404, still a response the layer saw.
    assert_eq!(web::get(addr, "/nowhere").await.status, 404);

    let text = handle.render();
    let pool = ("db_client_connection_pool_name", "layer");
    let get = ("http_request_method", "GET");
    let http = ("url_scheme", "http");
    let code = |c| ("http_response_status_code", c);
    assert_eq!(
        requests(&text, &[pool, get, http, code("200")]),
        2,
        "{text}"
    );
    assert_eq!(
        requests(
            &text,
            &[pool, ("http_request_method", "POST"), http, code("200")]
        ),
        1
    );
    assert_eq!(requests(&text, &[pool, get, http, code("404")]), 2);
    assert_eq!(
        requests(
            &text,
            &[pool, get, http, code("500"), ("error_type", "500")]
        ),
        1
    );
    assert_eq!(requests(&text, &[pool]), 6, "every response, once");
    // The request rules see them too (they judge from 50 requests a
    // minute): one 5xx of sixty.
    for _ in 0..54 {
        assert_eq!(web::get(addr, "/ok").await.status, 200);
    }
    g.evaluate_tick_now();
    let err = g
        .alerts()
        .into_iter()
        .find(|a| &*a.rule == "request_error_rate")
        .expect("request_error_rate rule");
    let v = err.value.expect("evaluated");
    assert!((v - 1.0 / 60.0).abs() < 1e-9, "5xx rate {v}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_request_deadline_bounds_the_acquires_made_for_it() {
    let g = guard(|b| b).await;
    let deadline = |mut req: Request, next: Next| async move {
        if req.uri().path() == "/wait" && req.headers().contains_key("x-deadline-ms") {
            let ms: u64 = req.headers()["x-deadline-ms"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let at = tokio::time::Instant::now() + Duration::from_millis(ms);
            req.extensions_mut().insert(RequestDeadline(at));
        }
        next.run(req).await
    };
    let app = routes(g.clone())
        .layer(PoolGuardLayer::new(g.clone()))
        .layer(middleware::from_fn(deadline));
    let addr = web::start(app).await;

    // The pool's one connection is held: without a deadline the acquire
    // would wait the pool's 60 s.
    let held = g.acquire().await.unwrap();
    for headers in ["grpc-timeout: 150m\r\n", "x-deadline-ms: 150\r\n"] {
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            web::send(addr, "GET", "/wait", headers),
        )
        .await
        .expect("answered long before the pool's 60 s acquire timeout");
        assert_eq!(r.status, 500, "{}", r.body);
        let waited: u64 = r
            .body
            .strip_prefix("waited_ms=")
            .expect(&r.body)
            .parse()
            .unwrap();
        assert!(
            (150..30_000).contains(&waited),
            "{headers}: waited {waited} ms"
        );
    }
    // The client gave up, the pool did not time out: no timeout counted,
    // nothing for the breaker (a short grpc-timeout must not page).
    assert_eq!(g.snapshot().acquire_timeouts_total, 0);
    let (_, failures, _) = g.breaker().window();
    assert_eq!(failures, 0);
    drop(held);
    // With the connection free, a deadline does not stand in the way.
    let r = web::send(addr, "GET", "/wait", "grpc-timeout: 1m\r\n").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A request deadline that ends the wait is the client giving up on every
/// entry point alike: `acquire`, `acquire_within`, `begin`, `begin_with`,
/// `try_begin` and `&guard` as an executor each answer sqlx's
/// `PoolTimedOut`, and none counts a timeout or a breaker call.
#[tokio::test(flavor = "current_thread")]
async fn a_request_deadline_is_judged_alike_on_every_entry_point() {
    async fn entry(
        State(g): State<Guard>,
        axum::extract::Path(how): axum::extract::Path<String>,
    ) -> Response {
        let r: Result<(), sqlx::Error> = match how.as_str() {
            "acquire" => g.acquire().await.map(drop),
            "acquire_within" => g.acquire_within(Duration::from_secs(60)).await.map(drop),
            "begin" => g.begin().await.map(drop),
            "begin_with" => g.begin_with("BEGIN IMMEDIATE").await.map(drop),
            "execute" => sqlx::query("SELECT 1").execute(&g).await.map(drop),
            "acquire_trait" => sqlx::Acquire::begin(&g).await.map(drop),
            other => panic!("{other}"),
        };
        match r {
            Err(sqlx::Error::PoolTimedOut) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "busy").into_response()
            }
            other => (StatusCode::INTERNAL_SERVER_ERROR, format!("{other:?}")).into_response(),
        }
    }
    let g = guard(|b| b.breaker(BreakerConfig::default().minimum_calls(1))).await;
    let app = Router::new()
        .route("/entry/{how}", get(entry))
        .with_state(g.clone())
        .layer(PoolGuardLayer::new(g.clone()));
    let addr = web::start(app).await;
    // Held on the bare pool: not a call the breaker sees.
    let held = g.pool().acquire().await.unwrap();
    for how in [
        "acquire",
        "acquire_within",
        "begin",
        "begin_with",
        "execute",
        "acquire_trait",
    ] {
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            web::send(
                addr,
                "GET",
                &format!("/entry/{how}"),
                "grpc-timeout: 100m\r\n",
            ),
        )
        .await
        .expect("bounded by the request's 100 ms");
        assert_eq!((r.status, r.body.as_str()), (500, "busy"), "{how}");
        assert_eq!(g.snapshot().acquire_timeouts_total, 0, "{how}");
        assert_eq!(
            g.breaker().window(),
            (0, 0, 0),
            "{how}: nothing for the breaker"
        );
    }
    drop(held);
}

#[tokio::test(flavor = "current_thread")]
async fn the_layer_timeout_bounds_acquires_too() {
    let g = guard(|b| b).await;
    let app = routes(g.clone())
        .layer(PoolGuardLayer::new(g.clone()).request_timeout(Duration::from_millis(100)));
    let addr = web::start(app).await;
    let held = g.acquire().await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), web::get(addr, "/wait"))
        .await
        .expect("bounded by the layer's 100 ms");
    assert!(r.body.starts_with("waited_ms="), "{}", r.body);
    drop(held);
}

#[tokio::test(flavor = "current_thread")]
async fn refusals_become_503_with_retry_after() {
    // Every failed call counts for the breaker here (`/fail` queries a
    // table that does not exist), so two failures open it for 7 s.
    let g = guard(|b| {
        b.breaker(
            BreakerConfig::default()
                .minimum_calls(2)
                .failure_rate(0.5)
                .base_wait(Duration::from_secs(7))
                .jitter(0.0),
        )
        .classifier(|_| Outcome::Failure)
    })
    .await;
    let app = routes(g.clone()).layer(PoolGuardLayer::new(g.clone()));
    let addr = web::start(app).await;

    // Plain failures: 500, no Retry-After (nothing was refused).
    for _ in 0..2 {
        let r = web::get(addr, "/fail").await;
        assert_eq!(r.status, 500);
        assert!(!r.head.contains("retry-after"), "{}", r.head);
    }
    // Open: the handler's 500 becomes a 503 with the breaker's wait.
    let r = web::get(addr, "/fail").await;
    assert_eq!(r.status, 503, "{}", r.head);
    let retry = r.retry_after();
    assert!((1..=7).contains(&retry), "retry-after {retry}");
    // A handler that answered from a cache keeps its 200.
    let r = web::get(addr, "/recovered").await;
    assert_eq!((r.status, r.body.as_str()), (200, "cached"));
    assert!(!r.head.contains("retry-after"), "{}", r.head);
    // Forced open by hand: no known end, UNKNOWN_WAIT.
    g.breaker().force_open();
    let r = web::get(addr, "/fail").await;
    assert_eq!(r.status, 503);
    assert!(
        r.head
            .contains(&format!("\r\nretry-after: {}", UNKNOWN_WAIT.as_secs())),
        "{}",
        r.head
    );
}

#[tokio::test(flavor = "current_thread")]
async fn load_shedding_becomes_503_with_the_queue_time() {
    let g = guard(|b| b.shed(ShedConfig::default().max_waiters_per_connection(1))).await;
    let app = routes(g.clone()).layer(PoolGuardLayer::new(g.clone()));
    let addr = web::start(app).await;
    // A hold that ended gives the queue-time estimate its mean hold.
    let c = g.acquire().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(c);
    g.evaluate_tick_now();
    // Full: one held, one waiting; the next acquire is refused.
    let held = g.acquire().await.unwrap();
    let g2 = g.clone();
    let waiter = tokio::spawn(async move { g2.acquire().await.map(drop) });
    while g.snapshot().waiters < 1 {
        tokio::task::yield_now().await;
    }
    let r = web::get(addr, "/fail").await;
    assert_eq!(r.status, 503, "{}", r.body);
    let retry = r.retry_after();
    // The queue time: the 50 ms mean hold, one waiter ahead: 1 s rounded
    // up, not the 30 s used when no wait is known.
    assert!(
        (1..UNKNOWN_WAIT.as_secs()).contains(&retry),
        "retry-after {retry}"
    );
    drop(held);
    waiter.await.unwrap().unwrap();
}
