//! The replay engine: INC-EX3's traffic against a real guarded sqlx pool in
//! compressed time. `main.rs` prints and charts what this returns;
//! `tests/it/incident_replay.rs` includes this file and checks the order of
//! events.
//!
//! Two backends: a real sqlx pool (the example; wall time, so a busy
//! machine's scheduling lag becomes incident latency, which `Pass::lag`
//! measures), or the same traffic on a [`SimPool`] (no database, a FIFO
//! model of the pool) on tokio's paused clock, where the run is exact and
//! does not depend on the machine (`Config::simulated`; the integration
//! test's verdict on order and lead time).
//!
//! Time: the guard runs with `time_scale(k)`, k = one incident minute / the
//! wall time given to it, so its rules keep the post-mortem's incident-time
//! holds and thresholds. Everything here is converted back to incident time
//! (clock minutes since midnight, latencies in incident milliseconds).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use parking_lot::Mutex;
use poolguard::rules::{FORECAST_RULE, POOL_RULE};
use poolguard::sim::SimPool;
use poolguard::{
    AlertState, BreakerConfig, Cause, Comparison, Diagnosis, Event, PoolGuard, Quantile, Rule,
    Severity, ShedConfig, Signal, Snapshot,
};
use sqlx::{Database, Executor, Pool};
use tokio::time::Instant;

/// Incident clock time: minutes since midnight (14:15 is 855.0).
pub type Clock = f64;

/// `hh:mm` as a clock time.
pub const fn at(h: u32, m: u32) -> Clock {
    (h * 60 + m) as f64
}

/// `14:23:05`.
pub fn fmt_clock(t: Clock) -> String {
    let s = (t * 60.0).round() as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The campaign's traffic, as a multiple of the baseline rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ramp {
    /// The post-mortem's timeline read plainly: a straight line from 1x at
    /// 14:15 (spike begins) to 3x at 14:38 (3x traffic). With a third of
    /// the pool busy at 1x (34 %), demand reaches 100 % at about 14:37;
    /// the post-mortem found the pool at 50/50 at 14:35.
    Linear,
    /// A launch burst to 2.4x within three minutes of 14:15, then a steady
    /// climb to 3x at 14:38 (our shape, not the post-mortem's).
    Burst,
}

impl Ramp {
    /// Traffic multiple at `t`.
    pub fn multiple(self, t: Clock) -> f64 {
        let lerp = |t0: Clock, t1: Clock, a: f64, b: f64| a + (b - a) * ((t - t0) / (t1 - t0));
        let (start, burst_end, full) = (at(14, 15), at(14, 18), at(14, 38));
        if t < start {
            return 1.0;
        }
        if t >= full {
            return 3.0;
        }
        match self {
            Ramp::Linear => lerp(start, full, 1.0, 3.0),
            Ramp::Burst if t < burst_end => lerp(start, burst_end, 1.0, 2.4),
            Ramp::Burst => lerp(burst_end, full, 2.4, 3.0),
        }
    }

    /// `linear` or `burst`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "linear" => Some(Ramp::Linear),
            "burst" => Some(Ramp::Burst),
            _ => None,
        }
    }
}

/// Why the pool fills in a replay: each scenario is one cause the guard's
/// diagnosis must tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// INC-EX3: traffic ramps to 3x from 14:15 (`Ramp`), and the database
    /// slows as concurrency grows (200 ms at the baseline's third of the
    /// pool, 250 ms with the pool full; queueing for the full pool does
    /// the rest), so latency rises from 14:15.
    Incident,
    /// Flat traffic; from 14:15 a statement slows, holds grow from 200 ms
    /// to 500 ms by 14:25 (a lock, a plan change).
    SlowStatement,
    /// Flat traffic; from 14:15 one request every 30 incident seconds
    /// never returns its connection.
    Leak,
}

