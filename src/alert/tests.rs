use std::time::Duration;

use tokio::time::Instant;

use super::defaults::*;
use super::rule::*;
use super::signal::*;
use super::tracker::*;

/// A whole tick's reading: `value` over the tick that started at `started`.
fn tick_of(value: f64, started: Instant) -> Option<TickReading> {
    Some(TickReading {
        value: Some(value),
        started,
    })
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn pool_warn() -> Rule {
    Rule::new(POOL_RULE, Signal::Utilization, Comparison::Above, 0.80)
        .hold(secs(300))
        .recover_at(0.75)
        .recover_for(secs(60))
}

#[test]
fn fires_exactly_at_hold_time_not_before() {
    let r = pool_warn();
    let t0 = Instant::now();
    let mut t = RuleTracker::new(t0);
    let tr = t.observe(&r, t0, Some(0.82)).unwrap();
    assert_eq!(
        (tr.from, tr.to),
        (AlertState::Inactive, AlertState::Pending)
    );
    assert_eq!(t.next_deadline(&r), Some(t0 + secs(300)));
    assert_eq!(t.observe(&r, t0 + secs(299), Some(0.82)), None);
    let tr = t.observe(&r, t0 + secs(300), Some(0.82)).unwrap();
    assert_eq!((tr.from, tr.to), (AlertState::Pending, AlertState::Firing));
    assert_eq!(tr.time_in_previous, secs(300));
}

#[test]
fn strict_comparison_at_the_line_does_not_fire() {
    let r = pool_warn().hold(Duration::ZERO);
    let t0 = Instant::now();
    let mut t = RuleTracker::new(t0);
    assert_eq!(t.observe(&r, t0, Some(0.80)), None);
    assert_eq!(
        t.observe(&r, t0, Some(0.81)).unwrap().to,
        AlertState::Firing
    );
}

#[test]
fn dip_restarts_the_hold_and_pending_goes_back_to_inactive() {
    let r = pool_warn();
    let t0 = Instant::now();
    let mut t = RuleTracker::new(t0);
    t.observe(&r, t0, Some(0.95));
    let tr = t.observe(&r, t0 + secs(100), Some(0.70)).unwrap();
    assert_eq!(tr.to, AlertState::Inactive);
    t.observe(&r, t0 + secs(101), Some(0.95));
    assert_eq!(t.observe(&r, t0 + secs(400), Some(0.95)), None);
    assert_eq!(
        t.observe(&r, t0 + secs(401), Some(0.95)).unwrap().to,
        AlertState::Firing
    );
}

#[test]
fn hysteresis_keeps_firing_while_hovering() {
    let r = pool_warn();
    let t0 = Instant::now();
    let mut t = RuleTracker::new(t0);
    t.observe(&r, t0, Some(0.81));
    assert_eq!(
        t.observe(&r, t0 + secs(300), Some(0.81)).unwrap().to,
        AlertState::Firing
    );
    for i in 0..100 {
        let v = if i % 2 == 0 { 0.76 } else { 0.81 };
        assert_eq!(t.observe(&r, t0 + secs(301 + i * 10), Some(v)), None);
    }
    let s = t0 + secs(2000);
    assert_eq!(t.observe(&r, s, Some(0.70)), None);
    assert_eq!(t.observe(&r, s + secs(59), Some(0.70)), None);
    let tr = t.observe(&r, s + secs(60), Some(0.70)).unwrap();
    assert_eq!((tr.from, tr.to), (AlertState::Firing, AlertState::Resolved));
    // Resolved behaves as inactive: a new episode needs the full hold.
    let tr = t.observe(&r, s + secs(61), Some(0.9)).unwrap();
    assert_eq!(tr.to, AlertState::Pending);
    assert_eq!(t.next_deadline(&r), Some(s + secs(361)));
}

#[test]
fn flapping_within_keep_firing_does_not_resolve() {
    let r = Rule::new("errors", Signal::QueryErrorRate, Comparison::Above, 0.01)
        .keep_firing_for(secs(120));
    let t0 = Instant::now();
    let mut t = RuleTracker::new(t0);
    assert_eq!(
        t.observe(&r, t0, Some(0.05)).unwrap().to,
        AlertState::Firing
    );
    // Below for 90 s, above again, below again: never 120 s clear.
    for k in 0..10u64 {
        let base = t0 + secs(100 * k);
        assert_eq!(t.observe(&r, base + secs(10), Some(0.0)), None);
        assert_eq!(t.observe(&r, base + secs(100), Some(0.05)), None);
    }
    let last_met = t0 + secs(1000);
    assert_eq!(t.observe(&r, last_met + secs(1), Some(0.0)), None);
    assert_eq!(t.next_deadline(&r), Some(last_met + secs(120)));
    assert_eq!(t.observe(&r, last_met + secs(119), Some(0.0)), None);
    let tr = t.observe(&r, last_met + secs(120), Some(0.0)).unwrap();
    assert_eq!(tr.to, AlertState::Resolved);
}

#[test]
fn no_value_is_not_met() {
    let r = Rule::new("errors", Signal::QueryErrorRate, Comparison::Above, 0.01);
    let t0 = Instant::now();
    let mut t = RuleTracker::new(t0);
    assert_eq!(t.observe(&r, t0, None), None);
    assert_eq!(t.state(), AlertState::Inactive);
}

#[test]
fn below_rules_mirror_above_rules() {
    let r = Rule::new("eta", Signal::ExhaustionEta, Comparison::Below, 900.0)
        .hold(secs(60))
        .recover_at(1200.0);
    let t0 = Instant::now();
    let mut t = RuleTracker::new(t0);
    t.observe(&r, t0, Some(800.0));
    assert_eq!(
        t.observe(&r, t0 + secs(60), Some(700.0)).unwrap().to,
        AlertState::Firing
    );
    // 1000 s is past the threshold but not past the recovery line.
    assert_eq!(t.observe(&r, t0 + secs(70), Some(1000.0)), None);
    assert_eq!(t.observe(&r, t0 + secs(80), Some(1000.0)), None);
    assert_eq!(
        t.observe(&r, t0 + secs(90), None).unwrap().to,
        AlertState::Resolved
    );
}

#[test]
fn short_dips_inside_a_busy_tick_do_not_restart_the_hold() {
    let r = Rule::new(POOL_RULE, Signal::Utilization, Comparison::Above, 0.90)
        .hold(secs(120))
        .recover_at(0.85);
    let ms = Duration::from_millis;
    let t0 = Instant::now();
    let mut t = RuleTracker::new(t0);
    t.observe_with(&r, t0, Some(0.92), None);
    for s in 0..120u64 {
        let tick = t0 + secs(s);
        assert_eq!(t.observe_with(&r, tick + ms(500), Some(0.88), None), None);
        assert_eq!(t.observe_with(&r, tick + ms(501), Some(0.92), None), None);
        if s < 119 {
            assert_eq!(
                t.observe_with(&r, tick + secs(1), Some(0.92), tick_of(0.919, tick)),
                None
            );
        }
    }
    let tr = t
        .observe_with(
            &r,
            t0 + secs(120),
            Some(0.92),
            tick_of(0.919, t0 + secs(119)),
        )
        .unwrap();
    assert_eq!(tr.to, AlertState::Firing);
    // A tick averaging below the line does restart it.
    let mut t = RuleTracker::new(t0);
    t.observe_with(&r, t0, Some(0.92), None);
    t.observe_with(&r, t0 + secs(60), Some(0.88), tick_of(0.89, t0 + secs(59)));
    t.observe_with(&r, t0 + secs(61), Some(0.92), None);
    assert_eq!(
        t.observe_with(
            &r,
            t0 + secs(180),
            Some(0.92),
            tick_of(0.92, t0 + secs(179))
        ),
        None
    );
    assert_eq!(
        t.observe_with(
            &r,
            t0 + secs(181),
            Some(0.92),
            tick_of(0.92, t0 + secs(180))
        )
        .unwrap()
        .to,
        AlertState::Firing
    );
}

/// Rule validation lives with the rest of the settings' (`build/validate.rs`).
trait ValidateForTest {
    fn validate_for_test(&self, tick: Duration) -> Result<(), crate::error::BuildError>;
}

impl ValidateForTest for Rule {
    fn validate_for_test(&self, tick: Duration) -> Result<(), crate::error::BuildError> {
        crate::build::validate::rule(self, tick)
    }
}

#[test]
fn validation_names_the_field_and_the_rule() {
    let tick = secs(1);
    let e = pool_warn()
        .recover_at(0.9)
        .validate_for_test(tick)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rule.recover_at") && e.contains("pool_utilization/warning"),
        "{e}"
    );
    let e = pool_warn()
        .threshold_nan()
        .validate_for_test(tick)
        .unwrap_err()
        .to_string();
    assert!(e.contains("rule.threshold"), "{e}");
    let e = Rule::new("t", Signal::Timeouts, Comparison::Above, 5.0)
        .window(Duration::from_millis(10))
        .validate_for_test(tick)
        .unwrap_err()
        .to_string();
    assert!(e.contains("rule.window"), "{e}");
    for r in default_rules().iter().chain(&server_rules()) {
        r.validate_for_test(tick).unwrap();
    }
}

