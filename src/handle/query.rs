//! One query on a held connection, timed and counted, with an optional
//! limit: the backend id is read first (once per connection, under the
//! query's deadline), and an expired query is cancelled on the server and
//! drained (`protect/timeout.rs`); a connection that cannot be proven clean
//! is ended on the server. Used by every `Executor` path of the guard.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::TryStreamExt;
use sqlx::{Database, Either, Execute, Executor};
use tokio::time::Instant;

use crate::error::Cancelled;
use crate::handle::statement::{made, tapped, Tracked};
use crate::hot::tickets::QueryTicket;
use crate::monitor::Shared;
use crate::protect::timeout::{Limited, PastLimit};
use crate::report::error_type::error_attributes;
use crate::report::spans;
use tracing::Span;

/// What `fetch_many` streams.
pub(crate) type Rows<'e, DB> = BoxStream<
    'e,
    Result<Either<<DB as Database>::QueryResult, <DB as Database>::Row>, sqlx::Error>,
>;

pub(crate) type Yielder<DB> = sqlx_core::ext::async_stream::Yielder<
    Either<<DB as Database>::QueryResult, <DB as Database>::Row>,
>;

/// `error.type` of a query past the guard's limit.
const TIMEOUT: &str = "timeout";

/// Ends a query's ticket with its outcome: an error the breaker does not
/// count (a constraint violation) is still a failed operation for the
/// conventions, with its `error.type`.
fn finish(q: QueryTicket, shared: &Shared, span: &Span, err: Option<&sqlx::Error>) {
    match err {
        None => q.finish_ok(),
        Some(e) => {
            let (kind, status) = error_attributes(e);
            spans::query_failed(span, &kind, status.as_deref());
            q.finish_err(!shared.is_failure(e), &kind, status.as_deref());
        }
    }
}

/// Notes the statement the driver read: on the ticket, and (when a
/// subscriber listens) as the span's summary and name.
fn statement(q: &mut QueryTicket, shared: &Shared, span: &Span, seen: Option<u16>) {
    q.statement(seen);
    if let (false, Some(slot)) = (span.is_disabled(), seen) {
        spans::query_summary(span, shared.acct.statements.text(slot));
    }
}

/// A backend-id read that ran out of time marks the span as timed out.
fn timed_out_in<T>(span: &Span, r: Limited<T>) -> Limited<T> {
    if r.is_err() {
        spans::query_failed(span, TIMEOUT, None);
    }
    r
}

/// After a timeout: whether the connection is clean. If it is not, the
/// server session is ended (awaited, bounded) before the connection is
/// closed, so its id cannot have been reused by then.
pub(crate) async fn after_timeout(shared: &Shared, id: Option<u64>, server: Cancelled) -> bool {
    let clean = server == Cancelled::Clean;
    if !clean {
        if let Some(id) = id {
            shared
                .protect
                .server_cancel
                .terminate(id, shared.protect.drain)
                .await;
        }
    }
    clean
}

/// Reads the session's backend id into `id_cache` unless it is there. The
/// limit covers this read too: a stalled server must not hang the call
/// before its timeout even starts.
async fn read_backend_id<DB: Database>(
    shared: &Shared,
    conn: &mut DB::Connection,
    deadline: Instant,
    limit: Duration,
    id_cache: &mut Option<u64>,
    q: &mut Option<QueryTicket>,
) -> Limited<()> {
    let cancel = &shared.protect.server_cancel;
    if id_cache.is_some() || !cancel.supported() {
        return Ok(Ok(()));
    }
    match tokio::time::timeout_at(deadline, cancel.backend_id(conn)).await {
        Ok(Ok(id)) => {
            *id_cache = id;
            Ok(Ok(()))
        }
        Ok(Err(e)) => Ok(Err(e)),
        Err(_) => {
            if let Some(q) = q.take() {
                q.finish_err(false, TIMEOUT, None);
            }
            Err(PastLimit {
                limit,
                server: Cancelled::Closed,
            })
        }
    }
}

