//! Circuit breaker, in the manner of Resilience4j: Closed / Open / HalfOpen,
//! plus ForcedOpen, Disabled and MetricsOnly, over a time-based sliding
//! window of fixed buckets with subtract-on-evict (recording and reading are
//! O(1)). The decision is pure: every call takes the instant, so tests drive
//! it with synthetic time.
//!
//! - **Closed**: calls pass; once the window holds at least `minimum_calls`
//!   and the failure rate or the slow-call rate reaches its threshold, Open.
//! - **Open**: calls are rejected without touching the pool until the wait
//!   passes: `base_wait * multiplier^(n-1)` for the n-th consecutive opening,
//!   capped at `max_wait`, with +-`jitter` randomness; then HalfOpen.
//! - **HalfOpen**: `half_open_calls` trial calls pass, others are rejected;
//!   when all trials have finished, their rates decide: Closed (the backoff
//!   resets) or Open again (the backoff grows).
//! - **ForcedOpen** rejects everything, **Disabled** passes everything and
//!   records nothing, **MetricsOnly** records and runs the state machine in
//!   the shadow (its transitions are events marked `shadow`) but never rejects.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::MAX_DURATION;
use crate::error::Error;

/// The breaker's state.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls pass and are recorded.
    Closed,
    /// Calls are rejected until the wait passes.
    Open,
    /// A fixed number of trial calls pass.
    HalfOpen,
    /// Rejects every call until changed by hand.
    ForcedOpen,
    /// Passes every call and records nothing.
    Disabled,
}

impl BreakerState {
    /// For the `poolguard.breaker.state` metric: 0 closed, 1 open, 2 half-open,
    /// 3 forced open, 4 disabled.
    pub fn as_number(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
            BreakerState::ForcedOpen => 3,
            BreakerState::Disabled => 4,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::ForcedOpen => "forced_open",
            BreakerState::Disabled => "disabled",
        }
    }
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one call ended, for the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The database answered (a constraint violation or a missing row is an
    /// answer too).
    Success,
    /// The database could not be reached or did not answer in time.
    Failure,
    /// Not counted (a cancelled call).
    Ignored,
}

/// The default outcome of an sqlx error, one judgement for the circuit
/// breaker and for the query-error signals (the error-rate rules): is this
/// evidence that the database is failing?
///
/// - Ignored: load shedding and the breaker's own rejections (local
///   decisions), and a closed pool (a deliberate shutdown).
/// - Failure: connection, I/O, TLS and protocol errors, pool timeouts,
///   query timeouts, a crashed worker, and the database errors that say the
///   server is unavailable or overloaded: SQLSTATE classes 08 (connection),
///   53 (insufficient resources), 57 (operator intervention, including a
///   cancelled statement), 58 (system error) and XX (internal error), and
///   with the `mysql` feature the MySQL/MariaDB equivalents by error number
///   (too many connections 1040/1203, out of memory 1037/1038/1041, disk
///   full 1021, shutdown 1053, query interrupted or over its time limit
///   1317/1969/3024, connection killed or aborted 1927/1152, server gone
///   2006/2013, plus SQLSTATE class 08), and with `sqlite` SQLite's
///   out of memory, I/O error, corrupt, full, cannot open and not a
///   database.
/// - Success: every other answer from the database: constraint violations
///   (a unique violation is not an unhealthy database), syntax errors, row
///   not found, decode errors.
///
/// An acquire timeout while every connection was busy is overload, not a
/// failing database: the guard ignores it before asking the classifier.
///
/// ```
/// use poolguard::{breaker::classify, Outcome};
/// assert_eq!(classify(&sqlx::Error::RowNotFound), Outcome::Success);
/// assert_eq!(classify(&sqlx::Error::PoolTimedOut), Outcome::Failure);
/// ```
pub fn classify(err: &sqlx::Error) -> Outcome {
    use sqlx::Error as E;
    // The guard's own refusals say nothing about the database's health: a
    // shed acquire is local overload, a rejected call never ran.
    if let Some(crate::Error::LoadShed { .. } | crate::Error::CircuitOpen { .. }) =
        crate::Error::from_sqlx(err)
    {
        return Outcome::Ignored;
    }
    match err {
        E::PoolClosed => Outcome::Ignored,
        E::Io(_) | E::Tls(_) | E::Protocol(_) | E::PoolTimedOut | E::WorkerCrashed => {
            Outcome::Failure
        }
        E::Database(db) if server_unavailable(&**db) => Outcome::Failure,
        _ => Outcome::Success,
    }
}

/// SQLSTATE classes of a server that cannot serve (see [`classify`]).
const FAILING_CLASSES: [&str; 5] = ["08", "53", "57", "58", "XX"];

/// MySQL/MariaDB error numbers of a server that cannot serve.
#[cfg(feature = "mysql")]
const FAILING_MYSQL: [u16; 14] = [
    1021, 1037, 1038, 1040, 1041, 1053, 1152, 1203, 1317, 1927, 1969, 2006, 2013, 3024,
];

