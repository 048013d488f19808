//! The diagnosis and the starvation signals against real pools: a
//! PostgreSQL pool whose database stops answering new connections (a TCP
//! proxy on loopback stalls them) is diagnosed as stalled and fires
//! `pool_stalled`; a pool full of the guard's own holds is exhausted, not
//! stalled, and its oldest waiter is reported.

use crate::common;

use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt;
use poolguard::rules::{OLDEST_WAIT_RULE, STALL_RULE};
use poolguard::{AlertState, Cause, Comparison, Event, PoolGuard, Rule, Severity, Signal};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use common::proxy::Proxy;

/// The first alert event of `rule` reaching `state`, within `within`.
async fn alert(
    events: &mut poolguard::EventStream,
    rule: &str,
    state: AlertState,
    within: Duration,
) -> poolguard::AlertEvent {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(Ok(Event::Alert(a)))) if &*a.rule == rule && a.state == state => return a,
            Ok(Some(_)) => continue,
            other => panic!("no {rule} {state:?} within {within:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_pool_whose_database_accepts_no_connections_is_stalled() {
    if common::postgres(1, Duration::from_secs(5)).await.is_none() {
        return;
    }
    let upstream = {
        let o = PgConnectOptions::from_str(&common::pg_url()).unwrap();
        format!("127.0.0.1:{}", o.get_port()).parse().unwrap()
    };
    let proxy = Proxy::start(upstream).await;
    let options = PgConnectOptions::from_str(&common::pg_url())
        .unwrap()
        .host("127.0.0.1")
        .port(proxy.port());
    // No connection open yet; every connect now hangs in the proxy.
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options);
    proxy.stall();
    let guard = PoolGuard::builder(pool)
        .tick(Duration::from_millis(50))
        .rule(
            Rule::new(STALL_RULE, Signal::Stall, Comparison::Above, 0.5)
                .severity(Severity::Critical),
        )
        .build()
        .unwrap();
    let mut events = guard.events();
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let g = guard.clone();
            tokio::spawn(async move { g.acquire().await.map(drop) })
        })
        .collect();
    let fired = alert(
        &mut events,
        STALL_RULE,
        AlertState::Firing,
        Duration::from_secs(5),
    )
    .await;
    assert!(fired.value.unwrap() > 0.5, "{fired:?}");
    let s = fired.snapshot;
    assert_eq!((s.in_use, s.waiters), (0, 3), "{s:?}");
    let d = s.diagnosis.clone().expect("a stalled pool is diagnosed");
    assert_eq!(d.cause, Cause::Stalled, "{d}");
    assert!(s.oldest_wait.unwrap() > Duration::from_millis(500), "{s:?}");
    for w in waiting {
        w.abort();
    }
}

#[tokio::test]
async fn a_pool_full_of_held_connections_is_exhausted_not_stalled() {
    let pool = common::sqlite(2, Duration::from_secs(10)).await;
    let guard = PoolGuard::builder(pool)
        .tick(Duration::from_millis(50))
        .rule(
            Rule::new(STALL_RULE, Signal::Stall, Comparison::Above, 0.2)
                .severity(Severity::Critical),
        )
        .rule(
            Rule::new(OLDEST_WAIT_RULE, Signal::OldestWait, Comparison::Above, 0.3)
                .severity(Severity::Critical),
        )
        .build()
        .unwrap();
    let mut events = guard.events();
    let held = (
        guard.acquire().await.unwrap(),
        guard.acquire().await.unwrap(),
    );
    let g = guard.clone();
    let waiter = tokio::spawn(async move { g.acquire().await.map(drop) });
    let fired = alert(
        &mut events,
        OLDEST_WAIT_RULE,
        AlertState::Firing,
        Duration::from_secs(5),
    )
    .await;
    assert!(fired.value.unwrap() > 0.3);
    let s = guard.snapshot();
    assert!(s.stalled_for.is_zero(), "{s:?}");
    assert_ne!(s.diagnosis.map(|d| d.cause), Some(Cause::Stalled));
    assert_eq!(
        guard
            .alerts()
            .iter()
            .find(|a| &*a.rule == STALL_RULE)
            .map(|a| a.state),
        Some(AlertState::Inactive)
    );
    drop(held);
    waiter.await.unwrap().unwrap();
}

