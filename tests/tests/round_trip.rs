//! Two agents in a row, as in a gateway deployment: a client sends to Magpie
//! A (`otlp` receiver → `otlp_grpc` exporter), which forwards to Magpie B
//! (`otlp` receiver → `file`). Everything arrives identical: every attribute
//! type (string, bool, int64 above 2^53, double, bytes, array, kvlist),
//! events, links, status, resource and scope, and every metric kind.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie_core::proto::collector::logs::v1::ExportLogsServiceRequest;
use magpie_core::proto::collector::logs::v1::logs_service_client::LogsServiceClient;
use magpie_core::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use magpie_core::proto::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use magpie_core::proto::collector::trace::v1::ExportTraceServiceRequest;
use magpie_core::proto::collector::trace::v1::trace_service_client::TraceServiceClient;
use magpie_core::proto::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use magpie_core::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use magpie_core::proto::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exponential_histogram_data_point, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use magpie_core::proto::resource::v1::Resource;
use magpie_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use magpie_tests::{RunningAgent, read_otlp_lines};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn every_type() -> Vec<KeyValue> {
    vec![
        kv("s", Value::StringValue("héllo ✓".into())),
        kv("b", Value::BoolValue(true)),
        kv("i", Value::IntValue(9_007_199_254_740_993)),
        kv("neg", Value::IntValue(i64::MIN)),
        kv("d", Value::DoubleValue(-1.5e-7)),
        kv("bytes", Value::BytesValue(vec![0, 1, 2, 254, 255])),
        kv(
            "arr",
            Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue { value: Some(Value::StringValue("x".into())) },
                    AnyValue { value: Some(Value::IntValue(7)) },
                ],
            }),
        ),
        kv(
            "kv",
            Value::KvlistValue(KeyValueList {
                values: vec![kv("inner", Value::BoolValue(false)), kv("n", Value::DoubleValue(2.5))],
            }),
        ),
    ]
}

fn resource() -> Option<Resource> {
    let mut attributes = every_type();
    attributes.push(kv("service.name", Value::StringValue("chatbot".into())));
    Some(Resource { attributes, dropped_attributes_count: 1, ..Default::default() })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "fastapi".into(),
        version: "0.1".into(),
        attributes: every_type(),
        dropped_attributes_count: 0,
    })
}

fn traces() -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: (1..=16).collect(),
        span_id: (1..=8).collect(),
        trace_state: "vendor=1".into(),
        parent_span_id: (11..=18).collect(),
        flags: 1,
        name: "POST /api/chat".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_732_000_000_123_456_789,
        end_time_unix_nano: 1_732_000_001_123_456_789,
        attributes: every_type(),
        dropped_attributes_count: 2,
        events: vec![span::Event {
            time_unix_nano: 1_732_000_000_500_000_000,
            name: "cache miss".into(),
            attributes: every_type(),
            dropped_attributes_count: 0,
        }],
        dropped_events_count: 3,
        links: vec![span::Link {
            trace_id: (21..=36).collect(),
            span_id: (21..=28).collect(),
            trace_state: "a=b".into(),
            attributes: every_type(),
            dropped_attributes_count: 0,
            flags: 0,
        }],
        dropped_links_count: 4,
        status: Some(Status { message: "upstream timeout".into(), code: status::StatusCode::Error as i32 }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: vec![span],
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
        }],
    }
}

