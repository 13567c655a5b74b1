//! The `system_metrics` fields: a small store of the latest points of the
//! metrics the feed reads, and the pure function that turns it into field
//! values through the configurable `fields:` mapping. Also the per-route and
//! per-model summaries of the `http_routes` and `llm_usage` streams.
//!
//! The store keeps, per series, the latest point and the last *window*: what
//! a counter or histogram added between its two latest points (or, for delta
//! temporality, the point itself). Rates, means and percentiles are computed
//! from windows, so they are right whatever the sources' intervals are.
//!
//! Pure data in, numbers out: no IO, no clock (callers pass `now`).

use magpie_core::otlp::any_value_to_string;
use magpie_core::proto::common::v1::KeyValue;
use magpie_core::proto::metrics::v1::{AggregationTemporality, ResourceMetrics, metric, number_data_point};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

/// The scope of the metrics the `span_metrics` connector emits.
pub const SPAN_METRICS_SCOPE: &str = "magpie.span_metrics";
/// The HTTP server duration histogram (from `span_metrics` or the app).
pub const HTTP_DURATION: &str = "http.server.request.duration";
/// GenAI operation duration histogram.
pub const GEN_AI_DURATION: &str = "gen_ai.client.operation.duration";
/// GenAI token usage histogram.
pub const GEN_AI_TOKENS: &str = "gen_ai.client.token.usage";
/// The USD cost of GenAI calls (a `span_metrics` counter).
pub const GEN_AI_COST: &str = "magpie.gen_ai.client.cost";

/// Series kept per metric; points of further attribute sets are ignored.
pub const MAX_SERIES_PER_METRIC: usize = 5000;

/// A cumulative series seen for the first time yields a window from its
/// start time only when that start is this recent (a counter that started
/// at boot says nothing about the current rate).
const FRESH_START: u64 = 3600 * 1_000_000_000;

/// How a field combines the matching series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Mean of the latest values (gauges, up-down counters).
    #[default]
    Avg,
    /// Sum of the latest values.
    Sum,
    Min,
    Max,
    /// The latest value of the most recently updated series.
    Last,
    /// Per second over the last window: a counter's increase, or a histogram's count.
    Rate,
    /// A histogram's sum increase over its count increase in the last window: the mean.
    DeltaRatio,
    /// Percentiles of a histogram over the last window (linear within a bucket).
    P50,
    P90,
    P95,
    P99,
}

/// One way to compute a field.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// The metric name to read.
    pub metric: String,
    #[serde(default)]
    pub aggregate: Aggregate,
    /// Only series whose point or resource attributes have these values.
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// Only series from this instrumentation scope (e.g. `magpie.span_metrics`).
    #[serde(default)]
    pub scope: Option<String>,
    /// Multiplier applied to the result (100 for a 0–1 fraction as percent).
    #[serde(default = "one")]
    pub scale: f64,
}

fn one() -> f64 {
    1.0
}

/// A field's specs: the first that has data gives the value.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldSpecs(pub Vec<FieldSpec>);

impl<'de> Deserialize<'de> for FieldSpecs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldSpecs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field spec ({metric: ..., aggregate: ...}) or a list of them")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldSpecs, A::Error> {
                FieldSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|s| FieldSpecs(vec![s]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<FieldSpecs, A::Error> {
                Vec::<FieldSpec>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(FieldSpecs)
            }
        }
        d.deserialize_any(V)
    }
}

fn spec(
    metric: &str,
    aggregate: Aggregate,
    attributes: &[(&str, &str)],
    scope: Option<&str>,
    scale: f64,
) -> FieldSpec {
    FieldSpec {
        metric: metric.to_string(),
        aggregate,
        attributes: attributes.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect(),
        scope: scope.map(str::to_string),
        scale,
    }
}

/// The documented default fields, in the order the message lists them.
pub fn default_fields() -> Vec<(String, FieldSpecs)> {
    use Aggregate::*;
    let one = |s: FieldSpec| FieldSpecs(vec![s]);
    let pool = |app_state: &str, pg_state: &str| {
        FieldSpecs(vec![
            spec("db.client.connection.count", Sum, &[("db.client.connection.state", app_state)], None, 1.0),
            spec("db.client.connections.usage", Sum, &[("state", app_state)], None, 1.0),
            spec("postgresql.connection.count", Sum, &[("state", pg_state)], None, 1.0),
        ])
    };
    vec![
        ("cpu_percent".into(), one(spec("system.cpu.utilization", Avg, &[], None, 100.0))),
        (
            "memory_percent".into(),
            one(spec("system.memory.utilization", Avg, &[("system.memory.state", "used")], None, 100.0)),
        ),
        ("active_connections".into(), one(spec("http.server.active_requests", Sum, &[], None, 1.0))),
        ("requests_per_second".into(), one(spec(HTTP_DURATION, Rate, &[], Some(SPAN_METRICS_SCOPE), 1.0))),
        (
            "avg_response_time_ms".into(),
            one(spec(HTTP_DURATION, DeltaRatio, &[], Some(SPAN_METRICS_SCOPE), 1000.0)),
        ),
        ("cache_hit_rate".into(), one(spec("redis.keyspace.hit_rate", Avg, &[], None, 1.0))),
        ("db_pool_active".into(), pool("used", "active")),
        ("db_pool_idle".into(), pool("idle", "idle")),
    ]
}

