//! Shared helpers for Magpie's integration tests: parsing configs from text,
//! unique names so tests run in parallel, and locating the built binary.

pub mod scrape;

use magpie::config::{self, AgentConfig, Source};
use magpie_core::config::ConfigError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// Parses one config text named `test.yaml`, with `env` as the environment.
pub fn parse_with_env(yaml: &str, env: &[(&str, &str)]) -> Result<AgentConfig, Vec<ConfigError>> {
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    config::parse(&[Source { name: "test.yaml".into(), text: yaml.into() }], &lookup)
}

/// Parses one config text with an empty environment.
pub fn parse(yaml: &str) -> Result<AgentConfig, Vec<ConfigError>> {
    parse_with_env(yaml, &[])
}

/// A name no other test in this process uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The `magpie` binary built alongside the tests.
pub fn magpie_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target directory");
    let bin = dir.join("magpie");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p magpie` (the test script does)",
        bin.display()
    );
    bin
}

/// An HTTP client for tests (plain HTTP on loopback; the ring provider is
/// installed for the occasional TLS test).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().expect("http client")
}

/// Sends `signal` (e.g. "HUP", "TERM") to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}
