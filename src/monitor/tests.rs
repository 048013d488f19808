//! The monitor and every default rule on tokio's paused clock, fed with
//! synthetic counts (no database I/O that would auto-advance the clock).

use std::panic::Location;

use futures::{FutureExt, StreamExt};

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use super::{Monitor, PoolStats};
use crate::alert::defaults::{default_rules, FORECAST_RULE, POOL_RULE, SCALE_RULE};
use crate::alert::rule::{AlertState, Rule, Severity};
use crate::alert::saturation::{Level, SaturationPolicy};
use crate::alert::signal::Signal;
use crate::build::assemble::{assemble, PoolFacts};
use crate::build::settings::Settings;
use crate::hot::accounting::Accounting;
use crate::hot::tickets::{HoldTicket, WaitTicket};
use crate::protect::classify::classify;
use crate::protect::timeout::ServerCancel;
use crate::report::events::{AlertEvent, Event, EventStream, SaturationEvent};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

struct Harness {
    monitor: Arc<Monitor>,
    events: EventStream,
    alerts: Vec<AlertEvent>,
    levels: Vec<SaturationEvent>,
    other: Vec<Event>,
    held: Vec<HoldTicket>,
    waiting: Vec<WaitTicket>,
    connects: crate::ConnectCounter,
    t0: Instant,
}

/// Built as `build()` builds it (settings resolved, parts assembled and
/// started), with synthetic pool stats and no pool.
fn harness_with(max: u32, rules: Vec<Rule>, leak: Option<Duration>) -> Harness {
    harness_scaled(max, rules, leak, 1.0)
}

/// As the builder builds it with `time_scale(k)`: every monitoring duration
/// divided by `k`, every rule `time_scaled(k)`.
fn harness_scaled(max: u32, rules: Vec<Rule>, leak: Option<Duration>, k: f64) -> Harness {
    let connects = crate::ConnectCounter::new();
    let mut settings = Settings {
        name: Some(Arc::from("synthetic")),
        leak_threshold: leak,
        event_capacity: 4096,
        time_scale: k,
        connects: Some(connects.clone()),
        ..Settings::default()
    };
    settings.replace_rules(rules);
    let (settings, rules) = settings.resolve().expect("valid settings");
    // sqlx agrees with the guard: every busy connection is counted.
    let acct_cell: Arc<OnceLock<Arc<Accounting>>> = Arc::new(OnceLock::new());
    let stats = {
        let cell = Arc::clone(&acct_cell);
        Box::new(move || {
            let in_use = cell.get().map_or(0, |a| a.live().0);
            PoolStats {
                size: max,
                idle: max - in_use.min(max),
            }
        })
    };
    let parts = assemble(
        settings,
        rules,
        PoolFacts {
            max,
            min: 0,
            acquire_timeout: Duration::MAX,
            identity: crate::report::identity::PoolIdentity::new(
                "sqlite",
                None,
                None,
                Some("model"),
            ),
        },
        ServerCancel::none(),
        Arc::new(classify),
        stats,
    );
    acct_cell
        .set(Arc::clone(&parts.shared.acct))
        .expect("set once");
    let events = parts.shared.hub.subscribe();
    parts
        .start(Vec::new(), None, &tokio::runtime::Handle::current())
        .expect("starts");
    Harness {
        monitor: parts.monitor,
        events,
        alerts: Vec::new(),
        levels: Vec::new(),
        other: Vec::new(),
        held: Vec::new(),
        waiting: Vec::new(),
        connects,
        t0: Instant::now(),
    }
}

/// The default rule set, as `build()` assembles it.
fn all_default_rules() -> Vec<Rule> {
    let mut rules: Vec<Rule> = SaturationPolicy::default().rules().into();
    rules.extend(default_rules());
    rules
}

fn harness(max: u32, rules: Vec<Rule>) -> Harness {
    harness_with(max, rules, None)
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

impl Harness {
    fn acct(&self) -> &Arc<Accounting> {
        &self.monitor.shared.acct
    }

    fn drain(&mut self) {
        while let Some(Some(e)) = self.events.next().now_or_never() {
            match e.expect("no lag") {
                Event::Alert(a) => self.alerts.push(a),
                Event::Saturation(s) => self.levels.push(s),
                other => self.other.push(other),
            }
        }
    }

    /// Moves the clock by `d` in steps of at most 100 ms, so every tick is
    /// evaluated on its own.
    async fn advance(&mut self, d: Duration) {
        // Let the monitor see what the test just changed, at this instant.
        settle().await;
        let step = Duration::from_millis(100);
        let mut left = d;
        while !left.is_zero() {
            let s = left.min(step);
            tokio::time::advance(s).await;
            settle().await;
            left -= s;
        }
        self.drain();
    }

    fn elapsed(&self) -> Duration {
        Instant::now() - self.t0
    }

    /// Holds exactly `n` connections.
    fn hold(&mut self, n: usize) {
        self.held.truncate(n);
        while self.held.len() < n {
            let t = self.acct().start_wait(Location::caller()).acquired();
            self.held.push(t);
        }
    }

    fn queries(&self, ok: u32, failed: u32) {
        for i in 0..ok + failed {
            self.acct().start_query().finish(i < ok);
        }
    }

    fn transitions(&self, rule: &Rule) -> Vec<&AlertEvent> {
        self.alerts
            .iter()
            .filter(|a| a.rule == rule.name && a.severity == rule.severity)
            .collect()
    }

    fn state(&self, rule: &Rule) -> AlertState {
        self.monitor
            .alerts()
            .into_iter()
            .find(|a| a.rule == rule.name && a.severity == rule.severity)
            .expect("rule exists")
            .state
    }
}

/// How strongly to drive a rule's signal for one second.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Drive {
    /// Past the threshold.
    High,
    /// Clearly recovered.
    Low,
    /// Past the threshold, but with fewer samples than the rule's minimum.
    Sparse,
    /// Past the threshold, with a few more samples than the minimum.
    Enough,
}

