//! Drives an in-memory SQLite pool into saturation and prints each level
//! change, each alert that fires or resolves, and the scale hint as they
//! happen. Needs nothing installed:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Hold times are shortened (warning above 80 % for 1 s, critical above 90 %
//! for 1 s, recovery after 1 s, scale hint above 75 % for 1 s) so the run
//! takes a few seconds; the defaults are the post-mortem's 5 min / 2 min / 1 min.

use std::time::{Duration, Instant};

use futures::StreamExt;
use poolguard::{AlertState, Comparison, Event, PoolGuard, Rule, Severity, Signal};
use sqlx::sqlite::SqlitePoolOptions;

#[tokio::main]
async fn main() -> Result<(), poolguard::Error> {
    let pool = SqlitePoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_millis(500))
        .connect("sqlite::memory:")
        .await?;
    let guard = PoolGuard::builder(pool)
        .name("quickstart")
        .warn_at(0.80)
        .warn_for(Duration::from_secs(1))
        .critical_at(0.90)
        .critical_for(Duration::from_secs(1))
        .recover_for(Duration::from_secs(1))
        .rule(
            Rule::new("scale_up", Signal::Utilization, Comparison::Above, 0.75)
                .severity(Severity::Info)
                .hold(Duration::from_secs(1))
                .recover_for(Duration::from_secs(1))
                .keep_firing_for(Duration::from_secs(1)),
        )
        .build()?;

    let start = Instant::now();
    let mut events = guard.events();
    let printer = tokio::spawn(async move {
        while let Some(item) = events.next().await {
            let at = start.elapsed().as_secs_f64();
            let e = match item {
                Ok(Event::Saturation(e)) => e,
                Ok(Event::Alert(a)) => {
                    if matches!(a.state, AlertState::Firing | AlertState::Resolved) {
                        println!(
                            "[{at:>5.2}s]   alert {}/{} {} (value {:.2?}, threshold {})",
                            a.rule, a.severity, a.state, a.value, a.threshold
                        );
                    }
                    continue;
                }
                Ok(Event::ScaleHint(h)) => {
                    println!(
                        "[{at:>5.2}s]   scale hint: {:.1} connections needed -> max_connections {} (now {})",
                        h.needed, h.recommended_max, h.current_max
                    );
                    continue;
                }
                Ok(_) => continue,
                Err(missed) => {
                    println!("({missed})");
                    continue;
                }
            };
            let s = &e.snapshot;
            println!(
                "[{:>5.2}s] {:>8} -> {:<8} after {:>5.2}s  in_use={}/{} waiters={} demand={:.0}% \
                 wait p95={:?} timeouts(window)={}",
                start.elapsed().as_secs_f64(),
                e.previous,
                e.level,
                e.time_in_previous.as_secs_f64(),
                s.in_use,
                s.max,
                s.waiters,
                s.demand * 100.0,
                s.acquire_wait.p95,
                s.acquire_timeouts_in_window,
            );
        }
    });

    // Each request holds a connection for `hold`; `n` requests run at a time.
    let phase = |n: usize, hold: Duration, label: &'static str| {
        let guard = guard.clone();
        async move {
            println!(
                "[{:>5.2}s] phase: {label} ({n} concurrent requests)",
                start.elapsed().as_secs_f64()
            );
            let deadline = Instant::now() + Duration::from_millis(2500);
            let workers: Vec<_> = (0..n)
                .map(|i| {
                    let guard = guard.clone();
                    // Spread the holds so the requests do not release in lockstep.
                    let hold = hold + Duration::from_millis((i as u64 * 37) % 100);
                    tokio::spawn(async move {
                        let mut timeouts = 0;
                        while Instant::now() < deadline {
                            match guard.acquire().await {
                                Ok(mut conn) => {
                                    sqlx::query("SELECT 1").execute(&mut *conn).await?;
                                    tokio::time::sleep(hold).await;
                                }
                                // No connection in time: sqlx's own "busy".
                                Err(sqlx::Error::PoolTimedOut) => timeouts += 1,
                                Err(e) => return Err(e.into()),
                            }
                        }
                        Ok::<_, poolguard::Error>(timeouts)
                    })
                })
                .collect();
            let mut timeouts = 0;
            for w in workers {
                timeouts += w.await.expect("worker")?;
            }
            Ok::<_, poolguard::Error>(timeouts)
        }
    };

    phase(4, Duration::from_millis(50), "baseline").await?;
    phase(
        9,
        Duration::from_millis(50),
        "busy: 8-9 of 10 connections in use",
    )
    .await?;
    let t = phase(
        16,
        Duration::from_millis(300),
        "spike: more requests than connections",
    )
    .await?;
    println!(
        "[{:>5.2}s] spike ended with {t} acquire timeouts",
        start.elapsed().as_secs_f64()
    );
    phase(2, Duration::from_millis(50), "recovery").await?;

    let snap = guard.snapshot();
    println!(
        "final: level={} acquires={} timeouts={} hold p50={:?}",
        snap.level, snap.acquires_total, snap.acquire_timeouts_total, snap.hold_time.p50
    );
    for a in guard
        .alerts()
        .iter()
        .filter(|a| a.state != AlertState::Inactive)
    {
        println!(
            "rule {}/{}: {} for {:.1?}",
            a.rule, a.severity, a.state, a.in_state_for
        );
    }
    drop(guard); // ends the event stream
    printer.await.expect("printer");
    Ok(())
}
