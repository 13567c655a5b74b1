//! `probabilistic_sampler`: head sampling of traces and logs, compatible
//! with the OpenTelemetry Collector's processor of the same name. Each span
//! is kept or dropped on its trace id alone (and its `sampling.priority`),
//! so every span of a trace gets the same decision, in this agent and in any
//! other agent or Collector with the same settings.
//!
//! - [`consistent`]: thresholds, randomness, their `th`/`rv` encodings and
//!   the FNV-1a hash: pure numbers.
//! - [`tracestate`]: reading and writing the W3C `tracestate`, keeping other
//!   vendors' entries.
//! - [`decide`]: the decision for one span or log record: a pure function.
//! - This module is the config and the processor: it walks a batch, asks
//!   [`decide`] about each item, writes the kept items' sampling state back
//!   and counts. Totals are logged when the pipeline stops; the per-component
//!   counters on `/metrics` already show items in (`received`) and out
//!   (`exported`).

pub mod consistent;
pub mod decide;
pub mod tracestate;

use decide::{Decision, LogState, Mode, Priority, SampleError, Sampler};
use magpie_core::otlp::any_value_to_string;
use magpie_core::proto::common::v1::{AnyValue, KeyValue, any_value};
use magpie_core::proto::logs::v1::LogRecord;
use magpie_core::proto::trace::v1::Span;
use magpie_core::{Batch, ComponentId, Processor};
use serde::Deserialize;

/// The span attribute that forces a decision (OpenTracing's convention).
pub const PRIORITY_ATTRIBUTE: &str = "sampling.priority";
/// Log record attributes that carry the sampling state (the log records'
/// `th` and `rv`).
pub const LOG_THRESHOLD_ATTRIBUTE: &str = "sampling.threshold";
pub const LOG_RANDOMNESS_ATTRIBUTE: &str = "sampling.randomness";

/// Config of `probabilistic_sampler`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticSamplerConfig {
    /// Percentage of traces (or log records) kept, 0–100. (The Collector
    /// takes more than 100 as 100; here it is a config error, since it is
    /// always a mistake.)
    pub sampling_percentage: f32,
    /// Seed of the `hash_seed` mode's hash (and of the log attribute's hash).
    #[serde(default)]
    pub hash_seed: u32,
    #[serde(default)]
    pub mode: Mode,
    /// Whether an item whose randomness cannot be read is dropped.
    #[serde(default = "yes")]
    pub fail_closed: bool,
    /// Significant hex digits of the `th` written, 1–14.
    #[serde(default = "four")]
    pub sampling_precision: usize,
    /// Logs: `traceID` (the record's trace id, else `from_attribute`) or
    /// `record` (always `from_attribute`).
    #[serde(default)]
    pub attribute_source: AttributeSource,
    /// Logs: the attribute whose value is hashed when there is no trace id.
    #[serde(default)]
    pub from_attribute: Option<String>,
    /// Logs: the attribute holding a record's own percentage.
    #[serde(default)]
    pub sampling_priority: Option<String>,
}

fn yes() -> bool {
    true
}

fn four() -> usize {
    4
}

/// Where a log record's randomness comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum AttributeSource {
    #[default]
    #[serde(rename = "traceID")]
    TraceId,
    #[serde(rename = "record")]
    Record,
}

impl ProbabilisticSamplerConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let p = self.sampling_percentage;
        if !p.is_finite() || !(0.0..=100.0).contains(&p) {
            out.push(format!("sampling_percentage: {p} is not a percentage: give 0 to 100"));
        } else if p > 0.0 && f64::from(p) / 100.0 < consistent::MIN_PROBABILITY {
            out.push(format!(
                "sampling_percentage: {p} is below the smallest expressible probability, 2^-56"
            ));
        }
        if !(1..=consistent::HEX_DIGITS).contains(&self.sampling_precision) {
            out.push(format!("sampling_precision: {} must be 1 to 14 hex digits", self.sampling_precision));
        }
        let attribute = self.from_attribute.as_deref().map(str::trim);
        if self.attribute_source == AttributeSource::Record && attribute.is_none_or(str::is_empty) {
            out.push(
                "from_attribute: attribute_source is record, so name the log attribute to sample by"
                    .to_string(),
            );
        }
        if attribute == Some("") {
            out.push("from_attribute: must name a log record attribute".to_string());
        }
        if self.sampling_priority.as_deref().is_some_and(|s| s.trim().is_empty()) {
            out.push("sampling_priority: must name a log record attribute".to_string());
        }
        out
    }

    pub fn sampler(&self) -> Sampler {
        Sampler::new(
            self.mode,
            self.sampling_percentage,
            self.hash_seed,
            self.sampling_precision,
            self.fail_closed,
        )
    }
}

