//! [`Shared`]: what the call path needs of a guard. Every handle, connection
//! and transaction holds it. The monitor's word to the call path lives in
//! the accounting's `Hints`.

use std::sync::Arc;

use crate::report::identity::PoolIdentity;

use crate::hot::accounting::Accounting;
use crate::protect::Protection;
use crate::report::events::EventHub;

/// Open and idle connections as sqlx reports them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PoolStats {
    pub(crate) size: u32,
    pub(crate) idle: u32,
}

impl PoolStats {
    /// Connections sqlx counts as not idle: checked out (through the guard
    /// or not), being opened, or being pinged after a release.
    pub(crate) fn not_idle(&self) -> u32 {
        self.size.saturating_sub(self.idle)
    }
}

/// Reads the pool's own (size, idle): sqlx's, or a model's.
pub(crate) type StatsFn = Box<dyn Fn() -> PoolStats + Send + Sync>;

/// The call path's part of a guard.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    /// Who the pool talks to (span and metric attributes).
    pub(crate) identity: PoolIdentity,
    pub(crate) acct: Arc<Accounting>,
    pub(crate) protect: Protection,
    pub(crate) hub: EventHub,
    stats: StatsFn,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("acct", &self.acct)
            .field("protect", &self.protect)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(
        name: Arc<str>,
        identity: PoolIdentity,
        acct: Arc<Accounting>,
        protect: Protection,
        hub: EventHub,
        stats: StatsFn,
    ) -> Self {
        Self {
            name,
            identity,
            acct,
            protect,
            hub,
            stats,
        }
    }

    /// The pool's own open and idle counts (sqlx's, or a model's).
    pub(crate) fn pool_stats(&self) -> PoolStats {
        (self.stats)()
    }
}
