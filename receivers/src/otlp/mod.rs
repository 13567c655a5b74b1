//! `otlp`: receives traces, metrics and logs over OTLP/gRPC and OTLP/HTTP
//! (protobuf and JSON), as the OpenTelemetry SDKs and Collectors send them.
//!
//! The config mirrors the Collector's `otlp` receiver. Requests are decoded
//! with prost straight from the received bytes into the OTLP types that flow
//! through the pipelines; nothing is converted. A full pipeline is reported
//! to the client as a retryable status (HTTP 503 with `Retry-After`, gRPC
//! `UNAVAILABLE` with `RetryInfo`) after `backpressure_timeout`, and items
//! with malformed ids are dropped and reported as a partial success.
//!
//! # Layout
//!
//! - this file: the config, its checks and the [`OtlpReceiver`].
//! - [`decode`](self::decode): protobuf decoding of requests; traces with exactly sized `Vec`s.
//! - [`ingest`](self::ingest): what both transports do with a decoded request.
//! - [`grpc`](self::grpc): the gRPC services.
//! - [`http`](self::http): the OTLP/HTTP handler, body limits and decompression.
//! - [`cors`](self::cors), [`auth`](self::auth): browser CORS and bearer tokens.
//! - [`status`](self::status): `google.rpc.Status` for error bodies.
//! - The accept loop, TLS and draining are `magpie-http`'s [`Listener`].
//!
//! This module depends on `magpie-core`, `magpie-http` and the server crates only; nothing
//! outside `receivers` depends on it except through [`crate::ReceiverConfig`].

mod auth;
mod cors;
mod decode;
mod grpc;
mod http;
mod ingest;
mod status;

pub use decode::decode_traces;

use magpie_core::config::{Secret, duration};
use magpie_core::{ComponentError, ComponentId, Receiver, ReceiverContext};
use magpie_http::{Listener, Versions};
use serde::{Deserialize, Deserializer};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The receiver's two transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// gRPC: HTTP/2 only.
    Grpc,
    /// OTLP/HTTP: HTTP/1.1 and HTTP/2.
    Http,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }

    fn versions(self) -> Versions {
        match self {
            Protocol::Grpc => Versions::Http2,
            Protocol::Http => Versions::Both,
        }
    }
}

/// Default `protocols.grpc.endpoint`.
pub const DEFAULT_GRPC_ENDPOINT: &str = "127.0.0.1:4317";
/// Default `protocols.http.endpoint`.
pub const DEFAULT_HTTP_ENDPOINT: &str = "127.0.0.1:4318";
/// Default `protocols.grpc.max_recv_msg_size_mib`.
pub const DEFAULT_MAX_RECV_MSG_SIZE_MIB: u32 = 4;
/// Default `protocols.http.max_request_body_size` (64 MiB).
pub const DEFAULT_MAX_REQUEST_BODY_SIZE: u64 = 64 * 1024 * 1024;
/// Default `backpressure_timeout`.
pub const DEFAULT_BACKPRESSURE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long in-flight requests may take to finish after shutdown, on top of
/// `backpressure_timeout`.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Config of the `otlp` receiver.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The transports to serve. Omitted: both, with their defaults. Given:
    /// only those listed (a key with no value takes the defaults).
    #[serde(default)]
    pub protocols: Protocols,
    /// Require a bearer token on every request (both transports).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// How long a request waits for room in a full pipeline before the
    /// client is told to retry.
    #[serde(default = "default_backpressure_timeout", with = "duration")]
    pub backpressure_timeout: Duration,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            protocols: Protocols::default(),
            auth: None,
            backpressure_timeout: DEFAULT_BACKPRESSURE_TIMEOUT,
        }
    }
}

fn default_backpressure_timeout() -> Duration {
    DEFAULT_BACKPRESSURE_TIMEOUT
}

/// `protocols`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "present")]
    pub grpc: Option<GrpcConfig>,
    #[serde(default, deserialize_with = "present")]
    pub http: Option<HttpConfig>,
}

impl Default for Protocols {
    fn default() -> Self {
        Protocols { grpc: Some(GrpcConfig::default()), http: Some(HttpConfig::default()) }
    }
}

/// A key that is present is `Some`, even with no value (`grpc:` alone
/// means "gRPC with its defaults").
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `protocols.grpc`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    #[serde(default = "default_grpc_endpoint")]
    pub endpoint: String,
    /// The largest request message accepted, in MiB (after decompression).
    #[serde(default = "default_max_recv_msg_size_mib")]
    pub max_recv_msg_size_mib: u32,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: DEFAULT_GRPC_ENDPOINT.to_string(),
            max_recv_msg_size_mib: DEFAULT_MAX_RECV_MSG_SIZE_MIB,
            tls: None,
        }
    }
}

