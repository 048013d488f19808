use super::*;

#[test]
fn waiter_becomes_user_in_one_step() {
    let slots = AtomicU64::new(0);
    slots.fetch_add(WAITER, Relaxed);
    slots.fetch_add(WAITER, Relaxed);
    slots.fetch_add(IN_USE, Relaxed);
    let after = slots
        .fetch_sub(WAITER - IN_USE, Relaxed)
        .wrapping_sub(WAITER - IN_USE);
    assert_eq!(split(after), (2, 1));
    slots.fetch_sub(IN_USE, Relaxed);
    slots.fetch_sub(IN_USE, Relaxed);
    slots.fetch_sub(WAITER, Relaxed);
    assert_eq!(split(slots.load(Relaxed)), (0, 0));
}