/// The fields to compute: the defaults, with `overrides` replacing
/// (or, when `None`, removing) defaults of the same name and adding the rest
/// after them.
pub fn resolve_fields(overrides: &BTreeMap<String, Option<FieldSpecs>>) -> Vec<(String, FieldSpecs)> {
    let mut out: Vec<(String, FieldSpecs)> = Vec::new();
    for (name, specs) in default_fields() {
        match overrides.get(&name) {
            None => out.push((name, specs)),
            Some(Some(o)) => out.push((name, o.clone())),
            Some(None) => {}
        }
    }
    for (name, o) in overrides {
        if let Some(specs) = o
            && !out.iter().any(|(n, _)| n == name)
        {
            out.push((name.clone(), specs.clone()));
        }
    }
    out
}

/// Problems with field specs, for config validation.
pub fn field_problems(overrides: &BTreeMap<String, Option<FieldSpecs>>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, specs) in overrides {
        let Some(specs) = specs else { continue };
        if specs.0.is_empty() {
            out.push(format!("fields.{name}: list at least one spec (or write null to remove the field)"));
        }
        for (i, s) in specs.0.iter().enumerate() {
            let at =
                if specs.0.len() == 1 { format!("fields.{name}") } else { format!("fields.{name}[{i}]") };
            if s.metric.trim().is_empty() {
                out.push(format!("{at}.metric: must name a metric"));
            }
            if !s.scale.is_finite() {
                out.push(format!("{at}.scale: must be a finite number"));
            }
            for (k, v) in &s.attributes {
                if v.is_array() || v.is_object() || v.is_null() {
                    out.push(format!("{at}.attributes.{k}: must be a string, number or boolean"));
                }
            }
        }
    }
    out
}

/// The names of every metric `fields` and the summary streams read.
pub fn wanted_metrics(fields: &[(String, FieldSpecs)]) -> HashSet<String> {
    let mut out: HashSet<String> =
        [HTTP_DURATION, GEN_AI_DURATION, GEN_AI_TOKENS, GEN_AI_COST].map(String::from).into();
    out.extend(fields.iter().flat_map(|(_, s)| s.0.iter().map(|x| x.metric.clone())));
    out
}

/// A span of time in which a counter or histogram changed by `count` (and `sum`, `buckets`).
#[derive(Clone, Debug, PartialEq)]
struct Window {
    start: u64,
    end: u64,
    count: f64,
    sum: f64,
    buckets: Vec<f64>,
    bounds: Vec<f64>,
}

/// The latest point of a series.
#[derive(Clone, Debug, PartialEq)]
enum Latest {
    Number { value: f64, start: u64, cumulative: bool },
    Histogram { count: f64, sum: f64, buckets: Vec<f64>, bounds: Vec<f64>, start: u64, cumulative: bool },
}

#[derive(Clone, Debug)]
struct Series {
    /// Point attributes over resource attributes, rendered as strings.
    attrs: Vec<(String, String)>,
    scope: String,
    time: u64,
    latest: Latest,
    window: Option<Window>,
}

impl Series {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn matches(&self, spec: &FieldSpec) -> bool {
        spec.scope.as_ref().is_none_or(|s| *s == self.scope)
            && spec.attributes.iter().all(|(k, want)| {
                let want = match want {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                self.attr(k) == Some(want.as_str())
            })
    }

    fn value(&self) -> Option<f64> {
        match &self.latest {
            Latest::Number { value, .. } => Some(*value),
            Latest::Histogram { .. } => None,
        }
    }

    /// The window, if it is recent enough to describe now: it ended no more
    /// than twice its length (or twice `interval`) ago.
    fn fresh_window(&self, now: u64, interval: Duration) -> Option<&Window> {
        let w = self.window.as_ref()?;
        let len = w.end.saturating_sub(w.start).max(u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX));
        (now.saturating_sub(w.end) <= len.saturating_mul(2)).then_some(w)
    }
}

/// The latest points of the metrics the feed reads.
#[derive(Debug, Default)]
pub struct MetricStore {
    wanted: HashSet<String>,
    /// metric name → series key → series
    metrics: HashMap<String, HashMap<String, Series>>,
}

fn render(attrs: &[KeyValue]) -> impl Iterator<Item = (String, String)> + '_ {
    attrs.iter().map(|kv| {
        let v = kv.value.as_ref().and_then(|v| v.value.as_ref()).map(any_value_to_string).unwrap_or_default();
        (kv.key.clone(), v)
    })
}

impl MetricStore {
    /// A store that keeps only the metrics named in `wanted`.
    pub fn new(wanted: HashSet<String>) -> Self {
        MetricStore { wanted, metrics: HashMap::new() }
    }

    /// Series held now.
    pub fn series_count(&self) -> usize {
        self.metrics.values().map(HashMap::len).sum()
    }

