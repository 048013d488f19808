//! Replays INC-EX3 (../shared/seed/incident-postmortem.txt in the project's
//! history; summarised in the README) against a real guarded sqlx pool and
//! checks the post-mortem's claim: *the pool alert would have fired 10-15
//! minutes before customer impact*.
//!
//! ```text
//! cargo run --release --example incident_replay
//! cargo run --release --example incident_replay -- --ramp burst
//! cargo run --release --example incident_replay -- --real
//! cargo run --release --features postgres --example incident_replay -- --db postgres://postgres@127.0.0.1:5432/test
//! ```
//!
//! A pool of 50; baseline traffic keeps about a third of it busy with 200 ms
//! responses; the campaign's 3x ramp starts at 14:15. Every request
//! acquires a connection from the guarded pool and holds it for its 200 ms
//! (the database work). The guard runs the post-mortem's default rules next
//! to the old alert (P50 > 1000 ms). Printed: the timeline in incident
//! time, when customer impact began (P95 over the 500 ms target, or the
//! first 504), the lead time, and a second pass with protection on. A
//! chart (SVG) goes to `target/incident-replay/` (`--out`).
//!
//! **By default the replay is exact**: the traffic is served by the model
//! pool ([`poolguard::sim::SimPool`], a FIFO pool of 50 with no database)
//! on tokio's paused clock, in real incident time at full speed, so every
//! run on every machine prints the same timeline, the one in the README
//! (the integration test checks the same run). `--real` (or `--db URL`)
//! serves it from a real sqlx pool instead (SQLite in memory unless `--db`),
//! each request running `SELECT 1`, in compressed wall time (one incident
//! minute a second, `--minute-ms`; the guard's `time_scale`): what a real
//! pool shows, with the machine's scheduling lag printed beside it,
//! because on a busy machine the scheduler, not the pool, can decide when
//! latency rises.
//!
//! Options: `--real`, `--db URL` (or `DATABASE_URL` with `--real`),
//! `--minute-ms N` (with `--real`), `--ramp linear|burst`, `--from HH:MM`,
//! `--until HH:MM`, `--no-protected`, `--out DIR`, `--quiet`.

mod chart;
mod replay;

use std::path::PathBuf;
use std::time::Duration;

use poolguard::rules::POOL_RULE;
use poolguard::{AlertState, Severity, Signal};
use replay::{fmt_clock, Clock, Config, Pass, Ramp, Scenario, OLD_ALERT};

struct Args {
    cfg: Config,
    /// A real sqlx pool in compressed wall time instead of the model pool
    /// on the paused clock.
    real: bool,
    /// Swap in a pool of 150 at 14:42 (the post-mortem's emergency fix).
    mitigate: bool,
    db: Option<String>,
    protected: bool,
    out: PathBuf,
}

fn parse_clock(s: &str) -> Option<Clock> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then(|| replay::at(h, m))
}

const USAGE: &str = "\
usage: incident_replay [--real] [--db URL] [--minute-ms N] [--ramp linear|burst]
                       [--scenario incident|slow-statement|leak] [--mitigate]
                       [--from HH:MM] [--until HH:MM] [--no-protected] [--out DIR] [--quiet]
  --real          serve from a real sqlx pool in compressed wall time (default: the model
                  pool on tokio's paused clock, exact and the same on every machine)
  --db URL        postgres://... or mysql://... (implies --real; with --real the default is
                  DATABASE_URL, else SQLite in memory)
  --minute-ms N   with --real: wall milliseconds per incident minute (default 1000)
  --ramp          linear: 1x at 14:15 to 3x at 14:38 (default); burst: 2.4x by 14:18, then 3x
  --scenario      why the pool fills: incident (default; the ramp, the database slowing as
                  the pool fills), slow-statement (flat traffic, holds 200 -> 500 ms from 14:15),
                  leak (flat traffic, a connection never returned every 30 s from 14:15)
  --mitigate      swap in a pool of 150 at 14:42, as the post-mortem's emergency fix
                  (the replay then runs until 14:55 unless --until says otherwise)
  --from, --until replay window (default 13:50-14:45; the traffic anomaly needs 20 minutes)
  --no-protected  skip the second pass with protection on
  --out DIR       where the chart goes (default target/incident-replay)";

