//! The policies: what each one decides about a whole trace, and how their
//! decisions combine, as in the Collector's `tailsamplingprocessor`
//! (`internal/sampling/*.go` and `makeDecision` in `processor.go`).
//!
//! A policy sees a [`TraceView`]: the spans of one trace in the order they
//! arrived, each with its resource and scope. Attribute policies look at the
//! resource's attributes and each span's (not the scope's). Evaluation is
//! pure except for `rate_limiting` and `composite`, which keep a budget and
//! are told the time.

use super::config::{
    CompositeConfig, LatencyConfig, NumericAttributeConfig, PolicyConfig, PolicyKind, StatusCodeName,
    StringAttributeConfig,
};
use crate::tracestate;
use magpie_core::proto::common::v1::{KeyValue, any_value};
use magpie_core::proto::resource::v1::Resource;
use magpie_core::proto::trace::v1::Span;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// One policy's answer about one trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Sampled,
    NotSampled,
    /// A `drop` policy matched: the trace is not sampled, whatever the others say.
    Dropped,
}

/// The spans of one trace, with what they need of their resource.
pub trait TraceView {
    /// Spans in arrival order, each with its resource (`None` when it has none).
    fn for_each_span(&self, f: &mut dyn FnMut(Option<&Resource>, usize, &Span) -> bool) -> bool;
    /// Spans received for the trace.
    fn span_count(&self) -> i64;
    /// The trace id's 16 bytes.
    fn trace_id(&self) -> [u8; 16];
}

/// A built policy: its name and evaluator.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub evaluator: Evaluator,
    pub is_drop: bool,
}

#[derive(Debug)]
pub enum Evaluator {
    AlwaysSample,
    Latency(LatencyConfig),
    Numeric(NumericAttributeConfig),
    Probabilistic { salt: Vec<u8>, threshold: u64 },
    StatusCode([bool; 3]),
    String(StringMatcher),
    Boolean { key: String, value: bool, invert: bool },
    RateLimiting(TokenBucket),
    SpanCount { min: i32, max: i32 },
    TraceState { key: String, values: HashSet<String> },
    And(Vec<Evaluator>),
    Drop(Vec<Evaluator>),
    Composite(Composite),
}

impl Policy {
    pub fn build<const L: u8>(config: &PolicyConfig<L>, epoch: Instant) -> Policy {
        Policy {
            name: config.name.clone(),
            evaluator: Evaluator::build(&config.kind, epoch),
            is_drop: matches!(config.kind, PolicyKind::Drop(_)),
        }
    }
}

/// The Collector's salt when `hash_salt` is empty.
pub const DEFAULT_HASH_SALT: &str = "default-hash-seed";

impl Evaluator {
    pub fn build(kind: &PolicyKind, epoch: Instant) -> Evaluator {
        match kind {
            PolicyKind::AlwaysSample => Evaluator::AlwaysSample,
            PolicyKind::Latency(c) => Evaluator::Latency(*c),
            PolicyKind::NumericAttribute(c) => Evaluator::Numeric(c.clone()),
            PolicyKind::Probabilistic(c) => Evaluator::Probabilistic {
                salt: if c.hash_salt.is_empty() { DEFAULT_HASH_SALT } else { &c.hash_salt }
                    .as_bytes()
                    .to_vec(),
                threshold: threshold(c.sampling_percentage / 100.0),
            },
            PolicyKind::StatusCode(c) => {
                let mut codes = [false; 3];
                for code in &c.status_codes {
                    codes[match code {
                        StatusCodeName::Unset => 0,
                        StatusCodeName::Ok => 1,
                        StatusCodeName::Error => 2,
                    }] = true;
                }
                Evaluator::StatusCode(codes)
            }
            PolicyKind::StringAttribute(c) => Evaluator::String(StringMatcher::new(c)),
            PolicyKind::BooleanAttribute(c) => {
                Evaluator::Boolean { key: c.key.clone(), value: c.value, invert: c.invert_match }
            }
            PolicyKind::RateLimiting(c) => {
                let burst = if c.burst_capacity > 0 {
                    c.burst_capacity
                } else {
                    c.spans_per_second.saturating_mul(2)
                };
                Evaluator::RateLimiting(TokenBucket::new(c.spans_per_second as f64, burst as f64))
            }
            PolicyKind::SpanCount(c) => Evaluator::SpanCount { min: c.min_spans, max: c.max_spans },
            PolicyKind::TraceState(c) => Evaluator::TraceState {
                key: c.key.clone(),
                // As the Collector: an empty value, or one too long for a
                // tracestate member, can never match.
                values: c
                    .values
                    .iter()
                    .filter(|v| !v.is_empty() && c.key.len() + v.len() < 256)
                    .cloned()
                    .collect(),
            },
            PolicyKind::And(subs) => {
                Evaluator::And(subs.iter().map(|p| Evaluator::build(&p.kind, epoch)).collect())
            }
            PolicyKind::Drop(subs) => {
                Evaluator::Drop(subs.iter().map(|p| Evaluator::build(&p.kind, epoch)).collect())
            }
            PolicyKind::Composite(c) => Evaluator::Composite(Composite::new(c, epoch)),
        }
    }

