//! `email`: the webhook notifier sending each notification as one email over
//! SMTP (through [`lettre`]). The grouping, de-duplication, retries and
//! shutdown are the webhook's ([`super::Notifier`]); this module holds the
//! config, the SMTP transport and the message:
//!
//! - subject: Alertmanager's default email subject, `[FIRING:2] HighErrorRate`
//!   or `[RESOLVED] HighErrorRate`, after `subject_prefix` when set;
//! - `multipart/alternative`: a plain-text part and a simple HTML part (user
//!   text escaped), one entry per alert: status, rule, severity, summary,
//!   description, the other labels, the value, startsAt and endsAt;
//! - `Date` and `Message-ID` headers.
//!
//! Connection errors, timeouts and 4xx replies (transient) are retried with
//! the notifier's backoff; a 5xx reply (permanent) is logged with the reply
//! and tried again only at the group's next `group_interval`.

use super::{Delivery, Transport, cut, interval_problems};
use lettre::message::{Mailbox, Message, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use magpie_core::ComponentId;
use magpie_core::alert::{Alert, AlertStatus, rfc3339};
use magpie_core::config::{Secret, duration};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How the connection to the smarthost is protected.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded with `STARTTLS`, which is required (port 587 or 25).
    #[default]
    Starttls,
    /// TLS from the first byte (implicit TLS, port 465).
    Tls,
    /// No TLS at all: only for a relay on the same host or a trusted network.
    None,
}

/// Config of `email`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `host:port` of the SMTP server.
    pub smarthost: String,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub tls: TlsMode,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret<String>>,
    /// The name sent with `EHLO`; the host's name when unset.
    #[serde(default)]
    pub hello: Option<String>,
    #[serde(default = "default_smtp_timeout", with = "duration")]
    pub timeout: Duration,
    /// A PEM file of the CA that signed the server's certificate (a private CA).
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub subject_prefix: Option<String>,
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
    /// Alerts per email (0: no limit); the rest is counted at the end.
    #[serde(default)]
    pub max_alerts: usize,
}

fn default_smtp_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `host:port` split, when it is one.
fn host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

impl EmailConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if host_port(&self.smarthost).is_none() {
            out.push(format!("smarthost `{}` must be host:port", self.smarthost));
        }
        if let Err(e) = self.from.parse::<Mailbox>() {
            out.push(format!("from `{}` is not an email address: {e}", self.from));
        }
        if self.to.is_empty() {
            out.push("to must list at least one address".to_string());
        }
        for to in &self.to {
            if let Err(e) = to.parse::<Mailbox>() {
                out.push(format!("to `{to}` is not an email address: {e}"));
            }
        }
        if self.username.is_some() != self.password.is_some() {
            out.push("username and password go together".to_string());
        }
        if let Some(f) = &self.ca_file
            && let Err(e) = std::fs::read(f)
        {
            out.push(format!("ca_file `{f}` cannot be read: {e}"));
        }
        if self.timeout.is_zero() {
            out.push("timeout must be more than 0s".to_string());
        }
        out.extend(interval_problems(self.group_interval, self.repeat_interval));
        out
    }

    /// What the dispatcher of `id` needs; logs name the smarthost.
    pub fn delivery(&self, _id: &ComponentId) -> Delivery {
        Delivery {
            shown: format!("smtp://{}", self.smarthost),
            options: super::group::GroupOptions {
                group_by: self.group_by.clone(),
                group_wait: self.group_wait,
                group_interval: self.group_interval,
                repeat_interval: self.repeat_interval,
                resolve_timeout: self.resolve_timeout,
            },
            max_alerts: self.max_alerts,
            transport: Transport::Smtp(self.clone()),
        }
    }

    /// The SMTP transport (a small connection pool) this config describes.
    pub fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let (host, port) = host_port(&self.smarthost)
            .ok_or_else(|| format!("smarthost `{}` must be host:port", self.smarthost))?;
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .timeout(Some(self.timeout));
        if self.tls != TlsMode::None {
            let mut params = TlsParameters::builder(host);
            if let Some(f) = &self.ca_file {
                let pem = std::fs::read(f).map_err(|e| format!("ca_file `{f}`: {e}"))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| format!("ca_file `{f}`: {e}"))?;
                params = params.add_root_certificate(cert);
            }
            let params = params.build_rustls().map_err(|e| format!("TLS for {}: {e}", self.smarthost))?;
            b = b.tls(if self.tls == TlsMode::Tls { Tls::Wrapper(params) } else { Tls::Required(params) });
        }
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            b = b.credentials(Credentials::new(u.clone(), p.expose().clone()));
        }
        if let Some(h) = &self.hello {
            b = b.hello_name(ClientId::Domain(h.clone()));
        }
        Ok(b.build())
    }

    /// The email of one notification of `alerts`, at most `max_alerts` of them (0: no limit).
    pub fn message(
        &self,
        group_labels: &BTreeMap<String, String>,
        alerts: &[Alert],
        max_alerts: usize,
    ) -> Result<Message, String> {
        let from: Mailbox = self.from.parse().map_err(|e| format!("from `{}`: {e}", self.from))?;
        let mut b = Message::builder().from(from).subject(subject(
            self.subject_prefix.as_deref(),
            group_labels,
            alerts,
        ));
        for to in &self.to {
            b = b.to(to.parse().map_err(|e| format!("to `{to}`: {e}"))?);
        }
        let (shown, left_out) = cut(alerts, max_alerts);
        b.date_now()
            .message_id(None)
            .multipart(MultiPart::alternative_plain_html(text(shown, left_out), html(shown, left_out)))
            .map_err(|e| format!("building the email: {e}"))
    }
}

