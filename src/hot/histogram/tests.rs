use super::*;

#[test]
fn index_and_bounds_agree() {
    for us in (0..100_000u64).chain([1 << 30, (1 << 41) - 1, 1 << 41, u64::MAX]) {
        let idx = index(us);
        assert!(idx < BUCKETS, "{us} -> {idx}");
        let (lo, hi) = bounds(idx);
        if idx < BUCKETS - 1 {
            assert!(
                lo <= us && us < hi,
                "{us} not in [{lo}, {hi}) of bucket {idx}"
            );
        }
    }
    // Buckets are contiguous and increasing.
    for idx in 1..BUCKETS {
        assert_eq!(bounds(idx - 1).1, bounds(idx).0, "gap at {idx}");
    }
}

#[test]
fn quantiles_are_within_bucket_error() {
    let h = AtomicHistogram::new();
    for ms in 1..=1000u64 {
        h.record(Duration::from_millis(ms));
    }
    let c = h.counts();
    for (q, want) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
        let got = c.quantile(q).unwrap().as_secs_f64() * 1000.0;
        assert!((got - want).abs() / want < 0.07, "q{q}: {got} vs {want}");
    }
    assert_eq!(Counts::empty().quantile(0.5), None);
    let later = h.counts();
    h.record(Duration::from_micros(3));
    let diff = h.counts().since(&later);
    assert_eq!(diff.total(), 1);
    assert_eq!(diff.quantile(0.99), Some(Duration::from_micros(3)));
}
