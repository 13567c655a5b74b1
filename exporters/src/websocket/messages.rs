//! The feed's messages: their framing (`type`, `timestamp`, `seq`, body),
//! RFC 3339 timestamps, the summaries of spans, GenAI calls and errors, and
//! the `subscribe` request with its filter.
//!
//! Pure functions over OTLP types and JSON; no IO.

use magpie_core::otlp::{attr_f64, attr_i64, attr_string, genai, hex};
use magpie_core::proto::resource::v1::Resource;
use magpie_core::proto::trace::v1::{ResourceSpans, Span, span::SpanKind, status::StatusCode};
use serde::Serialize;
use std::collections::BTreeSet;

/// What a client can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stream {
    /// `system_metrics` every interval (on by default).
    SystemMetrics,
    /// `span`: one summary per span.
    Spans,
    /// `llm_call`: one summary per GenAI span.
    LlmCalls,
    /// `error`: one summary per failed span.
    Errors,
    /// `http_routes` every interval: rate, errors and latency percentiles by route.
    HttpRoutes,
    /// `llm_usage` every interval: calls and tokens by model.
    LlmUsage,
}

impl Stream {
    pub const ALL: [Stream; 6] = [
        Stream::SystemMetrics,
        Stream::Spans,
        Stream::LlmCalls,
        Stream::Errors,
        Stream::HttpRoutes,
        Stream::LlmUsage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stream::SystemMetrics => "system_metrics",
            Stream::Spans => "spans",
            Stream::LlmCalls => "llm_calls",
            Stream::Errors => "errors",
            Stream::HttpRoutes => "http_routes",
            Stream::LlmUsage => "llm_usage",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    fn parse(name: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for Unix nanoseconds.
pub fn rfc3339(unix_nanos: u64) -> String {
    let secs = unix_nanos / 1_000_000_000;
    let micros = (unix_nanos % 1_000_000_000) / 1_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One message as it goes on the wire: `{"type":…,"timestamp":…,"seq":…, <body fields>}`.
/// `body` is a serialized JSON object.
pub fn frame(kind: &str, timestamp: &str, seq: u64, body: &str) -> String {
    let rest = body.trim().strip_prefix('{').unwrap_or("}");
    let sep = if rest.trim_start().starts_with('}') { "" } else { "," };
    let mut out = String::with_capacity(kind.len() + timestamp.len() + body.len() + 48);
    out.push_str("{\"type\":\"");
    out.push_str(kind);
    out.push_str("\",\"timestamp\":\"");
    out.push_str(timestamp);
    out.push_str("\",\"seq\":");
    out.push_str(&seq.to_string());
    out.push_str(sep);
    out.push_str(rest);
    out
}

/// What a per-span message can be filtered on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Keys {
    pub service: String,
    pub name: String,
    pub route: Option<String>,
    pub duration_ms: f64,
    pub provider: Option<String>,
    pub model: Option<String>,
}

/// A message ready to be numbered and sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    pub stream: Stream,
    pub kind: &'static str,
    pub timestamp: String,
    /// A JSON object: the message's own fields.
    pub body: String,
    /// For per-span messages: what filters look at.
    pub keys: Option<Keys>,
}

/// `span` body.
#[derive(Serialize)]
struct SpanBody<'a> {
    trace_id: String,
    span_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    parent_span_id: String,
    service: &'a str,
    name: &'a str,
    kind: &'static str,
    duration_ms: f64,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<i64>,
}

/// `llm_call` body.
#[derive(Serialize)]
struct LlmBody<'a> {
    trace_id: String,
    span_id: String,
    service: &'a str,
    name: &'a str,
    provider: Option<String>,
    model: Option<String>,
    operation: Option<String>,
    duration_ms: f64,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    /// What the `llm_cost` processor put on the span, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usd: Option<f64>,
    status: &'static str,
}

/// `error` body.
#[derive(Serialize)]
struct ErrorBody<'a> {
    trace_id: String,
    span_id: String,
    service: &'a str,
    name: &'a str,
    duration_ms: f64,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    exception_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<i64>,
}

fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Unspecified => "unspecified",
        SpanKind::Internal => "internal",
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

fn status(span: &Span) -> (&'static str, String) {
    match span
        .status
        .as_ref()
        .map(|s| (StatusCode::try_from(s.code).unwrap_or(StatusCode::Unset), &s.message))
    {
        Some((StatusCode::Ok, _)) => ("ok", String::new()),
        Some((StatusCode::Error, m)) => ("error", m.clone()),
        _ => ("unset", String::new()),
    }
}

/// Whether a span is a GenAI call.
fn is_llm(span: &Span) -> bool {
    attr_string(
        &span.attributes,
        &["gen_ai.provider.name", "gen_ai.system", "gen_ai.operation.name", "gen_ai.request.model"],
    )
    .is_some()
}

/// The messages `wants` asks for, from every span of `rs`.
pub fn span_messages(rs: &[ResourceSpans], wants: impl Fn(Stream) -> bool) -> Vec<Outgoing> {
    let (spans, llm, errors) = (wants(Stream::Spans), wants(Stream::LlmCalls), wants(Stream::Errors));
    let mut out = Vec::new();
    if !(spans || llm || errors) {
        return out;
    }
    for r in rs {
        let service = service_name(r.resource.as_ref());
        for ss in &r.scope_spans {
            for span in &ss.spans {
                summarize(&service, span, spans, llm, errors, &mut out);
            }
        }
    }
    out
}

fn service_name(r: Option<&Resource>) -> String {
    r.and_then(|r| attr_string(&r.attributes, &["service.name"])).unwrap_or_else(|| "unknown_service".into())
}

fn summarize(service: &str, span: &Span, spans: bool, llm: bool, errors: bool, out: &mut Vec<Outgoing>) {
    let a = &span.attributes;
    let duration_ms = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) as f64 / 1e6;
    let duration_ms = (duration_ms * 1000.0).round() / 1000.0;
    let timestamp = rfc3339(span.end_time_unix_nano.max(span.start_time_unix_nano));
    let method = attr_string(a, &["http.request.method", "http.method"]);
    let route = attr_string(a, &["http.route"]);
    let status_code = attr_i64(a, &["http.response.status_code", "http.status_code"]);
    let (status, status_message) = status(span);
    let provider = attr_string(a, &["gen_ai.provider.name", "gen_ai.system"]);
    let model = attr_string(a, &["gen_ai.response.model", "gen_ai.request.model"]);
    let keys = Keys {
        service: service.to_string(),
        name: span.name.clone(),
        route: route.clone(),
        duration_ms,
        provider: provider.clone(),
        model: model.clone(),
    };
    let json = |v: Result<String, serde_json::Error>| v.unwrap_or_else(|_| "{}".to_string());
    if spans {
        let body = SpanBody {
            trace_id: hex(&span.trace_id),
            span_id: hex(&span.span_id),
            parent_span_id: hex(&span.parent_span_id),
            service,
            name: &span.name,
            kind: kind_name(span.kind),
            duration_ms,
            status,
            method: method.clone(),
            route: route.clone(),
            status_code,
        };
        out.push(Outgoing {
            stream: Stream::Spans,
            kind: "span",
            timestamp: timestamp.clone(),
            body: json(serde_json::to_string(&body)),
            keys: Some(keys.clone()),
        });
    }
    if llm && is_llm(span) {
        let body = LlmBody {
            trace_id: hex(&span.trace_id),
            span_id: hex(&span.span_id),
            service,
            name: &span.name,
            provider: provider.clone(),
            model: model.clone(),
            operation: attr_string(a, &["gen_ai.operation.name"]),
            duration_ms,
            input_tokens: attr_i64(a, genai::INPUT_TOKENS),
            output_tokens: attr_i64(a, genai::OUTPUT_TOKENS),
            cost_usd: attr_f64(a, genai::COST_USD),
            status,
        };
        out.push(Outgoing {
            stream: Stream::LlmCalls,
            kind: "llm_call",
            timestamp: timestamp.clone(),
            body: json(serde_json::to_string(&body)),
            keys: Some(keys.clone()),
        });
    }
    let server_error = span.kind == SpanKind::Server as i32 && status_code.is_some_and(|c| c >= 500);
    if errors && (status == "error" || server_error) {
        let exception = span.events.iter().find(|e| e.name == "exception");
        let exception_type = exception.and_then(|e| attr_string(&e.attributes, &["exception.type"]));
        let message = Some(status_message)
            .filter(|m| !m.is_empty())
            .or_else(|| exception.and_then(|e| attr_string(&e.attributes, &["exception.message"])))
            .or_else(|| status_code.map(|c| format!("HTTP {c}")))
            .unwrap_or_else(|| "error".to_string());
        let body = ErrorBody {
            trace_id: hex(&span.trace_id),
            span_id: hex(&span.span_id),
            service,
            name: &span.name,
            duration_ms,
            message,
            exception_type,
            method,
            route,
            status_code,
        };
        out.push(Outgoing {
            stream: Stream::Errors,
            kind: "error",
            timestamp,
            body: json(serde_json::to_string(&body)),
            keys: Some(keys),
        });
    }
}

