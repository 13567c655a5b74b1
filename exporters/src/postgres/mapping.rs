//! Spans, metric data points and log records → rows of the dashboard's tables.
//!
//! Pure functions over the OTLP types: no IO, no clock (the caller passes
//! "now" for items without a timestamp). Attributes are read by every
//! semantic-convention alias, stable names first (brief §3), so both old and
//! new instrumentations land in the same columns. Values longer than a
//! seed column's `VARCHAR(n)` are cut at a character boundary; the full
//! value stays in `tags`/`attributes`. Exceptions and failed spans are
//! also aggregated into error groups ([`super::errors`]).

use super::copy::{Cells, Encoded, Row, Table, encode};
use super::errors::{self, ErrorGroups};
use super::json;
use super::time::rfc3339;
use magpie_core::Batch;
use magpie_core::otlp::{any_value_to_string, attr, attr_f64, attr_i64, hex};
use magpie_core::proto::common::v1::KeyValue;
use magpie_core::proto::logs::v1::ResourceLogs;
use magpie_core::proto::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint, ResourceMetrics, SummaryDataPoint,
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
};
use magpie_core::proto::trace::v1::{ResourceSpans, Span, span::SpanKind, status::StatusCode};
use serde::Deserialize;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

/// `mapping:`: the attribute names read for the columns that have no single
/// semantic-convention name. Each list is tried in order, on the span (or
/// log record) first, then on its resource.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingConfig {
    /// `user_email` in `request_metrics` and `llm_call_metrics`.
    pub user: Vec<String>,
    /// `department`.
    pub department: Vec<String>,
    /// `query_type` in `llm_call_metrics`.
    pub query_type: Vec<String>,
    /// `cost_usd` in `llm_call_metrics` (what the `llm_cost` processor writes).
    pub cost: Vec<String>,
}

impl Default for MappingConfig {
    fn default() -> Self {
        let v = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        MappingConfig {
            user: v(&["enduser.id", "user.email", "user.id"]),
            department: v(&["department", "app.department"]),
            query_type: v(&["query_type", "app.query_type"]),
            cost: v(magpie_core::otlp::genai::COST_USD),
        }
    }
}

impl MappingConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, list) in [
            ("user", &self.user),
            ("department", &self.department),
            ("query_type", &self.query_type),
            ("cost", &self.cost),
        ] {
            if list.iter().any(|s| s.trim().is_empty()) {
                out.push(format!("mapping.{name} must not contain empty attribute names"));
            }
        }
        out
    }
}

/// `tables:`: which tables the exporter writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TablesConfig {
    pub trace_spans: bool,
    pub request_metrics: bool,
    pub llm_call_metrics: bool,
    pub system_metrics: bool,
    pub log_records: bool,
    pub error_groups: bool,
}

impl Default for TablesConfig {
    fn default() -> Self {
        TablesConfig {
            trace_spans: true,
            request_metrics: true,
            llm_call_metrics: true,
            system_metrics: true,
            log_records: true,
            error_groups: true,
        }
    }
}

impl TablesConfig {
    pub fn enabled(&self, t: Table) -> bool {
        match t {
            Table::TraceSpans => self.trace_spans,
            Table::RequestMetrics => self.request_metrics,
            Table::LlmCallMetrics => self.llm_call_metrics,
            Table::SystemMetrics => self.system_metrics,
            Table::LogRecords => self.log_records,
            Table::ErrorGroups => self.error_groups,
        }
    }
}

/// The semantic-convention aliases this mapping reads, stable names first.
pub mod semconv {
    pub const HTTP_METHOD: &[&str] = &["http.request.method", "http.method"];
    pub const HTTP_ROUTE: &[&str] = &["http.route"];
    pub const URL_PATH: &[&str] = &["url.path"];
    pub const HTTP_TARGET: &[&str] = &["http.target"];
    pub const HTTP_STATUS: &[&str] = &["http.response.status_code", "http.status_code"];
    pub const CLIENT_ADDRESS: &[&str] = &["client.address", "http.client_ip", "net.peer.ip"];
    pub const USER_AGENT: &[&str] = &["user_agent.original", "http.user_agent"];
    pub const REQUEST_SIZE: &[&str] = &["http.request.body.size", "http.request_content_length"];
    pub const RESPONSE_SIZE: &[&str] = &["http.response.body.size", "http.response_content_length"];
    pub const GENAI_PROVIDER: &[&str] = &["gen_ai.provider.name", "gen_ai.system"];
    pub const GENAI_REQUEST_MODEL: &[&str] = &["gen_ai.request.model"];
    pub const GENAI_RESPONSE_MODEL: &[&str] = &["gen_ai.response.model"];
    pub const GENAI_OPERATION: &[&str] = &["gen_ai.operation.name"];
    pub const GENAI_INPUT_TOKENS: &[&str] = magpie_core::otlp::genai::INPUT_TOKENS;
    pub const GENAI_OUTPUT_TOKENS: &[&str] = magpie_core::otlp::genai::OUTPUT_TOKENS;
    pub const GENAI_CACHE_READ: &[&str] = &["gen_ai.usage.cache_read.input_tokens"];
    pub const GENAI_CACHE_CREATION: &[&str] = &["gen_ai.usage.cache_creation.input_tokens"];
    pub const GENAI_REASONING: &[&str] = &["gen_ai.usage.reasoning.output_tokens"];
    pub const ERROR_TYPE: &[&str] = &["error.type"];
    pub const SERVICE_NAME: &[&str] = &["service.name"];
}

/// One `trace_spans` row.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanRow {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub operation_name: String,
    pub start_time: u64,
    pub end_time: u64,
    pub duration_ms: f64,
    /// Span attributes, JSON object.
    pub tags: String,
    /// Span events, JSON array of `{time, name, attributes}`.
    pub logs: String,
    pub service_name: Option<Arc<str>>,
    pub span_kind: &'static str,
    pub status_code: &'static str,
    pub status_message: Option<String>,
    /// Resource attributes, JSON object (shared by the resource's spans).
    pub resource: Arc<str>,
}

impl Row for SpanRow {
    const TABLE: Table = Table::TraceSpans;
    fn write<C: Cells>(&self, c: &mut C) {
        c.text(&self.trace_id);
        c.text(&self.span_id);
        c.opt_text(self.parent_span_id.as_deref());
        c.text(&self.operation_name);
        c.timestamp(self.start_time);
        c.timestamp(self.end_time);
        c.float8(self.duration_ms);
        c.json(&self.tags);
        c.json(&self.logs);
        c.opt_text(self.service_name.as_deref());
        c.text(self.span_kind);
        c.text(self.status_code);
        c.opt_text(self.status_message.as_deref());
        c.json(&self.resource);
    }
}

/// One `request_metrics` row (a SERVER span with an HTTP method).
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRow {
    pub timestamp: u64,
    pub method: String,
    pub path: String,
    /// 0 when the span carries no status code.
    pub status_code: i32,
    pub response_time_ms: f64,
    pub user_email: Option<String>,
    pub department: Option<String>,
    pub request_size_bytes: Option<i32>,
    pub response_size_bytes: Option<i32>,
    pub trace_id: String,
    pub user_agent: Option<String>,
    pub ip_address: Option<IpAddr>,
    pub service_name: Option<Arc<str>>,
    pub span_id: String,
}

