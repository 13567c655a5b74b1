//! `llm_cost`: puts the USD cost of each LLM call on its span, from the
//! span's token counts and a price table, so spend can be summed by model,
//! user or department wherever the spans land (the `postgres` exporter
//! writes it to `llm_call_metrics.cost_usd`).
//!
//! - [`usage`] reads the model and token counts from GenAI attributes (all
//!   naming conventions) and prices them: a pure function.
//! - [`prices`] holds the built-in list prices and the name lookup: a pure
//!   table built once when the processor starts.
//! - This module is the config and the processor around them. A span with
//!   token counts gets the cost as a double attribute (by default
//!   `gen_ai.usage.cost_usd`); one whose model has no price gets none and is
//!   counted, and each such model is logged once (at most
//!   [`UNKNOWN_MODELS_REMEMBERED`] names). Nothing is allocated per span but
//!   the attribute added.

pub mod prices;
pub mod usage;

use magpie_core::proto::common::v1::{AnyValue, KeyValue, any_value};
use magpie_core::proto::trace::v1::Span;
use magpie_core::{Batch, ComponentId, Processor};
use prices::{Price, PriceTable};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, HashSet};

/// The attribute written by default: the one the `postgres` exporter reads
/// into `llm_call_metrics.cost_usd`.
pub const DEFAULT_ATTRIBUTE: &str = "gen_ai.usage.cost_usd";

/// Distinct unpriced model names remembered (and each logged once); past
/// this, further names are only counted.
pub const UNKNOWN_MODELS_REMEMBERED: usize = 100;

/// Config of `llm_cost`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmCostConfig {
    /// Model name (or `name*` wildcard) → price, overriding or extending the built-in table.
    pub prices: BTreeMap<ModelName, PriceConfig>,
    /// Whether the built-in price table is used.
    pub builtin_prices: bool,
    /// The span attribute the cost is written to.
    pub attribute: String,
    /// Whether a cost already on the span is replaced.
    pub overwrite: bool,
}

impl Default for LlmCostConfig {
    fn default() -> Self {
        LlmCostConfig {
            prices: BTreeMap::new(),
            builtin_prices: true,
            attribute: DEFAULT_ATTRIBUTE.to_string(),
            overwrite: false,
        }
    }
}

/// A model name under `prices:`: not empty, `*` only at the end.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ModelName(String);

impl ModelName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ModelName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(D::Error::custom("a model name must not be empty"));
        }
        if name.find('*').is_some_and(|i| i + 1 != name.len()) {
            return Err(D::Error::custom(format!(
                "`{name}`: `*` may only end a model name (`prefix*` matches every model starting with prefix)"
            )));
        }
        Ok(ModelName(name.to_string()))
    }
}

/// One model's price in USD per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// Input tokens.
    #[serde(deserialize_with = "usd")]
    pub input: f64,
    /// Output tokens (reasoning included).
    #[serde(deserialize_with = "usd")]
    pub output: f64,
    /// Input tokens read from the prompt cache; the input price when absent.
    #[serde(default, deserialize_with = "optional_usd")]
    pub cached_input: Option<f64>,
    /// Input tokens written to the prompt cache; the input price when absent.
    #[serde(default, deserialize_with = "optional_usd")]
    pub cache_creation_input: Option<f64>,
}

impl PriceConfig {
    pub fn price(&self) -> Price {
        Price::with_cache_writes(
            self.input,
            self.cached_input.unwrap_or(self.input),
            self.cache_creation_input.unwrap_or(self.input),
            self.output,
        )
    }
}

/// A price: a finite, non-negative number.
fn usd<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(D::Error::custom(format!("{v} is not a price: give USD per million tokens, 0 or more")))
    }
}

fn optional_usd<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    usd(d).map(Some)
}

impl LlmCostConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.attribute.trim().is_empty() {
            out.push("attribute: must name the span attribute the cost is written to".to_string());
        }
        if !self.builtin_prices && self.prices.is_empty() {
            out.push(
                "prices: builtin_prices is false and no prices are given, so no call could be priced"
                    .to_string(),
            );
        }
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for name in self.prices.keys() {
            if let Some(other) = seen.insert(name.0.to_ascii_lowercase(), &name.0) {
                out.push(format!(
                    "prices: `{other}` and `{}` are the same model (names are case-insensitive)",
                    name.0
                ));
            }
        }
        out
    }

    /// The price table this config describes.
    pub fn table(&self) -> PriceTable {
        PriceTable::new(self.builtin_prices, self.prices.iter().map(|(name, p)| (name.as_str(), p.price())))
    }
}

