//! `Batch`: the unit that flows through every pipeline.
//!
//! A batch is one signal's OTLP resource vector, exactly as it came off the
//! wire or out of a scraper. No conversion happens on the hot path, and a
//! forwarded batch keeps full fidelity. Alerts, which OTLP lacks, are a
//! vector of our own [`Alert`]s.

use crate::alert::Alert;
use crate::id::Signal;
use crate::proto::logs::v1::ResourceLogs;
use crate::proto::metrics::v1::{ResourceMetrics, metric::Data};
use crate::proto::trace::v1::ResourceSpans;

/// One signal's worth of OTLP data, or alerts.
#[derive(Clone, Debug, PartialEq)]
pub enum Batch {
    Traces(Vec<ResourceSpans>),
    Metrics(Vec<ResourceMetrics>),
    Logs(Vec<ResourceLogs>),
    Alerts(Vec<Alert>),
}

impl Batch {
    /// An empty batch of `signal`.
    pub fn empty(signal: Signal) -> Batch {
        match signal {
            Signal::Traces => Batch::Traces(Vec::new()),
            Signal::Metrics => Batch::Metrics(Vec::new()),
            Signal::Logs => Batch::Logs(Vec::new()),
            Signal::Alerts => Batch::Alerts(Vec::new()),
        }
    }

    pub fn signal(&self) -> Signal {
        match self {
            Batch::Traces(_) => Signal::Traces,
            Batch::Metrics(_) => Signal::Metrics,
            Batch::Logs(_) => Signal::Logs,
            Batch::Alerts(_) => Signal::Alerts,
        }
    }

    /// Items in the batch, counted as the Collector counts them: spans,
    /// metric data points, log records; and alerts.
    pub fn item_count(&self) -> usize {
        match self {
            Batch::Traces(rs) => span_count(rs),
            Batch::Metrics(rm) => data_point_count(rm),
            Batch::Logs(rl) => log_record_count(rl),
            Batch::Alerts(a) => a.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.item_count() == 0
    }
}

/// Spans in a resource-spans vector.
pub fn span_count(rs: &[ResourceSpans]) -> usize {
    rs.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum()
}

/// Log records in a resource-logs vector.
pub fn log_record_count(rl: &[ResourceLogs]) -> usize {
    rl.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum()
}

/// Data points in a resource-metrics vector (a metric with no data counts 0).
pub fn data_point_count(rm: &[ResourceMetrics]) -> usize {
    rm.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| metric_point_count(m.data.as_ref()))
        .sum()
}

/// Data points in one metric's data.
pub fn metric_point_count(data: Option<&Data>) -> usize {
    match data {
        None => 0,
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::testdata;

    #[test]
    fn counts_items_per_signal() {
        assert_eq!(Batch::Traces(testdata::spans(2, 3)).item_count(), 6);
        assert_eq!(Batch::Metrics(testdata::gauges(3, 4)).item_count(), 12);
        assert_eq!(Batch::Logs(testdata::logs(1, 5)).item_count(), 5);
        assert!(Batch::empty(Signal::Logs).is_empty());
        assert_eq!(Batch::empty(Signal::Metrics).signal(), Signal::Metrics);
    }
}