    /// Takes in every wanted point of `rm`.
    pub fn ingest(&mut self, rm: &[ResourceMetrics]) {
        for r in rm {
            let resource: Vec<(String, String)> =
                r.resource.as_ref().map(|res| render(&res.attributes).collect()).unwrap_or_default();
            for sm in &r.scope_metrics {
                let scope = sm.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                for m in &sm.metrics {
                    if !self.wanted.contains(&m.name) {
                        continue;
                    }
                    let table = self.metrics.entry(m.name.clone()).or_default();
                    let mut put = |point_attrs: &[KeyValue], time: u64, latest: Latest| {
                        let mut attrs: Vec<(String, String)> = render(point_attrs).collect();
                        for (k, v) in &resource {
                            if !attrs.iter().any(|(pk, _)| pk == k) {
                                attrs.push((k.clone(), v.clone()));
                            }
                        }
                        attrs.sort();
                        let key = format!("{scope}\u{1f}{attrs:?}");
                        update(table, key, &scope, attrs, time, latest);
                    };
                    match &m.data {
                        Some(metric::Data::Gauge(g)) => {
                            for p in &g.data_points {
                                if let Some(v) = number(p.value.as_ref()) {
                                    put(
                                        &p.attributes,
                                        p.time_unix_nano,
                                        Latest::Number {
                                            value: v,
                                            start: p.start_time_unix_nano,
                                            cumulative: false,
                                        },
                                    );
                                }
                            }
                        }
                        Some(metric::Data::Sum(s)) => {
                            let cumulative =
                                s.aggregation_temporality != AggregationTemporality::Delta as i32;
                            for p in &s.data_points {
                                if let Some(v) = number(p.value.as_ref()) {
                                    put(
                                        &p.attributes,
                                        p.time_unix_nano,
                                        Latest::Number {
                                            value: v,
                                            start: p.start_time_unix_nano,
                                            cumulative,
                                        },
                                    );
                                }
                            }
                        }
                        Some(metric::Data::Histogram(h)) => {
                            let cumulative =
                                h.aggregation_temporality != AggregationTemporality::Delta as i32;
                            for p in &h.data_points {
                                put(
                                    &p.attributes,
                                    p.time_unix_nano,
                                    Latest::Histogram {
                                        count: p.count as f64,
                                        sum: p.sum.unwrap_or(0.0),
                                        buckets: p.bucket_counts.iter().map(|c| *c as f64).collect(),
                                        bounds: p.explicit_bounds.clone(),
                                        start: p.start_time_unix_nano,
                                        cumulative,
                                    },
                                );
                            }
                        }
                        // Exponential histograms and summaries are not read by any field.
                        _ => {}
                    }
                }
            }
        }
    }

    /// Forgets series not updated since `now - stale_after`.
    pub fn evict(&mut self, now: u64, stale_after: Duration) {
        let limit = u64::try_from(stale_after.as_nanos()).unwrap_or(u64::MAX);
        for table in self.metrics.values_mut() {
            table.retain(|_, s| now.saturating_sub(s.time) <= limit);
        }
        self.metrics.retain(|_, t| !t.is_empty());
    }