/// SQLite primary result codes of a database that cannot serve: out of
/// memory, I/O error, corrupt, full, cannot open, not a database.
#[cfg(feature = "sqlite")]
const FAILING_SQLITE: [u32; 6] = [7, 10, 11, 13, 14, 26];

fn server_unavailable(db: &dyn sqlx::error::DatabaseError) -> bool {
    let code = db.code();
    #[cfg(feature = "sqlite")]
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLite's code is its (extended) result code, a number.
        return code
            .and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|n| FAILING_SQLITE.contains(&(n & 0xFF)));
    }
    #[cfg(feature = "mysql")]
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // By number, and by SQLSTATE below (08S01, 08004: network, handshake).
        if FAILING_MYSQL.contains(&my.number()) {
            return true;
        }
    }
    code.is_some_and(|c| c.len() == 5 && FAILING_CLASSES.iter().any(|f| c.starts_with(f)))
}

/// Settings of the breaker (validated by the guard's builder).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Start in MetricsOnly (shadow) mode instead of Closed.
    pub metrics_only: bool,
    /// Length of the sliding window ...
    pub window: Duration,
    /// ... made of this many fixed buckets.
    pub buckets: u32,
    /// No decision before the window holds this many calls.
    pub minimum_calls: u32,
    /// Open when failures / calls reaches this ratio.
    pub failure_rate: f64,
    /// A call slower than this is slow ...
    pub slow_call_duration: Duration,
    /// ... and the breaker opens when slow / calls reaches this ratio.
    pub slow_call_rate: f64,
    /// Wait in Open before the first half-open trial ...
    pub base_wait: Duration,
    /// ... multiplied by this for each consecutive opening ...
    pub multiplier: f64,
    /// ... up to this.
    pub max_wait: Duration,
    /// Randomness of the wait: +-this fraction.
    pub jitter: f64,
    /// Trial calls allowed in HalfOpen.
    pub half_open_calls: u32,
}

impl Default for BreakerConfig {
    /// Window 10 s in 10 buckets, at least 20 calls, open at 50 % failures or
    /// 80 % calls slower than 2 s; wait 5 s doubling up to 60 s with +-20 %
    /// jitter; 5 trial calls.
    fn default() -> Self {
        Self {
            metrics_only: false,
            window: Duration::from_secs(10),
            buckets: 10,
            minimum_calls: 20,
            failure_rate: 0.5,
            slow_call_duration: Duration::from_secs(2),
            slow_call_rate: 0.8,
            base_wait: Duration::from_secs(5),
            multiplier: 2.0,
            max_wait: Duration::from_secs(60),
            jitter: 0.2,
            half_open_calls: 5,
        }
    }
}

/// Chained setters, one per field.
///
/// ```
/// use std::time::Duration;
/// let c = poolguard::BreakerConfig::default()
///     .minimum_calls(10)
///     .base_wait(Duration::from_secs(2))
///     .half_open_calls(3);
/// assert_eq!(c.minimum_calls, 10);
/// ```
impl BreakerConfig {
    /// Starts in MetricsOnly (shadow) mode.
    pub fn metrics_only(mut self, v: bool) -> Self {
        self.metrics_only = v;
        self
    }

    /// Sets the sliding window's length.
    pub fn window(mut self, v: Duration) -> Self {
        self.window = v;
        self
    }

    /// Sets the number of buckets.
    pub fn buckets(mut self, v: u32) -> Self {
        self.buckets = v;
        self
    }

    /// Sets the minimum number of calls before a decision.
    pub fn minimum_calls(mut self, v: u32) -> Self {
        self.minimum_calls = v;
        self
    }

    /// Sets the failure-rate threshold.
    pub fn failure_rate(mut self, v: f64) -> Self {
        self.failure_rate = v;
        self
    }

    /// Sets what counts as a slow call.
    pub fn slow_call_duration(mut self, v: Duration) -> Self {
        self.slow_call_duration = v;
        self
    }

    /// Sets the slow-call-rate threshold.
    pub fn slow_call_rate(mut self, v: f64) -> Self {
        self.slow_call_rate = v;
        self
    }

    /// Sets the first wait in Open.
    pub fn base_wait(mut self, v: Duration) -> Self {
        self.base_wait = v;
        self
    }

    /// Sets the backoff multiplier.
    pub fn multiplier(mut self, v: f64) -> Self {
        self.multiplier = v;
        self
    }

    /// Sets the longest wait in Open.
    pub fn max_wait(mut self, v: Duration) -> Self {
        self.max_wait = v;
        self
    }

    /// Sets the jitter fraction.
    pub fn jitter(mut self, v: f64) -> Self {
        self.jitter = v;
        self
    }

    /// Sets the number of half-open trial calls.
    pub fn half_open_calls(mut self, v: u32) -> Self {
        self.half_open_calls = v;
        self
    }
}

