//! The OpenTelemetry SDKs for Python (OTLP/gRPC and OTLP/HTTP protobuf) and
//! JavaScript (OTLP/HTTP JSON, which sends 64-bit integers as JSON numbers),
//! installed from their registries by `tests/run`, as clients of the real
//! `magpie` binary: every span, metric and log record they send arrives,
//! exactly, at a `file` exporter.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie_tests::{RunningAgent, interop::check_interop_set, read_otlp_lines};
use std::path::{Path, PathBuf};
use std::process::Command;

const CONFIG: &str = "receivers:\n  otlp:\n    protocols:\n      grpc: {endpoint: \"127.0.0.1:0\"}\n      http: {endpoint: \"127.0.0.1:0\"}\nexporters:\n  file: {path: \"{dir}/out.jsonl\"}\nservice:\n  telemetry: {metrics: {address: \"127.0.0.1:0\"}}\n  pipelines:\n    traces: {receivers: [otlp], exporters: [file]}\n    metrics: {receivers: [otlp], exporters: [file]}\n    logs: {receivers: [otlp], exporters: [file]}\n";

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn python() -> PathBuf {
    let py = tests_dir().join(".venv/bin/python");
    assert!(
        py.exists(),
        "the Python SDK is not installed: run ./tests/run, or python3 -m venv tests/.venv && tests/.venv/bin/pip install -r tests/clients/python/requirements.txt"
    );
    py
}

fn node_client() -> PathBuf {
    let dir = tests_dir().join("clients/js");
    assert!(
        dir.join("node_modules/@opentelemetry/exporter-trace-otlp-http").exists(),
        "the JavaScript SDK is not installed: run ./tests/run, or (cd tests/clients/js && npm install)"
    );
    dir.join("client.mjs")
}

/// Runs `cmd` against a fresh agent and checks what arrived.
fn check(service: &str, exact_big_int: bool, cmd: impl FnOnce(&str, &str) -> Command) {
    let mut agent = RunningAgent::start(CONFIG);
    let (grpc, http) = agent.otlp_addrs("otlp");
    let out = cmd(&grpc, &format!("http://{http}")).output().expect("running the SDK client");
    assert!(
        out.status.success(),
        "client failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(agent.stop().success());
    check_interop_set(&read_otlp_lines(&agent.dir.path().join("out.jsonl")), service, exact_big_int);
}

#[test]
fn python_sdk_over_grpc() {
    check("interop-python-grpc", true, |grpc, _| {
        let mut c = Command::new(python());
        c.arg(tests_dir().join("clients/python/client.py")).args(["grpc", grpc, "interop-python-grpc"]);
        c
    });
}

#[test]
fn python_sdk_over_http_protobuf() {
    check("interop-python-http", true, |_, http| {
        let mut c = Command::new(python());
        c.arg(tests_dir().join("clients/python/client.py")).args(["http", http, "interop-python-http"]);
        c
    });
}

#[test]
fn javascript_sdk_over_http_json() {
    check("interop-js-http-json", false, |_, http| {
        let mut c = Command::new("node");
        c.arg(node_client()).args([http, "interop-js-http-json"]);
        c
    });
}
