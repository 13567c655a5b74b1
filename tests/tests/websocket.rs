//! The `websocket` exporter end to end: the real binary, a real WebSocket
//! client (tokio-tungstenite), real OTLP/JSON spans into the otlp receiver and
//! real host metrics.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use futures_util::{SinkExt, StreamExt};
use magpie_tests::{RunningAgent, http, spans};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Host metrics fast, the feed fast, every listener on port 0.
fn config(websocket_extra: &str) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      http: {{endpoint: \"127.0.0.1:0\"}}
  hostmetrics:
    collection_interval: 200ms
    scrapers: {{cpu: {{}}, memory: {{}}}}
connectors:
  span_metrics: {{metrics_flush_interval: 300ms}}
exporters:
  websocket:
    endpoint: \"127.0.0.1:0\"
    interval: 300ms
{websocket_extra}
service:
  telemetry: {{metrics: {{address: \"127.0.0.1:0\"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [span_metrics, websocket]}}
    metrics: {{receivers: [hostmetrics, span_metrics], exporters: [websocket]}}
"
    )
}

async fn connect(addr: &str, query: &str, headers: &[(&str, &str)]) -> Result<Ws, WsError> {
    let mut req = format!("ws://{addr}/ws{query}").into_client_request().unwrap();
    for (k, v) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.map(|(ws, _)| ws)
}

/// The next JSON text message, within `wait`.
async fn next(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let t0 = Instant::now();
    while t0.elapsed() < wait {
        match tokio::time::timeout(wait.saturating_sub(t0.elapsed()), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
    None
}

/// Messages until one satisfies `f`, within `wait`.
async fn until(ws: &mut Ws, wait: Duration, f: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
    let t0 = Instant::now();
    let mut seen = Vec::new();
    while t0.elapsed() < wait {
        let Some(m) = next(ws, wait.saturating_sub(t0.elapsed())).await else { break };
        if f(&m) {
            return (m, seen);
        }
        seen.push(m);
    }
    panic!("no matching message within {wait:?}; saw {seen:#?}");
}

fn status(e: WsError) -> u16 {
    match e {
        WsError::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn system_metrics_carry_real_host_values_in_the_dashboard_shape() {
    let mut agent = RunningAgent::start_with(&[], &config(""), &[]);
    let addr = agent.websocket_address();
    let mut ws = connect(&addr, "", &[]).await.unwrap();
    // The latest snapshot arrives at once, before the next tick.
    let first = next(&mut ws, Duration::from_millis(250)).await.expect("a snapshot on connect");
    assert_eq!(first["type"], "system_metrics");
    let (m, _) = until(&mut ws, Duration::from_secs(10), |m| {
        m["type"] == "system_metrics"
            && m["metrics"]["cpu_percent"].is_number()
            && m["metrics"]["memory_percent"].is_number()
    })
    .await;
    let metrics = m["metrics"].as_object().unwrap();
    let names: Vec<&str> = metrics.keys().map(String::as_str).collect();
    for f in [
        "cpu_percent",
        "memory_percent",
        "active_connections",
        "requests_per_second",
        "avg_response_time_ms",
        "cache_hit_rate",
        "db_pool_active",
        "db_pool_idle",
    ] {
        assert!(names.contains(&f), "{f} missing from {names:?}");
    }
    let cpu = metrics["cpu_percent"].as_f64().unwrap();
    let mem = metrics["memory_percent"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&cpu), "cpu {cpu}");
    assert!(mem > 0.0 && mem < 100.0, "memory {mem}");
    assert!(metrics["cache_hit_rate"].is_null(), "no Redis here: null, not 0");
    assert!(metrics["db_pool_active"].is_null());
    let ts = m["timestamp"].as_str().unwrap();
    assert!(ts.len() == 27 && ts.ends_with('Z') && &ts[10..11] == "T", "RFC 3339 UTC: {ts}");
    // One message per interval, numbered in order.
    let mut seqs = vec![m["seq"].as_u64().unwrap()];
    let t0 = Instant::now();
    while seqs.len() < 4 {
        let n = next(&mut ws, Duration::from_secs(2)).await.unwrap();
        seqs.push(n["seq"].as_u64().unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let took = t0.elapsed();
    assert!(
        took > Duration::from_millis(600) && took < Duration::from_secs(3),
        "3 ticks of 300ms took {took:?}"
    );
    drop(ws);
    assert!(agent.stop().success());
}

#[tokio::test]
async fn the_token_and_the_origin_are_checked_before_upgrading() {
    let extra = "    auth: {token: \"${env:MAGPIE_TEST_WS_TOKEN}\"}\n    allowed_origins: [\"https://admin.example.com\"]\n";
    let mut agent =
        RunningAgent::start_with(&[], &config(extra), &[("MAGPIE_TEST_WS_TOKEN", "s3cret-t0ken")]);
    let addr = agent.websocket_address();
    assert_eq!(status(connect(&addr, "", &[]).await.unwrap_err()), 401, "no token");
    assert_eq!(status(connect(&addr, "?token=wrong", &[]).await.unwrap_err()), 401, "wrong token");
    assert_eq!(status(connect(&addr, "", &[("authorization", "Bearer wrong")]).await.unwrap_err()), 401);
    let mut ws = connect(&addr, "", &[("authorization", "Bearer s3cret-t0ken")]).await.unwrap();
    assert!(next(&mut ws, Duration::from_secs(5)).await.is_some());
    let mut ws =
        connect(&addr, "?token=s3cret-t0ken", &[("origin", "https://admin.example.com")]).await.unwrap();
    assert!(next(&mut ws, Duration::from_secs(5)).await.is_some());
    let e = connect(&addr, "?token=s3cret-t0ken", &[("origin", "https://evil.example")]).await.unwrap_err();
    assert_eq!(status(e), 403, "an origin not listed");
    // The page's own origin is always allowed.
    let own = format!("http://{addr}");
    assert!(connect(&addr, "?token=s3cret-t0ken", &[("origin", &own)]).await.is_ok());
    let page = http().get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(page.status(), 200, "the page itself holds no data and needs no token");
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    assert!(page.text().await.unwrap().contains("data-feed=\"/ws\""));
    assert!(agent.stop().success());
}

#[tokio::test]
async fn subscriptions_and_filters_select_spans_llm_calls_and_errors() {
    let mut agent = RunningAgent::start_with(&[], &config(""), &[]);
    let (addr, otlp) = (agent.websocket_address(), agent.otlp_http_address());
    let mut ws = connect(&addr, "", &[]).await.unwrap();
    ws.send(Message::text(
        r#"{"type":"subscribe","streams":["spans","errors","llm_calls"],"filter":{"service":"chat"}}"#,
    ))
    .await
    .unwrap();
    let (ack, _) = until(&mut ws, Duration::from_secs(5), |m| m["type"] == "subscribed").await;
    assert_eq!(ack["streams"], serde_json::json!(["spans", "llm_calls", "errors"]));
    let client = http();
    spans::post(&client, &otlp, spans::request("worker", vec![spans::http("GET", "/jobs", 200, 5)])).await;
    spans::post(
        &client,
        &otlp,
        spans::request(
            "chat",
            vec![
                spans::http("POST", "/chat", 200, 120),
                spans::http("POST", "/chat", 502, 30),
                spans::llm("xai", "grok-4", 900, 1200, 300),
            ],
        ),
    )
    .await;
    let mut got = Vec::new();
    while got.len() < 5 {
        let m = next(&mut ws, Duration::from_secs(5)).await.expect("span messages");
        assert_ne!(m["type"], "system_metrics", "the subscription replaced the default stream");
        got.push(m);
    }
    let kinds: Vec<&str> = got.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "span").count(), 3, "{got:#?}");
    assert_eq!(kinds.iter().filter(|k| **k == "error").count(), 1, "{got:#?}");
    assert_eq!(kinds.iter().filter(|k| **k == "llm_call").count(), 1, "{got:#?}");
    assert!(got.iter().all(|m| m["service"] == "chat"), "the filter keeps the other service out");
    let llm = got.iter().find(|m| m["type"] == "llm_call").unwrap();
    assert_eq!(
        (&llm["model"], &llm["input_tokens"], &llm["output_tokens"]),
        (&"grok-4".into(), &1200.into(), &300.into())
    );
    let err = got.iter().find(|m| m["type"] == "error").unwrap();
    assert_eq!(
        (&err["route"], &err["status_code"], &err["message"]),
        (&"/chat".into(), &502.into(), &"boom".into())
    );
    let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // A bad request is answered, not fatal.
    ws.send(Message::text(r#"{"type":"subscribe","streams":["nope"]}"#)).await.unwrap();
    let (bad, _) = until(&mut ws, Duration::from_secs(5), |m| m["type"] == "invalid_request").await;
    assert!(bad["message"].as_str().unwrap().contains("unknown stream `nope`"));

    // Span-derived request metrics reach system_metrics and the route summary
    // (traffic keeps flowing, as it would, so every window has some).
    ws.send(Message::text(r#"{"type":"subscribe","streams":["system_metrics","http_routes"]}"#))
        .await
        .unwrap();
    let traffic = tokio::spawn(async move {
        for _ in 0..50 {
            let batch = vec![spans::http("POST", "/chat", 200, 120), spans::http("POST", "/chat", 502, 30)];
            spans::post(&client, &otlp, spans::request("chat", batch)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (rps, _) = until(&mut ws, Duration::from_secs(10), |m| {
        m["type"] == "system_metrics" && m["metrics"]["requests_per_second"].as_f64().is_some_and(|r| r > 0.0)
    })
    .await;
    assert!(
        rps["metrics"]["avg_response_time_ms"].as_f64().is_some_and(|ms| (30.0..=120.0).contains(&ms)),
        "{rps}"
    );
    let (routes, _) = until(&mut ws, Duration::from_secs(10), |m| {
        m["type"] == "http_routes"
            && m["routes"].as_array().is_some_and(|r| r.iter().any(|x| x["route"] == "/chat"))
    })
    .await;
    traffic.abort();
    let chat = routes["routes"].as_array().unwrap().iter().find(|x| x["route"] == "/chat").unwrap().clone();
    assert_eq!(chat["error_rate"], 0.5, "{chat}");
    assert!(chat["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(agent.stop().success());
}

/// With `llm_cost` in the traces pipeline, each `llm_call` carries the
/// call's price and `llm_usage` the spend per model in its window.
#[tokio::test]
async fn priced_llm_calls_carry_their_cost_and_llm_usage_sums_the_spend() {
    let plain = "    traces: {receivers: [otlp], exporters: [span_metrics, websocket]}";
    let yaml = config("");
    assert!(yaml.contains(plain));
    let yaml = yaml.replace(
        plain,
        "    traces: {receivers: [otlp], processors: [llm_cost], exporters: [span_metrics, websocket]}",
    ) + "processors:\n  llm_cost: {}\n";
    let mut agent = RunningAgent::start_with(&[], &yaml, &[]);
    let (addr, otlp) = (agent.websocket_address(), agent.otlp_http_address());
    let mut ws = connect(&addr, "", &[]).await.unwrap();
    ws.send(Message::text(r#"{"type":"subscribe","streams":["llm_calls","llm_usage"]}"#)).await.unwrap();
    until(&mut ws, Duration::from_secs(5), |m| m["type"] == "subscribed").await;
    // grok-4 at the built-in $3 (input) and $15 (output) per million tokens.
    let per_call = 1200.0 * 3.0 / 1e6 + 300.0 * 15.0 / 1e6;
    let traffic = tokio::spawn(async move {
        let client = http();
        for _ in 0..80 {
            let call = spans::llm("xai", "grok-4", 900, 1200, 300);
            spans::post(&client, &otlp, spans::request("chat", vec![call])).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (call, _) = until(&mut ws, Duration::from_secs(10), |m| m["type"] == "llm_call").await;
    let cost = call["cost_usd"].as_f64().unwrap_or_else(|| panic!("no cost_usd in {call}"));
    assert!((cost - per_call).abs() < 1e-12, "{cost} != {per_call}");
    let (usage, _) = until(&mut ws, Duration::from_secs(10), |m| {
        m["type"] == "llm_usage"
            && m["models"].as_array().is_some_and(|ms| ms.iter().any(|x| x["cost_usd"].as_f64().is_some()))
    })
    .await;
    traffic.abort();
    let grok = usage["models"].as_array().unwrap().iter().find(|x| x["model"] == "grok-4").unwrap().clone();
    let (calls, spent) = (grok["calls"].as_f64().unwrap(), grok["cost_usd"].as_f64().unwrap());
    assert!(calls >= 1.0, "{grok}");
    assert!((spent / calls - per_call).abs() < 1e-5, "{spent} for {calls} calls: {grok}");
    assert!(agent.stop().success());
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_while_a_normal_client_keeps_its_cadence() {
    let extra = "    client_queue_size: 16\n    ping_interval: 200ms\n    client_timeout: 1s\n";
    let mut agent = RunningAgent::start_with(&[], &config(extra), &[]);
    let (addr, otlp) = (agent.websocket_address(), agent.otlp_http_address());
    // The stalled client asks for every span, then never reads again.
    let mut stalled = connect(&addr, "", &[]).await.unwrap();
    stalled
        .send(Message::text(r#"{"type":"subscribe","streams":["system_metrics","spans"]}"#))
        .await
        .unwrap();
    let mut normal = connect(&addr, "", &[]).await.unwrap();
    let sender = tokio::spawn(async move {
        let client = http();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(4) {
            let batch: Vec<_> = (0..200).map(|i| spans::http("GET", "/load", 200, i % 50)).collect();
            spans::post(&client, &otlp, spans::request("load", batch)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // The normal client: one system_metrics per 300 ms interval throughout.
    let t0 = Instant::now();
    let mut arrivals = Vec::new();
    while t0.elapsed() < Duration::from_secs(3) {
        let m = next(&mut normal, Duration::from_secs(2)).await.expect("the normal client keeps receiving");
        assert_eq!(m["type"], "system_metrics");
        arrivals.push(t0.elapsed());
    }
    let n = arrivals.len();
    assert!((8..=12).contains(&n), "{n} messages in 3 s at one per 300 ms: {arrivals:?}");
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g < Duration::from_millis(700)), "no gap over two intervals: {gaps:?}");
    let left = agent.wait_for_log("websocket client left", Duration::from_secs(5));
    assert!(left.contains("stalled"), "{left}");
    // The stalled client's connection is gone: after what was buffered, it ends.
    let t1 = Instant::now();
    let mut after = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stalled.next()).await {
            Ok(Some(Ok(_))) => after += 1,
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => panic!("the stalled client is still connected after {after} buffered messages"),
        }
        assert!(t1.elapsed() < Duration::from_secs(10));
    }
    sender.await.unwrap();
    assert!(agent.stop().success());
}

#[tokio::test]
async fn shutdown_closes_every_client_with_going_away() {
    let mut agent = RunningAgent::start_with(&[], &config(""), &[]);
    let addr = agent.websocket_address();
    let mut ws = connect(&addr, "", &[]).await.unwrap();
    assert!(next(&mut ws, Duration::from_secs(5)).await.is_some());
    let pid = agent.pid();
    magpie_tests::signal(pid, "TERM");
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    assert!(agent.wait_exit().success());
}
