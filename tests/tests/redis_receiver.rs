//! The `redis` receiver against real Redis servers, through the real
//! topology from YAML into a capture sink.
//!
//! `keyspace_hits` and `keyspace_misses` are server-wide, so the exact
//! hit/miss test runs against a throwaway `redis-server` of its own on a
//! free port; its lookups run in one MULTI/EXEC, which no INFO can
//! interleave with, so a scrape sees all of them or none.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie_tests::scrape::{free_port, start, value};
use magpie_tests::unique;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

/// A `redis-server` of this test's own, killed when dropped.
struct Throwaway {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Throwaway {
    fn start() -> Throwaway {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no"])
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
        Throwaway { child, port, _dir: dir }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn hits_misses_and_hit_rate_are_exact_and_a_stopped_server_is_up_0() {
    let mut server = Throwaway::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let prefix = unique("magpie-test");
    const N: usize = 7;
    const M: usize = 4;
    for i in 0..N {
        let _: () =
            redis::cmd("SET").arg(format!("{prefix}:{i}")).arg("v").query_async(&mut con).await.unwrap();
    }

    let mut rig = start(
        &format!("  redis:\n    endpoint: {}\n    collection_interval: 200ms\n", server.url()),
        &["redis"],
    )
    .await;
    let before = rig.wait_for("redis.up 1", WAIT, |b| value(b, "redis.up", &[]) == Some(1.0)).await;
    let hits0 = value(&before, "redis.keyspace.hits", &[]).unwrap();
    let misses0 = value(&before, "redis.keyspace.misses", &[]).unwrap();
    assert_eq!((hits0, misses0), (0.0, 0.0), "a fresh server has had no lookups");

    // N hits and M misses, atomically with respect to any INFO.
    let mut pipe = redis::pipe();
    pipe.atomic();
    for i in 0..N {
        pipe.cmd("GET").arg(format!("{prefix}:{i}"));
    }
    for i in 0..M {
        pipe.cmd("GET").arg(format!("{prefix}:missing:{i}"));
    }
    let got: Vec<Option<String>> = pipe.query_async(&mut con).await.unwrap();
    assert_eq!(got.iter().filter(|v| v.is_some()).count(), N);

    let after = rig
        .wait_for("the lookups", WAIT, |b| value(b, "redis.keyspace.hits", &[]).is_some_and(|h| h > hits0))
        .await;
    assert_eq!(value(&after, "redis.keyspace.hits", &[]).unwrap() - hits0, N as f64);
    assert_eq!(value(&after, "redis.keyspace.misses", &[]).unwrap() - misses0, M as f64);
    assert_eq!(value(&after, "redis.keyspace.hit_rate", &[]), Some(N as f64 / (N + M) as f64));
    assert_eq!(value(&after, "redis.db.keys", &[("db", "0")]), Some(N as f64));
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