impl BreakerConfig {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |field, value: String, reason| Err(Error::config(field, value, reason));
        let rate = |field, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 1.0 {
                Ok(())
            } else {
                bad(field, v.to_string(), "must be a ratio in (0, 1]")
            }
        };
        rate("breaker.failure_rate", self.failure_rate)?;
        rate("breaker.slow_call_rate", self.slow_call_rate)?;
        if !(self.jitter.is_finite() && (0.0..1.0).contains(&self.jitter)) {
            return bad(
                "breaker.jitter",
                self.jitter.to_string(),
                "must be in [0, 1)",
            );
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return bad(
                "breaker.multiplier",
                self.multiplier.to_string(),
                "must be at least 1",
            );
        }
        if self.buckets == 0 || self.buckets > 1000 {
            return bad(
                "breaker.buckets",
                self.buckets.to_string(),
                "must be in 1..=1000",
            );
        }
        if self.window < Duration::from_millis(u64::from(self.buckets))
            || self.window > MAX_DURATION
        {
            return bad(
                "breaker.window",
                format!("{:?} ({} buckets)", self.window, self.buckets),
                "must be at least 1 ms per bucket and at most one year",
            );
        }
        if self.minimum_calls == 0 {
            return bad("breaker.minimum_calls", "0".into(), "must be at least 1");
        }
        if self.half_open_calls == 0 {
            return bad("breaker.half_open_calls", "0".into(), "must be at least 1");
        }
        for (field, d) in [
            ("breaker.base_wait", self.base_wait),
            ("breaker.max_wait", self.max_wait),
            ("breaker.slow_call_duration", self.slow_call_duration),
        ] {
            if d > MAX_DURATION {
                return bad(field, format!("{d:?}"), "must be at most one year");
            }
        }
        if self.base_wait.is_zero() || self.max_wait < self.base_wait {
            return bad(
                "breaker.base_wait",
                format!("{:?} (max_wait {:?})", self.base_wait, self.max_wait),
                "must be above zero and at most max_wait",
            );
        }
        Ok(())
    }
}

/// Calls, failures and slow calls in one bucket or the whole window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.calls += o.calls;
        self.failures += o.failures;
        self.slow += o.slow;
    }

    fn sub(&mut self, o: Tally) {
        self.calls -= o.calls;
        self.failures -= o.failures;
        self.slow -= o.slow;
    }

    fn rates(&self) -> (f64, f64) {
        if self.calls == 0 {
            return (0.0, 0.0);
        }
        let n = f64::from(self.calls);
        (f64::from(self.failures) / n, f64::from(self.slow) / n)
    }
}

/// Fixed buckets over a ring; the total is kept by adding on record and
/// subtracting on evict.
#[derive(Debug, Clone)]
pub(crate) struct SlidingWindow {
    buckets: Vec<Tally>,
    /// Index (in bucket units since `origin`) of the newest bucket.
    head: u64,
    width: Duration,
    origin: Instant,
    total: Tally,
}

impl SlidingWindow {
    pub(crate) fn new(window: Duration, buckets: u32, origin: Instant) -> Self {
        Self {
            buckets: vec![Tally::default(); buckets as usize],
            head: 0,
            width: window / buckets,
            origin,
            total: Tally::default(),
        }
    }

    /// Moves the window to `now`, evicting buckets that fell out.
    fn roll(&mut self, now: Instant) {
        let idx = (now.saturating_duration_since(self.origin).as_nanos()
            / self.width.as_nanos().max(1)) as u64;
        if idx <= self.head {
            return;
        }
        let n = self.buckets.len() as u64;
        // At most `n` buckets to clear, however long the gap.
        let steps = (idx - self.head).min(n);
        for k in 1..=steps {
            let slot = ((self.head + k) % n) as usize;
            let old = std::mem::take(&mut self.buckets[slot]);
            self.total.sub(old);
        }
        self.head = idx;
    }

    pub(crate) fn record(&mut self, now: Instant, failure: bool, slow: bool) {
        self.roll(now);
        let slot = (self.head % self.buckets.len() as u64) as usize;
        let t = Tally {
            calls: 1,
            failures: u32::from(failure),
            slow: u32::from(slow),
        };
        self.buckets[slot].add(t);
        self.total.add(t);
    }

    pub(crate) fn total(&mut self, now: Instant) -> Tally {
        self.roll(now);
        self.total
    }

    fn clear(&mut self) {
        self.buckets.iter_mut().for_each(|b| *b = Tally::default());
        self.total = Tally::default();
    }
}

/// A state change, for events.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Change {
    pub(crate) from: BreakerState,
    pub(crate) to: BreakerState,
    pub(crate) failure_rate: f64,
    pub(crate) slow_call_rate: f64,
    pub(crate) calls: u32,
    /// When Open: how long until the half-open trial.
    pub(crate) retry_in: Option<Duration>,
    /// Happened in MetricsOnly mode: nothing was rejected.
    pub(crate) shadow: bool,
}

