//! The `llm_cost` processor in the real binary: spans posted over OTLP/HTTP
//! with GenAI attributes leave the pipeline with their cost, in the `file`
//! exporter's OTLP/JSON and in `llm_call_metrics.cost_usd` of the `postgres`
//! exporter (on the machine's PostgreSQL, in a schema of the test's own).

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie_core::otlp::{kv_double, kv_int, kv_str};
use magpie_core::proto::common::v1::KeyValue;
use magpie_core::proto::trace::v1::span::SpanKind;
use magpie_tests::spans::{post, request, span};
use magpie_tests::{RunningAgent, http, postgres_client, postgres_url, read_otlp_lines, unique};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn chat(name: &str, attributes: Vec<KeyValue>) -> magpie_core::proto::trace::v1::Span {
    span(name, SpanKind::Client, 800, false, attributes)
}

/// The spans to price and what each must cost (`None`: no cost attribute).
fn calls() -> Vec<(magpie_core::proto::trace::v1::Span, Option<f64>)> {
    vec![
        // The reference chatbot's model, counts sent as strings:
        // 10,000 in at $0.20 and 2,000 out at $0.50 per million.
        (
            chat(
                "chat grok-4-1-fast-reasoning",
                vec![
                    kv_str("gen_ai.provider.name", "x_ai"),
                    kv_str("gen_ai.request.model", "grok-4-1-fast-reasoning"),
                    kv_str("gen_ai.usage.input_tokens", "10000"),
                    kv_str("gen_ai.usage.output_tokens", "2000"),
                    kv_str("enduser.id", "ana@example.com"),
                ],
            ),
            Some(0.003),
        ),
        // Older names and a dated snapshot, with a cache hit: 60,000 fresh at
        // $3, 40,000 cached at $0.30, 2,000 out at $15 per million.
        (
            chat(
                "chat claude",
                vec![
                    kv_str("gen_ai.system", "anthropic"),
                    kv_str("gen_ai.request.model", "claude-sonnet-4"),
                    kv_str("gen_ai.response.model", "claude-sonnet-4-20250514"),
                    kv_int("gen_ai.usage.prompt_tokens", 100_000),
                    kv_int("gen_ai.usage.completion_tokens", 2_000),
                    kv_int("gen_ai.usage.cache_read.input_tokens", 40_000),
                ],
            ),
            Some(0.222),
        ),
        // A configured price: 1,000,000 in at $0.25 and 100,000 out at $1.
        (
            chat(
                "chat house model",
                vec![
                    kv_str("gen_ai.provider.name", "house"),
                    kv_str("gen_ai.request.model", "house-llm-2026-11-01"),
                    kv_int("gen_ai.usage.input_tokens", 1_000_000),
                    kv_int("gen_ai.usage.output_tokens", 100_000),
                ],
            ),
            Some(0.35),
        ),
        // No price for this model: no cost, counted and logged.
        (
            chat(
                "chat mystery",
                vec![
                    kv_str("gen_ai.provider.name", "elsewhere"),
                    kv_str("gen_ai.request.model", "mystery-1"),
                    kv_int("gen_ai.usage.input_tokens", 10),
                    kv_int("gen_ai.usage.output_tokens", 10),
                ],
            ),
            None,
        ),
        // A cost the app computed itself is kept.
        (
            chat(
                "chat priced by the app",
                vec![
                    kv_str("gen_ai.provider.name", "x_ai"),
                    kv_str("gen_ai.request.model", "grok-3-mini"),
                    kv_int("gen_ai.usage.input_tokens", 10),
                    kv_int("gen_ai.usage.output_tokens", 10),
                    kv_double("gen_ai.usage.cost_usd", 0.5),
                ],
            ),
            Some(0.5),
        ),
    ]
}

/// A schema name of the test's own on the machine's PostgreSQL, dropped at the end.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .arg(postgres_url())
            .args(["-q", "-c", &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0)])
            .env("PGSSLMODE", "disable")
            .output();
    }
}

/// The cost attribute of every span in the file exporter's output, by span name.
fn costs_in_file(path: &std::path::Path) -> BTreeMap<String, Option<f64>> {
    let mut out = BTreeMap::new();
    if !path.exists() {
        return out;
    }
    for line in read_otlp_lines(path) {
        for rs in line["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let cost = s["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|kv| kv["key"] == "gen_ai.usage.cost_usd")
                        .map(|kv| match &kv["value"]["doubleValue"] {
                            Value::Number(n) => n.as_f64().unwrap(),
                            other => panic!("the cost is not a double: {kv} ({other})"),
                        });
                    out.insert(s["name"].as_str().unwrap().to_string(), cost);
                }
            }
        }
    }
    out
}

