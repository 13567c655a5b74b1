//! `websocket`: a live feed for dashboards, and Magpie's own live page.
//!
//! Every `interval` it sends a `system_metrics` message in the shape the
//! reference dashboard's store expects, each field computed from a named
//! metric by the `fields` mapping. Clients may subscribe to more: span,
//! GenAI call and error summaries as they arrive, and per-route and
//! per-model summaries every interval. Every client has its own bounded
//! queue: a slow browser loses its oldest messages (and is told so), a
//! stalled one is disconnected, and neither ever holds the pipeline back.
//! `GET /` on the same listener serves a self-contained live page.
//!
//! # Layout
//!
//! - this file: the config, its checks and the [`WebsocketExporter`].
//! - [`fields`]: the metric store and the pure field mapping.
//! - [`messages`]: framing, timestamps, span summaries, subscriptions.
//! - [`hub`]: the fan-out and the per-client queues.
//! - [`server`]: the listener, the checks before upgrading, the client tasks.
//!
//! It depends on `magpie-core` and the server crates only.

pub mod fields;
pub mod hub;
pub mod messages;
pub mod server;

use fields::{FieldSpecs, MetricStore, field_problems, resolve_fields, wanted_metrics};
use hub::Hub;
use magpie_core::config::{Secret, duration};
use magpie_core::otlp::now_unix_nanos;
use magpie_core::{Batch, ComponentError, ComponentId, ExportError, Exporter, ExporterContext};
use messages::{Outgoing, Stream, rfc3339, span_messages};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Default `endpoint`.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:8765";

/// Config of `websocket`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebsocketConfig {
    /// Where to listen (`ip:port`).
    pub endpoint: String,
    /// The feed's path; the live page is at `/`.
    pub path: String,
    /// Require a token (as `Authorization: Bearer …` or `?token=…`).
    pub auth: Option<AuthConfig>,
    /// Browser origins allowed besides the page's own (`*` matches any run of characters).
    pub allowed_origins: Vec<String>,
    pub tls: Option<TlsConfig>,
    /// Clients at once; more are refused with 503.
    pub max_clients: usize,
    /// How often `system_metrics` (and the summary streams) are sent.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Field name → how to compute it; replaces, removes (`null`) or adds to the defaults.
    pub fields: BTreeMap<String, Option<FieldSpecs>>,
    /// Messages each client's queue holds; when full, the oldest go.
    pub client_queue_size: usize,
    /// How often clients are pinged.
    #[serde(with = "duration")]
    pub ping_interval: Duration,
    /// A client that answers nothing, or whose writes do not complete, for this long is disconnected.
    #[serde(with = "duration")]
    pub client_timeout: Duration,
    /// Series not updated for this long are forgotten (their fields become `null`).
    #[serde(with = "duration")]
    pub stale_after: Duration,
    /// Serve the live page at `GET /`.
    pub page: bool,
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        WebsocketConfig {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            path: "/ws".to_string(),
            auth: None,
            allowed_origins: Vec::new(),
            tls: None,
            max_clients: 1000,
            interval: Duration::from_secs(5),
            fields: BTreeMap::new(),
            client_queue_size: 256,
            ping_interval: Duration::from_secs(15),
            client_timeout: Duration::from_secs(30),
            stale_after: Duration::from_secs(300),
            page: true,
        }
    }
}

/// `auth`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub token: Secret<String>,
}

/// `tls`: a PEM certificate chain and its key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Parses `ip:port` or `localhost:port`.
pub fn parse_endpoint(endpoint: &str) -> Result<SocketAddr, String> {
    let e = endpoint.trim();
    if let Ok(a) = e.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some(port) = e.strip_prefix("localhost:").and_then(|p| p.parse::<u16>().ok()) {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    Err(format!("endpoint: `{endpoint}` is not a socket address: write ip:port, e.g. 127.0.0.1:8765"))
}

impl WebsocketConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = parse_endpoint(&self.endpoint) {
            out.push(e);
        }
        if !self.path.starts_with('/') || self.path == "/" {
            out.push(format!(
                "path: `{}` must start with `/` and not be `/` (the live page is there)",
                self.path
            ));
        }
        if let Some(a) = &self.auth
            && a.token.expose().trim().is_empty()
        {
            out.push("auth.token: must not be empty".to_string());
        }
        if let Some(t) = &self.tls {
            for (name, p) in [("cert_file", &t.cert_file), ("key_file", &t.key_file)] {
                if p.as_os_str().is_empty() {
                    out.push(format!("tls.{name}: must name a PEM file"));
                }
            }
        }
        for (name, v) in [("max_clients", self.max_clients), ("client_queue_size", self.client_queue_size)] {
            if v == 0 {
                out.push(format!("{name}: must be at least 1"));
            }
        }
        if self.interval < Duration::from_millis(100) {
            out.push("interval: must be at least 100ms".to_string());
        }
        if self.ping_interval < Duration::from_millis(100) {
            out.push("ping_interval: must be at least 100ms".to_string());
        }
        if self.client_timeout <= self.ping_interval {
            out.push(format!(
                "client_timeout ({:?}) must be longer than ping_interval ({:?}) so a client can answer a ping in time",
                self.client_timeout, self.ping_interval
            ));
        }
        if self.stale_after < self.interval {
            out.push("stale_after: must be at least interval".to_string());
        }
        out.extend(field_problems(&self.fields));
        out
    }

    pub fn listen_addresses(&self) -> Vec<(String, String)> {
        vec![("endpoint".to_string(), self.endpoint.clone())]
    }
}

