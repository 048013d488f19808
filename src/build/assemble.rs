//! Assembles the running parts of a guard from resolved settings: the hot
//! path's accounting, the protection, the shared call-path part and the
//! monitor; then starts the callbacks, the server watch and the monitor
//! task. `build()` and the crate's own tests both build guards here, so the
//! tests run exactly what users run.

use std::sync::Arc;
use std::time::Duration;

use super::settings::Settings;
use crate::alert::rule_set::RuleSet;
use crate::error::BuildError;
use crate::hot::accounting::Accounting;
use crate::hot::clock::Clock;
use crate::monitor::{Monitor, ScaleTarget, ServerTask, Shared, StatsFn, Timing};
use crate::protect::breaker::BreakerCell;
use crate::protect::classify::Classifier;
use crate::protect::timeout::ServerCancel;
use crate::protect::Protection;
use crate::report::events::{Callback, EventHub};
use crate::report::identity::PoolIdentity;
use crate::report::registry::{self as metrics, PoolLabels};

/// What the guard learns from the pool it wraps.
#[derive(Clone, Debug)]
pub(crate) struct PoolFacts {
    /// `max_connections`.
    pub(crate) max: u32,
    /// `min_connections`.
    pub(crate) min: u32,
    /// The pool's `acquire_timeout`.
    pub(crate) acquire_timeout: Duration,
    /// Who the pool talks to (OpenTelemetry attributes, default name).
    pub(crate) identity: PoolIdentity,
}

/// A guard's running parts, before its tasks start.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) shared: Arc<Shared>,
    pub(crate) monitor: Arc<Monitor>,
}

/// Makes the parts from resolved settings (see [`Settings::resolve`]).
pub(crate) fn assemble(
    settings: Settings,
    rules: RuleSet,
    pool: PoolFacts,
    server_cancel: ServerCancel,
    classifier: Classifier,
    stats: StatsFn,
) -> Parts {
    let name = settings.name.unwrap_or_else(|| {
        let name = pool.identity.default_pool_name();
        Arc::from(name.as_deref().unwrap_or(super::settings::DEFAULT_NAME))
    });
    let labels = PoolLabels {
        pool: Arc::clone(&name),
        identity: pool.identity.clone(),
        deprecated_max: settings.deprecated_max,
        min_connections: pool.min,
    };
    let (hot, gauges) = metrics::register(&labels, &rules);
    let clock = Clock::start();
    let acct = Arc::new(Accounting::new(
        clock,
        pool.max,
        rules.edges(pool.max),
        settings.leak_threshold,
        hot,
        settings.connects.clone(),
    ));
    let shed = settings.shed;
    let protect = Protection {
        breaker: BreakerCell::new(settings.breaker, classifier, clock),
        max_waiters: shed.max_waiters_per_connection.saturating_mul(pool.max),
        shed_deadline: shed
            .max_wait
            .map_or(pool.acquire_timeout, |w| w.min(pool.acquire_timeout)),
        shed,
        query_timeout: settings.query_timeout,
        drain: settings.drain_timeout,
        server_cancel: Arc::new(server_cancel),
        metrics: metrics::register_protect(&name),
    };
    protect
        .metrics
        .breaker_state
        .set(f64::from(protect.breaker.state().0.as_number()));
    let shared = Arc::new(Shared::new(
        name,
        pool.identity,
        acct,
        protect,
        EventHub::new(settings.event_capacity),
        stats,
    ));
    let monitor = Arc::new(Monitor::new(
        Arc::clone(&shared),
        rules,
        Timing {
            tick: settings.tick,
            stats_window: settings.stats_window,
            forecast_window: settings.forecast_window,
            baseline_bucket: settings.baseline_bucket,
            time_scale: settings.time_scale,
        },
        ScaleTarget {
            utilization: settings.scale_target,
            instances: settings.instances,
        },
        gauges,
    ));
    if let Some(learned) = &settings.resume {
        monitor.resume(learned);
    }
    Parts { shared, monitor }
}

impl Parts {
    /// Starts the event callbacks' threads, the server watch, the query
    /// server-cancel connection and the monitor task on `rt`.
    pub(crate) fn start(
        &self,
        callbacks: Vec<Callback>,
        server_task: Option<ServerTask>,
        rt: &tokio::runtime::Handle,
    ) -> Result<(), BuildError> {
        let shared = &self.shared;
        let p = &shared.protect;
        if p.query_timeout.is_some() && p.server_cancel.supported() {
            // The first cancel should not pay for a connect, nor find a full
            // server refusing it.
            let cancel = Arc::clone(&p.server_cancel);
            rt.spawn(async move { cancel.preconnect().await });
        }
        for cb in callbacks {
            shared
                .hub
                .spawn_callback(cb, Arc::clone(&shared.name))
                .map_err(BuildError::CallbackThread)?;
        }
        if let Some(task) = server_task {
            task(
                Arc::clone(&self.monitor.server),
                Arc::clone(&shared.acct),
                rt,
            );
        }
        crate::monitor::spawn(Arc::clone(&self.monitor), rt);
        Ok(())
    }
}
