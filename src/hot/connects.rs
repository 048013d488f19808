//! Connections the pool opens, counted by a hook in the pool's own
//! `after_connect` (the guard wraps a pool that is already built, and sqlx
//! tells nobody else when it connects): the connection-churn signal.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use sqlx::pool::{PoolConnectionMetadata, PoolOptions};
use sqlx::Database;

/// Counts the connections a pool opens, for the guard's connection-churn
/// signal ([`Signal::Churn`](crate::Signal::Churn)): connections opened
/// and dropped in a loop while acquires time out (sqlx #3132) look like a
/// busy pool to every other count.
///
/// Install it where the pool is built, and hand it to the guard:
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use poolguard::{ConnectCounter, PoolGuard};
///
/// let opens = ConnectCounter::new();
/// let pool = opens
///     .count(sqlx::sqlite::SqlitePoolOptions::new().max_connections(4))
///     .connect("sqlite::memory:")
///     .await?;
/// let guard = PoolGuard::builder(pool).connects(opens.clone()).build()?;
/// drop(guard.acquire().await?);
/// assert!(opens.total() >= 1);
/// # Ok(()) }
/// ```
///
/// With an `after_connect` of your own, call [`opened`](Self::opened) in
/// it instead of [`count`](Self::count), which replaces the hook.
///
/// With a counter installed the guard also measures
/// `db.client.connection.create_time`: sqlx opens a connection inside the
/// acquire that needs it and runs `after_connect` in that acquire's poll,
/// so an acquire that saw its own open, and started with a slot free (no
/// wait for a permit before the connect), took the connect's time plus
/// sqlx's bookkeeping (microseconds).
#[derive(Clone, Debug, Default)]
pub struct ConnectCounter(Arc<AtomicU64>);

thread_local! {
    /// Set by [`ConnectCounter::opened`]: a connection was opened on this
    /// thread since the last [`poll_noting_opens`] cleared it.
    static OPENED: Cell<bool> = const { Cell::new(false) };
}

/// Polls `fut` and notes in `opened` whether a counted connection was
/// opened during this poll (the hook runs inside the poll that opens).
#[inline]
pub(crate) fn poll_noting_opens<F: Future>(
    fut: Pin<&mut F>,
    cx: &mut Context<'_>,
    opened: &mut bool,
) -> Poll<F::Output> {
    OPENED.with(|o| o.set(false));
    let r = fut.poll(cx);
    if OPENED.with(Cell::get) {
        *opened = true;
    }
    r
}

impl ConnectCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one connection opened.
    pub fn opened(&self) {
        self.0.fetch_add(1, Relaxed);
        OPENED.with(|o| o.set(true));
    }

    /// Connections counted so far.
    pub fn total(&self) -> u64 {
        self.0.load(Relaxed)
    }

    /// `options` with an `after_connect` hook that counts each connection
    /// the pool opens (replacing any hook set before).
    pub fn count<DB: Database>(&self, options: PoolOptions<DB>) -> PoolOptions<DB> {
        let counter = self.clone();
        options.after_connect(
            move |_: &mut DB::Connection,
                  _: PoolConnectionMetadata|
                  -> BoxFuture<'_, Result<(), sqlx::Error>> {
                counter.opened();
                Box::pin(async { Ok(()) })
            },
        )
    }
}