fn default_grpc_endpoint() -> String {
    DEFAULT_GRPC_ENDPOINT.to_string()
}

fn default_max_recv_msg_size_mib() -> u32 {
    DEFAULT_MAX_RECV_MSG_SIZE_MIB
}

/// `protocols.http`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_http_endpoint")]
    pub endpoint: String,
    /// The largest request body accepted, in bytes, both as received and
    /// after decompression.
    #[serde(default = "default_max_request_body_size")]
    pub max_request_body_size: u64,
    #[serde(default = "default_traces_path")]
    pub traces_url_path: String,
    #[serde(default = "default_metrics_path")]
    pub metrics_url_path: String,
    #[serde(default = "default_logs_path")]
    pub logs_url_path: String,
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: default_http_endpoint(),
            max_request_body_size: DEFAULT_MAX_REQUEST_BODY_SIZE,
            traces_url_path: default_traces_path(),
            metrics_url_path: default_metrics_path(),
            logs_url_path: default_logs_path(),
            cors: None,
            tls: None,
        }
    }
}

fn default_http_endpoint() -> String {
    DEFAULT_HTTP_ENDPOINT.to_string()
}

fn default_max_request_body_size() -> u64 {
    DEFAULT_MAX_REQUEST_BODY_SIZE
}

fn default_traces_path() -> String {
    "/v1/traces".to_string()
}

fn default_metrics_path() -> String {
    "/v1/metrics".to_string()
}

fn default_logs_path() -> String {
    "/v1/logs".to_string()
}

/// `protocols.http.cors`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to send from a browser; `*` matches any run of
    /// characters. Empty: CORS is off.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Request headers allowed beyond the CORS-safelisted ones; `*` allows any.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Seconds a browser may cache a preflight answer.
    #[serde(default)]
    pub max_age: Option<u64>,
}

/// `tls` of either protocol: a PEM certificate chain and its private key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `auth`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Every request must send `Authorization: Bearer <bearer_token>`.
    pub bearer_token: Secret<String>,
}

/// Parses an endpoint: `ip:port`, `[ipv6]:port`, or `localhost:port`.
pub fn parse_endpoint(endpoint: &str) -> Result<SocketAddr, String> {
    let e = endpoint.trim();
    if let Ok(addr) = e.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = e.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    Err(format!(
        "`{endpoint}` is not a socket address: write ip:port, e.g. 127.0.0.1:4317, 0.0.0.0:4317 or [::1]:4317"
    ))
}

impl OtlpConfig {
    /// Problems the types alone cannot catch, prefixed with their path.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let p = &self.protocols;
        if p.grpc.is_none() && p.http.is_none() {
            out.push(
                "protocols: list grpc, http or both (omit `protocols` for both with defaults)".to_string(),
            );
        }
        let mut endpoints = Vec::new();
        if let Some(g) = &p.grpc {
            match parse_endpoint(&g.endpoint) {
                Ok(a) => endpoints.push(a),
                Err(e) => out.push(format!("protocols.grpc.endpoint: {e}")),
            }
            if g.max_recv_msg_size_mib == 0 {
                out.push("protocols.grpc.max_recv_msg_size_mib: must be at least 1".to_string());
            }
            if let Some(tls) = &g.tls {
                out.extend(tls_problems(tls, "protocols.grpc.tls"));
            }
        }
        if let Some(h) = &p.http {
            match parse_endpoint(&h.endpoint) {
                Ok(a) => endpoints.push(a),
                Err(e) => out.push(format!("protocols.http.endpoint: {e}")),
            }
            if h.max_request_body_size == 0 {
                out.push("protocols.http.max_request_body_size: must be at least 1".to_string());
            }
            let paths = [
                ("traces_url_path", &h.traces_url_path),
                ("metrics_url_path", &h.metrics_url_path),
                ("logs_url_path", &h.logs_url_path),
            ];
            for (i, (name, path)) in paths.iter().enumerate() {
                if !path.starts_with('/') {
                    out.push(format!("protocols.http.{name}: `{path}` must start with `/`"));
                }
                if let Some((other, _)) = paths[..i].iter().find(|(_, p)| p == path) {
                    out.push(format!(
                        "protocols.http.{name}: `{path}` is also {other}; each signal needs its own path"
                    ));
                }
            }
            if let Some(cors) = &h.cors {
                out.extend(cors::problems(cors));
            }
            if let Some(tls) = &h.tls {
                out.extend(tls_problems(tls, "protocols.http.tls"));
            }
        }
        if let [a, b] = endpoints[..]
            && a == b
            && a.port() != 0
        {
            out.push(format!("protocols: grpc and http cannot both listen on {a}"));
        }
        if let Some(auth) = &self.auth
            && auth.bearer_token.expose().trim().is_empty()
        {
            out.push("auth.bearer_token: must not be empty".to_string());
        }
        out
    }

    /// The listening addresses, as (config path suffix, address).
    pub fn listen_addresses(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(g) = &self.protocols.grpc {
            out.push(("protocols.grpc.endpoint".to_string(), g.endpoint.clone()));
        }
        if let Some(h) = &self.protocols.http {
            out.push(("protocols.http.endpoint".to_string(), h.endpoint.clone()));
        }
        out
    }
}