/// A value that meets the rule and one that has clearly recovered.
fn met_and_cleared(r: &Rule) -> (f64, f64) {
    let margin = r.threshold.abs().max(1.0) * 0.1;
    if r.comparison.is_upward() {
        (r.threshold + margin, r.recover_at - margin)
    } else {
        (r.threshold - margin, r.recover_at + margin)
    }
}

#[test]
fn every_default_rule_keeps_firing_through_flapping_and_resolves_on_time() {
    let policy = crate::SaturationPolicy::default();
    for r in policy
        .rules()
        .iter()
        .chain(&default_rules())
        .chain(&server_rules())
    {
        let (met, cleared) = met_and_cleared(r);
        assert!(r.met(met) && r.cleared(cleared), "{}", r.key());
        let t0 = Instant::now();
        let mut t = RuleTracker::new(t0);
        let mut now = t0;
        t.observe(r, now, Some(met));
        // Fires exactly when the hold passes, not a second before.
        if !r.hold.is_zero() {
            now += r.hold - secs(1);
            assert_eq!(t.observe(r, now, Some(met)), None, "{}", r.key());
            now += secs(1);
        }
        assert_eq!(
            t.state(),
            if r.hold.is_zero() {
                AlertState::Firing
            } else {
                AlertState::Pending
            }
        );
        t.observe(r, now, Some(met));
        assert_eq!(t.state(), AlertState::Firing, "{}", r.key());
        // Flapping: recovered for less than the keep-firing time, then
        // met again, for an hour.
        let gap = r.keep_firing_for.max(r.recover_for) - secs(1);
        assert!(!gap.is_zero(), "{} has a keep-firing time", r.key());
        for _ in 0..(3600 / gap.as_secs().max(1)) {
            now += secs(1);
            t.observe(r, now, Some(cleared));
            now += gap - secs(1);
            assert_eq!(t.observe(r, now, Some(cleared)), None, "{}", r.key());
            now += secs(1);
            assert_eq!(t.observe(r, now, Some(met)), None, "{}", r.key());
        }
        // Recovered for good: resolves exactly then.
        let last_met = now;
        t.observe(r, now + secs(1), Some(cleared));
        let due = last_met + r.keep_firing_for.max(r.recover_for + secs(1));
        assert_eq!(t.next_deadline(r), Some(due), "{}", r.key());
        assert_eq!(
            t.observe(r, due - secs(1), Some(cleared)),
            None,
            "{}",
            r.key()
        );
        let tr = t.observe(r, due, Some(cleared)).unwrap();
        assert_eq!(tr.to, AlertState::Resolved, "{}", r.key());
    }
}

