use std::time::Duration;

use tokio::time::Instant;

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
