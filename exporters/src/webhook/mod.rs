//! `webhook`: delivers alerts as Alertmanager's webhook payload (version
//! "4") to an HTTP endpoint, grouped and de-duplicated with Alertmanager's
//! semantics and defaults (`group_by: [alertname]`, `group_wait: 30s`,
//! `group_interval: 5m`, `repeat_interval: 4h`).
//!
//! `export` only hands alerts to the [`group::Grouper`]; a dispatcher task
//! started with the exporter sleeps until the next group is due, posts, and
//! reports the outcome back. A failed post (connection error, timeout, 5xx,
//! 429) leaves the notification unrecorded and the group is looked at again
//! after an exponential backoff (1s growing to 1m, never less than a
//! `Retry-After`), so the notification is built and sent again until it is
//! delivered: nothing is lost while the agent runs. Any other 4xx is
//! permanent: logged with the status and the start of the body, and tried
//! again only at the group's next `group_interval`, as Alertmanager does.
//! At shutdown every group with something to say is sent once, at once.
//!
//! `slack` is the same notifier with another body: [`Notifier`] takes a
//! [`Delivery`] (where to post and a [`Format`]), so both exporter types
//! share one [`Grouper`] and one dispatcher and only the payload module
//! ([`payload`] or [`slack`]) differs. `email` is a [`Transport::Smtp`]
//! delivery of the same notifier ([`email`]): the dispatcher's `deliver`
//! posts over HTTP or sends over SMTP, where a 4xx reply, a timeout or a
//! connection error is retried and a 5xx reply is permanent.

pub mod email;
pub mod group;
pub mod payload;
pub mod slack;

use crate::otlp_common::{ClientTls, Headers, default_timeout, http_client};
use crate::otlp_http::parse_retry_after;
use group::{GroupOptions, Grouper, Notification};
use magpie_core::config::duration;
use magpie_core::retry::{Backoff, RetryConfig};
use magpie_core::{Batch, ComponentError, ComponentId, ExportError, Exporter, ExporterContext};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Config of `webhook`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL notifications are POSTed to.
    pub endpoint: String,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// Labels that form a group; `[...]` groups by all labels.
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    #[serde(default = "default_group_wait", with = "duration")]
    pub group_wait: Duration,
    #[serde(default = "default_group_interval", with = "duration")]
    pub group_interval: Duration,
    #[serde(default = "default_repeat_interval", with = "duration")]
    pub repeat_interval: Duration,
    /// A firing alert not refreshed for this long is resolved.
    #[serde(default = "default_resolve_timeout", with = "duration")]
    pub resolve_timeout: Duration,
    /// Alerts per notification (0: no limit); the rest is counted in `truncatedAlerts`.
    #[serde(default)]
    pub max_alerts: usize,
    /// `receiver` in the payload; the component id when unset.
    #[serde(default)]
    pub receiver: Option<String>,
    /// `externalURL` in the payload.
    #[serde(default)]
    pub external_url: String,
}

pub(crate) fn default_group_by() -> Vec<String> {
    vec!["alertname".to_string()]
}
pub(crate) fn default_group_wait() -> Duration {
    Duration::from_secs(30)
}
pub(crate) fn default_group_interval() -> Duration {
    Duration::from_secs(300)
}
pub(crate) fn default_repeat_interval() -> Duration {
    Duration::from_secs(4 * 3600)
}
pub(crate) fn default_resolve_timeout() -> Duration {
    Duration::from_secs(300)
}

impl WebhookConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            out.push(format!("endpoint `{}` must start with http:// or https://", self.endpoint));
        }
        out.extend(interval_problems(self.group_interval, self.repeat_interval));
        if let Some(t) = &self.tls {
            out.extend(t.problems());
        }
        out
    }

    fn options(&self) -> GroupOptions {
        GroupOptions {
            group_by: self.group_by.clone(),
            group_wait: self.group_wait,
            group_interval: self.group_interval,
            repeat_interval: self.repeat_interval,
            resolve_timeout: self.resolve_timeout,
        }
    }

    /// What the dispatcher of `id` needs: the endpoint, shown in logs as it is.
    pub fn delivery(&self, id: &ComponentId) -> Delivery {
        Delivery {
            shown: self.endpoint.clone(),
            options: self.options(),
            max_alerts: self.max_alerts,
            transport: Transport::Http(HttpTarget {
                url: self.endpoint.clone(),
                url_is_secret: false,
                headers: self.headers.clone(),
                timeout: self.timeout,
                tls: self.tls.clone(),
                format: Format::Alertmanager {
                    receiver: self.receiver.clone().unwrap_or_else(|| id.to_string()),
                    external_url: self.external_url.clone(),
                },
            }),
        }
    }
}

/// The interval checks every notifier shares.
pub(crate) fn interval_problems(group_interval: Duration, repeat_interval: Duration) -> Vec<String> {
    let mut out = Vec::new();
    if group_interval.is_zero() {
        out.push("group_interval must be more than 0s".to_string());
    }
    if repeat_interval.is_zero() {
        out.push("repeat_interval must be more than 0s".to_string());
    }
    out
}

