//! `cgroup` scraper: the memory and CPU limits, usage and throttling of the
//! control group the agent runs in, which inside a container is the
//! container's own. Reported as its own resource, with `container.id` when
//! it can be found.
//!
//! cgroup v2 (`memory.current`, `memory.max`, `cpu.max`, `cpu.stat`) is
//! read when `/sys/fs/cgroup` is a unified hierarchy; otherwise the v1
//! controllers (`memory/memory.usage_in_bytes`, `memory.limit_in_bytes`,
//! `cpu/cpu.cfs_quota_us`, `cpu.cfs_period_us`, `cpu.stat`,
//! `cpuacct/cpuacct.stat`). The agent's group is found from
//! `/proc/self/cgroup`; with a cgroup namespace (the usual container set-up)
//! that is the hierarchy's root. These paths are the agent's own, not
//! under `root_path`; `path` points the scraper at another group's
//! directory instead.
//!
//! No limit (`max`, `-1`, or v1's huge "unlimited" number) means no limit
//! point and no utilisation. Counters start at the start of the namespace's
//! init process (the container's start), or boot outside a container.

use super::{
    Cx, Enabled, Kind, MetricDef, MetricToggles, Out, ScrapeError, Scraper, double_point, int_point, ratio,
    read_into,
};
use magpie_core::otlp::kv_str;
use magpie_core::proto::common::v1::KeyValue;
use magpie_core::proto::metrics::v1::NumberDataPoint;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Settings of the `cgroup` scraper.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupConfig {
    /// The cgroup directory to read (`/sys/fs/cgroup/system.slice/app.service`);
    /// by default the agent's own group.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub metrics: MetricToggles,
}

pub const MEMORY_USAGE: MetricDef = MetricDef {
    name: "container.memory.usage",
    unit: "By",
    kind: Kind::UpDownCounter,
    description: "Memory charged to the group, page cache included.",
    default_enabled: true,
};
pub const MEMORY_LIMIT: MetricDef = MetricDef {
    name: "container.memory.limit",
    unit: "By",
    kind: Kind::UpDownCounter,
    description: "The group's memory limit, when it has one.",
    default_enabled: true,
};
pub const MEMORY_UTILIZATION: MetricDef = MetricDef {
    name: "container.memory.utilization",
    unit: "1",
    kind: Kind::Gauge,
    description: "Memory usage as a fraction of the limit (0-1), when there is a limit.",
    default_enabled: true,
};
pub const CPU_TIME: MetricDef = MetricDef {
    name: "container.cpu.time",
    unit: "s",
    kind: Kind::Counter,
    description: "CPU seconds the group used, by mode (user, system).",
    default_enabled: true,
};
pub const CPU_LIMIT: MetricDef = MetricDef {
    name: "container.cpu.limit",
    unit: "{cpu}",
    kind: Kind::Gauge,
    description: "The group's CPU quota in CPUs (quota / period), when it has one.",
    default_enabled: true,
};
pub const CPU_PERIODS: MetricDef = MetricDef {
    name: "container.cpu.periods",
    unit: "{period}",
    kind: Kind::Counter,
    description: "Enforcement periods that elapsed while the group had runnable tasks.",
    default_enabled: true,
};
pub const CPU_THROTTLED_PERIODS: MetricDef = MetricDef {
    name: "container.cpu.throttled_periods",
    unit: "{period}",
    kind: Kind::Counter,
    description: "Periods in which the group was throttled for reaching its quota.",
    default_enabled: true,
};
pub const CPU_THROTTLED_TIME: MetricDef = MetricDef {
    name: "container.cpu.throttled_time",
    unit: "s",
    kind: Kind::Counter,
    description: "Time the group's tasks spent throttled.",
    default_enabled: true,
};
pub const METRICS: &[MetricDef] = &[
    MEMORY_USAGE,
    MEMORY_LIMIT,
    MEMORY_UTILIZATION,
    CPU_TIME,
    CPU_LIMIT,
    CPU_PERIODS,
    CPU_THROTTLED_PERIODS,
    CPU_THROTTLED_TIME,
];

