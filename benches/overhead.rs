//! The guard's cost against raw sqlx and sqlx-otel, in one run.
//!
//! Arms: the raw `sqlx::Pool`; `poolguard` with no metrics recorder; with the
//! Prometheus recorder (`metrics-exporter-prometheus`) behind its handles;
//! `sqlx-otel` 0.5 with no OpenTelemetry provider (its documented zero-cost
//! configuration); and `sqlx-otel` with an OpenTelemetry SDK meter provider
//! (a manual reader: instruments record, nothing exports). Workloads: acquire + release, and acquire +
//! `SELECT 1` + release; concurrency 1, 16 and 256 tasks; pools of 8 and 50;
//! SQLite in-memory always, PostgreSQL on loopback when `DATABASE_URL` (or
//! the default) answers. Also: an acquire started and abandoned while 10,000
//! tasks wait, and one rule-evaluation tick with every default rule.
//!
//! Run: `cargo bench --bench overhead` (about 8 minutes on 2 cores;
//! `-- acquire_release/sqlite` and the like select a part).

use std::future::Future;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures::FutureExt;
use poolguard::{PoolGuard, ShedConfig};
use sqlx::{Database, Executor, Pool};

const CONCURRENCY: [usize; 3] = [1, 16, 256];
const POOLS: [u32; 2] = [8, 50];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `iters` operations spread over `c` tasks; returns the wall time.
async fn spread<F, Fut>(c: usize, iters: u64, op: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let per = (iters / c as u64).max(1);
    let start = Instant::now();
    let tasks: Vec<_> = (0..c)
        .map(|_| {
            let op = op.clone();
            tokio::spawn(async move {
                for _ in 0..per {
                    op().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Normalise to `iters` operations.
    start
        .elapsed()
        .mul_f64(iters as f64 / (per * c as u64) as f64)
}

/// A guard as the benches use it: shedding off (256 tasks on 8 connections
/// would otherwise be refused), built under `recorder` when given.
fn guard<DB: Database>(pool: &Pool<DB>, prometheus: bool) -> PoolGuard<DB> {
    let build = || {
        PoolGuard::builder(pool.clone())
            .name(if prometheus { "bench-prom" } else { "bench" })
            .shed(ShedConfig::disabled())
            .build()
            .unwrap()
    };
    if prometheus {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        // Handles are registered at build; they keep the recorder's storage.
        metrics::with_local_recorder(&recorder, build)
    } else {
        build()
    }
}

macro_rules! arms {
    ($c:expr, $rt:expr, $label:expr, $pool:expr, $otel:expr, $otel_sdk:expr, $query:expr) => {{
        let group_name = format!(
            "{}/{}",
            if $query {
                "acquire_select1_release"
            } else {
                "acquire_release"
            },
            $label
        );
        let mut group = $c.benchmark_group(group_name);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        group.sample_size(20);
        let pool = $pool.clone();
        let plain = $rt.block_on(async { guard(&pool, false) });
        let prom = $rt.block_on(async { guard(&pool, true) });
        let otel = $otel.clone();
        for c in CONCURRENCY {
            {
                let pool = pool.clone();
                group.bench_with_input(BenchmarkId::new("raw", c), &c, |b, &c| {
                    b.to_async(&$rt).iter_custom(|iters| {
                        let pool = pool.clone();
                        spread(c, iters, move || {
                            let pool = pool.clone();
                            async move {
                                let mut conn = pool.acquire().await.unwrap();
                                if $query {
                                    (&mut *conn).execute("SELECT 1").await.unwrap();
                                }
                            }
                        })
                    })
                });
            }
            for (arm, g) in [("poolguard", &plain), ("poolguard+prometheus", &prom)] {
                let g = g.clone();
                group.bench_with_input(BenchmarkId::new(arm, c), &c, |b, &c| {
                    b.to_async(&$rt).iter_custom(|iters| {
                        let g = g.clone();
                        spread(c, iters, move || {
                            let g = g.clone();
                            async move {
                                let mut conn = g.acquire().await.unwrap();
                                if $query {
                                    (&mut *conn).execute("SELECT 1").await.unwrap();
                                }
                            }
                        })
                    })
                });
            }
            for (arm, otel) in [("sqlx-otel", &otel), ("sqlx-otel+sdk", &$otel_sdk)] {
                let otel = otel.clone();
                group.bench_with_input(BenchmarkId::new(arm, c), &c, |b, &c| {
                    b.to_async(&$rt).iter_custom(|iters| {
                        let otel = otel.clone();
                        spread(c, iters, move || {
                            let otel = otel.clone();
                            async move {
                                let mut conn = otel.acquire().await.unwrap();
                                if $query {
                                    (&mut conn).execute("SELECT 1").await.unwrap();
                                }
                            }
                        })
                    })
                });
            }
        }
        group.finish();
    }};
}

fn sqlite_pool(rt: &tokio::runtime::Runtime, max: u32) -> sqlx::SqlitePool {
    rt.block_on(
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(max)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect("sqlite::memory:"),
    )
    .unwrap()
}

fn postgres_pool(rt: &tokio::runtime::Runtime, max: u32) -> Option<sqlx::PgPool> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    match rt.block_on(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(max)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&url),
    ) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("PostgreSQL arms SKIPPED: {url}: {e}");
            None
        }
    }
}

fn overhead(c: &mut Criterion) {
    let rt = runtime();
    let sqlite: Vec<_> = POOLS.iter().map(|&max| sqlite_pool(&rt, max)).collect();
    let postgres: Vec<_> = POOLS
        .iter()
        .map_while(|&max| postgres_pool(&rt, max))
        .collect();
    // sqlx-otel takes its meter when a pool is built: the no-provider arms
    // first, then the SDK provider goes global and the other arms are built.
    let otel = |p: &sqlx::SqlitePool| {
        rt.block_on(async { sqlx_otel::PoolBuilder::from(p.clone()).build() })
    };
    let otel_pg =
        |p: &sqlx::PgPool| rt.block_on(async { sqlx_otel::PoolBuilder::from(p.clone()).build() });
    let sqlite_otel: Vec<_> = sqlite.iter().map(otel).collect();
    let postgres_otel: Vec<_> = postgres.iter().map(otel_pg).collect();
    let reader = opentelemetry_sdk::metrics::ManualReader::builder().build();
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(reader)
        .build();
    opentelemetry::global::set_meter_provider(provider);
    let sqlite_sdk: Vec<_> = sqlite.iter().map(otel).collect();
    let postgres_sdk: Vec<_> = postgres.iter().map(otel_pg).collect();
    for (i, max) in POOLS.iter().enumerate() {
        let (pool, o, s) = (&sqlite[i], &sqlite_otel[i], &sqlite_sdk[i]);
        arms!(c, rt, format!("sqlite/pool{max}"), pool, o, s, false);
        arms!(c, rt, format!("sqlite/pool{max}"), pool, o, s, true);
    }
    for (i, max) in POOLS.iter().enumerate().take(postgres.len()) {
        let (pool, o, s) = (&postgres[i], &postgres_otel[i], &postgres_sdk[i]);
        arms!(c, rt, format!("postgres/pool{max}"), pool, o, s, false);
        arms!(c, rt, format!("postgres/pool{max}"), pool, o, s, true);
    }
}

/// An acquire that registers as a waiter and is abandoned, while 10,000
/// tasks already wait on a full pool: what the queue costs a newcomer.
fn crowded(c: &mut Criterion) {
    let rt = runtime();
    let pool = sqlite_pool(&rt, 1);
    let g = rt.block_on(async { guard(&pool, false) });
    let held = rt.block_on(pool.acquire()).unwrap();
    let waiters: Vec<_> = (0..10_000)
        .map(|_| {
            let g = g.clone();
            rt.spawn(async move {
                let _ = g.acquire().await;
            })
        })
        .collect();
    rt.block_on(async {
        while g.snapshot().waiters < 10_000 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let mut group = c.benchmark_group("acquire_abandoned/10000_waiting");
    group.bench_function("raw", |b| {
        b.to_async(&rt)
            .iter(|| async { assert!(pool.acquire().now_or_never().is_none()) })
    });
    group.bench_function("poolguard", |b| {
        b.to_async(&rt)
            .iter(|| async { assert!(g.acquire().now_or_never().is_none()) })
    });
    group.finish();
    for w in &waiters {
        w.abort();
    }
    // sqlx returns the connection from a task: inside the runtime.
    rt.block_on(async move { drop(held) });
}

/// One evaluation tick with every default rule (windows, forecast, baseline,
/// every signal), on a pool with traffic in its windows.
fn rule_tick(c: &mut Criterion) {
    let rt = runtime();
    let pool = sqlite_pool(&rt, 8);
    let g = rt.block_on(async { guard(&pool, false) });
    rt.block_on(async {
        for _ in 0..10_000 {
            drop(g.acquire().await.unwrap());
        }
    });
    c.bench_function("rule_tick/all_default_rules", |b| {
        b.iter(|| g.evaluate_tick_now())
    });
}

criterion_group!(benches, overhead, crowded, rule_tick);
criterion_main!(benches);
