//! JSON text written straight from OTLP values, for the JSONB columns.
//!
//! Rows carry their JSON as text, written here without building a
//! `serde_json::Value` first: one pass, one allocation per document. The
//! shapes match `magpie_core::otlp::attributes_to_json` (attributes as a flat
//! object, bytes as lowercase hex, kvlists as objects, non-finite doubles as
//! strings).

use magpie_core::otlp::hex;
use magpie_core::proto::common::v1::{AnyValue, KeyValue, any_value};
use std::fmt::Write as _;

/// Appends `s` as a JSON string literal.
pub fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends a double as a JSON number, or as a string when it has no JSON form.
pub fn push_f64(out: &mut String, d: f64) {
    if d.is_finite() {
        // Whole doubles keep a `.0`, so readers see a float, as serde_json writes them.
        let _ = write!(out, "{d}");
        if d.fract() == 0.0 {
            out.push_str(".0");
        }
    } else {
        push_str(out, &d.to_string());
    }
}

/// Appends an OTLP value; an absent value is `null`.
pub fn push_any(out: &mut String, v: Option<&any_value::Value>) {
    match v {
        None => out.push_str("null"),
        Some(any_value::Value::StringValue(s)) => push_str(out, s),
        Some(any_value::Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(any_value::Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(any_value::Value::DoubleValue(d)) => push_f64(out, *d),
        Some(any_value::Value::BytesValue(b)) => push_str(out, &hex(b)),
        Some(any_value::Value::ArrayValue(a)) => {
            out.push('[');
            for (i, x) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_any(out, x.value.as_ref());
            }
            out.push(']');
        }
        Some(any_value::Value::KvlistValue(kv)) => push_attrs(out, &kv.values),
        Some(any_value::Value::StringValueStrindex(i)) => {
            let _ = write!(out, "{i}");
        }
    }
}

/// Appends attributes as a flat JSON object.
pub fn push_attrs(out: &mut String, attrs: &[KeyValue]) {
    out.push('{');
    for (i, kv) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, &kv.key);
        out.push(':');
        push_any(out, kv.value.as_ref().and_then(|v| v.value.as_ref()));
    }
    out.push('}');
}

/// Attributes as a JSON object, in a new string.
pub fn attrs(attrs: &[KeyValue]) -> String {
    let mut out = String::with_capacity(16 + attrs.len() * 32);
    push_attrs(&mut out, attrs);
    out
}

/// The value of an `AnyValue` body as text: strings as they are, anything
/// else as JSON.
pub fn body_text(body: Option<&AnyValue>) -> Option<String> {
    match body.and_then(|b| b.value.as_ref()) {
        None => None,
        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
        Some(v) => {
            let mut out = String::new();
            push_any(&mut out, Some(v));
            Some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::otlp::{attributes_to_json, kv_bool, kv_double, kv_int, kv_str};
    use magpie_core::proto::common::v1::{ArrayValue, KeyValueList};

    fn check(attrs_in: Vec<KeyValue>, expected: &str) {
        let text = attrs(&attrs_in);
        assert_eq!(text, expected);
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed, attributes_to_json(&attrs_in), "same shape as the core helper");
    }

    #[test]
    fn attributes_become_a_flat_object() {
        check(vec![], "{}");
        check(vec![kv_str("a", "x"), kv_int("b", -3), kv_bool("c", true)], r#"{"a":"x","b":-3,"c":true}"#);
        check(vec![kv_double("d", 1.5), kv_double("e", 2.0)], r#"{"d":1.5,"e":2.0}"#);
        check(vec![kv_str("q", "say \"hi\"\\\n\t\u{1}é")], r#"{"q":"say \"hi\"\\\n\t\u0001é"}"#);
        check(vec![kv_double("n", f64::NAN)], r#"{"n":"NaN"}"#);
        let kv = |key: &str, value: any_value::Value| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        };
        let array = any_value::Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue { value: Some(any_value::Value::IntValue(1)) },
                AnyValue { value: None },
                AnyValue { value: Some(any_value::Value::BytesValue(vec![0xab, 1])) },
            ],
        });
        let nested = kv(
            "k",
            any_value::Value::KvlistValue(KeyValueList { values: vec![kv_str("x", "1"), kv("arr", array)] }),
        );
        check(vec![nested], r#"{"k":{"x":"1","arr":[1,null,"ab01"]}}"#);
    }

    #[test]
    fn bodies_are_text_or_json() {
        let s = AnyValue { value: Some(any_value::Value::StringValue("plain".into())) };
        assert_eq!(body_text(Some(&s)).as_deref(), Some("plain"));
        let i = AnyValue { value: Some(any_value::Value::IntValue(7)) };
        assert_eq!(body_text(Some(&i)).as_deref(), Some("7"));
        assert_eq!(body_text(None), None);
    }
}
