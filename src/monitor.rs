//! The monitor: the guard's shared core and its background task.
//!
//! The task wakes on a tick (default 1 s), when the hot path reports that a
//! count crossed a level edge, and exactly when a hold time being timed runs
//! out. Each wake it reads the counters, rolls the statistics window, feeds
//! the level tracker, publishes gauges and sends events. It holds the core
//! strongly but stops as soon as the last `PoolGuard` clone is dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::accounting::{Accounting, Counters};
use crate::events::{Event, EventHub, SaturationEvent};
use crate::histogram::Counts;
use crate::metrics::{GaugeValues, Gauges};
use crate::saturation::{Level, LevelTracker, SaturationPolicy, Signal};
use crate::snapshot::{Percentiles, Snapshot};

/// Open and idle connections as sqlx reports them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PoolStats {
    pub(crate) size: u32,
    pub(crate) idle: u32,
}

pub(crate) type StatsFn = Box<dyn Fn() -> PoolStats + Send + Sync>;

/// Number of cumulative copies the window keeps (window / SLOTS apart).
const SLOTS: u32 = 6;

/// A cumulative copy of the counters at one instant.
#[derive(Debug)]
struct Mark {
    at: Instant,
    counters: Counters,
    wait: Counts,
    hold: Counts,
}

/// Time-weighted average of the signal over the current tick, integrated
/// from the values seen at each evaluation (ticks and threshold crossings).
#[derive(Debug)]
struct TickAverage {
    started: Instant,
    last_at: Instant,
    last_value: f64,
    area: f64,
}

impl TickAverage {
    fn new(now: Instant) -> Self {
        Self {
            started: now,
            last_at: now,
            last_value: 0.0,
            area: 0.0,
        }
    }

    /// Adds the value that held since the last call; at the end of a tick
    /// returns the tick's average and when it started, and starts the next.
    fn advance(&mut self, now: Instant, value: f64, tick: Duration) -> Option<(f64, Instant)> {
        let dt = now.saturating_duration_since(self.last_at).as_secs_f64();
        self.area += self.last_value * dt;
        self.last_at = now;
        self.last_value = value;
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < tick {
            return None;
        }
        let avg = self.area / elapsed.as_secs_f64();
        let started = self.started;
        self.area = 0.0;
        self.started = now;
        Some((avg, started))
    }

    fn tick_ends(&self, tick: Duration) -> Instant {
        self.started.checked_add(tick).unwrap_or(self.started)
    }
}

#[derive(Debug)]
struct State {
    tracker: LevelTracker,
    average: TickAverage,
    marks: VecDeque<Mark>,
}

/// Shared by the guard handles and the monitor task.
pub(crate) struct Core {
    pub(crate) name: Arc<str>,
    pub(crate) acct: Arc<Accounting>,
    signal: Signal,
    tick: Duration,
    window: Duration,
    state: Mutex<State>,
    gauges: Gauges,
    pub(crate) hub: EventHub,
    stats: StatsFn,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.name)
            .field("acct", &self.acct)
            .field("tick", &self.tick)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// What the core is built from (validated by the builder).
pub(crate) struct CoreParts {
    pub(crate) name: Arc<str>,
    pub(crate) acct: Arc<Accounting>,
    pub(crate) policy: SaturationPolicy,
    pub(crate) tick: Duration,
    pub(crate) window: Duration,
    pub(crate) gauges: Gauges,
    pub(crate) hub: EventHub,
    pub(crate) stats: StatsFn,
}

impl Core {
    pub(crate) fn new(p: CoreParts) -> Self {
        let now = Instant::now();
        let first = Mark {
            at: now,
            counters: p.acct.counters(),
            wait: p.acct.wait.counts(),
            hold: p.acct.hold.counts(),
        };
        Self {
            name: p.name,
            signal: p.policy.signal,
            state: Mutex::new(State {
                tracker: LevelTracker::new(p.policy, now),
                average: TickAverage::new(now),
                marks: VecDeque::from([first]),
            }),
            acct: p.acct,
            tick: p.tick,
            window: p.window,
            gauges: p.gauges,
            hub: p.hub,
            stats: p.stats,
        }
    }

    pub(crate) fn level(&self) -> Level {
        self.state.lock().tracker.level()
    }

