//! Alerts end to end through the real binary: OTLP metrics in → the `alerts`
//! connector → an alerts pipeline → the `webhook` exporter → a local HTTP
//! server that records what it is sent. A firing notification with
//! Alertmanager's payload, then the resolution once the metric drops; a
//! server that answers 503 first gets the same notification again.

#![allow(clippy::unwrap_used)]

use axum::http::StatusCode;
use magpie_tests::RunningAgent;
use magpie_tests::alerting::send_depth;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
struct Hook {
    /// Statuses still to answer, in order; then 200.
    replies: Arc<Mutex<Vec<u16>>>,
    /// (status answered, body received)
    received: Arc<Mutex<Vec<(u16, Value)>>>,
}

impl Hook {
    fn received(&self) -> Vec<(u16, Value)> {
        self.received.lock().unwrap().clone()
    }
}

/// A webhook receiver on 127.0.0.1:0; returns its URL.
async fn webhook_server(hook: Hook) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let hook = hook.clone();
            async move {
                let status = {
                    let mut r = hook.replies.lock().unwrap();
                    if r.is_empty() { 200 } else { r.remove(0) }
                };
                hook.received.lock().unwrap().push((status, body.0));
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook")
}

fn config(url: &str) -> String {
    format!(
        r#"receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:0"}}
connectors:
  alerts:
    evaluation_interval: 200ms
    rules:
      - name: DeepQueue
        metric: queue.depth
        matchers: ['service.name = api']
        aggregation: max
        window: 1s
        group_by: [queue]
        condition: gt
        threshold: 10
        severity: critical
        labels: {{team: platform}}
        annotations:
          summary: 'queue {{{{ $labels.queue }}}} at {{{{ $value }}}} (over {{{{ $threshold }}}})'
exporters:
  webhook:
    endpoint: "{url}"
    group_wait: 300ms
    group_interval: 500ms
service:
  telemetry: {{metrics: {{address: "127.0.0.1:0"}}}}
  pipelines:
    metrics: {{receivers: [otlp], exporters: [alerts]}}
    alerts: {{receivers: [alerts], exporters: [webhook]}}
"#
    )
}

/// Keeps sending `value` every 100ms until `done` holds.
async fn feed_until(addr: &str, value: f64, hook: &Hook, what: &str, done: impl Fn(&[(u16, Value)]) -> bool) {
    let t0 = Instant::now();
    while !done(&hook.received()) {
        assert!(t0.elapsed() < Duration::from_secs(20), "no {what}; received: {:#?}", hook.received());
        send_depth(addr, value).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn expected_labels() -> BTreeMap<String, String> {
    [("alertname", "DeepQueue"), ("queue", "jobs"), ("severity", "critical"), ("team", "platform")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn has(status: &'static str) -> impl Fn(&[(u16, Value)]) -> bool {
    move |got| got.iter().any(|(code, body)| *code == 200 && body["status"] == status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_fires_and_resolves_through_the_webhook() {
    let hook = Hook::default();
    let url = webhook_server(hook.clone()).await;
    let mut agent = RunningAgent::start(&config(&url));
    let addr = agent.otlp_http_address();
    let before = std::time::SystemTime::now();

    feed_until(&addr, 50.0, &hook, "firing notification", has("firing")).await;
    let got = hook.received();
    assert_eq!(got.len(), 1, "one notification for one new alert: {got:#?}");
    let body = &got[0].1;
    let labels = expected_labels();
    let fingerprint = magpie_core::alert::fingerprint(&labels);
    let alert = &body["alerts"][0];
    // startsAt is the evaluation that fired it: after the test began, RFC 3339 in UTC.
    let starts_at = alert["startsAt"].as_str().unwrap().to_string();
    let started = humantime::parse_rfc3339(&starts_at).unwrap();
    assert!(
        started >= before - Duration::from_secs(1) && started <= std::time::SystemTime::now(),
        "{starts_at}"
    );
    assert_eq!(
        body,
        &json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"DeepQueue\"}",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "webhook",
            "groupLabels": {"alertname": "DeepQueue"},
            "commonLabels": labels,
            "commonAnnotations": {"summary": "queue jobs at 50 (over 10)"},
            "externalURL": "",
            "alerts": [{
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "queue jobs at 50 (over 10)"},
                "startsAt": starts_at,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "alerts",
                "fingerprint": fingerprint,
            }],
        })
    );

    // The metric drops; once the 50s leave the 1s window the alert resolves.
    feed_until(&addr, 1.0, &hook, "resolved notification", has("resolved")).await;
    let got = hook.received();
    assert_eq!(got.len(), 2, "firing, then resolved: {got:#?}");
    let resolved = &got[1].1;
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["fingerprint"], fingerprint.as_str());
    assert_eq!(resolved["alerts"][0]["startsAt"], starts_at.as_str());
    assert_eq!(resolved["alerts"][0]["annotations"]["summary"], "queue jobs at 1 (over 10)");
    let ends = humantime::parse_rfc3339(resolved["alerts"][0]["endsAt"].as_str().unwrap()).unwrap();
    assert!(ends > started);

    // Resolved is sent once: a few more group intervals bring nothing.
    for _ in 0..10 {
        send_depth(&addr, 1.0).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(hook.received().len(), 2, "{:#?}", hook.received());
    assert!(agent.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_refused_with_503_is_sent_again() {
    let hook = Hook::default();
    hook.replies.lock().unwrap().extend([503, 503]);
    let url = webhook_server(hook.clone()).await;
    let mut agent = RunningAgent::start(&config(&url));
    let addr = agent.otlp_http_address();

    feed_until(&addr, 50.0, &hook, "a delivered firing notification", has("firing")).await;
    let got = hook.received();
    let codes: Vec<u16> = got.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, vec![503, 503, 200], "{got:#?}");
    // The very notification that was refused is the one delivered.
    assert_eq!(got[0].1, got[2].1);
    assert_eq!(got[1].1, got[2].1);
    agent.wait_for_log("notification failed; will retry", Duration::from_secs(5));

    feed_until(&addr, 1.0, &hook, "resolved notification", has("resolved")).await;
    assert_eq!(hook.received().len(), 4, "{:#?}", hook.received());
    assert!(agent.stop().success());
}

#[test]
fn the_readme_alerts_example_validates() {
    let readme = std::fs::read_to_string(magpie_tests::repo_file("README.md")).unwrap();
    let section = &readme[readme.find("### Alerts").expect("an Alerts section")..];
    let start = section.find("```yaml\n").expect("a yaml example") + "```yaml\n".len();
    let yaml = &section[start..start + section[start..].find("```").unwrap()];
    match magpie_tests::parse_with_env(yaml, &[("ALERT_WEBHOOK_TOKEN", "t")]) {
        Ok(c) => assert!(c.warnings.is_empty(), "{:?}", c.warnings),
        Err(p) => panic!("{}", p.iter().map(|e| format!("  {e}\n")).collect::<String>()),
    }
}
