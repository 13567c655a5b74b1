//! `alerts`: a connector that evaluates alerting rules over the metrics of
//! the pipelines that export to it and sends [`Alert`]s into the alerts
//! pipelines that receive from it (route metrics → alerts).
//!
//! Each rule reads one metric, keeps the data points that pass its
//! matchers for its `window`, aggregates them per group (`group_by`) and
//! compares the value with its threshold. Alerts move inactive → pending →
//! firing → resolved with Prometheus' semantics: `for` is how long the
//! condition must hold before firing, `keep_firing_for` how long a firing
//! alert outlives it. Every evaluation sends the alerts that are firing
//! (re-sent each time, as Prometheus does, so a notifier that restarts
//! learns them) and, once, a `Resolved` alert for each that stopped.
//!
//! The [`Evaluator`] is pure over an explicit clock; the connector around
//! it moves batches and ticks every `evaluation_interval`. Depends on
//! `magpie-core` only.

pub mod rule;
pub mod window;

use magpie_core::alert::{Alert, AlertStatus, fingerprint};
use magpie_core::config::duration;
use magpie_core::otlp::any_value_to_string;
use magpie_core::proto::common::v1::KeyValue;
use magpie_core::proto::metrics::v1::{AggregationTemporality, ResourceMetrics, metric, number_data_point};
use magpie_core::{Batch, ComponentError, ComponentId, Connector, ConnectorContext};
use rule::{NoData, RuleConfig};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use window::{Kind, Series, Value};

/// Series one rule keeps at most; data points of further series are dropped and counted.
pub const MAX_SERIES_PER_RULE: usize = 10_000;

/// Config of `alerts`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// How often every rule is evaluated.
    #[serde(default = "default_interval", with = "duration")]
    pub evaluation_interval: Duration,
    pub rules: Vec<RuleConfig>,
}

fn default_interval() -> Duration {
    Duration::from_secs(15)
}

impl AlertsConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.rules.is_empty() {
            out.push("rules: at least one rule is needed".to_string());
        }
        if self.evaluation_interval < Duration::from_millis(100) {
            out.push("evaluation_interval: must be at least 100ms".to_string());
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            if r.name.trim().is_empty() {
                out.push(format!("rules[{i}].name: must not be empty"));
            } else if !seen.insert(r.name.as_str()) {
                out.push(format!("rules[{i}].name: `{}` names two rules", r.name));
            }
            if r.window.is_zero() {
                out.push(format!("rules[{i}].window: must be more than 0s"));
            }
            if !r.threshold.is_finite() {
                out.push(format!("rules[{i}].threshold: must be a finite number"));
            }
        }
        out
    }
}

/// Where one alert of a rule stands.
#[derive(Clone, Debug, PartialEq)]
enum State {
    Pending,
    Firing { since: SystemTime },
}

#[derive(Clone, Debug)]
struct Active {
    state: State,
    labels: BTreeMap<String, String>,
    /// When the condition started holding (Prometheus' `ActiveAt`).
    active_at: SystemTime,
    /// The first evaluation at which a firing alert's condition stopped holding.
    keep_firing_since: Option<SystemTime>,
    value: f64,
}

struct RuleState {
    rule: RuleConfig,
    /// Series by their full attribute set, with their group's labels.
    series: HashMap<String, (BTreeMap<String, String>, Series)>,
    /// Pending and firing alerts by group key.
    active: BTreeMap<String, Active>,
    dropped: u64,
}

/// Every rule's data and alert state. Pure: the caller passes the time.
pub struct Evaluator {
    generator: String,
    rules: Vec<RuleState>,
}

fn attr_map(resource: &[KeyValue], point: &[KeyValue]) -> BTreeMap<String, String> {
    resource
        .iter()
        .chain(point)
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().and_then(|v| v.value.as_ref()).map(any_value_to_string).unwrap_or_default(),
            )
        })
        .collect()
}

fn time_of(nanos: u64, now: SystemTime) -> SystemTime {
    if nanos == 0 { now } else { UNIX_EPOCH + Duration::from_nanos(nanos) }
}

fn kind_of(temporality: i32) -> Kind {
    if temporality == AggregationTemporality::Delta as i32 { Kind::Delta } else { Kind::Cumulative }
}

impl Evaluator {
    pub fn new(config: &AlertsConfig, generator: &ComponentId) -> Self {
        Evaluator {
            generator: generator.to_string(),
            rules: config
                .rules
                .iter()
                .map(|r| RuleState {
                    rule: r.clone(),
                    series: HashMap::new(),
                    active: BTreeMap::new(),
                    dropped: 0,
                })
                .collect(),
        }
    }

