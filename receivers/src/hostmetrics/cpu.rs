//! `cpu` scraper: `/proc/stat` → CPU time by `cpu.mode`, utilisation between
//! scrapes (0–1, normalised across all cores) and the logical CPU count.
//!
//! Busy time follows psutil: everything but `idle` and `iowait`. `guest`
//! and `guest_nice` are already inside `user` and `nice`, so they are not
//! added again; `irq` and `softirq` are reported together as `interrupt`.

use super::{
    Cx, Enabled, Kind, MetricDef, MetricToggles, Out, ScrapeError, Scraper, double_point, int_point, ratio,
};
use magpie_core::otlp::{kv_int, kv_str};
use magpie_core::proto::common::v1::KeyValue;
use serde::Deserialize;
use std::path::PathBuf;

/// Settings of the `cpu` scraper.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuConfig {
    /// Report each logical CPU (`cpu.logical_number`) instead of the whole host.
    #[serde(default)]
    pub per_cpu: bool,
    /// Split `system.cpu.utilization` by `cpu.mode` (the fractions then sum
    /// to 1) instead of one busy fraction.
    #[serde(default)]
    pub utilization_by_mode: bool,
    #[serde(default)]
    pub metrics: MetricToggles,
}

pub const TIME: MetricDef = MetricDef {
    name: "system.cpu.time",
    unit: "s",
    kind: Kind::Counter,
    description: "Seconds each logical CPU spent in each mode.",
    default_enabled: true,
};
pub const UTILIZATION: MetricDef = MetricDef {
    name: "system.cpu.utilization",
    unit: "1",
    kind: Kind::Gauge,
    description: "Fraction of CPU time spent busy since the last scrape, across all logical CPUs (0-1).",
    default_enabled: true,
};
pub const LOGICAL_COUNT: MetricDef = MetricDef {
    name: "system.cpu.logical.count",
    unit: "{cpu}",
    kind: Kind::UpDownCounter,
    description: "Number of logical CPUs online.",
    default_enabled: true,
};
pub const METRICS: &[MetricDef] = &[TIME, UTILIZATION, LOGICAL_COUNT];

impl CpuConfig {
    pub fn problems(&self, path: &str, out: &mut Vec<String>) {
        super::metric_problems(METRICS, &self.metrics, path, out);
    }
}

/// Cumulative CPU ticks of one line of `/proc/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
    pub guest: u64,
    pub guest_nice: u64,
}

impl CpuTimes {
    /// All ticks (guest time is already inside user and nice).
    pub fn total(&self) -> u64 {
        self.user + self.nice + self.system + self.idle + self.iowait + self.irq + self.softirq + self.steal
    }

    /// Ticks spent neither idle nor waiting for IO.
    pub fn busy(&self) -> u64 {
        self.total().saturating_sub(self.idle + self.iowait)
    }

    /// Ticks per semconv `cpu.mode`; they sum to [`CpuTimes::total`].
    pub fn modes(&self) -> [(&'static str, u64); 7] {
        [
            ("user", self.user),
            ("nice", self.nice),
            ("system", self.system),
            ("idle", self.idle),
            ("iowait", self.iowait),
            ("interrupt", self.irq + self.softirq),
            ("steal", self.steal),
        ]
    }
}

/// What the scrapers use from `/proc/stat`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// The aggregate `cpu` line.
    pub total: CpuTimes,
    /// `cpuN` lines: (N, times).
    pub cpus: Vec<(u32, CpuTimes)>,
    /// Boot time, seconds since the epoch.
    pub btime: Option<u64>,
    /// Forks since boot.
    pub processes: Option<u64>,
    pub procs_running: Option<u64>,
    pub procs_blocked: Option<u64>,
}

/// Parses `/proc/stat`. Kernels differ in how many columns a `cpu` line has
/// (older ones lack steal and guest, newer ones may add more): missing
/// columns read as zero, extra ones are ignored, and a line with a
/// non-numeric column is skipped.
pub fn parse_stat(text: &str) -> Stat {
    let mut stat = Stat::default();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        if key == "cpu" {
            if let Some(t) = parse_cpu_fields(fields) {
                stat.total = t;
            }
        } else if let Some(n) = key.strip_prefix("cpu") {
            if let (Ok(n), Some(t)) = (n.parse::<u32>(), parse_cpu_fields(fields)) {
                stat.cpus.push((n, t));
            }
        } else {
            let value = fields.next().and_then(super::num);
            match key {
                "btime" => stat.btime = value,
                "processes" => stat.processes = value,
                "procs_running" => stat.procs_running = value,
                "procs_blocked" => stat.procs_blocked = value,
                _ => {}
            }
        }
    }
    stat
}