    fn series<'a>(&'a self, spec: &'a FieldSpec) -> impl Iterator<Item = &'a Series> + 'a {
        self.metrics.get(&spec.metric).into_iter().flat_map(|t| t.values()).filter(move |s| s.matches(spec))
    }

    /// The value of one spec at `now`, or `None` when there is no data.
    pub fn evaluate(&self, spec: &FieldSpec, now: u64, interval: Duration) -> Option<f64> {
        let series: Vec<&Series> = self.series(spec).collect();
        if series.is_empty() {
            return None;
        }
        let values = || series.iter().filter_map(|s| s.value());
        let windows: Vec<&Window> = series.iter().filter_map(|s| s.fresh_window(now, interval)).collect();
        let raw = match spec.aggregate {
            Aggregate::Avg => {
                let v: Vec<f64> = values().collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            }
            Aggregate::Sum => {
                let v: Vec<f64> = values().collect();
                (!v.is_empty()).then(|| v.iter().sum())
            }
            Aggregate::Min => values().reduce(f64::min),
            Aggregate::Max => values().reduce(f64::max),
            Aggregate::Last => {
                series.iter().filter(|s| s.value().is_some()).max_by_key(|s| s.time).and_then(|s| s.value())
            }
            Aggregate::Rate => {
                // Series with no window yet (a single cumulative point) say nothing.
                if series.iter().all(|s| s.window.is_none()) {
                    None
                } else {
                    Some(windows.iter().map(|w| w.count / seconds(w)).sum())
                }
            }
            Aggregate::DeltaRatio => {
                let count: f64 = windows.iter().map(|w| w.count).sum();
                (count > 0.0).then(|| windows.iter().map(|w| w.sum).sum::<f64>() / count)
            }
            Aggregate::P50 => quantile(&windows, 0.50),
            Aggregate::P90 => quantile(&windows, 0.90),
            Aggregate::P95 => quantile(&windows, 0.95),
            Aggregate::P99 => quantile(&windows, 0.99),
        };
        raw.map(|v| v * spec.scale).filter(|v| v.is_finite())
    }

    /// Every field's value, in order: the first spec of a field with data wins.
    pub fn fields(
        &self,
        fields: &[(String, FieldSpecs)],
        now: u64,
        interval: Duration,
    ) -> Vec<(String, Option<f64>)> {
        fields
            .iter()
            .map(|(name, specs)| {
                let v = specs.0.iter().find_map(|s| self.evaluate(s, now, interval));
                (name.clone(), v.map(round))
            })
            .collect()
    }

    /// Per (service, method, route): request rate, error share and latency
    /// percentiles over the last window, from `http.server.request.duration`
    /// (the `span_metrics` series when there are any, else all).
    pub fn routes(&self, now: u64, interval: Duration) -> Vec<RouteSummary> {
        let Some(table) = self.metrics.get(HTTP_DURATION) else { return Vec::new() };
        let ours = table.values().any(|s| s.scope == SPAN_METRICS_SCOPE);
        type Route = (String, String, String);
        let mut groups: BTreeMap<Route, Vec<(&Series, &Window)>> = BTreeMap::new();
        for s in table.values().filter(|s| !ours || s.scope == SPAN_METRICS_SCOPE) {
            let Some(w) = s.fresh_window(now, interval) else { continue };
            let key = (
                s.attr("service.name").unwrap_or_default().to_string(),
                s.attr("http.request.method").or(s.attr("http.method")).unwrap_or_default().to_string(),
                s.attr("http.route").unwrap_or_default().to_string(),
            );
            groups.entry(key).or_default().push((s, w));
        }
        groups
            .into_iter()
            .filter_map(|((service, method, route), items)| {
                let count: f64 = items.iter().map(|(_, w)| w.count).sum();
                if count <= 0.0 {
                    return None;
                }
                let errors: f64 = items
                    .iter()
                    .filter(|(s, _)| {
                        s.attr("http.response.status_code")
                            .or(s.attr("http.status_code"))
                            .and_then(|c| c.parse::<u16>().ok())
                            .is_some_and(|c| c >= 500)
                    })
                    .map(|(_, w)| w.count)
                    .sum();
                let windows: Vec<&Window> = items.iter().map(|(_, w)| *w).collect();
                let ms = |q| quantile(&windows, q).map(|v| round(v * 1000.0));
                Some(RouteSummary {
                    service,
                    method,
                    route,
                    requests_per_second: round(windows.iter().map(|w| w.count / seconds(w)).sum()),
                    error_rate: round(errors / count),
                    p50_ms: ms(0.5),
                    p95_ms: ms(0.95),
                    p99_ms: ms(0.99),
                })
            })
            .collect()
    }

    /// Per (provider, model): calls and tokens over the last window, from the
    /// GenAI histograms.
    pub fn llm_usage(&self, now: u64, interval: Duration) -> Vec<ModelSummary> {
        let mut out: BTreeMap<(String, String), ModelSummary> = BTreeMap::new();
        let key = |s: &Series| {
            (
                s.attr("gen_ai.provider.name").or(s.attr("gen_ai.system")).unwrap_or_default().to_string(),
                s.attr("gen_ai.response.model")
                    .or(s.attr("gen_ai.request.model"))
                    .unwrap_or_default()
                    .to_string(),
            )
        };
        fn entry(
            out: &mut BTreeMap<(String, String), ModelSummary>,
            k: (String, String),
        ) -> &mut ModelSummary {
            out.entry(k.clone()).or_insert_with(|| ModelSummary {
                provider: k.0,
                model: k.1,
                ..Default::default()
            })
        }
        if let Some(t) = self.metrics.get(GEN_AI_TOKENS) {
            for s in t.values() {
                let Some(w) = s.fresh_window(now, interval) else { continue };
                let m = entry(&mut out, key(s));
                m.window_seconds = m.window_seconds.max(seconds(w));
                match s.attr("gen_ai.token.type") {
                    Some("input") => m.input_tokens += w.sum,
                    Some("output" | "completion") => m.output_tokens += w.sum,
                    _ => {}
                }
            }
        }
        if let Some(t) = self.metrics.get(GEN_AI_DURATION) {
            for s in t.values() {
                let Some(w) = s.fresh_window(now, interval) else { continue };
                let m = entry(&mut out, key(s));
                m.window_seconds = m.window_seconds.max(seconds(w));
                m.calls += w.count;
                m.duration_sum += w.sum;
            }
        }
        if let Some(t) = self.metrics.get(GEN_AI_COST) {
            for s in t.values() {
                let Some(w) = s.fresh_window(now, interval) else { continue };
                // A counter's window holds its increase in `count`.
                *entry(&mut out, key(s)).cost_usd.get_or_insert(0.0) += w.count;
            }
        }
        out.into_values()
            .filter(|m| m.calls > 0.0 || m.input_tokens > 0.0 || m.output_tokens > 0.0)
            .map(|mut m| {
                m.tokens_per_second = round((m.input_tokens + m.output_tokens) / m.window_seconds.max(1e-9));
                m.avg_duration_ms = (m.calls > 0.0).then(|| round(m.duration_sum / m.calls * 1000.0));
                m.cost_usd = m.cost_usd.map(|c| (c * 1e6).round() / 1e6);
                m
            })
            .collect()
    }
}

/// One route in an `http_routes` message.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RouteSummary {
    pub service: String,
    pub method: String,
    pub route: String,
    pub requests_per_second: f64,
    /// Share of requests answered 5xx.
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// One model in an `llm_usage` message.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ModelSummary {
    pub provider: String,
    pub model: String,
    /// Calls in the window.
    pub calls: f64,
    /// Tokens in the window, by type.
    pub input_tokens: f64,
    pub output_tokens: f64,
    pub tokens_per_second: f64,
    pub avg_duration_ms: Option<f64>,
    /// USD spent in the window, when the calls were priced (`llm_cost`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip)]
    duration_sum: f64,
    #[serde(skip)]
    window_seconds: f64,
}

