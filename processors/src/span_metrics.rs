//! `span_metrics`: a connector that turns spans into RED metrics (rate,
//! errors, duration), so request rate, error rate and latency percentiles
//! exist without the app emitting them.
//!
//! - `http.server.request.duration` (histogram, seconds) for every SERVER
//!   span with an HTTP method, by `service.name` and the configured
//!   `dimensions` (default `http.request.method`, `http.route`,
//!   `http.response.status_code`; old semconv names are read too, the
//!   stable names are written).
//! - `traces.span.metrics.calls` (counter) for every span, by `service.name`,
//!   `span.name`, `span.kind`, `status.code` and the configured dimensions
//!   the span has: call counts, and error counts as the
//!   `status.code=STATUS_CODE_ERROR` series.
//! - For GenAI spans, `gen_ai.client.operation.duration` (histogram, seconds)
//!   and `gen_ai.client.token.usage` (histogram, tokens, by
//!   `gen_ai.token.type`), by `service.name` and the GenAI dimensions; and
//!   `magpie.gen_ai.client.cost` (counter, USD) for GenAI spans that carry a
//!   cost (`gen_ai.usage.cost_usd`, what the `llm_cost` processor writes).
//!
//! Each metric holds at most `cardinality_limit` attribute sets; spans that
//! would add another are counted in one overflow series whose only
//! attribute is `otel.metric.overflow=true`, so a bad route label cannot
//! exhaust memory. Metrics leave every `metrics_flush_interval`, with
//! cumulative or delta temporality.
//!
//! The aggregation ([`Aggregator`]) is a pure state machine over OTLP types;
//! the connector around it only moves batches and keeps time. It depends on
//! `magpie-core` only.

use magpie_core::config::duration;
use magpie_core::otlp::{attr, attr_f64, attr_i64, for_each_span, genai, kv_bool, kv_int, kv_str};
use magpie_core::proto::common::v1::{InstrumentationScope, KeyValue, any_value};
use magpie_core::proto::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, metric, number_data_point,
};
use magpie_core::proto::resource::v1::Resource;
use magpie_core::proto::trace::v1::{ResourceSpans, Span, span::SpanKind, status::StatusCode};
use magpie_core::{Batch, ComponentError, Connector, ConnectorContext};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The scope name on every metric this connector emits.
pub const SCOPE_NAME: &str = "magpie.span_metrics";

/// `http.server.request.duration`.
pub const HTTP_DURATION: &str = "http.server.request.duration";
/// `traces.span.metrics.calls` (the Collector's spanmetrics name).
pub const CALLS: &str = "traces.span.metrics.calls";
/// `gen_ai.client.operation.duration`.
pub const GEN_AI_DURATION: &str = "gen_ai.client.operation.duration";
/// `gen_ai.client.token.usage`.
pub const GEN_AI_TOKENS: &str = "gen_ai.client.token.usage";
/// The USD cost of GenAI calls (no semantic convention names one yet).
pub const GEN_AI_COST: &str = "magpie.gen_ai.client.cost";

/// The semantic conventions' advisory buckets for `http.server.request.duration`.
pub const HTTP_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
/// The semantic conventions' advisory buckets for `gen_ai.client.operation.duration`.
pub const GEN_AI_DURATION_BUCKETS: &[f64] =
    &[0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
/// The semantic conventions' advisory buckets for `gen_ai.client.token.usage`.
pub const GEN_AI_TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// Attribute names read under another (older) name too; the first is written.
const ALIASES: &[&[&str]] = &[
    &["http.request.method", "http.method"],
    &["http.response.status_code", "http.status_code"],
    &["url.scheme", "http.scheme"],
    &["server.address", "net.host.name"],
    &["gen_ai.provider.name", "gen_ai.system"],
    &["enduser.id", "user.email", "user.id"],
    &["department", "app.department"],
];

/// The names `name` may be written under on a span, stable name first.
fn aliases_of(name: &str) -> Vec<&str> {
    ALIASES.iter().find(|a| a.contains(&name)).map_or_else(|| vec![name], |a| a.to_vec())
}

/// Output temporality.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Temporality {
    /// Totals since the series appeared, re-sent every flush.
    #[default]
    Cumulative,
    /// Only what changed since the previous flush; quiet series are not sent.
    Delta,
}