/// What `try_acquire_permission` decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Go ahead; a trial call holds one of the permits of the half-open
    /// episode numbered here (a permit from an earlier episode, e.g. before
    /// a manual reset, counts for nothing).
    Granted { trial: Option<u32> },
    /// Rejected; the breaker retries after this long (None: forced open).
    Rejected { retry_in: Option<Duration> },
}

/// The state machine.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    metrics_only: bool,
    window: SlidingWindow,
    open_until: Instant,
    openings: u32,
    trials_started: u32,
    trials: Tally,
    /// Numbers the half-open episodes.
    epoch: u32,
    rng: u64,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig, now: Instant, seed: u64) -> Self {
        Self {
            window: SlidingWindow::new(config.window, config.buckets, now),
            metrics_only: config.metrics_only,
            config,
            state: BreakerState::Closed,
            open_until: now,
            openings: 0,
            trials_started: 0,
            trials: Tally::default(),
            epoch: 0,
            rng: seed | 1,
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.state
    }

    pub(crate) fn metrics_only(&self) -> bool {
        self.metrics_only
    }

    pub(crate) fn tally(&mut self, now: Instant) -> Tally {
        self.window.total(now)
    }

    fn next_random(&mut self) -> f64 {
        // xorshift64*: jitter needs spread, not secrecy.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The wait of the `openings`-th consecutive opening, with jitter.
    pub(crate) fn wait(&mut self) -> Duration {
        let c = &self.config;
        let exp = self.openings.saturating_sub(1).min(64) as i32;
        let raw = c.base_wait.as_secs_f64() * c.multiplier.powi(exp);
        let capped = raw.min(c.max_wait.as_secs_f64());
        let jitter = c.jitter * (2.0 * self.next_random() - 1.0);
        Duration::from_secs_f64((capped * (1.0 + jitter)).max(0.0))
    }

    fn change(&mut self, to: BreakerState, now: Instant, rates: Tally) -> Change {
        let from = self.state;
        self.state = to;
        let retry_in = match to {
            BreakerState::Open => {
                self.openings = self.openings.saturating_add(1);
                let wait = self.wait();
                self.open_until = now + wait;
                Some(wait)
            }
            _ => None,
        };
        if to == BreakerState::HalfOpen {
            self.trials_started = 0;
            self.trials = Tally::default();
            self.epoch = self.epoch.wrapping_add(1);
        }
        if to == BreakerState::Closed {
            self.openings = 0;
            self.window.clear();
        }
        let (failure_rate, slow_call_rate) = rates.rates();
        Change {
            from,
            to,
            failure_rate,
            slow_call_rate,
            calls: rates.calls,
            retry_in,
            shadow: self.metrics_only,
        }
    }

    /// Open -> HalfOpen once the wait has passed.
    fn advance(&mut self, now: Instant) -> Option<Change> {
        (self.state == BreakerState::Open && now >= self.open_until)
            .then(|| self.change(BreakerState::HalfOpen, now, Tally::default()))
    }

    /// Decides whether a call may proceed.
    pub(crate) fn try_acquire_permission(&mut self, now: Instant) -> (Permit, Option<Change>) {
        let change = self.advance(now);
        let permit = match self.state {
            BreakerState::Closed | BreakerState::Disabled => Permit::Granted { trial: None },
            BreakerState::HalfOpen if self.trials_started < self.config.half_open_calls => {
                self.trials_started += 1;
                Permit::Granted {
                    trial: Some(self.epoch),
                }
            }
            BreakerState::HalfOpen => Permit::Rejected {
                retry_in: Some(Duration::ZERO),
            },
            BreakerState::Open => Permit::Rejected {
                retry_in: Some(self.open_until.saturating_duration_since(now)),
            },
            BreakerState::ForcedOpen => Permit::Rejected { retry_in: None },
        };
        let permit = match permit {
            Permit::Rejected { .. } if self.metrics_only => Permit::Granted { trial: None },
            p => p,
        };
        (permit, change)
    }

    /// Whether `trial` is a permit of the current half-open episode.
    fn current(&self, trial: Option<u32>) -> bool {
        self.state == BreakerState::HalfOpen && trial == Some(self.epoch)
    }

    /// A trial call was cancelled: its permit is free again.
    pub(crate) fn release_trial(&mut self, trial: Option<u32>) {
        if self.current(trial) {
            self.trials_started = self.trials_started.saturating_sub(1);
        }
    }

    /// Records a finished call.
    pub(crate) fn on_result(
        &mut self,
        now: Instant,
        trial: Option<u32>,
        outcome: Outcome,
        took: Duration,
    ) -> Option<Change> {
        if outcome == Outcome::Ignored {
            self.release_trial(trial);
            return None;
        }
        let failure = outcome == Outcome::Failure;
        let slow = took >= self.config.slow_call_duration;
        match self.state {
            BreakerState::Disabled | BreakerState::ForcedOpen => None,
            BreakerState::HalfOpen if self.current(trial) => {
                self.trials.add(Tally {
                    calls: 1,
                    failures: u32::from(failure),
                    slow: u32::from(slow),
                });
                if self.trials.calls < self.config.half_open_calls {
                    return None;
                }
                let t = self.trials;
                let to = if self.trips(t) {
                    BreakerState::Open
                } else {
                    BreakerState::Closed
                };
                Some(self.change(to, now, t))
            }
            BreakerState::Closed if trial.is_none() => {
                self.window.record(now, failure, slow);
                let t = self.window.total(now);
                (t.calls >= self.config.minimum_calls && self.trips(t))
                    .then(|| self.change(BreakerState::Open, now, t))
            }
            // Calls admitted before the breaker opened (or shadow calls
            // while open) do not change the decision.
            _ => None,
        }
    }

    fn trips(&self, t: Tally) -> bool {
        let (failure, slow) = t.rates();
        failure >= self.config.failure_rate || slow >= self.config.slow_call_rate
    }

    /// Manual control: moves to `to` (Closed resets the window and backoff).
    pub(crate) fn transition(&mut self, to: BreakerState, now: Instant) -> Option<Change> {
        if to == self.state {
            return None;
        }
        let t = self.window.total(now);
        Some(self.change(to, now, t))
    }

    /// Switches shadow mode on or off (no state change).
    pub(crate) fn set_metrics_only(&mut self, on: bool) {
        self.metrics_only = on;
    }

    /// Back to Closed with an empty window and no backoff.
    pub(crate) fn reset(&mut self, now: Instant) -> Option<Change> {
        self.openings = 0;
        self.window.clear();
        self.transition(BreakerState::Closed, now)
    }
}

/// Classifies call errors for the breaker.
pub(crate) type Classifier = std::sync::Arc<dyn Fn(&sqlx::Error) -> Outcome + Send + Sync>;

/// The breaker as the guard shares it: the state machine under a short lock
/// (never held across an await), with a lock-free fast path while Closed.
pub(crate) struct BreakerCell {
    machine: parking_lot::Mutex<Breaker>,
    /// `true` while Closed (or Disabled) outside shadow mode: permission is
    /// granted without taking the lock.
    pass: std::sync::atomic::AtomicBool,
    /// `true` while Disabled: outcomes are not even locked for.
    off: std::sync::atomic::AtomicBool,
    pub(crate) classifier: Classifier,
}

impl std::fmt::Debug for BreakerCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerCell")
            .field("machine", &*self.machine.lock())
            .finish_non_exhaustive()
    }
}

