//! What both transports do with a decoded export request: drop the items
//! OTLP says are invalid (partial success), send the rest into the
//! pipelines with a bounded wait, and build the export response.
//!
//! This module knows the three `Export*ServiceRequest` types and
//! [`Output`]; it must not depend on HTTP, gRPC or any server code, so the
//! filtering rules are pure functions with unit tests.

use super::decode::DecodeProto;
use super::status::{Detail, Failure};
use magpie_core::output::SendError;
use magpie_core::proto::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use magpie_core::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use magpie_core::proto::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use magpie_core::proto::logs::v1::{LogRecord, ResourceLogs};
use magpie_core::proto::metrics::v1::ResourceMetrics;
use magpie_core::proto::trace::v1::{ResourceSpans, Span};
use magpie_core::{Batch, ComponentId, ComponentStats, Output, Signal};
use std::sync::Arc;
use std::time::Duration;

/// How long a throttled client is asked to wait before retrying (HTTP
/// `Retry-After`, gRPC `RetryInfo.retry_delay`).
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Items of one request that were refused for good, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub count: u64,
    pub message: String,
}

/// One of the three OTLP export requests.
pub trait ExportRequest:
    prost::Message + DecodeProto + Default + serde::de::DeserializeOwned + Send + Sized + 'static
{
    type Response: prost::Message + Default + Send + 'static;
    const SIGNAL: Signal;
    /// The protobuf message name, for messages.
    const MESSAGE: &'static str;
    /// The gRPC method path, `/<service>/Export`.
    const GRPC_PATH: &'static str;
    /// The JSON name of the rejected-items counter in the partial success.
    const REJECTED_JSON_FIELD: &'static str;

    /// Drops invalid items and empty envelopes in place; returns what was
    /// rejected, if anything.
    fn filter(&mut self) -> Option<Rejection>;

    fn into_batch(self) -> Batch;

    fn response(rejection: Option<&Rejection>) -> Self::Response;
}

impl ExportRequest for ExportTraceServiceRequest {
    type Response = ExportTraceServiceResponse;
    const SIGNAL: Signal = Signal::Traces;
    const MESSAGE: &'static str = "ExportTraceServiceRequest";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const REJECTED_JSON_FIELD: &'static str = "rejectedSpans";

    fn filter(&mut self) -> Option<Rejection> {
        filter_spans(&mut self.resource_spans)
    }

    fn into_batch(self) -> Batch {
        Batch::Traces(self.resource_spans)
    }

    fn response(rejection: Option<&Rejection>) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: rejection.map(|r| ExportTracePartialSuccess {
                rejected_spans: count_i64(r.count),
                error_message: r.message.clone(),
            }),
        }
    }
}

impl ExportRequest for ExportMetricsServiceRequest {
    type Response = ExportMetricsServiceResponse;
    const SIGNAL: Signal = Signal::Metrics;
    const MESSAGE: &'static str = "ExportMetricsServiceRequest";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    const REJECTED_JSON_FIELD: &'static str = "rejectedDataPoints";

    fn filter(&mut self) -> Option<Rejection> {
        drop_empty_metrics(&mut self.resource_metrics);
        None
    }

    fn into_batch(self) -> Batch {
        Batch::Metrics(self.resource_metrics)
    }

    fn response(rejection: Option<&Rejection>) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: rejection.map(|r| ExportMetricsPartialSuccess {
                rejected_data_points: count_i64(r.count),
                error_message: r.message.clone(),
            }),
        }
    }
}

impl ExportRequest for ExportLogsServiceRequest {
    type Response = ExportLogsServiceResponse;
    const SIGNAL: Signal = Signal::Logs;
    const MESSAGE: &'static str = "ExportLogsServiceRequest";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const REJECTED_JSON_FIELD: &'static str = "rejectedLogRecords";

    fn filter(&mut self) -> Option<Rejection> {
        filter_logs(&mut self.resource_logs)
    }

    fn into_batch(self) -> Batch {
        Batch::Logs(self.resource_logs)
    }

    fn response(rejection: Option<&Rejection>) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: rejection.map(|r| ExportLogsPartialSuccess {
                rejected_log_records: count_i64(r.count),
                error_message: r.message.clone(),
            }),
        }
    }
}

fn count_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The export response in OTLP/JSON: `{}` on full success, otherwise the
/// partial success with its counter as a decimal string (proto3 int64).
pub fn response_json<R: ExportRequest>(rejection: Option<&Rejection>) -> Vec<u8> {
    match rejection {
        None => b"{}".to_vec(),
        Some(r) => {
            let mut partial = serde_json::Map::new();
            partial.insert(R::REJECTED_JSON_FIELD.to_string(), r.count.to_string().into());
            partial.insert("errorMessage".to_string(), r.message.clone().into());
            serde_json::json!({ "partialSuccess": partial }).to_string().into_bytes()
        }
    }
}

