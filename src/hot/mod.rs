//! The hot path: what every acquire, release and query touches. Atomics,
//! cached metric handles and drop tickets; no allocation, no lock, and no
//! import from any other layer of the crate (the rules reach it only as
//! plain [`edges`]).

pub(crate) mod accounting;
pub(crate) mod connects;
pub(crate) mod edges;
pub(crate) mod handles;
pub(crate) mod histogram;
pub(crate) mod holders;
pub(crate) mod leak;
pub(crate) mod statements;