/// Alertmanager's default email subject, after `prefix` when set.
pub fn subject(prefix: Option<&str>, group_labels: &BTreeMap<String, String>, alerts: &[Alert]) -> String {
    let title = super::slack::title(group_labels, alerts);
    match prefix {
        Some(p) if !p.is_empty() => format!("{p} {title}"),
        _ => title,
    }
}

/// `&`, `<`, `>`, `"` and `'` as HTML needs them in text and attributes.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn status(a: &Alert) -> &'static str {
    match a.status {
        AlertStatus::Firing => "FIRING",
        AlertStatus::Resolved => "RESOLVED",
    }
}

fn value_text(v: f64) -> String {
    if v.is_nan() { "no data".to_string() } else { format!("{v}") }
}

/// The alert's fields as (name, value) lines, in the order both parts show them.
fn fields(a: &Alert) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(sev) = a.labels.get("severity") {
        out.push(("Severity", sev.clone()));
    }
    if let Some(s) = a.annotations.get("summary") {
        out.push(("Summary", s.clone()));
    }
    if let Some(d) = a.annotations.get("description") {
        out.push(("Description", d.clone()));
    }
    let labels: Vec<String> = a
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname" && k.as_str() != "severity")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !labels.is_empty() {
        out.push(("Labels", labels.join(", ")));
    }
    out.push(("Value", value_text(a.value)));
    out.push(("StartsAt", rfc3339(Some(a.starts_at))));
    if a.ends_at.is_some() {
        out.push(("EndsAt", rfc3339(a.ends_at)));
    }
    out
}

fn left_out_line(n: usize) -> String {
    format!("{n} more alert{} not shown (max_alerts).", if n == 1 { "" } else { "s" })
}

/// The plain-text part.
pub fn text(alerts: &[Alert], left_out: usize) -> String {
    let mut out = String::new();
    for a in alerts {
        out.push_str(&format!("[{}] {}\n", status(a), a.rule));
        for (k, v) in fields(a) {
            out.push_str(&format!("  {k}: {v}\n"));
        }
        out.push('\n');
    }
    if left_out > 0 {
        out.push_str(&left_out_line(left_out));
        out.push('\n');
    }
    out
}

