//! The `email` exporter end to end through the real binary: OTLP metrics in
//! → the `alerts` connector → an alerts pipeline → `email` → a real SMTP
//! server (Python's aiosmtpd, from `tests/.venv`) on 127.0.0.1. A firing
//! email, then the resolved one, with Alertmanager's subjects, the
//! recipients and both parts; a transient `451` is retried and the same
//! email delivered; the password never reaches the log.

#![allow(clippy::unwrap_used)]

use magpie_tests::RunningAgent;
use magpie_tests::alerting::send_depth;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The aiosmtpd server as a child process; what it received, one JSON object a message.
struct SmtpServer {
    child: Child,
    port: u16,
    received: Arc<Mutex<Vec<Value>>>,
}

impl SmtpServer {
    fn start(refuse_first: bool) -> SmtpServer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let py = dir.join(".venv/bin/python");
        assert!(
            py.exists(),
            "aiosmtpd is not installed: run ./tests/run, or python3 -m venv tests/.venv && tests/.venv/bin/pip install -r tests/clients/python/requirements.txt"
        );
        let mut cmd = Command::new(py);
        cmd.arg(dir.join("clients/python/smtp_server.py"));
        if refuse_first {
            cmd.arg("--refuse-first");
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("the SMTP server printed nothing").unwrap();
        let port = first.strip_prefix("PORT ").unwrap().parse().unwrap();
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let log = received.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                log.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        });
        SmtpServer { child, port, received }
    }

    fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(port: u16) -> String {
    format!(
        r##"receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:0"}}
connectors:
  alerts:
    evaluation_interval: 200ms
    rules:
      - name: DeepQueue
        metric: queue.depth
        matchers: ['service.name = api']
        aggregation: max
        window: 1s
        group_by: [queue]
        condition: gt
        threshold: 10
        severity: critical
        annotations:
          summary: 'queue {{{{ $labels.queue }}}} at {{{{ $value }}}} (over {{{{ $threshold }}}})'
          description: 'jobs <wait> & pile up'
exporters:
  email/ops:
    smarthost: "127.0.0.1:{port}"
    tls: none
    from: "Magpie <magpie@example.com>"
    to: [ops@example.com, oncall@example.com]
    subject_prefix: "[test]"
    hello: magpie.test
    group_wait: 300ms
    group_interval: 500ms
service:
  telemetry: {{metrics: {{address: "127.0.0.1:0"}}}}
  pipelines:
    metrics: {{receivers: [otlp], exporters: [alerts]}}
    alerts: {{receivers: [alerts], exporters: [email/ops]}}
"##
    )
}

fn accepted(m: &Value) -> bool {
    m["reply"].as_str().unwrap().starts_with("250")
}

/// Keeps sending `value` every 100ms until an email with `subject` was accepted.
async fn feed_until(addr: &str, value: f64, smtp: &SmtpServer, subject: &str) {
    let t0 = Instant::now();
    let header = format!("\nSubject: {subject}\r\n");
    let done =
        |got: &[Value]| got.iter().any(|m| accepted(m) && m["data"].as_str().unwrap().contains(&header));
    while !done(&smtp.received()) {
        assert!(t0.elapsed() < Duration::from_secs(20), "no {subject}; received: {:#?}", smtp.received());
        send_depth(addr, value).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_fires_and_resolves_by_email() {
    let smtp = SmtpServer::start(false);
    let mut agent = RunningAgent::start(&config(smtp.port));
    let addr = agent.otlp_http_address();

    feed_until(&addr, 50.0, &smtp, "[test] [FIRING:1] DeepQueue").await;
    let got = smtp.received();
    assert_eq!(got.len(), 1, "one email for one new alert: {got:#?}");
    let m = &got[0];
    assert_eq!(m["mail_from"], "magpie@example.com");
    assert_eq!(m["login"], Value::Null, "no credentials, no AUTH");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["ops@example.com", "oncall@example.com"]));
    let data = m["data"].as_str().unwrap();
    for want in [
        "From: Magpie <magpie@example.com>\r\n",
        "To: ops@example.com, oncall@example.com\r\n",
        "\r\nDate: ",
        "\r\nMessage-ID: <",
        "multipart/alternative",
        "Content-Type: text/plain",
        "Content-Type: text/html",
        "[FIRING] DeepQueue",
        "Severity: critical",
        "Summary: queue jobs at 50 (over 10)",
        "Description: jobs <wait> & pile up",
        "Labels: queue=jobs",
        "Value: 50",
        "StartsAt: ",
        "jobs &lt;wait&gt; &amp; pile up",
    ] {
        assert!(data.contains(want), "{want:?} not in:\n{data}");
    }
    assert!(!data.contains("EndsAt: "), "{data}");

    feed_until(&addr, 1.0, &smtp, "[test] [RESOLVED] DeepQueue").await;
    let got = smtp.received();
    assert_eq!(got.len(), 2, "firing, then resolved: {got:#?}");
    let data = got[1]["data"].as_str().unwrap();
    for want in ["[RESOLVED] DeepQueue", "Value: 1", "EndsAt: "] {
        assert!(data.contains(want), "{want:?} not in:\n{data}");
    }

    // Resolved is sent once.
    for _ in 0..6 {
        send_depth(&addr, 1.0).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(smtp.received().len(), 2, "{:#?}", smtp.received());
    assert!(agent.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_451_is_retried_and_the_same_email_delivered() {
    let smtp = SmtpServer::start(true);
    let yaml = config(smtp.port).replace(
        "    hello: magpie.test\n",
        "    hello: magpie.test\n    username: magpie\n    password: hunter2-secret\n",
    );
    let mut agent = RunningAgent::start(&yaml);
    let addr = agent.otlp_http_address();

    feed_until(&addr, 50.0, &smtp, "[test] [FIRING:1] DeepQueue").await;
    let got = smtp.received();
    let replies: Vec<&str> = got.iter().map(|m| &m["reply"].as_str().unwrap()[..3]).collect();
    assert_eq!(replies, vec!["451", "250"], "{got:#?}");
    assert_eq!(got[1]["login"], "magpie", "the client authenticated: {got:#?}");
    let body = |m: &Value| {
        let d = m["data"].as_str().unwrap();
        // The plain-text part, up to the boundary (random in each email).
        let part = &d[d.find("Content-Type: text/plain").unwrap()..];
        part[..part.find("\r\n--").unwrap()].to_string()
    };
    assert_eq!(body(&got[0]), body(&got[1]), "the refused email is the one delivered");
    agent.wait_for_log("notification failed; will retry", Duration::from_secs(5));
    let log = agent.log().join("\n");
    assert!(log.contains("email/ops") && log.contains("451"), "{log}");
    assert!(!log.contains("hunter2-secret"), "the password is never logged:\n{log}");
    assert!(agent.stop().success());
}
