//! The guard adds no heap allocation to acquire/release in steady state:
//! a counting global allocator compares the raw pool with the guard over the
//! same number of acquire/release pairs (sqlx itself allocates on release,
//! for the task that returns the connection, so the raw arm is the baseline).

use std::sync::atomic::Ordering;
use std::time::Duration;

use poolguard::PoolGuard;
use sqlx::sqlite::SqlitePoolOptions;

use crate::{alone, ALLOCS};

const OPS: u64 = 20_000;

async fn allocs_per_pair<F, Fut>(mut op: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..1_000 {
        op().await; // warm up: pool filled, buffers grown
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..OPS {
        op().await;
    }
    (ALLOCS.load(Ordering::Relaxed) - before) as f64 / OPS as f64
}

#[tokio::test(flavor = "current_thread")]
async fn guard_adds_no_allocation_per_acquire_release() {
    let _alone = alone().await;
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(5))
        .connect("sqlite::memory:")
        .await
        .unwrap();
    // A long tick: the monitor's own periodic work is not the hot path
    // (the windowed default rules need windows of at least a tick, so only
    // the pool rules are kept).
    let guard = PoolGuard::builder(pool.clone())
        .tick(Duration::from_secs(3600))
        .stats_window(Duration::from_secs(3600))
        .forecast_window(Duration::from_secs(36_000))
        .rules(poolguard::SaturationPolicy::default().rules())
        .build()
        .unwrap();

    let raw = allocs_per_pair(|| {
        let pool = &pool;
        async move { drop(pool.acquire().await.unwrap()) }
    })
    .await;
    let guarded = allocs_per_pair(|| {
        let guard = &guard;
        async move { drop(guard.acquire().await.unwrap()) }
    })
    .await;
    println!("allocations per acquire/release: raw {raw:.3}, guard {guarded:.3}");
    assert!(
        guarded - raw < 0.01,
        "guard adds {:.3} allocations per pair (raw {raw:.3}, guard {guarded:.3})",
        guarded - raw
    );
    assert_eq!(guard.snapshot().acquires_total, 21_000);
}