/// The body a notifier posts.
#[derive(Clone, Debug)]
pub enum Format {
    /// Alertmanager's webhook payload ([`payload::message`]).
    Alertmanager { receiver: String, external_url: String },
    /// A Slack incoming-webhook message in Block Kit ([`slack::message`]).
    Slack(slack::SlackOptions),
}

impl Format {
    /// The exporter type, for messages.
    fn type_name(&self) -> &'static str {
        match self {
            Format::Alertmanager { .. } => "webhook",
            Format::Slack(_) => "slack",
        }
    }

    /// The body of one notification of `alerts`, at most `max_alerts` of them (0: no limit).
    fn body(
        &self,
        group_labels: &std::collections::BTreeMap<String, String>,
        alerts: &[magpie_core::alert::Alert],
        max_alerts: usize,
    ) -> serde_json::Value {
        match self {
            Format::Alertmanager { receiver, external_url } => {
                let (alerts, truncated) = cut(alerts, max_alerts);
                payload::message(receiver, group_labels, alerts, truncated, external_url)
            }
            Format::Slack(opts) => slack::message(opts, group_labels, alerts, max_alerts),
        }
    }
}

/// The first `max` alerts (all when `max` is 0) and how many were left out.
pub fn cut<T>(alerts: &[T], max: usize) -> (&[T], usize) {
    if max > 0 && alerts.len() > max { (&alerts[..max], alerts.len() - max) } else { (alerts, 0) }
}

/// Where and how a [`Notifier`] delivers.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// How logs name the destination: the URL, a name when the URL is a secret, the smarthost.
    pub shown: String,
    pub options: GroupOptions,
    /// Alerts per notification (0: no limit).
    pub max_alerts: usize,
    pub transport: Transport,
}

/// How a notification leaves: an HTTP post (`webhook`, `slack`) or an email (`email`).
#[derive(Clone, Debug)]
pub enum Transport {
    Http(HttpTarget),
    Smtp(email::EmailConfig),
}

/// Where a notification is posted, and its body.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub url: String,
    /// Whether transport errors must be stripped of the URL before they are logged.
    pub url_is_secret: bool,
    pub headers: Headers,
    pub timeout: Duration,
    pub tls: Option<ClientTls>,
    pub format: Format,
}

impl Transport {
    /// The exporter type, for messages.
    fn type_name(&self) -> &'static str {
        match self {
            Transport::Http(h) => h.format.type_name(),
            Transport::Smtp(_) => "email",
        }
    }
}

/// The client a dispatcher delivers through.
enum Client {
    Http(reqwest::Client),
    Smtp(lettre::AsyncSmtpTransport<lettre::Tokio1Executor>),
}

/// The backoff between attempts of one group's notification.
fn retry_policy() -> RetryConfig {
    RetryConfig {
        initial_interval: Duration::from_secs(1),
        max_interval: Duration::from_secs(60),
        max_elapsed_time: Duration::ZERO,
        ..RetryConfig::default()
    }
}

struct Shared {
    grouper: Mutex<Grouper>,
    wake: Notify,
}

fn lock(m: &Mutex<Grouper>) -> MutexGuard<'_, Grouper> {
    // The grouper's state is consistent after every call; a panicked holder leaves it usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An alert notifier: the exporter behind `webhook`, `slack` and `email`.
pub struct Notifier {
    id: ComponentId,
    delivery: Delivery,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The `webhook` exporter.
pub type WebhookExporter = Notifier;

impl Notifier {
    /// A `webhook` exporter.
    pub fn new(id: &ComponentId, config: &WebhookConfig) -> Self {
        Notifier::with(id, config.delivery(id))
    }

    /// An `email` exporter.
    pub fn email(id: &ComponentId, config: &email::EmailConfig) -> Self {
        Notifier::with(id, config.delivery(id))
    }

    /// A `slack` exporter.
    pub fn slack(id: &ComponentId, config: &slack::SlackConfig) -> Self {
        Notifier::with(id, config.delivery(id))
    }

    pub fn with(id: &ComponentId, delivery: Delivery) -> Self {
        Notifier {
            id: id.clone(),
            shared: Arc::new(Shared {
                grouper: Mutex::new(Grouper::new(delivery.options.clone())),
                wake: Notify::new(),
            }),
            delivery,
            stop: CancellationToken::new(),
            task: None,
        }
    }
}

#[async_trait::async_trait]
impl Exporter for Notifier {
    async fn start(&mut self, _ctx: &ExporterContext) -> Result<(), ComponentError> {
        let client = match &self.delivery.transport {
            Transport::Http(h) => {
                Client::Http(http_client(&h.headers, h.timeout, h.tls.as_ref()).map_err(ComponentError::new)?)
            }
            Transport::Smtp(c) => Client::Smtp(c.transport().map_err(ComponentError::new)?),
        };
        let d = Dispatcher {
            id: self.id.clone(),
            delivery: self.delivery.clone(),
            client,
            shared: self.shared.clone(),
            backoffs: HashMap::new(),
        };
        self.task = Some(tokio::spawn(d.run(self.stop.clone())));
        Ok(())
    }