/// A client's filter over per-span messages: every field that is set must match.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// `service.name`; `*` matches any run of characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Span name glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `http.route` glob; spans without a route never match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Only spans at least this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl Filter {
    pub fn matches(&self, k: &Keys) -> bool {
        let opt = |pattern: &Option<String>, value: Option<&str>| match pattern {
            None => true,
            Some(p) => value.is_some_and(|v| glob(p, v)),
        };
        opt(&self.service, Some(&k.service))
            && opt(&self.name, Some(&k.name))
            && opt(&self.route, k.route.as_deref())
            && opt(&self.provider, k.provider.as_deref())
            && opt(&self.model, k.model.as_deref())
            && self.min_duration_ms.is_none_or(|m| k.duration_ms >= m)
    }
}

/// `*` matches any run of characters; everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// What a client asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    pub streams: BTreeSet<Stream>,
    pub filter: Filter,
}

impl Default for Subscription {
    fn default() -> Self {
        Subscription { streams: [Stream::SystemMetrics].into(), filter: Filter::default() }
    }
}

impl Subscription {
    pub fn wants(&self, stream: Stream, keys: Option<&Keys>) -> bool {
        self.streams.contains(&stream) && keys.is_none_or(|k| self.filter.matches(k))
    }

    /// The `subscribed` reply body.
    pub fn ack_body(&self) -> String {
        let streams: Vec<&str> = self.streams.iter().map(|s| s.name()).collect();
        serde_json::json!({ "streams": streams, "filter": self.filter }).to_string()
    }
}

