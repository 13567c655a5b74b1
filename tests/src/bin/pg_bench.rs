//! Benchmark of the `postgres` exporter against the machine's PostgreSQL,
//! side by side in one run with the two baselines that matter:
//!
//! - the ceiling: `psql \copy` of the identical rows (the exporter's own
//!   binary COPY encoding, written to a file beforehand);
//! - the floor: one autocommitted `INSERT` per row, as an in-app logger does.
//!
//! It then measures freshness: spans enter the agent's real topology
//! (`test_source` → `batch` → `postgres`) at a fixed rate, a reader polls
//! for them, and the time from a span's entry to its row being visible is
//! reported as p50/p99/max.
//!
//! Usage: `pg_bench [--url URL] [--requests N] [--rounds N] [--insert-rows N]
//! [--rate SPANS_PER_S] [--seconds S] [--batch-timeout DURATION]`. It writes
//! into schema `magpie_bench`, which it drops and recreates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use magpie_core::config::{Node, from_node};
use magpie_core::otlp::{kv_double, kv_int, kv_str, now_unix_nanos};
use magpie_core::proto::common::v1::KeyValue;
use magpie_core::proto::resource::v1::Resource;
use magpie_core::proto::trace::v1::span::{Event, SpanKind};
use magpie_core::proto::trace::v1::status::StatusCode;
use magpie_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use magpie_core::telemetry::ComponentStats;
use magpie_core::{Batch, Exporter, ExporterContext};
use magpie_exporters::postgres::copy::{HEADER, TRAILER, Table};
use magpie_exporters::postgres::mapping::{MappingConfig, TablesConfig};
use magpie_exporters::postgres::{PostgresConfig, PostgresExporter, prepare_rows};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SCHEMA: &str = "magpie_bench";
const SPANS_PER_REQUEST: u64 = 6;

struct Args {
    url: String,
    requests: u64,
    rounds: u32,
    insert_rows: usize,
    rate: u64,
    seconds: u64,
    batch_timeout: String,
}

fn args() -> Args {
    let mut a = Args {
        url: magpie_tests::postgres_url(),
        requests: 50_000,
        rounds: 3,
        insert_rows: 20_000,
        rate: 10_000,
        seconds: 30,
        batch_timeout: "200ms".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--url" => a.url = v,
            "--requests" => a.requests = v.parse().expect("--requests N"),
            "--rounds" => a.rounds = v.parse().expect("--rounds N"),
            "--insert-rows" => a.insert_rows = v.parse().expect("--insert-rows N"),
            "--rate" => a.rate = v.parse().expect("--rate N"),
            "--seconds" => a.seconds = v.parse().expect("--seconds N"),
            "--batch-timeout" => a.batch_timeout = v,
            other => panic!("unknown option {other}"),
        }
    }
    a
}

