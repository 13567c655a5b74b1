//! `process` scraper: per-process CPU, memory, threads, file descriptors and
//! disk IO for the processes the config picks out (by name, executable,
//! command-line regex or pid file), each as its own resource with
//! `process.pid`, `process.executable.name`, `process.command_line` and
//! friends. Also the process table ([`ProcTable`]) that the `processes`
//! scraper counts from, read once per scrape.
//!
//! Matching by name, executable and command line is decided once per
//! process (a pid together with its start time), so a steady scrape reads
//! only each process's `stat`, plus `io`, `status` and the `fd` directory
//! of the matched ones. Pid files are re-read every scrape.
//!
//! A process that exits mid-scrape, or whose files cannot be read (another
//! user's `io` without privileges), is skipped quietly, or reported without
//! the figures it hides; nothing is logged for it.

use super::{
    Cx, Enabled, Kind, MetricDef, MetricToggles, Out, ScrapeError, Scraper, double_point, glob, int_point,
    read_into,
};
use magpie_core::otlp::{kv_int, kv_str};
use magpie_core::proto::common::v1::KeyValue;
use regex::Regex;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Settings of the `process` scraper.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// Which processes to report; at least one matcher is required.
    #[serde(default)]
    pub include: Matchers,
    /// Processes never to report, even when included.
    #[serde(default)]
    pub exclude: Matchers,
    /// Add `process.owner` (the user name of the real uid) to each resource.
    #[serde(default = "yes")]
    pub include_owner: bool,
    #[serde(default)]
    pub metrics: MetricToggles,
}

fn yes() -> bool {
    true
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            include: Matchers::default(),
            exclude: Matchers::default(),
            include_owner: true,
            metrics: MetricToggles::default(),
        }
    }
}

/// Ways to pick processes; a process matches when any one matcher does.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matchers {
    /// Globs over the process's short name (`comm`), the base name of its
    /// executable or the base name of its first argument (`uvicorn`).
    #[serde(default)]
    pub names: Vec<String>,
    /// Globs over the full path of the executable (`/usr/bin/python3*`).
    #[serde(default)]
    pub executables: Vec<String>,
    /// Regular expressions searched in the command line, arguments joined
    /// by spaces (`uvicorn .*app:main`).
    #[serde(default)]
    pub cmdline_regex: Vec<String>,
    /// Files holding a pid (`/run/nginx.pid`), read every scrape, under `root_path`.
    #[serde(default)]
    pub pid_files: Vec<String>,
}

impl Matchers {
    fn is_empty(&self) -> bool {
        self.names.is_empty()
            && self.executables.is_empty()
            && self.cmdline_regex.is_empty()
            && self.pid_files.is_empty()
    }

    fn problems(&self, path: &str, out: &mut Vec<String>) {
        for (i, r) in self.cmdline_regex.iter().enumerate() {
            if let Err(e) = Regex::new(r) {
                let first = e.to_string().lines().last().unwrap_or_default().trim().to_string();
                out.push(format!("{path}.cmdline_regex[{i}]: invalid regex `{r}`: {first}"));
            }
        }
    }
}

