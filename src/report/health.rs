//! One answer for a `/health` endpoint: healthy, degraded or unhealthy, and
//! why, from the firing rules and the circuit breaker.

use crate::alert::rule::{AlertState, Severity};
use crate::alert::saturation::Level;
use crate::protect::breaker::BreakerState;
use crate::report::snapshot::{AlertStatus, Snapshot};

/// The verdict of [`PoolGuard::health`](crate::PoolGuard::health).
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum HealthStatus {
    /// No rule fires and the breaker lets calls through.
    Healthy,
    /// A warning rule fires, or the breaker is trying calls (half-open).
    Degraded,
    /// A critical rule fires, or the breaker refuses calls (open or forced
    /// open; not in metrics-only mode, where it refuses nothing).
    Unhealthy,
}

impl HealthStatus {
    /// `healthy`, `degraded` or `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The guard's health: the status, the reasons in words, and the figures
/// behind them.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Health {
    /// Healthy, degraded or unhealthy.
    pub status: HealthStatus,
    /// Why, one line each (empty when healthy).
    pub reasons: Vec<String>,
    /// The pool's saturation level.
    pub level: Level,
    /// The circuit breaker's state.
    pub breaker: BreakerState,
    /// Whether the breaker is in metrics-only (shadow) mode.
    pub breaker_metrics_only: bool,
    /// The rules now firing.
    pub firing: Vec<AlertStatus>,
    /// The pool now.
    pub snapshot: Snapshot,
}

impl Health {
    pub(crate) fn judge(
        alerts: Vec<AlertStatus>,
        breaker: BreakerState,
        breaker_metrics_only: bool,
        snapshot: Snapshot,
    ) -> Self {
        let firing: Vec<AlertStatus> = alerts
            .into_iter()
            .filter(|a| a.state == AlertState::Firing)
            .collect();
        let mut status = HealthStatus::Healthy;
        let mut reasons = Vec::new();
        for a in &firing {
            let worst = match a.severity {
                Severity::Critical => HealthStatus::Unhealthy,
                _ => HealthStatus::Degraded,
            };
            status = status.max(worst);
            let value = a.value.map_or("-".to_owned(), |v| format!("{v:.3}"));
            reasons.push(format!(
                "{} ({}) firing for {:.0?}: value {value}, threshold {}",
                a.rule, a.severity, a.in_state_for, a.threshold
            ));
        }
        if !breaker_metrics_only {
            let worst = match breaker {
                BreakerState::Open | BreakerState::ForcedOpen => Some(HealthStatus::Unhealthy),
                BreakerState::HalfOpen => Some(HealthStatus::Degraded),
                _ => None,
            };
            if let Some(worst) = worst {
                status = status.max(worst);
                reasons.push(format!("circuit breaker {breaker}"));
            }
        }
        // Why the pool fills, when something is wrong and the pool is under
        // pressure (the diagnosis itself is on the snapshot).
        if let Some(d) = snapshot
            .diagnosis
            .as_ref()
            .filter(|_| status != HealthStatus::Healthy)
        {
            reasons.push(format!("pool fills: {d}"));
        }
        Health {
            status,
            reasons,
            level: snapshot.level,
            breaker,
            breaker_metrics_only,
            firing,
            snapshot,
        }
    }
}
