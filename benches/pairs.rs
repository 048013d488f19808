//! Instruction-count driver: runs `N` acquire/release pairs of one arm on an
//! in-memory SQLite pool of 8 (`test_before_acquire(false)`, current-thread
//! runtime), for `valgrind --tool=callgrind`. Instructions per pair are the
//! difference between two runs of different `N` divided by the difference of
//! `N` (setup cancels out). Timing noise does not touch the count.
//!
//! ```text
//! cargo bench --bench pairs --no-run
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/pairs-* guard 10000
//! ```
//!
//! Arms: `raw` (`pool.acquire()`), `guard` (`guard.acquire()`, defaults),
//! `raw_query` / `guard_query` (the same plus `SELECT 1` on `&mut *conn`).

use std::time::Duration;

use sqlx::sqlite::SqlitePoolOptions;
use sqlx::Executor;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let arm = args.next().unwrap_or_else(|| "guard".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(8)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let guard = poolguard::PoolGuard::builder(pool.clone()).build().unwrap();
        for _ in 0..n {
            match arm.as_str() {
                "raw" => drop(pool.acquire().await.unwrap()),
                "guard" => drop(guard.acquire().await.unwrap()),
                "raw_query" => {
                    let mut c = pool.acquire().await.unwrap();
                    (&mut *c).execute("SELECT 1").await.unwrap();
                }
                "guard_query" => {
                    let mut c = guard.acquire().await.unwrap();
                    (&mut *c).execute("SELECT 1").await.unwrap();
                }
                other => panic!("unknown arm {other}"),
            }
        }
    });
}
