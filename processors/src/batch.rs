//! `batch`: merges small batches and splits large ones so exporters see
//! batches of a predictable size, flushing what it holds after `timeout`.
//!
//! The semantics are the Collector's: a batch leaves as soon as
//! `send_batch_size` items are buffered (split into chunks of at most
//! `send_batch_max_size` when that is set), or `timeout` after the first
//! buffered item arrived, whichever comes first. Splitting is exact at item
//! level: a resource or scope whose items straddle a cut is copied into both
//! halves, so nothing is lost or duplicated.

use magpie_core::Batch;
use magpie_core::Processor;
use magpie_core::config::duration;
use magpie_core::proto::logs::v1::{ResourceLogs, ScopeLogs};
use magpie_core::proto::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric::Data};
use magpie_core::proto::trace::v1::{ResourceSpans, ScopeSpans};
use serde::Deserialize;
use std::time::{Duration, Instant};

/// Config of `batch`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Items (spans, data points, log records) that trigger a send; 0 sends on the timeout only.
    pub send_batch_size: usize,
    /// Upper bound of a batch's items; 0 means no bound.
    pub send_batch_max_size: usize,
    /// Longest time an item waits in the buffer; 0s sends every batch at once (splitting only).
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { send_batch_size: 8192, send_batch_max_size: 0, timeout: Duration::from_millis(200) }
    }
}

impl BatchConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.send_batch_max_size > 0 && self.send_batch_max_size < self.send_batch_size {
            out.push(format!(
                "send_batch_max_size ({}) must be 0 or at least send_batch_size ({})",
                self.send_batch_max_size, self.send_batch_size
            ));
        }
        out
    }
}

/// The processor; one instance per pipeline.
pub struct BatchProcessor {
    config: BatchConfig,
    buffer: Option<Batch>,
    buffered: usize,
    deadline: Option<Instant>,
}

impl BatchProcessor {
    pub fn new(config: &BatchConfig) -> Self {
        BatchProcessor { config: config.clone(), buffer: None, buffered: 0, deadline: None }
    }

    fn chunk_size(&self) -> usize {
        if self.config.send_batch_max_size > 0 { self.config.send_batch_max_size } else { usize::MAX }
    }

    /// Emits `n` items from the front of the buffer, in chunks of at most the max size.
    fn emit(&mut self, mut n: usize, out: &mut Vec<Batch>) {
        let chunk = self.chunk_size();
        while n > 0 {
            let Some(buffer) = self.buffer.as_mut() else {
                return;
            };
            let take = n.min(chunk);
            let part =
                if take >= self.buffered { self.buffer.take() } else { Some(take_front_batch(buffer, take)) };
            if let Some(part) = part {
                out.push(part);
            }
            self.buffered -= take.min(self.buffered);
            n -= take;
        }
        if self.buffered == 0 {
            self.buffer = None;
        }
    }

    fn emit_all(&mut self, out: &mut Vec<Batch>) {
        self.emit(self.buffered, out);
        self.buffer = None;
        self.buffered = 0;
        self.deadline = None;
    }
}

impl Processor for BatchProcessor {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        let n = batch.item_count();
        if n == 0 {
            return;
        }
        match self.buffer.as_mut() {
            None => self.buffer = Some(batch),
            Some(buffer) => append(buffer, batch),
        }
        self.buffered += n;
        if self.config.timeout.is_zero() {
            self.emit_all(out);
            return;
        }
        let size = self.config.send_batch_size;
        let mut sent = false;
        while size > 0 && self.buffered >= size {
            let n = self.buffered.min(self.chunk_size());
            self.emit(n, out);
            sent = true;
        }
        if self.buffered == 0 {
            self.deadline = None;
        } else if sent || self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.config.timeout);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn on_deadline(&mut self, _now: Instant, out: &mut Vec<Batch>) {
        self.emit_all(out);
    }

    fn flush(&mut self, out: &mut Vec<Batch>) {
        self.emit_all(out);
    }
}

fn append(into: &mut Batch, from: Batch) {
    match (into, from) {
        (Batch::Traces(a), Batch::Traces(b)) => a.extend(b),
        (Batch::Metrics(a), Batch::Metrics(b)) => a.extend(b),
        (Batch::Logs(a), Batch::Logs(b)) => a.extend(b),
        (Batch::Alerts(a), Batch::Alerts(b)) => a.extend(b),
        // A pipeline carries one signal; the topology never mixes them.
        (into, from) => {
            tracing::error!(into = %into.signal(), from = %from.signal(), "batch processor given mixed signals; keeping both in order");
        }
    }
}