fn tls_problems(tls: &TlsConfig, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    if tls.cert_file.as_os_str().is_empty() {
        out.push(format!("{path}.cert_file: must name a PEM certificate file"));
    }
    if tls.key_file.as_os_str().is_empty() {
        out.push(format!("{path}.key_file: must name a PEM private key file"));
    }
    out
}

/// Why the receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("protocols.{protocol}.endpoint: {message}")]
    Endpoint { protocol: &'static str, message: String },
    #[error("cannot listen for otlp {protocol} on {addr}: {source}")]
    Bind { protocol: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("protocols.{protocol}.tls: {message}")]
    Tls { protocol: &'static str, message: String },
}

impl From<OtlpError> for ComponentError {
    fn from(e: OtlpError) -> Self {
        ComponentError::new(e.to_string())
    }
}

/// A bound listener, waiting for `run`.
struct Bound {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    addr: SocketAddr,
}

/// The addresses the receiver is listening on, once started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalAddrs {
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
}

/// The `otlp` receiver.
pub struct OtlpReceiver {
    config: OtlpConfig,
    grpc: Option<Bound>,
    http: Option<Bound>,
}

impl OtlpReceiver {
    pub fn new(config: &OtlpConfig) -> Self {
        OtlpReceiver { config: config.clone(), grpc: None, http: None }
    }

    /// Where the listeners are bound (after [`Receiver::start`]); useful
    /// with port 0.
    pub fn local_addrs(&self) -> LocalAddrs {
        LocalAddrs { grpc: self.grpc.as_ref().map(|b| b.addr), http: self.http.as_ref().map(|b| b.addr) }
    }

    async fn bind(endpoint: &str, tls: Option<&TlsConfig>, protocol: Protocol) -> Result<Bound, OtlpError> {
        let name = protocol.as_str();
        let addr =
            parse_endpoint(endpoint).map_err(|message| OtlpError::Endpoint { protocol: name, message })?;
        // Certificates are read first, so a bad file fails start-up before the port is taken.
        let tls = match tls {
            None => None,
            Some(t) => Some(
                magpie_http::tls_acceptor(&t.cert_file, &t.key_file, protocol.versions())
                    .map_err(|message| OtlpError::Tls { protocol: name, message })?,
            ),
        };
        let listener = TcpListener::bind(addr).await.map_err(|source| OtlpError::Bind {
            protocol: name,
            addr,
            source,
        })?;
        let addr =
            listener.local_addr().map_err(|source| OtlpError::Bind { protocol: name, addr, source })?;
        Ok(Bound { listener, tls, addr })
    }