/// Config of `span_metrics`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMetricsConfig {
    /// Span attributes that become dimensions of the HTTP histogram and the calls counter.
    pub dimensions: Vec<String>,
    /// Span attributes that become dimensions of the GenAI metrics.
    pub gen_ai_dimensions: Vec<String>,
    /// Bucket bounds (seconds) of `http.server.request.duration`.
    pub http_buckets: Vec<f64>,
    /// Bucket bounds (seconds) of `gen_ai.client.operation.duration`.
    pub gen_ai_duration_buckets: Vec<f64>,
    /// Bucket bounds (tokens) of `gen_ai.client.token.usage`.
    pub gen_ai_token_buckets: Vec<f64>,
    /// Attribute sets each metric holds before new ones go to the overflow series.
    pub cardinality_limit: usize,
    /// How often the metrics are sent.
    #[serde(with = "duration")]
    pub metrics_flush_interval: Duration,
    pub aggregation_temporality: Temporality,
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        SpanMetricsConfig {
            dimensions: ["http.request.method", "http.route", "http.response.status_code"]
                .map(String::from)
                .to_vec(),
            gen_ai_dimensions: ["gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model"]
                .map(String::from)
                .to_vec(),
            http_buckets: HTTP_BUCKETS.to_vec(),
            gen_ai_duration_buckets: GEN_AI_DURATION_BUCKETS.to_vec(),
            gen_ai_token_buckets: GEN_AI_TOKEN_BUCKETS.to_vec(),
            cardinality_limit: 1000,
            metrics_flush_interval: Duration::from_secs(15),
            aggregation_temporality: Temporality::Cumulative,
        }
    }
}

impl SpanMetricsConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, b) in [
            ("http_buckets", &self.http_buckets),
            ("gen_ai_duration_buckets", &self.gen_ai_duration_buckets),
            ("gen_ai_token_buckets", &self.gen_ai_token_buckets),
        ] {
            if b.is_empty() {
                out.push(format!("{name}: list at least one bucket bound"));
            } else if b.iter().any(|v| !v.is_finite()) || b.windows(2).any(|w| w[0] >= w[1]) {
                out.push(format!("{name}: bounds must be finite and strictly increasing"));
            }
        }
        if self.cardinality_limit == 0 {
            out.push("cardinality_limit: must be at least 1".to_string());
        }
        if self.metrics_flush_interval < Duration::from_millis(100) {
            out.push("metrics_flush_interval: must be at least 100ms".to_string());
        }
        for (name, dims) in [("dimensions", &self.dimensions), ("gen_ai_dimensions", &self.gen_ai_dimensions)]
        {
            for (i, d) in dims.iter().enumerate() {
                if d.trim().is_empty() {
                    out.push(format!("{name}[{i}]: must not be empty"));
                } else if dims[..i].contains(d) {
                    out.push(format!("{name}[{i}]: `{d}` is listed twice"));
                }
            }
        }
        out
    }
}

/// An attribute value as part of a series key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Val {
    fn from_any(v: &any_value::Value) -> Val {
        match v {
            any_value::Value::IntValue(i) => Val::Int(*i),
            any_value::Value::BoolValue(b) => Val::Bool(*b),
            any_value::Value::StringValue(s) => Val::Str(s.clone()),
            other => Val::Str(magpie_core::otlp::any_value_to_string(other)),
        }
    }

    fn to_kv(&self, key: &str) -> KeyValue {
        match self {
            Val::Str(s) => kv_str(key, s.clone()),
            Val::Int(i) => kv_int(key, *i),
            Val::Bool(b) => kv_bool(key, *b),
        }
    }
}

/// A series' attribute set, in dimension order.
type Key = Vec<(String, Val)>;

/// Which series a metric adds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    HttpDuration,
    Calls,
    GenAiDuration,
    GenAiTokens,
    GenAiCost,
}

impl Kind {
    const ALL: [Kind; 5] =
        [Kind::HttpDuration, Kind::Calls, Kind::GenAiDuration, Kind::GenAiTokens, Kind::GenAiCost];

    fn name(self) -> &'static str {
        match self {
            Kind::HttpDuration => HTTP_DURATION,
            Kind::Calls => CALLS,
            Kind::GenAiDuration => GEN_AI_DURATION,
            Kind::GenAiTokens => GEN_AI_TOKENS,
            Kind::GenAiCost => GEN_AI_COST,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Kind::HttpDuration | Kind::GenAiDuration => "s",
            Kind::Calls => "{call}",
            Kind::GenAiTokens => "{token}",
            Kind::GenAiCost => "{USD}",
        }
    }
}

/// One series' totals.
#[derive(Clone, Debug)]
struct Series {
    start: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// Empty for counters.
    buckets: Vec<u64>,
}

impl Series {
    fn new(start: u64, bounds: usize) -> Self {
        Series {
            start,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            buckets: vec![0; if bounds == 0 { 0 } else { bounds + 1 }],
        }
    }

    fn record(&mut self, bounds: &[f64], value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if !self.buckets.is_empty() {
            let i = bucket_index(bounds, value);
            self.buckets[i] += 1;
        }
    }
}

/// The OTLP explicit-bucket index of `value`: bucket `i` holds values in
/// `(bounds[i-1], bounds[i]]`, the last one everything above the last bound.
pub fn bucket_index(bounds: &[f64], value: f64) -> usize {
    bounds.partition_point(|b| *b < value)
}

/// One metric's series, capped.
#[derive(Debug, Default)]
struct Table {
    series: HashMap<(String, Key), Series>,
    overflow: HashMap<String, Series>,
}

/// The aggregation state: spans in, OTLP metrics out.
pub struct Aggregator {
    config: SpanMetricsConfig,
    tables: HashMap<Kind, Table>,
    last_flush: u64,
}

