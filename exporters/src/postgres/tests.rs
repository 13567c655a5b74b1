//! Component tests of the `postgres` exporter against the real PostgreSQL
//! (`MAGPIE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//! Each test works in a schema of its own, dropped when the test ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use magpie_core::config::{Node, from_node};
use magpie_core::otlp::{kv_double, kv_int, kv_str};
use magpie_core::proto::common::v1::KeyValue;
use magpie_core::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use magpie_core::proto::metrics::v1::{
    Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics, metric::Data,
};
use magpie_core::proto::resource::v1::Resource;
use magpie_core::proto::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status,
    span::{Event, SpanKind},
    status::StatusCode,
};
use magpie_core::telemetry::ComponentStats;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU32;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn url() -> String {
    std::env::var("MAGPIE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A plain connection for the test's own queries.
async fn admin() -> tokio_postgres::Client {
    let mut cfg: tokio_postgres::Config = url().parse().expect("MAGPIE_TEST_POSTGRES_URL parses");
    cfg.ssl_mode(tokio_postgres::config::SslMode::Disable).application_name("magpie-exporter-tests");
    match cfg.connect(tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => panic!(
            "PostgreSQL is not reachable at {} ({}). Start it (as root: pg_ctlcluster --skip-systemctl-redirect \
             $(ls /etc/postgresql) main start), run tests/run which starts it, or point MAGPIE_TEST_POSTGRES_URL at one",
            connect::target(&cfg),
            error_text(&e)
        ),
    }
}

/// A schema of the test's own, dropped (with psql, so it also happens on a panic) at the end.
struct TestSchema {
    name: String,
}

impl TestSchema {
    fn new() -> TestSchema {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "magpie_test_{}_{}_{:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            rand::random::<u16>()
        );
        TestSchema { name }
    }

    fn q(&self) -> String {
        schema::quoted(&self.name)
    }

    /// An exporter config for this schema; `extra` is more YAML for the exporter.
    fn config(&self, extra: &str) -> PostgresConfig {
        self.config_for(&url(), extra)
    }

    fn config_for(&self, dsn: &str, extra: &str) -> PostgresConfig {
        let yaml = format!("dsn: \"{dsn}\"\nschema: {}\ntls: {{mode: disable}}\n{extra}", self.name);
        let node = Node::parse(&yaml, "test.yaml").expect("yaml");
        let (c, _) = from_node::<PostgresConfig>(&node, "exporters.postgres").expect("config");
        assert_eq!(c.problems(), Vec::<String>::new());
        c
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .arg(url())
            .args(["-q", "-c", &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.q())])
            .env("PGSSLMODE", "disable")
            .output();
    }
}

fn ctx() -> ExporterContext {
    ExporterContext {
        id: "postgres/test".parse().expect("id"),
        stats: Arc::new(ComponentStats::default()),
        shutdown: CancellationToken::new(),
    }
}

async fn started(config: &PostgresConfig) -> PostgresExporter {
    let mut e = PostgresExporter::new(&"postgres/test".parse().expect("id"), config);
    e.start(&ctx()).await.expect("exporter starts");
    e
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e))).get(0)
}

/// A trace id (16 bytes) or span id (8 bytes) unique for each (`seed`, `i`).
fn id_bytes(seed: u64, i: u64, len: usize) -> Vec<u8> {
    if len == 8 {
        return ((seed << 32) | (i & 0xffff_ffff)).to_be_bytes().to_vec();
    }
    let mut v = seed.to_be_bytes().to_vec();
    v.extend_from_slice(&i.to_be_bytes());
    v
}

/// How every tenth chat request fails: a Python traceback.
const LLM_TIMEOUT: &str = "Traceback (most recent call last):
  File \"/srv/chatbot/app/llm.py\", line 88, in complete
    resp = await client.post(url, json=body)
TimeoutError: upstream llm timed out after 39s
";

/// `requests` chat requests, each a SERVER span, a GenAI CLIENT span and an
/// internal retrieval span, with ids unique per `seed`. Every tenth request
/// fails with a 500 and a `TimeoutError` recorded on its SERVER span.
fn chat_batch(seed: u64, requests: u64) -> Batch {
    let now = now_unix_nanos();
    let mut spans = Vec::new();
    for r in 0..requests {
        let trace = id_bytes(seed, r, 16);
        let root = id_bytes(seed, r * 3, 8);
        let start = now - 1_000_000_000 + r * 1_000;
        let span = |i: u64, name: &str, kind: SpanKind, attrs: Vec<KeyValue>| Span {
            trace_id: trace.clone(),
            span_id: id_bytes(seed, r * 3 + i, 8),
            parent_span_id: if i == 0 { vec![] } else { root.clone() },
            name: name.into(),
            kind: kind as i32,
            start_time_unix_nano: start + i * 1_000_000,
            end_time_unix_nano: start + 150_000_000,
            attributes: attrs,
            ..Default::default()
        };
        let mut server = span(
            0,
            "POST /api/chat",
            SpanKind::Server,
            vec![
                kv_str("http.request.method", "POST"),
                kv_str("http.route", "/api/chat"),
                kv_int("http.response.status_code", if r % 10 == 9 { 500 } else { 200 }),
                kv_str("enduser.id", format!("user{}@example.com", r % 7)),
                kv_str("department", ["warehouse", "sales", "support"][(r % 3) as usize]),
                kv_str("client.address", "203.0.113.7"),
            ],
        );
        if r % 10 == 9 {
            let message = format!("upstream llm timed out after {}s", 30 + r);
            server.events.push(Event {
                time_unix_nano: start + 140_000_000,
                name: "exception".into(),
                attributes: vec![
                    kv_str("exception.type", "TimeoutError"),
                    kv_str("exception.message", message.clone()),
                    kv_str("exception.stacktrace", LLM_TIMEOUT),
                ],
                dropped_attributes_count: 0,
            });
            server.status = Some(Status { code: StatusCode::Error as i32, message });
        }
        spans.push(server);
        spans.push(span(
            1,
            "chat grok-4",
            SpanKind::Client,
            vec![
                kv_str("gen_ai.provider.name", "xai"),
                kv_str("gen_ai.request.model", "grok-4-1-fast-reasoning"),
                kv_int("gen_ai.usage.input_tokens", 1234),
                kv_int("gen_ai.usage.output_tokens", 567),
                kv_double("gen_ai.usage.cost_usd", 0.001234),
                kv_str("query_type", "procedural"),
            ],
        ));
        spans.push(span(2, "rag.search", SpanKind::Internal, vec![kv_int("rag.results", 5)]));
    }
    Batch::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", "chatbot")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        schema_url: String::new(),
    }])
}

