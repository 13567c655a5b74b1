//! `hostmetrics`: the host's CPU, memory, disks, filesystems, network, load,
//! paging, process counts, chosen processes and the agent's own cgroup, read
//! straight from `/proc` and `/sys` (under `root_path`) every
//! `collection_interval` and sent as one OTLP metrics batch.
//!
//! Each scraper lives in its own module with its config, its pure parsing
//! functions over the text of the files it reads, and its unit tests over
//! fixture text. This module holds the receiver's config, the table of metric
//! definitions every scraper shares ([`MetricDef`]), the scrape context
//! ([`Cx`]) and the scrape loop. File reads happen only at the edges, into
//! buffers reused between scrapes.
//!
//! Counters are cumulative sums whose start time is the boot time (system
//! counters) or the process start (process counters). Utilisation gauges are
//! computed between two scrapes; a baseline taken in `start()` makes the
//! first scrape's figures correct, and a zero interval yields no point rather
//! than NaN.
//!
//! A scraper that fails (a file unreadable) does not stop the others; its
//! failure is logged once when it starts failing and once when it recovers.

pub mod cgroup;
pub mod cpu;
pub mod disk;
pub mod filesystem;
pub mod load;
pub mod memory;
pub mod network;
pub mod paging;
pub mod process;
pub mod processes;

use magpie_core::config::{did_you_mean, duration};
use magpie_core::otlp::{kv_str, now_unix_nanos};
use magpie_core::proto::common::v1::{InstrumentationScope, KeyValue};
use magpie_core::proto::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use magpie_core::proto::resource::v1::Resource;
use magpie_core::{ComponentError, ComponentId, Receiver, ReceiverContext};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// The scope every hostmetrics metric is emitted under.
pub const SCOPE_NAME: &str = "magpie.hostmetrics";

// ---------------------------------------------------------------------------
// Config.

/// Config of the `hostmetrics` receiver.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostmetricsConfig {
    /// How often to scrape; 10s by default.
    #[serde(default = "default_interval", with = "duration")]
    pub collection_interval: Duration,
    /// Where the host's `/` is mounted (`/hostfs` in a container); `/` by default.
    #[serde(default = "default_root")]
    pub root_path: String,
    /// The scrapers to run, each with its settings. Omitted: cpu, memory,
    /// disk, filesystem, network, load, paging and processes with defaults.
    #[serde(default)]
    pub scrapers: Option<ScrapersConfig>,
}

impl Default for HostmetricsConfig {
    fn default() -> Self {
        HostmetricsConfig {
            collection_interval: default_interval(),
            root_path: default_root(),
            scrapers: None,
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_root() -> String {
    "/".to_string()
}

/// Which scrapers run; a key that is present (even with no value) enables
/// that scraper.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapersConfig {
    #[serde(default, deserialize_with = "present")]
    pub cpu: Option<cpu::CpuConfig>,
    #[serde(default, deserialize_with = "present")]
    pub memory: Option<memory::MemoryConfig>,
    #[serde(default, deserialize_with = "present")]
    pub disk: Option<disk::DiskConfig>,
    #[serde(default, deserialize_with = "present")]
    pub filesystem: Option<filesystem::FilesystemConfig>,
    #[serde(default, deserialize_with = "present")]
    pub network: Option<network::NetworkConfig>,
    #[serde(default, deserialize_with = "present")]
    pub load: Option<load::LoadConfig>,
    #[serde(default, deserialize_with = "present")]
    pub paging: Option<paging::PagingConfig>,
    #[serde(default, deserialize_with = "present")]
    pub processes: Option<processes::ProcessesConfig>,
    #[serde(default, deserialize_with = "present")]
    pub process: Option<process::ProcessConfig>,
    #[serde(default, deserialize_with = "present")]
    pub cgroup: Option<cgroup::CgroupConfig>,
}

impl ScrapersConfig {
    /// The scrapers that run when `scrapers` is omitted.
    pub fn defaults() -> Self {
        ScrapersConfig {
            cpu: Some(Default::default()),
            memory: Some(Default::default()),
            disk: Some(Default::default()),
            filesystem: Some(Default::default()),
            network: Some(Default::default()),
            load: Some(Default::default()),
            paging: Some(Default::default()),
            processes: Some(Default::default()),
            process: None,
            cgroup: None,
        }
    }
}

/// A key that is present enables the scraper, even with no value
/// (`cgroup:`), which the config tree reads as an empty map.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `metrics: { system.cpu.time: { enabled: false } }`.
pub type MetricToggles = BTreeMap<String, MetricToggle>;

/// Turns one metric on or off.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricToggle {
    pub enabled: bool,
}

impl HostmetricsConfig {
    /// The scrapers in effect, with the defaults applied.
    pub fn scrapers(&self) -> ScrapersConfig {
        self.scrapers.clone().unwrap_or_else(ScrapersConfig::defaults)
    }

