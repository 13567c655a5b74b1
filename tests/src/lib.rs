//! Shared helpers for Magpie's integration tests: parsing configs from text,
//! unique names so tests run in parallel, locating the built binary,
//! throwaway PostgreSQL clusters a test may stop and start, and throwaway
//! certificate authorities for TLS tests.

pub mod interop;
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

/// A certificate authority of one test's own, for servers whose certificate
/// only that test trusts.
pub struct TestCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A new CA with a fresh key and a name of its own, so another CA is an
    /// unknown issuer to a client that trusts this one (not the same issuer
    /// with a bad signature).
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, unique("magpie test CA"));
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa { pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// The CA's certificate, as PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (host names or IP addresses) signed
    /// by this CA, as PEM: (certificate, private key).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .expect("server certificate parameters")
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        (cert.pem(), key.serialize_pem())
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
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

/// The marker the log reader appends when the process closes stderr.
const EXITED: &str = "<magpie exited>";

/// The real `magpie` binary running a config written to a temp directory,
/// with its log lines collected.
pub struct RunningAgent {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The temp directory holding the config (and anything the test puts there).
    pub dir: tempfile::TempDir,
}

impl RunningAgent {
    /// Starts the binary on `yaml`, in which `{dir}` is replaced by the
    /// agent's temp directory, and waits until it reports it is running.
    pub fn start(yaml: &str) -> RunningAgent {
        Self::start_with(&[], yaml, &[])
    }

    /// Starts the binary on the config `files` followed by `yaml` (merged in
    /// that order), with extra environment variables.
    pub fn start_with(files: &[std::path::PathBuf], yaml: &str, env: &[(&str, &str)]) -> RunningAgent {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("magpie.yaml");
        std::fs::write(&path, yaml.replace("{dir}", &dir.path().display().to_string()))
            .expect("writing config");
        let mut cmd = std::process::Command::new(magpie_bin());
        cmd.arg("run");
        for f in files.iter().chain(std::iter::once(&path)) {
            cmd.arg("--config").arg(f);
        }
        let mut child = cmd
            .envs(env.iter().copied())
            .env("MAGPIE_LOG", "info,magpie_exporters=debug")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawning magpie");
        let stderr = child.stderr.take().expect("stderr");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("magpie[{}]: {line}", std::process::id());
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(EXITED.to_string());
        });
        let agent = RunningAgent { child, lines, dir };
        agent.wait_for_log("magpie is running", std::time::Duration::from_secs(30));
        agent
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_for_log(&self, needle: &str, timeout: std::time::Duration) -> String {
        let t0 = std::time::Instant::now();
        loop {
            let log = self.log();
            if let Some(l) = log.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(
                !log.iter().any(|l| l == EXITED),
                "magpie exited before logging `{needle}`; log:\n{}",
                log.join("\n")
            );
            assert!(
                t0.elapsed() < timeout,
                "no log line containing `{needle}`; log:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The value of field `key` on the first log line containing `message`
    /// (text `key=value` or JSON log lines).
    pub fn log_value(&self, message: &str, key: &str) -> Option<String> {
        self.log().into_iter().filter(|l| l.contains(message)).find_map(|l| log_field(&l, key))
    }

    /// The bound (grpc, http) addresses of the otlp receiver `id`.
    pub fn otlp_addrs(&self, id: &str) -> (String, String) {
        self.wait_for_log("otlp receiver listening", std::time::Duration::from_secs(10));
        let line = self
            .log()
            .into_iter()
            .find(|l| {
                l.contains("otlp receiver listening") && log_field(l, "component").as_deref() == Some(id)
            })
            .unwrap_or_else(|| panic!("no listening line for {id}"));
        let value = |key: &str| log_field(&line, key).unwrap_or_else(|| panic!("no {key} in {line}"));
        (value("grpc"), value("http"))
    }

    /// The OTLP/HTTP address of the receiver named `otlp`.
    pub fn otlp_http_address(&self) -> String {
        self.otlp_addrs("otlp").1
    }

    /// The websocket feed's address (`127.0.0.1:port`).
    pub fn websocket_address(&self) -> String {
        self.wait_for_log("websocket feed listening", std::time::Duration::from_secs(10));
        self.log_value("websocket feed listening", "address").expect("address on the listening line")
    }

    /// The self-telemetry address.
    pub fn telemetry_addr(&self) -> String {
        self.log_value("magpie is running", "telemetry").expect("telemetry address in the running line")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits (up to 20 s) for a clean exit. The temp directory
    /// stays until the agent is dropped.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        self.wait_exit()
    }

    /// Waits (up to 20 s) for the process to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let t0 = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for magpie") {
                return status;
            }
            assert!(t0.elapsed() < std::time::Duration::from_secs(20), "magpie did not exit after SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for RunningAgent {
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

/// A field of a log line, in either log format (`key=value` text or JSON).
pub fn log_field(line: &str, key: &str) -> Option<String> {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        return v.get(key).map(|f| f.as_str().map_or_else(|| f.to_string(), str::to_string));
    }
    let pat = format!(" {key}=");
    let start = line.find(&pat)? + pat.len();
    Some(line[start..].split_whitespace().next()?.trim_matches('"').to_string())
}

/// Reads an OTLP/JSON lines file written by the `file` exporter.
pub fn read_otlp_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}"))).collect()
}

/// Metrics for the alert rules' end-to-end tests.
pub mod alerting {
    use magpie_core::otlp::{double_point, gauge, kv_str, now_unix_nanos};
    use magpie_core::proto::collector::metrics::v1::ExportMetricsServiceRequest;
    use magpie_core::proto::metrics::v1::{ResourceMetrics, ScopeMetrics};
    use magpie_core::proto::resource::v1::Resource;

    /// Posts one `queue.depth` gauge point of service `api`, queue `jobs`,
    /// stamped now, over OTLP/HTTP JSON to the receiver at `addr`.
    pub async fn send_depth(addr: &str, value: f64) {
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv_str("service.name", "api")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![gauge(
                        "queue.depth",
                        "1",
                        vec![double_point(value, 0, now_unix_nanos(), vec![kv_str("queue", "jobs")])],
                    )],
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
        };
        let body = serde_json::to_string(&req).unwrap_or_else(|e| panic!("encoding the request: {e}"));
        let r = super::http()
            .post(format!("http://{addr}/v1/metrics"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("posting to the otlp receiver: {e}"));
        assert!(r.status().is_success(), "otlp receiver answered {}", r.status());
    }
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

/// The PostgreSQL the tests use: `MAGPIE_TEST_POSTGRES_URL`, by default the
/// machine's own on 127.0.0.1:5432 (trust auth, database `test`).
pub fn postgres_url() -> String {
    std::env::var("MAGPIE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A plain client for a test's own queries; fails with directions when
/// PostgreSQL does not answer.
pub async fn postgres_client(url: &str) -> tokio_postgres::Client {
    let mut cfg: tokio_postgres::Config = url.parse().expect("the PostgreSQL URL parses");
    cfg.ssl_mode(tokio_postgres::config::SslMode::Disable).application_name("magpie-tests");
    match cfg.connect(tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => panic!(
            "PostgreSQL is not reachable at {url} ({e}: {:?}). Start it (as root: pg_ctlcluster --skip-systemctl-redirect \
             $(ls /etc/postgresql) main start), run tests/run which starts it, or set MAGPIE_TEST_POSTGRES_URL",
            std::error::Error::source(&e)
        ),
    }
}

/// A PostgreSQL server program: on PATH, else the newest under /usr/lib/postgresql
/// (where Debian puts `initdb` and `pg_ctl`).
pub fn pg_bin(name: &str) -> std::path::PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.exists()))
        .unwrap_or_default();
    if let Some(p) = on_path {
        return p;
    }
    let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin").join(name)).filter(|p| p.exists()).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("{name} not found: install the PostgreSQL server, e.g. `apt-get install -y postgresql postgresql-contrib`")
    })
}