#[tokio::test]
async fn spans_metrics_and_logs_land_in_their_tables() {
    let s = TestSchema::new();
    let mut e = started(&s.config("")).await;
    let db = admin().await;
    let q = s.q();

    e.export(Arc::new(chat_batch(1, 10))).await.expect("traces written");
    let now = now_unix_nanos();
    let metrics = Batch::Metrics(vec![ResourceMetrics {
        resource: Some(Resource { attributes: vec![kv_str("service.name", "host")], ..Default::default() }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                magpie_core::otlp::gauge(
                    "system.cpu.utilization",
                    "1",
                    vec![magpie_core::otlp::double_point(0.452, 0, now, vec![kv_str("cpu", "0")])],
                ),
                Metric {
                    name: "http.server.request.duration".into(),
                    unit: "s".into(),
                    data: Some(Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint {
                            time_unix_nano: now,
                            count: 3,
                            sum: Some(0.6),
                            explicit_bounds: vec![0.1, 0.5],
                            bucket_counts: vec![1, 1, 1],
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        schema_url: String::new(),
    }]);
    e.export(Arc::new(metrics)).await.expect("metrics written");
    let logs = Batch::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", "chatbot")],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord {
                time_unix_nano: now,
                severity_number: 17,
                severity_text: "ERROR".into(),
                body: Some(magpie_core::proto::common::v1::AnyValue {
                    value: Some(magpie_core::proto::common::v1::any_value::Value::StringValue(
                        "[WS] client dropped".into(),
                    )),
                }),
                trace_id: vec![7; 16],
                ..Default::default()
            }],
            ..Default::default()
        }],
        schema_url: String::new(),
    }]);
    e.export(Arc::new(logs)).await.expect("logs written");

    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.trace_spans")).await, 30);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.request_metrics")).await, 10);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.llm_call_metrics")).await, 10);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.magpie_batches")).await, 3);

    let r = db
        .query_one(
            &format!(
                "SELECT method, path, status_code, user_email, department, host(ip_address), trace_id, service_name,
                        tableoid::regclass::text
                 FROM {q}.request_metrics WHERE status_code = 500"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "POST");
    assert_eq!(r.get::<_, String>(1), "/api/chat");
    assert_eq!(r.get::<_, i32>(2), 500);
    assert_eq!(r.get::<_, Option<String>>(3).as_deref(), Some("user2@example.com"));
    assert_eq!(r.get::<_, Option<String>>(4).as_deref(), Some("warehouse"));
    assert_eq!(r.get::<_, Option<String>>(5).as_deref(), Some("203.0.113.7"));
    assert_eq!(r.get::<_, Option<String>>(6).map(|t| t.len()), Some(32));
    assert_eq!(r.get::<_, Option<String>>(7).as_deref(), Some("chatbot"));
    let partition = r.get::<_, String>(8);
    assert!(partition.contains("request_metrics_p"), "today's rows go to today's partition, not {partition}");

    let l = db
        .query_one(
            &format!(
                "SELECT model, provider, prompt_tokens, completion_tokens, total_tokens, cost_usd::text, query_type, success
                 FROM {q}.llm_call_metrics LIMIT 1"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(l.get::<_, String>(0), "grok-4-1-fast-reasoning");
    assert_eq!(l.get::<_, String>(1), "xai");
    assert_eq!(
        (l.get::<_, Option<i32>>(2), l.get::<_, Option<i32>>(3), l.get::<_, Option<i32>>(4)),
        (Some(1234), Some(567), Some(1801))
    );
    assert_eq!(l.get::<_, Option<String>>(5).as_deref(), Some("0.001234"));
    assert_eq!(l.get::<_, Option<String>>(6).as_deref(), Some("procedural"));
    assert_eq!(l.get::<_, Option<bool>>(7), Some(true));

    let t = db
        .query_one(
            &format!(
                "SELECT tags->>'rag.results', parent_span_id IS NOT NULL, span_kind, resource->>'service.name', duration_ms
                 FROM {q}.trace_spans WHERE operation_name = 'rag.search' LIMIT 1"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(t.get::<_, Option<String>>(0).as_deref(), Some("5"));
    assert!(t.get::<_, bool>(1));
    assert_eq!(t.get::<_, Option<String>>(2).as_deref(), Some("internal"));
    assert_eq!(t.get::<_, Option<String>>(3).as_deref(), Some("chatbot"));
    assert!((t.get::<_, f64>(4) - 148.0).abs() < 1e-9);

    let m = db
        .query(
            &format!(
                "SELECT metric_name, metric_value, metadata->>'type', metadata->'bucket_counts'
                 FROM {q}.system_metrics ORDER BY metric_name"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].get::<_, String>(0), "http.server.request.duration");
    assert!((m[0].get::<_, f64>(1) - 0.6).abs() < 1e-12);
    assert_eq!(m[0].get::<_, Option<serde_json::Value>>(3), Some(serde_json::json!([1, 1, 1])));
    assert_eq!(m[1].get::<_, Option<String>>(2).as_deref(), Some("gauge"));

    let g = db
        .query_one(&format!("SELECT body, severity_text, trace_id FROM {q}.log_records"), &[])
        .await
        .unwrap();
    assert_eq!(g.get::<_, Option<String>>(0).as_deref(), Some("[WS] client dropped"));
    assert_eq!(g.get::<_, Option<String>>(1).as_deref(), Some("ERROR"));
    assert_eq!(g.get::<_, Option<String>>(2), Some("07".repeat(16)));
    e.shutdown().await.unwrap();
}

#[tokio::test]
async fn costs_round_trip_through_the_numeric_encoding() {
    let s = TestSchema::new();
    let mut e = started(&s.config("tables: {trace_spans: false, request_metrics: false}\n")).await;
    let costs = [0.0, 0.001234, 12.5, 9999.999999, 0.0000004, 1.0, 123.456789];
    let mut spans = Vec::new();
    for (i, c) in costs.iter().enumerate() {
        spans.push(Span {
            trace_id: id_bytes(9, i as u64, 16),
            span_id: id_bytes(9, i as u64, 8),
            name: "chat".into(),
            start_time_unix_nano: now_unix_nanos(),
            end_time_unix_nano: now_unix_nanos(),
            attributes: vec![
                kv_str("gen_ai.system", "xai"),
                kv_str("gen_ai.request.model", format!("m{i}")),
                kv_double("gen_ai.usage.cost_usd", *c),
            ],
            ..Default::default()
        });
    }
    let batch = Batch::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        ..Default::default()
    }]);
    e.export(Arc::new(batch)).await.expect("written");
    let db = admin().await;
    let rows = db
        .query(&format!("SELECT model, cost_usd::text FROM {}.llm_call_metrics ORDER BY model", s.q()), &[])
        .await
        .unwrap();
    let got: Vec<String> = rows.iter().map(|r| r.get::<_, String>(1)).collect();
    assert_eq!(
        got,
        ["0.000000", "0.001234", "12.500000", "9999.999999", "0.000000", "1.000000", "123.456789"]
    );
}

#[tokio::test]
async fn concurrent_migrations_apply_each_version_once_and_are_idempotent() {
    let s = TestSchema::new();
    let cfg = s.config("");
    let runs = futures_util::future::join_all((0..4).map(|_| migrate(&cfg))).await;
    let mut applied_all = 0;
    for r in &runs {
        let msg = r.as_ref().expect("migration succeeds");
        if msg.contains("applied 1, 2, 3, 4") {
            applied_all += 1;
        } else {
            assert!(msg.contains("no migration needed"), "{msg}");
        }
    }
    assert_eq!(applied_all, 1, "exactly one run applies the migrations: {runs:?}");
    let db = admin().await;
    let q = s.q();
    let versions: Vec<i32> = db
        .query(&format!("SELECT version FROM {q}.schema_migrations ORDER BY version"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    // Partitioned by day, from yesterday to 3 days ahead, plus a default partition.
    let parts = count(
        &db,
        &format!("SELECT count(*) FROM pg_inherits WHERE inhparent = '{q}.trace_spans'::regclass"),
    )
    .await;
    assert_eq!(parts, 6);
    let again = migrate(&cfg).await.expect("second run");
    assert!(again.contains("no migration needed") && again.contains("0 partitions created"), "{again}");
    // The seed's index names are there.
    for idx in [
        "idx_request_metrics_timestamp",
        "idx_system_metrics_time_series",
        "idx_llm_metrics_user",
        "idx_trace_spans_trace_id",
        "idx_error_groups_last_seen",
        "idx_error_groups_service",
    ] {
        assert_eq!(
            count(
                &db,
                &format!(
                    "SELECT count(*) FROM pg_indexes WHERE schemaname = '{}' AND indexname = '{idx}'",
                    s.name
                )
            )
            .await,
            1,
            "{idx}"
        );
    }
}

#[tokio::test]
async fn a_hand_made_unpartitioned_seed_schema_is_adopted() {
    let s = TestSchema::new();
    let db = admin().await;
    let q = s.q();
    db.batch_execute(&format!(
        "CREATE SCHEMA {q};
         CREATE TABLE {q}.request_metrics (
             id UUID PRIMARY KEY DEFAULT gen_random_uuid(), timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(),
             method VARCHAR(10) NOT NULL, path TEXT NOT NULL, status_code INTEGER NOT NULL,
             response_time_ms FLOAT NOT NULL, user_email VARCHAR(255), department VARCHAR(50),
             request_size_bytes INTEGER, response_size_bytes INTEGER, trace_id VARCHAR(32),
             user_agent TEXT, ip_address INET);
         CREATE INDEX idx_request_metrics_timestamp ON {q}.request_metrics(timestamp DESC);
         INSERT INTO {q}.request_metrics (method, path, status_code, response_time_ms) VALUES ('GET', '/old', 200, 1.0);"
    ))
    .await
    .unwrap();
    let mut e = started(&s.config("")).await;
    e.export(Arc::new(chat_batch(2, 3))).await.expect("written into the adopted table");
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.request_metrics")).await, 4);
    assert_eq!(
        count(&db, &format!("SELECT count(*) FROM {q}.request_metrics WHERE service_name = 'chatbot'")).await,
        3
    );
    let kind: i8 = db
        .query_one(&format!("SELECT relkind FROM pg_class WHERE oid = '{q}.request_metrics'::regclass"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind as u8, b'r', "the hand-made table stays as it was");
}

#[tokio::test]
async fn refused_rows_are_kept_in_dead_letter_and_the_rest_is_written() {
    let s = TestSchema::new();
    let mut e = started(&s.config("")).await;
    // 1200 spans: written in two parts, the second refused row in the second part.
    let Batch::Traces(mut rs) = chat_batch(3, 400) else { unreachable!() };
    // A NUL in a span name (TEXT refuses it) and in an attribute (JSONB refuses it).
    rs[0].scope_spans[0].spans[2].name = "rag\0search".into();
    rs[0].scope_spans[0].spans[1105].attributes.push(kv_str("bad", "x\0y"));
    let poisoned_id = magpie_core::otlp::hex(&rs[0].scope_spans[0].spans[1105].span_id);
    let err = e.export(Arc::new(Batch::Traces(rs))).await.expect_err("two rows refused");
    match err {
        ExportError::Partial { rejected, message } => {
            assert_eq!(rejected, 2);
            assert!(message.contains("dead_letter"), "{message}");
        }
        other => panic!("expected a partial success, got {other:?}"),
    }
    let db = admin().await;
    let q = s.q();
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.trace_spans")).await, 1198);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.request_metrics")).await, 400);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.llm_call_metrics")).await, 400);
    assert_eq!(
        count(&db, &format!("SELECT sum(occurrences)::int8 FROM {q}.error_groups")).await,
        40,
        "the error groups are written once, by the second try, not also by the rolled-back first"
    );
    let dead = db
        .query(&format!("SELECT table_name, row_data, sqlstate, error FROM {q}.dead_letter ORDER BY id"), &[])
        .await
        .unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].get::<_, String>(0), "trace_spans");
    let row: serde_json::Value = dead[0].get(1);
    assert_eq!(row["operation_name"], "rag\u{fffd}search", "the row is kept, NUL replaced");
    assert_eq!(dead[0].get::<_, Option<String>>(2).as_deref(), Some("22021"));
    let row: serde_json::Value = dead[1].get(1);
    assert_eq!(row["tags"]["bad"], "x\u{fffd}y");
    assert_eq!(row["span_id"], poisoned_id.as_str(), "the kept row is the refused one");
    assert!(dead[1].get::<_, String>(3).contains("Unicode"), "{}", dead[1].get::<_, String>(3));
}

#[tokio::test]
async fn different_batches_with_equal_content_are_both_written() {
    let s = TestSchema::new();
    let mut e = started(&s.config("")).await;
    let batch = chat_batch(4, 2);
    e.export(Arc::new(batch.clone())).await.unwrap();
    e.export(Arc::new(batch)).await.unwrap();
    let db = admin().await;
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {}.trace_spans", s.q())).await, 12);
}

/// Where a [`CommitCutter`] drops the connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// After `COMMIT` reached the server: the commit happens, the client never hears.
    AfterCommitSent,
    /// Before `COMMIT` reaches the server: the transaction is rolled back.
    BeforeCommitSent,
}

/// A TCP proxy to PostgreSQL that reads the client's protocol messages and,
/// once armed, drops both sides of the connection at the next `COMMIT`.
struct CommitCutter {
    addr: SocketAddr,
    armed: Arc<std::sync::Mutex<Option<Cut>>>,
    cuts: Arc<AtomicU32>,
}

impl CommitCutter {
    async fn start(upstream: String) -> CommitCutter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let armed = Arc::new(std::sync::Mutex::new(None));
        let cuts = Arc::new(AtomicU32::new(0));
        let (a, n) = (armed.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { continue };
                // Without this, Nagle's algorithm and delayed ACKs stall every small message.
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                tokio::spawn(Self::pipe(client, server, a.clone(), n.clone()));
            }
        });
        CommitCutter { addr, armed, cuts }
    }

    fn arm(&self, cut: Cut) {
        *self.armed.lock().unwrap() = Some(cut);
    }

    async fn pipe(
        client: tokio::net::TcpStream,
        server: tokio::net::TcpStream,
        armed: Arc<std::sync::Mutex<Option<Cut>>>,
        cuts: Arc<AtomicU32>,
    ) {
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let back = tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
        // The startup message has no type byte.
        let mut len = [0u8; 4];
        if cr.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut startup = len.to_vec();
        startup.resize((u32::from_be_bytes(len) as usize).max(4), 0);
        if cr.read_exact(&mut startup[4..]).await.is_err() || sw.write_all(&startup).await.is_err() {
            return;
        }
        loop {
            let mut head = [0u8; 5];
            if cr.read_exact(&mut head).await.is_err() {
                break;
            }
            let n = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; n.saturating_sub(4)];
            if cr.read_exact(&mut body).await.is_err() {
                break;
            }
            let is_commit = head[0] == b'Q' && body.starts_with(b"COMMIT");
            let cut = if is_commit { armed.lock().unwrap().take() } else { None };
            if cut == Some(Cut::BeforeCommitSent) {
                break;
            }
            let mut message = head.to_vec();
            message.extend_from_slice(&body);
            if sw.write_all(&message).await.is_err() {
                break;
            }
            if cut == Some(Cut::AfterCommitSent) {
                let _ = sw.flush().await;
                break;
            }
        }
        cuts.fetch_add(1, Ordering::Relaxed);
        back.abort();
    }
}

