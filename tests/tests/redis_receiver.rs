//! The `redis` receiver against real Redis servers, through the real
//! topology from YAML into a capture sink.
//!
//! `keyspace_hits` and `keyspace_misses` are server-wide, so the exact
//! hit/miss tests run against a throwaway `redis-server` of their own on a
//! free port; its lookups run in one MULTI/EXEC, which no INFO can
//! interleave with, so a scrape sees all of them or none.
//!
//! `rediss://` is tested against throwaway servers that listen on TLS only
//! (`--port 0`), with certificates signed by a CA the test generates: with
//! that CA in `tls.ca_file` the receiver reports exact numbers; with another
//! CA, with the system's roots, or against a certificate for another name it
//! reports `redis.up = 0` and keeps scraping.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie_core::proto::metrics::v1::ResourceMetrics;
use magpie_tests::scrape::{Rig, free_port, start, value};
use magpie_tests::{TestCa, unique};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

/// A `redis-server` of this test's own, killed when dropped.
struct Throwaway {
    child: Child,
    port: u16,
    /// `redis` or, for a TLS-only server, `rediss`.
    scheme: &'static str,
    _dir: tempfile::TempDir,
}

impl Throwaway {
    /// A server on plain TCP.
    fn start() -> Throwaway {
        let port = free_port();
        Throwaway::spawn("redis", tempfile::tempdir().unwrap(), port, &["--port".into(), port.to_string()])
    }

