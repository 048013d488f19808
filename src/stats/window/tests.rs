use super::*;
use crate::hot::histogram::Counts;

fn hist() -> HistSet {
    HistSet {
        wait: Counts::empty(),
        hold: Counts::empty(),
        query: Counts::empty(),
        request: Counts::empty(),
    }
}

fn c(timeouts: u64) -> Counters {
    Counters {
        timeouts_total: timeouts,
        ..Counters::default()
    }
}

#[test]
fn counts_in_a_window_are_exact_to_a_tick_and_memory_is_bounded() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut w = Window::new(t0, s(1), s(300), &[s(60)], c(0), hist());
    // One timeout per second for an hour.
    for i in 1..=3600u64 {
        w.push(t0 + s(i), c(i), hist);
    }
    let now = t0 + s(3600);
    let (older, covered) = w.counters_at(now, s(300));
    assert_eq!(3600 - older.timeouts_total, 300);
    assert_eq!(covered, s(300));
    let (counters, hists) = w.len();
    assert!(counters <= 302, "{counters} counter marks");
    assert!(hists <= 14, "{hists} histogram marks");
    // A window longer than what is kept covers what is kept.
    let (older, covered) = w.counters_at(now, s(10_000));
    assert!(covered <= s(301) && covered >= s(300), "{covered:?}");
    assert!(older.timeouts_total >= 3299);
    // A long window with a short tick stays bounded too.
    let mut w = Window::new(t0, s(1) / 10, s(86_400), &[s(60), s(3600)], c(0), hist());
    for i in 1..=100_000u64 {
        w.push(t0 + s(i), c(i), hist);
    }
    let (counters, hists) = w.len();
    assert!(counters <= 3602, "{counters} counter marks");
    assert!(hists <= 2 * 14, "{hists} histogram marks");
}

#[test]
fn young_window_covers_what_exists() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut w = Window::new(t0, s(1), s(300), &[s(60)], c(0), hist());
    w.push(t0 + s(1), c(3), hist);
    let (older, covered) = w.counters_at(t0 + s(2), s(300));
    assert_eq!((older.timeouts_total, covered), (0, s(2)));
}
