//! The `tail_sampling` config, in the Collector's `tailsamplingprocessor`
//! layout: `decision_wait`, `num_traces`, `expected_new_traces_per_sec`,
//! `decision_cache` and a list of `policies`, each `{name, type, <type>: {...}}`.
//!
//! Policies are deserialized by hand (not as a serde tagged enum) so every
//! error keeps its place in the file: an unknown key is reported at the key,
//! an unknown `type` at its value, a bad regex or status code at the block
//! that holds it. Where the Collector silently zeroes a missing setting that
//! a policy cannot work without (`key`, `values`, `status_codes`,
//! `sampling_percentage` ...), it is required here.

use magpie_core::config::duration;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, de::Error as _};
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// Config of `tail_sampling`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawConfig")]
pub struct TailSamplingConfig {
    pub decision_wait: Duration,
    pub num_traces: u64,
    pub expected_new_traces_per_sec: u64,
    pub decision_cache: DecisionCacheConfig,
    pub sample_on_first_match: bool,
    pub policies: Vec<PolicyConfig<TOP>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "thirty_seconds", with = "duration")]
    decision_wait: Duration,
    #[serde(default = "fifty_thousand")]
    num_traces: u64,
    #[serde(default)]
    expected_new_traces_per_sec: u64,
    #[serde(default)]
    decision_cache: DecisionCacheConfig,
    #[serde(default)]
    sample_on_first_match: bool,
    policies: Vec<PolicyConfig<TOP>>,
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

fn fifty_thousand() -> u64 {
    50_000
}

impl TryFrom<RawConfig> for TailSamplingConfig {
    type Error = String;

    fn try_from(r: RawConfig) -> Result<Self, String> {
        if r.decision_wait.is_zero() {
            return Err("decision_wait: must be more than 0s".into());
        }
        if r.num_traces == 0 {
            return Err("num_traces: must be at least 1".into());
        }
        if r.policies.is_empty() {
            return Err("policies: give at least one policy".into());
        }
        let mut names = BTreeSet::new();
        for p in &r.policies {
            if !names.insert(p.name.as_str()) {
                return Err(format!("policies: duplicate policy name `{}`", p.name));
            }
        }
        Ok(TailSamplingConfig {
            decision_wait: r.decision_wait,
            num_traces: r.num_traces,
            expected_new_traces_per_sec: r.expected_new_traces_per_sec,
            decision_cache: r.decision_cache,
            sample_on_first_match: r.sample_on_first_match,
            policies: r.policies,
        })
    }
}

/// Sizes of the LRU caches of trace ids already decided. `0` (the
/// Collector's default) turns a cache off.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionCacheConfig {
    #[serde(default)]
    pub sampled_cache_size: usize,
    #[serde(default)]
    pub non_sampled_cache_size: usize,
}

/// Where a policy sits, which limits the types it may have: `and` and `drop`
/// take plain policies only; `composite` takes plain policies and `and`.
pub const TOP: u8 = 0;
pub const COMPOSITE_SUB: u8 = 1;
pub const LEAF: u8 = 2;

/// One policy: a name and its type's settings.
#[derive(Clone, Debug)]
pub struct PolicyConfig<const LEVEL: u8> {
    pub name: String,
    pub kind: PolicyKind,
}

#[derive(Clone, Debug)]
pub enum PolicyKind {
    AlwaysSample,
    Latency(LatencyConfig),
    NumericAttribute(NumericAttributeConfig),
    Probabilistic(ProbabilisticConfig),
    StatusCode(StatusCodeConfig),
    StringAttribute(StringAttributeConfig),
    BooleanAttribute(BooleanAttributeConfig),
    RateLimiting(RateLimitingConfig),
    SpanCount(SpanCountConfig),
    TraceState(TraceStateConfig),
    And(Vec<PolicyConfig<LEAF>>),
    Drop(Vec<PolicyConfig<LEAF>>),
    Composite(CompositeConfig),
}

