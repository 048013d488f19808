//! Runs each model under loom with a preemption bound of 2 (tokio's own
//! CI uses 2 to 4): every interleaving with at most two preemptions.
//!
//! Each model was seen to fail on a seeded bug in the file it runs (the
//! ring's tag check removed; the leak scan's compare-and-swap turned into
//! a store; `slot_of`'s compare-and-swap turned into a store, in holders
//! and in statements; the breaker drain's compare-and-swap turned into a
//! load and a store; the waiter-to-user step split in two), so none passes
//! without exploring the race it is about.

fn check(model: fn()) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(model);
}

#[test]
fn packed_slot_word() {
    check(poolguard_loom::packed_slot_word);
}

#[test]
fn oldest_waiter_ring() {
    check(poolguard_loom::oldest_waiter_ring);
}

#[test]
fn leak_table_generations() {
    check(poolguard_loom::leak_table_generations);
}

#[test]
fn holders_slot_of() {
    check(poolguard_loom::holders_slot_of);
}

#[test]
fn statements_slot_of() {
    check(poolguard_loom::statements_slot_of);
}

#[test]
fn breaker_tagged_buckets() {
    check(poolguard_loom::breaker_tagged_buckets);
}
