//! Component tests: the real `hostmetrics` receiver on this machine, sending
//! into a real `Output`, checked for values that are in range and consistent
//! with each other, and for a spawned child process found by name.

use magpie_core::config::Node;
use magpie_core::otlp::now_unix_nanos;
use magpie_core::proto::common::v1::{KeyValue, any_value};
use magpie_core::proto::metrics::v1::{Metric, NumberDataPoint, ResourceMetrics, metric, number_data_point};
use magpie_core::{Batch, ComponentId, ComponentStats, Output, Receiver, ReceiverContext, Signal};
use magpie_receivers::ReceiverConfig;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

struct Running {
    rx: mpsc::Receiver<Batch>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), magpie_core::ComponentError>>,
}

fn receiver(yaml: &str) -> Box<dyn Receiver> {
    let node = Node::parse(yaml, "test.yaml").expect("valid yaml");
    let (config, _) = ReceiverConfig::parse("hostmetrics", &node, "receivers.hostmetrics")
        .expect("valid config")
        .expect("hostmetrics is a known type");
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    config.build(&"hostmetrics".parse().expect("valid id")).expect("builds")
}

async fn start(yaml: &str) -> Running {
    let mut r = receiver(yaml);
    let id: ComponentId = "hostmetrics".parse().expect("valid id");
    r.start(&id).await.expect("starts");
    let stats = Arc::new(ComponentStats::default());
    let (tx, rx) = mpsc::channel(16);
    let mut output = Output::new(stats.clone());
    output.add(Signal::Metrics, tx);
    let shutdown = CancellationToken::new();
    let ctx = ReceiverContext { id, output, shutdown: shutdown.clone(), stats };
    let task = tokio::spawn(r.run(ctx));
    Running { rx, shutdown, task }
}

impl Running {
    async fn next(&mut self) -> Vec<ResourceMetrics> {
        match tokio::time::timeout(WAIT, self.rx.recv()).await {
            Ok(Some(Batch::Metrics(m))) => m,
            other => panic!("expected a metrics batch, got {other:?}"),
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(2), self.task).await;
        assert!(matches!(r, Ok(Ok(Ok(())))), "receiver did not stop cleanly: {r:?}");
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn resource_attrs(r: &ResourceMetrics) -> &[KeyValue] {
    r.resource.as_ref().map_or(&[], |r| &r.attributes)
}

fn metrics(r: &ResourceMetrics) -> impl Iterator<Item = &Metric> {
    r.scope_metrics.iter().flat_map(|s| &s.metrics)
}

fn points(m: &Metric) -> &[NumberDataPoint] {
    match &m.data {
        Some(metric::Data::Gauge(g)) => &g.data_points,
        Some(metric::Data::Sum(s)) => &s.data_points,
        _ => &[],
    }
}

fn value(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        Some(number_data_point::Value::AsDouble(d)) => d,
        None => f64::NAN,
    }
}

/// The host resource (the one with `system.*` metrics).
fn host(batch: &[ResourceMetrics]) -> &ResourceMetrics {
    batch.iter().find(|r| metrics(r).any(|m| m.name.starts_with("system."))).expect("a host resource")
}

fn metric<'a>(r: &'a ResourceMetrics, name: &str) -> &'a Metric {
    metrics(r).find(|m| m.name == name).unwrap_or_else(|| panic!("no {name}"))
}

/// The value of the point of `name` whose attribute `key` is `val`.
fn value_where(r: &ResourceMetrics, name: &str, key: &str, val: &str) -> f64 {
    points(metric(r, name))
        .iter()
        .find(|p| attr_str(&p.attributes, key) == Some(val))
        .map(value)
        .unwrap_or_else(|| panic!("no {name}{{{key}={val}}}"))
}

/// Every point of every monotonic sum, keyed by metric and attributes.
fn counters(r: &ResourceMetrics) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for m in metrics(r) {
        if let Some(metric::Data::Sum(s)) = &m.data
            && s.is_monotonic
        {
            for p in &s.data_points {
                out.insert(format!("{}{:?}", m.name, p.attributes), value(p));
            }
        }
    }
    out
}

