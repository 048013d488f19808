//! The ops kit (`ops/`) against the real exporter output: every metric and
//! label name used by a Prometheus rule or a Grafana panel is one a guard
//! actually renders through `metrics-exporter-prometheus`, every in-process
//! default rule has its Prometheus alert with the same hold, keep-firing
//! time, threshold and recovery threshold (the pool's instantaneous signals
//! judged on their mean over the rule's window), every status code and
//! latency bound the kit names is one the guard exports, and every panel
//! filters by the dashboard's pool variable and aggregates by pool.
//!
//! The kit comes in two namings: plain (`metrics-exporter-prometheus`'
//! default: `db_client_connection_timeouts`) and suffixed (its
//! `with_recommended_naming(true)`, and an OpenTelemetry collector's
//! Prometheus exporter: `db_client_connection_timeouts_total`,
//! `..._wait_time_seconds_bucket`). The suffixed files (`ops/*/suffixed/`)
//! are the plain ones with each exported name renamed as the two real
//! renders pair them; a test checks they are exactly that
//! (`POOLGUARD_BLESS=1 cargo test --all-features --test ops_kit` rewrites
//! them), and every name check runs on both.
//!
//! The rule timings themselves are tested by `promtool test rules` on
//! `ops/prometheus/poolguard.rules.test.yml` and its suffixed twin (run by
//! `.ci/run`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use poolguard::{Comparison, PoolGuard, Rule, SaturationPolicy, Signal};
use sqlx::sqlite::SqlitePoolOptions;

/// The pool label as the exporter renders it.
const POOL: &str = "db_client_connection_pool_name";
/// Labels Prometheus adds to every scraped series (target labels).
const TARGET_LABELS: &[&str] = &["instance", "job"];
/// The series Prometheus writes for its own alerts (hysteresis in the rules),
/// with the labels it and the rules give it.
const ALERTS: &str = "ALERTS";
const ALERTS_LABELS: &[&str] = &["alertname", "alertstate", "severity", "rule", POOL];
/// Exported families the dashboard deliberately leaves out: per-instance
/// ratios, which cannot be aggregated across instances (the panels divide
/// summed counts instead).
const NOT_ON_DASHBOARD: &[&str] = &["poolguard_utilization", "poolguard_demand"];

fn ops(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ops").join(path)
}

fn read(path: &str) -> String {
    let p = ops(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ---------------------------------------------------------------------------
// The exporter's text format.
// ---------------------------------------------------------------------------

/// What an exposition renders: sample names (histograms with their
/// `_bucket`/`_sum`/`_count` suffixes), label names, and the type of each
/// family.
#[derive(Clone, Debug, Default)]
struct Rendered {
    names: BTreeSet<String>,
    labels: BTreeSet<String>,
    types: BTreeMap<String, String>,
}

fn parse_exposition(text: &str) -> Rendered {
    let mut r = Rendered::default();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                r.types.insert(name.to_string(), kind.to_string());
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        r.names.insert(line[..end].to_string());
        if line[end..].starts_with('{') {
            // name="value", ... with `\"` and `\\` escaped inside values.
            let b = line.as_bytes();
            let mut i = end + 1;
            while i < b.len() && b[i] != b'}' {
                let eq = line[i..].find('=').map(|p| i + p).expect("label =");
                r.labels.insert(line[i..eq].trim().to_string());
                i = eq + 2; // past `="`
                while b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                if i < b.len() && b[i] == b',' {
                    i += 1;
                }
            }
        }
    }
    r
}

// ---------------------------------------------------------------------------
// A PromQL scanner: enough of the lexer to find metric names and label names.
// ---------------------------------------------------------------------------

/// `name{label op "value", ...}` as written in an expression.
#[derive(Debug, Clone, PartialEq)]
struct Selector {
    name: String,
    matchers: Vec<(String, String, String)>,
}

/// What an expression refers to.
#[derive(Debug, Default)]
struct Scan {
    selectors: Vec<Selector>,
    /// Labels in `by`, `without`, `on`, `ignoring`, `group_left/right (...)`.
    grouping: Vec<String>,
    functions: Vec<String>,
    /// Each aggregation operator with the labels of its `by (...)` clause
    /// written before the operand (`None`: no `by` there).
    aggregations: Vec<(String, Option<Vec<String>>)>,
}

/// The labels of a parenthesised list starting at `open`, and the index
/// past its `)`.
fn label_list(expr: &str, open: usize) -> Result<(Vec<String>, usize), String> {
    let close = expr[open..].find(')').ok_or("unclosed (")? + open;
    let labels = expr[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    Ok((labels, close + 1))
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// PromQL functions of Prometheus 2.42 (`start`/`end` are the `@` modifiers).
const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "end",
    "exp",
    "floor",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "start",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Words that take a parenthesised label list.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Other keywords (case-insensitive in PromQL).
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];

fn ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// Index past a string literal starting at `i` (`"`, `'` or a backtick).
fn skip_string(b: &[u8], mut i: usize) -> Result<usize, String> {
    let quote = b[i];
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' if quote != b'`' => i += 2,
            c if c == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err("unterminated string".to_string())
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn read_ident(b: &[u8], mut i: usize) -> (usize, &str) {
    let start = i;
    while i < b.len() && ident_char(b[i]) {
        i += 1;
    }
    (i, std::str::from_utf8(&b[start..i]).expect("ASCII"))
}

/// Finds the metric names, label names and functions of a PromQL expression
/// (with Grafana's `$variables` allowed). Fails on what it cannot read: an
/// unknown function, a malformed matcher, an unterminated string.
fn scan(expr: &str) -> Result<Scan, String> {
    let b = expr.as_bytes();
    let mut out = Scan::default();
    let mut i = 0;
    // A `{` right after a metric name belongs to that selector.
    let mut last_metric: Option<usize> = None;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let was_metric = last_metric.take();
        match c {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' | b'`' => i = skip_string(b, i)?,
            b'[' => {
                // Range or subquery: durations (and Grafana's interval variables).
                let close = expr[i..].find(']').ok_or("unclosed [")?;
                i += close + 1;
            }
            b'{' => {
                let Some(sel) = was_metric else {
                    return Err(format!("selector without a metric name at {i}: {expr}"));
                };
                i += 1;
                loop {
                    i = skip_ws(b, i);
                    if i >= b.len() {
                        return Err("unclosed {".to_string());
                    }
                    if b[i] == b'}' {
                        i += 1;
                        break;
                    }
                    if !ident_start(b[i]) {
                        return Err(format!("label name expected at {i}: {expr}"));
                    }
                    let (next, label) = read_ident(b, i);
                    i = skip_ws(b, next);
                    let op = ["=~", "!~", "!=", "="]
                        .into_iter()
                        .find(|op| expr[i..].starts_with(op))
                        .ok_or_else(|| format!("matcher operator expected at {i}: {expr}"))?;
                    i = skip_ws(b, i + op.len());
                    if !matches!(b.get(i), Some(b'"' | b'\'' | b'`')) {
                        return Err(format!("matcher value expected at {i}: {expr}"));
                    }
                    let end = skip_string(b, i)?;
                    let value = expr[i + 1..end - 1].to_string();
                    out.selectors[sel]
                        .matchers
                        .push((label.to_string(), op.to_string(), value));
                    i = skip_ws(b, end);
                    if b.get(i) == Some(&b',') {
                        i += 1;
                    }
                }
            }
            b'$' => {
                // Grafana variable: $name or ${name...}.
                i += 1;
                if b.get(i) == Some(&b'{') {
                    i += expr[i..].find('}').ok_or("unclosed ${")? + 1;
                } else {
                    i = read_ident(b, i).0;
                }
            }
            c if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                // Number or duration: 0.95, 1e3, 0x1f, 5m, 1h30m.
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if ident_start(c) => {
                let (next, word) = read_ident(b, i);
                i = next;
                let lower = word.to_ascii_lowercase();
                let after = skip_ws(b, i);
                let paren = b.get(after) == Some(&b'(');
                if GROUPING.contains(&lower.as_str()) {
                    if paren {
                        let (labels, next) = label_list(expr, after)?;
                        out.grouping.extend(labels);
                        i = next;
                    }
                } else if KEYWORDS.contains(&lower.as_str()) {
                } else if AGGREGATIONS.contains(&word) {
                    // `sum by (labels) (...)`: note the clause (the grouping
                    // branch reads it again next).
                    let (next, kw) = read_ident(b, after);
                    let open = skip_ws(b, next);
                    let by = if kw == "by" && b.get(open) == Some(&b'(') {
                        Some(label_list(expr, open)?.0)
                    } else {
                        None
                    };
                    out.aggregations.push((word.to_string(), by));
                    out.functions.push(word.to_string());
                } else if paren {
                    if !FUNCTIONS.contains(&word) {
                        return Err(format!("unknown function `{word}` in: {expr}"));
                    }
                    out.functions.push(word.to_string());
                } else {
                    out.selectors.push(Selector {
                        name: word.to_string(),
                        matchers: Vec::new(),
                    });
                    last_metric = Some(out.selectors.len() - 1);
                }
            }
            _ => i += 1, // operators, parentheses, commas, `@`
        }
    }
    Ok(out)
}

/// What may be referred to, and where.
struct Known<'a> {
    rendered: &'a Rendered,
    /// Recording rules defined in the rules file (allowed in rules only).
    recorded: &'a BTreeSet<String>,
    /// Whether Prometheus' own `ALERTS` series may be read (rules only).
    alerts: bool,
}

