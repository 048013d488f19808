//! Event delivery: callbacks and any number of streams, fed by one broadcast
//! channel that only the monitor task sends on (never the acquire path).
//!
//! Each callback runs on its own thread, inside `catch_unwind`: a slow callback
//! delays only itself and a panicking one is logged and keeps receiving. A
//! stream that falls more than the channel capacity behind is told how many
//! events it missed ([`EventsMissed`]) and continues with the newest.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::sync::broadcast;

use crate::alert::rule::{AlertState, Severity};
use crate::alert::saturation::Level;
use crate::alert::signal::Signal;
use crate::protect::breaker::BreakerState;
use crate::report::snapshot::Snapshot;
use crate::stats::forecast::Forecast;
use crate::stats::scale::ScaleHint;

/// Something the guard observed.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// The saturation level (the pool rules' summary) changed.
    Saturation(SaturationEvent),
    /// A rule changed state (every transition, pool rules included).
    Alert(AlertEvent),
    /// The scale rule fired: the pool size the load needs.
    ScaleHint(ScaleHint),
    /// A connection was held past the leak threshold, or came back after.
    Leak(LeakEvent),
    /// The circuit breaker changed state.
    Breaker(BreakerEvent),
}

/// A circuit-breaker transition.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct BreakerEvent {
    /// State before.
    pub from: BreakerState,
    /// State after.
    pub to: BreakerState,
    /// Failure rate that decided it (window, or the half-open trials).
    pub failure_rate: f64,
    /// Slow-call rate that decided it.
    pub slow_call_rate: f64,
    /// Calls behind those rates.
    pub calls: u32,
    /// When opened: how long until the half-open trial.
    pub retry_in: Option<Duration>,
    /// In MetricsOnly (shadow) mode: nothing is rejected.
    pub shadow: bool,
    /// Wall-clock time of the change.
    pub at: SystemTime,
}

/// A rule's state changed.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AlertEvent {
    /// The rule's name.
    pub rule: Arc<str>,
    /// The rule's severity.
    pub severity: Severity,
    /// What the rule watches.
    pub signal: Signal,
    /// The new state.
    pub state: AlertState,
    /// The state before.
    pub previous: AlertState,
    /// The signal's value when the state changed (`None`: no value, e.g.
    /// fewer samples than the rule's minimum).
    pub value: Option<f64>,
    /// The rule's threshold.
    pub threshold: f64,
    /// How long the rule was in `previous` (for `Firing`: the hold).
    pub time_in_previous: Duration,
    /// Wall-clock time of the change.
    pub at: SystemTime,
    /// The exhaustion forecast, on rules over [`Signal::ExhaustionEta`].
    pub forecast: Option<Forecast>,
    /// What traffic was expected and what came, on rules over
    /// [`Signal::TrafficAnomaly`] once the baseline exists.
    pub traffic: Option<TrafficSurprise>,
    /// The pool when the state changed.
    pub snapshot: Snapshot,
}

/// The arrival rate the traffic anomaly expected now (the last hour's
/// trend) and the one that came over the last minute, per second in the
/// guard's own time (under `time_scale`, the incident's).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct TrafficSurprise {
    /// Arrivals per second the baseline predicted.
    pub expected: f64,
    /// Arrivals per second over the last minute.
    pub observed: f64,
}

impl std::fmt::Display for TrafficSurprise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1}/s expected, {:.1}/s came",
            self.expected, self.observed
        )
    }
}

/// A suspected connection leak (HikariCP's `leakDetectionThreshold`).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct LeakEvent {
    /// Where the connection was acquired (`#[track_caller]`).
    #[cfg_attr(feature = "serde", serde(serialize_with = "location_text"))]
    pub acquired_at: &'static std::panic::Location<'static>,
    /// How long it has been held (when `returned`: how long it was held).
    pub held_for: Duration,
    /// `false`: still held past the threshold; `true`: it came back.
    pub returned: bool,
    /// Wall-clock time of the observation.
    pub at: SystemTime,
}

/// A change of saturation level.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SaturationEvent {
    /// The new level.
    pub level: Level,
    /// The level before.
    pub previous: Level,
    /// How long the pool was at `previous`.
    pub time_in_previous: Duration,
    /// Wall-clock time of the change.
    pub at: SystemTime,
    /// The pool when the level changed.
    pub snapshot: Snapshot,
}

/// A stream fell behind and lost this many events (the oldest ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event stream lagged: {missed} events missed")]
#[non_exhaustive]
pub struct EventsMissed {
    /// Number of events dropped for this stream.
    pub missed: u64,
}

/// A callback for every event.
pub(crate) type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

/// The sending side, owned by the guard's shared part.
#[derive(Debug)]
pub(crate) struct EventHub {
    tx: broadcast::Sender<Event>,
}

impl EventHub {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity).0,
        }
    }

    pub(crate) fn publish(&self, event: Event) {
        // No receivers is fine: nobody listens.
        let _ = self.tx.send(event);
    }

    pub(crate) fn subscribe(&self) -> EventStream {
        EventStream::new(self.tx.subscribe())
    }

    /// Runs `callback` for every event on its own thread until the hub is
    /// dropped. A plain thread, not a runtime worker: a callback that blocks
    /// or sleeps cannot stall `acquire()`, the monitor or other callbacks, even
    /// on a current-thread runtime, and it never holds up runtime shutdown.
    pub(crate) fn spawn_callback(&self, callback: Callback, pool: Arc<str>) -> std::io::Result<()> {
        let mut rx = self.tx.subscribe();
        std::thread::Builder::new()
            .name(format!("poolguard-callback-{pool}"))
            .spawn(move || loop {
                match rx.blocking_recv() {
                    Ok(event) => {
                        if catch_unwind(AssertUnwindSafe(|| callback(&event))).is_err() {
                            tracing::error!(pool = %pool, ?event, "poolguard event callback panicked");
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(pool = %pool, missed, "poolguard event callback fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            })
            .map(drop)
    }
}

/// A `futures::Stream` of the guard's events, from [`PoolGuard::events`](crate::PoolGuard::events).
///
/// Yields `Err(EventsMissed)` once when it fell behind, then carries on; ends
/// when the guard is dropped.
pub struct EventStream {
    inner: BoxStream<'static, Result<Event, EventsMissed>>,
}

impl EventStream {
    fn new(rx: broadcast::Receiver<Event>) -> Self {
        let inner = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(e) => Some((Ok(e), rx)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Some((Err(EventsMissed { missed }), rx))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed();
        Self { inner }
    }
}

impl Stream for EventStream {
    type Item = Result<Event, EventsMissed>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

/// A call site as `file:line:column`.
#[cfg(feature = "serde")]
fn location_text<S: serde::Serializer>(
    location: &&'static std::panic::Location<'static>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(location)
}