/// Why a span is invalid, if it is.
fn span_problem(span: &Span) -> Option<&'static str> {
    if span.trace_id.len() != 16 {
        Some("trace_id must be 16 bytes")
    } else if span.span_id.len() != 8 {
        Some("span_id must be 8 bytes")
    } else if !(span.parent_span_id.is_empty() || span.parent_span_id.len() == 8) {
        Some("parent_span_id must be empty or 8 bytes")
    } else {
        None
    }
}

/// Why a log record is invalid, if it is.
fn log_problem(record: &LogRecord) -> Option<&'static str> {
    if !(record.trace_id.is_empty() || record.trace_id.len() == 16) {
        Some("trace_id must be empty or 16 bytes")
    } else if !(record.span_id.is_empty() || record.span_id.len() == 8) {
        Some("span_id must be empty or 8 bytes")
    } else {
        None
    }
}

fn rejection(count: u64, what: &str, first: Option<&'static str>) -> Option<Rejection> {
    (count > 0).then(|| Rejection {
        count,
        message: format!("{count} {what} rejected: {}", first.unwrap_or("invalid identifiers")),
    })
}

/// Drops spans with malformed ids, then scopes and resources left empty.
/// The common case (nothing to drop) only reads.
pub fn filter_spans(rs: &mut Vec<ResourceSpans>) -> Option<Rejection> {
    let mut invalid = 0u64;
    let mut first = None;
    let mut empty = false;
    for r in rs.iter() {
        empty |= r.scope_spans.is_empty();
        for ss in &r.scope_spans {
            empty |= ss.spans.is_empty();
            for span in &ss.spans {
                if let Some(p) = span_problem(span) {
                    invalid += 1;
                    first.get_or_insert(p);
                }
            }
        }
    }
    if invalid == 0 && !empty {
        return None;
    }
    rs.retain_mut(|r| {
        r.scope_spans.retain_mut(|ss| {
            if invalid > 0 {
                ss.spans.retain(|s| span_problem(s).is_none());
            }
            !ss.spans.is_empty()
        });
        !r.scope_spans.is_empty()
    });
    rejection(invalid, "spans", first)
}

/// Drops log records with malformed ids, then scopes and resources left empty.
pub fn filter_logs(rl: &mut Vec<ResourceLogs>) -> Option<Rejection> {
    let mut invalid = 0u64;
    let mut first = None;
    let mut empty = false;
    for r in rl.iter() {
        empty |= r.scope_logs.is_empty();
        for sl in &r.scope_logs {
            empty |= sl.log_records.is_empty();
            for record in &sl.log_records {
                if let Some(p) = log_problem(record) {
                    invalid += 1;
                    first.get_or_insert(p);
                }
            }
        }
    }
    if invalid == 0 && !empty {
        return None;
    }
    rl.retain_mut(|r| {
        r.scope_logs.retain_mut(|sl| {
            if invalid > 0 {
                sl.log_records.retain(|l| log_problem(l).is_none());
            }
            !sl.log_records.is_empty()
        });
        !r.scope_logs.is_empty()
    });
    rejection(invalid, "log records", first)
}

/// Drops scopes without metrics and resources without scopes.
pub fn drop_empty_metrics(rm: &mut Vec<ResourceMetrics>) {
    let empty =
        rm.iter().any(|r| r.scope_metrics.is_empty() || r.scope_metrics.iter().any(|s| s.metrics.is_empty()));
    if empty {
        rm.retain_mut(|r| {
            r.scope_metrics.retain(|s| !s.metrics.is_empty());
            !r.scope_metrics.is_empty()
        });
    }
}

/// Why an export was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The pipeline stayed full (or is closing): retryable.
    Unavailable,
    /// No pipeline of the signal reads from this receiver.
    NoPipeline(Signal),
}

impl Refusal {
    /// The status this refusal is reported with.
    pub fn failure(self) -> Failure {
        match self {
            Refusal::Unavailable => {
                Failure::new(tonic::Code::Unavailable, "the pipeline is full, retry later")
                    .with_detail(Detail::RetryAfter(RETRY_DELAY))
            }
            Refusal::NoPipeline(signal) => {
                Failure::new(tonic::Code::Unimplemented, format!("this receiver has no {signal} pipeline"))
            }
        }
    }
}

/// The receiver's shared state: where batches go and what is counted.
pub struct Ingest {
    pub id: ComponentId,
    pub output: Output,
    pub stats: Arc<ComponentStats>,
    pub backpressure_timeout: Duration,
}

impl Ingest {
    /// Whether any pipeline reads `signal` from this receiver.
    pub fn wants(&self, signal: Signal) -> bool {
        self.output.wants(signal)
    }