/// What the processor has done, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Spans that got a cost.
    pub priced: u64,
    /// Spans with token counts but no price for their model (or no model).
    pub unpriced: u64,
    /// Spans that already had a cost and kept it (`overwrite: false`).
    pub kept: u64,
}

/// The processor; one instance per pipeline.
pub struct LlmCostProcessor {
    id: String,
    table: PriceTable,
    attribute: String,
    overwrite: bool,
    /// Unpriced model names seen, at most [`UNKNOWN_MODELS_REMEMBERED`];
    /// `""` stands for "no model".
    unknown: HashSet<String>,
    /// Set once more unpriced names were seen than are remembered.
    unknown_full: bool,
    counts: Counts,
    /// `counts` as last reported to `/metrics`.
    reported: Counts,
}

impl LlmCostProcessor {
    pub fn new(config: &LlmCostConfig, id: &ComponentId) -> Self {
        LlmCostProcessor {
            id: id.to_string(),
            table: config.table(),
            attribute: config.attribute.trim().to_string(),
            overwrite: config.overwrite,
            unknown: HashSet::new(),
            unknown_full: false,
            counts: Counts::default(),
            reported: Counts::default(),
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn price_span(&mut self, span: &mut Span) {
        let call = usage::read(&span.attributes, &self.attribute);
        if !call.tokens.any() {
            return;
        }
        if call.has_cost && !self.overwrite {
            self.counts.kept += 1;
            return;
        }
        let found = call.model.and_then(|m| self.table.lookup(m));
        let Some(found) = found else {
            self.counts.unpriced += 1;
            self.note_unpriced(call.model, call.provider);
            return;
        };
        let cost = usage::cost(&call.tokens, &found.price);
        let has_cost = call.has_cost;
        set_double(&mut span.attributes, &self.attribute, cost, has_cost);
        self.counts.priced += 1;
    }

    /// Logs the first span of each unpriced model, for up to
    /// [`UNKNOWN_MODELS_REMEMBERED`] models.
    fn note_unpriced(&mut self, model: Option<&str>, provider: Option<&str>) {
        let key = clip(model.unwrap_or(""), MODEL_NAME_REMEMBERED_BYTES);
        if self.unknown_full || self.unknown.contains(key) {
            return;
        }
        if self.unknown.len() == UNKNOWN_MODELS_REMEMBERED {
            self.unknown_full = true;
            tracing::info!(component = %self.id, limit = UNKNOWN_MODELS_REMEMBERED, "llm_cost has met more unpriced models than it remembers; further ones are counted, not logged");
            return;
        }
        self.unknown.insert(key.to_string());
        let provider = clip(provider.unwrap_or("unknown"), MODEL_NAME_REMEMBERED_BYTES);
        if model.is_some() {
            tracing::info!(component = %self.id, model = key, provider, "llm_cost has no price for this model; its spans get no cost until it is added under prices");
        } else {
            tracing::info!(component = %self.id, provider, "llm_cost saw a span with token counts but no gen_ai.response.model or gen_ai.request.model; such spans get no cost");
        }
    }
}

/// Bytes of an unpriced model name kept and logged: names come from the
/// app, and a broken one must not fill the memory or the log.
const MODEL_NAME_REMEMBERED_BYTES: usize = 200;

/// `s` cut to at most `max` bytes, at a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let end = (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    &s[..end]
}

/// Writes `value` under `key`: over the existing value when `replace`, else
/// as a new attribute (the one allocation per priced span).
fn set_double(attributes: &mut Vec<KeyValue>, key: &str, value: f64, replace: bool) {
    let value = Some(AnyValue { value: Some(any_value::Value::DoubleValue(value)) });
    if replace && let Some(kv) = attributes.iter_mut().find(|kv| kv.key == key) {
        kv.value = value;
        return;
    }
    attributes.push(KeyValue { key: key.to_string(), value, ..Default::default() });
}

impl Processor for LlmCostProcessor {
    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) {
        if let Batch::Traces(resources) = &mut batch {
            for span in resources.iter_mut().flat_map(|r| &mut r.scope_spans).flat_map(|s| &mut s.spans) {
                self.price_span(span);
            }
        }
        out.push(batch);
    }