/// The policy types, as written in `type:` and as the key of their settings.
const TYPES: &[&str] = &[
    "always_sample",
    "latency",
    "numeric_attribute",
    "probabilistic",
    "status_code",
    "string_attribute",
    "boolean_attribute",
    "rate_limiting",
    "span_count",
    "trace_state",
    "and",
    "drop",
    "composite",
];

const OTTL: &str = "policy type `ottl_condition` is not supported: OTTL conditions need the Collector's OTTL engine; use string_attribute, numeric_attribute, boolean_attribute or status_code policies";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TypeName(&'static str);

impl<'de> Deserialize<'de> for TypeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "ottl_condition" {
            return Err(D::Error::custom(OTTL));
        }
        TYPES
            .iter()
            .find(|t| **t == s)
            .map(|t| TypeName(t))
            .ok_or_else(|| D::Error::unknown_variant(&s, TYPES))
    }
}

/// A key of a policy's map: `name`, `type` or one of the type keys.
struct Field(&'static str);

const FIELDS: &[&str] = &[
    "name",
    "type",
    "latency",
    "numeric_attribute",
    "probabilistic",
    "status_code",
    "string_attribute",
    "boolean_attribute",
    "rate_limiting",
    "span_count",
    "trace_state",
    "and",
    "drop",
    "composite",
];

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a policy setting")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                if v == "ottl_condition" {
                    return Err(E::custom(OTTL));
                }
                FIELDS.iter().find(|f| **f == v).map(|f| Field(f)).ok_or_else(|| E::unknown_field(v, FIELDS))
            }
        }
        d.deserialize_identifier(V)
    }
}

impl<'de, const LEVEL: u8> Deserialize<'de> for PolicyConfig<LEVEL> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const L: u8>;
        impl<'de, const L: u8> Visitor<'de> for V<L> {
            type Value = PolicyConfig<L>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a policy: {name, type, <type>: {...}}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut name: Option<String> = None;
                let mut kind_name: Option<TypeName> = None;
                let mut settings: Option<(&'static str, PolicyKind)> = None;
                while let Some(Field(field)) = map.next_key::<Field>()? {
                    let kind = match field {
                        "name" => {
                            name = Some(map.next_value()?);
                            continue;
                        }
                        "type" => {
                            let t: TypeName = map.next_value()?;
                            kind_name = Some(t);
                            continue;
                        }
                        "latency" => PolicyKind::Latency(map.next_value()?),
                        "numeric_attribute" => PolicyKind::NumericAttribute(map.next_value()?),
                        "probabilistic" => PolicyKind::Probabilistic(map.next_value()?),
                        "status_code" => PolicyKind::StatusCode(map.next_value()?),
                        "string_attribute" => PolicyKind::StringAttribute(map.next_value()?),
                        "boolean_attribute" => PolicyKind::BooleanAttribute(map.next_value()?),
                        "rate_limiting" => PolicyKind::RateLimiting(map.next_value()?),
                        "span_count" => PolicyKind::SpanCount(map.next_value()?),
                        "trace_state" => PolicyKind::TraceState(map.next_value()?),
                        "and" => PolicyKind::And(map.next_value::<AndConfig>()?.and_sub_policy),
                        "drop" => PolicyKind::Drop(map.next_value::<DropConfig>()?.drop_sub_policy),
                        _ => PolicyKind::Composite(map.next_value()?),
                    };
                    if let Some((other, _)) = settings {
                        return Err(A::Error::custom(format!(
                            "a policy has the settings of one type: both `{other}` and `{field}` are given"
                        )));
                    }
                    settings = Some((field, kind));
                }
                let name = name.ok_or_else(|| A::Error::missing_field("name"))?;
                if name.trim().is_empty() {
                    return Err(A::Error::custom("name: a policy needs a name"));
                }
                let TypeName(t) = kind_name.ok_or_else(|| A::Error::missing_field("type"))?;
                let allowed: &[&str] = match L {
                    TOP => TYPES,
                    COMPOSITE_SUB => &TYPES[..11],
                    _ => &TYPES[..10],
                };
                if !allowed.contains(&t) {
                    let under = if L == COMPOSITE_SUB {
                        "composite_sub_policy"
                    } else {
                        "and_sub_policy or drop_sub_policy"
                    };
                    return Err(A::Error::custom(format!(
                        "policy `{name}`: type `{t}` cannot be used under {under}"
                    )));
                }
                let kind = match (t, settings) {
                    ("always_sample", None) => PolicyKind::AlwaysSample,
                    (_, Some((field, kind))) if field == t => kind,
                    (_, Some((field, _))) => {
                        return Err(A::Error::custom(format!(
                            "policy `{name}` is of type `{t}`, but has `{field}` settings"
                        )));
                    }
                    (_, None) => {
                        return Err(A::Error::custom(format!(
                            "policy `{name}` is of type `{t}`: add its settings under `{t}:`"
                        )));
                    }
                };
                Ok(PolicyConfig { name, kind })
            }
        }
        d.deserialize_map(V::<LEVEL>)
    }
}

