//! `tracing` spans: one per acquire (how long it waited, how it ended) and
//! one per query through the guard (OpenTelemetry's database client span
//! attributes), so a trace shows where a request waited for the pool.
//!
//! A span lives from the call's start to its end (its start and end times
//! in a trace) as a child of the caller's current span; it is not entered
//! while the call waits: that would take a wrapper future around the
//! driver's, and every async layer copies the (large) inner future
//! (measured: an `Instrument` layer around a query cost about 14,000
//! instructions per SQLite query).
//!
//! Target `poolguard`, level INFO. With no subscriber, or one whose level
//! filters INFO out, a span is one atomic load and every `record` below a
//! no-op; a subscriber that filters by target pays the callsite's interest
//! check (the hot-path bench measures each case: BENCHMARKS.md). Field names are
//! the conventions' (`tracing-opentelemetry` exports them as they are;
//! `otel.name`, `otel.kind` and `otel.status_code` set the span's name,
//! kind and status there).

use std::time::Duration;

use tracing::field::Empty;
use tracing::Span;

use crate::report::identity::PoolIdentity;

/// Whether any `tracing` subscriber takes INFO spans (one atomic load).
/// Without one the guard makes no span at all, not even the disabled span
/// the macros make for the `log` crate: sqlx turns on `tracing`'s `log`
/// feature, and a disabled span checks the `log` level on every enter,
/// exit and record (measured: about 220 instructions per acquire/release
/// pair on the model pool). So the guard's spans never go to `log`.
#[inline]
fn listening() -> bool {
    tracing::level_enabled!(tracing::Level::INFO)
}

/// How an acquire ended, as the span's `outcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AcquireOutcome {
    Acquired,
    TimedOut,
    /// The request's deadline (tower layer) passed first.
    Deadline,
    Refused,
    Failed,
}

impl AcquireOutcome {
    fn as_str(self) -> &'static str {
        match self {
            AcquireOutcome::Acquired => "acquired",
            AcquireOutcome::TimedOut => "timeout",
            AcquireOutcome::Deadline => "deadline",
            AcquireOutcome::Refused => "refused",
            AcquireOutcome::Failed => "error",
        }
    }
}

/// The span of one acquire: `db.client.connection.pool.name`,
/// `db.system.name`; `outcome` and `db.client.connection.wait_time`
/// (seconds) recorded when it ends.
#[inline]
pub(crate) fn acquire(pool: &str, id: &PoolIdentity) -> Span {
    if !listening() {
        return Span::none();
    }
    tracing::info_span!(
        target: "poolguard",
        "acquire",
        otel.name = "acquire",
        otel.status_code = Empty,
        db.client.connection.pool.name = pool,
        db.system.name = id.system,
        outcome = Empty,
        db.client.connection.wait_time = Empty,
    )
}

/// Records how an acquire ended.
#[inline]
pub(crate) fn acquire_ended(span: &Span, outcome: AcquireOutcome, waited: Duration) {
    if span.is_disabled() {
        return;
    }
    span.record("outcome", outcome.as_str());
    span.record("db.client.connection.wait_time", waited.as_secs_f64());
    if outcome != AcquireOutcome::Acquired {
        span.record("otel.status_code", "error");
    }
}

/// The span of one query: kind client, `db.system.name`, `db.namespace`,
/// `server.address`, `server.port` (non-default), the pool's name; the
/// name (`db.query.summary`, else `db.system.name`), the summary and an
/// error's `error.type` and `db.response.status_code` recorded as they
/// become known.
pub(crate) fn query(pool: &str, id: &PoolIdentity) -> Span {
    if !listening() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: "poolguard",
        "query",
        otel.name = id.system,
        otel.kind = "client",
        otel.status_code = Empty,
        db.system.name = id.system,
        db.namespace = Empty,
        server.address = Empty,
        server.port = Empty,
        db.query.summary = Empty,
        error.type = Empty,
        db.response.status_code = Empty,
        db.client.connection.pool.name = pool,
    );
    if !span.is_disabled() {
        if let Some(ns) = &id.namespace {
            span.record("db.namespace", ns.as_str());
        }
        if let Some(a) = &id.address {
            span.record("server.address", a.as_str());
        }
        if let Some(p) = id.non_default_port() {
            span.record("server.port", p);
        }
    }
    span
}

/// Records the query's summary (its normalised statement), which also
/// names the span, as the conventions ask.
pub(crate) fn query_summary(span: &Span, summary: Option<&str>) {
    if let (false, Some(s)) = (span.is_disabled(), summary) {
        span.record("db.query.summary", s);
        span.record("otel.name", s);
    }
}

/// Records a failed query's `error.type` and `db.response.status_code`.
pub(crate) fn query_failed(span: &Span, error_type: &str, status: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    span.record("otel.status_code", "error");
    span.record("error.type", error_type);
    if let Some(s) = status {
        span.record("db.response.status_code", s);
    }
}