    async fn bind_all(&mut self) -> Result<(), OtlpError> {
        if let Some(g) = &self.config.protocols.grpc
            && self.grpc.is_none()
        {
            self.grpc = Some(Self::bind(&g.endpoint, g.tls.as_ref(), Protocol::Grpc).await?);
        }
        if let Some(h) = &self.config.protocols.http
            && self.http.is_none()
        {
            self.http = Some(Self::bind(&h.endpoint, h.tls.as_ref(), Protocol::Http).await?);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Receiver for OtlpReceiver {
    async fn start(&mut self, id: &ComponentId) -> Result<(), ComponentError> {
        self.bind_all().await?;
        let addrs = self.local_addrs();
        let show = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
        tracing::info!(component = %id, grpc = %show(addrs.grpc), http = %show(addrs.http), "otlp receiver listening");
        Ok(())
    }

    async fn run(mut self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        self.bind_all().await?;
        let OtlpReceiver { config, grpc, http } = *self;
        let ReceiverContext { id, output, shutdown, stats } = ctx;
        let auth = config.auth.as_ref().map(|a| auth::BearerAuth::new(a.bearer_token.clone()));
        let ingest = Arc::new(ingest::Ingest {
            id: id.clone(),
            output,
            stats,
            backpressure_timeout: config.backpressure_timeout,
        });
        let drain_timeout = config.backpressure_timeout + DRAIN_GRACE;

        let grpc_server = match (grpc, &config.protocols.grpc) {
            (Some(bound), Some(g)) => Some(Listener {
                id: id.clone(),
                name: Protocol::Grpc.as_str(),
                listener: bound.listener,
                tls: bound.tls,
                router: grpc::GrpcService::new(ingest.clone(), auth.clone(), g.max_recv_msg_size_mib)
                    .into_router(),
                versions: Protocol::Grpc.versions(),
                upgrades: false,
                drain_timeout,
            }),
            _ => None,
        };
        let http_server = match (http, &config.protocols.http) {
            (Some(bound), Some(h)) => {
                let state = http::HttpState {
                    ingest: ingest.clone(),
                    auth,
                    cors: h.cors.as_ref().and_then(cors::Cors::new),
                    max_body: usize::try_from(h.max_request_body_size).unwrap_or(usize::MAX),
                    traces_path: h.traces_url_path.clone(),
                    metrics_path: h.metrics_url_path.clone(),
                    logs_path: h.logs_url_path.clone(),
                };
                Some(Listener {
                    id: id.clone(),
                    name: Protocol::Http.as_str(),
                    listener: bound.listener,
                    tls: bound.tls,
                    router: http::router(Arc::new(state)),
                    versions: Protocol::Http.versions(),
                    upgrades: false,
                    drain_timeout,
                })
            }
            _ => None,
        };
        // The servers hold the only other references to `ingest` (and so to
        // the output); they are gone once both have drained.
        drop(ingest);
        let serve = |server: Option<Listener>| {
            let shutdown = shutdown.clone();
            async move {
                if let Some(s) = server {
                    s.run(shutdown).await;
                }
            }
        };
        tokio::join!(serve(grpc_server), serve(http_server));
        tracing::info!(component = %id, "otlp receiver stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::config::{ConfigError, Node, from_node};

    fn parse(yaml: &str) -> Result<OtlpConfig, ConfigError> {
        let node = Node::parse(yaml, "t.yaml")?;
        from_node::<OtlpConfig>(&node, "receivers.otlp").map(|(c, _)| c)
    }

    #[test]
    fn an_empty_config_serves_both_protocols_with_defaults() {
        let c = parse("").unwrap();
        let g = c.protocols.grpc.as_ref().unwrap();
        let h = c.protocols.http.as_ref().unwrap();
        assert_eq!((g.endpoint.as_str(), g.max_recv_msg_size_mib), (DEFAULT_GRPC_ENDPOINT, 4));
        assert_eq!(h.endpoint, DEFAULT_HTTP_ENDPOINT);
        assert_eq!(h.max_request_body_size, 64 * 1024 * 1024);
        assert_eq!(
            (h.traces_url_path.as_str(), h.metrics_url_path.as_str(), h.logs_url_path.as_str()),
            ("/v1/traces", "/v1/metrics", "/v1/logs")
        );
        assert_eq!(c.backpressure_timeout, Duration::from_secs(5));
        assert!(c.auth.is_none());
        assert!(c.problems().is_empty(), "{:?}", c.problems());
    }

    #[test]
    fn listed_protocols_only_and_a_bare_key_means_defaults() {
        let c = parse("protocols:\n  grpc:\n").unwrap();
        assert_eq!(c.protocols.grpc.unwrap().endpoint, DEFAULT_GRPC_ENDPOINT);
        assert!(c.protocols.http.is_none());
        let c = parse("protocols:\n  http:\n    endpoint: 0.0.0.0:4318\n").unwrap();
        assert!(c.protocols.grpc.is_none());
        assert_eq!(
            c.listen_addresses(),
            vec![("protocols.http.endpoint".to_string(), "0.0.0.0:4318".to_string())]
        );
    }

    #[test]
    fn every_option_parses() {
        let c = parse(
            "protocols:
  grpc:
    endpoint: 0.0.0.0:14317
    max_recv_msg_size_mib: 16
    tls: { cert_file: /etc/magpie/cert.pem, key_file: /etc/magpie/key.pem }
  http:
    endpoint: '[::1]:14318'
    max_request_body_size: 1048576
    traces_url_path: /otlp/traces
    metrics_url_path: /otlp/metrics
    logs_url_path: /otlp/logs
    cors: { allowed_origins: ['https://*.example.com'], allowed_headers: [X-Team], max_age: 7200 }
auth: { bearer_token: t0ken }
backpressure_timeout: 250ms
",
        )
        .unwrap();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let g = c.protocols.grpc.as_ref().unwrap();
        assert_eq!(g.max_recv_msg_size_mib, 16);
        assert_eq!(g.tls.as_ref().unwrap().key_file, PathBuf::from("/etc/magpie/key.pem"));
        let h = c.protocols.http.as_ref().unwrap();
        assert_eq!(h.max_request_body_size, 1 << 20);
        assert_eq!(h.cors.as_ref().unwrap().max_age, Some(7200));
        assert_eq!(c.auth.as_ref().unwrap().bearer_token.expose(), "t0ken");
        assert_eq!(c.backpressure_timeout, Duration::from_millis(250));
    }

    #[test]
    fn unknown_fields_are_located_errors() {
        let e =
            parse("protocols:\n  http:\n    endpoint: 127.0.0.1:4318\n    max_body_size: 10\n").unwrap_err();
        assert_eq!(e.location.as_ref().map(|l| (l.line, l.column)), Some((4, 5)), "{e}");
        assert_eq!(e.path, "receivers.otlp.protocols.http.max_body_size");
        assert!(e.message.contains("unknown field `max_body_size`"), "{e}");
        let e = parse("protocols:\n  grcp:\n").unwrap_err();
        assert!(e.message.contains("did you mean `grpc`?"), "{e}");
        let e = parse("protocols:\n  grpc:\n    tls: { cert_file: a.pem }\n").unwrap_err();
        assert!(e.message.contains("missing required field `key_file`"), "{e}");
        let e = parse("backpressure_timeout: soon\n").unwrap_err();
        assert_eq!(e.path, "receivers.otlp.backpressure_timeout");
    }

    #[test]
    fn problems_name_the_option() {
        let c = parse(
            "protocols:
  grpc: { endpoint: 'localhost:4317', max_recv_msg_size_mib: 0 }
  http: { endpoint: 'otel:4318', traces_url_path: v1/traces, logs_url_path: /v1/metrics }
auth: { bearer_token: '' }
",
        )
        .unwrap();
        let p = c.problems();
        let has = |s: &str| p.iter().any(|m| m.contains(s));
        assert!(has("protocols.grpc.max_recv_msg_size_mib: must be at least 1"), "{p:?}");
        assert!(has("protocols.http.endpoint: `otel:4318` is not a socket address"), "{p:?}");
        assert!(has("protocols.http.traces_url_path: `v1/traces` must start with `/`"), "{p:?}");
        assert!(has("protocols.http.logs_url_path: `/v1/metrics` is also metrics_url_path"), "{p:?}");
        assert!(has("auth.bearer_token: must not be empty"), "{p:?}");
        assert!(!has("protocols.grpc.endpoint"), "localhost is accepted: {p:?}");
        assert_eq!(p.len(), 5, "{p:?}");
        let c = parse("protocols: {}\n").unwrap();
        assert_eq!(c.problems().len(), 1);
        let c =
            parse("protocols: { grpc: { endpoint: '0.0.0.0:4317' }, http: { endpoint: '0.0.0.0:4317' } }\n")
                .unwrap();
        assert!(c.problems()[0].contains("cannot both listen on 0.0.0.0:4317"), "{:?}", c.problems());
    }

    #[test]
    fn endpoints() {
        assert_eq!(parse_endpoint("0.0.0.0:4317"), Ok(SocketAddr::from(([0, 0, 0, 0], 4317))));
        assert_eq!(parse_endpoint("localhost:1"), Ok(SocketAddr::from(([127, 0, 0, 1], 1))));
        assert!(parse_endpoint("[::]:4318").is_ok());
        assert!(parse_endpoint("4317").is_err());
        assert!(parse_endpoint("localhost:http").is_err());
    }

    #[tokio::test]
    async fn a_taken_port_fails_start_with_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let config = parse(&format!("protocols:\n  http:\n    endpoint: {addr}\n")).unwrap();
        let mut r = OtlpReceiver::new(&config);
        let e = r.start(&"otlp".parse().unwrap()).await.unwrap_err();
        assert!(e.message.starts_with(&format!("cannot listen for otlp http on {addr}: ")), "{}", e.message);
    }
}