async fn cut_during_commit_then_retry(cut: Cut) {
    let s = TestSchema::new();
    let upstream = {
        let cfg: tokio_postgres::Config = url().parse().unwrap();
        connect::target(&cfg)
    };
    let proxy = CommitCutter::start(upstream).await;
    let dbname = url().parse::<tokio_postgres::Config>().unwrap().get_dbname().unwrap_or("test").to_string();
    let user = url().parse::<tokio_postgres::Config>().unwrap().get_user().unwrap_or("postgres").to_string();
    let dsn = format!("host=127.0.0.1 port={} user={user} dbname={dbname}", proxy.addr.port());
    let mut e = started(&s.config_for(&dsn, "")).await;
    let db = admin().await;
    let q = s.q();
    let batch = Arc::new(chat_batch(5, 20));
    proxy.arm(cut);
    let first = e.export(batch.clone()).await;
    assert!(
        matches!(first, Err(ExportError::Retryable { .. })),
        "an unknown commit outcome is retryable: {first:?}"
    );
    assert_eq!(proxy.cuts.load(Ordering::Relaxed), 1, "the proxy cut one connection");
    let expected_after_cut = if cut == Cut::AfterCommitSent { 60 } else { 0 };
    // The server finishes the cut session on its own time; wait for the commit to show.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = count(&db, &format!("SELECT count(*) FROM {q}.trace_spans")).await;
        if n == expected_after_cut || std::time::Instant::now() > deadline {
            assert_eq!(n, expected_after_cut);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The agent offers the same batch again.
    e.export(batch.clone()).await.expect("the retry succeeds");
    assert_eq!(
        count(&db, &format!("SELECT count(*) FROM {q}.trace_spans")).await,
        60,
        "every span exactly once"
    );
    assert_eq!(count(&db, &format!("SELECT count(DISTINCT span_id) FROM {q}.trace_spans")).await, 60);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.request_metrics")).await, 20);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.magpie_batches")).await, 1);
    assert_eq!(
        count(&db, &format!("SELECT sum(occurrences)::int8 FROM {q}.error_groups")).await,
        2,
        "the two failed requests are counted once"
    );
    e.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_connection_lost_after_commit_was_sent_is_not_written_twice() {
    cut_during_commit_then_retry(Cut::AfterCommitSent).await;
}

