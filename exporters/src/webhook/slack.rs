//! `slack`: the webhook notifier posting to a Slack incoming webhook. The
//! grouping, de-duplication, retries and shutdown are the webhook's
//! ([`super::Notifier`]); this module holds the config and the body, a
//! Block Kit message:
//!
//! - `text`: the fallback Slack shows in notifications, also the title:
//!   `[FIRING:2] HighErrorRate` or `[RESOLVED] HighErrorRate` (Alertmanager's
//!   default Slack title: the status, the firing count, the group's values);
//! - a `header` block with the title, a `context` block with the group labels;
//! - one `section` per alert: status, severity, `summary` and `description`,
//!   the other labels, the value and when it started (and ended);
//! - a closing `context` block counting the alerts left out, by `max_alerts`
//!   or by Slack's 50 blocks per message.
//!
//! User text is escaped for mrkdwn (`&`, `<`, `>`), and every text is cut on
//! a character boundary to Slack's limits (3000 characters per section, 150
//! per header), never inside an escape.

use super::{Delivery, Format, HttpTarget, Transport, interval_problems};
use crate::otlp_common::{ClientTls, default_timeout};
use magpie_core::ComponentId;
use magpie_core::alert::{Alert, AlertStatus, rfc3339};
use magpie_core::config::{Secret, duration};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// Config of `slack`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming webhook's URL: the credential, so a secret.
    pub webhook_url: Secret<String>,
    /// Overrides of the webhook's defaults, sent only when set.
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub icon_emoji: Option<String>,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub tls: Option<ClientTls>,
    #[serde(default = "super::default_group_by")]
    pub group_by: Vec<String>,
    #[serde(default = "super::default_group_wait", with = "duration")]
    pub group_wait: Duration,
    #[serde(default = "super::default_group_interval", with = "duration")]
    pub group_interval: Duration,
    #[serde(default = "super::default_repeat_interval", with = "duration")]
    pub repeat_interval: Duration,
    #[serde(default = "super::default_resolve_timeout", with = "duration")]
    pub resolve_timeout: Duration,
    /// Alerts per message (0: as many as Slack's block limit allows).
    #[serde(default)]
    pub max_alerts: usize,
}

impl SlackConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let url = self.webhook_url.expose();
        // The URL is a secret: the message never repeats it.
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            out.push("webhook_url must start with https:// (or http://)".to_string());
        }
        out.extend(interval_problems(self.group_interval, self.repeat_interval));
        if let Some(t) = &self.tls {
            out.extend(t.problems());
        }
        out
    }

    /// What the dispatcher of `id` needs; logs name the component, never the URL.
    pub fn delivery(&self, id: &ComponentId) -> Delivery {
        Delivery {
            shown: format!("the Slack webhook of {id}"),
            options: super::group::GroupOptions {
                group_by: self.group_by.clone(),
                group_wait: self.group_wait,
                group_interval: self.group_interval,
                repeat_interval: self.repeat_interval,
                resolve_timeout: self.resolve_timeout,
            },
            max_alerts: self.max_alerts,
            transport: Transport::Http(HttpTarget {
                url: self.webhook_url.expose().clone(),
                url_is_secret: true,
                headers: Default::default(),
                timeout: self.timeout,
                tls: self.tls.clone(),
                format: Format::Slack(SlackOptions {
                    channel: self.channel.clone(),
                    username: self.username.clone(),
                    icon_emoji: self.icon_emoji.clone(),
                }),
            }),
        }
    }
}

/// The message fields a config may override.
#[derive(Clone, Debug, Default)]
pub struct SlackOptions {
    pub channel: Option<String>,
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
}

/// Slack's limits: blocks per message, characters per section text and per header.
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_CHARS: usize = 3000;
pub const MAX_HEADER_CHARS: usize = 150;
/// Sections left for alerts beside the header, the group context and the closing count.
pub const MAX_ALERT_SECTIONS: usize = MAX_BLOCKS - 3;

/// `&`, `<` and `>` as Slack's mrkdwn needs them in user text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to at most `max` characters (not bytes), ending in `…` when cut,
/// and never inside an escape (`&amp;`, `&lt;`, `&gt;`).
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    // An escape is at most 5 characters; a `&` without its `;` was cut in two.
    if let Some(amp) = out.rfind('&')
        && !out[amp..].contains(';')
    {
        out.truncate(amp);
    }
    out.push('…');
    out
}

