//! A tower [`Layer`] for HTTP services (feature `tower`): the request side
//! of the guard without code in every handler.
//!
//! For every request the layer
//!
//! - records the response's status and latency into the guard
//!   ([`PoolGuard::record_http`]: the request rules, 5xx rate, 504 count,
//!   request P95, and `http.server.request.duration` with its method,
//!   scheme and status code);
//! - hands the request's deadline to every acquire the guard makes while
//!   serving it: the remaining time bounds the acquire's wait (and load
//!   shedding judges against it), so a request with 300 ms left does not
//!   wait 30 s for a connection. The deadline comes from, in order, a
//!   [`RequestDeadline`] extension (set by an outer middleware or the
//!   client library), a gRPC `grpc-timeout` header, or the layer's
//!   [`request_timeout`](PoolGuardLayer::request_timeout); with none of
//!   them the acquires wait as they would without the layer;
//! - turns a guard refusal (open circuit breaker, load shedding) that ended
//!   the request in a server error into `503 Service Unavailable` with
//!   `Retry-After`: the breaker's wait until its next trial, or the
//!   expected queue time (Little's law on the recent holds), in whole
//!   seconds rounded up ([`UNKNOWN_WAIT`] when neither is known). A handler that recovered from the refusal (a
//!   cached answer, a 2xx) keeps its response.
//!
//! The deadline and the refusal note live in a tokio task-local around the
//! request's future: acquires in tasks the handler spawns do not see them.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{extract::State, routing::get, Router};
//! use poolguard::{tower::PoolGuardLayer, PoolGuard};
//! use std::time::Duration;
//!
//! let pool = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await?;
//! let guard = PoolGuard::builder(pool).build()?;
//! async fn handler(State(guard): State<PoolGuard<sqlx::Sqlite>>) -> String {
//!     // Waits at most until the request's deadline (2 s after it arrived).
//!     let n: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&guard).await.unwrap_or(0);
//!     n.to_string()
//! }
//! let app: Router = Router::new()
//!     .route("/", get(handler))
//!     .layer(PoolGuardLayer::new(guard.clone()).request_timeout(Duration::from_secs(2)))
//!     .with_state(guard);
//! # let _ = app;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use sqlx::Database;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::handle::guard::PoolGuard;
use crate::handle::scope::{self, RefusalNote};
use crate::hot::handles::{method_index, scheme_index};

/// The instant a request must be answered by, as a request extension: set
/// it in an outer middleware (or from your own header) and the guard's
/// acquires made while serving the request wait at most until then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestDeadline(pub Instant);

/// Wraps services in [`PoolGuardService`]; see the [module docs](self).
pub struct PoolGuardLayer<DB: Database> {
    guard: PoolGuard<DB>,
    timeout: Option<Duration>,
    scheme: &'static str,
}

impl<DB: Database> Clone for PoolGuardLayer<DB> {
    fn clone(&self) -> Self {
        Self {
            guard: self.guard.clone(),
            timeout: self.timeout,
            scheme: self.scheme,
        }
    }
}

impl<DB: Database> std::fmt::Debug for PoolGuardLayer<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolGuardLayer")
            .field("pool", &self.guard.name())
            .field("request_timeout", &self.timeout)
            .field("scheme", &self.scheme)
            .finish()
    }
}

impl<DB: Database> PoolGuardLayer<DB> {
    /// A layer recording into `guard`, with no deadline of its own and
    /// scheme `http` for requests whose URI has none.
    pub fn new(guard: PoolGuard<DB>) -> Self {
        Self {
            guard,
            timeout: None,
            scheme: "http",
        }
    }

    /// Every request's deadline: this long after it arrived (when neither
    /// a [`RequestDeadline`] nor `grpc-timeout` gives one). Default: none.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The `url.scheme` recorded for requests whose URI carries none (a
    /// server sees origin-form URIs): `"https"` behind TLS. Default `"http"`.
    pub fn scheme(mut self, scheme: &'static str) -> Self {
        self.scheme = scheme;
        self
    }
}

impl<S, DB: Database> Layer<S> for PoolGuardLayer<DB> {
    type Service = PoolGuardService<S, DB>;