pub const CPU_TIME: MetricDef = MetricDef {
    name: "process.cpu.time",
    unit: "s",
    kind: Kind::Counter,
    description: "CPU seconds the process used, by mode (user, system).",
    default_enabled: true,
};
pub const CPU_UTILIZATION: MetricDef = MetricDef {
    name: "process.cpu.utilization",
    unit: "1",
    kind: Kind::Gauge,
    description: "CPU time used since the last scrape, divided by the elapsed time and the number of logical CPUs, by mode.",
    default_enabled: true,
};
pub const MEMORY_USAGE: MetricDef = MetricDef {
    name: "process.memory.usage",
    unit: "By",
    kind: Kind::UpDownCounter,
    description: "Resident set size.",
    default_enabled: true,
};
pub const MEMORY_VIRTUAL: MetricDef = MetricDef {
    name: "process.memory.virtual",
    unit: "By",
    kind: Kind::UpDownCounter,
    description: "Virtual memory size.",
    default_enabled: true,
};
pub const THREADS: MetricDef = MetricDef {
    name: "process.thread.count",
    unit: "{thread}",
    kind: Kind::UpDownCounter,
    description: "Threads in the process.",
    default_enabled: true,
};
pub const OPEN_FDS: MetricDef = MetricDef {
    name: "process.unix.file_descriptor.count",
    unit: "{file_descriptor}",
    kind: Kind::UpDownCounter,
    description: "Open file descriptors (needs the right to read the process's fd directory).",
    default_enabled: true,
};
pub const DISK_IO: MetricDef = MetricDef {
    name: "process.disk.io",
    unit: "By",
    kind: Kind::Counter,
    description: "Bytes the process read from and wrote to storage (needs the right to read its io file).",
    default_enabled: true,
};
pub const PAGING_FAULTS: MetricDef = MetricDef {
    name: "process.paging.faults",
    unit: "{fault}",
    kind: Kind::Counter,
    description: "Page faults, by type (major, minor).",
    default_enabled: false,
};
pub const CONTEXT_SWITCHES: MetricDef = MetricDef {
    name: "process.context_switches",
    unit: "{context_switch}",
    kind: Kind::Counter,
    description: "Context switches, by type (voluntary, involuntary).",
    default_enabled: false,
};
pub const UPTIME: MetricDef = MetricDef {
    name: "process.uptime",
    unit: "s",
    kind: Kind::Gauge,
    description: "Time since the process started.",
    default_enabled: false,
};
pub const METRICS: &[MetricDef] = &[
    CPU_TIME,
    CPU_UTILIZATION,
    MEMORY_USAGE,
    MEMORY_VIRTUAL,
    THREADS,
    OPEN_FDS,
    DISK_IO,
    PAGING_FAULTS,
    CONTEXT_SWITCHES,
    UPTIME,
];

impl ProcessConfig {
    pub fn problems(&self, path: &str, out: &mut Vec<String>) {
        if self.include.is_empty() {
            out.push(format!(
                "{path}.include: name at least one of names, executables, cmdline_regex or pid_files \
                 (cmdline_regex: [\"\"] matches every process)"
            ));
        }
        self.include.problems(&format!("{path}.include"), out);
        self.exclude.problems(&format!("{path}.exclude"), out);
        super::metric_problems(METRICS, &self.metrics, path, out);
    }
}

// ---------------------------------------------------------------------------
// Parsing.

/// The fields used from `/proc/<pid>/stat`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PidStat {
    pub pid: u32,
    /// The short name, at most 15 bytes.
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub minflt: u64,
    pub majflt: u64,
    /// CPU ticks in user and kernel mode.
    pub utime: u64,
    pub stime: u64,
    pub num_threads: u64,
    /// Ticks after boot when the process started.
    pub starttime: u64,
    /// Bytes of virtual memory.
    pub vsize: u64,
    /// Resident pages.
    pub rss: u64,
}

/// Parses `/proc/<pid>/stat`. The name sits in parentheses and may itself
/// hold spaces and parentheses (`(tmux: server)`, `((sd-pam))`), so the
/// fields are counted from the last `)`. Fewer than 22 fields after the
/// name is malformed; extra fields (newer kernels add them) are ignored.
pub fn parse_pid_stat(text: &str) -> Option<PidStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_string();
    let f: Vec<&str> = text[close + 1..].split_ascii_whitespace().take(22).collect();
    if f.len() < 22 {
        return None;
    }
    let n = |i: usize| f[i].parse::<u64>().ok();
    Some(PidStat {
        pid,
        comm,
        state: f[0].chars().next()?,
        ppid: f[1].parse().ok()?,
        minflt: n(7)?,
        majflt: n(9)?,
        utime: n(11)?,
        stime: n(12)?,
        num_threads: n(17)?,
        starttime: n(19)?,
        vsize: n(20)?,
        // A signed field in the kernel; never negative in practice.
        rss: f[21].parse::<i64>().ok()?.max(0).unsigned_abs(),
    })
}

