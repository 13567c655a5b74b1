//! The rule state machine with an injected clock, and the connector.

#![allow(clippy::unwrap_used)]

use super::*;
use magpie_core::config::{Node, from_node};
use magpie_core::otlp::{double_point, gauge, kv_str};
use magpie_core::proto::metrics::v1::ScopeMetrics;
use magpie_core::proto::resource::v1::Resource;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_600_000 + secs)
}

fn nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn config(yaml: &str) -> AlertsConfig {
    let node = Node::parse(yaml, "test.yaml").unwrap();
    from_node::<AlertsConfig>(&node, "connectors.alerts").unwrap().0
}

/// A rule on the gauge `queue.depth` with `extra` settings.
fn evaluator(extra: &str) -> Evaluator {
    let yaml = format!(
        "rules:\n  - name: DeepQueue\n    metric: queue.depth\n    aggregation: max\n    window: 10s\n    condition: gt\n    threshold: 10\n{extra}"
    );
    Evaluator::new(&config(&yaml), &"alerts/test".parse().unwrap())
}

/// One `queue.depth` data point at `at`, on `service` with `route`.
fn point(name: &str, value: f64, service: &str, route: &str, at: SystemTime) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        resource: Some(Resource { attributes: vec![kv_str("service.name", service)], ..Default::default() }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![gauge(
                name,
                "1",
                vec![double_point(value, 0, nanos(at), vec![kv_str("route", route)])],
            )],
            ..Default::default()
        }],
        schema_url: String::new(),
    }]
}

/// Feeds `value` at `at` (when given) and evaluates at `at`; returns (status, value) per alert.
fn step(e: &mut Evaluator, value: Option<f64>, at: u64) -> Vec<(AlertStatus, f64)> {
    if let Some(v) = value {
        e.ingest(&point("queue.depth", v, "api", "/chat", t(at)), t(at));
    }
    e.evaluate(t(at)).iter().map(|a| (a.status, a.value)).collect()
}

const FIRING: AlertStatus = AlertStatus::Firing;
const RESOLVED: AlertStatus = AlertStatus::Resolved;

#[test]
fn for_holds_an_alert_pending_then_it_fires_and_resolves_once() {
    let mut e = evaluator("    for: 30s\n");
    assert_eq!(step(&mut e, Some(50.0), 0), vec![], "pending");
    assert_eq!(step(&mut e, Some(50.0), 20), vec![], "still pending");
    assert_eq!(step(&mut e, Some(60.0), 30), vec![(FIRING, 60.0)], "held for 30s: fires");
    assert_eq!(step(&mut e, Some(60.0), 35), vec![(FIRING, 60.0)], "firing alerts are re-sent");
    // The window is 10s: at 50 only the low point is left.
    assert_eq!(step(&mut e, Some(1.0), 50), vec![(RESOLVED, 1.0)]);
    assert_eq!(step(&mut e, Some(1.0), 55), vec![], "resolved is sent once");
}