    fn take_outcomes(&mut self, report: &mut dyn FnMut(&'static str, u64)) {
        let (now, before) = (self.counts, self.reported);
        report("priced", now.priced - before.priced);
        report("unpriced", now.unpriced - before.unpriced);
        report("kept", now.kept - before.kept);
        self.reported = now;
    }

    fn flush(&mut self, _out: &mut Vec<Batch>) {
        let Counts { priced, unpriced, kept } = self.counts;
        if priced + unpriced + kept > 0 {
            tracing::info!(component = %self.id, priced, unpriced, kept, "llm_cost spans priced since start");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use magpie_core::config::{Node, from_node};
    use magpie_core::otlp::{attr, kv_double, kv_int, kv_str};
    use magpie_core::proto::trace::v1::{ResourceSpans, ScopeSpans};

    fn config(yaml: &str) -> LlmCostConfig {
        let node = Node::parse(yaml, "test.yaml").unwrap();
        from_node::<LlmCostConfig>(&node, "processors.llm_cost").unwrap_or_else(|e| panic!("{e}")).0
    }

    /// The rendered error of `yaml`, a config of `llm_cost`.
    fn error(yaml: &str) -> String {
        let node = Node::parse(yaml, "test.yaml").unwrap();
        match from_node::<LlmCostConfig>(&node, "processors.llm_cost") {
            Ok(_) => panic!("{yaml} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn processor(yaml: &str) -> LlmCostProcessor {
        let c = config(yaml);
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        LlmCostProcessor::new(&c, &"llm_cost".parse().unwrap())
    }

    fn llm(model: &str, input: i64, output: i64) -> Vec<KeyValue> {
        vec![
            kv_str("gen_ai.provider.name", "x_ai"),
            kv_str("gen_ai.request.model", model),
            kv_int("gen_ai.usage.input_tokens", input),
            kv_int("gen_ai.usage.output_tokens", output),
        ]
    }

    fn batch(spans: Vec<Vec<KeyValue>>) -> Batch {
        let spans = spans.into_iter().map(|attributes| Span { attributes, ..Default::default() }).collect();
        Batch::Traces(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }])
    }

    /// Runs `spans` through `p` and returns each span's cost attribute.
    fn costs(p: &mut LlmCostProcessor, key: &str, spans: Vec<Vec<KeyValue>>) -> Vec<Option<f64>> {
        let mut out = Vec::new();
        p.process(batch(spans), &mut out);
        assert_eq!(out.len(), 1, "one batch in, one out");
        let Batch::Traces(rs) = &out[0] else { panic!("signal changed") };
        rs[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| {
                let n = s.attributes.iter().filter(|kv| kv.key == key).count();
                assert!(n <= 1, "{key} written {n} times");
                match attr(&s.attributes, &[key]) {
                    Some(any_value::Value::DoubleValue(d)) => Some(*d),
                    Some(other) => panic!("{key} is not a double: {other:?}"),
                    None => None,
                }
            })
            .collect()
    }

    fn close(got: &[Option<f64>], want: &[Option<f64>]) {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            match (g, w) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-12, "{got:?} != {want:?}"),
                _ => assert_eq!(g, w, "{got:?} != {want:?}"),
            }
        }
    }

