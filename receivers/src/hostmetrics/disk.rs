//! `disk` scraper: `/proc/diskstats` → bytes and operations by direction,
//! time busy, time spent per direction and merged requests, per device.
//!
//! Sectors in `/proc/diskstats` are always 512 bytes, whatever the device's
//! real sector size. Devices that have never done any IO (unused loop and
//! ram devices) are left out.

use super::{
    Cx, Enabled, Filter, Kind, MetricDef, MetricToggles, Out, ScrapeError, Scraper, double_point, int_point,
};
use magpie_core::otlp::kv_str;
use magpie_core::proto::common::v1::KeyValue;
use serde::Deserialize;
use std::path::PathBuf;

/// Settings of the `disk` scraper.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Device names to report (globs, `sd*`); empty reports every device.
    #[serde(default)]
    pub include_devices: Vec<String>,
    /// Device names never to report (globs, `loop*`).
    #[serde(default)]
    pub exclude_devices: Vec<String>,
    #[serde(default)]
    pub metrics: MetricToggles,
}

pub const IO: MetricDef = MetricDef {
    name: "system.disk.io",
    unit: "By",
    kind: Kind::Counter,
    description: "Bytes read from and written to each device.",
    default_enabled: true,
};
pub const OPERATIONS: MetricDef = MetricDef {
    name: "system.disk.operations",
    unit: "{operation}",
    kind: Kind::Counter,
    description: "Read and write operations completed on each device.",
    default_enabled: true,
};
pub const IO_TIME: MetricDef = MetricDef {
    name: "system.disk.io_time",
    unit: "s",
    kind: Kind::Counter,
    description: "Time each device was busy with at least one operation.",
    default_enabled: true,
};
pub const OPERATION_TIME: MetricDef = MetricDef {
    name: "system.disk.operation_time",
    unit: "s",
    kind: Kind::Counter,
    description: "Sum of the time each operation took, by direction.",
    default_enabled: true,
};
pub const MERGED: MetricDef = MetricDef {
    name: "system.disk.merged",
    unit: "{operation}",
    kind: Kind::Counter,
    description: "Adjacent reads and writes merged into one operation.",
    default_enabled: true,
};
pub const METRICS: &[MetricDef] = &[IO, OPERATIONS, IO_TIME, OPERATION_TIME, MERGED];

impl DiskConfig {
    pub fn problems(&self, path: &str, out: &mut Vec<String>) {
        super::metric_problems(METRICS, &self.metrics, path, out);
    }
}

/// One line of `/proc/diskstats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub name: String,
    pub reads: u64,
    pub reads_merged: u64,
    pub sectors_read: u64,
    pub read_ms: u64,
    pub writes: u64,
    pub writes_merged: u64,
    pub sectors_written: u64,
    pub write_ms: u64,
    pub io_ms: u64,
}

impl DiskStats {
    fn is_idle(&self) -> bool {
        self.reads == 0 && self.writes == 0 && self.io_ms == 0
    }
}

/// Parses `/proc/diskstats`. Lines have 14 columns (up to 4.17), 18 (4.18
/// adds discards) or 20 (5.5 adds flushes); the extra columns are ignored.
/// Partitions on kernels before 2.6.25 had a short 7-column form (reads,
/// sectors read, writes, sectors written), read as such. Anything else is
/// skipped.
pub fn parse_diskstats(text: &str) -> Vec<DiskStats> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|s| super::num(s));
        let Some(name) = f.get(2) else { continue };
        let d = if f.len() >= 14 {
            let vals: Option<Vec<u64>> = (3..14).map(n).collect();
            let Some(v) = vals else { continue };
            DiskStats {
                name: name.to_string(),
                reads: v[0],
                reads_merged: v[1],
                sectors_read: v[2],
                read_ms: v[3],
                writes: v[4],
                writes_merged: v[5],
                sectors_written: v[6],
                write_ms: v[7],
                io_ms: v[9],
            }
        } else if f.len() == 7 {
            let (Some(reads), Some(sectors_read), Some(writes), Some(sectors_written)) =
                (n(3), n(4), n(5), n(6))
            else {
                continue;
            };
            DiskStats {
                name: name.to_string(),
                reads,
                sectors_read,
                writes,
                sectors_written,
                ..Default::default()
            }
        } else {
            continue;
        };
        out.push(d);
    }
    out
}

