//! The agent's life in process: SIGHUP-style reloads through the service's
//! control channel, with config files on disk.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use magpie::service::{self, Control};
use magpie_core::Batch;
use magpie_core::otlp::testdata;
use magpie_core::testing::{capture, source};
use magpie_tests::unique;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const WAIT: Duration = Duration::from_secs(10);

fn config(src: &str, cap: &str) -> String {
    format!(
        "receivers: {{test_source: {{name: {src}}}}}\nexporters: {{capture: {{name: {cap}}}}}\nservice:\n  telemetry: {{metrics: {{address: \"127.0.0.1:0\"}}}}\n  pipelines:\n    traces: {{receivers: [test_source], exporters: [capture]}}\n"
    )
}

#[tokio::test]
async fn reload_with_a_broken_config_keeps_the_old_pipelines_and_a_good_one_replaces_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("magpie.yaml");
    let (src, cap_old, cap_new) = (unique("src"), unique("old"), unique("new"));
    std::fs::write(&path, config(&src, &cap_old)).unwrap();
    let cfg = magpie::config::load(std::slice::from_ref(&path)).unwrap();
    let (tx, rx) = mpsc::channel(4);
    let (started_tx, started_rx) = oneshot::channel();
    let agent = tokio::spawn(service::run(vec![path.clone()], cfg, rx, move |s| {
        let _ = started_tx.send(s);
    }));
    let started = started_rx.await.expect("agent started");
    let ready_url = format!("http://{}/readyz", started.selfmon_addr.expect("self-telemetry on"));
    let http = magpie_tests::http();
    assert_eq!(http.get(&ready_url).send().await.unwrap().status(), 200);

    let src_handle = source(&src);
    src_handle.send(Batch::Traces(testdata::spans(1, 2)), WAIT).await.unwrap();
    assert!(capture(&cap_old).wait_for_items(2, WAIT).await);

    // A broken config: rejected, the old pipeline keeps running.
    std::fs::write(&path, "receivers: {test_source: {name: x}\nexporters: [").unwrap();
    tx.send(Control::Reload).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    src_handle.send(Batch::Traces(testdata::spans(1, 3)), WAIT).await.expect("old pipeline still accepts");
    assert!(capture(&cap_old).wait_for_items(5, WAIT).await);
    assert_eq!(http.get(&ready_url).send().await.unwrap().status(), 200);

    // A good config: the pipelines are rebuilt around the new exporter.
    std::fs::write(&path, config(&src, &cap_new)).unwrap();
    tx.send(Control::Reload).await.unwrap();
    // Until the switch happens, sends still reach the old pipeline (or fail while
    // neither source runs); every accepted item must land in exactly one exporter.
    let t0 = std::time::Instant::now();
    let mut accepted = 5;
    while capture(&cap_new).items() == 0 {
        if src_handle.send(Batch::Traces(testdata::spans(1, 4)), Duration::from_millis(100)).await.is_ok() {
            accepted += 4;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(t0.elapsed() < WAIT, "new pipeline never received");
    }
    let old_items = capture(&cap_old).items();
    src_handle.send(Batch::Traces(testdata::spans(1, 4)), WAIT).await.unwrap();
    accepted += 4;
    assert!(capture(&cap_new).wait_for_items(accepted - old_items, WAIT).await);
    assert_eq!(capture(&cap_old).items(), old_items, "the old exporter gets nothing after the reload");
    assert_eq!(capture(&cap_old).shutdowns(), 1, "the old exporter was flushed and closed");

    tx.send(Control::Shutdown).await.unwrap();
    let report = agent.await.unwrap().expect("clean run");
    assert_eq!(report.undelivered_items, 0);
}
