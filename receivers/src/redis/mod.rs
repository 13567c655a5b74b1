//! `redis`: scrapes a Redis or Valkey server's `INFO everything` every
//! `collection_interval` and sends one OTLP metrics batch per scrape.
//!
//! The parsing and the metric mapping are pure functions in [`info`]; this
//! module holds the config, the connection (one multiplexed connection,
//! reopened on the next tick after any failure) and the scrape loop. A server
//! that does not answer yields `redis.up = 0` and one log line when that
//! starts and one when it ends, never one per scrape; `start()` only fails
//! on bad config, so the agent starts while Redis is down.
//!
//! Servers that reject `INFO everything` (before Redis 6) are asked for
//! `INFO` and `INFO commandstats` instead. The password is never logged: log
//! lines and errors name the server by host and port only.

pub mod info;

use crate::hostmetrics::{Enabled, MetricToggles, metric_problems};
use ::redis as client;
use info::{Info, METRICS, metrics, parse_info, up_metric};
use magpie_core::ComponentError;
use magpie_core::config::{Secret, duration};
use magpie_core::otlp::{kv_str, now_unix_nanos};
use magpie_core::proto::common::v1::{InstrumentationScope, KeyValue};
use magpie_core::proto::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use magpie_core::proto::resource::v1::Resource;
use serde::Deserialize;
use std::time::Duration;

/// The scope every redis metric is emitted under.
pub const SCOPE_NAME: &str = "magpie.redis";

/// Config of the `redis` receiver.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS.
    /// A secret, since it may carry a password; `redis://127.0.0.1:6379` by default.
    #[serde(default = "default_endpoint")]
    pub endpoint: Secret<String>,
    /// ACL user name; overrides one in `endpoint`.
    #[serde(default)]
    pub username: Option<String>,
    /// Password; overrides one in `endpoint`.
    #[serde(default)]
    pub password: Option<Secret<String>>,
    /// How often to scrape; 10s by default.
    #[serde(default = "default_interval", with = "duration")]
    pub collection_interval: Duration,
    /// Connecting plus answering `INFO`, at most; 5s by default, and never
    /// more than `collection_interval`.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// TLS settings for `rediss://` endpoints.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// `{ <metric name>: { enabled: true|false } }`.
    #[serde(default)]
    pub metrics: MetricToggles,
}

/// TLS for `rediss://`: the server certificate is always verified, against
/// the system's roots or `ca_file`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the certificate authority that signed the server's
    /// certificate, used instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<String>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            endpoint: default_endpoint(),
            username: None,
            password: None,
            collection_interval: default_interval(),
            timeout: default_timeout(),
            tls: None,
            metrics: MetricToggles::new(),
        }
    }
}

fn default_endpoint() -> Secret<String> {
    Secret::new("redis://127.0.0.1:6379".to_string())
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl RedisConfig {
    /// Problems the types alone cannot catch, as messages naming the setting.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.collection_interval < Duration::from_millis(1) {
            out.push("collection_interval: must be at least 1ms".to_string());
        }
        if self.timeout < Duration::from_millis(1) {
            out.push("timeout: must be at least 1ms".to_string());
        }
        match connection_info(self) {
            Ok(info) => {
                if self.tls.is_some() && !matches!(info.addr(), client::ConnectionAddr::TcpTls { .. }) {
                    out.push("tls: is only used with a `rediss://` endpoint".to_string());
                }
            }
            Err(e) => out.push(format!("endpoint: {e}")),
        }
        if let Some(f) = self.tls.as_ref().and_then(|t| t.ca_file.as_deref())
            && let Err(e) = std::fs::metadata(f)
        {
            out.push(format!("tls.ca_file: cannot read `{f}`: {e}"));
        }
        metric_problems(METRICS, &self.metrics, "", &mut out);
        for p in &mut out {
            if let Some(rest) = p.strip_prefix(".metrics") {
                *p = format!("metrics{rest}");
            }
        }
        out
    }

    /// The scrape timeout in effect: `timeout`, capped by the interval.
    fn effective_timeout(&self) -> Duration {
        self.timeout.min(self.collection_interval)
    }
}

