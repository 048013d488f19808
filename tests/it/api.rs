//! The guard as sqlx code uses it: executor, acquire, transactions; the
//! builder's validation; event delivery to callbacks and streams.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use poolguard::{BuildError, Event, Level, PoolGuard};
use sqlx::{Acquire, Executor, Row, SqlSafeStr, Sqlite};

async fn guard(max: u32) -> PoolGuard<Sqlite> {
    let pool = common::sqlite(max, Duration::from_secs(2)).await;
    PoolGuard::builder(pool).build().unwrap()
}

fn zero_hold(pool: sqlx::SqlitePool) -> poolguard::PoolGuardBuilder<Sqlite> {
    PoolGuard::builder(pool)
        .warn_at(0.4)
        .warn_for(Duration::ZERO)
        .critical_at(0.9)
        .critical_for(Duration::ZERO)
        .warn_recover_below(0.4)
        .critical_recover_below(0.9)
        .recover_for(Duration::ZERO)
}

/// Code written against `&Pool` / `Acquire`, handed the guard instead.
async fn generic_insert<'a, A>(conn: A, v: i64) -> Result<(), sqlx::Error>
where
    A: Acquire<'a, Database = Sqlite>,
{
    let mut conn = conn.acquire().await?;
    sqlx::query("INSERT INTO t (v) VALUES (?)")
        .bind(v)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[tokio::test]
async fn executor_and_acquire_keep_the_accounting() {
    let guard = guard(1).await;
    guard.execute("CREATE TABLE t (v INTEGER)").await.unwrap();
    sqlx::query("INSERT INTO t (v) VALUES (1)")
        .execute(&guard)
        .await
        .unwrap();
    generic_insert(&guard, 2).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
        .fetch_one(&guard)
        .await
        .unwrap();
    assert_eq!(n, 2);

    // A stream holds its connection until it is dropped.
    let mut rows = sqlx::query("SELECT v FROM t ORDER BY v").fetch(&guard);
    let first = rows.try_next().await.unwrap().unwrap();
    assert_eq!(first.get::<i64, _>(0), 1);
    assert_eq!(guard.snapshot().in_use, 1);
    drop(rows);
    assert_eq!(guard.snapshot().in_use, 0);

    // fetch_all, fetch_optional, prepare.
    assert_eq!(
        sqlx::query("SELECT v FROM t")
            .fetch_all(&guard)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(sqlx::query("SELECT v FROM t WHERE v = 9")
        .fetch_optional(&guard)
        .await
        .unwrap()
        .is_none());
    (&guard)
        .prepare(sqlx::AssertSqlSafe("SELECT v FROM t").into_sql_str())
        .await
        .unwrap();

    let snap = guard.snapshot();
    assert_eq!(snap.in_use, 0);
    assert_eq!(snap.acquires_total, 8);
    assert_eq!(snap.hold_time.samples, 8);
}

#[tokio::test]
async fn transactions_count_as_in_use_until_they_end() {
    let guard = guard(2).await;
    guard.execute("CREATE TABLE t (v INTEGER)").await.unwrap();

    let mut tx = guard.begin().await.unwrap();
    sqlx::query("INSERT INTO t (v) VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    // Nested transaction (savepoint) through Acquire on the guarded transaction.
    {
        let mut inner = (&mut tx).begin().await.unwrap();
        sqlx::query("INSERT INTO t (v) VALUES (2)")
            .execute(&mut *inner)
            .await
            .unwrap();
        inner.rollback().await.unwrap();
    }
    assert_eq!(guard.snapshot().in_use, 1);
    tx.commit().await.unwrap();
    assert_eq!(guard.snapshot().in_use, 0);

    let tx = guard.begin().await.unwrap();
    assert_eq!(guard.snapshot().in_use, 1);
    drop(tx); // rolled back
    assert_eq!(guard.snapshot().in_use, 0);

    // Functions written against sqlx's own types still take it.
    async fn insert(tx: &mut sqlx::Transaction<'_, Sqlite>, v: i64) -> sqlx::Result<()> {
        sqlx::query("INSERT INTO t (v) VALUES (?)")
            .bind(v)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
    let mut tx = guard.begin().await.unwrap();
    insert(tx.as_transaction_mut(), 4).await.unwrap();
    assert_eq!(guard.snapshot().in_use, 1);
    tx.rollback().await.unwrap();
    assert_eq!(guard.snapshot().in_use, 0);

    let rows: Vec<i64> = sqlx::query_scalar("SELECT v FROM t")
        .fetch_all(&guard)
        .await
        .unwrap();
    assert_eq!(rows, vec![1]);

    // Connections checked out through the guard work with `Acquire` too.
    let mut conn = guard.acquire().await.unwrap();
    let mut tx = (&mut conn).begin().await.unwrap();
    sqlx::query("INSERT INTO t (v) VALUES (3)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(conn.held_for() < Duration::from_secs(5));
    assert_eq!(guard.snapshot().in_use, 1);
    drop(conn);
    assert_eq!(guard.snapshot().in_use, 0);
}

#[tokio::test]
async fn detached_and_closed_connections_stop_counting() {
    let guard = guard(2).await;
    let c = guard.acquire().await.unwrap();
    let raw = c.detach();
    assert_eq!(guard.snapshot().in_use, 0);
    drop(raw);
    let c = guard.acquire().await.unwrap();
    c.close().await.unwrap();
    assert_eq!(guard.snapshot().in_use, 0);
}

#[tokio::test]
async fn invalid_configuration_is_a_typed_error_naming_field_and_value() {
    let pool = common::sqlite(4, Duration::from_secs(1)).await;
    let b = || PoolGuard::builder(pool.clone());
    let cases: Vec<(poolguard::PoolGuardBuilder<Sqlite>, &str, &str)> = vec![
        (b().warn_at(1.5), "warn_at", "1.5"),
        (b().critical_at(1.0), "critical_at", "1"),
        (b().warn_at(0.0), "warn_at", "0"),
        (b().warn_at(f64::NAN), "warn_at", "NaN"),
        (b().critical_at(-0.1), "critical_at", "-0.1"),
        (
            b().warn_at(0.9).critical_at(0.9),
            "warn_at",
            "0.9 (critical_at = 0.9)",
        ),
        (b().warn_at(0.95), "warn_at", "0.95 (critical_at = 0.9)"),
        (
            b().warn_recover_below(0.85),
            "warn_recover_below",
            "0.85 (warn_at = 0.8)",
        ),
        (
            b().critical_recover_below(0.95),
            "critical_recover_below",
            "0.95 (critical_at = 0.9)",
        ),
        (
            b().warn_recover_below(0.8).critical_recover_below(0.7),
            "warn_recover_below",
            "0.8 (critical_recover_below = 0.7)",
        ),
        (b().tick(Duration::ZERO), "tick", "0ns"),
        (
            b().stats_window(Duration::from_millis(10)),
            "stats_window",
            "10ms (tick = 1s)",
        ),
        (b().event_capacity(0), "event_capacity", "0"),
        (b().event_capacity(1 << 20), "event_capacity", "1048576"),
        (
            b().critical_for(Duration::MAX),
            "critical_for",
            "18446744073709551615.999999999s",
        ),
        (
            b().tick(Duration::MAX),
            "tick",
            "18446744073709551615.999999999s",
        ),
        (b().name("a\0b"), "name", "\"a\\0b\""),
        (b().name(""), "name", "\"\""),
    ];
    for (builder, field, value) in cases {
        match builder.build() {
            Err(BuildError::InvalidConfig {
                field: f, value: v, ..
            }) => {
                assert_eq!((f, v.as_str()), (field, value));
            }
            other => panic!("{field}: expected InvalidConfig, got {other:?}"),
        }
    }
    let msg = b().warn_at(2.0).build().unwrap_err().to_string();
    assert!(
        msg.contains("`warn_at` = 2") && msg.contains("(0, 1)"),
        "{msg}"
    );
}

#[test]
fn build_outside_a_runtime_is_an_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pool = rt.block_on(common::sqlite(1, Duration::from_secs(1)));
    let err = PoolGuard::builder(pool).build().unwrap_err();
    assert!(matches!(err, BuildError::NoRuntime), "{err:?}");
}

#[tokio::test]
async fn panicking_and_slow_callbacks_do_not_stop_others_or_block_acquire() {
    let pool = common::sqlite(2, Duration::from_secs(2)).await;
    let good = Arc::new(AtomicUsize::new(0));
    let g2 = Arc::clone(&good);
    let guard = zero_hold(pool)
        .on_saturation(|_| panic!("subscriber bug"))
        .on_event(|_| std::thread::sleep(Duration::from_millis(200)))
        .on_saturation(move |_| {
            g2.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let mut events = guard.events();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let a = guard.acquire().await.unwrap(); // warning
        common::next_saturation(&mut events, Duration::from_secs(5)).await;
        let b = guard.acquire().await.unwrap(); // critical
        common::next_saturation(&mut events, Duration::from_secs(5)).await;
        drop((a, b)); // normal
        common::next_saturation(&mut events, Duration::from_secs(5)).await;
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "acquire waited on a callback"
        );
    }
    for _ in 0..200 {
        if good.load(Ordering::SeqCst) == 9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        good.load(Ordering::SeqCst),
        9,
        "the healthy callback saw every event"
    );
}

#[tokio::test]
async fn lagging_stream_is_told_how_many_events_it_missed() {
    let pool = common::sqlite(2, Duration::from_secs(2)).await;
    let guard = zero_hold(pool).event_capacity(2).build().unwrap();
    let mut slow = guard.events();
    let mut fast = guard.events();
    for _ in 0..3 {
        let a = guard.acquire().await.unwrap();
        common::next_saturation(&mut fast, Duration::from_secs(5)).await;
        drop(a);
        common::next_saturation(&mut fast, Duration::from_secs(5)).await;
    }
    // Twelve events sent (per round: the warning rule fires and its level
    // change, then it resolves and its level change), room for two: the
    // slow stream missed ten and gets the last two.
    match slow.next().await {
        Some(Err(missed)) => assert_eq!(missed.missed, 10),
        other => panic!("expected EventsMissed, got {other:?}"),
    }
    let Some(Ok(Event::Alert(a))) = slow.next().await else {
        panic!()
    };
    assert_eq!(a.state, poolguard::AlertState::Resolved);
    let Some(Ok(Event::Saturation(e))) = slow.next().await else {
        panic!()
    };
    assert_eq!(e.level, Level::Normal);
}

#[tokio::test]
async fn streams_end_and_monitor_stops_when_the_guard_is_dropped() {
    let pool = common::sqlite(2, Duration::from_secs(2)).await;
    let guard = PoolGuard::builder(pool.clone()).build().unwrap();
    let mut events = guard.events();
    let clone = guard.clone();
    drop(guard);
    // A clone keeps it alive.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), events.next())
            .await
            .is_err()
    );
    drop(clone);
    let end = tokio::time::timeout(Duration::from_secs(2), events.next()).await;
    assert!(matches!(end, Ok(None)), "stream should end: {end:?}");
    // The pool itself is untouched.
    pool.execute("SELECT 1").await.unwrap();
}

/// Real pool held at 95 %, then tokio's clock paused: the tick alone fires
/// Critical once the 2-minute hold passes, with no new acquires.
#[tokio::test(flavor = "current_thread")]
async fn stuck_real_pool_goes_critical_on_the_tick() {
    let pool = common::sqlite(20, Duration::from_secs(30)).await;
    let guard = PoolGuard::builder(pool).build().unwrap();
    let mut held = Vec::new();
    for _ in 0..19 {
        held.push(guard.acquire().await.unwrap());
    }
    guard.evaluate_now(); // the 95 % starts now (real time)
    tokio::time::pause();
    let mut events = guard.events();
    tokio::time::advance(Duration::from_secs(118)).await;
    tokio::task::yield_now().await;
    assert_eq!(guard.level(), Level::Normal);
    tokio::time::advance(Duration::from_secs(3)).await;
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert_eq!(guard.level(), Level::Critical);
    let e = common::next_saturation(&mut events, Duration::from_secs(1)).await;
    assert_eq!((e.previous, e.level), (Level::Normal, Level::Critical));
    assert!(e.time_in_previous >= Duration::from_secs(120));
    assert_eq!(e.snapshot.in_use, 19);
    drop(held);
}
