//! Helpers over the OTLP prost types that every component needs: walk spans
//! with their resource and scope, look up an attribute by any of its semconv
//! aliases, build gauge and sum data points, and print ids as hex.

use crate::proto::common::v1::{AnyValue, KeyValue, any_value};
use crate::proto::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum, metric, number_data_point,
};
use crate::proto::resource::v1::Resource;
use crate::proto::trace::v1::{ResourceSpans, Span};
use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, as OTLP timestamps are written.
pub fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Lowercase hex of an id (trace id, span id); empty for an empty id.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// A string attribute.
pub fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..Default::default()
    }
}

/// A double attribute.
pub fn kv_double(key: &str, value: f64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::DoubleValue(value)) }),
        ..Default::default()
    }
}

/// A boolean attribute.
pub fn kv_bool(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::BoolValue(value)) }),
        ..Default::default()
    }
}

/// The value of the first attribute whose key is any of `aliases`, trying the
/// aliases in order (so the stable semconv name wins over the old one).
pub fn attr<'a>(attrs: &'a [KeyValue], aliases: &[&str]) -> Option<&'a any_value::Value> {
    aliases.iter().find_map(|name| {
        attrs.iter().find(|kv| kv.key == *name).and_then(|kv| kv.value.as_ref()?.value.as_ref())
    })
}

/// A string-typed attribute by alias; other types are rendered as strings.
pub fn attr_string(attrs: &[KeyValue], aliases: &[&str]) -> Option<String> {
    attr(attrs, aliases).map(any_value_to_string)
}

/// An integer attribute by alias; strings holding integers and whole doubles count too.
pub fn attr_i64(attrs: &[KeyValue], aliases: &[&str]) -> Option<i64> {
    match attr(attrs, aliases)? {
        any_value::Value::IntValue(i) => Some(*i),
        any_value::Value::DoubleValue(d) if d.fract() == 0.0 && d.is_finite() => Some(*d as i64),
        any_value::Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A numeric attribute by alias, as f64.
pub fn attr_f64(attrs: &[KeyValue], aliases: &[&str]) -> Option<f64> {
    match attr(attrs, aliases)? {
        any_value::Value::IntValue(i) => Some(*i as f64),
        any_value::Value::DoubleValue(d) => Some(*d),
        any_value::Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A resource's `service.name`, if set.
pub fn service_name(resource: Option<&Resource>) -> Option<String> {
    resource.and_then(|r| attr_string(&r.attributes, &["service.name"]))
}

/// Renders any OTLP value as a plain string (arrays and maps as JSON).
pub fn any_value_to_string(v: &any_value::Value) -> String {
    match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        other => any_value_to_json(other).to_string(),
    }
}

/// An OTLP value as plain JSON (bytes as lowercase hex, kvlists as objects).
pub fn any_value_to_json(v: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        any_value::Value::StringValue(s) => J::String(s.clone()),
        any_value::Value::BoolValue(b) => J::Bool(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(d) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(d.to_string()), J::Number)
        }
        any_value::Value::BytesValue(b) => J::String(hex(b)),
        any_value::Value::ArrayValue(a) => {
            J::Array(a.values.iter().map(|x| x.value.as_ref().map_or(J::Null, any_value_to_json)).collect())
        }
        any_value::Value::KvlistValue(kv) => attributes_to_json(&kv.values),
        // Only profiles use string-table references; keep the index visible.
        any_value::Value::StringValueStrindex(i) => J::from(*i),
    }
}

/// Attributes as a flat JSON object (`{"http.route": "/chat", ...}`).
pub fn attributes_to_json(attrs: &[KeyValue]) -> serde_json::Value {
    let mut map = serde_json::Map::with_capacity(attrs.len());
    for kv in attrs {
        let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
        map.insert(kv.key.clone(), v.map_or(serde_json::Value::Null, any_value_to_json));
    }
    serde_json::Value::Object(map)
}

/// Calls `f(resource, span)` for every span, in order.
pub fn for_each_span<'a>(rs: &'a [ResourceSpans], mut f: impl FnMut(Option<&'a Resource>, &'a Span)) {
    for r in rs {
        for ss in &r.scope_spans {
            for span in &ss.spans {
                f(r.resource.as_ref(), span);
            }
        }
    }
}

/// A gauge metric with one double data point.
pub fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_string(),
        unit: unit.to_string(),
        data: Some(metric::Data::Gauge(Gauge { data_points: points })),
        ..Default::default()
    }
}

/// A cumulative sum metric.
pub fn sum(name: &str, unit: &str, monotonic: bool, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_string(),
        unit: unit.to_string(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: monotonic,
        })),
        ..Default::default()
    }
}

/// A double data point.
pub fn double_point(value: f64, start: u64, time: u64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

/// An integer data point.
pub fn int_point(value: i64, start: u64, time: u64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsInt(value)),
        ..Default::default()
    }
}

/// GenAI span attributes read under more than one name (current semantic
/// conventions first, then older ones and OpenLLMetry's), shared by every
/// component that reads token counts or costs, so they all agree.
pub mod genai {
    /// Input (prompt) tokens.
    pub const INPUT_TOKENS: &[&str] =
        &["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens"];
    /// Output (completion) tokens.
    pub const OUTPUT_TOKENS: &[&str] =
        &["gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens"];
    /// The call's USD cost: the `llm_cost` processor's default attribute, then OpenLLMetry's.
    pub const COST_USD: &[&str] = &["gen_ai.usage.cost_usd", "llm.cost_usd"];
}

