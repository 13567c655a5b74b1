//! `tail_sampling`: keeps or drops whole traces after seeing them, with the
//! OpenTelemetry Collector's `tailsamplingprocessor` config and decisions.
//!
//! - [`config`]: the config, located errors and all.
//! - [`policy`]: each policy's decision about a trace, and how decisions
//!   combine (a pure function but for the rate limits' budgets).
//! - This module is the processor: it holds each trace's spans from its first
//!   span until `decision_wait` later, then asks the policies once and
//!   releases the whole trace or drops it. Spans that arrive after the
//!   decision follow it while it is remembered (a decision cache, or the
//!   decided trace's slot among `num_traces`); after that they start a new
//!   trace. At `num_traces` traces the oldest is decided early with what it
//!   has (the Collector drops it undecided); `flush` decides every trace still
//!   held.
//!
//! Spans are moved, not copied: each incoming resource and scope is put
//! behind one `Arc` that its held spans share, and released spans are
//! regrouped under copies of them, one per resource and scope per output
//! batch. Trace ids are hashed once per run of spans of the same trace.

pub mod config;
pub mod policy;

pub use config::TailSamplingConfig;
use magpie_core::proto::common::v1::InstrumentationScope;
use magpie_core::proto::resource::v1::Resource;
use magpie_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use magpie_core::{Batch, ComponentId, Processor};
use policy::{Policy, TraceView};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

impl TailSamplingConfig {
    /// Everything is checked while deserializing, where errors have a place.
    pub fn problems(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Spans by outcome since the processor started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Spans released because their trace was sampled when decided.
    pub sampled: u64,
    /// Spans dropped because their trace was not sampled when decided.
    pub not_sampled: u64,
    /// Spans that arrived after their trace was sampled and were passed on.
    pub late_sampled: u64,
    /// Spans that arrived after their trace was not sampled and were dropped.
    pub late_dropped: u64,
    /// Of `sampled` and `not_sampled`, spans of traces decided before
    /// `decision_wait` because `num_traces` traces were held.
    pub decided_early: u64,
}

/// The resource of an incoming `ResourceSpans`, shared by its held spans.
struct ResourcePart {
    resource: Option<Resource>,
    schema_url: String,
}

/// The scope of an incoming `ScopeSpans` and its resource.
struct Scoped {
    resource: Arc<ResourcePart>,
    scope: Option<InstrumentationScope>,
    schema_url: String,
}

/// A span waiting for its trace's decision.
struct Held {
    scoped: Arc<Scoped>,
    span: Span,
}

enum State {
    /// Spans held until the decision, and how many arrived.
    Pending(Vec<Held>),
    /// Decided, the spans gone; kept while its slot lasts, so late spans
    /// follow the decision without a decision cache (as in the Collector).
    Decided(bool),
}

struct Entry {
    key: u128,
    seq: u64,
    spans: i64,
    state: State,
}

/// Where an incoming span goes.
#[derive(Clone, Copy)]
enum Route {
    Hold(u32),
    Late(bool),
}

/// The processor; one instance per pipeline.
pub struct TailSamplingProcessor {
    id: String,
    wait: Duration,
    num_traces: usize,
    sample_on_first_match: bool,
    policies: Vec<Policy>,
    /// Traces held or remembered, by trace id, into `slots`.
    index: HashMap<u128, u32, IdHash>,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    /// Every entry in arrival order, `(slot, seq, arrival)`: the front is the
    /// oldest (evicted first); from `cursor` on, the traces still waiting
    /// for their deadline. Items of removed entries are skipped and dropped.
    order: VecDeque<(u32, u64, Instant)>,
    cursor: usize,
    next_seq: u64,
    sampled_cache: Lru,
    not_sampled_cache: Lru,
    counts: Counts,
    reported: Counts,
    /// Traces each policy decided (sampled, or dropped for a `drop` policy).
    by_policy: Vec<u64>,
}

impl TailSamplingProcessor {
    pub fn new(config: &TailSamplingConfig, id: &ComponentId) -> Self {
        Self::with_epoch(config, id, Instant::now())
    }

