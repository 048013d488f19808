//! Cost of the guard on the fastest path: acquire + release on an in-memory
//! SQLite pool with `test_before_acquire(false)`, one task, raw sqlx pool vs
//! the guard in the same run. Run: `cargo bench --bench acquire`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use poolguard::PoolGuard;
use sqlx::sqlite::SqlitePoolOptions;

fn acquire_release(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = rt.block_on(async {
        SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(5))
            .connect("sqlite::memory:")
            .await
            .unwrap()
    });
    let guard = rt.block_on(async { PoolGuard::builder(pool.clone()).build().unwrap() });

    let mut group = c.benchmark_group("acquire_release/sqlite/c1");
    group.bench_function("raw", |b| {
        b.to_async(&rt).iter(|| async {
            drop(pool.acquire().await.unwrap());
        })
    });
    group.bench_function("poolguard", |b| {
        b.to_async(&rt).iter(|| async {
            drop(guard.acquire().await.unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, acquire_release);
criterion_main!(benches);
