//! The fan-out: every connected client, each with its own bounded queue.
//!
//! A message is numbered and serialized once, under the hub's lock, and the
//! same bytes are pushed into the queue of every client whose subscription
//! wants it. Pushing never waits: a full queue drops its oldest message and
//! remembers how many it dropped, and the client's task sends a `lagged`
//! notice before the next message it delivers. The pipeline therefore never
//! waits on a browser, and one slow browser costs the others nothing.
//!
//! No sockets here: client tasks (in `server`) drain the queues.

use super::messages::{Outgoing, Stream, Subscription, frame, rfc3339};
use axum::extract::ws::Utf8Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a client's task takes out of its queue in one go.
pub struct Drained {
    /// `(dropped, seq of the last dropped message)` since the last drain.
    pub lagged: Option<(u64, u64)>,
    pub messages: Vec<Utf8Bytes>,
}

struct Queue {
    items: VecDeque<(u64, Utf8Bytes)>,
    dropped: u64,
    last_dropped_seq: u64,
}

/// One connected client.
pub struct Client {
    pub id: u64,
    capacity: usize,
    queue: Mutex<Queue>,
    /// Woken when the queue gains a message.
    pub ready: Notify,
    dropped_total: AtomicU64,
    delivered_total: AtomicU64,
}

impl Client {
    fn push(&self, seq: u64, bytes: Utf8Bytes) {
        {
            let mut q = lock(&self.queue);
            if q.items.len() >= self.capacity
                && let Some((old, _)) = q.items.pop_front()
            {
                q.dropped += 1;
                q.last_dropped_seq = old;
                self.dropped_total.fetch_add(1, Ordering::Relaxed);
            }
            q.items.push_back((seq, bytes));
        }
        self.ready.notify_one();
    }

    /// Takes up to `max` queued messages and the lag since the last drain.
    pub fn drain(&self, max: usize) -> Drained {
        let mut q = lock(&self.queue);
        let lagged = (q.dropped > 0).then_some((q.dropped, q.last_dropped_seq));
        q.dropped = 0;
        let n = q.items.len().min(max);
        let messages: Vec<Utf8Bytes> = q.items.drain(..n).map(|(_, b)| b).collect();
        if !q.items.is_empty() {
            // More is waiting: make sure the task comes back for it.
            self.ready.notify_one();
        }
        self.delivered_total.fetch_add(messages.len() as u64, Ordering::Relaxed);
        Drained { lagged, messages }
    }

    /// Messages dropped from this client's queue since it connected.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Messages handed to this client's task since it connected.
    pub fn delivered_total(&self) -> u64 {
        self.delivered_total.load(Ordering::Relaxed)
    }

    /// Messages waiting now.
    pub fn queued(&self) -> usize {
        lock(&self.queue).items.len()
    }
}

/// The hub is full.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

struct State {
    seq: u64,
    next_id: u64,
    clients: Vec<(Arc<Client>, Subscription)>,
    /// The latest `system_metrics`, sent to a client as soon as it connects.
    latest_system: Option<(u64, Utf8Bytes)>,
}

/// Every client and the message counter.
pub struct Hub {
    state: Mutex<State>,
    max_clients: usize,
    queue_size: usize,
    /// Clients subscribed to each stream, read without the lock on the hot path.
    subscribers: [AtomicUsize; Stream::ALL.len()],
    /// Cancelled on shutdown: client tasks send a close frame and end.
    pub closing: CancellationToken,
    /// Woken when a client leaves (shutdown waits on it).
    pub left: Notify,
}

impl Hub {
    pub fn new(max_clients: usize, queue_size: usize) -> Self {
        Hub {
            state: Mutex::new(State { seq: 0, next_id: 1, clients: Vec::new(), latest_system: None }),
            max_clients,
            queue_size: queue_size.max(1),
            subscribers: Default::default(),
            closing: CancellationToken::new(),
            left: Notify::new(),
        }
    }

