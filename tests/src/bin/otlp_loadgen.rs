//! `otlp_loadgen`: an OTLP trace load generator and the decode-only ceiling,
//! for the receive-path benchmark (`tests/bench/otlp-vs-rotel.sh`).
//!
//! `otlp_loadgen send` builds a set of realistic trace export requests once
//! (a resource with `service.name` and SDK attributes, spans with ten
//! attributes and two events each), encodes them once, and sends the same
//! bytes over and over to an OTLP/gRPC or OTLP/HTTP (protobuf) endpoint on
//! loopback: `--concurrency` requests in flight on kept-alive connections, at
//! `--rate` spans per second or as fast as the server answers. It prints the
//! spans and requests sent, the errors by kind and the achieved rate.
//!
//! `otlp_loadgen decode` decodes the same encoded requests in a loop on the
//! calling thread and prints spans decoded (and dropped) per CPU-second: with
//! `--decoder prost` the ceiling of any receiver built on prost's generated
//! decoder, with `--decoder magpie` that of the `otlp` receiver's trace
//! decoder (pin it to one core with `taskset`).

use anyhow::{Context as _, bail};
use bytes::{BufMut, Bytes};
use clap::{Parser, Subcommand, ValueEnum};
use magpie_core::proto::collector::trace::v1::{ExportTraceServiceRequest, trace_service_server};
use magpie_core::proto::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use magpie_core::proto::resource::v1::Resource;
use magpie_core::proto::trace::v1::span::{Event, SpanKind};
use magpie_core::proto::trace::v1::status::StatusCode;
use magpie_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The allocator the `magpie` binary uses, so that the decode-only ceiling is
/// measured under the same allocator as the receive path it is compared with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Distinct requests built per run; the generator cycles through them.
const DISTINCT_REQUESTS: usize = 16;

#[derive(Parser)]
#[command(name = "otlp_loadgen", about = "OTLP trace load generator and prost decode ceiling")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send pre-encoded trace export requests to an OTLP endpoint.
    Send(SendArgs),
    /// Prost-decode the same requests in a loop on this thread.
    Decode(DecodeArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    Grpc,
    Http,
}

#[derive(clap::Args)]
struct SendArgs {
    /// OTLP/gRPC or OTLP/HTTP (binary protobuf).
    #[arg(long, value_enum)]
    protocol: Protocol,
    /// The server: `127.0.0.1:4317` (gRPC) or `127.0.0.1:4318` (HTTP; `/v1/traces` is appended).
    #[arg(long)]
    endpoint: String,
    /// Spans per export request.
    #[arg(long, default_value_t = 1000)]
    spans_per_request: usize,
    /// Spans per second across all streams, or `max` to send as fast as the server answers.
    #[arg(long, default_value = "max")]
    rate: String,
    /// How long to send (`10s`, `1m`).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DecoderKind {
    /// `prost::Message::decode` as generated.
    Prost,
    /// The `otlp` receiver's trace decoder (spans presized per scope).
    Magpie,
}

#[derive(clap::Args)]
struct DecodeArgs {
    /// Which decoder to run.
    #[arg(long, value_enum, default_value = "prost")]
    decoder: DecoderKind,
    /// Spans per export request.
    #[arg(long, default_value_t = 1000)]
    spans_per_request: usize,
    /// How long to decode.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Send(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(send(args))
        }
        Command::Decode(args) => decode(&args),
    }
}

/// A string attribute.
fn s(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
        ..Default::default()
    }
}

/// An integer attribute.
fn i(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..Default::default()
    }
}

