//! Magpie's exporters: where batches leave the agent.
//!
//! One module per exporter type, its config beside its code. This file holds
//! the closed list: [`TYPES`] (what `magpie components` prints), the
//! [`ExporterConfig`] enum and one `match` per operation. Adding an exporter is
//! one module, one variant, one arm in each `match`; the compiler points at
//! what is missing.
//!
//! Queueing (`sending_queue`) and retry (`retry_on_failure`) are not here: the
//! agent applies them to every exporter alike.
//!
//! This crate depends on `magpie-core` only.
//!
//! # Layout
//!
//! - [`blackhole`]: counts and discards (benchmarks, load tests).
//! - [`debug`]: prints batches to stderr at three verbosities.
//! - [`file`]: OTLP/JSON lines with size-based rotation and optional gzip.
//! - [`otlp_grpc`], [`otlp_http`]: OTLP onward to a gateway, Collector or backend, with the
//!   specification's retry rules; [`otlp_common`] holds what they share.
//! - [`postgres`]: the dashboard's PostgreSQL tables through binary `COPY`, with migrations,
//!   daily partitions, retention, exactly-once batches and a dead-letter table.
//! - [`webhook`]: alerts as Alertmanager's webhook payload, grouped and de-duplicated with
//!   Alertmanager's semantics, retried until delivered; `slack` is the same notifier posting
//!   Block Kit messages to a Slack incoming webhook ([`webhook::slack`]), and `email` the same
//!   notifier sending one email per notification over SMTP ([`webhook::email`]).
//! - [`websocket`]: the live feed (`system_metrics` and opt-in span, GenAI and error streams) and
//!   the built-in live page.

pub mod blackhole;
pub mod debug;
pub mod file;
pub mod otlp_common;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod postgres;
pub mod webhook;
pub mod websocket;

use magpie_core::config::{ConfigError, Node, from_node};
use magpie_core::queue::WhenFull;
use magpie_core::retry::RetryConfig;
use magpie_core::{ComponentError, ComponentId, Exporter, Signals, TypeInfo};
use std::time::Duration;

/// Every exporter type, in the order `magpie components` lists them.
pub const TYPES: &[TypeInfo] = &[
    TypeInfo {
        name: "blackhole",
        signals: Signals::ALL,
        routes: &[],
        about: "counts and discards everything (benchmarks and load tests)",
    },
    TypeInfo {
        name: "debug",
        signals: Signals::ALL,
        routes: &[],
        about: "prints batches to stderr: counts, one line per item, or every field",
    },
    TypeInfo {
        name: "email",
        signals: Signals::ALERTS,
        routes: &[],
        about: "sends alerts as emails over SMTP (STARTTLS, TLS or plain), grouped like webhook, retried until delivered",
    },
    TypeInfo {
        name: "file",
        signals: Signals::OTLP,
        routes: &[],
        about: "writes OTLP/JSON lines to a file, with size-based rotation and gzip",
    },
    TypeInfo {
        name: "otlp_grpc",
        signals: Signals::OTLP,
        routes: &[],
        about: "sends OTLP over gRPC to a gateway, Collector, Jaeger or Tempo, retrying per the OTLP spec",
    },
    TypeInfo {
        name: "otlp_http",
        signals: Signals::OTLP,
        routes: &[],
        about: "sends OTLP over HTTP (protobuf or JSON) to any OTLP endpoint, retrying per the OTLP spec",
    },
    TypeInfo {
        name: "postgres",
        signals: Signals::OTLP,
        routes: &[],
        about: "writes spans, metrics and logs into the dashboard's PostgreSQL tables with binary COPY, exactly once",
    },
    TypeInfo {
        name: "slack",
        signals: Signals::ALERTS,
        routes: &[],
        about: "posts alerts to a Slack incoming webhook as Block Kit messages, grouped like webhook, retried until delivered",
    },
    TypeInfo {
        name: "webhook",
        signals: Signals::ALERTS,
        routes: &[],
        about: "posts alerts as Alertmanager's webhook payload, grouped and de-duplicated, retried until delivered",
    },
    TypeInfo {
        name: "websocket",
        signals: Signals { traces: true, metrics: true, ..Signals::NONE },
        routes: &[],
        about: "serves a live feed (system_metrics, spans, LLM calls, errors) to dashboards and a built-in live page",
    },
];

/// The typed config of one exporter.
#[derive(Clone, Debug)]
pub enum ExporterConfig {
    Blackhole(blackhole::BlackholeConfig),
    Debug(debug::DebugConfig),
    Email(webhook::email::EmailConfig),
    File(file::FileConfig),
    OtlpGrpc(otlp_grpc::OtlpGrpcConfig),
    OtlpHttp(otlp_http::OtlpHttpConfig),
    Postgres(postgres::PostgresConfig),
    Slack(webhook::slack::SlackConfig),
    Webhook(webhook::WebhookConfig),
    Websocket(websocket::WebsocketConfig),
}

/// A parsed config and the paths of its secret fields.
pub type Parsed = (ExporterConfig, Vec<String>);

