use super::*;

fn normalised(sql: &str) -> String {
    let mut v = Vec::new();
    normalise(sql, |c| v.push(c));
    String::from_utf8(v).unwrap()
}

#[test]
fn literals_and_whitespace_are_normalised() {
    assert_eq!(
        normalised("  SELECT *\n  FROM orders WHERE id = 42 AND note = 'it''s'  "),
        "SELECT * FROM orders WHERE id = ? AND note = ?"
    );
    // Identifiers with digits and bind parameters stay.
    assert_eq!(
        normalised("SELECT col1 FROM t2 WHERE a = $1 AND b = ? LIMIT 10"),
        "SELECT col1 FROM t2 WHERE a = $1 AND b = ? LIMIT ?"
    );
    assert_eq!(normalised("SELECT 1.5e3"), "SELECT ?");
    let long = format!("SELECT {}", "x, ".repeat(200));
    assert_eq!(normalised(&long).len(), MAX_TEXT);
}

#[test]
fn one_statement_one_slot_whatever_its_literals() {
    let t = Statements::new();
    let a = t.slot_of("SELECT * FROM orders WHERE id = 1");
    let b = t.slot_of("SELECT *  FROM orders WHERE id = 2");
    let c = t.slot_of("SELECT * FROM users WHERE id = 1");
    assert_eq!(a, b);
    assert_ne!(a, c);
    t.record(a, Duration::from_millis(3));
    t.record(b, Duration::from_millis(5));
    t.record(c, Duration::from_millis(1));
    let mut seen = Vec::new();
    t.read(|r| seen.push((r.text.map(str::to_owned), r.calls, r.query_us)));
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                Some("SELECT * FROM orders WHERE id = ?".to_owned()),
                2,
                8_000
            ),
            (
                Some("SELECT * FROM users WHERE id = ?".to_owned()),
                1,
                1_000
            ),
        ]
    );
}

#[test]
fn statements_past_the_table_share_the_overflow_slot() {
    let t = Statements::new();
    let slots: Vec<u16> = (0..STATEMENTS * 2)
        .map(|i| t.slot_of(&format!("SELECT * FROM t{i}")))
        .collect();
    for s in &slots {
        t.record(*s, Duration::from_millis(1));
    }
    let (mut calls, mut overflow) = (0, 0);
    t.read(|r| {
        calls += r.calls;
        if r.text.is_none() {
            overflow = r.calls;
        }
    });
    assert_eq!(calls, (STATEMENTS * 2) as u64, "every call counted once");
    assert!(overflow >= STATEMENTS as u64, "{overflow}");
}