pub struct DiskScraper {
    enabled: Enabled,
    filter: Filter,
    path: PathBuf,
}

impl DiskScraper {
    pub fn new(config: &DiskConfig, cx: &Cx) -> Self {
        DiskScraper {
            enabled: Enabled::new(METRICS, &config.metrics),
            filter: Filter::new(&config.include_devices, &config.exclude_devices),
            path: cx.proc.join("diskstats"),
        }
    }
}

fn attrs(device: &str, direction: Option<&str>) -> Vec<KeyValue> {
    let mut a = vec![kv_str("system.device", device)];
    if let Some(d) = direction {
        a.push(kv_str("disk.io.direction", d));
    }
    a
}

impl Scraper for DiskScraper {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn scrape(&mut self, cx: &mut Cx, out: &mut Out) -> Result<(), ScrapeError> {
        cx.read(&self.path)?;
        let disks: Vec<DiskStats> = parse_diskstats(&cx.buf)
            .into_iter()
            .filter(|d| !d.is_idle() && self.filter.admits(&d.name))
            .collect();
        let (now, start) = (cx.now, cx.boot_time);
        let (mut io, mut ops, mut io_time, mut op_time, mut merged) =
            (vec![], vec![], vec![], vec![], vec![]);
        let e = &self.enabled;
        for d in &disks {
            let dirs = [
                ("read", d.sectors_read, d.reads, d.read_ms, d.reads_merged),
                ("write", d.sectors_written, d.writes, d.write_ms, d.writes_merged),
            ];
            for (dir, sectors, n, ms, m) in dirs {
                if e.on(&IO) {
                    io.push(int_point(sectors.saturating_mul(512), start, now, attrs(&d.name, Some(dir))));
                }
                if e.on(&OPERATIONS) {
                    ops.push(int_point(n, start, now, attrs(&d.name, Some(dir))));
                }
                if e.on(&OPERATION_TIME) {
                    op_time.push(double_point(ms as f64 / 1000.0, start, now, attrs(&d.name, Some(dir))));
                }
                if e.on(&MERGED) {
                    merged.push(int_point(m, start, now, attrs(&d.name, Some(dir))));
                }
            }
            if e.on(&IO_TIME) {
                io_time.push(double_point(d.io_ms as f64 / 1000.0, start, now, attrs(&d.name, None)));
            }
        }
        e.push(&mut out.host, &IO, io);
        e.push(&mut out.host, &OPERATIONS, ops);
        e.push(&mut out.host, &IO_TIME, io_time);
        e.push(&mut out.host, &OPERATION_TIME, op_time);
        e.push(&mut out.host, &MERGED, merged);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/host/diskstats");

    #[test]
    fn parses_a_real_diskstats() {
        let d = parse_diskstats(FIXTURE);
        assert_eq!(d.len(), 2);
        let vda = &d[0];
        assert_eq!(vda.name, "vda");
        assert_eq!(
            (vda.reads, vda.reads_merged, vda.sectors_read, vda.read_ms),
            (68562, 6847, 4136626, 63534)
        );
        assert_eq!(
            (vda.writes, vda.writes_merged, vda.sectors_written, vda.write_ms),
            (27664, 33602, 4681992, 17038)
        );
        assert_eq!(vda.io_ms, 10164);
        assert!(d[1].is_idle());
    }

    #[test]
    fn kernel_variants_and_junk() {
        let text = "\
   8       0 sda 1 2 3 4 5 6 7 8 0 10 11
   8       1 sda1 1 2 3 4 5 6 7 8 0 10 11 0 0 0 0
   8       2 sda2 5 6 7 8
   8       3 sda3 1 2 3 4 5 6 7 8 0 10 11 0 0 0 0 0 0
 259       0 nvme0n1 1 2 3 4 5 6 7 8 0 10 11 0 0 0 0 9 9 1 1 1 1
   8       4 sda4 x 2 3 4 5 6 7 8 0 10 11
   8       5 sda5 1 2
garbage
";
        let d = parse_diskstats(text);
        let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda", "sda1", "sda2", "sda3", "nvme0n1"]);
        assert_eq!((d[2].reads, d[2].sectors_read, d[2].writes, d[2].sectors_written), (5, 6, 7, 8));
        assert_eq!(d[4].io_ms, 10);
    }
}
