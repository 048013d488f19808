//! Connections the pool opens, counted by a hook in the pool's own
//! `after_connect` (the guard wraps a pool that is already built, and sqlx
//! tells nobody else when it connects): the connection-churn signal.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

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
#[derive(Clone, Debug, Default)]
pub struct ConnectCounter(Arc<AtomicU64>);

impl ConnectCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one connection opened.
    pub fn opened(&self) {
        self.0.fetch_add(1, Relaxed);
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