/// The endpoint parsed, with `username` and `password` applied. Errors never
/// repeat the URL, which may hold a password.
fn connection_info(config: &RedisConfig) -> Result<client::ConnectionInfo, String> {
    use client::IntoConnectionInfo;
    let url = config.endpoint.expose().trim();
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    if !matches!(scheme, "redis" | "rediss" | "valkey" | "valkeys") {
        return Err("expected a URL like redis://host:6379 or rediss://host:6380 (TLS)".to_string());
    }
    let info = url.into_connection_info().map_err(|e| {
        let detail = e.detail().unwrap_or("cannot be parsed");
        format!("not a valid Redis URL: {detail}")
    })?;
    let mut settings = info.redis_settings().clone();
    if let Some(u) = &config.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &config.password {
        settings = settings.set_password(p.expose());
    }
    Ok(info.set_redis_settings(settings))
}

/// `host` and `port` of the server, for resource attributes and logs.
fn server_address(info: &client::ConnectionInfo) -> (String, u16) {
    match info.addr() {
        client::ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
        client::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
        client::ConnectionAddr::Unix(path) => (path.display().to_string(), 0),
        _ => (String::new(), 0),
    }
}

/// Why one scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("connecting to redis at {address}: {source}")]
    Connect { address: String, source: client::RedisError },
    #[error("querying INFO from redis at {address}: {source}")]
    Query { address: String, source: client::RedisError },
    #[error("redis at {address} did not answer within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
}

/// One server, scraped on demand: the connection, the previous answer and
/// whether it is up. The receiver drives it on a timer; tests and benches
/// drive it directly.
pub struct RedisScraper {
    client: client::Client,
    connection: Option<client::aio::MultiplexedConnection>,
    /// Whether the server takes `INFO everything` (unknown until asked).
    everything: bool,
    prev: Option<Info>,
    /// `None` before the first scrape, then whether the last one succeeded.
    up: Option<bool>,
    enabled: Enabled,
    timeout: Duration,
    host: String,
    port: u16,
    component: String,
}

impl RedisScraper {
    /// Builds the client; fails only on bad config, never because the server is down.
    pub fn new(config: &RedisConfig, component: &str) -> Result<Self, ComponentError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(ComponentError::new(problems.join("; ")));
        }
        let info = connection_info(config).map_err(ComponentError::new)?;
        let (host, port) = server_address(&info);
        let client = match config.tls.as_ref().and_then(|t| t.ca_file.as_deref()) {
            Some(ca) => {
                let pem = std::fs::read(ca)
                    .map_err(|e| ComponentError::new(format!("reading tls.ca_file `{ca}`: {e}")))?;
                let certs = client::TlsCertificates { client_tls: None, root_cert: Some(pem) };
                client::Client::build_with_tls(info, certs)
            }
            None => client::Client::open(info),
        }
        .map_err(|e| ComponentError::new(format!("redis client for {host}:{port}: {e}")))?;
        Ok(RedisScraper {
            client,
            connection: None,
            everything: true,
            prev: None,
            up: None,
            enabled: Enabled::new(METRICS, &config.metrics),
            timeout: config.effective_timeout(),
            host,
            port,
            component: component.to_string(),
        })
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The text of `INFO everything` (or `INFO` and `INFO commandstats`),
    /// connecting first when there is no open connection.
    async fn fetch(&mut self) -> Result<String, RedisError> {
        let address = self.address();
        let mut con = match self.connection.take() {
            Some(c) => c,
            None => {
                let cfg = client::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                self.client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await
                    .map_err(|source| RedisError::Connect { address: address.clone(), source })?
            }
        };
        let query = |e| RedisError::Query { address: address.clone(), source: e };
        let text = if self.everything {
            match client::cmd("INFO").arg("everything").query_async::<String>(&mut con).await {
                Ok(t) => Some(t),
                Err(e) if e.kind() == client::ErrorKind::Server(client::ServerErrorKind::ResponseError) => {
                    tracing::info!(component = %self.component, server = %address, error = %e, "server rejects INFO everything; asking for INFO and INFO commandstats");
                    self.everything = false;
                    None
                }
                Err(e) => return Err(query(e)),
            }
        } else {
            None
        };
        let text = match text {
            Some(t) => t,
            None => {
                let main = client::cmd("INFO").query_async::<String>(&mut con).await.map_err(query)?;
                let stats = client::cmd("INFO")
                    .arg("commandstats")
                    .query_async::<String>(&mut con)
                    .await
                    .map_err(query)?;
                main + "\r\n" + &stats
            }
        };
        self.connection = Some(con);
        Ok(text)
    }

    /// Asks for `INFO` without emitting anything, so the first scrape's hit
    /// rate covers a known interval. A failure is not logged here: the
    /// first scrape reports it.
    pub async fn baseline(&mut self) {
        if let Ok(Ok(text)) = tokio::time::timeout(self.timeout, self.fetch()).await {
            let mut info = parse_info(&text);
            info.anchor_start(None, now_unix_nanos());
            self.prev = Some(info);
        } else {
            self.connection = None;
        }
    }

    /// One scrape: the server's metrics and `redis.up = 1`, or only
    /// `redis.up = 0` when it did not answer. Logs when the state changes.
    pub async fn scrape(&mut self) -> Vec<ResourceMetrics> {
        let fetched = match tokio::time::timeout(self.timeout, self.fetch()).await {
            Ok(r) => r,
            Err(_) => Err(RedisError::Timeout { address: self.address(), timeout: self.timeout }),
        };
        let now = now_unix_nanos();
        match fetched {
            Ok(text) => {
                let mut cur = parse_info(&text);
                cur.anchor_start(self.prev.as_ref(), now);
                if self.up == Some(false) {
                    tracing::info!(component = %self.component, server = %self.address(), "redis answers again");
                }
                self.up = Some(true);
                let mut ms = Vec::with_capacity(METRICS.len());
                if self.enabled.on(&info::UP) {
                    ms.push(up_metric(true, now));
                }
                ms.extend(metrics(self.prev.as_ref(), &cur, now, &self.enabled));
                let resource = self.resource(Some(&cur));
                self.prev = Some(cur);
                vec![resource_metrics(resource, ms)]
            }
            Err(e) => {
                self.connection = None;
                if self.up != Some(false) {
                    tracing::warn!(component = %self.component, error = %e, "redis is unreachable; reporting redis.up 0 until it answers");
                }
                self.up = Some(false);
                let last = self.prev.take();
                let resource = self.resource(last.as_ref());
                self.prev = last;
                if !self.enabled.on(&info::UP) {
                    return Vec::new();
                }
                vec![resource_metrics(resource, vec![up_metric(false, now)])]
            }
        }
    }

    /// Resource attributes: the server's address and, once known, its version.
    fn resource(&self, info: Option<&Info>) -> Vec<KeyValue> {
        let mut attrs = vec![kv_str("server.address", self.host.as_str())];
        if self.port != 0 {
            attrs.push(magpie_core::otlp::kv_int("server.port", i64::from(self.port)));
        }
        if let Some(v) = info.and_then(Info::version) {
            attrs.push(kv_str("redis.version", v));
        }
        if let Some(v) = info.and_then(Info::valkey_version) {
            attrs.push(kv_str("valkey.version", v));
        }
        attrs
    }
}

