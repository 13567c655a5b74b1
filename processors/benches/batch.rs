//! The batch processor on its hot path: merging many small OTLP batches and
//! splitting large ones, measured in spans per second.
//!
//! Run: `cargo bench -p magpie-processors --bench batch`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use magpie_core::otlp::testdata;
use magpie_core::{Batch, Processor};
use magpie_processors::batch::{BatchConfig, BatchProcessor};
use std::hint::black_box;
use std::time::Duration;

fn merge_small(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    let inputs: Vec<Batch> = (0..400).map(|_| Batch::Traces(testdata::spans(1, 25))).collect();
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("merge 400 × 25 spans into 8192-span batches", |b| {
        b.iter_batched(
            || inputs.clone(),
            |inputs| {
                let mut p = BatchProcessor::new(&BatchConfig::default());
                let mut out = Vec::new();
                for i in inputs {
                    p.process(i, &mut out);
                }
                p.flush(&mut out);
                black_box(out)
            },
            BatchSize::LargeInput,
        );
    });
    let big = Batch::Traces(testdata::spans(10, 1000));
    let config =
        BatchConfig { send_batch_size: 512, send_batch_max_size: 512, timeout: Duration::from_millis(200) };
    g.bench_function("split 10 000 spans into 512-span batches", |b| {
        b.iter_batched(
            || big.clone(),
            |big| {
                let mut p = BatchProcessor::new(&config);
                let mut out = Vec::new();
                p.process(big, &mut out);
                p.flush(&mut out);
                black_box(out)
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

criterion_group!(benches, merge_small);
criterion_main!(benches);