/// The title (and notification fallback) of a notification of `alerts`:
/// `[FIRING:2] HighErrorRate`, `[RESOLVED] HighErrorRate`.
pub fn title(group_labels: &BTreeMap<String, String>, alerts: &[Alert]) -> String {
    let firing = alerts.iter().filter(|a| a.status == AlertStatus::Firing).count();
    let status = if firing > 0 { format!("FIRING:{firing}") } else { "RESOLVED".to_string() };
    let values: Vec<&str> = group_labels.values().map(String::as_str).collect();
    let name = if values.is_empty() {
        alerts.first().map_or("alerts", |a| a.rule.as_str()).to_string()
    } else {
        values.join(" ")
    };
    format!("[{status}] {name}")
}

fn labels_text(labels: &BTreeMap<String, String>, skip: &[&str]) -> String {
    let parts: Vec<String> = labels
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| format!("`{}={}`", escape(k), escape(v)))
        .collect();
    parts.join(" ")
}

fn value_text(v: f64) -> String {
    if v.is_nan() { "no data".to_string() } else { format!("{v}") }
}

/// One alert's section text (mrkdwn, escaped, at most [`MAX_SECTION_CHARS`]).
pub fn alert_text(a: &Alert) -> String {
    let mut lines = Vec::new();
    let (emoji, status) = match a.status {
        AlertStatus::Firing => (":red_circle:", "FIRING"),
        AlertStatus::Resolved => (":large_green_circle:", "RESOLVED"),
    };
    let mut head = format!("{emoji} *{status}* {}", escape(&a.rule));
    if let Some(sev) = a.labels.get("severity") {
        head.push_str(&format!(" · severity *{}*", escape(sev)));
    }
    lines.push(head);
    if let Some(s) = a.annotations.get("summary") {
        lines.push(format!("*{}*", escape(s)));
    }
    if let Some(d) = a.annotations.get("description") {
        lines.push(escape(d));
    }
    let labels = labels_text(&a.labels, &["alertname", "severity"]);
    if !labels.is_empty() {
        lines.push(format!("*Labels:* {labels}"));
    }
    let mut when = format!("*Value:* {} · *Started:* {}", value_text(a.value), rfc3339(Some(a.starts_at)));
    if a.ends_at.is_some() {
        when.push_str(&format!(" · *Ended:* {}", rfc3339(a.ends_at)));
    }
    lines.push(when);
    truncate(&lines.join("\n"), MAX_SECTION_CHARS)
}

