//! The Rust OpenTelemetry SDK (`opentelemetry-otlp`) as our users run it,
//! over gRPC, HTTP/protobuf and HTTP/JSON, into the real `magpie` binary:
//! every span, metric and log record it sends arrives, exactly, at a `file`
//! exporter.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie_tests::{RunningAgent, read_otlp_lines};
use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;

const CONFIG: &str = "receivers:\n  otlp:\n    protocols:\n      grpc: {endpoint: \"127.0.0.1:0\"}\n      http: {endpoint: \"127.0.0.1:0\"}\nexporters:\n  file: {path: \"{dir}/out.jsonl\"}\nservice:\n  telemetry: {metrics: {address: \"127.0.0.1:0\"}}\n  pipelines:\n    traces: {receivers: [otlp], exporters: [file]}\n    metrics: {receivers: [otlp], exporters: [file]}\n    logs: {receivers: [otlp], exporters: [file]}\n";

#[derive(Clone, Copy)]
enum Wire {
    Grpc,
    HttpProto,
    HttpJson,
}

/// Sends the known set: 3 spans, a counter (5), a histogram (3 values) and 2 log records.
fn send(wire: Wire, grpc: &str, http: &str, service: &str) {
    let resource = Resource::builder().with_service_name(service.to_string()).build();
    let (span_exporter, metric_exporter, log_exporter) = match wire {
        Wire::Grpc => (
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(format!("http://{grpc}"))
                .build()
                .unwrap(),
            opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(format!("http://{grpc}"))
                .build()
                .unwrap(),
            opentelemetry_otlp::LogExporter::builder()
                .with_tonic()
                .with_endpoint(format!("http://{grpc}"))
                .build()
                .unwrap(),
        ),
        Wire::HttpProto | Wire::HttpJson => {
            let p = if matches!(wire, Wire::HttpJson) { Protocol::HttpJson } else { Protocol::HttpBinary };
            (
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(p)
                    .with_endpoint(format!("http://{http}/v1/traces"))
                    .build()
                    .unwrap(),
                opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_protocol(p)
                    .with_endpoint(format!("http://{http}/v1/metrics"))
                    .build()
                    .unwrap(),
                opentelemetry_otlp::LogExporter::builder()
                    .with_http()
                    .with_protocol(p)
                    .with_endpoint(format!("http://{http}/v1/logs"))
                    .build()
                    .unwrap(),
            )
        }
    };

    let tracer_provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_batch_exporter(span_exporter)
        .build();
    let tracer = tracer_provider.tracer("interop");
    let root = tracer.span_builder("POST /api/chat").with_kind(SpanKind::Server).start(&tracer);
    let cx = opentelemetry::Context::current_with_span(root);
    let span = cx.span();
    span.set_attribute(KeyValue::new("http.request.method", "POST"));
    span.set_attribute(KeyValue::new("http.route", "/api/chat"));
    span.set_attribute(KeyValue::new("http.response.status_code", 200i64));
    span.set_attribute(KeyValue::new("big.int", 9_007_199_254_740_993i64));
    span.set_attribute(KeyValue::new("ratio", 0.25f64));
    span.set_attribute(KeyValue::new("cached", true));
    span.add_event("cache miss", vec![KeyValue::new("key", "emb:1")]);
    let mut llm =
        tracer.span_builder("chat grok-4").with_kind(SpanKind::Client).start_with_context(&tracer, &cx);
    llm.set_attribute(KeyValue::new("gen_ai.system", "xai"));
    llm.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", 1234i64));
    llm.set_status(Status::error("upstream timeout"));
    llm.end();
    tracer.start_with_context("rag.search", &cx).end();
    span.end();
    tracer_provider.shutdown().unwrap();

    let meter_provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_resource(resource.clone())
        .with_periodic_exporter(metric_exporter)
        .build();
    let meter = meter_provider.meter("interop");
    let counter = meter.u64_counter("interop.requests").build();
    counter.add(2, &[KeyValue::new("route", "/api/chat")]);
    counter.add(3, &[KeyValue::new("route", "/api/chat")]);
    let hist = meter.f64_histogram("interop.latency").with_unit("s").build();
    for v in [0.1, 0.2, 0.4] {
        hist.record(v, &[]);
    }
    meter_provider.shutdown().unwrap();

    let logger_provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(log_exporter)
        .build();
    let logger = logger_provider.logger("interop");
    for (body, sev) in [("hello", Severity::Info), ("world", Severity::Error)] {
        let mut r = logger.create_log_record();
        r.set_body(AnyValue::String(body.into()));
        r.set_severity_number(sev);
        r.set_severity_text(if sev == Severity::Info { "INFO" } else { "ERROR" });
        logger.emit(r);
    }
    logger_provider.shutdown().unwrap();
}

fn check(wire: Wire, service: &str) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut agent = RunningAgent::start(CONFIG);
    let (grpc, http) = agent.otlp_addrs("otlp");
    // The SDK's blocking clients must not run inside an async context.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _guard = rt.enter();
    send(wire, &grpc, &http, service);
    drop(_guard);
    let out = agent.dir.path().join("out.jsonl");
    assert!(agent.stop().success());
    magpie_tests::interop::check_interop_set(&read_otlp_lines(&out), service, true);
}

#[test]
fn rust_sdk_over_grpc() {
    check(Wire::Grpc, "interop-rust-grpc");
}

#[test]
fn rust_sdk_over_http_protobuf() {
    check(Wire::HttpProto, "interop-rust-http-proto");
}

#[test]
fn rust_sdk_over_http_json() {
    check(Wire::HttpJson, "interop-rust-http-json");
}