/// One `fetch_optional` on `conn` with an optional limit, in its span
/// (made here and dropped at the end, not entered: entering would take a
/// wrapper around the driver's future, and every async layer copies it).
pub(crate) async fn optional_on<'q, DB, E>(
    shared: &Shared,
    conn: &mut DB::Connection,
    query: E,
    limit: Option<Duration>,
    id_cache: &mut Option<u64>,
) -> Limited<Option<DB::Row>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    E: 'q + Execute<'q, DB>,
{
    let span = &spans::query(&shared.name, &shared.identity);
    let mut q = Some(shared.acct.start_query());
    let query = Tracked::new(query, &shared.acct);
    let mut seen = None;
    let Some(limit) = limit else {
        let r = tapped(|| conn.fetch_optional(query), &mut seen).await;
        let mut q = q.expect("started");
        statement(&mut q, shared, span, seen);
        finish(q, shared, span, r.as_ref().err());
        return Ok(r);
    };
    let deadline = Instant::now() + limit;
    let read = read_backend_id::<DB>(shared, conn, deadline, limit, id_cache, &mut q).await;
    if let Err(e) = timed_out_in(span, read)? {
        return Ok(Err(e));
    }
    let mut q = q.expect("finished only on a timeout");
    let cancel = Arc::clone(&shared.protect.server_cancel);
    let timed = cancel
        .limited(
            tapped(|| conn.fetch_optional(query), &mut seen),
            (deadline, limit),
            *id_cache,
            shared.protect.drain,
        )
        .await;
    statement(&mut q, shared, span, seen);
    match timed {
        Ok(r) => {
            finish(q, shared, span, r.as_ref().err());
            Ok(r)
        }
        Err(past) => {
            q.finish_err(false, TIMEOUT, None);
            spans::query_failed(span, TIMEOUT, None);
            Err(past)
        }
    }
}

/// One `fetch_many` on `conn`, yielding as it goes, in its span (made
/// here, not entered; see [`optional_on`]).
pub(crate) async fn many_on<'q, DB, E>(
    shared: &Shared,
    conn: &mut DB::Connection,
    query: E,
    limit: Option<Duration>,
    id_cache: &mut Option<u64>,
    yielder: &Yielder<DB>,
) -> Limited<()>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    E: 'q + Execute<'q, DB>,
{
    let span = &spans::query(&shared.name, &shared.identity);
    let mut q = Some(shared.acct.start_query());
    let deadline = limit.map(|l| Instant::now() + l);
    if let (Some(at), Some(l)) = (deadline, limit) {
        let read = read_backend_id::<DB>(shared, conn, at, l, id_cache, &mut q).await;
        if let Err(e) = timed_out_in(span, read)? {
            return Ok(Err(e));
        }
    }
    let mut q = q.expect("finished only on a timeout");
    let mut seen = None;
    let mut rows = made(
        || conn.fetch_many(Tracked::new(query, &shared.acct)),
        &mut seen,
    );
    statement(&mut q, shared, span, seen);
    loop {
        let mut seen = None;
        let next = match deadline {
            None => tapped(|| rows.try_next(), &mut seen).await,
            Some(at) => {
                match tokio::time::timeout_at(at, tapped(|| rows.try_next(), &mut seen)).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            }
        };
        statement(&mut q, shared, span, seen);
        match next {
            Ok(Some(v)) => yielder.r#yield(v).await,
            Ok(None) => {
                q.finish_ok();
                return Ok(Ok(()));
            }
            Err(e) => {
                finish(q, shared, span, Some(&e));
                return Ok(Err(e));
            }
        }
    }
    // Timed out: cancel on the server and drain the rest of the stream.
    q.finish_err(false, TIMEOUT, None);
    spans::query_failed(span, TIMEOUT, None);
    let limit = limit.expect("only a deadline breaks the loop");
    let rest = async {
        while rows.try_next().await?.is_some() {}
        Ok(())
    };
    let server = shared
        .protect
        .server_cancel
        .cancel_and_drain(*id_cache, rest, shared.protect.drain)
        .await;
    Err(PastLimit { limit, server })
}