/// Every name an expression uses that the exporter does not render.
fn unknown_names(expr: &str, known: &Known<'_>) -> Vec<String> {
    let scan = match scan(expr) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let label_ok = |l: &str| known.rendered.labels.contains(l) || TARGET_LABELS.contains(&l);
    let mut bad = Vec::new();
    for s in &scan.selectors {
        let is_alerts = known.alerts && s.name == ALERTS;
        if !(known.rendered.names.contains(&s.name)
            || known.recorded.contains(&s.name)
            || is_alerts)
        {
            bad.push(format!("metric `{}`", s.name));
        }
        for (label, _, _) in &s.matchers {
            if !(label_ok(label) || (is_alerts && ALERTS_LABELS.contains(&label.as_str()))) {
                bad.push(format!("label `{label}` on `{}`", s.name));
            }
        }
    }
    for label in &scan.grouping {
        if !label_ok(label) {
            bad.push(format!("label `{label}` in a grouping"));
        }
    }
    bad
}

// ---------------------------------------------------------------------------
// The rules file, read line by line (no YAML crate): items of `rules:` with
// `expr` inline or as a block scalar, `for`, `keep_firing_for`, `labels`
// and `annotations`.
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct RuleItem {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    fields: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    if let Some(s) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        s.replace("''", "'")
    } else if let Some(s) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        s.replace("\\\"", "\"").replace("\\\\", "\\")
    } else {
        v.to_string()
    }
}

