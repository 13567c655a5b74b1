//! Self-telemetry over HTTP on `service.telemetry.metrics.address`:
//! `/metrics` (Prometheus text), `/healthz` (the process is alive) and
//! `/readyz` (every component started; 503 with a JSON body naming the ones
//! that are not).

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use magpie_core::telemetry::{Entry, State};
use magpie_core::{ComponentKind, Telemetry};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Shared {
    telemetry: Telemetry,
    ready: Arc<AtomicBool>,
    started: Instant,
}

/// The running self-telemetry server.
pub struct SelfMon {
    pub local_addr: SocketAddr,
    /// Set while a topology is fully started; cleared during reloads.
    pub ready: Arc<AtomicBool>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl SelfMon {
    /// Binds `address` and serves until [`SelfMon::stop`].
    pub async fn serve(address: &str, telemetry: Telemetry) -> Result<SelfMon, String> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| format!("binding self-telemetry address {address}: {e}"))?;
        let local_addr = listener.local_addr().map_err(|e| e.to_string())?;
        let ready = Arc::new(AtomicBool::new(false));
        let shared = Shared { telemetry, ready: ready.clone(), started: Instant::now() };
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(shared);
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned());
            if let Err(e) = server.await {
                tracing::error!(component = "service", error = %e, "self-telemetry server failed");
            }
        });
        Ok(SelfMon { local_addr, ready, stop, task })
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn readyz(AxumState(s): AxumState<Shared>) -> impl IntoResponse {
    let entries = s.telemetry.entries();
    let not_running: Vec<serde_json::Value> = entries
        .iter()
        .filter(|e| e.stats.state() != State::Running)
        .map(|e| serde_json::json!({"component": e.id.to_string(), "kind": e.kind.as_str(), "state": e.stats.state().as_str()}))
        .collect();
    let ready = s.ready.load(Ordering::Relaxed) && not_running.is_empty();
    let body = serde_json::json!({
        "ready": ready,
        "components": entries.len(),
        "not_ready": not_running,
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string())
}

async fn metrics(AxumState(s): AxumState<Shared>) -> impl IntoResponse {
    let body = render(&s.telemetry.entries(), s.started, &process_stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

/// Figures about the agent process itself.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

/// Reads RSS and CPU time of this process from `/proc/self`.
pub fn process_stats() -> ProcessStats {
    let rss_bytes =
        std::fs::read_to_string("/proc/self/status").ok().and_then(|s| parse_vm_rss(&s)).unwrap_or(0);
    let cpu_seconds =
        std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| parse_cpu_seconds(&s)).unwrap_or(0.0);
    ProcessStats { rss_bytes, cpu_seconds }
}

/// `VmRSS` from `/proc/<pid>/status`, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// utime + stime from `/proc/<pid>/stat`, in seconds (USER_HZ is 100 on Linux).
pub fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels(e: &Entry) -> String {
    match &e.pipeline {
        Some(p) => format!("component=\"{}\",pipeline=\"{}\"", escape(&e.id.to_string()), escape(p)),
        None => format!("component=\"{}\"", escape(&e.id.to_string())),
    }
}

/// The global allocator the `magpie` binary is built with (its `mimalloc`
/// feature, on by default).
const ALLOCATOR: &str = if cfg!(feature = "mimalloc") { "mimalloc" } else { "system" };

/// The Prometheus text exposition of every counter.
pub fn render(entries: &[Entry], started: Instant, process: &ProcessStats) -> String {
    type Pick = fn(&magpie_core::telemetry::StatsSnapshot) -> u64;
    let families: &[(&str, &str, &str, &[ComponentKind], Pick)] = &[
        (
            "magpie_receiver_received_items_total",
            "counter",
            "Items a receiver received from clients or scrapes.",
            &[ComponentKind::Receiver],
            |s| s.received,
        ),
        (
            "magpie_receiver_accepted_items_total",
            "counter",
            "Items a receiver pushed into its pipelines.",
            &[ComponentKind::Receiver],
            |s| s.accepted,
        ),
        (
            "magpie_receiver_refused_items_total",
            "counter",
            "Items a receiver refused (invalid, or pipelines full).",
            &[ComponentKind::Receiver],
            |s| s.refused,
        ),
        (
            "magpie_processor_received_items_total",
            "counter",
            "Items given to a processor.",
            &[ComponentKind::Processor],
            |s| s.received,
        ),
        (
            "magpie_processor_sent_items_total",
            "counter",
            "Items a processor passed on.",
            &[ComponentKind::Processor],
            |s| s.exported,
        ),
        (
            "magpie_exporter_exported_items_total",
            "counter",
            "Items delivered to the destination.",
            &[ComponentKind::Exporter, ComponentKind::Connector],
            |s| s.exported,
        ),
        (
            "magpie_exporter_failed_items_total",
            "counter",
            "Items that could not be delivered (permanent error or retries exhausted).",
            &[ComponentKind::Exporter, ComponentKind::Connector],
            |s| s.failed,
        ),
        (
            "magpie_exporter_dropped_items_total",
            "counter",
            "Items dropped by a full drop_oldest queue.",
            &[ComponentKind::Exporter, ComponentKind::Connector],
            |s| s.dropped,
        ),
        (
            "magpie_exporter_queue_size",
            "gauge",
            "Batches waiting in the exporter's queue.",
            &[ComponentKind::Exporter, ComponentKind::Connector],
            |s| s.queue_size,
        ),
        (
            "magpie_exporter_queue_capacity",
            "gauge",
            "Batches the exporter's queue can hold.",
            &[ComponentKind::Exporter, ComponentKind::Connector],
            |s| s.queue_capacity,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, kinds, pick) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for e in entries.iter().filter(|e| kinds.contains(&e.kind)) {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(e), pick(&e.stats.snapshot()));
        }
    }
    let _ = writeln!(
        out,
        "# HELP magpie_processor_items_total Items a processor sorted, by outcome (llm_cost: priced, unpriced, kept; probabilistic_sampler: kept, dropped, ...).\n# TYPE magpie_processor_items_total counter"
    );
    for e in entries.iter().filter(|e| e.kind == ComponentKind::Processor) {
        for (outcome, n) in e.stats.outcomes() {
            let _ = writeln!(out, "magpie_processor_items_total{{{},outcome=\"{outcome}\"}} {n}", labels(e));
        }
    }
    let _ = writeln!(
        out,
        "# HELP magpie_component_up Whether the component is running (1) or not (0).\n# TYPE magpie_component_up gauge"
    );
    for e in entries {
        let up = u8::from(e.stats.state() == State::Running);
        let _ = writeln!(out, "magpie_component_up{{{},kind=\"{}\"}} {up}", labels(e), e.kind.as_str());
    }
    let _ = writeln!(
        out,
        "# HELP magpie_process_resident_memory_bytes Resident set size of the agent.\n# TYPE magpie_process_resident_memory_bytes gauge\nmagpie_process_resident_memory_bytes {}",
        process.rss_bytes
    );
    let _ = writeln!(
        out,
        "# HELP magpie_process_cpu_seconds_total CPU time the agent used, user and system.\n# TYPE magpie_process_cpu_seconds_total counter\nmagpie_process_cpu_seconds_total {}",
        process.cpu_seconds
    );
    let _ = writeln!(
        out,
        "# HELP magpie_build_info The agent's version and the memory allocator it was built with.\n# TYPE magpie_build_info gauge\nmagpie_build_info{{version=\"{}\",allocator=\"{ALLOCATOR}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "# HELP magpie_process_uptime_seconds Seconds since the agent started.\n# TYPE magpie_process_uptime_seconds gauge\nmagpie_process_uptime_seconds {:.3}",
        started.elapsed().as_secs_f64()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_parsers() {
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t   1234 kB\n"), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0 1000 0 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
        assert_eq!(parse_cpu_seconds("garbage"), None);
    }

    #[test]
    fn renders_prometheus_text() {
        let t = Telemetry::new();
        let s = t.register(&"otlp".parse().unwrap(), ComponentKind::Receiver, None);
        s.add_accepted(7);
        s.set_state(State::Running);
        let e = t.register(&"file/\"x\"".parse().unwrap(), ComponentKind::Exporter, None);
        e.add_dropped(3);
        let p = t.register(&"llm_cost".parse().unwrap(), ComponentKind::Processor, Some("traces"));
        p.add_outcome("priced", 2);
        p.add_outcome("unpriced", 0);
        p.add_outcome("priced", 3);
        let text = render(&t.entries(), Instant::now(), &ProcessStats { rss_bytes: 10, cpu_seconds: 1.5 });
        assert!(text.contains("magpie_receiver_accepted_items_total{component=\"otlp\"} 7\n"), "{text}");
        assert!(
            text.contains("magpie_exporter_dropped_items_total{component=\"file/\\\"x\\\"\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("magpie_component_up{component=\"otlp\",kind=\"receiver\"} 1\n"), "{text}");
        assert!(text.contains("magpie_process_resident_memory_bytes 10\n"), "{text}");
        assert!(
            text.contains(
                "magpie_processor_items_total{component=\"llm_cost\",pipeline=\"traces\",outcome=\"priced\"} 5\n"
            ),
            "{text}"
        );
        assert!(!text.contains("outcome=\"unpriced\""), "an outcome never seen is not rendered: {text}");
        let build = format!(
            "magpie_build_info{{version=\"{}\",allocator=\"{ALLOCATOR}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
        assert!(
            text.contains(
                "# TYPE magpie_process_cpu_seconds_total counter\nmagpie_process_cpu_seconds_total 1.5\n"
            ),
            "{text}"
        );
    }
}
