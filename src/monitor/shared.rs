//! [`Shared`]: what the call path needs of a guard. Every handle, connection
//! and transaction holds it; the monitor writes the few values it
//! reconciles for the call path (sqlx's untracked connections) here.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
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
    pub(crate) fn busy(&self) -> u32 {
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
    /// Connections busy in sqlx beyond the guard's count, as reconciled by
    /// the monitor.
    pub(crate) untracked: Untracked,
    stats: StatsFn,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("acct", &self.acct)
            .field("protect", &self.protect)
            .field("untracked", &self.untracked)
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
            untracked: Untracked::default(),
            stats,
        }
    }

    /// The pool's own open and idle counts (sqlx's, or a model's).
    pub(crate) fn pool_stats(&self) -> PoolStats {
        (self.stats)()
    }
}

/// Connections busy in sqlx but not checked out through the guard.
///
/// sqlx pings every returned connection before it is idle again (FINDINGS:
/// its counts lag a release), so a quiet pool's release would otherwise
/// read as busy for a moment and move the level; a transaction begun
/// through generic `Acquire`, a listener, or a pool busy pinging under load
/// persists and counts from the second tick on (at most two ticks late).
#[derive(Debug, Default)]
pub(crate) struct Untracked {
    /// As of the last evaluation (read by load shedding).
    now: AtomicU32,
    /// The least of the raw difference at the last two ticks: what
    /// persisted.
    seen: AtomicU32,
    /// The raw difference at the last tick.
    last_tick: AtomicU32,
}

impl Untracked {
    /// sqlx's busy connections beyond `in_use`, counted only as far as the
    /// last two ticks saw them too.
    pub(crate) fn persisted(&self, stats: PoolStats, in_use: u32) -> u32 {
        stats
            .busy()
            .saturating_sub(in_use)
            .min(self.seen.load(Relaxed))
    }

    /// Stores the value of this evaluation for the call path.
    pub(crate) fn store(&self, untracked: u32) {
        self.now.store(untracked, Relaxed);
    }

    /// At the end of a tick: remembers the raw difference.
    pub(crate) fn end_tick(&self, stats: PoolStats, in_use: u32) {
        let raw = stats.busy().saturating_sub(in_use);
        let last = self.last_tick.swap(raw, Relaxed);
        self.seen.store(raw.min(last), Relaxed);
    }

    /// As of the last evaluation.
    pub(crate) fn busy(&self) -> u32 {
        self.now.load(Relaxed)
    }
}
