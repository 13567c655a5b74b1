//! The `otlp_http` and `otlp_grpc` exporters against local servers that
//! answer with scripted statuses: the OTLP retry table, `Retry-After` and
//! `RetryInfo` honoured, permanent errors not retried, partial success
//! reported and not retried — through the agent's real queue and retry loop.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use magpie::topology::Topology;
use magpie_core::otlp::testdata;
use magpie_core::proto::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use magpie_core::proto::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use magpie_core::testing::source;
use magpie_core::{Batch, ComponentKind, Telemetry};
use magpie_tests::{parse, unique};
use prost::Message;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone, Default)]
struct Script {
    /// Responses still to give, in order; then 200.
    replies: Arc<Mutex<Vec<(u16, Option<&'static str>)>>>,
    /// (arrival, status answered, spans in the request, headers seen)
    log: Arc<Mutex<Vec<(Instant, u16, usize, HeaderMap)>>>,
}

async fn otlp_http_server(script: Script) -> String {
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let script = script.clone();
            async move {
                let mut raw = Vec::new();
                let gz = headers.get("content-encoding").is_some_and(|v| v == "gzip");
                if gz {
                    flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut raw).unwrap();
                } else {
                    raw = body.to_vec();
                }
                let req = ExportTraceServiceRequest::decode(raw.as_slice()).unwrap();
                let spans = magpie_core::batch::span_count(&req.resource_spans);
                let (status, retry_after) = {
                    let mut r = script.replies.lock().unwrap();
                    if r.is_empty() { (200, None) } else { r.remove(0) }
                };
                script.log.lock().unwrap().push((Instant::now(), status, spans, headers));
                let mut resp_headers = HeaderMap::new();
                resp_headers.insert("content-type", "application/x-protobuf".parse().unwrap());
                if let Some(ra) = retry_after {
                    resp_headers.insert("retry-after", ra.parse().unwrap());
                }
                let body = if status == 200 {
                    ExportTraceServiceResponse { partial_success: None }.encode_to_vec()
                } else {
                    magpie_core::rpc::Status {
                        code: 14,
                        message: format!("scripted {status}"),
                        details: vec![],
                    }
                    .encode_to_vec()
                };
                (StatusCode::from_u16(status).unwrap(), resp_headers, body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn start(yaml: String) -> (magpie_core::testing::SourceHandle, Telemetry, Topology) {
    let src = unique("src");
    let config = parse(&yaml.replace("SRC", &src)).unwrap_or_else(|e| panic!("{e:?}"));
    let telemetry = Telemetry::new();
    let topology = Topology::start(&config, &telemetry).await.unwrap();
    (source(&src), telemetry, topology)
}

fn exporter_stats(t: &Telemetry, id: &str) -> magpie_core::telemetry::StatsSnapshot {
    t.entries()
        .iter()
        .find(|e| e.id.to_string() == id && e.kind == ComponentKind::Exporter)
        .unwrap()
        .stats
        .snapshot()
}

#[tokio::test]
async fn otlp_http_follows_the_retry_table() {
    let script = Script::default();
    *script.replies.lock().unwrap() = vec![(503, Some("1")), (429, None), (500, None), (400, None)];
    let url = otlp_http_server(script.clone()).await;
    let (src, telemetry, topology) = start(format!(
        "receivers: {{test_source: {{name: SRC}}}}\nexporters:\n  otlp_http:\n    endpoint: {url}\n    headers: {{x-api-key: sekret}}\n    retry_on_failure: {{initial_interval: 50ms, max_interval: 100ms}}\nservice:\n  pipelines:\n    traces: {{receivers: [test_source], exporters: [otlp_http]}}\n"
    ))
    .await;
    // Batch 1: 503 (Retry-After: 1) → 429 → 500, which is permanent: 3 attempts, then dropped.
    src.send(Batch::Traces(testdata::spans(1, 3)), WAIT).await.unwrap();
    // Batch 2: 400, permanent, not retried. Batch 3: 200.
    src.send(Batch::Traces(testdata::spans(1, 5)), WAIT).await.unwrap();
    src.send(Batch::Traces(testdata::spans(1, 7)), WAIT).await.unwrap();
    let t0 = Instant::now();
    while exporter_stats(&telemetry, "otlp_http").exported < 7 {
        assert!(
            t0.elapsed() < WAIT,
            "batch 3 never delivered: {:?}",
            exporter_stats(&telemetry, "otlp_http")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = script.log.lock().unwrap().clone();
    let statuses: Vec<(u16, usize)> = log.iter().map(|(_, s, n, _)| (*s, *n)).collect();
    assert_eq!(statuses, vec![(503, 3), (429, 3), (500, 3), (400, 5), (200, 7)]);
    assert!(log[1].0 - log[0].0 >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    assert!(log.iter().all(|(_, _, _, h)| h.get("x-api-key").is_some_and(|v| v == "sekret")));
    assert!(log.iter().all(|(_, _, _, h)| h.get("content-encoding").is_some_and(|v| v == "gzip")));
    let s = exporter_stats(&telemetry, "otlp_http");
    assert_eq!((s.exported, s.failed), (7, 8));
    topology.shutdown(WAIT).await;
}

#[tokio::test]
async fn otlp_http_json_encoding_and_an_unreachable_endpoint_is_retried() {
    // Nothing listens on this port until the server starts below.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (src, telemetry, topology) = start(format!(
        "receivers: {{test_source: {{name: SRC}}}}\nexporters:\n  otlp_http:\n    endpoint: http://{addr}\n    encoding: json\n    compression: none\n    retry_on_failure: {{initial_interval: 50ms, max_interval: 100ms}}\nservice:\n  pipelines:\n    traces: {{receivers: [test_source], exporters: [otlp_http]}}\n"
    ))
    .await;
    src.send(Batch::Traces(testdata::spans(2, 2)), WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(exporter_stats(&telemetry, "otlp_http").exported, 0);
    let got = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let g = g.clone();
            async move {
                assert_eq!(headers.get("content-type").unwrap(), "application/json");
                g.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                (
                    [("content-type", "application/json")],
                    "{\"partialSuccess\":{\"rejectedSpans\":\"1\",\"errorMessage\":\"one bad span\"}}",
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let t0 = Instant::now();
    while exporter_stats(&telemetry, "otlp_http").exported + exporter_stats(&telemetry, "otlp_http").failed
        < 4
    {
        assert!(t0.elapsed() < WAIT, "never delivered after the endpoint came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = exporter_stats(&telemetry, "otlp_http");
    assert_eq!(
        (s.exported, s.failed),
        (3, 1),
        "a partial success counts the rejected span and is not retried"
    );
    let bodies = got.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["resourceSpans"][1]["scopeSpans"][0]["spans"][0]["kind"], 2);
    topology.shutdown(WAIT).await;
}

#[derive(Clone, Default)]
struct GrpcScript {
    replies: Arc<Mutex<Vec<tonic::Status>>>,
    log: Arc<Mutex<Vec<(Instant, usize, Option<String>)>>>,
}

#[tonic::async_trait]
impl TraceService for GrpcScript {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let key = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
        let spans = magpie_core::batch::span_count(&request.get_ref().resource_spans);
        self.log.lock().unwrap().push((Instant::now(), spans, key));
        let next = {
            let mut r = self.replies.lock().unwrap();
            if r.is_empty() { None } else { Some(r.remove(0)) }
        };
        match next {
            Some(status) => Err(status),
            None if spans == 4 => Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: 2,
                    error_message: "two too many".into(),
                }),
            })),
            None => Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None })),
        }
    }
}

