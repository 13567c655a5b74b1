//! `Alert`: the one signal OTLP lacks. The `alerts` connector raises them
//! from metrics; notifiers (the `webhook` exporter) group and deliver them.
//!
//! The shape follows Prometheus and Alertmanager, so their vocabulary and
//! payloads carry over: labels identify an alert (their [`fingerprint`] is
//! Alertmanager's), annotations describe it, `starts_at`/`ends_at` bound it.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether an alert is still firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One alert of one rule (and one series, for rules with `group_by`).
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// The rule's name (also the `alertname` label).
    pub rule: String,
    pub status: AlertStatus,
    /// Rule labels, the series' `group_by` labels, `alertname` and `severity`.
    pub labels: BTreeMap<String, String>,
    /// Rendered annotations (`summary`, `description`, ...).
    pub annotations: BTreeMap<String, String>,
    /// The value of the rule's aggregation at the last evaluation (NaN without data).
    pub value: f64,
    /// When the alert started firing.
    pub starts_at: SystemTime,
    /// When it was resolved; `None` while firing.
    pub ends_at: Option<SystemTime>,
    /// [`fingerprint`] of `labels`.
    pub fingerprint: String,
    /// The id of the component that raised it (`alerts/critical`).
    pub generator: String,
}

/// Alertmanager's fingerprint of a label set: FNV-1a (64 bit) over the
/// labels sorted by name, each name and value followed by a 0xff byte,
/// printed as 16 hex digits. Stable across runs, versions and machines.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 14695981039346656037;
    const PRIME: u64 = 1099511628211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[0xff]);
        add(value.as_bytes());
        add(&[0xff]);
    }
    format!("{h:016x}")
}

/// RFC 3339 in UTC with milliseconds (`2026-11-26T09:53:51.123Z`), as
/// Alertmanager payloads carry times. `None` is Go's zero time, which is what
/// Alertmanager sends as `endsAt` of a firing alert.
pub fn rfc3339(t: Option<SystemTime>) -> String {
    match t {
        Some(t) if t > UNIX_EPOCH => humantime::format_rfc3339_millis(t).to_string(),
        _ => "0001-01-01T00:00:00Z".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn fingerprint_is_alertmanagers_and_stable() {
        // The empty set hashes to FNV-1a's offset basis, as in prometheus/common.
        assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
        let a = labels(&[("alertname", "HighErrorRate"), ("severity", "critical")]);
        // Pinned: a change here changes every fingerprint users have stored.
        assert_eq!(fingerprint(&a), "087036d1e9d728e4");
        let b = labels(&[("severity", "critical"), ("alertname", "HighErrorRate")]);
        assert_eq!(fingerprint(&a), fingerprint(&b), "order of insertion does not matter");
        assert_ne!(fingerprint(&a), fingerprint(&labels(&[("alertname", "HighErrorRate")])));
        // Name/value boundaries are part of the hash.
        assert_ne!(fingerprint(&labels(&[("ab", "c")])), fingerprint(&labels(&[("a", "bc")])));
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(None), "0001-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_600_000_123);
        assert_eq!(rfc3339(Some(t)), "2026-11-25T09:46:40.123Z");
    }
}