    /// Problems the types alone cannot catch, as messages naming the setting.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.collection_interval < Duration::from_millis(1) {
            out.push("collection_interval: must be at least 1ms".to_string());
        }
        if !self.root_path.starts_with('/') {
            out.push(format!("root_path: `{}` must be an absolute path", self.root_path));
        }
        let s = self.scrapers();
        let mut any = false;
        macro_rules! check {
            ($($field:ident),*) => {$(
                if let Some(c) = &s.$field {
                    any = true;
                    c.problems(concat!("scrapers.", stringify!($field)), &mut out);
                }
            )*};
        }
        check!(cpu, memory, disk, filesystem, network, load, paging, processes, process, cgroup);
        if !any {
            out.push("scrapers: no scraper is enabled; name at least one, e.g. `cpu: {}`".to_string());
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Metric definitions and per-metric enablement.

/// How a metric is emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    /// A monotonic cumulative sum.
    Counter,
    /// A non-monotonic cumulative sum.
    UpDownCounter,
}

/// One metric a scraper can emit.
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    pub name: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
    pub description: &'static str,
    /// Whether it is emitted when the config does not say.
    pub default_enabled: bool,
}

impl MetricDef {
    /// The metric with `points`.
    pub fn build(&self, points: Vec<NumberDataPoint>) -> Metric {
        let data = match self.kind {
            Kind::Gauge => metric::Data::Gauge(Gauge { data_points: points }),
            Kind::Counter | Kind::UpDownCounter => metric::Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: self.kind == Kind::Counter,
            }),
        };
        Metric {
            name: self.name.to_string(),
            unit: self.unit.to_string(),
            description: self.description.to_string(),
            data: Some(data),
            ..Default::default()
        }
    }
}

/// Which of a scraper's metrics are on, from its defaults and its `metrics` map.
#[derive(Clone, Copy, Debug)]
pub struct Enabled {
    defs: &'static [MetricDef],
    /// Bit `i` is set when `defs[i]` is on.
    on: u64,
}

impl Enabled {
    pub fn new(defs: &'static [MetricDef], toggles: &MetricToggles) -> Self {
        debug_assert!(defs.len() <= 64, "a scraper has at most 64 metrics");
        let on = defs
            .iter()
            .enumerate()
            .filter(|(_, d)| toggles.get(d.name).map_or(d.default_enabled, |t| t.enabled))
            .fold(0u64, |acc, (i, _)| acc | (1 << i));
        Enabled { defs, on }
    }

    /// Whether `def` (one of this scraper's definitions) is on.
    pub fn on(&self, def: &MetricDef) -> bool {
        let i = self.defs.iter().position(|d| d.name == def.name);
        debug_assert!(i.is_some(), "{} is not in this scraper's table", def.name);
        i.is_some_and(|i| self.on & (1 << i) != 0)
    }

