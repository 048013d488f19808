//! The incident replay (`examples/incident_replay`) at stronger compression
//! (one incident minute in 500 ms of wall time), on embedded SQLite: the
//! events come in the order the post-mortem's claim needs. Pool warning
//! before customer impact, impact before the old alert (P50 > 1000 ms), and
//! the pool alerts' lead of at least 10 incident minutes.

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
        "pool warning {}, forecast {}, impact {}, old alert {}, baseline {:.0} ms",
        show(warn),
        show(forecast),
        show(pass.impact),
        show(old),
        pass.baseline_ms
    );
    let impact = pass.impact.unwrap_or_else(|| panic!("no impact: {report}"));
    let warn = warn.unwrap_or_else(|| panic!("no pool warning: {report}"));
    let old = old.unwrap_or_else(|| panic!("no old alert: {report}"));
    // Before the spike the pool is quiet: no pool alert fires.
    assert!(
        pass.marks.iter().all(|m| m.at >= at(14, 15)
            || m.state != AlertState::Firing
            || m.severity == Severity::Info),
        "an alert fired before the campaign: {report}"
    );
    assert!(
        pass.first_pool_warning().is_some_and(|w| w.at < impact),
        "pool warning before impact: {report}"
    );
    assert!(impact < old, "impact before the old alert: {report}");
    let first = pass.first_pool_warning().expect("a pool warning").at;
    assert_eq!(Some(first), forecast.map(|f| f.min(warn)));
    assert!(
        impact - first >= 10.0,
        "at least 10 incident minutes of lead: {report}"
    );
    eprintln!("{report}");
}