    /// Filters `request`, sends what is left and returns the rejection to
    /// report in the response.
    pub async fn export<R: ExportRequest>(&self, mut request: R) -> Result<Option<Rejection>, Refusal> {
        let rejection = request.filter();
        if let Some(r) = &rejection {
            self.stats.add_received(r.count);
            self.stats.add_refused(r.count);
            tracing::debug!(component = %self.id, signal = %R::SIGNAL, rejected = r.count, reason = %r.message, "partial success");
        }
        let batch = request.into_batch();
        if batch_has_resources(&batch) {
            match self.output.send_timeout(batch, self.backpressure_timeout).await {
                Ok(()) => {}
                Err(SendError::Full | SendError::Closed) => {
                    tracing::debug!(component = %self.id, signal = %R::SIGNAL, "pipeline full, answering with a retryable status");
                    return Err(Refusal::Unavailable);
                }
                Err(SendError::NoPipeline(signal)) => return Err(Refusal::NoPipeline(signal)),
            }
        }
        Ok(rejection)
    }
}

fn batch_has_resources(batch: &Batch) -> bool {
    match batch {
        Batch::Traces(v) => !v.is_empty(),
        Batch::Metrics(v) => !v.is_empty(),
        Batch::Logs(v) => !v.is_empty(),
        Batch::Alerts(v) => !v.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::otlp::testdata;
    use magpie_core::proto::metrics::v1::ScopeMetrics;
    use magpie_core::proto::trace::v1::ScopeSpans;

    #[test]
    fn valid_spans_are_left_alone() {
        let mut rs = testdata::spans(2, 3);
        let before = rs.clone();
        assert_eq!(filter_spans(&mut rs), None);
        assert_eq!(rs, before);
    }

    #[test]
    fn spans_with_bad_ids_are_rejected_and_empty_envelopes_dropped() {
        let mut rs = testdata::spans(3, 2);
        rs[0].scope_spans[0].spans[0].trace_id.truncate(8);
        rs[0].scope_spans[0].spans[1].span_id.push(0);
        rs[1].scope_spans[0].spans[1].parent_span_id = vec![1; 4];
        rs[2].scope_spans.push(ScopeSpans::default());
        let r = filter_spans(&mut rs).unwrap();
        assert_eq!(r.count, 3);
        assert!(r.message.starts_with("3 spans rejected: trace_id must be 16 bytes"), "{}", r.message);
        assert_eq!(rs.len(), 2, "the first resource lost all its spans");
        assert_eq!(rs[0].scope_spans[0].spans.len(), 1);
        assert_eq!(rs[1].scope_spans.len(), 1, "the empty scope is gone");
        assert_eq!(magpie_core::batch::span_count(&rs), 3);
    }

    #[test]
    fn a_root_span_has_an_empty_parent() {
        let mut rs = testdata::spans(1, 1);
        rs[0].scope_spans[0].spans[0].parent_span_id = vec![7; 8];
        assert_eq!(filter_spans(&mut rs), None);
    }

    #[test]
    fn log_ids_are_optional_but_must_have_the_right_length() {
        let mut rl = testdata::logs(1, 4);
        rl[0].scope_logs[0].log_records[1].trace_id = vec![1; 16];
        rl[0].scope_logs[0].log_records[1].span_id = vec![1; 8];
        rl[0].scope_logs[0].log_records[2].trace_id = vec![1; 15];
        rl[0].scope_logs[0].log_records[3].span_id = vec![1; 16];
        let r = filter_logs(&mut rl).unwrap();
        assert_eq!(r.count, 2);
        assert_eq!(magpie_core::batch::log_record_count(&rl), 2);
    }

    #[test]
    fn empty_metric_envelopes_are_dropped() {
        let mut rm = testdata::gauges(2, 1);
        rm[0].scope_metrics = vec![ScopeMetrics::default()];
        drop_empty_metrics(&mut rm);
        assert_eq!(rm.len(), 1);
        assert_eq!(rm[0].resource, testdata::gauges(2, 1)[1].resource);
    }

    #[test]
    fn json_responses_follow_the_proto3_mapping() {
        assert_eq!(response_json::<ExportTraceServiceRequest>(None), b"{}");
        let r = Rejection { count: 2, message: "no".into() };
        let v: serde_json::Value =
            serde_json::from_slice(&response_json::<ExportLogsServiceRequest>(Some(&r))).unwrap();
        assert_eq!(v["partialSuccess"]["rejectedLogRecords"], "2");
        assert_eq!(v["partialSuccess"]["errorMessage"], "no");
    }

    #[test]
    fn grpc_paths_match_the_generated_services() {
        use magpie_core::proto::collector::{logs, metrics, trace};
        let path = |service: &str| format!("/{service}/Export");
        assert_eq!(ExportTraceServiceRequest::GRPC_PATH, path(trace::v1::trace_service_server::SERVICE_NAME));
        assert_eq!(
            ExportMetricsServiceRequest::GRPC_PATH,
            path(metrics::v1::metrics_service_server::SERVICE_NAME)
        );
        assert_eq!(ExportLogsServiceRequest::GRPC_PATH, path(logs::v1::logs_service_server::SERVICE_NAME));
    }
}