    /// Appends `def` with `points` to `out` if it is on and has points.
    pub fn push(&self, out: &mut Vec<Metric>, def: &MetricDef, points: Vec<NumberDataPoint>) {
        if !points.is_empty() && self.on(def) {
            out.push(def.build(points));
        }
    }
}

/// Reports metric names in `toggles` that `defs` lacks, with a did-you-mean.
pub fn metric_problems(defs: &[MetricDef], toggles: &MetricToggles, path: &str, out: &mut Vec<String>) {
    for name in toggles.keys() {
        if defs.iter().any(|d| d.name == name) {
            continue;
        }
        let mut msg = format!("{path}.metrics: unknown metric `{name}`");
        match did_you_mean(name, defs.iter().map(|d| d.name)) {
            Some(s) => msg.push_str(&format!(", did you mean `{s}`?")),
            None => {
                let names: Vec<&str> = defs.iter().map(|d| d.name).collect();
                msg.push_str(&format!(", this scraper emits: {}", names.join(", ")));
            }
        }
        out.push(msg);
    }
}

// ---------------------------------------------------------------------------
// Data points and small parsing helpers shared by the scrapers.

/// An integer data point from an unsigned figure (saturating at `i64::MAX`).
pub fn int_point(value: u64, start: u64, time: u64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsInt(i64::try_from(value).unwrap_or(i64::MAX))),
        ..Default::default()
    }
}

/// A double data point.
pub fn double_point(value: f64, start: u64, time: u64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

/// `part / whole` as a fraction in 0–1, or `None` when `whole` is zero.
pub fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0 && part.is_finite()).then(|| (part / whole).clamp(0.0, 1.0))
}

/// Parses a decimal unsigned number.
pub fn num(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// Matches `text` against a shell-style pattern: `*` any run, `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// An include/exclude pair of glob lists: an empty include list admits
/// everything, and exclude wins over include.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Self {
        Filter { include: include.to_vec(), exclude: exclude.to_vec() }
    }

    pub fn admits(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob(p, name)))
            && !self.exclude.iter().any(|p| glob(p, name))
    }
}

/// Reads a whole file into `buf`, replacing its contents and reusing its
/// allocation. Plain `read` calls until end of file: `read_to_string` would
/// first `statx` the file for a size hint, which `/proc` files do not have,
/// and that extra call per file is a fifth of the cost of reading a
/// process's `stat`. Bytes that are not UTF-8 (a command line can hold
/// any) are replaced rather than failing the read.
pub fn read_into(path: &Path, buf: &mut String) -> io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut bytes = std::mem::take(buf).into_bytes();
    bytes.clear();
    let mut len = 0;
    loop {
        if bytes.len() < len + 4096 {
            bytes.resize(len + 4096, 0);
        }
        match file.read(&mut bytes[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                bytes.clear();
                *buf = String::from_utf8(bytes).unwrap_or_default();
                return Err(e);
            }
        }
    }
    bytes.truncate(len);
    *buf = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    Ok(())
}

/// Why a scraper could not produce its metrics.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path}: {what}")]
    Malformed { path: String, what: &'static str },
}

impl ScrapeError {
    pub fn read(path: &Path, source: io::Error) -> Self {
        ScrapeError::Read { path: path.display().to_string(), source }
    }

    pub fn malformed(path: &Path, what: &'static str) -> Self {
        ScrapeError::Malformed { path: path.display().to_string(), what }
    }
}

/// Reads `path` into the context's buffer, mapping the error.
fn read(path: &Path, buf: &mut String) -> Result<(), ScrapeError> {
    read_into(path, buf).map_err(|e| ScrapeError::read(path, e))
}

// ---------------------------------------------------------------------------
// The scrape context and the scrapers.