/// `latency`: the trace's duration (earliest start to latest end).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    pub threshold_ms: i64,
    #[serde(default)]
    pub upper_threshold_ms: i64,
}

/// `numeric_attribute`: an integer attribute in `[min_value, max_value]`.
/// As in the Collector, `0` (or absent) means "no bound" for either.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawNumeric")]
pub struct NumericAttributeConfig {
    pub key: String,
    pub min_value: i64,
    pub max_value: i64,
    pub invert_match: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNumeric {
    key: String,
    #[serde(default)]
    min_value: i64,
    #[serde(default)]
    max_value: i64,
    #[serde(default)]
    invert_match: bool,
}

impl TryFrom<RawNumeric> for NumericAttributeConfig {
    type Error = String;
    fn try_from(r: RawNumeric) -> Result<Self, String> {
        if r.min_value == 0 && r.max_value == 0 {
            return Err("give min_value, max_value or both (0 means no bound, as in the Collector)".into());
        }
        let lo = if r.min_value == 0 { i64::MIN } else { r.min_value };
        let hi = if r.max_value == 0 { i64::MAX } else { r.max_value };
        if lo > hi {
            return Err(format!("min_value {} is above max_value {}", r.min_value, r.max_value));
        }
        Ok(NumericAttributeConfig {
            key: non_empty_key(r.key)?,
            min_value: lo,
            max_value: hi,
            invert_match: r.invert_match,
        })
    }
}

fn non_empty_key(key: String) -> Result<String, String> {
    if key.is_empty() { Err("key: name the attribute to match".into()) } else { Ok(key) }
}

/// `probabilistic`: a share of traces, by a salted hash of the trace id.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticConfig {
    #[serde(default)]
    pub hash_salt: String,
    pub sampling_percentage: f64,
}

/// `status_code`: any span with one of these status codes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawStatus")]
pub struct StatusCodeConfig {
    pub status_codes: Vec<StatusCodeName>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum StatusCodeName {
    #[serde(rename = "UNSET")]
    Unset,
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "ERROR")]
    Error,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatus {
    status_codes: Vec<StatusCodeName>,
}

impl TryFrom<RawStatus> for StatusCodeConfig {
    type Error = String;
    fn try_from(r: RawStatus) -> Result<Self, String> {
        if r.status_codes.is_empty() {
            return Err("status_codes: give at least one of OK, ERROR, UNSET".into());
        }
        Ok(StatusCodeConfig { status_codes: r.status_codes })
    }
}

