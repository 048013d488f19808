//! Instructions per acquire/release pair, counted by callgrind through
//! gungraun (`cargo bench --bench hot_path`; needs Debian's `valgrind` and
//! `gungraun-runner` 0.20.0: `cargo install gungraun-runner --version 0.20.0`).
//!
//! Every arm runs `n` pairs on a current-thread runtime made in the setup
//! (not counted), once with `n = 500` and once with `n = 1500`: the
//! difference over 1000 is the cost of one pair, setup and teardown
//! cancelled out. Only the benchmark function's own thread is counted
//! (sqlx's SQLite worker threads are not), and the guard's monitor ticks
//! every 30 s here, so no tick falls into a run.
//!
//! - `raw`, `floor`, `guard`, `guard_breaker_off`, `guard_prometheus`: an
//!   in-memory SQLite pool of 8, `test_before_acquire(false)`; `floor` is
//!   raw plus the least exact accounting can cost (two clock reads, four
//!   atomic read-modify-writes).
//! - `query_raw`, `query_guard`: `SELECT 1` through `&pool` and `&guard`.
//! - `model_raw`, `model_guard`: a FIFO semaphore of 8 and the guard's
//!   model pool over it (`SimPool`): the same admission, shedding and
//!   accounting with no driver underneath, so the count is exact and the
//!   same on every run. `.ci/run` holds `model_guard - model_raw` to the
//!   budget (`benches/hot_path_budget.txt`).
//! - `model_guard_spans_filtered`, `model_guard_spans_recorded`: the same
//!   with a global `tracing` subscriber: one whose level (WARN) filters the
//!   guard's INFO spans out, and `tracing_subscriber`'s `Registry`, which
//!   records every span (the storage a `fmt` or OpenTelemetry layer sits
//!   on). `model_guard` has no subscriber at all.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gungraun::prelude::*;
use poolguard::PoolGuard;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::SqlitePool;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

/// Long enough that no monitor tick falls into a run (the shortest tick
/// the default windows allow: the forecast needs 10 ticks of 5 minutes).
const TICK: Duration = Duration::from_secs(30);