fn parse_rules(text: &str) -> Vec<RuleItem> {
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        let (Some(rest), true) = (
            t.strip_prefix("- "),
            t.starts_with("- alert:") || t.starts_with("- record:"),
        ) else {
            i += 1;
            continue;
        };
        // The column of the item's keys (after "- ").
        let col = indent(lines[i]) + 2;
        let mut item = RuleItem::default();
        let mut first = Some(rest);
        loop {
            let line = match first.take() {
                Some(l) => l.to_string(),
                None => {
                    i += 1;
                    let Some(l) = lines.get(i) else { break };
                    let trimmed = l.trim_start();
                    if trimmed.is_empty() || trimmed.starts_with('#') {
                        continue;
                    }
                    if indent(l) < col {
                        break; // the next item, or the next group
                    }
                    assert_eq!(indent(l), col, "unexpected indentation: {l}");
                    trimmed.to_string()
                }
            };
            let (key, value) = line.split_once(':').expect("key: value");
            let value = value.trim();
            match (key, value) {
                ("expr", v) if v.starts_with('|') || v.starts_with('>') => {
                    let mut block = Vec::new();
                    while let Some(l) = lines.get(i + 1) {
                        if !l.trim().is_empty() && indent(l) <= col {
                            break;
                        }
                        block.push(l.trim());
                        i += 1;
                    }
                    item.expr = block.join("\n").trim().to_string();
                }
                ("expr", v) => item.expr = unquote(v),
                ("alert", v) => item.alert = Some(unquote(v)),
                ("record", v) => item.record = Some(unquote(v)),
                ("labels" | "annotations", "") => {
                    let map = if key == "labels" {
                        &mut item.labels
                    } else {
                        &mut item.annotations
                    };
                    while let Some(l) = lines.get(i + 1) {
                        if l.trim().is_empty() || indent(l) <= col {
                            break;
                        }
                        let (k, v) = l.trim().split_once(':').expect("key: value");
                        map.insert(k.trim().to_string(), unquote(v));
                        i += 1;
                    }
                }
                (k, v) => {
                    item.fields.insert(k.to_string(), unquote(v));
                }
            }
        }
        items.push(item);
    }
    items
}

/// A Prometheus duration (`90s`, `5m`, `1h30m`).
fn prom_duration(s: &str) -> Duration {
    let mut total = 0u64;
    let mut n = 0u64;
    for c in s.chars() {
        match c {
            '0'..='9' => n = n * 10 + u64::from(c.to_digit(10).unwrap()),
            's' => (total, n) = (total + n, 0),
            'm' => (total, n) = (total + n * 60, 0),
            'h' => (total, n) = (total + n * 3600, 0),
            'd' => (total, n) = (total + n * 86400, 0),
            _ => panic!("unsupported duration {s}"),
        }
    }
    assert_eq!(n, 0, "duration without a unit: {s}");
    Duration::from_secs(total)
}

// ---------------------------------------------------------------------------
// A small JSON reader for the dashboard (serde_json is not a dependency).
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Json::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn arr(&self, key: &str) -> &[Json] {
        match self.get(key) {
            Some(Json::Arr(a)) => a,
            _ => &[],
        }
    }
}

struct JsonReader<'a> {
    b: &'a [u8],
    i: usize,
}

impl JsonReader<'_> {
    fn parse(text: &str) -> Result<Json, String> {
        let mut r = JsonReader {
            b: text.as_bytes(),
            i: 0,
        };
        let v = r.value()?;
        r.ws();
        if r.i != r.b.len() {
            return Err(format!("trailing characters at {}", r.i));
        }
        Ok(v)
    }

    fn ws(&mut self) {
        self.i = skip_ws(self.b, self.i);
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected `{}` at {}", c as char, self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        let b = self.b;
        let rest = &b[self.i..];
        let literal = |word: &str, v: Json, r: &mut Self| {
            r.i += word.len();
            Ok(v)
        };
        match rest.first() {
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.expect(b':')?;
                    fields.push((key, self.value()?));
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return Err(format!("expected , or }} at {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected , or ] at {}", self.i)),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            _ if rest.starts_with(b"true") => literal("true", Json::Bool(true), self),
            _ if rest.starts_with(b"false") => literal("false", Json::Bool(false), self),
            _ if rest.starts_with(b"null") => literal("null", Json::Null, self),
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self
                    .b
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
                {
                    self.i += 1;
                }
                let s = std::str::from_utf8(&self.b[start..self.i]).expect("ASCII");
                s.parse().map(Json::Num).map_err(|e| format!("{s}: {e}"))
            }
            _ => Err(format!("unexpected input at {}", self.i)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if self.b.get(self.i) != Some(&b'"') {
            return Err(format!("expected a string at {}", self.i));
        }
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while !matches!(self.b.get(self.i), Some(b'"' | b'\\') | None) {
                self.i += 1;
            }
            out.push_str(std::str::from_utf8(&self.b[start..self.i]).map_err(|e| e.to_string())?);
            match self.b.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let esc = *self.b.get(self.i + 1).ok_or("unterminated escape")?;
                    self.i += 2;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'u' => {
                            let hex = std::str::from_utf8(&self.b[self.i..self.i + 4])
                                .map_err(|e| e.to_string())?;
                            let code = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                            out.push(char::from_u32(code).ok_or("surrogate escape")?);
                            self.i += 4;
                        }
                        _ => return Err(format!("bad escape at {}", self.i)),
                    }
                }
                _ => return Err("unterminated string".to_string()),
            }
        }
    }
}

/// Every panel, rows' nested panels (collapsed rows) included.
fn all_panels(dashboard: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for p in dashboard.arr("panels") {
        out.push(p);
        out.extend(p.arr("panels"));
    }
    out
}

/// (panel title, expr) of every query target.
fn dashboard_exprs(dashboard: &Json) -> Vec<(String, String)> {
    all_panels(dashboard)
        .into_iter()
        .flat_map(|p| {
            let title = p.str("title").unwrap_or("?").to_string();
            p.arr("targets")
                .iter()
                .map(move |t| (title.clone(), t.str("expr").unwrap_or("").to_string()))
        })
        .collect()
}

/// The two namings the kit is written for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Naming {
    Plain,
    Suffixed,
}

const NAMINGS: [Naming; 2] = [Naming::Plain, Naming::Suffixed];

/// The kit's files, plain naming; [`suffixed`] for the other.
const KIT_FILES: [&str; 3] = [
    "prometheus/poolguard.rules.yml",
    "prometheus/poolguard.rules.test.yml",
    "grafana/poolguard-dashboard.json",
];

/// `path` (plain) in `naming`.
fn kit_path(path: &str, naming: Naming) -> String {
    match naming {
        Naming::Plain => path.to_owned(),
        Naming::Suffixed => {
            let (dir, file) = path.split_once('/').expect("dir/file");
            format!("{dir}/suffixed/{file}")
        }
    }
}

fn dashboard_of(naming: Naming) -> Json {
    JsonReader::parse(&read(&kit_path(KIT_FILES[2], naming))).expect("dashboard JSON")
}

