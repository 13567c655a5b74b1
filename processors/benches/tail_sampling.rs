//! The `tail_sampling` processor's hot path: 1,000 traces of 10 spans each
//! (from 2 services, spans of a trace spread over both) go in, are held, and
//! are decided at `decision_wait` by a `status_code`, a `latency` and a
//! `probabilistic` policy; the kept ones come out regrouped. In spans per
//! second, `process` and the decision together.
//!
//! Run: `cargo bench -p magpie-processors --bench tail_sampling`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use magpie_core::config::{Node, from_node};
use magpie_core::otlp::kv_str;
use magpie_core::proto::resource::v1::Resource;
use magpie_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status::StatusCode};
use magpie_core::{Batch, ComponentId};
use magpie_processors::tail_sampling::{TailSamplingConfig, TailSamplingProcessor};
use std::hint::black_box;
use std::time::{Duration, Instant};

const TRACES: u64 = 1_000;
const SPANS: u64 = 10;

fn input() -> Batch {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let ids: Vec<Vec<u8>> =
        (0..TRACES).map(|_| [next().to_be_bytes(), next().to_be_bytes()].concat()).collect();
    let start = 1_700_000_000_000_000_000u64;
    // One trace in ten ends in an error, one in ten lasts 2 s, the rest 40 ms.
    let span = |t: u64, s: u64| Span {
        trace_id: ids[t as usize].clone(),
        span_id: (t * SPANS + s + 1).to_be_bytes().to_vec(),
        name: format!("span {s}"),
        start_time_unix_nano: start,
        end_time_unix_nano: start + if t % 10 == 1 && s == 0 { 2_000_000_000 } else { 40_000_000 },
        attributes: vec![kv_str("http.route", "/api/chat")],
        status: Some(Status {
            code: if t.is_multiple_of(10) && s == SPANS - 1 { StatusCode::Error } else { StatusCode::Unset }
                as i32,
            message: String::new(),
        }),
        ..Default::default()
    };
    let resource = |service: &str, spans: Vec<Span>| ResourceSpans {
        resource: Some(Resource { attributes: vec![kv_str("service.name", service)], ..Default::default() }),
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        schema_url: String::new(),
    };
    Batch::Traces(vec![
        resource(
            "api",
            (0..TRACES).flat_map(|t| (0..SPANS / 2).map(move |s| (t, s))).map(|(t, s)| span(t, s)).collect(),
        ),
        resource(
            "worker",
            (0..TRACES)
                .flat_map(|t| (SPANS / 2..SPANS).map(move |s| (t, s)))
                .map(|(t, s)| span(t, s))
                .collect(),
        ),
    ])
}

fn sample(c: &mut Criterion) {
    let yaml = "decision_wait: 10s\npolicies:\n\
        - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n\
        - {name: slow, type: latency, latency: {threshold_ms: 1000}}\n\
        - {name: some, type: probabilistic, probabilistic: {sampling_percentage: 10}}\n";
    let node = Node::parse(yaml, "bench.yaml").expect("yaml");
    let (config, _) = from_node::<TailSamplingConfig>(&node, "processors.tail_sampling").expect("config");
    let input = input();
    let mut g = c.benchmark_group("tail_sampling");
    g.throughput(Throughput::Elements(TRACES * SPANS));
    g.bench_function("1,000 traces of 10 spans: hold and decide", |b| {
        b.iter_batched(
            || (input.clone(), TailSamplingProcessor::new(&config, &ComponentId::new("tail_sampling", None))),
            |(batch, mut p)| {
                let now = Instant::now();
                let mut out = Vec::with_capacity(1);
                p.process_at(batch, now, &mut out);
                magpie_core::Processor::on_deadline(&mut p, now + Duration::from_secs(10), &mut out);
                black_box((out, p))
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

criterion_group!(benches, sample);
criterion_main!(benches);