/// A realistic chat request as the FastAPI app would trace it: the HTTP
/// request, a Redis cache lookup, an embedding call, a pgvector search, the
/// RAG step with a cache-miss event, and the LLM call.
fn request_spans(seed: u64, r: u64, start: u64) -> Vec<Span> {
    let trace: Vec<u8> = [seed.to_be_bytes(), r.to_be_bytes()].concat();
    let id = |i: u64| ((seed << 40) ^ (r * SPANS_PER_REQUEST + i)).to_be_bytes().to_vec();
    let departments = ["warehouse", "sales", "support", "finance"];
    let user = format!("user{}@example.com", r % 97);
    let span = |i: u64, name: &str, kind: SpanKind, offset_ms: u64, dur_ms: u64, attrs: Vec<KeyValue>| Span {
        trace_id: trace.clone(),
        span_id: id(i),
        parent_span_id: if i == 0 { vec![] } else { id(if i == 5 { 0 } else { 4 }) },
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: start + offset_ms * 1_000_000,
        end_time_unix_nano: start + (offset_ms + dur_ms) * 1_000_000,
        attributes: attrs,
        status: Some(Status { code: StatusCode::Unset as i32, message: String::new() }),
        ..Default::default()
    };
    let status = if r % 50 == 49 { 500 } else { 200 };
    let mut rag = span(
        4,
        "rag.search",
        SpanKind::Internal,
        2,
        180,
        vec![
            kv_str("rag.department", departments[(r % 4) as usize]),
            kv_double("rag.threshold", 0.72),
            kv_int("rag.results", 5),
        ],
    );
    rag.events = vec![Event {
        time_unix_nano: start + 3_000_000,
        name: "cache.miss".into(),
        attributes: vec![kv_str(
            "cache.key",
            format!("rag:{:016x}:{}", r * 7919, departments[(r % 4) as usize]),
        )],
        dropped_attributes_count: 0,
    }];
    vec![
        span(
            0,
            "POST /api/chat",
            SpanKind::Server,
            0,
            2400,
            vec![
                kv_str("http.method", "POST"),
                kv_str("http.route", "/api/chat"),
                kv_str("http.target", "/api/chat"),
                kv_str("http.scheme", "https"),
                kv_int("http.status_code", status),
                kv_str(
                    "http.user_agent",
                    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0",
                ),
                kv_str("http.client_ip", format!("10.20.{}.{}", r % 250, (r / 250) % 250)),
                kv_int("http.request_content_length", 512 + (r % 300) as i64),
                kv_int("http.response_content_length", 4096 + (r % 2000) as i64),
                kv_str("user.email", user.clone()),
                kv_str("department", departments[(r % 4) as usize]),
            ],
        ),
        span(
            1,
            "GET",
            SpanKind::Client,
            1,
            1,
            vec![
                kv_str("db.system", "redis"),
                kv_str("db.statement", format!("GET emb:{:016x}", r * 31)),
                kv_str("net.peer.name", "redis"),
            ],
        ),
        span(
            2,
            "POST",
            SpanKind::Client,
            3,
            120,
            vec![
                kv_str("http.method", "POST"),
                kv_str("http.url", "https://api.deepinfra.com/v1/openai/embeddings"),
                kv_int("http.status_code", 200),
                kv_str("gen_ai.operation.name", "embeddings"),
                kv_str("gen_ai.system", "deepinfra"),
                kv_str("gen_ai.request.model", "BAAI/bge-m3"),
                kv_int("gen_ai.usage.input_tokens", 40 + (r % 60) as i64),
            ],
        ),
        span(
            3,
            "SELECT enterprise",
            SpanKind::Client,
            125,
            45,
            vec![
                kv_str("db.system", "postgresql"),
                kv_str("db.name", "enterprise"),
                kv_str(
                    "db.statement",
                    "SELECT id, content, 1 - (embedding <=> $1) AS score FROM enterprise.documents WHERE department_id = $2 ORDER BY embedding <=> $1 LIMIT 5",
                ),
            ],
        ),
        rag,
        span(
            5,
            "chat grok-4-1-fast-reasoning",
            SpanKind::Client,
            185,
            2200,
            vec![
                kv_str("gen_ai.operation.name", "chat"),
                kv_str("gen_ai.system", "xai"),
                kv_str("gen_ai.request.model", "grok-4-1-fast-reasoning"),
                kv_str("gen_ai.response.model", "grok-4-1-fast-reasoning"),
                kv_int("gen_ai.usage.prompt_tokens", 1200 + (r % 800) as i64),
                kv_int("gen_ai.usage.completion_tokens", 300 + (r % 400) as i64),
                kv_double("gen_ai.usage.cost_usd", 0.000_2 * (1 + r % 20) as f64),
                kv_str("user.email", user),
                kv_str("department", departments[(r % 4) as usize]),
                kv_str("query_type", ["procedural", "lookup", "troubleshooting"][(r % 3) as usize]),
            ],
        ),
    ]
}