/// What the processor has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Items kept (sampled in).
    pub kept: u64,
    /// Items dropped (sampled out).
    pub dropped: u64,
    /// Of these, items a priority decided.
    pub by_priority: u64,
    /// Of these, items decided by `fail_closed` because their randomness
    /// or sampling state could not be used.
    pub undecidable: u64,
}

/// The processor; one instance per pipeline.
pub struct ProbabilisticSamplerProcessor {
    id: String,
    sampler: Sampler,
    attribute_source: AttributeSource,
    from_attribute: Option<String>,
    sampling_priority: Option<String>,
    fail_closed: bool,
    counts: Counts,
    /// `counts` as last reported to `/metrics`.
    reported: Counts,
    /// Whether an undecidable item has been logged (once per instance).
    warned: bool,
}

impl ProbabilisticSamplerProcessor {
    pub fn new(config: &ProbabilisticSamplerConfig, id: &ComponentId) -> Self {
        let trimmed =
            |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        ProbabilisticSamplerProcessor {
            id: id.to_string(),
            sampler: config.sampler(),
            attribute_source: config.attribute_source,
            from_attribute: trimmed(&config.from_attribute),
            sampling_priority: trimmed(&config.sampling_priority),
            fail_closed: config.fail_closed,
            counts: Counts::default(),
            reported: Counts::default(),
            warned: false,
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn count<S>(&mut self, d: &Decision<S>) {
        if d.keep {
            self.counts.kept += 1;
        } else {
            self.counts.dropped += 1;
        }
        if d.by_priority {
            self.counts.by_priority += 1;
        }
        if let Some(error) = &d.error {
            self.counts.undecidable += 1;
            if !self.warned {
                self.warned = true;
                tracing::warn!(component = %self.id, %error, kept = d.keep, fail_closed = self.fail_closed, "probabilistic_sampler met an item it cannot decide on its randomness; fail_closed decides such items, which are counted, not logged again");
            }
        }
    }

    fn span(&mut self, span: &mut Span) -> bool {
        let d = self.sampler.decide_span(&span.trace_id, &span.trace_state, span_priority(&span.attributes));
        self.count(&d);
        if let Some(state) = &d.state {
            span.trace_state = state.serialize();
        }
        d.keep
    }

    fn log(&mut self, record: &mut LogRecord) -> bool {
        let arrived = log_state(&record.attributes);
        let trace_id =
            (self.attribute_source == AttributeSource::TraceId).then_some(record.trace_id.as_slice());
        let attribute = self.from_attribute.as_deref().and_then(|key| {
            record.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
        });
        let attribute = attribute.map(|v| match v {
            any_value::Value::BytesValue(b) => b.clone(),
            other => any_value_to_string(other).into_bytes(),
        });
        let priority = self.sampling_priority.as_deref().and_then(|key| {
            match record.attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()? {
                any_value::Value::IntValue(i) => Some(*i as f64),
                any_value::Value::DoubleValue(d) => Some(*d),
                _ => None,
            }
        });
        let before = arrived.clone().ok();
        let d = self.sampler.decide_log(arrived, trace_id, attribute.as_deref(), priority);
        self.count(&d);
        if let Some(state) = d.state {
            let before = before.unwrap_or_default();
            if state.rv != before.rv
                && let Some(rv) = state.rv
            {
                set_string(&mut record.attributes, LOG_RANDOMNESS_ATTRIBUTE, rv.rvalue());
            }
            match state.th.map(consistent::Threshold::tvalue) {
                Some(th) if !th.is_empty() => set_string(&mut record.attributes, LOG_THRESHOLD_ATTRIBUTE, th),
                _ => record.attributes.retain(|kv| kv.key != LOG_THRESHOLD_ATTRIBUTE),
            }
        }
        d.keep
    }
}

/// A span's `sampling.priority`: 0 drops, more keeps, anything else (a
/// negative number, a string that is not a number, another type) defers.
pub fn span_priority(attributes: &[KeyValue]) -> Priority {
    let Some(value) = attributes
        .iter()
        .find(|kv| kv.key == PRIORITY_ATTRIBUTE)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    else {
        return Priority::Defer;
    };
    let n = match value {
        any_value::Value::IntValue(i) => *i as f64,
        any_value::Value::DoubleValue(d) => *d,
        any_value::Value::StringValue(s) => s.trim().parse::<f64>().unwrap_or(f64::NAN),
        _ => f64::NAN,
    };
    if n == 0.0 {
        Priority::Drop
    } else if n > 0.0 {
        Priority::Keep
    } else {
        Priority::Defer
    }
}

/// A log record's `sampling.threshold` and `sampling.randomness` (string
/// attributes; others are ignored, as by the Collector).
fn log_state(attributes: &[KeyValue]) -> Result<LogState, SampleError> {
    let get = |key: &str| match attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    };
    let th = get(LOG_THRESHOLD_ATTRIBUTE)
        .map(consistent::Threshold::from_tvalue)
        .transpose()
        .map_err(|e| SampleError::LogAttribute("threshold", e))?;
    let rv = get(LOG_RANDOMNESS_ATTRIBUTE)
        .map(consistent::Randomness::from_rvalue)
        .transpose()
        .map_err(|e| SampleError::LogAttribute("randomness", e))?;
    Ok(LogState { rv, th })
}

fn set_string(attributes: &mut Vec<KeyValue>, key: &str, value: String) {
    let value = Some(AnyValue { value: Some(any_value::Value::StringValue(value)) });
    match attributes.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = value,
        None => attributes.push(KeyValue { key: key.to_string(), value, ..Default::default() }),
    }
}

