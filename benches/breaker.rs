//! Cost of the circuit breaker per call. Closed: acquire + release through
//! the guard with the breaker closed against the same guard with the breaker
//! disabled (both in one run, so the difference is the breaker's permit and
//! outcome recording). Open: a rejected call, which never reaches the pool.
//! Run: `cargo bench --bench breaker`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use poolguard::PoolGuard;
use sqlx::sqlite::SqlitePoolOptions;

fn breaker(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = || async {
        SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(5))
            .connect("sqlite::memory:")
            .await
            .unwrap()
    };
    let closed = rt.block_on(async { PoolGuard::builder(pool().await).build().unwrap() });
    let disabled = rt.block_on(async { PoolGuard::builder(pool().await).build().unwrap() });
    disabled.breaker().disable();
    let open = rt.block_on(async { PoolGuard::builder(pool().await).build().unwrap() });
    open.breaker().force_open();

    let mut group = c.benchmark_group("breaker/sqlite/c1");
    group.bench_function("acquire_release/breaker_disabled", |b| {
        b.to_async(&rt).iter(|| async {
            drop(disabled.acquire().await.unwrap());
        })
    });
    group.bench_function("acquire_release/breaker_closed", |b| {
        b.to_async(&rt).iter(|| async {
            drop(closed.acquire().await.unwrap());
        })
    });
    group.bench_function("rejected_while_open", |b| {
        b.to_async(&rt).iter(|| async {
            assert!(open.acquire().await.is_err());
        })
    });
    group.finish();
}

criterion_group!(benches, breaker);
criterion_main!(benches);
