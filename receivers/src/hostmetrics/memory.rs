//! `memory` scraper: `/proc/meminfo` → memory usage by state, utilisation,
//! the total (`system.memory.limit`) and the kernel's `MemAvailable`.
//!
//! States follow current semconv: `used` is `MemTotal - MemAvailable`
//! (falling back to `MemTotal - MemFree - Buffers - Cached` on kernels
//! without `MemAvailable`, before 3.14), `free` is `MemFree`, `buffers` is
//! `Buffers` and `cached` is `Cached`. Because `used` already excludes what
//! the kernel can reclaim, the states overlap and need not sum to the total.

use super::{
    Cx, Enabled, Kind, MetricDef, MetricToggles, Out, ScrapeError, Scraper, double_point, int_point, ratio,
};
use magpie_core::otlp::kv_str;
use serde::Deserialize;
use std::path::PathBuf;

/// Settings of the `memory` scraper.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    #[serde(default)]
    pub metrics: MetricToggles,
}

pub const USAGE: MetricDef = MetricDef {
    name: "system.memory.usage",
    unit: "By",
    kind: Kind::UpDownCounter,
    description: "Memory in use, by state.",
    default_enabled: true,
};
pub const UTILIZATION: MetricDef = MetricDef {
    name: "system.memory.utilization",
    unit: "1",
    kind: Kind::Gauge,
    description: "Fraction of memory in each state (0-1).",
    default_enabled: true,
};
pub const LIMIT: MetricDef = MetricDef {
    name: "system.memory.limit",
    unit: "By",
    kind: Kind::UpDownCounter,
    description: "Total memory (MemTotal).",
    default_enabled: true,
};
pub const AVAILABLE: MetricDef = MetricDef {
    name: "system.memory.linux.available",
    unit: "By",
    kind: Kind::UpDownCounter,
    description: "Memory available for starting new applications without swapping (MemAvailable).",
    default_enabled: true,
};
pub const SHARED: MetricDef = MetricDef {
    name: "system.memory.linux.shared",
    unit: "By",
    kind: Kind::UpDownCounter,
    description: "Shared memory, mostly tmpfs (Shmem).",
    default_enabled: false,
};
pub const SLAB: MetricDef = MetricDef {
    name: "system.memory.linux.slab.usage",
    unit: "By",
    kind: Kind::UpDownCounter,
    description: "Kernel slab memory, by reclaimable and unreclaimable.",
    default_enabled: false,
};
pub const METRICS: &[MetricDef] = &[USAGE, UTILIZATION, LIMIT, AVAILABLE, SHARED, SLAB];

impl MemoryConfig {
    pub fn problems(&self, path: &str, out: &mut Vec<String>) {
        super::metric_problems(METRICS, &self.metrics, path, out);
    }
}

/// The `/proc/meminfo` fields used, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total: Option<u64>,
    pub free: Option<u64>,
    pub available: Option<u64>,
    pub buffers: Option<u64>,
    pub cached: Option<u64>,
    pub shmem: Option<u64>,
    pub sreclaimable: Option<u64>,
    pub sunreclaim: Option<u64>,
    pub swap_total: Option<u64>,
    pub swap_free: Option<u64>,
}

/// Parses `/proc/meminfo` (`Key:   123 kB` lines; values without a unit,
/// like `HugePages_Total`, are counts and left as they are).
pub fn parse_meminfo(text: &str) -> MemInfo {
    let mut m = MemInfo::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_ascii_whitespace();
        let Some(value) = parts.next().and_then(super::num) else {
            continue;
        };
        let bytes = match parts.next() {
            Some("kB") => value.saturating_mul(1024),
            _ => value,
        };
        let slot = match key {
            "MemTotal" => &mut m.total,
            "MemFree" => &mut m.free,
            "MemAvailable" => &mut m.available,
            "Buffers" => &mut m.buffers,
            "Cached" => &mut m.cached,
            "Shmem" => &mut m.shmem,
            "SReclaimable" => &mut m.sreclaimable,
            "SUnreclaim" => &mut m.sunreclaim,
            "SwapTotal" => &mut m.swap_total,
            "SwapFree" => &mut m.swap_free,
            _ => continue,
        };
        *slot = Some(bytes);
    }
    m
}