impl Scenario {
    /// `incident`, `slow-statement` or `leak`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "incident" => Some(Scenario::Incident),
            "slow-statement" => Some(Scenario::SlowStatement),
            "leak" => Some(Scenario::Leak),
            _ => None,
        }
    }

    /// Traffic multiple at `t`.
    pub fn multiple(self, ramp: Ramp, t: Clock) -> f64 {
        match self {
            Scenario::Incident => ramp.multiple(t),
            Scenario::SlowStatement | Scenario::Leak => 1.0,
        }
    }

    /// How much longer than the service time a request holds its
    /// connection at `t` with `busy` of the pool in use (`base`: the
    /// baseline's share).
    pub fn hold_factor(self, t: Clock, busy: f64, base: f64) -> f64 {
        let start = at(14, 15);
        match self {
            // 1 + 0.25 x^2, x the share of the pool above the baseline's:
            // 200 ms at the baseline, 225 ms at 80 %, 250 ms full. A
            // steeper curve tips the baseline itself over: at 85 requests
            // a second a hold that grows faster than 1 / 85 s per busy
            // connection fills the pool from any burst (measured with 3 x^2:
            // the pool filled at 13:59, before the campaign).
            Scenario::Incident => {
                let x = ((busy - base) / (1.0 - base)).clamp(0.0, 1.0);
                1.0 + 0.1 * x * x
            }
            Scenario::SlowStatement if t >= start => 1.0 + 1.5 * ((t - start) / 10.0).min(1.0),
            _ => 1.0,
        }
    }
}

/// What to replay.
#[derive(Clone, Debug)]
pub struct Config {
    /// Wall time of one incident minute (default 1 s).
    pub minute: Duration,
    /// Replay start (default 13:50: the traffic baseline needs 20 minutes).
    pub from: Clock,
    /// Replay end (default 14:45).
    pub until: Clock,
    /// Start of the protected pass (default 14:10; it needs no warm-up).
    pub protected_from: Clock,
    /// Traffic shape (the incident's).
    pub ramp: Ramp,
    /// Why the pool fills.
    pub scenario: Scenario,
    /// Pool size (the post-mortem's 50).
    pub pool_size: u32,
    /// Share of the pool busy at baseline traffic ("about a third").
    pub baseline_utilization: f64,
    /// Time a request holds its connection, incident time (the post-mortem's
    /// 200 ms responses).
    pub service: Duration,
    /// The app's request timeout, incident time: a request still waiting
    /// for a connection then is answered 504 (its waiter is dropped).
    pub gateway_timeout: Duration,
    /// Print a progress line every incident minute (stderr).
    pub progress: bool,
    /// Seed of the arrival process.
    pub seed: u64,
    /// Serve from a [`SimPool`] (no database; meant for tokio's paused
    /// clock) instead of the pool given to [`run_pass`], which then only
    /// sizes the model (`connect_lazy` will do).
    pub simulated: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            minute: Duration::from_secs(1),
            from: at(13, 50),
            until: at(14, 45),
            protected_from: at(14, 10),
            ramp: Ramp::Linear,
            scenario: Scenario::Incident,
            pool_size: 50,
            baseline_utilization: 0.34,
            service: Duration::from_millis(200),
            gateway_timeout: Duration::from_secs(5),
            progress: true,
            seed: 0x1BC_0E3,
            simulated: false,
        }
    }
}

impl Config {
    /// Compression factor: incident seconds per wall second.
    pub fn k(&self) -> f64 {
        60.0 / self.minute.as_secs_f64()
    }

    /// Wall duration of an incident duration.
    pub fn wall(&self, incident: Duration) -> Duration {
        incident.div_f64(self.k())
    }

    /// Baseline arrivals per incident second (Little's law: busy = rate x
    /// service).
    pub fn baseline_rate(&self) -> f64 {
        self.baseline_utilization * f64::from(self.pool_size) / self.service.as_secs_f64()
    }
}

/// When the post-mortem's emergency fix swapped in a pool of 150.
pub const MITIGATION: Clock = at(14, 42);

/// The post-mortem's old alert: P50 latency above 1000 ms (over the last
/// minute, no hold: the most favourable reading for it).
pub const OLD_ALERT: &str = "old_alert_p50";

