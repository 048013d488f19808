//! The tick: time-weighted averages of the instantaneous signals over one
//! tick, integrated from the values seen at each evaluation (ticks and edge
//! crossings).

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
}

impl TickAverage {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            started: now,
            last_at: now,
            last: Instantaneous::default(),
            area: Instantaneous::default(),
        }
    }

    /// Adds the values that held since the last call; at the end of a tick
    /// returns the tick's averages and when it started, and starts the next.
    pub(crate) fn advance(
        &mut self,
        now: Instant,
        value: Instantaneous,
        tick: Duration,
        end: TickEnd,
    ) -> Option<EndedTick> {
        let dt = now.saturating_duration_since(self.last_at).as_secs_f64();
        self.area.utilization += self.last.utilization * dt;
        self.area.demand += self.last.demand * dt;
        self.area.waiters += self.last.waiters * dt;
        self.last_at = now;
        self.last = value;
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < tick && end == TickEnd::WhenDue {
            return None;
        }
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            self.started = now;
            return Some(EndedTick {
                average: value,
                started: now,
            });
        }
        let average = Instantaneous {
            utilization: self.area.utilization / secs,
            demand: self.area.demand / secs,
            waiters: self.area.waiters / secs,
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