/// Builders of small, valid OTLP data (and awkward text) for tests and benchmarks.
pub mod testdata {
    use super::*;

    /// Strings made of the characters parsers trip on: separators, quotes,
    /// digits, hex letters, and multi-byte characters next to all of them.
    pub fn awkward_strings() -> Vec<String> {
        const PIECES: &[&str] = &[
            "-", "@", ".", "/", ":", "(", ")", "'", "\"", "`", "0", "7", "123", "0x", "ab", "f", "é", "中",
            "😀", " ", "\n", "at ", "File \"", ", line ", " in ", "=", ",", ";", "th:", "rv:", "ot=", "v1",
            "grok", "claude", "\u{0}", "::", "\t",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut out = vec![String::new()];
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            let mut s = String::new();
            for k in 0..len {
                s.push_str(PIECES[((state >> (k % 50)) as usize + k * 31) % PIECES.len()]);
            }
            out.push(s);
        }
        out
    }
    use crate::proto::common::v1::InstrumentationScope;
    use crate::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use crate::proto::metrics::v1::{ResourceMetrics, ScopeMetrics};
    use crate::proto::trace::v1::{ScopeSpans, Status, span::SpanKind, status::StatusCode};

    fn resource(service: &str) -> Option<Resource> {
        Some(Resource { attributes: vec![kv_str("service.name", service)], ..Default::default() })
    }

    fn scope() -> Option<InstrumentationScope> {
        Some(InstrumentationScope { name: "magpie.test".into(), version: "1".into(), ..Default::default() })
    }

    /// `resources` resources with `per_resource` SERVER spans each; ids are unique and deterministic.
    pub fn spans(resources: usize, per_resource: usize) -> Vec<ResourceSpans> {
        (0..resources)
            .map(|r| ResourceSpans {
                resource: resource(&format!("svc-{r}")),
                scope_spans: vec![ScopeSpans {
                    scope: scope(),
                    spans: (0..per_resource).map(|i| span(r, i)).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect()
    }

    fn span(r: usize, i: usize) -> Span {
        let n = (r as u64) << 32 | i as u64;
        let start = 1_700_000_000_000_000_000 + n * 1_000;
        Span {
            trace_id: [&[0xab; 8][..], &n.to_be_bytes()].concat(),
            span_id: n.to_be_bytes().to_vec(),
            name: format!("GET /items/{i}"),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + 2_500_000,
            attributes: vec![
                kv_str("http.request.method", "GET"),
                kv_str("http.route", "/items/{id}"),
                kv_int("http.response.status_code", 200),
            ],
            status: Some(Status { code: StatusCode::Ok as i32, message: String::new() }),
            ..Default::default()
        }
    }

    /// `resources` resources with `per_resource` gauges of one point each.
    pub fn gauges(resources: usize, per_resource: usize) -> Vec<ResourceMetrics> {
        (0..resources)
            .map(|r| ResourceMetrics {
                resource: resource(&format!("svc-{r}")),
                scope_metrics: vec![ScopeMetrics {
                    scope: scope(),
                    metrics: (0..per_resource)
                        .map(|i| {
                            gauge(
                                &format!("test.gauge.{i}"),
                                "1",
                                vec![double_point(i as f64, 0, 1_700_000_000_000_000_000, vec![])],
                            )
                        })
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect()
    }

    /// `resources` resources with `per_resource` log records each.
    pub fn logs(resources: usize, per_resource: usize) -> Vec<ResourceLogs> {
        (0..resources)
            .map(|r| ResourceLogs {
                resource: resource(&format!("svc-{r}")),
                scope_logs: vec![ScopeLogs {
                    scope: scope(),
                    log_records: (0..per_resource)
                        .map(|i| LogRecord {
                            time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                            severity_number: 9,
                            severity_text: "INFO".into(),
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(format!("log {i}"))),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x0a, 0xff, 0x00]), "0aff00");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn attribute_lookup_prefers_the_first_alias() {
        let attrs = vec![kv_str("http.method", "GET"), kv_str("http.request.method", "POST")];
        assert_eq!(attr_string(&attrs, &["http.request.method", "http.method"]).as_deref(), Some("POST"));
        assert_eq!(attr_string(&attrs, &["nope", "http.method"]).as_deref(), Some("GET"));
        assert_eq!(attr_string(&attrs, &["nope"]), None);
        let attrs = vec![kv_str("n", "42"), kv_double("d", 3.0), kv_bool("b", true)];
        assert_eq!(attr_i64(&attrs, &["n"]), Some(42));
        assert_eq!(attr_i64(&attrs, &["d"]), Some(3));
        assert_eq!(attr_i64(&attrs, &["b"]), None);
        assert_eq!(attr_f64(&attrs, &["n"]), Some(42.0));
    }

    #[test]
    fn values_render_as_json() {
        let attrs = vec![kv_str("s", "x"), kv_int("i", 1 << 60), kv_double("nan", f64::NAN)];
        let j = attributes_to_json(&attrs);
        assert_eq!(j["s"], "x");
        assert_eq!(j["i"], 1i64 << 60);
        assert_eq!(j["nan"], "NaN");
    }
}
