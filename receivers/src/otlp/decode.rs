//! Protobuf decoding of export requests from one contiguous buffer.
//!
//! Metrics and logs requests are decoded by prost as generated. Trace
//! requests, the bulk of what an app sends, go through [`decode_traces`]: it
//! walks the envelope levels (request, resource, scope, span, event, link)
//! itself, counts each repeated message field before filling it, and gives
//! the `Vec` exactly that capacity; every other field, and everything below
//! an attribute, is handed to prost's generated `merge_field`. The result is
//! the same `ExportTraceServiceRequest` prost builds (a test checks it field
//! for field), without the doubling reallocations of a growing `Vec`. Those
//! reallocations copy every span once more, and their frees of large blocks
//! make glibc consolidate its fast bins, which the profile of the receive
//! path showed as one of its largest costs. Attributes of the common shape (a
//! key and a string, integer, boolean or double) are read directly too, with
//! one exact allocation per string; any other attribute goes to prost.
//!
//! It uses prost's `encoding` module and `Message::merge_field`, which the
//! generated code itself calls; prost is pinned at 0.14 by
//! `opentelemetry-proto`. It must not depend on any server code.

use magpie_core::proto::collector::trace::v1::ExportTraceServiceRequest;
use magpie_core::proto::common::v1::{AnyValue, KeyValue, any_value};
use magpie_core::proto::trace::v1::span::{Event, Link};
use magpie_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

/// Why a request did not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Prost(#[from] prost::DecodeError),
    #[error("failed to decode Protobuf message: a length-delimited field runs past the end of its message")]
    Truncated,
}

/// An export request type decoded from one contiguous buffer.
pub trait DecodeProto: Sized {
    fn decode_proto(buf: &[u8]) -> Result<Self, DecodeError>;
}

impl DecodeProto for ExportTraceServiceRequest {
    fn decode_proto(buf: &[u8]) -> Result<Self, DecodeError> {
        decode_traces(buf)
    }
}

impl DecodeProto for magpie_core::proto::collector::metrics::v1::ExportMetricsServiceRequest {
    fn decode_proto(buf: &[u8]) -> Result<Self, DecodeError> {
        Ok(Message::decode(buf)?)
    }
}

impl DecodeProto for magpie_core::proto::collector::logs::v1::ExportLogsServiceRequest {
    fn decode_proto(buf: &[u8]) -> Result<Self, DecodeError> {
        Ok(Message::decode(buf)?)
    }
}

/// Decodes an `ExportTraceServiceRequest` with exactly sized repeated fields.
pub fn decode_traces(buf: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    let mut request = ExportTraceServiceRequest::default();
    let [resources] = count(buf, [1])?;
    request.resource_spans.reserve_exact(resources);
    fields(&mut request, buf, |request, tag, body| match tag {
        1 => Some(resource_spans(body).map(|r| request.resource_spans.push(r))),
        _ => None,
    })?;
    Ok(request)
}

fn resource_spans(buf: &[u8]) -> Result<ResourceSpans, DecodeError> {
    let mut r = ResourceSpans::default();
    let [scopes] = count(buf, [2])?;
    r.scope_spans.reserve_exact(scopes);
    fields(&mut r, buf, |r, tag, body| match tag {
        2 => Some(scope_spans(body).map(|s| r.scope_spans.push(s))),
        _ => None,
    })?;
    Ok(r)
}

fn scope_spans(buf: &[u8]) -> Result<ScopeSpans, DecodeError> {
    let mut s = ScopeSpans::default();
    let [spans] = count(buf, [2])?;
    s.spans.reserve_exact(spans);
    fields(&mut s, buf, |s, tag, body| match tag {
        2 => Some(span(body).map(|span| s.spans.push(span))),
        _ => None,
    })?;
    Ok(s)
}

fn span(buf: &[u8]) -> Result<Span, DecodeError> {
    let mut span = Span::default();
    let [attributes, events, links] = count(buf, [9, 11, 13])?;
    span.attributes.reserve_exact(attributes);
    span.events.reserve_exact(events);
    span.links.reserve_exact(links);
    fields(&mut span, buf, |span, tag, body| match tag {
        9 => Some(key_value(body).map(|kv| span.attributes.push(kv))),
        11 => Some(event(body).map(|e| span.events.push(e))),
        13 => Some(link(body).map(|l| span.links.push(l))),
        _ => None,
    })?;
    Ok(span)
}

