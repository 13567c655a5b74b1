//! The exporter against a local server: permanent refusals wait for the
//! next group interval, `max_alerts` truncates, only alerts are taken.

#![allow(clippy::unwrap_used)]

use super::*;
use magpie_core::alert::{Alert, AlertStatus, fingerprint};
use magpie_core::config::{Node, from_node};
use serde_json::Value;
use std::collections::BTreeMap;

#[test]
fn which_statuses_are_retried() {
    for s in [429, 500, 502, 503, 504, 599] {
        assert!(retryable(s), "{s}");
    }
    for s in [200, 400, 401, 403, 404, 413, 422] {
        assert!(!retryable(s), "{s}");
    }
}

#[test]
fn defaults_are_alertmanagers() {
    let node = Node::parse("endpoint: http://127.0.0.1:9/hook\n", "t.yaml").unwrap();
    let c = from_node::<WebhookConfig>(&node, "exporters.webhook").unwrap().0;
    assert_eq!(c.group_by, vec!["alertname".to_string()]);
    assert_eq!(
        (c.group_wait, c.group_interval, c.repeat_interval),
        (Duration::from_secs(30), Duration::from_secs(300), Duration::from_secs(4 * 3600))
    );
    assert_eq!(c.max_alerts, 0);
    assert!(c.problems().is_empty());
    let node = Node::parse("endpoint: hooks.example.com\ngroup_interval: 0s\n", "t.yaml").unwrap();
    let p = from_node::<WebhookConfig>(&node, "exporters.webhook").unwrap().0.problems().join("\n");
    assert!(p.contains("must start with http://") && p.contains("group_interval"), "{p}");
}

type Received = Arc<Mutex<Vec<(std::time::Instant, Value)>>>;

/// A server answering every POST with `status` and a body; returns its URL and what it received.
async fn server(status: u16) -> (String, Received) {
    let received: Received = Arc::default();
    let log = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push((std::time::Instant::now(), body.0));
                (axum::http::StatusCode::from_u16(status).unwrap(), "payload rejected: no such team")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), received)
}

fn alert(route: &str) -> Alert {
    let labels: BTreeMap<String, String> =
        [("alertname", "A"), ("route", route)].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Alert {
        rule: "A".into(),
        status: AlertStatus::Firing,
        fingerprint: fingerprint(&labels),
        labels,
        annotations: BTreeMap::new(),
        value: 1.0,
        starts_at: SystemTime::now(),
        ends_at: None,
        generator: "alerts".into(),
    }
}

async fn exporter(yaml: &str) -> WebhookExporter {
    let node = Node::parse(yaml, "t.yaml").unwrap();
    let config = from_node::<WebhookConfig>(&node, "exporters.webhook").unwrap().0;
    let id: ComponentId = "webhook/test".parse().unwrap();
    let mut e = WebhookExporter::new(&id, &config);
    let ctx = ExporterContext { id, stats: Arc::default(), shutdown: CancellationToken::new() };
    e.start(&ctx).await.unwrap();
    e
}

async fn settle(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test]
async fn a_permanent_refusal_waits_for_the_next_group_interval() {
    let (url, received) = server(400).await;
    let mut e = exporter(&format!("endpoint: {url}\ngroup_wait: 50ms\ngroup_interval: 700ms\n")).await;
    e.export(Arc::new(Batch::Alerts(vec![alert("/x")]))).await.unwrap();
    settle(500).await;
    assert_eq!(received.lock().unwrap().len(), 1, "a 400 is not retried on a backoff");
    settle(600).await;
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "tried again at the next group_interval");
    let gap = got[1].0 - got[0].0;
    assert!(gap >= Duration::from_millis(600), "{gap:?}");
    e.shutdown().await.unwrap();
}

#[tokio::test]
async fn max_alerts_truncates_and_counts_the_rest() {
    let (url, received) = server(200).await;
    let mut e = exporter(&format!("endpoint: {url}\ngroup_wait: 50ms\nmax_alerts: 1\nreceiver: ops\n")).await;
    e.export(Arc::new(Batch::Alerts(vec![alert("/x"), alert("/y"), alert("/z")]))).await.unwrap();
    settle(400).await;
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let body = &got[0].1;
    assert_eq!(body["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(body["truncatedAlerts"], 2);
    assert_eq!(body["receiver"], "ops");
    e.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_sends_what_waits_and_other_signals_are_refused() {
    let (url, received) = server(200).await;
    let mut e = exporter(&format!("endpoint: {url}\ngroup_wait: 1h\n")).await;
    let r = e.export(Arc::new(Batch::Metrics(Vec::new()))).await;
    assert!(matches!(r, Err(ExportError::Permanent { .. })), "metrics are refused, not a panic");
    e.export(Arc::new(Batch::Alerts(vec![alert("/x")]))).await.unwrap();
    settle(100).await;
    assert!(received.lock().unwrap().is_empty(), "group_wait holds it");
    e.shutdown().await.unwrap();
    assert_eq!(received.lock().unwrap().len(), 1, "shutdown does not wait out group_wait");
}
