//! The `otlp` receiver driven over real sockets: tonic clients from
//! `opentelemetry-proto`, reqwest, and raw HTTP where a client would not
//! misbehave on its own. Each status case has its own test, and every bad
//! request is followed by a good one.

mod harness;
mod json;

use flate2::Compression;
use flate2::write::GzEncoder;
use harness::{Harness, WAIT, http_client, raw_grpc, raw_http, rpc, traces_request};
use magpie_core::otlp::testdata;
use magpie_core::proto::collector::logs::v1::logs_service_client::LogsServiceClient;
use magpie_core::proto::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use magpie_core::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use magpie_core::proto::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use magpie_core::proto::collector::trace::v1::trace_service_client::TraceServiceClient;
use magpie_core::proto::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use magpie_core::{Batch, Signal};
use prost::Message;
use std::io::Write;
use std::time::{Duration, Instant};
use tonic::codec::CompressionEncoding;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";
const TRACE_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).expect("gzip into memory");
    e.finish().expect("gzip into memory")
}

async fn post(h: &Harness, path: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    let request = http_client().post(h.http_url(path)).header("content-type", content_type).body(body);
    request.send().await.expect("the receiver answers")
}

/// The `google.rpc.Status` of an error response, decoded per its content type.
async fn status_of(resp: reqwest::Response) -> (u16, rpc::Status) {
    let code = resp.status().as_u16();
    let content_type = resp.headers()["content-type"].to_str().expect("a text content type").to_string();
    let body = resp.bytes().await.expect("an error body");
    let status = if content_type == JSON {
        let v: serde_json::Value = serde_json::from_slice(&body).expect("a JSON Status");
        let text = |v: &serde_json::Value| v.as_str().expect("a JSON string").to_string();
        rpc::Status {
            code: v["code"].as_i64().and_then(|c| i32::try_from(c).ok()).expect("an integer code"),
            message: text(&v["message"]),
            details: v["details"]
                .as_array()
                .expect("a details array")
                .iter()
                .map(|d| rpc::Any { type_url: text(&d["@type"]), value: d.to_string().into_bytes() })
                .collect(),
        }
    } else {
        assert_eq!(content_type, PROTOBUF);
        rpc::Status::decode(body).expect("a protobuf Status")
    };
    (code, status)
}

// ---------------------------------------------------------------------------
// OTLP/HTTP

#[tokio::test]
async fn http_protobuf_is_accepted_and_answered_in_protobuf() {
    let mut h = Harness::start("").await;
    let request = traces_request(2, 3);
    let resp = post(&h, "/v1/traces", PROTOBUF, request.encode_to_vec()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], PROTOBUF);
    let body = resp.bytes().await.unwrap();
    assert_eq!(ExportTraceServiceResponse::decode(body).unwrap(), ExportTraceServiceResponse::default());
    assert_eq!(h.next_traces().await, Batch::Traces(request.resource_spans));

    let metrics = ExportMetricsServiceRequest { resource_metrics: testdata::gauges(1, 4) };
    assert_eq!(post(&h, "/v1/metrics", PROTOBUF, metrics.encode_to_vec()).await.status(), 200);
    assert_eq!(h.next_metrics().await, Batch::Metrics(metrics.resource_metrics));
    let logs = ExportLogsServiceRequest { resource_logs: testdata::logs(1, 5) };
    assert_eq!(post(&h, "/v1/logs", PROTOBUF, logs.encode_to_vec()).await.status(), 200);
    assert_eq!(h.next_logs().await, Batch::Logs(logs.resource_logs));

    let s = h.stats.snapshot();
    assert_eq!((s.received, s.accepted, s.refused), (6 + 4 + 5, 6 + 4 + 5, 0));
    h.stop().await;
}

#[tokio::test]
async fn http_json_is_accepted_and_answered_in_json() {
    let mut h = Harness::start("").await;
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;
    let resp = post(&h, "/v1/traces", "application/json; charset=utf-8", body.into()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], JSON);
    assert_eq!(resp.text().await.unwrap(), "{}");
    let Batch::Traces(rs) = h.next_traces().await else { panic!("not traces") };
    let span = &rs[0].scope_spans[0].spans[0];
    assert_eq!((span.name.as_str(), span.kind, span.end_time_unix_nano), ("GET /", 2, 2));
    assert_eq!(span.span_id, vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]);
    h.stop().await;
}

