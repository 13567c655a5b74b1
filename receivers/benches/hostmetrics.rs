//! CPU time per full `hostmetrics` scrape on this machine.
//!
//! Runs the scrape engine synchronously (no runtime, no exporter) and reads
//! the process's CPU clock (`CLOCK_PROCESS_CPUTIME_ID`) before and after N
//! scrapes, so the figure is CPU spent, not wall time. Three set-ups: the
//! default scrapers; the defaults plus `process` (matching one name) and
//! `cgroup`; and each default scraper alone.
//!
//! `cargo bench -p magpie-receivers --bench hostmetrics [-- N]` (N scrapes
//! per set-up, 500 by default).

use magpie_core::batch::data_point_count;
use magpie_receivers::hostmetrics::process::{Matchers, ProcessConfig};
use magpie_receivers::hostmetrics::{HostScraper, HostmetricsConfig, ScrapersConfig};
use rustix::time::{ClockId, clock_gettime};
use std::time::{Duration, Instant};

fn cpu_time() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

fn measure(label: &str, scrapers: ScrapersConfig, n: u32) {
    let config = HostmetricsConfig {
        scrapers: Some(scrapers),
        ..Default::default()
    };
    let mut engine = match HostScraper::new(&config, "bench") {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{label}: cannot build the scraper: {e}");
            return;
        }
    };
    engine.baseline();
    // Warm-up: first sightings of processes, buffer growth.
    let mut points = 0;
    for _ in 0..10 {
        points = data_point_count(&engine.scrape());
    }
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    for _ in 0..n {
        std::hint::black_box(engine.scrape());
    }
    let cpu = (cpu_time() - cpu0).as_secs_f64() * 1000.0 / f64::from(n);
    let wall = wall0.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
    println!(
        "{label:<28} {cpu:>7.3} ms CPU/scrape  {wall:>7.3} ms wall/scrape  {points:>5} points"
    );
}

fn only(f: impl FnOnce(&mut ScrapersConfig)) -> ScrapersConfig {
    let mut s = ScrapersConfig::default();
    f(&mut s);
    s
}

fn main() {
    // `cargo bench` passes `--bench`; the first plain number is N.
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<u32>().ok())
        .unwrap_or(500);
    let procs = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .count()
        })
        .unwrap_or(0);
    println!("hostmetrics: {n} scrapes per set-up, {procs} processes on this host");

    measure("defaults", ScrapersConfig::defaults(), n);
    let mut full = ScrapersConfig::defaults();
    full.process = Some(ProcessConfig {
        include: Matchers {
            names: vec!["sleep".into(), "cargo".into()],
            ..Default::default()
        },
        ..Default::default()
    });
    full.cgroup = Some(Default::default());
    measure("defaults + process + cgroup", full, n);

    let d = ScrapersConfig::defaults();
    measure("cpu", only(|s| s.cpu = d.cpu.clone()), n);
    measure("memory", only(|s| s.memory = d.memory.clone()), n);
    measure("disk", only(|s| s.disk = d.disk.clone()), n);
    measure(
        "filesystem",
        only(|s| s.filesystem = d.filesystem.clone()),
        n,
    );
    measure("network", only(|s| s.network = d.network.clone()), n);
    measure("load", only(|s| s.load = d.load.clone()), n);
    measure("paging", only(|s| s.paging = d.paging.clone()), n);
    measure("processes", only(|s| s.processes = d.processes.clone()), n);
}