    /// This policy's decision about `trace` at `now`.
    pub fn evaluate(&mut self, trace: &dyn TraceView, now: Instant) -> Decision {
        let yes = |b: bool| if b { Decision::Sampled } else { Decision::NotSampled };
        match self {
            Evaluator::AlwaysSample => Decision::Sampled,
            Evaluator::Latency(c) => yes(latency(trace, c)),
            Evaluator::Numeric(c) => {
                let (lo, hi) = (c.min_value, c.max_value);
                let hit =
                    |attrs: &[KeyValue]| get(attrs, &c.key).is_some_and(|v| (lo..=hi).contains(&as_int(v)));
                yes(any_resource_or_span(trace, &hit, &hit) != c.invert_match)
            }
            Evaluator::Probabilistic { salt, threshold } => {
                yes(fnv1a64(salt, &trace.trace_id()) <= *threshold)
            }
            Evaluator::StatusCode(codes) => yes(!trace.for_each_span(&mut |_, _, span| {
                let code = span.status.as_ref().map_or(0, |s| s.code);
                !usize::try_from(code).ok().and_then(|i| codes.get(i).copied()).unwrap_or(false)
            })),
            Evaluator::String(m) => yes(m.evaluate(trace)),
            Evaluator::Boolean { key, value, invert } => {
                let hit = |attrs: &[KeyValue]| get(attrs, key).is_some_and(|v| as_bool(v) == *value);
                yes(any_resource_or_span(trace, &hit, &hit) != *invert)
            }
            Evaluator::RateLimiting(bucket) => yes(bucket.allow(now, trace.span_count())),
            Evaluator::SpanCount { min, max } => {
                let n = trace.span_count();
                yes(n >= i64::from(*min) && (*max == 0 || n <= i64::from(*max)))
            }
            Evaluator::TraceState { key, values } => yes(!trace.for_each_span(&mut |_, _, span| {
                !tracestate::get(&span.trace_state, key).is_some_and(|v| values.contains(v))
            })),
            // and.go: not sampled as soon as one sub-policy is not.
            Evaluator::And(subs) => {
                for sub in subs {
                    if sub.evaluate(trace, now) == Decision::NotSampled {
                        return Decision::NotSampled;
                    }
                }
                Decision::Sampled
            }
            // drop.go: dropped when every sub-policy samples.
            Evaluator::Drop(subs) => {
                for sub in subs {
                    if sub.evaluate(trace, now) == Decision::NotSampled {
                        return Decision::NotSampled;
                    }
                }
                Decision::Dropped
            }
            Evaluator::Composite(c) => c.evaluate(trace, now),
        }
    }
}

/// Combines the policies' decisions as the Collector's `makeDecision` does:
/// `drop` policies are evaluated first and a `Dropped` stops evaluation and
/// wins; otherwise any `Sampled` samples the trace; with
/// `sample_on_first_match` evaluation stops at the first `Sampled`. (Since
/// the Collector made `invert_match` a plain negation, no decision vetoes
/// another except `drop`.) Returns the decision and the index of the policy
/// that made it, if one did.
pub fn decide(
    policies: &mut [Policy],
    trace: &dyn TraceView,
    now: Instant,
    sample_on_first_match: bool,
) -> (bool, Option<usize>) {
    let mut sampled_by = None;
    for (i, p) in policies.iter_mut().enumerate() {
        match p.evaluator.evaluate(trace, now) {
            Decision::Dropped => return (false, Some(i)),
            Decision::Sampled if sampled_by.is_none() => {
                sampled_by = Some(i);
                if sample_on_first_match {
                    break;
                }
            }
            _ => {}
        }
    }
    (sampled_by.is_some(), sampled_by)
}

/// The first attribute named `key` (pdata's `Map.Get`); a key with no value
/// is present with an empty value.
fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<Option<&'a any_value::Value>> {
    attrs.iter().find(|kv| kv.key == key).map(|kv| kv.value.as_ref().and_then(|v| v.value.as_ref()))
}

/// pdata's `Value.Int()`: the integer, or 0 for any other type.
fn as_int(v: Option<&any_value::Value>) -> i64 {
    match v {
        Some(any_value::Value::IntValue(i)) => *i,
        _ => 0,
    }
}

/// pdata's `Value.Bool()`: the boolean, or false for any other type.
fn as_bool(v: Option<&any_value::Value>) -> bool {
    matches!(v, Some(any_value::Value::BoolValue(true)))
}

/// pdata's `Value.Str()`: the string, or "" for any other type.
fn as_str(v: Option<&any_value::Value>) -> &str {
    match v {
        Some(any_value::Value::StringValue(s)) => s,
        _ => "",
    }
}

