//! The diagnosis of a pool under pressure, gathered from the monitor's
//! state (the pure judgement is `diagnose/`): for snapshots and events,
//! and once a tick for the cause gauges.

use std::time::Duration;

use tokio::time::Instant;

use super::reading::Reading;
use super::{Monitor, State};
use crate::alert::saturation::Level;
use crate::alert::signal::Signal;
use crate::diagnose::{self, Diagnosis, Holder, StatementShare};
use crate::hot::holders::SiteReading;
use crate::stats::scale::recommend;

impl Monitor {
    /// The diagnosis when the pool is under pressure (a level above normal,
    /// utilization from the scale rule's threshold, stalled, or exhaustion
    /// forecast), from `reading` (histograms copied) and its top holders
    /// and statements.
    pub(super) fn diagnosis(
        &self,
        st: &State,
        reading: &Reading,
        holders: &[Holder],
        statements: &[StatementShare],
    ) -> Option<Diagnosis> {
        let (now, c, max) = (reading.now, &reading.counters, reading.max);
        if !self.pressed(st, reading) {
            return None;
        }
        let hist = reading.hist.as_ref()?;
        let window = self.timing.stats_window;
        let (older, covered) = st.window.counters_at(now, window);
        let d = c.since(&older);
        let hold = hist.hold.since(&st.window.hist_at(now, window).hold);
        let q = |q: f64| hold.quantile(q);
        let inputs = diagnose::Facts {
            max,
            waiters: c.waiters,
            window: covered.as_secs_f64(),
            arrivals: d.arrivals_total,
            acquires: d.acquires_total,
            in_use_ms: d.in_use_ms,
            holds_ended: hold.total(),
            ended_ms: hold.clipped_sum_secs(covered) * 1e3,
            hold_p50: q(0.5),
            hold_p95: q(0.95),
            baseline: st.usual,
            onsets: st
                .usual
                .map_or((None, None), |u| st.history.onsets(&u, diagnose::USUAL)),
            stalled_for: reading.stalled,
            stall_after: self.stall_after(),
            server: reading.server,
            leak_at: self
                .shared
                .acct
                .leaks
                .as_ref()
                .and_then(|t| t.oldest_reported()),
            holders: holders.to_vec(),
            statements: statements.to_vec(),
        };
        Some(diagnose::diagnose(&inputs, |needed| {
            recommend(
                needed,
                self.scale.utilization,
                max,
                self.scale.instances,
                reading.server,
            )
        }))
    }

    /// Whether the pool is under pressure (a diagnosis is made).
    pub(super) fn pressed(&self, st: &State, reading: &Reading) -> bool {
        st.level != Level::Normal
            || reading.current.utilization >= self.rules.pressure()
            || !reading.stalled.is_zero()
            || st.forecast.eta.is_some()
    }

    /// Every call site's totals now.
    pub(super) fn site_readings(&self, now: Instant) -> Vec<SiteReading> {
        let acct = &self.shared.acct;
        let mut out = Vec::new();
        acct.holders
            .read(acct.clock.at(now).as_millis(), |r| out.push(r));
        out
    }

    /// The call sites holding the most pool time over the window.
    pub(super) fn top_holders(&self, st: &State, now: Instant) -> Vec<Holder> {
        st.holders
            .ranked(now, &self.site_readings(now), diagnose::TOP)
    }

    /// Every statement's totals now (key, calls, query time in us).
    pub(super) fn statement_totals(&self) -> Vec<(u64, u64, u64)> {
        let mut out = Vec::new();
        self.shared
            .acct
            .statements
            .read(|r| out.push((r.key, r.calls, r.query_us)));
        out
    }

    /// The statements holding the most pool time over the window, at most
    /// `top`.
    pub(super) fn top_statements(
        &self,
        st: &State,
        reading: &Reading,
        top: usize,
    ) -> Vec<StatementShare> {
        let now = reading.now;
        let (older, _) = st.window.counters_at(now, self.timing.stats_window);
        let pool_secs = reading.counters.in_use_ms.saturating_sub(older.in_use_ms) as f64 / 1e3;
        let mut readings = Vec::new();
        let statements = &self.shared.acct.statements;
        statements.read(|r| readings.push(r));
        st.statements.ranked(now, &readings, pool_secs, top)
    }

    /// After how long a stall diagnoses as one: the stall rules' lowest
    /// threshold (5 s by default).
    fn stall_after(&self) -> Duration {
        self.rules
            .iter()
            .filter(|r| r.signal == Signal::Stall)
            .filter_map(|r| Duration::try_from_secs_f64(r.threshold).ok())
            .min()
            .unwrap_or(Duration::from_secs(5))
    }
}
