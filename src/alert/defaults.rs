//! The post-mortem's alert table as rules, and the names the guard knows
//! rules by.

use std::time::Duration;

use super::rule::{Comparison, Rule, Severity};
use super::signal::{Quantile, Signal};

/// Name of the pool-utilization rules; their state is the guard's [`Level`](crate::Level).
pub const POOL_RULE: &str = "pool_utilization";
/// Name of the scale-hint rule.
pub const SCALE_RULE: &str = "scale_up";
/// The scale rule's default threshold (the post-mortem's "scale at 75 %");
/// a diagnosis is made from the scale rule's threshold on.
pub(crate) const SCALE_AT: f64 = 0.75;
/// Name of the exhaustion-forecast rule.
pub const FORECAST_RULE: &str = "exhaustion_forecast";
/// Name of the oldest-waiter rules (pgbouncer's `maxwait`).
pub const OLDEST_WAIT_RULE: &str = "oldest_wait";
/// Name of the stalled-pool rule.
pub const STALL_RULE: &str = "pool_stalled";
/// Name of the connection-churn rule.
pub const CHURN_RULE: &str = "connection_churn";

fn mins(m: u64) -> Duration {
    Duration::from_secs(60 * m)
}

/// The rest of the post-mortem's alert table (INC-EX3) as rules: the two
/// pool rules come from [`SaturationPolicy`](crate::SaturationPolicy) and
/// are added by the builder in front of these:
///
/// - error rate > 1 % for 3 min (warning) / > 2.5 % for 2 min (critical),
///   on the guard's query errors and on the requests the app records;
/// - timeouts > 5 / > 10 in 5 min, on the guard's acquire and query timeouts and on
///   the app's 504s;
/// - P95 > 400 ms for 5 min / > 600 ms for 3 min, on the guard's query
///   latency and on the app's request latency;
/// - traffic > 2 std dev for 5 min (acquire rate against an hour's baseline
///   that leaves out the last 10 minutes; 20 minutes of warm-up);
/// - the forecast: exhaustion ETA < 15 min, held 1 min;
/// - starvation: the oldest waiter has waited > 1 s for 1 min (warning) /
///   > 5 s for 30 s (critical), recovering under 0.5 s / 2.5 s;
/// - a stalled pool: acquires wait and none completes for 5 s while the
///   guard's holds leave slots free (critical at once);
/// - connection churn: more than 1 connection opened a second over 1 min
///   while acquires time out, for 1 min (needs a `ConnectCounter`);
/// - the scale hint: utilization > 75 % for 1 min (the post-mortem's
///   auto-scaling trigger "> 75% -> scale"; an autoscaler's stabilization
///   minute, so a burst at a third of the pool does not ask for more).
///
/// Every default rule keeps firing for 1 min after its condition last held
/// (flapping does not resolve it); the rules with a hold also need 1 min of
/// recovered values. Error rates and latencies recover 20 % below their
/// threshold (0.8 % / 2 %, 320 ms / 480 ms), the scale hint below 70 %; the
/// timeout counts recover when the 5-minute window drops to the threshold.
pub fn default_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for (name, signal) in [
        ("error_rate", Signal::QueryErrorRate),
        ("request_error_rate", Signal::RequestErrorRate),
    ] {
        rules.push(
            Rule::new(name, signal, Comparison::Above, 0.01)
                .hold(mins(3))
                .recover_at(0.008)
                .recover_for(mins(1))
                .min_samples(50),
        );
        rules.push(
            Rule::new(name, signal, Comparison::Above, 0.025)
                .severity(Severity::Critical)
                .hold(mins(2))
                .recover_at(0.02)
                .recover_for(mins(1))
                .min_samples(50),
        );
    }
    for (name, signal) in [
        ("timeouts", Signal::Timeouts),
        ("gateway_timeouts", Signal::GatewayTimeouts),
    ] {
        rules.push(Rule::new(name, signal, Comparison::Above, 5.0).window(mins(5)));
        rules.push(
            Rule::new(name, signal, Comparison::Above, 10.0)
                .severity(Severity::Critical)
                .window(mins(5)),
        );
    }
    for (name, signal) in [
        ("latency_p95", Signal::QueryLatency(Quantile::P95)),
        ("request_latency_p95", Signal::RequestLatency(Quantile::P95)),
    ] {
        rules.push(
            Rule::new(name, signal, Comparison::Above, 0.400)
                .hold(mins(5))
                .recover_at(0.320)
                .recover_for(mins(1))
                .min_samples(20),
        );
        rules.push(
            Rule::new(name, signal, Comparison::Above, 0.600)
                .severity(Severity::Critical)
                .hold(mins(3))
                .recover_at(0.480)
                .recover_for(mins(1))
                .min_samples(20),
        );
    }
    rules.push(
        Rule::new(
            "traffic_anomaly",
            Signal::TrafficAnomaly,
            Comparison::Above,
            2.0,
        )
        .hold(mins(5))
        .recover_for(mins(1))
        .min_samples(10),
    );
    rules.push(
        Rule::new(
            FORECAST_RULE,
            Signal::ExhaustionEta,
            Comparison::Below,
            mins(15).as_secs_f64(),
        )
        .hold(mins(1))
        .recover_for(mins(1)),
    );
    rules.push(
        Rule::new(OLDEST_WAIT_RULE, Signal::OldestWait, Comparison::Above, 1.0)
            .hold(mins(1))
            .recover_at(0.5)
            .recover_for(mins(1)),
    );
    rules.push(
        Rule::new(OLDEST_WAIT_RULE, Signal::OldestWait, Comparison::Above, 5.0)
            .severity(Severity::Critical)
            .hold(Duration::from_secs(30))
            .recover_at(2.5)
            .recover_for(mins(1)),
    );
    rules.push(
        Rule::new(STALL_RULE, Signal::Stall, Comparison::Above, 5.0).severity(Severity::Critical),
    );
    rules.push(
        Rule::new(CHURN_RULE, Signal::Churn, Comparison::Above, 1.0)
            .window(mins(1))
            .hold(mins(1))
            .recover_for(mins(1)),
    );
    rules.push(
        Rule::new(SCALE_RULE, Signal::Utilization, Comparison::Above, SCALE_AT)
            .severity(Severity::Info)
            .hold(mins(1))
            .recover_at(0.70)
            .recover_for(mins(1)),
    );
    rules
        .into_iter()
        .map(|r| r.keep_firing_for(mins(1)))
        .collect()
}

/// The rules added by `PoolGuardBuilder::watch_server` (feature `postgres`), with fixed
/// thresholds (80 % / 90 %, whatever the pool's own are):
/// the server's connection slots, with the pool's own thresholds.
pub fn server_rules() -> Vec<Rule> {
    vec![
        Rule::new(
            "server_connections",
            Signal::ServerUtilization,
            Comparison::Above,
            0.80,
        )
        .hold(mins(5))
        .recover_at(0.75)
        .recover_for(mins(1))
        .keep_firing_for(mins(1)),
        Rule::new(
            "server_connections",
            Signal::ServerUtilization,
            Comparison::Above,
            0.90,
        )
        .severity(Severity::Critical)
        .hold(mins(2))
        .recover_at(0.85)
        .recover_for(mins(1))
        .keep_firing_for(mins(1)),
    ]
}
