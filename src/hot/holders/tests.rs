use super::*;

fn site_a() -> &'static Location<'static> {
    Location::caller()
}

#[track_caller]
fn here() -> &'static Location<'static> {
    Location::caller()
}

#[test]
fn area_per_site_counts_holds_in_progress_and_ended() {
    let h = Holders::new();
    let (a, b) = (site_a(), here());
    let (sa, sb) = (h.slot_of(a), h.slot_of(b));
    assert_ne!(sa, sb);
    assert_eq!(h.slot_of(a), sa, "the same site, the same slot");
    h.start(sa, 1_000);
    h.start(sa, 1_500);
    h.start(sb, 1_200);
    h.end(sb, 1_200, 1_300);
    let mut seen = Vec::new();
    h.read(2_000, |r| seen.push(r));
    let ra = seen.iter().find(|r| r.site == Some(a)).unwrap();
    let rb = seen.iter().find(|r| r.site == Some(b)).unwrap();
    // a: two holds in progress, 1000 + 500 ms so far.
    assert_eq!(
        (ra.area_ms, ra.open_ms, ra.holding, ra.acquires),
        (1_500, 1_500, 2, 2)
    );
    // b: one hold of 100 ms, ended.
    assert_eq!(
        (rb.area_ms, rb.open_ms, rb.holding, rb.acquires),
        (100, 0, 0, 1)
    );
    assert_eq!(h.area_ms(2_000), 1_600);
}

#[test]
fn sites_past_the_table_share_the_overflow_slot() {
    let h = Holders::new();
    // More distinct call sites than slots: leaked locations stand in.
    let sites: Vec<&'static Location<'static>> = (0..SITES * 2)
        .map(|_| &*Box::leak(Box::new(*Location::caller())))
        .collect();
    let slots: Vec<u16> = sites.iter().map(|s| h.slot_of(s)).collect();
    let overflow = slots.iter().filter(|s| usize::from(**s) == SITES).count();
    assert!(overflow >= SITES, "{overflow}");
    for (i, s) in slots.iter().enumerate() {
        h.start(*s, i as u64);
        h.end(*s, i as u64, i as u64 + 10);
    }
    let mut total = 0;
    let mut overflow_reading = None;
    h.read(1_000, |r| {
        total += r.area_ms;
        if r.site.is_none() {
            overflow_reading = Some(r);
        }
    });
    assert_eq!(total, 10 * (SITES as u64) * 2, "every hold counted once");
    assert_eq!(overflow_reading.unwrap().acquires, overflow as u64);
}