impl Aggregator {
    /// A fresh aggregator; `now` (Unix nanoseconds) starts the first delta window.
    pub fn new(config: &SpanMetricsConfig, now: u64) -> Self {
        Aggregator { config: config.clone(), tables: HashMap::new(), last_flush: now }
    }

    fn bounds(&self, kind: Kind) -> &[f64] {
        match kind {
            Kind::HttpDuration => &self.config.http_buckets,
            Kind::GenAiDuration => &self.config.gen_ai_duration_buckets,
            Kind::GenAiTokens => &self.config.gen_ai_token_buckets,
            Kind::Calls | Kind::GenAiCost => &[],
        }
    }

    fn record(&mut self, kind: Kind, service: &str, key: Key, value: f64, now: u64) {
        let limit = self.config.cardinality_limit;
        let bounds = self.bounds(kind).to_vec();
        let table = self.tables.entry(kind).or_default();
        let id = (service.to_string(), key);
        if let Some(s) = table.series.get_mut(&id) {
            s.record(&bounds, value);
        } else if table.series.len() < limit {
            let mut s = Series::new(now, bounds.len());
            s.record(&bounds, value);
            table.series.insert(id, s);
        } else {
            let s = table.overflow.entry(id.0).or_insert_with(|| Series::new(now, bounds.len()));
            s.record(&bounds, value);
        }
    }

    /// Adds every span of `rs`; `now` (Unix nanoseconds) starts new series.
    pub fn add(&mut self, rs: &[ResourceSpans], now: u64) {
        let dims = self.config.dimensions.clone();
        let ai_dims = self.config.gen_ai_dimensions.clone();
        let mut spans: Vec<(Option<&Resource>, &Span)> = Vec::new();
        for_each_span(rs, |r, s| spans.push((r, s)));
        for (resource, span) in spans {
            let service = resource
                .and_then(|r| magpie_core::otlp::attr_string(&r.attributes, &["service.name"]))
                .unwrap_or_else(|| "unknown_service".to_string());
            let seconds = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) as f64 / 1e9;
            let attrs = &span.attributes;
            let status = span.status.as_ref().map_or(StatusCode::Unset as i32, |s| s.code);
            let error = status == StatusCode::Error as i32;

            let mut calls: Key = vec![
                ("span.name".to_string(), Val::Str(span.name.clone())),
                ("span.kind".to_string(), Val::Str(kind_name(span.kind).to_string())),
                ("status.code".to_string(), Val::Str(status_name(status).to_string())),
            ];
            calls.extend(dimension_values(attrs, &dims));
            self.record(Kind::Calls, &service, calls, 1.0, now);

            if span.kind == SpanKind::Server as i32
                && attr(attrs, &aliases_of("http.request.method")).is_some()
            {
                let key = dimension_values(attrs, &dims);
                self.record(Kind::HttpDuration, &service, key, seconds, now);
            }

            let is_gen_ai = attr(attrs, &["gen_ai.provider.name", "gen_ai.system", "gen_ai.operation.name"])
                .is_some()
                || attr(attrs, &["gen_ai.request.model"]).is_some();
            if is_gen_ai {
                let mut key = dimension_values(attrs, &ai_dims);
                if error {
                    let e = magpie_core::otlp::attr_string(attrs, &["error.type"])
                        .unwrap_or_else(|| "_OTHER".into());
                    key.push(("error.type".to_string(), Val::Str(e)));
                }
                self.record(Kind::GenAiDuration, &service, key, seconds, now);
                let base = dimension_values(attrs, &ai_dims);
                let tokens = [("input", genai::INPUT_TOKENS), ("output", genai::OUTPUT_TOKENS)];
                for (token_type, names) in tokens {
                    if let Some(n) = attr_i64(attrs, names).filter(|n| *n >= 0) {
                        let mut key = base.clone();
                        key.push(("gen_ai.token.type".to_string(), Val::Str(token_type.to_string())));
                        self.record(Kind::GenAiTokens, &service, key, n as f64, now);
                    }
                }
                if let Some(usd) = attr_f64(attrs, genai::COST_USD).filter(|c| c.is_finite() && *c >= 0.0) {
                    self.record(Kind::GenAiCost, &service, base.clone(), usd, now);
                }
            }
        }
    }

    /// Series held now, overflow series included.
    pub fn series_count(&self) -> usize {
        self.tables.values().map(|t| t.series.len() + t.overflow.len()).sum()
    }

    /// The metrics to send at `now`: every series (cumulative) or the series
    /// that changed since the last flush (delta, which then starts afresh).
    pub fn flush(&mut self, now: u64) -> Vec<ResourceMetrics> {
        let delta = self.config.aggregation_temporality == Temporality::Delta;
        let window_start = self.last_flush;
        self.last_flush = now;
        // service → metrics
        let mut by_service: HashMap<String, Vec<Metric>> = HashMap::new();
        for kind in Kind::ALL {
            let bounds = self.bounds(kind).to_vec();
            let Some(table) = self.tables.get_mut(&kind) else { continue };
            let mut points: HashMap<&str, Vec<(Vec<KeyValue>, &Series)>> = HashMap::new();
            for ((service, key), s) in &table.series {
                let mut attrs = vec![kv_str("service.name", service.clone())];
                attrs.extend(key.iter().map(|(k, v)| v.to_kv(k)));
                points.entry(service.as_str()).or_default().push((attrs, s));
            }
            for (service, s) in &table.overflow {
                points
                    .entry(service.as_str())
                    .or_default()
                    .push((vec![kv_bool("otel.metric.overflow", true)], s));
            }
            for (service, mut pts) in points {
                // A stable order makes output and tests deterministic.
                pts.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
                let start_of = |s: &Series| if delta { window_start } else { s.start };
                let data = if kind == Kind::GenAiCost {
                    metric::Data::Sum(Sum {
                        data_points: pts
                            .into_iter()
                            .map(|(attributes, s)| NumberDataPoint {
                                attributes,
                                start_time_unix_nano: start_of(s),
                                time_unix_nano: now,
                                value: Some(number_data_point::Value::AsDouble(s.sum)),
                                ..Default::default()
                            })
                            .collect(),
                        aggregation_temporality: temporality(delta),
                        is_monotonic: true,
                    })
                } else if kind == Kind::Calls {
                    metric::Data::Sum(Sum {
                        data_points: pts
                            .into_iter()
                            .map(|(attributes, s)| NumberDataPoint {
                                attributes,
                                start_time_unix_nano: start_of(s),
                                time_unix_nano: now,
                                value: Some(number_data_point::Value::AsInt(
                                    i64::try_from(s.count).unwrap_or(i64::MAX),
                                )),
                                ..Default::default()
                            })
                            .collect(),
                        aggregation_temporality: temporality(delta),
                        is_monotonic: true,
                    })
                } else {
                    metric::Data::Histogram(Histogram {
                        data_points: pts
                            .into_iter()
                            .map(|(attributes, s)| HistogramDataPoint {
                                attributes,
                                start_time_unix_nano: start_of(s),
                                time_unix_nano: now,
                                count: s.count,
                                sum: Some(s.sum),
                                bucket_counts: s.buckets.clone(),
                                explicit_bounds: bounds.clone(),
                                min: (s.count > 0).then_some(s.min),
                                max: (s.count > 0).then_some(s.max),
                                ..Default::default()
                            })
                            .collect(),
                        aggregation_temporality: temporality(delta),
                    })
                };
                by_service.entry(service.to_string()).or_default().push(Metric {
                    name: kind.name().to_string(),
                    unit: kind.unit().to_string(),
                    data: Some(data),
                    ..Default::default()
                });
            }
        }
        if delta {
            self.tables.clear();
        }
        let mut services: Vec<(String, Vec<Metric>)> = by_service.into_iter().collect();
        services.sort_by(|a, b| a.0.cmp(&b.0));
        services
            .into_iter()
            .map(|(service, metrics)| ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv_str("service.name", service)],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.to_string(),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect()
    }
}