    async fn export(&mut self, batch: Arc<Batch>) -> Result<(), ExportError> {
        let Batch::Alerts(alerts) = batch.as_ref() else {
            return Err(ExportError::permanent(format!(
                "{} takes alerts, not {}",
                self.delivery.transport.type_name(),
                batch.signal()
            )));
        };
        lock(&self.shared.grouper).insert(alerts.iter().cloned(), SystemTime::now());
        self.shared.wake.notify_one();
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), ComponentError> {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        Ok(())
    }
}

/// Whether a notification answered with `status` is worth sending again soon:
/// 429 and every 5xx, as Alertmanager's webhook notifier decides.
pub fn retryable(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// Why a post failed.
enum PostError {
    Retryable(String, Option<Duration>),
    Permanent(String),
}

struct Dispatcher {
    id: ComponentId,
    delivery: Delivery,
    client: Client,
    shared: Arc<Shared>,
    backoffs: HashMap<String, Backoff>,
}

impl Dispatcher {
    async fn run(mut self, stop: CancellationToken) {
        loop {
            let next = lock(&self.shared.grouper).next_flush();
            let sleep = next.map_or(Duration::from_secs(3600), |t| {
                t.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO)
            });
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.shared.wake.notified() => continue,
                () = tokio::time::sleep(sleep) => {}
            }
            self.flush(false).await;
        }
        // Nothing waits out a timer at shutdown: what is due is sent once.
        lock(&self.shared.grouper).expedite(SystemTime::now());
        self.flush(true).await;
    }

    async fn flush(&mut self, last: bool) {
        let due = lock(&self.shared.grouper).due(SystemTime::now());
        for n in due {
            let result = self.deliver(&n).await;
            let now = SystemTime::now();
            match result {
                Ok(()) => {
                    tracing::debug!(component = %self.id, group = %n.key, alerts = n.alerts.len(), "notification delivered");
                    self.backoffs.remove(&n.key);
                    lock(&self.shared.grouper).delivered(&n, now);
                }
                Err(PostError::Retryable(message, retry_after)) => {
                    let backoff =
                        self.backoffs.entry(n.key.clone()).or_insert_with(|| retry_policy().backoff());
                    let wait = backoff.next_wait(retry_after);
                    if last {
                        tracing::error!(component = %self.id, group = %n.key, error = %message, "notification not delivered before shutdown");
                    } else {
                        tracing::warn!(component = %self.id, group = %n.key, retry_in = ?wait, error = %message, "notification failed; will retry");
                    }
                    lock(&self.shared.grouper).failed(&n, now + wait);
                }
                Err(PostError::Permanent(message)) => {
                    self.backoffs.remove(&n.key);
                    tracing::error!(component = %self.id, group = %n.key, error = %message, "notification refused; trying again at the next group_interval");
                }
            }
        }
    }

    /// Sends one notification: an HTTP post or an email, by the transport.
    async fn deliver(&self, n: &Notification) -> Result<(), PostError> {
        match (&self.client, &self.delivery.transport) {
            (Client::Http(client), Transport::Http(h)) => self.post(client, h, n).await,
            (Client::Smtp(smtp), Transport::Smtp(c)) => self.send_email(smtp, c, n).await,
            _ => Err(PostError::Permanent("the client does not match the transport".to_string())),
        }
    }

    async fn send_email(
        &self,
        smtp: &lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
        c: &email::EmailConfig,
        n: &Notification,
    ) -> Result<(), PostError> {
        use lettre::AsyncTransport;
        let shown = &self.delivery.shown;
        let message =
            c.message(&n.group_labels, &n.alerts, self.delivery.max_alerts).map_err(PostError::Permanent)?;
        match smtp.send(message).await {
            Ok(_) => Ok(()),
            // A 5xx reply: the server will not take this message as it is.
            Err(e) if e.is_permanent() => {
                Err(PostError::Permanent(format!("{shown} refused the email: {e}")))
            }
            // 4xx replies, connection errors, timeouts, TLS handshakes: worth another try.
            Err(e) => Err(PostError::Retryable(format!("sending to {shown}: {e}"), None)),
        }
    }

    async fn post(
        &self,
        client: &reqwest::Client,
        h: &HttpTarget,
        n: &Notification,
    ) -> Result<(), PostError> {
        let d = &self.delivery;
        let body = h.format.body(&n.group_labels, &n.alerts, d.max_alerts);
        let shown = &d.shown;
        let resp = client.post(&h.url).json(&body).send().await.map_err(|e| {
            // reqwest's errors print their URL; a secret URL must not reach the log.
            let e = if h.url_is_secret { e.without_url() } else { e };
            PostError::Retryable(format!("sending to {shown}: {e}"), None)
        })?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let text = resp.text().await.unwrap_or_default();
        let excerpt: String = text.chars().take(200).collect();
        let message = format!("{shown} answered {status}: {excerpt}");
        if retryable(status) {
            Err(PostError::Retryable(message, retry_after))
        } else {
            Err(PostError::Permanent(message))
        }
    }
}

#[cfg(test)]
mod tests;
