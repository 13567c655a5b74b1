//! What one span says about its LLM call, and what the call cost.
//!
//! [`read`] takes the model, provider and token counts from a span's
//! attributes in one pass, under every name instrumentations use (stable
//! GenAI semantic conventions first, then the older names and OpenLLMetry's).
//! [`cost`] prices the counts. Both are pure and allocate nothing.
//!
//! # What the counts are taken to mean
//!
//! - `gen_ai.usage.input_tokens` includes the cached tokens
//!   (`gen_ai.usage.cache_read.input_tokens`) and the tokens written to the
//!   cache (`gen_ai.usage.cache_creation.input_tokens`), as the conventions
//!   say; each part is priced at its own rate, never twice. When the cached
//!   parts add up to more than the input count, the instrumentation reported
//!   them beside it (Anthropic's own usage fields are counted that way), and
//!   they are added to it.
//! - `gen_ai.usage.output_tokens` includes the reasoning tokens, as OpenAI,
//!   Anthropic and the conventions count them; all output is priced at the
//!   output rate. Some APIs (xAI's chat completions, Gemini's) count reasoning
//!   beside the output instead: when `gen_ai.usage.reasoning.output_tokens`
//!   is larger than the output count, or a reported total
//!   (`gen_ai.usage.total_tokens`, `llm.usage.total_tokens`) equals input +
//!   output + reasoning, the reasoning tokens are added to the output.
//!   Without either sign, reasoning that an instrumentation left out of the
//!   output count cannot be seen and is not priced.
//! - Counts may be integers, whole doubles or strings holding integers (SDKs
//!   differ). Negative, fractional, unparsable or absurd counts (above
//!   [`MAX_TOKENS`]) are ignored, as if absent.

use super::prices::Price;
use magpie_core::proto::common::v1::{KeyValue, any_value::Value};

/// The largest token count taken as real; anything above is a broken
/// instrumentation, not a call.
pub const MAX_TOKENS: u64 = 1_000_000_000;

/// Token counts of one call; `None` where the span says nothing usable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub cache_read: Option<u64>,
    pub cache_creation: Option<u64>,
    pub reasoning: Option<u64>,
    pub total: Option<u64>,
}

impl Tokens {
    /// Whether the span counted any input or output tokens.
    pub fn any(&self) -> bool {
        self.input.is_some() || self.output.is_some()
    }
}

/// The LLM call a span describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Call<'a> {
    /// `gen_ai.response.model`, else `gen_ai.request.model` (non-empty strings only).
    pub model: Option<&'a str>,
    /// `gen_ai.provider.name`, else `gen_ai.system`.
    pub provider: Option<&'a str>,
    pub tokens: Tokens,
    /// Whether the span already has the cost attribute.
    pub has_cost: bool,
}

/// The attributes `read` looks at. For each, the lower rank wins when a span
/// carries several of its names.
#[derive(Clone, Copy)]
enum Field {
    ResponseModel,
    RequestModel,
    Provider,
    Input,
    Output,
    CacheRead,
    CacheCreation,
    Reasoning,
    Total,
}

fn field(key: &str) -> Option<(Field, u8)> {
    use Field::*;
    Some(match key {
        "gen_ai.response.model" => (ResponseModel, 0),
        "gen_ai.request.model" => (RequestModel, 0),
        "gen_ai.provider.name" => (Provider, 0),
        "gen_ai.system" => (Provider, 1),
        "gen_ai.usage.input_tokens" => (Input, 0),
        "gen_ai.usage.prompt_tokens" => (Input, 1),
        "llm.usage.prompt_tokens" => (Input, 2),
        "gen_ai.usage.output_tokens" => (Output, 0),
        "gen_ai.usage.completion_tokens" => (Output, 1),
        "llm.usage.completion_tokens" => (Output, 2),
        "gen_ai.usage.cache_read.input_tokens" => (CacheRead, 0),
        "gen_ai.usage.cache_read_input_tokens" => (CacheRead, 1),
        "gen_ai.usage.cache_creation.input_tokens" => (CacheCreation, 0),
        "gen_ai.usage.cache_creation_input_tokens" => (CacheCreation, 1),
        "gen_ai.usage.reasoning.output_tokens" => (Reasoning, 0),
        "gen_ai.usage.total_tokens" => (Total, 0),
        "llm.usage.total_tokens" => (Total, 1),
        _ => return None,
    })
}

