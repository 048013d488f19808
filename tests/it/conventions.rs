//! The exported metrics against the OpenTelemetry semantic conventions:
//! a real guard rendered through `metrics-exporter-prometheus`, with plain
//! and with recommended (suffixed) naming, checked for each instrument's
//! name, type, unit and required attributes as the table below (taken from
//! the conventions' `model/db/metrics.yaml`, `model/http/metrics.yaml` and
//! the `db.client.connection.max` -> `limit` rename of 2026-09-03) has
//! them. The names under recommended naming are derived from the
//! conventions' name and unit by the OpenTelemetry-to-Prometheus rules
//! (dots to underscores, `s` -> `_seconds`, curly-brace units dropped,
//! `_total` on counters), not written out by hand.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use poolguard::{ConnectCounter, PoolGuard};
use sqlx::sqlite::SqlitePoolOptions;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// An UpDownCounter or gauge: a Prometheus gauge.
    Gauge,
    Counter,
    Histogram,
}

/// One instrument of the conventions: name, instrument, unit, required
/// attributes.
struct Instrument {
    name: &'static str,
    kind: Kind,
    unit: &'static str,
    required: &'static [&'static str],
}

const POOL: &str = "db.client.connection.pool.name";

const TABLE: &[Instrument] = &[
    Instrument {
        name: "db.client.connection.count",
        kind: Kind::Gauge,
        unit: "{connection}",
        required: &[POOL, "db.client.connection.state"],
    },
    Instrument {
        name: "db.client.connection.limit",
        kind: Kind::Gauge,
        unit: "{connection}",
        required: &[POOL],
    },
    Instrument {
        name: "db.client.connection.idle.max",
        kind: Kind::Gauge,
        unit: "{connection}",
        required: &[POOL],
    },
    Instrument {
        name: "db.client.connection.idle.min",
        kind: Kind::Gauge,
        unit: "{connection}",
        required: &[POOL],
    },
    Instrument {
        name: "db.client.connection.pending_requests",
        kind: Kind::Gauge,
        unit: "{request}",
        required: &[POOL],
    },
    Instrument {
        name: "db.client.connection.timeouts",
        kind: Kind::Counter,
        unit: "{timeout}",
        required: &[POOL],
    },
    Instrument {
        name: "db.client.connection.create_time",
        kind: Kind::Histogram,
        unit: "s",
        required: &[POOL],
    },
    Instrument {
        name: "db.client.connection.wait_time",
        kind: Kind::Histogram,
        unit: "s",
        required: &[POOL],
    },
    Instrument {
        name: "db.client.connection.use_time",
        kind: Kind::Histogram,
        unit: "s",
        required: &[POOL],
    },
    Instrument {
        name: "db.client.operation.duration",
        kind: Kind::Histogram,
        unit: "s",
        required: &["db.system.name"],
    },
    Instrument {
        name: "http.server.request.duration",
        kind: Kind::Histogram,
        unit: "s",
        required: &["http.request.method", "url.scheme"],
    },
];

/// The OpenTelemetry-to-Prometheus name of an instrument.
fn prometheus_name(i: &Instrument, suffixed: bool) -> String {
    let mut name = i.name.replace('.', "_");
    if suffixed {
        match i.unit {
            "s" => name.push_str("_seconds"),
            u if u.starts_with('{') || u == "1" => {}
            u => panic!("no Prometheus suffix rule for unit {u}"),
        }
        if i.kind == Kind::Counter {
            name.push_str("_total");
        }
    }
    name
}

fn label(attribute: &str) -> String {
    attribute.replace('.', "_")
}

/// A rendered exposition: the family types, and each sample's name and
/// labels.
struct Rendered {
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>)>,
}

fn parse(text: &str) -> Rendered {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').expect("TYPE line");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, _value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        // Label values here hold no `",` sequences.
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").expect("label pair");
            map.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
        }
        samples.push((name.to_owned(), map));
    }
    Rendered { types, samples }
}

