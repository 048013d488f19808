//! Which statement a query through the guard runs, for the per-statement
//! attribution (`hot/statements.rs`): the query is wrapped in an `Execute`
//! that looks its text up when the driver asks for it, and the driver's
//! future is built and polled through [`tapped`] (a stream is built through
//! [`made`]), which picks the slot up right after the call in which the
//! driver read the text (a thread-local set and read within one call, so no
//! allocation and no shared state between queries).

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;

use sqlx::error::BoxDynError;
use sqlx::{Database, Execute, SqlStr};

use crate::hot::accounting::Accounting;

thread_local! {
    /// The statement slot looked up during the current poll.
    static SEEN: Cell<Option<u16>> = const { Cell::new(None) };
}

/// A query whose text is looked up in the statement table when the driver
/// reads it.
pub(crate) struct Tracked<E> {
    inner: E,
    acct: Arc<Accounting>,
}

impl<E> Tracked<E> {
    pub(crate) fn new(inner: E, acct: &Arc<Accounting>) -> Self {
        Self {
            inner,
            acct: Arc::clone(acct),
        }
    }
}

impl<'q, DB: Database, E: Execute<'q, DB>> Execute<'q, DB> for Tracked<E> {
    fn sql(self) -> SqlStr {
        let sql = self.inner.sql();
        let slot = self.acct.statements.slot_of(sql.as_str());
        SEEN.with(|s| s.set(Some(slot)));
        sql
    }

    fn statement(&self) -> Option<&DB::Statement> {
        self.inner.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<<DB as Database>::Arguments>, BoxDynError> {
        self.inner.take_arguments()
    }

    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
}

/// Calls `make`, storing in `seen` the statement slot a [`Tracked`] query
/// looked up meanwhile (drivers read the text when they build the future or
/// the stream, not when it is polled).
pub(crate) fn made<T>(make: impl FnOnce() -> T, seen: &mut Option<u16>) -> T {
    SEEN.with(|s| s.set(None));
    let out = make();
    if let Some(slot) = SEEN.with(Cell::take) {
        *seen = Some(slot);
    }
    out
}

/// Builds the future with `make` and runs it, storing in `seen` the
/// statement slot a [`Tracked`] query looked up while it was built or
/// polled.
pub(crate) async fn tapped<F: Future>(
    make: impl FnOnce() -> F,
    seen: &mut Option<u16>,
) -> F::Output {
    let fut = made(make, seen);
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        SEEN.with(|s| s.set(None));
        let out = fut.as_mut().poll(cx);
        if let Some(slot) = SEEN.with(Cell::take) {
            *seen = Some(slot);
        }
        out
    })
    .await
}