/// The HTML part: one table per alert, every user text escaped.
pub fn html(alerts: &[Alert], left_out: usize) -> String {
    let mut out = String::from("<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif\">\n");
    for a in alerts {
        let color = if a.status == AlertStatus::Firing { "#c0392b" } else { "#27ae60" };
        out.push_str(&format!(
            "<h3><span style=\"color: {color}\">[{}]</span> {}</h3>\n<table>\n",
            status(a),
            escape_html(&a.rule)
        ));
        for (k, v) in fields(a) {
            out.push_str(&format!("<tr><th align=\"left\">{k}</th><td>{}</td></tr>\n", escape_html(&v)));
        }
        out.push_str("</table>\n");
    }
    if left_out > 0 {
        out.push_str(&format!("<p>{}</p>\n", left_out_line(left_out)));
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use magpie_core::config::{Node, from_node};
    use std::time::UNIX_EPOCH;

    fn alert(route: &str, status: AlertStatus) -> Alert {
        let labels: BTreeMap<String, String> =
            [("alertname", "HighErrorRate"), ("http.route", route), ("severity", "critical")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        Alert {
            rule: "HighErrorRate".into(),
            status,
            fingerprint: magpie_core::alert::fingerprint(&labels),
            labels,
            annotations: [
                ("summary".to_string(), format!("errors on {route}")),
                ("description".to_string(), "rate <b>high</b> & \"rising\"".to_string()),
            ]
            .into(),
            value: 12.5,
            starts_at: UNIX_EPOCH + Duration::from_secs(1_795_600_000),
            ends_at: (status == AlertStatus::Resolved)
                .then(|| UNIX_EPOCH + Duration::from_secs(1_795_600_060)),
            generator: "alerts".into(),
        }
    }

    fn config(extra: &str) -> EmailConfig {
        let yaml = format!(
            "smarthost: 127.0.0.1:2525\nfrom: magpie@example.com\nto: [ops@example.com, 'On Call <oncall@example.com>']\n{extra}"
        );
        let node = Node::parse(&yaml, "t.yaml").unwrap();
        from_node::<EmailConfig>(&node, "exporters.email").unwrap().0
    }

    fn group() -> BTreeMap<String, String> {
        [("alertname".to_string(), "HighErrorRate".to_string())].into()
    }

    #[test]
    fn subject_is_alertmanagers() {
        let firing = [alert("/chat", AlertStatus::Firing), alert("/rag", AlertStatus::Firing)];
        assert_eq!(subject(None, &group(), &firing), "[FIRING:2] HighErrorRate");
        let resolved = [alert("/chat", AlertStatus::Resolved)];
        assert_eq!(subject(None, &group(), &resolved), "[RESOLVED] HighErrorRate");
        let mixed = [alert("/chat", AlertStatus::Resolved), alert("/rag", AlertStatus::Firing)];
        assert_eq!(subject(Some("[prod]"), &group(), &mixed), "[prod] [FIRING:1] HighErrorRate");
    }

    #[test]
    fn message_has_both_parts_and_headers() {
        let c = config("subject_prefix: '[prod]'\n");
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let m = c.message(&group(), &[alert("/chat", AlertStatus::Firing)], 0).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("Subject: [prod] [FIRING:1] HighErrorRate"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("Content-Type: text/plain"), "{raw}");
        assert!(raw.contains("Content-Type: text/html"), "{raw}");
        assert!(raw.contains("<table>") && raw.contains("  Summary: errors on /chat"), "both parts: {raw}");
        assert!(raw.contains("\r\nDate: "), "{raw}");
        assert!(raw.contains("\r\nMessage-ID: <"), "{raw}");
        assert!(raw.contains("To: ops@example.com, \"On Call\" <oncall@example.com>"), "{raw}");
        let env = m.envelope();
        assert_eq!(env.to().len(), 2);
    }

    #[test]
    fn parts_list_every_field() {
        let a = alert("/chat", AlertStatus::Resolved);
        let t = text(std::slice::from_ref(&a), 0);
        for want in [
            "[RESOLVED] HighErrorRate",
            "Severity: critical",
            "Summary: errors on /chat",
            "Description: rate <b>high</b> & \"rising\"",
            "Labels: http.route=/chat",
            "Value: 12.5",
            "StartsAt: 2026-11-25T09:46:40.000Z",
            "EndsAt: 2026-11-25T09:47:40.000Z",
        ] {
            assert!(t.contains(want), "{want} not in {t}");
        }
        assert!(!text(&[alert("/chat", AlertStatus::Firing)], 0).contains("EndsAt"));
    }

    #[test]
    fn html_escapes_user_text() {
        let mut a = alert("/chat", AlertStatus::Firing);
        a.rule = "<script>alert('x')</script>".into();
        let h = html(&[a], 0);
        assert!(h.contains("rate &lt;b&gt;high&lt;/b&gt; &amp; &quot;rising&quot;"), "{h}");
        assert!(h.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"), "{h}");
        assert!(!h.contains("<b>") && !h.contains("<script>"), "{h}");
        assert_eq!(escape_html("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
    }

    #[test]
    fn max_alerts_cuts_and_counts() {
        let alerts: Vec<Alert> = ["/a", "/b", "/c"].iter().map(|r| alert(r, AlertStatus::Firing)).collect();
        let c = config("");
        let raw = String::from_utf8(c.message(&group(), &alerts, 2).unwrap().formatted()).unwrap();
        assert!(raw.contains("[FIRING:3] HighErrorRate"), "the subject counts every alert: {raw}");
        let t = text(&alerts[..2], 1);
        assert!(t.contains("http.route=/b") && t.contains("1 more alert not shown"), "{t}");
        assert!(raw.contains("errors on /b") && !raw.contains("errors on /c"), "{raw}");
        assert!(raw.contains("1 more alert not shown"), "{raw}");
    }

    #[test]
    fn config_problems() {
        let c = config("");
        assert_eq!(c.tls, TlsMode::Starttls);
        assert_eq!(c.group_wait, Duration::from_secs(30));
        assert!(c.problems().is_empty());
        let node = Node::parse(
            "smarthost: mail.example.com\nfrom: nobody\nto: [a@b.c, 'not an address']\nusername: u\n",
            "t.yaml",
        )
        .unwrap();
        let p = from_node::<EmailConfig>(&node, "exporters.email").unwrap().0.problems().join("\n");
        for want in ["must be host:port", "from `nobody`", "to `not an address`", "username and password"] {
            assert!(p.contains(want), "{want} not in {p}");
        }
    }
}
