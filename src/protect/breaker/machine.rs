//! The breaker's pure state machine: the sliding window and the
//! transitions, with the instant passed in.

use crate::hot::clock::{Clock, Nanos};
use std::time::Duration;

use tokio::time::Instant;

use super::config::BreakerConfig;
use crate::protect::classify::Outcome;

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
    /// Index (in bucket units on `clock`) of the newest bucket.
    head: u64,
    width: Duration,
    clock: Clock,
    total: Tally,
}

impl SlidingWindow {
    pub(crate) fn new(window: Duration, buckets: u32, origin: Instant) -> Self {
        Self {
            buckets: vec![Tally::default(); buckets as usize],
            head: 0,
            width: window / buckets,
            clock: Clock::from_origin(origin),
            total: Tally::default(),
        }
    }

    /// The bucket `now` falls in (units of the bucket width since the
    /// origin; u64 nanoseconds cover 584 years).
    pub(crate) fn index_of(clock: Clock, width: Duration, now: Instant) -> u64 {
        let on_clock = clock.at(now);
        on_clock.raw() / Nanos::from_duration(width).raw().max(1)
    }

    /// Moves the window to `now`, evicting buckets that fell out.
    fn roll(&mut self, now: Instant) {
        let idx = Self::index_of(self.clock, self.width, now);
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

    /// Adds `n` successful calls counted outside the lock in bucket
    /// `index` (one that fell out of the window is dropped; a newer one than
    /// `now` counts in the newest bucket).
    fn add_successes(&mut self, now: Instant, index: u64, n: u32) {
        self.roll(now);
        let len = self.buckets.len() as u64;
        if index.saturating_add(len) <= self.head {
            return;
        }
        let slot = (index.min(self.head) % len) as usize;
        let t = Tally {
            calls: n,
            failures: 0,
            slow: 0,
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
    episode: u32,
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
            episode: 0,
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

    /// Whether a fast success (not slow, not a trial) can change nothing
    /// now: Closed with no failure and no slow call in the window, so both
    /// rates are 0 and stay 0. Such successes may be counted without the
    /// lock (see `cell.rs`).
    pub(crate) fn success_changes_nothing(&mut self, now: Instant) -> bool {
        if self.state != BreakerState::Closed {
            return false;
        }
        let t = self.window.total(now);
        t.failures == 0 && t.slow == 0
    }

    /// Adds `n` fast successes counted outside the lock in window bucket
    /// `index`. Counted while the state moved on, they change nothing (like
    /// calls admitted before an opening).
    pub(crate) fn absorb_successes(&mut self, now: Instant, index: u64, n: u32) {
        if self.state == BreakerState::Closed {
            self.window.add_successes(now, index, n);
        }
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
            self.episode = self.episode.wrapping_add(1);
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
                    trial: Some(self.episode),
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
        self.state == BreakerState::HalfOpen && trial == Some(self.episode)
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

#[cfg(test)]
mod tests;

/// The state machine against a reference model written from the spec,
/// under random call outcomes, cancellations, clock advances and manual
/// resets.
#[cfg(test)]
mod model;
