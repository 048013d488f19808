//! What compiled against sqlx compiles against the guard, on every driver:
//! a handler whose error converts only from `sqlx::Error`, migrations run
//! on `&mut *conn`, functions written against `impl Acquire<'_>`, sqlx's
//! advisory locks on a guarded connection; and what such a handler sees:
//! every refusal before a statement is sent is `PoolTimedOut`, a query
//! timeout is `Io(TimedOut)`. The `_detailed` variants tell each call its
//! own story, however many run at once.

use crate::common;

use std::time::Duration;

use poolguard::{Error, PoolGuard, ShedConfig, TimeoutKind};
use sqlx::migrate::{Migrate, Migrator};
use sqlx::{Acquire, Database, Executor};

/// An application's error type: it converts from sqlx's error only.
#[derive(Debug)]
enum AppError {
    #[allow(dead_code)] // read through `Debug` when a test fails
    Db(sqlx::Error),
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Db(e)
    }
}

/// The handler as it was written against `sqlx::Pool`, unchanged.
async fn handler<DB>(guard: &PoolGuard<DB>) -> Result<(), AppError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let mut conn = guard.acquire().await?;
    conn.execute("SELECT 1").await?;
    drop(conn);
    let mut tx = guard.begin().await?;
    tx.execute("SELECT 1").await?;
    tx.commit().await?;
    let conn = guard.acquire_within(Duration::from_secs(5)).await?;
    drop(conn);
    Ok(())
}

/// A function written against sqlx's `Acquire`, as sqlx's docs show.
async fn answer_in<'a, A>(conn: A, sql: &'static str) -> Result<i64, sqlx::Error>
where
    A: Acquire<'a>,
    for<'c> &'c mut <A::Database as Database>::Connection: Executor<'c, Database = A::Database>,
    i64: sqlx::Type<A::Database> + for<'r> sqlx::Decode<'r, A::Database>,
    <A::Database as Database>::Arguments: sqlx::IntoArguments<A::Database>,
    usize: sqlx::ColumnIndex<<A::Database as Database>::Row>,
{
    let mut conn = conn.acquire().await?;
    sqlx::query_scalar(sql).fetch_one(&mut *conn).await
}

/// A migration directory of its own, with a table name no other run uses.
fn migrator(dialect_table: &str) -> (tempdir::Dir, String) {
    let dir = tempdir::Dir::new();
    let table = format!("poolguard_idioms_{}", tempdir::unique());
    std::fs::write(
        dir.path().join("20261208000001_create.sql"),
        format!("CREATE TABLE {table} (id {dialect_table});"),
    )
    .unwrap();
    (dir, table)
}

/// The idioms on one driver: migrations on `&mut *conn`, a generic
/// `Acquire` function with `&guard`, `&mut *conn`, `&mut conn` and
/// `&mut *tx`, and the handler.
async fn idioms<DB>(guard: &PoolGuard<DB>, id_type: &str, answer: &'static str)
where
    DB: Database,
    DB::Connection: Migrate,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    handler(guard).await.expect("the handler runs unchanged");

    let (dir, table) = migrator(id_type);
    let mut m = Migrator::new(dir.path()).await.unwrap();
    m.dangerous_set_table_name(format!("_{table}_migrations"));
    let mut conn = guard.acquire().await.unwrap();
    m.run(&mut *conn).await.expect("Migrator::run(&mut *conn)");
    conn.execute(sqlx::AssertSqlSafe(format!("SELECT id FROM {table}")))
        .await
        .expect("the migration ran");

    assert_eq!(answer_in(guard, answer).await.unwrap(), 42, "&guard");
    assert_eq!(
        answer_in(&mut *conn, answer).await.unwrap(),
        42,
        "&mut *conn"
    );
    assert_eq!(answer_in(&mut conn, answer).await.unwrap(), 42, "&mut conn");
    let mut tx = guard.begin().await.unwrap();
    assert_eq!(answer_in(&mut *tx, answer).await.unwrap(), 42, "&mut *tx");
    // A nested transaction through `Acquire::begin`, as on sqlx's types.
    let inner = (&mut *tx).begin().await.unwrap();
    inner.rollback().await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(guard.snapshot().in_use, 1, "the held connection only");

    conn.execute(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
        .await
        .unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!(
        "DROP TABLE _{table}_migrations"
    )))
    .await
    .unwrap();
    drop(conn);
    assert_eq!(guard.snapshot().in_use, 0);
}

#[tokio::test]
async fn sqlite_idioms() {
    let guard = PoolGuard::builder(common::sqlite(2, Duration::from_secs(5)).await)
        .build()
        .unwrap();
    idioms(&guard, "INTEGER", "SELECT 42").await;
}

#[tokio::test]
async fn postgres_idioms_and_advisory_locks() {
    let Some(pool) = common::postgres(2, Duration::from_secs(5)).await else {
        return;
    };
    let guard = PoolGuard::builder(pool).build().unwrap();
    idioms(&guard, "int", "SELECT 42::int8").await;

    // sqlx's own advisory lock takes `impl AsMut<PgConnection>`: a guarded
    // connection, by value or by reference, as sqlx's test does.
    let lock = sqlx::postgres::PgAdvisoryLock::new(format!("poolguard-{}", tempdir::unique()));
    let mut conn = guard.acquire().await.unwrap();
    let held = lock.acquire(&mut conn).await.unwrap();
    let mut other = guard.acquire().await.unwrap();
    assert!(
        lock.try_acquire(&mut other).await.unwrap().is_right(),
        "another session cannot take it"
    );
    held.release_now().await.unwrap();
    let by_value = lock.acquire(other).await.unwrap();
    let other = by_value.release_now().await.unwrap();
    drop((conn, other));
    assert_eq!(guard.snapshot().in_use, 0);
}

