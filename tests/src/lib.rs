//! Shared helpers for Magpie's integration tests: parsing configs from text,
//! unique names so tests run in parallel, and locating the built binary.

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

/// The `magpie` binary built alongside the tests, or the one `MAGPIE_BIN` names.
pub fn magpie_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("MAGPIE_BIN") {
        return PathBuf::from(bin);
    }
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

/// A running `magpie` binary whose stderr is read line by line.
pub struct Agent {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Runs `magpie run` with `configs` (YAML texts, merged in order; a text
    /// naming `DEFAULT` as its only content stands for `configs/default.yaml`)
    /// and the given environment, and waits until it is running.
    pub fn start(configs: &[&str], env: &[(&str, &str)]) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = std::process::Command::new(magpie_bin());
        cmd.arg("run");
        for (i, text) in configs.iter().enumerate() {
            if *text == "DEFAULT" {
                cmd.arg("--config").arg(repo_file("configs/default.yaml"));
                continue;
            }
            let path = dir.path().join(format!("config-{i}.yaml"));
            std::fs::write(&path, text).expect("write config");
            cmd.arg("--config").arg(path);
        }
        cmd.env("MAGPIE_LOG", "info,magpie_exporters=debug")
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("spawn magpie");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("magpie: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut agent = Agent { child, lines, seen: Vec::new(), _dir: dir };
        agent.wait_for_line("magpie is running", std::time::Duration::from_secs(30));
        agent
    }

    /// The first log line (seen so far or arriving within `timeout`) containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: std::time::Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let t0 = std::time::Instant::now();
        while t0.elapsed() < timeout {
            if let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_millis(50)) {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        }
        panic!("no log line containing `{needle}` within {timeout:?}");
    }

    /// The value of `field=` in the first log line containing `needle`.
    pub fn log_field(&mut self, needle: &str, field: &str) -> String {
        let line = self.wait_for_line(needle, std::time::Duration::from_secs(10));
        let key = format!(" {field}=");
        let start =
            line.find(&key).map(|i| i + key.len()).unwrap_or_else(|| panic!("no {field}= in `{line}`"));
        line[start..].split_whitespace().next().unwrap_or_default().to_string()
    }

    /// The websocket feed's address (`127.0.0.1:port`).
    pub fn websocket_address(&mut self) -> String {
        self.log_field("websocket feed listening", "address")
    }

    /// The OTLP/HTTP receiver's address.
    pub fn otlp_http_address(&mut self) -> String {
        self.log_field("otlp receiver listening", "http")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        self.wait_exit()
    }

    /// Waits (up to 20 s) for the process to exit.
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        let t0 = std::time::Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(t0.elapsed() < std::time::Duration::from_secs(20), "magpie did not exit after SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A file of the repository, by its path from the root.
pub fn repo_file(rel: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// Spans for OTLP/JSON requests.
pub mod spans {
    use magpie_core::otlp::{kv_int, kv_str, now_unix_nanos};
    use magpie_core::proto::collector::trace::v1::ExportTraceServiceRequest;
    use magpie_core::proto::common::v1::KeyValue;
    use magpie_core::proto::resource::v1::Resource;
    use magpie_core::proto::trace::v1::{
        ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode,
    };
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A span ending now after `ms` milliseconds.
    pub fn span(name: &str, kind: SpanKind, ms: u64, error: bool, attributes: Vec<KeyValue>) -> Span {
        static N: AtomicU64 = AtomicU64::new(1);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let end = now_unix_nanos();
        Span {
            trace_id: [[0x5a; 8], n.to_be_bytes()].concat(),
            span_id: n.to_be_bytes().to_vec(),
            name: name.to_string(),
            kind: kind as i32,
            start_time_unix_nano: end - ms * 1_000_000,
            end_time_unix_nano: end,
            attributes,
            status: Some(Status {
                code: if error { StatusCode::Error as i32 } else { StatusCode::Unset as i32 },
                message: if error { "boom".into() } else { String::new() },
            }),
            ..Default::default()
        }
    }

    /// An HTTP SERVER span.
    pub fn http(method: &str, route: &str, status: i64, ms: u64) -> Span {
        span(
            &format!("{method} {route}"),
            SpanKind::Server,
            ms,
            status >= 500,
            vec![
                kv_str("http.request.method", method),
                kv_str("http.route", route),
                kv_int("http.response.status_code", status),
            ],
        )
    }

    /// A GenAI CLIENT span.
    pub fn llm(provider: &str, model: &str, ms: u64, input: i64, output: i64) -> Span {
        span(
            &format!("chat {model}"),
            SpanKind::Client,
            ms,
            false,
            vec![
                kv_str("gen_ai.provider.name", provider),
                kv_str("gen_ai.operation.name", "chat"),
                kv_str("gen_ai.request.model", model),
                kv_int("gen_ai.usage.input_tokens", input),
                kv_int("gen_ai.usage.output_tokens", output),
            ],
        )
    }

    /// An OTLP/JSON request body with `spans` from `service`.
    pub fn request(service: &str, spans: Vec<Span>) -> String {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv_str("service.name", service)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                schema_url: String::new(),
            }],
        };
        serde_json::to_string(&req).expect("OTLP/JSON")
    }

    /// Posts `body` to the OTLP/HTTP receiver at `addr`.
    pub async fn post(http: &reqwest::Client, addr: &str, body: String) {
        let r = http
            .post(format!("http://{addr}/v1/traces"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("otlp post");
        assert!(r.status().is_success(), "otlp receiver answered {}", r.status());
    }
}

/// Decodes standard base64 (padding optional); invalid characters are skipped.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in text.bytes().filter_map(value) {
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
