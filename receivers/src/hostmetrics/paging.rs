//! `paging` scraper: `/proc/swaps` → swap usage by device and state, and
//! `/proc/vmstat` → paging operations and page faults.
//!
//! Operations follow the Collector: swap-ins and swap-outs (`pswpin`,
//! `pswpout`) are the `major` ones, pages read from or written to disk
//! (`pgpgin`, `pgpgout`) the `minor` ones. Faults: `pgmajfault` are major,
//! `pgfault - pgmajfault` minor.

use super::{
    Cx, Enabled, Kind, MetricDef, MetricToggles, Out, ScrapeError, Scraper, double_point, int_point, ratio,
};
use magpie_core::otlp::kv_str;
use magpie_core::proto::common::v1::KeyValue;
use serde::Deserialize;
use std::path::PathBuf;

/// Settings of the `paging` scraper.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagingConfig {
    #[serde(default)]
    pub metrics: MetricToggles,
}

pub const USAGE: MetricDef = MetricDef {
    name: "system.paging.usage",
    unit: "By",
    kind: Kind::UpDownCounter,
    description: "Swap space by device and state (used, free).",
    default_enabled: true,
};
pub const UTILIZATION: MetricDef = MetricDef {
    name: "system.paging.utilization",
    unit: "1",
    kind: Kind::Gauge,
    description: "Fraction of swap space by device and state (0-1).",
    default_enabled: false,
};
pub const OPERATIONS: MetricDef = MetricDef {
    name: "system.paging.operations",
    unit: "{operation}",
    kind: Kind::Counter,
    description: "Paging operations by direction and type.",
    default_enabled: true,
};
pub const FAULTS: MetricDef = MetricDef {
    name: "system.paging.faults",
    unit: "{fault}",
    kind: Kind::Counter,
    description: "Page faults by type.",
    default_enabled: true,
};
pub const METRICS: &[MetricDef] = &[USAGE, UTILIZATION, OPERATIONS, FAULTS];

impl PagingConfig {
    pub fn problems(&self, path: &str, out: &mut Vec<String>) {
        super::metric_problems(METRICS, &self.metrics, path, out);
    }
}

/// The `/proc/vmstat` counters used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmStat {
    pub pgpgin: Option<u64>,
    pub pgpgout: Option<u64>,
    pub pswpin: Option<u64>,
    pub pswpout: Option<u64>,
    pub pgfault: Option<u64>,
    pub pgmajfault: Option<u64>,
}

/// Parses `/proc/vmstat` (`name value` lines; unknown names are ignored).
pub fn parse_vmstat(text: &str) -> VmStat {
    let mut v = VmStat::default();
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(key), Some(value)) = (f.next(), f.next().and_then(super::num)) else {
            continue;
        };
        let slot = match key {
            "pgpgin" => &mut v.pgpgin,
            "pgpgout" => &mut v.pgpgout,
            "pswpin" => &mut v.pswpin,
            "pswpout" => &mut v.pswpout,
            "pgfault" => &mut v.pgfault,
            "pgmajfault" => &mut v.pgmajfault,
            _ => continue,
        };
        *slot = Some(value);
    }
    v
}

/// One swap device from `/proc/swaps`, sizes in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Swap {
    pub device: String,
    pub size: u64,
    pub used: u64,
}

/// Parses `/proc/swaps`: a header, then `Filename Type Size Used Priority`
/// with sizes in KiB.
pub fn parse_swaps(text: &str) -> Vec<Swap> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_ascii_whitespace().collect();
            let (size, used) = (super::num(f.get(2)?)?, super::num(f.get(3)?)?);
            Some(Swap {
                device: f[0].to_string(),
                size: size.saturating_mul(1024),
                used: used.saturating_mul(1024),
            })
        })
        .collect()
}

pub struct PagingScraper {
    enabled: Enabled,
    swaps: PathBuf,
    vmstat: PathBuf,
}