/// One rule's state change, in incident time.
#[derive(Clone, Debug)]
pub struct Mark {
    pub at: Clock,
    pub rule: String,
    pub signal: Signal,
    pub severity: Severity,
    pub state: AlertState,
    /// The value in incident units (ratios as they are, seconds as ms).
    pub value: Option<f64>,
    /// The guard's diagnosis when the rule changed state (pool rules, while
    /// the pool is under pressure).
    pub diagnosis: Option<Diagnosis>,
    /// The pool it is about: false for the original, true for the larger
    /// one swapped in at [`MITIGATION`].
    pub larger: bool,
}

impl Mark {
    /// The diagnosed cause, if any.
    #[allow(dead_code)] // read by tests/it/incident_replay.rs
    pub fn cause(&self) -> Option<Cause> {
        self.diagnosis.as_ref().map(|d| d.cause)
    }
}

/// The pool every few incident seconds.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: Clock,
    pub utilization: f64,
    pub demand: f64,
    pub waiters: u32,
    /// P95 of the requests completed since the previous sample, incident ms.
    pub p95_ms: Option<f64>,
}

/// One pass's results.
#[derive(Clone, Debug)]
pub struct Pass {
    pub from: Clock,
    pub marks: Vec<Mark>,
    pub samples: Vec<Sample>,
    /// When the trailing minute's P95 first went over 500 ms, or the first
    /// 504, whichever is first.
    pub impact: Option<Clock>,
    /// Median response before the ramp, incident ms.
    pub baseline_ms: f64,
    /// Every request, in completion order.
    pub done: Vec<Done>,
    /// The first error other than a timeout or a fast refusal, if any.
    pub first_error: Option<String>,
    /// Events the mark collector fell behind on (0: the timeline is whole).
    pub events_missed: u64,
    /// Connections the calibration took before the replay began.
    #[allow(dead_code)] // read by tests/it/incident_replay.rs
    pub calibration_acquires: u64,
    /// The guard's counts once every request has finished.
    #[allow(dead_code)] // read by tests/it/incident_replay.rs
    pub end: Snapshot,
    /// How late this process's timers fired (wall time only).
    pub lag: Option<Lag>,
    /// A pool of 150 took the requests from [`MITIGATION`] on.
    pub mitigated: bool,
}

/// How late a 1 ms timer fired during a pass beyond tokio's own rounding
/// (it fires on the first millisecond tick after its deadline, so up to
/// 2 ms after it was set), in incident ms: the machine's scheduling lag,
/// which wall-time replays turn into request latency (a 5 ms lag is 300
/// incident ms at one second a minute).
#[derive(Clone, Copy, Debug, Default)]
pub struct Lag {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Share of the pass's incident minutes with a lag over 300 incident ms.
    pub slow_share: f64,
}

impl std::fmt::Display for Lag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "scheduling lag p50 {:.0} / p99 {:.0} / max {:.0} incident ms, {:.0}% of minutes over 300 ms",
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.slow_share * 100.0
        )
    }
}

/// Request outcomes over part of a pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub requests: u64,
    pub ok: u64,
    /// Cut off at the gateway timeout (504).
    pub gateway_timeouts: u64,
    /// Refused at once by the breaker or load shedding (503).
    pub failed_fast: u64,
    /// Anything else that failed (acquire timeouts, database errors).
    pub errors: u64,
    /// P95 of the successful requests, incident ms.
    pub p95_ok_ms: f64,
    /// P95 of every answered request (504s at the timeout), incident ms.
    pub p95_all_ms: f64,
}

impl Pass {
    /// When `rule`/`severity` first went to `state`.
    pub fn first(&self, rule: &str, severity: Severity, state: AlertState) -> Option<Clock> {
        self.marks
            .iter()
            .find(|m| m.rule == rule && m.severity == severity && m.state == state)
            .map(|m| m.at)
    }

