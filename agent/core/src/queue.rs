//! The bounded queue in front of every exporter and connector.
//!
//! Many producers (the pipelines that fan out to one exporter), one consumer
//! (the exporter's task). Capacity is counted in batches. When full, the
//! policy decides: [`WhenFull::Block`] waits for room, so backpressure reaches
//! the receivers and, through them, the clients; [`WhenFull::DropOldest`]
//! discards the oldest batch and counts its items as dropped, so a live view
//! never holds the pipeline back.

use crate::batch::Batch;
use crate::telemetry::ComponentStats;
use serde::Deserialize;
use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// What a full queue does with a new batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: backpressure. The default for durable destinations.
    Block,
    /// Discard the oldest queued batch, counting its items as dropped.
    DropOldest,
}

struct State {
    items: VecDeque<Arc<Batch>>,
    queued_items: usize,
    senders: usize,
    receiver_alive: bool,
}

struct Shared {
    state: Mutex<State>,
    not_empty: Notify,
    not_full: Notify,
    capacity: usize,
    policy: WhenFull,
    stats: Arc<ComponentStats>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish_size(&self, st: &State) {
        self.stats.set_queue(st.items.len() as u64, self.capacity as u64);
    }
}

/// Creates a queue of `capacity` batches (at least one).
pub fn queue(capacity: usize, policy: WhenFull, stats: Arc<ComponentStats>) -> (QueueSender, QueueReceiver) {
    let capacity = capacity.max(1);
    stats.set_queue(0, capacity as u64);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            queued_items: 0,
            senders: 1,
            receiver_alive: true,
        }),
        not_empty: Notify::new(),
        not_full: Notify::new(),
        capacity,
        policy,
        stats,
    });
    (QueueSender { shared: shared.clone() }, QueueReceiver { shared })
}

/// The producing side; clone it for every pipeline that feeds the exporter.
pub struct QueueSender {
    shared: Arc<Shared>,
}

impl Clone for QueueSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        QueueSender { shared: self.shared.clone() }
    }
}

impl Drop for QueueSender {
    fn drop(&mut self) {
        let last = {
            let mut st = self.shared.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.shared.not_empty.notify_one();
        }
    }
}

/// The consumer went away; the batch is handed back.
#[derive(Debug)]
pub struct Closed(pub Arc<Batch>);

impl QueueSender {
    /// Queues a batch, applying the full-queue policy.
    pub async fn push(&self, batch: Arc<Batch>) -> Result<(), Closed> {
        loop {
            let mut notified = pin!(self.shared.not_full.notified());
            notified.as_mut().enable();
            {
                let mut st = self.shared.lock();
                if !st.receiver_alive {
                    return Err(Closed(batch));
                }
                let room = st.items.len() < self.shared.capacity;
                if room || self.shared.policy == WhenFull::DropOldest {
                    if !room && let Some(old) = st.items.pop_front() {
                        let n = old.item_count();
                        st.queued_items -= n;
                        self.shared.stats.add_dropped(n as u64);
                    }
                    st.queued_items += batch.item_count();
                    st.items.push_back(batch);
                    self.shared.publish_size(&st);
                    drop(st);
                    self.shared.not_empty.notify_one();
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// Batches and items waiting now.
    pub fn len(&self) -> (usize, usize) {
        let st = self.shared.lock();
        (st.items.len(), st.queued_items)
    }

    pub fn is_empty(&self) -> bool {
        self.len().0 == 0
    }
}

/// The consuming side, owned by the exporter's task.
pub struct QueueReceiver {
    shared: Arc<Shared>,
}

impl QueueReceiver {
    /// The next batch, or `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Arc<Batch>> {
        loop {
            let mut notified = pin!(self.shared.not_empty.notified());
            notified.as_mut().enable();
            {
                let mut st = self.shared.lock();
                if let Some(b) = st.items.pop_front() {
                    st.queued_items -= b.item_count();
                    self.shared.publish_size(&st);
                    drop(st);
                    self.shared.not_full.notify_one();
                    return Some(b);
                }
                if st.senders == 0 {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Items still waiting (for the shutdown report).
    pub fn pending_items(&self) -> usize {
        self.shared.lock().queued_items
    }

    /// A handle that reports the queue's backlog after the receiver is moved
    /// into its task.
    pub fn probe(&self) -> QueueProbe {
        QueueProbe { shared: self.shared.clone() }
    }
}

impl Drop for QueueReceiver {
    fn drop(&mut self) {
        self.shared.lock().receiver_alive = false;
        self.shared.not_full.notify_waiters();
    }
}

/// Reads a queue's backlog without owning either end.
#[derive(Clone)]
pub struct QueueProbe {
    shared: Arc<Shared>,
}

impl QueueProbe {
    /// Items waiting in the queue now.
    pub fn pending_items(&self) -> usize {
        self.shared.lock().queued_items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::testdata;
    use std::time::Duration;

    fn batch(n: usize) -> Arc<Batch> {
        Arc::new(Batch::Traces(testdata::spans(1, n)))
    }

    #[tokio::test]
    async fn delivers_in_order_and_ends_when_senders_drop() {
        let stats = Arc::new(ComponentStats::default());
        let (tx, mut rx) = queue(4, WhenFull::Block, stats.clone());
        let tx2 = tx.clone();
        tx.push(batch(1)).await.unwrap();
        tx2.push(batch(2)).await.unwrap();
        assert_eq!(tx.len(), (2, 3));
        assert_eq!(stats.snapshot().queue_size, 2);
        drop(tx);
        drop(tx2);
        assert_eq!(rx.recv().await.unwrap().item_count(), 1);
        assert_eq!(rx.recv().await.unwrap().item_count(), 2);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn drop_oldest_discards_and_counts() {
        let stats = Arc::new(ComponentStats::default());
        let (tx, mut rx) = queue(2, WhenFull::DropOldest, stats.clone());
        for n in 1..=4 {
            tx.push(batch(n)).await.unwrap();
        }
        assert_eq!(stats.snapshot().dropped, 3);
        assert_eq!(rx.recv().await.unwrap().item_count(), 3);
        assert_eq!(rx.recv().await.unwrap().item_count(), 4);
    }

    #[tokio::test]
    async fn block_waits_for_room() {
        let (tx, mut rx) = queue(1, WhenFull::Block, Arc::new(ComponentStats::default()));
        tx.push(batch(1)).await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(30), tx.push(batch(2))).await;
        assert!(blocked.is_err(), "push into a full blocking queue must wait");
        let pusher = tokio::spawn(async move { tx.push(batch(3)).await.is_ok() });
        assert_eq!(rx.recv().await.unwrap().item_count(), 1);
        assert!(pusher.await.unwrap());
        assert_eq!(rx.recv().await.unwrap().item_count(), 3);
    }

    #[tokio::test]
    async fn push_fails_once_the_receiver_is_gone() {
        let (tx, rx) = queue(1, WhenFull::Block, Arc::new(ComponentStats::default()));
        tx.push(batch(1)).await.unwrap();
        let waiting = tokio::spawn(async move { tx.push(batch(2)).await.is_err() });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(rx);
        assert!(waiting.await.unwrap());
    }
}