fn event(buf: &[u8]) -> Result<Event, DecodeError> {
    let mut event = Event::default();
    let [attributes] = count(buf, [3])?;
    event.attributes.reserve_exact(attributes);
    fields(&mut event, buf, |event, tag, body| match tag {
        3 => Some(key_value(body).map(|kv| event.attributes.push(kv))),
        _ => None,
    })?;
    Ok(event)
}

fn link(buf: &[u8]) -> Result<Link, DecodeError> {
    let mut link = Link::default();
    let [attributes] = count(buf, [4])?;
    link.attributes.reserve_exact(attributes);
    fields(&mut link, buf, |link, tag, body| match tag {
        4 => Some(key_value(body).map(|kv| link.attributes.push(kv))),
        _ => None,
    })?;
    Ok(link)
}

/// An attribute. The common shape (a key and a string, integer, boolean or
/// double value, each field once) is read here with one exact allocation per
/// string; anything else (arrays, maps, bytes, a repeated field, invalid
/// UTF-8, a malformed varint) is left to prost, which decodes it or reports
/// the error exactly as it would have.
fn key_value(buf: &[u8]) -> Result<KeyValue, DecodeError> {
    match simple_key_value(buf) {
        Some(kv) => Ok(kv),
        None => Ok(KeyValue::decode(buf)?),
    }
}

