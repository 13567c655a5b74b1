//! `filesystem` scraper: the mount table and `statvfs` → space and inodes by
//! state, and the fraction used, per mounted filesystem.
//!
//! The mount table is `/proc/self/mounts`, or the host's init's
//! (`<root>/proc/1/mounts`) when `root_path` points at a mounted host; each
//! mount point is then measured at `<root><mount point>`. Virtual
//! filesystems (the types `/proc/filesystems` marks `nodev`: proc, sysfs,
//! tmpfs, overlay, cgroup…) are left out unless `include_virtual_filesystems`
//! is set, as psutil does. When a mount point is mounted over, only the last
//! mount is measured. A mount that cannot be measured (permission, gone) is
//! skipped quietly.
//!
//! Utilisation is `used / (used + free)`, where `free` is what an
//! unprivileged user may still write: the `Use%` that `df` prints.

use super::{
    Cx, Enabled, Filter, Kind, MetricDef, MetricToggles, Out, ScrapeError, Scraper, double_point, int_point,
    ratio,
};
use magpie_core::otlp::kv_str;
use magpie_core::proto::common::v1::KeyValue;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Settings of the `filesystem` scraper.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConfig {
    /// Mount points to report (globs, `/data*`); empty reports every one.
    #[serde(default)]
    pub include_mount_points: Vec<String>,
    #[serde(default)]
    pub exclude_mount_points: Vec<String>,
    /// Filesystem types to report (`ext4`, `xfs`); empty reports every type.
    #[serde(default)]
    pub include_fs_types: Vec<String>,
    #[serde(default)]
    pub exclude_fs_types: Vec<String>,
    /// Also report virtual filesystems (tmpfs, overlay, proc…).
    #[serde(default)]
    pub include_virtual_filesystems: bool,
    #[serde(default)]
    pub metrics: MetricToggles,
}

pub const USAGE: MetricDef = MetricDef {
    name: "system.filesystem.usage",
    unit: "By",
    kind: Kind::UpDownCounter,
    description: "Filesystem space by state: used, free (available to users) and reserved (for root).",
    default_enabled: true,
};
pub const UTILIZATION: MetricDef = MetricDef {
    name: "system.filesystem.utilization",
    unit: "1",
    kind: Kind::Gauge,
    description: "Fraction of the filesystem's usable space that is used (0-1), as df's Use%.",
    default_enabled: true,
};
pub const INODES: MetricDef = MetricDef {
    name: "system.filesystem.inodes.usage",
    unit: "{inode}",
    kind: Kind::UpDownCounter,
    description: "Inodes by state: used and free.",
    default_enabled: true,
};
pub const LIMIT: MetricDef = MetricDef {
    name: "system.filesystem.limit",
    unit: "By",
    kind: Kind::UpDownCounter,
    description: "Total size of the filesystem.",
    default_enabled: false,
};
pub const METRICS: &[MetricDef] = &[USAGE, UTILIZATION, INODES, LIMIT];

impl FilesystemConfig {
    pub fn problems(&self, path: &str, out: &mut Vec<String>) {
        super::metric_problems(METRICS, &self.metrics, path, out);
    }
}

/// One line of a mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
    pub read_only: bool,
}

/// Parses a mount table (`/proc/mounts` format): device, mount point, type,
/// options, dump, pass. Spaces and other special characters in names are
/// written as octal escapes (`\040`), which are decoded.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let (device, mount_point, fs_type) = (f.next()?, f.next()?, f.next()?);
            let read_only = f.next().is_some_and(|o| o.split(',').any(|o| o == "ro"));
            Some(Mount {
                device: unescape(device),
                mount_point: unescape(mount_point),
                fs_type: fs_type.to_string(),
                read_only,
            })
        })
        .collect()
}

/// Decodes the kernel's `\ooo` octal escapes.
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The virtual (`nodev`) filesystem types listed in `/proc/filesystems`.
pub fn parse_filesystems(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_ascii_whitespace();
            (f.next()? == "nodev").then(|| f.next().map(str::to_string)).flatten()
        })
        .collect()
}

/// Used when `/proc/filesystems` cannot be read.
const VIRTUAL_FALLBACK: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// Space and inodes of one filesystem, from `statvfs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub used: u64,
    pub free: u64,
    pub reserved: u64,
    pub inodes_used: u64,
    pub inodes_free: u64,
}

