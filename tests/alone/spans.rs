//! The guard's `tracing` spans as a subscriber sees them: one per acquire
//! (pool, `db.system.name`, outcome, wait) and one per query (kind client,
//! the OpenTelemetry database attributes, the statement's summary as its
//! name, `error.type` and `db.response.status_code` on failure), both
//! children of the span the application was in, so a trace shows where a
//! request waited for the pool.
//!
//! The capturing subscriber is this thread's default, on a current-thread
//! runtime, so tests running beside it on other threads are not captured.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poolguard::PoolGuard;
use sqlx::sqlite::SqlitePoolOptions;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Instrument, Metadata, Subscriber};

#[derive(Debug, Default, Clone)]
struct Span {
    name: String,
    target: String,
    parent: Option<u64>,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct State {
    spans: Vec<Span>,
    stack: Vec<u64>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<State>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut st = self.0.lock().unwrap();
        let parent = match attrs.parent() {
            Some(p) => Some(p.into_u64()),
            None if attrs.is_contextual() => st.stack.last().copied(),
            None => None,
        };
        let mut span = Span {
            name: attrs.metadata().name().to_owned(),
            target: attrs.metadata().target().to_owned(),
            parent,
            fields: BTreeMap::new(),
        };
        attrs.record(&mut Fields(&mut span.fields));
        st.spans.push(span);
        Id::from_u64(st.spans.len() as u64)
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut st = self.0.lock().unwrap();
        let span = &mut st.spans[id.into_u64() as usize - 1];
        values.record(&mut Fields(&mut span.fields));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, id: &Id) {
        self.0.lock().unwrap().stack.push(id.into_u64());
    }
    fn exit(&self, _: &Id) {
        self.0.lock().unwrap().stack.pop();
    }
}

impl Capture {
    fn spans(&self) -> Vec<Span> {
        self.0.lock().unwrap().spans.clone()
    }
}

fn field<'a>(s: &'a Span, k: &str) -> &'a str {
    s.fields
        .get(k)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{} has no {k}: {:?}", s.name, s.fields))
}

#[tokio::test(flavor = "current_thread")]
async fn acquires_and_queries_are_spans_under_the_callers() {
    let _alone = crate::alone().await;
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.clone());
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(100))
        .connect("sqlite::memory:")
        .await
        .expect("SQLite");
    let guard = PoolGuard::builder(pool)
        .name("traced")
        .build()
        .expect("guard");

    let request = tracing::info_span!("request");
    let request_id = request.id().expect("enabled").into_u64();
    async {
        // A query through `&guard`: an acquire, then the query.
        sqlx::query("SELECT 1 + 41")
            .execute(&guard)
            .await
            .expect("query");
        // A failing one.
        sqlx::query("SELECT x FROM nowhere")
            .execute(&guard)
            .await
            .unwrap_err();
        // An acquire that times out.
        let held = guard.acquire().await.expect("acquire");
        guard.acquire().await.expect_err("full");
        drop(held);
    }
    .instrument(request)
    .await;

    let spans = capture.spans();
    let ours: Vec<&Span> = spans.iter().filter(|s| s.target == "poolguard").collect();
    let acquires: Vec<&Span> = ours
        .iter()
        .copied()
        .filter(|s| s.name == "acquire")
        .collect();
    let queries: Vec<&Span> = ours.iter().copied().filter(|s| s.name == "query").collect();
    assert_eq!(acquires.len(), 4, "{ours:#?}");
    assert_eq!(queries.len(), 2, "{ours:#?}");
    for s in ours.iter() {
        assert_eq!(
            s.parent,
            Some(request_id),
            "{} is a child of the request: {s:?}",
            s.name
        );
        assert_eq!(field(s, "db.client.connection.pool.name"), "traced");
        assert_eq!(field(s, "db.system.name"), "sqlite");
    }
    let outcomes: Vec<&str> = acquires.iter().map(|s| field(s, "outcome")).collect();
    assert_eq!(outcomes, ["acquired", "acquired", "acquired", "timeout"]);
    let waited: f64 = field(acquires[3], "db.client.connection.wait_time")
        .parse()
        .expect("seconds");
    assert!(
        waited >= 0.1,
        "the timed-out acquire waited its 100 ms: {waited}"
    );
    assert_eq!(field(acquires[3], "otel.status_code"), "error");

    let ok = queries[0];
    assert_eq!(field(ok, "otel.kind"), "client");
    assert_eq!(field(ok, "db.query.summary"), "SELECT ? + ?");
    assert_eq!(field(ok, "otel.name"), "SELECT ? + ?");
    assert!(field(ok, "db.namespace").starts_with("file:"), "{ok:?}");
    assert!(!ok.fields.contains_key("error.type"), "{ok:?}");
    let failed = queries[1];
    assert_eq!(field(failed, "error.type"), "1");
    assert_eq!(field(failed, "db.response.status_code"), "1");
    assert_eq!(field(failed, "otel.status_code"), "error");
}