#[test]
fn default_rules_with_a_band_keep_firing_inside_it() {
    let policy = crate::SaturationPolicy::default();
    let with_band: Vec<Rule> = policy
        .rules()
        .into_iter()
        .chain(default_rules())
        .chain(server_rules())
        .filter(|r| r.recover_at != r.threshold)
        .collect();
    assert_eq!(
        with_band.len(),
        2 + 8 + 2 + 1 + 2,
        "pool, rates, latencies, oldest wait, scale, server"
    );
    for r in with_band {
        let band = (r.threshold + r.recover_at) / 2.0;
        assert!(!r.met(band) && !r.cleared(band), "{}", r.key());
        let (met, cleared) = met_and_cleared(&r);
        let t0 = Instant::now();
        let mut t = RuleTracker::new(t0);
        t.observe(&r, t0, Some(met));
        t.observe(&r, t0 + r.hold, Some(met));
        assert_eq!(t.state(), AlertState::Firing, "{}", r.key());
        for m in 1..=60 {
            let at = t0 + r.hold + secs(60 * m);
            assert_eq!(t.observe(&r, at, Some(band)), None, "{}", r.key());
        }
        let out = t0 + r.hold + secs(3601);
        t.observe(&r, out, Some(cleared));
        let tr = t.observe(&r, out + r.recover_for, Some(cleared)).unwrap();
        assert_eq!(tr.to, AlertState::Resolved, "{}", r.key());
    }
}

impl Rule {
    fn threshold_nan(mut self) -> Self {
        self.threshold = f64::NAN;
        self
    }
}
