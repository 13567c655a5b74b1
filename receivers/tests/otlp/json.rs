//! Golden OTLP/JSON fixtures, as SDKs and Collectors send them: each file
//! must decode to exactly the values written out here, and decode the same
//! when posted to the receiver.

use crate::harness::{Harness, http_client};
use magpie_core::Batch;
use magpie_core::otlp::{kv_bool, kv_double, kv_int, kv_str};
use magpie_core::proto::collector::logs::v1::ExportLogsServiceRequest;
use magpie_core::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use magpie_core::proto::collector::trace::v1::ExportTraceServiceRequest;
use magpie_core::proto::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use magpie_core::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use magpie_core::proto::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar,
    exponential_histogram_data_point::Buckets, metric, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use magpie_core::proto::resource::v1::Resource;
use magpie_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

const SCHEMA: &str = "https://opentelemetry.io/schemas/1.26.0";

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits")).collect()
}

fn value(v: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_string(), value: value(v), ..Default::default() }
}

fn scope(name: &str, version: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope { name: name.into(), version: version.into(), ..Default::default() })
}

fn resource(attributes: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource { attributes, ..Default::default() })
}

fn expected_traces() -> Vec<ResourceSpans> {
    let trace_id = hex("5b8efff798038103d269b633813fc60c");
    let server = Span {
        trace_id: trace_id.clone(),
        span_id: hex("eee19b7ec3c1b174"),
        trace_state: "vendor=1".into(),
        name: "POST /chat".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_250_000_000,
        attributes: vec![
            kv_str("http.request.method", "POST"),
            kv_int("http.response.status_code", 200),
            kv(
                "tags",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue { value: Some(any_value::Value::StringValue("a".into())) },
                        AnyValue { value: Some(any_value::Value::IntValue(2)) },
                    ],
                }),
            ),
            kv("payload", any_value::Value::BytesValue(vec![1, 2, 3])),
        ],
        events: vec![span::Event {
            time_unix_nano: 1_700_000_000_100_000_000,
            name: "cache.miss".into(),
            attributes: vec![kv_str("cache.key", "q:1")],
            dropped_attributes_count: 0,
        }],
        status: Some(Status { code: 1, message: String::new() }),
        flags: 257,
        ..Default::default()
    };
    let client = Span {
        trace_id,
        span_id: hex("0102030405060708"),
        parent_span_id: hex("eee19b7ec3c1b174"),
        name: "chat grok-2".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: 1_700_000_000_010_000_000,
        end_time_unix_nano: 1_700_000_000_240_000_000,
        attributes: vec![
            kv_str("gen_ai.system", "xai"),
            kv_int("gen_ai.usage.input_tokens", 1234),
            kv(
                "llm.request",
                any_value::Value::KvlistValue(KeyValueList { values: vec![kv_double("temperature", 0.2)] }),
            ),
        ],
        links: vec![span::Link {
            trace_id: hex("0af7651916cd43dd8448eb211c80319c"),
            span_id: hex("b7ad6b7169203331"),
            flags: 256,
            ..Default::default()
        }],
        status: Some(Status { code: 2, message: "upstream timeout".into() }),
        dropped_events_count: 3,
        ..Default::default()
    };
    vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                kv_str("service.name", "chatbot-api"),
                kv_int("process.pid", 4242),
                kv_double("host.cpu.ratio", 0.75),
                kv_bool("deployment.canary", true),
            ],
            dropped_attributes_count: 1,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: scope("opentelemetry.instrumentation.fastapi", "0.48b0"),
            spans: vec![server, client],
            schema_url: SCHEMA.into(),
        }],
        schema_url: SCHEMA.into(),
    }]
}