/// The exporter.
pub struct WebsocketExporter {
    id: ComponentId,
    config: WebsocketConfig,
    fields: Arc<Vec<(String, FieldSpecs)>>,
    hub: Arc<Hub>,
    store: Arc<Mutex<MetricStore>>,
    local_addr: Option<SocketAddr>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl WebsocketExporter {
    pub fn new(id: &ComponentId, config: &WebsocketConfig) -> Self {
        let fields = resolve_fields(&config.fields);
        let store = MetricStore::new(wanted_metrics(&fields));
        WebsocketExporter {
            id: id.clone(),
            config: config.clone(),
            fields: Arc::new(fields),
            hub: Arc::new(Hub::new(config.max_clients, config.client_queue_size)),
            store: Arc::new(Mutex::new(store)),
            local_addr: None,
            stop: CancellationToken::new(),
            tasks: Vec::new(),
        }
    }

    /// Where the listener is bound, after `start` (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Clients connected now.
    pub fn client_count(&self) -> usize {
        self.hub.client_count()
    }

    async fn bind(&self) -> Result<(TcpListener, Option<TlsAcceptor>), String> {
        let addr = parse_endpoint(&self.config.endpoint)?;
        let tls = match &self.config.tls {
            None => None,
            Some(t) => Some(
                magpie_http::tls_acceptor(&t.cert_file, &t.key_file, magpie_http::Versions::Http1)
                    .map_err(|e| format!("tls: {e}"))?,
            ),
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen for the websocket feed on {addr}: {e}"))?;
        Ok((listener, tls))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The messages of one tick: `system_metrics`, and the summaries someone wants.
fn tick_messages(
    store: &mut MetricStore,
    fields: &[(String, FieldSpecs)],
    hub: &Hub,
    config: &WebsocketConfig,
    now: u64,
) -> Vec<Outgoing> {
    store.evict(now, config.stale_after);
    let timestamp = rfc3339(now);
    let values = store.fields(fields, now, config.interval);
    let mut body = String::from("{\"metrics\":{");
    for (i, (name, value)) in values.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&serde_json::Value::String(name.clone()).to_string());
        body.push(':');
        body.push_str(&json_number(*value));
    }
    body.push_str("}}");
    let mut out = vec![Outgoing {
        stream: Stream::SystemMetrics,
        kind: "system_metrics",
        timestamp: timestamp.clone(),
        body,
        keys: None,
    }];
    if hub.wants(Stream::HttpRoutes) {
        let routes = store.routes(now, config.interval);
        out.push(Outgoing {
            stream: Stream::HttpRoutes,
            kind: "http_routes",
            timestamp: timestamp.clone(),
            body: serde_json::json!({ "routes": routes }).to_string(),
            keys: None,
        });
    }
    if hub.wants(Stream::LlmUsage) {
        let models = store.llm_usage(now, config.interval);
        out.push(Outgoing {
            stream: Stream::LlmUsage,
            kind: "llm_usage",
            timestamp,
            body: serde_json::json!({ "models": models }).to_string(),
            keys: None,
        });
    }
    out
}

/// A field value as JSON: `null` without data, an integer when whole.
fn json_number(v: Option<f64>) -> String {
    match v {
        None => "null".to_string(),
        Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => format!("{}", x as i64),
        Some(x) => serde_json::Number::from_f64(x).map_or_else(|| "null".to_string(), |n| n.to_string()),
    }
}

#[async_trait::async_trait]
impl Exporter for WebsocketExporter {
    async fn start(&mut self, ctx: &ExporterContext) -> Result<(), ComponentError> {
        let (listener, tls) = self.bind().await.map_err(ComponentError::new)?;
        let addr = listener
            .local_addr()
            .map_err(|e| ComponentError::new(format!("websocket listener address: {e}")))?;
        self.local_addr = Some(addr);
        let app = Arc::new(server::App {
            id: self.id.clone(),
            hub: self.hub.clone(),
            token: self.config.auth.as_ref().map(|a| a.token.clone()),
            allowed_origins: self.config.allowed_origins.clone(),
            tls: tls.is_some(),
            ping_interval: self.config.ping_interval,
            client_timeout: self.config.client_timeout,
            page: self.config.page.then(|| server::page_for(&self.config.path)),
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let router = server::router(app, &self.config.path);
        let listener = magpie_http::Listener {
            id: self.id.clone(),
            name: "websocket",
            listener,
            tls,
            router,
            versions: magpie_http::Versions::Http1,
            upgrades: true,
            // Upgraded feeds end through the hub; this bounds plain requests.
            drain_timeout: Duration::from_secs(2),
        };
        self.tasks.push(tokio::spawn(listener.run(self.stop.clone())));

        let (store, fields, hub, config, stop) = (
            self.store.clone(),
            self.fields.clone(),
            self.hub.clone(),
            self.config.clone(),
            self.stop.clone(),
        );
        let hard_stop = ctx.shutdown.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(config.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = hard_stop.cancelled() => break,
                    _ = ticker.tick() => {
                        let messages = tick_messages(&mut lock(&store), &fields, &hub, &config, now_unix_nanos());
                        hub.broadcast(messages);
                    }
                }
            }
        }));
        tracing::info!(
            component = %self.id,
            address = %addr,
            page = %format_args!("{scheme}://{addr}/"),
            feed = %format_args!("{}://{addr}{}", if scheme == "https" { "wss" } else { "ws" }, self.config.path),
            "websocket feed listening"
        );
        Ok(())
    }

