//! Drives real pools (SQLite, PostgreSQL, MariaDB) to 100 % with waiters and
//! checks levels, events, snapshots and the acquire-timeout error.

use crate::common;

use std::time::Duration;

use common::{next_saturation, settle_pool};
use poolguard::{Error, Level, PoolGuard};
use sqlx::{Database, Executor, Pool};

const MAX: u32 = 10;
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(300);
const EVENT_WAIT: Duration = Duration::from_secs(5);

async fn exhaust<DB: Database>(pool: Pool<DB>)
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let guard = PoolGuard::builder(pool.clone())
        .name("exhaustion")
        .warn_for(Duration::ZERO)
        .critical_for(Duration::ZERO)
        .recover_for(Duration::ZERO)
        .build()
        .expect("valid config");
    let mut events = guard.events();

    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(guard.acquire().await.expect("acquire"));
    }
    guard.evaluate_now();
    // 80 % is not above 80 %.
    assert_eq!(guard.level(), Level::Normal);
    assert_eq!(guard.snapshot().in_use, 8);

    held.push(guard.acquire().await.unwrap());
    let e = next_saturation(&mut events, EVENT_WAIT).await;
    assert_eq!((e.previous, e.level), (Level::Normal, Level::Warning));
    // The ninth acquire counts from the moment it waits: a waiter takes the
    // slot it is about to get (the event may see it before it completes).
    assert_eq!(e.snapshot.in_use + e.snapshot.waiters, 9);
    assert!((e.snapshot.utilization - 0.9).abs() < 1e-9);
    assert_eq!(e.snapshot.max, MAX);
    assert_eq!(&*e.snapshot.pool, "exhaustion");

    held.push(guard.acquire().await.unwrap());
    let e = next_saturation(&mut events, EVENT_WAIT).await;
    assert_eq!((e.previous, e.level), (Level::Warning, Level::Critical));
    assert_eq!(e.snapshot.in_use + e.snapshot.waiters, 10);
    // Pool full: three more callers queue and time out.
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let g = guard.clone();
            tokio::spawn(async move { g.acquire_detailed().await.map(drop) })
        })
        .collect();
    let mut seen = guard.snapshot();
    for _ in 0..100 {
        if seen.waiters == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        seen = guard.snapshot();
    }
    assert_eq!((seen.in_use, seen.waiters), (10, 3));
    assert!((seen.demand - 1.3).abs() < 1e-9, "demand {}", seen.demand);
    assert!((seen.utilization - 1.0).abs() < 1e-9);

    for w in waiters {
        let err = w.await.unwrap().expect_err("pool is full");
        let Error::AcquireTimeout {
            ref state,
            ref pool,
            ..
        } = err
        else {
            panic!("expected AcquireTimeout, got {err:?}");
        };
        assert_eq!(&**pool, "exhaustion");
        assert_eq!((state.in_use, state.max), (10, MAX));
        assert!(state.waiting <= 2);
        assert!(state.waited >= ACQUIRE_TIMEOUT, "waited {:?}", state.waited);
        assert!(matches!(err.as_sqlx(), Some(sqlx::Error::PoolTimedOut)));
        let msg = err.to_string();
        assert!(msg.contains("in_use=10") && msg.contains("max=10"), "{msg}");
        assert!(matches!(sqlx::Error::from(err), sqlx::Error::PoolTimedOut));
    }
    let snap = guard.snapshot();
    assert_eq!(
        (
            snap.waiters,
            snap.acquire_timeouts_total,
            snap.acquire_timeouts_in_window
        ),
        (0, 3, 3)
    );
    assert_eq!(snap.acquires_total, 10);
    assert!(snap.acquire_wait.samples >= 10);

    drop(held);
    let e = next_saturation(&mut events, EVENT_WAIT).await;
    assert_eq!(e.previous, Level::Critical);
    if e.level == Level::Warning {
        let e = next_saturation(&mut events, EVENT_WAIT).await;
        assert_eq!(e.level, Level::Normal);
    } else {
        assert_eq!(e.level, Level::Normal);
    }
    assert_eq!(guard.snapshot().in_use, 0);
    assert!(guard.snapshot().hold_time.samples >= 10);

    // Still usable through the executor path.
    guard
        .execute("SELECT 1")
        .await
        .expect("query after exhaustion");
    assert_eq!(guard.snapshot().in_use, 0);
    settle_pool(&pool).await;
}

#[tokio::test]
async fn sqlite_exhaustion() {
    exhaust(common::sqlite(MAX, ACQUIRE_TIMEOUT).await).await;
}

#[tokio::test]
async fn postgres_exhaustion() {
    if let Some(pool) = common::postgres(MAX, ACQUIRE_TIMEOUT).await {
        exhaust(pool).await;
    }
}

#[tokio::test]
async fn mysql_exhaustion() {
    if let Some(pool) = common::mysql(MAX, ACQUIRE_TIMEOUT).await {
        exhaust(pool).await;
    }
}