fn args() -> Result<Args, String> {
    let mut a = Args {
        cfg: Config::default(),
        real: false,
        mitigate: false,
        db: None,
        protected: true,
        out: PathBuf::from("target/incident-replay"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--db" => {
                a.db = Some(value()?);
                a.real = true;
            }
            "--real" => a.real = true,
            "--minute-ms" => {
                let v = value()?;
                let ms: u64 = v.parse().map_err(|_| format!("--minute-ms {v}"))?;
                if !(50..=60_000).contains(&ms) {
                    return Err(format!("--minute-ms {ms}: must be in 50..=60000"));
                }
                a.cfg.minute = Duration::from_millis(ms);
            }
            "--ramp" => {
                let v = value()?;
                a.cfg.ramp = Ramp::parse(&v).ok_or(format!("--ramp {v}: linear|burst"))?;
            }
            "--mitigate" => a.mitigate = true,
            "--scenario" => {
                let v = value()?;
                a.cfg.scenario = Scenario::parse(&v)
                    .ok_or(format!("--scenario {v}: incident|slow-statement|leak"))?;
            }
            "--from" => {
                let v = value()?;
                a.cfg.from = parse_clock(&v).ok_or(format!("--from {v}: HH:MM"))?;
            }
            "--until" => {
                let v = value()?;
                a.cfg.until = parse_clock(&v).ok_or(format!("--until {v}: HH:MM"))?;
            }
            "--no-protected" => a.protected = false,
            "--out" => a.out = PathBuf::from(value()?),
            "--quiet" => a.cfg.progress = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if a.real {
        a.db = a.db.or_else(|| std::env::var("DATABASE_URL").ok());
    } else if std::env::args().any(|x| x == "--minute-ms") {
        return Err("--minute-ms compresses wall time: it needs --real".into());
    } else {
        // Real incident time on the paused clock: waiting costs nothing.
        a.cfg.minute = Duration::from_secs(60);
        a.cfg.simulated = true;
    }
    if a.mitigate && !std::env::args().any(|x| x == "--until") {
        a.cfg.until = replay::at(14, 55);
    }
    if a.cfg.until <= a.cfg.from {
        return Err("--until must be after --from".into());
    }
    a.cfg.protected_from = a.cfg.protected_from.max(a.cfg.from);
    if a.cfg.from > replay::at(13, 55) {
        eprintln!(
            "note: the traffic anomaly needs 20 minutes of baseline before 14:15; \
             from {} it cannot fire",
            replay::fmt_clock(a.cfg.from)
        );
    }
    Ok(a)
}

/// Runs both passes on a fresh pool each.
async fn run_on(
    url: &str,
    cfg: &Config,
    protected: bool,
    mitigate: bool,
) -> Result<(Pass, Option<Pass>), Box<dyn std::error::Error>> {
    let n = cfg.pool_size;
    // sqlx's own acquire timeout at 30 incident seconds: the app's 5 s
    // request timeout cuts requests off first.
    let acquire = cfg.wall(Duration::from_secs(30));
    macro_rules! passes {
        ($db:ty) => {{
            let connect = |n: u32| async move {
                sqlx::pool::PoolOptions::<$db>::new()
                    // sqlx's default ping before each acquire made the
                    // PostgreSQL pool stop serving under the unprotected
                    // pass's acquire-timeout storm (README, "INC-EX3,
                    // replayed"); without it the pool keeps serving.
                    .test_before_acquire(false)
                    .max_connections(n)
                    .min_connections(n)
                    .acquire_timeout(acquire)
                    .connect(url)
                    .await
            };
            let larger = || async {
                if mitigate {
                    Ok::<_, sqlx::Error>(Some(connect(150).await?))
                } else {
                    Ok(None)
                }
            };
            let first =
                replay::run_pass_with::<$db>(connect(n).await?, larger().await?, cfg, false)
                    .await?;
            let second = if protected {
                Some(
                    replay::run_pass_with::<$db>(connect(n).await?, larger().await?, cfg, true)
                        .await?,
                )
            } else {
                None
            };
            Ok((first, second))
        }};
    }
    if url.starts_with("postgres") {
        passes!(sqlx::Postgres)
    } else if url.starts_with("mysql") || url.starts_with("mariadb") {
        passes!(sqlx::MySql)
    } else {
        passes!(sqlx::Sqlite)
    }
}

/// Both passes on the model pool (the pools only size the models:
/// `connect_lazy` opens nothing).
async fn run_model(
    cfg: &Config,
    protected: bool,
    mitigate: bool,
) -> Result<(Pass, Option<Pass>), Box<dyn std::error::Error>> {
    let model = |n: u32| {
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(n)
            .acquire_timeout(cfg.wall(Duration::from_secs(30)))
            .connect_lazy("sqlite::memory:")
    };
    let larger = || -> Result<_, sqlx::Error> { mitigate.then(|| model(150)).transpose() };
    let first = replay::run_pass_with(model(cfg.pool_size)?, larger()?, cfg, false).await?;
    let second = if protected {
        Some(replay::run_pass_with(model(cfg.pool_size)?, larger()?, cfg, true).await?)
    } else {
        None
    };
    Ok((first, second))
}

fn value(m: &replay::Mark) -> String {
    let Some(v) = m.value else {
        return String::new();
    };
    match m.signal {
        Signal::Utilization | Signal::Demand => format!("{:.0}%", v * 100.0),
        Signal::ExhaustionEta => format!("ETA {:.1} min", v / 60_000.0),
        Signal::TrafficAnomaly => format!("z = {v:.1}"),
        s if s.time_dimension() == 1 => format!("{v:.0} ms"),
        _ => format!("{v:.2}"),
    }
}

fn describe(m: &replay::Mark) -> String {
    let name = if m.rule == OLD_ALERT {
        "OLD ALERT (P50 > 1000 ms)".to_string()
    } else {
        format!("{} {}", m.rule, m.severity)
    };
    let state = match m.state {
        AlertState::Firing => "FIRING".to_string(),
        s => s.to_string(),
    };
    let pool = if m.larger { "[pool 150] " } else { "" };
    format!("{pool}{name} {state}")
}

fn print_timeline(cfg: &Config, pass: &Pass) {
    println!("\n{:<10}{:<52}value", "time", "event");
    // Firing and resolved; of the pending marks only those that led to a
    // firing (an instantaneous crossing starts a hold the next tick's mean
    // may end, so a busy pool goes pending and back many times).
    let next_of = |i: usize| {
        let m = &pass.marks[i];
        pass.marks[i + 1..]
            .iter()
            .find(|n| n.rule == m.rule && n.severity == m.severity)
            .map(|n| n.state)
    };
    let mut lines: Vec<(Clock, String, String)> = Vec::new();
    for (i, m) in pass.marks.iter().enumerate() {
        let shown = match m.state {
            AlertState::Firing | AlertState::Resolved => true,
            AlertState::Pending => next_of(i) == Some(AlertState::Firing),
            _ => false,
        };
        if !shown {
            continue;
        }
        lines.push((m.at, describe(m), value(m)));
        // Why the pool fills, under each firing pool rule.
        if let (AlertState::Firing, Some(d)) = (m.state, &m.diagnosis) {
            lines.push((m.at, format!("  why: {d}"), String::new()));
        }
    }
    lines.push((
        pass.from,
        "replay starts, baseline traffic".into(),
        String::new(),
    ));
    let start = match cfg.scenario {
        Scenario::Incident => "campaign traffic starts (3x by 14:38)",
        Scenario::SlowStatement => "a statement slows (holds 200 -> 500 ms by 14:25)",
        Scenario::Leak => "a connection leaks every 30 s",
    };
    lines.push((replay::at(14, 15), start.into(), String::new()));
    if let Some(t) = pass.impact {
        lines.push((
            t,
            ">>> CUSTOMER IMPACT (P95 > 500 ms or first 504)".into(),
            String::new(),
        ));
    }
    if pass.mitigated {
        lines.push((
            replay::MITIGATION,
            "mitigation: requests go to a pool of 150".into(),
            String::new(),
        ));
    }
    lines.push((cfg.until, "replay ends".into(), String::new()));
    // Stable: a diagnosis stays under its alert.
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (t, what, v) in lines {
        if what.starts_with("  why:") {
            println!("{:<10}{what}", "");
        } else {
            println!("{:<10}{what:<52}{v}", fmt_clock(t));
        }
    }
}

/// The summary line.
fn summary(pass: &Pass) -> String {
    let Some(impact) = pass.impact else {
        return "No customer impact in this replay (P95 stayed under 500 ms, no 504).".into();
    };
    let relative = |t: Option<Clock>| match t {
        None => "never fired".to_string(),
        Some(t) if t <= impact => format!("{:.1} min before impact", impact - t),
        Some(t) => format!("{:.1} min after impact", t - impact),
    };
    let first = pass.first_pool_warning();
    let name = first.map_or(String::new(), |m| format!(" ({} {})", m.rule, m.severity));
    let eighty = pass.first(POOL_RULE, Severity::Warning, AlertState::Firing);
    let old = pass.first(OLD_ALERT, Severity::Critical, AlertState::Firing);
    format!(
        "Customer impact at {}. First pool warning{name}: {}. \
         The post-mortem's 80%-for-5-min rule alone: {}. Old alert (P50 > 1000 ms): {}.",
        fmt_clock(impact),
        relative(first.map(|m| m.at)),
        relative(eighty),
        relative(old),
    )
}

fn print_protection(unprotected: &Pass, protected: &Pass) {
    let since = protected.from;
    let (u, p) = (unprotected.tally(since), protected.tally(since));
    println!(
        "\nProtection: the same traffic from {} with the circuit breaker and load shedding on \
         (query timeouts are set too; the replay's work is hold time, not slow statements, \
         so they never trigger)",
        fmt_clock(since)
    );
    println!("{:<34}{:>14}{:>14}", "", "unprotected", "protected");
    let row = |name: &str, a: String, b: String| println!("{name:<34}{a:>14}{b:>14}");
    row("requests", u.requests.to_string(), p.requests.to_string());
    row("succeeded", u.ok.to_string(), p.ok.to_string());
    row(
        "timed out (504 after 5 s)",
        u.gateway_timeouts.to_string(),
        p.gateway_timeouts.to_string(),
    );
    row(
        "failed fast (503, at once)",
        u.failed_fast.to_string(),
        p.failed_fast.to_string(),
    );
    row("other errors", u.errors.to_string(), p.errors.to_string());
    row(
        "P95 of successful requests",
        format!("{:.0} ms", u.p95_ok_ms),
        format!("{:.0} ms", p.p95_ok_ms),
    );
    row(
        "P95 of all answered (no 503s)",
        format!("{:.0} ms", u.p95_all_ms),
        format!("{:.0} ms", p.p95_all_ms),
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("incident_replay: {e}");
            std::process::exit(2);
        }
    };
    let runtime = if a.real {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    } else {
        // The model pool on the paused clock: one thread, time advances
        // only when every task waits, so the run is exact and repeatable.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()?
    };
    runtime.block_on(replay_main(a))
}