    async fn export(&mut self, batch: Arc<Batch>) -> Result<(), ExportError> {
        match batch.as_ref() {
            Batch::Metrics(rm) => lock(&self.store).ingest(rm),
            Batch::Traces(rs) => {
                let hub = &self.hub;
                hub.broadcast(span_messages(rs, |s| hub.wants(s)));
            }
            Batch::Logs(_) | Batch::Alerts(_) => {}
        }
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), ComponentError> {
        // Stop accepting, then say goodbye to every client.
        self.stop.cancel();
        self.hub.closing.cancel();
        let hub = self.hub.clone();
        let gone = tokio::time::timeout(Duration::from_secs(3), async move {
            loop {
                let left = hub.left.notified();
                if hub.client_count() == 0 {
                    return;
                }
                left.await;
            }
        })
        .await;
        if gone.is_err() {
            tracing::warn!(component = %self.id, clients = self.hub.client_count(), "websocket clients still open at shutdown");
        }
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use magpie_core::config::{Node, from_node};
    use magpie_core::telemetry::ComponentStats;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    fn ctx() -> ExporterContext {
        ExporterContext {
            id: "websocket".parse().unwrap(),
            stats: Arc::new(ComponentStats::default()),
            shutdown: Default::default(),
        }
    }

    fn parse(yaml: &str) -> Result<WebsocketConfig, magpie_core::config::ConfigError> {
        from_node(&Node::parse(yaml, "t.yaml")?, "exporters.websocket").map(|(c, _)| c)
    }

    #[test]
    fn defaults_and_problems() {
        let c = parse("").unwrap();
        assert_eq!(
            (c.endpoint.as_str(), c.path.as_str(), c.interval),
            (DEFAULT_ENDPOINT, "/ws", Duration::from_secs(5))
        );
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(c.listen_addresses(), vec![("endpoint".to_string(), DEFAULT_ENDPOINT.to_string())]);
        let c = parse(
            "endpoint: nowhere\npath: /\nauth: {token: ''}\nmax_clients: 0\nping_interval: 30s\nclient_timeout: 10s\nfields: {x: []}\n",
        )
        .unwrap();
        let p = c.problems();
        for want in
            ["endpoint: `nowhere`", "path: `/`", "auth.token", "max_clients", "client_timeout", "fields.x"]
        {
            assert!(p.iter().any(|m| m.contains(want)), "{want}: {p:?}");
        }
        let e = parse("intervl: 1s\n").unwrap_err();
        assert!(e.message.contains("did you mean `interval`"), "{e}");
        assert!(
            parse("auth: {token: s}\n")
                .unwrap()
                .auth
                .is_some_and(|a| format!("{:?}", a.token) == "<redacted>")
        );
    }

    #[tokio::test]
    async fn a_taken_port_fails_start() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = parse(&format!("endpoint: \"{}\"\n", taken.local_addr().unwrap())).unwrap();
        let mut e = WebsocketExporter::new(&"websocket".parse().unwrap(), &config);
        let err = e.start(&ctx()).await.unwrap_err();
        assert!(
            err.message.starts_with("cannot listen for the websocket feed on 127.0.0.1:"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn tls_serves_the_page_and_the_feed() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_file, cert.cert.pem()).unwrap();
        std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
        let config = parse(&format!(
            "endpoint: \"127.0.0.1:0\"\ninterval: 100ms\ntls: {{cert_file: '{}', key_file: '{}'}}\n",
            cert_file.display(),
            key_file.display()
        ))
        .unwrap();
        let mut e = WebsocketExporter::new(&"websocket".parse().unwrap(), &config);
        e.start(&ctx()).await.unwrap();
        let port = e.local_addr().unwrap().port();

        let https = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap()])
            .build()
            .unwrap();
        let page = https.get(format!("https://localhost:{port}/")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("<title>Magpie live</title>"));

        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(cert.cert.pem().as_bytes()).unwrap()).unwrap();
        let tls =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut ws, _) =
            tokio_tungstenite::client_async(format!("wss://localhost:{port}/ws"), stream).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        assert_eq!(v["type"], "system_metrics");
        assert_eq!(e.client_count(), 1);
        e.shutdown().await.unwrap();
        assert_eq!(e.client_count(), 0, "shutdown closes every client");
    }
}
