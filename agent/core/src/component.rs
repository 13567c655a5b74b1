//! The component traits. Each is an object-safe trait so the agent can hold
//! `Box<dyn Receiver>` and friends, wired by the config.
//!
//! - A [`Receiver`] produces batches into an [`Output`] until shutdown.
//! - A [`Processor`] transforms batches synchronously inside a pipeline task;
//!   timers (batch timeouts, flush intervals) are expressed as deadlines the
//!   pipeline task waits on, so processors stay pure and testable.
//! - An [`Exporter`] consumes shared batches; queueing and retry happen once,
//!   in the agent, for every exporter alike.
//! - A [`Connector`] is an exporter in one pipeline and a receiver in another.

use crate::batch::Batch;
use crate::id::ComponentId;
use crate::output::Output;
use crate::queue::QueueReceiver;
use crate::telemetry::ComponentStats;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A component failed to start or run.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ComponentError {
    pub message: String,
}

impl ComponentError {
    pub fn new(message: impl Into<String>) -> Self {
        ComponentError { message: message.into() }
    }
}

/// Why an export did not succeed; the agent's retry loop acts on the variant.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Worth trying again (connection refused, 503, deadlock...), after at
    /// least `retry_after` when the destination said so.
    #[error("{message}")]
    Retryable { message: String, retry_after: Option<Duration> },
    /// Trying again cannot help (400, schema mismatch): the batch is counted
    /// as failed and logged.
    #[error("{message}")]
    Permanent { message: String },
    /// The destination accepted part of the batch and refused `rejected`
    /// items for good; never retried.
    #[error("{rejected} items rejected: {message}")]
    Partial { rejected: u64, message: String },
}

impl ExportError {
    pub fn retryable(message: impl Into<String>) -> Self {
        ExportError::Retryable { message: message.into(), retry_after: None }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        ExportError::Permanent { message: message.into() }
    }
}

/// What a receiver gets when it runs.
pub struct ReceiverContext {
    pub id: ComponentId,
    /// Where batches go; dropping it (by returning from `run`) ends the
    /// downstream pipelines' input once every receiver has returned.
    pub output: Output,
    /// Cancelled when the agent stops or reloads: stop accepting, return.
    pub shutdown: CancellationToken,
    pub stats: Arc<ComponentStats>,
}

/// A source of telemetry: a listener (OTLP) or a scraper (host, Redis, PostgreSQL).
#[async_trait::async_trait]
pub trait Receiver: Send + 'static {
    /// Binds listeners and checks anything that can fail at start-up, so a
    /// taken port stops the agent before it claims to be ready.
    async fn start(&mut self, _id: &ComponentId) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Runs until `ctx.shutdown` is cancelled.
    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError>;
}

/// A synchronous batch transformer inside one pipeline.
///
/// Output batches are pushed to `out`; a processor may hold batches back
/// (batching, tail sampling) and release them at its [`Processor::deadline`].
pub trait Processor: Send + 'static {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>);

    /// The next instant this processor wants [`Processor::on_deadline`] called.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    fn on_deadline(&mut self, _now: Instant, _out: &mut Vec<Batch>) {}

    /// Releases everything held back; called once when the pipeline's input ends.
    fn flush(&mut self, _out: &mut Vec<Batch>) {}

    /// Reports the items sorted by outcome since the last call (`priced`,
    /// `dropped`, ...), which `/metrics` adds up per processor as
    /// `magpie_processor_items_total{outcome=...}`. Called after each
    /// [`Processor::process`]; processors that sort nothing keep the default.
    fn take_outcomes(&mut self, _report: &mut dyn FnMut(&'static str, u64)) {}
}

/// What an exporter gets at start.
pub struct ExporterContext {
    pub id: ComponentId,
    pub stats: Arc<ComponentStats>,
    pub shutdown: CancellationToken,
}

/// A destination.
#[async_trait::async_trait]
pub trait Exporter: Send + 'static {
    /// Opens files, binds listeners, connects. Failing here fails start-up.
    async fn start(&mut self, _ctx: &ExporterContext) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Delivers one batch. The batch is shared with the pipeline's other
    /// exporters; it may be offered again after a retryable error.
    async fn export(&mut self, batch: Arc<Batch>) -> Result<(), ExportError>;

    /// Flushes and closes after the queue has drained.
    async fn shutdown(&mut self) -> Result<(), ComponentError> {
        Ok(())
    }
}

/// What a connector gets when it runs.
pub struct ConnectorContext {
    pub id: ComponentId,
    /// Batches from the pipelines that export to this connector; `None` from
    /// `recv` once all of them have finished.
    pub input: QueueReceiver,
    /// The pipelines that receive from this connector.
    pub output: Output,
    pub stats: Arc<ComponentStats>,
}

/// An exporter in one pipeline and a receiver in another (traces → metrics).
#[async_trait::async_trait]
pub trait Connector: Send + 'static {
    /// Consumes `ctx.input` until it ends, sending into `ctx.output`; then
    /// flushes whatever it holds and returns.
    async fn run(self: Box<Self>, ctx: ConnectorContext) -> Result<(), ComponentError>;
}

/// What `magpie components` prints and what validation checks a component
/// type against: its name, the signals it handles and one line about it.
#[derive(Clone, Copy, Debug)]
pub struct TypeInfo {
    pub name: &'static str,
    pub signals: crate::id::Signals,
    /// For connectors: the (exporter side, receiver side) signal pairs it joins.
    pub routes: &'static [(crate::id::Signal, crate::id::Signal)],
    pub about: &'static str,
}
