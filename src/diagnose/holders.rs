//! Who holds the pool over the recent window: the hot path's per-call-site
//! totals read once a tick, differenced over the window, ranked.

use std::collections::VecDeque;
use std::panic::Location;
use std::time::Duration;

use tokio::time::Instant;

use super::guard_duration;
use crate::hot::holders::SiteReading;
use crate::hot::statements::StatementReading;

/// Most call sites a snapshot lists.
pub(crate) const TOP: usize = 5;

/// One acquiring call site's part of the pool over the recent window.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Holder {
    /// Where the connections were acquired (`#[track_caller]`); `None`
    /// for the call sites that found no slot in the guard's table (64
    /// slots; a site whose 8 probed slots are taken), together.
    #[cfg_attr(feature = "serde", serde(serialize_with = "site_text"))]
    pub site: Option<&'static Location<'static>>,
    /// Its share of the connection time used in the window (0..=1).
    pub share: f64,
    /// Connections it held on average over the window.
    pub connections: f64,
    /// Its acquires per second.
    pub rate: f64,
    /// Connection time per acquire in the window (Little's W for this
    /// site; holds still in progress count as far as they have gone).
    pub mean_hold: Option<Duration>,
    /// Connections it holds now.
    pub holding: u32,
    /// Mean age of the connections it holds now.
    pub open_for: Option<Duration>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.site {
            Some(s) => write!(f, "{s}")?,
            None => f.write_str("other call sites")?,
        }
        write!(
            f,
            " holds {:.0} % of pool time ({:.1} connections, {:.1}/s",
            self.share * 100.0,
            self.connections,
            self.rate
        )?;
        if let Some(h) = self.mean_hold {
            write!(f, ", {:.0} ms each", h.as_secs_f64() * 1e3)?;
        }
        f.write_str(")")
    }
}

/// One statement's part of the pool over the recent window (queries run
/// through the guard, by normalised text).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StatementShare {
    /// The normalised SQL text (literals as `?`, at most 160 bytes);
    /// `None` for the statements that found no slot in the guard's table
    /// (64 slots; 8 probed), together.
    pub statement: Option<std::sync::Arc<str>>,
    /// Its query time over the pool's connection time in the window
    /// (0..=1): the share of the pool it holds while it runs.
    pub share: f64,
    /// Its queries per second.
    pub rate: f64,
    /// Its mean query time.
    pub mean: Option<Duration>,
}

impl std::fmt::Display for StatementShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.statement {
            Some(s) => write!(f, "`{s}`")?,
            None => f.write_str("other statements")?,
        }
        write!(
            f,
            " holds {:.0} % of pool time ({:.1}/s",
            self.share * 100.0,
            self.rate
        )?;
        if let Some(m) = self.mean {
            write!(f, ", {:.0} ms each", m.as_secs_f64() * 1e3)?;
        }
        f.write_str(")")
    }
}

/// A statement's totals at a tick: key, calls, query time (us).
type StatementTotals = (u64, u64, u64);

/// Readings of the last window's ticks, oldest first: the oldest one kept
/// is the window's start, so a ranking differences the newest against it.
#[derive(Debug)]
pub(crate) struct TickWindow<T> {
    ticks: VecDeque<(Instant, Vec<T>)>,
    window: Duration,
}

/// The per-statement totals of the last window's ticks.
pub(crate) type StatementHistory = TickWindow<StatementTotals>;
/// The per-site readings of the last window's ticks.
pub(crate) type HolderHistory = TickWindow<SiteReading>;

impl<T> TickWindow<T> {
    /// Every total zero at `now`.
    pub(crate) fn starting(now: Instant, window: Duration) -> Self {
        Self {
            ticks: VecDeque::from([(now, Vec::new())]),
            window,
        }
    }

    /// Keeps a tick's readings, and as many older ones as the window needs.
    pub(crate) fn push(&mut self, now: Instant, readings: Vec<T>) {
        self.ticks.push_back((now, readings));
        let oldest = now.checked_sub(self.window);
        while self.ticks.len() > 2
            && oldest.is_some_and(|o| self.ticks.get(1).is_some_and(|(t, _)| *t <= o))
        {
            self.ticks.pop_front();
        }
    }