/// A count with the rank of the name it came from.
#[derive(Clone, Copy)]
struct Ranked<T>(Option<(u8, T)>);

impl<T> Ranked<T> {
    const NONE: Ranked<T> = Ranked(None);

    fn offer(&mut self, rank: u8, value: Option<T>) {
        if let Some(v) = value
            && self.0.as_ref().is_none_or(|(r, _)| rank < *r)
        {
            self.0 = Some((rank, v));
        }
    }

    fn get(self) -> Option<T> {
        self.0.map(|(_, v)| v)
    }
}

/// Reads the call from a span's attributes in one pass; `cost_attribute` is
/// the attribute the processor writes.
pub fn read<'a>(attributes: &'a [KeyValue], cost_attribute: &str) -> Call<'a> {
    let (mut response_model, mut request_model, mut provider) =
        (Ranked::<&str>::NONE, Ranked::<&str>::NONE, Ranked::<&str>::NONE);
    let [mut input, mut output, mut cache_read, mut cache_creation, mut reasoning, mut total] =
        [Ranked::<u64>::NONE; 6];
    let mut has_cost = false;
    for kv in attributes {
        if kv.key == cost_attribute {
            has_cost = true;
            continue;
        }
        let Some((f, rank)) = field(&kv.key) else { continue };
        let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
        match f {
            Field::ResponseModel => response_model.offer(rank, value.and_then(text)),
            Field::RequestModel => request_model.offer(rank, value.and_then(text)),
            Field::Provider => provider.offer(rank, value.and_then(text)),
            Field::Input => input.offer(rank, value.and_then(count)),
            Field::Output => output.offer(rank, value.and_then(count)),
            Field::CacheRead => cache_read.offer(rank, value.and_then(count)),
            Field::CacheCreation => cache_creation.offer(rank, value.and_then(count)),
            Field::Reasoning => reasoning.offer(rank, value.and_then(count)),
            Field::Total => total.offer(rank, value.and_then(count)),
        }
    }
    Call {
        model: response_model.get().or(request_model.get()),
        provider: provider.get(),
        tokens: Tokens {
            input: input.get(),
            output: output.get(),
            cache_read: cache_read.get(),
            cache_creation: cache_creation.get(),
            reasoning: reasoning.get(),
            total: total.get(),
        },
        has_cost,
    }
}

/// A non-empty string value, trimmed.
fn text(v: &Value) -> Option<&str> {
    match v {
        Value::StringValue(s) => Some(s.trim()).filter(|s| !s.is_empty()),
        _ => None,
    }
}

