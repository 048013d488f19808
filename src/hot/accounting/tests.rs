use super::*;
use crate::hot::slots::{split, IN_USE, WAITER, WAITER_TO_IN_USE};

#[test]
fn waiter_becomes_user_in_one_step() {
    let slots = Slots::default();
    slots.add(WAITER);
    slots.add(WAITER);
    slots.add(IN_USE);
    let after = slots.sub(WAITER_TO_IN_USE);
    assert_eq!(split(after), (2, 1));
    slots.sub(IN_USE);
    slots.sub(IN_USE);
    slots.sub(WAITER);
    assert_eq!(slots.read(), (0, 0));
}
