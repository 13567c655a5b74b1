//! `deploy/fastapi/magpie_pool_metrics.py` with the real OpenTelemetry
//! Python SDK, real psycopg2 and asyncpg pools on the real PostgreSQL, and
//! the real OTLP/HTTP exporter, into Magpie's `otlp` receiver.
//!
//! The Python packages are those of `tests/clients/python/requirements.txt`,
//! which `tests/run` installs into `tests/.venv` (git-ignored).

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie_tests::scrape::{free_port, start, value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// `tests/.venv/bin/python`, as `tests/run` installs it.
fn python() -> PathBuf {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        py.exists(),
        "the Python SDK is not installed: run ./tests/run, or python3 -m venv tests/.venv && tests/.venv/bin/pip install -r tests/clients/python/requirements.txt"
    );
    py
}

const SCRIPT: &str = r#"
import asyncio, sys
sys.path.insert(0, sys.argv[1])
import asyncpg
from psycopg2.pool import ThreadedConnectionPool
from magpie_pool_metrics import PoolMetrics, install_otlp_meter_provider

async def main(endpoint, dsn):
    provider = install_otlp_meter_provider(endpoint, service_name="magpie-pool-test", export_interval_millis=3_600_000)
    threaded = ThreadedConnectionPool(1, 4, dsn=dsn)
    used = threaded.getconn()
    spare = threaded.getconn()
    threaded.putconn(spare)
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=3)
    held = [await pool.acquire() for _ in range(3)]

    async def wait_for_one():
        return await pool.acquire()

    waiter = asyncio.create_task(wait_for_one())
    await asyncio.sleep(0.2)
    metrics = PoolMetrics()
    metrics.add_psycopg2("analytics", threaded)
    metrics.add_asyncpg("rag", pool)
    assert provider.force_flush(10_000), "export failed"
    await pool.release(held[0])
    await pool.release(await waiter)
    for c in held[1:]:
        await pool.release(c)
    await pool.close()
    threaded.putconn(used)
    threaded.closeall()
    provider.shutdown()

asyncio.run(main(sys.argv[2], sys.argv[3]))
"#;

#[tokio::test]
async fn the_snippet_reports_both_pools_over_otlp() {
    let python = python();
    let port = free_port();
    let mut rig = start(
        &format!("  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{port}\n"),
        &["otlp"],
    )
    .await;
    let dsn = std::env::var("MAGPIE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into());
    let snippet_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/fastapi");
    let endpoint = format!("http://127.0.0.1:{port}/v1/metrics");
    let run = {
        let dsn = dsn.clone();
        move || Command::new(&python).args(["-c", SCRIPT]).arg(&snippet_dir).arg(&endpoint).arg(&dsn).output()
    };
    let out = tokio::task::spawn_blocking(run).await.unwrap().unwrap();
    assert!(
        out.status.success(),
        "the snippet failed (is PostgreSQL up at {dsn}?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = rig.wait_for("pool metrics", WAIT, |b| value(b, "db.client.connection.max", &[]).is_some()).await;
    let pool = "db.client.connection.pool.name";
    let state = "db.client.connection.state";
    let count = |p: &str, s: &str| value(&b, "db.client.connection.count", &[(pool, p), (state, s)]);
    assert_eq!((count("analytics", "used"), count("analytics", "idle")), (Some(1.0), Some(1.0)));
    assert_eq!((count("rag", "used"), count("rag", "idle")), (Some(3.0), Some(0.0)));
    assert_eq!(value(&b, "db.client.connection.max", &[(pool, "analytics")]), Some(4.0));
    assert_eq!(value(&b, "db.client.connection.max", &[(pool, "rag")]), Some(3.0));
    assert_eq!(value(&b, "db.client.connection.pending_requests", &[(pool, "rag")]), Some(1.0));
    assert_eq!(value(&b, "db.client.connection.pending_requests", &[(pool, "analytics")]), None);
    let resource = &b[0].resource.as_ref().unwrap().attributes;
    assert_eq!(
        magpie_core::otlp::attr_string(resource, &["service.name"]).as_deref(),
        Some("magpie-pool-test")
    );
    rig.stop().await;
}