/// Builds a real guard with `recorder` as this thread's recorder (the test
/// runs on a current-thread runtime, so the guard's tasks record there
/// too), exercises every path that records, and renders.
async fn render(recorder: PrometheusRecorder, deprecated_max: bool) -> (String, String) {
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let opens = ConnectCounter::new();
    let pool = opens
        .count(
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .acquire_timeout(Duration::from_millis(50)),
        )
        .connect_lazy("sqlite::memory:")
        .expect("in-memory SQLite");
    let guard = PoolGuard::builder(pool)
        .connects(opens.clone())
        .deprecated_connection_max(deprecated_max)
        .build()
        .expect("guard");
    // The first acquire opens the connection (create_time), a second one
    // times out on the full pool.
    let held = guard.acquire().await.expect("acquire");
    assert_eq!(opens.total(), 1);
    guard.acquire().await.expect_err("pool of 1 is full");
    drop(held);
    common::settle_pool(guard.pool()).await;
    sqlx::query("SELECT 1")
        .execute(&guard)
        .await
        .expect("query");
    sqlx::query("SELEC 1")
        .execute(&guard)
        .await
        .expect_err("syntax");
    guard.record_http("GET", "https", 200, Duration::from_millis(20));
    guard.record_http("POST", "http", 503, Duration::from_millis(20));
    guard.evaluate_now();
    (handle.render(), guard.name().to_owned())
}

fn check(text: &str, suffixed: bool, pool: &str) {
    let r = parse(text);
    for i in TABLE {
        let family = prometheus_name(i, suffixed);
        let want_type = match i.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        };
        assert_eq!(
            r.types.get(&family).map(String::as_str),
            Some(want_type),
            "{} rendered as `{family}` ({want_type}); families: {:?}",
            i.name,
            r.types.keys().collect::<Vec<_>>()
        );
        let sample_name = match i.kind {
            Kind::Histogram => format!("{family}_bucket"),
            _ => family.clone(),
        };
        let samples: Vec<_> = r
            .samples
            .iter()
            .filter(|(n, _)| *n == sample_name)
            .collect();
        assert!(!samples.is_empty(), "{sample_name}: no samples");
        for (_, labels) in &samples {
            for a in i.required {
                assert!(
                    labels.contains_key(&label(a)),
                    "{sample_name}: no `{a}` in {labels:?}"
                );
            }
            assert_eq!(
                labels.get(&label(POOL)).map(String::as_str),
                Some(pool),
                "{sample_name}: every instrument names its pool"
            );
        }
        // The unit is in the name under recommended naming only.
        if i.unit == "s" {
            assert_eq!(family.ends_with("_seconds"), suffixed, "{family}");
        }
    }
    let status = label("http.response.status_code");
    let requests = prometheus_name(&TABLE[10], suffixed) + "_bucket";
    let codes: Vec<&str> = r
        .samples
        .iter()
        .filter(|(n, _)| *n == requests)
        .filter_map(|(_, l)| l.get(&status).map(String::as_str))
        .collect();
    assert!(
        codes.contains(&"200") && codes.contains(&"503"),
        "{codes:?}"
    );
    assert!(
        codes.iter().all(|c| c.parse::<u16>().is_ok()),
        "status codes are integers, never classes: {codes:?}"
    );
    // A 5xx carries its code as error.type; a failed query its error.
    let has = |name: &str, k: &str, v: &str| {
        r.samples
            .iter()
            .any(|(n, l)| n == name && l.get(&label(k)).map(String::as_str) == Some(v))
    };
    assert!(has(&requests, "error.type", "503"));
    assert!(has(&requests, "http.request.method", "POST"));
    let ops = prometheus_name(&TABLE[9], suffixed) + "_bucket";
    assert!(
        has(&ops, "error.type", "1"),
        "SQLite syntax error: result code 1"
    );
    assert!(has(&ops, "db.response.status_code", "1"));
    assert!(has(&ops, "db.system.name", "sqlite"));
    assert!(
        has(&ops, "db.namespace", pool),
        "SQLite's namespace is its file name"
    );
}

