//! Benchmark of the `websocket` exporter: many real WebSocket clients on
//! 127.0.0.1 against the real `magpie` binary, a 1-second `system_metrics`
//! stream to every client and a span stream of 5,000 spans/s (OTLP/protobuf
//! into the otlp receiver) to the clients that subscribe to it.
//!
//! Reports delivery latency (message timestamp → client), the agent's CPU
//! and RSS, then repeats with stalled clients (subscribed to every span,
//! never reading) to show they change neither.
//!
//! Run (release):
//!   cargo build --release -p magpie --bin magpie
//!   cargo bench -p magpie-tests --bench websocket
//! (`MAGPIE_BIN=/path/to/magpie` runs another build of the agent.)
//! Environment: MAGPIE_BENCH_CLIENTS (1000), MAGPIE_BENCH_SPAN_CLIENTS (10),
//! MAGPIE_BENCH_STALLED (10), MAGPIE_BENCH_SECONDS (20), MAGPIE_BENCH_SPANS_PER_SECOND (5000).

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use futures_util::{SinkExt, StreamExt};
use magpie_core::otlp::{kv_int, kv_str, now_unix_nanos};
use magpie_core::proto::collector::trace::v1::ExportTraceServiceRequest;
use magpie_core::proto::resource::v1::Resource;
use magpie_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use magpie_tests::RunningAgent;
use prost::Message as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Latencies (µs) and counts one client saw while measuring.
#[derive(Default)]
struct Seen {
    system: Vec<u64>,
    spans: Vec<u64>,
    lagged: u64,
}

/// Unix microseconds of `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn parse_ts(ts: &str) -> Option<u64> {
    let b = ts.as_bytes();
    if b.len() < 27 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss, us) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..26)?);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + us).ok()
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let rest = &text[start..];
    Some(&rest[..rest.find('"')?])
}

async fn client(
    url: String,
    subscribe: Option<&'static str>,
    seen: Arc<Mutex<Seen>>,
    measuring: Arc<AtomicBool>,
) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        eprintln!("a client could not connect");
        return;
    };
    if let Some(s) = subscribe {
        let _ = ws.send(Message::text(s)).await;
    }
    while let Some(Ok(m)) = ws.next().await {
        let Message::Text(t) = m else { continue };
        if !measuring.load(Ordering::Relaxed) {
            continue;
        }
        let now = now_unix_nanos() / 1000;
        let t = t.as_str();
        let kind = field(t, "\"type\":\"").unwrap_or("");
        let Some(ts) = field(t, "\"timestamp\":\"").and_then(parse_ts) else { continue };
        let lat = now.saturating_sub(ts);
        let mut s = seen.lock().unwrap();
        match kind {
            "system_metrics" => s.system.push(lat),
            "span" => s.spans.push(lat),
            "lagged" => s.lagged += 1,
            _ => {}
        }
    }
}

/// (utime + stime in seconds, RSS in KiB, peak RSS in KiB) of `pid`.
fn usage(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (ticks as f64 / 100.0, kib("VmRSS:"), kib("VmHWM:"))
}

fn pct(v: &mut [u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i] as f64 / 1000.0
}

struct Phase {
    name: String,
    bench_cpu: f64,
    sys: (f64, f64, f64, usize),
    spans: (f64, f64, f64, usize),
    per_client_min: usize,
    per_client_max: usize,
    cpu: f64,
    rss_kib: u64,
    lagged: u64,
}

