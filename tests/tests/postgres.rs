//! The `postgres` exporter in the real topology and the real binary: a
//! PostgreSQL restart in the middle of a load loses and duplicates nothing;
//! an agent started while PostgreSQL is down catches up; TLS modes against a
//! server with its own CA; `magpie migrate`; the DSN's password never shows.
//!
//! Outage and TLS tests run throwaway clusters (initdb on a free port); the
//! rest use the machine's PostgreSQL (`MAGPIE_TEST_POSTGRES_URL`).

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie::topology::Topology;
use magpie_core::otlp::{kv_double, kv_int, kv_str, now_unix_nanos};
use magpie_core::output::SendError;
use magpie_core::proto::common::v1::KeyValue;
use magpie_core::proto::resource::v1::Resource;
use magpie_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use magpie_core::testing::source;
use magpie_core::{Batch, ComponentKind, Telemetry};
use magpie_exporters::postgres::connect::{Connector, TlsConfig, TlsMode};
use magpie_tests::{
    TempPostgres, TlsPostgres, magpie_bin, parse, postgres_client, postgres_url, signal, unique,
};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A trace id (16 bytes) or span id (8 bytes) unique for each (`seed`, `i`).
fn id_bytes(seed: u64, i: u64, len: usize) -> Vec<u8> {
    if len == 8 {
        return ((seed << 32) | (i & 0xffff_ffff)).to_be_bytes().to_vec();
    }
    let mut v = seed.to_be_bytes().to_vec();
    v.extend_from_slice(&i.to_be_bytes());
    v
}