/// What every scraper reads from: the host's paths, the clock, and buffers
/// and the process table reused between scrapes.
pub struct Cx {
    /// The host's root (`root_path`).
    pub root: PathBuf,
    /// `<root>/proc`.
    pub proc: PathBuf,
    /// `<root>/sys`.
    pub sys: PathBuf,
    /// This scrape's timestamp, Unix nanoseconds.
    pub now: u64,
    /// When the host booted, Unix nanoseconds: the start of system counters.
    pub boot_time: u64,
    /// `USER_HZ`: the unit of CPU times in `/proc`.
    pub clk_tck: u64,
    pub page_size: u64,
    /// Logical CPUs online, from `/proc/stat`.
    pub ncpu: usize,
    /// A read buffer reused by every scraper.
    pub buf: String,
    /// Every process, read at most once per scrape.
    procs: process::ProcTable,
    procs_at: Option<u64>,
}

impl Cx {
    /// Reads the boot time and CPU count; fails when `/proc` is unreadable.
    pub fn new(root: &str) -> Result<Self, ScrapeError> {
        let root = PathBuf::from(root);
        let proc = root.join("proc");
        let sys = root.join("sys");
        let mut buf = String::with_capacity(16 * 1024);
        let path = proc.join("stat");
        read(&path, &mut buf)?;
        let stat = cpu::parse_stat(&buf);
        let btime = stat.btime.ok_or_else(|| ScrapeError::malformed(&path, "no btime line"))?;
        Ok(Cx {
            root,
            proc,
            sys,
            now: now_unix_nanos(),
            boot_time: btime.saturating_mul(1_000_000_000),
            clk_tck: rustix::param::clock_ticks_per_second().max(1),
            page_size: rustix::param::page_size() as u64,
            ncpu: stat.cpus.len().max(1),
            buf,
            procs: process::ProcTable::default(),
            procs_at: None,
        })
    }

    /// Reads `path` into the shared buffer.
    pub fn read(&mut self, path: &Path) -> Result<(), ScrapeError> {
        read(path, &mut self.buf)
    }

    /// The process table, read once per scrape however many scrapers ask.
    pub fn procs(&mut self) -> Result<&process::ProcTable, ScrapeError> {
        if self.procs_at != Some(self.now) {
            self.procs.refresh(&self.proc, &mut self.buf)?;
            self.procs_at = Some(self.now);
        }
        Ok(&self.procs)
    }

    /// A tick count as seconds.
    pub fn ticks_to_secs(&self, ticks: u64) -> f64 {
        ticks as f64 / self.clk_tck as f64
    }
}

/// What a scrape produces: host-level metrics and whole resources of their
/// own (one per process, one for the cgroup).
#[derive(Default)]
pub struct Out {
    pub host: Vec<Metric>,
    pub resources: Vec<ResourceMetrics>,
}

/// One scraper.
pub trait Scraper: Send {
    fn name(&self) -> &'static str;

    /// Reads what utilisation needs a previous sample of, so the first
    /// scrape is already correct.
    fn baseline(&mut self, _cx: &mut Cx) {}

    fn scrape(&mut self, cx: &mut Cx, out: &mut Out) -> Result<(), ScrapeError>;
}

/// The scope metrics are emitted under.
fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// Wraps metrics into a resource with one scope.
pub fn resource_metrics(attributes: Vec<KeyValue>, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource { attributes, ..Default::default() }),
        scope_metrics: vec![ScopeMetrics { scope: Some(scope()), metrics, schema_url: String::new() }],
        schema_url: String::new(),
    }
}