    #[test]
    fn prices_spans_with_the_builtin_table() {
        let mut p = processor("{}");
        let got = costs(
            &mut p,
            DEFAULT_ATTRIBUTE,
            vec![
                // 10,000 in and 2,000 out at $0.20 / $0.50 per million.
                llm("grok-4-1-fast-reasoning", 10_000, 2_000),
                // The response model wins over the request model.
                {
                    let mut a = llm("claude-sonnet-4", 1_000_000, 0);
                    a.push(kv_str("gen_ai.response.model", "claude-haiku-4-5-20251001"));
                    a
                },
                // Older names, string-typed counts, cached input.
                vec![
                    kv_str("gen_ai.system", "openai"),
                    kv_str("gen_ai.request.model", "gpt-4o-mini"),
                    kv_str("gen_ai.usage.prompt_tokens", "2000000"),
                    kv_str("gen_ai.usage.completion_tokens", "1000000"),
                    kv_str("gen_ai.usage.cache_read.input_tokens", "1000000"),
                ],
                // Not an LLM call with usage: untouched.
                vec![kv_str("http.route", "/chat")],
                vec![kv_str("gen_ai.request.model", "gpt-4o")],
            ],
        );
        close(&got, &[Some(0.003), Some(1.0), Some(0.15 + 0.075 + 0.6), None, None]);
        assert_eq!(p.counts(), Counts { priced: 3, unpriced: 0, kept: 0 });
    }

    #[test]
    fn overrides_and_a_custom_attribute() {
        let mut p = processor(
            "attribute: llm.cost_usd\nbuiltin_prices: false\nprices:\n  grok-3-mini: {input: 1, output: 2, cached_input: 0.5}\n  \"my-model*\": {input: 4, output: 8}\n",
        );
        let got = costs(
            &mut p,
            "llm.cost_usd",
            vec![
                {
                    let mut a = llm("grok-3-mini-beta", 1_000_000, 1_000_000);
                    a.push(kv_int("gen_ai.usage.cache_read.input_tokens", 500_000));
                    a
                },
                llm("my-model-large", 500_000, 0),
                llm("grok-3", 1_000, 1_000),
            ],
        );
        close(&got, &[Some(0.5 + 0.25 + 2.0), Some(2.0), None]);
        assert_eq!(p.counts(), Counts { priced: 2, unpriced: 1, kept: 0 });
        // /metrics gets what changed since the last report, once.
        let mut reported = Vec::new();
        p.take_outcomes(&mut |outcome, n| reported.push((outcome, n)));
        assert_eq!(reported, [("priced", 2), ("unpriced", 1), ("kept", 0)]);
        reported.clear();
        p.take_outcomes(&mut |outcome, n| reported.push((outcome, n)));
        assert_eq!(reported, [("priced", 0), ("unpriced", 0), ("kept", 0)]);
    }

    #[test]
    fn an_existing_cost_is_kept_unless_overwrite() {
        let with_cost = || {
            let mut a = llm("grok-3-mini", 1_000_000, 0);
            a.push(kv_double(DEFAULT_ATTRIBUTE, 9.0));
            a
        };
        let mut keep = processor("{}");
        close(&costs(&mut keep, DEFAULT_ATTRIBUTE, vec![with_cost()]), &[Some(9.0)]);
        assert_eq!(keep.counts(), Counts { priced: 0, unpriced: 0, kept: 1 });

        let mut replace = processor("overwrite: true");
        close(&costs(&mut replace, DEFAULT_ATTRIBUTE, vec![with_cost()]), &[Some(0.3)]);
        assert_eq!(replace.counts(), Counts { priced: 1, unpriced: 0, kept: 0 });
        // Overwriting a string-typed cost leaves one double.
        let mut a = llm("grok-3-mini", 1_000_000, 0);
        a.push(kv_str(DEFAULT_ATTRIBUTE, "n/a"));
        close(&costs(&mut replace, DEFAULT_ATTRIBUTE, vec![a]), &[Some(0.3)]);
    }

    #[test]
    fn unknown_models_are_counted_and_remembered_up_to_the_limit() {
        let mut p = processor("{}");
        let spans = vec![
            llm("mystery-model", 10, 10),
            llm("mystery-model", 10, 10),
            vec![kv_int("gen_ai.usage.input_tokens", 10)],
            llm("grok-3-mini", 1_000_000, 0),
        ];
        close(&costs(&mut p, DEFAULT_ATTRIBUTE, spans), &[None, None, None, Some(0.3)]);
        assert_eq!(p.counts(), Counts { priced: 1, unpriced: 3, kept: 0 });
        assert_eq!(p.unknown.len(), 2, "one entry per model, one for no model: {:?}", p.unknown);

        let many: Vec<_> = (0..300).map(|i| llm(&format!("unknown-{i}"), 1, 1)).collect();
        costs(&mut p, DEFAULT_ATTRIBUTE, many);
        assert_eq!(p.counts().unpriced, 303, "every span is counted");
        assert_eq!(p.unknown.len(), UNKNOWN_MODELS_REMEMBERED, "memory is bounded");
        assert!(p.unknown_full);
    }