#[tokio::test]
async fn a_connection_lost_before_commit_was_sent_is_written_on_retry() {
    cut_during_commit_then_retry(Cut::BeforeCommitSent).await;
}

#[tokio::test]
async fn an_unreachable_database_is_retryable_and_does_not_stop_start_up() {
    let s = TestSchema::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let cfg =
        s.config_for(&format!("postgres://postgres:hunter2@127.0.0.1:{port}/test"), "connect_timeout: 2s\n");
    let mut e = started(&cfg).await;
    match e.export(Arc::new(chat_batch(6, 1))).await {
        Err(ExportError::Retryable { message, .. }) => {
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

#[tokio::test]
async fn partitions_are_created_ahead_and_expired_ones_dropped() {
    let s = TestSchema::new();
    let cfg = s.config("");
    migrate(&cfg).await.expect("migrated");
    let db = admin().await;
    let q = s.q();
    let today = time::Day::of_nanos(now_unix_nanos());
    // A row 20 days ahead lands in the default partition.
    let far = time::Day { index: today.index + 20 };
    db.batch_execute(&format!(
        "INSERT INTO {q}.system_metrics (timestamp, metric_name, metric_value) VALUES ({}::timestamptz + interval '1 hour', 'future', 1);
         INSERT INTO {q}.system_metrics (timestamp, metric_name, metric_value) VALUES ({}::timestamptz, 'ancient', 1);",
        far.sql_midnight(),
        time::Day { index: today.index - 400 }.sql_midnight()
    ))
    .await
    .unwrap();
    let where_is = |name: &'static str| {
        let q = q.clone();
        let db = &db;
        async move {
            db.query_one(
                &format!(
                    "SELECT tableoid::regclass::text FROM {q}.system_metrics WHERE metric_name = '{name}'"
                ),
                &[],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
        }
    };
    assert!(where_is("future").await.ends_with("system_metrics_default"));

    // Forty days later, with a 30-day retention.
    let later = now_unix_nanos() + 40 * time::DAY_NANOS;
    let mut client = admin().await;
    let report = schema::maintain(
        &mut client,
        &s.name,
        &[Table::SystemMetrics],
        later,
        2,
        Some(Duration::from_secs(30 * 86_400)),
    )
    .await
    .expect("maintenance");
    let names = |v: &[String]| {
        v.iter().map(|n| n.trim_start_matches("system_metrics_p").to_string()).collect::<Vec<_>>()
    };
    let expect_created: Vec<String> = (39..=42).map(|d| today.plus(d).compact()).collect();
    assert_eq!(names(&report.created), expect_created);
    let mut dropped = names(&report.dropped);
    dropped.sort();
    let expect_dropped: Vec<String> = (-1..=3).map(|d| today.plus(d).compact()).collect();
    assert_eq!(dropped, expect_dropped, "partitions wholly older than the cutoff are dropped");
    assert_eq!(report.deleted_rows, 1, "the ancient row in the default partition is deleted");
    assert!(where_is("future").await.ends_with("system_metrics_default"), "day +20 has no partition yet");

    // On day +20 itself, the partition is created and the stranded row moved into it.
    let on_the_day = far.start_nanos() + 3600 * 1_000_000_000;
    let report = schema::maintain(&mut client, &s.name, &[Table::SystemMetrics], on_the_day, 0, None)
        .await
        .expect("maintenance");
    assert!(report.created.contains(&schema::partition_name(Table::SystemMetrics, far)), "{report:?}");
    assert_eq!(
        where_is("future").await,
        format!("{}.{}", s.name, schema::partition_name(Table::SystemMetrics, far))
    );
    // The moved partition has the parent's indexes.
    let idx = count(
        &db,
        &format!(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = '{}' AND tablename = '{}'",
            s.name,
            schema::partition_name(Table::SystemMetrics, far)
        ),
    )
    .await;
    assert_eq!(idx, 4, "primary key and the three seed indexes");
}

#[tokio::test]
async fn dashboard_queries_use_the_indexes() {
    let s = TestSchema::new();
    let mut e = started(&s.config("")).await;
    for seed in 0..5 {
        e.export(Arc::new(chat_batch(100 + seed, 200))).await.unwrap();
    }
    let db = admin().await;
    db.batch_execute(&format!("ANALYZE {q}.request_metrics; ANALYZE {q}.trace_spans; ANALYZE {q}.llm_call_metrics; ANALYZE {q}.system_metrics", q = s.q()))
        .await
        .unwrap();
    for dq in schema::DASHBOARD_QUERIES {
        let sql = dq.sql.replace("{schema}", &s.q());
        // Small tables make sequential scans cheapest; forbid them so the plan shows the index the query can use.
        let plan: Vec<String> = {
            let tx_sql = format!("EXPLAIN {sql}");
            db.batch_execute("SET enable_seqscan = off").await.unwrap();
            let rows = db
                .query(&tx_sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{}: {}", dq.endpoint, error_text(&e)));
            db.batch_execute("RESET enable_seqscan").await.unwrap();
            rows.iter().map(|r| r.get::<_, String>(0)).collect()
        };
        let text = plan.join("\n");
        assert!(
            text.contains(dq.index_suffix) && text.contains("Index"),
            "{} should use an index ending in {}:\n{text}",
            dq.endpoint,
            dq.index_suffix
        );
        assert!(!text.contains("Seq Scan"), "{}:\n{text}", dq.endpoint);
    }
}

#[tokio::test]
async fn tls_modes_against_the_local_server() {
    // Whether the local server offers TLS decides what each mode does
    // (Debian's packaged server has ssl = on with a self-signed certificate).
    let db = admin().await;
    let offers_tls = db.query_one("SHOW ssl", &[]).await.unwrap().get::<_, String>(0) == "on";
    for (mode, encrypted) in [
        (connect::TlsMode::Disable, Some(false)),
        (connect::TlsMode::Prefer, Some(offers_tls)),
        (connect::TlsMode::Require, offers_tls.then_some(true)),
    ] {
        let connector = connect::Connector::new(
            &url(),
            &TlsConfig { mode: Some(mode), ca_file: None },
            Duration::from_secs(5),
        )
        .unwrap();
        match (connector.connect().await, encrypted) {
            (Ok(c), Some(expected)) => {
                let on: bool = c
                    .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(on, expected, "{mode:?}");
            }
            (Err(e), None) => assert!(e.to_string().contains("127.0.0.1"), "{mode:?}: {e}"),
            (Ok(_), None) => panic!("{mode:?} connected to a server without TLS"),
            (Err(e), Some(_)) => panic!("{mode:?}: {e}"),
        }
    }
    // verify-full fails against a certificate no configured CA signed (or a server without TLS).
    let connector = connect::Connector::new(
        &url(),
        &TlsConfig { mode: Some(connect::TlsMode::VerifyFull), ca_file: None },
        Duration::from_secs(5),
    );
    let refused = match connector {
        Ok(c) => c.connect().await.is_err(),
        Err(e) => e.to_string().contains("no system CA certificates"),
    };
    assert!(refused, "verify-full must not accept an unverifiable server");
}

const PYTHON_CHAINED: &str = include_str!("../../tests/fixtures/stacktraces/python_chained.txt");

/// A SERVER span (ids from `seed`) that failed at `time` with an `exception` event.
fn failed_request(
    seed: u64,
    time: u64,
    error_type: &str,
    message: &str,
    stacktrace: Option<&str>,
    user: &str,
) -> Span {
    let mut exception = vec![kv_str("exception.type", error_type), kv_str("exception.message", message)];
    if let Some(s) = stacktrace {
        exception.push(kv_str("exception.stacktrace", s));
    }
    Span {
        trace_id: id_bytes(seed, 0, 16),
        span_id: id_bytes(seed, 0, 8),
        name: "POST /api/chat".into(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: time - 5_000_000,
        end_time_unix_nano: time,
        attributes: vec![
            kv_str("http.request.method", "POST"),
            kv_str("http.route", "/api/chat"),
            kv_int("http.response.status_code", 500),
            kv_str("enduser.id", user),
            kv_str("gen_ai.request.model", "grok-4"),
        ],
        events: vec![Event {
            time_unix_nano: time,
            name: "exception".into(),
            attributes: exception,
            dropped_attributes_count: 0,
        }],
        status: Some(Status { code: StatusCode::Error as i32, message: message.into() }),
        ..Default::default()
    }
}

fn spans_of(spans: Vec<Span>) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", "chatbot")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        schema_url: String::new(),
    }])
}

/// A row of `error_groups`, times in Unix microseconds.
#[derive(Debug)]
struct Group {
    service: Option<String>,
    error_type: String,
    message: String,
    culprit: String,
    occurrences: i64,
    first_seen: i64,
    last_seen: i64,
    last_trace_id: Option<String>,
    last_message: Option<String>,
    stacktrace: Option<String>,
    attributes: Option<serde_json::Value>,
}

async fn groups(db: &tokio_postgres::Client, q: &str) -> Vec<Group> {
    db.query(
        &format!(
            "SELECT service_name, error_type, message, culprit, occurrences,
                    (extract(epoch FROM first_seen) * 1000000)::int8, (extract(epoch FROM last_seen) * 1000000)::int8,
                    last_trace_id, last_message, stacktrace, attributes
             FROM {q}.error_groups ORDER BY first_seen, error_type, culprit"
        ),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| Group {
        service: r.get(0),
        error_type: r.get(1),
        message: r.get(2),
        culprit: r.get(3),
        occurrences: r.get(4),
        first_seen: r.get(5),
        last_seen: r.get(6),
        last_trace_id: r.get(7),
        last_message: r.get(8),
        stacktrace: r.get(9),
        attributes: r.get(10),
    })
    .collect()
}

fn micros(nanos: u64) -> i64 {
    (nanos / 1_000) as i64
}

#[tokio::test]
async fn the_same_error_in_two_batches_is_one_group() {
    let s = TestSchema::new();
    let mut e = started(&s.config("")).await;
    let db = admin().await;
    let q = s.q();
    let now = now_unix_nanos();
    let (t0, t1, t2) = (now - 90_000_000_000, now - 60_000_000_001, now - 30_000_000_000);
    let stack = Some(PYTHON_CHAINED);
    e.export(Arc::new(spans_of(vec![failed_request(
        11,
        t1,
        "UserNotFound",
        "user 123 not found",
        stack,
        "ada",
    )])))
    .await
    .unwrap();
    e.export(Arc::new(spans_of(vec![failed_request(
        12,
        t2,
        "UserNotFound",
        "user 456 not found",
        stack,
        "bob",
    )])))
    .await
    .unwrap();
    let g = groups(&db, &q).await;
    assert_eq!(g.len(), 1, "{g:?}");
    let newer_trace = magpie_core::otlp::hex(&id_bytes(12, 0, 16));
    assert_eq!((g[0].occurrences, g[0].first_seen, g[0].last_seen), (2, micros(t1), micros(t2)));
    assert_eq!(g[0].service.as_deref(), Some("chatbot"));
    assert_eq!((g[0].error_type.as_str(), g[0].message.as_str()), ("UserNotFound", "user <num> not found"));
    assert_eq!(g[0].culprit, "get_user (chat.py)");
    assert_eq!(g[0].last_trace_id.as_deref(), Some(newer_trace.as_str()));
    assert_eq!(g[0].last_message.as_deref(), Some("user 456 not found"));
    assert_eq!(
        g[0].attributes,
        Some(
            serde_json::json!({"http.route": "/api/chat", "http.request.method": "POST", "enduser.id": "bob",
            "gen_ai.request.model": "grok-4", "http.response.status_code": 500})
        )
    );
    assert!(g[0].stacktrace.as_deref().is_some_and(|t| t.ends_with("UserNotFound: user 123 not found")));

    // An older occurrence arriving late widens first_seen and leaves the latest sample alone.
    e.export(Arc::new(spans_of(vec![failed_request(
        13,
        t0,
        "UserNotFound",
        "user 789 not found",
        None,
        "cy",
    )])))
    .await
    .unwrap();
    // Another type, or another culprit (no stack trace: the span name), is another group.
    let mut other_place = failed_request(14, t2, "UserNotFound", "user 5 not found", None, "dee");
    other_place.name = "GET /api/users/{id}".into();
    e.export(Arc::new(spans_of(vec![
        failed_request(15, t2, "ValueError", "user 123 not found", stack, "ed"),
        other_place,
        failed_request(16, t0, "UserNotFound", "user 7 not found", stack, "flo"),
    ])))
    .await
    .unwrap();
    let g = groups(&db, &q).await;
    assert_eq!(g.len(), 4, "{g:?}");
    let chained =
        g.iter().find(|x| x.error_type == "UserNotFound" && x.culprit == "get_user (chat.py)").unwrap();
    assert_eq!((chained.occurrences, chained.first_seen, chained.last_seen), (3, micros(t0), micros(t2)));
    assert_eq!(
        chained.last_trace_id.as_deref(),
        Some(newer_trace.as_str()),
        "the older occurrence is no sample"
    );
    assert_eq!(chained.last_message.as_deref(), Some("user 456 not found"));
    let mut kinds: Vec<(String, String, i64)> =
        g.iter().map(|x| (x.error_type.clone(), x.culprit.clone(), x.occurrences)).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("UserNotFound".to_string(), "GET /api/users/{id}".to_string(), 1),
            ("UserNotFound".to_string(), "POST /api/chat".to_string(), 1),
            ("UserNotFound".to_string(), "get_user (chat.py)".to_string(), 3),
            ("ValueError".to_string(), "get_user (chat.py)".to_string(), 1),
        ]
    );
    e.shutdown().await.unwrap();
}

