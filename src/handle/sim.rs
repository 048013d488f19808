//! A simulated pool: the guard's accounting, protection, rules and events
//! driven by a model of the pool instead of a database.
//!
//! [`SimPool`] hands out slots of a fair (FIFO) semaphore of the pool's
//! `max_connections`, with the pool's `acquire_timeout`, through the same
//! counted acquire as [`PoolGuard::acquire`]: breaker admission, load
//! shedding, the waiter and hold tickets. Nothing touches a database, so it
//! runs on tokio's paused clock (`tokio::time::pause`), where real I/O would
//! auto-advance the clock: replays of an incident, rule tuning and capacity
//! what-ifs become exact and independent of the machine's load.
//!
//! What it does not model: the driver's own costs (connect, release pings,
//! `test_before_acquire`), statements (a slot is held for whatever the
//! caller sleeps) and the query timeout's server-side cancel.

use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Database;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::acquire::{counted_acquire, Admission};
use super::guard::PoolGuard;
use crate::error::Error;
use crate::hot::tickets::HoldTicket;
use crate::monitor::{PoolStats, StatsFn};

/// A [`PoolGuard`] over a model of its pool (see the [module](self) docs), from
/// [`PoolGuardBuilder::build_sim`](crate::PoolGuardBuilder::build_sim).
///
/// Build it from a builder over a pool that never connects
/// (`connect_lazy`): its `max_connections` and `acquire_timeout` size the
/// model; every read (events, snapshot, alerts, forecast) goes through
/// [`guard`](Self::guard).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), poolguard::Error> {
/// use std::time::Duration;
/// let pool = sqlx::sqlite::SqlitePoolOptions::new()
///     .max_connections(2)
///     .acquire_timeout(Duration::from_secs(1))
///     .connect_lazy("sqlite::memory:")?;
/// let sim = poolguard::PoolGuard::builder(pool).build_sim()?;
/// let a = sim.acquire().await?;
/// let b = sim.acquire().await?;
/// assert_eq!(sim.guard().snapshot().in_use, 2);
/// // A third waits out the pool's acquire timeout (paused clock: at once).
/// assert!(matches!(sim.acquire().await, Err(poolguard::Error::AcquireTimeout { .. })));
/// drop((a, b));
/// assert_eq!(sim.guard().snapshot().in_use, 0);
/// # Ok(()) }
/// ```
pub struct SimPool<DB: Database> {
    guard: PoolGuard<DB>,
    slots: Arc<Semaphore>,
    max: u32,
    acquire_timeout: Duration,
}

impl<DB: Database> std::fmt::Debug for SimPool<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPool")
            .field("guard", &self.guard)
            .field("free", &self.slots.available_permits())
            .field("max", &self.max)
            .finish()
    }
}

/// A slot of a [`SimPool`], counted as in use until dropped.
#[derive(Debug)]
pub struct SimConnection {
    _slot: OwnedSemaphorePermit,
    ticket: HoldTicket,
}

impl SimConnection {
    /// How long this slot has been held.
    pub fn held_for(&self) -> Duration {
        self.ticket.held_for()
    }

    /// As [`GuardedConnection::expect_hold`](crate::GuardedConnection::expect_hold).
    pub fn expect_hold(&self, hold: Duration) {
        self.ticket.expect_hold(hold);
    }
}

/// The model behind a [`SimPool`], made before the guard is built (the
/// guard's monitor reads the model's counts).
#[derive(Debug)]
pub(crate) struct SimModel {
    slots: Arc<Semaphore>,
    max: u32,
    acquire_timeout: Duration,
}

impl SimModel {
    pub(crate) fn new(max: u32, acquire_timeout: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
            acquire_timeout,
        }
    }

    /// The model's (size, idle), for the guard's monitor.
    pub(crate) fn stats(&self) -> StatsFn {
        let (model, max) = (Arc::clone(&self.slots), self.max);
        Box::new(move || PoolStats {
            size: max,
            idle: u32::try_from(model.available_permits()).unwrap_or(u32::MAX),
        })
    }

    /// The simulated pool around the guard built over this model.
    pub(crate) fn around<DB: Database>(self, guard: PoolGuard<DB>) -> SimPool<DB> {
        SimPool {
            guard,
            slots: self.slots,
            max: self.max,
            acquire_timeout: self.acquire_timeout,
        }
    }
}

impl<DB: Database> SimPool<DB> {
    /// The guard: events, snapshot, alerts, forecast, `record_http`.
    pub fn guard(&self) -> &PoolGuard<DB> {
        &self.guard
    }

    /// Takes a slot as [`PoolGuard::acquire`] takes a connection.
    #[track_caller]
    pub fn acquire(&self) -> impl Future<Output = Result<SimConnection, Error>> + '_ {
        self.acquire_from(Location::caller(), None)
    }

    /// Takes a slot as [`PoolGuard::acquire_within`] takes a connection.
    #[track_caller]
    pub fn acquire_within(
        &self,
        deadline: Duration,
    ) -> impl Future<Output = Result<SimConnection, Error>> + '_ {
        self.acquire_from(Location::caller(), Some(deadline))
    }

    async fn acquire_from(
        &self,
        location: &'static Location<'static>,
        deadline: Option<Duration>,
    ) -> Result<SimConnection, Error> {
        let shared = self.guard.shared();
        let wait = || async {
            tokio::time::timeout(
                self.acquire_timeout,
                Arc::clone(&self.slots).acquire_owned(),
            )
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)
        };
        let (slot, ticket) =
            counted_acquire(shared, location, deadline, Admission::Ask, wait).await?;
        Ok(SimConnection {
            _slot: slot,
            ticket,
        })
    }
}