    #[test]
    fn long_model_names_are_remembered_cut_short() {
        let mut p = processor("{}");
        let long = format!("{}é", "m".repeat(MODEL_NAME_REMEMBERED_BYTES - 1));
        costs(&mut p, DEFAULT_ATTRIBUTE, vec![llm(&long, 1, 1), llm(&format!("{long}-and-more"), 1, 1)]);
        assert_eq!(p.counts().unpriced, 2);
        let names: Vec<&String> = p.unknown.iter().collect();
        assert_eq!(names, vec![&"m".repeat(MODEL_NAME_REMEMBERED_BYTES - 1)], "cut at a character boundary");
        assert_eq!(clip("abc", 2), "ab");
        assert_eq!(clip("ab", 2), "ab");
    }

    #[test]
    fn other_signals_and_empty_batches_pass_through() {
        let mut p = processor("{}");
        let mut out = Vec::new();
        p.process(Batch::Logs(magpie_core::otlp::testdata::logs(1, 2)), &mut out);
        p.process(Batch::Traces(vec![]), &mut out);
        p.process(Batch::Traces(magpie_core::otlp::testdata::spans(2, 3)), &mut out);
        assert_eq!(out.iter().map(Batch::item_count).collect::<Vec<_>>(), vec![2, 0, 6]);
        assert_eq!(p.counts(), Counts::default());
    }

    #[test]
    fn config_defaults() {
        let c = config("");
        assert!(c.builtin_prices && !c.overwrite && c.prices.is_empty());
        assert_eq!(c.attribute, "gen_ai.usage.cost_usd");
        assert!(c.problems().is_empty());
        assert_eq!(c.table().len(), prices::BUILTIN.len());
    }

    #[test]
    fn bad_config_is_reported_where_it_is() {
        for (yaml, expected) in [
            (
                "prices:\n  grok-4:\n    input: -1\n    output: 2\n",
                "test.yaml:3:12: error: processors.llm_cost.prices.grok-4.input: -1 is not a price",
            ),
            (
                "prices:\n  grok-4: {input: 1, output: -0.5}\n",
                "test.yaml:2:30: error: processors.llm_cost.prices.grok-4.output: -0.5 is not a price",
            ),
            (
                "prices:\n  grok-4: {input: 1, output: 2, cached_inptu: 1}\n",
                "test.yaml:2:33: error: processors.llm_cost.prices.grok-4.cached_inptu: unknown field `cached_inptu`, did you mean `cached_input`?",
            ),
            ("prices:\n  grok-4: {input: 1}\n", "missing required field `output`"),
            ("prices:\n  grok-4: {input: one, output: 2}\n", "expected a number, found the string `one`"),
            (
                "prices:\n  \"\": {input: 1, output: 2}\n",
                "test.yaml:2:3: error: processors.llm_cost.prices.: a model name must not be empty",
            ),
            ("prices:\n  \"gpt-*-mini\": {input: 1, output: 2}\n", "`*` may only end a model name"),
            ("overwirte: true\n", "unknown field `overwirte`, did you mean `overwrite`?"),
            ("builtin_prices: maybe\n", "expected true or false"),
        ] {
            let got = error(yaml);
            assert!(got.contains(expected), "{yaml}\n got: {got}\nwant: {expected}");
        }
    }

    #[test]
    fn problems_the_types_cannot_catch() {
        let c = config(
            "attribute: \" \"\nbuiltin_prices: false\nprices:\n  Grok-4: {input: 1, output: 2}\n  grok-4: {input: 1, output: 2}\n",
        );
        let p = c.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("attribute:"), "{p:?}");
        assert!(p[1].contains("`Grok-4` and `grok-4` are the same model"), "{p:?}");
        let p = config("builtin_prices: false").problems();
        assert!(p.len() == 1 && p[0].contains("no call could be priced"), "{p:?}");
    }
}