/// A token count: a non-negative integer, whole double or integer string, up to [`MAX_TOKENS`].
fn count(v: &Value) -> Option<u64> {
    let n = match v {
        Value::IntValue(i) => u64::try_from(*i).ok()?,
        Value::DoubleValue(d)
            if d.is_finite() && d.fract() == 0.0 && *d >= 0.0 && *d <= MAX_TOKENS as f64 =>
        {
            *d as u64
        }
        Value::StringValue(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (n <= MAX_TOKENS).then_some(n)
}

/// The USD cost of `tokens` at `price`.
pub fn cost(tokens: &Tokens, price: &Price) -> f64 {
    let input = tokens.input.unwrap_or(0);
    let output = tokens.output.unwrap_or(0);
    let cache_read = tokens.cache_read.unwrap_or(0);
    let cache_creation = tokens.cache_creation.unwrap_or(0);
    let reasoning = tokens.reasoning.unwrap_or(0);
    let cached = cache_read + cache_creation;
    // Cached parts inside the input count, as the conventions say; beside it otherwise.
    let fresh = input.checked_sub(cached).unwrap_or(input);
    let all_input = fresh + cached;
    let reasoning_beside_output =
        reasoning > output || (reasoning > 0 && tokens.total == Some(all_input + output + reasoning));
    let all_output = if reasoning_beside_output { output + reasoning } else { output };
    let micro = fresh as f64 * price.input
        + cache_read as f64 * price.cached_input
        + cache_creation as f64 * price.cache_creation_input
        + all_output as f64 * price.output;
    micro / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::otlp::{kv_bool, kv_double, kv_int, kv_str};

    #[test]
    fn reads_every_naming_convention() {
        let tokens = |attrs: Vec<KeyValue>| read(&attrs, "gen_ai.usage.cost_usd").tokens;
        let io = |input, output| Tokens { input: Some(input), output: Some(output), ..Default::default() };
        for (name, attrs, expected) in [
            (
                "current semconv",
                vec![kv_int("gen_ai.usage.input_tokens", 100), kv_int("gen_ai.usage.output_tokens", 20)],
                io(100, 20),
            ),
            (
                "older semconv",
                vec![kv_int("gen_ai.usage.prompt_tokens", 100), kv_int("gen_ai.usage.completion_tokens", 20)],
                io(100, 20),
            ),
            (
                "OpenLLMetry",
                vec![
                    kv_int("llm.usage.prompt_tokens", 100),
                    kv_int("llm.usage.completion_tokens", 20),
                    kv_int("llm.usage.total_tokens", 120),
                ],
                Tokens { total: Some(120), ..io(100, 20) },
            ),
            (
                "the stable name wins whatever the order",
                vec![
                    kv_int("llm.usage.prompt_tokens", 1),
                    kv_int("gen_ai.usage.prompt_tokens", 2),
                    kv_int("gen_ai.usage.input_tokens", 100),
                    kv_int("gen_ai.usage.completion_tokens", 20),
                    kv_int("llm.usage.completion_tokens", 3),
                ],
                io(100, 20),
            ),
            (
                "cache and reasoning details",
                vec![
                    kv_int("gen_ai.usage.input_tokens", 100),
                    kv_int("gen_ai.usage.output_tokens", 20),
                    kv_int("gen_ai.usage.cache_read.input_tokens", 60),
                    kv_int("gen_ai.usage.cache_creation.input_tokens", 30),
                    kv_int("gen_ai.usage.reasoning.output_tokens", 5),
                    kv_int("gen_ai.usage.total_tokens", 120),
                ],
                Tokens {
                    cache_read: Some(60),
                    cache_creation: Some(30),
                    reasoning: Some(5),
                    total: Some(120),
                    ..io(100, 20)
                },
            ),
            (
                "older cache names",
                vec![
                    kv_int("gen_ai.usage.prompt_tokens", 100),
                    kv_int("gen_ai.usage.cache_read_input_tokens", 60),
                    kv_int("gen_ai.usage.cache_creation_input_tokens", 30),
                ],
                Tokens {
                    input: Some(100),
                    cache_read: Some(60),
                    cache_creation: Some(30),
                    ..Default::default()
                },
            ),
            (
                "strings and whole doubles",
                vec![
                    kv_str("gen_ai.usage.input_tokens", " 100 "),
                    kv_double("gen_ai.usage.output_tokens", 20.0),
                ],
                io(100, 20),
            ),
            (
                "bad values are ignored and an older name stands in",
                vec![
                    kv_int("gen_ai.usage.input_tokens", -5),
                    kv_int("gen_ai.usage.prompt_tokens", 100),
                    kv_str("gen_ai.usage.output_tokens", "twenty"),
                    kv_double("gen_ai.usage.completion_tokens", 20.5),
                    kv_int("gen_ai.usage.cache_read.input_tokens", 1_000_000_001),
                    kv_double("gen_ai.usage.reasoning.output_tokens", f64::NAN),
                    kv_bool("gen_ai.usage.total_tokens", true),
                ],
                Tokens { input: Some(100), ..Default::default() },
            ),
            (
                "no tokens",
                vec![kv_str("gen_ai.request.model", "gpt-4o"), kv_str("http.route", "/chat")],
                Tokens::default(),
            ),
            (
                "every kind of broken",
                vec![
                    kv_str("gen_ai.usage.input_tokens", "-1"),
                    kv_str("gen_ai.usage.output_tokens", "1e3"),
                    kv_double("gen_ai.usage.prompt_tokens", -3.0),
                    kv_double("gen_ai.usage.completion_tokens", 1e300),
                    kv_str("llm.usage.prompt_tokens", "99999999999999999999999"),
                    kv_int("llm.usage.completion_tokens", i64::MIN),
                    KeyValue {
                        key: "gen_ai.usage.cache_read.input_tokens".into(),
                        value: None,
                        ..Default::default()
                    },
                ],
                Tokens::default(),
            ),
        ] {
            assert_eq!(tokens(attrs), expected, "{name}");
        }
    }

    #[test]
    fn model_provider_and_existing_cost() {
        let attrs = vec![
            kv_str("gen_ai.system", "openai"),
            kv_str("gen_ai.provider.name", "x_ai"),
            kv_str("gen_ai.request.model", "grok-4"),
            kv_str("gen_ai.response.model", "grok-4-0709"),
            kv_double("cost", 0.5),
        ];
        let call = read(&attrs, "cost");
        assert_eq!((call.model, call.provider, call.has_cost), (Some("grok-4-0709"), Some("x_ai"), true));
        // The request model stands in for a missing or empty response model.
        let attrs = vec![kv_str("gen_ai.response.model", " "), kv_str("gen_ai.request.model", "grok-3-mini")];
        let call = read(&attrs, "cost");
        assert_eq!((call.model, call.provider, call.has_cost), (Some("grok-3-mini"), None, false));
        // A non-string model is no model.
        assert_eq!(read(&[kv_int("gen_ai.request.model", 4)], "cost").model, None);
    }

    /// Prices per million tokens chosen so each part shows: fresh input $1,
    /// cached $0.10, cache writes $2, output $10.
    const PRICE: Price = Price::with_cache_writes(1.0, 0.1, 2.0, 10.0);

    fn check(cases: &[(&str, Tokens, f64)]) {
        for (name, tokens, expected) in cases {
            let got = cost(tokens, &PRICE);
            assert!((got - expected).abs() < 1e-12, "{name}: {got} != {expected}");
        }
    }

    fn t(input: u64, output: u64) -> Tokens {
        Tokens { input: Some(input), output: Some(output), ..Default::default() }
    }

    #[test]
    fn prices_each_kind_of_token_once() {
        check(&[
            ("input and output", t(1_000_000, 100_000), 1.0 + 1.0),
            ("input only", Tokens { input: Some(500_000), ..Default::default() }, 0.5),
            ("output only", Tokens { output: Some(1_000), ..Default::default() }, 0.01),
            ("nothing", Tokens::default(), 0.0),
            // 1M input of which 600k read from and 300k written to the cache.
            (
                "cached parts inside the input",
                Tokens { cache_read: Some(600_000), cache_creation: Some(300_000), ..t(1_000_000, 0) },
                0.1 + 0.06 + 0.6,
            ),
            // Anthropic's own fields: 100k fresh beside 600k read and 300k written.
            (
                "cached parts beside the input",
                Tokens { cache_read: Some(600_000), cache_creation: Some(300_000), ..t(100_000, 0) },
                0.1 + 0.06 + 0.6,
            ),
            ("everything cached", Tokens { cache_read: Some(1_000_000), ..t(1_000_000, 0) }, 0.1),
        ]);
    }

    #[test]
    fn reasoning_is_added_only_when_it_is_evidently_outside_the_output() {
        let r = |output, reasoning, total| Tokens { reasoning: Some(reasoning), total, ..t(1_000, output) };
        check(&[
            // OpenAI counts reasoning inside completion tokens: 500 output of which 400 reasoning.
            ("inside the output", r(500, 400, None), (1_000.0 + 500.0 * 10.0) / 1e6),
            ("inside, with a total that says so", r(500, 400, Some(1_500)), (1_000.0 + 500.0 * 10.0) / 1e6),
            // xAI: 2 completion tokens and 317 reasoning tokens.
            ("more reasoning than output", r(2, 317, None), (1_000.0 + 319.0 * 10.0) / 1e6),
            // xAI: the total is prompt + completion + reasoning.
            ("beside, by the total", r(500, 400, Some(1_900)), (1_000.0 + 900.0 * 10.0) / 1e6),
            ("no reasoning", r(500, 0, Some(1_500)), (1_000.0 + 500.0 * 10.0) / 1e6),
        ]);
    }

    #[test]
    fn the_largest_counts_do_not_overflow() {
        let all = Tokens {
            input: Some(MAX_TOKENS),
            output: Some(MAX_TOKENS),
            cache_read: Some(MAX_TOKENS),
            cache_creation: Some(MAX_TOKENS),
            reasoning: Some(MAX_TOKENS),
            total: Some(MAX_TOKENS),
        };
        assert!(cost(&all, &PRICE).is_finite());
    }
}
