//! CPU time per full `hostmetrics` scrape on this machine.
//!
//! Runs the scrape engine synchronously (no runtime, no exporter) and reads
//! the process's CPU clock (`CLOCK_PROCESS_CPUTIME_ID`) before and after N
//! scrapes, so the figure is CPU spent, not wall time. Three set-ups: the
//! default scrapers; the defaults plus `process` (matching one name) and
//! `cgroup`; and each default scraper alone.
//!
//! Last, the receiver itself runs on a tokio runtime with a 1s interval for
//! a few seconds, feeding a channel that is drained, to show what an idle
//! agent spends on it.
//!
//! `cargo bench -p magpie-receivers --bench hostmetrics [-- N]` (N scrapes
//! per set-up, 500 by default).

use magpie_core::batch::data_point_count;
use magpie_core::{ComponentStats, Output, Receiver, ReceiverContext, Signal};
use magpie_receivers::hostmetrics::HostmetricsReceiver;
use magpie_receivers::hostmetrics::process::{Matchers, ProcessConfig};
use magpie_receivers::hostmetrics::{HostScraper, HostmetricsConfig, ScrapersConfig};
use rustix::time::{ClockId, clock_gettime};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn cpu_time() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

fn measure(label: &str, scrapers: ScrapersConfig, n: u32) {
    let config = HostmetricsConfig { scrapers: Some(scrapers), ..Default::default() };
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
    println!("{label:<28} {cpu:>7.3} ms CPU/scrape  {wall:>7.3} ms wall/scrape  {points:>5} points");
}

/// The receiver on a runtime, scraping every second, for `secs` seconds.
fn idle(secs: u64) {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() else {
        eprintln!("idle: no runtime");
        return;
    };
    let config = HostmetricsConfig { collection_interval: Duration::from_secs(1), ..Default::default() };
    let result = rt.block_on(async {
        let id = "hostmetrics".parse().map_err(|e| format!("{e}"))?;
        let mut r: Box<dyn Receiver> = Box::new(HostmetricsReceiver::new(&config));
        r.start(&id).await.map_err(|e| e.to_string())?;
        let stats = Arc::new(ComponentStats::default());
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let mut output = Output::new(stats.clone());
        output.add(Signal::Metrics, tx);
        let shutdown = CancellationToken::new();
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let ctx = ReceiverContext { id, output, shutdown: shutdown.clone(), stats: stats.clone() };
        let task = tokio::spawn(r.run(ctx));
        let (cpu0, wall0) = (cpu_time(), Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let cpu = cpu_time() - cpu0;
        let wall = wall0.elapsed();
        shutdown.cancel();
        let _ = task.await;
        let _ = drain.await;
        Ok::<_, String>((cpu, wall, stats.snapshot().accepted))
    });
    match result {
        Ok((cpu, wall, points)) => {
            let share = cpu.as_secs_f64() / wall.as_secs_f64() * 100.0;
            println!(
                "receiver at 1s interval: {share:.3}% of a core over {:.1}s ({points} points sent); at 10s about {:.4}%",
                wall.as_secs_f64(),
                share / 10.0
            );
        }
        Err(e) => eprintln!("idle: {e}"),
    }
}

fn only(f: impl FnOnce(&mut ScrapersConfig)) -> ScrapersConfig {
    let mut s = ScrapersConfig::default();
    f(&mut s);
    s
}

fn main() {
    // `cargo bench` passes `--bench`; the first plain number is N.
    let n = std::env::args().skip(1).find_map(|a| a.parse::<u32>().ok()).unwrap_or(500);
    let procs = std::fs::read_dir("/proc")
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok()).count())
        .unwrap_or(0);
    println!("hostmetrics: {n} scrapes per set-up, {procs} processes on this host");

    measure("defaults", ScrapersConfig::defaults(), n);
    let mut full = ScrapersConfig::defaults();
    full.process = Some(ProcessConfig {
        include: Matchers { names: vec!["sleep".into(), "cargo".into()], ..Default::default() },
        ..Default::default()
    });
    full.cgroup = Some(Default::default());
    measure("defaults + process + cgroup", full, n);

    let d = ScrapersConfig::defaults();
    measure("cpu", only(|s| s.cpu = d.cpu.clone()), n);
    measure("memory", only(|s| s.memory = d.memory.clone()), n);
    measure("disk", only(|s| s.disk = d.disk.clone()), n);
    measure("filesystem", only(|s| s.filesystem = d.filesystem.clone()), n);
    measure("network", only(|s| s.network = d.network.clone()), n);
    measure("load", only(|s| s.load = d.load.clone()), n);
    measure("paging", only(|s| s.paging = d.paging.clone()), n);
    measure("processes", only(|s| s.processes = d.processes.clone()), n);
    idle(5);
}
