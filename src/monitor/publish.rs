//! Publishing an evaluation: the gauges every time, and for each finding a
//! log line and an event.

use std::sync::Arc;
use std::time::SystemTime;

use super::evaluate::Findings;
use super::reading::{Derived, Reading};
use super::{Monitor, State};
use crate::alert::rule::{AlertState, Severity};
use crate::alert::saturation::Level;
use crate::alert::signal::Signal;
use crate::hot::holders::SiteReading;
use crate::report::events::{AlertEvent, Event, LeakEvent, SaturationEvent, TrafficSurprise};
use crate::report::registry::{holder_gauge, statement_gauge, GaugeValues};
use crate::stats::scale::ScaleHint;
use tokio::time::Instant;

impl Monitor {
    /// Once a tick: each statement's share of the pool over the window.
    pub(super) fn publish_statements(&self, st: &State, pool: &Reading) {
        let mut gauges = self.statement_gauges.lock();
        for s in self.top_statements(st, pool, usize::MAX) {
            let key = s.statement.as_deref().map_or(0, |t| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(t, &mut h);
                std::hash::Hasher::finish(&h)
            });
            gauges
                .entry(key)
                .or_insert_with(|| statement_gauge(&self.shared.name, s.statement.as_deref()))
                .set(s.share);
        }
    }

    /// Once a tick: the connections each call site held over the window.
    pub(super) fn publish_holders(&self, st: &State, now: Instant, sites: &[SiteReading]) {
        let mut gauges = self.holder_gauges.lock();
        for h in st.holders.ranked(now, sites, usize::MAX) {
            gauges
                .entry(h.site)
                .or_insert_with(|| holder_gauge(&self.shared.name, h.site))
                .set(h.connections);
        }
    }

    /// Every evaluation: the gauges of `pool`; on a tick also the
    /// diagnosis' cause gauges (from `derived`, computed once for the
    /// evaluation).
    pub(super) fn publish_gauges(
        &self,
        st: &State,
        pool: &Reading,
        hint: ScaleHint,
        derived: Option<&Derived>,
    ) {
        let c = &pool.counters;
        self.gauges.publish(&GaugeValues {
            in_use: c.in_use,
            idle: pool.stats.idle,
            max: pool.max,
            waiters: c.waiters,
            utilization: pool.current.utilization,
            demand: pool.current.demand,
            level: st.level.as_number(),
        });
        for (g, t) in self.gauges.rules.iter().zip(&st.trackers) {
            g.set(f64::from(t.state().as_number()));
        }
        self.gauges
            .eta
            .set(st.forecast.eta.map_or(f64::INFINITY, |d| d.as_secs_f64()));
        self.gauges.scale.set(f64::from(hint.recommended_max));
        self.gauges
            .oldest_wait
            .set(pool.oldest_wait.map_or(0.0, |d| d.as_secs_f64()));
        self.gauges.stalled.set(pool.stalled.as_secs_f64());
        if self.shared.acct.counts_opens() {
            self.gauges.opens.absolute(pool.counters.opened_total);
        }
        if let (Some(_), Some(d)) = (pool.tick, derived) {
            self.gauges.publish_diagnosis(d.diagnosis.as_ref());
        }
        if let Some(s) = pool.server {
            self.gauges.server.set(s.utilization());
        }
    }

    /// Logs and sends the events of one evaluation's findings (rule and
    /// level changes carry a snapshot of the evaluation's reading, built
    /// once, from the evaluation's `derived`).
    pub(super) fn publish(
        &self,
        st: &State,
        pool: Reading,
        derived: Option<Derived>,
        found: Findings,
    ) {
        let snapshot = derived.map(|d| self.build_snapshot(st, &pool, d));
        let forecast = st.forecast;
        // Measured per wall second; said per second of the guard's time.
        let k = self.timing.time_scale;
        let traffic = st.anomaly.map(|a| TrafficSurprise {
            expected: a.expected / k,
            observed: a.observed / k,
        });
        let at = SystemTime::now();
        let name = &self.shared.name;
        let hub = &self.shared.hub;
        for change in found.rules {
            let rule = &self.rules[change.rule];
            let (t, value) = (change.transition, change.value);
            let severity = rule.severity;
            let (state, previous) = (t.to, t.from);
            let surprise = traffic.filter(|_| rule.signal == Signal::TrafficAnomaly);
            let traffic_text = surprise.map(|t| t.to_string());
            match (t.to, severity) {
                (AlertState::Firing, Severity::Critical) => {
                    tracing::error!(pool = %name, rule = %rule.name, %severity, %state, %previous, ?value, threshold = rule.threshold, traffic = ?traffic_text, "alert")
                }
                (AlertState::Firing, Severity::Warning) => {
                    tracing::warn!(pool = %name, rule = %rule.name, %severity, %state, %previous, ?value, threshold = rule.threshold, traffic = ?traffic_text, "alert")
                }
                (AlertState::Firing | AlertState::Resolved, _) => {
                    tracing::info!(pool = %name, rule = %rule.name, %severity, %state, %previous, ?value, threshold = rule.threshold, traffic = ?traffic_text, "alert")
                }
                _ => {
                    tracing::debug!(pool = %name, rule = %rule.name, %severity, %state, %previous, ?value, threshold = rule.threshold, traffic = ?traffic_text, "alert")
                }
            }
            hub.publish(Event::Alert(AlertEvent {
                rule: Arc::clone(&rule.name),
                severity,
                signal: rule.signal,
                state,
                previous,
                value,
                threshold: rule.threshold,
                time_in_previous: t.time_in_previous,
                at,
                forecast: (rule.signal == Signal::ExhaustionEta).then_some(forecast),
                traffic: surprise,
                snapshot: snapshot.clone().expect("snapshot built for alerts"),
            }));
        }
        if let Some(change) = found.level {
            let snap = snapshot.expect("snapshot built for level changes");
            let (level, previous) = (change.level, change.previous);
            let (in_use, waiters, max) = (snap.in_use, snap.waiters, snap.max);
            match level {
                Level::Critical => {
                    tracing::error!(pool = %name, %level, %previous, in_use, waiters, max, "pool saturation")
                }
                Level::Warning => {
                    tracing::warn!(pool = %name, %level, %previous, in_use, waiters, max, "pool saturation")
                }
                Level::Normal => {
                    tracing::info!(pool = %name, %level, %previous, in_use, waiters, max, "pool saturation")
                }
            }
            hub.publish(Event::Saturation(SaturationEvent {
                level,
                previous,
                time_in_previous: change.time_in_previous,
                at,
                snapshot: snap,
            }));
        }
        if let Some(hint) = found.scale {
            tracing::warn!(pool = %name, current_max = hint.current_max, recommended_max = hint.recommended_max,
                exceeds_server = hint.exceeds_server, "pool needs scaling");
            hub.publish(Event::ScaleHint(hint));
        }
        for f in found.leaks {
            if f.returned {
                tracing::info!(pool = %name, acquired_at = %f.location, held_for = ?f.held_for, "leaked connection returned");
            } else {
                self.gauges.leaks.increment(1);
                tracing::warn!(pool = %name, acquired_at = %f.location, held_for = ?f.held_for, "connection leak suspected");
            }
            hub.publish(Event::Leak(LeakEvent {
                acquired_at: f.location,
                held_for: f.held_for,
                returned: f.returned,
                at,
            }));
        }
    }
}