    /// `epoch` is where the composite policies' seconds start.
    pub fn with_epoch(config: &TailSamplingConfig, id: &ComponentId, epoch: Instant) -> Self {
        let mut policies: Vec<Policy> = config.policies.iter().map(|p| Policy::build(p, epoch)).collect();
        // As the Collector: drop policies first, their decision wins.
        policies.sort_by_key(|p| !p.is_drop);
        let num_traces = usize::try_from(config.num_traces).unwrap_or(usize::MAX);
        let expected =
            config.expected_new_traces_per_sec.saturating_mul(config.decision_wait.as_secs().max(1));
        let capacity = usize::try_from(expected).unwrap_or(usize::MAX).min(num_traces).min(1 << 20);
        let hash = IdHash::new();
        TailSamplingProcessor {
            id: id.to_string(),
            wait: config.decision_wait,
            num_traces,
            sample_on_first_match: config.sample_on_first_match,
            by_policy: vec![0; policies.len()],
            policies,
            index: HashMap::with_capacity_and_hasher(capacity, hash.clone()),
            slots: Vec::with_capacity(capacity),
            free: Vec::new(),
            order: VecDeque::with_capacity(capacity),
            cursor: 0,
            next_seq: 0,
            sampled_cache: Lru::new(config.decision_cache.sampled_cache_size, hash.clone()),
            not_sampled_cache: Lru::new(config.decision_cache.non_sampled_cache_size, hash),
            counts: Counts::default(),
            reported: Counts::default(),
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Traces held and waiting for a decision.
    pub fn pending(&self) -> usize {
        self.slots.iter().flatten().filter(|e| matches!(e.state, State::Pending(_))).count()
    }

    /// [`Processor::process`] at `now`.
    pub fn process_at(&mut self, batch: Batch, now: Instant, out: &mut Vec<Batch>) {
        let resources = match batch {
            Batch::Traces(r) => r,
            // Not a signal this processor takes; passed on.
            other => return out.push(other),
        };
        let mut released = Vec::new();
        for rs in resources {
            let part = Arc::new(ResourcePart { resource: rs.resource, schema_url: rs.schema_url });
            for ss in rs.scope_spans {
                let scoped =
                    Arc::new(Scoped { resource: part.clone(), scope: ss.scope, schema_url: ss.schema_url });
                let mut last: Option<(u128, Route)> = None;
                for span in ss.spans {
                    let key = trace_key(&span.trace_id);
                    let route = match last {
                        Some((k, r)) if k == key => r,
                        _ => self.route(key, now, &mut released),
                    };
                    last = Some((key, route));
                    match route {
                        Route::Hold(slot) => {
                            if let Some(Entry { spans, state: State::Pending(held), .. }) =
                                self.slots[slot as usize].as_mut()
                            {
                                *spans += 1;
                                held.push(Held { scoped: scoped.clone(), span });
                            }
                        }
                        Route::Late(true) => {
                            self.counts.late_sampled += 1;
                            released.push(Held { scoped: scoped.clone(), span });
                        }
                        Route::Late(false) => self.counts.late_dropped += 1,
                    }
                }
            }
        }
        self.settle();
        if !released.is_empty() {
            out.push(Batch::Traces(regroup(released)));
        }
    }

    /// Where a span of trace `key` goes; a new trace gets a slot, deciding
    /// the oldest trace early if `num_traces` are held.
    fn route(&mut self, key: u128, now: Instant, released: &mut Vec<Held>) -> Route {
        if self.sampled_cache.get(key) {
            return Route::Late(true);
        }
        if self.not_sampled_cache.get(key) {
            return Route::Late(false);
        }
        if let Some(&slot) = self.index.get(&key) {
            return match self.slots[slot as usize].as_ref().map(|e| &e.state) {
                Some(State::Decided(sampled)) => Route::Late(*sampled),
                _ => Route::Hold(slot),
            };
        }
        while self.index.len() >= self.num_traces {
            self.evict_oldest(now, released);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry { key, seq, spans: 0, state: State::Pending(Vec::new()) };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(entry);
                s
            }
            None => {
                self.slots.push(Some(entry));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.index.insert(key, slot);
        self.order.push_back((slot, seq, now));
        Route::Hold(slot)
    }

    fn live(&self, slot: u32, seq: u64) -> Option<&Entry> {
        self.slots[slot as usize].as_ref().filter(|e| e.seq == seq)
    }

    /// Removes the oldest entry: forgotten if decided, decided now if not.
    fn evict_oldest(&mut self, now: Instant, released: &mut Vec<Held>) {
        while let Some((slot, seq, _)) = self.order.pop_front() {
            self.cursor = self.cursor.saturating_sub(1);
            let Some(entry) = self.live(slot, seq) else { continue };
            if matches!(entry.state, State::Pending(_)) {
                self.decide(slot, now, true, released);
            }
            self.remove(slot);
            return;
        }
    }

    fn remove(&mut self, slot: u32) {
        if let Some(e) = self.slots[slot as usize].take() {
            self.index.remove(&e.key);
            self.free.push(slot);
        }
    }

    /// Decides the pending trace in `slot`: sampled spans go to `released`;
    /// the decision is cached (and the slot freed) or kept in the slot.
    fn decide(&mut self, slot: u32, now: Instant, early: bool, released: &mut Vec<Held>) {
        let Some(entry) = self.slots[slot as usize].as_mut() else { return };
        let State::Pending(held) = std::mem::replace(&mut entry.state, State::Decided(false)) else {
            return;
        };
        let view = View { spans: &held, count: entry.spans, key: entry.key };
        let (sampled, by) = policy::decide(&mut self.policies, &view, now, self.sample_on_first_match);
        let (key, spans) = (entry.key, held.len() as u64);
        entry.state = State::Decided(sampled);
        if let Some(i) = by {
            self.by_policy[i] += 1;
        }
        tracing::debug!(
            component = %self.id,
            trace_id = %magpie_core::otlp::hex(&key.to_be_bytes()),
            sampled,
            policy = by.map_or("", |i| self.policies[i].name.as_str()),
            spans,
            early,
            "tail_sampling decided a trace"
        );
        if sampled {
            self.counts.sampled += spans;
            released.extend(held);
        } else {
            self.counts.not_sampled += spans;
        }
        if early {
            self.counts.decided_early += spans;
        }
        let cache = if sampled { &mut self.sampled_cache } else { &mut self.not_sampled_cache };
        if cache.capacity() > 0 {
            cache.put(key);
            self.remove(slot);
        }
    }

    /// Restores the invariants after a change: the front of `order` is a
    /// live entry, and `cursor` points at a live pending one (or the end).
    fn settle(&mut self) {
        while let Some(&(slot, seq, _)) = self.order.front() {
            if self.live(slot, seq).is_some() {
                break;
            }
            self.order.pop_front();
            self.cursor = self.cursor.saturating_sub(1);
        }
        while let Some(&(slot, seq, _)) = self.order.get(self.cursor) {
            if self.live(slot, seq).is_some_and(|e| matches!(e.state, State::Pending(_))) {
                break;
            }
            self.cursor += 1;
        }
        // Items of entries freed behind a remembered decision wait for that
        // decision's eviction; drop them when they pile up.
        if self.order.len() > 2 * self.index.len() + 1024 {
            let (mut kept, mut cursor) = (VecDeque::with_capacity(self.index.len()), 0);
            for (i, item) in self.order.drain(..).enumerate() {
                let live = self.slots[item.0 as usize].as_ref().is_some_and(|e| e.seq == item.1);
                if live {
                    if i < self.cursor {
                        cursor += 1;
                    }
                    kept.push_back(item);
                }
            }
            self.order = kept;
            self.cursor = cursor;
        }
    }

    fn release(released: Vec<Held>, out: &mut Vec<Batch>) {
        if !released.is_empty() {
            out.push(Batch::Traces(regroup(released)));
        }
    }
}

impl Processor for TailSamplingProcessor {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        self.process_at(batch, Instant::now(), out);
    }

    fn deadline(&self) -> Option<Instant> {
        self.order.get(self.cursor).map(|(_, _, arrival)| *arrival + self.wait)
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<Batch>) {
        let mut released = Vec::new();
        while let Some(&(slot, seq, arrival)) = self.order.get(self.cursor) {
            if arrival + self.wait > now {
                break;
            }
            if self.live(slot, seq).is_some_and(|e| matches!(e.state, State::Pending(_))) {
                self.decide(slot, now, false, &mut released);
            }
            self.cursor += 1;
        }
        self.settle();
        Self::release(released, out);
    }

    fn flush(&mut self, out: &mut Vec<Batch>) {
        let now = Instant::now();
        let mut released = Vec::new();
        let mut traces = 0u64;
        let items: Vec<(u32, u64)> = self.order.iter().map(|(slot, seq, _)| (*slot, *seq)).collect();
        for (slot, seq) in items {
            if self.live(slot, seq).is_some_and(|e| matches!(e.state, State::Pending(_))) {
                self.decide(slot, now, false, &mut released);
                traces += 1;
            }
        }
        self.cursor = self.order.len();
        self.settle();
        Self::release(released, out);
        let Counts { sampled, not_sampled, late_sampled, late_dropped, decided_early } = self.counts;
        if sampled + not_sampled + late_sampled + late_dropped > 0 {
            tracing::info!(component = %self.id, sampled, not_sampled, late_sampled, late_dropped, decided_early, decided_at_shutdown = traces, "tail_sampling spans since start");
            for (p, n) in self.policies.iter().zip(&self.by_policy) {
                tracing::debug!(component = %self.id, policy = %p.name, traces = n, "tail_sampling traces decided by policy");
            }
        }
    }

    fn take_outcomes(&mut self, report: &mut dyn FnMut(&'static str, u64)) {
        let (now, before) = (self.counts, self.reported);
        report("sampled", now.sampled - before.sampled);
        report("not_sampled", now.not_sampled - before.not_sampled);
        report("late_sampled", now.late_sampled - before.late_sampled);
        report("late_dropped", now.late_dropped - before.late_dropped);
        report("decided_early", now.decided_early - before.decided_early);
        self.reported = now;
    }
}

/// A held trace as the policies see it.
struct View<'a> {
    spans: &'a [Held],
    count: i64,
    key: u128,
}

impl TraceView for View<'_> {
    fn for_each_span(&self, f: &mut dyn FnMut(Option<&Resource>, usize, &Span) -> bool) -> bool {
        self.spans.iter().all(|h| {
            let r = &h.scoped.resource;
            f(r.resource.as_ref(), Arc::as_ptr(r) as usize, &h.span)
        })
    }

    fn span_count(&self) -> i64 {
        self.count
    }

    fn trace_id(&self) -> [u8; 16] {
        self.key.to_be_bytes()
    }
}

/// The trace id as a number (ids of another length than 16 bytes, which
/// OTLP forbids, are cut or padded with zeros).
fn trace_key(id: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = id.len().min(16);
    b[..n].copy_from_slice(&id[..n]);
    u128::from_be_bytes(b)
}

/// Puts released spans back under their resources and scopes: one
/// `ResourceSpans` per incoming resource and one `ScopeSpans` per incoming
/// scope, whatever the traces they came with.
fn regroup(held: Vec<Held>) -> Vec<ResourceSpans> {
    let mut out: Vec<ResourceSpans> = Vec::new();
    let mut resources: HashMap<*const ResourcePart, usize> = HashMap::new();
    let mut scopes: HashMap<*const Scoped, (usize, usize)> = HashMap::new();
    // The keys' Arcs, alive until the end so no address is reused.
    let mut alive: Vec<Arc<Scoped>> = Vec::new();
    for Held { scoped, span } in held {
        let (r, s) = match scopes.get(&Arc::as_ptr(&scoped)) {
            Some(at) => *at,
            None => {
                let part = &scoped.resource;
                let r = *resources.entry(Arc::as_ptr(part)).or_insert_with(|| {
                    out.push(ResourceSpans {
                        resource: part.resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: part.schema_url.clone(),
                    });
                    out.len() - 1
                });
                out[r].scope_spans.push(ScopeSpans {
                    scope: scoped.scope.clone(),
                    spans: Vec::new(),
                    schema_url: scoped.schema_url.clone(),
                });
                let at = (r, out[r].scope_spans.len() - 1);
                scopes.insert(Arc::as_ptr(&scoped), at);
                alive.push(scoped);
                at
            }
        };
        out[r].scope_spans[s].spans.push(span);
    }
    out
}

/// A hash for trace ids: they are random already, so a seeded mix of their
/// two halves is enough (and much cheaper than SipHash).
#[derive(Clone)]
struct IdHash(u64);

impl IdHash {
    fn new() -> IdHash {
        IdHash(RandomState::new().hash_one(0x7461_696c_u64))
    }
}

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0)
    }
}

struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u128(&mut self, v: u128) {
        let mut x = self.0 ^ (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        self.0 = x ^ (x >> 33);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

const NIL: u32 = u32::MAX;

/// A least-recently-used set of trace ids (the decision caches); reading an
/// id makes it the most recent, as the Collector's LRU does.
struct Lru {
    capacity: usize,
    map: HashMap<u128, u32, IdHash>,
    nodes: Vec<(u128, u32, u32)>,
    head: u32,
    tail: u32,
}

impl Lru {
    fn new(capacity: usize, hash: IdHash) -> Lru {
        Lru {
            capacity: capacity.min(u32::MAX as usize - 1),
            map: HashMap::with_hasher(hash),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn get(&mut self, key: u128) -> bool {
        if self.capacity == 0 {
            return false;
        }
        match self.map.get(&key) {
            Some(&i) => {
                self.unlink(i);
                self.push_front(i);
                true
            }
            None => false,
        }
    }

    fn put(&mut self, key: u128) {
        if self.capacity == 0 || self.get(key) {
            return;
        }
        let i = if self.nodes.len() < self.capacity {
            self.nodes.push((key, NIL, NIL));
            (self.nodes.len() - 1) as u32
        } else {
            let t = self.tail;
            self.unlink(t);
            self.map.remove(&self.nodes[t as usize].0);
            self.nodes[t as usize].0 = key;
            t
        };
        self.push_front(i);
        self.map.insert(key, i);
    }

    fn unlink(&mut self, i: u32) {
        let (_, prev, next) = self.nodes[i as usize];
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].2 = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].1 = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        self.nodes[i as usize].1 = NIL;
        self.nodes[i as usize].2 = self.head;
        match self.head {
            NIL => self.tail = i,
            h => self.nodes[h as usize].1 = i,
        }
        self.head = i;
    }
}

#[cfg(test)]
mod tests;
