use proptest::prelude::*;

use super::*;

/// The band as a plain search of the edges (what the tables stand for).
fn searched(e: &Edges, in_use: u32, waiters: u32) -> u32 {
    let count = |list: usize, v: u32| {
        e.lists[list][..e.lens[list]]
            .iter()
            .filter(|&&x| v >= x)
            .count() as u32
    };
    count(0, in_use.saturating_add(waiters)) + BAND_BASE * count(1, waiters)
}

proptest! {
    #[test]
    fn tables_answer_as_the_search_does(
        edges in proptest::collection::vec((0usize..2, 0u32..6000), 0..20),
        in_use in 0u32..7000,
        waiters in 0u32..7000,
    ) {
        let mut e = Edges::default();
        for (list, at) in edges {
            let count = [Watched::Demand, Watched::Waiters][list];
            e.add(count, at);
        }
        prop_assert_eq!(e.band(in_use, waiters), searched(&e, in_use, waiters));
    }
}

#[test]
fn an_edge_past_the_table_limit_falls_back_to_the_search() {
    let mut e = Edges::default();
    e.add(Watched::Waiters, MAX_TABLE + 10);
    assert!(e.crossed[Watched::Waiters as usize].is_none());
    assert_ne!(e.band(0, MAX_TABLE + 9), e.band(0, MAX_TABLE + 10));
}