impl CgroupConfig {
    pub fn problems(&self, path: &str, out: &mut Vec<String>) {
        if let Some(p) = &self.path
            && !p.starts_with('/')
        {
            out.push(format!("{path}.path: `{p}` must be an absolute path"));
        }
        super::metric_problems(METRICS, &self.metrics, path, out);
    }
}

// ---------------------------------------------------------------------------
// Parsing.

/// One line of `/proc/self/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupLine {
    pub id: String,
    pub controllers: Vec<String>,
    pub path: String,
}

/// Parses `/proc/<pid>/cgroup`. The path may itself contain `:`.
pub fn parse_self_cgroup(text: &str) -> Vec<CgroupLine> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
            Some(CgroupLine {
                id: id.to_string(),
                controllers: controllers.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// A single-number file; `None` for `max`, a negative number (v1's `-1`)
/// or v1's "unlimited" figure (anything at or above 2^62).
pub fn parse_limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" || t.starts_with('-') {
        return None;
    }
    t.parse::<u64>().ok().filter(|v| *v < 1 << 62)
}

/// v2 `cpu.max` (`quota period` or `max period`) → the limit in CPUs.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut f = text.split_ascii_whitespace();
    let quota = parse_limit(f.next()?)?;
    let period = f.next().map_or(Some(100_000), super::num)?;
    cpus(quota, period)
}

fn cpus(quota: u64, period: u64) -> Option<f64> {
    (period > 0 && quota > 0).then(|| quota as f64 / period as f64)
}

/// The CPU figures of a group, in common units.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuStat {
    pub user_secs: Option<f64>,
    pub system_secs: Option<f64>,
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled_secs: Option<f64>,
}

/// `key value` lines as pairs, skipping malformed ones.
fn pairs(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|l| {
        let mut f = l.split_ascii_whitespace();
        Some((f.next()?, super::num(f.next()?)?))
    })
}

/// v2 `cpu.stat` (microseconds).
pub fn parse_cpu_stat_v2(text: &str) -> CpuStat {
    let mut s = CpuStat::default();
    for (k, v) in pairs(text) {
        match k {
            "user_usec" => s.user_secs = Some(v as f64 / 1e6),
            "system_usec" => s.system_secs = Some(v as f64 / 1e6),
            "nr_periods" => s.periods = Some(v),
            "nr_throttled" => s.throttled_periods = Some(v),
            "throttled_usec" => s.throttled_secs = Some(v as f64 / 1e6),
            _ => {}
        }
    }
    s
}

/// v1 `cpu.stat` (throttled time in nanoseconds) and `cpuacct.stat` (user
/// and system in `USER_HZ` ticks), merged.
pub fn parse_cpu_stat_v1(cpu_stat: &str, cpuacct_stat: &str, clk_tck: u64) -> CpuStat {
    let mut s = CpuStat::default();
    for (k, v) in pairs(cpu_stat) {
        match k {
            "nr_periods" => s.periods = Some(v),
            "nr_throttled" => s.throttled_periods = Some(v),
            "throttled_time" => s.throttled_secs = Some(v as f64 / 1e9),
            _ => {}
        }
    }
    let tck = clk_tck.max(1) as f64;
    for (k, v) in pairs(cpuacct_stat) {
        match k {
            "user" => s.user_secs = Some(v as f64 / tck),
            "system" => s.system_secs = Some(v as f64 / tck),
            _ => {}
        }
    }
    s
}

/// A container id (64 hex digits) in the cgroup paths, as Docker,
/// containerd and CRI-O write them (`/docker/<id>`,
/// `/system.slice/docker-<id>.scope`, `/kubepods/.../cri-containerd-<id>.scope`),
/// else in the mount table, where Docker bind-mounts
/// `/var/lib/docker/containers/<id>/hostname` even with a cgroup namespace.
pub fn container_id(self_cgroup: &str, mountinfo: &str) -> Option<String> {
    let find = |text: &str| -> Option<String> {
        text.split(|c: char| !c.is_ascii_hexdigit()).rfind(|t| t.len() == 64).map(str::to_string)
    };
    parse_self_cgroup(self_cgroup).iter().rev().find_map(|l| find(&l.path)).or_else(|| {
        mountinfo.lines().filter(|l| l.contains("/containers/")).find_map(|l| {
            let rest = &l[l.find("/containers/")? + "/containers/".len()..];
            find(rest.split('/').next()?)
        })
    })
}