impl Row for RequestRow {
    const TABLE: Table = Table::RequestMetrics;
    fn write<C: Cells>(&self, c: &mut C) {
        c.timestamp(self.timestamp);
        c.text(&self.method);
        c.text(&self.path);
        c.int4(self.status_code);
        c.float8(self.response_time_ms);
        c.opt_text(self.user_email.as_deref());
        c.opt_text(self.department.as_deref());
        c.opt_int4(self.request_size_bytes);
        c.opt_int4(self.response_size_bytes);
        c.text(&self.trace_id);
        c.opt_text(self.user_agent.as_deref());
        c.opt_inet(self.ip_address);
        c.opt_text(self.service_name.as_deref());
        c.text(&self.span_id);
    }
}

/// One `llm_call_metrics` row (a span with GenAI attributes).
#[derive(Clone, Debug, PartialEq)]
pub struct LlmCallRow {
    pub timestamp: u64,
    pub model: String,
    pub provider: String,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub total_tokens: Option<i32>,
    pub elapsed_ms: f64,
    pub user_email: Option<String>,
    pub department: Option<String>,
    pub query_type: Option<String>,
    pub trace_id: String,
    pub cost_usd: Option<f64>,
    pub success: bool,
    pub error_message: Option<String>,
    pub span_id: String,
    pub service_name: Option<Arc<str>>,
    pub operation: Option<String>,
    pub cache_read_tokens: Option<i32>,
    pub cache_creation_tokens: Option<i32>,
    pub reasoning_tokens: Option<i32>,
}

impl Row for LlmCallRow {
    const TABLE: Table = Table::LlmCallMetrics;
    fn write<C: Cells>(&self, c: &mut C) {
        c.timestamp(self.timestamp);
        c.text(&self.model);
        c.text(&self.provider);
        c.opt_int4(self.prompt_tokens);
        c.opt_int4(self.completion_tokens);
        c.opt_int4(self.total_tokens);
        c.float8(self.elapsed_ms);
        c.opt_text(self.user_email.as_deref());
        c.opt_text(self.department.as_deref());
        c.opt_text(self.query_type.as_deref());
        c.text(&self.trace_id);
        match self.cost_usd {
            Some(v) => c.numeric(v, 6),
            None => c.null(),
        }
        c.boolean(self.success);
        c.opt_text(self.error_message.as_deref());
        c.text(&self.span_id);
        c.opt_text(self.service_name.as_deref());
        c.opt_text(self.operation.as_deref());
        c.opt_int4(self.cache_read_tokens);
        c.opt_int4(self.cache_creation_tokens);
        c.opt_int4(self.reasoning_tokens);
    }
}

/// One `system_metrics` row (one metric data point).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricRow {
    pub timestamp: u64,
    pub metric_name: String,
    pub metric_value: f64,
    /// JSON object: attributes, resource, unit, type, temporality and, for
    /// histograms and summaries, count, sum, min, max and buckets.
    pub metadata: String,
}

impl Row for MetricRow {
    const TABLE: Table = Table::SystemMetrics;
    fn write<C: Cells>(&self, c: &mut C) {
        c.timestamp(self.timestamp);
        c.text(&self.metric_name);
        c.float8(self.metric_value);
        c.json(&self.metadata);
    }
}

/// One `log_records` row.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRow {
    pub timestamp: u64,
    pub observed_timestamp: Option<u64>,
    pub severity_number: Option<i32>,
    pub severity_text: Option<String>,
    pub body: Option<String>,
    pub attributes: String,
    pub resource: Arc<str>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub service_name: Option<Arc<str>>,
    pub scope_name: Option<String>,
    pub event_name: Option<String>,
}

impl Row for LogRow {
    const TABLE: Table = Table::LogRecords;
    fn write<C: Cells>(&self, c: &mut C) {
        c.timestamp(self.timestamp);
        c.opt_timestamp(self.observed_timestamp);
        c.opt_int4(self.severity_number);
        c.opt_text(self.severity_text.as_deref());
        c.opt_text(self.body.as_deref());
        c.json(&self.attributes);
        c.json(&self.resource);
        c.opt_text(self.trace_id.as_deref());
        c.opt_text(self.span_id.as_deref());
        c.opt_text(self.service_name.as_deref());
        c.opt_text(self.scope_name.as_deref());
        c.opt_text(self.event_name.as_deref());
    }
}

/// Every row one batch maps to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    pub spans: Vec<SpanRow>,
    pub requests: Vec<RequestRow>,
    pub llm_calls: Vec<LlmCallRow>,
    pub metrics: Vec<MetricRow>,
    pub logs: Vec<LogRow>,
    /// The batch's error groups, aggregated (written by an upsert, not `COPY`).
    pub errors: ErrorGroups,
}

impl Rows {
    pub fn total(&self) -> usize {
        self.spans.len()
            + self.requests.len()
            + self.llm_calls.len()
            + self.metrics.len()
            + self.logs.len()
            + self.errors.len()
    }

    /// Each non-empty `COPY` table's rows, encoded, in a fixed table order.
    pub fn encode(&self) -> Vec<Encoded> {
        let all = [
            (!self.spans.is_empty()).then(|| encode(&self.spans)),
            (!self.requests.is_empty()).then(|| encode(&self.requests)),
            (!self.llm_calls.is_empty()).then(|| encode(&self.llm_calls)),
            (!self.metrics.is_empty()).then(|| encode(&self.metrics)),
            (!self.logs.is_empty()).then(|| encode(&self.logs)),
        ];
        all.into_iter().flatten().collect()
    }

    /// Adds `other`'s rows after these.
    pub fn append(&mut self, mut other: Rows) {
        self.spans.append(&mut other.spans);
        self.requests.append(&mut other.requests);
        self.llm_calls.append(&mut other.llm_calls);
        self.metrics.append(&mut other.metrics);
        self.logs.append(&mut other.logs);
        self.errors.append(other.errors);
    }

    /// Row `index` of `table` as JSON, for the dead-letter table.
    pub fn row_json(&self, table: Table, index: usize) -> Option<serde_json::Value> {
        use super::copy::row_json;
        match table {
            Table::TraceSpans => self.spans.get(index).map(row_json),
            Table::RequestMetrics => self.requests.get(index).map(row_json),
            Table::LlmCallMetrics => self.llm_calls.get(index).map(row_json),
            Table::SystemMetrics => self.metrics.get(index).map(row_json),
            Table::LogRecords => self.logs.get(index).map(row_json),
            Table::ErrorGroups => self.errors.get(index).map(row_json),
        }
    }
}

/// Maps a batch to rows of the enabled tables. `now` (Unix nanoseconds)
/// stands in for a data point or log record without a timestamp.
pub fn map_batch(batch: &Batch, m: &MappingConfig, tables: &TablesConfig, now: u64) -> Rows {
    map_batch_part(batch, m, tables, now, 0..usize::MAX)
}

/// Maps the spans of a batch whose position (in batch order) is in `spans`;
/// metrics and logs are mapped whole. Consecutive ranges give the rows of
/// [`map_batch`] in the same order, so a batch can be mapped in parts while
/// earlier parts are being written.
pub fn map_batch_part(
    batch: &Batch,
    m: &MappingConfig,
    tables: &TablesConfig,
    now: u64,
    spans: Range<usize>,
) -> Rows {
    let mut rows = Rows::default();
    match batch {
        Batch::Traces(rs) => map_spans(rs, m, tables, now, &mut rows, spans),
        Batch::Metrics(rm) if tables.system_metrics => map_metrics(rm, now, &mut rows),
        Batch::Logs(rl) if tables.log_records || tables.error_groups => {
            map_logs(rl, m, tables, now, &mut rows)
        }
        _ => {}
    }
    rows
}

