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