/// The host's name: `<root>/etc/hostname` when scraping a mounted host,
/// else this machine's node name.
fn host_name(root: &Path) -> String {
    if root != Path::new("/") {
        let mut buf = String::new();
        if read_into(&root.join("etc/hostname"), &mut buf).is_ok() && !buf.trim().is_empty() {
            return buf.trim().to_string();
        }
    }
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// The host scrape engine: every enabled scraper over one context. The
/// receiver drives it on a timer; benches and tests drive it directly.
pub struct HostScraper {
    cx: Cx,
    scrapers: Vec<Box<dyn Scraper>>,
    /// Per scraper, the error it last failed with, so a failure is logged
    /// once when it starts and once when it ends.
    failing: Vec<Option<String>>,
    host_attributes: Vec<KeyValue>,
    component: String,
}

impl HostScraper {
    /// Builds the enabled scrapers; fails when `/proc` under `root_path` is
    /// unreadable or a setting is invalid.
    pub fn new(config: &HostmetricsConfig, component: &str) -> Result<Self, ComponentError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(ComponentError::new(problems.join("; ")));
        }
        let cx = Cx::new(&config.root_path).map_err(|e| ComponentError::new(e.to_string()))?;
        let s = config.scrapers();
        let mut scrapers: Vec<Box<dyn Scraper>> = Vec::new();
        if let Some(c) = &s.cpu {
            scrapers.push(Box::new(cpu::CpuScraper::new(c, &cx)));
        }
        if let Some(c) = &s.memory {
            scrapers.push(Box::new(memory::MemoryScraper::new(c, &cx)));
        }
        if let Some(c) = &s.disk {
            scrapers.push(Box::new(disk::DiskScraper::new(c, &cx)));
        }
        if let Some(c) = &s.filesystem {
            scrapers.push(Box::new(filesystem::FilesystemScraper::new(c, &cx)));
        }
        if let Some(c) = &s.network {
            scrapers.push(Box::new(network::NetworkScraper::new(c, &cx)));
        }
        if let Some(c) = &s.load {
            scrapers.push(Box::new(load::LoadScraper::new(c, &cx)));
        }
        if let Some(c) = &s.paging {
            scrapers.push(Box::new(paging::PagingScraper::new(c, &cx)));
        }
        if let Some(c) = &s.processes {
            scrapers.push(Box::new(processes::ProcessesScraper::new(c, &cx)));
        }
        if let Some(c) = &s.process {
            let p = process::ProcessScraper::new(c, &cx).map_err(|e| ComponentError::new(e.to_string()))?;
            scrapers.push(Box::new(p));
        }
        if let Some(c) = &s.cgroup {
            scrapers.push(Box::new(cgroup::CgroupScraper::new(c, &cx)));
        }
        let host_attributes = vec![kv_str("host.name", host_name(&cx.root)), kv_str("os.type", "linux")];
        let failing = vec![None; scrapers.len()];
        Ok(HostScraper { cx, scrapers, failing, host_attributes, component: component.to_string() })
    }

    /// Takes the samples utilisation is computed against.
    pub fn baseline(&mut self) {
        self.cx.now = now_unix_nanos();
        for s in &mut self.scrapers {
            s.baseline(&mut self.cx);
        }
    }

    /// Runs every scraper once. A scraper that fails is left out of this
    /// scrape; the others still report.
    pub fn scrape(&mut self) -> Vec<ResourceMetrics> {
        self.cx.now = now_unix_nanos();
        let mut out = Out::default();
        for (s, failing) in self.scrapers.iter_mut().zip(&mut self.failing) {
            match s.scrape(&mut self.cx, &mut out) {
                Ok(()) => {
                    if failing.take().is_some() {
                        tracing::info!(component = %self.component, scraper = s.name(), "scraper recovered");
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    if failing.as_deref() != Some(msg.as_str()) {
                        tracing::warn!(component = %self.component, scraper = s.name(), error = %msg, "scraper failed");
                        *failing = Some(msg);
                    }
                }
            }
        }
        let mut batch = Vec::with_capacity(1 + out.resources.len());
        if !out.host.is_empty() {
            batch.push(resource_metrics(self.host_attributes.clone(), out.host));
        }
        for mut r in out.resources {
            if let Some(res) = &mut r.resource {
                res.attributes.extend(self.host_attributes.iter().take(1).cloned());
            }
            batch.push(r);
        }
        batch
    }
}

// ---------------------------------------------------------------------------
// The receiver.

/// Scrapes the host on a timer.
pub struct HostmetricsReceiver {
    config: HostmetricsConfig,
    engine: Option<(HostScraper, Instant)>,
}