/// Parses a client's text message: `{"type":"subscribe","streams":[…],"filter":{…}}`.
/// The streams replace the client's current set.
pub fn parse_request(text: &str) -> Result<Subscription, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        streams: Vec<String>,
        #[serde(default)]
        filter: Filter,
    }
    let r: Request = serde_json::from_str(text).map_err(|e| format!("invalid request: {e}"))?;
    if r.kind != "subscribe" {
        return Err(format!(
            "unknown request type `{}`: send {{\"type\":\"subscribe\",\"streams\":[...]}}",
            r.kind
        ));
    }
    let mut streams = BTreeSet::new();
    for s in &r.streams {
        match Stream::parse(s) {
            Some(x) => {
                streams.insert(x);
            }
            None => {
                let names: Vec<&str> = Stream::ALL.iter().map(|s| s.name()).collect();
                return Err(format!("unknown stream `{s}`, expected one of: {}", names.join(", ")));
            }
        }
    }
    Ok(Subscription { streams, filter: r.filter })
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::otlp::{kv_double, kv_int, kv_str, testdata};
    use magpie_core::proto::trace::v1::{Status, span::Event};

    #[test]
    fn timestamps_are_rfc3339_utc() {
        for (nanos, want) in [
            (0, "1970-01-01T00:00:00.000000Z"),
            (1_735_000_200_123_456_789, "2024-12-24T00:30:00.123456Z"),
            (951_782_400_000_000_000, "2000-02-29T00:00:00.000000Z"),
            (4_107_542_399_999_999_000, "2100-02-28T23:59:59.999999Z"),
        ] {
            assert_eq!(rfc3339(nanos), want);
        }
    }

    #[test]
    fn frames_put_type_timestamp_and_seq_first() {
        let f = frame("x", "t", 7, r#"{"a":1}"#);
        assert_eq!(f, r#"{"type":"x","timestamp":"t","seq":7,"a":1}"#);
        assert_eq!(frame("lagged", "t", 3, "{}"), r#"{"type":"lagged","timestamp":"t","seq":3}"#);
        let v: serde_json::Value = serde_json::from_str(&frame("x", "t", 1, r#"{ "b": [1] }"#)).unwrap();
        assert_eq!(v["b"][0], 1);
    }

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("/chat", "/chat", true),
            ("/chat", "/chat2", false),
            ("/api/*", "/api/x/y", true),
            ("*", "", true),
            ("*grok*", "x-grok-4", true),
            ("a*b*c", "abbc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(glob(p, t), want, "{p} {t}");
        }
    }

    fn span(kind: SpanKind, code: StatusCode, attrs: Vec<magpie_core::proto::common::v1::KeyValue>) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "POST /chat".into(),
            kind: kind as i32,
            start_time_unix_nano: 1_735_000_200_000_000_000,
            end_time_unix_nano: 1_735_000_200_250_000_000,
            attributes: attrs,
            status: Some(Status { code: code as i32, message: String::new() }),
            ..Default::default()
        }
    }

    fn messages(s: Span, wants: &[Stream]) -> Vec<serde_json::Value> {
        let rs = vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "chat")],
                ..Default::default()
            }),
            scope_spans: vec![magpie_core::proto::trace::v1::ScopeSpans {
                spans: vec![s],
                ..Default::default()
            }],
            schema_url: String::new(),
        }];
        span_messages(&rs, |x| wants.contains(&x))
            .into_iter()
            .map(|o| serde_json::from_str(&frame(o.kind, &o.timestamp, 1, &o.body)).unwrap())
            .collect()
    }

    #[test]
    fn span_llm_and_error_summaries() {
        let all = [Stream::Spans, Stream::LlmCalls, Stream::Errors];
        let ok = messages(
            span(
                SpanKind::Server,
                StatusCode::Unset,
                vec![
                    kv_str("http.method", "POST"),
                    kv_str("http.route", "/chat"),
                    kv_int("http.status_code", 200),
                ],
            ),
            &all,
        );
        assert_eq!(ok.len(), 1, "{ok:?}");
        assert_eq!(ok[0]["type"], "span");
        assert_eq!(ok[0]["timestamp"], "2024-12-24T00:30:00.250000Z");
        assert_eq!(ok[0]["trace_id"], "01010101010101010101010101010101");
        assert_eq!(
            (ok[0]["duration_ms"].as_f64(), &ok[0]["route"], &ok[0]["status_code"]),
            (Some(250.0), &"/chat".into(), &200.into())
        );
        assert!(ok[0].get("parent_span_id").is_none());

        let llm = messages(
            span(
                SpanKind::Client,
                StatusCode::Unset,
                vec![
                    kv_str("gen_ai.system", "xai"),
                    kv_str("gen_ai.request.model", "grok-4"),
                    kv_int("gen_ai.usage.prompt_tokens", 12),
                    kv_int("gen_ai.usage.completion_tokens", 3),
                    kv_double("gen_ai.usage.cost_usd", 0.000081),
                ],
            ),
            &[Stream::LlmCalls],
        );
        assert_eq!(llm.len(), 1);
        assert_eq!(
            (&llm[0]["type"], &llm[0]["provider"], &llm[0]["model"]),
            (&"llm_call".into(), &"xai".into(), &"grok-4".into())
        );
        assert_eq!((&llm[0]["input_tokens"], &llm[0]["output_tokens"]), (&12.into(), &3.into()));
        assert_eq!(llm[0]["cost_usd"].as_f64(), Some(0.000081));
        // OpenLLMetry's older token names, and no cost when nothing priced the call.
        let older = messages(
            span(
                SpanKind::Client,
                StatusCode::Unset,
                vec![
                    kv_str("gen_ai.request.model", "grok-4"),
                    kv_int("llm.usage.prompt_tokens", 7),
                    kv_int("llm.usage.completion_tokens", 2),
                ],
            ),
            &[Stream::LlmCalls],
        );
        assert_eq!((&older[0]["input_tokens"], &older[0]["output_tokens"]), (&7.into(), &2.into()));
        assert!(older[0].get("cost_usd").is_none(), "{:?}", older[0]);

        let mut failed = span(
            SpanKind::Server,
            StatusCode::Error,
            vec![kv_int("http.response.status_code", 500), kv_str("http.route", "/chat")],
        );
        failed.events.push(Event {
            name: "exception".into(),
            attributes: vec![
                kv_str("exception.type", "TimeoutError"),
                kv_str("exception.message", "llm timed out"),
            ],
            ..Default::default()
        });
        let e = messages(failed, &all);
        assert_eq!(e.len(), 2, "a failed span is a span and an error");
        assert_eq!(
            (&e[1]["type"], &e[1]["message"], &e[1]["exception_type"]),
            (&"error".into(), &"llm timed out".into(), &"TimeoutError".into())
        );
        // A 5xx server span is an error even when its status was left unset.
        let e = messages(
            span(SpanKind::Server, StatusCode::Unset, vec![kv_int("http.response.status_code", 503)]),
            &[Stream::Errors],
        );
        assert_eq!(e[0]["message"], "HTTP 503");
        assert!(messages(span(SpanKind::Server, StatusCode::Unset, vec![]), &[]).is_empty());
        assert_eq!(span_messages(&testdata::spans(2, 3), |s| s == Stream::Spans).len(), 6);
    }

    #[test]
    fn subscribe_requests_and_filters() {
        let s = parse_request(r#"{"type":"subscribe","streams":["system_metrics","spans"],"filter":{"route":"/api/*","min_duration_ms":100}}"#).unwrap();
        assert_eq!(s.streams, [Stream::SystemMetrics, Stream::Spans].into());
        let k = |route: Option<&str>, ms: f64| Keys {
            service: "chat".into(),
            name: "n".into(),
            route: route.map(String::from),
            duration_ms: ms,
            ..Default::default()
        };
        assert!(s.wants(Stream::Spans, Some(&k(Some("/api/x"), 150.0))));
        assert!(!s.wants(Stream::Spans, Some(&k(Some("/api/x"), 50.0))));
        assert!(!s.wants(Stream::Spans, Some(&k(None, 150.0))));
        assert!(!s.wants(Stream::Errors, Some(&k(Some("/api/x"), 150.0))));
        assert!(s.wants(Stream::SystemMetrics, None));
        let ack: serde_json::Value = serde_json::from_str(&s.ack_body()).unwrap();
        assert_eq!(ack["streams"], serde_json::json!(["system_metrics", "spans"]));
        assert_eq!(ack["filter"]["route"], "/api/*");
        for (bad, message) in [
            (r#"{"type":"subscribe","streams":["spanz"]}"#, "unknown stream `spanz`"),
            (r#"{"type":"unsubscribe"}"#, "unknown request type"),
            (r#"{"type":"subscribe","filter":{"colour":"red"}}"#, "unknown field `colour`"),
            ("not json", "invalid request"),
        ] {
            let e = parse_request(bad).unwrap_err();
            assert!(e.contains(message), "{e}");
        }
        assert_eq!(Subscription::default().streams, [Stream::SystemMetrics].into());
    }
}
