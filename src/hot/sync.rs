//! The atomics the hot path's lock-free protocols use. The files that
//! import them from here (`slots`, `wait_ring`, `leak`, `holders`,
//! `statements`) are compiled a second time by `loom/` with loom's
//! atomics in their place, which explores their interleavings.

pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