    /// Outcomes of the requests completed from `since` on.
    pub fn tally(&self, since: Clock) -> Tally {
        let part: Vec<&Done> = self.done.iter().filter(|d| d.at >= since).collect();
        let count = |s: u16| part.iter().filter(|d| d.status == s).count() as u64;
        let mut ok: Vec<f64> = part
            .iter()
            .filter(|d| d.status == 200)
            .map(|d| d.ms)
            .collect();
        let mut all: Vec<f64> = part
            .iter()
            .filter(|d| d.status != 503)
            .map(|d| d.ms)
            .collect();
        Tally {
            requests: part.len() as u64,
            ok: count(200),
            gateway_timeouts: count(504),
            failed_fast: count(503),
            errors: count(500),
            p95_ok_ms: percentile(&mut ok, 0.95).unwrap_or(0.0),
            p95_all_ms: percentile(&mut all, 0.95).unwrap_or(0.0),
        }
    }

    /// The first pool warning: the first firing of a rule on the pool, the
    /// utilization rules (> 80 % for 5 min, > 90 % for 2 min) or the
    /// exhaustion forecast (ETA < 15 min for 1 min).
    pub fn first_pool_warning(&self) -> Option<&Mark> {
        self.marks.iter().find(|m| {
            m.state == AlertState::Firing && (m.rule == POOL_RULE || m.rule == FORECAST_RULE)
        })
    }
}

/// One finished request: when it completed (incident clock), how long it
/// took (incident ms), its status.
#[derive(Clone, Copy, Debug)]
pub struct Done {
    pub at: Clock,
    pub ms: f64,
    pub status: u16,
    /// It got a connection (whatever happened after).
    #[allow(dead_code)] // read by tests/it/incident_replay.rs
    pub acquired: bool,
}

/// Where requests get their connection.
enum Backend<DB: Database> {
    Real(PoolGuard<DB>),
    Sim(Arc<SimPool<DB>>),
}

impl<DB: Database> Clone for Backend<DB> {
    fn clone(&self) -> Self {
        match self {
            Backend::Real(g) => Backend::Real(g.clone()),
            Backend::Sim(s) => Backend::Sim(Arc::clone(s)),
        }
    }
}

impl<DB> Backend<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    fn guard(&self) -> &PoolGuard<DB> {
        match self {
            Backend::Real(g) => g,
            Backend::Sim(s) => s.guard(),
        }
    }

    /// One request's database work: a connection within `gateway`, then
    /// (real) `SELECT 1` and the rest of the hold, or (model) the hold.
    /// `Ok(None)`: no connection within `gateway`.
    async fn serve(
        &self,
        gateway: Duration,
        hold: impl FnOnce() -> Duration,
        acquired: &mut bool,
        work: &Work,
    ) -> Result<Option<()>, poolguard::Error> {
        match self {
            Backend::Real(g) => {
                let Ok(conn) = tokio::time::timeout(gateway, g.acquire_detailed()).await else {
                    return Ok(None);
                };
                let mut conn = conn?;
                *acquired = true;
                let _busy = work.busy();
                (&mut *conn).execute("SELECT 1").await?;
                tokio::time::sleep(hold()).await;
            }
            Backend::Sim(s) => {
                let Ok(slot) = tokio::time::timeout(gateway, s.acquire()).await else {
                    return Ok(None);
                };
                let _slot = slot?;
                *acquired = true;
                let _busy = work.busy();
                tokio::time::sleep(hold()).await;
            }
        }
        Ok(Some(()))
    }

    /// A request that takes a connection and never gives it back (from
    /// its own call site, which the guard's diagnosis names).
    async fn leak(&self, work: &Work) -> Result<(), poolguard::Error> {
        match self {
            Backend::Real(g) => {
                let conn = g.acquire_detailed().await?;
                work.leaked.lock().push(Box::new(conn));
            }
            Backend::Sim(s) => {
                let slot = s.acquire().await?;
                work.leaked.lock().push(Box::new(slot));
            }
        }
        Ok(())
    }
}

