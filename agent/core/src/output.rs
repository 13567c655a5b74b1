//! `Output`: how a receiver or connector hands batches to the pipelines that
//! read from it.
//!
//! A receiver listed in two traces pipelines sends each of them the batch
//! (a clone for all but the last, since processors own what they get).

use crate::batch::Batch;
use crate::id::Signal;
use crate::telemetry::ComponentStats;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Why a batch was not accepted downstream.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// The pipeline stayed full for the whole wait: retryable for the client.
    #[error("pipeline is full")]
    Full,
    /// The pipeline is shutting down.
    #[error("pipeline is closed")]
    Closed,
    /// No pipeline of this signal reads from this component.
    #[error("no {0} pipeline reads from this component")]
    NoPipeline(Signal),
}

/// The senders into every pipeline a component feeds, per signal.
#[derive(Clone, Default)]
pub struct Output {
    traces: Vec<mpsc::Sender<Batch>>,
    metrics: Vec<mpsc::Sender<Batch>>,
    logs: Vec<mpsc::Sender<Batch>>,
    alerts: Vec<mpsc::Sender<Batch>>,
    stats: Option<Arc<ComponentStats>>,
}

impl Output {
    pub fn new(stats: Arc<ComponentStats>) -> Self {
        Output { stats: Some(stats), ..Default::default() }
    }

    /// Adds a pipeline input for `signal`.
    pub fn add(&mut self, signal: Signal, sender: mpsc::Sender<Batch>) {
        self.senders_mut(signal).push(sender);
    }

    fn senders(&self, signal: Signal) -> &[mpsc::Sender<Batch>] {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
            Signal::Alerts => &self.alerts,
        }
    }

    fn senders_mut(&mut self, signal: Signal) -> &mut Vec<mpsc::Sender<Batch>> {
        match signal {
            Signal::Traces => &mut self.traces,
            Signal::Metrics => &mut self.metrics,
            Signal::Logs => &mut self.logs,
            Signal::Alerts => &mut self.alerts,
        }
    }

    /// Whether any pipeline of `signal` reads from this output.
    pub fn wants(&self, signal: Signal) -> bool {
        !self.senders(signal).is_empty()
    }

    /// Sends, waiting as long as the pipelines need (backpressure).
    pub async fn send(&self, batch: Batch) -> Result<(), SendError> {
        self.send_inner(batch, None).await
    }

    /// Sends, waiting at most `timeout` for room in each pipeline.
    pub async fn send_timeout(&self, batch: Batch, timeout: Duration) -> Result<(), SendError> {
        self.send_inner(batch, Some(timeout)).await
    }

    async fn send_inner(&self, batch: Batch, timeout: Option<Duration>) -> Result<(), SendError> {
        let signal = batch.signal();
        let items = batch.item_count() as u64;
        if let Some(stats) = &self.stats {
            stats.add_received(items);
        }
        let senders = self.senders(signal);
        let result = if senders.is_empty() {
            Err(SendError::NoPipeline(signal))
        } else {
            send_all(senders, batch, timeout).await
        };
        if let Some(stats) = &self.stats {
            match result {
                Ok(()) => stats.add_accepted(items),
                Err(_) => stats.add_refused(items),
            }
        }
        result
    }
}

/// Delivers to every pipeline or to none: room is reserved in each channel
/// first (in the same order for every sender, so reservations cannot
/// deadlock), and the batch is sent only once all reservations succeeded. A
/// client told to retry has therefore not already reached some pipelines.
async fn send_all(
    senders: &[mpsc::Sender<Batch>],
    batch: Batch,
    timeout: Option<Duration>,
) -> Result<(), SendError> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut permits = Vec::with_capacity(senders.len());
    for tx in senders {
        // Room now is the common case: take it without arming a timer.
        let permit = match tx.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Closed(())) => return Err(SendError::Closed),
            Err(mpsc::error::TrySendError::Full(())) => match deadline {
                None => tx.reserve().await.map_err(|_| SendError::Closed)?,
                Some(d) => match tokio::time::timeout_at(d, tx.reserve()).await {
                    Err(_) => return Err(SendError::Full),
                    Ok(r) => r.map_err(|_| SendError::Closed)?,
                },
            },
        };
        permits.push(permit);
    }
    let last = permits.len().saturating_sub(1);
    let mut batch = Some(batch);
    for (i, permit) in permits.into_iter().enumerate() {
        let b = if i == last { batch.take() } else { batch.clone() };
        if let Some(b) = b {
            permit.send(b);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::testdata;

    #[tokio::test]
    async fn sends_to_every_pipeline_and_counts() {
        let stats = Arc::new(ComponentStats::default());
        let mut out = Output::new(stats.clone());
        let (a, mut ra) = mpsc::channel(1);
        let (b, mut rb) = mpsc::channel(1);
        out.add(Signal::Traces, a);
        out.add(Signal::Traces, b);
        out.send(Batch::Traces(testdata::spans(1, 2))).await.unwrap();
        assert_eq!(ra.recv().await.unwrap().item_count(), 2);
        assert_eq!(rb.recv().await.unwrap().item_count(), 2);
        assert_eq!(stats.snapshot().accepted, 2);
        assert_eq!(
            out.send(Batch::Logs(testdata::logs(1, 1))).await,
            Err(SendError::NoPipeline(Signal::Logs))
        );
        assert_eq!(stats.snapshot().refused, 1);
    }

    #[tokio::test]
    async fn all_pipelines_or_none() {
        let mut out = Output::new(Arc::new(ComponentStats::default()));
        let (a, mut ra) = mpsc::channel(4);
        let (b, _rb) = mpsc::channel(1);
        out.add(Signal::Traces, a);
        out.add(Signal::Traces, b);
        out.send(Batch::Traces(testdata::spans(1, 1))).await.unwrap();
        let r = out.send_timeout(Batch::Traces(testdata::spans(1, 2)), Duration::from_millis(20)).await;
        assert_eq!(r, Err(SendError::Full));
        assert_eq!(ra.recv().await.unwrap().item_count(), 1);
        assert!(ra.try_recv().is_err(), "the first pipeline did not get the refused batch");
    }

    #[tokio::test]
    async fn a_full_pipeline_times_out() {
        let mut out = Output::new(Arc::new(ComponentStats::default()));
        let (a, _ra) = mpsc::channel(1);
        out.add(Signal::Metrics, a);
        out.send(Batch::Metrics(testdata::gauges(1, 1))).await.unwrap();
        let r = out.send_timeout(Batch::Metrics(testdata::gauges(1, 1)), Duration::from_millis(20)).await;
        assert_eq!(r, Err(SendError::Full));
    }
}
