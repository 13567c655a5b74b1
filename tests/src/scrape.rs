//! Helpers for the scraping receivers' integration tests: run a topology
//! from YAML into a capture sink, and read metric values out of the batches.

use crate::{parse, unique};
use magpie::topology::Topology;
use magpie_core::proto::metrics::v1::{Metric, ResourceMetrics, metric, number_data_point};
use magpie_core::testing::{CaptureHandle, capture};
use magpie_core::{Batch, Telemetry};
use std::time::{Duration, Instant};

/// A running topology whose metrics pipeline ends in a capture sink.
pub struct Rig {
    pub topology: Topology,
    pub capture: CaptureHandle,
    /// Batches already handed out by [`Rig::next_batch`].
    seen: usize,
}

/// Starts `receivers_yaml` (the `receivers:` section's entries, indented by
/// two spaces) in a metrics pipeline into a capture sink. `ids` are the
/// receiver ids the pipeline lists.
pub async fn start(receivers_yaml: &str, ids: &[&str]) -> Rig {
    let name = unique("cap");
    let yaml = format!(
        "receivers:\n{receivers_yaml}exporters:\n  capture: {{name: {name}}}\nservice:\n  pipelines:\n    metrics: {{receivers: [{}], exporters: [capture]}}\n",
        ids.join(", ")
    );
    let config = parse(&yaml).unwrap_or_else(|e| panic!("config: {e:?}\n{yaml}"));
    let topology = Topology::start(&config, &Telemetry::new()).await.expect("topology starts");
    Rig { topology, capture: capture(&name), seen: 0 }
}

impl Rig {
    /// The next captured batch, waiting up to `timeout`.
    pub async fn next_batch(&mut self, timeout: Duration) -> Option<Vec<ResourceMetrics>> {
        let deadline = Instant::now() + timeout;
        loop {
            let batches = self.capture.batches();
            if let Some(b) = batches.get(self.seen) {
                self.seen += 1;
                match &**b {
                    Batch::Metrics(m) => return Some(m.clone()),
                    other => panic!("expected metrics, got {other:?}"),
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The first batch from now on that satisfies `pred`, or a panic naming
    /// `what` and showing the last batch seen.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[ResourceMetrics]) -> bool,
    ) -> Vec<ResourceMetrics> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while let Some(b) = self.next_batch(deadline.saturating_duration_since(Instant::now())).await {
            if pred(&b) {
                return b;
            }
            last = Some(b);
        }
        panic!("no batch with {what} within {timeout:?}; last batch: {last:#?}");
    }

    pub async fn stop(self) {
        let report = self.topology.shutdown(Duration::from_secs(10)).await;
        assert_eq!(report.undelivered_items, 0);
    }
}

/// Every metric named `name` in the batch.
pub fn metrics<'a>(batch: &'a [ResourceMetrics], name: &'a str) -> impl Iterator<Item = &'a Metric> {
    batch.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics).filter(move |m| m.name == name)
}

/// The value of the point of `name` whose attributes include every pair in
/// `attrs`, as f64.
pub fn value(batch: &[ResourceMetrics], name: &str, attrs: &[(&str, &str)]) -> Option<f64> {
    metrics(batch, name).find_map(|m| {
        let points = match m.data.as_ref()? {
            metric::Data::Gauge(g) => &g.data_points,
            metric::Data::Sum(s) => &s.data_points,
            _ => return None,
        };
        let p = points.iter().find(|p| {
            attrs
                .iter()
                .all(|(k, v)| magpie_core::otlp::attr_string(&p.attributes, &[k]).as_deref() == Some(*v))
        })?;
        match p.value? {
            number_data_point::Value::AsInt(i) => Some(i as f64),
            number_data_point::Value::AsDouble(d) => Some(d),
        }
    })
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}
