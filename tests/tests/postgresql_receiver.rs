//! The `postgresql` receiver against the real PostgreSQL, through the real
//! topology from YAML into a capture sink. Each test names its connections
//! with its own `application_name`, so tests run in parallel with anything
//! else on the server.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie_tests::scrape::{Rig, free_port, start, value};
use magpie_tests::unique;
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

/// A PostgreSQL cluster of this test's own, with `pg_stat_statements`
/// preloaded, on a free port; stopped when dropped. As root, the server
/// runs as the `postgres` user (initdb refuses root).
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

/// A PostgreSQL server program: on PATH, else the newest under /usr/lib/postgresql.
fn pg_bin(name: &str) -> std::path::PathBuf {
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

impl Cluster {
    fn run(&self, program: &str, args: &[&str]) {
        let bin = pg_bin(program);
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&bin);
            c
        } else {
            std::process::Command::new(&bin)
        };
        let out = cmd.args(args).output().unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
        assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = running_as_root();
        if as_postgres {
            let status =
                std::process::Command::new("chown").arg("postgres").arg(dir.path()).status().unwrap();
            assert!(status.success(), "chown postgres {}", dir.path().display());
        }
        let cluster = Cluster { port: free_port(), dir, as_postgres };
        let data = cluster.dir.path().join("data");
        let data = data.to_str().unwrap();
        cluster.run("initdb", &["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
        let log = cluster.dir.path().join("pg.log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_preload_libraries=pg_stat_statements",
            cluster.port,
            cluster.dir.path().display()
        );
        cluster.run("pg_ctl", &["-D", data, "-l", log.to_str().unwrap(), "-o", &opts, "-w", "start"]);
        cluster
    }

    fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        if let Some(d) = data.to_str() {
            let bin = pg_bin("pg_ctl");
            let mut cmd = if self.as_postgres {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin);
                c
            } else {
                std::process::Command::new(bin)
            };
            let _ = cmd.args(["-D", d, "-m", "immediate", "stop"]).output();
        }
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[tokio::test]
async fn top_statements_come_from_pg_stat_statements_normalised_and_truncated() {
    let cluster = Cluster::start();
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
