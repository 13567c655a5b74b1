//! The built-in live page in a real browser: the `magpie` binary on the
//! shipped default config (ports moved to 0, intervals shortened), real
//! OTLP/JSON spans flowing in, and headless Chromium driven over the
//! DevTools protocol. The charts must receive data and keep updating; a
//! screenshot is kept in `tests/artifacts/live_page.png`.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use futures_util::{SinkExt, StreamExt};
use magpie_tests::{RunningAgent, http, repo_file, spans};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const OVERRIDES: &str = "receivers:
  otlp:
    protocols:
      grpc: {endpoint: \"127.0.0.1:0\"}
      http: {endpoint: \"127.0.0.1:0\"}
  hostmetrics:
    collection_interval: 500ms
connectors:
  span_metrics: {metrics_flush_interval: 500ms}
exporters:
  websocket: {endpoint: \"127.0.0.1:0\", interval: 500ms}
service:
  telemetry: {metrics: {address: \"127.0.0.1:0\"}}
";

/// The Chromium binary, or a failure that says how to install it.
fn chromium() -> String {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return name.to_string();
        }
    }
    panic!(
        "headless Chromium is needed for this test: install it with `apt-get install -y chromium` (./tests/run does so when run as root)"
    );
}

/// A DevTools protocol session on one page.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
}

impl Cdp {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.ws
            .send(Message::text(json!({"id": id, "method": method, "params": params}).to_string()))
            .await
            .unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }
}

/// What the page shows now, read from its DOM.
const STATE: &str = r#"JSON.stringify({
  updates: Number(document.body.dataset.systemUpdates || 0),
  status: document.getElementById('status').textContent,
  cpu: (document.querySelector('[data-field=cpu_percent]') || {dataset: {}}).dataset.value || '',
  memory: (document.querySelector('[data-field=memory_percent]') || {dataset: {}}).dataset.value || '',
  cards: document.querySelectorAll('#cards .card').length,
  rps: Number(document.getElementById('chart-rps').dataset.points || 0),
  latency: Number(document.getElementById('chart-latency').dataset.points || 0),
  tokens: Number(document.getElementById('chart-tokens').dataset.points || 0),
  routes: [...document.querySelectorAll('#routes tbody tr td:first-child')].map(td => td.textContent),
  models: [...document.querySelectorAll('#models tbody tr td:first-child')].map(td => td.textContent),
  costs: [...document.querySelectorAll('#models tbody tr td:last-child')].map(td => td.textContent),
  errors: document.querySelectorAll('#errors li').length,
})"#;

/// The page's state, or `null` while it is still loading (or its script failed, which the caller reports).
async fn state(cdp: &mut Cdp) -> Value {
    let r = cdp.call("Runtime.evaluate", json!({"expression": STATE, "returnByValue": true})).await;
    match r["result"]["value"].as_str() {
        Some(s) => serde_json::from_str(s).unwrap(),
        None => json!({"not_ready": r}),
    }
}

