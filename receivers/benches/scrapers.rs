//! CPU time per scrape of the `redis`, `postgresql` and `hostmetrics`
//! receivers on this machine, and what the three cost together while the
//! agent idles.
//!
//! Each scraper runs on a current-thread runtime, so every cycle it spends
//! (building the request, parsing the answer, building OTLP) is on this
//! process's CPU clock (`CLOCK_PROCESS_CPUTIME_ID`), read before and after N
//! scrapes. The servers' own work is in their processes and not counted.
//! Redis and PostgreSQL are the machine's (`MAGPIE_TEST_REDIS_URL`,
//! `MAGPIE_TEST_POSTGRES_URL`, loopback defaults).
//!
//! `idle` runs the three receivers at a 5 s interval on a two-worker
//! runtime into a drained channel for S seconds and reports the share of a
//! core and this process's resident memory.
//!
//! `cargo bench -p magpie-receivers --bench scrapers [-- [N] [host|redis|postgresql|idle]... [--idle-secs S]]`
//! (N scrapes per scraper, 200 by default; all parts by default; S = 30).
//! `host` alone prints `host_scrape_cpu_ms=<ms>` for `compare-host-scrape.sh`.

use magpie_core::batch::data_point_count;
use magpie_core::config::Secret;
use magpie_core::proto::metrics::v1::ResourceMetrics;
use magpie_core::{ComponentStats, Output, Receiver, ReceiverContext, Signal};
use magpie_receivers::hostmetrics::{HostScraper, HostmetricsConfig, HostmetricsReceiver};
use magpie_receivers::postgresql::{PostgresScraper, PostgresqlConfig, PostgresqlReceiver};
use magpie_receivers::redis::{RedisConfig, RedisReceiver, RedisScraper};
use rustix::time::{ClockId, clock_gettime};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn cpu_time() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

fn redis_config() -> RedisConfig {
    let url = std::env::var("MAGPIE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    RedisConfig { endpoint: Secret::new(url), ..Default::default() }
}

fn postgresql_config() -> PostgresqlConfig {
    let url = std::env::var("MAGPIE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into());
    PostgresqlConfig { endpoint: Secret::new(url), ..Default::default() }
}

/// Prints and returns CPU ms per scrape of `scrape`, run `n` times after a warm-up.
fn measure(label: &str, n: u32, mut scrape: impl FnMut() -> Vec<ResourceMetrics>) -> f64 {
    let mut points = 0;
    for _ in 0..5 {
        points = data_point_count(&scrape());
    }
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    for _ in 0..n {
        std::hint::black_box(scrape());
    }
    let cpu = (cpu_time() - cpu0).as_secs_f64() * 1000.0 / f64::from(n);
    let wall = wall0.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
    println!("{label:<12} {cpu:>7.3} ms CPU/scrape  {wall:>7.3} ms wall/scrape  {points:>5} points");
    cpu
}

fn host(n: u32) -> Option<f64> {
    let mut engine = match HostScraper::new(&HostmetricsConfig::default(), "bench") {
        Ok(e) => e,
        Err(e) => {
            eprintln!("hostmetrics: {e}");
            return None;
        }
    };
    engine.baseline();
    Some(measure("hostmetrics", n, || engine.scrape()))
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().ok()
}

fn redis(n: u32) -> Option<f64> {
    let rt = runtime()?;
    let mut s = RedisScraper::new(&redis_config(), "bench").ok()?;
    rt.block_on(s.baseline());
    let up = rt.block_on(s.scrape());
    if data_point_count(&up) <= 1 {
        eprintln!("redis: not reachable (set MAGPIE_TEST_REDIS_URL)");
        return None;
    }
    Some(measure("redis", n, || rt.block_on(s.scrape())))
}

fn postgresql(n: u32) -> Option<f64> {
    let rt = runtime()?;
    let mut s = PostgresScraper::new(&postgresql_config(), "bench").ok()?;
    rt.block_on(s.baseline());
    let up = rt.block_on(s.scrape());
    if data_point_count(&up) <= 1 {
        eprintln!("postgresql: not reachable (set MAGPIE_TEST_POSTGRES_URL)");
        return None;
    }
    Some(measure("postgresql", n, || rt.block_on(s.scrape())))
}

/// Resident memory of this process, from `/proc/self/status`.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:")?.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The three receivers at a 5 s interval for `secs` seconds.
fn idle(secs: u64) {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() else {
        eprintln!("idle: no runtime");
        return;
    };
    let every = Duration::from_secs(5);
    let result = rt.block_on(async {
        let stats = Arc::new(ComponentStats::default());
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let mut output = Output::new(stats.clone());
        output.add(Signal::Metrics, tx);
        let shutdown = CancellationToken::new();
        let receivers: Vec<(&str, Box<dyn Receiver>)> = vec![
            (
                "hostmetrics",
                Box::new(HostmetricsReceiver::new(&HostmetricsConfig {
                    collection_interval: every,
                    ..Default::default()
                })),
            ),
            (
                "redis",
                Box::new(RedisReceiver::new(&RedisConfig { collection_interval: every, ..redis_config() })),
            ),
            (
                "postgresql",
                Box::new(PostgresqlReceiver::new(&PostgresqlConfig {
                    collection_interval: every,
                    ..postgresql_config()
                })),
            ),
        ];
        let mut tasks = Vec::new();
        for (name, mut r) in receivers {
            let id = name.parse().map_err(|e| format!("{e}"))?;
            r.start(&id).await.map_err(|e| e.to_string())?;
            let ctx = ReceiverContext {
                id,
                output: output.clone(),
                shutdown: shutdown.clone(),
                stats: stats.clone(),
            };
            tasks.push(tokio::spawn(r.run(ctx)));
        }
        drop(output);
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        // Let start-up (baselines, first connections) settle, then measure.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (cpu0, wall0, points0) = (cpu_time(), Instant::now(), stats.snapshot().accepted);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
        let points = stats.snapshot().accepted - points0;
        let rss = rss_kib();
        shutdown.cancel();
        for t in tasks {
            let _ = t.await;
        }
        let _ = drain.await;
        Ok::<_, String>((cpu, wall, points, rss))
    });
    match result {
        Ok((cpu, wall, points, rss)) => println!(
            "idle: hostmetrics + redis + postgresql at 5s: {:.3}% of a core over {:.0}s ({points} points), RSS {:.1} MiB",
            cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
            wall.as_secs_f64(),
            rss as f64 / 1024.0
        ),
        Err(e) => eprintln!("idle: {e}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = args.iter().find_map(|a| a.parse::<u32>().ok()).unwrap_or(200);
    let secs = args
        .iter()
        .position(|a| a == "--idle-secs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(30);
    let parts: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| matches!(*a, "host" | "redis" | "postgresql" | "idle"))
        .collect();
    let want = |p: &str| parts.is_empty() || parts.contains(&p);
    if parts == ["host"] {
        if let Some(ms) = host(n) {
            println!("host_scrape_cpu_ms={ms:.4}");
        }
        return;
    }
    println!("scrapers: {n} scrapes each");
    let h = if want("host") { host(n) } else { None };
    let r = if want("redis") { redis(n) } else { None };
    let p = if want("postgresql") { postgresql(n) } else { None };
    if let (Some(h), Some(r), Some(p)) = (h, r, p) {
        println!("all three    {:>7.3} ms CPU per round of scrapes", h + r + p);
    }
    if want("idle") {
        idle(secs);
    }
}
