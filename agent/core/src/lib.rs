//! Magpie's vocabulary crate: everything a receiver, processor, connector or
//! exporter needs to be written, and nothing that does IO on its own.
//!
//! Component crates (`receivers`, `processors`, `exporters`) depend on this
//! crate only, never on each other and never on the agent.
//!
//! # Layout
//!
//! - [`id`]: `ComponentId` (`type[/name]`), `PipelineId` (`traces|metrics|logs|alerts[/name]`) and `Signal`.
//! - [`batch`]: `Batch`, the unit that flows through pipelines: OTLP `Resource*` vectors, end to end.
//! - [`alert`]: `Alert`, the fourth signal (what OTLP lacks): status, labels, annotations, fingerprint.
//! - [`otlp`]: helpers every component needs over the OTLP prost types (walk spans, look up
//!   attributes by semconv alias, build data points, hex ids).
//! - [`component`]: the `Receiver`, `Processor`, `Connector` and `Exporter` traits and their contexts.
//! - [`output`]: `Output`, the handle a receiver or connector sends batches through.
//! - [`queue`]: the bounded per-exporter queue with `block` / `drop_oldest` policies.
//! - [`retry`]: exponential backoff with jitter, shared by every exporter.
//! - [`rpc`]: the `google.rpc` `Status` and `RetryInfo` messages OTLP errors carry.
//! - [`config`]: the located YAML tree (`Node`), its strict serde deserializer, `Secret` and durations.
//! - [`telemetry`]: per-component counters and states behind `/metrics` and `/readyz`.
//! - [`testing`] (feature `testing`): an in-process source and a capture sink for topology tests.

pub mod alert;
pub mod batch;
pub mod component;
pub mod config;
pub mod id;
pub mod otlp;
pub mod output;
pub mod queue;
pub mod retry;
pub mod rpc;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use batch::Batch;
pub use component::{
    ComponentError, Connector, ConnectorContext, ExportError, Exporter, ExporterContext, Processor, Receiver,
    ReceiverContext, TypeInfo,
};
pub use id::{ComponentId, ComponentKind, PipelineId, Signal, Signals};
pub use output::Output;
pub use telemetry::{ComponentStats, Telemetry};

/// The OTLP protobuf types, re-exported so component crates name one version.
pub use opentelemetry_proto::tonic as proto;