// ---------------------------------------------------------------------------
// Finding the group.

/// Where a group's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    V2 { dir: PathBuf },
    V1 { memory: PathBuf, cpu: PathBuf, cpuacct: PathBuf },
}

/// Finds the agent's group from `/proc/self/cgroup` under the hierarchy
/// mounted at `mount`; `exists` says which paths exist (the only IO). A
/// path that does not exist under the mount (a container without a cgroup
/// namespace sees the host's path) falls back to the mount itself, which is
/// then the container's own group.
pub fn resolve(self_cgroup: &str, mount: &Path, exists: &dyn Fn(&Path) -> bool) -> Layout {
    let lines = parse_self_cgroup(self_cgroup);
    let under = |base: PathBuf, path: &str| {
        let p = base.join(path.trim_start_matches('/'));
        if exists(&p) { p } else { base }
    };
    if exists(&mount.join("cgroup.controllers")) {
        let path =
            lines.iter().find(|l| l.id == "0" && l.controllers.is_empty()).map_or("/", |l| l.path.as_str());
        return Layout::V2 { dir: under(mount.to_path_buf(), path) };
    }
    let v1 = |controller: &str| {
        let path = lines
            .iter()
            .find(|l| l.controllers.iter().any(|c| c == controller))
            .map_or("/", |l| l.path.as_str());
        under(mount.join(controller), path)
    };
    Layout::V1 { memory: v1("memory"), cpu: v1("cpu"), cpuacct: v1("cpuacct") }
}

/// The layout of a directory named in the config: v2 when it has v2 files.
fn layout_of(dir: &Path) -> Layout {
    if ["cgroup.controllers", "memory.current", "cpu.max"].iter().any(|f| dir.join(f).exists()) {
        Layout::V2 { dir: dir.to_path_buf() }
    } else {
        Layout::V1 { memory: dir.join("memory"), cpu: dir.join("cpu"), cpuacct: dir.join("cpuacct") }
    }
}

/// A group's figures at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    pub memory_usage: Option<u64>,
    pub memory_limit: Option<u64>,
    pub cpu_limit: Option<f64>,
    pub cpu: CpuStat,
}

pub struct CgroupScraper {
    enabled: Enabled,
    layout: Layout,
    attributes: Vec<KeyValue>,
    /// When the group's counters began, Unix nanoseconds.
    start: u64,
}

impl CgroupScraper {
    pub fn new(config: &CgroupConfig, cx: &Cx) -> Self {
        let mut buf = String::new();
        let self_cgroup =
            read_into(Path::new("/proc/self/cgroup"), &mut buf).map(|()| buf.clone()).unwrap_or_default();
        let layout = match &config.path {
            Some(p) => layout_of(Path::new(p)),
            None => resolve(&self_cgroup, Path::new("/sys/fs/cgroup"), &|p: &Path| p.exists()),
        };
        let mountinfo =
            read_into(Path::new("/proc/self/mountinfo"), &mut buf).map(|()| buf.clone()).unwrap_or_default();
        let attributes = match (&config.path, container_id(&self_cgroup, &mountinfo)) {
            (None, Some(id)) => vec![kv_str("container.id", id)],
            _ => Vec::new(),
        };
        let start = read_into(Path::new("/proc/1/stat"), &mut buf)
            .ok()
            .and_then(|()| super::process::parse_pid_stat(&buf))
            .map_or(cx.boot_time, |s| {
                cx.boot_time.saturating_add(s.starttime.saturating_mul(1_000_000_000) / cx.clk_tck)
            });
        CgroupScraper { enabled: Enabled::new(METRICS, &config.metrics), layout, attributes, start }
    }