fn batch(seed: u64, first: u64, requests: u64, start: u64) -> Batch {
    let spans = (first..first + requests).flat_map(|r| request_spans(seed, r, start + r * 1_000)).collect();
    Batch::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                kv_str("service.name", "enterprise-bot"),
                kv_str("service.version", "2.4.1"),
                kv_str("deployment.environment", "production"),
                kv_str("host.name", "railway-7f9c"),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        schema_url: String::new(),
    }])
}

/// Batches of the size the `batch` processor sends (8190 spans), `requests` requests in all.
fn batches(seed: u64, requests: u64) -> Vec<Arc<Batch>> {
    let per = 8192 / SPANS_PER_REQUEST;
    let start = now_unix_nanos() - 3_600 * 1_000_000_000;
    (0..requests.div_ceil(per))
        .map(|i| Arc::new(batch(seed, i * per, per.min(requests - i * per), start)))
        .collect()
}

async fn client(url: &str) -> tokio_postgres::Client {
    magpie_tests::postgres_client(url).await
}

fn exporter_config(url: &str, tables: &str) -> PostgresConfig {
    let yaml =
        format!("dsn: \"{url}\"\nschema: {SCHEMA}\ntls: {{mode: disable}}\npool_size: 2\ntables: {tables}\n");
    from_node::<PostgresConfig>(&Node::parse(&yaml, "bench.yaml").unwrap(), "exporters.postgres").unwrap().0
}

const ONLY_SPANS: &str = "{trace_spans: true, request_metrics: false, llm_call_metrics: false, system_metrics: false, log_records: false}";
const SPAN_TABLES: &str = "{trace_spans: true, request_metrics: true, llm_call_metrics: true, system_metrics: false, log_records: false}";

async fn reset(db: &tokio_postgres::Client) {
    db.batch_execute(&format!(
        "TRUNCATE {SCHEMA}.trace_spans, {SCHEMA}.request_metrics, {SCHEMA}.llm_call_metrics, {SCHEMA}.magpie_batches; CHECKPOINT"
    ))
    .await
    .unwrap();
}

