//! `processes` scraper: how many processes are in each state (from every
//! `/proc/<pid>/stat`, read once per scrape through the shared process
//! table) and how many were created since boot (`/proc/stat`).
//!
//! Kernel states map onto semconv's `process.state`: `R` running; `S`, `D`
//! (uninterruptible, usually IO), `I` (idle kernel thread), `P` (parked) and
//! `W` sleeping; `T` and `t` stopped; `Z` and `X` defunct.

use super::{Cx, Enabled, Kind, MetricDef, MetricToggles, Out, ScrapeError, Scraper, int_point};
use magpie_core::otlp::kv_str;
use serde::Deserialize;
use std::path::PathBuf;

/// Settings of the `processes` scraper.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessesConfig {
    #[serde(default)]
    pub metrics: MetricToggles,
}

pub const COUNT: MetricDef = MetricDef {
    name: "system.process.count",
    unit: "{process}",
    kind: Kind::UpDownCounter,
    description: "Processes in each state.",
    default_enabled: true,
};
pub const CREATED: MetricDef = MetricDef {
    name: "system.process.created",
    unit: "{process}",
    kind: Kind::Counter,
    description: "Processes created since boot.",
    default_enabled: true,
};
pub const METRICS: &[MetricDef] = &[COUNT, CREATED];

impl ProcessesConfig {
    pub fn problems(&self, path: &str, out: &mut Vec<String>) {
        super::metric_problems(METRICS, &self.metrics, path, out);
    }
}

/// The semconv `process.state` of a kernel state letter.
pub fn state_name(c: char) -> &'static str {
    match c {
        'R' => "running",
        'T' | 't' => "stopped",
        'Z' | 'X' | 'x' => "defunct",
        _ => "sleeping",
    }
}

const STATES: [&str; 4] = ["running", "sleeping", "stopped", "defunct"];

/// Counts per state, in [`STATES`] order.
pub fn count_states(states: impl Iterator<Item = char>) -> [u64; 4] {
    let mut n = [0u64; 4];
    for c in states {
        let name = state_name(c);
        if let Some(i) = STATES.iter().position(|s| *s == name) {
            n[i] += 1;
        }
    }
    n
}

pub struct ProcessesScraper {
    enabled: Enabled,
    stat: PathBuf,
}

impl ProcessesScraper {
    pub fn new(config: &ProcessesConfig, cx: &Cx) -> Self {
        ProcessesScraper { enabled: Enabled::new(METRICS, &config.metrics), stat: cx.proc.join("stat") }
    }
}

impl Scraper for ProcessesScraper {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn scrape(&mut self, cx: &mut Cx, out: &mut Out) -> Result<(), ScrapeError> {
        let (now, start) = (cx.now, cx.boot_time);
        if self.enabled.on(&CREATED) {
            cx.read(&self.stat)?;
            let created = super::cpu::parse_stat(&cx.buf).processes;
            self.enabled.push(
                &mut out.host,
                &CREATED,
                created.map(|n| int_point(n, start, now, vec![])).into_iter().collect(),
            );
        }
        if self.enabled.on(&COUNT) {
            let counts = count_states(cx.procs()?.entries.iter().map(|p| p.state));
            let points = STATES
                .iter()
                .zip(counts)
                .map(|(s, n)| int_point(n, start, now, vec![kv_str("process.state", *s)]))
                .collect();
            self.enabled.push(&mut out.host, &COUNT, points);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_state() {
        let cases: &[(&str, [u64; 4])] = &[
            ("", [0, 0, 0, 0]),
            ("RRS", [2, 1, 0, 0]),
            ("SDIPW", [0, 5, 0, 0]),
            ("Tt", [0, 0, 2, 0]),
            ("ZX", [0, 0, 0, 2]),
            ("R?", [1, 1, 0, 0]),
        ];
        for (states, want) in cases {
            assert_eq!(count_states(states.chars()), *want, "{states}");
        }
    }
}