fn metrics() -> ExportMetricsServiceRequest {
    let t = 1_732_000_000_000_000_000;
    let number = |v: number_data_point::Value| NumberDataPoint {
        attributes: every_type(),
        start_time_unix_nano: t - 10,
        time_unix_nano: t,
        value: Some(v),
        ..Default::default()
    };
    let metric = |name: &str, data: Data| Metric {
        name: name.into(),
        description: "d".into(),
        unit: "s".into(),
        data: Some(data),
        metadata: vec![],
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![
                    metric(
                        "g",
                        Data::Gauge(Gauge {
                            data_points: vec![number(number_data_point::Value::AsDouble(0.5))],
                        }),
                    ),
                    metric(
                        "c",
                        Data::Sum(Sum {
                            data_points: vec![number(number_data_point::Value::AsInt(9_007_199_254_740_993))],
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "h",
                        Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                attributes: every_type(),
                                start_time_unix_nano: t - 10,
                                time_unix_nano: t,
                                count: 6,
                                sum: Some(3.5),
                                bucket_counts: vec![1, 2, 3],
                                explicit_bounds: vec![0.1, 1.0],
                                min: Some(0.05),
                                max: Some(2.0),
                                ..Default::default()
                            }],
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                        }),
                    ),
                    metric(
                        "e",
                        Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint {
                                attributes: every_type(),
                                start_time_unix_nano: t - 10,
                                time_unix_nano: t,
                                count: 4,
                                sum: Some(10.0),
                                scale: 3,
                                zero_count: 1,
                                positive: Some(exponential_histogram_data_point::Buckets {
                                    offset: -2,
                                    bucket_counts: vec![1, 2],
                                }),
                                negative: None,
                                min: Some(0.0),
                                max: Some(7.0),
                                zero_threshold: 0.0,
                                ..Default::default()
                            }],
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        }),
                    ),
                    metric(
                        "s",
                        Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                attributes: every_type(),
                                start_time_unix_nano: t - 10,
                                time_unix_nano: t,
                                count: 3,
                                sum: 6.0,
                                quantile_values: vec![ValueAtQuantile { quantile: 0.99, value: 3.0 }],
                                flags: 0,
                            }],
                        }),
                    ),
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn logs() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: vec![LogRecord {
                    time_unix_nano: 1_732_000_000_000_000_001,
                    observed_time_unix_nano: 1_732_000_000_000_000_002,
                    severity_number: 17,
                    severity_text: "ERROR".into(),
                    body: Some(AnyValue {
                        value: Some(Value::KvlistValue(KeyValueList { values: every_type() })),
                    }),
                    attributes: every_type(),
                    dropped_attributes_count: 1,
                    flags: 1,
                    trace_id: (1..=16).collect(),
                    span_id: (1..=8).collect(),
                    event_name: "chat.error".into(),
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_to_b_round_trip_is_lossless() {
    let mut b = RunningAgent::start(
        "receivers:\n  otlp:\n    protocols:\n      grpc: {endpoint: \"127.0.0.1:0\"}\n      http: {endpoint: \"127.0.0.1:0\"}\nexporters:\n  file: {path: \"{dir}/b.jsonl\"}\nservice:\n  telemetry: {metrics: {address: \"127.0.0.1:0\"}}\n  pipelines:\n    traces: {receivers: [otlp], exporters: [file]}\n    metrics: {receivers: [otlp], exporters: [file]}\n    logs: {receivers: [otlp], exporters: [file]}\n",
    );
    let (b_grpc, _) = b.otlp_addrs("otlp");
    let mut a = RunningAgent::start(&format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: \"127.0.0.1:0\"}}\nexporters:\n  otlp_grpc: {{endpoint: \"{b_grpc}\", retry_on_failure: {{initial_interval: 100ms}}}}\nservice:\n  telemetry: {{metrics: {{address: \"127.0.0.1:0\"}}}}\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [otlp_grpc]}}\n    metrics: {{receivers: [otlp], exporters: [otlp_grpc]}}\n    logs: {{receivers: [otlp], exporters: [otlp_grpc]}}\n"
    ));
    let (a_grpc, _) = a.otlp_addrs("otlp");
    let endpoint = format!("http://{a_grpc}");
    TraceServiceClient::connect(endpoint.clone()).await.unwrap().export(traces()).await.unwrap();
    MetricsServiceClient::connect(endpoint.clone()).await.unwrap().export(metrics()).await.unwrap();
    LogsServiceClient::connect(endpoint).await.unwrap().export(logs()).await.unwrap();
    // A drains into B on shutdown; then B flushes its file.
    assert!(a.stop().success());
    assert!(b.stop().success());

    let lines = read_otlp_lines(&b.dir.path().join("b.jsonl"));
    let mut got_traces = None;
    let mut got_metrics = None;
    let mut got_logs = None;
    for l in lines {
        if l.get("resourceSpans").is_some() {
            got_traces = Some(serde_json::from_value::<ExportTraceServiceRequest>(l).unwrap());
        } else if l.get("resourceMetrics").is_some() {
            got_metrics = Some(serde_json::from_value::<ExportMetricsServiceRequest>(l).unwrap());
        } else if l.get("resourceLogs").is_some() {
            got_logs = Some(serde_json::from_value::<ExportLogsServiceRequest>(l).unwrap());
        }
    }
    assert_eq!(got_traces.expect("traces arrived"), traces());
    assert_eq!(got_metrics.expect("metrics arrived"), metrics());
    assert_eq!(got_logs.expect("logs arrived"), logs());
}

/// The shipped `agent-to-gateway.yaml` and `gateway.yaml`, as deployed: an
/// agent forwards with the shared token to a gateway, which forwards to a
/// backend; a span from the app reaches the backend, and the gateway refuses
/// a client without the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_agent_and_gateway_configs_forward_end_to_end() {
    let ports = "receivers:\n  otlp:\n    protocols:\n      grpc: {endpoint: \"127.0.0.1:0\"}\n      http: {endpoint: \"127.0.0.1:0\"}\nservice:\n  telemetry: {metrics: {address: \"127.0.0.1:0\"}}\n";
    let mut backend = RunningAgent::start(
        "receivers:\n  otlp:\n    protocols:\n      grpc: {endpoint: \"127.0.0.1:0\"}\nexporters:\n  file: {path: \"{dir}/backend.jsonl\"}\nservice:\n  telemetry: {metrics: {address: \"127.0.0.1:0\"}}\n  pipelines:\n    traces: {receivers: [otlp], exporters: [file]}\n",
    );
    let (backend_grpc, _) = backend.otlp_addrs("otlp");
    let token = "gw-s3cret";
    let mut gateway = RunningAgent::start_with(
        &[magpie_tests::repo_file("configs/gateway.yaml")],
        ports,
        &[("MAGPIE_GATEWAY_TOKEN", token), ("MAGPIE_BACKEND_ENDPOINT", &backend_grpc)],
    );
    let (gateway_grpc, gateway_http) = gateway.otlp_addrs("otlp");
    let mut agent = RunningAgent::start_with(
        &[magpie_tests::repo_file("configs/agent-to-gateway.yaml")],
        &ports.replace("receivers:\n", "receivers:\n  hostmetrics: {collection_interval: 1h}\n"),
        &[("MAGPIE_GATEWAY_TOKEN", token), ("MAGPIE_GATEWAY_ENDPOINT", &gateway_grpc)],
    );
    let (agent_grpc, _) = agent.otlp_addrs("otlp");

    let denied = magpie_tests::http()
        .post(format!("http://{gateway_http}/v1/traces"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401, "the gateway requires the token");

    TraceServiceClient::connect(format!("http://{agent_grpc}"))
        .await
        .unwrap()
        .export(traces())
        .await
        .unwrap();
    assert!(agent.stop().success());
    assert!(gateway.stop().success());
    assert!(backend.stop().success());
    let lines = read_otlp_lines(&backend.dir.path().join("backend.jsonl"));
    let got: Vec<ExportTraceServiceRequest> = lines
        .into_iter()
        .filter(|l| l.get("resourceSpans").is_some())
        .map(|l| serde_json::from_value(l).unwrap())
        .collect();
    let spans: Vec<_> = got.iter().flat_map(|r| r.resource_spans.clone()).collect();
    assert_eq!(spans, traces().resource_spans, "the span crossed agent and gateway unchanged");
}