/// The fields used from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidStatus {
    /// The real uid.
    pub uid: Option<u32>,
    pub voluntary_ctxt_switches: Option<u64>,
    pub nonvoluntary_ctxt_switches: Option<u64>,
}

/// Parses `/proc/<pid>/status` (`Key:\tvalue` lines).
pub fn parse_pid_status(text: &str) -> PidStatus {
    let mut s = PidStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let first = value.split_ascii_whitespace().next();
        match key {
            "Uid" => s.uid = first.and_then(|v| v.parse().ok()),
            "voluntary_ctxt_switches" => s.voluntary_ctxt_switches = first.and_then(super::num),
            "nonvoluntary_ctxt_switches" => s.nonvoluntary_ctxt_switches = first.and_then(super::num),
            _ => {}
        }
    }
    s
}

/// Bytes read from and written to storage, from `/proc/<pid>/io`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidIo {
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// Parses `/proc/<pid>/io`; `None` without `read_bytes` and `write_bytes`.
pub fn parse_pid_io(text: &str) -> Option<PidIo> {
    let (mut r, mut w) = (None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "read_bytes" => r = super::num(value.trim()),
            "write_bytes" => w = super::num(value.trim()),
            _ => {}
        }
    }
    Some(PidIo { read_bytes: r?, write_bytes: w? })
}

/// `/proc/<pid>/cmdline`: NUL-separated arguments, joined by spaces.
pub fn parse_cmdline(raw: &str) -> String {
    raw.trim_end_matches('\0').replace('\0', " ")
}

/// `/etc/passwd` → (uid, user name).
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            (!name.is_empty() && !name.starts_with('#')).then(|| (uid, name.to_string()))
        })
        .collect()
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

// ---------------------------------------------------------------------------
// The process table.

/// Every process's `stat`, read once per scrape.
#[derive(Default)]
pub struct ProcTable {
    pub entries: Vec<PidStat>,
    path: String,
}