impl PagingScraper {
    pub fn new(config: &PagingConfig, cx: &Cx) -> Self {
        PagingScraper {
            enabled: Enabled::new(METRICS, &config.metrics),
            swaps: cx.proc.join("swaps"),
            vmstat: cx.proc.join("vmstat"),
        }
    }
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs.iter().map(|(k, v)| kv_str(k, *v)).collect()
}

impl Scraper for PagingScraper {
    fn name(&self) -> &'static str {
        "paging"
    }

    fn scrape(&mut self, cx: &mut Cx, out: &mut Out) -> Result<(), ScrapeError> {
        let (now, start) = (cx.now, cx.boot_time);
        let e = &self.enabled;
        // Each file stands alone: one unreadable file does not hide the other's figures.
        let mut failed = None;
        if e.on(&USAGE) || e.on(&UTILIZATION) {
            match super::read_into(&self.swaps, &mut cx.buf) {
                Ok(()) => {
                    let (mut usage, mut util) = (vec![], vec![]);
                    for s in parse_swaps(&cx.buf) {
                        let free = s.size.saturating_sub(s.used);
                        for (state, v) in [("used", s.used.min(s.size)), ("free", free)] {
                            let a = attrs(&[("system.device", &s.device), ("system.paging.state", state)]);
                            if let Some(r) = ratio(v as f64, s.size as f64) {
                                util.push(double_point(r, 0, now, a.clone()));
                            }
                            usage.push(int_point(v, start, now, a));
                        }
                    }
                    e.push(&mut out.host, &USAGE, usage);
                    e.push(&mut out.host, &UTILIZATION, util);
                }
                // A kernel built without swap has no /proc/swaps: no swap, no points.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => failed = Some(ScrapeError::read(&self.swaps, err)),
            }
        }
        if e.on(&OPERATIONS) || e.on(&FAULTS) {
            cx.read(&self.vmstat)?;
            let v = parse_vmstat(&cx.buf);
            let ops = [
                ("in", "major", v.pswpin),
                ("out", "major", v.pswpout),
                ("in", "minor", v.pgpgin),
                ("out", "minor", v.pgpgout),
            ]
            .into_iter()
            .filter_map(|(dir, ty, n)| {
                let a = attrs(&[("system.paging.direction", dir), ("system.paging.fault.type", ty)]);
                Some(int_point(n?, start, now, a))
            })
            .collect();
            e.push(&mut out.host, &OPERATIONS, ops);
            let minor = v.pgfault.zip(v.pgmajfault).map(|(all, major)| all.saturating_sub(major));
            let faults = [("major", v.pgmajfault), ("minor", minor)]
                .into_iter()
                .filter_map(|(ty, n)| {
                    Some(int_point(n?, start, now, attrs(&[("system.paging.fault.type", ty)])))
                })
                .collect();
            e.push(&mut out.host, &FAULTS, faults);
        }
        failed.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_vmstat() {
        let v = parse_vmstat(include_str!("../../tests/fixtures/host/vmstat"));
        assert!(v.pgpgin.is_some() && v.pgpgout.is_some() && v.pswpin.is_some() && v.pswpout.is_some());
        assert!(v.pgfault >= v.pgmajfault && v.pgmajfault.is_some());
        let partial = parse_vmstat("pgfault 10\npgmajfault x\nnr_free_pages 5\n\njunk\n");
        assert_eq!(partial, VmStat { pgfault: Some(10), ..Default::default() });
    }

    #[test]
    fn parses_swaps() {
        let text = "\
Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority
/dev/dm-1                               partition\t8388604\t\t1024\t\t-2
/swap\\040file                           file\t\t1048572\t\t0\t\t-3
/broken partition
";
        let s = parse_swaps(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], Swap { device: "/dev/dm-1".into(), size: 8388604 * 1024, used: 1024 * 1024 });
        assert!(parse_swaps("Filename\tType\tSize\tUsed\tPriority\n").is_empty());
    }
}