fn temporality(delta: bool) -> i32 {
    if delta { AggregationTemporality::Delta as i32 } else { AggregationTemporality::Cumulative as i32 }
}

/// The configured dimensions the span has, under their stable names.
fn dimension_values(attrs: &[KeyValue], dims: &[String]) -> Key {
    dims.iter()
        .filter_map(|d| {
            let names = aliases_of(d);
            let out_name = names.first().copied().unwrap_or(d.as_str());
            attr(attrs, &names).map(|v| (out_name.to_string(), Val::from_any(v)))
        })
        .collect()
}

fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
        SpanKind::Internal => "SPAN_KIND_INTERNAL",
        SpanKind::Server => "SPAN_KIND_SERVER",
        SpanKind::Client => "SPAN_KIND_CLIENT",
        SpanKind::Producer => "SPAN_KIND_PRODUCER",
        SpanKind::Consumer => "SPAN_KIND_CONSUMER",
    }
}

fn status_name(code: i32) -> &'static str {
    match StatusCode::try_from(code).unwrap_or(StatusCode::Unset) {
        StatusCode::Unset => "STATUS_CODE_UNSET",
        StatusCode::Ok => "STATUS_CODE_OK",
        StatusCode::Error => "STATUS_CODE_ERROR",
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The connector.
pub struct SpanMetricsConnector {
    config: SpanMetricsConfig,
}

impl SpanMetricsConnector {
    pub fn new(config: &SpanMetricsConfig) -> Self {
        SpanMetricsConnector { config: config.clone() }
    }
}

#[async_trait::async_trait]
impl Connector for SpanMetricsConnector {
    async fn run(self: Box<Self>, mut ctx: ConnectorContext) -> Result<(), ComponentError> {
        let mut agg = Aggregator::new(&self.config, unix_nanos());
        let period = self.config.metrics_flush_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                batch = ctx.input.recv() => match batch {
                    Some(b) => {
                        if let Batch::Traces(rs) = b.as_ref() {
                            agg.add(rs, unix_nanos());
                            ctx.stats.add_exported(b.item_count() as u64);
                        }
                    }
                    None => break,
                },
                _ = ticker.tick() => send(&ctx, agg.flush(unix_nanos())).await,
            }
        }
        send(&ctx, agg.flush(unix_nanos())).await;
        Ok(())
    }
}