    /// Keeps the data points every rule wants. `now` stands in for points without a time.
    pub fn ingest(&mut self, batch: &[ResourceMetrics], now: SystemTime) {
        for rm in batch {
            let resource = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                if !self.rules.iter().any(|r| r.rule.metric == m.name) {
                    continue;
                }
                let points: Vec<(&[KeyValue], u64, Kind, Value)> = match &m.data {
                    Some(metric::Data::Gauge(g)) => g
                        .data_points
                        .iter()
                        .filter_map(|p| {
                            number(p).map(|v| (&p.attributes[..], p.time_unix_nano, Kind::Gauge, v))
                        })
                        .collect(),
                    Some(metric::Data::Sum(s)) => {
                        let k = kind_of(s.aggregation_temporality);
                        s.data_points
                            .iter()
                            .filter_map(|p| number(p).map(|v| (&p.attributes[..], p.time_unix_nano, k, v)))
                            .collect()
                    }
                    Some(metric::Data::Histogram(h)) => {
                        let k = kind_of(h.aggregation_temporality);
                        h.data_points
                            .iter()
                            .map(|p| {
                                let v = Value::Histogram {
                                    bounds: p.explicit_bounds.clone(),
                                    counts: p.bucket_counts.clone(),
                                };
                                (&p.attributes[..], p.time_unix_nano, k, v)
                            })
                            .collect()
                    }
                    // Exponential histograms and summaries are not read by rules.
                    _ => continue,
                };
                for rs in self.rules.iter_mut().filter(|r| r.rule.metric == m.name) {
                    for (attrs, nanos, kind, value) in &points {
                        let labels = attr_map(resource, attrs);
                        if !rs
                            .rule
                            .matchers
                            .iter()
                            .all(|mt| mt.matches(labels.get(&mt.label).map(String::as_str)))
                        {
                            continue;
                        }
                        let key: Vec<String> = labels.iter().map(|(k, v)| format!("{k}\u{0}{v}")).collect();
                        let key = key.join("\u{1}");
                        if !rs.series.contains_key(&key) && rs.series.len() >= MAX_SERIES_PER_RULE {
                            rs.dropped += 1;
                            continue;
                        }
                        let group: BTreeMap<String, String> = rs
                            .rule
                            .group_by
                            .iter()
                            .map(|g| (g.clone(), labels.get(g).cloned().unwrap_or_default()))
                            .collect();
                        let entry = rs.series.entry(key).or_insert_with(|| (group, Series::new(*kind)));
                        entry.1.push(time_of(*nanos, now), value.clone());
                    }
                }
            }
        }
    }

    /// Evaluates every rule at `now`: the alerts firing now, and a resolved
    /// alert for each that stopped firing at this evaluation.
    pub fn evaluate(&mut self, now: SystemTime) -> Vec<Alert> {
        let mut out = Vec::new();
        for rs in &mut self.rules {
            if rs.dropped > 0 {
                tracing::warn!(component = %self.generator, rule = %rs.rule.name, dropped = rs.dropped, limit = MAX_SERIES_PER_RULE, "rule has too many series; data points of new series dropped");
                rs.dropped = 0;
            }
            evaluate_rule(rs, &self.generator, now, &mut out);
        }
        out
    }
}

fn number(p: &magpie_core::proto::metrics::v1::NumberDataPoint) -> Option<Value> {
    match p.value? {
        number_data_point::Value::AsDouble(v) => Some(Value::Number(v)),
        number_data_point::Value::AsInt(v) => Some(Value::Number(v as f64)),
    }
}

fn group_key(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    parts.join(",")
}