    /// The pool now, with window statistics since the oldest kept mark.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let c = self.acct.counters();
        let stats = (self.stats)();
        let wait = self.acct.wait.counts();
        let hold = self.acct.hold.counts();
        let st = self.state.lock();
        self.build_snapshot(&st, now, c, stats, wait, hold)
    }

    fn build_snapshot(
        &self,
        st: &State,
        now: Instant,
        c: Counters,
        stats: PoolStats,
        wait: Counts,
        hold: Counts,
    ) -> Snapshot {
        let oldest = st.marks.front().expect("window keeps at least one mark");
        let max = self.acct.max();
        Snapshot {
            pool: Arc::clone(&self.name),
            level: st.tracker.level(),
            in_use: c.in_use,
            idle: stats.idle,
            size: stats.size,
            max,
            waiters: c.waiters,
            utilization: ratio(c.in_use, max),
            demand: ratio(c.in_use.saturating_add(c.waiters), max),
            acquire_wait: Percentiles::from_counts(&wait.since(&oldest.wait)),
            hold_time: Percentiles::from_counts(&hold.since(&oldest.hold)),
            acquires_in_window: c.acquires_total - oldest.counters.acquires_total,
            timeouts_in_window: c.timeouts_total - oldest.counters.timeouts_total,
            window: now.saturating_duration_since(oldest.at),
            acquires_total: c.acquires_total,
            timeouts_total: c.timeouts_total,
            acquire_errors_total: c.errors_total,
        }
    }

    /// One evaluation; returns when the monitor must evaluate next (end of
    /// the tick, or earlier when a hold time runs out). Time and counts are
    /// read under the lock, so concurrent calls apply in order.
    pub(crate) fn evaluate(&self) -> Instant {
        let stats = (self.stats)();
        let mut st = self.state.lock();
        let now = Instant::now();
        let c = self.acct.counters();
        let max = self.acct.max();
        let utilization = ratio(c.in_use, max);
        let demand = ratio(c.in_use.saturating_add(c.waiters), max);
        let value = match self.signal {
            Signal::Utilization => utilization,
            Signal::Demand => demand,
        };

        let slot = self.window / SLOTS;
        let last = st.marks.back().map(|m| m.at);
        if last.is_none_or(|at| now.saturating_duration_since(at) >= slot) {
            st.marks.push_back(Mark {
                at: now,
                counters: c,
                wait: self.acct.wait.counts(),
                hold: self.acct.hold.counts(),
            });
            while st.marks.len() > 1
                && st
                    .marks
                    .front()
                    .is_some_and(|m| now.saturating_duration_since(m.at) > self.window)
            {
                st.marks.pop_front();
            }
        }
        let tick_avg = st.average.advance(now, value, self.tick);
        let transition = st.tracker.observe_with(now, value, tick_avg);
        let level = st.tracker.level();
        let tick_ends = st.average.tick_ends(self.tick);
        let next = match st.tracker.next_deadline() {
            Some(deadline) if deadline > now => deadline.min(tick_ends),
            _ => tick_ends,
        };
        let event = transition.map(|t| {
            let snapshot = self.build_snapshot(
                &st,
                now,
                c,
                stats,
                self.acct.wait.counts(),
                self.acct.hold.counts(),
            );
            SaturationEvent {
                level: t.to,
                previous: t.from,
                time_in_previous: t.time_in_previous,
                at: SystemTime::now(),
                snapshot,
            }
        });
        self.gauges.publish(&GaugeValues {
            in_use: c.in_use,
            idle: stats.idle,
            max,
            waiters: c.waiters,
            utilization,
            demand,
            level: level.as_number(),
        });
        drop(st);
        if let Some(e) = event {
            match e.level {
                Level::Critical => {
                    tracing::error!(pool = %self.name, level = %e.level, previous = %e.previous, in_use = c.in_use, waiters = c.waiters, max, "pool saturation")
                }
                Level::Warning => {
                    tracing::warn!(pool = %self.name, level = %e.level, previous = %e.previous, in_use = c.in_use, waiters = c.waiters, max, "pool saturation")
                }
                Level::Normal => {
                    tracing::info!(pool = %self.name, level = %e.level, previous = %e.previous, in_use = c.in_use, waiters = c.waiters, max, "pool saturation")
                }
            }
            self.hub.publish(Event::Saturation(e));
        }
        next
    }
}

fn ratio(n: u32, max: u32) -> f64 {
    if max == 0 {
        0.0
    } else {
        f64::from(n) / f64::from(max)
    }
}