#[test]
fn the_alert_carries_its_times_labels_and_annotations() {
    let mut e = evaluator(
        "    severity: critical\n    labels: {team: platform}\n    annotations:\n      summary: 'queue at {{ $value }} (limit {{ $threshold }}) for {{ $labels.alertname }}'\n",
    );
    step(&mut e, Some(50.0), 0);
    e.ingest(&point("queue.depth", 2.0, "api", "/chat", t(20)), t(20));
    let alerts = e.evaluate(t(20));
    let a = &alerts[0];
    assert_eq!(a.status, RESOLVED);
    assert_eq!(a.starts_at, t(0));
    assert_eq!(a.ends_at, Some(t(20)));
    assert_eq!(a.rule, "DeepQueue");
    assert_eq!(a.generator, "alerts/test");
    let want: BTreeMap<String, String> =
        [("alertname", "DeepQueue"), ("severity", "critical"), ("team", "platform")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(a.labels, want);
    assert_eq!(a.fingerprint, fingerprint(&want));
    assert_eq!(a.annotations["summary"], "queue at 2 (limit 10) for DeepQueue");
}

#[test]
fn a_pending_alert_that_stops_holding_is_never_sent() {
    let mut e = evaluator("    for: 1m\n");
    assert_eq!(step(&mut e, Some(50.0), 0), vec![]);
    assert_eq!(step(&mut e, Some(1.0), 15), vec![]);
    assert_eq!(step(&mut e, Some(50.0), 30), vec![], "pending again, from 30");
    assert_eq!(step(&mut e, Some(50.0), 80), vec![]);
    assert_eq!(step(&mut e, Some(50.0), 90), vec![(FIRING, 50.0)], "a minute after 30");
}

#[test]
fn keep_firing_for_outlives_the_condition() {
    let mut e = evaluator("    keep_firing_for: 20s\n");
    assert_eq!(step(&mut e, Some(50.0), 0), vec![(FIRING, 50.0)], "for 0 fires at once");
    assert_eq!(step(&mut e, Some(1.0), 15), vec![(FIRING, 1.0)], "first false at 15");
    assert_eq!(step(&mut e, Some(1.0), 30), vec![(FIRING, 1.0)]);
    // Holding again clears the keep_firing timer.
    assert_eq!(step(&mut e, Some(50.0), 31), vec![(FIRING, 50.0)]);
    assert_eq!(step(&mut e, Some(1.0), 45), vec![(FIRING, 1.0)]);
    assert_eq!(step(&mut e, Some(1.0), 65), vec![(RESOLVED, 1.0)], "20s after the first false at 45");
}

#[test]
fn no_data_ok_resolves() {
    let mut e = evaluator("");
    assert_eq!(step(&mut e, Some(50.0), 0), vec![(FIRING, 50.0)]);
    assert_eq!(step(&mut e, None, 5), vec![(FIRING, 50.0)], "the point is still in the window");
    let out = step(&mut e, None, 11);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, RESOLVED);
    assert!(out[0].1.is_nan(), "no value without data");
    assert_eq!(step(&mut e, None, 20), vec![]);
}

#[test]
fn no_data_alerting_fires_without_any_data() {
    let mut e = evaluator("    no_data: alerting\n    for: 10s\n");
    assert!(step(&mut e, None, 0).is_empty());
    let out = step(&mut e, None, 10);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, FIRING);
    // Data that does not hold resolves it.
    assert_eq!(step(&mut e, Some(1.0), 20), vec![(RESOLVED, 1.0)]);
}

#[test]
fn no_data_keep_state_keeps_firing() {
    let mut e = evaluator("    no_data: keep_state\n");
    assert_eq!(step(&mut e, Some(50.0), 0), vec![(FIRING, 50.0)]);
    assert_eq!(step(&mut e, None, 100).len(), 1, "still firing without data");
    assert_eq!(step(&mut e, None, 100)[0].0, FIRING);
    assert_eq!(step(&mut e, Some(1.0), 200), vec![(RESOLVED, 1.0)]);
}

#[test]
fn group_by_splits_a_rule_into_one_alert_per_series() {
    let mut e = evaluator(
        "    group_by: [route]\n    annotations: {summary: '{{ $labels.route }} at {{ $value }}'}\n",
    );
    e.ingest(&point("queue.depth", 50.0, "api", "/chat", t(0)), t(0));
    e.ingest(&point("queue.depth", 70.0, "web", "/chat", t(0)), t(0));
    e.ingest(&point("queue.depth", 1.0, "api", "/rag", t(0)), t(0));
    e.ingest(&point("queue.depth", 20.0, "api", "/search", t(0)), t(0));
    let alerts = e.evaluate(t(0));
    let got: Vec<(&str, &str)> =
        alerts.iter().map(|a| (a.labels["route"].as_str(), a.annotations["summary"].as_str())).collect();
    // Two services' /chat series are one group: max 70.
    assert_eq!(got, vec![("/chat", "/chat at 70"), ("/search", "/search at 20")]);
    assert!(alerts.iter().all(|a| !a.labels.contains_key("service.name")), "only group_by labels");
    assert_ne!(alerts[0].fingerprint, alerts[1].fingerprint);
    // /search drops: it alone resolves.
    e.ingest(&point("queue.depth", 70.0, "web", "/chat", t(11)), t(11));
    e.ingest(&point("queue.depth", 2.0, "api", "/search", t(11)), t(11));
    let alerts = e.evaluate(t(11));
    let got: Vec<(&str, AlertStatus)> =
        alerts.iter().map(|a| (a.labels["route"].as_str(), a.status)).collect();
    assert_eq!(got, vec![("/search", RESOLVED), ("/chat", FIRING)]);
}