impl BreakerCell {
    pub(crate) fn new(config: BreakerConfig, classifier: Classifier) -> Self {
        let now = Instant::now();
        // Jitter seed: the address of a fresh allocation and the time; only
        // spread matters.
        let here = 0u8;
        let seed = (std::ptr::from_ref(&here) as usize as u64)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        let machine = Breaker::new(config, now, seed);
        let cell = Self {
            pass: std::sync::atomic::AtomicBool::new(false),
            off: std::sync::atomic::AtomicBool::new(false),
            machine: parking_lot::Mutex::new(machine),
            classifier,
        };
        cell.sync(&cell.machine.lock());
        cell
    }

    fn sync(&self, m: &Breaker) {
        use std::sync::atomic::Ordering::Relaxed;
        // Stored only on a change: callers on other cores read these on
        // every call, and a store each time would bounce the cache line.
        let pass = matches!(m.state(), BreakerState::Closed | BreakerState::Disabled);
        if self.pass.load(Relaxed) != pass {
            self.pass.store(pass, Relaxed);
        }
        let off = m.state() == BreakerState::Disabled;
        if self.off.load(Relaxed) != off {
            self.off.store(off, Relaxed);
        }
    }

    pub(crate) fn state(&self) -> (BreakerState, bool) {
        let m = self.machine.lock();
        (m.state(), m.metrics_only())
    }

    pub(crate) fn tally(&self) -> Tally {
        self.machine.lock().tally(Instant::now())
    }

    /// Permission for one call; the change to report, if any.
    pub(crate) fn permit(&self) -> (Permit, Option<Change>) {
        if self.pass.load(std::sync::atomic::Ordering::Relaxed) {
            return (Permit::Granted { trial: None }, None);
        }
        let mut m = self.machine.lock();
        let r = m.try_acquire_permission(Instant::now());
        self.sync(&m);
        r
    }

    pub(crate) fn record(
        &self,
        trial: Option<u32>,
        outcome: Outcome,
        took: Duration,
    ) -> Option<Change> {
        if (outcome == Outcome::Ignored && trial.is_none())
            || self.off.load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        let mut m = self.machine.lock();
        let c = m.on_result(Instant::now(), trial, outcome, took);
        self.sync(&m);
        c
    }