/// Runs the monitor until the accounting is closed (last guard dropped).
pub(crate) fn spawn(core: Arc<Core>, rt: &tokio::runtime::Handle) {
    rt.spawn(async move {
        while !core.acct.is_closed() {
            let wake_at = core.evaluate();
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => {}
                () = core.acct.wake.notified() => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventStream;
    use futures::StreamExt;

    /// A core over synthetic counts: the rule timing is tested on tokio's
    /// paused clock with no database I/O to auto-advance it.
    fn core(max: u32, policy: SaturationPolicy) -> Arc<Core> {
        let (hot, gauges) = crate::metrics::register(&Arc::from("synthetic"));
        let acct = Arc::new(Accounting::new(max, &policy, hot));
        Arc::new(Core::new(CoreParts {
            name: Arc::from("synthetic"),
            acct,
            policy,
            tick: Duration::from_secs(1),
            window: Duration::from_secs(60),
            gauges,
            hub: EventHub::new(16),
            stats: Box::new(|| PoolStats { size: 20, idle: 1 }),
        }))
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn next_now(events: &mut EventStream) -> Option<SaturationEvent> {
        match events.next().now_or_never() {
            Some(Some(Ok(Event::Saturation(e)))) => Some(e),
            _ => None,
        }
    }

    use futures::FutureExt;

    #[tokio::test(start_paused = true)]
    async fn stuck_pool_fires_exactly_when_hold_passes_without_new_acquires() {
        let core = core(20, SaturationPolicy::default());
        let mut events = core.hub.subscribe();
        spawn(Arc::clone(&core), &tokio::runtime::Handle::current());
        settle().await;
        // 19 of 20 in use (95 %), then nothing changes.
        let held: Vec<_> = (0..19).map(|_| core.acct.start_wait().acquired()).collect();
        settle().await;
        tokio::time::advance(Duration::from_secs(120) - Duration::from_nanos(1)).await;
        settle().await;
        assert_eq!(core.level(), Level::Normal);
        assert!(next_now(&mut events).is_none());
        tokio::time::advance(Duration::from_nanos(1)).await;
        settle().await;
        let e = next_now(&mut events).expect("critical at exactly 120 s");
        assert_eq!((e.previous, e.level), (Level::Normal, Level::Critical));
        assert_eq!(e.time_in_previous, Duration::from_secs(120));
        assert_eq!(e.snapshot.in_use, 19);
        assert_eq!(e.snapshot.max, 20);
        assert!((e.snapshot.utilization - 0.95).abs() < 1e-9);

        // Release to 50 %: critical and warning clear after the 60 s recovery.
        drop(held);
        let _five: Vec<_> = (0..10).map(|_| core.acct.start_wait().acquired()).collect();
        settle().await;
        tokio::time::advance(Duration::from_secs(59)).await;
        settle().await;
        assert_eq!(core.level(), Level::Critical);
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        let e = next_now(&mut events).expect("recovered");
        assert_eq!((e.previous, e.level), (Level::Critical, Level::Normal));
        assert_eq!(e.snapshot.in_use, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn crossing_in_the_middle_of_a_tick_is_timed_from_the_crossing() {
        let core = core(20, SaturationPolicy::default());
        let mut events = core.hub.subscribe();
        spawn(Arc::clone(&core), &tokio::runtime::Handle::current());
        settle().await;
        tokio::time::advance(Duration::from_millis(1500)).await;
        settle().await; // a tick runs from 1.5 s to 2.5 s
        tokio::time::advance(Duration::from_millis(500)).await;
        settle().await;
        // Crossing at 2 s: the tick ending at 2.5 s averages under 90 %, and
        // the hold must survive it.
        let _held: Vec<_> = (0..19).map(|_| core.acct.start_wait().acquired()).collect();
        settle().await;
        // Step through time so that every tick is evaluated on its own.
        for _ in 0..1199 {
            tokio::time::advance(Duration::from_millis(100)).await;
            settle().await;
        }
        tokio::time::advance(Duration::from_millis(100) - Duration::from_nanos(1)).await;
        settle().await;
        assert!(next_now(&mut events).is_none());
        tokio::time::advance(Duration::from_nanos(1)).await;
        settle().await;
        let e = next_now(&mut events).expect("critical 120 s after the crossing");
        assert_eq!(e.level, Level::Critical);
        assert_eq!(e.time_in_previous, Duration::from_secs(122));
    }

    #[tokio::test(start_paused = true)]
    async fn warning_at_80_percent_waits_five_minutes() {
        let core = core(50, SaturationPolicy::default());
        let mut events = core.hub.subscribe();
        spawn(Arc::clone(&core), &tokio::runtime::Handle::current());
        let _held: Vec<_> = (0..40).map(|_| core.acct.start_wait().acquired()).collect();
        settle().await;
        tokio::time::advance(Duration::from_secs(299)).await;
        settle().await;
        assert!(next_now(&mut events).is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        let e = next_now(&mut events).expect("warning at 300 s");
        assert_eq!((e.previous, e.level), (Level::Normal, Level::Warning));
        assert_eq!(e.time_in_previous, Duration::from_secs(300));
    }

    #[tokio::test(start_paused = true)]
    async fn demand_signal_counts_waiters() {
        let policy = SaturationPolicy {
            signal: Signal::Demand,
            warn_for: Duration::ZERO,
            critical_for: Duration::ZERO,
            ..SaturationPolicy::default()
        };
        let core = core(10, policy);
        let mut events = core.hub.subscribe();
        spawn(Arc::clone(&core), &tokio::runtime::Handle::current());
        let _held: Vec<_> = (0..7).map(|_| core.acct.start_wait().acquired()).collect();
        let _waiting: Vec<_> = (0..2).map(|_| core.acct.start_wait()).collect();
        settle().await;
        let e = next_now(&mut events).expect("demand 0.9 is critical");
        assert_eq!(e.level, Level::Critical);
        assert_eq!((e.snapshot.in_use, e.snapshot.waiters), (7, 2));
        assert!((e.snapshot.demand - 0.9).abs() < 1e-9);
        assert!((e.snapshot.utilization - 0.7).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn monitor_stops_when_closed() {
        let core = core(10, SaturationPolicy::default());
        let handle = tokio::runtime::Handle::current();
        spawn(Arc::clone(&core), &handle);
        settle().await;
        assert_eq!(Arc::strong_count(&core), 2);
        core.acct.close();
        settle().await;
        assert_eq!(Arc::strong_count(&core), 1, "monitor task dropped its core");
    }
}