#[tokio::test]
async fn host_metrics_are_in_range_and_consistent() {
    let mut run = start("collection_interval: 100ms\n").await;
    let first = run.next().await;
    let h = host(&first);
    assert!(attr_str(resource_attrs(h), "host.name").is_some_and(|n| !n.is_empty()));

    // Every point is finite, timestamped, and sums start before they are read.
    for m in metrics(h) {
        for p in points(m) {
            let v = value(p);
            assert!(v.is_finite() && v >= 0.0, "{} = {v}", m.name);
            assert!(p.time_unix_nano > 0, "{} has no time", m.name);
            if matches!(m.data, Some(metric::Data::Sum(_))) {
                assert!(
                    p.start_time_unix_nano > 0 && p.start_time_unix_nano < p.time_unix_nano,
                    "{} start",
                    m.name
                );
            }
            if m.unit == "1" {
                assert!((0.0..=1.0).contains(&v), "{} = {v} is not a fraction", m.name);
            }
        }
    }

    // CPU: utilisation is there on the first scrape, one figure for the host.
    let util = points(metric(h, "system.cpu.utilization"));
    assert_eq!(util.len(), 1);
    let cpus = value(&points(metric(h, "system.cpu.logical.count"))[0]);
    assert!(cpus >= 1.0);
    assert_eq!(points(metric(h, "system.cpu.time")).len(), 7, "one point per cpu.mode");

    // Memory: used and available fit in the total.
    let total = value(&points(metric(h, "system.memory.limit"))[0]);
    let used = value_where(h, "system.memory.usage", "system.memory.state", "used");
    let free = value_where(h, "system.memory.usage", "system.memory.state", "free");
    let available = value(&points(metric(h, "system.memory.linux.available"))[0]);
    assert!(total > 0.0 && used <= total && free <= total && available <= total);
    let used_fraction = value_where(h, "system.memory.utilization", "system.memory.state", "used");
    assert!((used_fraction - used / total).abs() < 1e-9);

    // Filesystems: at least one, each with used + free + reserved consistent with its utilisation.
    let fs = points(metric(h, "system.filesystem.usage"));
    let mounts: Vec<&str> =
        fs.iter().filter_map(|p| attr_str(&p.attributes, "system.filesystem.mountpoint")).collect();
    assert!(!mounts.is_empty());
    for mp in &mounts {
        let get = |state: &str| {
            fs.iter()
                .find(|p| {
                    attr_str(&p.attributes, "system.filesystem.mountpoint") == Some(mp)
                        && attr_str(&p.attributes, "system.filesystem.state") == Some(state)
                })
                .map(value)
                .unwrap_or_else(|| panic!("{mp} has no {state}"))
        };
        let (u, f) = (get("used"), get("free"));
        let util = points(metric(h, "system.filesystem.utilization"))
            .iter()
            .find(|p| attr_str(&p.attributes, "system.filesystem.mountpoint") == Some(mp))
            .map(value);
        if let Some(util) = util {
            assert!((util - u / (u + f)).abs() < 1e-9, "{mp}");
        }
    }

    // Network: at least one interface, both directions.
    let net = points(metric(h, "system.network.io"));
    assert!(net.iter().any(|p| attr_str(&p.attributes, "network.interface.name").is_some()));
    assert!(net.iter().any(|p| attr_str(&p.attributes, "network.io.direction") == Some("transmit")));

    // Load and processes: this test process is one of them. (Its main
    // thread sleeps while the scrape runs on another, so it need not count
    // as running.)
    assert!(value(&points(metric(h, "system.cpu.load_average.1m"))[0]) >= 0.0);
    let states: Vec<&str> = points(metric(h, "system.process.count"))
        .iter()
        .filter_map(|p| attr_str(&p.attributes, "process.state"))
        .collect();
    assert_eq!(states, ["running", "sleeping", "stopped", "defunct"]);
    let all: f64 = points(metric(h, "system.process.count")).iter().map(value).sum();
    assert!(all >= 1.0);

    // A second scrape: counters only go up, and utilisation is still a fraction.
    let before = counters(h);
    let second = run.next().await;
    let after = counters(host(&second));
    let mut compared = 0;
    for (key, v) in &before {
        if let Some(w) = after.get(key) {
            assert!(w >= v, "{key} went from {v} to {w}");
            compared += 1;
        }
    }
    assert!(compared > 10, "only {compared} counters in both scrapes");
    let u = value(&points(metric(host(&second), "system.cpu.utilization"))[0]);
    assert!((0.0..=1.0).contains(&u));
    run.stop().await;
}

#[tokio::test]
async fn per_cpu_and_mode_split() {
    let mut run = start(
        "collection_interval: 100ms\nscrapers:\n  cpu: { per_cpu: true, utilization_by_mode: true, metrics: { system.cpu.logical.count: { enabled: false } } }\n",
    )
    .await;
    let batch = run.next().await;
    let h = host(&batch);
    assert!(metrics(h).all(|m| m.name != "system.cpu.logical.count"), "disabled metric emitted");
    let util = points(metric(h, "system.cpu.utilization"));
    let mut per_cpu: HashMap<i64, f64> = HashMap::new();
    for p in util {
        let Some(any_value::Value::IntValue(n)) = attr(&p.attributes, "cpu.logical_number") else {
            panic!("no cpu.logical_number")
        };
        *per_cpu.entry(*n).or_default() += value(p);
    }
    assert!(!per_cpu.is_empty());
    for (cpu, sum) in per_cpu {
        // A CPU with no ticks in the interval has no points at all.
        assert!((sum - 1.0).abs() < 1e-9, "modes of cpu {cpu} sum to {sum}");
    }
    run.stop().await;
}

