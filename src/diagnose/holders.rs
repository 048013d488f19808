//! Who holds the pool over the recent window: the hot path's per-call-site
//! totals read once a tick, differenced over the window, ranked.

use std::collections::VecDeque;
use std::panic::Location;
use std::time::Duration;

use tokio::time::Instant;

use crate::hot::holders::SiteReading;

/// Most call sites a snapshot lists.
pub(crate) const TOP: usize = 5;

/// One acquiring call site's part of the pool over the recent window.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Holder {
    /// Where the connections were acquired (`#[track_caller]`); `None`
    /// for the call sites past the guard's table of 64, together.
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

/// The per-site readings of the last window's ticks.
#[derive(Debug)]
pub(crate) struct HolderHistory {
    ticks: VecDeque<(Instant, Vec<SiteReading>)>,
    window: Duration,
}

impl HolderHistory {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            ticks: VecDeque::new(),
            window,
        }
    }

    /// Keeps a tick's readings, and as many older ones as the window needs.
    pub(crate) fn push(&mut self, now: Instant, readings: Vec<SiteReading>) {
        self.ticks.push_back((now, readings));
        let oldest = now.checked_sub(self.window);
        while self.ticks.len() > 2
            && oldest.is_some_and(|o| self.ticks.get(1).is_some_and(|(t, _)| *t <= o))
        {
            self.ticks.pop_front();
        }
    }

    /// The call sites ranked by connection time over the window ending
    /// `now` (readings `current`), at most `top`.
    pub(crate) fn ranked(&self, now: Instant, current: &[SiteReading], top: usize) -> Vec<Holder> {
        let (since, older) = match self.ticks.front() {
            Some((t, r)) => (*t, r.as_slice()),
            None => return Vec::new(),
        };
        let secs = now.saturating_duration_since(since).as_secs_f64();
        if secs <= 0.0 {
            return Vec::new();
        }
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