/// The requests' shared state: how many hold a connection now, and the
/// connections the leak scenario never returns.
#[derive(Default)]
struct Work {
    holding: std::sync::atomic::AtomicU32,
    leaked: Mutex<Vec<Box<dyn std::any::Any + Send>>>,
}

/// Counts one request holding a connection while it lives.
struct Busy<'a>(&'a std::sync::atomic::AtomicU32);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Work {
    fn busy(&self) -> Busy<'_> {
        self.holding
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Busy(&self.holding)
    }

    fn busy_share(&self, pool: u32) -> f64 {
        f64::from(self.holding.load(std::sync::atomic::Ordering::Relaxed)) / f64::from(pool)
    }
}

/// The post-mortem's remedies on the protected pass, in compressed time
/// (the breaker's own clock is wall time, so its durations are scaled);
/// the unprotected pass as in the incident: no breaker (shadow mode only),
/// no shedding.
fn protection<DB: Database>(
    builder: poolguard::PoolGuardBuilder<DB>,
    cfg: &Config,
    protected: bool,
) -> poolguard::PoolGuardBuilder<DB> {
    if protected {
        builder
            .breaker(
                BreakerConfig::default()
                    .window(cfg.wall(Duration::from_secs(10)))
                    .slow_call_duration(cfg.wall(Duration::from_secs(2)))
                    .base_wait(cfg.wall(Duration::from_secs(5)))
                    .max_wait(cfg.wall(Duration::from_secs(60))),
            )
            .shed(ShedConfig::default().max_wait(cfg.wall(Duration::from_secs(1))))
            .query_timeout(cfg.wall(Duration::from_secs(2)))
    } else {
        builder
            .breaker(BreakerConfig::default().metrics_only(true))
            .shed(ShedConfig::disabled())
    }
}

/// Small deterministic generator (xorshift64*), so runs repeat.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

/// Runs one pass on `pool` (its size must be `cfg.pool_size`).
#[allow(dead_code)] // the example runs `run_pass_with`; tests run this
pub async fn run_pass<DB>(
    pool: Pool<DB>,
    cfg: &Config,
    protected: bool,
) -> Result<Pass, poolguard::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    run_pass_with(pool, None, cfg, protected).await
}