/// A string value cut to at most `max` characters.
pub fn fit(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => s[..cut].to_string(),
        None => s.to_string(),
    }
}

/// An attribute by any name in `names`, as a string.
fn lookup(attrs: &[KeyValue], names: &[String]) -> Option<String> {
    names.iter().find_map(|n| attr(attrs, &[n.as_str()]).map(any_value_to_string))
}

/// An attribute on the item, else on its resource.
fn lookup_either(item: &[KeyValue], resource: &[KeyValue], names: &[String]) -> Option<String> {
    lookup(item, names).or_else(|| lookup(resource, names))
}

fn string_attr(attrs: &[KeyValue], aliases: &[&str]) -> Option<String> {
    attr(attrs, aliases).map(any_value_to_string)
}

fn i32_attr(attrs: &[KeyValue], aliases: &[&str]) -> Option<i32> {
    attr_i64(attrs, aliases).and_then(|v| i32::try_from(v).ok())
}

/// A client address as INET; anything that is not an IP address is `None`.
/// A forwarded-for list yields its first entry; `[v6]` brackets are dropped.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let first = s.split(',').next()?.trim();
    let bare = first.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(first);
    bare.parse().ok()
}

/// The request path: `http.route`, else `url.path`, else `http.target`
/// without its query string; empty when none is set.
fn request_path(attrs: &[KeyValue]) -> String {
    if let Some(r) = string_attr(attrs, semconv::HTTP_ROUTE).filter(|s| !s.is_empty()) {
        return r;
    }
    if let Some(p) = string_attr(attrs, semconv::URL_PATH).filter(|s| !s.is_empty()) {
        return p;
    }
    string_attr(attrs, semconv::HTTP_TARGET)
        .map(|t| t.split(['?', '#']).next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn span_kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Internal) => "internal",
        Ok(SpanKind::Server) => "server",
        Ok(SpanKind::Client) => "client",
        Ok(SpanKind::Producer) => "producer",
        Ok(SpanKind::Consumer) => "consumer",
        _ => "unspecified",
    }
}

fn status_of(span: &Span) -> (&'static str, Option<String>) {
    match &span.status {
        None => ("unset", None),
        Some(s) => {
            let code = match StatusCode::try_from(s.code) {
                Ok(StatusCode::Ok) => "ok",
                Ok(StatusCode::Error) => "error",
                _ => "unset",
            };
            (code, (!s.message.is_empty()).then(|| s.message.clone()))
        }
    }
}

fn events_json(span: &Span) -> String {
    let mut out = String::with_capacity(2 + span.events.len() * 64);
    out.push('[');
    for (i, e) in span.events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"time\":");
        json::push_str(&mut out, &rfc3339(e.time_unix_nano));
        out.push_str(",\"name\":");
        json::push_str(&mut out, &e.name);
        out.push_str(",\"attributes\":");
        json::push_attrs(&mut out, &e.attributes);
        out.push('}');
    }
    out.push(']');
    out
}

fn is_genai(attrs: &[KeyValue]) -> bool {
    attr(attrs, semconv::GENAI_PROVIDER).is_some()
        || attr(attrs, semconv::GENAI_REQUEST_MODEL).is_some()
        || attr(attrs, semconv::GENAI_RESPONSE_MODEL).is_some()
        || attr(attrs, semconv::GENAI_OPERATION).is_some()
}