    /// Reads what the layout offers; files that are missing stay `None`.
    fn sample(&self, cx: &mut Cx) -> Sample {
        let mut read = |p: PathBuf| read_into(&p, &mut cx.buf).ok().map(|()| cx.buf.clone());
        match &self.layout {
            Layout::V2 { dir } => Sample {
                memory_usage: read(dir.join("memory.current")).and_then(|t| super::num(t.trim())),
                memory_limit: read(dir.join("memory.max")).as_deref().and_then(parse_limit),
                cpu_limit: read(dir.join("cpu.max")).as_deref().and_then(parse_cpu_max),
                cpu: read(dir.join("cpu.stat")).as_deref().map(parse_cpu_stat_v2).unwrap_or_default(),
            },
            Layout::V1 { memory, cpu, cpuacct } => {
                let quota = read(cpu.join("cpu.cfs_quota_us")).as_deref().and_then(parse_limit);
                let period = read(cpu.join("cpu.cfs_period_us")).and_then(|t| super::num(t.trim()));
                let cpu_stat = read(cpu.join("cpu.stat")).unwrap_or_default();
                let acct = read(cpuacct.join("cpuacct.stat")).unwrap_or_default();
                Sample {
                    memory_usage: read(memory.join("memory.usage_in_bytes"))
                        .and_then(|t| super::num(t.trim())),
                    memory_limit: read(memory.join("memory.limit_in_bytes")).as_deref().and_then(parse_limit),
                    cpu_limit: quota.zip(period).and_then(|(q, p)| cpus(q, p)),
                    cpu: parse_cpu_stat_v1(&cpu_stat, &acct, cx.clk_tck),
                }
            }
        }
    }
}

