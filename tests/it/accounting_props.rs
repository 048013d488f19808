//! Property test: random mixes of acquire / cancel mid-wait / hold / drop /
//! panic / abort / transaction / executor calls over many tasks on a small
//! real pool always leave the guard's counts at zero and in agreement with
//! sqlx's own `size()` / `num_idle()`.
//!
//! Cases: 1,000 by default (`PROPTEST_CASES` overrides).

use crate::common;

use std::sync::OnceLock;
use std::time::Duration;

use poolguard::PoolGuard;
use proptest::prelude::*;
use sqlx::{Executor, Sqlite};
use tokio::runtime::Runtime;

#[derive(Debug, Clone)]
enum Op {
    /// Acquire, hold for `us` microseconds, drop.
    Hold(u16),
    /// Acquire with a deadline of `us` microseconds: often cancelled mid-wait.
    CancelWait(u16),
    /// Acquire, then panic while holding the connection (ends the task).
    Panic,
    /// A sub-task acquires and holds; it is aborted after `us` microseconds.
    Abort(u16),
    /// Begin, query, drop the transaction without commit.
    TxDrop,
    /// Begin and commit.
    TxCommit,
    /// A query through `&PoolGuard` as an executor.
    Exec,
    /// A fetch stream dropped after the first row.
    StreamDrop,
    /// `try_acquire`, held briefly if it succeeds.
    TryAcquire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u16..2000).prop_map(Op::Hold),
        3 => (0u16..2000).prop_map(Op::CancelWait),
        1 => Just(Op::Panic),
        2 => (0u16..2000).prop_map(Op::Abort),
        2 => Just(Op::TxDrop),
        1 => Just(Op::TxCommit),
        2 => Just(Op::Exec),
        1 => Just(Op::StreamDrop),
        1 => Just(Op::TryAcquire),
    ]
}

const PANIC_MARK: &str = "poolguard-proptest-panic";

fn env() -> &'static (Runtime, PoolGuard<Sqlite>) {
    static ENV: OnceLock<(Runtime, PoolGuard<Sqlite>)> = OnceLock::new();
    ENV.get_or_init(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let quiet = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|s| s.contains(PANIC_MARK));
            if !quiet {
                default_hook(info);
            }
        }));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let guard = rt.block_on(async {
            let pool = common::sqlite(3, Duration::from_millis(200)).await;
            PoolGuard::builder(pool).name("props").build().unwrap()
        });
        (rt, guard)
    })
}

fn us(n: u16) -> Duration {
    Duration::from_micros(u64::from(n))
}

async fn run(guard: PoolGuard<Sqlite>, ops: Vec<Op>) {
    for op in ops {
        match op {
            Op::Hold(n) => {
                if let Ok(c) = guard.acquire().await {
                    tokio::time::sleep(us(n)).await;
                    drop(c);
                }
            }
            Op::CancelWait(n) => {
                let _ = tokio::time::timeout(us(n), guard.acquire()).await;
            }
            Op::Panic => {
                let _c = guard.acquire().await;
                panic!("{PANIC_MARK}");
            }
            Op::Abort(n) => {
                let g = guard.clone();
                let h = tokio::spawn(async move {
                    let _c = g.acquire().await;
                    tokio::time::sleep(Duration::from_secs(10)).await;
                });
                tokio::time::sleep(us(n)).await;
                h.abort();
                let _ = h.await;
            }
            Op::TxDrop => {
                if let Ok(mut tx) = guard.begin().await {
                    let _ = (&mut *tx).execute("SELECT 1").await;
                }
            }
            Op::TxCommit => {
                if let Ok(tx) = guard.begin().await {
                    let _ = tx.commit().await;
                }
            }
            Op::Exec => {
                let _ = (&guard).execute("SELECT 1").await;
            }
            Op::StreamDrop => {
                use futures::StreamExt;
                let mut rows = (&guard).fetch("SELECT 1 UNION ALL SELECT 2");
                let _ = rows.next().await;
            }
            Op::TryAcquire => {
                if let Some(c) = guard.try_acquire() {
                    tokio::task::yield_now().await;
                    drop(c);
                }
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn counts_return_to_zero(
        tasks in prop::collection::vec(prop::collection::vec(op(), 1..6), 1..10),
        then_hold in 0usize..=3,
    ) {
        let (rt, guard) = env();
        let (waiters, in_use, size, idle, held_in_use) = rt.block_on(async {
            let handles: Vec<_> = tasks
                .into_iter()
                .map(|ops| tokio::spawn(run(guard.clone(), ops)))
                .collect();
            for h in handles {
                // A panicking task is one of the cases under test.
                let _ = h.await;
            }
            let snap = guard.snapshot();
            common::settle_pool(guard.pool()).await;
            let (size, idle) = (guard.pool().size(), guard.pool().num_idle());
            // Then the guard and sqlx must agree on a non-zero count too.
            let mut held = Vec::new();
            for _ in 0..then_hold {
                held.push(guard.acquire().await.expect("acquire on an idle pool"));
            }
            common::settle_in_use(guard.pool(), then_hold).await;
            let held_in_use = guard.snapshot().in_use;
            drop(held);
            (snap.waiters, snap.in_use, size, idle, held_in_use)
        });
        prop_assert_eq!(waiters, 0);
        prop_assert_eq!(in_use, 0);
        prop_assert_eq!(size as usize - idle, in_use as usize);
        prop_assert_eq!(held_in_use as usize, then_hold);
    }
}
