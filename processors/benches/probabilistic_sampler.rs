//! The `probabilistic_sampler` processor on its hot path: a decision for
//! every span of a traces batch (and, for kept spans, the rewritten W3C
//! tracestate), in spans per second, in each mode at 10%.
//!
//! Run: `cargo bench -p magpie-processors --bench probabilistic_sampler`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use magpie_core::config::{Node, from_node};
use magpie_core::otlp::testdata;
use magpie_core::{Batch, ComponentId, Processor};
use magpie_processors::probabilistic_sampler::{ProbabilisticSamplerConfig, ProbabilisticSamplerProcessor};
use std::hint::black_box;

fn sample(c: &mut Criterion) {
    // 1,000 spans with random trace ids, as SDKs make them (testdata's are sequential).
    let mut resources = testdata::spans(1, 1000);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for span in resources.iter_mut().flat_map(|r| &mut r.scope_spans).flat_map(|s| &mut s.spans) {
        span.trace_id = [next().to_be_bytes(), next().to_be_bytes()].concat();
    }
    let input = Batch::Traces(resources);
    let mut g = c.benchmark_group("probabilistic_sampler");
    g.throughput(Throughput::Elements(1000));
    for mode in ["hash_seed", "proportional", "equalizing"] {
        let yaml = format!("{{sampling_percentage: 10, mode: {mode}}}");
        let node = Node::parse(&yaml, "bench.yaml").expect("yaml");
        let (config, _) = from_node::<ProbabilisticSamplerConfig>(&node, "processors.probabilistic_sampler")
            .expect("config");
        g.bench_function(format!("1,000 spans at 10%, {mode}"), |b| {
            let mut p =
                ProbabilisticSamplerProcessor::new(&config, &ComponentId::new("probabilistic_sampler", None));
            b.iter_batched(
                || input.clone(),
                |batch| {
                    let mut out = Vec::with_capacity(1);
                    p.process(batch, &mut out);
                    black_box(out)
                },
                BatchSize::LargeInput,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, sample);
criterion_main!(benches);