    fn layer(&self, inner: S) -> Self::Service {
        PoolGuardService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`PoolGuardLayer`] makes; see the [module docs](self).
pub struct PoolGuardService<S, DB: Database> {
    inner: S,
    layer: PoolGuardLayer<DB>,
}

impl<S: Clone, DB: Database> Clone for PoolGuardService<S, DB> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, DB: Database> std::fmt::Debug for PoolGuardService<S, DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolGuardService")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl<S, DB, B, R> Service<Request<B>> for PoolGuardService<S, DB>
where
    S: Service<Request<B>, Response = Response<R>>,
    DB: Database,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, DB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let started = Instant::now();
        let deadline = deadline_of(&req, started, self.layer.timeout);
        let method = method_index(req.method().as_str());
        let scheme = scheme_index(req.uri().scheme_str().unwrap_or(self.layer.scheme));
        let note = RefusalNote::default();
        let inner = self.inner.call(req);
        ResponseFuture {
            inner: scope::serve(deadline, note.clone(), inner),
            guard: self.layer.guard.clone(),
            note,
            started,
            method,
            scheme,
        }
    }
}

/// The request's deadline: its [`RequestDeadline`], else its
/// `grpc-timeout`, else the layer's timeout from `now`.
fn deadline_of<B>(req: &Request<B>, now: Instant, timeout: Option<Duration>) -> Option<Instant> {
    if let Some(d) = req.extensions().get::<RequestDeadline>() {
        return Some(d.0);
    }
    let grpc = req
        .headers()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(grpc_timeout);
    // A deadline past what the clock can hold is no deadline.
    grpc.or(timeout).and_then(|t| now.checked_add(t))
}

/// A `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`).
fn grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `Retry-After` when the wait is not known: a breaker forced open by hand,
/// or a queue with no hold ended yet to estimate from.
pub const UNKNOWN_WAIT: Duration = Duration::from_secs(30);

/// `Retry-After` in whole seconds, rounded up, at least 1.
fn retry_after(wait: Duration) -> HeaderValue {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

pin_project! {
    /// The future of [`PoolGuardService`]: the inner service's, in the
    /// request's scope, recorded when it completes.
    pub struct ResponseFuture<F, DB: Database> {
        #[pin]
        inner: scope::Serve<F>,
        guard: PoolGuard<DB>,
        note: RefusalNote,
        started: Instant,
        method: u8,
        scheme: u8,
    }
}

impl<F, DB: Database> std::fmt::Debug for ResponseFuture<F, DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl<F, DB, R, E> Future for ResponseFuture<F, DB>
where
    F: Future<Output = Result<Response<R>, E>>,
    DB: Database,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut out = std::task::ready!(this.inner.poll(cx));
        let status = match &mut out {
            Ok(resp) => {
                if let Some(wait) = this.note.get() {
                    if resp.status().is_server_error() {
                        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        let w = wait.unwrap_or(UNKNOWN_WAIT);
                        resp.headers_mut()
                            .insert(http::header::RETRY_AFTER, retry_after(w));
                    }
                }
                resp.status().as_u16()
            }
            // The service failed without a response: what the server
            // answers then is a 500.
            Err(_) => 500,
        };
        this.guard.shared().acct.record_request(
            *this.method,
            *this.scheme,
            status,
            this.started.elapsed(),
        );
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_by_unit() {
        assert_eq!(grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout("150m"), Some(Duration::from_millis(150)));
        assert_eq!(grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        for bad in ["", "S", "123456789S", "1x", "-1S", "1.5S"] {
            assert_eq!(grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn deadlines_come_from_the_extension_then_grpc_then_the_layer() {
        let now = Instant::now();
        let req = |grpc: Option<&str>, ext: Option<Instant>| {
            let mut b = Request::builder();
            if let Some(g) = grpc {
                b = b.header("grpc-timeout", g);
            }
            let mut r = b.body(()).unwrap();
            if let Some(at) = ext {
                r.extensions_mut().insert(RequestDeadline(at));
            }
            r
        };
        let secs = Duration::from_secs;
        let at = now + secs(9);
        assert_eq!(
            deadline_of(&req(Some("1S"), Some(at)), now, Some(secs(5))),
            Some(at)
        );
        assert_eq!(
            deadline_of(&req(Some("1S"), None), now, Some(secs(5))),
            Some(now + secs(1))
        );
        assert_eq!(
            deadline_of(&req(Some("x"), None), now, Some(secs(5))),
            Some(now + secs(5))
        );
        assert_eq!(deadline_of(&req(None, None), now, None), None);
        // Too far for the clock: no deadline, no panic.
        assert_eq!(
            deadline_of(&req(None, None), now, Some(Duration::MAX)),
            None
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after(Duration::ZERO), "1");
        assert_eq!(retry_after(Duration::from_millis(1)), "1");
        assert_eq!(retry_after(Duration::from_millis(2000)), "2");
        assert_eq!(retry_after(Duration::from_millis(2001)), "3");
    }
}