impl HostmetricsReceiver {
    pub fn new(config: &HostmetricsConfig) -> Self {
        HostmetricsReceiver { config: config.clone(), engine: None }
    }
}

/// Builds the engine and takes the baseline on a blocking thread: with the
/// `process` scraper that reads every process's command line once.
async fn engine(
    config: HostmetricsConfig,
    id: &ComponentId,
) -> Result<(HostScraper, Instant), ComponentError> {
    let name = id.to_string();
    let engine = tokio::task::spawn_blocking(move || {
        let mut engine = HostScraper::new(&config, &name)?;
        engine.baseline();
        Ok::<_, ComponentError>(engine)
    })
    .await
    .map_err(|e| ComponentError::new(format!("start-up task failed: {e}")))??;
    Ok((engine, Instant::now()))
}

#[async_trait::async_trait]
impl Receiver for HostmetricsReceiver {
    async fn start(&mut self, id: &ComponentId) -> Result<(), ComponentError> {
        self.engine = Some(engine(self.config.clone(), id).await?);
        Ok(())
    }

    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let engine = match self.engine {
            Some((e, _)) => e,
            None => engine(self.config.clone(), &ctx.id).await?.0,
        };
        crate::scrape::run(Blocking(Some(engine)), self.config.collection_interval, ctx).await
    }
}

/// Runs the engine's scrape (small file reads) on a blocking thread.
struct Blocking(Option<HostScraper>);