async fn rows_in(db: &tokio_postgres::Client, tables: &[Table]) -> i64 {
    let mut n = 0;
    for t in tables {
        n += db
            .query_one(&format!("SELECT count(*) FROM {SCHEMA}.{}", t.name()), &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
    }
    n
}

/// Writes every batch through the exporter; returns (rows, seconds).
async fn run_exporter(
    url: &str,
    db: &tokio_postgres::Client,
    tables: &str,
    all: &[Arc<Batch>],
    which: &[Table],
) -> (i64, f64) {
    reset(db).await;
    let mut e = PostgresExporter::new(&"postgres/bench".parse().unwrap(), &exporter_config(url, tables));
    let ctx = ExporterContext {
        id: "postgres/bench".parse().unwrap(),
        stats: Arc::new(ComponentStats::default()),
        shutdown: tokio_util::sync::CancellationToken::new(),
    };
    e.start(&ctx).await.unwrap();
    let t0 = Instant::now();
    for b in all {
        e.export(b.clone()).await.expect("export");
    }
    let secs = t0.elapsed().as_secs_f64();
    e.shutdown().await.unwrap();
    (rows_in(db, which).await, secs)
}

/// One binary COPY file per table holding the exporter's own encoding of every batch.
fn write_copy_files(
    dir: &std::path::Path,
    all: &[Arc<Batch>],
    tables: &TablesConfig,
) -> Vec<(Table, std::path::PathBuf, usize)> {
    let mut files: Vec<(Table, std::path::PathBuf, std::fs::File, usize)> = Vec::new();
    for b in all {
        let (_, encoded) = prepare_rows(b, &MappingConfig::default(), tables);
        for enc in encoded {
            if !files.iter().any(|f| f.0 == enc.table) {
                let path = dir.join(format!("{}.copy", enc.table.name()));
                let mut f = std::fs::File::create(&path).unwrap();
                f.write_all(HEADER).unwrap();
                files.push((enc.table, path, f, 0));
            }
            let f = files.iter_mut().find(|f| f.0 == enc.table).unwrap();
            f.2.write_all(&enc.rows(0..enc.len())).unwrap();
            f.3 += enc.len();
        }
    }
    files
        .into_iter()
        .map(|(t, p, mut f, n)| {
            f.write_all(TRAILER).unwrap();
            (t, p, n)
        })
        .collect()
}

/// `psql \copy` of the prepared files; returns (rows, seconds).
async fn run_psql_copy(
    url: &str,
    db: &tokio_postgres::Client,
    files: &[(Table, std::path::PathBuf, usize)],
) -> (i64, f64) {
    reset(db).await;
    let mut cmd = std::process::Command::new("psql");
    cmd.arg(url).args(["-q", "-v", "ON_ERROR_STOP=1"]).env("PGSSLMODE", "disable");
    for (t, path, _) in files {
        cmd.arg("-c").arg(format!(
            "\\copy {SCHEMA}.{} ({}) FROM '{}' WITH (FORMAT binary)",
            t.name(),
            t.columns().join(", "),
            path.display()
        ));
    }
    let t0 = Instant::now();
    let out = cmd.output().expect("psql runs");
    let secs = t0.elapsed().as_secs_f64();
    assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    let tables: Vec<Table> = files.iter().map(|f| f.0).collect();
    (rows_in(db, &tables).await, secs)
}

/// One autocommitted INSERT per `trace_spans` row; returns (rows, seconds).
async fn run_row_by_row(db: &tokio_postgres::Client, all: &[Arc<Batch>], limit: usize) -> (i64, f64) {
    reset(db).await;
    let only = TablesConfig { request_metrics: false, llm_call_metrics: false, ..Default::default() };
    let mut rows = Vec::new();
    for b in all {
        rows.extend(
            magpie_exporters::postgres::mapping::map_batch(b, &MappingConfig::default(), &only, 0).spans,
        );
        if rows.len() >= limit {
            break;
        }
    }
    rows.truncate(limit);
    let stmt = db
        .prepare(&format!(
            "INSERT INTO {SCHEMA}.trace_spans (trace_id, span_id, parent_span_id, operation_name, start_time, end_time, duration_ms,
                 tags, logs, service_name, span_kind, status_code, status_message, resource)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9::text::jsonb, $10, $11, $12, $13, $14::text::jsonb)"
        ))
        .await
        .unwrap();
    let ts = |n: u64| UNIX_EPOCH + Duration::from_nanos(n);
    let t0 = Instant::now();
    for r in &rows {
        db.execute(
            &stmt,
            &[
                &r.trace_id,
                &r.span_id,
                &r.parent_span_id,
                &r.operation_name,
                &ts(r.start_time),
                &ts(r.end_time),
                &r.duration_ms,
                &r.tags,
                &r.logs,
                &r.service_name.as_deref(),
                &r.span_kind,
                &r.status_code,
                &r.status_message,
                &&*r.resource,
            ],
        )
        .await
        .unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    (rows_in(db, &[Table::TraceSpans]).await, secs)
}