/// Maps and writes `batch` under `batch_id` straight through a [`Writer`].
async fn write_as(writer: &Writer, batch: &Arc<Batch>, batch_id: u128, tables: TablesConfig) -> Written {
    let (tx, rx) = tokio::sync::mpsc::channel::<Part>(2);
    let b = batch.clone();
    let producer =
        tokio::task::spawn_blocking(move || produce_parts(&b, &MappingConfig::default(), &tables, &tx));
    let written = writer.write(batch_id, batch.item_count(), rx).await.expect("written");
    producer.await.unwrap();
    written
}

async fn writer_for(s: &TestSchema) -> Writer {
    migrate(&s.config("")).await.expect("migrated");
    let connector = connect::Connector::new(
        &url(),
        &TlsConfig { mode: Some(connect::TlsMode::Disable), ca_file: None },
        Duration::from_secs(5),
    )
    .unwrap();
    let pool = connect::pool(&connector, 2).unwrap();
    Writer::new(
        &"postgres/test".parse().unwrap(),
        pool,
        connector.target.clone(),
        &s.name,
        Duration::from_secs(30),
    )
}

#[tokio::test]
async fn a_batch_offered_again_counts_its_errors_once() {
    let s = TestSchema::new();
    let writer = writer_for(&s).await;
    let db = admin().await;
    let q = s.q();
    let now = now_unix_nanos();
    let batch = Arc::new(spans_of(vec![
        failed_request(21, now - 2_000, "UserNotFound", "user 1 not found", Some(PYTHON_CHAINED), "a"),
        failed_request(22, now - 1_000, "UserNotFound", "user 2 not found", Some(PYTHON_CHAINED), "b"),
    ]));
    let tables = TablesConfig::default();
    // Two spans, two requests, two LLM calls and one group.
    assert!(matches!(write_as(&writer, &batch, 7, tables).await, Written::Committed { rows: 7, .. }));
    // The same batch id again, as after a commit whose outcome the agent never heard.
    assert!(matches!(write_as(&writer, &batch, 7, tables).await, Written::AlreadyCommitted));
    assert_eq!(count(&db, &format!("SELECT sum(occurrences)::int8 FROM {q}.error_groups")).await, 2);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.trace_spans")).await, 2);
    // Another batch with the same content is new data and counts.
    write_as(&writer, &batch, 8, tables).await;
    assert_eq!(count(&db, &format!("SELECT sum(occurrences)::int8 FROM {q}.error_groups")).await, 4);
}