#[tokio::test]
async fn the_live_page_shows_host_metrics_routes_tokens_and_errors_and_keeps_updating() {
    let browser = chromium();
    let mut agent = RunningAgent::start_with(&[repo_file("configs/default.yaml")], OVERRIDES, &[]);
    let (addr, otlp) = (agent.websocket_address(), agent.otlp_http_address());

    // The app: a steady trickle of requests, LLM calls and the odd failure.
    let traffic = tokio::spawn(async move {
        let client = http();
        for i in 0u64..600 {
            let batch = vec![
                spans::http("POST", "/chat", 200, 180 + i % 7 * 40),
                spans::http("GET", "/api/documents/{id}", 200, 15 + i % 5 * 6),
                spans::http("GET", "/health", 200, 2),
                spans::llm("xai", "grok-4-fast", 900 + i % 3 * 300, 1800, 350),
                spans::llm("anthropic", "claude-sonnet-4", 1500, 2400, 600),
            ];
            let mut batch = batch;
            if i % 10 == 0 {
                batch.push(spans::http("POST", "/chat", 502, 3000));
            }
            spans::post(&client, &otlp, spans::request("chatbot-api", batch)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let profile = tempfile::tempdir().unwrap();
    let mut chrome = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,1500",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{addr}/"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = chrome.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let browser_ws = rx.recv_timeout(Duration::from_secs(30)).expect("chromium printed its DevTools address");
    let devtools = browser_ws.trim_start_matches("ws://").split('/').next().unwrap().to_string();

    // The page target that opened our URL.
    let t0 = Instant::now();
    let page_ws = loop {
        let list: Value =
            http().get(format!("http://{devtools}/json/list")).send().await.unwrap().json().await.unwrap();
        if let Some(p) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page" && t["url"].as_str().unwrap_or("").contains(&addr))
        {
            break p["webSocketDebuggerUrl"].as_str().unwrap().to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no page target: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (ws, _) = tokio_tungstenite::connect_async(page_ws.as_str()).await.unwrap();
    let mut cdp = Cdp { ws, next_id: 0 };

    // Wait until every panel has data.
    let t0 = Instant::now();
    let first = loop {
        let s = state(&mut cdp).await;
        let ready = s["updates"].as_u64().unwrap_or(0) >= 3
            && !s["cpu"].as_str().unwrap_or("").is_empty()
            && s["routes"].as_array().is_some_and(|r| r.len() >= 2)
            && s["models"].as_array().is_some_and(|m| m.len() >= 2)
            && s["errors"].as_u64().unwrap_or(0) >= 1;
        if ready {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(40), "the page never filled: {s}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(first["status"], "Live", "{first}");
    assert_eq!(first["cards"], 8, "one card per system_metrics field: {first}");
    let cpu: f64 = first["cpu"].as_str().unwrap().parse().unwrap();
    let memory: f64 = first["memory"].as_str().unwrap().parse().unwrap();
    assert!((0.0..=100.0).contains(&cpu) && memory > 0.0 && memory < 100.0, "{first}");
    let routes: Vec<&str> = first["routes"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(routes.iter().any(|r| r.starts_with("POST /chat")), "{routes:?}");
    let models: Vec<&str> = first["models"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(
        models.contains(&"xai / grok-4-fast") && models.contains(&"anthropic / claude-sonnet-4"),
        "{models:?}"
    );
    // The default config prices calls with llm_cost: claude-sonnet-4 has a
    // built-in price, the bare name grok-4-fast does not.
    let cost_of = |model: &str| {
        let i = models.iter().position(|m| *m == model).unwrap();
        first["costs"][i].as_str().unwrap().to_string()
    };
    let claude = cost_of("anthropic / claude-sonnet-4");
    assert!(claude.strip_prefix('$').and_then(|c| c.parse::<f64>().ok()).is_some_and(|c| c > 0.0), "{first}");
    assert_eq!(cost_of("xai / grok-4-fast"), "—", "{first}");

    // And it keeps updating.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = state(&mut cdp).await;
    for k in ["updates", "rps", "latency", "tokens"] {
        assert!(later[k].as_u64() > first[k].as_u64(), "{k} did not grow: {first} → {later}");
    }

    let shot = cdp.call("Page.captureScreenshot", json!({"format": "png"})).await;
    let png = magpie_tests::base64_decode(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dir = repo_file("tests/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("live_page.png"), &png).unwrap();

    // Close the browser over its own protocol, then make sure it is gone.
    if let Ok((mut bws, _)) = tokio_tungstenite::connect_async(browser_ws.as_str()).await {
        let _ = bws.send(Message::text(json!({"id": 1, "method": "Browser.close"}).to_string())).await;
    }
    let t0 = Instant::now();
    while chrome.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = chrome.kill();
    let _ = chrome.wait();
    traffic.abort();
    assert!(agent.stop().success());
}