/// Removes the first `n` items of `batch` and returns them as a batch.
pub fn take_front_batch(batch: &mut Batch, n: usize) -> Batch {
    match batch {
        Batch::Traces(v) => Batch::Traces(take_front(v, n)),
        Batch::Metrics(v) => Batch::Metrics(take_front(v, n)),
        Batch::Logs(v) => Batch::Logs(take_front(v, n)),
        Batch::Alerts(v) => {
            let rest = v.split_off(n.min(v.len()));
            Batch::Alerts(std::mem::replace(v, rest))
        }
    }
}

/// A level of the OTLP tree that holds items and can give up its first `n`.
trait Items: Sized {
    fn count(&self) -> usize;
    /// Removes the first `n` (< count) items into a new value with the same header.
    fn take(&mut self, n: usize) -> Self;
}

/// Removes the first `n` items across `v`, splitting one element if needed.
fn take_front<T: Items>(v: &mut Vec<T>, mut n: usize) -> Vec<T> {
    let mut whole = 0;
    let mut split = None;
    for item in v.iter_mut() {
        if n == 0 {
            break;
        }
        let c = item.count();
        if c <= n {
            whole += 1;
            n -= c;
        } else {
            split = Some(item.take(n));
            n = 0;
        }
    }
    let mut out: Vec<T> = v.drain(..whole).collect();
    out.extend(split);
    out
}