fn rules_of(naming: Naming) -> Vec<RuleItem> {
    let items = parse_rules(&read(&kit_path(KIT_FILES[0], naming)));
    assert!(items.len() > 20, "rules file read: {} items", items.len());
    items
}

fn dashboard() -> Json {
    dashboard_of(Naming::Plain)
}

fn rules() -> Vec<RuleItem> {
    rules_of(Naming::Plain)
}

/// `label_values(metric, label)` of the pool variable.
fn pool_variable(dashboard: &Json) -> String {
    let vars = dashboard.get("templating").expect("templating").arr("list");
    let pool = vars
        .iter()
        .find(|v| v.str("name") == Some("pool"))
        .expect("a `pool` variable");
    assert_eq!(pool.str("type"), Some("query"));
    match pool.get("query") {
        Some(Json::Str(q)) => q.clone(),
        Some(q) => q.str("query").expect("query.query").to_string(),
        None => panic!("pool variable without a query"),
    }
}

// ---------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------

/// Builds a guard with a Prometheus recorder in `naming` as this thread's
/// recorder (the test runtime has one thread, so the guard's tasks record
/// there too), exercises every path that records, and returns what the
/// exporter renders.
async fn render_real_guard(naming: Naming) -> (String, Rendered) {
    let recorder = PrometheusBuilder::new()
        .set_buckets(poolguard::metrics::LATENCY_BUCKETS)
        .expect("buckets")
        .with_recommended_naming(naming == Naming::Suffixed)
        .build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);

    let opens = poolguard::ConnectCounter::new();
    let pool = opens
        .count(
            SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_millis(50)),
        )
        .connect("sqlite::memory:")
        .await
        .expect("in-memory SQLite");
    let guard = PoolGuard::builder(pool)
        .name("ops-kit")
        .connects(opens)
        .build()
        .expect("guard");
    // Acquire and release; an acquire timeout on the full pool.
    let held = guard.acquire().await.expect("acquire");
    let timeout = guard.acquire().await.expect_err("pool of 1 is full");
    assert!(matches!(timeout, sqlx::Error::PoolTimedOut), "{timeout}");
    drop(held);
    // A query through `&guard` as the executor.
    sqlx::query("SELECT 1")
        .execute(&guard)
        .await
        .expect("query");
    // Requests the application served.
    guard.record_http("GET", "http", 200, Duration::from_millis(120));
    guard.record_http("GET", "http", 504, Duration::from_secs(3));
    // A whole tick: gauges, alert states, forecast, scale hint.
    guard.evaluate_tick_now();

    let text = handle.render();
    let rendered = parse_exposition(&text);
    (text, rendered)
}

/// Plain family name -> suffixed, as the two real renders pair them: each
/// plain family is the suffixed family of the same type that is it plus
/// nothing, `_seconds`, `_total` or both; a histogram's sample names follow.
fn naming_map(plain: &Rendered, suffixed: &Rendered) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (family, kind) in &plain.types {
        let found: Vec<String> = ["", "_seconds", "_total", "_seconds_total"]
            .iter()
            .map(|s| format!("{family}{s}"))
            .filter(|c| suffixed.types.get(c) == Some(kind))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{family} ({kind}) under recommended naming: {found:?}"
        );
        let to = &found[0];
        if to == family {
            continue;
        }
        map.insert(family.clone(), to.clone());
        if kind == "histogram" {
            for s in ["_bucket", "_sum", "_count"] {
                map.insert(format!("{family}{s}"), format!("{to}{s}"));
            }
        }
    }
    map
}