/// One request of `spans` spans, shaped like what the OpenTelemetry Python
/// SDK exports for a FastAPI app with an LLM/RAG backend.
fn build_request(seed: u64, spans: usize) -> ExportTraceServiceRequest {
    let resource = Resource {
        attributes: vec![
            s("service.name", "chatbot-api"),
            s("service.version", "1.14.2"),
            s("deployment.environment.name", "production"),
            s("host.name", "app-7f9c6d"),
            i("process.pid", 4242),
            s("telemetry.sdk.name", "opentelemetry"),
            s("telemetry.sdk.language", "python"),
            s("telemetry.sdk.version", "1.29.0"),
        ],
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "opentelemetry.instrumentation.fastapi".to_string(),
        version: "0.50b0".to_string(),
        ..Default::default()
    };
    let routes = ["/api/chat", "/api/conversations/{id}", "/api/search", "/health"];
    let spans = (0..spans as u64)
        .map(|n| {
            let id = seed.wrapping_mul(1_000_003).wrapping_add(n);
            let start = 1_764_000_000_000_000_000 + id * 1_000_000;
            let route = routes[(n % routes.len() as u64) as usize];
            let trace = (seed << 20) | (n / 8);
            Span {
                trace_id: [trace.to_be_bytes(), (!trace).to_be_bytes()].concat(),
                span_id: (id | (1 << 63)).to_be_bytes().to_vec(),
                parent_span_id: if n % 8 == 0 {
                    Vec::new()
                } else {
                    ((id - 1) | (1 << 63)).to_be_bytes().to_vec()
                },
                name: format!("POST {route}"),
                kind: if n % 8 == 0 { SpanKind::Server } else { SpanKind::Internal } as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1_000_000 + (id % 97) * 250_000,
                attributes: vec![
                    s("http.request.method", "POST"),
                    s("http.route", route),
                    s("url.path", "/api/chat"),
                    s("url.scheme", "https"),
                    i("http.response.status_code", 200),
                    s("server.address", "chat.example.com"),
                    s("client.address", "203.0.113.17"),
                    s("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
                    s("enduser.id", "user-8812"),
                    s("gen_ai.request.model", "grok-3-mini"),
                ],
                events: vec![
                    Event {
                        time_unix_nano: start + 200_000,
                        name: "retrieval.done".to_string(),
                        attributes: vec![i("rag.documents", 8), s("rag.index", "kb-main")],
                        ..Default::default()
                    },
                    Event {
                        time_unix_nano: start + 900_000,
                        name: "llm.first_token".to_string(),
                        attributes: vec![
                            i("gen_ai.usage.input_tokens", 1234),
                            i("gen_ai.usage.output_tokens", 87),
                        ],
                        ..Default::default()
                    },
                ],
                status: Some(Status { code: StatusCode::Ok as i32, message: String::new() }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans { scope: Some(scope), spans, schema_url: String::new() }],
            schema_url: "https://opentelemetry.io/schemas/1.27.0".to_string(),
        }],
    }
}

/// `DISTINCT_REQUESTS` encoded requests of `spans` spans each.
fn encoded_requests(spans: usize) -> Vec<Bytes> {
    (0..DISTINCT_REQUESTS as u64)
        .map(|seed| Bytes::from(build_request(seed, spans).encode_to_vec()))
        .collect()
}

fn decode(args: &DecodeArgs) -> anyhow::Result<()> {
    let requests = encoded_requests(args.spans_per_request);
    let bytes_per_request = requests[0].len();
    let started = Instant::now();
    let cpu_started = thread_cpu()?;
    let mut spans = 0u64;
    let mut decoded = 0u64;
    while started.elapsed() < args.duration {
        for body in &requests {
            let request = match args.decoder {
                DecoderKind::Prost => {
                    ExportTraceServiceRequest::decode(&body[..]).context("decoding a request")?
                }
                DecoderKind::Magpie => {
                    magpie_receivers::otlp::decode_traces(body).context("decoding a request")?
                }
            };
            spans += magpie_core::batch::span_count(&request.resource_spans) as u64;
            decoded += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // CPU time, not wall time: other processes on the core must not lower the ceiling.
    let cpu = (thread_cpu()? - cpu_started).as_secs_f64();
    println!(
        "decode decoder={} spans_per_request={} bytes_per_request={bytes_per_request} requests={decoded} spans={spans} seconds={secs:.3} cpu_seconds={cpu:.3} spans_per_cpu_s={:.0}",
        match args.decoder {
            DecoderKind::Prost => "prost",
            DecoderKind::Magpie => "magpie",
        },
        args.spans_per_request,
        spans as f64 / cpu
    );
    Ok(())
}

/// CPU time this thread has used (`/proc/thread-self/schedstat`, in ns).
fn thread_cpu() -> anyhow::Result<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("reading /proc/thread-self/schedstat")?;
    let ns = text.split_whitespace().next().and_then(|n| n.parse::<u64>().ok());
    ns.map(Duration::from_nanos).context("parsing /proc/thread-self/schedstat")
}

/// Counters shared by the senders.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    spans: AtomicU64,
    /// Failed requests by kind (`grpc:Unavailable`, `http:503`, `transport`).
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Counts {
    fn error(&self, kind: String) {
        *self.errors.lock().unwrap_or_else(|p| p.into_inner()).entry(kind).or_default() += 1;
    }
}

/// The rate limit: request `n` may start at `start + n * interval`.
struct Pacer {
    start: Instant,
    interval: Option<Duration>,
    next: AtomicU64,
    end: Instant,
}

impl Pacer {
    /// Waits for the next request's turn; `None` once the run is over.
    async fn next(&self) -> Option<()> {
        let n = self.next.fetch_add(1, Relaxed);
        if let Some(interval) = self.interval {
            let at = self.start + interval.mul_f64(n as f64);
            if at >= self.end {
                return None;
            }
            tokio::time::sleep_until(at.into()).await;
        }
        (Instant::now() < self.end).then_some(())
    }
}

async fn send(args: SendArgs) -> anyhow::Result<()> {
    if args.spans_per_request == 0 || args.concurrency == 0 {
        bail!("--spans-per-request and --concurrency must be at least 1");
    }
    let rate: Option<f64> = match args.rate.as_str() {
        "max" => None,
        r => Some(
            r.parse::<f64>().ok().filter(|r| *r > 0.0).context("--rate takes spans per second or `max`")?,
        ),
    };
    if !(args.endpoint.starts_with("127.") || args.endpoint.starts_with("localhost:")) {
        bail!("--endpoint must be a loopback address (127.x.x.x:port), got {}", args.endpoint);
    }
    let requests = Arc::new(encoded_requests(args.spans_per_request));
    let spans_per_request = args.spans_per_request as u64;
    let sender = match args.protocol {
        Protocol::Grpc => {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.endpoint))
                .context("the gRPC endpoint")?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connecting to {}", args.endpoint))?;
            Sender::Grpc(tonic::client::Grpc::new(channel))
        }
        Protocol::Http => {
            // Plain HTTP only, but reqwest wants a TLS provider all the same.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::builder()
                .http1_only()
                .tcp_nodelay(true)
                .pool_max_idle_per_host(args.concurrency)
                .timeout(Duration::from_secs(30))
                .build()
                .context("building the HTTP client")?;
            Sender::Http(client, Arc::new(format!("http://{}/v1/traces", args.endpoint)))
        }
    };
    let start = Instant::now();
    let pacer = Arc::new(Pacer {
        start,
        interval: rate.map(|r| Duration::from_secs_f64(spans_per_request as f64 / r)),
        next: AtomicU64::new(0),
        end: start + args.duration,
    });
    let counts = Arc::new(Counts::default());
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..args.concurrency {
        let (sender, requests, pacer, counts) =
            (sender.clone(), requests.clone(), pacer.clone(), counts.clone());
        workers.spawn(async move {
            let mut k = w;
            while pacer.next().await.is_some() {
                let body = requests[k % requests.len()].clone();
                k += 1;
                match sender.send(body).await {
                    Ok(()) => {
                        counts.requests.fetch_add(1, Relaxed);
                        counts.spans.fetch_add(spans_per_request, Relaxed);
                    }
                    Err(kind) => {
                        counts.error(kind);
                        // A failing server is not hammered in a tight loop.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let secs = start.elapsed().as_secs_f64();
    let spans = counts.spans.load(Relaxed);
    let errors = counts.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let error_total: u64 = errors.values().sum();
    let error_kinds: Vec<String> = errors.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    println!(
        "send protocol={} spans_per_request={} requests={} spans={spans} errors={error_total} error_kinds={} seconds={secs:.3} spans_per_s={:.0}",
        match args.protocol {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        },
        args.spans_per_request,
        counts.requests.load(Relaxed),
        if error_kinds.is_empty() { "none".to_string() } else { error_kinds.join(",") },
        spans as f64 / secs,
    );
    Ok(())
}

#[derive(Clone)]
enum Sender {
    Grpc(tonic::client::Grpc<tonic::transport::Channel>),
    Http(reqwest::Client, Arc<String>),
}

impl Sender {
    /// Sends one request; the error is its kind for the report.
    async fn send(&self, body: Bytes) -> Result<(), String> {
        match self {
            Sender::Grpc(grpc) => {
                let mut grpc = grpc.clone();
                grpc.ready().await.map_err(|_| "transport".to_string())?;
                let path = format!("/{}/Export", trace_service_server::SERVICE_NAME)
                    .parse()
                    .map_err(|_| "bad path".to_string())?;
                match grpc.unary(tonic::Request::new(body), path, RawCodec).await {
                    Ok(_) => Ok(()),
                    Err(status) => Err(format!("grpc:{:?}", status.code())),
                }
            }
            Sender::Http(client, url) => {
                let sent = client
                    .post(url.as_str())
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(response) => {
                        let status = response.status();
                        // Read the body so the connection goes back to the pool.
                        let _ = response.bytes().await;
                        if status.is_success() { Ok(()) } else { Err(format!("http:{}", status.as_u16())) }
                    }
                    Err(_) => Err("transport".to_string()),
                }
            }
        }
    }
}

/// Sends pre-encoded request bytes as they are and ignores the response body.
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = IgnoreDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> IgnoreDecoder {
        IgnoreDecoder
    }
}

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

struct IgnoreDecoder;

impl Decoder for IgnoreDecoder {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        use bytes::Buf;
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_realistic_and_valid() {
        let r = build_request(3, 25);
        let spans = &r.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 25);
        assert!(spans.iter().all(|s| s.trace_id.len() == 16 && s.span_id.len() == 8));
        assert!(spans.iter().all(|s| s.parent_span_id.is_empty() || s.parent_span_id.len() == 8));
        assert_eq!(spans[0].attributes.len(), 10);
        assert_eq!(spans[0].events.len(), 2);
        let ids: std::collections::HashSet<_> = spans.iter().map(|s| s.span_id.clone()).collect();
        assert_eq!(ids.len(), 25, "span ids are unique within a request");
        let bytes = r.encode_to_vec();
        assert_eq!(ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap(), r);
    }
}
