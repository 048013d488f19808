//! loom models of poolguard's hand-rolled lock-free protocols.
//!
//! The files below are poolguard's own (`#[path]`), compiled here with
//! loom's atomics as their `hot::sync`, so loom explores the interleavings
//! of the very code the guard runs. This crate is a library, not a test
//! harness, so the files' own `#[cfg(test)]` modules are left out; each
//! model is a function the test in `tests/models.rs` runs, with loom's
//! preemption bound (set there) keeping the exploration within CI's
//! budget.
#![allow(dead_code)] // the models use part of each file's API

use std::panic::Location;

use loom::thread;

/// loom's atomics in place of `std`'s: what the hot path's files import
/// as `super::sync` (here the crate root is their parent).
pub(crate) mod sync {
    pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
}

/// What the breaker's file imports as `crate::hot::sync`.
pub(crate) mod hot {
    pub(crate) use crate::sync;
}

#[rustfmt::skip] // poolguard's own file, formatted there
#[path = "../../src/hot/clock.rs"]
pub(crate) mod clock;
#[rustfmt::skip] // poolguard's own file, formatted there
#[path = "../../src/protect/breaker/fast.rs"]
pub(crate) mod fast;
#[rustfmt::skip] // poolguard's own file, formatted there
#[path = "../../src/hot/holders.rs"]
pub(crate) mod holders;
#[rustfmt::skip] // poolguard's own file, formatted there
#[path = "../../src/hot/leak.rs"]
pub(crate) mod leak;
#[rustfmt::skip] // poolguard's own file, formatted there
#[path = "../../src/hot/slots.rs"]
pub(crate) mod slots;
#[rustfmt::skip] // poolguard's own file, formatted there
#[path = "../../src/hot/statements.rs"]
pub(crate) mod statements;
#[rustfmt::skip] // poolguard's own file, formatted there
#[path = "../../src/hot/wait_ring.rs"]
pub(crate) mod wait_ring;

mod sites;

use clock::Clock;
use leak::LeakTable;
use slots::{Slots, IN_USE, WAITER, WAITER_TO_IN_USE};

/// The packed in-use/waiter word: two acquires, each waiting and then in
/// use (one step), while a reader looks twice. No read sees a connection
/// counted twice (the sum never exceeds the acquires) or dropped between
/// waiting and in use (the sum never falls while nothing is released);
/// after the releases the word is zero.
pub fn packed_slot_word() {
    let slots = loom::sync::Arc::new(Slots::default());
    let acquires: Vec<_> = (0..2)
        .map(|_| {
            let slots = slots.clone();
            thread::spawn(move || {
                slots.add(WAITER);
                slots.sub(WAITER_TO_IN_USE);
            })
        })
        .collect();
    let reader = {
        let slots = slots.clone();
        thread::spawn(move || {
            let sum = |(in_use, waiters): (u32, u32)| in_use + waiters;
            let first = slots.read();
            let second = slots.read();
            assert!(sum(second) <= 2, "{second:?}");
            assert!(sum(first) <= sum(second), "{first:?} then {second:?}");
        })
    };
    for a in acquires {
        a.join().unwrap();
    }
    reader.join().unwrap();
    assert_eq!(slots.read(), (2, 0));
    slots.sub(IN_USE);
    slots.sub(IN_USE);
    assert_eq!(slots.read(), (0, 0));
}

/// The oldest-waiter ring with one slot: wait 0 starts, then wait 1
/// overwrites its slot. A reader asking for wait 1 never gets wait 0's
/// start time, whatever it reads.
pub fn oldest_waiter_ring() {
    let ring = loom::sync::Arc::new(wait_ring::WaitRing::new(1));
    let writer = {
        let ring = ring.clone();
        thread::spawn(move || {
            ring.started(0, 5);
            ring.started(1, 7);
        })
    };
    let seen = ring.oldest_start(1, 2);
    assert!(seen.is_none() || seen == Some(7), "{seen:?}");
    writer.join().unwrap();
    assert_eq!(ring.oldest_start(1, 2), Some(7));
    assert_eq!(
        ring.oldest_start(0, 2),
        Some(7),
        "wait 0's slot is wait 1's"
    );
}

