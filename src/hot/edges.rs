//! The counts at which some rule's verdict may change, precomputed (from
//! the rules, by `alert/rule_set.rs`) so the hot path only compares: when a
//! count moves into another band between edges, the monitor is woken.

/// Most edges kept per watched count; rules past that are still evaluated,
/// on the tick.
pub(crate) const MAX_EDGES: usize = 8;

/// A list's crossed-edge count is `0..=MAX_EDGES`: the band packs the two
/// lists' counts as digits of this base.
const BAND_BASE: u32 = MAX_EDGES as u32 + 1;

// The two digits must fit a `u32` band.
const _: () = assert!((BAND_BASE as u64).pow(2) <= u32::MAX as u64);

/// Which count an edge is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Watched {
    /// Busy connections (in use through the guard, and sqlx's untracked
    /// ones as the monitor last counted them) plus waiting: the count
    /// behind utilization and demand.
    Demand = 0,
    /// Acquires waiting.
    Waiters = 1,
}

/// Longest lookup table kept per watched count: counts up to the highest
/// edge are answered by one load (pools and thresholds of any usual size);
/// a list with an edge past this is searched instead.
const MAX_TABLE: u32 = 4096;

/// Edges per watched count, in whole connections (or waiters).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Edges {
    lists: [[u32; MAX_EDGES]; 2],
    lens: [usize; 2],
    /// Per list, for each count up to the highest edge, how many edges it
    /// has crossed (counts past the table have crossed them all); `None`:
    /// an edge past [`MAX_TABLE`].
    crossed: [Option<Box<[u8]>>; 2],
}

impl Edges {
    /// Adds an edge at `at` on `count` (a duplicate or an edge past
    /// [`MAX_EDGES`] is dropped).
    pub(crate) fn add(&mut self, count: Watched, at: u32) {
        let list = count as usize;
        let len = self.lens[list];
        if len < MAX_EDGES && !self.lists[list][..len].contains(&at) {
            self.lists[list][len] = at;
            self.lens[list] += 1;
            self.crossed[list] = self.table(list);
        }
    }

    /// The lookup table of one list (built once, at build time).
    fn table(&self, list: usize) -> Option<Box<[u8]>> {
        let edges = &self.lists[list][..self.lens[list]];
        let top = edges.iter().copied().max()?;
        (top <= MAX_TABLE).then(|| {
            (0..=top)
                .map(|v| edges.iter().filter(|&&e| v >= e).count() as u8)
                .collect()
        })
    }

    /// A number that changes whenever a count crosses an edge (`busy`:
    /// connections in use and untracked).
    #[inline]
    pub(crate) fn band(&self, busy: u32, waiters: u32) -> u32 {
        let demand = busy.saturating_add(waiters);
        let crossed = |count: Watched, v: u32| {
            let list = count as usize;
            match &self.crossed[list] {
                Some(t) => u32::from(t.get(v as usize).copied().unwrap_or(t[t.len() - 1])),
                None if self.lens[list] == 0 => 0,
                None => self.lists[list][..self.lens[list]]
                    .iter()
                    .filter(|&&e| v >= e)
                    .count() as u32,
            }
        };
        crossed(Watched::Demand, demand) + BAND_BASE * crossed(Watched::Waiters, waiters)
    }
}

#[cfg(test)]
mod tests;