    /// Whether any client wants `stream`.
    pub fn wants(&self, stream: Stream) -> bool {
        self.subscribers[stream.index()].load(Ordering::Relaxed) > 0
    }

    pub fn client_count(&self) -> usize {
        lock(&self.state).clients.len()
    }

    fn count(&self, sub: &Subscription, delta: isize) {
        for s in &sub.streams {
            let c = &self.subscribers[s.index()];
            if delta > 0 {
                c.fetch_add(1, Ordering::Relaxed);
            } else {
                c.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Adds a client with the default subscription, its queue already holding
    /// the latest `system_metrics`.
    pub fn register(&self) -> Result<Arc<Client>, Full> {
        let mut st = lock(&self.state);
        if st.clients.len() >= self.max_clients {
            return Err(Full);
        }
        let client = Arc::new(Client {
            id: st.next_id,
            capacity: self.queue_size,
            queue: Mutex::new(Queue { items: VecDeque::new(), dropped: 0, last_dropped_seq: 0 }),
            ready: Notify::new(),
            dropped_total: AtomicU64::new(0),
            delivered_total: AtomicU64::new(0),
        });
        st.next_id += 1;
        if let Some((seq, bytes)) = &st.latest_system {
            client.push(*seq, bytes.clone());
        }
        let sub = Subscription::default();
        self.count(&sub, 1);
        st.clients.push((client.clone(), sub));
        Ok(client)
    }

    pub fn unregister(&self, id: u64) {
        let mut st = lock(&self.state);
        if let Some(i) = st.clients.iter().position(|(c, _)| c.id == id) {
            let (_, sub) = st.clients.swap_remove(i);
            self.count(&sub, -1);
        }
        drop(st);
        self.left.notify_waiters();
    }

    /// Replaces a client's subscription and queues the `subscribed` reply.
    pub fn subscribe(&self, id: u64, sub: Subscription, now: u64) {
        let mut st = lock(&self.state);
        st.seq += 1;
        let seq = st.seq;
        let reply = frame("subscribed", &rfc3339(now), seq, &sub.ack_body());
        let Some(i) = st.clients.iter().position(|(c, _)| c.id == id) else { return };
        self.count(&st.clients[i].1, -1);
        self.count(&sub, 1);
        st.clients[i].1 = sub;
        st.clients[i].0.push(seq, reply.into());
    }

    /// Queues an `invalid_request` reply for one client.
    pub fn reject(&self, id: u64, message: &str, now: u64) {
        let mut st = lock(&self.state);
        st.seq += 1;
        let seq = st.seq;
        let body = serde_json::json!({ "message": message }).to_string();
        if let Some((client, _)) = st.clients.iter().find(|(c, _)| c.id == id) {
            client.push(seq, frame("invalid_request", &rfc3339(now), seq, &body).into());
        }
    }

    /// Numbers, serializes and queues each message for every client that
    /// wants it. Never waits on a client.
    pub fn broadcast(&self, messages: Vec<Outgoing>) {
        if messages.is_empty() {
            return;
        }
        let mut st = lock(&self.state);
        for m in messages {
            st.seq += 1;
            let seq = st.seq;
            let bytes: Utf8Bytes = frame(m.kind, &m.timestamp, seq, &m.body).into();
            if m.stream == Stream::SystemMetrics {
                st.latest_system = Some((seq, bytes.clone()));
            }
            for (client, sub) in &st.clients {
                if sub.wants(m.stream, m.keys.as_ref()) {
                    client.push(seq, bytes.clone());
                }
            }
        }
    }

    /// The `lagged` notice a client gets after losing `dropped` messages, the
    /// last of which had `seq` (so sequence numbers stay increasing).
    pub fn lagged_notice(dropped: u64, seq: u64, now: u64) -> Utf8Bytes {
        frame("lagged", &rfc3339(now), seq, &format!("{{\"dropped\":{dropped}}}")).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::websocket::messages::{Filter, Keys, parse_request};

    fn msg(stream: Stream, body: &str) -> Outgoing {
        Outgoing { stream, kind: "system_metrics", timestamp: "t".into(), body: body.into(), keys: None }
    }

    fn seqs(d: &Drained) -> Vec<u64> {
        d.messages
            .iter()
            .map(|m| serde_json::from_str::<serde_json::Value>(m.as_str()).unwrap()["seq"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_reports_the_lag() {
        let hub = Hub::new(10, 3);
        let c = hub.register().unwrap();
        hub.broadcast((0..5).map(|i| msg(Stream::SystemMetrics, &format!("{{\"i\":{i}}}"))).collect());
        let d = c.drain(100);
        assert_eq!(seqs(&d), vec![3, 4, 5]);
        assert_eq!(d.lagged, Some((2, 2)), "two dropped, the last of them seq 2");
        assert_eq!(c.dropped_total(), 2);
        let d = c.drain(100);
        assert!(d.lagged.is_none() && d.messages.is_empty());
        let notice: serde_json::Value = serde_json::from_str(Hub::lagged_notice(2, 2, 0).as_str()).unwrap();
        assert_eq!(
            (&notice["type"], &notice["dropped"], &notice["seq"]),
            (&"lagged".into(), &2.into(), &2.into())
        );
    }

    #[test]
    fn a_new_client_gets_the_latest_system_metrics_first_and_the_bytes_are_shared() {
        let hub = Hub::new(10, 8);
        let a = hub.register().unwrap();
        hub.broadcast(vec![msg(Stream::SystemMetrics, "{\"n\":1}"), msg(Stream::SystemMetrics, "{\"n\":2}")]);
        let b = hub.register().unwrap();
        let (da, db) = (a.drain(10), b.drain(10));
        assert_eq!(seqs(&da), vec![1, 2]);
        assert_eq!(seqs(&db), vec![2], "the latest snapshot only");
        assert_eq!(
            da.messages[1].as_ptr(),
            db.messages[0].as_ptr(),
            "one serialization shared by every client"
        );
    }

    #[test]
    fn subscriptions_and_filters_select_messages() {
        let hub = Hub::new(10, 64);
        let a = hub.register().unwrap();
        let b = hub.register().unwrap();
        assert!(!hub.wants(Stream::Spans));
        let sub =
            parse_request(r#"{"type":"subscribe","streams":["spans"],"filter":{"service":"chat"}}"#).unwrap();
        hub.subscribe(b.id, sub, 0);
        assert!(hub.wants(Stream::Spans));
        let span = |service: &str| Outgoing {
            stream: Stream::Spans,
            kind: "span",
            timestamp: "t".into(),
            body: "{}".into(),
            keys: Some(Keys { service: service.into(), ..Default::default() }),
        };
        hub.broadcast(vec![span("chat"), span("worker"), msg(Stream::SystemMetrics, "{}")]);
        let (da, db) = (a.drain(10), b.drain(10));
        assert_eq!(seqs(&da), vec![4], "a keeps the default: system_metrics only");
        assert_eq!(seqs(&db), vec![1, 2], "b: the ack, then the matching span; it left system_metrics");
        assert!(db.messages[0].contains("\"type\":\"subscribed\""));
        hub.unregister(b.id);
        assert!(!hub.wants(Stream::Spans));
        assert_eq!(hub.client_count(), 1);
        hub.reject(a.id, "nope", 0);
        assert!(a.drain(10).messages[0].contains("invalid_request"));
        let _ = Filter::default();
    }

    #[test]
    fn max_clients_is_enforced() {
        let hub = Hub::new(2, 1);
        let a = hub.register().unwrap();
        let _b = hub.register().unwrap();
        assert!(hub.register().is_err());
        hub.unregister(a.id);
        assert!(hub.register().is_ok());
    }
}
