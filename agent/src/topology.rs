//! The running topology: every pipeline of a validated config, wired with
//! bounded channels and queues.
//!
//! ```text
//! receivers ─► pipeline input (bounded mpsc) ─► processors in order ─► fan-out
//!                                                                       │ Arc<Batch>, one per batch
//!                                   ┌───────────────────────────────────┴──────────────┐
//!                                   ▼                                                  ▼
//!                     exporter queue (block | drop_oldest)               connector queue ─► its pipelines
//!                                   ▼
//!                     exporter task: export, retry with backoff, count
//! ```
//!
//! Build order is downstream first: exporters, connectors, pipelines, then
//! receivers last, so nothing is accepted before it can be delivered.
//! Shutdown flows the other way: only receivers watch the shutdown token;
//! when they return their senders drop, each pipeline drains and flushes its
//! processors, drops its queue senders, and each exporter drains its queue
//! and flushes. Whatever is still in flight at the deadline is counted and
//! reported, never silently dropped.

use crate::components;
use crate::config::{AgentConfig, Pipeline};
use magpie_core::queue::{QueueProbe, QueueSender, WhenFull, queue};
use magpie_core::retry::RetryConfig;
use magpie_core::telemetry::State;
use magpie_core::{
    Batch, ComponentId, ComponentKind, ComponentStats, ConnectorContext, ExportError, Exporter,
    ExporterContext, Output, PipelineId, Processor, ReceiverContext, Telemetry,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Batches a pipeline's input channel holds before receivers feel backpressure.
pub const PIPELINE_INPUT_CAPACITY: usize = 64;

/// Batches a connector's input queue holds.
pub const CONNECTOR_QUEUE_CAPACITY: usize = 64;

/// Starting the topology failed; everything already started was stopped.
#[derive(Debug, thiserror::Error)]
#[error("starting {kind} `{id}`: {message}")]
pub struct StartError {
    pub kind: ComponentKind,
    pub id: ComponentId,
    pub message: String,
}

/// What a shutdown left undelivered.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Items still queued or in flight when the deadline passed.
    pub undelivered_items: u64,
    /// Components that had not finished by the deadline.
    pub unfinished: Vec<String>,
}

/// Items a task holds outside any queue (in an export attempt, in a fan-out
/// push), so a shutdown at the deadline can count them.
#[derive(Clone, Default)]
struct Holding(Arc<AtomicU64>);