    pub(crate) fn control(
        &self,
        f: impl FnOnce(&mut Breaker, Instant) -> Option<Change>,
    ) -> Option<Change> {
        let mut m = self.machine.lock();
        let c = f(&mut m, Instant::now());
        self.sync(&m);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn config() -> BreakerConfig {
        BreakerConfig {
            minimum_calls: 4,
            jitter: 0.0,
            base_wait: ms(1000),
            max_wait: ms(8000),
            half_open_calls: 2,
            ..BreakerConfig::default()
        }
    }

    #[test]
    fn opens_at_the_failure_rate_once_enough_calls_are_seen() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0, 1);
        for i in 0..3 {
            assert_eq!(
                b.on_result(t0, None, Outcome::Failure, ms(1)),
                None,
                "call {i}"
            );
        }
        let c = b.on_result(t0, None, Outcome::Success, ms(1)).unwrap();
        assert_eq!((c.from, c.to), (BreakerState::Closed, BreakerState::Open));
        assert_eq!(c.failure_rate, 0.75);
        assert_eq!(c.retry_in, Some(ms(1000)));
        let (p, _) = b.try_acquire_permission(t0 + ms(400));
        assert_eq!(
            p,
            Permit::Rejected {
                retry_in: Some(ms(600))
            }
        );
    }

    #[test]
    fn slow_calls_open_it_too() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0, 1);
        for _ in 0..3 {
            b.on_result(t0, None, Outcome::Success, Duration::from_secs(3));
        }
        let c = b
            .on_result(t0, None, Outcome::Success, Duration::from_secs(3))
            .unwrap();
        assert_eq!(c.to, BreakerState::Open);
        assert_eq!(c.slow_call_rate, 1.0);
    }

    #[test]
    fn half_open_trials_decide_and_backoff_grows_then_resets() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0, 1);
        for _ in 0..4 {
            b.on_result(t0, None, Outcome::Failure, ms(1));
        }
        assert_eq!(b.state(), BreakerState::Open);
        let (p, c) = b.try_acquire_permission(t0 + ms(1000));
        assert_eq!(
            p,
            Permit::Granted {
                trial: Some(b.epoch)
            }
        );
        assert_eq!(c.unwrap().to, BreakerState::HalfOpen);
        assert_eq!(
            b.try_acquire_permission(t0 + ms(1000)).0,
            Permit::Granted {
                trial: Some(b.epoch)
            }
        );
        assert!(matches!(
            b.try_acquire_permission(t0 + ms(1000)).0,
            Permit::Rejected { .. }
        ));
        b.on_result(t0 + ms(1001), Some(b.epoch), Outcome::Failure, ms(1));
        let c = b
            .on_result(t0 + ms(1001), Some(b.epoch), Outcome::Success, ms(1))
            .unwrap();
        assert_eq!((c.from, c.to), (BreakerState::HalfOpen, BreakerState::Open));
        assert_eq!(
            c.retry_in,
            Some(ms(2000)),
            "second opening waits twice as long"
        );
        let (_, c) = b.try_acquire_permission(t0 + ms(3001));
        assert_eq!(c.unwrap().to, BreakerState::HalfOpen);
        b.try_acquire_permission(t0 + ms(3001));
        b.try_acquire_permission(t0 + ms(3001));
        b.on_result(t0 + ms(3002), Some(b.epoch), Outcome::Success, ms(1));
        let c = b
            .on_result(t0 + ms(3002), Some(b.epoch), Outcome::Success, ms(1))
            .unwrap();
        assert_eq!(c.to, BreakerState::Closed);
        // Backoff reset: the next opening waits the base again.
        for _ in 0..4 {
            b.on_result(t0 + ms(4000), None, Outcome::Failure, ms(1));
        }
        assert_eq!(b.state(), BreakerState::Open);
        let (p, _) = b.try_acquire_permission(t0 + ms(4000));
        assert_eq!(
            p,
            Permit::Rejected {
                retry_in: Some(ms(1000))
            }
        );
    }

    #[test]
    fn cancelled_trials_give_their_permit_back() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0, 1);
        b.transition(BreakerState::Open, t0);
        b.try_acquire_permission(t0 + ms(1000));
        b.try_acquire_permission(t0 + ms(1000));
        assert!(matches!(
            b.try_acquire_permission(t0 + ms(1000)).0,
            Permit::Rejected { .. }
        ));
        b.on_result(t0 + ms(1000), Some(b.epoch), Outcome::Ignored, ms(1));
        assert_eq!(
            b.try_acquire_permission(t0 + ms(1000)).0,
            Permit::Granted {
                trial: Some(b.epoch)
            }
        );
    }

    #[test]
    fn old_buckets_are_evicted() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0, 1);
        for _ in 0..3 {
            b.on_result(t0, None, Outcome::Failure, ms(1));
        }
        // 11 s later the three failures are out of the 10 s window.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(b.tally(later), Tally::default());
        assert_eq!(b.on_result(later, None, Outcome::Failure, ms(1)), None);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn metrics_only_never_rejects_but_reports_in_the_shadow() {
        let t0 = Instant::now();
        let mut b = Breaker::new(
            BreakerConfig {
                metrics_only: true,
                ..config()
            },
            t0,
            1,
        );
        for _ in 0..3 {
            b.on_result(t0, None, Outcome::Failure, ms(1));
        }
        let c = b.on_result(t0, None, Outcome::Failure, ms(1)).unwrap();
        assert!(c.shadow);
        assert_eq!(c.to, BreakerState::Open);
        assert_eq!(
            b.try_acquire_permission(t0).0,
            Permit::Granted { trial: None }
        );
    }

    #[test]
    fn forced_open_and_disabled() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0, 1);
        b.transition(BreakerState::ForcedOpen, t0);
        assert_eq!(
            b.try_acquire_permission(t0 + ms(100_000)).0,
            Permit::Rejected { retry_in: None }
        );
        b.transition(BreakerState::Disabled, t0);
        for _ in 0..10 {
            assert_eq!(b.on_result(t0, None, Outcome::Failure, ms(1)), None);
        }
        assert_eq!(
            b.try_acquire_permission(t0).0,
            Permit::Granted { trial: None }
        );
        assert_eq!(b.reset(t0).unwrap().to, BreakerState::Closed);
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let t0 = Instant::now();
        let mut b = Breaker::new(
            BreakerConfig {
                jitter: 0.2,
                ..config()
            },
            t0,
            42,
        );
        b.openings = 1;
        let waits: Vec<f64> = (0..1000).map(|_| b.wait().as_secs_f64()).collect();
        assert!(waits.iter().all(|w| (0.8..=1.2).contains(w)));
        let spread = waits.iter().cloned().fold(f64::MIN, f64::max)
            - waits.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 0.3, "jitter spreads the waits: {spread}");
    }

    #[test]
    fn classification_defaults() {
        assert_eq!(classify(&sqlx::Error::RowNotFound), Outcome::Success);
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), Outcome::Failure);
        assert_eq!(
            classify(&sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())),
            Outcome::Failure
        );
        assert_eq!(
            classify(&sqlx::Error::Protocol("x".into())),
            Outcome::Failure
        );
    }
}

