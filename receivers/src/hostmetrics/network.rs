//! `network` scraper: `/proc/net/dev` → bytes, packets, errors and drops by
//! interface and direction.
//!
//! With `root_path` pointing at a mounted host, the host's init's network
//! namespace is read (`<root>/proc/1/net/dev`), since `<root>/proc/net`
//! would show the reader's own namespace.

use super::{Cx, Enabled, Filter, Kind, MetricDef, MetricToggles, Out, ScrapeError, Scraper, int_point};
use magpie_core::otlp::kv_str;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Settings of the `network` scraper.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Interfaces to report (globs, `eth*`); empty reports every interface.
    #[serde(default)]
    pub include_interfaces: Vec<String>,
    /// Interfaces never to report (globs, `veth*`).
    #[serde(default)]
    pub exclude_interfaces: Vec<String>,
    #[serde(default)]
    pub metrics: MetricToggles,
}

pub const IO: MetricDef = MetricDef {
    name: "system.network.io",
    unit: "By",
    kind: Kind::Counter,
    description: "Bytes received and transmitted.",
    default_enabled: true,
};
pub const PACKETS: MetricDef = MetricDef {
    name: "system.network.packet.count",
    unit: "{packet}",
    kind: Kind::Counter,
    description: "Packets received and transmitted.",
    default_enabled: true,
};
pub const ERRORS: MetricDef = MetricDef {
    name: "system.network.errors",
    unit: "{error}",
    kind: Kind::Counter,
    description: "Receive and transmit errors.",
    default_enabled: true,
};
pub const DROPPED: MetricDef = MetricDef {
    name: "system.network.packet.dropped",
    unit: "{packet}",
    kind: Kind::Counter,
    description: "Packets dropped without an error.",
    default_enabled: true,
};
pub const METRICS: &[MetricDef] = &[IO, PACKETS, ERRORS, DROPPED];

impl NetworkConfig {
    pub fn problems(&self, path: &str, out: &mut Vec<String>) {
        super::metric_problems(METRICS, &self.metrics, path, out);
    }
}

/// One interface's counters from `/proc/net/dev`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetDev {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev`: two header lines, then `name: 8 receive and 8
/// transmit columns`. Old kernels wrote no space after the colon
/// (`eth0:123`), which is handled; lines with fewer than 16 numbers are
/// skipped.
pub fn parse_net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let mut v = [0u64; 16];
            let mut n = 0;
            for (slot, f) in v.iter_mut().zip(rest.split_ascii_whitespace()) {
                *slot = super::num(f)?;
                n += 1;
            }
            (n == 16).then(|| NetDev {
                name: name.trim().to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

pub struct NetworkScraper {
    enabled: Enabled,
    filter: Filter,
    path: PathBuf,
}

impl NetworkScraper {
    pub fn new(config: &NetworkConfig, cx: &Cx) -> Self {
        let host_init = cx.proc.join("1/net/dev");
        let path =
            if cx.root != Path::new("/") && host_init.exists() { host_init } else { cx.proc.join("net/dev") };
        NetworkScraper {
            enabled: Enabled::new(METRICS, &config.metrics),
            filter: Filter::new(&config.include_interfaces, &config.exclude_interfaces),
            path,
        }
    }
}

impl Scraper for NetworkScraper {
    fn name(&self) -> &'static str {
        "network"
    }

    fn scrape(&mut self, cx: &mut Cx, out: &mut Out) -> Result<(), ScrapeError> {
        cx.read(&self.path)?;
        let devs = parse_net_dev(&cx.buf);
        let (now, start) = (cx.now, cx.boot_time);
        let e = &self.enabled;
        for (def, rx, tx) in [
            (
                &IO,
                (|d: &NetDev| d.rx_bytes) as fn(&NetDev) -> u64,
                (|d: &NetDev| d.tx_bytes) as fn(&NetDev) -> u64,
            ),
            (&PACKETS, |d| d.rx_packets, |d| d.tx_packets),
            (&ERRORS, |d| d.rx_errors, |d| d.tx_errors),
            (&DROPPED, |d| d.rx_dropped, |d| d.tx_dropped),
        ] {
            if !e.on(def) {
                continue;
            }
            let mut points = Vec::with_capacity(devs.len() * 2);
            for d in devs.iter().filter(|d| self.filter.admits(&d.name)) {
                for (dir, v) in [("receive", rx(d)), ("transmit", tx(d))] {
                    let attrs =
                        vec![kv_str("network.interface.name", &d.name), kv_str("network.io.direction", dir)];
                    points.push(int_point(v, start, now, attrs));
                }
            }
            e.push(&mut out.host, def, points);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/host/net_dev");

    #[test]
    fn parses_a_real_net_dev() {
        let d = parse_net_dev(FIXTURE);
        let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["lo", "ifb0", "ifb1", "eth0"]);
        assert_eq!(d[0].rx_bytes, d[0].tx_bytes, "loopback sends what it receives");
        assert!(d[3].rx_bytes > 0 && d[3].tx_packets > 0);
    }

    #[test]
    fn variants_and_junk() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
eth0:1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0
veth1a2b: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0
bad: 1 2 3
worse: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x
";
        let d = parse_net_dev(text);
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0],
            NetDev {
                name: "eth0".into(),
                rx_bytes: 1000,
                rx_packets: 10,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 2000,
                tx_packets: 20,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
        let f = Filter::new(&[], &["veth*".into()]);
        let kept: Vec<&str> = d.iter().filter(|d| f.admits(&d.name)).map(|d| d.name.as_str()).collect();
        assert_eq!(kept, ["eth0"]);
    }
}