/// `string_attribute`: a string attribute equal to one of `values` (or
/// matching one of them as a regex).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawString")]
pub struct StringAttributeConfig {
    pub key: String,
    pub values: Vec<String>,
    pub enabled_regex_matching: bool,
    pub cache_max_size: usize,
    pub invert_match: bool,
    /// The compiled `values` when `enabled_regex_matching`.
    pub regexes: Vec<regex::Regex>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawString {
    key: String,
    values: Vec<String>,
    #[serde(default)]
    enabled_regex_matching: bool,
    #[serde(default)]
    cache_max_size: i64,
    #[serde(default)]
    invert_match: bool,
}

/// The Collector's default size of the regex match cache.
pub const DEFAULT_REGEX_CACHE: usize = 128;

impl TryFrom<RawString> for StringAttributeConfig {
    type Error = String;
    fn try_from(r: RawString) -> Result<Self, String> {
        if r.values.is_empty() {
            return Err("values: give at least one value".into());
        }
        let regexes = if r.enabled_regex_matching {
            r.values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    regex::Regex::new(v).map_err(|e| {
                        let e = e.to_string().replace('\n', " ");
                        format!("values[{i}]: invalid regular expression `{v}`: {e}")
                    })
                })
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        Ok(StringAttributeConfig {
            key: non_empty_key(r.key)?,
            values: r.values,
            enabled_regex_matching: r.enabled_regex_matching,
            cache_max_size: usize::try_from(r.cache_max_size)
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_REGEX_CACHE),
            invert_match: r.invert_match,
            regexes,
        })
    }
}

/// `boolean_attribute`: a boolean attribute equal to `value`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawBool")]
pub struct BooleanAttributeConfig {
    pub key: String,
    pub value: bool,
    pub invert_match: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBool {
    key: String,
    value: bool,
    #[serde(default)]
    invert_match: bool,
}

impl TryFrom<RawBool> for BooleanAttributeConfig {
    type Error = String;
    fn try_from(r: RawBool) -> Result<Self, String> {
        Ok(BooleanAttributeConfig {
            key: non_empty_key(r.key)?,
            value: r.value,
            invert_match: r.invert_match,
        })
    }
}

/// `rate_limiting`: a token bucket of spans.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingConfig {
    pub spans_per_second: i64,
    /// Bucket size; `0` (the default) means twice `spans_per_second`.
    #[serde(default)]
    pub burst_capacity: i64,
}

/// `span_count`: the number of spans in `[min_spans, max_spans]`; `max_spans`
/// `0` means no upper bound.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanCountConfig {
    pub min_spans: i32,
    #[serde(default)]
    pub max_spans: i32,
}

/// `trace_state`: a span whose W3C `tracestate` has `key` with one of `values`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceStateConfig {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AndConfig {
    and_sub_policy: Vec<PolicyConfig<LEAF>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DropConfig {
    drop_sub_policy: Vec<PolicyConfig<LEAF>>,
}

/// `composite`: sub-policies in order, each with a share of a spans-per-second budget.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawComposite")]
pub struct CompositeConfig {
    pub max_total_spans_per_second: i64,
    pub policy_order: Vec<String>,
    pub composite_sub_policy: Vec<PolicyConfig<COMPOSITE_SUB>>,
    pub rate_allocation: Vec<RateAllocation>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateAllocation {
    pub policy: String,
    #[serde(default)]
    pub percent: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComposite {
    max_total_spans_per_second: i64,
    #[serde(default)]
    policy_order: Vec<String>,
    composite_sub_policy: Vec<PolicyConfig<COMPOSITE_SUB>>,
    #[serde(default)]
    rate_allocation: Vec<RateAllocation>,
}

impl TryFrom<RawComposite> for CompositeConfig {
    type Error = String;
    fn try_from(r: RawComposite) -> Result<Self, String> {
        if r.composite_sub_policy.is_empty() {
            return Err("composite_sub_policy: give at least one policy".into());
        }
        let names: Vec<&str> = r.composite_sub_policy.iter().map(|p| p.name.as_str()).collect();
        for a in &r.rate_allocation {
            if !names.contains(&a.policy.as_str()) {
                return Err(format!("rate_allocation: `{}` is not a composite_sub_policy", a.policy));
            }
        }
        for n in &r.policy_order {
            if !names.contains(&n.as_str()) {
                return Err(format!("policy_order: `{n}` is not a composite_sub_policy"));
            }
        }
        Ok(CompositeConfig {
            max_total_spans_per_second: r.max_total_spans_per_second,
            policy_order: r.policy_order,
            composite_sub_policy: r.composite_sub_policy,
            rate_allocation: r.rate_allocation,
        })
    }
}
