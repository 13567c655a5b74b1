//! The `postgresql` receiver against the real PostgreSQL, through the real
//! topology from YAML into a capture sink. Each test names its connections
//! with its own `application_name`, so tests run in parallel with anything
//! else on the server.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie_tests::scrape::{Rig, free_port, start, value};
use magpie_tests::{TempPostgres, TlsPostgres, unique};
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

const WAIT: Duration = Duration::from_secs(15);

fn url() -> String {
    std::env::var("MAGPIE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into())
}

/// A connection with `application_name` set, its driver spawned.
/// The database named in the shared server's URL.
fn test_db() -> String {
    url().parse::<tokio_postgres::Config>().unwrap().get_dbname().unwrap_or("postgres").to_string()
}

/// A `postgresql` receiver scraping the shared server and [`test_db`] every
/// 200 ms.
async fn start_on_shared_server() -> Rig {
    let yaml = format!(
        "  postgresql:\n    endpoint: {}\n    databases: [{}]\n    collection_interval: 200ms\n",
        url(),
        test_db()
    );
    start(&yaml, &["postgresql"]).await
}

async fn connect(app: &str) -> Client {
    let mut config: tokio_postgres::Config = url().parse().unwrap();
    config.application_name(app);
    let (client, connection) = config.connect(NoTls).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {} ({e}). Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start (or set MAGPIE_TEST_POSTGRES_URL)",
            url()
        )
    });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

#[tokio::test]
async fn connection_states_per_application_and_a_lock_wait_are_seen() {
    const K: usize = 5;
    const J: usize = 2;
    let app = unique("magpie-pool");
    let mut pool = Vec::new();
    for _ in 0..K {
        pool.push(connect(&app).await);
    }
    // J of them sit inside an open transaction.
    for c in pool.iter().take(J) {
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
    }
    // One session holds an advisory lock; another waits for it.
    let locker = unique("magpie-lock");
    let key: i64 = i64::from(std::process::id()) << 20 | 0x5eed;
    let holder = connect(&locker).await;
    holder.execute("SELECT pg_advisory_lock($1)", &[&key]).await.unwrap();
    let waiter = connect(&locker).await;
    let waiting = tokio::spawn(async move {
        waiter.execute("SELECT pg_advisory_lock($1)", &[&key]).await.unwrap();
        waiter
    });

    let db = test_db();
    let mut rig = start_on_shared_server().await;
    let count = |b: &[_], app: &str, state: &str| {
        value(
            b,
            "postgresql.connection.count",
            &[("application_name", app), ("state", state), ("database", &db)],
        )
    };
    let b = rig
        .wait_for("the pool's connections and the lock wait", WAIT, |b| {
            count(b, &app, "idle") == Some((K - J) as f64)
                && count(b, &app, "idle in transaction") == Some(J as f64)
                && value(b, "postgresql.connection.waiting", &[("application_name", &locker)]) == Some(1.0)
        })
        .await;
    assert_eq!(count(&b, &app, "active"), None, "no connection of the pool runs a query");
    assert_eq!(value(&b, "postgresql.connection.waiting", &[("application_name", &app)]), Some(0.0));
    assert_eq!(count(&b, &locker, "active"), Some(1.0), "the waiter is active");
    assert_eq!(count(&b, &locker, "idle"), Some(1.0), "the holder is idle, holding the lock");
    assert_eq!(value(&b, "postgresql.up", &[]), Some(1.0));
    let max = value(&b, "postgresql.connection.max", &[]).unwrap();
    let utilization = value(&b, "postgresql.connection.utilization", &[]).unwrap();
    assert!(max >= 1.0 && utilization > 0.0 && utilization <= 1.0, "{max} {utilization}");
    assert!(
        (utilization * max).round() >= (K + 2) as f64,
        "every connection of this test counts against max_connections"
    );
    assert!(value(&b, "postgresql.query.max_duration", &[("database", &db)]).is_some_and(|s| s > 0.0));
    assert!(value(&b, "postgresql.transaction.max_duration", &[("database", &db)]).is_some_and(|s| s > 0.0));
    assert!(value(&b, "postgresql.db_size", &[("database", &db)]).is_some_and(|s| s > 0.0));
    assert!(value(&b, "postgresql.commits", &[("database", &db)]).is_some_and(|s| s > 0.0));
    // `databases` limits the per-database figures.
    assert_eq!(value(&b, "postgresql.db_size", &[("database", "template1")]), None);

    // The lock is released: the waiter gets it and nobody waits any more.
    holder.execute("SELECT pg_advisory_unlock($1)", &[&key]).await.unwrap();
    let waiter = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    waiter.execute("SELECT pg_advisory_unlock($1)", &[&key]).await.unwrap();
    rig.wait_for("no lock wait", WAIT, |b| {
        value(b, "postgresql.connection.waiting", &[("application_name", &locker)]) == Some(0.0)
    })
    .await;
    rig.stop().await;
}

