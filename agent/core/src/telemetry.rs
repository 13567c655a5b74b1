//! Magpie's own telemetry: per-component counters and run states, read by
//! the agent's `/metrics` and `/readyz` endpoints.
//!
//! Counters are plain atomics updated on the data path (a relaxed add per
//! batch, not per item), so self-telemetry costs nothing measurable.

use crate::id::{ComponentId, ComponentKind};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

/// Counters for one component. Receivers use received/accepted/refused,
/// exporters exported/failed/dropped and the queue gauges.
#[derive(Debug, Default)]
pub struct ComponentStats {
    received: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    queue_size: AtomicU64,
    queue_capacity: AtomicU64,
    state: AtomicU8,
    /// Items by outcome, for processors that sort what they see (`priced`
    /// or `unpriced`, `kept` or `dropped`); the names are the processor's.
    outcomes: Mutex<Vec<(&'static str, u64)>>,
}

/// A point-in-time copy of [`ComponentStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub received: u64,
    pub accepted: u64,
    pub refused: u64,
    pub exported: u64,
    pub failed: u64,
    pub dropped: u64,
    pub queue_size: u64,
    pub queue_capacity: u64,
    pub state: State,
}

/// Where a component is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum State {
    #[default]
    Starting,
    Running,
    Stopped,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Running,
            2 => State::Stopped,
            3 => State::Failed,
            _ => State::Starting,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            State::Starting => 0,
            State::Running => 1,
            State::Stopped => 2,
            State::Failed => 3,
        }
    }
}

impl ComponentStats {
    pub fn add_received(&self, n: u64) {
        self.received.fetch_add(n, Relaxed);
    }
    pub fn add_accepted(&self, n: u64) {
        self.accepted.fetch_add(n, Relaxed);
    }
    pub fn add_refused(&self, n: u64) {
        self.refused.fetch_add(n, Relaxed);
    }
    pub fn add_exported(&self, n: u64) {
        self.exported.fetch_add(n, Relaxed);
    }
    pub fn add_failed(&self, n: u64) {
        self.failed.fetch_add(n, Relaxed);
    }
    pub fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
    }
    pub fn set_queue(&self, size: u64, capacity: u64) {
        self.queue_size.store(size, Relaxed);
        self.queue_capacity.store(capacity, Relaxed);
    }
    pub fn set_state(&self, state: State) {
        self.state.store(state.to_u8(), Relaxed);
    }
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Relaxed))
    }

    /// Adds `n` items to `outcome` (a lock per batch and outcome, not per item).
    pub fn add_outcome(&self, outcome: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        let mut outcomes = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        match outcomes.iter_mut().find(|(name, _)| *name == outcome) {
            Some((_, total)) => *total += n,
            None => outcomes.push((outcome, n)),
        }
    }

    /// Every outcome's total so far, by name.
    pub fn outcomes(&self) -> Vec<(&'static str, u64)> {
        let mut out = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner).clone();
        out.sort_unstable();
        out
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            received: self.received.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            refused: self.refused.load(Relaxed),
            exported: self.exported.load(Relaxed),
            failed: self.failed.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            queue_size: self.queue_size.load(Relaxed),
            queue_capacity: self.queue_capacity.load(Relaxed),
            state: self.state(),
        }
    }
}

/// One registered component.
#[derive(Clone)]
pub struct Entry {
    pub id: ComponentId,
    pub kind: ComponentKind,
    /// The pipeline a processor instance belongs to (processors are per pipeline).
    pub pipeline: Option<String>,
    pub stats: Arc<ComponentStats>,
}

/// The registry of every component's counters. Counters outlive a reload:
/// re-registering the same id returns the same counters, so totals stay
/// monotonic across SIGHUP.
#[derive(Clone, Default)]
pub struct Telemetry {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Telemetry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters of `id` (created on first use).
    pub fn register(
        &self,
        id: &ComponentId,
        kind: ComponentKind,
        pipeline: Option<&str>,
    ) -> Arc<ComponentStats> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) =
            entries.iter().find(|e| &e.id == id && e.kind == kind && e.pipeline.as_deref() == pipeline)
        {
            e.stats.set_state(State::Starting);
            return e.stats.clone();
        }
        let stats = Arc::new(ComponentStats::default());
        entries.push(Entry {
            id: id.clone(),
            kind,
            pipeline: pipeline.map(str::to_string),
            stats: stats.clone(),
        });
        stats
    }

    /// Forgets components that are not in the running topology any more
    /// (after a reload removed them).
    pub fn retain(&self, keep: impl Fn(&Entry) -> bool) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).retain(|e| keep(e));
    }

    /// Every registered component, in registration order.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_id_keeps_its_counters() {
        let t = Telemetry::new();
        let id: ComponentId = "debug".parse().unwrap();
        let a = t.register(&id, ComponentKind::Exporter, None);
        a.add_exported(5);
        a.set_state(State::Running);
        let b = t.register(&id, ComponentKind::Exporter, None);
        assert_eq!(b.snapshot().exported, 5);
        assert_eq!(b.state(), State::Starting);
        assert_eq!(t.entries().len(), 1);
    }

    #[test]
    fn outcomes_add_up_by_name_and_skip_zeros() {
        let s = ComponentStats::default();
        s.add_outcome("priced", 2);
        s.add_outcome("unpriced", 0);
        s.add_outcome("kept", 1);
        s.add_outcome("priced", 3);
        assert_eq!(s.outcomes(), [("kept", 1), ("priced", 5)]);
    }
}