fn seconds(w: &Window) -> f64 {
    (w.end.saturating_sub(w.start) as f64 / 1e9).max(1e-3)
}

fn number(v: Option<&number_data_point::Value>) -> Option<f64> {
    match v? {
        number_data_point::Value::AsDouble(d) => Some(*d),
        number_data_point::Value::AsInt(i) => Some(*i as f64),
    }
}

/// Records a new latest point, deriving the window from the previous one.
fn update(
    table: &mut HashMap<String, Series>,
    key: String,
    scope: &str,
    attrs: Vec<(String, String)>,
    time: u64,
    latest: Latest,
) {
    if !table.contains_key(&key) && table.len() >= MAX_SERIES_PER_METRIC {
        return;
    }
    let prev = table.get(&key);
    if prev.is_some_and(|p| time < p.time) {
        // An older point than the one held (out-of-order delivery) changes nothing.
        return;
    }
    let window = window(prev.map(|p| (&p.latest, p.time)), &latest, time).or_else(|| {
        // The same point again (a re-sent cumulative value) keeps the window it had.
        prev.filter(|p| p.time == time).and_then(|p| p.window.clone())
    });
    table.insert(key, Series { attrs, scope: scope.to_string(), time, latest, window });
}

/// The window between the previous point (if any) and `new`.
fn window(prev: Option<(&Latest, u64)>, new: &Latest, time: u64) -> Option<Window> {
    match new {
        Latest::Number { cumulative: false, .. } => None,
        Latest::Number { value, start, cumulative: true } => {
            match prev {
                Some((Latest::Number { value: pv, start: ps, cumulative: true }, pt))
                    if *ps == *start && time > pt && value >= pv =>
                {
                    Some(Window {
                        start: pt,
                        end: time,
                        count: value - pv,
                        sum: 0.0,
                        buckets: vec![],
                        bounds: vec![],
                    })
                }
                _ if *start > 0 && *start < time && time - start <= FRESH_START => {
                    // A new or restarted counter: everything since its start.
                    Some(Window {
                        start: *start,
                        end: time,
                        count: *value,
                        sum: 0.0,
                        buckets: vec![],
                        bounds: vec![],
                    })
                }
                _ => None,
            }
        }
        Latest::Histogram { count, sum, buckets, bounds, start, cumulative } => {
            if !*cumulative {
                return (*start > 0 && *start < time).then(|| Window {
                    start: *start,
                    end: time,
                    count: *count,
                    sum: *sum,
                    buckets: buckets.clone(),
                    bounds: bounds.clone(),
                });
            }
            match prev {
                Some((
                    Latest::Histogram {
                        count: pc,
                        sum: psum,
                        buckets: pb,
                        bounds: pbounds,
                        start: ps,
                        cumulative: true,
                    },
                    pt,
                )) if *ps == *start
                    && time > pt
                    && count >= pc
                    && pbounds == bounds
                    && pb.len() == buckets.len() =>
                {
                    Some(Window {
                        start: pt,
                        end: time,
                        count: count - pc,
                        sum: sum - psum,
                        buckets: buckets.iter().zip(pb).map(|(a, b)| (a - b).max(0.0)).collect(),
                        bounds: bounds.clone(),
                    })
                }
                _ if *start > 0 && *start < time && time - start <= FRESH_START => Some(Window {
                    start: *start,
                    end: time,
                    count: *count,
                    sum: *sum,
                    buckets: buckets.clone(),
                    bounds: bounds.clone(),
                }),
                _ => None,
            }
        }
    }
}

/// The `q` quantile of the merged bucket counts of `windows` (those whose
/// bounds match the first), interpolating linearly inside the bucket as
/// Prometheus' `histogram_quantile` does; values in the overflow bucket
/// report the last bound.
fn quantile(windows: &[&Window], q: f64) -> Option<f64> {
    let first = windows.iter().find(|w| !w.bounds.is_empty())?;
    let bounds = &first.bounds;
    let n = bounds.len() + 1;
    let mut merged = vec![0.0; n];
    for w in windows.iter().filter(|w| w.bounds == *bounds && w.buckets.len() == n) {
        for (m, c) in merged.iter_mut().zip(&w.buckets) {
            *m += c;
        }
    }
    let total: f64 = merged.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut seen = 0.0;
    for (i, c) in merged.iter().enumerate() {
        if *c > 0.0 && seen + c >= rank {
            if i == bounds.len() {
                return bounds.last().copied();
            }
            let lower = if i == 0 { 0.0_f64.min(bounds[0]) } else { bounds[i - 1] };
            let upper = bounds[i];
            return Some(lower + (upper - lower) * ((rank - seen) / c));
        }
        seen += c;
    }
    bounds.last().copied()
}

