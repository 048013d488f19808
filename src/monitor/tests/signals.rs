//! The starvation signals (issue 15.3): the oldest waiter's age and the
//! stalled pool, on the paused clock.

use super::*;
use crate::alert::defaults::{OLDEST_WAIT_RULE, STALL_RULE};

fn rule(name: &str, severity: Severity) -> Rule {
    all_default_rules()
        .into_iter()
        .find(|r| &*r.name == name && r.severity == severity)
        .expect("a default rule")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn oldest_wait_is_the_age_of_the_first_waiter_still_waiting() {
    let h = harness(4, all_default_rules());
    let acct = Arc::clone(h.acct());
    assert_eq!(acct.oldest_wait(Instant::now()), None);
    let first = acct.start_wait(Location::caller());
    tokio::time::advance(ms(700)).await;
    let second = acct.start_wait(Location::caller());
    tokio::time::advance(ms(300)).await;
    assert_eq!(acct.oldest_wait(Instant::now()), Some(ms(1000)));
    // The first is served: the second is the oldest now.
    let _held = first.acquired();
    assert_eq!(acct.oldest_wait(Instant::now()), Some(ms(300)));
    drop(second);
    assert_eq!(acct.oldest_wait(Instant::now()), None);
    // More arrivals than the ring holds: still the oldest's age.
    let waiting: Vec<_> = (0..3000)
        .map(|_| acct.start_wait(Location::caller()))
        .collect();
    tokio::time::advance(ms(250)).await;
    let late = acct.start_wait(Location::caller());
    tokio::time::advance(ms(50)).await;
    drop(waiting);
    assert_eq!(acct.oldest_wait(Instant::now()), Some(ms(50)));
    drop(late);
}

#[tokio::test(start_paused = true)]
async fn oldest_wait_rules_fire_from_the_crossing() {
    let warn = rule(OLDEST_WAIT_RULE, Severity::Warning);
    let crit = rule(OLDEST_WAIT_RULE, Severity::Critical);
    let mut h = harness(4, all_default_rules());
    // The pool is full through the guard (a release is what they wait
    // for: no stall) and one acquire waits.
    h.hold(4);
    h.waiting.push(h.acct().start_wait(Location::caller()));
    h.advance(secs(70)).await;
    let fired = h.transitions(&warn);
    let last = fired.last().expect("warning fired");
    assert_eq!(last.state, AlertState::Firing);
    assert_eq!(last.time_in_previous, warn.hold);
    // Pending from just past 1 s of waiting, firing a minute later.
    let pending = fired.first().unwrap();
    assert_eq!(pending.state, AlertState::Pending);
    let crit_fired = h.transitions(&crit);
    assert_eq!(crit_fired.last().unwrap().state, AlertState::Firing);
    assert!(
        h.transitions(&rule(STALL_RULE, Severity::Critical))
            .is_empty(),
        "a full pool is exhausted, not stalled"
    );
    let snap = h.monitor.snapshot();
    assert_eq!(snap.oldest_wait, Some(secs(70)));
}

#[tokio::test(start_paused = true)]
async fn a_pool_that_hands_out_nothing_with_free_slots_is_stalled() {
    let stall = rule(STALL_RULE, Severity::Critical);
    let mut h = harness(4, all_default_rules());
    h.hold(1);
    h.advance(secs(1)).await;
    // Waiters, 3 slots free by the guard's count, no acquire completes.
    for _ in 0..3 {
        h.waiting.push(h.acct().start_wait(Location::caller()));
    }
    h.advance(secs(5)).await;
    assert!(h.transitions(&stall).is_empty(), "5 s is the threshold");
    h.advance(ms(100)).await;
    let fired = h.transitions(&stall);
    let e = fired.last().expect("stalled");
    assert_eq!(e.state, AlertState::Firing);
    let v = e.value.unwrap();
    assert!((5.0..5.2).contains(&v), "{v}");
    // An acquire completes: the stall clock restarts.
    let w = h.waiting.pop().unwrap();
    h.held.push(w.acquired());
    h.advance(secs(1)).await;
    let s = h.monitor.snapshot();
    assert!(s.stalled_for < secs(2), "{:?}", s.stalled_for);
}

#[tokio::test(start_paused = true)]
async fn churn_counts_connection_opens_only_while_acquires_time_out() {
    let churn = rule(crate::alert::defaults::CHURN_RULE, Severity::Warning);
    let mut h = harness(4, all_default_rules());
    // Opens without timeouts (a pool growing, connections reaching their
    // lifetime): no churn.
    for _ in 0..180 {
        h.connects.opened();
        h.connects.opened();
        h.advance(secs(1)).await;
    }
    assert!(h.transitions(&churn).is_empty());
    let value = |h: &Harness| {
        h.monitor
            .alerts()
            .into_iter()
            .find(|a| a.rule == churn.name)
            .and_then(|a| a.value)
    };
    assert_eq!(value(&h), Some(0.0));
    // The same opens while an acquire times out each second: churn of
    // 2 a second, firing after the minute's hold.
    for _ in 0..125 {
        h.connects.opened();
        h.connects.opened();
        let _ = h.acct().start_wait(Location::caller()).timed_out();
        h.advance(secs(1)).await;
    }
    let fired = h.transitions(&churn);
    assert_eq!(fired.last().map(|e| e.state), Some(AlertState::Firing));
    let v = value(&h).unwrap();
    assert!((v - 2.0).abs() < 0.1, "{v}");
}
