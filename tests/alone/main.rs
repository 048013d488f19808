//! Tests that need the process to themselves, apart from `tests/it/`, and
//! run one at a time: two count the heap through a global allocator (every
//! allocation in the process counts), one captures `tracing` spans (tracing
//! caches each callsite's interest for the whole process: a callsite first
//! hit on another thread while the capturing subscriber was being set up
//! kept "never", and the test saw no acquire span).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

mod memory;
mod no_alloc;
mod spans;

/// Allocations made (`alloc` and `realloc` calls).
static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not yet freed.
static LIVE: AtomicI64 = AtomicI64::new(0);

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Held for a whole test: the counts and the tracing state are the
/// process's, so a second test running at once would be counted too. Each
/// test starts with tracing's interest recomputed from the subscribers that
/// are still alive (none, once an earlier test dropped its own).
async fn alone() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let guard = ONE_AT_A_TIME.lock().await;
    tracing::callsite::rebuild_interest_cache();
    guard
}