impl Items for ResourceSpans {
    fn count(&self) -> usize {
        self.scope_spans.iter().map(|s| s.spans.len()).sum()
    }
    fn take(&mut self, n: usize) -> Self {
        ResourceSpans {
            resource: self.resource.clone(),
            scope_spans: take_front(&mut self.scope_spans, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Items for ScopeSpans {
    fn count(&self) -> usize {
        self.spans.len()
    }
    fn take(&mut self, n: usize) -> Self {
        ScopeSpans {
            scope: self.scope.clone(),
            spans: self.spans.drain(..n).collect(),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Items for ResourceLogs {
    fn count(&self) -> usize {
        self.scope_logs.iter().map(|s| s.log_records.len()).sum()
    }
    fn take(&mut self, n: usize) -> Self {
        ResourceLogs {
            resource: self.resource.clone(),
            scope_logs: take_front(&mut self.scope_logs, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Items for ScopeLogs {
    fn count(&self) -> usize {
        self.log_records.len()
    }
    fn take(&mut self, n: usize) -> Self {
        ScopeLogs {
            scope: self.scope.clone(),
            log_records: self.log_records.drain(..n).collect(),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Items for ResourceMetrics {
    fn count(&self) -> usize {
        self.scope_metrics.iter().map(Items::count).sum()
    }
    fn take(&mut self, n: usize) -> Self {
        ResourceMetrics {
            resource: self.resource.clone(),
            scope_metrics: take_front(&mut self.scope_metrics, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Items for ScopeMetrics {
    fn count(&self) -> usize {
        self.metrics.iter().map(Items::count).sum()
    }
    fn take(&mut self, n: usize) -> Self {
        ScopeMetrics {
            scope: self.scope.clone(),
            metrics: take_front(&mut self.metrics, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Items for Metric {
    fn count(&self) -> usize {
        magpie_core::batch::metric_point_count(self.data.as_ref())
    }
    fn take(&mut self, n: usize) -> Self {
        let data = self.data.as_mut().map(|d| match d {
            Data::Gauge(g) => Data::Gauge(magpie_core::proto::metrics::v1::Gauge {
                data_points: g.data_points.drain(..n).collect(),
            }),
            Data::Sum(s) => Data::Sum(magpie_core::proto::metrics::v1::Sum {
                data_points: s.data_points.drain(..n).collect(),
                aggregation_temporality: s.aggregation_temporality,
                is_monotonic: s.is_monotonic,
            }),
            Data::Histogram(h) => Data::Histogram(magpie_core::proto::metrics::v1::Histogram {
                data_points: h.data_points.drain(..n).collect(),
                aggregation_temporality: h.aggregation_temporality,
            }),
            Data::ExponentialHistogram(h) => {
                Data::ExponentialHistogram(magpie_core::proto::metrics::v1::ExponentialHistogram {
                    data_points: h.data_points.drain(..n).collect(),
                    aggregation_temporality: h.aggregation_temporality,
                })
            }
            Data::Summary(s) => Data::Summary(magpie_core::proto::metrics::v1::Summary {
                data_points: s.data_points.drain(..n).collect(),
            }),
        });
        Metric {
            name: self.name.clone(),
            description: self.description.clone(),
            unit: self.unit.clone(),
            metadata: self.metadata.clone(),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::otlp::testdata;
    use magpie_core::proto::trace::v1::Span;

    fn processor(size: usize, max: usize, timeout_ms: u64) -> BatchProcessor {
        BatchProcessor::new(&BatchConfig {
            send_batch_size: size,
            send_batch_max_size: max,
            timeout: Duration::from_millis(timeout_ms),
        })
    }

    fn span_ids(batches: &[Batch]) -> Vec<Vec<u8>> {
        let mut ids = Vec::new();
        for b in batches {
            if let Batch::Traces(rs) = b {
                magpie_core::otlp::for_each_span(rs, |_, s: &Span| ids.push(s.span_id.clone()));
            }
        }
        ids
    }

    /// Feeds `inputs` (resources × spans each) and returns the sizes of what
    /// came out before and at the flush.
    fn check(
        size: usize,
        max: usize,
        inputs: &[(usize, usize)],
        expect_now: &[usize],
        expect_flush: &[usize],
    ) {
        let mut p = processor(size, max, 60_000);
        let mut out = Vec::new();
        let mut sent_ids = Vec::new();
        for (r, s) in inputs {
            let b = Batch::Traces(testdata::spans(*r, *s));
            sent_ids.extend(span_ids(std::slice::from_ref(&b)));
            p.process(b, &mut out);
        }
        let now: Vec<usize> = out.iter().map(Batch::item_count).collect();
        assert_eq!(now, expect_now, "sent before flush");
        let mut flushed = Vec::new();
        p.flush(&mut flushed);
        let at_flush: Vec<usize> = flushed.iter().map(Batch::item_count).collect();
        assert_eq!(at_flush, expect_flush, "sent at flush");
        out.extend(flushed);
        let mut got = span_ids(&out);
        got.sort();
        sent_ids.sort();
        assert_eq!(got, sent_ids, "every span exactly once");
    }

    #[test]
    fn merges_splits_and_flushes() {
        // Small batches merge until the size is reached.
        check(10, 0, &[(1, 4), (1, 4)], &[], &[8]);
        check(10, 0, &[(1, 4), (1, 4), (1, 4)], &[12], &[]);
        // A large batch is split at the max size, the rest waits.
        check(10, 10, &[(1, 25)], &[10, 10], &[5]);
        // Splits cross resource boundaries exactly.
        check(4, 4, &[(3, 3)], &[4, 4], &[1]);
        // Size 0: only the timeout (here the flush) sends, still bounded by max.
        check(0, 5, &[(2, 4)], &[], &[5, 3]);
    }

    #[test]
    fn deadline_starts_with_the_first_item_and_releases_everything() {
        let mut p = processor(100, 0, 200);
        assert_eq!(p.deadline(), None);
        let mut out = Vec::new();
        p.process(Batch::Traces(testdata::spans(1, 3)), &mut out);
        let d = p.deadline().expect("a deadline once items are held");
        p.process(Batch::Traces(testdata::spans(1, 3)), &mut out);
        assert_eq!(p.deadline(), Some(d), "later items do not push the deadline");
        p.on_deadline(d, &mut out);
        assert_eq!(out.iter().map(Batch::item_count).collect::<Vec<_>>(), vec![6]);
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn zero_timeout_passes_through_with_splitting() {
        let mut p = processor(8192, 3, 0);
        let mut out = Vec::new();
        p.process(Batch::Logs(testdata::logs(2, 4)), &mut out);
        assert_eq!(out.iter().map(Batch::item_count).collect::<Vec<_>>(), vec![3, 3, 2]);
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn metrics_split_inside_a_metric_keeps_its_header() {
        let mut rm = testdata::gauges(1, 1);
        if let Some(Data::Gauge(g)) = rm[0].scope_metrics[0].metrics[0].data.as_mut() {
            let p = g.data_points[0].clone();
            g.data_points = vec![p; 5];
        }
        let mut b = Batch::Metrics(rm);
        let front = take_front_batch(&mut b, 2);
        assert_eq!((front.item_count(), b.item_count()), (2, 3));
        let (Batch::Metrics(f), Batch::Metrics(r)) = (&front, &b) else { panic!("signal changed") };
        assert_eq!(f[0].scope_metrics[0].metrics[0].name, r[0].scope_metrics[0].metrics[0].name);
        assert_eq!(f[0].resource, r[0].resource);
    }

    #[test]
    fn bad_sizes_are_reported() {
        let c = BatchConfig { send_batch_size: 100, send_batch_max_size: 10, ..Default::default() };
        assert_eq!(c.problems().len(), 1);
        assert!(BatchConfig::default().problems().is_empty());
    }
}