fn expected_js_traces() -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        resource: resource(vec![
            kv_str("service.name", "chatbot-web"),
            kv_str("telemetry.sdk.language", "webjs"),
            kv_int("screen.width", 1920),
        ]),
        scope_spans: vec![ScopeSpans {
            scope: scope("@opentelemetry/instrumentation-fetch", "0.52.1"),
            spans: vec![Span {
                trace_id: hex("4bf92f3577b34da6a3ce929d0e0e4736"),
                span_id: hex("00f067aa0ba902b7"),
                name: "HTTP POST".into(),
                kind: span::SpanKind::Client as i32,
                start_time_unix_nano: 1_700_000_000_123_456_800,
                end_time_unix_nano: 1_700_000_000_373_456_900,
                attributes: vec![
                    kv_str("http.method", "POST"),
                    kv_int("http.status_code", 201),
                    kv_int("http.response_content_length", 9_007_199_254_740_991),
                ],
                events: vec![span::Event {
                    time_unix_nano: 1_700_000_000_123_500_000,
                    name: "fetchStart".into(),
                    ..Default::default()
                }],
                status: Some(Status { code: 0, message: String::new() }),
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }]
}

fn expected_metrics() -> Vec<ResourceMetrics> {
    let start = 1_699_999_990_000_000_000;
    let time = 1_700_000_000_000_000_000;
    let metric = |name: &str, unit: &str, data: metric::Data| Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    };
    vec![ResourceMetrics {
        resource: resource(vec![kv_str("service.name", "chatbot-api")]),
        scope_metrics: vec![ScopeMetrics {
            scope: scope("opentelemetry.sdk.metrics", "1.27.0"),
            metrics: vec![
                Metric {
                    description: "CPU in use".into(),
                    ..metric(
                        "system.cpu.utilization",
                        "1",
                        metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: time,
                                value: Some(number_data_point::Value::AsDouble(0.42)),
                                attributes: vec![kv_str("cpu", "cpu0")],
                                ..Default::default()
                            }],
                        }),
                    )
                },
                metric(
                    "http.server.requests",
                    "{request}",
                    metric::Data::Sum(Sum {
                        aggregation_temporality: 2,
                        is_monotonic: true,
                        data_points: vec![NumberDataPoint {
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            value: Some(number_data_point::Value::AsInt(9_007_199_254_740_993)),
                            ..Default::default()
                        }],
                    }),
                ),
                metric(
                    "http.server.request.duration",
                    "s",
                    metric::Data::Histogram(Histogram {
                        aggregation_temporality: 1,
                        data_points: vec![HistogramDataPoint {
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            count: 6,
                            sum: Some(1.5),
                            bucket_counts: vec![1, 2, 3],
                            explicit_bounds: vec![0.1, 0.5],
                            min: Some(0.05),
                            max: Some(0.9),
                            exemplars: vec![Exemplar {
                                time_unix_nano: 1_699_999_995_000_000_000,
                                value: Some(exemplar::Value::AsDouble(0.9)),
                                span_id: hex("eee19b7ec3c1b174"),
                                trace_id: hex("5b8efff798038103d269b633813fc60c"),
                                filtered_attributes: vec![kv_str("http.route", "/chat")],
                            }],
                            ..Default::default()
                        }],
                    }),
                ),
                metric(
                    "gen_ai.client.operation.duration",
                    "s",
                    metric::Data::ExponentialHistogram(ExponentialHistogram {
                        aggregation_temporality: 2,
                        data_points: vec![ExponentialHistogramDataPoint {
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            count: 7,
                            sum: Some(12.5),
                            scale: 3,
                            zero_count: 1,
                            zero_threshold: 0.0001,
                            positive: Some(Buckets { offset: -2, bucket_counts: vec![1, 0, 4] }),
                            negative: Some(Buckets { offset: 1, bucket_counts: vec![1] }),
                            min: Some(-2.5),
                            max: Some(6.25),
                            ..Default::default()
                        }],
                    }),
                ),
                metric(
                    "db.query.latency",
                    "ms",
                    metric::Data::Summary(Summary {
                        data_points: vec![SummaryDataPoint {
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            count: 100,
                            sum: 2500.5,
                            quantile_values: vec![
                                ValueAtQuantile { quantile: 0.5, value: 20.0 },
                                ValueAtQuantile { quantile: 0.99, value: 180.25 },
                            ],
                            ..Default::default()
                        }],
                    }),
                ),
            ],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }]
}

