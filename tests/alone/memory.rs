//! The guard's memory stays flat: a million acquire/release pairs through a
//! guard with every default rule, and the heap in use (bytes allocated minus
//! bytes freed, counted by a global allocator) grows no more after the
//! millionth pair than after the hundred-thousandth, apart from the bounded
//! windows filling with time.

use std::sync::atomic::Ordering;
use std::time::Duration;

use poolguard::PoolGuard;
use sqlx::sqlite::SqlitePoolOptions;

use crate::{alone, LIVE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_acquires_leave_memory_flat() {
    let _alone = alone().await;
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(30))
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let guard = PoolGuard::builder(pool)
        .leak_detection(Duration::from_secs(60))
        .build()
        .unwrap();
    let run = |n: u64| {
        let guard = guard.clone();
        async move {
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let g = guard.clone();
                    tokio::spawn(async move {
                        for _ in 0..n / 4 {
                            drop(g.acquire().await.unwrap());
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    run(100_000).await;
    let after_100k = LIVE.load(Ordering::Relaxed);
    run(900_000).await;
    let after_1m = LIVE.load(Ordering::Relaxed);
    let growth = after_1m - after_100k;
    eprintln!(
        "live heap after 100k pairs: {after_100k} B, after 1M: {after_1m} B, growth {growth} B"
    );
    assert_eq!(guard.snapshot().acquires_total, 1_000_000);
    // 900,000 more pairs: one byte kept per pair would be 900 KB. What may
    // legitimately grow is time-bound, not count-bound: the windows fill as
    // the run goes on (at most ~300 counter marks of ~140 B, 13 histogram
    // marks of ~10 KB, the forecast's 600 points): under 200 KB even if a
    // slow machine needs minutes for this.
    assert!(
        growth < 512 * 1024,
        "heap grew {growth} B over 900,000 pairs"
    );
}