/// Usage by semconv state; `None` without `MemTotal` and `MemFree`.
pub fn states(m: &MemInfo) -> Option<[(&'static str, u64); 4]> {
    let total = m.total?;
    let free = m.free?;
    let buffers = m.buffers.unwrap_or(0);
    let cached = m.cached.unwrap_or(0);
    let used = match m.available {
        Some(avail) => total.saturating_sub(avail),
        None => total.saturating_sub(free + buffers + cached),
    };
    Some([("used", used), ("free", free.min(total)), ("buffers", buffers), ("cached", cached)])
}

pub struct MemoryScraper {
    enabled: Enabled,
    path: PathBuf,
}

impl MemoryScraper {
    pub fn new(config: &MemoryConfig, cx: &Cx) -> Self {
        MemoryScraper { enabled: Enabled::new(METRICS, &config.metrics), path: cx.proc.join("meminfo") }
    }
}

impl Scraper for MemoryScraper {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn scrape(&mut self, cx: &mut Cx, out: &mut Out) -> Result<(), ScrapeError> {
        cx.read(&self.path)?;
        let m = parse_meminfo(&cx.buf);
        let (Some(total), Some(states)) = (m.total, states(&m)) else {
            return Err(ScrapeError::malformed(&self.path, "no MemTotal or MemFree"));
        };
        let (now, start) = (cx.now, cx.boot_time);
        let e = &self.enabled;
        let state = |s: &str| vec![kv_str("system.memory.state", s)];
        e.push(
            &mut out.host,
            &USAGE,
            states.iter().map(|(s, v)| int_point(*v, start, now, state(s))).collect(),
        );
        let util = states
            .iter()
            .filter_map(|(s, v)| ratio(*v as f64, total as f64).map(|r| double_point(r, 0, now, state(s))))
            .collect();
        e.push(&mut out.host, &UTILIZATION, util);
        e.push(&mut out.host, &LIMIT, vec![int_point(total, start, now, vec![])]);
        e.push(
            &mut out.host,
            &AVAILABLE,
            m.available.map(|a| int_point(a, start, now, vec![])).into_iter().collect(),
        );
        e.push(
            &mut out.host,
            &SHARED,
            m.shmem.map(|a| int_point(a, start, now, vec![])).into_iter().collect(),
        );
        let slab = [("reclaimable", m.sreclaimable), ("unreclaimable", m.sunreclaim)]
            .into_iter()
            .filter_map(|(s, v)| {
                Some(int_point(v?, start, now, vec![kv_str("system.memory.linux.slab.state", s)]))
            })
            .collect();
        e.push(&mut out.host, &SLAB, slab);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/host/meminfo");

    #[test]
    fn parses_a_real_meminfo() {
        let m = parse_meminfo(FIXTURE);
        assert_eq!(m.total, Some(24684084 * 1024));
        assert_eq!(m.available, Some(24049616 * 1024));
        assert_eq!(m.buffers, Some(9380 * 1024));
        assert_eq!(m.swap_total, Some(0));
        let s = states(&m).expect("total and free");
        let total = m.total.unwrap_or(0);
        for (name, v) in s {
            assert!(v <= total, "{name} {v} > {total}");
        }
        assert_eq!(s[0], ("used", (24684084 - 24049616) * 1024));
    }

    #[test]
    fn edge_cases() {
        // A pre-3.14 kernel: no MemAvailable, used from the old formula.
        let old = parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n");
        assert_eq!(old.available, None);
        assert_eq!(states(&old).map(|s| s[0]), Some(("used", 600 * 1024)));
        // Missing MemFree: no states at all.
        assert_eq!(states(&parse_meminfo("MemTotal: 1000 kB\n")), None);
        // Junk and unitless lines.
        let m = parse_meminfo("nonsense\nMemTotal: lots kB\nHugePages_Total: 4\nMemFree:\n");
        assert_eq!(m, MemInfo::default());
        // Inconsistent numbers never make used exceed total or go negative.
        let odd = parse_meminfo("MemTotal: 100 kB\nMemFree: 500 kB\nMemAvailable: 900 kB\n");
        assert_eq!(states(&odd).map(|s| (s[0].1, s[1].1)), Some((0, 100 * 1024)));
    }
}