/// A started [`TempPostgres`] that serves TLS with a certificate for
/// `names` from a CA of its own, with that CA and an unrelated one as PEM
/// files, for tests of the client side's TLS modes.
pub struct TlsPostgres {
    pub pg: TempPostgres,
    /// The CA that signed the server's certificate.
    pub ca_file: PathBuf,
    /// A CA that signed nothing the server has.
    pub other_ca_file: PathBuf,
    _certs: tempfile::TempDir,
}

impl TlsPostgres {
    pub fn start(names: &[&str]) -> TlsPostgres {
        let pg = TempPostgres::init("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        let ca = TestCa::new();
        let (cert, key) = ca.issue(names);
        let data = format!("{}/data", pg.dir());
        for (name, pem) in [("server.crt", &cert), ("server.key", &key)] {
            let path = format!("{data}/{name}");
            std::fs::write(&path, pem).expect("writing the server's certificate");
            pg.own_file(&path);
        }
        let certs = tempfile::tempdir().expect("temp dir");
        let ca_file = certs.path().join("ca.pem");
        let other_ca_file = certs.path().join("other.pem");
        std::fs::write(&ca_file, ca.pem()).expect("writing the CA");
        std::fs::write(&other_ca_file, TestCa::new().pem()).expect("writing the other CA");
        pg.start();
        TlsPostgres { pg, ca_file, other_ca_file, _certs: certs }
    }
}

/// A throwaway PostgreSQL cluster in a temporary directory, on a free
/// loopback port, that a test can stop and start (outages, TLS settings).
/// `initdb` refuses to run as root, so as root the cluster runs as the
/// `postgres` OS user.
pub struct TempPostgres {
    dir: tempfile::TempDir,
    pub port: u16,
    as_root: bool,
}

impl TempPostgres {
    /// Creates the cluster (trust auth, superuser `postgres`), not started;
    /// `conf` is appended to its postgresql.conf.
    pub fn init(conf: &str) -> TempPostgres {
        let as_root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let pg = TempPostgres { dir, port, as_root };
        if as_root {
            pg.run("chown", &["postgres:postgres", &pg.dir()], false);
        }
        pg.run(
            "initdb",
            &["-D", &pg.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            true,
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(format!("{}/postgresql.conf", pg.data()))
            .expect("postgresql.conf");
        std::io::Write::write_all(&mut f, format!("\n{conf}\n").as_bytes()).expect("writing postgresql.conf");
        pg
    }

    /// The cluster's directory (certificates may go here; it is owned by the server's user).
    pub fn dir(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn data(&self) -> String {
        format!("{}/data", self.dir())
    }

    /// Makes `path` readable by the server only (key files).
    pub fn own_file(&self, path: &str) {
        if self.as_root {
            self.run("chown", &["postgres:postgres", path], false);
        }
        self.run("chmod", &["0600", path], false);
    }

    fn run(&self, program: &str, args: &[&str], as_server_user: bool) {
        let bin = if as_server_user { pg_bin(program) } else { program.into() };
        let mut cmd = if as_server_user && self.as_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&bin);
            c
        } else {
            std::process::Command::new(&bin)
        };
        let out = cmd.args(args).output().unwrap_or_else(|e| {
            panic!("running {program}: {e}; install PostgreSQL's server binaries (Debian: apt-get install postgresql)")
        });
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir());
        let log = format!("{}/server.log", self.dir());
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "-t", "30", "start"], true);
    }

    /// Stops the server (fast shutdown: sessions are terminated, transactions rolled back).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "-t", "30", "stop"], true);
    }

    /// The URL of database `postgres` as superuser `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let data = self.data();
        let mut cmd = if self.as_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_bin("pg_ctl"));
            c
        } else {
            std::process::Command::new(pg_bin("pg_ctl"))
        };
        let _ = cmd.args(["-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}