async fn measure(
    name: &str,
    pid: u32,
    seen: &[Arc<Mutex<Seen>>],
    measuring: &AtomicBool,
    secs: u64,
) -> Phase {
    for s in seen {
        *s.lock().unwrap() = Seen::default();
    }
    let (cpu0, _, _) = usage(pid);
    let (own0, _, _) = usage(std::process::id());
    let t0 = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    measuring.store(false, Ordering::Relaxed);
    let wall = t0.elapsed().as_secs_f64();
    let (cpu1, rss, _) = usage(pid);
    let (own1, _, _) = usage(std::process::id());
    let (mut sys, mut spans, mut counts, mut lagged) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for s in seen {
        let s = s.lock().unwrap();
        counts.push(s.system.len());
        sys.extend_from_slice(&s.system);
        spans.extend_from_slice(&s.spans);
        lagged += s.lagged;
    }
    Phase {
        name: name.to_string(),
        bench_cpu: (own1 - own0) / wall * 100.0,
        sys: (pct(&mut sys, 0.5), pct(&mut sys, 0.99), pct(&mut sys, 1.0), sys.len()),
        spans: (pct(&mut spans, 0.5), pct(&mut spans, 0.99), pct(&mut spans, 1.0), spans.len()),
        per_client_min: counts.iter().copied().min().unwrap_or(0),
        per_client_max: counts.iter().copied().max().unwrap_or(0),
        cpu: (cpu1 - cpu0) / wall * 100.0,
        rss_kib: rss,
        lagged,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let clients = env("MAGPIE_BENCH_CLIENTS", 1000) as usize;
    let span_clients = env("MAGPIE_BENCH_SPAN_CLIENTS", 10) as usize;
    let stalled_n = env("MAGPIE_BENCH_STALLED", 10) as usize;
    let secs = env("MAGPIE_BENCH_SECONDS", 20);
    let rate = env("MAGPIE_BENCH_SPANS_PER_SECOND", 5000);
    let config = format!(
        "receivers:
  otlp:
    protocols:
      http: {{endpoint: \"127.0.0.1:0\"}}
exporters:
  websocket:
    endpoint: \"127.0.0.1:0\"
    interval: 1s
    max_clients: {}
    client_queue_size: 256
service:
  telemetry: {{metrics: {{address: \"127.0.0.1:0\"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [websocket]}}
",
        clients + stalled_n + 10
    );
    let mut agent = RunningAgent::start_with(&[], &config, &[]);
    let pid = agent.pid();
    let (addr, otlp) = (agent.websocket_address(), agent.otlp_http_address());
    let url = format!("ws://{addr}/ws");
    let (_, rss_idle, _) = usage(pid);

    let measuring = Arc::new(AtomicBool::new(false));
    let mut seen = Vec::new();
    let t0 = Instant::now();
    for i in 0..clients {
        let s = Arc::new(Mutex::new(Seen::default()));
        seen.push(s.clone());
        let sub =
            (i < span_clients).then_some(r#"{"type":"subscribe","streams":["system_metrics","spans"]}"#);
        tokio::spawn(client(url.clone(), sub, s, measuring.clone()));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!("connected {clients} clients ({span_clients} on the span stream) in {:?}", t0.elapsed());

    // The span stream: `rate` spans per second in 50 requests per second.
    let body_spans = (rate / 50).max(1) as usize;
    let sender = tokio::spawn(async move {
        let http = magpie_tests::http();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            let now = now_unix_nanos();
            let spans: Vec<Span> = (0..body_spans)
                .map(|i| {
                    n += 1;
                    Span {
                        trace_id: [[7u8; 8], n.to_be_bytes()].concat(),
                        span_id: n.to_be_bytes().to_vec(),
                        name: "GET /items/{id}".into(),
                        kind: SpanKind::Server as i32,
                        start_time_unix_nano: now - 2_000_000 - (i as u64) * 1000,
                        end_time_unix_nano: now,
                        attributes: vec![
                            kv_str("http.request.method", "GET"),
                            kv_str("http.route", "/items/{id}"),
                            kv_int("http.response.status_code", 200),
                        ],
                        ..Default::default()
                    }
                })
                .collect();
            let req = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv_str("service.name", "bench")],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                    schema_url: String::new(),
                }],
            };
            let r = http
                .post(format!("http://{otlp}/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .body(req.encode_to_vec())
                .send()
                .await;
            if let Ok(r) = r
                && !r.status().is_success()
            {
                eprintln!("otlp answered {}", r.status());
            }
        }
    });

    tokio::time::sleep(Duration::from_secs(3)).await;
    let a = measure("1,000 clients", pid, &seen, &measuring, secs).await;

    // Stalled clients: they ask for every span and never read.
    let mut stalled = Vec::new();
    for _ in 0..stalled_n {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
        ws.send(Message::text(r#"{"type":"subscribe","streams":["system_metrics","spans"]}"#)).await.unwrap();
        stalled.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let b = measure(&format!("+ {stalled_n} stalled"), pid, &seen, &measuring, secs).await;
    let (_, _, peak) = usage(pid);
    sender.abort();

    println!(
        "\nwebsocket bench: {clients} clients, {span_clients} of them on a {rate} spans/s stream, {secs} s per phase, agent pid {pid}"
    );
    println!("agent RSS idle (no clients): {:.1} MiB", rss_idle as f64 / 1024.0);
    println!(
        "{:<16} {:>12} {:>12} {:>12} {:>10} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9} {:>8}",
        "phase",
        "sys p50 ms",
        "sys p99 ms",
        "sys max ms",
        "sys msgs",
        "span p50 ms",
        "span p99 ms",
        "span max ms",
        "span msgs",
        "per-client",
        "CPU %",
        "RSS MiB"
    );
    for p in [&a, &b] {
        println!(
            "{:<16} {:>12.2} {:>12.2} {:>12.2} {:>10} {:>12.2} {:>12.2} {:>12.2} {:>12} {:>4}..{:<4} {:>9.1} {:>8.1}",
            p.name,
            p.sys.0,
            p.sys.1,
            p.sys.2,
            p.sys.3,
            p.spans.0,
            p.spans.1,
            p.spans.2,
            p.spans.3,
            p.per_client_min,
            p.per_client_max,
            p.cpu,
            p.rss_kib as f64 / 1024.0
        );
        println!("  (the clients' own process used {:.1} % CPU meanwhile, on the same 2 cores)", p.bench_cpu);
        if p.lagged > 0 {
            println!("  (normal clients told they lagged {} times)", p.lagged);
        }
    }
    println!("agent peak RSS: {:.1} MiB", peak as f64 / 1024.0);
    drop(stalled);
    let _ = agent.stop();
}
