//! The topology end to end, in process: in-memory sources and capture sinks
//! (no network), real queues, processors, retries and shutdown.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie::config::AgentConfig;
use magpie::topology::Topology;
use magpie_core::otlp::testdata;
use magpie_core::output::SendError;
use magpie_core::telemetry::StatsSnapshot;
use magpie_core::testing::{CaptureHandle, SourceHandle, capture, source};
use magpie_core::{Batch, ComponentKind, Telemetry};
use magpie_tests::{parse, unique};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

struct Rig {
    src: SourceHandle,
    telemetry: Telemetry,
    topology: Topology,
}

/// Starts `yaml`, in which `SRC` is replaced by a unique source name and
/// `CAP_x` by unique capture names (returned in order of `captures`).
async fn start(yaml: &str, captures: &[&str]) -> (Rig, Vec<CaptureHandle>) {
    let src_name = unique("src");
    let mut text = yaml.replace("SRC", &src_name);
    let mut handles = Vec::new();
    for c in captures {
        let name = unique(c);
        text = text.replace(c, &name);
        handles.push(capture(&name));
    }
    let config: AgentConfig = parse(&text).unwrap_or_else(|e| panic!("config: {e:?}"));
    let telemetry = Telemetry::new();
    let topology = Topology::start(&config, &telemetry).await.expect("topology starts");
    (Rig { src: source(&src_name), telemetry, topology }, handles)
}

impl Rig {
    fn stats(&self, id: &str, kind: ComponentKind) -> StatsSnapshot {
        let e = self.telemetry.entries();
        e.iter()
            .find(|e| e.id.to_string() == id && e.kind == kind)
            .map(|e| e.stats.snapshot())
            .unwrap_or_default()
    }
}

fn spans(n: usize) -> Batch {
    Batch::Traces(testdata::spans(1, n))
}

#[tokio::test]
async fn fan_out_delivers_everything_to_every_exporter_sharing_one_batch() {
    let (rig, caps) = start(
        "receivers: {test_source: {name: SRC}}\nexporters: {capture/a: {name: CAP_A}, capture/b: {name: CAP_B}}\nservice:\n  pipelines:\n    traces: {receivers: [test_source], exporters: [capture/a, capture/b]}\n",
        &["CAP_A", "CAP_B"],
    )
    .await;
    for _ in 0..20 {
        rig.src.send(spans(5), WAIT).await.unwrap();
    }
    for c in &caps {
        assert!(c.wait_for_items(100, WAIT).await, "got {}", c.items());
    }
    let (a, b) = (caps[0].batches(), caps[1].batches());
    assert_eq!(a.len(), 20);
    assert!(a.iter().zip(&b).all(|(x, y)| Arc::ptr_eq(x, y)), "exporters share one Arc per batch");
    assert_eq!(rig.stats("test_source", ComponentKind::Receiver).accepted, 100);
    assert_eq!(rig.stats("capture/a", ComponentKind::Exporter).exported, 100);
    let report = rig.topology.shutdown(WAIT).await;
    assert_eq!(report.undelivered_items, 0);
    assert_eq!(caps[0].shutdowns(), 1, "exporters are flushed once on shutdown");
}

#[tokio::test]
async fn a_stalled_drop_oldest_exporter_does_not_slow_the_others() {
    let (rig, caps) = start(
        "receivers: {test_source: {name: SRC}}\nexporters:\n  capture/slow:\n    name: CAP_SLOW\n    sending_queue: {queue_size: 2, when_full: drop_oldest}\n  capture/fast: {name: CAP_FAST}\nservice:\n  pipelines:\n    traces: {receivers: [test_source], exporters: [capture/slow, capture/fast]}\n",
        &["CAP_SLOW", "CAP_FAST"],
    )
    .await;
    let (slow, fast) = (&caps[0], &caps[1]);
    slow.stall();
    let t0 = Instant::now();
    for _ in 0..200 {
        rig.src
            .send(spans(1), Duration::from_secs(1))
            .await
            .expect("the pipeline never blocks on a drop_oldest exporter");
    }
    assert!(fast.wait_for_items(200, WAIT).await, "fast got {}", fast.items());
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The stalled exporter holds one batch in flight and two queued; the rest were dropped and counted.
    let dropped = rig.stats("capture/slow", ComponentKind::Exporter).dropped;
    assert!((197..=199).contains(&dropped), "dropped {dropped}");
    slow.release();
    let report = rig.topology.shutdown(WAIT).await;
    assert_eq!(report.undelivered_items, 0);
    assert_eq!(slow.items() + dropped, 200, "every item is either delivered or counted as dropped");
}

