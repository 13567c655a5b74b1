//! Runs the real `otlp` receiver on 127.0.0.1:0 with real channels behind
//! its `Output`, plus the clients the tests drive it with.

use magpie_core::config::Node;
use magpie_core::otlp::testdata;
use magpie_core::proto::collector::trace::v1::ExportTraceServiceRequest;
use magpie_core::{Batch, ComponentError, ComponentStats, Output, Receiver, ReceiverContext, Signal};
use magpie_receivers::ReceiverConfig;
use magpie_receivers::otlp::OtlpReceiver;
use prost::Message;
use std::net::SocketAddr;
use std::sync::{Arc, Once};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Both protocols on ephemeral ports; each test merges its own settings over this.
const BASE: &str = "protocols:\n  grpc: { endpoint: '127.0.0.1:0' }\n  http: { endpoint: '127.0.0.1:0' }\n";

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Harness {
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub stats: Arc<ComponentStats>,
    traces: Option<mpsc::Receiver<Batch>>,
    metrics: Option<mpsc::Receiver<Batch>>,
    logs: Option<mpsc::Receiver<Batch>>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), ComponentError>>>,
}

/// The config node: `BASE` with `extra` merged over it.
pub fn config(extra: &str) -> magpie_receivers::otlp::OtlpConfig {
    let mut node = Node::parse(BASE, "base.yaml").expect("the base config parses");
    node.merge(Node::parse(extra, "test.yaml").expect("the test config parses"));
    let (config, _secrets) = ReceiverConfig::parse("otlp", &node, "receivers.otlp")
        .expect("the config is valid")
        .expect("otlp is a receiver type");
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    let ReceiverConfig::Otlp(c) = config else {
        panic!("not an otlp config");
    };
    c
}

impl Harness {
    /// All three signals wanted, roomy channels.
    pub async fn start(extra: &str) -> Harness {
        Self::with(extra, &Signal::OTLP, 64).await
    }

    /// Only `signals` have a pipeline, each a channel of `capacity`.
    pub async fn with(extra: &str, signals: &[Signal], capacity: usize) -> Harness {
        let config = config(extra);
        let id = "otlp/test".parse().expect("a valid id");
        let mut receiver = OtlpReceiver::new(&config);
        receiver.start(&id).await.expect("the receiver starts");
        let addrs = receiver.local_addrs();
        let stats = Arc::new(ComponentStats::default());
        let mut output = Output::new(stats.clone());
        let (mut traces, mut metrics, mut logs) = (None, None, None);
        for &signal in signals {
            let (tx, rx) = mpsc::channel(capacity);
            output.add(signal, tx);
            match signal {
                Signal::Traces => traces = Some(rx),
                Signal::Metrics => metrics = Some(rx),
                Signal::Logs => logs = Some(rx),
                Signal::Alerts => {}
            }
        }
        let shutdown = CancellationToken::new();
        let ctx = ReceiverContext { id, output, shutdown: shutdown.clone(), stats: stats.clone() };
        let task = tokio::spawn(Box::new(receiver).run(ctx));
        Harness {
            grpc: addrs.grpc,
            http: addrs.http,
            stats,
            traces,
            metrics,
            logs,
            shutdown,
            task: Some(task),
        }
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http.expect("http is served"))
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc.expect("grpc is served"))
    }

    async fn next(rx: &mut Option<mpsc::Receiver<Batch>>) -> Batch {
        let rx = rx.as_mut().expect("no pipeline of this signal");
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no batch arrived in time")
            .expect("the output was dropped")
    }

    pub async fn next_traces(&mut self) -> Batch {
        Self::next(&mut self.traces).await
    }

    pub async fn next_metrics(&mut self) -> Batch {
        Self::next(&mut self.metrics).await
    }

    pub async fn next_logs(&mut self) -> Batch {
        Self::next(&mut self.logs).await
    }

    /// Asserts that no trace batch is waiting.
    pub fn no_traces(&mut self) {
        let rx = self.traces.as_mut().expect("no traces pipeline");
        assert!(rx.try_recv().is_err(), "an unexpected trace batch arrived");
    }

    /// Asserts the receiver still takes a good OTLP/HTTP request.
    pub async fn assert_serves(&mut self) {
        let resp = http_client()
            .post(self.http_url("/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(traces_request(1, 2).encode_to_vec())
            .send()
            .await
            .expect("the receiver answers");
        assert_eq!(resp.status(), 200);
        assert_eq!(self.next_traces().await.item_count(), 2);
    }

    /// The token `run` watches.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Cancels the shutdown token and waits for `run` to return.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        let task = self.task.take().expect("stopped twice");
        let result = tokio::time::timeout(WAIT, task).await.expect("run did not return after shutdown");
        result.expect("run panicked").expect("run failed");
    }

    /// After [`Harness::stop`]: every sender into the trace channel is gone.
    pub async fn traces_closed(&mut self) -> bool {
        let rx = self.traces.as_mut().expect("no traces pipeline");
        while let Ok(Some(_)) = tokio::time::timeout(WAIT, rx.recv()).await {}
        rx.is_closed() && rx.try_recv().is_err()
    }
}

pub fn traces_request(resources: usize, spans: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest { resource_spans: testdata::spans(resources, spans) }
}

pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub fn http_client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder().build().expect("an http client")
}

/// A raw HTTP/1.1 exchange on a fresh connection (`Connection: close`), for
/// requests reqwest will not send as written. Returns the status, the head
/// and the body.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("the receiver accepts");
    stream.write_all(request).await.expect("the request is sent");
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("the response arrives in time")
        .expect("the response is read");
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("no end of head");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("no status");
    (status, head, response[split + 4..].to_vec())
}

/// One gRPC call with a hand-made body (the 5-byte frame header and
/// `payload`) over HTTP/2; returns `grpc-status` and `grpc-message`.
pub async fn raw_grpc(addr: SocketAddr, path: &str, payload: &[u8]) -> (String, String) {
    install_crypto();
    let client = reqwest::Client::builder().http2_prior_knowledge().build().expect("an h2 client");
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(payload.len()).expect("a small payload").to_be_bytes());
    body.extend_from_slice(payload);
    let resp = client
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .send()
        .await
        .expect("the receiver answers");
    assert_eq!(resp.status(), 200);
    let get = |name: &str| {
        resp.headers().get(name).map(|v| v.to_str().expect("a text header").to_string()).unwrap_or_default()
    };
    (get("grpc-status"), get("grpc-message"))
}

/// `google.rpc.Status` and its details, as a client decodes them.
pub mod rpc {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<Duration>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BadRequest {
        #[prost(message, repeated, tag = "1")]
        pub field_violations: Vec<FieldViolation>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FieldViolation {
        #[prost(string, tag = "1")]
        pub field: String,
        #[prost(string, tag = "2")]
        pub description: String,
    }
}
