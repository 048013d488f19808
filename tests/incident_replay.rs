//! The incident replay (`examples/incident_replay`) on embedded SQLite, at
//! the example's compression (one incident minute per second; at 500 ms the
//! replay needs ~2.7 cores at its peak and a 2-core machine, not the pool,
//! caused the impact) over 14:00-14:42: the events come in the order the
//! post-mortem's claim needs. The first pool warning (a `pool_utilization`
//! rule or the exhaustion forecast) before customer impact, impact before
//! the old alert (P50 > 1000 ms), and that warning at least 10 incident
//! minutes ahead. (The 80 %-for-5-min rule alone fires about at impact on
//! this ramp; the report prints it.)

#[allow(dead_code)]
#[path = "../examples/incident_replay/replay.rs"]
mod replay;

use std::time::Duration;

use poolguard::rules::{FORECAST_RULE, POOL_RULE};
use poolguard::{AlertState, Severity};
use replay::{at, fmt_clock, Config, OLD_ALERT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_orders_warning_impact_old_alert_with_ten_minutes_lead() {
    let cfg = Config {
        minute: Duration::from_millis(1000),
        from: at(14, 0),
        until: at(14, 42),
        progress: false,
        ..Config::default()
    };
    let acquire = cfg.wall(Duration::from_secs(30));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(cfg.pool_size)
        .min_connections(cfg.pool_size)
        .acquire_timeout(acquire)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let pass = replay::run_pass(pool, &cfg, false).await.unwrap();
    let show = |t: Option<f64>| t.map_or("never".into(), fmt_clock);
    let firing = |rule, sev| pass.first(rule, sev, AlertState::Firing);
    let warn = firing(POOL_RULE, Severity::Warning);
    let forecast = firing(FORECAST_RULE, Severity::Warning);
    let old = firing(OLD_ALERT, Severity::Critical);
    let report = format!(
        "80% rule {}, forecast {}, impact {}, old alert {}, baseline {:.0} ms",
        show(warn),
        show(forecast),
        show(pass.impact),
        show(old),
        pass.baseline_ms
    );
    let impact = pass.impact.unwrap_or_else(|| panic!("no impact: {report}"));
    assert!(
        warn.is_some(),
        "the 80% rule fires once the pool is full: {report}"
    );
    let old = old.unwrap_or_else(|| panic!("no old alert: {report}"));
    // Before the spike the pool is quiet: nothing fires, not even the
    // scale hint or the forecast during its warm-up.
    assert!(
        pass.marks
            .iter()
            .all(|m| m.at >= at(14, 15) || m.state != AlertState::Firing),
        "an alert fired before the campaign: {report}"
    );
    assert_eq!(pass.events_missed, 0, "the timeline is whole");
    assert!(
        pass.first_pool_warning().is_some_and(|w| w.at < impact),
        "pool warning before impact: {report}"
    );
    assert!(impact < old, "impact before the old alert: {report}");
    let first = pass.first_pool_warning().expect("a pool warning").at;
    assert!(
        impact - first >= 10.0,
        "at least 10 incident minutes of lead: {report}"
    );
    eprintln!("{report}");
}