/// The leak table's generations: hold A ends and its slot may be claimed
/// by hold B while the monitor scans. A report always names the hold it
/// marked: A's release says it was reported exactly when the scan found
/// A, and B is reported (then returned) exactly when the scan found B.
pub fn leak_table_generations() {
    let (a_at, b_at) = (site_a(), site_b());
    let clock = Clock::start();
    let table = loom::sync::Arc::new(LeakTable::new(clock, std::time::Duration::from_secs(1), 0));
    let start = clock.at(clock.origin());
    let a = table.claim(start, a_at).expect("a free slot");
    let holds = {
        let table = table.clone();
        thread::spawn(move || {
            let a_reported = table.release(a, std::time::Duration::from_secs(2));
            let b = table.claim(start, b_at).expect("a free slot");
            (a_reported, b)
        })
    };
    let mut found = Vec::new();
    let later = clock.origin() + std::time::Duration::from_secs(3600);
    table.scan(later, |f| found.push((f.location, f.returned)));
    let (a_reported, b) = holds.join().unwrap();
    let b_reported = table.release(b, std::time::Duration::from_secs(2));
    let reported =
        |at: &'static Location<'static>| found.iter().filter(|(l, r)| *l == at && !r).count();
    assert_eq!(reported(a_at), usize::from(a_reported), "{found:?}");
    assert_eq!(reported(b_at), usize::from(b_reported), "{found:?}");
}

/// Two call sites (each function's own line).
fn site_a() -> &'static Location<'static> {
    Location::caller()
}

fn site_b() -> &'static Location<'static> {
    Location::caller()
}

/// The first two of `items` that probe the same first slot.
fn first_collision<T: Clone>(items: &[T], start: impl Fn(&T) -> usize) -> (T, T) {
    items
        .iter()
        .enumerate()
        .find_map(|(i, a)| {
            items[i + 1..]
                .iter()
                .find(|b| start(b) == start(a))
                .map(|b| (a.clone(), b.clone()))
        })
        .expect("65 items in 64 slots: two share one")
}

/// Two distinct call sites that probe the same first slot.
fn colliding_sites() -> (&'static Location<'static>, &'static Location<'static>) {
    first_collision(&sites::sites(), |s| holders::start_of(s))
}

/// Two distinct statements that probe the same first slot.
fn colliding_statements() -> (String, String) {
    let name = |mut i: usize| {
        let mut s = String::new();
        loop {
            s.push(char::from(b'a' + (i % 26) as u8));
            i /= 26;
            if i == 0 {
                return format!("SELECT x FROM t_{s}");
            }
        }
    };
    let all: Vec<String> = (0..65).map(name).collect();
    first_collision(&all, |sql| statements::start_of(statements::key_of(sql)))
}

/// The holders table's `slot_of`: two sites that probe the same first
/// slot race for it while the first site asks again. Each site keeps one
/// slot, and they are two.
pub fn holders_slot_of() {
    let (a, b) = colliding_sites();
    let holders = loom::sync::Arc::new(holders::Holders::new());
    let other = {
        let holders = holders.clone();
        thread::spawn(move || holders.slot_of(b))
    };
    let first = holders.slot_of(a);
    let again = holders.slot_of(a);
    let b_slot = other.join().unwrap();
    assert_eq!(first, again);
    assert_ne!(first, b_slot);
    assert_eq!(holders.slot_of(b), b_slot);
}

/// The statements table's `slot_of`: two statements that probe the same
/// first slot race for it while the first asks again. Each statement keeps
/// one slot, and they are two.
pub fn statements_slot_of() {
    let (a, b) = colliding_statements();
    let statements = loom::sync::Arc::new(statements::Statements::new());
    let other = {
        let statements = statements.clone();
        let b = b.clone();
        thread::spawn(move || statements.slot_of(&b))
    };
    let first = statements.slot_of(&a);
    let again = statements.slot_of(&a);
    let b_slot = other.join().unwrap();
    assert_eq!(first, again);
    assert_ne!(first, b_slot);
    assert_eq!(statements.slot_of(&b), b_slot);
}

/// The breaker's tagged success counters: two successes in one bucket
/// while the lock holder drains; every success is absorbed exactly once,
/// under its own bucket's index. (The drain runs on a spawned thread: with
/// the main thread's drain first, loom never scheduled an add before it.)
pub fn breaker_tagged_buckets() {
    let buckets = loom::sync::Arc::new(fast::TaggedBuckets::new(1));
    let adder = {
        let buckets = buckets.clone();
        thread::spawn(move || buckets.add(5))
    };
    let drainer = {
        let buckets = buckets.clone();
        thread::spawn(move || {
            let mut absorbed = Vec::new();
            buckets.drain(5, |index, n| absorbed.push((index, n)));
            absorbed
        })
    };
    buckets.add(5);
    let mut absorbed = drainer.join().unwrap();
    adder.join().unwrap();
    buckets.drain(5, |index, n| absorbed.push((index, n)));
    assert!(absorbed.iter().all(|(i, _)| *i == 5), "{absorbed:?}");
    assert_eq!(
        absorbed.iter().map(|(_, n)| n).sum::<u32>(),
        2,
        "{absorbed:?}"
    );
}
