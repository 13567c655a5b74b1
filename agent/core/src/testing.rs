//! In-process test components, so topology tests need no network:
//! [`TestSource`] is a receiver fed from a [`SourceHandle`], and
//! [`CaptureExporter`] records what reaches it and can be stalled or made to
//! fail on demand through its [`CaptureHandle`]. Both are found by a name that
//! the test and the config share; each test uses its own names.

use crate::batch::Batch;
use crate::component::{ComponentError, ExportError, Exporter, Receiver, ReceiverContext};
use crate::output::{Output, SendError};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct SourceSlot {
    output: Mutex<Option<Output>>,
    changed: Notify,
}

fn sources() -> &'static Mutex<HashMap<String, Arc<SourceSlot>>> {
    static S: OnceLock<Mutex<HashMap<String, Arc<SourceSlot>>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

fn source_slot(name: &str) -> Arc<SourceSlot> {
    lock(sources()).entry(name.to_string()).or_default().clone()
}

/// Config of the `test_source` receiver.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSourceConfig {
    /// The name a test's [`SourceHandle`] uses.
    pub name: String,
}

/// A receiver that forwards whatever its handle sends.
pub struct TestSource {
    name: String,
}

impl TestSource {
    pub fn new(config: TestSourceConfig) -> Self {
        TestSource { name: config.name }
    }
}

#[async_trait::async_trait]
impl Receiver for TestSource {
    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let slot = source_slot(&self.name);
        *lock(&slot.output) = Some(ctx.output);
        slot.changed.notify_waiters();
        ctx.shutdown.cancelled().await;
        lock(&slot.output).take();
        slot.changed.notify_waiters();
        Ok(())
    }
}

/// Sends batches into the running `test_source` of the same name.
#[derive(Clone)]
pub struct SourceHandle {
    slot: Arc<SourceSlot>,
}

/// The handle of the `test_source` named `name`.
pub fn source(name: &str) -> SourceHandle {
    SourceHandle { slot: source_slot(name) }
}

impl SourceHandle {
    /// Waits (up to `wait`) for the source to run, then sends, waiting at most
    /// `wait` for room in the pipeline.
    pub async fn send(&self, batch: Batch, wait: Duration) -> Result<(), SendError> {
        let output = tokio::time::timeout(wait, async {
            loop {
                let notified = self.slot.changed.notified();
                if let Some(o) = lock(&self.slot.output).clone() {
                    return o;
                }
                notified.await;
            }
        })
        .await
        .map_err(|_| SendError::Closed)?;
        output.send_timeout(batch, wait).await
    }

    /// Whether a source of this name is running.
    pub fn is_running(&self) -> bool {
        lock(&self.slot.output).is_some()
    }
}

/// Config of the `capture` exporter.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// The name a test's [`CaptureHandle`] uses.
    pub name: String,
}

#[derive(Default)]
struct CaptureState {
    batches: Mutex<Vec<Arc<Batch>>>,
    items: AtomicU64,
    attempts: AtomicU64,
    fail_next: AtomicU64,
    stalled: OnceLock<watch::Sender<bool>>,
    arrived: Notify,
    shutdowns: AtomicU64,
}

impl CaptureState {
    fn stall_tx(&self) -> &watch::Sender<bool> {
        self.stalled.get_or_init(|| watch::channel(false).0)
    }
}

fn captures() -> &'static Mutex<HashMap<String, Arc<CaptureState>>> {
    static C: OnceLock<Mutex<HashMap<String, Arc<CaptureState>>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

fn capture_state(name: &str) -> Arc<CaptureState> {
    lock(captures()).entry(name.to_string()).or_default().clone()
}

/// An exporter that records every batch it is given.
pub struct CaptureExporter {
    state: Arc<CaptureState>,
}

impl CaptureExporter {
    pub fn new(config: CaptureConfig) -> Self {
        CaptureExporter { state: capture_state(&config.name) }
    }
}

#[async_trait::async_trait]
impl Exporter for CaptureExporter {
    async fn export(&mut self, batch: Arc<Batch>) -> Result<(), ExportError> {
        let mut rx = self.state.stall_tx().subscribe();
        while *rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                break;
            }
        }
        self.state.attempts.fetch_add(1, Ordering::Relaxed);
        let failing =
            self.state.fail_next.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(ExportError::retryable("capture told to fail"));
        }
        self.state.items.fetch_add(batch.item_count() as u64, Ordering::Relaxed);
        lock(&self.state.batches).push(batch);
        self.state.arrived.notify_waiters();
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), ComponentError> {
        self.state.shutdowns.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Reads and steers the `capture` exporter of the same name.
#[derive(Clone)]
pub struct CaptureHandle {
    state: Arc<CaptureState>,
}

/// The handle of the `capture` exporter named `name`.
pub fn capture(name: &str) -> CaptureHandle {
    CaptureHandle { state: capture_state(name) }
}

impl CaptureHandle {
    /// Items (spans, points, records) recorded so far.
    pub fn items(&self) -> u64 {
        self.state.items.load(Ordering::Relaxed)
    }

    /// Batches recorded so far.
    pub fn batches(&self) -> Vec<Arc<Batch>> {
        lock(&self.state.batches).clone()
    }

    /// Export calls so far, including failed ones.
    pub fn attempts(&self) -> u64 {
        self.state.attempts.load(Ordering::Relaxed)
    }

    /// Times the exporter was shut down.
    pub fn shutdowns(&self) -> u64 {
        self.state.shutdowns.load(Ordering::Relaxed)
    }

    /// Makes every export wait until [`CaptureHandle::release`].
    pub fn stall(&self) {
        self.state.stall_tx().send_replace(true);
    }

    pub fn release(&self) {
        self.state.stall_tx().send_replace(false);
    }

    /// Makes the next `n` exports fail with a retryable error.
    pub fn fail_next(&self, n: u64) {
        self.state.fail_next.store(n, Ordering::Relaxed);
    }

    /// Waits until at least `n` items arrived; false on timeout.
    pub async fn wait_for_items(&self, n: u64, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            loop {
                let notified = self.state.arrived.notified();
                if self.items() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }
}