#[tokio::test]
async fn cache_hit_ratio_follows_the_interval_and_statements_are_skipped_without_the_extension() {
    let client = connect(&unique("magpie-cache")).await;
    let has_statements: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')", &[])
        .await
        .unwrap()
        .get(0);
    let db = test_db();
    let mut rig = start_on_shared_server().await;
    // Reading a catalog table over and over touches shared buffers.
    for _ in 0..50 {
        client.query("SELECT count(*) FROM pg_class", &[]).await.unwrap();
    }
    let b = rig
        .wait_for("a cache hit ratio", WAIT, |b| {
            value(b, "postgresql.database.cache_hit_ratio", &[("database", &db)]).is_some()
        })
        .await;
    let ratio = value(&b, "postgresql.database.cache_hit_ratio", &[("database", &db)]).unwrap();
    assert!((0.0..=1.0).contains(&ratio), "{ratio}");
    let any_statement = b
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .any(|m| m.name.starts_with("postgresql.statement"));
    assert_eq!(any_statement, has_statements, "statement metrics iff pg_stat_statements is installed");
    rig.stop().await;
}

#[tokio::test]
async fn the_agent_starts_against_a_port_nothing_answers_on_and_reports_up_0() {
    let port = free_port();
    let mut rig = start(
        &format!(
            "  postgresql/nothing:\n    endpoint: postgresql://postgres@127.0.0.1:{port}/postgres\n    collection_interval: 100ms\n    timeout: 50ms\n"
        ),
        &["postgresql/nothing"],
    )
    .await;
    for _ in 0..3 {
        let b = rig.wait_for("postgresql.up", WAIT, |b| value(b, "postgresql.up", &[]).is_some()).await;
        assert_eq!(value(&b, "postgresql.up", &[]), Some(0.0));
    }
    rig.stop().await;
}

