//! `load` scraper: `/proc/loadavg` → the 1, 5 and 15 minute load averages,
//! under the Collector's names (`system.cpu.load_average.1m` and so on).

use super::{Cx, Enabled, Kind, MetricDef, MetricToggles, Out, ScrapeError, Scraper, double_point};
use serde::Deserialize;
use std::path::PathBuf;

/// Settings of the `load` scraper.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    #[serde(default)]
    pub metrics: MetricToggles,
}

pub const LOAD_1M: MetricDef = MetricDef {
    name: "system.cpu.load_average.1m",
    unit: "{thread}",
    kind: Kind::Gauge,
    description: "Average number of runnable or uninterruptible threads over the last minute.",
    default_enabled: true,
};
pub const LOAD_5M: MetricDef = MetricDef {
    name: "system.cpu.load_average.5m",
    unit: "{thread}",
    kind: Kind::Gauge,
    description: "Average number of runnable or uninterruptible threads over the last 5 minutes.",
    default_enabled: true,
};
pub const LOAD_15M: MetricDef = MetricDef {
    name: "system.cpu.load_average.15m",
    unit: "{thread}",
    kind: Kind::Gauge,
    description: "Average number of runnable or uninterruptible threads over the last 15 minutes.",
    default_enabled: true,
};
pub const METRICS: &[MetricDef] = &[LOAD_1M, LOAD_5M, LOAD_15M];

impl LoadConfig {
    pub fn problems(&self, path: &str, out: &mut Vec<String>) {
        super::metric_problems(METRICS, &self.metrics, path, out);
    }
}

/// The three load averages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadAvg {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

/// Parses `/proc/loadavg` (`0.89 0.49 0.24 1/139 14913`); only the first
/// three columns are needed. Negative or non-finite figures are refused.
pub fn parse_loadavg(text: &str) -> Option<LoadAvg> {
    let mut f =
        text.split_ascii_whitespace().map(|s| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0));
    Some(LoadAvg { one: f.next()??, five: f.next()??, fifteen: f.next()?? })
}

pub struct LoadScraper {
    enabled: Enabled,
    path: PathBuf,
}

impl LoadScraper {
    pub fn new(config: &LoadConfig, cx: &Cx) -> Self {
        LoadScraper { enabled: Enabled::new(METRICS, &config.metrics), path: cx.proc.join("loadavg") }
    }
}

impl Scraper for LoadScraper {
    fn name(&self) -> &'static str {
        "load"
    }

    fn scrape(&mut self, cx: &mut Cx, out: &mut Out) -> Result<(), ScrapeError> {
        cx.read(&self.path)?;
        let l = parse_loadavg(&cx.buf)
            .ok_or_else(|| ScrapeError::malformed(&self.path, "expected three load averages"))?;
        for (def, v) in [(&LOAD_1M, l.one), (&LOAD_5M, l.five), (&LOAD_15M, l.fifteen)] {
            self.enabled.push(&mut out.host, def, vec![double_point(v, 0, cx.now, vec![])]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loadavg() {
        type Case = (&'static str, Option<(f64, f64, f64)>);
        let cases: &[Case] = &[
            (include_str!("../../tests/fixtures/host/loadavg"), Some((0.75, 0.48, 0.24))),
            ("12.50 8.00 3.10\n", Some((12.5, 8.0, 3.1))),
            ("0.00 0.00\n", None),
            ("a b c 1/2 3\n", None),
            ("-1 0 0 1/1 1\n", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_loadavg(text).map(|l| (l.one, l.five, l.fifteen)), *want, "{text}");
        }
    }
}