fn simple_key_value(mut buf: &[u8]) -> Option<KeyValue> {
    let mut key = None;
    let mut value = None;
    while !buf.is_empty() {
        match (decode_key(&mut buf).ok()?, key.is_none(), value.is_none()) {
            ((1, WireType::LengthDelimited), true, _) => {
                key = Some(std::str::from_utf8(delimited(&mut buf).ok()?).ok()?.to_owned());
            }
            ((2, WireType::LengthDelimited), _, true) => {
                value = Some(simple_any_value(delimited(&mut buf).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(KeyValue { key: key.unwrap_or_default(), value, ..Default::default() })
}

fn simple_any_value(mut buf: &[u8]) -> Option<AnyValue> {
    let mut value = None;
    while !buf.is_empty() {
        if value.is_some() {
            return None;
        }
        value = Some(match decode_key(&mut buf).ok()? {
            (1, WireType::LengthDelimited) => {
                any_value::Value::StringValue(std::str::from_utf8(delimited(&mut buf).ok()?).ok()?.to_owned())
            }
            (2, WireType::Varint) => any_value::Value::BoolValue(decode_varint(&mut buf).ok()? != 0),
            // int64 is a two's-complement varint: the cast is the protobuf conversion.
            (3, WireType::Varint) => any_value::Value::IntValue(decode_varint(&mut buf).ok()? as i64),
            (4, WireType::SixtyFourBit) => {
                let (bits, rest) = buf.split_first_chunk::<8>()?;
                buf = rest;
                any_value::Value::DoubleValue(f64::from_le_bytes(*bits))
            }
            _ => return None,
        });
    }
    Some(AnyValue { value })
}

/// The body of a length-delimited field, after its key.
fn delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = usize::try_from(decode_varint(buf)?).map_err(|_| DecodeError::Truncated)?;
    if len > buf.len() {
        return Err(DecodeError::Truncated);
    }
    let (body, rest) = buf.split_at(len);
    *buf = rest;
    Ok(body)
}

/// How many length-delimited fields of each of `tags` the message in `buf` holds.
fn count<const N: usize>(mut buf: &[u8], tags: [u32; N]) -> Result<[usize; N], DecodeError> {
    let mut counts = [0; N];
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        if wire_type == WireType::LengthDelimited {
            if let Some(i) = tags.iter().position(|t| *t == tag) {
                counts[i] += 1;
            }
            delimited(&mut buf)?;
        } else {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default())?;
        }
    }
    Ok(counts)
}

/// Merges every field of the message in `buf` into `msg`: length-delimited
/// fields `own` takes (it returns `Some`) are decoded by it, all others by
/// prost, with prost's checks of wire types and its handling of unknown fields.
fn fields<M: Message>(
    msg: &mut M,
    mut buf: &[u8],
    mut own: impl FnMut(&mut M, u32, &[u8]) -> Option<Result<(), DecodeError>>,
) -> Result<(), DecodeError> {
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        if wire_type == WireType::LengthDelimited {
            let mut rest = buf;
            let body = delimited(&mut rest)?;
            if let Some(result) = own(msg, tag, body) {
                result?;
                buf = rest;
                continue;
            }
        }
        msg.merge_field(tag, wire_type, &mut buf, DecodeContext::default())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::otlp::{kv_bool, kv_double};
    use magpie_core::otlp::{kv_int, kv_str, testdata};
    use magpie_core::proto::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use magpie_core::proto::resource::v1::Resource;
    use magpie_core::proto::trace::v1::Status;

    /// Decodes `request`'s encoding both ways and checks they agree, and that
    /// every repeated field has exactly its length as capacity.
    fn check(request: &ExportTraceServiceRequest) {
        let bytes = request.encode_to_vec();
        let ours = decode_traces(&bytes).unwrap();
        let prost = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(ours, prost);
        assert_eq!(&ours, request);
        assert_eq!(ours.resource_spans.capacity(), ours.resource_spans.len());
        for r in &ours.resource_spans {
            assert_eq!(r.scope_spans.capacity(), r.scope_spans.len());
            for s in &r.scope_spans {
                assert_eq!(s.spans.capacity(), s.spans.len());
                for span in &s.spans {
                    assert_eq!(span.attributes.capacity(), span.attributes.len());
                    assert_eq!(span.events.capacity(), span.events.len());
                    assert_eq!(span.links.capacity(), span.links.len());
                    for e in &span.events {
                        assert_eq!(e.attributes.capacity(), e.attributes.len());
                    }
                }
            }
        }
    }

    fn rich_span() -> Span {
        let nested = KeyValue {
            key: "list".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue { value: Some(any_value::Value::IntValue(7)) }],
                })),
            }),
            ..Default::default()
        };
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![3; 8],
            trace_state: "k=v".into(),
            name: "POST /api/chat".into(),
            kind: 2,
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            attributes: vec![kv_str("a", "b"), kv_int("n", -5), nested],
            dropped_attributes_count: 1,
            events: vec![Event {
                time_unix_nano: 15,
                name: "e".into(),
                attributes: vec![kv_str("x", "y")],
                dropped_attributes_count: 2,
            }],
            dropped_events_count: 3,
            links: vec![Link {
                trace_id: vec![4; 16],
                span_id: vec![5; 8],
                trace_state: String::new(),
                attributes: vec![kv_str("l", "m")],
                dropped_attributes_count: 0,
                flags: 0x100,
            }],
            dropped_links_count: 4,
            status: Some(Status { code: 2, message: "boom".into() }),
            flags: 0x301,
        }
    }

    #[test]
    fn decodes_exactly_what_prost_decodes() {
        check(&ExportTraceServiceRequest::default());
        check(&ExportTraceServiceRequest { resource_spans: testdata::spans(3, 4) });
        let mut rs = testdata::spans(2, 1);
        rs[0].scope_spans[0].spans.push(rich_span());
        rs[1].scope_spans.push(ScopeSpans {
            scope: Some(InstrumentationScope { name: "s".into(), ..Default::default() }),
            spans: vec![rich_span(), Span::default()],
            schema_url: "https://opentelemetry.io/schemas/1.27.0".into(),
        });
        rs[1].resource =
            Some(Resource { attributes: vec![kv_str("service.name", "x")], ..Default::default() });
        rs.push(ResourceSpans::default());
        check(&ExportTraceServiceRequest { resource_spans: rs });
    }

    #[test]
    fn unknown_fields_are_skipped_and_repeated_singular_fields_merge() {
        let mut bytes = ExportTraceServiceRequest { resource_spans: testdata::spans(1, 2) }.encode_to_vec();
        // Field 99 as a varint, a fixed64 and a length-delimited field: unknown, skipped.
        bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
        bytes.extend_from_slice(&[0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]);
        bytes.extend_from_slice(&[0x9a, 0x06, 0x02, 0xff, 0xff]);
        // The same resource-spans field twice appends, as prost does.
        let again = ExportTraceServiceRequest { resource_spans: testdata::spans(1, 1) }.encode_to_vec();
        bytes.extend_from_slice(&again);
        let ours = decode_traces(&bytes).unwrap();
        assert_eq!(ours, ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap());
        assert_eq!(magpie_core::batch::span_count(&ours.resource_spans), 3);
    }

    #[test]
    fn malformed_input_is_an_error_like_prost() {
        let good = ExportTraceServiceRequest { resource_spans: testdata::spans(2, 3) }.encode_to_vec();
        // Every truncation of a valid request fails both ways or succeeds both ways.
        for cut in 0..good.len() {
            let ours = decode_traces(&good[..cut]);
            let prost = ExportTraceServiceRequest::decode(&good[..cut]);
            assert_eq!(ours.is_ok(), prost.is_ok(), "cut at {cut}: {ours:?} vs {prost:?}");
            if let (Ok(a), Ok(b)) = (ours, prost) {
                assert_eq!(a, b);
            }
        }
        let check_err = |bytes: &[u8]| {
            assert!(decode_traces(bytes).is_err(), "{bytes:?}");
            assert!(ExportTraceServiceRequest::decode(bytes).is_err(), "{bytes:?}");
        };
        check_err(&[0x0a, 0x05, 0x01]);
        // resource_spans with the wrong wire type (varint).
        check_err(&[0x08, 0x01]);
        // A span whose name is not UTF-8.
        let mut rs = testdata::spans(1, 1);
        rs[0].scope_spans[0].spans[0].name = "é".into();
        let mut bytes = ExportTraceServiceRequest { resource_spans: rs }.encode_to_vec();
        let at = bytes.windows(2).position(|w| w == "é".as_bytes()).unwrap();
        bytes[at + 1] = 0x28;
        check_err(&bytes);
        // A deeply nested attribute value hits prost's recursion limit, not the stack.
        let mut value = AnyValue { value: Some(any_value::Value::IntValue(1)) };
        for _ in 0..200 {
            value =
                AnyValue { value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![value] })) };
        }
        let mut rs = testdata::spans(1, 1);
        rs[0].scope_spans[0].spans[0].attributes.push(KeyValue {
            key: "deep".into(),
            value: Some(value),
            ..Default::default()
        });
        check_err(&ExportTraceServiceRequest { resource_spans: rs }.encode_to_vec());
    }

    /// Decodes `bytes` as one attribute both ways; they must agree.
    fn check_attribute(bytes: &[u8]) {
        let ours = key_value(bytes).map_err(|e| e.to_string());
        let prost = KeyValue::decode(bytes).map_err(|e| e.to_string());
        assert_eq!(ours, prost, "{bytes:?}");
    }

    #[test]
    fn attributes_of_every_shape_decode_as_prost_decodes_them() {
        let value = |v: any_value::Value| Some(AnyValue { value: Some(v) });
        let attributes = [
            kv_str("http.route", "/api/chat"),
            kv_str("", ""),
            kv_str("emoji", "é🙂"),
            kv_int("n", -42),
            kv_int("max", i64::MAX),
            kv_bool("b", true),
            kv_bool("f", false),
            kv_double("d", -1.5),
            KeyValue {
                key: "bytes".into(),
                value: value(any_value::Value::BytesValue(vec![0, 1, 2])),
                ..Default::default()
            },
            KeyValue {
                key: "list".into(),
                value: value(any_value::Value::ArrayValue(ArrayValue { values: vec![AnyValue::default()] })),
                ..Default::default()
            },
            KeyValue {
                key: "map".into(),
                value: value(any_value::Value::KvlistValue(KeyValueList { values: vec![kv_str("a", "b")] })),
                ..Default::default()
            },
            KeyValue { key: "empty value".into(), value: Some(AnyValue::default()), ..Default::default() },
            KeyValue { key: "no value".into(), value: None, ..Default::default() },
            KeyValue { key: "indexed".into(), key_strindex: 7, ..Default::default() },
        ];
        for kv in &attributes {
            check_attribute(&kv.encode_to_vec());
            assert_eq!(&key_value(&kv.encode_to_vec()).unwrap(), kv);
        }
        // The key twice: the last one wins.
        check_attribute(&[0x0a, 0x01, b'a', 0x0a, 0x01, b'b']);
        // Two values of the oneof: the last one wins.
        check_attribute(&[0x12, 0x05, 0x0a, 0x01, b'x', 0x18, 0x07]);
        // The value field twice: prost merges them.
        check_attribute(&[0x12, 0x03, 0x0a, 0x01, b'x', 0x12, 0x02, 0x18, 0x07]);
        // An unknown field in the attribute and in its value.
        check_attribute(&[0x0a, 0x01, b'k', 0x28, 0x01, 0x12, 0x04, 0x18, 0x07, 0x30, 0x01]);
        // Errors: invalid UTF-8 in the key and in the value, a truncated double, a bad varint.
        check_attribute(&[0x0a, 0x01, 0xff]);
        check_attribute(&[0x12, 0x03, 0x0a, 0x01, 0xc3]);
        check_attribute(&[0x12, 0x05, 0x21, 1, 2, 3, 4]);
        check_attribute(&[0x12, 0x0b, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        check_attribute(&[0x12, 0x02, 0x18]);
    }
}
