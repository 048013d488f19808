//! `watch_server` against the real PostgreSQL: the server's connection
//! capacity, the server-wide signal and the scale hint's server check.
#![cfg(feature = "postgres")]

use crate::common;

use std::time::Duration;

use futures::StreamExt;
use poolguard::{Comparison, Event, PoolGuard, Rule, Severity, Signal};
use sqlx::Row;

#[tokio::test]
async fn server_capacity_feeds_the_signal_and_the_scale_hint() {
    let Some(pool) = common::postgres(5, Duration::from_secs(2)).await else {
        return;
    };
    let row = sqlx::query(
        "SELECT current_setting('max_connections')::int4, \
         current_setting('superuser_reserved_connections')::int4 \
         + COALESCE(current_setting('reserved_connections', true)::int4, 0)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (max, reserved): (i32, i32) = (row.get(0), row.get(1));

    let guard = PoolGuard::builder(pool)
        .tick(Duration::from_millis(50))
        .watch_server(Duration::from_millis(50))
        .instances(1000)
        .rule(
            Rule::new("scale_up", Signal::Utilization, Comparison::Above, 0.75)
                .severity(Severity::Info),
        )
        .build()
        .unwrap();
    let mut events = guard.events();
    let mut capacity = None;
    for _ in 0..200 {
        capacity = guard.server_capacity();
        if capacity.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cap = capacity.expect("server read within 2 s");
    assert_eq!(cap.max_connections as i32, max);
    assert_eq!(cap.reserved as i32, reserved);
    assert!(
        cap.backends >= 2,
        "the watcher and the pool's connection: {cap:?}"
    );
    assert!(cap.utilization() > 0.0 && cap.utilization() <= 1.0);
    assert!(guard
        .rules()
        .iter()
        .any(|r| r.signal == Signal::ServerUtilization && r.severity == Severity::Critical));

    // 4 of 5 connections (80 % > 75 %): the scale hint, checked against the
    // server: 1000 instances cannot each get a bigger pool.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(guard.acquire().await.unwrap());
    }
    let hint = loop {
        match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
            Ok(Some(Ok(Event::ScaleHint(h)))) => break h,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no scale hint: {other:?}"),
        }
    };
    assert_eq!(hint.current_max, 5);
    assert!(hint.recommended_max >= 7, "4 needed / 0.6: {hint:?}");
    assert_eq!(hint.instances, 1000);
    assert!(hint.server.is_some());
    assert!(hint.exceeds_server);
    let server_value = guard
        .alerts()
        .into_iter()
        .find(|a| a.signal == Signal::ServerUtilization)
        .unwrap()
        .value
        .expect("the server signal has a value");
    assert!(server_value > 0.0 && server_value <= 1.0);
    drop(held);
}