/// [`run_pass`], and from [`MITIGATION`] on the requests go to `larger`
/// (the post-mortem's emergency fix: a pool of 150 swapped in), guarded
/// the same way.
pub async fn run_pass_with<DB>(
    pool: Pool<DB>,
    larger: Option<Pool<DB>>,
    cfg: &Config,
    protected: bool,
) -> Result<Pass, poolguard::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let k = cfg.k();
    let from = if protected {
        cfg.protected_from
    } else {
        cfg.from
    };
    let label = if protected {
        "protected"
    } else {
        "unprotected"
    };
    let old_alert = Rule::new(
        OLD_ALERT,
        Signal::RequestLatency(Quantile::P50),
        Comparison::Above,
        1.0,
    )
    .severity(Severity::Critical)
    .window(Duration::from_secs(60))
    .min_samples(20);
    let build = |pool: Pool<DB>, name: String| -> Result<Backend<DB>, poolguard::Error> {
        let builder = PoolGuard::builder(pool)
            .name(name)
            .time_scale(k)
            .rule(old_alert.clone());
        let builder = protection(builder, cfg, protected);
        Ok(if cfg.simulated {
            Backend::Sim(Arc::new(builder.build_sim()?))
        } else {
            Backend::Real(builder.build()?)
        })
    };
    let backend = build(pool, format!("replay-{label}"))?;
    let swapped = match larger {
        Some(p) => Some(build(p, format!("replay-{label}-150"))?),
        None => None,
    };
    let guard = backend.guard().clone();
    let mitigated = swapped.is_some();

    // Calibrate the hold: tokio's timer rounds sleeps up to the millisecond,
    // which at 60x is 60 incident ms, so measure and compensate until a
    // baseline request (acquire, statement, hold) averages `service`. (The
    // model holds exactly what it is told: no calibration.)
    let target = cfg.wall(cfg.service);
    let mut hold = target;
    let mut baseline = target;
    let mut calibration_acquires = 0;
    for _ in 0..if cfg.simulated { 0 } else { 3 } {
        let n = 40;
        let t0 = Instant::now();
        for _ in 0..n {
            let mut conn = guard.acquire().await?;
            (&mut *conn).execute("SELECT 1").await?;
            tokio::time::sleep(hold).await;
        }
        calibration_acquires += u64::from(n);
        baseline = t0.elapsed() / n;
        let err = baseline.as_secs_f64() - target.as_secs_f64();
        hold = Duration::from_secs_f64((hold.as_secs_f64() - err).max(0.0));
    }
    if hold.is_zero() {
        eprintln!(
            "  [{label}] warning: a request without any hold already takes {:.0} incident ms \
             (> {} ms): the compression is too strong for this machine",
            baseline.as_secs_f64() * k * 1000.0,
            cfg.service.as_millis()
        );
    }

    let done: Arc<Mutex<Vec<Done>>> = Arc::new(Mutex::new(Vec::with_capacity(1 << 20)));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let wall0 = Instant::now();
    let sys0 = SystemTime::now();
    let clock = move |i: Instant| from + i.duration_since(wall0).as_secs_f64() * k / 60.0;

    // Alert marks, from the guards' event streams.
    let marks: Arc<Mutex<Vec<Mark>>> = Arc::default();
    let missed: Arc<std::sync::atomic::AtomicU64> = Arc::default();
    let simulated = cfg.simulated;
    let collect = |guard: &PoolGuard<DB>, larger: bool| {
        let mut events = guard.events();
        let marks = Arc::clone(&marks);
        let missed = Arc::clone(&missed);
        async move {
            while let Some(e) = events.next().await {
                let a = match e {
                    Ok(Event::Alert(a)) => a,
                    Ok(_) => continue,
                    Err(m) => {
                        missed.fetch_add(m.missed, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                };
                // Wall time stamps the event; on the paused clock the
                // stream delivers it at the instant it was published.
                let since = if simulated {
                    wall0.elapsed()
                } else {
                    a.at.duration_since(sys0).unwrap_or_default()
                };
                let unit = if a.signal.time_dimension() == 1 {
                    1000.0 * k
                } else {
                    1.0
                };
                marks.lock().push(Mark {
                    at: from + since.as_secs_f64() * k / 60.0,
                    rule: a.rule.to_string(),
                    signal: a.signal,
                    severity: a.severity,
                    state: a.state,
                    value: a.value.map(|v| v * unit),
                    diagnosis: a.snapshot.diagnosis.clone(),
                    larger,
                });
            }
        }
    };
    let marks_task = tokio::spawn(collect(&guard, false));
    let swapped_marks = swapped
        .as_ref()
        .map(|b| tokio::spawn(collect(b.guard(), true)));

    // Samples of the pool every 5 incident seconds, with a progress line.
    let sampler = {
        let guard = guard.clone();
        let larger = swapped.as_ref().map(|b| b.guard().clone());
        let done = Arc::clone(&done);
        let every = cfg.wall(Duration::from_secs(5));
        let (progress, until) = (cfg.progress, cfg.until);
        tokio::spawn(async move {
            let mut samples: Vec<Sample> = Vec::new();
            let mut seen = 0usize;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let now = clock(Instant::now());
                if now > until {
                    break;
                }
                let s = match &larger {
                    Some(l) if now >= MITIGATION => l.snapshot(),
                    _ => guard.snapshot(),
                };
                let mut ms: Vec<f64> = {
                    let d = done.lock();
                    let new = d[seen..].iter().map(|r| r.ms).collect();
                    seen = d.len();
                    new
                };
                let p95_ms = percentile(&mut ms, 0.95);
                samples.push(Sample {
                    at: now,
                    utilization: s.utilization,
                    demand: s.demand,
                    waiters: s.waiters,
                    p95_ms,
                });
                let whole_minute = samples.len().is_multiple_of(12);
                if progress && whole_minute {
                    let eta = guard.forecast().eta.map_or("-".into(), |d| {
                        format!("{:.1}min", d.as_secs_f64() * k / 60.0)
                    });
                    eprintln!(
                        "  [{label}] {}  pool {:>3.0}%  demand {:>3.0}%  waiters {:>4}  p95 {:>6}  eta {eta}",
                        fmt_clock(now),
                        s.utilization * 100.0,
                        s.demand * 100.0,
                        s.waiters,
                        p95_ms.map_or("-".into(), |v| format!("{v:.0}ms")),
                    );
                }
            }
            samples
        })
    };

    // How late timers fire: the machine's share of request latency.
    let lag_probe = (!cfg.simulated).then(|| {
        let until = cfg.until;
        tokio::spawn(async move {
            let tick = Duration::from_millis(1);
            let mut lags: Vec<(Clock, f64)> = Vec::new();
            loop {
                let t = Instant::now();
                if clock(t) > until {
                    break lags;
                }
                tokio::time::sleep(tick).await;
                let late = t.elapsed().saturating_sub(2 * tick);
                lags.push((clock(t), late.as_secs_f64() * k * 1000.0));
            }
        })
    });

    // Poisson arrivals at the ramp's rate, each a request task.
    let mut rng = Rng(cfg.seed ^ u64::from(protected));
    let base = cfg.baseline_rate() * k; // per wall second
    let gateway = cfg.wall(cfg.gateway_timeout);
    let end = wall0 + Duration::from_secs_f64((cfg.until - from) * 60.0 / k);
    let mut next = wall0;
    let mut tasks = tokio::task::JoinSet::new();
    let work = Arc::new(Work::default());
    let scenario = cfg.scenario;
    let (pool_size, base_share) = (cfg.pool_size, cfg.baseline_utilization);
    // The leak scenario: one request every 30 incident seconds from 14:15.
    let mut next_leak = at(14, 15);
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while next < end {
        if cfg.simulated {
            // The paused clock goes straight to the next arrival.
            tokio::time::sleep_until(next).await;
        } else {
            ticker.tick().await;
        }
        let now = Instant::now();
        while next <= now && next < end {
            let arrival = clock(next);
            let rate = base * scenario.multiple(cfg.ramp, arrival);
            next += Duration::from_secs_f64(-rng.unit().ln() / rate);
            let backend = match &swapped {
                Some(larger) if arrival >= MITIGATION => larger.clone(),
                _ => backend.clone(),
            };
            let done = Arc::clone(&done);
            let first_error = Arc::clone(&first_error);
            let work = Arc::clone(&work);
            if scenario == Scenario::Leak && arrival >= next_leak {
                next_leak += 0.5;
                tasks.spawn(async move {
                    if let Err(e) = backend.leak(&work).await {
                        first_error.lock().get_or_insert_with(|| e.to_string());
                    }
                });
                continue;
            }
            tasks.spawn(async move {
                let guard = backend.guard();
                // Latency counts from the task's first poll: the time it
                // waited for a worker thread is in it; the arrival loop's
                // own batching (arrivals are released once per 1 ms tick,
                // 60 incident ms at 1 s a minute) is not, being an artifact
                // of the generator, not of the service. Measured: counting
                // from the scheduled arrival put 40 incident ms on every
                // baseline request (median 242 ms instead of 200).
                let started = Instant::now();
                // The request timeout bounds the wait for a connection; a
                // request that got one finishes its work, as a server does
                // after its gateway gave up.
                let mut acquired = false;
                let hold_now = || {
                    let t = clock(Instant::now());
                    hold.mul_f64(scenario.hold_factor(t, work.busy_share(pool_size), base_share))
                };
                let status = match backend.serve(gateway, hold_now, &mut acquired, &work).await {
                    Ok(None) => 504,
                    Ok(Some(())) => 200,
                    Err(e) if e.is_rejected() => 503,
                    Err(e) => {
                        first_error.lock().get_or_insert_with(|| e.to_string());
                        500
                    }
                };
                let took = started.elapsed();
                // Past the request timeout the client already had its 504,
                // even if the work finished afterwards.
                let status = if status == 200 && took > gateway {
                    504
                } else {
                    status
                };
                guard.record_http("GET", "http", status, took.min(gateway));
                let ended = Instant::now();
                done.lock().push(Done {
                    at: clock(ended),
                    ms: took.as_secs_f64() * k * 1000.0,
                    status,
                    acquired,
                });
            });
        }
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let end = guard.snapshot();
    let samples = sampler.await.expect("sampler");
    let lag = match lag_probe {
        Some(probe) => Some(lag_summary(probe.await.expect("lag probe"))),
        None => None,
    };
    // Let the stream deliver the last evaluation's events, then stop it.
    tokio::time::sleep(cfg.wall(Duration::from_secs(2))).await;
    marks_task.abort();
    if let Some(t) = swapped_marks {
        t.abort();
    }
    let mut marks = std::mem::take(&mut *marks.lock());
    marks.sort_by(|a, b| a.at.total_cmp(&b.at));

    let done = std::mem::take(&mut *done.lock());
    let first_error = first_error.lock().take();
    // The baseline as served: the median of the requests before the ramp
    // (the calibration's own figure when the replay starts later).
    let mut before: Vec<f64> = done
        .iter()
        .filter(|d| d.at < at(14, 15) && d.status == 200)
        .map(|d| d.ms)
        .collect();
    let baseline_ms = percentile(&mut before, 0.5).unwrap_or(baseline.as_secs_f64() * k * 1000.0);
    Ok(Pass {
        from,
        marks,
        samples,
        impact: impact(&done),
        baseline_ms,
        done,
        first_error,
        events_missed: missed.load(std::sync::atomic::Ordering::Relaxed),
        calibration_acquires,
        end,
        lag,
        mitigated,
    })
}

fn lag_summary(lags: Vec<(Clock, f64)>) -> Lag {
    let mut ms: Vec<f64> = lags.iter().map(|&(_, l)| l).collect();
    let mut minutes: std::collections::BTreeMap<i64, bool> = Default::default();
    for &(at, l) in &lags {
        *minutes.entry(at.floor() as i64).or_default() |= l > 300.0;
    }
    let slow = minutes.values().filter(|&&s| s).count();
    Lag {
        p50_ms: percentile(&mut ms, 0.5).unwrap_or(0.0),
        p99_ms: percentile(&mut ms, 0.99).unwrap_or(0.0),
        max_ms: ms.last().copied().unwrap_or(0.0),
        slow_share: slow as f64 / minutes.len().max(1) as f64,
    }
}

/// The first 504, or the first moment (in 5-second steps) at which the
/// requests completed over the trailing incident minute (at least 20) have
/// a P95 over the dashboard's 500 ms target: when a dashboard's one-minute
/// P95 crosses the line, measured the way the old alert measures its P50.
/// (Shorter windows catch scheduler hiccups, which compressed time
/// magnifies: 5 ms of wall time is 300 incident ms.)
fn impact(done: &[Done]) -> Option<Clock> {
    let first_504 = done
        .iter()
        .filter(|d| d.status == 504)
        .map(|d| d.at)
        .min_by(f64::total_cmp);
    let step = 5.0 / 60.0;
    let mut by_step: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
    for d in done.iter().filter(|d| d.status != 503) {
        by_step
            .entry((d.at / step).floor() as i64)
            .or_default()
            .push(d.ms);
    }
    let (&first, &last) = (by_step.keys().next()?, by_step.keys().next_back()?);
    // Window ending with step i: steps i-11 ..= i.
    let slow = (first + 11..=last).find_map(|i| {
        let mut ms: Vec<f64> = (i - 11..=i)
            .filter_map(|j| by_step.get(&j))
            .flatten()
            .copied()
            .collect();
        (ms.len() >= 20 && percentile(&mut ms, 0.95) > Some(500.0)).then_some((i + 1) as f64 * step)
    });
    match (first_504, slow) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Nearest-rank percentile (sorts in place).
pub fn percentile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}
