use super::*;

#[test]
fn reports_once_then_reports_the_return() {
    let clock = Clock::start();
    let t0 = clock.origin();
    let table = LeakTable::new(clock, Duration::from_secs(30), 2);
    let on = |at: Instant| clock.at(at);
    let here = Location::caller();
    let a = table.claim(on(t0), here).unwrap();
    let b = table.claim(on(t0), here).unwrap();
    assert!(
        !table.release(b, Duration::from_secs(1)),
        "short hold: nothing to report"
    );
    // The slot of `b` is reused; a stale release of the old claim is a no-op.
    let b2 = table.claim(on(t0 + Duration::from_secs(20)), here).unwrap();
    assert_ne!(b, b2);
    assert!(!table.release(b, Duration::from_secs(1)));
    assert!(!table.release(b2, Duration::from_secs(1)));
    let mut seen = Vec::new();
    table.scan(t0 + Duration::from_secs(29), |f| seen.push(f));
    assert!(seen.is_empty());
    table.scan(t0 + Duration::from_secs(31), |f| seen.push(f));
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].returned);
    assert_eq!(seen[0].location.line(), here.line());
    table.scan(t0 + Duration::from_secs(40), |f| seen.push(f));
    assert_eq!(seen.len(), 1, "reported once");
    assert!(table.release(a, Duration::from_secs(45)));
    table.scan(t0 + Duration::from_secs(46), |f| seen.push(f));
    assert_eq!(seen.len(), 2);
    assert!(seen[1].returned);
    assert_eq!(seen[1].held_for, Duration::from_secs(45));
    // Every slot is free again.
    for _ in 0..4 {
        assert!(table.claim(on(t0), here).is_some());
    }
    assert!(table.claim(on(t0), here).is_none());
}

#[test]
fn a_hold_its_owner_expects_is_reported_only_past_that() {
    let clock = Clock::start();
    let t0 = clock.origin();
    let table = LeakTable::new(clock, Duration::from_secs(300), 2);
    let here = Location::caller();
    let batch = table.claim(clock.at(t0), here).unwrap();
    table.expect_hold(batch, Duration::from_secs(900));
    let other = table.claim(clock.at(t0), here).unwrap();
    // The other hold's deadline comes first, the batch job's at 15 minutes.
    assert_eq!(table.next_deadline(), Some(t0 + Duration::from_secs(300)));
    let mut seen = Vec::new();
    table.scan(t0 + Duration::from_secs(600), |f| seen.push(f));
    assert_eq!(seen.len(), 1, "only the other hold, past 5 minutes");
    assert!(
        !table.release(batch, Duration::from_secs(601)),
        "not reported"
    );
    assert!(table.release(other, Duration::from_secs(601)));
    // A new claim of the batch job's slot has the table's threshold again.
    let again = table.claim(clock.at(t0), here).unwrap();
    seen.clear();
    table.scan(t0 + Duration::from_secs(301), |f| seen.push(f));
    assert_eq!(seen.len(), 2, "the returned hold and the new one: {seen:?}");
    assert!(table.release(again, Duration::from_secs(301)));
    // Shorter than the table's threshold: the table's still applies.
    let short = table.claim(clock.at(t0), here).unwrap();
    table.expect_hold(short, Duration::from_secs(10));
    assert_eq!(table.next_deadline(), Some(t0 + Duration::from_secs(300)));
}