    /// A server that speaks TLS only, with a certificate for `names` signed
    /// by `ca`; clients need no certificate of their own.
    fn start_tls(ca: &TestCa, names: &[&str]) -> Throwaway {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.issue(names);
        let write = |name: &str, pem: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path.to_str().unwrap().to_string()
        };
        let port = free_port();
        let args = [
            "--port".to_string(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            write("server.pem", &cert),
            "--tls-key-file".into(),
            write("server.key", &key),
            "--tls-ca-cert-file".into(),
            write("ca.pem", ca.pem()),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        Throwaway::spawn("rediss", dir, port, &args)
    }

    /// Runs `redis-server` with `listen` (its port settings) and waits until
    /// `port` accepts TCP connections.
    fn spawn(scheme: &'static str, dir: tempfile::TempDir, port: u16, listen: &[String]) -> Throwaway {
        let child = Command::new("redis-server")
            .args(listen)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install it, e.g. `apt-get install -y redis-server`")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on 127.0.0.1:{port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Throwaway { child, port, scheme, _dir: dir }
    }

    fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of the test's own for `url`; for `rediss://`, trusting only
/// `ca` (PEM) when given, else the system's roots.
fn client(url: &str, ca: Option<&str>) -> redis::Client {
    match ca {
        Some(pem) => {
            let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(pem.as_bytes().to_vec()) };
            redis::Client::build_with_tls(url, certs).unwrap()
        }
        None => redis::Client::open(url).unwrap(),
    }
}

/// Sets `n` keys under `prefix`, then makes `n` hits and `m` misses in one
/// MULTI/EXEC.
async fn lookups(con: &mut redis::aio::MultiplexedConnection, prefix: &str, n: usize, m: usize) {
    for i in 0..n {
        let _: () = redis::cmd("SET").arg(format!("{prefix}:{i}")).arg("v").query_async(con).await.unwrap();
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    for i in 0..n {
        pipe.cmd("GET").arg(format!("{prefix}:{i}"));
    }
    for i in 0..m {
        pipe.cmd("GET").arg(format!("{prefix}:missing:{i}"));
    }
    let got: Vec<Option<String>> = pipe.query_async(con).await.unwrap();
    assert_eq!(got.iter().filter(|v| v.is_some()).count(), n);
}

/// Waits for a scrape whose keyspace hits moved past those of `before`,
/// checks it counted exactly the `n` hits and `m` misses of [`lookups`]
/// since, and returns it.
async fn exact_lookups(
    rig: &mut Rig,
    before: &[ResourceMetrics],
    n: usize,
    m: usize,
) -> Vec<ResourceMetrics> {
    let hits0 = value(before, "redis.keyspace.hits", &[]).unwrap();
    let misses0 = value(before, "redis.keyspace.misses", &[]).unwrap();
    let after = rig
        .wait_for("the lookups", WAIT, |b| value(b, "redis.keyspace.hits", &[]).is_some_and(|h| h > hits0))
        .await;
    assert_eq!(value(&after, "redis.keyspace.hits", &[]).unwrap() - hits0, n as f64);
    assert_eq!(value(&after, "redis.keyspace.misses", &[]).unwrap() - misses0, m as f64);
    assert_eq!(value(&after, "redis.keyspace.hit_rate", &[]), Some(n as f64 / (n + m) as f64));
    assert_eq!(value(&after, "redis.db.keys", &[("db", "0")]), Some(n as f64));
    after
}

#[tokio::test]
async fn hits_misses_and_hit_rate_are_exact_and_a_stopped_server_is_up_0() {
    let mut server = Throwaway::start();
    let mut con = client(&server.url(), None).get_multiplexed_async_connection().await.unwrap();
    const N: usize = 7;
    const M: usize = 4;

    let mut rig = start(
        &format!("  redis:\n    endpoint: {}\n    collection_interval: 200ms\n", server.url()),
        &["redis"],
    )
    .await;
    let before = rig.wait_for("redis.up 1", WAIT, |b| value(b, "redis.up", &[]) == Some(1.0)).await;
    let hits0 = value(&before, "redis.keyspace.hits", &[]).unwrap();
    let misses0 = value(&before, "redis.keyspace.misses", &[]).unwrap();
    assert_eq!((hits0, misses0), (0.0, 0.0), "a fresh server has had no lookups");

    lookups(&mut con, &unique("magpie-test"), N, M).await;
    let after = exact_lookups(&mut rig, &before, N, M).await;
    assert!(value(&after, "redis.cmd.calls", &[("cmd", "get")]).is_some_and(|c| c >= (N + M) as f64));
    let resource = &after[0].resource.as_ref().unwrap().attributes;
    assert!(magpie_core::otlp::attr_string(resource, &["redis.version"]).is_some_and(|v| !v.is_empty()));

    // With no lookups since, the next scrape has no hit rate at all (not 0).
    let quiet = rig.next_batch(WAIT).await.unwrap();
    assert_eq!(value(&quiet, "redis.keyspace.hits", &[]), value(&after, "redis.keyspace.hits", &[]));
    assert_eq!(value(&quiet, "redis.keyspace.hit_rate", &[]), None);

    // The server stops answering: up 0, and the receiver keeps running.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let down = rig.wait_for("redis.up 0", WAIT, |b| value(b, "redis.up", &[]) == Some(0.0)).await;
    assert_eq!(value(&down, "redis.keyspace.hits", &[]), None);
    assert!(rig.next_batch(WAIT).await.is_some(), "scrapes go on while the server is down");
    rig.stop().await;
}

/// `rediss://127.0.0.1` with the server's CA in `tls.ca_file`: the receiver
/// verifies the certificate (issued for the IP address) and scrapes over TLS,
/// with exact hits and misses made by the test's own TLS client.
#[tokio::test]
async fn rediss_with_the_servers_ca_in_ca_file_is_up_with_exact_numbers() {
    let ca = TestCa::new();
    let server = Throwaway::start_tls(&ca, &["127.0.0.1", "localhost"]);
    let certs = tempfile::tempdir().unwrap();
    let ca_file = certs.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    // The test's own client speaks TLS too: the server has no plain port.
    let mut con = client(&server.url(), Some(ca.pem())).get_multiplexed_async_connection().await.unwrap();
    const N: usize = 5;
    const M: usize = 3;

    let mut rig = start(&rediss_yaml("redis/tls", &server, Some(&ca_file)), &["redis/tls"]).await;
    let before = rig.wait_for("redis.up 1", WAIT, |b| value(b, "redis.up", &[]) == Some(1.0)).await;
    assert_eq!(value(&before, "redis.keyspace.hits", &[]), Some(0.0), "a fresh server has had no lookups");
    assert_eq!(value(&before, "redis.keyspace.misses", &[]), Some(0.0));
    assert!(value(&before, "redis.uptime", &[]).is_some());
    // The test's connection and the receiver's, both over TLS.
    assert_eq!(value(&before, "redis.clients.connected", &[]), Some(2.0));
    let resource = &before[0].resource.as_ref().unwrap().attributes;
    assert_eq!(magpie_core::otlp::attr_string(resource, &["server.address"]).as_deref(), Some("127.0.0.1"));
    assert_eq!(magpie_core::otlp::attr_i64(resource, &["server.port"]), Some(i64::from(server.port)));

    lookups(&mut con, &unique("magpie-tls"), N, M).await;
    exact_lookups(&mut rig, &before, N, M).await;
    rig.stop().await;
}

/// A healthy TLS server the receiver must not trust: another CA in
/// `ca_file`, the system's roots (no `ca_file`), or a certificate signed by
/// the right CA for another name. Each is refused by the handshake for that
/// reason, and the receiver reports `redis.up = 0` on every scrape.
#[tokio::test]
async fn rediss_fails_verification_with_another_ca_with_system_roots_and_for_another_name() {
    let ca = TestCa::new();
    let server = Throwaway::start_tls(&ca, &["127.0.0.1", "localhost"]);
    let misnamed = Throwaway::start_tls(&ca, &["db.internal"]);
    let other = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    let ca_file = certs.path().join("ca.pem");
    let other_file = certs.path().join("other.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&other_file, other.pem()).unwrap();

    // The server answers a client that trusts its CA, so what fails below
    // is the verification (for `misnamed`, the name only: its issuer is known).
    let mut con = client(&server.url(), Some(ca.pem())).get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
    assert_eq!(pong, "PONG");
    let cases: [(&str, &Throwaway, Option<&Path>, &str); 3] = [
        ("redis/other_ca", &server, Some(&other_file), "UnknownIssuer"),
        ("redis/system_roots", &server, None, "UnknownIssuer"),
        ("redis/misnamed", &misnamed, Some(&ca_file), "not valid for name"),
    ];
    for (id, s, ca_file, reason) in cases {
        // The test's own client, set up as the receiver is, is refused for that reason ...
        let pem = ca_file.map(|f| std::fs::read_to_string(f).unwrap());
        let e = client(&s.url(), pem.as_deref()).get_multiplexed_async_connection().await.err();
        let e = e.unwrap_or_else(|| panic!("{id}: the TLS handshake succeeded")).to_string();
        assert!(e.contains(reason), "{id}: {e}");
        // ... and the receiver reports up 0 on every scrape, and keeps scraping.
        let mut rig = start(&rediss_yaml(id, s, ca_file), &[id]).await;
        for _ in 0..3 {
            let b = rig.next_batch(WAIT).await.unwrap_or_else(|| panic!("{id}: no scrape"));
            assert_eq!(value(&b, "redis.up", &[]), Some(0.0), "{id}: {b:#?}");
            assert_eq!(value(&b, "redis.uptime", &[]), None, "{id}");
            let resource = &b[0].resource.as_ref().unwrap().attributes;
            assert_eq!(magpie_core::otlp::attr_i64(resource, &["server.port"]), Some(i64::from(s.port)));
        }
        rig.stop().await;
    }
}

/// A `redis` receiver entry named `id` scraping `server` over TLS, trusting
/// `ca_file` or, without one, the system's roots.
fn rediss_yaml(id: &str, server: &Throwaway, ca_file: Option<&Path>) -> String {
    let mut yaml = format!("  {id}:\n    endpoint: {}\n    collection_interval: 250ms\n", server.url());
    if let Some(f) = ca_file {
        yaml += &format!("    tls:\n      ca_file: \"{}\"\n", f.display());
    }
    yaml
}

#[tokio::test]
async fn the_agent_starts_against_a_port_nothing_answers_on_and_reports_up_0() {
    let port = free_port();
    let mut rig = start(
        &format!(
            "  redis/nothing:\n    endpoint: redis://127.0.0.1:{port}\n    collection_interval: 100ms\n    timeout: 50ms\n"
        ),
        &["redis/nothing"],
    )
    .await;
    for _ in 0..3 {
        let b = rig.wait_for("redis.up 0", WAIT, |b| value(b, "redis.up", &[]).is_some()).await;
        assert_eq!(value(&b, "redis.up", &[]), Some(0.0));
        let port_attr =
            magpie_core::otlp::attr_i64(&b[0].resource.as_ref().unwrap().attributes, &["server.port"]);
        assert_eq!(port_attr, Some(i64::from(port)));
    }
    rig.stop().await;
}

#[tokio::test]
async fn the_shared_redis_is_scraped() {
    let url = std::env::var("MAGPIE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url.as_str()).unwrap();
    if let Err(e) = client.get_multiplexed_async_connection().await {
        panic!(
            "Redis is not reachable at {url} ({e}). Start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no (or set MAGPIE_TEST_REDIS_URL)"
        );
    }
    let mut rig =
        start(&format!("  redis:\n    endpoint: {url}\n    collection_interval: 200ms\n"), &["redis"]).await;
    let b = rig.wait_for("redis.up 1", WAIT, |b| value(b, "redis.up", &[]) == Some(1.0)).await;
    for name in ["redis.uptime", "redis.memory.used", "redis.clients.connected", "redis.commands.processed"] {
        assert!(value(&b, name, &[]).is_some_and(|v| v > 0.0), "{name} in {b:#?}");
    }
    rig.stop().await;
}
