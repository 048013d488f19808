//! The tick: time-weighted averages of the instantaneous signals over one
//! tick. Connections in use through the guard are averaged exactly, from
//! the hot path's in-use area (a pool switching between 20 and 21 eight
//! times a tick reads 20.5); the rest (sqlx's untracked connections, the
//! waiters) is integrated from the values seen at each evaluation (ticks
//! and edge crossings).

use std::time::Duration;

use tokio::time::Instant;

use crate::alert::signal::{EndedTick, Instantaneous};

/// Whether an evaluation may end the current tick before it is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TickEnd {
    /// End it only once a whole tick has passed (the monitor's wakes).
    WhenDue,
    /// End it now (benchmarks measure a whole tick's evaluation).
    #[cfg(feature = "bench-hooks")]
    Now,
}

#[derive(Debug)]
pub(crate) struct TickAverage {
    started: Instant,
    last_at: Instant,
    last: Instantaneous,
    area: Instantaneous,
    /// The hot path's in-use area when the tick started, ms.
    in_use_ms_at_start: u64,
}

impl TickAverage {
    /// Starts at `now`, with the hot path's in-use area then.
    pub(crate) fn new(now: Instant, in_use_ms: u64) -> Self {
        Self {
            started: now,
            last_at: now,
            last: Instantaneous::default(),
            area: Instantaneous::default(),
            in_use_ms_at_start: in_use_ms,
        }
    }

    /// Adds the values that held since the last call; at the end of a tick
    /// returns the tick's averages and when it started, and starts the next.
    /// `in_use_ms` is the hot path's in-use area now (connection-ms) and
    /// `max` the pool's size.
    pub(crate) fn advance(
        &mut self,
        now: Instant,
        value: Instantaneous,
        (in_use_ms, max): (u64, u32),
        tick: Duration,
        end: TickEnd,
    ) -> Option<EndedTick> {
        let dt = now.saturating_duration_since(self.last_at).as_secs_f64();
        self.area.utilization += self.last.utilization * dt;
        self.area.demand += self.last.demand * dt;
        self.area.waiters += self.last.waiters * dt;
        self.area.tracked += self.last.tracked * dt;
        self.last_at = now;
        self.last = value;
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < tick && end == TickEnd::WhenDue {
            return None;
        }
        let secs = elapsed.as_secs_f64();
        let in_use = in_use_ms.saturating_sub(self.in_use_ms_at_start);
        self.in_use_ms_at_start = in_use_ms;
        if secs <= 0.0 {
            self.started = now;
            return Some(EndedTick {
                average: value,
                started: now,
            });
        }
        let sampled = self.area.tracked / secs;
        let exact = if max == 0 {
            0.0
        } else {
            in_use as f64 / 1000.0 / secs / f64::from(max)
        };
        // The exact in-use part replaces its sampled estimate; what the
        // guard does not count (untracked, waiters' claim) stays sampled.
        let correction = exact - sampled;
        let average = Instantaneous {
            utilization: (self.area.utilization / secs + correction).clamp(0.0, 1.0),
            demand: (self.area.demand / secs + correction).max(0.0),
            waiters: self.area.waiters / secs,
            tracked: exact,
        };
        let started = self.started;
        self.area = Instantaneous::default();
        self.started = now;
        Some(EndedTick { average, started })
    }

    pub(crate) fn tick_ends(&self, tick: Duration) -> Instant {
        self.started.checked_add(tick).unwrap_or(self.started)
    }
}