async fn replay_main(a: Args) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = &a.cfg;
    let url = a.db.clone().unwrap_or_else(|| "sqlite::memory:".into());
    let started = std::time::Instant::now();
    let backend = if a.real {
        format!(
            "{} in compressed wall time, 1 incident minute = {} ms",
            url.split('@').next_back().unwrap_or(&url),
            cfg.minute.as_millis()
        )
    } else {
        "the model pool on the paused clock (exact; --real for a real pool)".to_string()
    };
    println!(
        "INC-EX3 replay on {backend} - pool {}, {} req/s baseline ({:.0}% busy), {:?} ramp",
        cfg.pool_size,
        cfg.baseline_rate().round(),
        cfg.baseline_utilization * 100.0,
        cfg.ramp,
    );
    let (unprotected, protected) = if a.real {
        run_on(&url, cfg, a.protected, a.mitigate).await?
    } else {
        run_model(cfg, a.protected, a.mitigate).await?
    };
    println!(
        "median response before the ramp {:.0} ms (holds calibrated to {} ms); \
         default rules + the old alert",
        unprotected.baseline_ms,
        cfg.service.as_millis()
    );
    print_timeline(cfg, &unprotected);
    for pass in std::iter::once(&unprotected).chain(&protected) {
        if let Some(e) = &pass.first_error {
            println!("(first request error in this pass: {e})");
        }
        if let Some(lag) = pass.lag {
            // A busy machine's lag is request latency in compressed time.
            println!(
                "({} pass: {lag})",
                if pass.from == cfg.from {
                    "first"
                } else {
                    "protected"
                }
            );
        }
        if pass.events_missed > 0 {
            println!(
                "(the event stream fell behind: {} events missed, the timeline is incomplete)",
                pass.events_missed
            );
        }
    }
    println!("\n{}", summary(&unprotected));
    if let Some(p) = &protected {
        print_protection(&unprotected, p);
    }
    std::fs::create_dir_all(&a.out)?;
    let svg = a.out.join("incident_replay.svg");
    chart::draw(&unprotected, cfg, &svg)?;
    println!("\nchart: {}", svg.display());
    println!("done in {:.0?}", started.elapsed());
    Ok(())
}
