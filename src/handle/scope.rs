//! The request a call serves, when a layer says so (the `tower` feature's
//! layer): its deadline, which bounds every acquire the guard makes while
//! serving it, and a note of the guard's refusals, which the layer turns
//! into `503` with `Retry-After`.
//!
//! A tokio task-local, set while the request's future is polled: acquires
//! made in tasks the handler spawns do not see it. Outside a scope the
//! lookup is one thread-local read.

// Without the `tower` feature nothing sets a scope (the lookups stay).
#![cfg_attr(not(feature = "tower"), allow(dead_code))]

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// What the layer learns after the request: whether the guard refused an
/// acquire, and the wait it suggested.
#[derive(Clone, Debug, Default)]
pub(crate) struct RefusalNote(Arc<AtomicU64>);

/// No refusal.
const NONE: u64 = 0;
/// A refusal with no known time to wait (a breaker forced open).
const UNKNOWN: u64 = u64::MAX;

impl RefusalNote {
    /// `None`: nothing refused. `Some(None)`: refused, no time known.
    pub(crate) fn get(&self) -> Option<Option<Duration>> {
        match self.0.load(Relaxed) {
            NONE => None,
            UNKNOWN => Some(None),
            ms => Some(Some(Duration::from_millis(ms - 1))),
        }
    }

    fn set(&self, retry: Option<Duration>) {
        // Whole milliseconds rounded up: the header rounds up to seconds,
        // and 1000.4 ms must not read as 1 s.
        let v = retry.map_or(UNKNOWN, |d| {
            let ms = d.as_nanos().div_ceil(1_000_000);
            u64::try_from(ms).unwrap_or(UNKNOWN - 2).min(UNKNOWN - 2) + 1
        });
        self.0.store(v, Relaxed);
    }
}

#[derive(Debug)]
pub(crate) struct RequestScope {
    deadline: Option<Instant>,
    refused: RefusalNote,
}

tokio::task_local! {
    static SCOPE: RequestScope;
}

/// Set once any layer made a scope: until then acquires skip the
/// task-local lookup (one relaxed load instead).
static IN_USE: AtomicBool = AtomicBool::new(false);

/// A request's future in its scope.
pub(crate) type Serve<F> = tokio::task::futures::TaskLocalFuture<RequestScope, F>;

/// Runs `fut` as one request with `deadline`; refusals go to `note`.
pub(crate) fn serve<F: Future>(deadline: Option<Instant>, note: RefusalNote, fut: F) -> Serve<F> {
    if !IN_USE.load(Relaxed) {
        IN_USE.store(true, Relaxed);
    }
    SCOPE.scope(
        RequestScope {
            deadline,
            refused: note,
        },
        fut,
    )
}

/// `deadline` bounded by the request's remaining time, if a request
/// scope has a deadline (past it: zero, so only a connection at hand is
/// taken), and whether the request's time is the bound that applies.
#[inline]
pub(crate) fn bound(deadline: Option<Duration>) -> (Option<Duration>, bool) {
    if !IN_USE.load(Relaxed) {
        return (deadline, false);
    }
    let Ok(Some(at)) = SCOPE.try_with(|s| s.deadline) else {
        return (deadline, false);
    };
    let left = at.saturating_duration_since(Instant::now());
    match deadline {
        Some(d) if d <= left => (Some(d), false),
        _ => (Some(left), true),
    }
}

/// Notes a refusal of the guard (open breaker, load shedding) in the
/// request's scope, with the time after which a retry may succeed (the
/// breaker's wait, the expected queue time; `None`: not known).
pub(crate) fn note_refusal(retry: Option<Duration>) {
    if !IN_USE.load(Relaxed) {
        return;
    }
    let _ = SCOPE.try_with(|s| s.refused.set(retry));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_keeps_the_wait_in_milliseconds() {
        let n = RefusalNote::default();
        assert_eq!(n.get(), None);
        n.set(Some(Duration::from_millis(1500)));
        assert_eq!(n.get(), Some(Some(Duration::from_millis(1500))));
        n.set(Some(Duration::ZERO));
        assert_eq!(n.get(), Some(Some(Duration::ZERO)));
        n.set(Some(Duration::from_micros(1_000_400)));
        assert_eq!(n.get(), Some(Some(Duration::from_millis(1001))));
        n.set(None);
        assert_eq!(n.get(), Some(None));
    }

    #[tokio::test(start_paused = true)]
    async fn acquires_in_a_scope_get_its_remaining_time() {
        assert_eq!(bound(None), (None, false));
        let at = Instant::now() + Duration::from_secs(2);
        serve(Some(at), RefusalNote::default(), async {
            assert_eq!(bound(None), (Some(Duration::from_secs(2)), true));
            assert_eq!(
                bound(Some(Duration::from_secs(1))),
                (Some(Duration::from_secs(1)), false)
            );
            assert_eq!(
                bound(Some(Duration::from_secs(3))),
                (Some(Duration::from_secs(2)), true)
            );
            tokio::time::advance(Duration::from_secs(3)).await;
            assert_eq!(bound(None), (Some(Duration::ZERO), true));
        })
        .await;
        serve(None, RefusalNote::default(), async {
            assert_eq!(
                bound(Some(Duration::from_secs(5))),
                (Some(Duration::from_secs(5)), false)
            );
        })
        .await;
    }
}