/// `text` with every identifier that is a key of `map` renamed.
fn renamed(text: &str, map: &BTreeMap<String, String>) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 1024);
    let mut i = 0;
    while i < b.len() {
        if ident_start(b[i])
            && b[i] != b':'
            && (i == 0 || !ident_char(b[i - 1]) || b[i - 1] == b':')
        {
            let mut j = i;
            while j < b.len() && ident_char(b[j]) && b[j] != b':' {
                j += 1;
            }
            let word = &text[i..j];
            out.push_str(map.get(word).map_or(word, String::as_str));
            i = j;
        } else {
            let c = text[i..].chars().next().expect("char");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

#[tokio::test]
async fn suffixed_kit_is_the_plain_kit_renamed() {
    let (_, plain) = render_real_guard(Naming::Plain).await;
    let (text, suffixed) = render_real_guard(Naming::Suffixed).await;
    let map = naming_map(&plain, &suffixed);
    // The renames the conventions predict (units and counters).
    for (from, to) in [
        (
            "db_client_connection_timeouts",
            "db_client_connection_timeouts_total",
        ),
        (
            "db_client_connection_wait_time_bucket",
            "db_client_connection_wait_time_seconds_bucket",
        ),
        (
            "http_server_request_duration_count",
            "http_server_request_duration_seconds_count",
        ),
        (
            "poolguard_exhaustion_eta",
            "poolguard_exhaustion_eta_seconds",
        ),
    ] {
        assert_eq!(
            map.get(from).map(String::as_str),
            Some(to),
            "{from}:\n{text}"
        );
    }
    assert!(
        !map.contains_key("db_client_connection_count"),
        "no unit suffix for {{connection}}"
    );
    let bless = std::env::var("POOLGUARD_BLESS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for file in KIT_FILES {
        let mut want = renamed(&read(file), &map);
        if file.ends_with(".yml") {
            want.insert_str(
                0,
                &format!(
                    "# Generated from ../{} for suffixed naming (metrics-exporter-prometheus'\n\
                     # with_recommended_naming, an OpenTelemetry collector's Prometheus exporter):\n\
                     # edit that file, then POOLGUARD_BLESS=1 cargo test --all-features --test ops_kit\n",
                    file.rsplit('/').next().unwrap()
                ),
            );
        }
        let path = ops(&kit_path(file, Naming::Suffixed));
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "not the plain kit renamed: {stale:?}\n\
         regenerate: POOLGUARD_BLESS=1 cargo test --all-features --test ops_kit"
    );
}

#[tokio::test]
async fn rules_and_dashboard_use_only_exported_names() {
    let (text, rendered) = render_real_guard(Naming::Plain).await;

    // The exporter renders what the kit assumes: dots as underscores, no
    // `_total` or unit suffixes, histograms as buckets (not summaries).
    for name in [
        "db_client_connection_count",
        "db_client_connection_limit",
        "db_client_connection_pending_requests",
        "db_client_connection_timeouts",
        "db_client_connection_wait_time_bucket",
        "db_client_connection_use_time_bucket",
        "db_client_operation_duration_bucket",
        "http_server_request_duration_bucket",
        "http_server_request_duration_count",
        "poolguard_alert_state",
        "poolguard_exhaustion_eta",
        "poolguard_breaker_calls",
    ] {
        assert!(
            rendered.names.contains(name),
            "{name} not rendered:\n{text}"
        );
    }
    for label in [
        POOL,
        "db_client_connection_state",
        "http_response_status_code",
        "le",
        "rule",
        "severity",
        "outcome",
        "reason",
    ] {
        assert!(
            rendered.labels.contains(label),
            "label {label} not rendered:\n{text}"
        );
    }
    for (family, kind) in &rendered.types {
        assert_ne!(
            kind, "summary",
            "{family} renders as a summary: buckets not set"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("http_server_request_duration_count{")
                && l.contains(r#"db_client_connection_pool_name="ops-kit""#)
                && l.contains(r#"http_response_status_code="504""#)
                && l.ends_with(" 1")),
        "the 504 is counted under its own code:\n{text}"
    );
    for naming in NAMINGS {
        let rendered = if naming == Naming::Plain {
            rendered.clone()
        } else {
            render_real_guard(naming).await.1
        };
        check_kit_names(naming, &rendered);
    }
}

/// Every name the kit in `naming` uses is one the exporter renders in it.
fn check_kit_names(naming: Naming, rendered: &Rendered) {
    let items = rules_of(naming);
    let recorded: BTreeSet<String> = items.iter().filter_map(|r| r.record.clone()).collect();
    let mut problems = Vec::new();

    let in_rules = Known {
        rendered,
        recorded: &recorded,
        alerts: true,
    };
    for item in &items {
        let what = item.alert.as_ref().or(item.record.as_ref()).unwrap();
        assert!(!item.expr.is_empty(), "{what}: no expr read");
        for bad in unknown_names(&item.expr, &in_rules) {
            problems.push(format!("rules file, {what}: {bad}"));
        }
    }

    let dash = dashboard_of(naming);
    let none = BTreeSet::new();
    let in_dashboard = Known {
        rendered,
        recorded: &none,
        alerts: false,
    };
    let exprs = dashboard_exprs(&dash);
    assert!(exprs.len() > 20, "dashboard queries read: {}", exprs.len());
    for (title, expr) in &exprs {
        for bad in unknown_names(expr, &in_dashboard) {
            problems.push(format!("dashboard, {title}: {bad}"));
        }
    }
    // The pool variable: label_values(metric, label).
    let var = pool_variable(&dash);
    let args = var
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .expect("label_values(...)");
    let (metric, label) = args.split_once(',').expect("metric, label");
    if !rendered.names.contains(metric.trim()) {
        problems.push(format!("pool variable: metric `{}`", metric.trim()));
    }
    if label.trim() != POOL {
        problems.push(format!("pool variable: label `{}`", label.trim()));
    }

    // Every exported family is on the dashboard (but the per-instance
    // ratios): a new metric needs a panel, or a line in NOT_ON_DASHBOARD.
    let used: BTreeSet<String> = exprs
        .iter()
        .flat_map(|(_, e)| scan(e).map(|s| s.selectors).unwrap_or_default())
        .map(|s| s.name)
        .collect();
    for family in rendered.types.keys() {
        let on_dashboard = ["", "_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| used.contains(&format!("{family}{suffix}")));
        if !on_dashboard && !NOT_ON_DASHBOARD.contains(&family.as_str()) {
            problems.push(format!("dashboard: no panel shows `{family}`"));
        }
    }

    assert!(
        problems.is_empty(),
        "{naming:?} naming: names the exporter does not render (or gaps):\n  {}\nrendered names: {:?}\nrendered labels: {:?}",
        problems.join("\n  "),
        rendered.names,
        rendered.labels
    );
}

/// The operands compared as `<operand> <sym> <value>` in an expression,
/// with the number matched whole (`> 0.7` is not `> 0.75`). An operand that
/// is not a name (`(...) > 1`) reads as its last character.
fn compared(expr: &str, sym: &str, value: f64) -> Vec<String> {
    let needle = format!("{sym} {value}");
    let b = expr.as_bytes();
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    expr.match_indices(&needle)
        .filter(|(at, _)| {
            !b.get(at + needle.len())
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.')
        })
        .map(|(at, _)| {
            let before = expr[..at].trim_end();
            let name = before.trim_end_matches(name_char);
            if name.len() < before.len() {
                before[name.len()..].to_string()
            } else {
                before.chars().last().map(String::from).unwrap_or_default()
            }
        })
        .collect()
}

fn symbol(c: Comparison) -> &'static str {
    match c {
        Comparison::Above => ">",
        Comparison::AtOrAbove => ">=",
        Comparison::Below => "<",
        Comparison::AtOrBelow => "<=",
        _ => panic!("comparison {c:?} has no Prometheus mirror yet"),
    }
}

/// Every in-process rule has exactly one Prometheus alert with its `rule`
/// and `severity` labels, the same hold (`for`), keep-firing time,
/// threshold, recovery threshold (hysteresis on ALERTS) and min-sample gate;
/// and every alert mirrors an in-process rule.
#[test]
fn alerts_mirror_the_in_process_rules() {
    let items = rules();
    let alerts: Vec<&RuleItem> = items.iter().filter(|r| r.alert.is_some()).collect();
    let mut in_process: Vec<Rule> = SaturationPolicy::default().rules().to_vec();
    in_process.extend(poolguard::rules::default_rules());
    in_process.extend(poolguard::rules::server_rules());

    let mut mirrored = BTreeSet::new();
    for rule in &in_process {
        let key = rule.key();
        let found: Vec<_> = alerts
            .iter()
            .filter(|a| {
                a.labels.get("rule").map(String::as_str) == Some(&*rule.name)
                    && a.labels.get("severity").map(String::as_str) == Some(rule.severity.as_str())
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{key}: one Prometheus alert, found {found:?}"
        );
        let a = found[0];
        let name = a.alert.as_deref().unwrap();
        mirrored.insert((name.to_string(), rule.severity.as_str()));
        let hold = a
            .fields
            .get("for")
            .map_or(Duration::ZERO, |d| prom_duration(d));
        assert_eq!(hold, rule.hold, "{key}: for");
        let keep = a
            .fields
            .get("keep_firing_for")
            .map_or(Duration::ZERO, |d| prom_duration(d));
        assert_eq!(keep, rule.keep_firing_for, "{key}: keep_firing_for");
        let sym = symbol(rule.comparison);
        let on_threshold = compared(&a.expr, sym, rule.threshold);
        assert!(
            !on_threshold.is_empty(),
            "{key}: `{sym} {}` in {}",
            rule.threshold,
            a.expr
        );
        let own = format!(
            r#"ALERTS{{alertname="{name}", severity="{}", alertstate="firing"}}"#,
            rule.severity
        );
        let on_recover = compared(&a.expr, sym, rule.recover_at);
        if rule.recover_at != rule.threshold {
            assert!(
                !on_recover.is_empty(),
                "{key}: `{sym} {}` in {}",
                rule.recover_at,
                a.expr
            );
            assert!(a.expr.contains(&own), "{key}: hysteresis on `{own}`");
        }
        // Holds on the pool's instantaneous signals are judged in-process on
        // the signal's mean since the hold began, over at most the rule's
        // window, and recovery per tick: here the threshold is compared with
        // a recorded `avg_over_time(<series>[<window>])`, the recovery
        // threshold with <series> itself, and the mean is off while the
        // alert fires (`unless on (pool) ALERTS{...firing}`).
        if matches!(
            rule.signal,
            Signal::Utilization | Signal::Demand | Signal::Waiters
        ) {
            let [mean] = on_threshold.as_slice() else {
                panic!("{key}: one operand of the threshold, found {on_threshold:?}");
            };
            let record = items
                .iter()
                .find(|r| r.record.as_deref() == Some(mean.as_str()))
                .unwrap_or_else(|| panic!("{key}: `{mean}` is no recording rule"));
            let (series, window) = record
                .expr
                .strip_prefix("avg_over_time(")
                .and_then(|e| e.strip_suffix("])"))
                .and_then(|e| e.split_once('['))
                .unwrap_or_else(|| {
                    panic!(
                        "{key}: `{mean}` is no avg_over_time(<series>[<window>]): {}",
                        record.expr
                    )
                });
            assert_eq!(
                prom_duration(window),
                rule.window,
                "{key}: window of `{mean}`"
            );
            assert_eq!(
                on_recover,
                [series],
                "{key}: recovery judged on `{series}` itself"
            );
            let flat = a.expr.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                flat.contains(&format!("unless on ({POOL}) {own}")),
                "{key}: the mean is off while the alert fires"
            );
        }
        if rule.min_samples > 0 && rule.signal != Signal::TrafficAnomaly {
            let gate = format!(">= {}", rule.min_samples);
            assert!(a.expr.contains(&gate), "{key}: min-sample gate `{gate}`");
        }
        assert!(
            !a.annotations.get("summary").is_none_or(String::is_empty)
                && !a
                    .annotations
                    .get("description")
                    .is_none_or(String::is_empty),
            "{key}: summary and description"
        );
    }
    for a in &alerts {
        let sev = a.labels.get("severity").expect("severity label");
        assert!(
            ["info", "warning", "critical"].contains(&sev.as_str()),
            "{sev}"
        );
        let name = a.alert.clone().unwrap();
        assert!(
            mirrored.contains(&(name.clone(), sev.as_str())),
            "{name}/{sev} mirrors no in-process rule"
        );
    }
    assert_eq!(alerts.len(), in_process.len());
}

/// The request metrics the kit names exist: every status code a rule, panel
/// or promtool test matches exactly is one the guard exports under its own
/// value (an integer code in 100..=599, never a class like `4xx`),
/// and every latency bound (the latency alerts' thresholds, the promtool
/// tests' `le`, the latency panels' lines) is a bucket bound of
/// `poolguard::metrics::LATENCY_BUCKETS`, so it is decided at a bucket edge.
#[test]
fn status_codes_and_latency_bounds_are_exported() {
    use poolguard::metrics::LATENCY_BUCKETS;
    // The integer code, never a class (`5xx`), as the conventions require.
    let code_ok = |v: &str| v.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c));
    let bound_ok = |v: f64| LATENCY_BUCKETS.contains(&v);
    let dash = dashboard();

    let mut exprs: Vec<(String, String)> = rules()
        .into_iter()
        .map(|r| (r.alert.or(r.record).unwrap(), r.expr))
        .collect();
    exprs.extend(dashboard_exprs(&dash));
    let tests = read("prometheus/poolguard.rules.test.yml");
    exprs.extend(tests.lines().filter_map(|l| {
        let series = l.trim().strip_prefix("- series:")?;
        Some(("rules test".to_string(), unquote(series)))
    }));
    assert!(
        exprs.iter().any(|(w, _)| w == "rules test"),
        "test series read"
    );
    let mut problems = Vec::new();
    for (what, expr) in &exprs {
        for sel in scan(expr).unwrap().selectors {
            for (label, op, value) in &sel.matchers {
                let exact = op == "=" || op == "!=";
                if label == "http_response_status_code" && exact && !code_ok(value) {
                    problems.push(format!("{what}: status code {value} is not exported"));
                }
                if label == "le" && exact && value != "+Inf" && !value.parse().is_ok_and(bound_ok) {
                    problems.push(format!("{what}: le=\"{value}\" is no bucket bound"));
                }
            }
        }
    }
    // The recovery lines (480 / 320 ms) fall inside buckets by design.
    for rule in poolguard::rules::default_rules() {
        let latency = matches!(
            rule.signal,
            Signal::RequestLatency(_) | Signal::QueryLatency(_)
        );
        if latency && !bound_ok(rule.threshold) {
            problems.push(format!(
                "{}: threshold {} s is no bucket bound",
                rule.key(),
                rule.threshold
            ));
        }
    }
    for p in all_panels(&dash) {
        let quantiles = p.arr("targets").iter().any(|t| {
            t.str("expr")
                .is_some_and(|e| e.contains("histogram_quantile("))
        });
        let steps = p
            .get("fieldConfig")
            .and_then(|f| f.get("defaults"))
            .and_then(|d| d.get("thresholds"))
            .map_or(&[][..], |t| t.arr("steps"));
        for step in steps.iter().filter(|_| quantiles) {
            if let Some(Json::Num(v)) = step.get("value") {
                if !bound_ok(*v) {
                    problems.push(format!(
                        "panel {}: line at {v} s is no bucket bound",
                        p.str("title").unwrap_or("?")
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every aggregation is `<op> by (..., pool, ...)`, and what reads exported
/// series aggregates.
fn check_aggregation(what: &str, s: &Scan, instance_ok: bool) {
    for (op, by) in &s.aggregations {
        let labels = by
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: `{op}` without `by ({POOL})` before its operand"));
        assert!(
            labels.iter().any(|l| l == POOL),
            "{what}: `{op} by ({})` drops the pool",
            labels.join(", ")
        );
        assert!(
            instance_ok || !labels.iter().any(|l| TARGET_LABELS.contains(&l.as_str())),
            "{what}: `{op}` keeps a per-instance label"
        );
    }
    let raw = s
        .selectors
        .iter()
        .any(|sel| sel.name != ALERTS && !sel.name.contains(':'));
    assert!(
        !raw || !s.aggregations.is_empty(),
        "{what}: exported series read without aggregating"
    );
}

/// Every rule and every panel aggregates by pool; every panel query keeps
/// to the selected pools; the dashboard has the post-mortem's rows, a
/// Prometheus datasource variable and the pool variable.
#[test]
fn everything_aggregates_by_pool_and_the_dashboard_has_its_rows() {
    for item in rules() {
        let what = item.alert.or(item.record).unwrap();
        check_aggregation(&what, &scan(&item.expr).unwrap(), false);
    }

    let dash = dashboard();
    assert_eq!(dash.get("schemaVersion"), Some(&Json::Num(39.0)));
    let rows: Vec<&str> = dash
        .arr("panels")
        .iter()
        .filter(|p| p.str("type") == Some("row"))
        .filter_map(|p| p.str("title"))
        .collect();
    assert_eq!(
        rows,
        ["Request metrics", "Latency distribution", "Database health"]
    );
    let vars = dash.get("templating").unwrap().arr("list");
    let ds = vars
        .iter()
        .find(|v| v.str("name") == Some("datasource"))
        .expect("a `datasource` variable");
    assert_eq!(
        (ds.str("type"), ds.str("query")),
        (Some("datasource"), Some("prometheus"))
    );
    assert_eq!(
        pool_variable(&dash),
        format!("label_values(db_client_connection_limit, {POOL})")
    );

    let mut ids = BTreeSet::new();
    for p in all_panels(&dash) {
        let title = p.str("title").unwrap_or("?");
        let id = match p.get("id") {
            Some(Json::Num(n)) => *n as i64,
            _ => panic!("{title}: no id"),
        };
        assert!(ids.insert(id), "{title}: duplicate id {id}");
        if p.str("type") == Some("row") {
            continue;
        }
        assert_eq!(
            p.get("datasource").and_then(|d| d.str("uid")),
            Some("${datasource}"),
            "{title}: datasource"
        );
        let targets = p.arr("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(
                t.get("datasource").and_then(|d| d.str("uid")),
                Some("${datasource}"),
                "{title}: target datasource"
            );
            let expr = t.str("expr").unwrap();
            let s = scan(expr).unwrap();
            // Per-instance panels (the breaker state) may keep `instance`.
            check_aggregation(title, &s, true);
            for sel in &s.selectors {
                assert!(
                    sel.matchers.contains(&(
                        POOL.to_string(),
                        "=~".to_string(),
                        "$pool".to_string()
                    )),
                    "{title}: `{}` is not filtered by the pool variable",
                    sel.name
                );
            }
        }
    }
}

/// Every dashboard query is valid PromQL (Grafana's variables substituted),
/// as promtool parses it. Needs promtool (Debian package `prometheus`,
/// installed by `.ci/run`): required in CI, a loud skip elsewhere.
#[test]
fn dashboard_queries_parse_with_promtool() {
    let dash = dashboard();
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in dashboard_exprs(&dash).iter().enumerate() {
        let expr = expr.replace("$__rate_interval", "1m");
        yaml.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: |\n"
        ));
        for line in expr.lines() {
            yaml.push_str(&format!("          {line}\n"));
        }
    }
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ops_kit_dashboard_queries.yml");
    std::fs::write(&path, yaml).unwrap();
    match std::process::Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&path)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check rules {}:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "promtool is required in CI (CI=true): {e}");
            use std::io::Write;
            let _ = write!(
                std::io::stderr(),
                "\n==================== SKIPPED ====================\n\
                 promtool not found ({e}): dashboard queries not parsed.\n\
                 apt-get install prometheus, or run .ci/run\n\
                 =================================================\n"
            );
        }
    }
}

/// The checks can fail: wrong names, labels and functions are found, string
/// contents, durations and Grafana variables are not taken for names.
#[test]
fn the_name_check_finds_what_is_wrong() {
    let rendered = parse_exposition(concat!(
        "# TYPE db_client_connection_limit gauge\n",
        "db_client_connection_limit{db_client_connection_pool_name=\"a \\\"b\\\"\"} 10\n",
        "# TYPE db_client_connection_wait_time histogram\n",
        "db_client_connection_wait_time_bucket{db_client_connection_pool_name=\"a\",le=\"0.1\"} 1\n",
        "db_client_connection_wait_time_count{db_client_connection_pool_name=\"a\"} 1\n",
    ));
    assert_eq!(
        rendered.names,
        BTreeSet::from([
            "db_client_connection_limit".to_string(),
            "db_client_connection_wait_time_bucket".to_string(),
            "db_client_connection_wait_time_count".to_string(),
        ])
    );
    assert_eq!(
        rendered.labels,
        BTreeSet::from([POOL.to_string(), "le".to_string()])
    );
    let recorded = BTreeSet::from(["poolguard:x:ratio".to_string()]);
    let known = Known {
        rendered: &rendered,
        recorded: &recorded,
        alerts: false,
    };

    // Good: nothing reported.
    let good = r#"
        # a comment naming not_a_metric
        histogram_quantile(0.95, sum by (db_client_connection_pool_name, le) (
          rate(db_client_connection_wait_time_bucket{db_client_connection_pool_name=~"$pool"}[$__rate_interval])
        )) > 0.4
        and on (db_client_connection_pool_name)
        sum by (db_client_connection_pool_name) (db_client_connection_limit offset 5m) >= 1e3
        or label_replace(poolguard:x:ratio, "dst_label", "$1", "src_label", "(.*)") * 1.5
        / ignoring (instance) group_left db_client_connection_wait_time_count
    "#;
    assert_eq!(unknown_names(good, &known), Vec::<String>::new());

    // Wrong metric names (the OTel dotted name, a made-up one, a `_total`).
    let wrong = unknown_names(
        "sum by (db_client_connection_pool_name) (db_client_connection_in_use) \
         + sum(db_client_connection_timeouts_total)",
        &known,
    );
    assert_eq!(
        wrong,
        [
            "metric `db_client_connection_in_use`",
            "metric `db_client_connection_timeouts_total`"
        ]
    );
    assert!(!unknown_names("rate(db.client.connection.wait_time_bucket[1m])", &known).is_empty());
    // Wrong labels: in a matcher and in a grouping.
    assert_eq!(
        unknown_names(
            r#"sum by (pool) (db_client_connection_limit{state="used"})"#,
            &known
        ),
        [
            "label `state` on `db_client_connection_limit`",
            "label `pool` in a grouping"
        ]
    );
    // A recording rule is allowed only where it is defined; ALERTS only in rules.
    let nothing = BTreeSet::new();
    let dashboard_known = Known {
        rendered: &rendered,
        recorded: &nothing,
        alerts: false,
    };
    assert_eq!(
        unknown_names("poolguard:x:ratio > 1", &dashboard_known),
        ["metric `poolguard:x:ratio`"]
    );
    assert_eq!(
        unknown_names(r#"ALERTS{alertname="X"}"#, &dashboard_known),
        ["metric `ALERTS`", "label `alertname` on `ALERTS`"]
    );
    // Aggregations and their `by` clauses.
    let s = scan("sum by (a, b) (x) / sum(y) + max without (c) (z) or count(w) by (d)").unwrap();
    assert_eq!(
        s.aggregations,
        [
            (
                "sum".to_string(),
                Some(vec!["a".to_string(), "b".to_string()])
            ),
            ("sum".to_string(), None),
            ("max".to_string(), None),
            ("count".to_string(), None),
        ]
    );
    assert_eq!(s.grouping, ["a", "b", "c", "d"]);
    // An unknown function, a malformed matcher.
    assert!(
        unknown_names("rat(db_client_connection_limit[5m])", &known)[0]
            .starts_with("unknown function `rat`")
    );
    assert!(!unknown_names("db_client_connection_limit{le}", &known).is_empty());

    // Compared operands: the number matched whole, `>=` not taken for `>`.
    assert_eq!(
        compared("a:b > 0.75 or c > 0.7 and d >= 0.7 or e > 0.7e1", ">", 0.7),
        ["c"]
    );
    assert_eq!(compared("min by (p) (x) < 900", "<", 900.0), [")"]);

    // The rules reader: block scalars, inline and quoted values, nested maps.
    let items = parse_rules(concat!(
        "groups:\n",
        "  - name: g\n",
        "    rules:\n",
        "      - record: a:b:c\n",
        "        expr: sum by (x) (m)\n",
        "      # a comment\n",
        "      - alert: A\n",
        "        expr: |\n",
        "          a:b:c\n",
        "\n",
        "            > 1\n",
        "        for: 1h30m\n",
        "        labels:\n",
        "          severity: warning\n",
        "        annotations:\n",
        "          summary: 'it''s {{ $value }}'\n",
        "  - name: h\n",
        "    rules:\n",
        "      - alert: B\n",
        "        expr: \"up == 0\"\n",
    ));
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].record.as_deref(), Some("a:b:c"));
    assert_eq!(items[0].expr, "sum by (x) (m)");
    assert_eq!(items[1].expr, "a:b:c\n\n> 1");
    assert_eq!(
        prom_duration(&items[1].fields["for"]),
        Duration::from_secs(5400)
    );
    assert_eq!(items[1].labels["severity"], "warning");
    assert_eq!(items[1].annotations["summary"], "it's {{ $value }}");
    assert_eq!(items[2].expr, "up == 0");

    // The JSON reader.
    let j = JsonReader::parse(r#"{"a": [1, -2.5e1, true, null, {"b": "x\"\u00e9\n"}], "c": {}}"#)
        .unwrap();
    assert_eq!(
        j.arr("a")[4].str("b"),
        Some("x\"\u{e9}\n"),
        "escapes decoded"
    );
    assert_eq!(j.arr("a")[1], Json::Num(-25.0));
    assert!(JsonReader::parse(r#"{"a": 1,}"#).is_err());
    assert!(JsonReader::parse(r#"{"a": 1} x"#).is_err());
}