impl ProcTable {
    /// Re-reads every `/proc/<pid>/stat`. A process that exits while the
    /// table is read is simply absent.
    pub fn refresh(&mut self, proc: &Path, buf: &mut String) -> Result<(), ScrapeError> {
        self.entries.clear();
        let dir = std::fs::read_dir(proc).map_err(|e| ScrapeError::read(proc, e))?;
        let base = proc.to_str().unwrap_or("/proc").trim_end_matches('/');
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            self.path.clear();
            let _ = write!(self.path, "{base}/{pid}/stat");
            if read_into(Path::new(&self.path), buf).is_err() {
                continue;
            }
            if let Some(s) = parse_pid_stat(buf) {
                self.entries.push(s);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Matching.

/// Matchers ready to use.
struct Compiled {
    names: Vec<String>,
    executables: Vec<String>,
    regexes: Vec<Regex>,
    pid_files: Vec<PathBuf>,
}

impl Compiled {
    fn new(m: &Matchers, root: &Path) -> Result<Self, regex::Error> {
        Ok(Compiled {
            names: m.names.clone(),
            executables: m.executables.clone(),
            regexes: m.cmdline_regex.iter().map(|r| Regex::new(r)).collect::<Result<_, _>>()?,
            pid_files: m.pid_files.iter().map(|p| root.join(p.trim_start_matches('/'))).collect(),
        })
    }

    fn needs_cmdline(&self) -> bool {
        !self.names.is_empty() || !self.regexes.is_empty()
    }

    fn needs_exe(&self) -> bool {
        !self.names.is_empty() || !self.executables.is_empty()
    }

    /// Whether a process matches by name, executable or command line.
    fn matches(&self, id: &Identity) -> bool {
        let exe = id.exe.as_deref();
        let argv0 = id.argv0();
        self.names.iter().any(|p| {
            glob(p, &id.comm)
                || exe.is_some_and(|e| glob(p, base_name(e)))
                || argv0.is_some_and(|a| glob(p, base_name(a)))
        }) || exe.is_some_and(|e| self.executables.iter().any(|p| glob(p, e)))
            || id.cmdline.as_deref().is_some_and(|c| self.regexes.iter().any(|r| r.is_match(c)))
    }

    /// The pids named by the pid files right now (unreadable files are skipped).
    fn pids(&self, buf: &mut String, out: &mut Vec<u32>) {
        out.clear();
        for p in &self.pid_files {
            if read_into(p, buf).is_ok()
                && let Ok(pid) = buf.trim().parse()
            {
                out.push(pid);
            }
        }
    }
}

/// What identifies a process to the matchers and in its resource.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    pub comm: String,
    /// Raw `cmdline`, NUL-separated, when read.
    raw_cmdline: Option<String>,
    cmdline: Option<String>,
    exe: Option<String>,
}

impl Identity {
    fn argv0(&self) -> Option<&str> {
        self.raw_cmdline.as_deref().and_then(|c| c.split('\0').next()).filter(|a| !a.is_empty())
    }
}

/// A process seen before, keyed by pid.
struct Known {
    starttime: u64,
    /// The short name, which changes on exec (the start time does not).
    comm: String,
    /// The scrape that last saw it, to forget exited processes.
    seen: u64,
    included: bool,
    excluded: bool,
    identity: Identity,
    resource: Option<Vec<KeyValue>>,
    /// CPU ticks (user, system) and when they were read.
    prev: Option<(u64, u64, u64)>,
}

pub struct ProcessScraper {
    enabled: Enabled,
    include: Compiled,
    exclude: Compiled,
    include_owner: bool,
    known: HashMap<u32, Known>,
    users: Option<HashMap<u32, String>>,
    passwd: PathBuf,
    proc: String,
    generation: u64,
    buf: String,
    path: String,
    include_pids: Vec<u32>,
    exclude_pids: Vec<u32>,
}

impl ProcessScraper {
    pub fn new(config: &ProcessConfig, cx: &Cx) -> Result<Self, regex::Error> {
        Ok(ProcessScraper {
            enabled: Enabled::new(METRICS, &config.metrics),
            include: Compiled::new(&config.include, &cx.root)?,
            exclude: Compiled::new(&config.exclude, &cx.root)?,
            include_owner: config.include_owner,
            known: HashMap::new(),
            users: None,
            passwd: cx.root.join("etc/passwd"),
            proc: cx.proc.to_str().unwrap_or("/proc").trim_end_matches('/').to_string(),
            generation: 0,
            buf: String::new(),
            path: String::new(),
            include_pids: Vec::new(),
            exclude_pids: Vec::new(),
        })
    }

    /// Reads `/proc/<pid>/<file>` into the scraper's buffer.
    fn read_pid(&mut self, pid: u32, file: &str) -> bool {
        self.path.clear();
        let _ = write!(self.path, "{}/{pid}/{file}", self.proc);
        read_into(Path::new(&self.path), &mut self.buf).is_ok()
    }

    fn read_identity(&mut self, pid: u32, comm: &str, cmdline: bool, exe: bool) -> Identity {
        let mut id = Identity { comm: comm.to_string(), ..Default::default() };
        if cmdline && self.read_pid(pid, "cmdline") {
            id.cmdline = Some(parse_cmdline(&self.buf));
            id.raw_cmdline = Some(std::mem::take(&mut self.buf));
        }
        if exe {
            self.path.clear();
            let _ = write!(self.path, "{}/{pid}/exe", self.proc);
            id.exe = std::fs::read_link(&self.path).ok().map(|p| p.to_string_lossy().into_owned());
        }
        id
    }

    fn owner(&mut self, pid: u32) -> Option<String> {
        if !self.read_pid(pid, "status") {
            return None;
        }
        let uid = parse_pid_status(&self.buf).uid?;
        let users = self.users.get_or_insert_with(|| {
            let mut buf = String::new();
            read_into(&self.passwd, &mut buf).map(|()| parse_passwd(&buf)).unwrap_or_default()
        });
        Some(users.get(&uid).cloned().unwrap_or_else(|| uid.to_string()))
    }

    /// The resource attributes of a matched process, reading what the
    /// matchers did not need (built once per process, then cached).
    fn resource(&mut self, s: &PidStat) -> Vec<KeyValue> {
        let mut id = self.known.get(&s.pid).map(|k| k.identity.clone()).unwrap_or_default();
        let (need_cmdline, need_exe) = (id.cmdline.is_none(), id.exe.is_none());
        if need_cmdline || need_exe {
            let fresh = self.read_identity(s.pid, &s.comm, need_cmdline, need_exe);
            if need_cmdline {
                id.cmdline = fresh.cmdline;
                id.raw_cmdline = fresh.raw_cmdline;
            }
            if need_exe {
                id.exe = fresh.exe;
            }
        }
        let mut attrs =
            vec![kv_int("process.pid", i64::from(s.pid)), kv_int("process.parent_pid", i64::from(s.ppid))];
        // Semconv: the base name of the executable, else the short name.
        let exe_name = id.exe.as_deref().map(base_name).unwrap_or(&s.comm);
        attrs.push(kv_str("process.executable.name", exe_name));
        if let Some(e) = &id.exe {
            attrs.push(kv_str("process.executable.path", e));
        }
        if let Some(a) = id.argv0() {
            attrs.push(kv_str("process.command", a));
        }
        if let Some(c) = id.cmdline.as_deref().filter(|c| !c.is_empty()) {
            attrs.push(kv_str("process.command_line", c));
        }
        if self.include_owner
            && let Some(o) = self.owner(s.pid)
        {
            attrs.push(kv_str("process.owner", o));
        }
        attrs
    }

    /// Walks the process table, deciding matches for new processes and
    /// updating CPU samples; with `out`, also emits the matched ones.
    fn pass(&mut self, cx: &mut Cx, mut out: Option<&mut Out>) -> Result<(), ScrapeError> {
        let (now, boot, tck, page, ncpu) = (cx.now, cx.boot_time, cx.clk_tck, cx.page_size, cx.ncpu);
        self.generation += 1;
        let generation = self.generation;
        self.include.pids(&mut self.buf, &mut self.include_pids);
        self.exclude.pids(&mut self.buf, &mut self.exclude_pids);
        let table = cx.procs()?;
        for s in &table.entries {
            let fresh = self.known.get(&s.pid).is_none_or(|k| k.starttime != s.starttime || k.comm != s.comm);
            if fresh {
                let cmdline = self.include.needs_cmdline() || self.exclude.needs_cmdline();
                let exe = self.include.needs_exe() || self.exclude.needs_exe();
                let identity = self.read_identity(s.pid, &s.comm, cmdline, exe);
                let known = Known {
                    starttime: s.starttime,
                    comm: s.comm.clone(),
                    seen: generation,
                    included: self.include.matches(&identity),
                    excluded: self.exclude.matches(&identity),
                    identity,
                    resource: None,
                    prev: None,
                };
                self.known.insert(s.pid, known);
            }
            let Some(k) = self.known.get_mut(&s.pid) else {
                continue;
            };
            k.seen = generation;
            let matched = (k.included || self.include_pids.contains(&s.pid))
                && !(k.excluded || self.exclude_pids.contains(&s.pid));
            if !matched {
                // Only matched processes keep their names; others just their verdict.
                k.identity = Identity::default();
                continue;
            }
            let prev = k.prev.replace((s.utime, s.stime, now));
            let Some(out) = out.as_deref_mut() else {
                continue;
            };
            let started = boot.saturating_add(s.starttime.saturating_mul(1_000_000_000) / tck);
            let resource = match self.known.get(&s.pid).and_then(|k| k.resource.clone()) {
                Some(r) => r,
                None => {
                    let r = self.resource(s);
                    if let Some(k) = self.known.get_mut(&s.pid) {
                        k.resource = Some(r.clone());
                    }
                    r
                }
            };
            let metrics = self.metrics(s, prev, started, now, tck, page, ncpu);
            if !metrics.is_empty() {
                out.resources.push(super::resource_metrics(resource, metrics));
            }
        }
        self.known.retain(|_, k| k.seen == generation);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn metrics(
        &mut self,
        s: &PidStat,
        prev: Option<(u64, u64, u64)>,
        started: u64,
        now: u64,
        tck: u64,
        page: u64,
        ncpu: usize,
    ) -> Vec<super::Metric> {
        let e = self.enabled;
        let mut m = Vec::new();
        let secs = |ticks: u64| ticks as f64 / tck as f64;
        let mode = |md: &str| vec![kv_str("cpu.mode", md)];
        e.push(
            &mut m,
            &CPU_TIME,
            vec![
                double_point(secs(s.utime), started, now, mode("user")),
                double_point(secs(s.stime), started, now, mode("system")),
            ],
        );
        if e.on(&CPU_UTILIZATION) {
            let u = cpu_utilization(prev, (s.utime, s.stime), started, now, tck, ncpu);
            let points = u
                .map(|(user, system)| {
                    vec![
                        double_point(user, 0, now, mode("user")),
                        double_point(system, 0, now, mode("system")),
                    ]
                })
                .unwrap_or_default();
            e.push(&mut m, &CPU_UTILIZATION, points);
        }
        e.push(&mut m, &MEMORY_USAGE, vec![int_point(s.rss.saturating_mul(page), started, now, vec![])]);
        e.push(&mut m, &MEMORY_VIRTUAL, vec![int_point(s.vsize, started, now, vec![])]);
        e.push(&mut m, &THREADS, vec![int_point(s.num_threads, started, now, vec![])]);
        let fault = |t: &str| vec![kv_str("system.paging.fault.type", t)];
        e.push(
            &mut m,
            &PAGING_FAULTS,
            vec![
                int_point(s.majflt, started, now, fault("major")),
                int_point(s.minflt, started, now, fault("minor")),
            ],
        );
        e.push(&mut m, &UPTIME, vec![double_point(now.saturating_sub(started) as f64 / 1e9, 0, now, vec![])]);
        if e.on(&OPEN_FDS) {
            self.path.clear();
            let _ = write!(self.path, "{}/{}/fd", self.proc, s.pid);
            if let Ok(dir) = std::fs::read_dir(&self.path) {
                let n = dir.count() as u64;
                e.push(&mut m, &OPEN_FDS, vec![int_point(n, started, now, vec![])]);
            }
        }
        if e.on(&DISK_IO)
            && self.read_pid(s.pid, "io")
            && let Some(io) = parse_pid_io(&self.buf)
        {
            let dir = |d: &str| vec![kv_str("disk.io.direction", d)];
            e.push(
                &mut m,
                &DISK_IO,
                vec![
                    int_point(io.read_bytes, started, now, dir("read")),
                    int_point(io.write_bytes, started, now, dir("write")),
                ],
            );
        }
        if e.on(&CONTEXT_SWITCHES) && self.read_pid(s.pid, "status") {
            let st = parse_pid_status(&self.buf);
            let ty = |t: &str| vec![kv_str("process.context_switch.type", t)];
            let points =
                [("voluntary", st.voluntary_ctxt_switches), ("involuntary", st.nonvoluntary_ctxt_switches)]
                    .into_iter()
                    .filter_map(|(t, v)| Some(int_point(v?, started, now, ty(t))))
                    .collect();
            e.push(&mut m, &CONTEXT_SWITCHES, points);
        }
        m
    }
}

/// Per-mode (user, system) CPU utilisation of a process since `prev` (ticks
/// and the time they were read) or, for a process seen for the first time,
/// since it started. Normalised by the number of logical CPUs; `None` when
/// no time has passed.
pub fn cpu_utilization(
    prev: Option<(u64, u64, u64)>,
    cur: (u64, u64),
    started: u64,
    now: u64,
    tck: u64,
    ncpu: usize,
) -> Option<(f64, f64)> {
    let (pu, ps, at) = prev.unwrap_or((0, 0, started));
    let elapsed = now.saturating_sub(at) as f64 / 1e9 * ncpu.max(1) as f64;
    if elapsed <= 0.0 {
        return None;
    }
    let f = |ticks: u64| (ticks as f64 / tck.max(1) as f64 / elapsed).clamp(0.0, 1.0);
    Some((f(cur.0.saturating_sub(pu)), f(cur.1.saturating_sub(ps))))
}

impl Scraper for ProcessScraper {
    fn name(&self) -> &'static str {
        "process"
    }

    fn baseline(&mut self, cx: &mut Cx) {
        let _ = self.pass(cx, None);
    }

    fn scrape(&mut self, cx: &mut Cx, out: &mut Out) -> Result<(), ScrapeError> {
        self.pass(cx, Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_pid_stat() {
        let s = parse_pid_stat(include_str!("../../tests/fixtures/host/pid_stat")).expect("valid stat");
        assert_eq!((s.pid, s.comm.as_str(), s.state, s.ppid), (14999, "cat", 'R', 14986));
        assert_eq!((s.minflt, s.majflt, s.utime, s.stime), (118, 0, 0, 0));
        assert_eq!((s.num_threads, s.starttime, s.vsize, s.rss), (1, 53700, 3133440, 412));
    }

    #[test]
    fn pid_stat_edge_cases() {
        let tail = "S 1 1 1 0 -1 4194560 10 0 2 0 7 3 0 0 20 0 4 0 500 1000 -5";
        type Case = (String, Option<(&'static str, u64, u64)>);
        let cases: &[Case] = &[
            (format!("42 (tmux: server) {tail}"), Some(("tmux: server", 4, 0))),
            (format!("7 ((sd-pam)) {tail}"), Some(("(sd-pam)", 4, 0))),
            (format!("8 (a) b) {tail} 1 2 3 4 5 6 7 8 9"), Some(("a) b", 4, 0))),
            (format!("9 (x) {tail} 0 0"), Some(("x", 4, 0))),
            ("10 (short) S 1 2 3".to_string(), None),
            ("no parens at all".to_string(), None),
            (format!("x (bad pid) {tail}"), None),
            (")( 1 2 3".to_string(), None),
        ];
        for (text, want) in cases {
            let got = parse_pid_stat(text);
            assert_eq!(got.as_ref().map(|s| (s.comm.as_str(), s.num_threads, s.rss)), *want, "{text}");
        }
    }

    #[test]
    fn parses_status_io_cmdline_passwd() {
        let st = parse_pid_status(include_str!("../../tests/fixtures/host/pid_status"));
        assert_eq!(st.uid, Some(0));
        assert_eq!(st.voluntary_ctxt_switches, Some(0));
        assert_eq!(parse_pid_status("Name: x\nUid: abc\n"), PidStatus::default());
        let io = parse_pid_io(include_str!("../../tests/fixtures/host/pid_io"));
        assert_eq!(io, Some(PidIo { read_bytes: 0, write_bytes: 0 }));
        assert_eq!(parse_pid_io("rchar: 1\nread_bytes: 4096\n"), None);
        assert_eq!(parse_cmdline("python3\0-m\0uvicorn\0app:main\0"), "python3 -m uvicorn app:main");
        assert_eq!(parse_cmdline(""), "");
        let users =
            parse_passwd("root:x:0:0:root:/root:/bin/bash\napp:x:1000:1000::/home/app:/bin/sh\nbroken\n");
        assert_eq!(users.get(&1000).map(String::as_str), Some("app"));
        assert_eq!(users.len(), 2);
    }

    fn identity(comm: &str, cmdline: &str, exe: Option<&str>) -> Identity {
        Identity {
            comm: comm.into(),
            raw_cmdline: Some(cmdline.into()),
            cmdline: Some(parse_cmdline(cmdline)),
            exe: exe.map(str::to_string),
        }
    }

    #[test]
    fn matching() {
        let m = |names: &[&str], exes: &[&str], res: &[&str]| {
            let cfg = Matchers {
                names: names.iter().map(|s| s.to_string()).collect(),
                executables: exes.iter().map(|s| s.to_string()).collect(),
                cmdline_regex: res.iter().map(|s| s.to_string()).collect(),
                pid_files: vec![],
            };
            Compiled::new(&cfg, Path::new("/")).expect("valid matchers")
        };
        // A uvicorn master started from its script, and a spawned worker.
        let master = identity(
            "uvicorn",
            "/venv/bin/python3\0/venv/bin/uvicorn\0app:main\0--workers\x004\0",
            Some("/usr/bin/python3.12"),
        );
        let worker = identity(
            "python3.12",
            "/venv/bin/python3\0-c\0from multiprocessing.spawn import spawn_main\0",
            Some("/usr/bin/python3.12"),
        );
        let renamed = identity("sleep", "magpie-test-child\x0030\0", Some("/usr/bin/sleep"));
        let cases: &[(Compiled, &Identity, bool)] = &[
            (m(&["uvicorn"], &[], &[]), &master, true),
            (m(&["uvicorn"], &[], &[]), &worker, false),
            (m(&["python3*"], &[], &[]), &worker, true),
            (m(&[], &["/usr/bin/python3*"], &[]), &worker, true),
            (m(&[], &["/usr/bin/python3"], &[]), &worker, false),
            (m(&[], &[], &["uvicorn .*app:main"]), &master, true),
            (m(&[], &[], &["multiprocessing"]), &worker, true),
            (m(&["magpie-test-child"], &[], &[]), &renamed, true),
            (m(&["sleep"], &[], &[]), &renamed, true),
            (m(&[], &[], &[]), &master, false),
        ];
        for (i, (c, id, want)) in cases.iter().enumerate() {
            assert_eq!(c.matches(id), *want, "case {i}");
        }
    }

    #[test]
    fn config_problems() {
        let mut out = Vec::new();
        ProcessConfig::default().problems("scrapers.process", &mut out);
        assert!(out[0].contains("scrapers.process.include: name at least one"), "{out:?}");
        let mut out = Vec::new();
        let c = ProcessConfig {
            include: Matchers { cmdline_regex: vec!["ok".into(), "(unclosed".into()], ..Default::default() },
            exclude: Matchers { cmdline_regex: vec!["[z-a]".into()], ..Default::default() },
            ..Default::default()
        };
        c.problems("scrapers.process", &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            out[0].starts_with("scrapers.process.include.cmdline_regex[1]: invalid regex `(unclosed`"),
            "{out:?}"
        );
        assert!(out[1].starts_with("scrapers.process.exclude.cmdline_regex[0]"), "{out:?}");
    }

    #[test]
    fn utilization_math() {
        let s = 1_000_000_000u64;
        type Prev = Option<(u64, u64, u64)>;
        type Case = (Prev, (u64, u64), u64, u64, usize, Option<(f64, f64)>);
        let cases: &[Case] = &[
            // 100 user ticks and 50 system ticks (at 100 Hz) over 2 s on 1 CPU.
            (Some((0, 0, 10 * s)), (100, 50), 0, 12 * s, 1, Some((0.5, 0.25))),
            // The same on 2 CPUs is half.
            (Some((0, 0, 10 * s)), (100, 50), 0, 12 * s, 2, Some((0.25, 0.125))),
            // First sight: averaged since the process started.
            (None, (400, 0), 6 * s, 10 * s, 1, Some((1.0, 0.0))),
            // No time passed: no figure.
            (Some((5, 5, 10 * s)), (5, 5), 0, 10 * s, 1, None),
            // Counters that went backwards (pid reuse) do not go negative.
            (Some((500, 500, 10 * s)), (5, 5), 0, 11 * s, 1, Some((0.0, 0.0))),
        ];
        for (prev, cur, started, now, ncpu, want) in cases {
            assert_eq!(cpu_utilization(*prev, *cur, *started, *now, 100, *ncpu), *want, "{prev:?} {cur:?}");
        }
    }
}
