//! Who holds the pool, by statement: query time per normalised SQL text of
//! the queries run through the guard.
//!
//! A fixed table of [`STATEMENTS`] slots (and an overflow slot) keyed by a
//! hash of the normalised text: literals (numbers, quoted strings) become
//! `?` and whitespace runs one space, so `WHERE id = 1` and `WHERE id = 2`
//! are one statement. Each query normalises and hashes its text as it
//! streams (no allocation); the first query of a statement stores the
//! normalised text once (at most one allocation per slot, [`STATEMENTS`]
//! per guard). Counting is two relaxed atomics.

use super::clock::Nanos;
use super::sync::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

/// Statement slots (the overflow slot is extra).
pub(crate) const STATEMENTS: usize = 64;
/// Longest normalised text kept and hashed (bytes).
pub(crate) const MAX_TEXT: usize = 160;
/// Slots probed before a statement goes to the overflow slot.
const PROBES: usize = 8;

#[derive(Debug, Default)]
struct Slot {
    /// Hash of the normalised text; 0: free.
    key: AtomicU64,
    text: OnceLock<Box<str>>,
    calls: AtomicU64,
    query_us: AtomicU64,
}

/// One statement's totals at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StatementReading<'a> {
    /// `None`: the overflow slot (statements past the table's size).
    pub(crate) text: Option<&'a str>,
    pub(crate) key: u64,
    pub(crate) calls: u64,
    /// Query time in microseconds.
    pub(crate) query_us: u64,
}

#[derive(Debug)]
pub(crate) struct Statements {
    slots: Box<[Slot]>,
}

/// Feeds the normalised form of `sql` to `out`, byte by byte, up to
/// [`MAX_TEXT`] bytes.
fn normalise(sql: &str, mut out: impl FnMut(u8)) {
    let b = sql.as_bytes();
    let (mut i, mut n, mut space) = (0, 0, false);
    let mut emit = |c: u8, n: &mut usize| {
        if *n < MAX_TEXT {
            out(c);
            *n += 1;
        }
    };
    while i < b.len() && n < MAX_TEXT {
        let c = b[i];
        let prev_ident =
            i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'$');
        if c.is_ascii_whitespace() {
            space = n > 0;
            i += 1;
            continue;
        }
        if space {
            emit(b' ', &mut n);
            space = false;
        }
        if c == b'\'' {
            // A string literal ('' escapes a quote).
            i += 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            emit(b'?', &mut n);
        } else if c.is_ascii_digit() && !prev_ident {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            emit(b'?', &mut n);
        } else {
            emit(c, &mut n);
            i += 1;
        }
    }
}

/// FNV-1a of the normalised text; never 0.
pub(crate) fn key_of(sql: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    normalise(sql, |c| {
        h ^= u64::from(c);
        h = h.wrapping_mul(0x0100_0000_01b3);
    });
    h | 1
}

/// The first slot a statement of `key` probes.
pub(crate) fn start_of(key: u64) -> usize {
    (key >> 58) as usize % STATEMENTS
}

impl Statements {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..=STATEMENTS).map(|_| Slot::default()).collect(),
        }
    }

    /// The slot of `sql`'s statement, claimed on first use (storing its
    /// normalised text); the overflow slot when the table is full around it.
    pub(crate) fn slot_of(&self, sql: &str) -> u16 {
        let key = key_of(sql);
        let start = start_of(key);
        for i in 0..PROBES {
            let idx = (start + i) % STATEMENTS;
            let slot = &self.slots[idx];
            let seen = slot.key.load(Relaxed);
            if seen == key {
                return idx as u16;
            }
            if seen == 0 {
                match slot.key.compare_exchange(0, key, Relaxed, Relaxed) {
                    Ok(_) => {
                        let mut text = Vec::with_capacity(MAX_TEXT.min(sql.len()));
                        normalise(sql, |c| text.push(c));
                        let text = String::from_utf8_lossy(&text).into_owned();
                        let _ = slot.text.set(text.into_boxed_str());
                        return idx as u16;
                    }
                    Err(other) if other == key => return idx as u16,
                    Err(_) => {}
                }
            }
        }
        STATEMENTS as u16
    }

    /// The normalised text of `slot`'s statement (`None`: the overflow
    /// slot, or not stored yet).
    pub(crate) fn text(&self, slot: u16) -> Option<&str> {
        self.slots.get(usize::from(slot))?.text.get().map(|t| &**t)
    }

    /// One query of `slot`'s statement took `took`.
    #[inline]
    pub(crate) fn record(&self, slot: u16, took: Duration) {
        let s = &self.slots[usize::from(slot)];
        s.calls.fetch_add(1, Relaxed);
        s.query_us.fetch_add(Nanos::micros_of(took), Relaxed);
    }

    /// Every used slot.
    pub(crate) fn read<'a>(&'a self, mut each: impl FnMut(StatementReading<'a>)) {
        for (idx, s) in self.slots.iter().enumerate() {
            let key = s.key.load(Relaxed);
            let calls = s.calls.load(Relaxed);
            let overflow = idx == STATEMENTS;
            if calls == 0 || (key == 0 && !overflow) {
                continue;
            }
            each(StatementReading {
                text: if overflow {
                    None
                } else {
                    Some(s.text.get().map_or("?", |t| t))
                },
                key: if overflow { 0 } else { key },
                calls,
                query_us: s.query_us.load(Relaxed),
            });
        }
    }
}

#[cfg(test)]
mod tests;