fn assert_costs(got: &BTreeMap<String, Option<f64>>, expected: &[(String, Option<f64>)], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: {got:?}");
    for (name, want) in expected {
        let have = got.get(name).unwrap_or_else(|| panic!("{what}: no span `{name}` in {got:?}"));
        match (have, want) {
            (Some(h), Some(w)) => assert!((h - w).abs() < 1e-9, "{what}: `{name}` cost {h}, expected {w}"),
            _ => assert_eq!(have, want, "{what}: `{name}`"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_leave_the_pipeline_priced_in_the_file_and_in_postgres() {
    let schema = Schema(unique("magpie_llm_cost").replace('-', "_"));
    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: \"127.0.0.1:0\"}}\n      http: {{endpoint: \"127.0.0.1:0\"}}\n\
         processors:\n  llm_cost:\n    prices:\n      house-llm: {{input: 0.25, output: 1}}\n  batch: {{timeout: 100ms}}\n\
         exporters:\n  file: {{path: \"{{dir}}/spans.jsonl\"}}\n  postgres:\n    dsn: \"{dsn}\"\n    schema: {schema}\n    tls: {{mode: disable}}\n\
         service:\n  telemetry: {{metrics: {{address: \"127.0.0.1:0\"}}}}\n  pipelines:\n    traces: {{receivers: [otlp], processors: [llm_cost, batch], exporters: [file, postgres]}}\n",
        dsn = postgres_url(),
        schema = schema.0,
    );
    let mut agent = RunningAgent::start(&yaml);
    let (spans, expected): (Vec<_>, Vec<_>) = calls().into_iter().unzip();
    let expected: Vec<(String, Option<f64>)> =
        spans.iter().map(|s| s.name.clone()).zip(expected.iter().copied()).collect();
    post(&http(), &agent.otlp_http_address(), request("chatbot", spans)).await;

    // The file exporter's OTLP/JSON.
    let file = agent.dir.path().join("spans.jsonl");
    let t0 = Instant::now();
    let mut got = costs_in_file(&file);
    while got.len() < expected.len() && t0.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = costs_in_file(&file);
    }
    assert_costs(&got, &expected, "file exporter");

    // llm_call_metrics.cost_usd (NUMERIC(10,6)).
    let db = postgres_client(&postgres_url()).await;
    let sql = format!(
        "SELECT s.operation_name, l.cost_usd::float8 FROM \"{0}\".llm_call_metrics l \
         JOIN \"{0}\".trace_spans s USING (span_id)",
        schema.0
    );
    let t0 = Instant::now();
    let rows = loop {
        let rows = db.query(sql.as_str(), &[]).await.map(|r| r.len()).unwrap_or(0);
        if rows >= expected.len() || t0.elapsed() > WAIT {
            break db.query(sql.as_str(), &[]).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let in_db: BTreeMap<String, Option<f64>> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_costs(&in_db, &expected, "llm_call_metrics");

    // The unpriced model is logged once, with its provider; the counts at shutdown.
    let line = agent.wait_for_log("no price for this model", WAIT);
    assert!(line.contains("mystery-1") && line.contains("elsewhere"), "{line}");
    // The same counts on /metrics while it runs.
    let metrics = http()
        .get(format!("http://{}/metrics", agent.telemetry_addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (outcome, n) in [("priced", 3), ("unpriced", 1), ("kept", 1)] {
        let line = format!(
            "magpie_processor_items_total{{component=\"llm_cost\",pipeline=\"traces\",outcome=\"{outcome}\"}} {n}\n"
        );
        assert!(metrics.contains(&line), "`{line}` missing from /metrics:\n{metrics}");
    }
    assert!(agent.stop().success());
    let totals = agent.wait_for_log("spans priced since start", WAIT);
    for field in ["priced=3", "unpriced=1", "kept=1"] {
        assert!(totals.contains(field), "`{field}` missing from: {totals}");
    }
    assert_eq!(agent.log().iter().filter(|l| l.contains("no price for this model")).count(), 1);
}