async fn send(ctx: &ConnectorContext, metrics: Vec<ResourceMetrics>) {
    if metrics.is_empty() {
        return;
    }
    let batch = Batch::Metrics(metrics);
    let points = batch.item_count();
    if let Err(e) = ctx.output.send(batch).await {
        tracing::warn!(component = %ctx.id, points, error = %e, "span_metrics could not deliver its metrics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::otlp::{kv_double, testdata};
    use magpie_core::proto::trace::v1::{ScopeSpans, Status};

    const T0: u64 = 1_700_000_000_000_000_000;

    /// A span of `kind` lasting `ms` milliseconds with `attrs` and `status`.
    fn span(kind: SpanKind, ms: f64, status: StatusCode, attrs: Vec<KeyValue>) -> Span {
        Span {
            name: "op".into(),
            kind: kind as i32,
            start_time_unix_nano: T0,
            end_time_unix_nano: T0 + (ms * 1e6) as u64,
            attributes: attrs,
            status: Some(Status { code: status as i32, message: String::new() }),
            ..Default::default()
        }
    }

    fn resource(service: &str, spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            schema_url: String::new(),
        }
    }

    fn http(method: &str, route: &str, code: i64) -> Vec<KeyValue> {
        vec![
            kv_str("http.request.method", method),
            kv_str("http.route", route),
            kv_int("http.response.status_code", code),
        ]
    }

    /// Every data point of `name` as (attributes as `k=v` strings, count, sum, buckets).
    fn points(rm: &[ResourceMetrics], name: &str) -> Vec<(Vec<String>, u64, f64, Vec<u64>)> {
        let mut out = Vec::new();
        for m in rm.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics).filter(|m| m.name == name)
        {
            let show = |a: &[KeyValue]| -> Vec<String> {
                let mut v: Vec<String> = a
                    .iter()
                    .map(|kv| {
                        let val = kv.value.as_ref().and_then(|v| v.value.as_ref());
                        format!(
                            "{}={}",
                            kv.key,
                            val.map(magpie_core::otlp::any_value_to_string).unwrap_or_default()
                        )
                    })
                    .collect();
                v.sort();
                v
            };
            match &m.data {
                Some(metric::Data::Histogram(h)) => {
                    for p in &h.data_points {
                        out.push((
                            show(&p.attributes),
                            p.count,
                            p.sum.unwrap_or(0.0),
                            p.bucket_counts.clone(),
                        ));
                    }
                }
                Some(metric::Data::Sum(s)) => {
                    for p in &s.data_points {
                        // Integer sums in the count slot, double sums in the sum slot.
                        let (count, sum) = match p.value {
                            Some(number_data_point::Value::AsInt(i)) => (i as u64, 0.0),
                            Some(number_data_point::Value::AsDouble(d)) => (0, d),
                            None => (0, 0.0),
                        };
                        out.push((show(&p.attributes), count, sum, vec![]));
                    }
                }
                _ => {}
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn check(
        config: SpanMetricsConfig,
        spans: Vec<ResourceSpans>,
        name: &str,
        expected: &[(&str, u64, f64, &[u64])],
    ) {
        let mut agg = Aggregator::new(&config, T0);
        agg.add(&spans, T0);
        let got = points(&agg.flush(T0 + 1), name);
        let mut want: Vec<(Vec<String>, u64, f64, Vec<u64>)> = expected
            .iter()
            .map(|(attrs, c, s, b)| {
                let mut a: Vec<String> =
                    attrs.split(',').filter(|x| !x.is_empty()).map(String::from).collect();
                a.sort();
                (a, *c, *s, b.to_vec())
            })
            .collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got.len(), want.len(), "{name}: got {got:#?}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((&g.0, g.1, &g.3), (&w.0, w.1, &w.3), "{name}");
            assert!((g.2 - w.2).abs() < 1e-9, "{name}: sum {} != {}", g.2, w.2);
        }
    }

    #[test]
    fn buckets_are_upper_inclusive() {
        let b = HTTP_BUCKETS;
        for (value, index) in [
            (0.0, 0),
            (0.005, 0),
            (0.0051, 1),
            (0.01, 1),
            (0.1, 5),
            (0.2, 6),
            (10.0, 13),
            (10.1, 14),
            (99.0, 14),
        ] {
            assert_eq!(bucket_index(b, value), index, "{value}");
        }
    }

    #[test]
    fn http_server_spans_give_an_exact_duration_histogram() {
        use SpanKind::*;
        let spans = vec![
            resource(
                "chat",
                vec![
                    span(Server, 3.0, StatusCode::Unset, http("GET", "/items/{id}", 200)), // bucket 0 (≤5ms)
                    span(Server, 5.0, StatusCode::Unset, http("GET", "/items/{id}", 200)), // bucket 0: bounds are inclusive
                    span(Server, 120.0, StatusCode::Unset, http("GET", "/items/{id}", 200)), // bucket 6 (≤250ms)
                    span(Server, 2_000.0, StatusCode::Error, http("POST", "/chat", 500)), // bucket 10 (≤2.5s)
                    span(Server, 11_000.0, StatusCode::Error, http("POST", "/chat", 500)), // bucket 14 (>10s)
                    // Old semconv names are read and written under the stable names.
                    span(
                        Server,
                        40.0,
                        StatusCode::Unset,
                        vec![
                            kv_str("http.method", "POST"),
                            kv_str("http.route", "/chat"),
                            kv_int("http.status_code", 500),
                        ],
                    ), // bucket 3 (≤50ms)
                    // Not counted in the HTTP histogram: a client span, and a server span without a method.
                    span(Client, 1.0, StatusCode::Unset, http("GET", "/x", 200)),
                    span(Server, 1.0, StatusCode::Unset, vec![kv_str("rpc.system", "grpc")]),
                ],
            ),
            resource("worker", vec![span(Server, 75.0, StatusCode::Unset, http("GET", "/health", 204))]), // bucket 4 (≤75ms)
        ];
        check(
            SpanMetricsConfig::default(),
            spans,
            HTTP_DURATION,
            &[
                (
                    "service.name=chat,http.request.method=GET,http.route=/items/{id},http.response.status_code=200",
                    3,
                    0.128,
                    &[2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
                ),
                (
                    "service.name=chat,http.request.method=POST,http.route=/chat,http.response.status_code=500",
                    3,
                    13.04,
                    &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
                ),
                (
                    "service.name=worker,http.request.method=GET,http.route=/health,http.response.status_code=204",
                    1,
                    0.075,
                    &[0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ),
            ],
        );
    }

    #[test]
    fn calls_count_every_span_and_errors_by_status() {
        use SpanKind::*;
        let spans = vec![resource(
            "chat",
            vec![
                span(Server, 1.0, StatusCode::Unset, http("GET", "/a", 200)),
                span(Server, 1.0, StatusCode::Unset, http("GET", "/a", 200)),
                span(Server, 1.0, StatusCode::Error, http("GET", "/a", 503)),
                span(Internal, 1.0, StatusCode::Ok, vec![]),
            ],
        )];
        check(
            SpanMetricsConfig::default(),
            spans,
            CALLS,
            &[
                (
                    "service.name=chat,span.name=op,span.kind=SPAN_KIND_INTERNAL,status.code=STATUS_CODE_OK",
                    1,
                    0.0,
                    &[],
                ),
                (
                    "service.name=chat,span.name=op,span.kind=SPAN_KIND_SERVER,status.code=STATUS_CODE_ERROR,http.request.method=GET,http.route=/a,http.response.status_code=503",
                    1,
                    0.0,
                    &[],
                ),
                (
                    "service.name=chat,span.name=op,span.kind=SPAN_KIND_SERVER,status.code=STATUS_CODE_UNSET,http.request.method=GET,http.route=/a,http.response.status_code=200",
                    2,
                    0.0,
                    &[],
                ),
            ],
        );
    }

    #[test]
    fn gen_ai_spans_give_duration_and_token_histograms() {
        let llm = |system_key: &str, model: &str, ms: f64, input: i64, output: i64, status| {
            span(
                SpanKind::Client,
                ms,
                status,
                vec![
                    kv_str(system_key, "xai"),
                    kv_str("gen_ai.operation.name", "chat"),
                    kv_str("gen_ai.request.model", model),
                    kv_int(
                        if system_key == "gen_ai.system" {
                            "gen_ai.usage.prompt_tokens"
                        } else {
                            "gen_ai.usage.input_tokens"
                        },
                        input,
                    ),
                    kv_int(
                        if system_key == "gen_ai.system" {
                            "gen_ai.usage.completion_tokens"
                        } else {
                            "gen_ai.usage.output_tokens"
                        },
                        output,
                    ),
                ],
            )
        };
        let spans = vec![resource(
            "chat",
            vec![
                llm("gen_ai.provider.name", "grok-4", 900.0, 1000, 200, StatusCode::Unset),
                llm("gen_ai.system", "grok-4", 3_000.0, 3, 5000, StatusCode::Unset),
                llm("gen_ai.provider.name", "grok-4", 100.0, 10, 0, StatusCode::Error),
            ],
        )];
        let base = "service.name=chat,gen_ai.operation.name=chat,gen_ai.provider.name=xai,gen_ai.request.model=grok-4";
        check(
            SpanMetricsConfig::default(),
            spans.clone(),
            GEN_AI_DURATION,
            &[
                (base, 2, 3.9, &[0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0]),
                (
                    &format!("{base},error.type=_OTHER"),
                    1,
                    0.1,
                    &[0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ),
            ],
        );
        check(
            SpanMetricsConfig::default(),
            spans,
            GEN_AI_TOKENS,
            &[
                // 1000 → ≤1024 (5), 3 → ≤4 (1), 10 → ≤16 (2)
                (
                    &format!("{base},gen_ai.token.type=input"),
                    3,
                    1013.0,
                    &[0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ),
                // 200 → ≤256 (4), 5000 → ≤16384 (7), 0 → ≤1 (0)
                (
                    &format!("{base},gen_ai.token.type=output"),
                    3,
                    5200.0,
                    &[1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
                ),
            ],
        );
    }

    #[test]
    fn the_cost_of_gen_ai_calls_is_summed_by_model() {
        let call = |model: &str, cost: Option<(&str, f64)>| {
            let mut attrs = vec![
                kv_str("gen_ai.provider.name", "xai"),
                kv_str("gen_ai.operation.name", "chat"),
                kv_str("gen_ai.request.model", model),
            ];
            if let Some((key, usd)) = cost {
                attrs.push(magpie_core::otlp::kv_double(key, usd));
            }
            span(SpanKind::Client, 100.0, StatusCode::Unset, attrs)
        };
        let spans = vec![resource(
            "chat",
            vec![
                call("grok-4", Some(("gen_ai.usage.cost_usd", 0.01))),
                call("grok-4", Some(("gen_ai.usage.cost_usd", 0.02))),
                call("grok-4", Some(("llm.cost_usd", 0.005))),
                call("grok-4", None),
                call("grok-4", Some(("gen_ai.usage.cost_usd", -1.0))),
                call("grok-3-mini", Some(("gen_ai.usage.cost_usd", 0.0001))),
            ],
        )];
        let base = "service.name=chat,gen_ai.operation.name=chat,gen_ai.provider.name=xai";
        check(
            SpanMetricsConfig::default(),
            spans,
            GEN_AI_COST,
            &[
                (&format!("{base},gen_ai.request.model=grok-3-mini"), 0, 0.0001, &[]),
                (&format!("{base},gen_ai.request.model=grok-4"), 0, 0.035, &[]),
            ],
        );
    }

    #[test]
    fn openllmetry_token_names_count_too() {
        let spans = vec![resource(
            "chat",
            vec![span(
                SpanKind::Client,
                50.0,
                StatusCode::Unset,
                vec![
                    kv_str("gen_ai.system", "openai"),
                    kv_str("gen_ai.operation.name", "chat"),
                    kv_str("gen_ai.request.model", "gpt-4o"),
                    kv_int("llm.usage.prompt_tokens", 7),
                    kv_int("llm.usage.completion_tokens", 2),
                ],
            )],
        )];
        let base = "service.name=chat,gen_ai.operation.name=chat,gen_ai.provider.name=openai,gen_ai.request.model=gpt-4o";
        check(
            SpanMetricsConfig::default(),
            spans,
            GEN_AI_TOKENS,
            &[
                (
                    &format!("{base},gen_ai.token.type=input"),
                    1,
                    7.0,
                    &[0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ),
                (
                    &format!("{base},gen_ai.token.type=output"),
                    1,
                    2.0,
                    &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ),
            ],
        );
    }

    #[test]
    fn the_cardinality_cap_sends_new_sets_to_one_overflow_series() {
        let spans: Vec<Span> = (0..5)
            .map(|i| span(SpanKind::Server, 1.0, StatusCode::Unset, http("GET", &format!("/u/{i}"), 200)))
            .collect();
        let config = SpanMetricsConfig {
            cardinality_limit: 2,
            dimensions: vec!["http.route".into()],
            ..Default::default()
        };
        check(
            config.clone(),
            vec![resource("chat", spans.clone())],
            HTTP_DURATION,
            &[
                ("otel.metric.overflow=true", 3, 0.003, &[3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                (
                    "service.name=chat,http.route=/u/0",
                    1,
                    0.001,
                    &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ),
                (
                    "service.name=chat,http.route=/u/1",
                    1,
                    0.001,
                    &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ),
            ],
        );
        // Existing series keep counting once the cap is reached.
        let mut agg = Aggregator::new(&config, T0);
        agg.add(&[resource("chat", spans.clone())], T0);
        agg.add(&[resource("chat", spans[..1].to_vec())], T0);
        let p = points(&agg.flush(T0), HTTP_DURATION);
        assert_eq!(p.iter().find(|x| x.0.contains(&"http.route=/u/0".to_string())).map(|x| x.1), Some(2));
    }

    #[test]
    fn dimensions_are_configurable() {
        let config = SpanMetricsConfig {
            dimensions: vec!["http.method".into(), "department".into()],
            ..Default::default()
        };
        let mut attrs = http("GET", "/a", 200);
        attrs.push(kv_str("app.department", "warehouse"));
        attrs.push(kv_double("ignored", 1.0));
        check(
            config,
            vec![resource("chat", vec![span(SpanKind::Server, 1.0, StatusCode::Unset, attrs)])],
            HTTP_DURATION,
            &[(
                "service.name=chat,http.request.method=GET,department=warehouse",
                1,
                0.001,
                &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            )],
        );
    }

    #[test]
    fn cumulative_keeps_totals_and_delta_starts_afresh() {
        let one = || {
            vec![resource(
                "chat",
                vec![span(SpanKind::Server, 1.0, StatusCode::Unset, http("GET", "/a", 200))],
            )]
        };
        for (temporality, second_count, third_len) in
            [(Temporality::Cumulative, 2, 1), (Temporality::Delta, 1, 0)]
        {
            let config = SpanMetricsConfig { aggregation_temporality: temporality, ..Default::default() };
            let mut agg = Aggregator::new(&config, T0);
            agg.add(&one(), T0 + 5);
            let first = agg.flush(T0 + 10);
            agg.add(&one(), T0 + 15);
            let second = agg.flush(T0 + 20);
            assert_eq!(points(&second, HTTP_DURATION)[0].1, second_count, "{temporality:?}");
            let third = agg.flush(T0 + 30);
            assert_eq!(points(&third, HTTP_DURATION).len(), third_len, "{temporality:?}: quiet series");
            let start = |rm: &[ResourceMetrics]| match &rm[0].scope_metrics[0]
                .metrics
                .iter()
                .find(|m| m.name == HTTP_DURATION)
                .unwrap()
                .data
            {
                Some(metric::Data::Histogram(h)) => {
                    (h.data_points[0].start_time_unix_nano, h.aggregation_temporality)
                }
                _ => (0, 0),
            };
            match temporality {
                Temporality::Cumulative => {
                    assert_eq!(start(&first), (T0 + 5, AggregationTemporality::Cumulative as i32));
                    assert_eq!(start(&second), (T0 + 5, AggregationTemporality::Cumulative as i32));
                }
                Temporality::Delta => {
                    assert_eq!(start(&first), (T0, AggregationTemporality::Delta as i32));
                    assert_eq!(start(&second), (T0 + 10, AggregationTemporality::Delta as i32));
                }
            }
            assert_eq!(first[0].scope_metrics[0].scope.as_ref().map(|s| s.name.as_str()), Some(SCOPE_NAME));
        }
    }

    #[test]
    fn config_problems() {
        let c = SpanMetricsConfig {
            http_buckets: vec![1.0, 0.5],
            gen_ai_token_buckets: vec![],
            cardinality_limit: 0,
            dimensions: vec!["http.route".into(), "http.route".into()],
            ..Default::default()
        };
        let p = c.problems();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(SpanMetricsConfig::default().problems().is_empty());
    }

    #[test]
    fn testdata_spans_feed_the_histogram() {
        let mut agg = Aggregator::new(&SpanMetricsConfig::default(), T0);
        agg.add(&testdata::spans(2, 10), T0);
        let p = points(&agg.flush(T0), HTTP_DURATION);
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|x| x.1 == 10 && x.3[0] == 10), "2.5 ms spans land in the first bucket: {p:?}");
    }

    #[tokio::test]
    async fn the_connector_flushes_on_its_interval_and_once_more_at_the_end() {
        use magpie_core::queue::{WhenFull, queue};
        use magpie_core::{ComponentStats, Output, Signal};
        use std::sync::Arc;
        let stats = Arc::new(ComponentStats::default());
        let (tx, rx) = queue(4, WhenFull::Block, stats.clone());
        let (mtx, mut mrx) = tokio::sync::mpsc::channel(8);
        let mut output = Output::new(stats.clone());
        output.add(Signal::Metrics, mtx);
        let ctx =
            ConnectorContext { id: "span_metrics".parse().unwrap(), input: rx, output, stats: stats.clone() };
        let config =
            SpanMetricsConfig { metrics_flush_interval: Duration::from_millis(100), ..Default::default() };
        let task = tokio::spawn(Box::new(SpanMetricsConnector::new(&config)).run(ctx));
        let wait = Duration::from_secs(5);
        tx.push(Arc::new(Batch::Traces(testdata::spans(1, 3)))).await.unwrap();
        let Some(Batch::Metrics(first)) = tokio::time::timeout(wait, mrx.recv()).await.unwrap() else {
            panic!("a metrics batch")
        };
        assert_eq!(points(&first, HTTP_DURATION)[0].1, 3);
        tx.push(Arc::new(Batch::Traces(testdata::spans(1, 2)))).await.unwrap();
        drop(tx);
        task.await.unwrap().unwrap();
        let mut last = None;
        while let Ok(Some(b)) = tokio::time::timeout(Duration::from_millis(500), mrx.recv()).await {
            last = Some(b);
        }
        let Some(Batch::Metrics(last)) = last else { panic!("a final flush") };
        assert_eq!(points(&last, HTTP_DURATION)[0].1, 5, "cumulative, flushed when the input ends");
        assert_eq!(stats.snapshot().exported, 5, "spans consumed");
    }
}
