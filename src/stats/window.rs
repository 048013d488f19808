//! Bucketed windows with bounded memory.
//!
//! The hot path only adds to cumulative counters and histograms. The monitor
//! keeps cumulative copies ("marks") at fixed spacing and answers "how much
//! in the last W" by subtracting the newest mark at or before `now - W` from
//! the current counts, so memory is bounded by `span / spacing` marks and a
//! read costs one binary search and one subtraction.
//!
//! Counters are marked every tick (a window is exact to the tick), or every
//! 1/3600 of the longest window if that is coarser. Histograms, ~2.5 KB
//! each, keep one ring per distinct window length, marked every twelfth of
//! that window, so a window of W covers W to W + W/12 and a long window never
//! coarsens a short one.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::hot::accounting::Counters;
use crate::hot::histogram::HistSet;

/// Most counter marks a window keeps.
const MAX_MARKS: u32 = 3600;
/// Histogram marks per window (a window of W covers W to W + W/12).
const HIST_SLOTS: u32 = 12;

/// A copy taken at an instant.
#[derive(Debug)]
struct Mark<T> {
    at: Instant,
    value: T,
}

#[derive(Debug)]
struct Ring<T> {
    marks: VecDeque<Mark<T>>,
    spacing: Duration,
    span: Duration,
}

impl<T> Ring<T> {
    fn new(now: Instant, first: T, spacing: Duration, span: Duration) -> Self {
        Self {
            marks: VecDeque::from([Mark {
                at: now,
                value: first,
            }]),
            spacing,
            span,
        }
    }

    fn due(&self, now: Instant) -> bool {
        self.marks
            .back()
            .is_none_or(|m| now.saturating_duration_since(m.at) >= self.spacing)
    }

    fn push(&mut self, now: Instant, value: T) {
        self.marks.push_back(Mark { at: now, value });
        // Keep one mark at or before `now - span`, drop the older ones.
        if let Some(target) = now.checked_sub(self.span) {
            while self.marks.len() > 1 && self.marks[1].at <= target {
                self.marks.pop_front();
            }
        }
    }

    /// The newest mark at or before `now - w` (the oldest if the window is
    /// not yet full), and how long ago it was taken.
    fn at(&self, now: Instant, w: Duration) -> (&T, Duration) {
        let idx = match now.checked_sub(w) {
            Some(target) => self.marks.partition_point(|m| m.at <= target),
            None => 0,
        };
        let m = &self.marks[idx.saturating_sub(1)];
        (&m.value, now.saturating_duration_since(m.at))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.marks.len()
    }
}

/// Counter and histogram marks.
#[derive(Debug)]
pub(crate) struct Window {
    counters: Ring<Counters>,
    /// One ring per distinct histogram window, shortest first.
    hists: Vec<(Duration, Ring<HistSet>)>,
}

impl Window {
    /// `span`: longest counter window; `hist_windows`: every histogram
    /// window in use.
    pub(crate) fn new(
        now: Instant,
        tick: Duration,
        span: Duration,
        hist_windows: &[Duration],
        counters: Counters,
        hist: HistSet,
    ) -> Self {
        // Half a tick: an evaluation a hair early still marks its tick.
        let spacing = (tick / 2).max(span / MAX_MARKS);
        let mut windows = hist_windows.to_vec();
        windows.sort();
        windows.dedup();
        Self {
            counters: Ring::new(now, counters, spacing, span),
            hists: windows
                .into_iter()
                .map(|w| {
                    let ring = Ring::new(now, hist.clone(), (w / HIST_SLOTS).max(tick / 2), w);
                    (w, ring)
                })
                .collect(),
        }
    }

    /// Adds marks when due; `hist` is only called when a histogram mark is.
    pub(crate) fn push(&mut self, now: Instant, c: Counters, hist: impl Fn() -> HistSet) {
        if self.counters.due(now) {
            self.counters.push(now, c);
        }
        for (_, ring) in &mut self.hists {
            if ring.due(now) {
                ring.push(now, hist());
            }
        }
    }

    pub(crate) fn counters_at(&self, now: Instant, w: Duration) -> (Counters, Duration) {
        let (c, covered) = self.counters.at(now, w);
        (*c, covered)
    }

    /// From the ring of the shortest window at least `w` long (the longest
    /// if none is).
    pub(crate) fn hist_at(&self, now: Instant, w: Duration) -> &HistSet {
        let ring = self
            .hists
            .iter()
            .find(|(len, _)| *len >= w)
            .or(self.hists.last())
            .map(|(_, r)| r)
            .expect("at least the stats window");
        ring.at(now, w).0
    }

    /// Marks kept (memory is bounded by this).
    #[cfg(test)]
    pub(crate) fn len(&self) -> (usize, usize) {
        let hists = self.hists.iter().map(|(_, r)| r.len()).sum();
        (self.counters.len(), hists)
    }
}

#[cfg(test)]
mod tests;