/// One simulated second of input that drives `rule`'s signal.
async fn second(h: &mut Harness, rule: &Rule, drive: Drive, t: u64) {
    let crit = rule.severity == Severity::Critical;
    let high = drive != Drive::Low;
    match rule.signal {
        Signal::Utilization => {
            // max 50: 43 = 86 % (> 80 %), 48 = 96 % (> 90 %), 40 = 80 % (> 75 %).
            let n = match (&*rule.name, crit, high) {
                (SCALE_RULE, _, true) => 40,
                (_, false, true) => 43,
                (_, true, true) => 48,
                (_, _, false) => 20,
            };
            h.hold(n);
        }
        Signal::QueryErrorRate | Signal::RequestErrorRate => {
            // 100 calls a second, 2 % or 5 % failing; sparse: one failing
            // call every 2 s (30 in the window, below the minimum of 50).
            let failing = match (high, crit) {
                (false, _) => 0,
                (true, false) => 2,
                (true, true) => 5,
            };
            let (ok, bad) = match drive {
                // 30 a window, under the minimum of 50.
                Drive::Sparse => (0, u32::from(t.is_multiple_of(2))),
                // 60 a window.
                Drive::Enough => (0, 1),
                _ => (100 - failing, failing),
            };
            if rule.signal == Signal::QueryErrorRate {
                h.queries(ok, bad);
            } else {
                for i in 0..ok + bad {
                    let status = if i < ok { 200 } else { 503 };
                    h.acct()
                        .record_request(2, 0, status, Duration::from_millis(5));
                }
            }
        }
        Signal::Timeouts => {
            if high {
                let _ = h.acct().start_wait(Location::caller()).timed_out();
            }
        }
        Signal::GatewayTimeouts => {
            if high {
                h.acct().record_request(2, 0, 504, secs(30));
            }
        }
        Signal::QueryLatency(_) | Signal::RequestLatency(_) => {
            let took = Duration::from_millis(match (high, crit) {
                (false, _) => 50,
                (true, false) => 450,
                (true, true) => 650,
            });
            let n = match drive {
                // 15 a window, under the minimum of 20.
                Drive::Sparse => u32::from(t.is_multiple_of(4)),
                // 30 a window.
                Drive::Enough => u32::from(t.is_multiple_of(2)),
                _ => 30,
            };
            if matches!(rule.signal, Signal::RequestLatency(_)) {
                for _ in 0..n {
                    h.acct().record_request(2, 0, 200, took);
                }
            } else {
                // Real (paused-clock) query durations.
                let tickets: Vec<_> = (0..n).map(|_| h.acct().start_query()).collect();
                h.advance(took).await;
                for q in tickets {
                    q.finish(true);
                }
                h.advance(secs(1) - took).await;
                return;
            }
        }
        Signal::TrafficAnomaly => {
            // 10 acquires a second (alternating 9 and 11 by the minute) to
            // warm up; 30 a second is the spike.
            let n = if high {
                30
            } else if (t / 60).is_multiple_of(2) {
                11
            } else {
                9
            };
            for _ in 0..n {
                drop(h.acct().start_wait(Location::caller()).acquired());
            }
        }
        Signal::ExhaustionEta => {
            // max 50: one more connection every 40 s from 10 (full after
            // 1600 s); low: flat at 10.
            let n = if high { 10 + (t / 40) as usize } else { 10 };
            h.hold(n.min(50));
        }
        Signal::OldestWait | Signal::Stall => {
            // One acquire waits from the first high second on, none
            // completes, nothing is held: starvation and a stall at once.
            if high && h.waiting.is_empty() {
                let w = h.acct().start_wait(Location::caller());
                h.waiting.push(w);
            } else if !high {
                h.waiting.clear();
            }
        }
        Signal::Churn => {
            // Three connections opened a second while an acquire times out
            // every second (high); neither (low).
            if high {
                let _ = h.acct().start_wait(Location::caller()).timed_out();
                for _ in 0..3 {
                    h.connects.opened();
                }
            }
        }
        other => panic!("no driver for {other:?}"),
    }
    h.advance(secs(1)).await;
}

/// Warm-up some rules need before their signal has a value.
fn warm_up(rule: &Rule) -> u64 {
    match rule.signal {
        Signal::TrafficAnomaly => 22 * 60,
        _ => 0,
    }
}

mod diagnosis;
mod forecast_scale_leaks;
mod readings;
mod rules;
mod signals;