/// The whole message for one group's notification of `alerts` (firing
/// first), of which at most `max_alerts` (0: no limit) get a section, and
/// never more than Slack's block limit allows; the rest are counted.
pub fn message(
    opts: &SlackOptions,
    group_labels: &BTreeMap<String, String>,
    alerts: &[Alert],
    max_alerts: usize,
) -> Value {
    let max = if max_alerts == 0 { MAX_ALERT_SECTIONS } else { max_alerts.min(MAX_ALERT_SECTIONS) };
    let (shown, left_out) = super::cut(alerts, max);
    let title = title(group_labels, alerts);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&title, MAX_HEADER_CHARS), "emoji": true},
    })];
    if !group_labels.is_empty() {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": truncate(&labels_text(group_labels, &[]), MAX_SECTION_CHARS)}],
        }));
    }
    for a in shown {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": alert_text(a)}}));
    }
    if left_out > 0 {
        let s = if left_out == 1 { "" } else { "s" };
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("_{left_out} more alert{s} not shown_")}],
        }));
    }
    let mut m = json!({
        "text": truncate(&escape(&title), MAX_SECTION_CHARS),
        "blocks": blocks,
    });
    for (key, value) in
        [("channel", &opts.channel), ("username", &opts.username), ("icon_emoji", &opts.icon_emoji)]
    {
        if let Some(v) = value {
            m[key] = json!(v);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use magpie_core::config::{Node, from_node};
    use std::time::UNIX_EPOCH;

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
            value: 12.5,
            starts_at: UNIX_EPOCH + Duration::from_secs(1_795_600_000),
            ends_at: (status == AlertStatus::Resolved)
                .then(|| UNIX_EPOCH + Duration::from_secs(1_795_600_060)),
            generator: "alerts".into(),
        }
    }

    fn group() -> BTreeMap<String, String> {
        [("alertname".to_string(), "HighErrorRate".to_string())].into()
    }

    #[test]
    fn a_firing_group_has_a_header_a_fallback_and_a_section_per_alert() {
        let a = alert("HighErrorRate", "/chat", AlertStatus::Firing);
        let b = alert("HighErrorRate", "/rag", AlertStatus::Firing);
        let c = alert("HighErrorRate", "/old", AlertStatus::Resolved);
        let m = message(&SlackOptions::default(), &group(), &[a, b, c], 0);
        assert_eq!(m["text"], "[FIRING:2] HighErrorRate");
        let blocks = m["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 5, "{m:#}");
        assert_eq!(
            blocks[0],
            json!({"type": "header", "text": {"type": "plain_text", "text": "[FIRING:2] HighErrorRate", "emoji": true}})
        );
        assert_eq!(blocks[1]["type"], "context");
        assert_eq!(blocks[1]["elements"][0]["text"], "`alertname=HighErrorRate`");
        assert_eq!(blocks[2]["type"], "section");
        assert_eq!(
            blocks[2]["text"],
            json!({"type": "mrkdwn", "text": ":red_circle: *FIRING* HighErrorRate · severity *critical*\n*errors on /chat*\n*Labels:* `http.route=/chat`\n*Value:* 12.5 · *Started:* 2026-11-25T09:46:40.000Z"})
        );
        let resolved = blocks[4]["text"]["text"].as_str().unwrap();
        assert!(resolved.starts_with(":large_green_circle: *RESOLVED* HighErrorRate"), "{resolved}");
        assert!(resolved.ends_with("· *Ended:* 2026-11-25T09:47:40.000Z"), "{resolved}");
        for key in ["channel", "username", "icon_emoji"] {
            assert!(m.get(key).is_none(), "{key} is sent only when set: {m:#}");
        }
    }

    #[test]
    fn a_resolved_group_says_resolved() {
        let m = message(
            &SlackOptions::default(),
            &group(),
            &[alert("HighErrorRate", "/rag", AlertStatus::Resolved)],
            0,
        );
        assert_eq!(m["text"], "[RESOLVED] HighErrorRate");
        assert_eq!(m["blocks"][0]["text"]["text"], "[RESOLVED] HighErrorRate");
        // Without group labels the rule names the group.
        let m = message(
            &SlackOptions::default(),
            &BTreeMap::new(),
            &[alert("Quiet", "/", AlertStatus::Resolved)],
            0,
        );
        assert_eq!(m["text"], "[RESOLVED] Quiet");
        assert_eq!(m["blocks"].as_array().unwrap().len(), 2, "no group context block");
    }

    #[test]
    fn overrides_are_sent_when_set() {
        let opts = SlackOptions {
            channel: Some("#ops".into()),
            username: Some("magpie".into()),
            icon_emoji: Some(":bird:".into()),
        };
        let m = message(&opts, &group(), &[alert("HighErrorRate", "/", AlertStatus::Firing)], 0);
        assert_eq!(
            (&m["channel"], &m["username"], &m["icon_emoji"]),
            (&json!("#ops"), &json!("magpie"), &json!(":bird:"))
        );
        let only = SlackOptions { channel: Some("#ops".into()), ..SlackOptions::default() };
        let m = message(&only, &group(), &[alert("HighErrorRate", "/", AlertStatus::Firing)], 0);
        assert_eq!(m["channel"], "#ops");
        assert!(m.get("username").is_none() && m.get("icon_emoji").is_none(), "{m:#}");
    }

    #[test]
    fn user_text_is_escaped_for_mrkdwn() {
        assert_eq!(escape("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        let mut a = alert("Err<&>", "/a?x=1&y=<2>", AlertStatus::Firing);
        a.annotations.insert("description".into(), "<!channel> ping".into());
        let g: BTreeMap<String, String> = [("alertname".to_string(), "Err<&>".to_string())].into();
        let m = message(&SlackOptions::default(), &g, &[a], 0);
        assert_eq!(m["text"], "[FIRING:1] Err&lt;&amp;&gt;");
        // The header is plain_text: Slack shows it as it is.
        assert_eq!(m["blocks"][0]["text"]["text"], "[FIRING:1] Err<&>");
        assert_eq!(m["blocks"][1]["elements"][0]["text"], "`alertname=Err&lt;&amp;&gt;`");
        let text = m["blocks"][2]["text"]["text"].as_str().unwrap();
        assert!(text.contains("*FIRING* Err&lt;&amp;&gt;"), "{text}");
        assert!(text.contains("&lt;!channel&gt; ping"), "{text}");
        assert!(text.contains("`http.route=/a?x=1&amp;y=&lt;2&gt;`"), "{text}");
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
    }

    #[test]
    fn texts_are_cut_on_char_boundaries_and_never_inside_an_escape() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééééé", 5), "ééééé", "Slack counts characters, not bytes");
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("ab&amp;cd", 5), "ab…");
        assert_eq!(truncate("ab&amp;cd", 8), "ab&amp;…");
        let mut a = alert("Big", "/", AlertStatus::Firing);
        a.annotations.insert("description".into(), "ü<".repeat(2000));
        let text = alert_text(&a);
        let n = text.chars().count();
        assert!(n <= MAX_SECTION_CHARS && n > MAX_SECTION_CHARS - 6, "cut to Slack's limit: {n}");
        assert!(text.ends_with('…'));
        let before = text.trim_end_matches('…');
        let tail = &before[before.rfind('&').unwrap()..];
        assert!(tail.starts_with("&lt;"), "the last escape is whole: {tail}");
        let g: BTreeMap<String, String> = [("alertname".to_string(), "x".repeat(400))].into();
        let m = message(&SlackOptions::default(), &g, &[a], 0);
        assert_eq!(m["blocks"][0]["text"]["text"].as_str().unwrap().chars().count(), MAX_HEADER_CHARS);
    }

    #[test]
    fn alerts_are_capped_by_max_alerts_and_by_slacks_block_limit() {
        let many: Vec<Alert> =
            (0..60).map(|i| alert("HighErrorRate", &format!("/r{i}"), AlertStatus::Firing)).collect();
        let m = message(&SlackOptions::default(), &group(), &many, 0);
        let blocks = m["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), MAX_BLOCKS);
        assert_eq!(blocks.last().unwrap()["elements"][0]["text"], "_13 more alerts not shown_");
        assert_eq!(m["text"], "[FIRING:60] HighErrorRate", "the title counts every alert");
        let m = message(&SlackOptions::default(), &group(), &many[..3], 2);
        let blocks = m["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 5);
        assert_eq!(blocks[4]["elements"][0]["text"], "_1 more alert not shown_");
        let m = message(&SlackOptions::default(), &group(), &many, 100);
        assert_eq!(
            m["blocks"].as_array().unwrap().len(),
            MAX_BLOCKS,
            "max_alerts never passes Slack's limit"
        );
    }

    #[test]
    fn config_defaults_and_problems() {
        let node = Node::parse("webhook_url: https://hooks.slack.com/services/T/B/x\n", "t.yaml").unwrap();
        let (c, secrets) = from_node::<SlackConfig>(&node, "exporters.slack").unwrap();
        assert_eq!(secrets.len(), 1, "webhook_url is a secret: {secrets:?}");
        assert!(!format!("{c:?}").contains("hooks.slack.com"), "Debug redacts the URL");
        assert_eq!(c.group_by, vec!["alertname".to_string()]);
        assert_eq!(
            (c.group_wait, c.group_interval, c.repeat_interval, c.resolve_timeout, c.timeout),
            (
                Duration::from_secs(30),
                Duration::from_secs(300),
                Duration::from_secs(4 * 3600),
                Duration::from_secs(300),
                Duration::from_secs(10)
            )
        );
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let node = Node::parse("webhook_url: hooks.slack.com/secret-token\nrepeat_interval: 0s\n", "t.yaml")
            .unwrap();
        let p = from_node::<SlackConfig>(&node, "exporters.slack").unwrap().0.problems().join("\n");
        assert!(p.contains("webhook_url must start with https://") && p.contains("repeat_interval"), "{p}");
        assert!(!p.contains("secret-token"), "the URL is not repeated: {p}");
    }
}