    /// The window's start and its readings, with the seconds from there to
    /// `now`; `None` before any time has passed.
    fn start(&self, now: Instant) -> Option<(&[T], f64)> {
        let (since, older) = self.ticks.front()?;
        let secs = now.saturating_duration_since(*since).as_secs_f64();
        (secs > 0.0).then_some((older.as_slice(), secs))
    }
}

impl StatementHistory {
    /// The statements ranked by query time over the window ending `now`,
    /// as shares of `pool_secs` (the pool's connection time in the
    /// window), at most `top`.
    pub(crate) fn ranked(
        &self,
        now: Instant,
        current: &[StatementReading<'_>],
        pool_secs: f64,
        top: usize,
    ) -> Vec<StatementShare> {
        let Some((older, secs)) = self.start(now).filter(|_| pool_secs > 0.0) else {
            return Vec::new();
        };
        let mut out: Vec<(f64, &StatementReading<'_>, u64)> = current
            .iter()
            .map(|r| {
                let (c0, b0) = older
                    .iter()
                    .find(|(k, _, _)| *k == r.key)
                    .map_or((0, 0), |(_, c, b)| (*c, *b));
                let query_secs = r.query_us.saturating_sub(b0) as f64 / 1e6;
                (query_secs, r, r.calls.saturating_sub(c0))
            })
            .filter(|(query_secs, _, _)| *query_secs > 0.0)
            .collect();
        out.sort_by(|a, b| b.0.total_cmp(&a.0));
        out.truncate(top);
        out.into_iter()
            .map(|(query_secs, r, calls)| StatementShare {
                statement: r.text.map(std::sync::Arc::from),
                share: (query_secs / pool_secs).min(1.0),
                rate: calls as f64 / secs,
                mean: (calls > 0).then(|| Duration::from_secs_f64(query_secs / calls as f64)),
            })
            .collect()
    }
}

impl Holder {
    /// The rate and durations in the guard's own time (see
    /// `Diagnosis::in_guard_time`).
    pub(crate) fn in_guard_time(&mut self, k: f64) {
        self.rate /= k;
        self.mean_hold = self.mean_hold.map(|d| guard_duration(d, k));
        self.open_for = self.open_for.map(|d| guard_duration(d, k));
    }
}

impl StatementShare {
    /// The rate and mean in the guard's own time.
    pub(crate) fn in_guard_time(&mut self, k: f64) {
        self.rate /= k;
        self.mean = self.mean.map(|d| guard_duration(d, k));
    }
}

impl HolderHistory {
    /// The call sites ranked by connection time over the window ending
    /// `now` (readings `current`), at most `top`.
    pub(crate) fn ranked(&self, now: Instant, current: &[SiteReading], top: usize) -> Vec<Holder> {
        let Some((older, secs)) = self.start(now) else {
            return Vec::new();
        };
        let before = |site| older.iter().find(|o| o.site == site);
        let mut out: Vec<Holder> = current
            .iter()
            .map(|r| {
                let (area0, acq0) = before(r.site).map_or((0, 0), |o| (o.area_ms, o.acquires));
                let area = r.area_ms.saturating_sub(area0) as f64 / 1e3;
                let acquires = r.acquires.saturating_sub(acq0);
                Holder {
                    site: r.site,
                    share: area,
                    connections: area / secs,
                    rate: acquires as f64 / secs,
                    mean_hold: (acquires > 0)
                        .then(|| Duration::from_secs_f64(area / acquires as f64)),
                    holding: r.holding,
                    open_for: (r.holding > 0)
                        .then(|| Duration::from_millis(r.open_ms / u64::from(r.holding))),
                }
            })
            .filter(|h| h.share > 0.0)
            .collect();
        let total: f64 = out.iter().map(|h| h.share).sum();
        for h in &mut out {
            h.share /= total;
        }
        out.sort_by(|a, b| b.share.total_cmp(&a.share));
        out.truncate(top);
        out
    }
}

/// A call site as `file:line:column`.
#[cfg(feature = "serde")]
fn site_text<S: serde::Serializer>(
    site: &Option<&'static Location<'static>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match site {
        Some(l) => s.collect_str(l),
        None => s.serialize_str("other"),
    }
}