fn expected_logs() -> Vec<ResourceLogs> {
    vec![ResourceLogs {
        resource: resource(vec![kv_str("service.name", "chatbot-api")]),
        scope_logs: vec![ScopeLogs {
            scope: scope("chatbot.rag", ""),
            log_records: vec![
                LogRecord {
                    time_unix_nano: 1_700_000_000_000_000_000,
                    observed_time_unix_nano: 1_700_000_000_000_000_500,
                    severity_number: 17,
                    severity_text: "ERROR".into(),
                    body: value(any_value::Value::StringValue("embedding request failed".into())),
                    attributes: vec![kv_int("retry", 3), kv_str("exception.type", "TimeoutError")],
                    trace_id: hex("5b8efff798038103d269b633813fc60c"),
                    span_id: hex("eee19b7ec3c1b174"),
                    flags: 1,
                    ..Default::default()
                },
                LogRecord {
                    observed_time_unix_nano: 1_700_000_000_000_001_000,
                    severity_number: 9,
                    body: value(any_value::Value::KvlistValue(KeyValueList {
                        values: vec![kv_str("event", "cache.warm"), kv_int("entries", 128)],
                    })),
                    event_name: "cache.warm".into(),
                    dropped_attributes_count: 2,
                    ..Default::default()
                },
            ],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }]
}

#[test]
fn traces_fixture_decodes_exactly() {
    let r: ExportTraceServiceRequest = serde_json::from_str(&fixture("traces.json")).unwrap();
    assert_eq!(r.resource_spans, expected_traces());
}

#[test]
fn javascript_numbers_fixture_decodes_exactly() {
    let r: ExportTraceServiceRequest = serde_json::from_str(&fixture("traces_js_numbers.json")).unwrap();
    assert_eq!(r.resource_spans, expected_js_traces());
}

#[test]
fn metrics_fixture_decodes_exactly() {
    let r: ExportMetricsServiceRequest = serde_json::from_str(&fixture("metrics.json")).unwrap();
    assert_eq!(r.resource_metrics, expected_metrics());
}

#[test]
fn logs_fixture_decodes_exactly() {
    let r: ExportLogsServiceRequest = serde_json::from_str(&fixture("logs.json")).unwrap();
    assert_eq!(r.resource_logs, expected_logs());
}

#[test]
fn enum_names_are_refused_as_the_spec_requires_integers() {
    let text = fixture("traces.json").replace("\"kind\": 2", "\"kind\": \"SPAN_KIND_SERVER\"");
    assert!(serde_json::from_str::<ExportTraceServiceRequest>(&text).is_err());
}

#[tokio::test]
async fn every_fixture_arrives_intact_through_the_receiver() {
    let mut h = Harness::start("").await;
    let client = http_client();
    for (path, file) in [
        ("/v1/traces", "traces.json"),
        ("/v1/traces", "traces_js_numbers.json"),
        ("/v1/metrics", "metrics.json"),
        ("/v1/logs", "logs.json"),
    ] {
        let resp = client
            .post(h.http_url(path))
            .header("content-type", "application/json")
            .body(fixture(file))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{file}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.text().await.unwrap(), "{}");
    }
    assert_eq!(h.next_traces().await, Batch::Traces(expected_traces()));
    assert_eq!(h.next_traces().await, Batch::Traces(expected_js_traces()));
    assert_eq!(h.next_metrics().await, Batch::Metrics(expected_metrics()));
    assert_eq!(h.next_logs().await, Batch::Logs(expected_logs()));
    h.stop().await;
}