impl ExporterConfig {
    /// Parses `node` as the config of `type_name`, one of [`TYPES`]. `path` is
    /// the node's dotted path (`exporters.file/audit`) for messages.
    pub fn parse(type_name: &str, node: &Node, path: &str) -> Result<Option<Parsed>, ConfigError> {
        fn typed<T: serde::de::DeserializeOwned>(
            node: &Node,
            path: &str,
            wrap: fn(T) -> ExporterConfig,
        ) -> Result<Option<Parsed>, ConfigError> {
            from_node::<T>(node, path).map(|(c, s)| Some((wrap(c), s)))
        }
        match type_name {
            "blackhole" => typed(node, path, ExporterConfig::Blackhole),
            "debug" => typed(node, path, ExporterConfig::Debug),
            "email" => typed(node, path, ExporterConfig::Email),
            "file" => typed(node, path, ExporterConfig::File),
            "otlp_grpc" => typed(node, path, ExporterConfig::OtlpGrpc),
            "otlp_http" => typed(node, path, ExporterConfig::OtlpHttp),
            "postgres" => typed(node, path, ExporterConfig::Postgres),
            "slack" => typed(node, path, ExporterConfig::Slack),
            "webhook" => typed(node, path, ExporterConfig::Webhook),
            "websocket" => typed(node, path, ExporterConfig::Websocket),
            _ => Ok(None),
        }
    }

    /// Problems the types alone cannot catch, as messages for the component.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ExporterConfig::Blackhole(_) => Vec::new(),
            ExporterConfig::Debug(_) => Vec::new(),
            ExporterConfig::Email(c) => c.problems(),
            ExporterConfig::File(c) => c.problems(),
            ExporterConfig::OtlpGrpc(c) => c.problems(),
            ExporterConfig::OtlpHttp(c) => c.problems(),
            ExporterConfig::Postgres(c) => c.problems(),
            ExporterConfig::Slack(c) => c.problems(),
            ExporterConfig::Webhook(c) => c.problems(),
            ExporterConfig::Websocket(c) => c.problems(),
        }
    }

    /// Addresses this exporter listens on (for duplicate detection).
    pub fn listen_addresses(&self) -> Vec<(String, String)> {
        match self {
            ExporterConfig::Blackhole(_)
            | ExporterConfig::Debug(_)
            | ExporterConfig::Email(_)
            | ExporterConfig::File(_)
            | ExporterConfig::OtlpGrpc(_)
            | ExporterConfig::OtlpHttp(_)
            | ExporterConfig::Postgres(_)
            | ExporterConfig::Slack(_)
            | ExporterConfig::Webhook(_) => Vec::new(),
            ExporterConfig::Websocket(c) => c.listen_addresses(),
        }
    }

    /// What a full queue does when the config does not say: durable sinks
    /// block, live views drop the oldest.
    pub fn default_when_full(&self) -> WhenFull {
        match self {
            ExporterConfig::Blackhole(_)
            | ExporterConfig::Debug(_)
            | ExporterConfig::Email(_)
            | ExporterConfig::File(_)
            | ExporterConfig::OtlpGrpc(_)
            | ExporterConfig::OtlpHttp(_)
            | ExporterConfig::Postgres(_)
            | ExporterConfig::Slack(_)
            | ExporterConfig::Webhook(_) => WhenFull::Block,
            ExporterConfig::Websocket(_) => WhenFull::DropOldest,
        }
    }

    /// `retry_on_failure` when the config does not say. A durable store
    /// never gives up on a batch: it blocks (and pushes back) until the
    /// database is back.
    pub fn default_retry(&self) -> RetryConfig {
        match self {
            ExporterConfig::Postgres(_) => RetryConfig {
                max_elapsed_time: Duration::ZERO,
                initial_interval: Duration::from_secs(1),
                ..Default::default()
            },
            ExporterConfig::Blackhole(_)
            | ExporterConfig::Debug(_)
            | ExporterConfig::Email(_)
            | ExporterConfig::File(_)
            | ExporterConfig::OtlpGrpc(_)
            | ExporterConfig::OtlpHttp(_)
            | ExporterConfig::Slack(_)
            | ExporterConfig::Webhook(_)
            | ExporterConfig::Websocket(_) => RetryConfig::default(),
        }
    }

    /// Runs the exporter's schema migrations once (`magpie migrate`); `None`
    /// for types that have none.
    pub async fn migrate(&self) -> Option<Result<String, ComponentError>> {
        match self {
            ExporterConfig::Postgres(c) => Some(postgres::migrate(c).await),
            ExporterConfig::Blackhole(_)
            | ExporterConfig::Debug(_)
            | ExporterConfig::Email(_)
            | ExporterConfig::File(_)
            | ExporterConfig::OtlpGrpc(_)
            | ExporterConfig::OtlpHttp(_)
            | ExporterConfig::Slack(_)
            | ExporterConfig::Webhook(_)
            | ExporterConfig::Websocket(_) => None,
        }
    }

    pub fn build(&self, id: &ComponentId) -> Result<Box<dyn Exporter>, ComponentError> {
        Ok(match self {
            ExporterConfig::Blackhole(c) => Box::new(blackhole::BlackholeExporter::new(c)),
            ExporterConfig::Debug(c) => Box::new(debug::DebugExporter::new(id, c)),
            ExporterConfig::Email(c) => Box::new(webhook::Notifier::email(id, c)),
            ExporterConfig::File(c) => Box::new(file::FileExporter::new(id, c)),
            ExporterConfig::OtlpGrpc(c) => Box::new(otlp_grpc::OtlpGrpcExporter::new(id, c)),
            ExporterConfig::OtlpHttp(c) => Box::new(otlp_http::OtlpHttpExporter::new(id, c)),
            ExporterConfig::Postgres(c) => Box::new(postgres::PostgresExporter::new(id, c)),
            ExporterConfig::Slack(c) => Box::new(webhook::Notifier::slack(id, c)),
            ExporterConfig::Webhook(c) => Box::new(webhook::WebhookExporter::new(id, c)),
            ExporterConfig::Websocket(c) => Box::new(websocket::WebsocketExporter::new(id, c)),
        })
    }
}