fn map_spans(
    rs: &[ResourceSpans],
    m: &MappingConfig,
    t: &TablesConfig,
    now: u64,
    rows: &mut Rows,
    part: Range<usize>,
) {
    let mut at = 0usize;
    for r in rs {
        let in_resource: usize = r.scope_spans.iter().map(|ss| ss.spans.len()).sum();
        if at + in_resource <= part.start || at >= part.end {
            at += in_resource;
            continue;
        }
        let res_attrs: &[KeyValue] = r.resource.as_ref().map_or(&[], |r| &r.attributes);
        let resource: Arc<str> = json::attrs(res_attrs).into();
        let service: Option<Arc<str>> = string_attr(res_attrs, semconv::SERVICE_NAME).map(Into::into);
        for ss in &r.scope_spans {
            let first = at;
            at += ss.spans.len();
            let (from, to) =
                (part.start.saturating_sub(first), part.end.saturating_sub(first).min(ss.spans.len()));
            for span in ss.spans.get(from..to).unwrap_or_default() {
                let trace_id = fit(&hex(&span.trace_id), 32);
                let span_id = fit(&hex(&span.span_id), 16);
                let duration_ms =
                    span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) as f64 / 1e6;
                let attrs = &span.attributes[..];
                let (status_code, status_message) = status_of(span);
                if t.error_groups {
                    for o in errors::span_occurrences(span, res_attrs, &m.user, now) {
                        rows.errors.add(service.as_deref(), o);
                    }
                }
                if t.request_metrics
                    && span.kind == SpanKind::Server as i32
                    && let Some(method) = string_attr(attrs, semconv::HTTP_METHOD)
                {
                    rows.requests.push(RequestRow {
                        timestamp: span.start_time_unix_nano,
                        method: fit(&method, 10),
                        path: request_path(attrs),
                        status_code: i32_attr(attrs, semconv::HTTP_STATUS).unwrap_or(0),
                        response_time_ms: duration_ms,
                        user_email: lookup_either(attrs, res_attrs, &m.user).map(|s| fit(&s, 255)),
                        department: lookup_either(attrs, res_attrs, &m.department).map(|s| fit(&s, 50)),
                        request_size_bytes: i32_attr(attrs, semconv::REQUEST_SIZE),
                        response_size_bytes: i32_attr(attrs, semconv::RESPONSE_SIZE),
                        trace_id: trace_id.clone(),
                        user_agent: string_attr(attrs, semconv::USER_AGENT),
                        ip_address: string_attr(attrs, semconv::CLIENT_ADDRESS).and_then(|s| parse_ip(&s)),
                        service_name: service.clone(),
                        span_id: span_id.clone(),
                    });
                }
                if t.llm_call_metrics && is_genai(attrs) {
                    let input = i32_attr(attrs, semconv::GENAI_INPUT_TOKENS);
                    let output = i32_attr(attrs, semconv::GENAI_OUTPUT_TOKENS);
                    let total = match (input, output) {
                        (None, None) => None,
                        (a, b) => a.unwrap_or(0).checked_add(b.unwrap_or(0)),
                    };
                    let success = status_code != "error";
                    let error_message = if success {
                        None
                    } else {
                        status_message.clone().or_else(|| string_attr(attrs, semconv::ERROR_TYPE))
                    };
                    let model = string_attr(attrs, semconv::GENAI_RESPONSE_MODEL)
                        .or_else(|| string_attr(attrs, semconv::GENAI_REQUEST_MODEL))
                        .unwrap_or_else(|| "unknown".to_string());
                    let provider =
                        string_attr(attrs, semconv::GENAI_PROVIDER).unwrap_or_else(|| "unknown".to_string());
                    rows.llm_calls.push(LlmCallRow {
                        timestamp: span.start_time_unix_nano,
                        model: fit(&model, 100),
                        provider: fit(&provider, 50),
                        prompt_tokens: input,
                        completion_tokens: output,
                        total_tokens: total,
                        elapsed_ms: duration_ms,
                        user_email: lookup_either(attrs, res_attrs, &m.user).map(|s| fit(&s, 255)),
                        department: lookup_either(attrs, res_attrs, &m.department).map(|s| fit(&s, 50)),
                        query_type: lookup_either(attrs, res_attrs, &m.query_type).map(|s| fit(&s, 50)),
                        trace_id: trace_id.clone(),
                        cost_usd: m
                            .cost
                            .iter()
                            .find_map(|n| attr_f64(attrs, &[n.as_str()]))
                            .filter(|c| c.is_finite()),
                        success,
                        error_message,
                        span_id: span_id.clone(),
                        service_name: service.clone(),
                        operation: string_attr(attrs, semconv::GENAI_OPERATION),
                        cache_read_tokens: i32_attr(attrs, semconv::GENAI_CACHE_READ),
                        cache_creation_tokens: i32_attr(attrs, semconv::GENAI_CACHE_CREATION),
                        reasoning_tokens: i32_attr(attrs, semconv::GENAI_REASONING),
                    });
                }
                if t.trace_spans {
                    rows.spans.push(SpanRow {
                        trace_id,
                        span_id,
                        parent_span_id: (!span.parent_span_id.is_empty())
                            .then(|| fit(&hex(&span.parent_span_id), 16)),
                        operation_name: fit(&span.name, 255),
                        start_time: span.start_time_unix_nano,
                        end_time: span.end_time_unix_nano,
                        duration_ms,
                        tags: json::attrs(attrs),
                        logs: events_json(span),
                        service_name: service.clone(),
                        span_kind: span_kind_name(span.kind),
                        status_code,
                        status_message,
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
}

fn temporality_name(t: i32) -> &'static str {
    match t {
        1 => "delta",
        2 => "cumulative",
        _ => "unspecified",
    }
}

/// The common head of a data point's metadata, left open for more fields.
struct Meta<'a> {
    resource: &'a str,
    unit: &'a str,
    scope: &'a str,
}

impl Meta<'_> {
    fn open(&self, kind: &str, attrs: &[KeyValue], start: u64) -> String {
        let mut out = String::with_capacity(64 + self.resource.len() + attrs.len() * 32);
        out.push_str("{\"type\":\"");
        out.push_str(kind);
        out.push_str("\",\"unit\":");
        json::push_str(&mut out, self.unit);
        out.push_str(",\"attributes\":");
        json::push_attrs(&mut out, attrs);
        out.push_str(",\"resource\":");
        out.push_str(self.resource);
        if !self.scope.is_empty() {
            out.push_str(",\"scope\":");
            json::push_str(&mut out, self.scope);
        }
        if start > 0 {
            out.push_str(",\"start_time\":");
            json::push_str(&mut out, &rfc3339(start));
        }
        out
    }
}

fn push_field_f64(out: &mut String, name: &str, v: Option<f64>) {
    let _ = write!(out, ",\"{name}\":");
    match v {
        Some(v) => json::push_f64(out, v),
        None => out.push_str("null"),
    }
}

fn push_u64_list(out: &mut String, name: &str, v: &[u64]) {
    let _ = write!(out, ",\"{name}\":[");
    for (i, n) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{n}");
    }
    out.push(']');
}

fn push_f64_list(out: &mut String, name: &str, v: &[f64]) {
    let _ = write!(out, ",\"{name}\":[");
    for (i, n) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::push_f64(out, *n);
    }
    out.push(']');
}

fn number_row(name: &str, p: &NumberDataPoint, meta: &Meta, kind: &str, extra: &str, now: u64) -> MetricRow {
    let value = match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => f64::NAN,
    };
    let mut md = meta.open(kind, &p.attributes, p.start_time_unix_nano);
    md.push_str(extra);
    md.push('}');
    MetricRow {
        timestamp: or_now(p.time_unix_nano, now),
        metric_name: fit(name, 100),
        metric_value: value,
        metadata: md,
    }
}

fn histogram_row(name: &str, p: &HistogramDataPoint, meta: &Meta, temporality: i32, now: u64) -> MetricRow {
    let mut md = meta.open("histogram", &p.attributes, p.start_time_unix_nano);
    let _ = write!(md, ",\"temporality\":\"{}\",\"count\":{}", temporality_name(temporality), p.count);
    push_field_f64(&mut md, "sum", p.sum);
    push_field_f64(&mut md, "min", p.min);
    push_field_f64(&mut md, "max", p.max);
    push_f64_list(&mut md, "bounds", &p.explicit_bounds);
    push_u64_list(&mut md, "bucket_counts", &p.bucket_counts);
    md.push('}');
    MetricRow {
        timestamp: or_now(p.time_unix_nano, now),
        metric_name: fit(name, 100),
        metric_value: p.sum.unwrap_or(0.0),
        metadata: md,
    }
}

fn push_buckets(out: &mut String, name: &str, b: Option<&Buckets>) {
    let _ = write!(out, ",\"{name}\":");
    match b {
        None => out.push_str("null"),
        Some(b) => {
            let _ = write!(out, "{{\"offset\":{}", b.offset);
            push_u64_list(out, "bucket_counts", &b.bucket_counts);
            out.push('}');
        }
    }
}

fn exp_histogram_row(
    name: &str,
    p: &ExponentialHistogramDataPoint,
    meta: &Meta,
    temporality: i32,
    now: u64,
) -> MetricRow {
    let mut md = meta.open("exponential_histogram", &p.attributes, p.start_time_unix_nano);
    let _ = write!(
        md,
        ",\"temporality\":\"{}\",\"count\":{},\"scale\":{},\"zero_count\":{}",
        temporality_name(temporality),
        p.count,
        p.scale,
        p.zero_count
    );
    push_field_f64(&mut md, "zero_threshold", Some(p.zero_threshold));
    push_field_f64(&mut md, "sum", p.sum);
    push_field_f64(&mut md, "min", p.min);
    push_field_f64(&mut md, "max", p.max);
    push_buckets(&mut md, "positive", p.positive.as_ref());
    push_buckets(&mut md, "negative", p.negative.as_ref());
    md.push('}');
    MetricRow {
        timestamp: or_now(p.time_unix_nano, now),
        metric_name: fit(name, 100),
        metric_value: p.sum.unwrap_or(0.0),
        metadata: md,
    }
}

fn summary_row(name: &str, p: &SummaryDataPoint, meta: &Meta, now: u64) -> MetricRow {
    let mut md = meta.open("summary", &p.attributes, p.start_time_unix_nano);
    let _ = write!(md, ",\"count\":{}", p.count);
    push_field_f64(&mut md, "sum", Some(p.sum));
    md.push_str(",\"quantiles\":[");
    for (i, q) in p.quantile_values.iter().enumerate() {
        if i > 0 {
            md.push(',');
        }
        md.push_str("{\"quantile\":");
        json::push_f64(&mut md, q.quantile);
        md.push_str(",\"value\":");
        json::push_f64(&mut md, q.value);
        md.push('}');
    }
    md.push_str("]}");
    MetricRow {
        timestamp: or_now(p.time_unix_nano, now),
        metric_name: fit(name, 100),
        metric_value: p.sum,
        metadata: md,
    }
}