/// What each arm runs on, made outside the count.
struct Fixture {
    rt: Runtime,
    pool: SqlitePool,
    guard: Option<PoolGuard<sqlx::Sqlite>>,
    sim: Option<poolguard::sim::SimPool<sqlx::Sqlite>>,
    slots: Arc<Semaphore>,
    n: u64,
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn pool(rt: &Runtime) -> SqlitePool {
    rt.block_on(
        SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(8)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect("sqlite::memory:"),
    )
    .expect("pool")
}

#[derive(Clone, Copy)]
enum Guard {
    None,
    Defaults,
    BreakerOff,
    Prometheus,
}

fn fixture(n: u64, with: Guard) -> Fixture {
    let rt = runtime();
    let pool = pool(&rt);
    if let Guard::Prometheus = with {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("recorder");
    }
    let guard = match with {
        Guard::None => None,
        _ => Some(rt.block_on(async {
            PoolGuard::builder(pool.clone())
                .tick(TICK)
                .build()
                .expect("guard")
        })),
    };
    if let (Guard::BreakerOff, Some(g)) = (with, &guard) {
        g.breaker().disable();
    }
    let sim = rt.block_on(async {
        let lazy = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy("sqlite::memory:")
            .expect("lazy pool");
        PoolGuard::builder(lazy)
            .tick(TICK)
            .build_sim()
            .expect("model pool")
    });
    // The monitors' first evaluations run here, not in the count.
    rt.block_on(async {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    });
    Fixture {
        rt,
        pool,
        guard,
        sim: Some(sim),
        slots: Arc::new(Semaphore::new(8)),
        n,
    }
}

fn plain(n: u64) -> Fixture {
    fixture(n, Guard::None)
}
fn guarded(n: u64) -> Fixture {
    fixture(n, Guard::Defaults)
}
fn breaker_off(n: u64) -> Fixture {
    fixture(n, Guard::BreakerOff)
}
fn prometheus(n: u64) -> Fixture {
    fixture(n, Guard::Prometheus)
}

#[library_benchmark]
#[benches::pairs(args = [500, 1500], setup = plain)]
fn raw(f: Fixture) -> Fixture {
    f.rt.block_on(async {
        for _ in 0..f.n {
            drop(black_box(f.pool.acquire().await.expect("acquire")));
        }
    });
    f
}

static COUNTS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

#[library_benchmark]
#[benches::pairs(args = [500, 1500], setup = plain)]
fn floor(f: Fixture) -> Fixture {
    f.rt.block_on(async {
        for _ in 0..f.n {
            let start = Instant::now();
            COUNTS[0].fetch_add(1, Relaxed);
            let conn = f.pool.acquire().await.expect("acquire");
            COUNTS[0].fetch_sub(1, Relaxed);
            COUNTS[1].fetch_add(1, Relaxed);
            drop(black_box(conn));
            COUNTS[1].fetch_sub(1, Relaxed);
            black_box(start.elapsed());
        }
    });
    f
}

fn guard_pairs(f: Fixture) -> Fixture {
    let g = f.guard.as_ref().expect("guarded fixture");
    f.rt.block_on(async {
        for _ in 0..f.n {
            drop(black_box(g.acquire().await.expect("acquire")));
        }
    });
    f
}

#[library_benchmark]
#[benches::pairs(args = [500, 1500], setup = guarded)]
fn guard(f: Fixture) -> Fixture {
    guard_pairs(f)
}

#[library_benchmark]
#[benches::pairs(args = [500, 1500], setup = breaker_off)]
fn guard_breaker_off(f: Fixture) -> Fixture {
    guard_pairs(f)
}

#[library_benchmark]
#[benches::pairs(args = [500, 1500], setup = prometheus)]
fn guard_prometheus(f: Fixture) -> Fixture {
    guard_pairs(f)
}

#[library_benchmark]
#[benches::pairs(args = [500, 1500], setup = plain)]
fn query_raw(f: Fixture) -> Fixture {
    f.rt.block_on(async {
        for _ in 0..f.n {
            black_box(
                sqlx::query("SELECT 1")
                    .execute(&f.pool)
                    .await
                    .expect("query"),
            );
        }
    });
    f
}

#[library_benchmark]
#[benches::pairs(args = [500, 1500], setup = guarded)]
fn query_guard(f: Fixture) -> Fixture {
    let g = f.guard.as_ref().expect("guarded fixture");
    f.rt.block_on(async {
        for _ in 0..f.n {
            black_box(sqlx::query("SELECT 1").execute(g).await.expect("query"));
        }
    });
    f
}

#[library_benchmark]
#[benches::pairs(args = [500, 1500], setup = plain)]
fn model_raw(f: Fixture) -> Fixture {
    f.rt.block_on(async {
        for _ in 0..f.n {
            // As the model pool waits: bounded by its acquire timeout.
            let slot = tokio::time::timeout(
                Duration::from_secs(30),
                Arc::clone(&f.slots).acquire_owned(),
            )
            .await
            .expect("in time")
            .expect("slot");
            drop(black_box(slot));
        }
    });
    f
}

/// `n` pairs on the model pool.
fn model_pairs(f: Fixture) -> Fixture {
    let sim = f.sim.as_ref().expect("model pool");
    f.rt.block_on(async {
        for _ in 0..f.n {
            drop(black_box(sim.acquire().await.expect("slot")));
        }
    });
    f
}

#[library_benchmark]
#[benches::pairs(args = [500, 1500], setup = plain)]
fn model_guard(f: Fixture) -> Fixture {
    model_pairs(f)
}

/// The model pool with a global tracing subscriber: `record` keeps the
/// guard's spans, else a WARN filter drops them.
fn spans(n: u64, record: bool) -> Fixture {
    use tracing_subscriber::layer::SubscriberExt;
    let result = if record {
        tracing::subscriber::set_global_default(tracing_subscriber::registry())
    } else {
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::WARN),
        )
    };
    result.expect("first subscriber of this process");
    fixture(n, Guard::None)
}
fn spans_filtered(n: u64) -> Fixture {
    spans(n, false)
}
fn spans_recorded(n: u64) -> Fixture {
    spans(n, true)
}

#[library_benchmark]
#[benches::pairs(args = [500, 1500], setup = spans_filtered)]
fn model_guard_spans_filtered(f: Fixture) -> Fixture {
    model_pairs(f)
}

#[library_benchmark]
#[benches::pairs(args = [500, 1500], setup = spans_recorded)]
fn model_guard_spans_recorded(f: Fixture) -> Fixture {
    model_pairs(f)
}

library_benchmark_group!(
    name = pairs,
    benchmarks = [
        raw,
        floor,
        guard,
        guard_breaker_off,
        guard_prometheus,
        query_raw,
        query_guard,
        model_raw,
        model_guard,
        model_guard_spans_filtered,
        model_guard_spans_recorded
    ]
);

main!(library_benchmark_groups = pairs);