#[tokio::test]
async fn mysql_idioms() {
    let Some(pool) = common::mysql(2, Duration::from_secs(5)).await else {
        return;
    };
    let guard = PoolGuard::builder(pool).build().unwrap();
    idioms(&guard, "int", "SELECT 42").await;
}

/// Every everyday entry point answers `PoolTimedOut`, as a handler that
/// matches on `sqlx::Error` sees it.
async fn busy_on_every_entry_point(guard: &PoolGuard<sqlx::Sqlite>, why: &str) {
    fn busy<T: std::fmt::Debug>(r: Result<T, sqlx::Error>, call: &str, why: &str) {
        assert!(
            matches!(r, Err(sqlx::Error::PoolTimedOut)),
            "{why}: {call} gave {r:?}"
        );
    }
    busy(guard.acquire().await, "acquire", why);
    busy(
        guard.acquire_within(Duration::from_secs(1)).await,
        "acquire_within",
        why,
    );
    busy(guard.begin().await, "begin", why);
    busy(guard.begin_with("BEGIN").await, "begin_with", why);
    busy(guard.execute("SELECT 1").await, "&guard", why);
    busy(Acquire::acquire(guard).await, "Acquire::acquire", why);
}

/// Each refusal before a statement is sent reads as `PoolTimedOut`.
#[tokio::test]
async fn refusals_read_as_pool_timed_out() {
    // The pool's own acquire timeout, and the caller's shorter deadline.
    let guard = PoolGuard::builder(common::sqlite(1, Duration::from_millis(50)).await)
        .shed(ShedConfig::disabled())
        .build()
        .unwrap();
    let held = guard.acquire().await.unwrap();
    busy_on_every_entry_point(&guard, "the pool's timeout").await;
    let err = guard
        .acquire_within(Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err:?}");
    drop(held);

    // Load shedding: one waiter per connection at most.
    let guard = PoolGuard::builder(common::sqlite(1, Duration::from_secs(5)).await)
        .shed(ShedConfig::default().max_waiters_per_connection(1))
        .build()
        .unwrap();
    let held = guard.acquire().await.unwrap();
    let waiter = {
        let g = guard.clone();
        tokio::spawn(async move { g.acquire().await.map(drop) })
    };
    while guard.snapshot().waiters < 1 {
        tokio::task::yield_now().await;
    }
    let started = std::time::Instant::now();
    busy_on_every_entry_point(&guard, "load shedding").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once"
    );
    assert!(guard.acquire_detailed().await.unwrap_err().is_rejected());
    drop(held);
    waiter.await.unwrap().unwrap();

    // An open breaker, on every entry point, `try_begin` included.
    guard.breaker().force_open();
    busy_on_every_entry_point(&guard, "an open breaker").await;
    assert!(matches!(
        guard.try_begin().await,
        Err(sqlx::Error::PoolTimedOut)
    ));
    guard.breaker().reset();
    // sqlx pings a released connection before it is idle again (FINDINGS:
    // `try_acquire` just after a release often finds none).
    common::settle_pool(guard.pool()).await;
    assert!(guard.try_begin().await.unwrap().is_some());
}

#[tokio::test]
async fn a_query_timeout_reads_as_io_timed_out() {
    let Some(pool) = common::postgres(2, Duration::from_secs(5)).await else {
        return;
    };
    let guard = PoolGuard::builder(pool)
        .query_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    for err in [
        guard.execute("SELECT pg_sleep(5)").await.unwrap_err(),
        guard
            .acquire()
            .await
            .unwrap()
            .execute("SELECT pg_sleep(5)")
            .await
            .unwrap_err(),
    ] {
        match &err {
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {}
            other => panic!("{other:?}"),
        }
        assert!(Error::from_sqlx(&err).is_some_and(Error::is_query_timeout));
    }
}

/// Concurrent calls on one guard, each with its own deadline or none: each
/// error names the timeout of its own call (nothing about a call travels
/// beside its error, so nothing can be another call's).
#[tokio::test]
async fn the_detailed_variants_give_each_call_its_own_detail() {
    let guard = PoolGuard::builder(common::sqlite(1, Duration::from_millis(400)).await)
        .shed(ShedConfig::disabled())
        .build()
        .unwrap();
    let held = guard.acquire().await.unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..12 {
        let g = guard.clone();
        calls.spawn(async move {
            let r = if i % 2 == 0 {
                g.acquire_within_detailed(Duration::from_millis(100)).await
            } else {
                g.acquire_detailed().await
            };
            match r {
                Err(Error::AcquireTimeout { timeout, state, .. }) => {
                    assert!(!state.overloaded(), "nothing was served: {state}");
                    (i, timeout)
                }
                other => panic!("{other:?}"),
            }
        });
    }
    let mut seen = 0;
    while let Some(r) = calls.join_next().await {
        let (i, timeout) = r.unwrap();
        let want = if i % 2 == 0 {
            TimeoutKind::Deadline
        } else {
            TimeoutKind::Pool
        };
        assert_eq!(timeout, want, "call {i}");
        seen += 1;
    }
    assert_eq!(seen, 12);
    assert_eq!(guard.snapshot().acquire_timeouts_total, 12);
    drop(held);
}

/// A directory removed on drop, without a crate for it.
mod tempdir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Unique in this process and among processes running at once.
    pub fn unique() -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        format!(
            "{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Self {
            let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("migrations_{}", unique()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
