use super::*;

#[test]
fn edges_are_the_first_count_past_the_line() {
    use Comparison::*;
    assert_eq!(edge(AtOrAbove, 0.8 * 10.0), 8);
    assert_eq!(edge(Above, 0.8 * 10.0), 9, "8 of 10 is not > 80 %");
    assert_eq!(edge(Above, 0.9 * 50.0), 46);
    assert_eq!(edge(Below, 0.75 * 10.0), 8, "7 < 7.5, 8 is not");
    assert_eq!(edge(AtOrBelow, 0.85 * 7.0), 6);
    assert_eq!(edge(AtOrAbove, 1.0 * 3.0), 3);
}

#[test]
fn band_changes_at_every_edge() {
    let rules = RuleSet::of([
        Rule::new("a", Signal::Utilization, Comparison::Above, 0.8).recover_at(0.75),
        Rule::new("b", Signal::Demand, Comparison::AtOrAbove, 1.0),
        Rule::new("c", Signal::Waiters, Comparison::Above, 2.0),
    ]);
    let e = rules.edges(10);
    let mut last = e.band(0, 0);
    let mut changes = 0;
    for in_use in 1..=10 {
        let b = e.band(in_use, 0);
        changes += u32::from(b != last);
        last = b;
    }
    assert_eq!(changes, 3, "8 (recovery), 9 (threshold), 10 (demand 1.0)");
    assert_ne!(e.band(10, 2), e.band(10, 3), "waiters > 2");
}

#[test]
fn utilization_edges_are_crossed_by_waiters_too() {
    // The rule judges min(busy + waiters, max) / max: a pool of 10 with 7
    // busy and 2 waiting is at 90 %, past 80 %, and the hot path must wake
    // the monitor for it.
    let rules = RuleSet::of([Rule::new("a", Signal::Utilization, Comparison::Above, 0.8)]);
    let e = rules.edges(10);
    assert_eq!(e.band(7, 0), e.band(7, 1), "8 of 10 is not above 80 %");
    assert_ne!(e.band(7, 1), e.band(7, 2), "9 of 10 is");
}

#[test]
fn upsert_replaces_by_name_and_severity_and_remove_takes_every_severity() {
    let warn = Rule::new("x", Signal::Waiters, Comparison::Above, 1.0);
    let crit = warn.clone().severity(Severity::Critical);
    let mut set = RuleSet::of([warn.clone(), crit.clone()]);
    set.upsert(warn.clone().hold(std::time::Duration::from_secs(9)));
    assert_eq!(set.len(), 2);
    assert_eq!(
        set[1].hold,
        std::time::Duration::from_secs(9),
        "moved to the end"
    );
    set.remove("x");
    assert!(set.is_empty());
}
