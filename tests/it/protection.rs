//! Protection against real servers: query timeouts that stop the statement
//! on PostgreSQL and MariaDB and free the slot, the circuit breaker through a
//! fault proxy, and load shedding. (Tests run in parallel: each sleeping
//! statement is distinct, so one test's server-side check never sees
//! another's.)

use crate::common;

use std::str::FromStr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use poolguard::{
    BreakerConfig, BreakerState, Cancelled, Error, Event, PoolGuard, ShedConfig, ShedReason,
    TimeoutKind,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, Row};

use common::proxy::Proxy;

const LIMIT: Duration = Duration::from_millis(200);

/// The guard's own error inside an sqlx error from the executor path.
fn guard_error(e: &sqlx::Error) -> &Error {
    Error::from_sqlx(e).unwrap_or_else(|| panic!("not a guard error: {e:?}"))
}

/// A mark unique to this test process, put in a statement's text so the
/// server's view can be filtered to this test's own statements (another
/// process, e.g. a second CI run, may sleep on the same server at once).
fn tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("poolguard_test_{}_{nanos}", std::process::id())
}

/// How long the server may take to show a cancelled statement gone, and a
/// call to return after its limit: bounds that catch a statement left
/// running (seconds) without depending on spare CPU (timing claims live in
/// BENCHMARKS.md).
const SETTLE: Duration = Duration::from_secs(2);

