//! The real `magpie` binary: the CLI commands, and the agent on the default
//! config answering /healthz, /readyz and /metrics and exiting 0 on SIGTERM.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie_tests::{RunningAgent, http, magpie_bin, repo_file, signal};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn validate_exits_0_on_a_good_config_and_1_with_every_error() {
    let out = Command::new(magpie_bin())
        .args(["validate", "--config"])
        .arg(repo_file("configs/default.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("is valid"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "receivers:\n  otlpp: {}\nexporters:\n  debug: {verbosity: loud}\nservice:\n  pipelines:\n    traces: {receivers: [otlpp], exporters: [debug]}\n").unwrap();
    let out = Command::new(magpie_bin()).arg("validate").arg("-c").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:2:3: error: receivers.otlpp: unknown receiver type `otlpp`"), "{err}");
    assert!(err.contains("bad.yaml:4:22: error: exporters.debug.verbosity: unknown value `loud`"), "{err}");
    assert!(err.contains("2 errors in the config"), "one error per mistake, no follow-on errors:\n{err}");
}

#[test]
fn print_config_merges_files_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, "receivers: {hostmetrics: {}}\nexporters:\n  debug: {verbosity: basic}\n  otlp_http:\n    endpoint: http://127.0.0.1:4318\n    headers:\n      x-api-key: ${env:MAGPIE_TEST_KEY}\nservice:\n  pipelines:\n    metrics: {receivers: [hostmetrics], exporters: [debug, otlp_http]}\n").unwrap();
    std::fs::write(&b, "exporters:\n  debug:\n    verbosity: ${env:VERBOSITY}\n").unwrap();
    let out = Command::new(magpie_bin())
        .arg("print-config")
        .arg("-c")
        .arg(&a)
        .arg("-c")
        .arg(&b)
        .env("VERBOSITY", "detailed")
        .env("MAGPIE_TEST_KEY", "hunter2-secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verbosity: detailed"), "later files override earlier ones:\n{text}");
    assert!(text.contains("endpoint: \"http://127.0.0.1:4318\""), "{text}");
    assert!(text.contains("x-api-key: \"<redacted>\""), "secrets are redacted:\n{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn components_lists_every_type() {
    let out = Command::new(magpie_bin()).arg("components").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "exporter   file",
        "processor  batch",
        "processor  llm_cost",
        "processor  probabilistic_sampler",
        "processor  tail_sampling",
        "connector  forward",
        "exporter   debug",
        "exporter   websocket",
        "connector  span_metrics",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

/// Every listener of the default config, moved to port 0.
const PORTS: &str = "receivers:\n  otlp:\n    protocols:\n      grpc: {endpoint: \"127.0.0.1:0\"}\n      http: {endpoint: \"127.0.0.1:0\"}\nexporters:\n  websocket: {endpoint: \"127.0.0.1:0\"}\nservice:\n  telemetry:\n    metrics: {address: \"127.0.0.1:0\"}\n";

#[tokio::test]
async fn runs_the_default_config_serves_health_and_exits_0_on_sigterm() {
    let mut agent = RunningAgent::start_with(&[repo_file("configs/default.yaml")], PORTS, &[]);
    let addr = agent.telemetry_addr();
    let http = http();
    let health = http.get(format!("http://{addr}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let t0 = Instant::now();
    loop {
        let ready = http.get(format!("http://{addr}/readyz")).send().await.unwrap();
        if ready.status() == 200 {
            let body: serde_json::Value = ready.json().await.unwrap();
            assert_eq!(body["ready"], true);
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "never ready: {}",
            ready.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = http.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    for family in [
        "magpie_exporter_queue_capacity{component=\"debug\"} 1000",
        "magpie_receiver_accepted_items_total{component=\"otlp\"} 0",
        "magpie_process_resident_memory_bytes ",
        "magpie_process_uptime_seconds ",
        "magpie_component_up{component=\"hostmetrics\",kind=\"receiver\"} 1",
    ] {
        assert!(metrics.contains(family), "/metrics lacks {family}:\n{metrics}");
    }
    // The binary as built by default links mimalloc (agent/Cargo.toml).
    let build =
        format!("magpie_build_info{{version=\"{}\",allocator=\"mimalloc\"}} 1\n", env!("CARGO_PKG_VERSION"));
    assert!(metrics.contains(&build), "/metrics lacks {build}:\n{metrics}");
    assert!(agent.stop().success(), "exit 0 after SIGTERM");
    assert!(agent.log().iter().any(|l| l.contains("every pipeline drained")));
}

#[tokio::test]
async fn sighup_with_a_broken_config_keeps_running() {
    let mut agent = RunningAgent::start(
        "receivers: {hostmetrics: {collection_interval: 1h}}\nexporters: {debug: {}}\nservice:\n  telemetry: {metrics: {address: \"127.0.0.1:0\"}}\n  pipelines:\n    metrics: {receivers: [hostmetrics], exporters: [debug]}\n",
    );
    let addr = agent.telemetry_addr();
    std::fs::write(agent.dir.path().join("magpie.yaml"), "exporters: {debug: {verbosity: loud}}\n").unwrap();
    signal(agent.pid(), "HUP");
    let line = agent.wait_for_log("unknown value `loud`", Duration::from_secs(20));
    assert!(line.contains("magpie.yaml:1:32"), "{line}");
    agent.wait_for_log("config reload rejected", Duration::from_secs(20));
    let ready = http().get(format!("http://{addr}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "still serving the old pipelines");
    assert!(agent.stop().success());
}