impl Usage {
    /// From `statvfs` figures: `f_frsize`, `f_blocks`, `f_bfree`, `f_bavail`,
    /// `f_files`, `f_ffree`.
    pub fn from_statvfs(frsize: u64, blocks: u64, bfree: u64, bavail: u64, files: u64, ffree: u64) -> Usage {
        let bavail = bavail.min(bfree);
        Usage {
            used: blocks.saturating_sub(bfree).saturating_mul(frsize),
            free: bavail.saturating_mul(frsize),
            reserved: (bfree - bavail).saturating_mul(frsize),
            inodes_used: files.saturating_sub(ffree),
            inodes_free: ffree.min(files),
        }
    }

    /// `used / (used + free)`; `None` for an empty filesystem.
    pub fn utilization(&self) -> Option<f64> {
        ratio(self.used as f64, self.used as f64 + self.free as f64)
    }
}

/// The mounts to measure: virtual ones dropped unless wanted, the filters
/// applied, and only the last mount of each mount point kept.
pub fn select<'a>(
    mounts: &'a [Mount],
    virtual_types: &[String],
    include_virtual: bool,
    points: &Filter,
    types: &Filter,
) -> Vec<&'a Mount> {
    let mut out: Vec<&Mount> = Vec::new();
    for m in mounts {
        if !include_virtual && virtual_types.contains(&m.fs_type) {
            continue;
        }
        if !points.admits(&m.mount_point) || !types.admits(&m.fs_type) {
            continue;
        }
        out.retain(|o| o.mount_point != m.mount_point);
        out.push(m);
    }
    out
}

pub struct FilesystemScraper {
    enabled: Enabled,
    points: Filter,
    types: Filter,
    include_virtual: bool,
    virtual_types: Vec<String>,
    mounts_path: PathBuf,
}

impl FilesystemScraper {
    pub fn new(config: &FilesystemConfig, cx: &Cx) -> Self {
        let mut buf = String::new();
        let virtual_types = match super::read_into(&cx.proc.join("filesystems"), &mut buf) {
            Ok(()) => parse_filesystems(&buf),
            Err(_) => VIRTUAL_FALLBACK.iter().map(|s| s.to_string()).collect(),
        };
        let host_init = cx.proc.join("1/mounts");
        let mounts_path = if cx.root != Path::new("/") && host_init.exists() {
            host_init
        } else {
            cx.proc.join("self/mounts")
        };
        FilesystemScraper {
            enabled: Enabled::new(METRICS, &config.metrics),
            points: Filter::new(&config.include_mount_points, &config.exclude_mount_points),
            types: Filter::new(&config.include_fs_types, &config.exclude_fs_types),
            include_virtual: config.include_virtual_filesystems,
            virtual_types,
            mounts_path,
        }
    }
}

fn attrs(m: &Mount, state: Option<&str>) -> Vec<KeyValue> {
    let mut a = vec![
        kv_str("system.device", &m.device),
        kv_str("system.filesystem.mountpoint", &m.mount_point),
        kv_str("system.filesystem.type", &m.fs_type),
        kv_str("system.filesystem.mode", if m.read_only { "ro" } else { "rw" }),
    ];
    if let Some(s) = state {
        a.push(kv_str("system.filesystem.state", s));
    }
    a
}

impl Scraper for FilesystemScraper {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn scrape(&mut self, cx: &mut Cx, out: &mut Out) -> Result<(), ScrapeError> {
        cx.read(&self.mounts_path)?;
        let mounts = parse_mounts(&cx.buf);
        let chosen = select(&mounts, &self.virtual_types, self.include_virtual, &self.points, &self.types);
        let (now, start) = (cx.now, cx.boot_time);
        let (mut usage, mut util, mut inodes, mut limit) = (vec![], vec![], vec![], vec![]);
        let mut path = String::new();
        for m in chosen {
            path.clear();
            path.push_str(cx.root.to_str().unwrap_or("/").trim_end_matches('/'));
            path.push_str(&m.mount_point);
            let Ok(s) = rustix::fs::statvfs(path.as_str()) else {
                continue;
            };
            let u = Usage::from_statvfs(s.f_frsize, s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree);
            if self.enabled.on(&USAGE) {
                for (state, v) in [("used", u.used), ("free", u.free), ("reserved", u.reserved)] {
                    usage.push(int_point(v, start, now, attrs(m, Some(state))));
                }
            }
            if self.enabled.on(&UTILIZATION)
                && let Some(r) = u.utilization()
            {
                util.push(double_point(r, 0, now, attrs(m, None)));
            }
            if self.enabled.on(&INODES) && u.inodes_used + u.inodes_free > 0 {
                for (state, v) in [("used", u.inodes_used), ("free", u.inodes_free)] {
                    inodes.push(int_point(v, start, now, attrs(m, Some(state))));
                }
            }
            if self.enabled.on(&LIMIT) {
                limit.push(int_point(u.used + u.free + u.reserved, start, now, attrs(m, None)));
            }
        }
        let e = &self.enabled;
        e.push(&mut out.host, &USAGE, usage);
        e.push(&mut out.host, &UTILIZATION, util);
        e.push(&mut out.host, &INODES, inodes);
        e.push(&mut out.host, &LIMIT, limit);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = include_str!("../../tests/fixtures/host/mounts");
    const FILESYSTEMS: &str = include_str!("../../tests/fixtures/host/filesystems");

