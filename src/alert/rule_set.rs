//! The rules a guard runs, as one set: adding replaces the rule with the
//! same name and severity, removing takes every severity of a name, and the
//! set knows which rules make the pool's level and the scale hint, and
//! where on the hot path's counts a rule's verdict may change.

use std::ops::Deref;

use super::defaults::{POOL_RULE, SCALE_AT, SCALE_RULE};
use super::rule::{Comparison, Rule, Severity};
use super::signal::Signal;
use crate::hot::edges::{Edges, Watched};

/// An ordered set of rules, unique by name and severity.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// A set of `rules`; a later rule with the name and severity of an
    /// earlier one replaces it.
    pub(crate) fn of(rules: impl IntoIterator<Item = Rule>) -> Self {
        let mut set = Self::default();
        for r in rules {
            set.upsert(r);
        }
        set
    }

    /// Adds `rule` at the end, replacing the rule with its name and
    /// severity.
    pub(crate) fn upsert(&mut self, rule: Rule) {
        self.rules
            .retain(|r| !(r.name == rule.name && r.severity == rule.severity));
        self.rules.push(rule);
    }

    /// Removes every rule named `name` (all severities).
    pub(crate) fn remove(&mut self, name: &str) {
        self.rules.retain(|r| &*r.name != name);
    }

    /// Applies `f` to every rule.
    pub(crate) fn map(self, f: impl FnMut(Rule) -> Rule) -> Self {
        Self {
            rules: self.rules.into_iter().map(f).collect(),
        }
    }

    /// Whether rule `i` is a pool rule (its state makes the guard's level)
    /// of this severity.
    pub(crate) fn is_pool(&self, i: usize, severity: Severity) -> bool {
        let r = &self.rules[i];
        &*r.name == POOL_RULE && r.severity == severity
    }

    /// Utilization from which the pool is under pressure (a diagnosis is
    /// made): the scale rule's threshold, or the default's when the rule
    /// was removed.
    pub(crate) fn pressure(&self) -> f64 {
        (0..self.rules.len())
            .filter(|&i| self.is_scale(i))
            .map(|i| self.rules[i].threshold)
            .reduce(f64::min)
            .unwrap_or(SCALE_AT)
    }

    /// Whether rule `i` is the scale-hint rule.
    pub(crate) fn is_scale(&self, i: usize) -> bool {
        &*self.rules[i].name == SCALE_RULE
    }

    /// The counts at which a rule on an instantaneous signal may change its
    /// verdict (threshold and recovery threshold), in whole connections of
    /// `max`, for the hot path to watch.
    pub(crate) fn edges(&self, max: u32) -> Edges {
        let mut e = Edges::default();
        for rule in &self.rules {
            let (count, scale) = match rule.signal {
                // Utilization is `min(demand, max) / max`: below the pool's
                // size its edges are demand's.
                Signal::Utilization | Signal::Demand => (Watched::Demand, f64::from(max)),
                Signal::Waiters => (Watched::Waiters, 1.0),
                _ => continue,
            };
            for t in [rule.threshold, rule.recover_at] {
                e.add(count, edge(rule.comparison, t * scale));
            }
        }
        e
    }
}

impl Deref for RuleSet {
    type Target = [Rule];
    fn deref(&self) -> &[Rule] {
        &self.rules
    }
}

/// Smallest count `n` at which "`n` compared with `exact`" changes truth:
/// for `>` and `<=` the first `n > exact`, for `>=` and `<` the first
/// `n >= exact`.
fn edge(cmp: Comparison, exact: f64) -> u32 {
    // Tolerate float noise such as 0.8 * 10 = 8.000000000000002.
    let n = match cmp {
        Comparison::Above | Comparison::AtOrBelow => (exact + 1e-9).floor() + 1.0,
        _ => (exact - 1e-9).ceil(),
    };
    n.clamp(0.0, f64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests;
