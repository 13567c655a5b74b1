//! The `slack` exporter end to end through the real binary: OTLP metrics in
//! → the `alerts` connector → an alerts pipeline → `slack` → a local HTTP
//! server standing in for Slack's incoming webhook. A firing message, then
//! the resolved one, in Block Kit; a 429 with `Retry-After` is waited out and
//! the same message delivered; the webhook URL (the secret) never reaches the
//! log.

#![allow(clippy::unwrap_used)]

use axum::http::{HeaderMap, StatusCode};
use magpie_tests::RunningAgent;
use magpie_tests::alerting::send_depth;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A status to answer and its `Retry-After`.
type Reply = (u16, Option<&'static str>);

#[derive(Clone, Default)]
struct Slack {
    /// Statuses still to answer, in order, each with a `Retry-After`; then 200 `ok`.
    replies: Arc<Mutex<Vec<Reply>>>,
    /// (when, status answered, body received)
    received: Arc<Mutex<Vec<(Instant, u16, Value)>>>,
}

impl Slack {
    fn received(&self) -> Vec<(Instant, u16, Value)> {
        self.received.lock().unwrap().clone()
    }
}

/// A stand-in for Slack's incoming webhook on 127.0.0.1:0; returns its URL.
async fn slack_server(slack: Slack) -> String {
    let app = axum::Router::new().route(
        "/services/T000/B000/secret-token",
        axum::routing::post(move |body: axum::Json<Value>| {
            let slack = slack.clone();
            async move {
                let (status, retry_after) = {
                    let mut r = slack.replies.lock().unwrap();
                    if r.is_empty() { (200, None) } else { r.remove(0) }
                };
                slack.received.lock().unwrap().push((Instant::now(), status, body.0));
                let mut headers = HeaderMap::new();
                if let Some(s) = retry_after {
                    headers.insert("retry-after", s.parse().unwrap());
                }
                let text = if status == 200 { "ok" } else { "rate_limited" };
                (StatusCode::from_u16(status).unwrap(), headers, text)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/services/T000/B000/secret-token")
}

fn config(url: &str) -> String {
    format!(
        r##"receivers:
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
  slack/ops:
    webhook_url: "{url}"
    channel: "#ops"
    group_wait: 300ms
    group_interval: 500ms
service:
  telemetry: {{metrics: {{address: "127.0.0.1:0"}}}}
  pipelines:
    metrics: {{receivers: [otlp], exporters: [alerts]}}
    alerts: {{receivers: [alerts], exporters: [slack/ops]}}
"##
    )
}

/// Keeps sending `value` every 100ms until a message with `title` was answered 200.
async fn feed_until(addr: &str, value: f64, slack: &Slack, title: &str) {
    let t0 = Instant::now();
    let done = |got: &[(Instant, u16, Value)]| got.iter().any(|(_, c, b)| *c == 200 && b["text"] == title);
    while !done(&slack.received()) {
        assert!(t0.elapsed() < Duration::from_secs(20), "no {title}; received: {:#?}", slack.received());
        send_depth(addr, value).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The section of the one alert, its `Started:` time cut off (the test cannot know it).
fn section_without_start(body: &Value) -> String {
    let text = body["blocks"][2]["text"]["text"].as_str().unwrap();
    text[..text.find(" · *Started:* ").unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_fires_and_resolves_in_slack() {
    let slack = Slack::default();
    let url = slack_server(slack.clone()).await;
    let mut agent = RunningAgent::start(&config(&url));
    let addr = agent.otlp_http_address();

    feed_until(&addr, 50.0, &slack, "[FIRING:1] DeepQueue").await;
    let got = slack.received();
    assert_eq!(got.len(), 1, "one message for one new alert: {got:#?}");
    let body = &got[0].2;
    let section = body["blocks"][2]["text"]["text"].as_str().unwrap().to_string();
    let started = &section[section.find(" · *Started:* ").unwrap() + " · *Started:* ".len()..];
    humantime::parse_rfc3339(started).unwrap();
    assert_eq!(
        body,
        &json!({
            "text": "[FIRING:1] DeepQueue",
            "channel": "#ops",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "[FIRING:1] DeepQueue", "emoji": true}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "`alertname=DeepQueue`"}]},
                {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                    ":red_circle: *FIRING* DeepQueue · severity *critical*\n*queue jobs at 50 (over 10)*\n*Labels:* `queue=jobs` `team=platform`\n*Value:* 50 · *Started:* {started}"
                )}},
            ],
        })
    );

    feed_until(&addr, 1.0, &slack, "[RESOLVED] DeepQueue").await;
    let got = slack.received();
    assert_eq!(got.len(), 2, "firing, then resolved: {got:#?}");
    let resolved = &got[1].2;
    assert_eq!(resolved["blocks"][0]["text"]["text"], "[RESOLVED] DeepQueue");
    assert_eq!(
        section_without_start(resolved),
        ":large_green_circle: *RESOLVED* DeepQueue · severity *critical*\n*queue jobs at 1 (over 10)*\n*Labels:* `queue=jobs` `team=platform`\n*Value:* 1"
    );
    let text = resolved["blocks"][2]["text"]["text"].as_str().unwrap();
    assert!(text.contains(&format!("*Started:* {started} · *Ended:* ")), "{text}");

    // Resolved is sent once.
    for _ in 0..6 {
        send_depth(&addr, 1.0).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(slack.received().len(), 2, "{:#?}", slack.received());
    assert!(agent.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_and_the_same_message_delivered() {
    let slack = Slack::default();
    slack.replies.lock().unwrap().push((429, Some("3")));
    let url = slack_server(slack.clone()).await;
    let mut agent = RunningAgent::start(&config(&url));
    let addr = agent.otlp_http_address();

    feed_until(&addr, 50.0, &slack, "[FIRING:1] DeepQueue").await;
    let got = slack.received();
    let codes: Vec<u16> = got.iter().map(|(_, c, _)| *c).collect();
    assert_eq!(codes, vec![429, 200], "{got:#?}");
    assert_eq!(got[0].2, got[1].2, "the refused message is the one delivered");
    let gap = got[1].0 - got[0].0;
    assert!(gap >= Duration::from_millis(2900), "Retry-After: 3 is honoured, not the 1s backoff: {gap:?}");
    agent.wait_for_log("notification failed; will retry", Duration::from_secs(5));
    let log = agent.log().join("\n");
    assert!(log.contains("slack/ops") && log.contains("429"), "{log}");
    assert!(!log.contains("secret-token"), "the webhook URL is a secret and never logged:\n{log}");
    assert!(agent.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_error_does_not_log_the_url() {
    // Nothing listens on port 1: every post fails before any answer.
    let mut agent = RunningAgent::start(&config("http://127.0.0.1:1/services/T000/B000/secret-token"));
    let addr = agent.otlp_http_address();
    let t0 = Instant::now();
    while !agent.log().iter().any(|l| l.contains("notification failed; will retry")) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no failed notification:\n{}",
            agent.log().join("\n")
        );
        send_depth(&addr, 50.0).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = agent.log().join("\n");
    assert!(log.contains("sending to the Slack webhook of slack/ops"), "{log}");
    assert!(
        !log.contains("secret-token") && !log.contains("127.0.0.1:1/"),
        "the webhook URL is never logged:\n{log}"
    );
    assert!(agent.stop().success());
}