    /// A container host: the root on ext4, a data disk, Docker's overlay and a
    /// mount point with a space in its name.
    const DOCKER_HOST: &str = "\
/dev/nvme0n1p1 / ext4 rw,relatime,discard 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev,size=1601584k,mode=755 0 0
/dev/nvme1n1 /data xfs rw,relatime,attr2,inode64 0 0
/dev/nvme0n1p15 /boot/efi vfat ro,relatime,fmask=0077 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw,relatime,lowerdir=/x 0 0
/dev/sdb1 /mnt/My\\040Disk ext4 rw 0 0
/dev/nvme1n1 /data xfs rw,relatime 0 0
short line
";

    fn names(ms: &[&Mount]) -> Vec<String> {
        ms.iter().map(|m| m.mount_point.clone()).collect()
    }

    #[test]
    fn parses_mounts_and_filesystems() {
        let m = parse_mounts(MOUNTS);
        assert_eq!(m.len(), 19);
        assert_eq!(
            m[5],
            Mount {
                device: "/dev/vda".into(),
                mount_point: "/".into(),
                fs_type: "ext4".into(),
                read_only: false
            }
        );
        let v = parse_filesystems(FILESYSTEMS);
        for t in ["proc", "tmpfs", "overlay", "cgroup2"] {
            assert!(v.iter().any(|x| x == t), "{t} is virtual");
        }
        assert!(!v.iter().any(|x| x == "ext4"));
        let chosen = select(&m, &v, false, &Filter::default(), &Filter::default());
        assert_eq!(names(&chosen), ["/"]);
    }

    #[test]
    fn selection() {
        let m = parse_mounts(DOCKER_HOST);
        assert_eq!(m.len(), 8);
        assert_eq!(m[6].mount_point, "/mnt/My Disk");
        assert!(m[4].read_only);
        let v = parse_filesystems(FILESYSTEMS);
        let none = Filter::default();
        let cases: &[(bool, Filter, Filter, &[&str])] = &[
            (false, none.clone(), none.clone(), &["/", "/boot/efi", "/mnt/My Disk", "/data"]),
            (
                true,
                none.clone(),
                none.clone(),
                &[
                    "/",
                    "/proc",
                    "/run",
                    "/boot/efi",
                    "/var/lib/docker/overlay2/abc/merged",
                    "/mnt/My Disk",
                    "/data",
                ],
            ),
            (false, Filter::new(&[], &["/boot*".into()]), none.clone(), &["/", "/mnt/My Disk", "/data"]),
            (false, Filter::new(&["/data".into()], &[]), none.clone(), &["/data"]),
            (false, none.clone(), Filter::new(&["ext4".into()], &[]), &["/", "/mnt/My Disk"]),
            (false, none.clone(), Filter::new(&[], &["vfat".into(), "xfs".into()]), &["/", "/mnt/My Disk"]),
            (
                true,
                none.clone(),
                Filter::new(&[], &["overlay".into(), "proc".into()]),
                &["/", "/run", "/boot/efi", "/mnt/My Disk", "/data"],
            ),
        ];
        for (virt, points, types, want) in cases {
            assert_eq!(
                names(&select(&m, &v, *virt, points, types)),
                *want,
                "virtual={virt} {points:?} {types:?}"
            );
        }
    }

    #[test]
    fn usage_math() {
        // 1000 blocks of 4 KiB: 600 free of which 500 available to users.
        let u = Usage::from_statvfs(4096, 1000, 600, 500, 100, 40);
        assert_eq!(
            u,
            Usage {
                used: 400 * 4096,
                free: 500 * 4096,
                reserved: 100 * 4096,
                inodes_used: 60,
                inodes_free: 40
            }
        );
        assert_eq!(u.utilization(), Some(400.0 / 900.0));
        // An empty pseudo filesystem: no utilisation rather than NaN.
        assert_eq!(Usage::from_statvfs(4096, 0, 0, 0, 0, 0).utilization(), None);
        // bavail above bfree (seen on some network filesystems) is clamped.
        let odd = Usage::from_statvfs(1, 10, 5, 8, 0, 0);
        assert_eq!((odd.free, odd.reserved), (5, 0));
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape(r"/tab\011x"), "/tab\tx");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
        assert_eq!(unescape(r"/back\134slash"), r"/back\slash");
    }
}
