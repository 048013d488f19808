use super::*;

/// A pool of 50 watched over 60 s: `rate` offered acquires a second, each
/// held `hold` seconds, `leaked` more connections held the whole window.
fn inputs(rate: f64, hold: f64, leaked: f64) -> Facts {
    let window = 60.0;
    let acquires = (rate * window) as u64;
    let ended_ms = rate * window * hold * 1e3;
    Facts {
        max: 50,
        waiters: 0,
        window,
        arrivals: acquires,
        acquires,
        in_use_ms: (ended_ms + leaked * window * 1e3) as u64,
        holds_ended: acquires,
        ended_ms,
        baseline: Some(Usual {
            rate: 85.0,
            hold: 0.2,
            hold_p50: None,
            hold_p95: None,
        }),
        stall_after: Duration::from_secs(5),
        ..Facts::default()
    }
}

fn grow(needed: f64) -> ScaleHint {
    crate::stats::scale::recommend(needed, 0.6, 50, 1, None)
}

fn share(d: &Diagnosis, cause: Cause) -> f64 {
    d.shares
        .iter()
        .find(|(c, _)| *c == cause)
        .map_or(0.0, |(_, s)| *s)
}

#[test]
fn three_times_the_arrivals_at_the_usual_hold_is_more_arrivals() {
    let d = diagnose(&inputs(255.0, 0.2, 0.0), grow);
    assert_eq!(d.cause, Cause::MoreArrivals, "{d}");
    assert!(share(&d, Cause::MoreArrivals) > 0.99, "{d:?}");
    let Action::Grow(h) = d.action else {
        panic!("{d}")
    };
    // 255/s x 0.2 s = 51 connections, at 60 %: 85.
    assert_eq!(h.recommended_max, 85, "{h:?}");
    assert!((d.evidence.in_use - 51.0).abs() < 0.01);
}

#[test]
fn the_usual_arrivals_holding_longer_is_longer_holds() {
    let d = diagnose(&inputs(85.0, 0.5, 0.0), grow);
    assert_eq!(d.cause, Cause::LongerHolds, "{d}");
    let Action::FindSlowHolds { hold_ratio, .. } = d.action else {
        panic!("{d}")
    };
    assert!((hold_ratio - 2.5).abs() < 0.01, "{hold_ratio}");
    assert!(d.to_string().contains("do not grow the pool"), "{d}");
}

#[test]
fn causes_combine_in_proportion_to_their_log_growth() {
    // Arrivals x2, holds x1.5: ln 2 / (ln 2 + ln 1.5) = 63 % arrivals.
    let d = diagnose(&inputs(170.0, 0.3, 0.0), grow);
    assert_eq!(d.cause, Cause::MoreArrivals);
    let a = share(&d, Cause::MoreArrivals);
    let h = share(&d, Cause::LongerHolds);
    assert!(
        (a - 0.631).abs() < 0.01 && (h - 0.369).abs() < 0.01,
        "{d:?}"
    );
}

#[test]
fn connections_no_ended_hold_accounts_for_are_a_leak() {
    // The usual traffic (17 connections) plus 25 never returned.
    let mut i = inputs(85.0, 0.2, 25.0);
    static HERE: std::sync::OnceLock<&'static Location<'static>> = std::sync::OnceLock::new();
    let at = *HERE.get_or_init(Location::caller);
    i.leak_at = Some(at);
    let d = diagnose(&i, grow);
    assert_eq!(d.cause, Cause::Leak, "{d}");
    assert!((d.evidence.not_returned - 25.0).abs() < 0.01);
    assert_eq!(d.action, Action::FixLeak { at: Some(at) });
    assert!(d.to_string().contains("leak at"), "{d}");
}

#[test]
fn a_stall_and_a_full_server_come_first() {
    let mut i = inputs(255.0, 0.2, 0.0);
    i.stalled_for = Duration::from_secs(6);
    assert_eq!(diagnose(&i, grow).cause, Cause::Stalled);
    i.stalled_for = Duration::from_secs(4);
    assert_eq!(diagnose(&i, grow).cause, Cause::MoreArrivals);
    i.server = Some(ServerCapacity {
        max_connections: 100,
        reserved: 3,
        backends: 96,
    });
    let d = diagnose(&i, grow);
    assert_eq!(d.cause, Cause::ServerLimit);
    assert_eq!(
        d.action,
        Action::RaiseServerLimit {
            used: 96,
            available: 97
        }
    );
}

#[test]
fn usual_load_is_undersized_and_no_baseline_is_unknown() {
    let d = diagnose(&inputs(90.0, 0.2, 0.0), grow);
    assert_eq!(d.cause, Cause::Undersized, "{d}");
    let mut i = inputs(255.0, 0.2, 0.0);
    i.baseline = None;
    let d = diagnose(&i, grow);
    assert_eq!(d.cause, Cause::Unknown);
    assert!(matches!(d.action, Action::Grow(_)));
}

#[test]
fn the_cause_that_rose_first_is_the_root() {
    // Arrivals x2, holds x3 now: by size holds dominate...
    let mut i = inputs(170.0, 0.6, 0.0);
    assert_eq!(diagnose(&i, grow).cause, Cause::LongerHolds);
    // ...but the traffic rose 12 minutes ago and the holds only 6: the
    // database slows under the spike.
    i.onsets = (Some(12), Some(6));
    let d = diagnose(&i, grow);
    assert_eq!(d.cause, Cause::MoreArrivals, "{d}");
    assert!(matches!(d.action, Action::Grow(_)));
    // Holds first, arrivals later (retries): a slow statement.
    let mut i = inputs(255.0, 0.3, 0.0);
    i.onsets = (Some(2), Some(9));
    assert_eq!(diagnose(&i, grow).cause, Cause::LongerHolds);
}