fn with_retry_info(code: tonic::Code, delay: Duration) -> tonic::Status {
    let details = magpie_core::rpc::Status {
        code: code as i32,
        message: "busy".into(),
        details: vec![magpie_core::rpc::retry_info(delay)],
    };
    tonic::Status::with_details(code, "busy", details.encode_to_vec().into())
}

#[tokio::test]
async fn otlp_grpc_follows_the_retry_table() {
    let script = GrpcScript::default();
    *script.replies.lock().unwrap() = vec![
        with_retry_info(tonic::Code::Unavailable, Duration::from_millis(700)),
        with_retry_info(tonic::Code::ResourceExhausted, Duration::from_millis(10)),
        tonic::Status::resource_exhausted("no retry info: permanent"),
        tonic::Status::invalid_argument("permanent"),
    ];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc =
        TraceServiceServer::new(script.clone()).accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream_shim::incoming(listener))
            .await
            .unwrap()
    });
    let (src, telemetry, topology) = start(format!(
        "receivers: {{test_source: {{name: SRC}}}}\nexporters:\n  otlp_grpc:\n    endpoint: {addr}\n    headers: {{authorization: Bearer t0k3n}}\n    retry_on_failure: {{initial_interval: 20ms, max_interval: 50ms}}\nservice:\n  pipelines:\n    traces: {{receivers: [test_source], exporters: [otlp_grpc]}}\n"
    ))
    .await;
    // Batch 1: UNAVAILABLE (RetryInfo 700ms) → RESOURCE_EXHAUSTED with RetryInfo → RESOURCE_EXHAUSTED without: dropped.
    src.send(Batch::Traces(testdata::spans(1, 1)), WAIT).await.unwrap();
    // Batch 2: INVALID_ARGUMENT, not retried. Batch 3: partial success (2 of 4 rejected). Batch 4: OK.
    for n in [2, 4, 3] {
        src.send(Batch::Traces(testdata::spans(1, n)), WAIT).await.unwrap();
    }
    let t0 = Instant::now();
    while exporter_stats(&telemetry, "otlp_grpc").exported < 5 {
        assert!(t0.elapsed() < WAIT, "{:?}", exporter_stats(&telemetry, "otlp_grpc"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = script.log.lock().unwrap().clone();
    let spans: Vec<usize> = log.iter().map(|(_, n, _)| *n).collect();
    assert_eq!(spans, vec![1, 1, 1, 2, 4, 3]);
    assert!(log[1].0 - log[0].0 >= Duration::from_millis(700), "RetryInfo delay honoured");
    assert!(log.iter().all(|(_, _, k)| k.as_deref() == Some("Bearer t0k3n")));
    let s = exporter_stats(&telemetry, "otlp_grpc");
    assert_eq!((s.exported, s.failed), (5, 5));
    topology.shutdown(WAIT).await;
}

/// A tiny adapter from a tokio listener to the stream tonic's server takes.
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct Incoming(tokio::net::TcpListener);

    pub fn incoming(l: tokio::net::TcpListener) -> Incoming {
        Incoming(l)
    }

    impl tonic::codegen::tokio_stream::Stream for Incoming {
        type Item = std::io::Result<tokio::net::TcpStream>;
        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.0.poll_accept(cx).map(|r| Some(r.map(|(s, _)| s)))
        }
    }
}
