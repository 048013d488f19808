//! The hot path: what every acquire, release and query touches. Atomics,
//! cached metric handles and drop tickets, and no import from any other
//! layer of the crate (the rules reach it only as plain [`edges`]).
//!
//! An acquire/release pair and a successful query allocate nothing and
//! take no lock (`tests/alone` counts allocations; `benches/hot_path`
//! counts instructions). Off that path, on purpose: a failed query and a
//! recorded HTTP response find their label set under a shared read lock,
//! and register a new one once under the write lock, allocating
//! (`handles`); a statement's first call stores its text once
//! (`statements`); the monitor's reads copy histograms.
//!
//! One clock (`clock`) gives every stored time; the lock-free protocols
//! (`slots`, `wait_ring`, `leak`, `holders`, `statements`) take their
//! atomics from `sync`, so `loom/` can run them under loom.

pub(crate) mod accounting;
pub(crate) mod clock;
pub(crate) mod connects;
pub(crate) mod edges;
pub(crate) mod handles;
pub(crate) mod hints;
pub(crate) mod histogram;
pub(crate) mod holders;
pub(crate) mod leak;
pub(crate) mod slots;
pub(crate) mod statements;
pub(crate) mod sync;
pub(crate) mod tickets;
pub(crate) mod wait_ring;