/// The state machine against a reference model written from the spec,
/// under random call outcomes, cancellations, clock advances and manual
/// resets.
#[cfg(test)]
mod model {
    use super::*;
    use proptest::prelude::*;

    const WIDTH_MS: u64 = 1000; // 10 s window / 10 buckets
    const BUCKETS: u64 = 10;
    const MIN: usize = 5;
    const TRIALS: usize = 3;

    #[derive(Debug, Clone)]
    enum Op {
        /// Permission asked and the outcome recorded at once.
        Call {
            fail: bool,
            slow: bool,
            cancel: bool,
        },
        /// Permission asked; a granted call stays in flight.
        Start,
        /// The in-flight call at this index (modulo their number) ends.
        Finish {
            idx: usize,
            fail: bool,
            slow: bool,
            cancel: bool,
        },
        Advance(u64),
        Reset,
        ForceOpen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (any::<bool>(), prop::bool::weighted(0.2), prop::bool::weighted(0.1))
                .prop_map(|(fail, slow, cancel)| Op::Call { fail, slow, cancel }),
            2 => Just(Op::Start),
            2 => (any::<usize>(), any::<bool>(), prop::bool::weighted(0.2), prop::bool::weighted(0.2))
                .prop_map(|(idx, fail, slow, cancel)| Op::Finish { idx, fail, slow, cancel }),
            3 => (0u64..4000).prop_map(Op::Advance),
            1 => Just(Op::Reset),
            1 => Just(Op::ForceOpen),
        ]
    }

    /// The spec, naively: every call kept, rates recounted each time; a
    /// trial permit belongs to the half-open episode that granted it.
    #[derive(Debug)]
    struct Model {
        state: BreakerState,
        calls: Vec<(u64, bool, bool)>,
        open_until: u64,
        openings: u32,
        trials_started: usize,
        trials: Vec<(bool, bool)>,
        episode: u32,
    }

    impl Model {
        fn wait(&self) -> u64 {
            // base 1 s, x2, at most 8 s, no jitter.
            let exp = self.openings.saturating_sub(1).min(10);
            (1000u64 << exp).min(8000)
        }

        fn open(&mut self, now: u64) {
            self.state = BreakerState::Open;
            self.openings += 1;
            self.open_until = now + self.wait();
        }

        fn trips(calls: &[(bool, bool)]) -> bool {
            let n = calls.len() as f64;
            let fails = calls.iter().filter(|c| c.0).count() as f64;
            let slow = calls.iter().filter(|c| c.1).count() as f64;
            fails / n >= 0.5 || slow / n >= 0.8
        }

        /// Some(episode of the trial, or None) when granted.
        fn permit(&mut self, now: u64) -> Option<Option<u32>> {
            if self.state == BreakerState::Open && now >= self.open_until {
                self.state = BreakerState::HalfOpen;
                self.trials_started = 0;
                self.trials.clear();
                self.episode += 1;
            }
            match self.state {
                BreakerState::Closed | BreakerState::Disabled => Some(None),
                BreakerState::HalfOpen if self.trials_started < TRIALS => {
                    self.trials_started += 1;
                    Some(Some(self.episode))
                }
                _ => None,
            }
        }

        fn record(&mut self, now: u64, trial: Option<u32>, fail: bool, slow: bool, cancel: bool) {
            let current = self.state == BreakerState::HalfOpen && trial == Some(self.episode);
            if cancel {
                if current {
                    self.trials_started -= 1;
                }
                return;
            }
            match self.state {
                BreakerState::HalfOpen if current => {
                    self.trials.push((fail, slow));
                    if self.trials.len() == TRIALS {
                        if Self::trips(&self.trials) {
                            self.open(now);
                        } else {
                            self.close();
                        }
                    }
                }
                BreakerState::Closed if trial.is_none() => {
                    self.calls.push((now / WIDTH_MS, fail, slow));
                    let cur = now / WIDTH_MS;
                    let window: Vec<(bool, bool)> = self
                        .calls
                        .iter()
                        .filter(|c| c.0 + BUCKETS > cur)
                        .map(|c| (c.1, c.2))
                        .collect();
                    if window.len() >= MIN && Self::trips(&window) {
                        self.open(now);
                    }
                }
                _ => {}
            }
        }

        fn close(&mut self) {
            self.state = BreakerState::Closed;
            self.openings = 0;
            self.calls.clear();
        }
    }

    fn outcome(fail: bool, cancel: bool) -> Outcome {
        if cancel {
            Outcome::Ignored
        } else if fail {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }

    fn took(slow: bool) -> Duration {
        if slow {
            Duration::from_secs(3)
        } else {
            Duration::from_millis(1)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(500)
        ))]
        #[test]
        fn breaker_matches_the_reference_model(ops in prop::collection::vec(op(), 1..300)) {
            let config = BreakerConfig::default()
                .window(Duration::from_secs(10))
                .buckets(10)
                .minimum_calls(MIN as u32)
                .base_wait(Duration::from_secs(1))
                .max_wait(Duration::from_secs(8))
                .jitter(0.0)
                .half_open_calls(TRIALS as u32);
            let t0 = Instant::now();
            let mut b = Breaker::new(config, t0, 1);
            let mut m = Model {
                state: BreakerState::Closed,
                calls: Vec::new(),
                open_until: 0,
                openings: 0,
                trials_started: 0,
                trials: Vec::new(),
                episode: 0,
            };
            // Calls in flight: the breaker's permit and the model's.
            let mut flying: Vec<(Option<u32>, Option<u32>)> = Vec::new();
            let mut now = 0u64;
            for (i, op) in ops.iter().enumerate() {
                let at = t0 + Duration::from_millis(now);
                match *op {
                    Op::Call { .. } | Op::Start => {
                        let (permit, _) = b.try_acquire_permission(at);
                        let expected = m.permit(now);
                        match (permit, expected) {
                            (Permit::Granted { trial }, Some(t)) => {
                                prop_assert_eq!(trial, t, "op {}: trial permit", i);
                                if let Op::Call { fail, slow, cancel } = *op {
                                    b.on_result(at, trial, outcome(fail, cancel), took(slow));
                                    m.record(now, t, fail, slow, cancel);
                                } else {
                                    flying.push((trial, t));
                                }
                            }
                            (Permit::Rejected { retry_in }, None) => {
                                if m.state == BreakerState::Open {
                                    prop_assert_eq!(retry_in, Some(Duration::from_millis(m.open_until - now)));
                                }
                            }
                            (p, e) => prop_assert!(false, "op {}: breaker {:?}, model {:?} ({:?})", i, p, e, m),
                        }
                    }
                    Op::Finish { idx, fail, slow, cancel } => {
                        if !flying.is_empty() {
                            let (trial, t) = flying.remove(idx % flying.len());
                            b.on_result(at, trial, outcome(fail, cancel), took(slow));
                            m.record(now, t, fail, slow, cancel);
                        }
                    }
                    Op::Advance(ms) => now += ms,
                    Op::Reset => {
                        b.reset(at);
                        m.close();
                    }
                    Op::ForceOpen => {
                        b.transition(BreakerState::ForcedOpen, at);
                        m.state = BreakerState::ForcedOpen;
                    }
                }
                prop_assert_eq!(b.state(), m.state, "op {}: {:?}", i, op);
            }
        }
    }
}