/// `hasResourceOrSpanWithCondition`: whether any resource or any span of the
/// trace satisfies its condition. (`invertHasResourceOrSpanWithCondition`,
/// now that inverted decisions are gone, is exactly its negation.)
fn any_resource_or_span(
    trace: &dyn TraceView,
    resource: &dyn Fn(&[KeyValue]) -> bool,
    span: &dyn Fn(&[KeyValue]) -> bool,
) -> bool {
    let mut last: Option<usize> = None;
    !trace.for_each_span(&mut |res, res_id, s| {
        if last != Some(res_id) {
            last = Some(res_id);
            if res.is_some_and(|r| resource(&r.attributes)) {
                return false;
            }
        }
        !span(&s.attributes)
    })
}

/// `latency.go`: the trace's duration so far, earliest start to latest end,
/// in whole milliseconds (truncated, as Go's `Duration.Milliseconds`), checked
/// after each span in arrival order: at least `threshold_ms` when there is
/// no upper bound, else in `(threshold_ms, upper_threshold_ms]`.
fn latency(trace: &dyn TraceView, c: &LatencyConfig) -> bool {
    let (mut min, mut max) = (0u64, 0u64);
    !trace.for_each_span(&mut |_, _, span| {
        if min == 0 || span.start_time_unix_nano < min {
            min = span.start_time_unix_nano;
        }
        if max == 0 || span.end_time_unix_nano > max {
            max = span.end_time_unix_nano;
        }
        let nanos = (i128::from(max) - i128::from(min)).clamp(i128::from(i64::MIN), i128::from(i64::MAX));
        let ms = (nanos / 1_000_000) as i64;
        let hit = if c.upper_threshold_ms == 0 {
            ms >= c.threshold_ms
        } else {
            c.threshold_ms < ms && ms <= c.upper_threshold_ms
        };
        !hit
    })
}

/// FNV-1a, 64 bits, of `salt` then `id` (`hashTraceID` in probabilistic.go).
pub fn fnv1a64(salt: &[u8], id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.iter().chain(id) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `calculateThreshold`: ⌊(2⁶⁴−1) × ratio⌋ as Go's `big.Float` computes it
/// (the product rounded to 64 significant bits, half to even, then
/// truncated), clamped to `0..=u64::MAX`.
pub fn threshold(ratio: f64) -> u64 {
    if ratio.is_nan() || ratio <= 0.0 {
        return 0;
    }
    if ratio >= 1.0 || ratio.is_infinite() {
        return u64::MAX;
    }
    // ratio = m × 2^e exactly, m < 2^53.
    let bits = ratio.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1 << 52) - 1);
    let (m, e) = if exp_bits == 0 { (frac, -1074) } else { (frac | (1 << 52), exp_bits - 1075) };
    let product = u128::from(u64::MAX) * u128::from(m);
    let width = 128 - product.leading_zeros() as i32;
    let (mut mantissa, mut e) = (product, e);
    if width > 64 {
        let shift = (width - 64) as u32;
        let rest = mantissa & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        mantissa >>= shift;
        if rest > half || (rest == half && mantissa & 1 == 1) {
            mantissa += 1;
        }
        e += shift as i32;
    }
    let value = if e >= 0 {
        mantissa.checked_shl(e as u32).unwrap_or(u128::MAX)
    } else if -e >= 128 {
        0
    } else {
        mantissa >> (-e) as u32
    };
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// `string_attribute`: exact values, or regexes with a bounded cache of
/// results (cleared when full) keyed by the attribute's text.
#[derive(Debug)]
pub struct StringMatcher {
    key: String,
    invert: bool,
    exact: HashSet<String>,
    regexes: Vec<regex::Regex>,
    cache: HashMap<String, bool>,
    cache_max: usize,
}

impl StringMatcher {
    fn new(c: &StringAttributeConfig) -> StringMatcher {
        StringMatcher {
            key: c.key.clone(),
            invert: c.invert_match,
            // As the Collector: an empty value never matches exactly.
            exact: if c.enabled_regex_matching {
                HashSet::new()
            } else {
                c.values.iter().filter(|v| !v.is_empty()).cloned().collect()
            },
            regexes: c.regexes.clone(),
            cache: HashMap::new(),
            cache_max: c.cache_max_size,
        }
    }

    fn matches(&mut self, text: &str) -> bool {
        if self.regexes.is_empty() {
            return self.exact.contains(text);
        }
        if let Some(hit) = self.cache.get(text) {
            return *hit;
        }
        let hit = self.regexes.iter().any(|r| r.is_match(text));
        if self.cache.len() >= self.cache_max {
            self.cache.clear();
        }
        self.cache.insert(text.to_string(), hit);
        hit
    }

    /// A resource matches on its attribute's text (even an empty one, as a
    /// regex may match it); a span only on a non-empty text.
    fn evaluate(&mut self, trace: &dyn TraceView) -> bool {
        let key = self.key.clone();
        let mut last: Option<usize> = None;
        let hit = !trace.for_each_span(&mut |res, res_id, span| {
            if last != Some(res_id) {
                last = Some(res_id);
                if let Some(v) = res.and_then(|r| get(&r.attributes, &key))
                    && self.matches(as_str(v))
                {
                    return false;
                }
            }
            match get(&span.attributes, &key).map(as_str) {
                Some(text) if !text.is_empty() => !self.matches(text),
                _ => true,
            }
        });
        hit != self.invert
    }
}