/// `requests` chat requests of three spans each (SERVER HTTP, GenAI, internal), ids unique per `seed`.
fn chat_batch(seed: u64, requests: u64) -> Batch {
    let now = now_unix_nanos();
    let mut spans = Vec::new();
    for r in 0..requests {
        let trace = id_bytes(seed, r, 16);
        let span = |i: u64, name: &str, kind: SpanKind, attrs: Vec<KeyValue>| Span {
            trace_id: trace.clone(),
            span_id: id_bytes(seed, r * 3 + i, 8),
            parent_span_id: if i == 0 { vec![] } else { id_bytes(seed, r * 3, 8) },
            name: name.into(),
            kind: kind as i32,
            start_time_unix_nano: now + i,
            end_time_unix_nano: now + 120_000_000,
            attributes: attrs,
            ..Default::default()
        };
        spans.push(span(
            0,
            "POST /api/chat",
            SpanKind::Server,
            vec![
                kv_str("http.method", "POST"),
                kv_str("http.route", "/api/chat"),
                kv_int("http.status_code", 200),
                kv_str("user.email", "ana@example.com"),
            ],
        ));
        spans.push(span(
            1,
            "chat grok-4",
            SpanKind::Client,
            vec![
                kv_str("gen_ai.system", "xai"),
                kv_str("gen_ai.request.model", "grok-4"),
                kv_int("gen_ai.usage.prompt_tokens", 900),
                kv_double("gen_ai.usage.cost_usd", 0.0009),
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

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e:?}")).get(0)
}

/// Waits until `sql` counts `n`, up to `wait`; returns the last count.
async fn wait_count(url: &str, sql: &str, n: i64, wait: Duration) -> i64 {
    let deadline = Instant::now() + wait;
    loop {
        let got = match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                c.query_one(sql, &[]).await.map(|r| r.get::<_, i64>(0)).unwrap_or(-1)
            }
            Err(_) => -1,
        };
        if got == n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pipeline_yaml(src: &str, dsn: &str) -> String {
    format!(
        "receivers: {{test_source: {{name: {src}}}}}\n\
         exporters:\n  postgres:\n    dsn: \"{dsn}\"\n    tls: {{mode: disable}}\n    connect_timeout: 2s\n    timeout: 10s\n\
         \x20   sending_queue: {{queue_size: 4}}\n    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms}}\n\
         service:\n  pipelines:\n    traces: {{receivers: [test_source], exporters: [postgres]}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_load_loses_and_duplicates_nothing() {
    const BATCHES: u64 = 200;
    const REQUESTS: u64 = 10;
    let pg = Arc::new(TempPostgres::init(""));
    pg.start();
    let src = unique("src");
    let config = parse(&pipeline_yaml(&src, &pg.url())).unwrap_or_else(|e| panic!("{e:?}"));
    let telemetry = Telemetry::new();
    let topology = Topology::start(&config, &telemetry).await.expect("topology starts");
    let handle = source(&src);

    let mut refused = 0u64;
    let mut outage = None;
    for b in 0..BATCHES {
        if b == 60 {
            let pg = pg.clone();
            outage = Some(tokio::task::spawn_blocking(move || {
                pg.stop();
                std::thread::sleep(Duration::from_secs(3));
                pg.start();
            }));
        }
        // Like an OTLP client: a refused batch (full pipeline) is sent again.
        loop {
            match handle.send(chat_batch(b, REQUESTS), Duration::from_millis(100)).await {
                Ok(()) => break,
                Err(SendError::Full) => {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("send failed: {e:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    outage.expect("the outage ran").await.unwrap();

    let spans = (BATCHES * REQUESTS * 3) as i64;
    let url = pg.url();
    let got =
        wait_count(&url, "SELECT count(*) FROM enterprise.trace_spans", spans, Duration::from_secs(60)).await;
    assert_eq!(got, spans, "every span arrives");
    let db = postgres_client(&url).await;
    assert_eq!(
        count(&db, "SELECT count(DISTINCT span_id) FROM enterprise.trace_spans").await,
        spans,
        "exactly once"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM enterprise.request_metrics").await,
        (BATCHES * REQUESTS) as i64
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM enterprise.llm_call_metrics").await,
        (BATCHES * REQUESTS) as i64
    );
    assert_eq!(count(&db, "SELECT count(*) FROM enterprise.magpie_batches").await, BATCHES as i64);
    assert_eq!(count(&db, "SELECT count(*) FROM enterprise.dead_letter").await, 0);
    assert!(refused > 0, "while PostgreSQL was down the full queue pushed back to the source");

    let report = topology.shutdown(Duration::from_secs(20)).await;
    assert_eq!(report.undelivered_items, 0);
    let stats = telemetry
        .entries()
        .into_iter()
        .find(|e| e.kind == ComponentKind::Exporter && e.id.to_string() == "postgres")
        .unwrap()
        .stats
        .snapshot();
    assert_eq!((stats.exported, stats.failed, stats.dropped), (spans as u64, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_while_postgres_is_down_catches_up() {
    let pg = TempPostgres::init("");
    let src = unique("src");
    let config = parse(&pipeline_yaml(&src, &pg.url())).unwrap_or_else(|e| panic!("{e:?}"));
    let telemetry = Telemetry::new();
    let topology = Topology::start(&config, &telemetry).await.expect("the agent starts without its database");
    let handle = source(&src);
    for b in 0..5 {
        handle.send(chat_batch(b, 4), Duration::from_secs(5)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.start();
    let got =
        wait_count(&pg.url(), "SELECT count(*) FROM enterprise.trace_spans", 60, Duration::from_secs(30))
            .await;
    assert_eq!(got, 60);
    let db = postgres_client(&pg.url()).await;
    let latest = i64::from(magpie_exporters::postgres::schema::latest_version());
    assert_eq!(count(&db, "SELECT max(version)::int8 FROM enterprise.schema_migrations").await, latest);
    assert_eq!(topology.shutdown(Duration::from_secs(10)).await.undelivered_items, 0);
}

#[tokio::test]
async fn tls_modes_against_a_server_with_its_own_ca() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let TlsPostgres { pg, ca_file, other_ca_file: other_file, .. } = &TlsPostgres::start(&["db.internal"]);

    let by_name =
        format!("host=db.internal hostaddr=127.0.0.1 port={} user=postgres dbname=postgres", pg.port);
    let by_ip = format!("host=127.0.0.1 port={} user=postgres dbname=postgres", pg.port);
    let cases: Vec<(&str, &String, TlsMode, Option<&std::path::Path>, bool)> = vec![
        ("verify-full, our CA, matching name", &by_name, TlsMode::VerifyFull, Some(ca_file), true),
        (
            "verify-full, our CA, an IP the certificate does not name",
            &by_ip,
            TlsMode::VerifyFull,
            Some(ca_file),
            false,
        ),
        ("verify-ca ignores the name", &by_ip, TlsMode::VerifyCa, Some(ca_file), true),
        ("verify-full, another CA", &by_name, TlsMode::VerifyFull, Some(other_file), false),
        ("verify-ca, another CA", &by_ip, TlsMode::VerifyCa, Some(other_file), false),
        ("require encrypts without verifying", &by_ip, TlsMode::Require, None, true),
    ];
    for (what, dsn, mode, ca, ok) in cases {
        let tls = TlsConfig { mode: Some(mode), ca_file: ca.map(|p| p.to_path_buf()) };
        let connector = Connector::new(dsn, &tls, Duration::from_secs(5)).unwrap();
        match connector.connect().await {
            Ok(client) => {
                assert!(ok, "{what}: connected but should have been refused");
                let ssl: bool = client
                    .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
                    .await
                    .unwrap()
                    .get(0);
                assert!(ssl, "{what}: the session is encrypted");
            }
            Err(e) => assert!(!ok, "{what}: {e}"),
        }
    }

    // The libpq spelling in the DSN works end to end through the exporter.
    let dsn = format!(
        "postgres://postgres@db.internal:{}/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
        pg.port,
        ca_file.display()
    );
    let src = unique("src");
    let yaml = format!(
        "receivers: {{test_source: {{name: {src}}}}}\nexporters:\n  postgres:\n    dsn: \"{dsn}\"\n\
         service:\n  pipelines:\n    traces: {{receivers: [test_source], exporters: [postgres]}}\n"
    );
    let config = parse(&yaml).unwrap_or_else(|e| panic!("{e:?}"));
    let topology = Topology::start(&config, &Telemetry::new()).await.unwrap();
    source(&src).send(chat_batch(1, 2), Duration::from_secs(5)).await.unwrap();
    let got =
        wait_count(&pg.url(), "SELECT count(*) FROM enterprise.trace_spans", 6, Duration::from_secs(20))
            .await;
    assert_eq!(got, 6);
    topology.shutdown(Duration::from_secs(10)).await;
}

/// A schema name of the test's own on the machine's PostgreSQL, dropped at the end.
struct Schema(String);

impl Schema {
    fn new() -> Schema {
        Schema(unique("magpie_bin").replace('-', "_"))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(postgres_url())
            .args(["-q", "-c", &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0)])
            .env("PGSSLMODE", "disable")
            .output();
    }
}

#[test]
fn magpie_migrate_sets_up_the_schema_once_even_when_run_twice_at_once() {
    let schema = Schema::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pg.yaml");
    std::fs::write(
        &file,
        format!(
            "receivers: {{hostmetrics: {{}}}}\nexporters:\n  debug: {{}}\n  postgres/analytics:\n    dsn: ${{env:DATABASE_URL}}\n    schema: {}\n    tls: {{mode: disable}}\n\
             service:\n  pipelines:\n    metrics: {{receivers: [hostmetrics], exporters: [debug, postgres/analytics]}}\n",
            schema.0
        ),
    )
    .unwrap();
    let run = || {
        Command::new(magpie_bin())
            .args(["migrate", "--config"])
            .arg(&file)
            .env("DATABASE_URL", postgres_url())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (run(), run());
    let outs: Vec<String> = [a, b]
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).to_string()
        })
        .collect();
    assert_eq!(
        outs.iter().filter(|o| o.contains("applied 1, 2, 3, 4")).count(),
        1,
        "one run applies the migrations, the other finds them done: {outs:?}"
    );
    assert!(
        outs.iter().all(|o| o.starts_with("postgres/analytics: schema ") && o.contains("at version 4")),
        "{outs:?}"
    );
    let again = run().wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("no migration needed"));

    let down = Command::new(magpie_bin())
        .args(["migrate", "--config"])
        .arg(&file)
        .env("DATABASE_URL", "postgres://postgres:hunter2@127.0.0.1:1/test?connect_timeout=2")
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(err.contains("error: postgres/analytics: connecting to postgres at 127.0.0.1:1"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn the_dsn_password_never_reaches_logs_or_print_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pg.yaml");
    std::fs::write(
        &file,
        "receivers: {hostmetrics: {collection_interval: 1s}}\nexporters:\n  postgres:\n    dsn: ${env:DATABASE_URL}\n    connect_timeout: 1s\n\
         service:\n  pipelines:\n    metrics: {receivers: [hostmetrics], exporters: [postgres]}\n  telemetry:\n    metrics: {address: 127.0.0.1:0}\n  shutdown_timeout: 1s\n",
    )
    .unwrap();
    let dsn = "postgres://postgres:hunter2@127.0.0.1:1/test";
    let printed = Command::new(magpie_bin())
        .arg("print-config")
        .arg("-c")
        .arg(&file)
        .env("DATABASE_URL", dsn)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(text.contains("dsn: \"<redacted>\""), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    let child = Command::new(magpie_bin())
        .arg("-c")
        .arg(&file)
        .env("DATABASE_URL", dsn)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    signal(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("127.0.0.1:1"), "the logs name the database's address:\n{logs}");
    assert!(logs.contains("will retry"), "failed exports are retried:\n{logs}");
    assert!(!logs.contains("hunter2"), "{logs}");
}

#[test]
fn postgres_defaults_block_and_never_give_up_and_bad_settings_are_reported() {
    let base = "receivers: {test_source: {name: x}}\nexporters:\n  postgres:\n    dsn: postgres://u:hunter2@db/app\n";
    let tail = "service: {pipelines: {traces: {receivers: [test_source], exporters: [postgres]}}}\n";
    let c = parse(&format!("{base}{tail}")).unwrap();
    let e = &c.exporters.values().next().unwrap().config;
    assert_eq!(e.when_full, magpie_core::queue::WhenFull::Block);
    assert_eq!(e.retry.max_elapsed_time, Duration::ZERO, "a durable store never drops a batch by default");
    let c = parse(&format!("{base}    retry_on_failure: {{max_interval: 10s}}\n{tail}")).unwrap();
    let e = &c.exporters.values().next().unwrap().config;
    assert_eq!((e.retry.max_elapsed_time, e.retry.max_interval), (Duration::ZERO, Duration::from_secs(10)));

    let bad = format!(
        "{base}    schema: Enterprise-1\n    retention: 2h\n    pool_size: 0\n    tables: {{trace_spans: false, request_metrics: false, llm_call_metrics: false, system_metrics: false, log_records: false, error_groups: false}}\n{tail}"
    );
    let problems = parse(&bad).expect_err("invalid");
    let text: String = problems.iter().map(|p| format!("{p}\n")).collect();
    for fragment in [
        "schema `Enterprise-1`",
        "retention must be 0s",
        "pool_size must be at least 1",
        "every table is disabled",
    ] {
        assert!(text.contains(fragment), "missing `{fragment}` in:\n{text}");
    }
    let problems = parse(&format!(
        "receivers: {{test_source: {{name: x}}}}\nexporters:\n  postgres:\n    dsn: \"postgres://u:hunter2@db/app?sslmode=sometimes\"\n{tail}"
    ))
    .expect_err("invalid");
    let text: String = problems.iter().map(|p| format!("{p}\n")).collect();
    assert!(text.contains("exporters.postgres") && text.contains("sslmode `sometimes`"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