/// Three decimals: enough for percentages, milliseconds and hit rates
/// (and never `-0`, which an empty `f64` sum is).
pub fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0 + 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::otlp::{double_point, gauge, int_point, kv_str, sum};
    use magpie_core::proto::common::v1::InstrumentationScope;
    use magpie_core::proto::metrics::v1::{Histogram, HistogramDataPoint, Metric, ScopeMetrics};
    use magpie_core::proto::resource::v1::Resource;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * S;
    const IV: Duration = Duration::from_secs(5);

    fn rm(scope: &str, metrics: Vec<Metric>) -> ResourceMetrics {
        ResourceMetrics {
            resource: Some(Resource { attributes: vec![kv_str("host.name", "h1")], ..Default::default() }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope { name: scope.into(), ..Default::default() }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }

    /// (attributes, start, time, count, sum, bucket counts)
    type Point = (Vec<KeyValue>, u64, u64, u64, f64, Vec<u64>);

    fn hist(name: &str, points: Vec<Point>, delta: bool) -> Metric {
        Metric {
            name: name.into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: points
                    .into_iter()
                    .map(|(attributes, start, time, count, sum, buckets)| HistogramDataPoint {
                        attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        count,
                        sum: Some(sum),
                        bucket_counts: buckets,
                        explicit_bounds: vec![0.1, 0.5, 1.0],
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: if delta {
                    AggregationTemporality::Delta as i32
                } else {
                    AggregationTemporality::Cumulative as i32
                },
            })),
            ..Default::default()
        }
    }

    fn store(batches: Vec<ResourceMetrics>) -> MetricStore {
        let mut s = MetricStore::new(
            wanted_metrics(&default_fields()).into_iter().chain(["x".to_string()]).collect(),
        );
        for b in batches {
            s.ingest(&[b]);
        }
        s
    }

    /// The value of every default field at `now`.
    fn check(batches: Vec<ResourceMetrics>, now: u64, expected: &[(&str, Option<f64>)]) {
        let s = store(batches);
        let got = s.fields(&default_fields(), now, IV);
        for (name, want) in expected {
            let v = got.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
            assert_eq!(v, Some(*want), "{name}: {got:?}");
        }
    }

    fn route(code: i64) -> Vec<KeyValue> {
        vec![
            kv_str("service.name", "chat"),
            kv_str("http.request.method", "GET"),
            kv_str("http.route", "/a"),
            magpie_core::otlp::kv_int("http.response.status_code", code),
        ]
    }

    #[test]
    fn no_data_is_null_not_zero() {
        check(vec![], T0, &[("cpu_percent", None), ("requests_per_second", None), ("cache_hit_rate", None)]);
        let fields = default_fields();
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "cpu_percent",
                "memory_percent",
                "active_connections",
                "requests_per_second",
                "avg_response_time_ms",
                "cache_hit_rate",
                "db_pool_active",
                "db_pool_idle"
            ]
        );
    }

    #[test]
    fn host_gauges_become_percentages() {
        let mem = |state: &str, v: f64| double_point(v, 0, T0, vec![kv_str("system.memory.state", state)]);
        check(
            vec![rm(
                "hostmetrics",
                vec![
                    gauge("system.cpu.utilization", "1", vec![double_point(0.452, 0, T0, vec![])]),
                    gauge("system.memory.utilization", "1", vec![mem("used", 0.685), mem("free", 0.2)]),
                    gauge("redis.keyspace.hit_rate", "1", vec![double_point(0.85, 0, T0, vec![])]),
                ],
            )],
            T0,
            &[("cpu_percent", Some(45.2)), ("memory_percent", Some(68.5)), ("cache_hit_rate", Some(0.85))],
        );
    }

    #[test]
    fn request_rate_and_mean_come_from_histogram_windows() {
        let start = T0 - 100 * S;
        let first = hist(HTTP_DURATION, vec![(route(200), start, T0, 100, 10.0, vec![50, 40, 10, 0])], false);
        // 5 s later: +50 requests taking 7.5 s in total.
        let second =
            hist(HTTP_DURATION, vec![(route(200), start, T0 + 5 * S, 150, 17.5, vec![70, 60, 20, 0])], false);
        check(
            vec![rm(SPAN_METRICS_SCOPE, vec![first.clone()]), rm(SPAN_METRICS_SCOPE, vec![second.clone()])],
            T0 + 6 * S,
            &[("requests_per_second", Some(10.0)), ("avg_response_time_ms", Some(150.0))],
        );
        // The app's own histogram of the same name is not counted twice.
        check(
            vec![
                rm(SPAN_METRICS_SCOPE, vec![first.clone()]),
                rm(SPAN_METRICS_SCOPE, vec![second.clone()]),
                rm("app", vec![second.clone()]),
            ],
            T0 + 6 * S,
            &[("requests_per_second", Some(10.0))],
        );
        // A series whose window is long past reads as no traffic.
        check(
            vec![rm(SPAN_METRICS_SCOPE, vec![first.clone()]), rm(SPAN_METRICS_SCOPE, vec![second.clone()])],
            T0 + 60 * S,
            &[("requests_per_second", Some(0.0)), ("avg_response_time_ms", None)],
        );
        // One cumulative point from a counter that started long ago: no rate yet.
        let old =
            hist(HTTP_DURATION, vec![(route(200), T0 - 7200 * S, T0, 100, 10.0, vec![50, 40, 10, 0])], false);
        check(vec![rm(SPAN_METRICS_SCOPE, vec![old])], T0, &[("requests_per_second", None)]);
        // One cumulative point from a series that started 5 s ago: its whole life is the window.
        let new = hist(HTTP_DURATION, vec![(route(200), T0 - 5 * S, T0, 20, 1.0, vec![20, 0, 0, 0])], false);
        check(
            vec![rm(SPAN_METRICS_SCOPE, vec![new])],
            T0,
            &[("requests_per_second", Some(4.0)), ("avg_response_time_ms", Some(50.0))],
        );
        // Delta temporality: each point is its own window.
        let d = hist(HTTP_DURATION, vec![(route(200), T0 - 2 * S, T0, 10, 2.0, vec![5, 5, 0, 0])], true);
        check(
            vec![rm(SPAN_METRICS_SCOPE, vec![d])],
            T0 + S,
            &[("requests_per_second", Some(5.0)), ("avg_response_time_ms", Some(200.0))],
        );
        // A counter reset (new start time) starts a new window instead of a negative one.
        let reset =
            hist(HTTP_DURATION, vec![(route(200), T0 + 4 * S, T0 + 5 * S, 3, 0.3, vec![3, 0, 0, 0])], false);
        check(
            vec![rm(SPAN_METRICS_SCOPE, vec![first]), rm(SPAN_METRICS_SCOPE, vec![reset])],
            T0 + 5 * S,
            &[("requests_per_second", Some(3.0))],
        );
    }

    #[test]
    fn pools_fall_back_from_app_to_server_metrics() {
        let app = |state: &str, v: i64| {
            int_point(
                v,
                0,
                T0,
                vec![
                    kv_str("db.client.connection.state", state),
                    kv_str("db.client.connection.pool.name", "p"),
                ],
            )
        };
        check(
            vec![rm(
                "app",
                vec![sum(
                    "db.client.connection.count",
                    "{connection}",
                    false,
                    vec![app("used", 4), app("idle", 6)],
                )],
            )],
            T0,
            &[("db_pool_active", Some(4.0)), ("db_pool_idle", Some(6.0))],
        );
        let pg = |state: &str, v: i64| int_point(v, 0, T0, vec![kv_str("state", state)]);
        check(
            vec![rm(
                "postgresql",
                vec![sum(
                    "postgresql.connection.count",
                    "{connection}",
                    false,
                    vec![pg("active", 2), pg("idle", 9), pg("idle in transaction", 1)],
                )],
            )],
            T0,
            &[("db_pool_active", Some(2.0)), ("db_pool_idle", Some(9.0))],
        );
    }

    #[test]
    fn aggregates_over_several_series() {
        let spec = |aggregate, attributes: &[(&str, &str)]| FieldSpec {
            metric: "x".into(),
            aggregate,
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                .collect(),
            scope: None,
            scale: 1.0,
        };
        let p = |v: f64, t: u64, cpu: &str| double_point(v, 0, t, vec![kv_str("cpu", cpu)]);
        let s = store(vec![rm(
            "h",
            vec![gauge("x", "1", vec![p(1.0, T0, "0"), p(3.0, T0 + S, "1"), p(8.0, T0 - S, "2")])],
        )]);
        let table = [
            (Aggregate::Avg, &[][..], Some(4.0)),
            (Aggregate::Sum, &[][..], Some(12.0)),
            (Aggregate::Min, &[][..], Some(1.0)),
            (Aggregate::Max, &[][..], Some(8.0)),
            (Aggregate::Last, &[][..], Some(3.0)),
            (Aggregate::Sum, &[("cpu", "2")][..], Some(8.0)),
            (Aggregate::Sum, &[("host.name", "h1")][..], Some(12.0)),
            (Aggregate::Sum, &[("cpu", "9")][..], None),
            (Aggregate::Rate, &[][..], None),
        ];
        for (aggregate, attrs, want) in table {
            assert_eq!(s.evaluate(&spec(aggregate, attrs), T0 + S, IV), want, "{aggregate:?} {attrs:?}");
        }
    }

    #[test]
    fn percentiles_interpolate_within_buckets() {
        // Bounds 0.1, 0.5, 1.0: 50 in (0, 0.1], 40 in (0.1, 0.5], 10 in (0.5, 1.0].
        let w = Window {
            start: 0,
            end: S,
            count: 100.0,
            sum: 0.0,
            buckets: vec![50.0, 40.0, 10.0, 0.0],
            bounds: vec![0.1, 0.5, 1.0],
        };
        for (q, want) in [(0.25, 0.05), (0.5, 0.1), (0.7, 0.3), (0.95, 0.75), (1.0, 1.0)] {
            let got = quantile(&[&w], q).unwrap();
            assert!((got - want).abs() < 1e-9, "q{q}: {got} != {want}");
        }
        let over = Window { buckets: vec![0.0, 0.0, 0.0, 5.0], ..w.clone() };
        assert_eq!(quantile(&[&over], 0.5), Some(1.0), "the overflow bucket reports the last bound");
        let empty = Window { buckets: vec![0.0; 4], count: 0.0, ..w };
        assert_eq!(quantile(&[&empty], 0.5), None);
    }

    #[test]
    fn routes_summarise_rate_errors_and_percentiles() {
        let start = T0 - 10 * S;
        let a = hist(
            HTTP_DURATION,
            vec![
                (route(200), start, T0, 0, 0.0, vec![0, 0, 0, 0]),
                (route(500), start, T0, 0, 0.0, vec![0, 0, 0, 0]),
            ],
            false,
        );
        let b = hist(
            HTTP_DURATION,
            vec![
                (route(200), start, T0 + 5 * S, 90, 9.0, vec![50, 40, 0, 0]),
                (route(500), start, T0 + 5 * S, 10, 5.0, vec![0, 0, 10, 0]),
            ],
            false,
        );
        let s = store(vec![rm(SPAN_METRICS_SCOPE, vec![a]), rm(SPAN_METRICS_SCOPE, vec![b])]);
        let r = s.routes(T0 + 5 * S, IV);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!((r[0].service.as_str(), r[0].method.as_str(), r[0].route.as_str()), ("chat", "GET", "/a"));
        assert_eq!(r[0].requests_per_second, 20.0);
        assert_eq!(r[0].error_rate, 0.1);
        assert_eq!(r[0].p50_ms, Some(100.0));
        assert_eq!(r[0].p99_ms, Some(950.0));
        assert!(round(-0.0).is_sign_positive(), "no -0 on the wire");
    }

    #[test]
    fn llm_usage_sums_tokens_by_model() {
        let ai = |t: &str| {
            vec![
                kv_str("gen_ai.provider.name", "xai"),
                kv_str("gen_ai.request.model", "grok-4"),
                kv_str("gen_ai.token.type", t),
            ]
        };
        let tokens = hist(
            GEN_AI_TOKENS,
            vec![
                (ai("input"), T0 - 5 * S, T0, 2, 1500.0, vec![0, 0, 0, 2]),
                (ai("output"), T0 - 5 * S, T0, 2, 500.0, vec![0, 0, 0, 2]),
            ],
            true,
        );
        let dur = hist(
            GEN_AI_DURATION,
            vec![(ai("input")[..2].to_vec(), T0 - 5 * S, T0, 2, 3.0, vec![0, 0, 0, 2])],
            true,
        );
        let s = store(vec![rm(SPAN_METRICS_SCOPE, vec![tokens.clone(), dur.clone()])]);
        let u = s.llm_usage(T0, IV);
        assert_eq!(u.len(), 1, "{u:?}");
        assert_eq!((u[0].input_tokens, u[0].output_tokens, u[0].calls), (1500.0, 500.0, 2.0));
        assert_eq!(u[0].tokens_per_second, 400.0);
        assert_eq!(u[0].avg_duration_ms, Some(1500.0));
        assert_eq!(u[0].cost_usd, None, "nothing priced the calls");
        // With the cost counter (cumulative): what it grew by in the window.
        let cost = |usd: f64, time: u64| {
            sum(
                GEN_AI_COST,
                "{USD}",
                true,
                vec![double_point(usd, T0 - 5 * S, time, ai("input")[..2].to_vec())],
            )
        };
        let s = store(vec![
            rm(SPAN_METRICS_SCOPE, vec![cost(0.0125, T0 - 2 * S)]),
            rm(SPAN_METRICS_SCOPE, vec![tokens, dur, cost(0.0475, T0)]),
        ]);
        let u = s.llm_usage(T0, IV);
        assert_eq!(u[0].cost_usd, Some(0.035), "{u:?}");
    }

    #[test]
    fn overrides_replace_remove_and_add_fields() {
        let node = magpie_core::config::Node::parse(
            "cpu_percent: {metric: my.cpu, aggregate: max, scale: 100}\ncache_hit_rate: null\np95_ms:\n  - {metric: http.server.request.duration, aggregate: p95, scale: 1000}\n",
            "t.yaml",
        )
        .unwrap();
        let (o, _): (BTreeMap<String, Option<FieldSpecs>>, _) =
            magpie_core::config::from_node(&node, "fields").unwrap();
        let f = resolve_fields(&o);
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 8);
        assert!(!names.contains(&"cache_hit_rate"));
        assert_eq!(names.last(), Some(&"p95_ms"));
        assert_eq!(f[0].1.0[0].metric, "my.cpu");
        assert_eq!(f[0].1.0[0].aggregate, Aggregate::Max);
        assert!(field_problems(&o).is_empty());
        let bad = magpie_core::config::Node::parse("x: {metric: a, agregate: sum}\n", "t.yaml").unwrap();
        let e = magpie_core::config::from_node::<BTreeMap<String, Option<FieldSpecs>>>(
            &bad,
            "exporters.websocket.fields",
        )
        .unwrap_err();
        assert!(e.message.contains("did you mean `aggregate`"), "{e}");
        assert_eq!(e.location.map(|l| l.line), Some(1));
    }

    #[test]
    fn eviction_forgets_stale_series_and_unwanted_metrics_are_ignored() {
        let mut s = store(vec![rm(
            "h",
            vec![
                gauge("system.cpu.utilization", "1", vec![double_point(0.5, 0, T0, vec![])]),
                gauge("not.wanted", "1", vec![double_point(1.0, 0, T0, vec![])]),
            ],
        )]);
        assert_eq!(s.series_count(), 1);
        s.evict(T0 + 60 * S, Duration::from_secs(300));
        assert_eq!(s.series_count(), 1);
        s.evict(T0 + 301 * S, Duration::from_secs(300));
        assert_eq!(s.series_count(), 0);
    }

    #[test]
    fn the_readme_lists_every_default_field_with_its_metric() {
        let readme = include_str!("../../README.md");
        for (name, specs) in default_fields() {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("exporters/README.md has no row for `{name}`"));
            let first = &specs.0[0];
            assert!(
                row.contains(&format!("`{}`", first.metric)) || row.contains("as `db_pool_active`"),
                "row of `{name}` lacks `{}`: {row}",
                first.metric
            );
        }
    }
}