impl Processor for ProbabilisticSamplerProcessor {
    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) {
        match &mut batch {
            Batch::Traces(resources) => {
                for r in resources.iter_mut() {
                    for s in r.scope_spans.iter_mut() {
                        s.spans.retain_mut(|span| self.span(span));
                    }
                    r.scope_spans.retain(|s| !s.spans.is_empty());
                }
                resources.retain(|r| !r.scope_spans.is_empty());
            }
            Batch::Logs(resources) => {
                for r in resources.iter_mut() {
                    for s in r.scope_logs.iter_mut() {
                        s.log_records.retain_mut(|record| self.log(record));
                    }
                    r.scope_logs.retain(|s| !s.log_records.is_empty());
                }
                resources.retain(|r| !r.scope_logs.is_empty());
            }
            // Not a signal this processor is configured for; passed on.
            Batch::Metrics(_) | Batch::Alerts(_) => {}
        }
        if batch.item_count() > 0 {
            out.push(batch);
        }
    }

    fn take_outcomes(&mut self, report: &mut dyn FnMut(&'static str, u64)) {
        let (now, before) = (self.counts, self.reported);
        report("kept", now.kept - before.kept);
        report("dropped", now.dropped - before.dropped);
        report("by_priority", now.by_priority - before.by_priority);
        report("undecidable", now.undecidable - before.undecidable);
        self.reported = now;
    }

    fn flush(&mut self, _out: &mut Vec<Batch>) {
        let Counts { kept, dropped, by_priority, undecidable } = self.counts;
        if kept + dropped > 0 {
            tracing::info!(component = %self.id, kept, dropped, by_priority, undecidable, "probabilistic_sampler items sampled since start");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use magpie_core::config::{Node, from_node};
    use magpie_core::otlp::{kv_int, kv_str};
    use magpie_core::proto::logs::v1::{ResourceLogs, ScopeLogs};
    use magpie_core::proto::trace::v1::{ResourceSpans, ScopeSpans};

    fn config(yaml: &str) -> ProbabilisticSamplerConfig {
        let node = Node::parse(yaml, "test.yaml").unwrap();
        from_node::<ProbabilisticSamplerConfig>(&node, "processors.probabilistic_sampler")
            .unwrap_or_else(|e| panic!("{e}"))
            .0
    }

    fn processor(yaml: &str) -> ProbabilisticSamplerProcessor {
        let c = config(yaml);
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        ProbabilisticSamplerProcessor::new(&c, &"probabilistic_sampler".parse().unwrap())
    }

    /// `traces` traces of 3 spans, spread over two resources, each span
    /// with `tracestate`.
    fn traces(traces: u64, tracestate: &str) -> Batch {
        let span = |t: u64, s: u64| Span {
            trace_id: [
                t.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes(),
                (t + 1).wrapping_mul(0xd1b5_4a32_d192_ed03).rotate_left(17).to_be_bytes(),
            ]
            .concat(),
            span_id: (t * 3 + s + 1).to_be_bytes().to_vec(),
            trace_state: tracestate.to_string(),
            ..Default::default()
        };
        let resource = |spans: Vec<Span>| ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        };
        Batch::Traces(vec![
            resource((0..traces).map(|t| span(t, 0)).collect()),
            resource((0..traces).flat_map(|t| [span(t, 1), span(t, 2)]).collect()),
        ])
    }

    #[test]
    fn whole_traces_are_kept_or_dropped_and_marked() {
        for mode in ["hash_seed", "proportional", "equalizing"] {
            let mut p = processor(&format!("sampling_percentage: 25\nmode: {mode}\n"));
            let mut out = Vec::new();
            p.process(traces(2_000, "vendor=v1"), &mut out);
            let mut per_trace: std::collections::BTreeMap<Vec<u8>, usize> = Default::default();
            for b in &out {
                let Batch::Traces(rs) = b else { panic!("signal changed") };
                magpie_core::otlp::for_each_span(rs, |_, s| {
                    *per_trace.entry(s.trace_id.clone()).or_default() += 1;
                    assert!(
                        s.trace_state.starts_with("ot=") && s.trace_state.ends_with(",vendor=v1"),
                        "{}",
                        s.trace_state
                    );
                    assert!(s.trace_state.contains("th:c"), "{mode}: {}", s.trace_state);
                });
            }
            assert!(per_trace.values().all(|n| *n == 3), "{mode}: a trace was split");
            let kept = per_trace.len() as f64;
            // Binomial(2000, 0.25): sd 19.4; 5 sd either side.
            assert!((kept - 500.0).abs() < 97.0, "{mode}: {kept} traces kept");
            let c = p.counts();
            assert_eq!((c.kept, c.kept + c.dropped), (3 * per_trace.len() as u64, 6_000), "{mode}");
        }
    }

    #[test]
    fn empty_results_send_nothing_and_priority_keeps_a_span() {
        let mut p = processor("sampling_percentage: 0");
        let mut out = Vec::new();
        p.process(traces(50, ""), &mut out);
        assert!(out.is_empty());
        let mut b = traces(1, "");
        if let Batch::Traces(rs) = &mut b {
            rs[0].scope_spans[0].spans[0].attributes.push(kv_str("sampling.priority", "1"));
        }
        p.process(b, &mut out);
        assert_eq!(out.iter().map(Batch::item_count).sum::<usize>(), 1);
        assert_eq!(p.counts(), Counts { kept: 1, dropped: 152, by_priority: 1, undecidable: 0 });
        // /metrics gets what changed since the last report, once.
        let mut reported = Vec::new();
        p.take_outcomes(&mut |outcome, n| reported.push((outcome, n)));
        assert_eq!(reported, [("kept", 1), ("dropped", 152), ("by_priority", 1), ("undecidable", 0)]);
        p.process(traces(2, ""), &mut out);
        reported.clear();
        p.take_outcomes(&mut |outcome, n| reported.push((outcome, n)));
        assert_eq!(reported, [("kept", 0), ("dropped", 6), ("by_priority", 0), ("undecidable", 0)]);
    }

    #[test]
    fn span_priority_reads_every_type() {
        for (value, want) in [
            (kv_int(PRIORITY_ATTRIBUTE, 0), Priority::Drop),
            (kv_int(PRIORITY_ATTRIBUTE, 2), Priority::Keep),
            (kv_int(PRIORITY_ATTRIBUTE, -1), Priority::Defer),
            (magpie_core::otlp::kv_double(PRIORITY_ATTRIBUTE, 0.0), Priority::Drop),
            (magpie_core::otlp::kv_double(PRIORITY_ATTRIBUTE, 1.0), Priority::Keep),
            (kv_str(PRIORITY_ATTRIBUTE, "0.0"), Priority::Drop),
            (kv_str(PRIORITY_ATTRIBUTE, "0.5"), Priority::Keep),
            (kv_str(PRIORITY_ATTRIBUTE, "-0.5"), Priority::Defer),
            (kv_str(PRIORITY_ATTRIBUTE, "NaN"), Priority::Defer),
            (kv_str(PRIORITY_ATTRIBUTE, "high"), Priority::Defer),
            (magpie_core::otlp::kv_bool(PRIORITY_ATTRIBUTE, true), Priority::Defer),
            (kv_int("no.sampling.priority", 2), Priority::Defer),
        ] {
            assert_eq!(span_priority(std::slice::from_ref(&value)), want, "{value:?}");
        }
    }

    #[test]
    fn logs_are_sampled_by_trace_id_or_attribute_and_marked() {
        let record = |trace_id: Vec<u8>, attrs: Vec<KeyValue>| LogRecord {
            trace_id,
            attributes: attrs,
            ..Default::default()
        };
        let batch = |records| {
            Batch::Logs(vec![ResourceLogs {
                scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                ..Default::default()
            }])
        };
        let mut p = processor("sampling_percentage: 100\nhash_seed: 123\nfrom_attribute: foo\n");
        let mut out = Vec::new();
        p.process(batch(vec![record(vec![], vec![kv_str("foo", "bar")]), record(vec![], vec![])]), &mut out);
        let Batch::Logs(rl) = &out[0] else { panic!("signal changed") };
        let records = &rl[0].scope_logs[0].log_records;
        assert_eq!(records.len(), 1, "the record with nothing to sample by is dropped (fail_closed)");
        let a = &records[0].attributes;
        assert_eq!(
            magpie_core::otlp::attr_string(a, &[LOG_RANDOMNESS_ATTRIBUTE]).as_deref(),
            Some("37e0313b4df207")
        );
        assert_eq!(magpie_core::otlp::attr_string(a, &[LOG_THRESHOLD_ATTRIBUTE]).as_deref(), Some("0"));
        assert_eq!(p.counts().undecidable, 1);

        // Proportional: th written, rv not; a bad sampling.threshold is undecidable.
        let mut p = processor("sampling_percentage: 50\nmode: proportional\nfail_closed: false\n");
        let mut out = Vec::new();
        let tid = vec![0xff; 16];
        p.process(
            batch(vec![
                record(tid.clone(), vec![]),
                record(tid, vec![kv_str(LOG_THRESHOLD_ATTRIBUTE, "xyz")]),
            ]),
            &mut out,
        );
        let Batch::Logs(rl) = &out[0] else { panic!("signal changed") };
        let records = &rl[0].scope_logs[0].log_records;
        assert_eq!(records.len(), 2);
        assert_eq!(
            magpie_core::otlp::attr_string(&records[0].attributes, &[LOG_THRESHOLD_ATTRIBUTE]).as_deref(),
            Some("8")
        );
        assert_eq!(magpie_core::otlp::attr_string(&records[0].attributes, &[LOG_RANDOMNESS_ATTRIBUTE]), None);
        assert_eq!(
            magpie_core::otlp::attr_string(&records[1].attributes, &[LOG_THRESHOLD_ATTRIBUTE]).as_deref(),
            Some("xyz")
        );
        assert_eq!(p.counts().undecidable, 1);
    }

    #[test]
    fn config_defaults_and_errors() {
        let c = config("sampling_percentage: 10");
        assert_eq!((c.mode, c.hash_seed, c.fail_closed, c.sampling_precision), (Mode::HashSeed, 0, true, 4));
        assert_eq!(c.attribute_source, AttributeSource::TraceId);
        assert!(c.problems().is_empty());
        let c = config(
            "sampling_percentage: 15.3\nmode: equalizing\nattribute_source: record\nfrom_attribute: logID\n",
        );
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        for (yaml, expected) in [
            ("sampling_percentage: -1", "sampling_percentage: -1 is not a percentage"),
            ("sampling_percentage: 150", "sampling_percentage: 150 is not a percentage: give 0 to 100"),
            ("sampling_percentage: 1e-20", "below the smallest expressible probability"),
            ("sampling_percentage: 10\nsampling_precision: 15", "sampling_precision: 15 must be 1 to 14"),
            ("sampling_percentage: 10\nsampling_precision: 0", "sampling_precision: 0 must be 1 to 14"),
            (
                "sampling_percentage: 10\nattribute_source: record",
                "from_attribute: attribute_source is record",
            ),
        ] {
            let p = config(yaml).problems();
            assert!(p.len() == 1 && p[0].contains(expected), "{yaml}: {p:?}");
        }
        for (yaml, expected) in [
            ("{}", "missing required field `sampling_percentage`"),
            (
                "sampling_percentage: 10\nmode: random",
                "unknown value `random`, expected one of: hash_seed, proportional, equalizing",
            ),
            ("sampling_percentage: 10\nhash_seed: -1", "hash_seed"),
            ("sampling_percentage: 10\nattribute_source: traceid", "unknown value `traceid`"),
            ("sampling_percentage: 10\nfail_close: true", "did you mean `fail_closed`?"),
        ] {
            let node = Node::parse(yaml, "test.yaml").unwrap();
            let got = match from_node::<ProbabilisticSamplerConfig>(&node, "processors.probabilistic_sampler")
            {
                Ok(_) => panic!("{yaml} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(got.contains(expected), "{yaml}\n got: {got}\nwant: {expected}");
        }
    }
}