/// Kills and reaps the child even when an assertion fails first.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn process_resource(batch: &[ResourceMetrics], pid: u32) -> Option<&ResourceMetrics> {
    batch.iter().find(|r| {
        matches!(attr(resource_attrs(r), "process.pid"), Some(any_value::Value::IntValue(p)) if *p == i64::from(pid))
    })
}

#[tokio::test]
async fn finds_a_child_process_by_name_and_drops_it_when_it_exits() {
    let name = format!("magpie-child-{}", std::process::id());
    let mut child =
        Child(std::process::Command::new("sleep").arg0(&name).arg("30").spawn().expect("sleep is installed"));
    let pid = child.0.id();
    let mut run = start(&format!(
        "collection_interval: 100ms\nscrapers:\n  load:\n  process:\n    include: {{ names: [{name}] }}\n    exclude: {{ names: [nothing-else] }}\n"
    ))
    .await;

    // The child exec()s right after spawning; allow a scrape or two for it to appear.
    let mut found = None;
    for _ in 0..20 {
        let batch = run.next().await;
        if let Some(r) = process_resource(&batch, pid) {
            found = Some((r.clone(), batch));
            break;
        }
    }
    let (r, batch) = found.expect("the child was never reported");
    // Only the child matched: one process resource beside the host's.
    let processes = batch.iter().filter(|r| attr(resource_attrs(r), "process.pid").is_some()).count();
    assert_eq!(processes, 1);
    let attrs = resource_attrs(&r);
    // The base name of what /proc/<pid>/exe points at: `sleep`, or a
    // multi-call binary on systems where sleep is a link to one.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("own child's exe is readable");
    let exe_name = exe.file_name().map(|n| n.to_string_lossy().into_owned());
    assert_eq!(attr_str(attrs, "process.executable.name"), exe_name.as_deref());
    assert_eq!(attr_str(attrs, "process.executable.path"), exe.to_str());
    assert_eq!(attr_str(attrs, "process.command"), Some(name.as_str()));
    assert_eq!(attr_str(attrs, "process.command_line"), Some(format!("{name} 30").as_str()));
    assert!(attr_str(attrs, "host.name").is_some());
    let rss = value(&points(metric(&r, "process.memory.usage"))[0]);
    assert!(rss > 0.0, "rss {rss}");
    let vsize = value(&points(metric(&r, "process.memory.virtual"))[0]);
    assert!(vsize >= rss);
    assert_eq!(value(&points(metric(&r, "process.thread.count"))[0]), 1.0);
    for p in points(metric(&r, "process.cpu.utilization")) {
        assert!((0.0..=1.0).contains(&value(p)));
    }
    let started = points(metric(&r, "process.cpu.time"))[0].start_time_unix_nano;
    assert!(started > 0 && started <= now_unix_nanos());

    // Kill and reap it: every scrape that starts afterwards leaves it out.
    let _ = child.0.kill();
    let _ = child.0.wait();
    let gone_at = now_unix_nanos();
    let mut checked = 0;
    while checked < 2 {
        let batch = run.next().await;
        let scraped_at = points(metric(host(&batch), "system.cpu.load_average.1m"))[0].time_unix_nano;
        if scraped_at > gone_at {
            assert!(process_resource(&batch, pid).is_none(), "the exited child is still reported");
            checked += 1;
        }
    }
    run.stop().await;
}

#[tokio::test]
async fn an_unreadable_root_fails_start() {
    let node = Node::parse("root_path: /nonexistent-magpie-root\n", "t.yaml").expect("valid yaml");
    let (config, _) = ReceiverConfig::parse("hostmetrics", &node, "receivers.hostmetrics")
        .expect("valid config")
        .expect("known type");
    let mut r = config.build(&"hostmetrics".parse().expect("valid id")).expect("builds");
    let e = r.start(&"hostmetrics".parse().expect("valid id")).await.expect_err("start fails");
    assert!(e.message.contains("reading /nonexistent-magpie-root/proc/stat"), "{e}");
}

#[tokio::test]
async fn stops_promptly_between_scrapes() {
    let run = start("collection_interval: 1h\nscrapers: { load: }\n").await;
    let t = std::time::Instant::now();
    run.stop().await;
    assert!(t.elapsed() < Duration::from_millis(500), "took {:?}", t.elapsed());
}

#[test]
fn config_problems_reach_the_closed_list() {
    let node = Node::parse(
        "scrapers:\n  process:\n    include: { cmdline_regex: ['(uvicorn'] }\n  network: { metrics: { system.network.ioo: { enabled: true } } }\n",
        "t.yaml",
    )
    .expect("valid yaml");
    let (config, _) = ReceiverConfig::parse("hostmetrics", &node, "receivers.hostmetrics")
        .expect("valid config")
        .expect("known type");
    let problems = config.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("scrapers.process.include.cmdline_regex[0]: invalid regex `(uvicorn`")),
        "{problems:?}"
    );
    assert!(problems.iter().any(|p| p.contains("did you mean `system.network.io`?")), "{problems:?}");
}
