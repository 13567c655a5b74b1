//! The `tail_sampling` processor in the real binary: traces with an error,
//! slow traces and ordinary ones, their spans interleaved and split over
//! several OTLP/HTTP requests from two services, through `errors` and `slow`
//! policies into the `file` exporter. Exactly the error and slow traces come
//! out, each whole, after `decision_wait`; a late span follows its trace's
//! decision; `/metrics` counts every span by outcome.

#![allow(clippy::unwrap_used)]

use magpie_core::otlp::{hex, kv_str, now_unix_nanos};
use magpie_core::proto::collector::trace::v1::ExportTraceServiceRequest;
use magpie_core::proto::resource::v1::Resource;
use magpie_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status::StatusCode};
use magpie_tests::spans::post;
use magpie_tests::{RunningAgent, http, read_otlp_lines};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const PER_KIND: u8 = 10;
const SPANS: u8 = 3;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Error,
    Slow,
    Ordinary,
}

fn trace_id(kind: Kind, i: u8) -> Vec<u8> {
    let mut id = vec![0x7a; 16];
    id[0] = kind as u8 + 1;
    id[15] = i;
    id
}

/// Span `s` of trace `i` of `kind`: the error trace's error is on its last
/// span, the slow trace's root lasts 900 ms, everything else 20 ms.
fn span(kind: Kind, i: u8, s: u8, now: u64) -> Span {
    let ms = if kind == Kind::Slow && s == 0 { 900 } else { 20 };
    let error = kind == Kind::Error && s == SPANS - 1;
    Span {
        trace_id: trace_id(kind, i),
        span_id: vec![kind as u8 + 1, i, s, 0, 0, 0, 0, 1],
        name: format!("span {s}"),
        start_time_unix_nano: now - ms * 1_000_000,
        end_time_unix_nano: now,
        status: Some(Status {
            code: if error { StatusCode::Error } else { StatusCode::Unset } as i32,
            message: String::new(),
        }),
        ..Default::default()
    }
}

/// One request: spans from the `api` and `worker` services.
fn request(api: Vec<Span>, worker: Vec<Span>) -> String {
    let resource = |service: &str, spans: Vec<Span>| ResourceSpans {
        resource: Some(Resource { attributes: vec![kv_str("service.name", service)], ..Default::default() }),
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        schema_url: String::new(),
    };
    let req =
        ExportTraceServiceRequest { resource_spans: vec![resource("api", api), resource("worker", worker)] };
    serde_json::to_string(&req).unwrap()
}

async fn outcomes(agent: &RunningAgent) -> BTreeMap<String, u64> {
    let text = http()
        .get(format!("http://{}/metrics", agent.telemetry_addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = "magpie_processor_items_total{component=\"tail_sampling\",pipeline=\"traces\",outcome=\"";
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| l.split_once("\"} "))
        .map(|(k, v)| (k.to_string(), v.trim().parse().unwrap()))
        .collect()
}

async fn wait_for(agent: &RunningAgent, outcome: &str, n: u64) -> BTreeMap<String, u64> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let o = outcomes(agent).await;
        if o.get(outcome).copied().unwrap_or(0) >= n || Instant::now() > until {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_and_slow_traces_are_kept_whole_and_the_rest_dropped() {
    let yaml = "receivers:\n  otlp:\n    protocols:\n      http: {endpoint: \"127.0.0.1:0\"}\n\
         processors:\n  tail_sampling:\n    decision_wait: 2s\n    policies:\n\
         \x20     - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n\
         \x20     - {name: slow, type: latency, latency: {threshold_ms: 500}}\n\
         exporters:\n  file: {path: \"{dir}/spans.jsonl\"}\n\
         service:\n  telemetry: {metrics: {address: \"127.0.0.1:0\"}}\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [file]}\n";
    let mut agent = RunningAgent::start(yaml);
    let client = http();
    let addr = agent.otlp_http_address();
    let kinds = [Kind::Error, Kind::Slow, Kind::Ordinary];
    let now = now_unix_nanos();
    // Request s carries span s of every trace, kinds interleaved; the root
    // spans come from `api`, the others from `worker`.
    for s in 0..SPANS {
        let spans: Vec<Span> =
            (0..PER_KIND).flat_map(|i| kinds.iter().map(move |k| span(*k, i, s, now))).collect();
        let body = if s == 0 { request(spans, Vec::new()) } else { request(Vec::new(), spans) };
        post(&client, &addr, body).await;
    }
    let kept_spans = 2 * u64::from(PER_KIND) * u64::from(SPANS);
    let o = wait_for(&agent, "sampled", kept_spans).await;
    assert_eq!(o.get("sampled"), Some(&kept_spans), "{o:?}");
    assert_eq!(o.get("not_sampled"), Some(&(u64::from(PER_KIND) * u64::from(SPANS))), "{o:?}");

    // Late spans: one for a kept trace passes at once, one for a dropped trace is dropped.
    let late = |kind| {
        let mut s = span(kind, 0, 7, now_unix_nanos());
        s.span_id[2] = 7;
        s
    };
    post(&client, &addr, request(vec![late(Kind::Error), late(Kind::Ordinary)], Vec::new())).await;
    let o = wait_for(&agent, "late_dropped", 1).await;
    // (A count never reported is absent from /metrics: zero.)
    for (outcome, n) in [("late_sampled", 1), ("late_dropped", 1), ("decided_early", 0)] {
        assert_eq!(o.get(outcome).copied().unwrap_or(0), n, "{outcome}: {o:?}");
    }

    assert!(agent.stop().success());
    let mut per_trace: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for line in read_otlp_lines(&agent.dir.path().join("spans.jsonl")) {
        for rs in line["resourceSpans"].as_array().into_iter().flatten() {
            let service =
                rs["resource"]["attributes"][0]["value"]["stringValue"].as_str().unwrap().to_string();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let name = s["name"].as_str().unwrap().to_string();
                    per_trace
                        .entry(s["traceId"].as_str().unwrap().to_string())
                        .or_default()
                        .insert((service.clone(), name));
                }
            }
        }
    }
    let expected: BTreeSet<String> = [Kind::Error, Kind::Slow]
        .iter()
        .flat_map(|k| (0..PER_KIND).map(move |i| hex(&trace_id(*k, i))))
        .collect();
    assert_eq!(
        per_trace.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "exactly the error and slow traces"
    );
    let whole: BTreeSet<(String, String)> = (0..SPANS)
        .map(|s| (if s == 0 { "api" } else { "worker" }.to_string(), format!("span {s}")))
        .collect();
    for (id, spans) in &per_trace {
        let mut want = whole.clone();
        if *id == hex(&trace_id(Kind::Error, 0)) {
            want.insert(("api".into(), "span 7".into()));
        }
        assert_eq!(spans, &want, "trace {id} is not whole, or lost its service");
    }
}