/// `golang.org/x/time/rate`'s limiter as `rate_limiting` uses it: tokens
/// refill continuously at `rate` per second up to `burst`, the bucket starts
/// full, and a trace passes when its span count can be taken whole.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> TokenBucket {
        TokenBucket { rate: rate.max(0.0), burst: burst.max(0.0), tokens: burst.max(0.0), last: None }
    }

    pub fn allow(&mut self, now: Instant, n: i64) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
        let n = n as f64;
        if n <= self.tokens {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// `composite.go`: sub-policies in order; the first that samples decides,
/// if its share of this second's spans (and the total) still has room.
#[derive(Debug)]
pub struct Composite {
    subs: Vec<(Evaluator, i64, i64)>,
    max_total: i64,
    second: u64,
    epoch: Instant,
}

impl Composite {
    fn new(c: &CompositeConfig, epoch: Instant) -> Composite {
        // composite_helper.go: a listed policy with a percent gets that share
        // of the total, one without gets an equal share; an unlisted one none.
        let total = c.max_total_spans_per_second as f64;
        let equal = total / c.composite_sub_policy.len() as f64;
        let share = |name: &str| {
            c.rate_allocation.iter().rev().find(|a| a.policy == name).map_or(0, |a| {
                if a.percent > 0 { (a.percent as f64 / 100.0 * total) as i64 } else { equal as i64 }
            })
        };
        Composite {
            subs: c
                .composite_sub_policy
                .iter()
                .map(|p| (Evaluator::build(&p.kind, epoch), share(&p.name), 0))
                .collect(),
            max_total: c.max_total_spans_per_second,
            second: u64::MAX,
            epoch,
        }
    }

    fn evaluate(&mut self, trace: &dyn TraceView, now: Instant) -> Decision {
        let second = now.saturating_duration_since(self.epoch).as_secs();
        if second != self.second {
            self.second = second;
            for s in &mut self.subs {
                s.2 = 0;
            }
        }
        let spans = trace.span_count();
        for (eval, allocated, used) in &mut self.subs {
            if eval.evaluate(trace, now) == Decision::Sampled {
                let after = *used + spans;
                if after <= *allocated && after <= self.max_total {
                    *used = after;
                    return Decision::Sampled;
                }
                return Decision::NotSampled;
            }
        }
        Decision::NotSampled
    }
}

#[cfg(test)]
mod tests {
    //! Cases lifted from the Collector's own tests are marked with the file
    //! they come from (processor/tailsamplingprocessor/internal/sampling/).
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tail_sampling::config::TailSamplingConfig;
    use magpie_core::config::{Node, from_node};
    use magpie_core::otlp::{kv_bool, kv_double, kv_int, kv_str};
    use magpie_core::proto::trace::v1::{Status, status::StatusCode};
    use std::time::Duration;

    /// A trace for tests: (resource attributes, span) pairs.
    struct T {
        id: [u8; 16],
        spans: Vec<(Option<Resource>, Span)>,
    }

    impl TraceView for T {
        fn for_each_span(&self, f: &mut dyn FnMut(Option<&Resource>, usize, &Span) -> bool) -> bool {
            self.spans.iter().enumerate().all(|(i, (r, s))| f(r.as_ref(), i, s))
        }
        fn span_count(&self) -> i64 {
            self.spans.len() as i64
        }
        fn trace_id(&self) -> [u8; 16] {
            self.id
        }
    }

    fn span(attrs: Vec<KeyValue>) -> Span {
        Span { attributes: attrs, ..Default::default() }
    }

    fn trace(resource: Vec<KeyValue>, spans: Vec<Span>) -> T {
        let r = Resource { attributes: resource, ..Default::default() };
        T { id: [7; 16], spans: spans.into_iter().map(|s| (Some(r.clone()), s)).collect() }
    }

    /// The first policy of a one-policy config.
    fn policy(yaml: &str) -> Evaluator {
        let full = format!("policies:\n  - {}\n", yaml.replace('\n', "\n    "));
        let node = Node::parse(&full, "test.yaml").unwrap();
        let (c, _) = from_node::<TailSamplingConfig>(&node, "processors.tail_sampling")
            .unwrap_or_else(|e| panic!("{e}"));
        Policy::build(&c.policies[0], Instant::now()).evaluator
    }

    fn check(p: &mut Evaluator, t: &T, want: Decision, what: &str) {
        assert_eq!(p.evaluate(t, Instant::now()), want, "{what}");
    }

    use Decision::{Dropped, NotSampled, Sampled};

    #[test]
    fn always_sample() {
        // always_sample_test.go
        check(
            &mut policy("{name: a, type: always_sample}"),
            &trace(vec![], vec![span(vec![])]),
            Sampled,
            "any",
        );
    }

    #[test]
    fn numeric_attribute() {
        // numeric_tag_filter_test.go: the range [math.MinInt32, math.MaxInt32] on resource and span attributes.
        let yaml = format!(
            "{{name: n, type: numeric_attribute, numeric_attribute: {{key: example, min_value: {}, max_value: {}}}}}",
            i32::MIN,
            i32::MAX
        );
        let mut p = policy(&yaml);
        let on_span = |v: i64| trace(vec![], vec![span(vec![kv_int("example", v)])]);
        let on_resource = |v: i64| trace(vec![kv_int("example", v)], vec![span(vec![])]);
        check(&mut p, &on_resource(0), Sampled, "resource attribute in range");
        check(&mut p, &on_span(i64::from(i32::MIN)), Sampled, "span attribute at the lower limit");
        check(&mut p, &on_span(i64::from(i32::MAX)), Sampled, "span attribute at the upper limit");
        check(&mut p, &on_span(i64::from(i32::MIN) - 1), NotSampled, "below the lower limit");
        check(&mut p, &on_span(i64::from(i32::MAX) + 1), NotSampled, "above the upper limit");
        check(&mut p, &trace(vec![], vec![span(vec![kv_int("non_matching", 0)])]), NotSampled, "other key");
        // invert_match: "span attribute with non-matching value with invert_match" is sampled.
        let mut inv = policy(&yaml.replace("}}", ", invert_match: true}}"));
        check(&mut inv, &on_span(i64::from(i32::MAX) + 1), Sampled, "inverted, out of range");
        check(&mut inv, &on_span(0), NotSampled, "inverted, in range");
        check(&mut inv, &trace(vec![], vec![span(vec![])]), Sampled, "inverted, no attribute at all");
        // Only min_value: no upper bound (the Collector's optional bounds).
        let mut min_only =
            policy("{name: n, type: numeric_attribute, numeric_attribute: {key: status, min_value: 400}}");
        check(&mut min_only, &on_span_key("status", 503), Sampled, "only min_value");
        check(&mut min_only, &on_span_key("status", 200), NotSampled, "only min_value, below");
        // pdata's Int() is 0 for a double: it is in a range that holds 0.
        let mut around_zero = policy(
            "{name: n, type: numeric_attribute, numeric_attribute: {key: x, min_value: -1, max_value: 1}}",
        );
        check(
            &mut around_zero,
            &trace(vec![], vec![span(vec![kv_double("x", 99.0)])]),
            Sampled,
            "double reads as 0",
        );
    }

    fn on_span_key(key: &str, v: i64) -> T {
        trace(vec![], vec![span(vec![kv_int(key, v)])])
    }

    #[test]
    fn string_attribute() {
        // string_tag_filter_test.go
        let mut p =
            policy("{name: s, type: string_attribute, string_attribute: {key: example, values: [value]}}");
        check(
            &mut p,
            &trace(vec![kv_str("example", "value")], vec![span(vec![])]),
            Sampled,
            "resource attribute",
        );
        check(
            &mut p,
            &trace(vec![], vec![span(vec![kv_str("example", "value")])]),
            Sampled,
            "span attribute",
        );
        check(
            &mut p,
            &trace(vec![kv_str("non_matching", "value")], vec![span(vec![])]),
            NotSampled,
            "other key",
        );
        check(
            &mut p,
            &trace(vec![], vec![span(vec![kv_str("example", "other")])]),
            NotSampled,
            "other value",
        );
        let mut re = policy(
            "{name: s, type: string_attribute, string_attribute: {key: example, values: ['v[0-9]+.HealthCheck$'], enabled_regex_matching: true}}",
        );
        check(
            &mut re,
            &trace(vec![], vec![span(vec![kv_str("example", "v1.HealthCheck")])]),
            Sampled,
            "regex",
        );
        check(
            &mut re,
            &trace(vec![], vec![span(vec![kv_str("example", "v1.Health")])]),
            NotSampled,
            "regex misses",
        );
        check(
            &mut re,
            &trace(vec![], vec![span(vec![kv_str("example", "v1.HealthCheck")])]),
            Sampled,
            "cached",
        );
        // Unanchored, as Go's MatchString.
        check(
            &mut re,
            &trace(vec![], vec![span(vec![kv_str("example", "x/v12.HealthCheck")])]),
            Sampled,
            "unanchored",
        );
        let mut inv = policy(
            "{name: s, type: string_attribute, string_attribute: {key: example, values: [value], invert_match: true}}",
        );
        check(
            &mut inv,
            &trace(vec![kv_str("example", "value")], vec![span(vec![])]),
            NotSampled,
            "inverted match",
        );
        check(
            &mut inv,
            &trace(vec![kv_str("non_matching", "value")], vec![span(vec![])]),
            Sampled,
            "inverted miss",
        );
        check(
            &mut inv,
            &trace(vec![], vec![span(vec![kv_str("example", "other")])]),
            Sampled,
            "inverted other value",
        );
        // One matching span among several makes the inverted policy not sample.
        let t = trace(
            vec![],
            vec![span(vec![kv_str("example", "other")]), span(vec![kv_str("example", "value")])],
        );
        check(&mut inv, &t, NotSampled, "inverted, one span matches");
    }

    #[test]
    fn boolean_attribute() {
        // boolean_tag_filter_test.go
        let mut p =
            policy("{name: b, type: boolean_attribute, boolean_attribute: {key: example, value: true}}");
        check(&mut p, &trace(vec![kv_bool("example", true)], vec![span(vec![])]), Sampled, "resource true");
        check(&mut p, &trace(vec![], vec![span(vec![kv_bool("example", true)])]), Sampled, "span true");
        check(&mut p, &trace(vec![], vec![span(vec![kv_bool("example", false)])]), NotSampled, "span false");
        check(
            &mut p,
            &trace(vec![], vec![span(vec![kv_bool("non_matching", true)])]),
            NotSampled,
            "other key",
        );
        let mut inv = policy(
            "{name: b, type: boolean_attribute, boolean_attribute: {key: example, value: true, invert_match: true}}",
        );
        // "span attribute with non matching boolean value with DisableInvertDecision": Sampled.
        check(
            &mut inv,
            &trace(vec![], vec![span(vec![kv_bool("example", false)])]),
            Sampled,
            "inverted false",
        );
        check(
            &mut inv,
            &trace(vec![], vec![span(vec![kv_bool("example", true)])]),
            NotSampled,
            "inverted true",
        );
    }

    fn timed(spans: &[(u64, u64)]) -> T {
        T {
            id: [1; 16],
            spans: spans
                .iter()
                .map(|(s, e)| {
                    (None, Span { start_time_unix_nano: *s, end_time_unix_nano: *e, ..Default::default() })
                })
                .collect(),
        }
    }

    #[test]
    fn latency() {
        // latency_test.go: a 5000 ms threshold over one or several spans.
        const MS: u64 = 1_000_000;
        let base = 1_700_000_000_000 * MS;
        let mut p = policy("{name: l, type: latency, latency: {threshold_ms: 5000}}");
        check(
            &mut p,
            &timed(&[(base, base + 4_000 * MS)]),
            NotSampled,
            "trace duration shorter than threshold",
        );
        check(&mut p, &timed(&[(base, base + 5_000 * MS)]), Sampled, "trace duration equal to threshold");
        check(
            &mut p,
            &timed(&[(base, base + 3_000 * MS), (base + 2_000 * MS, base + 5_001 * MS)]),
            Sampled,
            "over spans",
        );
        // Truncated to whole milliseconds.
        check(&mut p, &timed(&[(base, base + 5_000 * MS - 1)]), NotSampled, "4999.999 ms");
        let mut band =
            policy("{name: l, type: latency, latency: {threshold_ms: 5000, upper_threshold_ms: 10000}}");
        check(&mut band, &timed(&[(base, base + 5_000 * MS)]), NotSampled, "the lower bound is exclusive");
        check(&mut band, &timed(&[(base, base + 10_000 * MS)]), Sampled, "the upper bound is inclusive");
        check(&mut band, &timed(&[(base, base + 10_001 * MS)]), NotSampled, "above the upper bound");
        // Checked after each span, in arrival order, as latency.go does: the
        // first span alone is inside the band, so a longer trace still passes.
        check(
            &mut band,
            &timed(&[(base, base + 6_000 * MS), (base, base + 20_000 * MS)]),
            Sampled,
            "running window",
        );
    }

    #[test]
    fn status_code() {
        // status_code_test.go
        let status = |code: StatusCode| Span {
            status: Some(Status { code: code as i32, message: String::new() }),
            ..Default::default()
        };
        let t = |codes: &[StatusCode]| T {
            id: [1; 16],
            spans: codes.iter().map(|c| (None, status(*c))).collect(),
        };
        let mut err = policy("{name: s, type: status_code, status_code: {status_codes: [ERROR]}}");
        check(&mut err, &t(&[StatusCode::Error]), Sampled, "error");
        check(&mut err, &t(&[StatusCode::Ok, StatusCode::Unset]), NotSampled, "no error");
        check(&mut err, &t(&[StatusCode::Unset, StatusCode::Error]), Sampled, "one error among others");
        let mut ok_unset = policy("{name: s, type: status_code, status_code: {status_codes: [OK, UNSET]}}");
        check(&mut ok_unset, &t(&[StatusCode::Error]), NotSampled, "error only");
        check(
            &mut ok_unset,
            &T { id: [1; 16], spans: vec![(None, span(vec![]))] },
            Sampled,
            "no status is UNSET",
        );
    }

    #[test]
    fn probabilistic() {
        // The FNV-1a 64 reference vector for "a", and the hash the Collector feeds.
        assert_eq!(fnv1a64(b"a", b""), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"", b""), 0xcbf2_9ce4_8422_2325);
        // calculateThreshold via big.Float.
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(1.0), u64::MAX);
        assert_eq!(threshold(2.0), u64::MAX);
        // (2^64-1)/2 = 2^63 - 0.5 fits in 64 significant bits, so it is truncated.
        assert_eq!(threshold(0.5), (1 << 63) - 1);
        assert_eq!(threshold(0.25), (1 << 62) - 1);
        // 0.1 is not exact: the product is rounded to 64 bits, half to even.
        assert_eq!(threshold(0.1), 1_844_674_407_370_955_263);
        // probabilistic_test.go: the share kept is close to the percentage
        // (here over 100,000 sequential-looking ids, with the default salt).
        for (pct, lo, hi) in [(1.0, 0.9, 1.1), (33.0, 32.4, 33.6), (100.0, 100.0, 100.0)] {
            let mut p = policy(&format!(
                "{{name: p, type: probabilistic, probabilistic: {{sampling_percentage: {pct}}}}}"
            ));
            let kept = (0..100_000u64)
                .filter(|i| {
                    let mut t = T { id: [0; 16], spans: vec![] };
                    t.id[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
                    t.id[8..].copy_from_slice(&i.to_be_bytes());
                    p.evaluate(&t, Instant::now()) == Sampled
                })
                .count() as f64
                / 1_000.0;
            assert!((lo..=hi).contains(&kept), "{pct}%: kept {kept}%");
        }
        // The salt changes which traces pass.
        let t = T { id: *b"0123456789abcdef", spans: vec![] };
        let a = fnv1a64(DEFAULT_HASH_SALT.as_bytes(), &t.id);
        let b = fnv1a64(b"other", &t.id);
        assert_ne!(a, b);
    }

    #[test]
    fn rate_limiting() {
        // rate_limiting_test.go: spans_per_second 3 (burst 6): a trace of 6
        // spans passes, the next one does not; one second later 3 more fit.
        let mut p = policy("{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 3}}");
        let t = |n: usize| T { id: [1; 16], spans: (0..n).map(|_| (None, span(vec![]))).collect() };
        let now = Instant::now();
        assert_eq!(p.evaluate(&t(6), now), Sampled);
        assert_eq!(p.evaluate(&t(1), now), NotSampled);
        assert_eq!(p.evaluate(&t(3), now + Duration::from_secs(1)), Sampled);
        assert_eq!(p.evaluate(&t(1), now + Duration::from_secs(1)), NotSampled);
        // A trace bigger than the bucket never passes.
        assert_eq!(p.evaluate(&t(7), now + Duration::from_secs(100)), NotSampled);
    }

    #[test]
    fn span_count() {
        // span_count_sampler_test.go
        let t = |n: usize| T { id: [1; 16], spans: (0..n).map(|_| (None, span(vec![]))).collect() };
        let mut p = policy("{name: c, type: span_count, span_count: {min_spans: 2}}");
        check(&mut p, &t(1), NotSampled, "below min");
        check(&mut p, &t(2), Sampled, "at min");
        check(&mut p, &t(50), Sampled, "no max");
        let mut both = policy("{name: c, type: span_count, span_count: {min_spans: 2, max_spans: 20}}");
        check(&mut both, &t(20), Sampled, "at max");
        check(&mut both, &t(21), NotSampled, "above max");
    }

    #[test]
    fn trace_state() {
        // trace_state_filter_test.go
        let t = |ts: &str| T {
            id: [1; 16],
            spans: vec![(None, Span { trace_state: ts.into(), ..Default::default() })],
        };
        let mut p = policy("{name: t, type: trace_state, trace_state: {key: example, values: [value]}}");
        check(&mut p, &t("example=value"), Sampled, "match");
        check(&mut p, &t("other=1,example=value"), Sampled, "second member");
        check(&mut p, &t("example=other"), NotSampled, "other value");
        check(&mut p, &t("non_matching=value"), NotSampled, "other key");
        check(&mut p, &t("example=value,example=value"), NotSampled, "invalid tracestate (duplicate key)");
        check(&mut p, &t(""), NotSampled, "empty");
    }

    fn numeric_span(v: i64) -> T {
        trace(vec![], vec![span(vec![kv_int("attr_k_1", v), kv_str("attr_k_2", "attr_v_2")])])
    }

    #[test]
    fn and_and_drop() {
        // and_test.go: numeric_attribute + string_attribute both match → sampled.
        let and = "{name: a, type: and, and: {and_sub_policy: [{name: n, type: numeric_attribute, numeric_attribute: {key: attr_k_1, min_value: 0, max_value: 100}}, {name: s, type: string_attribute, string_attribute: {key: attr_k_2, values: [attr_v_2]}}]}}";
        let mut p = policy(&and.replace("min_value: 0, ", ""));
        check(&mut p, &numeric_span(50), Sampled, "both sub-policies sample");
        check(&mut p, &numeric_span(150), NotSampled, "one does not");
        // drop_test.go: dropped when every sub-policy samples.
        let mut d = policy(
            &and.replace("type: and, and: {and_sub_policy", "type: drop, drop: {drop_sub_policy")
                .replace("min_value: 0, ", ""),
        );
        check(&mut d, &numeric_span(50), Dropped, "all match");
        check(&mut d, &numeric_span(150), NotSampled, "one misses");
    }

    fn policies(yaml: &str) -> Vec<Policy> {
        let node = Node::parse(yaml, "test.yaml").unwrap();
        let (c, _) = from_node::<TailSamplingConfig>(&node, "processors.tail_sampling")
            .unwrap_or_else(|e| panic!("{e}"));
        let now = Instant::now();
        let mut ps: Vec<Policy> = c.policies.iter().map(|p| Policy::build(p, now)).collect();
        ps.sort_by_key(|p| !p.is_drop);
        ps
    }

    #[test]
    fn combination() {
        // processor_decisions_test.go / makeDecision: any sampled samples;
        // a drop wins over any sampled; nothing sampled → not sampled.
        let t = numeric_span(50);
        let now = Instant::now();
        let no = "{name: no, type: string_attribute, string_attribute: {key: attr_k_2, values: [nope]}}";
        let yes = "{name: keep, type: always_sample}";
        let drop_it = "{name: drop-it, type: drop, drop: {drop_sub_policy: [{name: d, type: string_attribute, string_attribute: {key: attr_k_2, values: [attr_v_2]}}]}}";
        let drop_not = "{name: drop-not, type: drop, drop: {drop_sub_policy: [{name: d, type: string_attribute, string_attribute: {key: attr_k_2, values: [nope]}}]}}";
        let inverted = "{name: inv, type: string_attribute, string_attribute: {key: attr_k_2, values: [attr_v_2], invert_match: true}}";
        for (list, sampled, by) in [
            (vec![no], false, None),
            (vec![no, yes], true, Some("keep")),
            (vec![yes, drop_it], false, Some("drop-it")),
            (vec![yes, drop_not], true, Some("keep")),
            // An inverted non-match no longer vetoes a sampled decision (the
            // Collector's disableinvertdecisions, now its only behaviour).
            (vec![inverted, yes], true, Some("keep")),
            (vec![inverted], false, None),
        ] {
            let yaml = format!("policies: [{}]\n", list.join(", "));
            let mut ps = policies(&yaml);
            let (s, i) = decide(&mut ps, &t, now, false);
            assert_eq!((s, i.map(|i| ps[i].name.as_str())), (sampled, by), "{yaml}");
        }
    }

    #[test]
    fn sample_on_first_match_stops_evaluating() {
        // A rate limit after an always_sample: its budget is spent only when
        // evaluation goes on past the first match.
        let yaml = "policies: [{name: a, type: always_sample}, {name: r, type: rate_limiting, rate_limiting: {spans_per_second: 1, burst_capacity: 1}}]\n";
        let t = numeric_span(1);
        let now = Instant::now();
        let mut ps = policies(yaml);
        assert_eq!(decide(&mut ps, &t, now, true), (true, Some(0)));
        let Evaluator::RateLimiting(b) = &mut ps[1].evaluator else { panic!() };
        assert!(b.allow(now, 1), "the bucket was not touched");
        let mut ps = policies(yaml);
        decide(&mut ps, &t, now, false);
        let Evaluator::RateLimiting(b) = &mut ps[1].evaluator else { panic!() };
        assert!(!b.allow(now, 1), "the bucket was spent");
    }

    #[test]
    fn composite() {
        // composite_test.go: 2 sub-policies with 50% of 10 spans/s each; the
        // first that samples takes from its share; over it, not sampled.
        let yaml = "{name: c, type: composite, composite: {max_total_spans_per_second: 10, policy_order: [n, a], composite_sub_policy: [{name: n, type: numeric_attribute, numeric_attribute: {key: attr_k_1, min_value: 0, max_value: 100}}, {name: a, type: always_sample}], rate_allocation: [{policy: n, percent: 50}, {policy: a, percent: 50}]}}".replace("min_value: 0, ", "");
        let mut p = policy(&yaml);
        let now = Instant::now();
        let big = |v: i64, n: usize| T {
            id: [1; 16],
            spans: (0..n).map(|_| (None, span(vec![kv_int("attr_k_1", v)]))).collect(),
        };
        assert_eq!(p.evaluate(&big(50, 5), now), Sampled, "numeric within its 5 spans/s");
        assert_eq!(
            p.evaluate(&big(50, 1), now),
            NotSampled,
            "numeric's share is spent: not sampled, not passed on"
        );
        assert_eq!(p.evaluate(&big(500, 5), now), Sampled, "always_sample's share");
        assert_eq!(p.evaluate(&big(500, 1), now), NotSampled, "both spent");
        assert_eq!(p.evaluate(&big(50, 5), now + Duration::from_secs(1)), Sampled, "a new second");
        // An unlisted sub-policy gets no share at all.
        let mut unlisted = policy(&yaml.replace(", {policy: a, percent: 50}", ""));
        assert_eq!(unlisted.evaluate(&big(500, 1), now), NotSampled);
    }
}