fn exception_logs(records: Vec<LogRecord>) -> Batch {
    Batch::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", "chatbot")],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(magpie_core::proto::common::v1::InstrumentationScope {
                name: "app.chat".into(),
                ..Default::default()
            }),
            log_records: records,
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

/// What Python's logging sends for `logger.exception(...)` through OpenTelemetry.
fn exception_log(time: u64, user_id: u32, trace: u8) -> LogRecord {
    LogRecord {
        time_unix_nano: time,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(magpie_core::proto::common::v1::AnyValue {
            value: Some(magpie_core::proto::common::v1::any_value::Value::StringValue(
                "chat request failed".into(),
            )),
        }),
        attributes: vec![
            kv_str("exception.type", "UserNotFound"),
            kv_str("exception.message", format!("user {user_id} not found")),
            kv_str("exception.stacktrace", PYTHON_CHAINED.replace("123", &user_id.to_string())),
            kv_str("code.function", "handle_chat"),
            kv_str("code.filepath", "/srv/chatbot/app/chat.py"),
        ],
        trace_id: vec![trace; 16],
        span_id: vec![trace; 8],
        ..Default::default()
    }
}

#[tokio::test]
async fn log_records_with_exception_attributes_are_grouped() {
    let s = TestSchema::new();
    let mut e = started(&s.config("")).await;
    let db = admin().await;
    let q = s.q();
    let now = now_unix_nanos();
    let plain = LogRecord {
        time_unix_nano: now,
        severity_number: 17,
        attributes: vec![kv_str("http.route", "/api/chat")],
        ..Default::default()
    };
    e.export(Arc::new(exception_logs(vec![
        exception_log(now - 2_000_000, 123, 1),
        plain,
        exception_log(now - 1_000_000, 456, 2),
    ])))
    .await
    .unwrap();
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.log_records")).await, 3);
    let g = groups(&db, &q).await;
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!((g[0].occurrences, g[0].last_seen), (2, micros(now - 1_000_000)));
    assert_eq!((g[0].error_type.as_str(), g[0].message.as_str()), ("UserNotFound", "user <num> not found"));
    assert_eq!(g[0].culprit, "get_user (chat.py)", "the stack trace's frame, as for a span event");
    assert_eq!(g[0].last_trace_id.as_deref(), Some("02".repeat(16).as_str()));
    assert_eq!(g[0].last_message.as_deref(), Some("user 456 not found"));
}