#[tokio::test]
async fn http_gzip_bodies_are_inflated() {
    let mut h = Harness::start("").await;
    let request = traces_request(1, 10);
    let resp = http_client()
        .post(h.http_url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("content-encoding", "gzip")
        .body(gzip(&request.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.next_traces().await, Batch::Traces(request.resource_spans));

    let json = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"}}]}]}]}"#;
    let resp = http_client()
        .post(h.http_url("/v1/logs"))
        .header("content-type", JSON)
        .header("content-encoding", "gzip")
        .body(gzip(json))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.next_logs().await.item_count(), 1);

    let (code, status) = status_of(
        http_client()
            .post(h.http_url("/v1/traces"))
            .header("content-type", PROTOBUF)
            .header("content-encoding", "gzip")
            .body(b"this is not gzip".to_vec())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 400);
    assert!(status.message.contains("Gzip"), "{}", status.message);
    h.assert_serves().await;
    h.stop().await;
}

#[tokio::test]
async fn http_chunked_bodies_without_content_length_are_read() {
    let mut h = Harness::start("").await;
    let body = traces_request(1, 3).encode_to_vec();
    let (first, second) = body.split_at(body.len() / 2);
    let mut request = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {PROTOBUF}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in [first, second] {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, _, _) = raw_http(h.http.unwrap(), &request).await;
    assert_eq!(status, 200);
    assert_eq!(h.next_traces().await.item_count(), 3);
    h.stop().await;
}

#[tokio::test]
async fn http_malformed_protobuf_is_400_with_a_status_body() {
    let mut h = Harness::start("").await;
    let (code, status) =
        status_of(post(&h, "/v1/traces", PROTOBUF, vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 1]).await).await;
    assert_eq!(code, 400);
    assert_eq!(status.code, tonic::Code::InvalidArgument as i32);
    assert!(status.message.contains("ExportTraceServiceRequest"), "{}", status.message);
    assert_eq!(status.details[0].type_url, "type.googleapis.com/google.rpc.BadRequest");
    let bad = rpc::BadRequest::decode(status.details[0].value.as_slice()).unwrap();
    assert!(!bad.field_violations[0].description.is_empty());
    h.no_traces();
    h.assert_serves().await;
    h.stop().await;
}

#[tokio::test]
async fn http_malformed_json_is_400_with_a_json_status_body() {
    let mut h = Harness::start("").await;
    for body in [
        &br#"{"resourceSpans": [ {"#[..],
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}"#,
        b"",
    ] {
        let resp = post(&h, "/v1/traces", JSON, body.to_vec()).await;
        assert_eq!(resp.headers()["content-type"], JSON);
        let (code, status) = status_of(resp).await;
        assert_eq!(code, 400);
        assert_eq!(status.code, 3);
        assert!(
            status.message.starts_with("the body is not a valid ExportTraceServiceRequest"),
            "{}",
            status.message
        );
        let detail: serde_json::Value = serde_json::from_slice(&status.details[0].value).unwrap();
        assert_eq!(detail["@type"], "type.googleapis.com/google.rpc.BadRequest");
    }
    h.no_traces();
    h.assert_serves().await;
    h.stop().await;
}