#[tokio::test]
async fn top_statements_come_from_pg_stat_statements_normalised_and_truncated() {
    let cluster = TempPostgres::init("shared_preload_libraries = 'pg_stat_statements'");
    cluster.start();
    let (client, connection) = tokio_postgres::connect(&cluster.url(), NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client.batch_execute("CREATE EXTENSION pg_stat_statements").await.unwrap();
    for i in 0..5 {
        let sql = format!("SELECT   count(*)\n   FROM pg_class\n  WHERE relname = 'magpie_probe_{i}'");
        client.query(&sql, &[]).await.unwrap();
    }
    let mut rig = start(
        &format!(
            "  postgresql:\n    endpoint: {}\n    collection_interval: 200ms\n    statements: {{top: 50, max_query_length: 40}}\n",
            cluster.url()
        ),
        &["postgresql"],
    )
    .await;
    let text = "SELECT count(*) FROM pg_class WHERE reln...";
    let b = rig
        .wait_for("the probe statement", WAIT, |b| {
            value(b, "postgresql.statement.calls", &[("db.query.text", text)]).is_some()
        })
        .await;
    let at = [("db.query.text", text), ("database", "postgres")];
    assert_eq!(
        value(&b, "postgresql.statement.calls", &at),
        Some(5.0),
        "constants are normalised into one statement"
    );
    assert_eq!(value(&b, "postgresql.statement.rows", &at), Some(5.0));
    let total = value(&b, "postgresql.statement.time", &at).unwrap();
    let mean = value(&b, "postgresql.statement.mean_time", &at).unwrap();
    assert!(total > 0.0 && (mean * 5.0 - total).abs() < 1e-9 + total * 1e-6, "total {total}, mean {mean}");
    rig.stop().await;
}

/// The receiver reads `sslmode` as libpq does, against a server with a
/// certificate from a CA of the test's own: `prefer` (the default) encrypts,
/// a named CA file means `verify-full`, a certificate from another CA is
/// refused (and reported as `postgresql.up` 0), `disable` stays plain.
#[tokio::test]
async fn tls_follows_libpq_sslmode_against_a_server_with_its_own_ca() {
    let TlsPostgres { pg, ca_file, other_ca_file: other_file, .. } = &TlsPostgres::start(&["db.internal"]);
    let admin = {
        let (client, connection) =
            tokio_postgres::connect(&format!("{}?sslmode=disable", pg.url()), NoTls).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    };

    let port = pg.port;
    let by_name = |extra: &str| {
        format!("host=db.internal hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres {extra}")
    };
    let by_ip = |extra: &str| format!("host=127.0.0.1 port={port} user=postgres dbname=postgres {extra}");
    let cases: Vec<(&str, String, String, Option<bool>)> = vec![
        ("no sslmode: prefer, encrypted", by_ip(""), String::new(), Some(true)),
        ("sslmode=disable: plain", by_ip("sslmode=disable"), String::new(), Some(false)),
        ("sslmode=require: encrypted, not verified", by_ip("sslmode=require"), String::new(), Some(true)),
        (
            "a CA file alone: verify-full, and the certificate names db.internal",
            by_name(""),
            format!("    tls: {{ca_file: {}}}\n", ca_file.display()),
            Some(true),
        ),
        (
            "sslrootcert and verify-full in the endpoint",
            by_name(&format!("sslmode=verify-full sslrootcert={}", ca_file.display())),
            String::new(),
            Some(true),
        ),
        (
            "verify-full with another CA: refused",
            by_name(""),
            format!("    tls: {{mode: verify-full, ca_file: {}}}\n", other_file.display()),
            None,
        ),
        (
            "verify-full against an address the certificate does not name: refused",
            by_ip(""),
            format!("    tls: {{mode: verify-full, ca_file: {}}}\n", ca_file.display()),
            None,
        ),
    ];
    for (what, endpoint, tls, encrypted) in cases {
        let app = unique("magpie-tls");
        let yaml = format!(
            "  postgresql:\n    endpoint: \"{endpoint} application_name={app}\"\n    collection_interval: 100ms\n    timeout: 2s\n{tls}"
        );
        let mut rig = start(&yaml, &["postgresql"]).await;
        let b = rig.wait_for("postgresql.up", WAIT, |b| value(b, "postgresql.up", &[]).is_some()).await;
        match encrypted {
            Some(want) => {
                assert_eq!(value(&b, "postgresql.up", &[]), Some(1.0), "{what}");
                let ssl: bool = admin
                    .query_one(
                        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
                        &[&app],
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{what}: the receiver's session: {e}"))
                    .get(0);
                assert_eq!(ssl, want, "{what}");
            }
            None => {
                for _ in 0..3 {
                    let b = rig
                        .wait_for("postgresql.up", WAIT, |b| value(b, "postgresql.up", &[]).is_some())
                        .await;
                    assert_eq!(value(&b, "postgresql.up", &[]), Some(0.0), "{what}");
                }
                let sessions: i64 = admin
                    .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&app])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(sessions, 0, "{what}");
            }
        }
        rig.stop().await;
    }
}