#[async_trait::async_trait]
impl crate::scrape::Scrape for Blocking {
    async fn scrape(&mut self) -> Result<Vec<ResourceMetrics>, ComponentError> {
        let Some(mut engine) = self.0.take() else {
            return Err(ComponentError::new("host scraper lost after a failed scrape task"));
        };
        let (engine, metrics) = tokio::task::spawn_blocking(move || {
            let metrics = engine.scrape();
            (engine, metrics)
        })
        .await
        .map_err(|e| ComponentError::new(format!("scrape task failed: {e}")))?;
        self.0 = Some(engine);
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::config::{Node, from_node};

    fn parse(yaml: &str) -> Result<HostmetricsConfig, String> {
        let node = Node::parse(yaml, "t.yaml").map_err(|e| e.to_string())?;
        from_node::<HostmetricsConfig>(&node, "receivers.hostmetrics")
            .map(|(c, _)| c)
            .map_err(|e| e.to_string())
    }

    fn problems(yaml: &str) -> Vec<String> {
        parse(yaml).map(|c| c.problems()).unwrap_or_else(|e| vec![e])
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap_or_default();
        assert_eq!(c.collection_interval, Duration::from_secs(10));
        assert_eq!(c.root_path, "/");
        let s = c.scrapers();
        assert!(s.cpu.is_some() && s.memory.is_some() && s.disk.is_some() && s.filesystem.is_some());
        assert!(s.network.is_some() && s.load.is_some() && s.paging.is_some() && s.processes.is_some());
        assert!(s.process.is_none() && s.cgroup.is_none());
        assert!(c.problems().is_empty(), "{:?}", c.problems());
    }

    #[test]
    fn a_present_key_enables_its_scraper() {
        let c = parse("collection_interval: 100ms\nscrapers:\n  cgroup:\n  load: {}\n").unwrap_or_default();
        let s = c.scrapers();
        assert!(s.cgroup.is_some() && s.load.is_some());
        assert!(s.cpu.is_none());
        assert_eq!(c.collection_interval, Duration::from_millis(100));
    }

    #[test]
    fn config_errors() {
        let cases: &[(&str, &str)] = &[
            ("colection_interval: 1s\n", "did you mean `collection_interval`?"),
            ("scrapers: {cpu: {per_cpus: true}}\n", "did you mean `per_cpu`?"),
            ("scrapers: {gpu: {}}\n", "unknown field `gpu`"),
            (
                "scrapers: {cpu: {metrics: {system.cpu.tme: {enabled: true}}}}\n",
                "scrapers.cpu.metrics: unknown metric `system.cpu.tme`, did you mean `system.cpu.time`?",
            ),
            (
                "scrapers: {memory: {metrics: {bogus: {enabled: true}}}}\n",
                "this scraper emits: system.memory.usage",
            ),
            ("scrapers: {cpu: {metrics: {system.cpu.time: {on: true}}}}\n", "unknown field `on`"),
            ("scrapers: {}\n", "no scraper is enabled"),
            ("root_path: hostfs\n", "must be an absolute path"),
            ("collection_interval: 0s\n", "at least 1ms"),
            ("collection_interval: soon\n", "invalid duration `soon`"),
        ];
        for (yaml, want) in cases {
            let got = problems(yaml);
            assert!(got.iter().any(|p| p.contains(want)), "{yaml}: {got:?} lacks `{want}`");
        }
    }

    #[test]
    fn metric_toggles_override_defaults() {
        const DEFS: &[MetricDef] = &[
            MetricDef { name: "a", unit: "1", kind: Kind::Gauge, description: "", default_enabled: true },
            MetricDef { name: "b", unit: "1", kind: Kind::Gauge, description: "", default_enabled: false },
        ];
        let mut t = MetricToggles::new();
        t.insert("a".into(), MetricToggle { enabled: false });
        t.insert("b".into(), MetricToggle { enabled: true });
        let e = Enabled::new(DEFS, &t);
        assert!(!e.on(&DEFS[0]) && e.on(&DEFS[1]));
        let e = Enabled::new(DEFS, &MetricToggles::new());
        assert!(e.on(&DEFS[0]) && !e.on(&DEFS[1]));
    }

    #[test]
    fn globs_and_filters() {
        let cases = [
            ("eth*", "eth0", true),
            ("eth*", "veth0", false),
            ("*eth*", "veth0", true),
            ("lo", "lo", true),
            ("lo", "lo0", false),
            ("v?a", "vda", true),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob(p, t), want, "{p} vs {t}");
        }
        let f = Filter::new(&["eth*".into(), "lo".into()], &["eth1".into()]);
        assert!(f.admits("eth0") && f.admits("lo"));
        assert!(!f.admits("eth1") && !f.admits("docker0"));
        assert!(Filter::default().admits("anything"));
        assert!(!Filter::new(&[], &["veth*".into()]).admits("veth1a"));
    }

    #[test]
    fn reads_whole_files_and_replaces_bad_utf8() {
        let dir = tempfile::tempdir().expect("temp dir");
        let big = dir.path().join("big");
        let text = "x".repeat(10_000) + "end";
        std::fs::write(&big, &text).expect("write");
        let mut buf = String::from("old contents");
        read_into(&big, &mut buf).expect("read");
        assert_eq!(buf, text);
        let odd = dir.path().join("odd");
        std::fs::write(&odd, b"python\0caf\xe9\0").expect("write");
        read_into(&odd, &mut buf).expect("read");
        assert_eq!(buf, "python\0caf\u{fffd}\0");
        assert!(read_into(&dir.path().join("missing"), &mut buf).is_err());
    }

