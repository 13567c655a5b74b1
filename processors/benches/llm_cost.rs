//! The `llm_cost` processor on its hot path: every span of a traces batch is
//! looked at, and the GenAI ones among them are priced, in spans per second.
//! The batch is 1,000 spans of which one in five is an LLM call, with model
//! names that take each path of the price lookup (exact, dated snapshot,
//! routing prefix, unknown).
//!
//! Run: `cargo bench -p magpie-processors --bench llm_cost`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use magpie_core::config::{Node, from_node};
use magpie_core::otlp::{kv_int, kv_str, testdata};
use magpie_core::{Batch, ComponentId, Processor};
use magpie_processors::llm_cost::{LlmCostConfig, LlmCostProcessor};
use std::hint::black_box;

const MODELS: &[&str] = &[
    "grok-4",
    "claude-sonnet-4-20250514",
    "gpt-4o-mini",
    "us.anthropic.claude-sonnet-4-20250514-v1:0",
    "a-model-without-a-price",
];

fn batch() -> Batch {
    let mut resources = testdata::spans(1, 1000);
    for (i, span) in
        resources.iter_mut().flat_map(|r| &mut r.scope_spans).flat_map(|s| &mut s.spans).enumerate()
    {
        if i % 5 == 0 {
            span.attributes.extend([
                kv_str("gen_ai.provider.name", "xai"),
                kv_str("gen_ai.operation.name", "chat"),
                kv_str("gen_ai.request.model", MODELS[(i / 5) % MODELS.len()]),
                kv_int("gen_ai.usage.input_tokens", 1800),
                kv_int("gen_ai.usage.output_tokens", 350),
            ]);
        }
    }
    Batch::Traces(resources)
}

fn price_spans(c: &mut Criterion) {
    let node = Node::parse("{}", "bench.yaml").expect("yaml");
    let (config, _) = from_node::<LlmCostConfig>(&node, "processors.llm_cost").expect("default config");
    let input = batch();
    let mut g = c.benchmark_group("llm_cost");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1,000 spans, 200 of them LLM calls", |b| {
        let mut p = LlmCostProcessor::new(&config, &ComponentId::new("llm_cost", None));
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
    g.finish();
}

criterion_group!(benches, price_spans);
criterion_main!(benches);