fn evaluate_rule(rs: &mut RuleState, generator: &str, now: SystemTime, out: &mut Vec<Alert>) {
    let rule = &rs.rule;
    let since = now.checked_sub(rule.window).unwrap_or(UNIX_EPOCH);
    for (_, s) in rs.series.values_mut() {
        s.prune(since);
    }
    rs.series.retain(|_, (_, s)| !s.samples.is_empty());

    // The value of every group that has data.
    let mut groups: BTreeMap<String, (BTreeMap<String, String>, Vec<&Series>)> = BTreeMap::new();
    for (labels, s) in rs.series.values() {
        groups.entry(group_key(labels)).or_insert_with(|| (labels.clone(), Vec::new())).1.push(s);
    }
    let mut values: BTreeMap<String, (BTreeMap<String, String>, Option<f64>)> = groups
        .into_iter()
        .map(|(k, (labels, series))| (k, (labels, window::aggregate(rule.aggregation, &series, rule.window))))
        .collect();
    // Groups that are active but have no data now; and a rule without
    // group_by always has its one group.
    for (k, a) in &rs.active {
        values.entry(k.clone()).or_insert_with(|| (group_labels(rule, &a.labels), None));
    }
    if rule.group_by.is_empty() {
        values.entry(String::new()).or_insert_with(|| (BTreeMap::new(), None));
    }

    for (key, (group, value)) in values {
        let holds = match value {
            Some(v) => Some(rule.condition.holds(v, rule.threshold)),
            None => match rule.no_data {
                NoData::Ok => Some(false),
                NoData::Alerting => Some(true),
                NoData::KeepState => None,
            },
        };
        let current = value.unwrap_or(f64::NAN);
        match holds {
            Some(true) => {
                let a = rs.active.entry(key.clone()).or_insert_with(|| Active {
                    state: State::Pending,
                    labels: alert_labels(rule, &group),
                    active_at: now,
                    keep_firing_since: None,
                    value: current,
                });
                a.value = current;
                a.keep_firing_since = None;
                if a.state == State::Pending
                    && now.duration_since(a.active_at).unwrap_or_default() >= rule.for_
                {
                    a.state = State::Firing { since: now };
                }
            }
            Some(false) => {
                let Some(a) = rs.active.get_mut(&key) else { continue };
                a.value = current;
                let resolved_since = match a.state {
                    // A pending alert goes back to inactive without a word.
                    State::Pending => None,
                    State::Firing { since } => {
                        let first_false = *a.keep_firing_since.get_or_insert(now);
                        if now.duration_since(first_false).unwrap_or_default() < rule.keep_firing_for {
                            continue;
                        }
                        Some(since)
                    }
                };
                if let Some(a) = rs.active.remove(&key)
                    && let Some(since) = resolved_since
                {
                    out.push(to_alert(rule, generator, &a, since, Some(now)));
                }
            }
            // keep_state without data: nothing moves.
            None => {}
        }
    }
    for a in rs.active.values() {
        if let State::Firing { since } = a.state {
            out.push(to_alert(rule, generator, a, since, None));
        }
    }
}

fn group_labels(rule: &RuleConfig, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    rule.group_by.iter().map(|g| (g.clone(), labels.get(g).cloned().unwrap_or_default())).collect()
}

/// The group's labels, then the rule's labels, `severity` and `alertname`.
fn alert_labels(rule: &RuleConfig, group: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> =
        group.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect();
    labels.extend(rule.labels.clone());
    labels.insert("severity".to_string(), rule.severity.clone());
    labels.insert("alertname".to_string(), rule.name.clone());
    labels
}

fn to_alert(
    rule: &RuleConfig,
    generator: &str,
    a: &Active,
    since: SystemTime,
    ends: Option<SystemTime>,
) -> Alert {
    Alert {
        rule: rule.name.clone(),
        status: if ends.is_some() { AlertStatus::Resolved } else { AlertStatus::Firing },
        annotations: rule
            .annotations
            .iter()
            .map(|(k, t)| (k.clone(), t.render(a.value, rule.threshold, &a.labels)))
            .collect(),
        fingerprint: fingerprint(&a.labels),
        labels: a.labels.clone(),
        value: a.value,
        starts_at: since,
        ends_at: ends,
        generator: generator.to_string(),
    }
}

/// The connector: feeds metrics to the [`Evaluator`] and evaluates on a timer.
pub struct AlertsConnector {
    config: AlertsConfig,
    evaluator: Evaluator,
    clock: fn() -> SystemTime,
}

impl AlertsConnector {
    pub fn new(config: &AlertsConfig, id: &ComponentId) -> Self {
        AlertsConnector {
            config: config.clone(),
            evaluator: Evaluator::new(config, id),
            clock: SystemTime::now,
        }
    }

    /// Reads the time from `clock` instead of the system (tests).
    pub fn with_clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }
}

#[async_trait::async_trait]
impl Connector for AlertsConnector {
    async fn run(mut self: Box<Self>, mut ctx: ConnectorContext) -> Result<(), ComponentError> {
        let period = self.config.evaluation_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = ctx.input.recv() => match batch {
                    Some(b) => {
                        if let Batch::Metrics(rm) = b.as_ref() {
                            self.evaluator.ingest(rm, (self.clock)());
                            ctx.stats.add_exported(b.item_count() as u64);
                        }
                    }
                    None => break,
                },
                _ = ticker.tick() => {
                    let alerts = self.evaluator.evaluate((self.clock)());
                    if alerts.is_empty() {
                        continue;
                    }
                    let n = alerts.len() as u64;
                    if let Err(e) = ctx.output.send(Batch::Alerts(alerts)).await {
                        ctx.stats.add_failed(n);
                        tracing::warn!(component = %ctx.id, alerts = n, error = %e, "alerts could not be delivered");
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
