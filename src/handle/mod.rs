//! What the user holds: the [`guard`](crate::PoolGuard), its connections
//! and transactions ([`connection`]), what `&mut *conn` gives
//! ([`guarded`]), the sqlx trait impls ([`executor`]) and
//! the model pool for replays ([`sim`]).

pub(crate) mod acquire;
pub(crate) mod admission;
pub(crate) mod connection;
pub(crate) mod executor;
pub(crate) mod guard;
pub(crate) mod guarded;
pub(crate) mod held;
pub(crate) mod in_flight;
pub(crate) mod query;
pub(crate) mod report;
pub(crate) mod scope;
pub mod sim;
pub(crate) mod statement;