#[test]
fn matchers_read_point_and_resource_attributes() {
    let mut e = evaluator("    matchers: ['service.name = api', 'route =~ \"/c.*\"']\n");
    e.ingest(&point("queue.depth", 50.0, "web", "/chat", t(0)), t(0));
    e.ingest(&point("queue.depth", 50.0, "api", "/rag", t(0)), t(0));
    e.ingest(&point("other.metric", 50.0, "api", "/chat", t(0)), t(0));
    assert!(e.evaluate(t(0)).is_empty(), "no point passes every matcher");
    e.ingest(&point("queue.depth", 50.0, "api", "/chat", t(1)), t(1));
    assert_eq!(e.evaluate(t(1)).len(), 1);
}

#[test]
fn config_problems() {
    let c = config("rules: []\n");
    assert_eq!(c.problems(), vec!["rules: at least one rule is needed".to_string()]);
    let c = config(
        "evaluation_interval: 10ms\nrules:\n  - {name: A, metric: m, aggregation: avg, condition: gt, threshold: 1, window: 0s}\n  - {name: A, metric: m, aggregation: avg, condition: gt, threshold: 1}\n",
    );
    let p = c.problems().join("\n");
    assert!(
        p.contains("evaluation_interval") && p.contains("rules[0].window") && p.contains("names two rules"),
        "{p}"
    );
    let node = Node::parse(
        "rules:\n  - {name: A, metric: m, aggregation: avg, condition: above, threshold: 1}\n",
        "t.yaml",
    )
    .unwrap();
    let e = from_node::<AlertsConfig>(&node, "connectors.alerts").unwrap_err().to_string();
    assert!(e.contains("t.yaml:2:") && e.contains("unknown value `above`"), "{e}");
}

static NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn test_clock() -> SystemTime {
    t(NOW.load(std::sync::atomic::Ordering::SeqCst))
}

#[tokio::test(start_paused = true)]
async fn the_connector_evaluates_on_its_timer_with_the_given_clock() {
    use magpie_core::queue::{WhenFull, queue};
    use magpie_core::{ComponentStats, Output, Signal};
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    let stats = Arc::new(ComponentStats::default());
    let (tx, rx) = queue(4, WhenFull::Block, stats.clone());
    let (atx, mut arx) = tokio::sync::mpsc::channel(8);
    let mut output = Output::new(stats.clone());
    output.add(Signal::Alerts, atx);
    let id: ComponentId = "alerts".parse().unwrap();
    let ctx = ConnectorContext { id: id.clone(), input: rx, output, stats };
    let c = config(
        "evaluation_interval: 15s\nrules:\n  - {name: DeepQueue, metric: queue.depth, aggregation: max, window: 1m, condition: gt, threshold: 10}\n",
    );
    let connector = AlertsConnector::new(&c, &id).with_clock(test_clock);
    let task = tokio::spawn(Box::new(connector).run(ctx));
    NOW.store(0, Ordering::SeqCst);
    tx.push(Arc::new(Batch::Metrics(point("queue.depth", 50.0, "api", "/chat", t(0))))).await.unwrap();
    NOW.store(15, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(16)).await;
    let Some(Batch::Alerts(a)) = arx.recv().await else { panic!("an alerts batch") };
    assert_eq!((a.len(), a[0].status, a[0].starts_at), (1, FIRING, t(15)));
    drop(tx);
    task.await.unwrap().unwrap();
}