fn or_now(t: u64, now: u64) -> u64 {
    if t == 0 { now } else { t }
}

fn map_metrics(rm: &[ResourceMetrics], now: u64, rows: &mut Rows) {
    for r in rm {
        let res_attrs: &[KeyValue] = r.resource.as_ref().map_or(&[], |r| &r.attributes);
        let resource = json::attrs(res_attrs);
        for sm in &r.scope_metrics {
            let scope = sm.scope.as_ref().map_or("", |s| s.name.as_str());
            for metric in &sm.metrics {
                let meta = Meta { resource: &resource, unit: &metric.unit, scope };
                let name = &metric.name;
                match &metric.data {
                    None => {}
                    Some(Data::Gauge(g)) => {
                        for p in &g.data_points {
                            rows.metrics.push(number_row(name, p, &meta, "gauge", "", now));
                        }
                    }
                    Some(Data::Sum(s)) => {
                        let extra = format!(
                            ",\"temporality\":\"{}\",\"monotonic\":{}",
                            temporality_name(s.aggregation_temporality),
                            s.is_monotonic
                        );
                        for p in &s.data_points {
                            rows.metrics.push(number_row(name, p, &meta, "sum", &extra, now));
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        for p in &h.data_points {
                            rows.metrics.push(histogram_row(name, p, &meta, h.aggregation_temporality, now));
                        }
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        for p in &h.data_points {
                            rows.metrics.push(exp_histogram_row(
                                name,
                                p,
                                &meta,
                                h.aggregation_temporality,
                                now,
                            ));
                        }
                    }
                    Some(Data::Summary(s)) => {
                        for p in &s.data_points {
                            rows.metrics.push(summary_row(name, p, &meta, now));
                        }
                    }
                }
            }
        }
    }
}

fn map_logs(rl: &[ResourceLogs], m: &MappingConfig, tables: &TablesConfig, now: u64, rows: &mut Rows) {
    for r in rl {
        let res_attrs: &[KeyValue] = r.resource.as_ref().map_or(&[], |r| &r.attributes);
        let resource: Arc<str> = json::attrs(res_attrs).into();
        let service: Option<Arc<str>> = string_attr(res_attrs, semconv::SERVICE_NAME).map(Into::into);
        for sl in &r.scope_logs {
            let scope = sl.scope.as_ref().map(|s| s.name.as_str()).filter(|s| !s.is_empty());
            for lr in &sl.log_records {
                let timestamp = match (lr.time_unix_nano, lr.observed_time_unix_nano) {
                    (0, 0) => now,
                    (0, observed) => observed,
                    (t, _) => t,
                };
                if tables.error_groups
                    && let Some(o) = errors::log_occurrence(lr, res_attrs, &m.user, scope, timestamp)
                {
                    rows.errors.add(service.as_deref(), o);
                }
                if !tables.log_records {
                    continue;
                }
                rows.logs.push(LogRow {
                    timestamp,
                    observed_timestamp: (lr.observed_time_unix_nano != 0)
                        .then_some(lr.observed_time_unix_nano),
                    severity_number: (lr.severity_number != 0).then_some(lr.severity_number),
                    severity_text: (!lr.severity_text.is_empty()).then(|| lr.severity_text.clone()),
                    body: json::body_text(lr.body.as_ref()),
                    attributes: json::attrs(&lr.attributes),
                    resource: resource.clone(),
                    trace_id: (!lr.trace_id.is_empty()).then(|| fit(&hex(&lr.trace_id), 32)),
                    span_id: (!lr.span_id.is_empty()).then(|| fit(&hex(&lr.span_id), 16)),
                    service_name: service.clone(),
                    scope_name: scope.map(str::to_string),
                    event_name: (!lr.event_name.is_empty()).then(|| lr.event_name.clone()),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::otlp::{double_point, gauge, int_point, kv_double, kv_int, kv_str, sum};
    use magpie_core::proto::common::v1::{AnyValue, InstrumentationScope, any_value};
    use magpie_core::proto::logs::v1::{LogRecord, ScopeLogs};
    use magpie_core::proto::metrics::v1::{
        ExponentialHistogram, Histogram, Metric, ScopeMetrics, Summary, summary_data_point::ValueAtQuantile,
    };
    use magpie_core::proto::resource::v1::Resource;
    use magpie_core::proto::trace::v1::{ScopeSpans, Status, span::Event};

    const T0: u64 = 1_735_000_200_000_000_000;

    fn resource(attrs: Vec<KeyValue>) -> Option<Resource> {
        Some(Resource { attributes: attrs, ..Default::default() })
    }

    fn span(kind: SpanKind, attrs: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![0xab; 16],
            span_id: vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
            parent_span_id: vec![0x0f; 8],
            name: "POST /api/chat".into(),
            kind: kind as i32,
            start_time_unix_nano: T0,
            end_time_unix_nano: T0 + 156_300_000,
            attributes: attrs,
            ..Default::default()
        }
    }

    fn traces(res: Vec<KeyValue>, spans: Vec<Span>) -> Batch {
        Batch::Traces(vec![ResourceSpans {
            resource: resource(res),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            schema_url: String::new(),
        }])
    }

    fn map(batch: &Batch) -> Rows {
        map_batch(batch, &MappingConfig::default(), &TablesConfig::default(), 42)
    }

    /// One SERVER span mapped with the default mapping; checks the request row.
    fn check_request(attrs: Vec<KeyValue>, expected: Option<RequestRow>) {
        let rows = map(&traces(vec![kv_str("service.name", "api")], vec![span(SpanKind::Server, attrs)]));
        assert_eq!(rows.spans.len(), 1, "every span is a trace_spans row");
        assert_eq!(rows.requests.first().cloned(), expected);
    }

    fn request(method: &str, path: &str, status: i32) -> RequestRow {
        RequestRow {
            timestamp: T0,
            method: method.into(),
            path: path.into(),
            status_code: status,
            response_time_ms: 156.3,
            user_email: None,
            department: None,
            request_size_bytes: None,
            response_size_bytes: None,
            trace_id: "ab".repeat(16),
            user_agent: None,
            ip_address: None,
            service_name: Some("api".into()),
            span_id: "0102030405060708".into(),
        }
    }

    #[test]
    fn server_spans_with_a_method_become_requests() {
        // Stable semconv names.
        check_request(
            vec![
                kv_str("http.request.method", "POST"),
                kv_str("http.route", "/api/chat"),
                kv_str("url.path", "/api/chat"),
                kv_int("http.response.status_code", 200),
                kv_str("enduser.id", "ana@example.com"),
                kv_str("department", "warehouse"),
                kv_int("http.request.body.size", 512),
                kv_int("http.response.body.size", 2048),
                kv_str("user_agent.original", "Mozilla/5.0"),
                kv_str("client.address", "203.0.113.7"),
            ],
            Some(RequestRow {
                user_email: Some("ana@example.com".into()),
                department: Some("warehouse".into()),
                request_size_bytes: Some(512),
                response_size_bytes: Some(2048),
                user_agent: Some("Mozilla/5.0".into()),
                ip_address: "203.0.113.7".parse().ok(),
                ..request("POST", "/api/chat", 200)
            }),
        );
        // The old names FastAPI's instrumentation sends by default.
        check_request(
            vec![
                kv_str("http.method", "GET"),
                kv_str("http.target", "/api/admin/analytics/overview?hours=24"),
                kv_str("http.status_code", "404"),
                kv_str("user.email", "bo@example.com"),
                kv_str("app.department", "sales"),
                kv_int("http.request_content_length", 10),
                kv_int("http.response_content_length", 20),
                kv_str("http.user_agent", "curl/8"),
                kv_str("http.client_ip", "2001:db8::1"),
            ],
            Some(RequestRow {
                user_email: Some("bo@example.com".into()),
                department: Some("sales".into()),
                request_size_bytes: Some(10),
                response_size_bytes: Some(20),
                user_agent: Some("curl/8".into()),
                ip_address: "2001:db8::1".parse().ok(),
                ..request("GET", "/api/admin/analytics/overview", 404)
            }),
        );
        // An unparsable client address is NULL, a missing status 0, an oversized body NULL.
        check_request(
            vec![
                kv_str("http.request.method", "GET"),
                kv_str("url.path", "/health"),
                kv_str("client.address", "unix:/run/app.sock"),
                kv_int("http.response.body.size", 1 << 40),
            ],
            Some(request("GET", "/health", 0)),
        );
        // Not a request: no method.
        check_request(vec![kv_str("http.route", "/x")], None);
        // Too long a method is cut to the column's 10 characters.
        check_request(vec![kv_str("http.method", "VERYLONGMETHOD")], Some(request("VERYLONGME", "", 0)));
    }

    #[test]
    fn client_spans_are_not_requests() {
        let rows =
            map(&traces(vec![], vec![span(SpanKind::Client, vec![kv_str("http.request.method", "GET")])]));
        assert!(rows.requests.is_empty());
        assert_eq!(rows.spans[0].span_kind, "client");
    }

    #[test]
    fn ip_addresses_parse_or_are_none() {
        let cases: &[(&str, Option<&str>)] = &[
            ("10.1.2.3", Some("10.1.2.3")),
            (" 10.1.2.3 ", Some("10.1.2.3")),
            ("[::1]", Some("::1")),
            ("198.51.100.1, 10.0.0.1", Some("198.51.100.1")),
            ("localhost", None),
            ("10.1.2.3:8080", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_ip(input), expected.and_then(|e| e.parse().ok()), "{input}");
        }
    }

    fn check_llm(
        res: Vec<KeyValue>,
        attrs: Vec<KeyValue>,
        status: Option<Status>,
        expected: Option<LlmCallRow>,
    ) {
        let mut s = span(SpanKind::Client, attrs);
        s.status = status;
        let rows = map(&traces(res, vec![s]));
        assert_eq!(rows.llm_calls.first().cloned(), expected);
    }

    fn llm(model: &str, provider: &str) -> LlmCallRow {
        LlmCallRow {
            timestamp: T0,
            model: model.into(),
            provider: provider.into(),
            prompt_tokens: None,
            completion_tokens: None,
            total_tokens: None,
            elapsed_ms: 156.3,
            user_email: None,
            department: None,
            query_type: None,
            trace_id: "ab".repeat(16),
            cost_usd: None,
            success: true,
            error_message: None,
            span_id: "0102030405060708".into(),
            service_name: None,
            operation: None,
            cache_read_tokens: None,
            cache_creation_tokens: None,
            reasoning_tokens: None,
        }
    }

    #[test]
    fn genai_spans_become_llm_calls() {
        check_llm(
            vec![kv_str("department", "warehouse")],
            vec![
                kv_str("gen_ai.provider.name", "xai"),
                kv_str("gen_ai.operation.name", "chat"),
                kv_str("gen_ai.request.model", "grok-4"),
                kv_str("gen_ai.response.model", "grok-4-1-fast-reasoning"),
                kv_int("gen_ai.usage.input_tokens", 1234),
                kv_int("gen_ai.usage.output_tokens", 567),
                kv_int("gen_ai.usage.cache_read.input_tokens", 1000),
                kv_int("gen_ai.usage.reasoning.output_tokens", 100),
                kv_str("enduser.id", "ana@example.com"),
                kv_str("query_type", "procedural"),
                kv_double("gen_ai.usage.cost_usd", 0.001234),
            ],
            None,
            Some(LlmCallRow {
                prompt_tokens: Some(1234),
                completion_tokens: Some(567),
                total_tokens: Some(1801),
                user_email: Some("ana@example.com".into()),
                department: Some("warehouse".into()),
                query_type: Some("procedural".into()),
                cost_usd: Some(0.001234),
                operation: Some("chat".into()),
                cache_read_tokens: Some(1000),
                reasoning_tokens: Some(100),
                ..llm("grok-4-1-fast-reasoning", "xai")
            }),
        );
        // Old names; a failed call keeps its status message.
        check_llm(
            vec![],
            vec![
                kv_str("gen_ai.system", "anthropic"),
                kv_str("gen_ai.request.model", "claude-sonnet"),
                kv_int("gen_ai.usage.prompt_tokens", 10),
                kv_int("gen_ai.usage.completion_tokens", 0),
                kv_str("error.type", "timeout"),
            ],
            Some(Status { code: StatusCode::Error as i32, message: "upstream timed out".into() }),
            Some(LlmCallRow {
                prompt_tokens: Some(10),
                completion_tokens: Some(0),
                total_tokens: Some(10),
                success: false,
                error_message: Some("upstream timed out".into()),
                ..llm("claude-sonnet", "anthropic")
            }),
        );
        // OpenLLMetry's token names.
        check_llm(
            vec![],
            vec![
                kv_str("gen_ai.system", "openai"),
                kv_str("gen_ai.request.model", "gpt-4o"),
                kv_int("llm.usage.prompt_tokens", 21),
                kv_int("llm.usage.completion_tokens", 4),
            ],
            None,
            Some(LlmCallRow {
                prompt_tokens: Some(21),
                completion_tokens: Some(4),
                total_tokens: Some(25),
                ..llm("gpt-4o", "openai")
            }),
        );
        // Without a status message the error type explains the failure.
        check_llm(
            vec![],
            vec![kv_str("gen_ai.system", "xai"), kv_str("error.type", "429")],
            Some(Status { code: StatusCode::Error as i32, message: String::new() }),
            Some(LlmCallRow { success: false, error_message: Some("429".into()), ..llm("unknown", "xai") }),
        );
        // No GenAI attribute: no row.
        check_llm(vec![], vec![kv_str("db.system", "postgresql")], None, None);
    }

    #[test]
    fn the_mapping_is_configurable() {
        let m = MappingConfig {
            user: vec!["app.user".into()],
            department: vec!["team".into()],
            query_type: vec!["kind".into()],
            cost: vec!["cost".into()],
        };
        let batch = traces(
            vec![kv_str("team", "ops")],
            vec![span(
                SpanKind::Server,
                vec![
                    kv_str("http.method", "GET"),
                    kv_str("gen_ai.system", "xai"),
                    kv_str("app.user", "u1"),
                    kv_str("enduser.id", "ignored"),
                    kv_str("kind", "lookup"),
                    kv_str("cost", "0.5"),
                ],
            )],
        );
        let rows = map_batch(&batch, &m, &TablesConfig::default(), 0);
        assert_eq!(rows.requests[0].user_email.as_deref(), Some("u1"));
        assert_eq!(rows.requests[0].department.as_deref(), Some("ops"), "resource attributes are a fallback");
        assert_eq!(rows.llm_calls[0].query_type.as_deref(), Some("lookup"));
        assert_eq!(rows.llm_calls[0].cost_usd, Some(0.5));
        let only_spans =
            TablesConfig { request_metrics: false, llm_call_metrics: false, ..Default::default() };
        let rows = map_batch(&batch, &m, &only_spans, 0);
        assert_eq!((rows.spans.len(), rows.requests.len(), rows.llm_calls.len()), (1, 0, 0));
    }

    #[test]
    fn every_span_becomes_a_trace_span() {
        let mut s =
            span(SpanKind::Internal, vec![kv_str("rag.department", "warehouse"), kv_int("rag.results", 5)]);
        s.events = vec![Event {
            time_unix_nano: T0 + 1_000,
            name: "cache.miss".into(),
            attributes: vec![kv_str("key", "emb:1")],
            dropped_attributes_count: 0,
        }];
        s.status = Some(Status { code: StatusCode::Error as i32, message: "boom".into() });
        s.name = "x".repeat(300);
        let rows = map(&traces(vec![kv_str("service.name", "api"), kv_str("host.name", "h1")], vec![s]));
        assert_eq!(
            rows.spans,
            vec![SpanRow {
                trace_id: "ab".repeat(16),
                span_id: "0102030405060708".into(),
                parent_span_id: Some("0f".repeat(8)),
                operation_name: "x".repeat(255),
                start_time: T0,
                end_time: T0 + 156_300_000,
                duration_ms: 156.3,
                tags: r#"{"rag.department":"warehouse","rag.results":5}"#.into(),
                logs: r#"[{"time":"2024-12-24T00:30:00.000001Z","name":"cache.miss","attributes":{"key":"emb:1"}}]"#
                    .into(),
                service_name: Some("api".into()),
                span_kind: "internal",
                status_code: "error",
                status_message: Some("boom".into()),
                resource: r#"{"service.name":"api","host.name":"h1"}"#.into(),
            }]
        );
    }

    fn metrics(metrics: Vec<Metric>) -> Batch {
        Batch::Metrics(vec![ResourceMetrics {
            resource: resource(vec![kv_str("service.name", "host")]),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope { name: "hostmetrics".into(), ..Default::default() }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }])
    }

    fn check_metric(m: Metric, expected: &[(f64, serde_json::Value)]) {
        let rows = map(&metrics(vec![m]));
        assert_eq!(rows.metrics.len(), expected.len());
        for (row, (value, md)) in rows.metrics.iter().zip(expected) {
            assert!(
                row.metric_value == *value || (row.metric_value.is_nan() && value.is_nan()),
                "{} != {value}",
                row.metric_value
            );
            let parsed: serde_json::Value = serde_json::from_str(&row.metadata).expect("metadata is JSON");
            assert_eq!(&parsed, md);
        }
    }

    #[test]
    fn every_data_point_becomes_a_system_metric() {
        let base = |kind: &str| {
            serde_json::json!({
                "type": kind, "unit": "1", "attributes": {"cpu": "0"},
                "resource": {"service.name": "host"}, "scope": "hostmetrics",
            })
        };
        let with = |mut v: serde_json::Value, extra: serde_json::Value| {
            if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            v
        };
        check_metric(
            gauge("system.cpu.utilization", "1", vec![double_point(0.45, 0, T0, vec![kv_str("cpu", "0")])]),
            &[(0.45, base("gauge"))],
        );
        check_metric(
            sum(
                "redis.keyspace.hits",
                "1",
                true,
                vec![int_point(1234, T0 - 10, T0, vec![kv_str("cpu", "0")])],
            ),
            &[(
                1234.0,
                with(
                    base("sum"),
                    serde_json::json!({"temporality": "cumulative", "monotonic": true, "start_time": "2024-12-24T00:29:59.999999Z"}),
                ),
            )],
        );
        let hist = Metric {
            name: "http.server.request.duration".into(),
            unit: "1".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: vec![kv_str("cpu", "0")],
                    time_unix_nano: T0,
                    count: 4,
                    sum: Some(0.9),
                    min: Some(0.1),
                    max: Some(0.4),
                    explicit_bounds: vec![0.25, 0.5],
                    bucket_counts: vec![2, 2, 0],
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            })),
            ..Default::default()
        };
        check_metric(
            hist,
            &[(
                0.9,
                with(
                    base("histogram"),
                    serde_json::json!({"temporality": "delta", "count": 4, "sum": 0.9, "min": 0.1, "max": 0.4,
                        "bounds": [0.25, 0.5], "bucket_counts": [2, 2, 0]}),
                ),
            )],
        );
        let exp = Metric {
            name: "latency".into(),
            unit: "1".into(),
            data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes: vec![kv_str("cpu", "0")],
                    time_unix_nano: T0,
                    count: 3,
                    sum: None,
                    scale: 2,
                    zero_count: 1,
                    positive: Some(Buckets { offset: -1, bucket_counts: vec![1, 1] }),
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        };
        check_metric(
            exp,
            &[(
                0.0,
                with(
                    base("exponential_histogram"),
                    serde_json::json!({"temporality": "cumulative", "count": 3, "scale": 2, "zero_count": 1,
                        "zero_threshold": 0.0, "sum": null, "min": null, "max": null,
                        "positive": {"offset": -1, "bucket_counts": [1, 1]}, "negative": null}),
                ),
            )],
        );
        let summary = Metric {
            name: "rpc".into(),
            unit: "1".into(),
            data: Some(Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: vec![kv_str("cpu", "0")],
                    time_unix_nano: 0,
                    count: 2,
                    sum: 3.0,
                    quantile_values: vec![ValueAtQuantile { quantile: 0.99, value: 2.5 }],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        };
        check_metric(
            summary,
            &[(
                3.0,
                with(
                    base("summary"),
                    serde_json::json!({"count": 2, "sum": 3.0, "quantiles": [{"quantile": 0.99, "value": 2.5}]}),
                ),
            )],
        );
        // A point without a value is kept, as NaN; a point without a time gets "now".
        let rows =
            map(&metrics(vec![gauge("x", "1", vec![NumberDataPoint { value: None, ..Default::default() }])]));
        assert!(rows.metrics[0].metric_value.is_nan());
        assert_eq!(rows.metrics[0].timestamp, 42);
    }

    #[test]
    fn every_log_record_becomes_a_row() {
        let batch = Batch::Logs(vec![ResourceLogs {
            resource: resource(vec![kv_str("service.name", "api")]),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope { name: "app.cache".into(), ..Default::default() }),
                log_records: vec![
                    LogRecord {
                        time_unix_nano: T0,
                        observed_time_unix_nano: T0 + 5,
                        severity_number: 13,
                        severity_text: "WARN".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("[Cache] MISS".into())),
                        }),
                        attributes: vec![kv_str("key", "rag:1")],
                        trace_id: vec![0xab; 16],
                        span_id: vec![1; 8],
                        event_name: "cache.miss".into(),
                        ..Default::default()
                    },
                    LogRecord { observed_time_unix_nano: T0 + 7, ..Default::default() },
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }]);
        let rows = map(&batch);
        assert_eq!(
            rows.logs[0],
            LogRow {
                timestamp: T0,
                observed_timestamp: Some(T0 + 5),
                severity_number: Some(13),
                severity_text: Some("WARN".into()),
                body: Some("[Cache] MISS".into()),
                attributes: r#"{"key":"rag:1"}"#.into(),
                resource: r#"{"service.name":"api"}"#.into(),
                trace_id: Some("ab".repeat(16)),
                span_id: Some("01".repeat(8)),
                service_name: Some("api".into()),
                scope_name: Some("app.cache".into()),
                event_name: Some("cache.miss".into()),
            }
        );
        let bare = &rows.logs[1];
        assert_eq!((bare.timestamp, bare.severity_number, bare.trace_id.as_deref()), (T0 + 7, None, None));
        assert_eq!(bare.body, None);
    }

    #[test]
    fn disabled_tables_get_no_rows() {
        let off = TablesConfig { system_metrics: false, log_records: false, ..Default::default() };
        let m = MappingConfig::default();
        assert_eq!(
            map_batch(&metrics(vec![gauge("g", "1", vec![double_point(1.0, 0, 1, vec![])])]), &m, &off, 0)
                .total(),
            0
        );
        assert_eq!(map_batch(&Batch::Logs(magpie_core::otlp::testdata::logs(1, 3)), &m, &off, 0).total(), 0);
    }

    fn failing(kind: SpanKind, message: &str) -> Span {
        let mut s = span(kind, vec![kv_str("http.method", "GET")]);
        s.status = Some(Status { code: StatusCode::Error as i32, message: message.into() });
        s
    }

    fn exception_logs() -> Batch {
        Batch::Logs(vec![ResourceLogs {
            resource: resource(vec![kv_str("service.name", "api")]),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        attributes: vec![kv_str("exception.type", "KeyError")],
                        ..Default::default()
                    },
                    LogRecord { attributes: vec![kv_str("key", "v")], ..Default::default() },
                ],
                ..Default::default()
            }],
            schema_url: String::new(),
        }])
    }

    #[test]
    fn failures_become_error_groups_unless_disabled() {
        let m = MappingConfig::default();
        let batch = traces(
            vec![kv_str("service.name", "api")],
            vec![
                failing(SpanKind::Server, "user 1 not found"),
                failing(SpanKind::Server, "user 2 not found"),
                span(SpanKind::Server, vec![]),
            ],
        );
        let rows = map(&batch);
        assert_eq!(rows.errors.len(), 1);
        let g = rows.errors.get(0).expect("a group");
        assert_eq!(
            (g.occurrences, g.service_name.as_deref(), g.message.as_str()),
            (2, Some("api"), "user <num> not found")
        );
        assert_eq!((rows.spans.len(), rows.total()), (3, 3 + 2 + 1), "spans, requests and one group");
        let off = TablesConfig { error_groups: false, ..Default::default() };
        assert!(map_batch(&batch, &m, &off, 0).errors.is_empty());

        // A log record with exception attributes is one, with or without its log_records row.
        let rows = map(&exception_logs());
        assert_eq!((rows.logs.len(), rows.errors.len()), (2, 1));
        assert_eq!(rows.errors.get(0).map(|g| g.last_seen), Some(42), "no timestamp: now");
        let only_groups = TablesConfig { log_records: false, ..Default::default() };
        let rows = map_batch(&exception_logs(), &m, &only_groups, 0);
        assert_eq!((rows.logs.len(), rows.errors.len()), (0, 1));
        let neither = TablesConfig { log_records: false, error_groups: false, ..Default::default() };
        assert_eq!(map_batch(&exception_logs(), &m, &neither, 0).total(), 0);
    }

    #[test]
    fn mapping_in_parts_gives_the_rows_of_the_whole() {
        let batch = Batch::Traces(
            [
                traces(
                    vec![kv_str("service.name", "a")],
                    (0..5)
                        .map(|_| {
                            span(
                                SpanKind::Server,
                                vec![kv_str("http.method", "GET"), kv_str("gen_ai.system", "xai")],
                            )
                        })
                        .collect(),
                ),
                traces(
                    vec![kv_str("service.name", "b")],
                    (0..4).map(|_| span(SpanKind::Internal, vec![])).collect(),
                ),
                traces(
                    vec![kv_str("service.name", "c")],
                    (0..3).map(|i| failing(SpanKind::Internal, &format!("lost {i}"))).collect(),
                ),
            ]
            .into_iter()
            .flat_map(|b| match b {
                Batch::Traces(rs) => rs,
                _ => Vec::new(),
            })
            .collect(),
        );
        let whole = map(&batch);
        assert_eq!((whole.spans.len(), whole.requests.len(), whole.llm_calls.len()), (12, 5, 5));
        assert_eq!((whole.errors.len(), whole.errors.get(0).map(|g| g.occurrences)), (1, Some(3)));
        for chunk in [1, 2, 4, 5, 8, 9, 11, 12, 100] {
            let mut parts = Rows::default();
            for start in (0..12).step_by(chunk) {
                parts.append(map_batch_part(
                    &batch,
                    &MappingConfig::default(),
                    &TablesConfig::default(),
                    42,
                    start..start + chunk,
                ));
            }
            assert_eq!(parts, whole, "chunks of {chunk}");
        }
    }

    #[test]
    fn fit_cuts_at_character_boundaries() {
        assert_eq!(fit("héllo", 2), "hé");
        assert_eq!(fit("abc", 3), "abc");
        assert_eq!(fit("", 1), "");
    }

    /// Each row type writes exactly its table's columns.
    #[test]
    fn rows_write_one_cell_per_column() {
        struct Count(usize);
        impl Cells for Count {
            fn null(&mut self) {
                self.0 += 1;
            }
            fn text(&mut self, _: &str) {
                self.0 += 1;
            }
            fn json(&mut self, _: &str) {
                self.0 += 1;
            }
            fn int4(&mut self, _: i32) {
                self.0 += 1;
            }
            fn int8(&mut self, _: i64) {
                self.0 += 1;
            }
            fn float8(&mut self, _: f64) {
                self.0 += 1;
            }
            fn boolean(&mut self, _: bool) {
                self.0 += 1;
            }
            fn timestamp(&mut self, _: u64) {
                self.0 += 1;
            }
            fn inet(&mut self, _: IpAddr) {
                self.0 += 1;
            }
            fn numeric(&mut self, _: f64, _: u16) {
                self.0 += 1;
            }
        }
        fn count<R: Row>(r: &R) {
            let mut c = Count(0);
            r.write(&mut c);
            assert_eq!(c.0, R::TABLE.columns().len(), "{:?}", R::TABLE);
        }
        let batch = traces(
            vec![],
            vec![span(SpanKind::Server, vec![kv_str("http.method", "GET"), kv_str("gen_ai.system", "xai")])],
        );
        let rows = map(&batch);
        count(&rows.spans[0]);
        count(&rows.requests[0]);
        count(&rows.llm_calls[0]);
        count(&map(&metrics(vec![gauge("g", "1", vec![double_point(1.0, 0, 1, vec![])])])).metrics[0]);
        count(&map(&Batch::Logs(magpie_core::otlp::testdata::logs(1, 1))).logs[0]);
        count(map(&exception_logs()).errors.get(0).expect("a group"));
    }
}