#[tokio::test]
async fn http_oversized_bodies_are_413_even_when_compressed_or_chunked() {
    let mut h = Harness::start("protocols:\n  http: { max_request_body_size: 65536 }\n").await;
    // Declared too large.
    let (code, status) = status_of(post(&h, "/v1/traces", PROTOBUF, vec![0; 70_000]).await).await;
    assert_eq!(code, 413);
    assert!(status.message.contains("max_request_body_size (65536 bytes)"), "{}", status.message);
    h.assert_serves().await;

    // A gzip bomb: 16 KiB on the wire, 16 MiB inflated. Refused as soon as
    // the inflated size crosses the limit.
    let bomb = gzip(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 65536, "{}", bomb.len());
    let started = Instant::now();
    let resp = http_client()
        .post(h.http_url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(started.elapsed() < Duration::from_secs(5));
    h.assert_serves().await;

    // Chunked, so no Content-Length to refuse up front.
    let mut request = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {PROTOBUF}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..5 {
        request.extend_from_slice(format!("{:x}\r\n", 20_000).as_bytes());
        request.extend_from_slice(&[0u8; 20_000]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, _, body) = raw_http(h.http.unwrap(), &request).await;
    assert_eq!(status, 413);
    assert!(rpc::Status::decode(body.as_slice()).unwrap().message.contains("max_request_body_size"));
    h.no_traces();
    h.assert_serves().await;
    h.stop().await;
}

#[tokio::test]
async fn http_unsupported_content_type_is_415() {
    let mut h = Harness::start("").await;
    let (code, status) = status_of(post(&h, "/v1/traces", "text/plain", b"hello".to_vec()).await).await;
    assert_eq!(code, 415);
    assert!(status.message.contains("unsupported Content-Type `text/plain`"), "{}", status.message);
    let resp = http_client()
        .post(h.http_url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("content-encoding", "br")
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    h.assert_serves().await;
    h.stop().await;
}

#[tokio::test]
async fn http_wrong_method_is_405() {
    let mut h = Harness::start("").await;
    let resp = http_client().get(h.http_url("/v1/traces")).send().await.unwrap();
    assert_eq!(resp.headers()["allow"], "POST");
    let (code, status) = status_of(resp).await;
    assert_eq!(code, 405);
    assert!(status.message.contains("GET"), "{}", status.message);
    assert_eq!(http_client().put(h.http_url("/v1/logs")).send().await.unwrap().status(), 405);
    h.assert_serves().await;
    h.stop().await;
}

#[tokio::test]
async fn http_unknown_paths_and_signals_without_a_pipeline_are_404() {
    let mut h = Harness::with("", &[Signal::Traces], 8).await;
    let (code, status) = status_of(post(&h, "/v1/spans", PROTOBUF, vec![]).await).await;
    assert_eq!(code, 404);
    assert!(status.message.contains("/v1/spans"), "{}", status.message);
    let logs = ExportLogsServiceRequest { resource_logs: testdata::logs(1, 1) };
    let (code, status) = status_of(post(&h, "/v1/logs", PROTOBUF, logs.encode_to_vec()).await).await;
    assert_eq!(code, 404);
    assert!(status.message.contains("no logs pipeline"), "{}", status.message);
    assert_eq!(post(&h, "/v1/metrics", JSON, b"{}".to_vec()).await.status(), 404);
    h.assert_serves().await;
    h.stop().await;
}

#[tokio::test]
async fn custom_url_paths_are_served() {
    let mut h = Harness::start("protocols:\n  http: { traces_url_path: /otlp/spans }\n").await;
    assert_eq!(post(&h, "/v1/traces", PROTOBUF, vec![]).await.status(), 404);
    let resp = post(&h, "/otlp/spans", PROTOBUF, traces_request(1, 1).encode_to_vec()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.next_traces().await.item_count(), 1);
    h.stop().await;
}

#[tokio::test]
async fn http_without_the_bearer_token_is_401() {
    let mut h = Harness::start("auth: { bearer_token: s3cret }\n").await;
    let body = traces_request(1, 1).encode_to_vec();
    for auth in [None, Some("Bearer nope"), Some("Basic s3cret")] {
        let mut req =
            http_client().post(h.http_url("/v1/traces")).header("content-type", PROTOBUF).body(body.clone());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let (code, status) = status_of(resp).await;
        assert_eq!(code, 401, "{auth:?}");
        assert_eq!(status.code, tonic::Code::Unauthenticated as i32);
    }
    h.no_traces();
    let resp = http_client()
        .post(h.http_url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("authorization", "Bearer s3cret")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.next_traces().await.item_count(), 1);
    h.stop().await;
}

#[tokio::test]
async fn cors_preflight_from_an_allowed_origin_is_204_with_the_headers() {
    let mut h = Harness::start(
        "protocols:\n  http:\n    cors: { allowed_origins: ['https://*.example.com'], allowed_headers: [X-Team], max_age: 7200 }\n",
    )
    .await;
    let resp = http_client()
        .request(reqwest::Method::OPTIONS, h.http_url("/v1/traces"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-team")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let headers = resp.headers();
    assert_eq!(headers["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(headers["access-control-allow-methods"], "POST");
    assert_eq!(headers["access-control-allow-headers"], "content-type,x-team");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-max-age"], "7200");

    let resp = http_client()
        .post(h.http_url("/v1/traces"))
        .header("origin", "https://app.example.com")
        .header("content-type", JSON)
        .body(r#"{"resourceSpans":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "https://app.example.com");
    h.assert_serves().await;
    h.stop().await;
}

#[tokio::test]
async fn cors_preflight_from_another_origin_is_403_and_its_posts_get_no_cors_headers() {
    let mut h =
        Harness::start("protocols:\n  http:\n    cors: { allowed_origins: ['https://app.example.com'] }\n")
            .await;
    let resp = http_client()
        .request(reqwest::Method::OPTIONS, h.http_url("/v1/traces"))
        .header("origin", "https://evil.example.org")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(!resp.headers().contains_key("access-control-allow-origin"));

    let resp = http_client()
        .post(h.http_url("/v1/traces"))
        .header("origin", "https://evil.example.org")
        .header("content-type", PROTOBUF)
        .body(traces_request(1, 1).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
    assert_eq!(h.next_traces().await.item_count(), 1);
    h.assert_serves().await;
    h.stop().await;
}

#[tokio::test]
async fn http_full_pipeline_is_503_with_retry_after() {
    let mut h = Harness::with("backpressure_timeout: 100ms\n", &Signal::OTLP, 1).await;
    let body = traces_request(1, 1).encode_to_vec();
    assert_eq!(post(&h, "/v1/traces", PROTOBUF, body.clone()).await.status(), 200);
    let started = Instant::now();
    let resp = post(&h, "/v1/traces", PROTOBUF, body.clone()).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(resp.headers()["retry-after"], "1");
    let (code, status) = status_of(resp).await;
    assert_eq!(code, 503);
    assert_eq!(status.code, tonic::Code::Unavailable as i32);
    assert_eq!(status.details[0].type_url, "type.googleapis.com/google.rpc.RetryInfo");

    let resp = post(&h, "/v1/traces", JSON, br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}"#.to_vec()).await;
    let (code, status) = status_of(resp).await;
    assert_eq!(code, 503);
    let detail: serde_json::Value = serde_json::from_slice(&status.details[0].value).unwrap();
    assert_eq!(detail["retryDelay"], "1s");

    let s = h.stats.snapshot();
    assert_eq!((s.received, s.accepted, s.refused), (3, 1, 2));
    // The client retries once the pipeline has room again.
    assert_eq!(h.next_traces().await.item_count(), 1);
    h.assert_serves().await;
    h.stop().await;
}

#[tokio::test]
async fn partial_success_reports_and_counts_the_rejected_items() {
    let mut h = Harness::start("").await;
    let mut request = traces_request(2, 2);
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1; 15];
    request.resource_spans[0].scope_spans[0].spans[1].span_id = vec![];
    request.resource_spans[1].scope_spans[0].spans[1].parent_span_id = vec![1; 3];
    let resp = post(&h, "/v1/traces", PROTOBUF, request.encode_to_vec()).await;
    assert_eq!(resp.status(), 200);
    let response = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 3);
    assert!(partial.error_message.contains("trace_id must be 16 bytes"), "{}", partial.error_message);
    let Batch::Traces(rs) = h.next_traces().await else { panic!("not traces") };
    assert_eq!(rs.len(), 1, "the resource whose spans were all rejected is dropped");
    assert_eq!(rs[0], {
        let mut r = request.resource_spans[1].clone();
        r.scope_spans[0].spans.truncate(1);
        r
    });
    let s = h.stats.snapshot();
    assert_eq!((s.received, s.accepted, s.refused), (4, 1, 3));

    // The same in JSON: the counter is an int64, so a string.
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee1"}]}]}]}"#;
    let resp = post(&h, "/v1/traces", JSON, body.into()).await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1");
    assert!(v["partialSuccess"]["errorMessage"].as_str().unwrap().contains("span_id must be 8 bytes"));
    h.no_traces();

    // Over gRPC, for logs.
    let mut client = LogsServiceClient::connect(h.grpc_url()).await.unwrap();
    let mut logs = ExportLogsServiceRequest { resource_logs: testdata::logs(1, 3) };
    logs.resource_logs[0].scope_logs[0].log_records[2].span_id = vec![9; 4];
    let response = client.export(logs).await.unwrap().into_inner();
    assert_eq!(response.partial_success.map(|p| p.rejected_log_records), Some(1));
    assert_eq!(h.next_logs().await.item_count(), 2);
    h.stop().await;
}

#[tokio::test]
async fn empty_requests_succeed_with_an_empty_response() {
    let mut h = Harness::start("").await;
    let resp = post(&h, "/v1/traces", PROTOBUF, vec![]).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = post(&h, "/v1/traces", JSON, b"{}".to_vec()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "{}");
    // Envelopes without items are dropped, so nothing is sent.
    let hollow = ExportTraceServiceRequest { resource_spans: vec![Default::default()] };
    assert_eq!(post(&h, "/v1/traces", PROTOBUF, hollow.encode_to_vec()).await.status(), 200);
    let mut client = TraceServiceClient::connect(h.grpc_url()).await.unwrap();
    let response = client.export(ExportTraceServiceRequest::default()).await.unwrap().into_inner();
    assert_eq!(response, ExportTraceServiceResponse::default());
    h.no_traces();
    assert_eq!(h.stats.snapshot().received, 0);
    h.assert_serves().await;
    h.stop().await;
}

#[tokio::test]
async fn a_stalled_client_does_not_block_others() {
    let mut h = Harness::start("").await;
    let mut stalled = tokio::net::TcpStream::connect(h.http.unwrap()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stalled,
        format!("POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {PROTOBUF}\r\nContent-Length: 1000\r\n\r\nabc")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut half = tokio::net::TcpStream::connect(h.http.unwrap()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut half, b"POST /v1/tra").await.unwrap();
    h.assert_serves().await;
    h.assert_serves().await;
    drop((stalled, half));
    h.stop().await;
}

// ---------------------------------------------------------------------------
// OTLP/gRPC

#[tokio::test]
async fn grpc_exports_every_signal_with_and_without_gzip() {
    let mut h = Harness::start("").await;
    let mut traces = TraceServiceClient::connect(h.grpc_url()).await.unwrap();
    let request = traces_request(2, 2);
    let response = traces.export(request.clone()).await.unwrap().into_inner();
    assert_eq!(response.partial_success, None);
    assert_eq!(h.next_traces().await, Batch::Traces(request.resource_spans));

    let mut gz =
        TraceServiceClient::connect(h.grpc_url()).await.unwrap().send_compressed(CompressionEncoding::Gzip);
    let request = traces_request(1, 50);
    gz.export(request.clone()).await.unwrap();
    assert_eq!(h.next_traces().await, Batch::Traces(request.resource_spans));

    let mut metrics =
        MetricsServiceClient::connect(h.grpc_url()).await.unwrap().send_compressed(CompressionEncoding::Gzip);
    let request = ExportMetricsServiceRequest { resource_metrics: testdata::gauges(1, 3) };
    metrics.export(request.clone()).await.unwrap();
    assert_eq!(h.next_metrics().await, Batch::Metrics(request.resource_metrics));

    let mut logs = LogsServiceClient::connect(h.grpc_url()).await.unwrap();
    let request = ExportLogsServiceRequest { resource_logs: testdata::logs(2, 1) };
    let response = logs.export(request.clone()).await.unwrap().into_inner();
    assert_eq!(response, ExportLogsServiceResponse::default());
    assert_eq!(h.next_logs().await, Batch::Logs(request.resource_logs));
    h.stop().await;
}

#[tokio::test]
async fn grpc_garbage_is_invalid_argument() {
    let mut h = Harness::start("").await;
    let (status, message) =
        raw_grpc(h.grpc.unwrap(), TRACE_PATH, &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).await;
    assert_eq!(status, (tonic::Code::InvalidArgument as i32).to_string());
    assert!(message.contains("ExportTraceServiceRequest"), "{message}");
    h.no_traces();
    let mut client = TraceServiceClient::connect(h.grpc_url()).await.unwrap();
    client.export(traces_request(1, 1)).await.unwrap();
    assert_eq!(h.next_traces().await.item_count(), 1);
    h.stop().await;
}

#[tokio::test]
async fn grpc_full_pipeline_is_unavailable_with_retry_info() {
    let mut h = Harness::with("backpressure_timeout: 100ms\n", &Signal::OTLP, 1).await;
    let mut client = TraceServiceClient::connect(h.grpc_url()).await.unwrap();
    client.export(traces_request(1, 1)).await.unwrap();
    let status = client.export(traces_request(1, 1)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let details = rpc::Status::decode(status.details()).unwrap();
    assert_eq!(details.code, tonic::Code::Unavailable as i32);
    assert_eq!(details.details[0].type_url, "type.googleapis.com/google.rpc.RetryInfo");
    let info = rpc::RetryInfo::decode(details.details[0].value.as_slice()).unwrap();
    assert_eq!(info.retry_delay, Some(rpc::Duration { seconds: 1, nanos: 0 }));
    assert_eq!(h.next_traces().await.item_count(), 1);
    client.export(traces_request(1, 1)).await.unwrap();
    assert_eq!(h.next_traces().await.item_count(), 1);
    h.stop().await;
}

#[tokio::test]
async fn grpc_without_the_bearer_token_is_unauthenticated() {
    let mut h = Harness::start("auth: { bearer_token: s3cret }\n").await;
    let mut client = TraceServiceClient::connect(h.grpc_url()).await.unwrap();
    let status = client.export(traces_request(1, 1)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let mut request = tonic::Request::new(traces_request(1, 1));
    request.metadata_mut().insert("authorization", "Bearer wrong".parse().unwrap());
    assert_eq!(client.export(request).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    h.no_traces();
    let mut request = tonic::Request::new(traces_request(1, 1));
    request.metadata_mut().insert("authorization", "Bearer s3cret".parse().unwrap());
    client.export(request).await.unwrap();
    assert_eq!(h.next_traces().await.item_count(), 1);
    h.stop().await;
}

#[tokio::test]
async fn grpc_signals_without_a_pipeline_are_unimplemented() {
    let mut h = Harness::with("", &[Signal::Traces], 8).await;
    let mut logs = LogsServiceClient::connect(h.grpc_url()).await.unwrap();
    let status =
        logs.export(ExportLogsServiceRequest { resource_logs: testdata::logs(1, 1) }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    let (status, _) = raw_grpc(h.grpc.unwrap(), "/some.Other/Method", &[]).await;
    assert_eq!(status, (tonic::Code::Unimplemented as i32).to_string());
    let mut traces = TraceServiceClient::connect(h.grpc_url()).await.unwrap();
    traces.export(traces_request(1, 1)).await.unwrap();
    assert_eq!(h.next_traces().await.item_count(), 1);
    h.stop().await;
}

#[tokio::test]
async fn grpc_oversized_messages_are_resource_exhausted() {
    let mut h = Harness::start("protocols:\n  grpc: { max_recv_msg_size_mib: 1 }\n").await;
    let mut big = traces_request(1, 1);
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(2 << 20);
    let mut client = TraceServiceClient::connect(h.grpc_url()).await.unwrap();
    let status = client.export(big.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("max_recv_msg_size_mib (1 MiB)"), "{}", status.message());
    // Small on the wire, too big once inflated.
    let mut gz =
        TraceServiceClient::connect(h.grpc_url()).await.unwrap().send_compressed(CompressionEncoding::Gzip);
    let status = gz.export(big).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    h.no_traces();
    client.export(traces_request(1, 1)).await.unwrap();
    assert_eq!(h.next_traces().await.item_count(), 1);
    h.stop().await;
}

// ---------------------------------------------------------------------------
// Lifecycle

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_then_drops_the_output() {
    let mut h = Harness::with("backpressure_timeout: 5s\n", &Signal::OTLP, 1).await;
    let url = h.http_url("/v1/traces");
    assert_eq!(post(&h, "/v1/traces", PROTOBUF, traces_request(1, 1).encode_to_vec()).await.status(), 200);
    // This one waits for room in the full pipeline while shutdown begins.
    let in_flight = tokio::spawn(async move {
        http_client()
            .post(url)
            .header("content-type", PROTOBUF)
            .body(traces_request(1, 2).encode_to_vec())
            .send()
            .await
            .unwrap()
            .status()
    });
    // The output counts items as received when it starts waiting for room.
    let waiting = async {
        while h.stats.snapshot().received < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, waiting).await.expect("the second request reached the pipeline");
    h.shutdown_token().cancel();
    let addr = h.http.unwrap();
    let refused = async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, refused).await.expect("still accepting after shutdown");
    assert_eq!(h.next_traces().await.item_count(), 1);
    assert_eq!(tokio::time::timeout(WAIT, in_flight).await.unwrap().unwrap(), 200);
    assert_eq!(h.next_traces().await.item_count(), 2);
    h.stop().await;
    assert!(h.traces_closed().await, "the receiver still holds a sender");
}

#[tokio::test]
async fn a_bad_tls_file_fails_start() {
    let config = harness::config(
        "protocols:\n  http:\n    tls: { cert_file: /nonexistent/cert.pem, key_file: /nonexistent/key.pem }\n",
    );
    let mut r = magpie_receivers::otlp::OtlpReceiver::new(&config);
    let e = magpie_core::Receiver::start(&mut r, &"otlp".parse().unwrap()).await.unwrap_err();
    assert!(
        e.message.starts_with("protocols.http.tls: reading tls cert_file /nonexistent/cert.pem"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn tls_on_both_protocols() {
    harness::install_crypto();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let tls = format!(
        "{{ cert_file: '{}', key_file: '{}' }}",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display()
    );
    let mut h =
        Harness::start(&format!("protocols:\n  grpc: {{ tls: {tls} }}\n  http: {{ tls: {tls} }}\n")).await;

    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let port = h.http.unwrap().port();
    let resp = client
        .post(format!("https://localhost:{port}/v1/traces"))
        .header("content-type", PROTOBUF)
        .body(traces_request(1, 2).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.next_traces().await.item_count(), 2);
    // Plain HTTP on the TLS port gets nowhere.
    assert!(http_client().post(h.http_url("/v1/traces")).body(vec![]).send().await.is_err());

    let tls_config = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let channel =
        tonic::transport::Channel::from_shared(format!("https://localhost:{}", h.grpc.unwrap().port()))
            .unwrap()
            .tls_config(tls_config)
            .unwrap()
            .connect()
            .await
            .unwrap();
    TraceServiceClient::new(channel).export(traces_request(1, 3)).await.unwrap();
    assert_eq!(h.next_traces().await.item_count(), 3);
    h.stop().await;
}

#[tokio::test]
async fn stalled_clients_cannot_hold_up_shutdown_past_the_drain_timeout() {
    let mut h = Harness::start("backpressure_timeout: 100ms\n").await;
    let mut stalled_body = tokio::net::TcpStream::connect(h.http.unwrap()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stalled_body,
        format!("POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {PROTOBUF}\r\nContent-Length: 1000\r\n\r\nabc")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut stalled_head = tokio::net::TcpStream::connect(h.http.unwrap()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stalled_head, b"POST /v1/tra").await.unwrap();
    let mut stalled_h2 = tokio::net::TcpStream::connect(h.grpc.unwrap()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stalled_h2, b"PRI * HTTP/2.0\r\n").await.unwrap();
    h.assert_serves().await;
    let started = Instant::now();
    h.stop().await;
    // backpressure_timeout plus the 5 s drain grace, and some slack.
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    assert!(h.traces_closed().await, "the receiver still holds a sender");
}