#[tokio::test]
async fn error_groups_follow_the_tables_setting() {
    let db = admin().await;
    let now = now_unix_nanos();
    let failing = || spans_of(vec![failed_request(31, now, "UserNotFound", "user 1 not found", None, "a")]);
    let logs = || exception_logs(vec![exception_log(now, 1, 1)]);

    let off = TestSchema::new();
    let mut e = started(&off.config("tables: {error_groups: false}\n")).await;
    e.export(Arc::new(failing())).await.unwrap();
    e.export(Arc::new(logs())).await.unwrap();
    let q = off.q();
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.trace_spans")).await, 1);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.log_records")).await, 1);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.error_groups")).await, 0);

    let only = TestSchema::new();
    let mut e = started(&only.config(
        "tables: {trace_spans: false, request_metrics: false, llm_call_metrics: false, system_metrics: false, log_records: false}\n",
    ))
    .await;
    e.export(Arc::new(failing())).await.unwrap();
    e.export(Arc::new(logs())).await.unwrap();
    let q = only.q();
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.trace_spans")).await, 0);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.log_records")).await, 0);
    assert_eq!(
        count(&db, &format!("SELECT count(*) FROM {q}.error_groups")).await,
        2,
        "span event and log record"
    );
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.magpie_batches")).await, 2);
}

