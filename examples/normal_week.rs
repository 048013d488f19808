//! A week of ordinary traffic through a guard with the default rules, on
//! the model pool and tokio's paused clock: how often would the defaults
//! page? Exact and the same on every machine (about a minute).
//!
//! ```text
//! cargo run --release --example normal_week
//! cargo run --release --example normal_week -- --campaign
//! cargo run --release --example normal_week -- --plain-batch
//! cargo run --release --example normal_week -- --blind-deploys
//! ```
//!
//! The service: a pool of 10, requests holding a connection for 2 s, 2.5
//! requests a second at the weekday peak (half the pool busy). Each weekday
//! has a night at 15 % of the peak, a morning ramp (06:00-09:00), a lunch
//! bump (+30 % at 12:45), an evening decline, three 90-second bursts of
//! 25 % more traffic at random times, a nightly batch job that holds one
//! connection for 10 minutes at 02:00 and says so (`expect_hold`, 15
//! minutes; `--plain-batch` leaves that out; leak detection is on at 5
//! minutes, as a team would set it), and two deploys (10:30 and 15:30: a
//! new guard, resuming what the old one learned; `--blind-deploys` starts
//! it blind). The weekend runs at half the weekday's traffic.
//! Each day's level varies by up to 10 %. Arrivals are Poisson.
//!
//! `--campaign` adds INC-EX3's campaign on Wednesday: from 14:15 the
//! traffic ramps to 3x by 14:38 and stays there until 15:00.
//!
//! Printed: every warning or critical that fired (rule, day, time), the
//! saturation events above normal, the leak reports, and with
//! `--campaign` when the traffic anomaly and the first pool warning fired
//! against the onset and the impact.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use poolguard::sim::SimPool;
use poolguard::{AlertState, Event, Learned, Level, PoolGuard, Severity};
use sqlx::Sqlite;
use tokio::time::Instant;

/// Seconds in a day.
const DAY: f64 = 86_400.0;
const POOL: u32 = 10;
const HOLD: Duration = Duration::from_secs(2);
/// Requests a second at the weekday peak (half the pool busy).
const PEAK: f64 = 0.5 * POOL as f64 / 2.0;
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
/// Deploys, seconds into a weekday.
const DEPLOYS: [f64; 2] = [10.5 * 3600.0, 15.5 * 3600.0];
/// The campaign on Wednesday (day 2), seconds into the day.
const CAMPAIGN: (f64, f64, f64) = (14.25 * 3600.0, 14.0 * 3600.0 + 38.0 * 60.0, 15.0 * 3600.0);

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

/// Smooth step from 0 to 1 over `[a, b]`.
fn ease(t: f64, a: f64, b: f64) -> f64 {
    let x = ((t - a) / (b - a)).clamp(0.0, 1.0);
    0.5 - 0.5 * (std::f64::consts::PI * x).cos()
}

/// The week's traffic.
struct Shape {
    /// Each day's level (1 +- 10 %).
    level: [f64; 7],
    /// Each day's bursts: start, seconds into the day.
    bursts: [[f64; 3]; 7],
    campaign: bool,
}

impl Shape {
    fn new(rng: &mut Rng, campaign: bool) -> Self {
        let mut level = [1.0; 7];
        let mut bursts = [[0.0; 3]; 7];
        for d in 0..7 {
            level[d] = 0.9 + 0.2 * rng.unit();
            for b in &mut bursts[d] {
                *b = (7.0 + 14.0 * rng.unit()) * 3600.0;
            }
        }
        Self {
            level,
            bursts,
            campaign,
        }
    }

    /// Requests a second at `t` seconds into the week.
    fn rate(&self, t: f64) -> f64 {
        let d = ((t / DAY) as usize).min(6);
        let s = t - d as f64 * DAY;
        let h = 3600.0;
        let day = 0.15 + 0.85 * ease(s, 6.0 * h, 9.0 * h)
            - 0.55 * ease(s, 17.0 * h, 21.0 * h)
            - 0.15 * ease(s, 21.0 * h, 24.0 * h);
        let lunch = 1.0 + 0.3 * (ease(s, 12.0 * h, 12.75 * h) - ease(s, 12.75 * h, 13.5 * h));
        let burst = if self.bursts[d].iter().any(|b| (*b..b + 90.0).contains(&s)) {
            1.25
        } else {
            1.0
        };
        let weekend = if d >= 5 { 0.5 } else { 1.0 };
        let campaign = if self.campaign && d == 2 {
            let (from, full, until) = CAMPAIGN;
            if (from..until).contains(&s) {
                1.0 + 2.0 * ((s - from) / (full - from)).min(1.0)
            } else {
                1.0
            }
        } else {
            1.0
        };
        PEAK * self.level[d] * day * lunch * burst * weekend * campaign
    }
}

/// One alert, saturation change or leak report, in week seconds.
#[derive(Debug, Clone)]
struct Seen {
    at: f64,
    what: String,
    severity: Option<Severity>,
    rule: Option<String>,
}

