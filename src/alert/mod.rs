//! Alerting: what a rule can watch ([`signal`]), what a rule is
//! ([`rule`]), the default table ([`defaults`]), the set a guard runs
//! ([`rule_set`]: replace, remove, the pool and scale rules, the hot path's
//! edges), each rule's pure state machine ([`tracker`]) and the pool level
//! it summarizes ([`saturation`]). Nothing here reads a clock or touches the
//! pool: the monitor passes time and values in.

pub(crate) mod defaults;
pub(crate) mod rule;
pub(crate) mod rule_set;
pub(crate) mod saturation;
pub(crate) mod signal;
pub(crate) mod tracker;

#[cfg(test)]
mod tests;
