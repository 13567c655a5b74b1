//! Magpie's processors and connectors: what happens to batches between the
//! receivers and the exporters.
//!
//! Processors are synchronous and per pipeline (each pipeline gets its own
//! instance); timers are deadlines the pipeline task waits on. Connectors join
//! pipelines: an exporter in one, a receiver in another.
//!
//! As in every component crate, this file is the closed list: [`TYPES`] and
//! [`CONNECTOR_TYPES`], one config enum each and one `match` per operation.
//! This crate depends on `magpie-core` only.
//!
//! # Layout
//!
//! - [`alerts`]: connector evaluating alerting rules over metrics into alerts (metrics → alerts).
//! - [`batch`]: merges small batches and splits large ones by item count, with a timeout.
//! - [`forward`]: connector passing batches unchanged from one pipeline to others of the same signal.
//! - [`llm_cost`]: puts the USD cost of each LLM call on its span, from its token counts and a price table.
//! - [`probabilistic_sampler`]: head sampling of traces and logs by trace id, as the Collector's processor does.
//! - [`span_metrics`]: connector deriving RED metrics (HTTP and GenAI) from spans.
//! - [`tail_sampling`]: keeps or drops whole traces after `decision_wait`, by the Collector's policies.

pub mod alerts;
pub mod batch;
pub mod forward;
pub mod llm_cost;
pub mod probabilistic_sampler;
pub mod span_metrics;
pub mod tail_sampling;
pub mod tracestate;

use magpie_core::config::{ConfigError, Node, from_node};
use magpie_core::{ComponentError, ComponentId, Connector, Processor, Signal, Signals, TypeInfo};

/// Every processor type.
pub const TYPES: &[TypeInfo] = &[
    TypeInfo {
        name: "batch",
        signals: Signals::OTLP,
        routes: &[],
        about: "merges small batches and splits large ones by item count, flushing on a timeout",
    },
    TypeInfo {
        name: "llm_cost",
        signals: Signals::TRACES,
        routes: &[],
        about: "puts the USD cost of each LLM call on its span, from its token counts and a price table",
    },
    TypeInfo {
        name: "probabilistic_sampler",
        signals: Signals { traces: true, logs: true, ..Signals::NONE },
        routes: &[],
        about: "keeps a percentage of traces (whole traces, decided by trace id) and log records, as the Collector's processor does",
    },
    TypeInfo {
        name: "tail_sampling",
        signals: Signals::TRACES,
        routes: &[],
        about: "holds each trace for decision_wait, then keeps or drops it whole by the Collector's tail sampling policies",
    },
];

/// Every connector type.
pub const CONNECTOR_TYPES: &[TypeInfo] = &[
    TypeInfo {
        name: "alerts",
        signals: Signals { metrics: true, alerts: true, ..Signals::NONE },
        routes: &[(Signal::Metrics, Signal::Alerts)],
        about: "evaluates alerting rules over metrics (for, keep_firing_for, no-data) and emits firing and resolved alerts",
    },
    TypeInfo {
        name: "forward",
        signals: Signals::ALL,
        routes: &[
            (Signal::Traces, Signal::Traces),
            (Signal::Metrics, Signal::Metrics),
            (Signal::Logs, Signal::Logs),
            (Signal::Alerts, Signal::Alerts),
        ],
        about: "passes batches unchanged from one pipeline into others of the same signal",
    },
    TypeInfo {
        name: "span_metrics",
        signals: Signals { traces: true, metrics: true, ..Signals::NONE },
        routes: &[(Signal::Traces, Signal::Metrics)],
        about: "derives request rate, errors and latency histograms (HTTP and GenAI) from spans",
    },
];

fn typed<T: serde::de::DeserializeOwned, C>(
    node: &Node,
    path: &str,
    wrap: fn(T) -> C,
) -> Result<Option<(C, Vec<String>)>, ConfigError> {
    from_node::<T>(node, path).map(|(c, s)| Some((wrap(c), s)))
}

/// The typed config of one processor.
#[derive(Clone, Debug)]
pub enum ProcessorConfig {
    Batch(batch::BatchConfig),
    LlmCost(llm_cost::LlmCostConfig),
    ProbabilisticSampler(probabilistic_sampler::ProbabilisticSamplerConfig),
    TailSampling(tail_sampling::TailSamplingConfig),
}

impl ProcessorConfig {
    /// Parses `node` as the config of `type_name`; `None` for an unknown type.
    pub fn parse(
        type_name: &str,
        node: &Node,
        path: &str,
    ) -> Result<Option<(Self, Vec<String>)>, ConfigError> {
        match type_name {
            "batch" => typed(node, path, ProcessorConfig::Batch),
            "llm_cost" => typed(node, path, ProcessorConfig::LlmCost),
            "probabilistic_sampler" => typed(node, path, ProcessorConfig::ProbabilisticSampler),
            "tail_sampling" => typed(node, path, ProcessorConfig::TailSampling),
            _ => Ok(None),
        }
    }

    /// Problems the types alone cannot catch.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ProcessorConfig::Batch(c) => c.problems(),
            ProcessorConfig::LlmCost(c) => c.problems(),
            ProcessorConfig::ProbabilisticSampler(c) => c.problems(),
            ProcessorConfig::TailSampling(c) => c.problems(),
        }
    }

    /// A fresh instance for one pipeline.
    pub fn build(&self, id: &ComponentId) -> Result<Box<dyn Processor>, ComponentError> {
        Ok(match self {
            ProcessorConfig::Batch(c) => Box::new(batch::BatchProcessor::new(c)),
            ProcessorConfig::LlmCost(c) => Box::new(llm_cost::LlmCostProcessor::new(c, id)),
            ProcessorConfig::ProbabilisticSampler(c) => {
                Box::new(probabilistic_sampler::ProbabilisticSamplerProcessor::new(c, id))
            }
            ProcessorConfig::TailSampling(c) => Box::new(tail_sampling::TailSamplingProcessor::new(c, id)),
        })
    }
}

/// The typed config of one connector.
#[derive(Clone, Debug)]
pub enum ConnectorConfig {
    Alerts(alerts::AlertsConfig),
    Forward(forward::ForwardConfig),
    SpanMetrics(span_metrics::SpanMetricsConfig),
}

impl ConnectorConfig {
    /// Parses `node` as the config of `type_name`; `None` for an unknown type.
    pub fn parse(
        type_name: &str,
        node: &Node,
        path: &str,
    ) -> Result<Option<(Self, Vec<String>)>, ConfigError> {
        match type_name {
            "alerts" => typed(node, path, ConnectorConfig::Alerts),
            "forward" => typed(node, path, ConnectorConfig::Forward),
            "span_metrics" => typed(node, path, ConnectorConfig::SpanMetrics),
            _ => Ok(None),
        }
    }

    pub fn problems(&self) -> Vec<String> {
        match self {
            ConnectorConfig::Alerts(c) => c.problems(),
            ConnectorConfig::Forward(_) => Vec::new(),
            ConnectorConfig::SpanMetrics(c) => c.problems(),
        }
    }

    pub fn build(&self, id: &ComponentId) -> Result<Box<dyn Connector>, ComponentError> {
        Ok(match self {
            ConnectorConfig::Alerts(c) => Box::new(alerts::AlertsConnector::new(c, id)),
            ConnectorConfig::Forward(c) => Box::new(forward::ForwardConnector::new(c)),
            ConnectorConfig::SpanMetrics(c) => Box::new(span_metrics::SpanMetricsConnector::new(c)),
        })
    }
}