/// Pool time per statement through the guard, by normalised text: the
/// slow statement (its literal varying) is one entry and holds most of it.
#[tokio::test]
async fn statements_through_the_guard_are_attributed_by_normalised_text() {
    let Some(pool) = common::postgres(2, Duration::from_secs(5)).await else {
        return;
    };
    let guard = PoolGuard::builder(pool)
        .tick(Duration::from_millis(50))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    for i in 0..6 {
        let slow = format!("SELECT pg_sleep(0.0{}), 'x{i}'", 3 + i % 2);
        sqlx::query(sqlx::AssertSqlSafe(slow))
            .execute(&guard)
            .await
            .unwrap();
        sqlx::query("SELECT 1").execute(&guard).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    let s = guard.snapshot();
    let [slow, fast, ..] = &s.statements[..] else {
        panic!("{:?}", s.statements)
    };
    assert_eq!(
        slow.statement.as_deref(),
        Some("SELECT pg_sleep(?), ?"),
        "{:?}",
        s.statements
    );
    assert_eq!(fast.statement.as_deref(), Some("SELECT ?"));
    assert!(slow.share > 0.5 && slow.share <= 1.0, "{slow:?}");
    let mean = slow.mean.unwrap();
    assert!(mean >= Duration::from_millis(30), "{slow:?}");
    assert!(fast.share < slow.share / 3.0, "{fast:?}");
}

/// A real SQLite pool of 10 in compressed time (`time_scale(60)`: one
/// incident minute a second, so the guard learns its baseline in about 15
/// seconds): 40 requests a second holding 100 ms (4 connections), then
/// one cause fills it. Returns the diagnosis once the pool is under
/// pressure.
async fn real_pool_diagnosis(
    rate: f64,
    hold: Duration,
    leak_every: Option<u32>,
) -> poolguard::Diagnosis {
    let pool = common::sqlite(10, Duration::from_secs(5)).await;
    let guard = PoolGuard::builder(pool).time_scale(60.0).build().unwrap();
    let mut leaked = Vec::new();
    let run = |rate: f64, hold: Duration, secs: f64| {
        let guard = guard.clone();
        async move {
            let every = Duration::from_secs_f64(1.0 / rate);
            let mut tick = tokio::time::interval(every);
            let end = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
            let mut tasks = tokio::task::JoinSet::new();
            while tokio::time::Instant::now() < end {
                tick.tick().await;
                let g = guard.clone();
                tasks.spawn(async move {
                    let c = g.acquire().await.unwrap();
                    tokio::time::sleep(hold).await;
                    drop(c);
                });
            }
            while tasks.join_next().await.is_some() {}
        }
    };
    run(40.0, Duration::from_millis(100), 16.0).await;
    assert!(guard.snapshot().diagnosis.is_none(), "no pressure at 40 %");
    let load = tokio::spawn(run(rate, hold, 12.0));
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(11);
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(every) = leak_every {
            n += 1;
            if n % every == 0 {
                leaked.push(guard.acquire().await.unwrap());
            }
        }
        let s = guard.snapshot();
        if s.utilization >= 0.8 && tokio::time::Instant::now() + Duration::from_secs(3) > deadline {
            last = s.diagnosis;
        }
    }
    load.abort();
    last.expect("the pool under pressure carries a diagnosis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_pool_with_more_arrivals_is_diagnosed_so() {
    // 2.2x the arrivals at the same hold: 8.8 of 10.
    let d = real_pool_diagnosis(88.0, Duration::from_millis(100), None).await;
    assert_eq!(d.cause, Cause::MoreArrivals, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_pool_with_longer_holds_is_diagnosed_so() {
    // The same arrivals held 2.2x as long.
    let d = real_pool_diagnosis(40.0, Duration::from_millis(220), None).await;
    assert_eq!(d.cause, Cause::LongerHolds, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_pool_with_a_leak_is_diagnosed_so() {
    // The same load, and a connection taken for good every second.
    let d = real_pool_diagnosis(40.0, Duration::from_millis(100), Some(4)).await;
    assert_eq!(d.cause, Cause::Leak, "{d}");
}
