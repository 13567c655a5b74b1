//! Alertmanager's webhook payload (version "4"), built from [`Alert`]s.
//!
//! The shape is Alertmanager's `webhook.Message`, so receivers written for
//! Alertmanager (and its test fixtures) accept it unchanged.

use magpie_core::alert::{Alert, AlertStatus, rfc3339};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// One alert as Alertmanager's webhook sends it. `generatorURL` carries the
/// id of the component that raised it (`alerts/critical`).
pub fn alert_json(a: &Alert) -> Value {
    json!({
        "status": a.status.as_str(),
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(Some(a.starts_at)),
        "endsAt": rfc3339(a.ends_at),
        "generatorURL": a.generator,
        "fingerprint": a.fingerprint,
    })
}

/// Alerts as a JSON array of [`alert_json`] objects.
pub fn alerts_json(alerts: &[Alert]) -> Value {
    Value::Array(alerts.iter().map(alert_json).collect())
}

/// Labels as Alertmanager prints a label set: `{a="x", b="y"}`.
pub fn label_set(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// The pairs every map has with the same value.
fn common(maps: &mut dyn Iterator<Item = &BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let Some(first) = maps.next() else { return BTreeMap::new() };
    let mut out = first.clone();
    for m in maps {
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

/// The whole message for one group's notification. `alerts` is what is
/// sent (already cut to `max_alerts`); `truncated` counts what was cut.
pub fn message(
    receiver: &str,
    group_labels: &BTreeMap<String, String>,
    alerts: &[Alert],
    truncated: usize,
    external_url: &str,
) -> Value {
    let firing = alerts.iter().any(|a| a.status == AlertStatus::Firing);
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{}", label_set(group_labels)),
        "truncatedAlerts": truncated,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common(&mut alerts.iter().map(|a| &a.labels)),
        "commonAnnotations": common(&mut alerts.iter().map(|a| &a.annotations)),
        "externalURL": external_url,
        "alerts": alerts_json(alerts),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn alert(name: &str, route: &str, status: AlertStatus) -> Alert {
        let labels: BTreeMap<String, String> =
            [("alertname", name), ("http.route", route), ("severity", "critical")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        Alert {
            rule: name.into(),
            status,
            fingerprint: magpie_core::alert::fingerprint(&labels),
            labels,
            annotations: [("summary".to_string(), format!("errors on {route}"))].into(),
            value: 12.0,
            starts_at: UNIX_EPOCH + Duration::from_secs(1_795_600_000),
            ends_at: (status == AlertStatus::Resolved)
                .then(|| UNIX_EPOCH + Duration::from_secs(1_795_600_060)),
            generator: "alerts".into(),
        }
    }

    #[test]
    fn message_has_alertmanagers_fields() {
        let a = alert("HighErrorRate", "/chat", AlertStatus::Firing);
        let b = alert("HighErrorRate", "/rag", AlertStatus::Resolved);
        let group = [("alertname".to_string(), "HighErrorRate".to_string())].into();
        let m = message("webhook/ops", &group, &[a.clone(), b], 1, "http://magpie:8888");
        assert_eq!(m["version"], "4");
        assert_eq!(m["groupKey"], "{}:{alertname=\"HighErrorRate\"}");
        assert_eq!(m["truncatedAlerts"], 1);
        assert_eq!(m["status"], "firing");
        assert_eq!(m["receiver"], "webhook/ops");
        assert_eq!(m["groupLabels"], json!({"alertname": "HighErrorRate"}));
        assert_eq!(m["commonLabels"], json!({"alertname": "HighErrorRate", "severity": "critical"}));
        assert_eq!(m["commonAnnotations"], json!({}));
        assert_eq!(m["externalURL"], "http://magpie:8888");
        let first = &m["alerts"][0];
        assert_eq!(first["status"], "firing");
        assert_eq!(first["startsAt"], "2026-11-25T09:46:40.000Z");
        assert_eq!(first["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(first["fingerprint"], a.fingerprint.as_str());
        assert_eq!(first["generatorURL"], "alerts");
        assert_eq!(m["alerts"][1]["status"], "resolved");
        assert_eq!(m["alerts"][1]["endsAt"], "2026-11-25T09:47:40.000Z");
        let resolved = message("w", &group, &[alert("HighErrorRate", "/rag", AlertStatus::Resolved)], 0, "");
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["commonAnnotations"], json!({"summary": "errors on /rag"}));
    }
}