fn parse_cpu_fields<'a>(fields: impl Iterator<Item = &'a str>) -> Option<CpuTimes> {
    let mut v = [0u64; 10];
    let mut n = 0;
    for (slot, f) in v.iter_mut().zip(fields) {
        *slot = f.parse().ok()?;
        n += 1;
    }
    if n < 4 {
        return None;
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice] = v;
    Some(CpuTimes { user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice })
}

fn delta(prev: u64, cur: u64) -> f64 {
    cur.saturating_sub(prev) as f64
}

/// Busy fraction between two samples; `None` when no time passed.
/// Counters that went backwards (iowait can) count as zero.
pub fn utilization(prev: &CpuTimes, cur: &CpuTimes) -> Option<f64> {
    let total: f64 = prev.modes().iter().zip(cur.modes()).map(|((_, p), (_, c))| delta(*p, c)).sum();
    let idle = delta(prev.idle, cur.idle) + delta(prev.iowait, cur.iowait);
    ratio(total - idle, total)
}

/// Fraction of time in each mode between two samples; `None` when no time passed.
pub fn mode_fractions(prev: &CpuTimes, cur: &CpuTimes) -> Option<[(&'static str, f64); 7]> {
    let (p, c) = (prev.modes(), cur.modes());
    let total: f64 = p.iter().zip(&c).map(|((_, a), (_, b))| delta(*a, *b)).sum();
    if total <= 0.0 {
        return None;
    }
    let mut out = [("", 0.0); 7];
    for (i, ((_, a), (mode, b))) in p.iter().zip(c).enumerate() {
        out[i] = (mode, delta(*a, b) / total);
    }
    Some(out)
}

pub struct CpuScraper {
    per_cpu: bool,
    by_mode: bool,
    enabled: Enabled,
    path: PathBuf,
    prev: Option<Stat>,
}

impl CpuScraper {
    pub fn new(config: &CpuConfig, cx: &Cx) -> Self {
        CpuScraper {
            per_cpu: config.per_cpu,
            by_mode: config.utilization_by_mode,
            enabled: Enabled::new(METRICS, &config.metrics),
            path: cx.proc.join("stat"),
            prev: None,
        }
    }

    fn sample(&mut self, cx: &mut Cx) -> Result<Stat, ScrapeError> {
        cx.read(&self.path)?;
        let stat = parse_stat(&cx.buf);
        if stat.total.total() == 0 {
            return Err(ScrapeError::malformed(&self.path, "no cpu line"));
        }
        Ok(stat)
    }

    fn utilization_points(
        &self,
        prev: &CpuTimes,
        cur: &CpuTimes,
        now: u64,
        base: &[KeyValue],
        out: &mut Vec<super::NumberDataPoint>,
    ) {
        if self.by_mode {
            if let Some(fr) = mode_fractions(prev, cur) {
                for (mode, f) in fr {
                    let mut attrs = base.to_vec();
                    attrs.push(kv_str("cpu.mode", mode));
                    out.push(double_point(f, 0, now, attrs));
                }
            }
        } else if let Some(u) = utilization(prev, cur) {
            out.push(double_point(u, 0, now, base.to_vec()));
        }
    }
}

impl Scraper for CpuScraper {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn baseline(&mut self, cx: &mut Cx) {
        self.prev = self.sample(cx).ok();
    }

    fn scrape(&mut self, cx: &mut Cx, out: &mut Out) -> Result<(), ScrapeError> {
        let stat = self.sample(cx)?;
        let (now, start) = (cx.now, cx.boot_time);
        cx.ncpu = stat.cpus.len().max(1);

        let lines: Vec<(Option<u32>, &CpuTimes)> = if self.per_cpu {
            stat.cpus.iter().map(|(n, t)| (Some(*n), t)).collect()
        } else {
            vec![(None, &stat.total)]
        };
        let base =
            |n: Option<u32>| n.map(|n| vec![kv_int("cpu.logical_number", i64::from(n))]).unwrap_or_default();

        if self.enabled.on(&TIME) {
            let mut points = Vec::with_capacity(lines.len() * 7);
            for (n, t) in &lines {
                for (mode, ticks) in t.modes() {
                    let mut attrs = base(*n);
                    attrs.push(kv_str("cpu.mode", mode));
                    points.push(double_point(cx.ticks_to_secs(ticks), start, now, attrs));
                }
            }
            self.enabled.push(&mut out.host, &TIME, points);
        }
        if self.enabled.on(&UTILIZATION) {
            let mut points = Vec::new();
            if let Some(prev) = &self.prev {
                if self.per_cpu {
                    for (n, t) in &stat.cpus {
                        if let Some((_, p)) = prev.cpus.iter().find(|(pn, _)| pn == n) {
                            self.utilization_points(p, t, now, &base(Some(*n)), &mut points);
                        }
                    }
                } else {
                    self.utilization_points(&prev.total, &stat.total, now, &[], &mut points);
                }
            }
            self.enabled.push(&mut out.host, &UTILIZATION, points);
        }
        self.enabled.push(
            &mut out.host,
            &LOGICAL_COUNT,
            vec![int_point(stat.cpus.len() as u64, start, now, vec![])],
        );
        self.prev = Some(stat);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/host/stat");

    #[test]
    fn parses_a_real_stat() {
        let s = parse_stat(FIXTURE);
        assert_eq!(s.cpus.len(), 2);
        assert_eq!(s.total.user, 19906);
        assert_eq!(s.total.softirq, 85);
        assert_eq!(s.total.steal, 17);
        assert_eq!(s.cpus[1].0, 1);
        assert_eq!(s.btime, Some(1795659065));
        assert_eq!(s.processes, Some(14992));
        assert_eq!(s.procs_running, Some(1));
        // The per-CPU lines add up to the aggregate line, give or take a tick each.
        let sum: u64 = s.cpus.iter().map(|(_, t)| t.total()).sum();
        assert!(sum.abs_diff(s.total.total()) <= 2 * 8, "{sum} vs {}", s.total.total());
    }

    #[test]
    fn kernel_variants_and_junk() {
        let cases: &[(&str, Option<CpuTimes>)] = &[
            // 2.6.10-era: no steal, guest.
            (
                "cpu  1 2 3 4 5 6 7\n",
                Some(CpuTimes {
                    user: 1,
                    nice: 2,
                    system: 3,
                    idle: 4,
                    iowait: 5,
                    irq: 6,
                    softirq: 7,
                    ..Default::default()
                }),
            ),
            // 2.4-era: four columns.
            ("cpu 10 0 5 85\n", Some(CpuTimes { user: 10, system: 5, idle: 85, ..Default::default() })),
            // A future kernel with an extra column.
            (
                "cpu 1 1 1 1 1 1 1 1 1 1 99\n",
                Some(CpuTimes {
                    user: 1,
                    nice: 1,
                    system: 1,
                    idle: 1,
                    iowait: 1,
                    irq: 1,
                    softirq: 1,
                    steal: 1,
                    guest: 1,
                    guest_nice: 1,
                }),
            ),
            ("cpu 1 x 3 4\n", None),
            ("cpu 1 2\n", None),
            ("garbage line\n\nintr 1 2 3\n", None),
        ];
        for (text, want) in cases {
            let s = parse_stat(text);
            let got = (s.total != CpuTimes::default()).then_some(s.total);
            assert_eq!(&got, want, "{text}");
        }
        let s = parse_stat("cpu0 1 2 3 4\ncpuX 1 2 3 4\ncpu1 oops\nbtime\nprocesses 12x\n");
        assert_eq!(s.cpus.len(), 1);
        assert_eq!(s.btime, None);
        assert_eq!(s.processes, None);
    }

    #[test]
    fn utilization_between_two_samples() {
        let a = CpuTimes { user: 100, system: 50, idle: 800, iowait: 50, ..Default::default() };
        let cases: &[(CpuTimes, Option<f64>)] = &[
            // 100 ticks: 30 user, 20 system, 40 idle, 10 iowait → 0.5 busy.
            (CpuTimes { user: 130, system: 70, idle: 840, iowait: 60, ..Default::default() }, Some(0.5)),
            // Fully busy.
            (CpuTimes { user: 200, system: 50, idle: 800, iowait: 50, ..Default::default() }, Some(1.0)),
            // Fully idle.
            (CpuTimes { user: 100, system: 50, idle: 900, iowait: 50, ..Default::default() }, Some(0.0)),
            // No time passed: no figure rather than NaN.
            (a, None),
            // iowait went backwards (it can): counted as zero, still in range.
            (CpuTimes { user: 150, system: 50, idle: 850, iowait: 40, ..Default::default() }, Some(0.5)),
        ];
        for (b, want) in cases {
            assert_eq!(utilization(&a, b), *want, "{b:?}");
        }
        let fr = mode_fractions(&a, &cases[0].0).expect("time passed");
        let total: f64 = fr.iter().map(|(_, f)| f).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert_eq!(fr.iter().find(|(m, _)| *m == "user").map(|(_, f)| *f), Some(0.3));
        assert!(mode_fractions(&a, &a).is_none());
    }
}