#[tokio::test]
async fn retention_deletes_groups_not_seen_within_it() {
    let s = TestSchema::new();
    let mut e = started(&s.config("")).await;
    let db = admin().await;
    let q = s.q();
    let now = now_unix_nanos();
    e.export(Arc::new(spans_of(vec![
        failed_request(41, now, "UserNotFound", "user 1 not found", None, "a"),
        failed_request(42, now, "ValueError", "bad input", None, "b"),
    ])))
    .await
    .unwrap();
    // The ValueError recurs 35 days from now.
    db.batch_execute(&format!(
        "UPDATE {q}.error_groups SET last_seen = last_seen + interval '35 days' WHERE error_type = 'ValueError'"
    ))
    .await
    .unwrap();
    let mut client = admin().await;
    let later = now + 40 * time::DAY_NANOS;
    let keep = schema::maintain(&mut client, &s.name, &[Table::ErrorGroups], later, 0, None).await.unwrap();
    assert_eq!(
        (keep.deleted_rows, count(&db, &format!("SELECT count(*) FROM {q}.error_groups")).await),
        (0, 2)
    );
    let report = schema::maintain(
        &mut client,
        &s.name,
        &[Table::ErrorGroups],
        later,
        0,
        Some(Duration::from_secs(30 * 86_400)),
    )
    .await
    .unwrap();
    assert_eq!(report.deleted_rows, 1);
    assert!(report.unpartitioned.is_empty() && report.created.is_empty(), "{report:?}");
    let left = groups(&db, &q).await;
    assert_eq!(left.iter().map(|g| g.error_type.as_str()).collect::<Vec<_>>(), ["ValueError"]);
    e.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refused_group_goes_to_dead_letter_and_the_spans_are_written() {
    let s = TestSchema::new();
    let mut e = started(&s.config("")).await;
    let db = admin().await;
    let q = s.q();
    // Nothing the exporter writes is refused on its own; a constraint stands in for the unforeseen.
    db.batch_execute(&format!(
        "ALTER TABLE {q}.error_groups ADD CONSTRAINT no_poison CHECK (error_type <> 'Poison')"
    ))
    .await
    .unwrap();
    let now = now_unix_nanos();
    let mut spans: Vec<Span> =
        (0..8).map(|i| failed_request(50 + i, now, "UserNotFound", "user 1 not found", None, "a")).collect();
    spans.push(failed_request(60, now, "Poison", "bad 1", None, "a"));
    spans.push(failed_request(61, now, "Poison", "bad 2", None, "a"));
    match e.export(Arc::new(spans_of(spans))).await {
        Err(ExportError::Partial { rejected, message }) => {
            assert_eq!(rejected, 1, "{message}");
            assert!(message.contains("error_groups"), "{message}");
        }
        other => panic!("expected a partial success, got {other:?}"),
    }
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.trace_spans")).await, 10);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.request_metrics")).await, 10);
    let g = groups(&db, &q).await;
    assert_eq!(
        g.iter().map(|x| (x.error_type.as_str(), x.occurrences)).collect::<Vec<_>>(),
        [("UserNotFound", 8)]
    );
    let dead = db
        .query_one(&format!("SELECT table_name, row_data, sqlstate FROM {q}.dead_letter"), &[])
        .await
        .unwrap();
    assert_eq!(dead.get::<_, String>(0), "error_groups");
    let row: serde_json::Value = dead.get(1);
    assert_eq!((row["error_type"].as_str(), row["occurrences"].as_i64()), (Some("Poison"), Some(2)));
    assert_eq!(row["message"], "bad <num>");
    assert_eq!(dead.get::<_, Option<String>>(2).as_deref(), Some("23514"));
}

#[tokio::test]
async fn a_failed_upsert_rolls_the_batch_back_for_a_retry() {
    let s = TestSchema::new();
    let mut e = started(&s.config("")).await;
    let db = admin().await;
    let q = s.q();
    db.batch_execute(&format!(
        "CREATE FUNCTION {q}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'not now'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON {q}.error_groups FOR EACH ROW EXECUTE FUNCTION {q}.refuse();"
    ))
    .await
    .unwrap();
    let batch = Arc::new(chat_batch(70, 10));
    match e.export(batch.clone()).await {
        Err(ExportError::Retryable { message, .. }) => assert!(message.contains("not now"), "{message}"),
        other => panic!("expected a retryable error, got {other:?}"),
    }
    for table in ["trace_spans", "request_metrics", "magpie_batches", "error_groups", "dead_letter"] {
        assert_eq!(
            count(&db, &format!("SELECT count(*) FROM {q}.{table}")).await,
            0,
            "{table}: nothing of the batch stays"
        );
    }
    db.batch_execute(&format!("DROP TRIGGER refuse ON {q}.error_groups")).await.unwrap();
    e.export(batch).await.expect("the retry succeeds");
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {q}.trace_spans")).await, 30);
    assert_eq!(count(&db, &format!("SELECT sum(occurrences)::int8 FROM {q}.error_groups")).await, 1);
}