/// Spans at `rate` per second through the real topology; a reader polls
/// every `poll` and records, per span, entry → visible.
async fn run_freshness(
    url: &str,
    db: &tokio_postgres::Client,
    rate: u64,
    seconds: u64,
    batch_timeout: &str,
) -> Vec<f64> {
    reset(db).await;
    let src = magpie_tests::unique("bench-src");
    let yaml = format!(
        "receivers: {{test_source: {{name: {src}}}}}\nprocessors: {{batch: {{timeout: {batch_timeout}}}}}\n\
         exporters:\n  postgres:\n    dsn: \"{url}\"\n    schema: {SCHEMA}\n    tls: {{mode: disable}}\n\
         service:\n  pipelines:\n    traces: {{receivers: [test_source], processors: [batch], exporters: [postgres]}}\n  shutdown_timeout: 30s\n"
    );
    let config = magpie_tests::parse(&yaml).unwrap_or_else(|e| panic!("{e:?}"));
    let telemetry = magpie_core::Telemetry::new();
    let topology = magpie::topology::Topology::start(&config, &telemetry).await.unwrap();
    let handle = magpie_core::testing::source(&src);

    // A send every 10 ms of the requests (6 spans each) due by then, so the
    // average is `rate` spans per second.
    let tick = Duration::from_millis(10);
    let total_ticks = seconds * 100;
    let due = |ticks: u64| ticks * rate / 100 / SPANS_PER_REQUEST;
    let sent_spans = due(total_ticks) * SPANS_PER_REQUEST;
    let reader_url = url.to_string();
    let reader = tokio::spawn(async move {
        let db = client(&reader_url).await;
        let mut cursor = SystemTime::now() - Duration::from_secs(1);
        let mut latencies = Vec::new();
        let stmt = db
            .prepare(&format!(
                "SELECT start_time FROM {SCHEMA}.trace_spans WHERE start_time > $1 ORDER BY start_time"
            ))
            .await
            .unwrap();
        while (latencies.len() as u64) < sent_spans {
            let rows = db.query(&stmt, &[&cursor]).await.unwrap();
            let seen = SystemTime::now();
            for r in &rows {
                let t: SystemTime = r.get(0);
                latencies.push(seen.duration_since(t).unwrap_or_default().as_secs_f64() * 1000.0);
                cursor = cursor.max(t);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies
    });
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..total_ticks {
        interval.tick().await;
        let (first, requests) = (due(i), due(i + 1) - due(i));
        if requests == 0 {
            continue;
        }
        // Every span is stamped with the instant it enters the agent, strictly increasing.
        let now = now_unix_nanos();
        let mut b = batch(7, first, requests, now);
        if let Batch::Traces(rs) = &mut b {
            for (k, s) in rs[0].scope_spans[0].spans.iter_mut().enumerate() {
                s.start_time_unix_nano = now + k as u64 * 1_000;
                s.end_time_unix_nano = s.start_time_unix_nano + 1_000_000;
            }
        }
        handle.send(b, Duration::from_secs(5)).await.expect("the pipeline keeps up");
    }
    let latencies = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("every span becomes visible")
        .unwrap();
    topology.shutdown(Duration::from_secs(30)).await;
    latencies
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The median round (by time) of a measurement.
fn median(runs: &[(i64, f64)]) -> (i64, f64) {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
    sorted.get(sorted.len() / 2).copied().unwrap_or((0, f64::NAN))
}

/// `min–max rows/s` over the rounds.
fn range(runs: &[(i64, f64)]) -> String {
    let rates: Vec<f64> = runs.iter().map(|(n, s)| *n as f64 / s).collect();
    let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = rates.iter().copied().fold(0.0, f64::max);
    format!("{lo:.0}–{hi:.0}")
}

async fn throughput(a: &Args, db: &tokio_postgres::Client, all: &[Arc<Batch>], spans: u64) {
    let dir = tempfile::tempdir().unwrap();
    let span_files = write_copy_files(
        &dir.path().join(""),
        all,
        &TablesConfig { request_metrics: false, llm_call_metrics: false, ..Default::default() },
    );
    let typed_dir = dir.path().join("typed");
    std::fs::create_dir_all(&typed_dir).unwrap();
    let typed_files = write_copy_files(&typed_dir, all, &TablesConfig::default());
    let file_bytes: u64 =
        span_files.iter().map(|f| std::fs::metadata(&f.1).map(|m| m.len()).unwrap_or(0)).sum();
    println!("prepared \\copy files: trace_spans {:.1} MB", file_bytes as f64 / 1e6);
    let t0 = Instant::now();
    for b in all {
        std::hint::black_box(prepare_rows(b, &MappingConfig::default(), &TablesConfig::default()));
    }
    let cpu = t0.elapsed().as_secs_f64();
    println!(
        "client side alone (map + encode, three tables, one thread): {cpu:.2}s = {:.0} spans/s",
        spans as f64 / cpu
    );

    let three = [Table::TraceSpans, Table::RequestMetrics, Table::LlmCallMetrics];
    let (mut copy1, mut exp1, mut copy3, mut exp3) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..a.rounds {
        copy1.push(run_psql_copy(&a.url, db, &span_files).await);
        exp1.push(run_exporter(&a.url, db, ONLY_SPANS, all, &[Table::TraceSpans]).await);
        copy3.push(run_psql_copy(&a.url, db, &typed_files).await);
        exp3.push(run_exporter(&a.url, db, SPAN_TABLES, all, &three).await);
        eprintln!(
            "round {}: copy {:.2}s, exporter {:.2}s, copy x3 {:.2}s, exporter x3 {:.2}s",
            round + 1,
            copy1[round as usize].1,
            exp1[round as usize].1,
            copy3[round as usize].1,
            exp3[round as usize].1
        );
    }
    let ins = run_row_by_row(db, all, a.insert_rows).await;

    let rate = |(rows, secs): (i64, f64)| rows as f64 / secs;
    let (c1, e1, c3, e3) = (median(&copy1), median(&exp1), median(&copy3), median(&exp3));
    assert_eq!(c1.0, e1.0, "the exporter and \\copy wrote the same rows into trace_spans");
    assert_eq!(c3.0, e3.0, "the exporter and \\copy wrote the same rows into the three tables");
    let line = |what: &str, (rows, secs): (i64, f64), rounds: &str| {
        println!("{what:<52} {rows:>10} {secs:>9.2} {:>12.0} {rounds:>15}", rows as f64 / secs);
    };
    println!();
    println!(
        "{:<52} {:>10} {:>9} {:>12} {:>15}",
        "into trace_spans", "rows", "seconds", "rows/s", "rows/s range"
    );
    line("psql \\copy of the prepared file (ceiling)", c1, &range(&copy1));
    line("postgres exporter (map + encode + COPY per batch)", e1, &range(&exp1));
    line("one INSERT per row, autocommit (one run)", ins, "");
    println!(
        "exporter = {:.1}% of the \\copy ceiling, {:.0}x the row-by-row rate",
        100.0 * rate(e1) / rate(c1),
        rate(e1) / rate(ins)
    );
    println!();
    println!(
        "{:<52} {:>10} {:>9} {:>12} {:>15}",
        "into trace_spans + request_metrics + llm_call_metrics", "rows", "seconds", "rows/s", "rows/s range"
    );
    line("psql \\copy of the prepared files (ceiling)", c3, &range(&copy3));
    line("postgres exporter", e3, &range(&exp3));
    println!(
        "exporter = {:.1}% of the \\copy ceiling ({:.0} spans/s)",
        100.0 * rate(e3) / rate(c3),
        spans as f64 / e3.1
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = args();
    let db = client(&a.url).await;
    db.batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")).await.unwrap();
    magpie_exporters::postgres::migrate(&exporter_config(&a.url, ONLY_SPANS)).await.unwrap();
    let version: String = db.query_one("SHOW server_version", &[]).await.unwrap().get(0);
    let sync: String = db.query_one("SHOW synchronous_commit", &[]).await.unwrap().get(0);

    let all = batches(1, a.requests);
    let spans = a.requests * SPANS_PER_REQUEST;
    println!(
        "postgres {version} (synchronous_commit={sync}); {} requests = {spans} spans in {} batches of up to 8190 spans; median of {} interleaved rounds",
        a.requests,
        all.len(),
        a.rounds
    );

    if a.rounds > 0 {
        throughput(&a, &db, &all, spans).await;
    }

    if a.seconds > 0 {
        let mut lat = run_freshness(&a.url, &db, a.rate, a.seconds, &a.batch_timeout).await;
        lat.sort_by(f64::total_cmp);
        println!();
        println!(
            "freshness at {} spans/s for {}s through test_source -> batch (timeout {}) -> postgres, reader polling every 5 ms:",
            a.rate, a.seconds, a.batch_timeout
        );
        println!(
            "  {} spans: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (span entered the agent -> row visible)",
            lat.len(),
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        );
    }
    db.batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")).await.unwrap();
}