fn clock(t: f64) -> String {
    let d = ((t / DAY) as usize).min(6);
    let s = (t - d as f64 * DAY) as u64;
    format!(
        "{} {:02}:{:02}:{:02}",
        DAYS[d],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn build(learned: Option<Learned>) -> Result<SimPool<Sqlite>, Box<dyn std::error::Error>> {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(POOL)
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy("sqlite::memory:")?;
    let builder = PoolGuard::builder(pool)
        .name("week")
        .leak_detection(Duration::from_secs(300));
    let builder = match learned {
        Some(l) => builder.resume(l),
        None => builder,
    };
    Ok(builder.build_sim()?)
}

/// Listens to one guard's events until it is dropped.
fn listen(sim: &SimPool<Sqlite>, week0: Instant, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut events = sim.guard().events();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            let at = week0.elapsed().as_secs_f64();
            let s = match e {
                Ok(Event::Alert(a))
                    if a.state == AlertState::Firing && a.severity >= Severity::Warning =>
                {
                    Seen {
                        at,
                        what: format!("{} {} fired ({:?})", a.rule, a.severity, a.value),
                        severity: Some(a.severity),
                        rule: Some(a.rule.to_string()),
                    }
                }
                Ok(Event::Saturation(l)) if l.level > Level::Normal => Seen {
                    at,
                    what: format!("saturation {}", l.level),
                    severity: None,
                    rule: None,
                },
                Ok(Event::Leak(l)) if !l.returned => Seen {
                    at,
                    what: format!("leak suspected, held {:?}", l.held_for),
                    severity: None,
                    rule: None,
                },
                _ => continue,
            };
            seen.lock().push(s);
        }
    });
}

async fn week(
    campaign: bool,
    expect_hold: bool,
    blind_deploys: bool,
) -> Result<Vec<Seen>, Box<dyn std::error::Error>> {
    let mut rng = Rng(0x5EED_2026);
    let shape = Shape::new(&mut rng, campaign);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let week0 = Instant::now();
    let mut sim = Arc::new(build(None)?);
    listen(&sim, week0, Arc::clone(&seen));
    let mut t = 0.0;
    let mut deploys: Vec<f64> = (0..5)
        .flat_map(|d| DEPLOYS.map(|s| d as f64 * DAY + s))
        .collect();
    let batches: Vec<f64> = (0..7).map(|d| d as f64 * DAY + 2.0 * 3600.0).collect();
    let mut next_batch = 0;
    let end = 7.0 * DAY;
    let mut last_day = usize::MAX;
    while t < end {
        // The next arrival of a Poisson process at the rate now (the rate
        // changes slowly against the gaps, bursts aside).
        t += -rng.unit().ln() / shape.rate(t).max(1e-3);
        tokio::time::sleep_until(week0 + Duration::from_secs_f64(t)).await;
        let day = (t / DAY) as usize;
        if day != last_day && day < 7 {
            last_day = day;
            eprintln!("  {} ...", DAYS[day]);
        }
        if deploys.first().is_some_and(|d| t >= *d) {
            deploys.remove(0);
            // The old guard hands the new one what it learned.
            let learned = (!blind_deploys).then(|| sim.guard().learned());
            sim = Arc::new(build(learned)?);
            listen(&sim, week0, Arc::clone(&seen));
        }
        if batches.get(next_batch).is_some_and(|b| t >= *b) {
            next_batch += 1;
            let sim = Arc::clone(&sim);
            tokio::spawn(async move {
                if let Ok(c) = sim.acquire().await {
                    if expect_hold {
                        // The job says it keeps the connection for a while.
                        c.expect_hold(Duration::from_secs(900));
                    }
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    drop(c);
                }
            });
        }
        let sim = Arc::clone(&sim);
        tokio::spawn(async move {
            if let Ok(c) = sim.acquire_within(Duration::from_secs(5)).await {
                tokio::time::sleep(HOLD).await;
                drop(c);
            }
        });
    }
    let mut seen = seen.lock().clone();
    seen.sort_by(|a, b| a.at.total_cmp(&b.at));
    Ok(seen)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let campaign = std::env::args().any(|a| a == "--campaign");
    // `--plain-batch`: the batch job does not say it holds on purpose.
    let expect_hold = !std::env::args().any(|a| a == "--plain-batch");
    // `--blind-deploys`: a deploy's new guard starts without the old one's history.
    let blind_deploys = std::env::args().any(|a| a == "--blind-deploys");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    let started = std::time::Instant::now();
    let seen = rt.block_on(week(campaign, expect_hold, blind_deploys))?;
    println!(
        "A week of ordinary traffic{} on the model pool (pool {POOL}, holds {HOLD:?}, peak {PEAK} req/s), default rules:",
        if campaign { " with INC-EX3's campaign on Wednesday" } else { "" }
    );
    for s in &seen {
        println!("  {}  {}", clock(s.at), s.what);
    }
    let pages = seen.iter().filter(|s| s.severity.is_some()).count();
    let levels = seen
        .iter()
        .filter(|s| s.what.starts_with("saturation"))
        .count();
    let leaks = seen.iter().filter(|s| s.what.starts_with("leak")).count();
    let onset = 2.0 * DAY + CAMPAIGN.0;
    let outside = seen
        .iter()
        .filter(|s| {
            s.severity.is_some()
                && !(campaign && (onset..2.0 * DAY + CAMPAIGN.2 + 600.0).contains(&s.at))
        })
        .count();
    println!(
        "warnings and criticals: {pages} ({outside} outside the campaign); saturation events above normal: {levels}; leak reports: {leaks}"
    );
    if campaign {
        let first = |rule: &str| {
            seen.iter()
                .find(|s| s.at >= onset && s.rule.as_deref() == Some(rule))
                .map(|s| (s.at - onset) / 60.0)
        };
        println!(
            "campaign at Wed 14:15: traffic_anomaly {:?} min after onset, exhaustion_forecast {:?}, pool_utilization {:?}",
            first("traffic_anomaly"),
            first("exhaustion_forecast"),
            first("pool_utilization")
        );
    }
    println!("done in {:.0?}", started.elapsed());
    Ok(())
}