#[tokio::test]
async fn a_stalled_blocking_exporter_pushes_back_to_the_receiver() {
    let (rig, caps) = start(
        "receivers: {test_source: {name: SRC}}\nexporters:\n  capture:\n    name: CAP\n    sending_queue: {queue_size: 1, when_full: block}\nservice:\n  pipelines:\n    traces: {receivers: [test_source], exporters: [capture]}\n",
        &["CAP"],
    )
    .await;
    let cap = &caps[0];
    cap.stall();
    let mut accepted = 0;
    let refused = loop {
        match rig.src.send(spans(1), Duration::from_millis(50)).await {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1000, "backpressure never reached the receiver");
    };
    assert_eq!(refused, SendError::Full);
    // Pipeline input (64) + the pipeline's pending push (1) + queue (1) + in flight (1).
    assert!((64..=68).contains(&accepted), "accepted {accepted} before backpressure");
    assert_eq!(rig.stats("test_source", ComponentKind::Receiver).refused, 1);
    cap.release();
    assert!(cap.wait_for_items(accepted, WAIT).await, "got {} of {accepted}", cap.items());
    rig.src.send(spans(1), WAIT).await.expect("accepting again once the exporter catches up");
    rig.topology.shutdown(WAIT).await;
}

#[tokio::test]
async fn shutdown_delivers_everything_in_flight() {
    let (rig, caps) = start(
        "receivers: {test_source: {name: SRC}}\nprocessors:\n  batch: {send_batch_size: 100000, timeout: 1h}\nexporters: {capture: {name: CAP}}\nservice:\n  shutdown_timeout: 5s\n  pipelines:\n    logs: {receivers: [test_source], processors: [batch], exporters: [capture]}\n",
        &["CAP"],
    )
    .await;
    for _ in 0..10 {
        rig.src.send(Batch::Logs(testdata::logs(2, 7)), WAIT).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(caps[0].items(), 0, "the batch processor holds everything");
    let report = rig.topology.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.undelivered_items, 0);
    assert!(report.unfinished.is_empty());
    assert_eq!(caps[0].items(), 140);
    assert_eq!(caps[0].batches().len(), 1, "flushed as one merged batch");
}

#[tokio::test]
async fn items_still_stuck_at_the_deadline_are_counted() {
    let (rig, caps) = start(
        "receivers: {test_source: {name: SRC}}\nexporters: {capture: {name: CAP}}\nservice:\n  pipelines:\n    metrics: {receivers: [test_source], exporters: [capture]}\n",
        &["CAP"],
    )
    .await;
    caps[0].stall();
    for _ in 0..5 {
        rig.src.send(Batch::Metrics(testdata::gauges(1, 3)), WAIT).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    let report = rig.topology.shutdown(Duration::from_millis(300)).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "shutdown honours its deadline");
    assert_eq!(report.undelivered_items, 15, "{report:?}");
    assert!(report.unfinished.iter().any(|t| t == "exporter capture"), "{report:?}");
}

#[tokio::test]
async fn retryable_failures_are_retried_with_backoff() {
    let (rig, caps) = start(
        "receivers: {test_source: {name: SRC}}\nexporters:\n  capture:\n    name: CAP\n    retry_on_failure: {initial_interval: 20ms, max_interval: 50ms, multiplier: 2}\nservice:\n  pipelines:\n    traces: {receivers: [test_source], exporters: [capture]}\n",
        &["CAP"],
    )
    .await;
    caps[0].fail_next(3);
    rig.src.send(spans(4), WAIT).await.unwrap();
    assert!(caps[0].wait_for_items(4, WAIT).await);
    assert_eq!(caps[0].attempts(), 4);
    let s = rig.stats("capture", ComponentKind::Exporter);
    assert_eq!((s.exported, s.failed), (4, 0));
    rig.topology.shutdown(WAIT).await;
}

#[tokio::test]
async fn exhausted_retries_count_the_batch_as_failed() {
    let (rig, caps) = start(
        "receivers: {test_source: {name: SRC}}\nexporters:\n  capture:\n    name: CAP\n    retry_on_failure: {initial_interval: 10ms, max_interval: 10ms, max_elapsed_time: 100ms}\nservice:\n  pipelines:\n    traces: {receivers: [test_source], exporters: [capture]}\n",
        &["CAP"],
    )
    .await;
    caps[0].fail_next(1_000_000);
    rig.src.send(spans(3), WAIT).await.unwrap();
    let t0 = Instant::now();
    while rig.stats("capture", ComponentKind::Exporter).failed == 0 {
        assert!(t0.elapsed() < WAIT, "never gave up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rig.stats("capture", ComponentKind::Exporter).failed, 3);
    assert!(caps[0].attempts() >= 3, "retried before giving up");
    caps[0].fail_next(0);
    rig.topology.shutdown(WAIT).await;
}

#[tokio::test]
async fn connectors_carry_batches_between_pipelines() {
    let (rig, caps) = start(
        "receivers: {test_source: {name: SRC}}\nprocessors: {batch: {send_batch_size: 3, timeout: 0s, send_batch_max_size: 3}}\nconnectors: {forward: {}}\nexporters: {capture: {name: CAP}}\nservice:\n  pipelines:\n    logs/in: {receivers: [test_source], exporters: [forward]}\n    logs/out: {receivers: [forward], processors: [batch], exporters: [capture]}\n",
        &["CAP"],
    )
    .await;
    rig.src.send(Batch::Logs(testdata::logs(1, 10)), WAIT).await.unwrap();
    assert!(caps[0].wait_for_items(10, WAIT).await);
    let sizes: Vec<usize> = caps[0].batches().iter().map(|b| b.item_count()).collect();
    assert_eq!(sizes, vec![3, 3, 3, 1], "the processor of the downstream pipeline ran");
    rig.topology.shutdown(WAIT).await;
}