impl Holding {
    fn set(&self, n: usize) {
        self.0.store(n as u64, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct Task {
    name: String,
    handle: JoinHandle<()>,
}

/// A started topology.
pub struct Topology {
    receivers_stop: CancellationToken,
    hard_stop: CancellationToken,
    tasks: Vec<Task>,
    probes: Vec<QueueProbe>,
    holdings: Vec<Holding>,
}

impl Topology {
    /// Builds and starts every pipeline of `config`, downstream first.
    pub async fn start(config: &AgentConfig, telemetry: &Telemetry) -> Result<Topology, StartError> {
        let mut topo = Topology {
            receivers_stop: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            tasks: Vec::new(),
            probes: Vec::new(),
            holdings: Vec::new(),
        };
        match topo.build(config, telemetry).await {
            Ok(()) => Ok(topo),
            Err(e) => {
                // Stop what already runs; nothing was accepted yet, so there is nothing to lose.
                topo.shutdown(Duration::from_secs(5)).await;
                Err(e)
            }
        }
    }

    async fn build(&mut self, config: &AgentConfig, telemetry: &Telemetry) -> Result<(), StartError> {
        // Pipeline inputs exist first so connectors and receivers can be given senders.
        let mut senders: BTreeMap<PipelineId, mpsc::Sender<Batch>> = BTreeMap::new();
        let mut inputs: BTreeMap<PipelineId, mpsc::Receiver<Batch>> = BTreeMap::new();
        for p in &config.pipelines {
            let (tx, rx) = mpsc::channel(PIPELINE_INPUT_CAPACITY);
            senders.insert(p.id.clone(), tx);
            inputs.insert(p.id.clone(), rx);
        }

        // 1. Exporters.
        let mut queues: BTreeMap<ComponentId, QueueSender> = BTreeMap::new();
        for (id, decl) in &config.exporters {
            if !config.pipelines.iter().any(|p| p.exporters.contains(id)) {
                continue;
            }
            let err = |message: String| StartError { kind: ComponentKind::Exporter, id: id.clone(), message };
            let stats = telemetry.register(id, ComponentKind::Exporter, None);
            let mut exporter = decl.config.spec.build(id).map_err(|e| err(e.message))?;
            let ctx =
                ExporterContext { id: id.clone(), stats: stats.clone(), shutdown: self.hard_stop.clone() };
            if let Err(e) = exporter.start(&ctx).await {
                stats.set_state(State::Failed);
                return Err(err(e.message));
            }
            let (tx, rx) = queue(decl.config.queue_size, decl.config.when_full, stats.clone());
            self.probes.push(rx.probe());
            let holding = Holding::default();
            self.holdings.push(holding.clone());
            let run = ExporterRun {
                id: id.clone(),
                exporter,
                retry: decl.config.retry.clone(),
                stats: stats.clone(),
                hard_stop: self.hard_stop.clone(),
                holding,
            };
            stats.set_state(State::Running);
            self.spawn(format!("exporter {id}"), run.run(rx));
            queues.insert(id.clone(), tx);
        }

        // 2. Connectors: an input queue fed by pipelines, an output into pipelines.
        for (id, decl) in &config.connectors {
            let err =
                |message: String| StartError { kind: ComponentKind::Connector, id: id.clone(), message };
            let stats = telemetry.register(id, ComponentKind::Connector, None);
            let connector = components::build_connector(&decl.config, id).map_err(|e| err(e.message))?;
            let (tx, rx) = queue(CONNECTOR_QUEUE_CAPACITY, WhenFull::Block, stats.clone());
            self.probes.push(rx.probe());
            let output = output_for(config, id, stats.clone(), &senders);
            let ctx = ConnectorContext { id: id.clone(), input: rx, output, stats: stats.clone() };
            stats.set_state(State::Running);
            let cid = id.clone();
            self.spawn(format!("connector {id}"), async move {
                match connector.run(ctx).await {
                    Ok(()) => stats.set_state(State::Stopped),
                    Err(e) => {
                        stats.set_state(State::Failed);
                        tracing::error!(component = %cid, error = %e, "connector failed");
                    }
                }
            });
            queues.insert(id.clone(), tx);
        }

        // 3. Pipelines: processors (one instance each) and the fan-out.
        for p in &config.pipelines {
            let Some(rx) = inputs.remove(&p.id) else { continue };
            let mut processors = Vec::new();
            for pid in &p.processors {
                let Some(decl) = config.processors.get(pid) else { continue };
                let stats = telemetry.register(pid, ComponentKind::Processor, Some(&p.id.to_string()));
                let processor = components::build_processor(&decl.config, pid).map_err(|e| StartError {
                    kind: ComponentKind::Processor,
                    id: pid.clone(),
                    message: e.message,
                })?;
                stats.set_state(State::Running);
                processors.push(Stage { processor, stats });
            }
            let fanout: Vec<(ComponentId, QueueSender)> =
                p.exporters.iter().filter_map(|e| queues.get(e).map(|q| (e.clone(), q.clone()))).collect();
            let holding = Holding::default();
            self.holdings.push(holding.clone());
            let run = PipelineRun {
                stages: processors,
                fanout: FanOut { pipeline: p.id.clone(), targets: fanout, holding },
            };
            self.spawn(format!("pipeline {}", p.id), run.run(rx));
        }
        // From here on only pipelines hold queue senders: queues close when they finish.
        drop(queues);

        // 4. Receivers, last: bind everything first, then run.
        let mut receivers = Vec::new();
        for (id, decl) in &config.receivers {
            if !config.pipelines.iter().any(|p: &Pipeline| p.receivers.contains(id)) {
                continue;
            }
            let err = |message: String| StartError { kind: ComponentKind::Receiver, id: id.clone(), message };
            let stats = telemetry.register(id, ComponentKind::Receiver, None);
            let mut receiver = decl.config.build(id).map_err(|e| err(e.message))?;
            if let Err(e) = receiver.start(id).await {
                stats.set_state(State::Failed);
                return Err(err(e.message));
            }
            receivers.push((id.clone(), receiver, stats));
        }
        for (id, receiver, stats) in receivers {
            let ctx = ReceiverContext {
                id: id.clone(),
                output: output_for(config, &id, stats.clone(), &senders),
                shutdown: self.receivers_stop.child_token(),
                stats: stats.clone(),
            };
            stats.set_state(State::Running);
            self.spawn(format!("receiver {id}"), async move {
                match receiver.run(ctx).await {
                    Ok(()) => stats.set_state(State::Stopped),
                    Err(e) => {
                        stats.set_state(State::Failed);
                        tracing::error!(component = %id, error = %e, "receiver failed");
                    }
                }
            });
        }
        // From here on only receivers and connectors hold pipeline senders.
        drop(senders);
        Ok(())
    }

    fn spawn(&mut self, name: String, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(Task { name, handle: tokio::spawn(fut) });
    }

    /// Stops receivers, lets every stage drain, and waits up to `timeout`.
    pub async fn shutdown(mut self, timeout: Duration) -> ShutdownReport {
        self.receivers_stop.cancel();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut report = ShutdownReport::default();
        for task in &mut self.tasks {
            if tokio::time::timeout_at(deadline, &mut task.handle).await.is_err() {
                report.unfinished.push(task.name.clone());
            }
        }
        if !report.unfinished.is_empty() {
            report.undelivered_items = self.probes.iter().map(|p| p.pending_items() as u64).sum::<u64>()
                + self.holdings.iter().map(Holding::get).sum::<u64>();
            self.hard_stop.cancel();
            for task in &self.tasks {
                task.handle.abort();
            }
        }
        report
    }
}

/// The output of a receiver or connector: a sender into every pipeline that lists it.
fn output_for(
    config: &AgentConfig,
    id: &ComponentId,
    stats: Arc<ComponentStats>,
    senders: &BTreeMap<PipelineId, mpsc::Sender<Batch>>,
) -> Output {
    let mut out = Output::new(stats);
    for p in config.pipelines.iter().filter(|p| p.receivers.contains(id)) {
        if let Some(tx) = senders.get(&p.id) {
            out.add(p.id.signal, tx.clone());
        }
    }
    out
}

/// One processor in a pipeline.
struct Stage {
    processor: Box<dyn Processor>,
    stats: Arc<ComponentStats>,
}

/// A pipeline's task: input → processors → fan-out.
struct PipelineRun {
    stages: Vec<Stage>,
    fanout: FanOut,
}

/// The end of a pipeline: every exporter and connector it feeds.
struct FanOut {
    pipeline: PipelineId,
    targets: Vec<(ComponentId, QueueSender)>,
    holding: Holding,
}

impl PipelineRun {
    async fn run(mut self, mut input: mpsc::Receiver<Batch>) {
        loop {
            let deadline = self.stages.iter().filter_map(|s| s.processor.deadline()).min();
            let next = match deadline {
                Some(d) => tokio::select! {
                    biased;
                    b = input.recv() => b.map(Some),
                    () = tokio::time::sleep_until(d.into()) => Some(None),
                },
                None => input.recv().await.map(Some),
            };
            match next {
                Some(Some(batch)) => {
                    let out = self.push_through(0, vec![batch]);
                    self.fanout.send(out).await;
                }
                Some(None) => {
                    let now = Instant::now();
                    for i in 0..self.stages.len() {
                        if self.stages[i].processor.deadline().is_some_and(|d| d <= now) {
                            let mut released = Vec::new();
                            self.stages[i].processor.on_deadline(now, &mut released);
                            self.take_outcomes(i);
                            let out = self.push_through(i + 1, released);
                            self.fanout.send(out).await;
                        }
                    }
                }
                None => break,
            }
        }
        // Input ended: flush each processor in order, passing what it releases downstream.
        for i in 0..self.stages.len() {
            let mut released = Vec::new();
            self.stages[i].processor.flush(&mut released);
            self.take_outcomes(i);
            let out = self.push_through(i + 1, released);
            self.fanout.send(out).await;
        }
        tracing::debug!(pipeline = %self.fanout.pipeline, "pipeline drained");
    }

    /// Reports what stage `i` sorted outside `process` (a timer's release,
    /// the final flush): a tail sampler decides there.
    fn take_outcomes(&mut self, i: usize) {
        let Stage { processor, stats } = &mut self.stages[i];
        processor.take_outcomes(&mut |outcome, n| stats.add_outcome(outcome, n));
    }

    /// Runs `batches` through the stages from `from` on.
    fn push_through(&mut self, from: usize, mut batches: Vec<Batch>) -> Vec<Batch> {
        for Stage { processor, stats } in &mut self.stages[from..] {
            let mut next = Vec::with_capacity(batches.len());
            for b in batches {
                stats.add_received(b.item_count() as u64);
                let before = next.len();
                processor.process(b, &mut next);
                let out: usize = next[before..].iter().map(Batch::item_count).sum();
                stats.add_exported(out as u64);
                processor.take_outcomes(&mut |outcome, n| stats.add_outcome(outcome, n));
            }
            batches = next;
        }
        batches
    }
}

impl FanOut {
    async fn send(&self, batches: Vec<Batch>) {
        for b in batches {
            let items = b.item_count();
            if items == 0 {
                continue;
            }
            self.holding.set(items);
            // One allocation per batch, shared by every exporter.
            let shared = Arc::new(b);
            for (id, q) in &self.targets {
                if q.push(shared.clone()).await.is_err() {
                    tracing::error!(pipeline = %self.pipeline, component = %id, items, "exporter stopped before the pipeline; batch not delivered to it");
                }
            }
            self.holding.set(0);
        }
    }
}

/// An exporter's task: drain the queue, export with retry, count.
struct ExporterRun {
    id: ComponentId,
    exporter: Box<dyn Exporter>,
    retry: RetryConfig,
    stats: Arc<ComponentStats>,
    hard_stop: CancellationToken,
    holding: Holding,
}

impl ExporterRun {
    async fn run(mut self, mut input: magpie_core::queue::QueueReceiver) {
        while let Some(batch) = input.recv().await {
            let items = batch.item_count();
            self.holding.set(items);
            if !self.deliver(batch, items as u64).await {
                return;
            }
            self.holding.set(0);
        }
        if let Err(e) = self.exporter.shutdown().await {
            tracing::error!(component = %self.id, error = %e, "exporter failed to flush on shutdown");
        }
        self.stats.set_state(State::Stopped);
    }

    /// Exports one batch, retrying as configured; false when hard-stopped mid-retry.
    async fn deliver(&mut self, batch: Arc<Batch>, items: u64) -> bool {
        let first = Instant::now();
        let mut backoff = self.retry.backoff();
        let mut attempt = 1u32;
        loop {
            match self.exporter.export(batch.clone()).await {
                Ok(()) => {
                    self.stats.add_exported(items);
                    return true;
                }
                Err(ExportError::Partial { rejected, message }) => {
                    let rejected = rejected.min(items);
                    self.stats.add_exported(items - rejected);
                    self.stats.add_failed(rejected);
                    tracing::warn!(component = %self.id, rejected, error = %message, "destination rejected part of a batch; not retrying");
                    return true;
                }
                Err(ExportError::Permanent { message }) => {
                    self.stats.add_failed(items);
                    tracing::error!(component = %self.id, items, error = %message, "export failed permanently; batch dropped");
                    return true;
                }
                Err(ExportError::Retryable { message, retry_after }) => {
                    let elapsed = first.elapsed();
                    let max = self.retry.max_elapsed_time;
                    if !self.retry.enabled || (!max.is_zero() && elapsed >= max) {
                        self.stats.add_failed(items);
                        tracing::error!(
                            component = %self.id, items, attempts = attempt, elapsed = ?elapsed, error = %message,
                            "export failed and retries are exhausted; batch dropped"
                        );
                        return true;
                    }
                    let mut wait = backoff.next_wait(retry_after);
                    if !max.is_zero() {
                        wait = wait.min(max.saturating_sub(elapsed).max(Duration::from_millis(1)));
                    }
                    tracing::warn!(component = %self.id, attempt, retry_in = ?wait, error = %message, "export failed; will retry");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.hard_stop.cancelled() => return false,
                    }
                    attempt += 1;
                }
            }
        }
    }
}