impl Scraper for CgroupScraper {
    fn name(&self) -> &'static str {
        "cgroup"
    }

    fn scrape(&mut self, cx: &mut Cx, out: &mut Out) -> Result<(), ScrapeError> {
        let s = self.sample(cx);
        if s.memory_usage.is_none() && s.cpu == CpuStat::default() {
            let dir = match &self.layout {
                Layout::V2 { dir } => dir,
                Layout::V1 { memory, .. } => memory,
            };
            return Err(ScrapeError::malformed(dir, "no readable cgroup memory or cpu files"));
        }
        let (now, start, e) = (cx.now, self.start, self.enabled);
        let one = |p: Option<NumberDataPoint>| p.into_iter().collect::<Vec<_>>();
        let mut m = Vec::new();
        e.push(&mut m, &MEMORY_USAGE, one(s.memory_usage.map(|v| int_point(v, start, now, vec![]))));
        e.push(&mut m, &MEMORY_LIMIT, one(s.memory_limit.map(|v| int_point(v, start, now, vec![]))));
        let util = s.memory_usage.zip(s.memory_limit).and_then(|(u, l)| ratio(u as f64, l as f64));
        e.push(&mut m, &MEMORY_UTILIZATION, one(util.map(|v| double_point(v, 0, now, vec![]))));
        let modes = [("user", s.cpu.user_secs), ("system", s.cpu.system_secs)]
            .into_iter()
            .filter_map(|(mode, v)| Some(double_point(v?, start, now, vec![kv_str("cpu.mode", mode)])))
            .collect();
        e.push(&mut m, &CPU_TIME, modes);
        e.push(&mut m, &CPU_LIMIT, one(s.cpu_limit.map(|v| double_point(v, 0, now, vec![]))));
        e.push(&mut m, &CPU_PERIODS, one(s.cpu.periods.map(|v| int_point(v, start, now, vec![]))));
        e.push(
            &mut m,
            &CPU_THROTTLED_PERIODS,
            one(s.cpu.throttled_periods.map(|v| int_point(v, start, now, vec![]))),
        );
        e.push(
            &mut m,
            &CPU_THROTTLED_TIME,
            one(s.cpu.throttled_secs.map(|v| double_point(v, start, now, vec![]))),
        );
        if !m.is_empty() {
            out.resources.push(super::resource_metrics(self.attributes.clone(), m));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/host").join(rel)
    }

    #[test]
    fn parses_limits() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1073741824\n", Some(1 << 30)),
            ("max\n", None),
            ("-1\n", None),
            ("9223372036854771712\n", None),
            ("", None),
            ("lots", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_limit(text), *want, "{text:?}");
        }
        let cpu: &[(&str, Option<f64>)] = &[
            ("150000 100000\n", Some(1.5)),
            ("max 100000\n", None),
            ("50000\n", Some(0.5)),
            ("100 0\n", None),
            ("", None),
        ];
        for (text, want) in cpu {
            assert_eq!(parse_cpu_max(text), *want, "{text:?}");
        }
    }

    #[test]
    fn parses_cpu_stats() {
        let v2 = parse_cpu_stat_v2(include_str!("../../tests/fixtures/host/cgroup-v2/cpu.stat"));
        assert_eq!(
            v2,
            CpuStat {
                user_secs: Some(100.0),
                system_secs: Some(23.456789),
                periods: Some(5000),
                throttled_periods: Some(120),
                throttled_secs: Some(3.456789),
            }
        );
        let v1 = parse_cpu_stat_v1(
            "nr_periods 10\nnr_throttled 2\nthrottled_time 1500000000\nnr_bursts 0\n",
            "user 20202\nsystem 6511\n",
            100,
        );
        assert_eq!(v1.throttled_secs, Some(1.5));
        assert_eq!(v1.user_secs, Some(202.02));
        assert_eq!((v1.periods, v1.throttled_periods), (Some(10), Some(2)));
        assert_eq!(parse_cpu_stat_v1("garbage\nnr_periods x\n", "", 100), CpuStat::default());
    }

    #[test]
    fn finds_the_group() {
        let v2_mount = Path::new("/sys/fs/cgroup");
        let all = |_: &Path| true;
        let only_root_v2 = |p: &Path| p == Path::new("/sys/fs/cgroup/cgroup.controllers");
        let none = |_: &Path| false;
        let all_v1 = |p: &Path| !p.ends_with("cgroup.controllers");
        let v1_text = include_str!("../../tests/fixtures/host/cgroup-v1/self_cgroup");
        type Exists<'a> = &'a dyn Fn(&Path) -> bool;
        let cases: &[(&str, Exists, Layout)] = &[
            // A container with a cgroup namespace.
            ("0::/\n", &all, Layout::V2 { dir: v2_mount.into() }),
            // A systemd service on a v2 host.
            (
                "0::/system.slice/app.service\n",
                &all,
                Layout::V2 { dir: "/sys/fs/cgroup/system.slice/app.service".into() },
            ),
            // A container without a namespace sees the host's path, which is not mounted in.
            ("0::/docker/abc\n", &only_root_v2, Layout::V2 { dir: v2_mount.into() }),
            // cgroup v1 with the memory controller in its own group.
            (
                v1_text,
                &all_v1,
                Layout::V1 {
                    memory: "/sys/fs/cgroup/memory/system.slice/magpie.service".into(),
                    cpu: "/sys/fs/cgroup/cpu".into(),
                    cpuacct: "/sys/fs/cgroup/cpuacct".into(),
                },
            ),
            (
                "4:memory:/kubepods/pod1\n3:cpu,cpuacct:/kubepods/pod1\n",
                &none,
                Layout::V1 {
                    memory: "/sys/fs/cgroup/memory".into(),
                    cpu: "/sys/fs/cgroup/cpu".into(),
                    cpuacct: "/sys/fs/cgroup/cpuacct".into(),
                },
            ),
        ];
        for (text, exists, want) in cases {
            assert_eq!(&resolve(text, v2_mount, exists), want, "{text}");
        }
        assert_eq!(layout_of(&fixture("cgroup-v2")), Layout::V2 { dir: fixture("cgroup-v2") });
        assert!(matches!(layout_of(&fixture("cgroup-v1")), Layout::V1 { .. }));
    }

    #[test]
    fn finds_container_ids() {
        let id = "4f2a0c7b3d1e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a";
        let cases: &[(String, String, Option<&str>)] = &[
            (format!("12:memory:/docker/{id}\n0::/docker/{id}\n"), String::new(), Some(id)),
            (format!("0::/system.slice/docker-{id}.scope\n"), String::new(), Some(id)),
            (format!("0::/kubepods/burstable/pod1/cri-containerd-{id}.scope\n"), String::new(), Some(id)),
            (
                "0::/\n".to_string(),
                format!(
                    "512 500 254:0 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/vda rw\n"
                ),
                Some(id),
            ),
            ("0::/\n".to_string(), "22 27 0:21 / /proc rw - proc proc rw\n".to_string(), None),
            ("0::/user.slice/abc\n".to_string(), String::new(), None),
        ];
        for (cg, mi, want) in cases {
            assert_eq!(container_id(cg, mi).as_deref(), *want, "{cg}");
        }
    }

    fn scrape(path: &Path) -> Vec<(String, f64)> {
        let mut cx = Cx::new("/").expect("this machine has /proc");
        let config = CgroupConfig { path: Some(path.display().to_string()), metrics: Default::default() };
        let mut s = CgroupScraper::new(&config, &cx);
        let mut out = Out::default();
        s.scrape(&mut cx, &mut out).expect("fixtures are readable");
        let mut got = Vec::new();
        for r in &out.resources {
            for m in r.scope_metrics.iter().flat_map(|s| &s.metrics) {
                let points = match &m.data {
                    Some(magpie_core::proto::metrics::v1::metric::Data::Sum(s)) => &s.data_points,
                    Some(magpie_core::proto::metrics::v1::metric::Data::Gauge(g)) => &g.data_points,
                    _ => continue,
                };
                for p in points {
                    use magpie_core::proto::metrics::v1::number_data_point::Value;
                    let v = match p.value {
                        Some(Value::AsInt(i)) => i as f64,
                        Some(Value::AsDouble(d)) => d,
                        None => continue,
                    };
                    got.push((m.name.clone(), v));
                }
            }
        }
        got
    }

    fn value(got: &[(String, f64)], name: &str) -> Option<f64> {
        got.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    #[test]
    fn scrapes_v2_fixture() {
        let got = scrape(&fixture("cgroup-v2"));
        assert_eq!(value(&got, "container.memory.usage"), Some(734003200.0));
        assert_eq!(value(&got, "container.memory.limit"), Some(1073741824.0));
        assert_eq!(value(&got, "container.memory.utilization"), Some(734003200.0 / 1073741824.0));
        assert_eq!(value(&got, "container.cpu.limit"), Some(1.5));
        assert_eq!(value(&got, "container.cpu.throttled_periods"), Some(120.0));
        assert_eq!(value(&got, "container.cpu.throttled_time"), Some(3.456789));
        assert_eq!(got.iter().filter(|(n, _)| n == "container.cpu.time").count(), 2);
    }

    #[test]
    fn scrapes_v1_fixture_without_limits() {
        let got = scrape(&fixture("cgroup-v1"));
        assert!(value(&got, "container.memory.usage").is_some_and(|v| v > 0.0));
        assert_eq!(value(&got, "container.memory.limit"), None, "unlimited has no limit point");
        assert_eq!(value(&got, "container.memory.utilization"), None);
        assert_eq!(value(&got, "container.cpu.limit"), None, "quota -1 is no limit");
        assert_eq!(value(&got, "container.cpu.periods"), Some(0.0));
    }

    #[test]
    fn a_missing_group_is_an_error() {
        let mut cx = Cx::new("/").expect("this machine has /proc");
        let config = CgroupConfig { path: Some("/nonexistent/cgroup".into()), metrics: Default::default() };
        let mut s = CgroupScraper::new(&config, &cx);
        assert!(s.scrape(&mut cx, &mut Out::default()).is_err());
    }
}