    /// A fake host under `root_path`, built from the fixtures.
    fn fake_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/host");
        let proc = dir.path().join("proc");
        for sub in ["", "1/net"] {
            std::fs::create_dir_all(proc.join(sub)).expect("mkdir");
        }
        let files = [
            ("stat", "stat"),
            ("loadavg", "loadavg"),
            ("diskstats", "diskstats"),
            ("net_dev", "1/net/dev"),
            ("vmstat", "vmstat"),
            ("filesystems", "filesystems"),
            ("pid_stat", "1/stat"),
        ];
        for (from, to) in files {
            std::fs::copy(fixtures.join(from), proc.join(to)).expect("copy fixture");
        }
        // The host's init sees one ext4 root, which is the temp dir itself.
        std::fs::write(proc.join("1/mounts"), "/dev/sda1 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n")
            .expect("write");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(dir.path().join("etc/hostname"), "fakehost\n").expect("write");
        dir
    }

    fn names(batch: &[ResourceMetrics]) -> Vec<String> {
        batch.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics).map(|m| m.name.clone()).collect()
    }

    #[test]
    fn scrapes_everything_under_root_path_and_survives_a_failing_scraper() {
        let root = fake_root();
        let config = HostmetricsConfig { root_path: root.path().display().to_string(), ..Default::default() };
        let mut engine = HostScraper::new(&config, "hostmetrics/test").expect("builds over the fake root");
        engine.baseline();
        let batch = engine.scrape();
        assert_eq!(batch.len(), 1);
        let host = batch[0].resource.as_ref().map(|r| r.attributes.clone()).unwrap_or_default();
        assert_eq!(magpie_core::otlp::attr_string(&host, &["host.name"]).as_deref(), Some("fakehost"));
        let got = names(&batch);
        for want in [
            "system.cpu.time",
            "system.cpu.logical.count",
            "system.disk.io",
            "system.network.io",
            "system.filesystem.usage",
            "system.cpu.load_average.15m",
            "system.paging.operations",
            "system.process.count",
            "system.process.created",
        ] {
            assert!(got.iter().any(|n| n == want), "{want} missing from {got:?}");
        }
        // No meminfo under this root: memory fails and is marked failing
        // (logged once); the others still report. No swaps file is no swap.
        assert!(!got.iter().any(|n| n.starts_with("system.memory")));
        assert!(!got.iter().any(|n| n == "system.paging.usage"));
        let failing = |e: &HostScraper| -> Vec<&'static str> {
            e.scrapers.iter().zip(&e.failing).filter(|(_, f)| f.is_some()).map(|(s, _)| s.name()).collect()
        };
        assert_eq!(failing(&engine), ["memory"]);
        engine.scrape();
        assert_eq!(failing(&engine), ["memory"]);

        // The files appear: the next scrape recovers and reports memory.
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/host");
        std::fs::copy(fixtures.join("meminfo"), root.path().join("proc/meminfo")).expect("copy");
        let got = names(&engine.scrape());
        assert!(got.iter().any(|n| n == "system.memory.usage"), "{got:?}");
        assert!(engine.failing.iter().all(Option::is_none));
    }

    #[test]
    fn the_readme_documents_every_metric_with_its_unit() {
        let readme = include_str!("../../README.md");
        let tables = [
            cpu::METRICS,
            memory::METRICS,
            disk::METRICS,
            filesystem::METRICS,
            network::METRICS,
            load::METRICS,
            paging::METRICS,
            processes::METRICS,
            process::METRICS,
            cgroup::METRICS,
        ];
        for d in tables.iter().flat_map(|t| t.iter()) {
            let row = readme
                .lines()
                .find(|l| l.split('|').nth(2).is_some_and(|c| c.contains(&format!("`{}`", d.name))))
                .unwrap_or_else(|| panic!("README.md has no row for {}", d.name));
            assert!(row.contains(&format!("| {} |", d.unit)), "{}: unit {} not in `{row}`", d.name, d.unit);
            let kind = match d.kind {
                Kind::Gauge => "Gauge",
                Kind::Counter => "Counter",
                Kind::UpDownCounter => "UpDownCounter",
            };
            assert!(row.contains(&format!("| {kind} |")), "{}: {kind} not in `{row}`", d.name);
            let default = if d.default_enabled { "| on |" } else { "| off |" };
            assert!(row.ends_with(default), "{}: default not `{default}` in `{row}`", d.name);
        }
    }

    #[test]
    fn ratio_never_nan() {
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
        assert_eq!(ratio(3.0, 2.0), Some(1.0));
        assert_eq!(ratio(1.0, 4.0), Some(0.25));
    }
}