/// Histograms as histograms (without buckets the exporter renders
/// summaries): the guard's bounds, and the conventions' advisory ones for
/// the operation duration.
fn buckets(b: PrometheusBuilder) -> PrometheusBuilder {
    use metrics_exporter_prometheus::Matcher;
    use poolguard::metrics::{LATENCY_BUCKETS, OPERATION_DURATION_BUCKETS};
    b.set_buckets(LATENCY_BUCKETS)
        .expect("buckets")
        .set_buckets_for_metric(
            Matcher::Prefix("db_client_operation_duration".into()),
            OPERATION_DURATION_BUCKETS,
        )
        .expect("operation buckets")
}

#[tokio::test(flavor = "current_thread")]
async fn plain_naming_matches_the_conventions() {
    let recorder = buckets(PrometheusBuilder::new()).build_recorder();
    let (text, pool) = render(recorder, false).await;
    check(&text, false, &pool);
    // The old name only on request.
    assert!(!text.contains("db_client_connection_max"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn recommended_naming_matches_the_conventions() {
    let recorder = buckets(PrometheusBuilder::new())
        .with_recommended_naming(true)
        .build_recorder();
    let (text, pool) = render(recorder, false).await;
    check(&text, true, &pool);
}

#[tokio::test(flavor = "current_thread")]
async fn the_deprecated_max_is_emitted_beside_limit_on_request() {
    let recorder = buckets(PrometheusBuilder::new()).build_recorder();
    let (text, pool) = render(recorder, true).await;
    check(&text, false, &pool);
    let limit = text
        .lines()
        .find(|l| l.starts_with("db_client_connection_limit{"))
        .expect("limit");
    let max = text
        .lines()
        .find(|l| l.starts_with("db_client_connection_max{"))
        .expect("max on request");
    assert_eq!(limit.rsplit_once(' ').unwrap().1, "1");
    assert_eq!(max.rsplit_once(' ').unwrap().1, "1");
    assert!(
        text.contains("# HELP db_client_connection_max Deprecated"),
        "{text}"
    );
}

/// `server.address:server.port/db.namespace`, as the conventions advise.
fn server_name(host: &str, port: u16, database: Option<&str>) -> String {
    format!("{host}:{port}/{}", database.unwrap_or_default())
}

#[tokio::test(flavor = "current_thread")]
async fn unnamed_pools_are_named_as_the_conventions_advise() {
    let pg = common::postgres(2, Duration::from_secs(5)).await;
    if let Some(pg) = pg {
        let url = common::pg_url();
        let guard = PoolGuard::builder(pg).build().expect("guard");
        // `server.address:server.port/db.namespace` from the connect options.
        let o: sqlx::postgres::PgConnectOptions = url.parse().expect("url");
        assert_eq!(
            guard.name(),
            server_name(o.get_host(), o.get_port(), o.get_database())
        );
        assert!(
            !guard.name().contains('@'),
            "no user or password in the name"
        );
    }
    let my = common::mysql(2, Duration::from_secs(5)).await;
    if let Some(my) = my {
        let guard = PoolGuard::builder(my).build().expect("guard");
        let o: sqlx::mysql::MySqlConnectOptions = common::mysql_url().parse().expect("url");
        assert_eq!(
            guard.name(),
            server_name(o.get_host(), o.get_port(), o.get_database())
        );
    }
    let sqlite = SqlitePoolOptions::new()
        .connect_lazy("sqlite:/tmp/poolguard-conventions.db?mode=rwc")
        .expect("lazy");
    let guard = PoolGuard::builder(sqlite).build().expect("guard");
    assert_eq!(guard.name(), "/tmp/poolguard-conventions.db");
    // An explicit name wins.
    let named = SqlitePoolOptions::new()
        .connect_lazy("sqlite::memory:")
        .expect("lazy");
    let guard = PoolGuard::builder(named)
        .name("orders")
        .build()
        .expect("guard");
    assert_eq!(guard.name(), "orders");
}