/// Wraps metrics into a resource with the receiver's scope.
fn resource_metrics(attributes: Vec<KeyValue>, metrics: Vec<Metric>) -> ResourceMetrics {
    let scope = InstrumentationScope {
        name: SCOPE_NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    ResourceMetrics {
        resource: Some(Resource { attributes, ..Default::default() }),
        scope_metrics: vec![ScopeMetrics { scope: Some(scope), metrics, schema_url: String::new() }],
        schema_url: String::new(),
    }
}

// ---------------------------------------------------------------------------
// The receiver.

/// Scrapes one Redis server on a timer.
pub type RedisReceiver = crate::scrape::ScrapeReceiver<RedisScraper>;

impl crate::scrape::FromConfig for RedisScraper {
    type Config = RedisConfig;

    fn build(config: &RedisConfig, component: &str) -> Result<Self, ComponentError> {
        RedisScraper::new(config, component)
    }

    fn interval(config: &RedisConfig) -> Duration {
        config.collection_interval
    }
}

#[async_trait::async_trait]
impl crate::scrape::Scrape for RedisScraper {
    async fn baseline(&mut self) {
        RedisScraper::baseline(self).await;
    }

    async fn scrape(&mut self) -> Result<Vec<ResourceMetrics>, ComponentError> {
        Ok(RedisScraper::scrape(self).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::config::{Node, from_node};

    fn parse(yaml: &str) -> Result<RedisConfig, String> {
        let node = Node::parse(yaml, "t.yaml").map_err(|e| e.to_string())?;
        from_node::<RedisConfig>(&node, "receivers.redis").map(|(c, _)| c).map_err(|e| e.to_string())
    }

    fn problems(yaml: &str) -> Vec<String> {
        parse(yaml).map(|c| c.problems()).unwrap_or_else(|e| vec![e])
    }

    #[test]
    fn defaults() {
        let c = parse("").expect("empty config is valid");
        assert_eq!(c.endpoint.expose(), "redis://127.0.0.1:6379");
        assert_eq!(c.collection_interval, Duration::from_secs(10));
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let info = connection_info(&c).expect("parses");
        assert_eq!(server_address(&info), ("127.0.0.1".to_string(), 6379));
    }

    #[test]
    fn credentials_and_tls() {
        let c = parse("endpoint: redis://u:fromurl@cache:6380/2\npassword: override\n").expect("valid");
        let info = connection_info(&c).expect("parses");
        assert_eq!(info.redis_settings().password(), Some("override"));
        assert_eq!(info.redis_settings().username(), Some("u"));
        assert_eq!(info.redis_settings().db(), 2);
        assert_eq!(server_address(&info), ("cache".to_string(), 6380));
        let c = parse("endpoint: rediss://cache:6380\n").expect("valid");
        let info = connection_info(&c).expect("parses");
        assert!(matches!(info.addr(), client::ConnectionAddr::TcpTls { insecure: false, .. }));
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        // The secret is recorded for print-config.
        let node = Node::parse("endpoint: redis://:pw@h:1\npassword: x\n", "t.yaml").expect("yaml");
        let (_, secrets) = from_node::<RedisConfig>(&node, "receivers.redis").expect("valid");
        assert_eq!(secrets, ["receivers.redis.endpoint", "receivers.redis.password"]);
    }

    #[test]
    fn config_errors() {
        let cases: &[(&str, &str)] = &[
            ("endpoint: localhost:6379\n", "endpoint: expected a URL like redis://host:6379"),
            ("endpoint: http://localhost:6379\n", "endpoint: expected a URL like redis://host:6379"),
            ("endpoint: redis://:hunter2@/x\n", "endpoint: not a valid Redis URL"),
            ("colection_interval: 1s\n", "did you mean `collection_interval`?"),
            ("collection_interval: 0s\n", "collection_interval: must be at least 1ms"),
            ("timeout: 0s\n", "timeout: must be at least 1ms"),
            ("tls: {ca_file: /nonexistent/ca.pem}\nendpoint: rediss://h:1\n", "tls.ca_file: cannot read"),
            ("tls: {}\n", "tls: is only used with a `rediss://` endpoint"),
            ("metrics: {redis.memory.usd: {enabled: false}}\n", "did you mean `redis.memory.used`?"),
        ];
        for (yaml, want) in cases {
            let got = problems(yaml);
            assert!(got.iter().any(|p| p.contains(want)), "{yaml}: {got:?} lacks `{want}`");
            assert!(!got.iter().any(|p| p.contains("hunter2")), "{got:?} leaks the password");
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_reports_up_0_every_scrape() {
        // A port nothing listens on: bind, note the port, close.
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let config = RedisConfig {
            endpoint: Secret::new(format!("redis://:secret@127.0.0.1:{port}")),
            timeout: Duration::from_millis(500),
            ..Default::default()
        };
        let mut s = RedisScraper::new(&config, "redis/test").expect("bad servers are not config errors");
        for _ in 0..2 {
            let batch = s.scrape().await;
            assert_eq!(batch.len(), 1);
            let ms = &batch[0].scope_metrics[0].metrics;
            assert_eq!(ms.len(), 1);
            assert_eq!(ms[0].name, "redis.up");
            assert_eq!(s.up, Some(false));
            let attrs = &batch[0].resource.as_ref().expect("resource").attributes;
            assert_eq!(magpie_core::otlp::attr_i64(attrs, &["server.port"]), Some(i64::from(port)));
        }
    }

    #[test]
    fn the_readme_documents_every_metric_with_its_type_and_unit() {
        let readme = include_str!("../../README.md");
        let section = readme.split("\n## ").find(|s| s.starts_with("redis\n")).expect("README section");
        for d in METRICS {
            let row = section
                .lines()
                .find(|l| l.split('|').nth(1).is_some_and(|c| c.trim() == format!("`{}`", d.name)))
                .unwrap_or_else(|| panic!("README.md has no row for {}", d.name));
            let kind = match d.kind {
                crate::hostmetrics::Kind::Gauge => "Gauge",
                crate::hostmetrics::Kind::Counter => "Counter",
                crate::hostmetrics::Kind::UpDownCounter => "UpDownCounter",
            };
            assert!(
                row.contains(&format!("| {kind} | {} |", d.unit)),
                "{}: `{kind} | {}` not in `{row}`",
                d.name,
                d.unit
            );
            assert!(row.ends_with(if d.default_enabled { "| on |" } else { "| off |" }), "{row}");
        }
    }
}