/// Polls (real time, at most `within`) until `count` returns 0.
async fn gone_within<F, Fut>(within: Duration, mut count: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let start = Instant::now();
    loop {
        if count().await == 0 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "statement still running after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn postgres_query_timeout_cancels_on_the_server_and_frees_the_slot() {
    let Some(pool) = common::postgres(1, Duration::from_secs(5)).await else {
        return;
    };
    let observer = common::postgres(1, Duration::from_secs(5)).await.unwrap();
    let guard = PoolGuard::builder(pool)
        .query_timeout(LIMIT)
        .build()
        .unwrap();
    let tag = tag();
    let sleep = format!("SELECT pg_sleep(5) /* {tag} */");
    let running = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
        )
        .bind(&tag)
        .fetch_one(&observer)
        .await
        .unwrap()
    };
    for round in 0..3 {
        let started = Instant::now();
        let err = sqlx::query(sqlx::AssertSqlSafe(sleep.clone()))
            .execute(&guard)
            .await
            .unwrap_err();
        let took = started.elapsed();
        match guard_error(&err) {
            Error::QueryTimeout { limit, server, .. } => {
                assert_eq!(*limit, LIMIT);
                assert_eq!(*server, Cancelled::Clean, "round {round}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            took >= LIMIT && took < LIMIT + SETTLE,
            "round {round}: {took:?}"
        );
        let gone = gone_within(SETTLE, running).await;
        eprintln!("round {round}: error after {took:?}, statement gone {gone:?} later");
        // The slot is free and the connection clean: the next query on the
        // single connection answers, without a stale cancel error.
        assert_eq!(guard.snapshot().in_use, 0);
        let v: i32 = sqlx::query_scalar("SELECT 7")
            .fetch_one(&guard)
            .await
            .unwrap();
        assert_eq!(v, 7);
    }
    // A per-call limit overrides the default.
    sqlx::query("SELECT pg_sleep(0.3)")
        .execute(guard.with_timeout(Duration::from_secs(2)))
        .await
        .unwrap();
    let snap = guard.snapshot();
    assert_eq!(
        snap.acquire_timeouts_total, 0,
        "acquire timeouts stay apart"
    );
    assert_eq!((snap.in_use, snap.waiters), (0, 0));
}

#[tokio::test]
async fn a_call_dropped_by_the_caller_does_not_leave_its_statement_to_the_next() {
    let Some(pool) = common::postgres(1, Duration::from_secs(5)).await else {
        return;
    };
    // No guard timeout: the caller's own timeout drops the future mid-query.
    let guard = PoolGuard::builder(pool).build().unwrap();
    let dropped =
        tokio::time::timeout(LIMIT, sqlx::query("SELECT pg_sleep(3)").execute(&guard)).await;
    assert!(dropped.is_err(), "the caller gave up");
    // Raw sqlx would hand the single connection back still running the
    // sleep (the next query waits ~2.8 s); the guard closed it instead.
    let started = Instant::now();
    let v: i32 = sqlx::query_scalar("SELECT 9")
        .fetch_one(&guard)
        .await
        .unwrap();
    assert_eq!(v, 9);
    assert!(started.elapsed() < SETTLE, "{:?}", started.elapsed());
    assert_eq!(guard.snapshot().in_use, 0);
}

#[tokio::test]
async fn postgres_timeout_inside_a_transaction() {
    let Some(pool) = common::postgres(1, Duration::from_secs(5)).await else {
        return;
    };
    let guard = PoolGuard::builder(pool).build().unwrap();
    let mut tx = guard.begin().await.unwrap();
    sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
    let started = Instant::now();
    let err = sqlx::query("SELECT pg_sleep(4)")
        .execute(tx.with_timeout(LIMIT))
        .await
        .unwrap_err();
    assert!(started.elapsed() < LIMIT + SETTLE);
    assert!(matches!(
        guard_error(&err),
        Error::QueryTimeout {
            server: Cancelled::Clean,
            ..
        }
    ));
    // PostgreSQL aborted the transaction; roll back and carry on.
    tx.rollback().await.unwrap();
    let v: i32 = sqlx::query_scalar("SELECT 8")
        .fetch_one(&guard)
        .await
        .unwrap();
    assert_eq!(v, 8);
    assert_eq!(guard.snapshot().in_use, 0);
}

#[tokio::test]
async fn mariadb_query_timeout_kills_the_query_and_frees_the_slot() {
    let Some(pool) = common::mysql(1, Duration::from_secs(5)).await else {
        return;
    };
    let observer = common::mysql(1, Duration::from_secs(5)).await.unwrap();
    let guard = PoolGuard::builder(pool)
        .query_timeout(LIMIT)
        .build()
        .unwrap();
    let tag = tag();
    let sleep = format!("SELECT SLEEP(5) /* {tag} */");
    let running = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.processlist \
             WHERE info LIKE CONCAT('%', ?, '%') AND id <> CONNECTION_ID()",
        )
        .bind(&tag)
        .fetch_one(&observer)
        .await
        .unwrap();
        n
    };
    for round in 0..3 {
        let started = Instant::now();
        let err = sqlx::query(sqlx::AssertSqlSafe(sleep.clone()))
            .execute(&guard)
            .await
            .unwrap_err();
        let took = started.elapsed();
        match guard_error(&err) {
            // KILL QUERY makes SLEEP() return 1 instead of failing, so the
            // guard cannot prove the kill landed and closes the connection.
            Error::QueryTimeout { server, .. } => {
                assert!(
                    matches!(server, Cancelled::Clean | Cancelled::Closed),
                    "{server:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(
            took >= LIMIT && took < LIMIT + SETTLE,
            "round {round}: {took:?}"
        );
        let gone = gone_within(SETTLE, running).await;
        eprintln!("round {round}: error after {took:?}, statement gone {gone:?} later");
        assert_eq!(guard.snapshot().in_use, 0);
        let v: i64 = sqlx::query_scalar("SELECT 7")
            .fetch_one(&guard)
            .await
            .unwrap();
        assert_eq!(v, 7);
    }
}

#[tokio::test]
async fn mariadb_timeout_inside_a_transaction() {
    let Some(pool) = common::mysql(1, Duration::from_secs(5)).await else {
        return;
    };
    let guard = PoolGuard::builder(pool).build().unwrap();
    let mut tx = guard.begin().await.unwrap();
    let started = Instant::now();
    let err = sqlx::query("SELECT SLEEP(4)")
        .execute(tx.with_timeout(LIMIT))
        .await
        .unwrap_err();
    assert!(started.elapsed() < LIMIT + SETTLE);
    assert!(
        matches!(guard_error(&err), Error::QueryTimeout { .. }),
        "{err:?}"
    );
    // The session may have been ended on the server; rolling back either
    // works or fails, and either way the pool hands out a working connection.
    let _ = tx.rollback().await;
    let v: i64 = sqlx::query_scalar("SELECT 8")
        .fetch_one(&guard)
        .await
        .unwrap();
    assert_eq!(v, 8);
    assert_eq!(guard.snapshot().in_use, 0);
}

/// A PostgreSQL pool that connects through `proxy`.
fn pg_through(proxy: &Proxy) -> PgConnectOptions {
    PgConnectOptions::from_str(&common::pg_url())
        .unwrap()
        .host("127.0.0.1")
        .port(proxy.port())
        .disable_statement_logging()
}

async fn next_breaker(
    events: &mut poolguard::EventStream,
    to: BreakerState,
) -> poolguard::BreakerEvent {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
            Ok(Some(Ok(Event::Breaker(b)))) if b.to == to => return b,
            Ok(Some(_)) => continue,
            other => panic!("no breaker transition to {to}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn breaker_opens_on_a_dead_database_fails_fast_and_closes_after_recovery() {
    if common::postgres(1, Duration::from_secs(5)).await.is_none() {
        return;
    }
    let upstream = {
        let o = PgConnectOptions::from_str(&common::pg_url()).unwrap();
        format!("127.0.0.1:{}", o.get_port()).parse().unwrap()
    };
    let proxy = Proxy::start(upstream).await;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_millis(300))
        .connect_with(pg_through(&proxy))
        .await
        .unwrap();
    let wait = Duration::from_millis(300);
    let guard = PoolGuard::builder(pool.clone())
        .breaker(
            BreakerConfig::default()
                .minimum_calls(4)
                .failure_rate(0.5)
                .base_wait(wait)
                .max_wait(Duration::from_secs(5))
                .jitter(0.0)
                .half_open_calls(2),
        )
        .build()
        .unwrap();
    let mut events = guard.events();
    for _ in 0..3 {
        guard.execute("SELECT 1").await.unwrap();
    }

    // The database goes away: connections cut, new ones refused.
    proxy.refuse();
    let mut failures = 0;
    while guard.breaker().state() == BreakerState::Closed {
        // Closed: each call reached the database and failed there.
        guard.execute("SELECT 1").await.unwrap_err();
        failures += 1;
        assert!(failures <= 10, "breaker did not open");
    }
    let opened = next_breaker(&mut events, BreakerState::Open).await;
    assert!(opened.failure_rate >= 0.5, "{opened:?}");
    assert_eq!(opened.retry_in, Some(wait));

    // Open: calls fail at once, with the retry time, without touching the pool.
    let before = guard.snapshot();
    for _ in 0..100 {
        // Through the executor a refusal reads as sqlx's "busy".
        let err = guard.execute("SELECT 1").await.unwrap_err();
        assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err:?}");
    }
    match guard.acquire_detailed().await.unwrap_err() {
        err @ Error::CircuitOpen {
            state, retry_in, ..
        } => {
            assert_eq!(state, BreakerState::Open);
            assert!(retry_in.is_some_and(|r| r <= wait));
            assert!(err.to_string().contains("retrying in"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    let after = guard.snapshot();
    assert_eq!(
        (
            after.acquires_total,
            after.acquire_timeouts_total,
            after.acquire_errors_total
        ),
        (
            before.acquires_total,
            before.acquire_timeouts_total,
            before.acquire_errors_total
        ),
        "rejected calls never reached the pool"
    );

    // After the wait: half-open trials; the database is back, so it closes.
    proxy.recover();
    tokio::time::sleep(wait).await;
    let recovering = Instant::now();
    while guard.breaker().state() != BreakerState::Closed {
        let _ = guard.execute("SELECT 1").await;
        assert!(
            recovering.elapsed() < Duration::from_secs(10),
            "breaker did not close"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    next_breaker(&mut events, BreakerState::HalfOpen).await;
    let closed = next_breaker(&mut events, BreakerState::Closed).await;
    assert_eq!(closed.failure_rate, 0.0);
    guard.execute("SELECT 1").await.unwrap();
    let snap = guard.snapshot();
    assert_eq!((snap.in_use, snap.waiters), (0, 0));
}

#[tokio::test]
async fn a_slow_network_opens_the_breaker_on_slow_calls() {
    if common::postgres(1, Duration::from_secs(5)).await.is_none() {
        return;
    }
    let upstream = {
        let o = PgConnectOptions::from_str(&common::pg_url()).unwrap();
        format!("127.0.0.1:{}", o.get_port()).parse().unwrap()
    };
    let proxy = Proxy::start(upstream).await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .test_before_acquire(false)
        .connect_with(pg_through(&proxy))
        .await
        .unwrap();
    let guard = PoolGuard::builder(pool)
        .breaker(
            BreakerConfig::default()
                .minimum_calls(4)
                .slow_call_duration(Duration::from_millis(40))
                .slow_call_rate(0.8)
                .jitter(0.0),
        )
        .build()
        .unwrap();
    let mut events = guard.events();
    for _ in 0..3 {
        guard.execute("SELECT 1").await.unwrap();
    }
    // Every chunk now waits 50 ms each way: queries succeed, slowly.
    proxy.delay(Duration::from_millis(50));
    let mut calls = 0;
    while guard.breaker().state() == BreakerState::Closed {
        guard.execute("SELECT 1").await.unwrap();
        calls += 1;
        assert!(calls <= 20, "breaker did not open on slow calls");
    }
    let opened = next_breaker(&mut events, BreakerState::Open).await;
    assert_eq!(opened.failure_rate, 0.0);
    assert!(opened.slow_call_rate >= 0.8, "{opened:?}");
    proxy.recover();
    let snap = guard.snapshot();
    assert_eq!((snap.in_use, snap.waiters), (0, 0));
}

#[tokio::test]
async fn stalled_database_times_out_queries_and_opens_the_breaker() {
    if common::postgres(1, Duration::from_secs(5)).await.is_none() {
        return;
    }
    let upstream = {
        let o = PgConnectOptions::from_str(&common::pg_url()).unwrap();
        format!("127.0.0.1:{}", o.get_port()).parse().unwrap()
    };
    let proxy = Proxy::start(upstream).await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(300))
        .test_before_acquire(false)
        .connect_with(pg_through(&proxy))
        .await
        .unwrap();
    let guard = PoolGuard::builder(pool)
        .query_timeout(LIMIT)
        .drain_timeout(Duration::from_millis(100))
        .breaker(BreakerConfig::default().minimum_calls(3).jitter(0.0))
        .build()
        .unwrap();
    guard.execute("SELECT 1").await.unwrap();
    // sqlx pings a released connection in the background: let that finish,
    // so the next call takes an idle connection and its query meets the stall.
    common::settle_pool(guard.pool()).await;
    // Accepts, forwards nothing: neither the query nor the cancel arrives.
    proxy.stall();
    let mut timeouts = 0;
    while guard.breaker().state() == BreakerState::Closed {
        let started = Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(5), guard.execute("SELECT 1"))
            .await
            .expect("a stalled server never hangs a timed call")
            .unwrap_err();
        match Error::from_sqlx(&err) {
            Some(Error::QueryTimeout { server, .. }) => {
                assert_ne!(*server, Cancelled::Clean, "nothing proves a stalled cancel");
                timeouts += 1;
            }
            Some(Error::LoadShed { .. }) | None => {}
            Some(other) => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(timeouts <= 10, "breaker did not open");
    }
    assert!(
        timeouts >= 1,
        "the stalled queries timed out (not only failed otherwise)"
    );
    assert!(guard
        .execute("SELECT 1")
        .await
        .is_err_and(|e| matches!(e, sqlx::Error::PoolTimedOut)));
    assert!(guard
        .acquire_detailed()
        .await
        .is_err_and(|e| e.is_rejected()));
    proxy.recover();
    proxy.cut();
    let snap = guard.snapshot();
    assert_eq!((snap.in_use, snap.waiters), (0, 0));
}

#[tokio::test]
async fn load_shedding_refuses_hopeless_waits_and_too_many_waiters() {
    let pool = common::sqlite(2, Duration::from_secs(5)).await;
    let guard = PoolGuard::builder(pool)
        .tick(Duration::from_millis(20))
        .stats_window(Duration::from_secs(10))
        .shed(
            ShedConfig::default()
                .max_waiters_per_connection(1)
                .max_wait(Duration::from_millis(100)),
        )
        .build()
        .unwrap();
    // Hold history: connections held about 300 ms each.
    let hold = |g: PoolGuard<sqlx::Sqlite>| async move {
        let c = g.acquire().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(c);
    };
    tokio::join!(hold(guard.clone()), hold(guard.clone()));

    let a = guard.acquire().await.unwrap();
    let b = guard.acquire().await.unwrap();
    // Full, nobody waiting: the next waits ~1 x 300 ms / 2 = 150 ms > 100 ms,
    // once a tick has published the mean hold (until then the acquire waits
    // 100 ms and times out).
    let mut tries = 0;
    let err = loop {
        match guard
            .acquire_within_detailed(Duration::from_millis(100))
            .await
        {
            Err(e @ Error::LoadShed { .. }) => break e,
            Err(e) if e.is_acquire_timeout() && tries < 20 => tries += 1,
            other => panic!("{other:?}"),
        }
    };
    match &err {
        Error::LoadShed {
            reason:
                ShedReason::HopelessWait {
                    waiters,
                    estimated_wait,
                    deadline,
                },
            ..
        } => {
            assert_eq!(*waiters, 0);
            assert!(
                *estimated_wait > Duration::from_millis(100),
                "{estimated_wait:?}"
            );
            assert_eq!(*deadline, Duration::from_millis(100));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("estimated wait"), "{err}");
    // The caller's own, shorter deadline is what the estimate is judged by.
    match guard
        .acquire_within_detailed(Duration::from_millis(50))
        .await
        .unwrap_err()
    {
        Error::LoadShed {
            reason: ShedReason::HopelessWait { deadline, .. },
            ..
        } => assert_eq!(deadline, Duration::from_millis(50)),
        other => panic!("{other:?}"),
    }
    drop((a, b));

    // Without shedding, the caller's deadline ends the wait instead of the
    // pool's 5 s acquire timeout.
    let patient = PoolGuard::builder(common::sqlite(1, Duration::from_secs(5)).await)
        .shed(ShedConfig::disabled())
        .build()
        .unwrap();
    let held = patient.acquire().await.unwrap();
    let started = Instant::now();
    let err = patient
        .acquire_within_detailed(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::AcquireTimeout {
                timeout: TimeoutKind::Deadline,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(held);
    assert_eq!(patient.snapshot().acquire_timeouts_total, 1);

    // The waiter cap: 1 per connection = 2 waiting at most.
    let guard = PoolGuard::builder(common::sqlite(2, Duration::from_secs(5)).await)
        .shed(ShedConfig::default().max_waiters_per_connection(1))
        .build()
        .unwrap();
    let held = (
        guard.acquire().await.unwrap(),
        guard.acquire().await.unwrap(),
    );
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let g = guard.clone();
            tokio::spawn(async move { g.acquire().await.map(drop) })
        })
        .collect();
    while guard.snapshot().waiters < 2 {
        tokio::task::yield_now().await;
    }
    match guard.acquire_detailed().await.unwrap_err() {
        Error::LoadShed {
            reason:
                ShedReason::TooManyWaiters {
                    waiters: 2,
                    limit: 2,
                },
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    // Through the executor, and through the everyday `acquire`, it reads
    // as sqlx's "busy".
    let err = guard.execute("SELECT 1").await.unwrap_err();
    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err:?}");
    let err = guard.acquire().await.unwrap_err();
    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err:?}");
    drop(held);
    for w in waiting {
        w.await.unwrap().unwrap();
    }
    let snap = guard.snapshot();
    assert_eq!((snap.in_use, snap.waiters), (0, 0));
}

#[tokio::test]
async fn forced_open_and_metrics_only_by_hand() {
    let pool = common::sqlite(2, Duration::from_secs(1)).await;
    let guard = PoolGuard::builder(pool).build().unwrap();
    let mut events = guard.events();
    guard.breaker().force_open();
    let e = next_breaker(&mut events, BreakerState::ForcedOpen).await;
    assert_eq!(e.retry_in, None);
    match guard.acquire_detailed().await.unwrap_err() {
        Error::CircuitOpen {
            state: BreakerState::ForcedOpen,
            retry_in: None,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    // Shadow mode: still forced open, but nothing is rejected.
    guard.breaker().set_metrics_only(true);
    assert!(guard.breaker().is_metrics_only());
    drop(guard.acquire().await.unwrap());
    guard.breaker().set_metrics_only(false);
    guard.breaker().disable();
    assert_eq!(guard.breaker().state(), BreakerState::Disabled);
    drop(guard.acquire().await.unwrap());
    guard.breaker().reset();
    assert_eq!(guard.breaker().state(), BreakerState::Closed);
    let row = guard.fetch_one("SELECT 1 AS one").await.unwrap();
    assert_eq!(row.get::<i64, _>("one"), 1);
}
