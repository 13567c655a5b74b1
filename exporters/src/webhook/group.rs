//! Grouping and de-duplication of alerts into notifications, with
//! Alertmanager's semantics. A pure state machine over an explicit clock:
//! the dispatcher task around it only sleeps, posts and reports back.
//!
//! - Alerts with the same values of `group_by` form a group. A new group
//!   waits `group_wait` before its first notification, so alerts that start
//!   together arrive together.
//! - After that a group is looked at every `group_interval`. It is notified
//!   when a firing alert is new since the last notification, when an alert
//!   it notified as firing has resolved, or, with nothing changed, when
//!   `repeat_interval` has passed since the last notification (Alertmanager's
//!   `DedupStage.needsUpdate`).
//! - A notification is recorded only once delivered ([`Grouper::delivered`]),
//!   so a failed one is built again at the retry. Resolved alerts leave the
//!   group once a notification carrying them is delivered: sent once.
//! - A firing alert that is no longer refreshed for `resolve_timeout` is
//!   resolved, as Alertmanager does for alerts without an end time.

use magpie_core::alert::{Alert, AlertStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

/// The grouping settings.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// Labels that form a group; `...` groups by all labels.
    pub group_by: Vec<String>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub resolve_timeout: Duration,
}

/// One notification to deliver: a group and its alerts, firing and resolved.
#[derive(Clone, Debug)]
pub struct Notification {
    pub key: String,
    pub group_labels: BTreeMap<String, String>,
    /// Firing first, then resolved; each by start time, then fingerprint.
    pub alerts: Vec<Alert>,
    firing: BTreeSet<String>,
    resolved: BTreeSet<String>,
    /// Each alert's last update when the notification was built.
    versions: Vec<(String, SystemTime)>,
}

struct Entry {
    alert: Alert,
    updated: SystemTime,
}

/// What the last delivered notification of a group held.
struct Sent {
    firing: BTreeSet<String>,
    resolved: BTreeSet<String>,
    at: SystemTime,
}

struct Group {
    labels: BTreeMap<String, String>,
    alerts: BTreeMap<String, Entry>,
    next_flush: SystemTime,
    flushed: bool,
    last: Option<Sent>,
}

/// Every group of one notifier.
pub struct Grouper {
    opts: GroupOptions,
    groups: BTreeMap<String, Group>,
}

impl Grouper {
    pub fn new(opts: GroupOptions) -> Self {
        Grouper { opts, groups: BTreeMap::new() }
    }

    fn group_labels(&self, alert: &Alert) -> BTreeMap<String, String> {
        if self.opts.group_by.iter().any(|l| l == "...") {
            return alert.labels.clone();
        }
        self.opts
            .group_by
            .iter()
            .filter_map(|l| alert.labels.get(l).map(|v| (l.clone(), v.clone())))
            .collect()
    }

    /// Takes alerts in (new ones, refreshed ones, resolutions).
    pub fn insert(&mut self, alerts: impl IntoIterator<Item = Alert>, now: SystemTime) {
        for alert in alerts {
            let labels = self.group_labels(&alert);
            let key = crate::webhook::payload::label_set(&labels);
            let wait = self.opts.group_wait;
            let group = self.groups.entry(key).or_insert_with(|| Group {
                labels,
                alerts: BTreeMap::new(),
                next_flush: now + wait,
                flushed: false,
                last: None,
            });
            // An alert that has waited group_wait already goes out at once (Alertmanager's insert).
            if !group.flushed && alert.starts_at + wait < now {
                group.next_flush = group.next_flush.min(now);
            }
            group.alerts.insert(alert.fingerprint.clone(), Entry { alert, updated: now });
        }
    }

    /// When the next group is due, if any.
    pub fn next_flush(&self) -> Option<SystemTime> {
        self.groups.values().map(|g| g.next_flush).min()
    }

    /// The groups due at `now` that need notifying. Each due group is next
    /// looked at `group_interval` later (or at a retry, see [`Grouper::failed`]).
    pub fn due(&mut self, now: SystemTime) -> Vec<Notification> {
        let mut out = Vec::new();
        let opts = self.opts.clone();
        for (key, group) in &mut self.groups {
            if group.next_flush > now {
                continue;
            }
            group.next_flush = now + opts.group_interval;
            group.flushed = true;
            for e in group.alerts.values_mut() {
                let stale = e.updated + opts.resolve_timeout;
                if e.alert.status == AlertStatus::Firing && stale <= now {
                    e.alert.status = AlertStatus::Resolved;
                    e.alert.ends_at = Some(stale);
                }
            }
            let n = notification(key, group);
            if needs_update(group.last.as_ref(), &n.firing, &n.resolved, opts.repeat_interval, now) {
                out.push(n);
            } else {
                // Nothing to tell (e.g. alerts that fired and resolved unseen): resolved ones leave.
                forget_resolved(group, &n);
            }
        }
        self.groups.retain(|_, g| !g.alerts.is_empty());
        out
    }

    /// Records that `n` reached the receiver at `now`.
    pub fn delivered(&mut self, n: &Notification, now: SystemTime) {
        if let Some(group) = self.groups.get_mut(&n.key) {
            group.last = Some(Sent { firing: n.firing.clone(), resolved: n.resolved.clone(), at: now });
            forget_resolved(group, n);
            if group.alerts.is_empty() {
                self.groups.remove(&n.key);
            }
        }
    }

    /// `n` could not be delivered: look at its group again at `retry_at`,
    /// even when that is later than its next `group_interval` (a
    /// `Retry-After` is a floor, not a hint).
    pub fn failed(&mut self, n: &Notification, retry_at: SystemTime) {
        if let Some(group) = self.groups.get_mut(&n.key) {
            group.next_flush = retry_at;
        }
    }

    /// Makes every group due now (at shutdown, so nothing waits out a timer).
    pub fn expedite(&mut self, now: SystemTime) {
        for g in self.groups.values_mut() {
            g.next_flush = g.next_flush.min(now);
        }
    }
}

fn notification(key: &str, group: &Group) -> Notification {
    let mut alerts: Vec<&Entry> = group.alerts.values().collect();
    alerts.sort_by(|a, b| {
        (a.alert.status, a.alert.starts_at, &a.alert.fingerprint).cmp(&(
            b.alert.status,
            b.alert.starts_at,
            &b.alert.fingerprint,
        ))
    });
    let of = |s: AlertStatus| -> BTreeSet<String> {
        alerts.iter().filter(|e| e.alert.status == s).map(|e| e.alert.fingerprint.clone()).collect()
    };
    Notification {
        key: key.to_string(),
        group_labels: group.labels.clone(),
        firing: of(AlertStatus::Firing),
        resolved: of(AlertStatus::Resolved),
        versions: alerts.iter().map(|e| (e.alert.fingerprint.clone(), e.updated)).collect(),
        alerts: alerts.into_iter().map(|e| e.alert.clone()).collect(),
    }
}

/// Removes the resolved alerts of `n` that were not updated since it was built.
fn forget_resolved(group: &mut Group, n: &Notification) {
    for (fp, version) in &n.versions {
        if n.resolved.contains(fp) && group.alerts.get(fp).is_some_and(|e| e.updated == *version) {
            group.alerts.remove(fp);
        }
    }
}

/// Alertmanager's `DedupStage.needsUpdate` with `send_resolved: true`.
fn needs_update(
    last: Option<&Sent>,
    firing: &BTreeSet<String>,
    resolved: &BTreeSet<String>,
    repeat: Duration,
    now: SystemTime,
) -> bool {
    let Some(last) = last else { return !firing.is_empty() };
    if !firing.is_subset(&last.firing) {
        return true;
    }
    if firing.is_empty() {
        // All resolved: tell the receiver only if it was told they fired.
        return !last.firing.is_empty();
    }
    if !resolved.is_subset(&last.resolved) {
        return true;
    }
    last.at + repeat < now
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const S: Duration = Duration::from_secs(1);

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_600_000 + secs)
    }

    fn alert(name: &str, route: &str, status: AlertStatus, starts: u64) -> Alert {
        let labels: BTreeMap<String, String> = [("alertname", name), ("route", route)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Alert {
            rule: name.into(),
            status,
            fingerprint: magpie_core::alert::fingerprint(&labels),
            labels,
            annotations: BTreeMap::new(),
            value: 1.0,
            starts_at: t(starts),
            ends_at: (status == AlertStatus::Resolved).then(|| t(starts + 1)),
            generator: "alerts".into(),
        }
    }

    fn grouper() -> Grouper {
        Grouper::new(GroupOptions {
            group_by: vec!["alertname".into()],
            group_wait: 30 * S,
            group_interval: 300 * S,
            repeat_interval: 4 * 3600 * S,
            resolve_timeout: 300 * S,
        })
    }

    /// Delivers everything due at `now`; returns (group key, [(route, status)]) per notification.
    fn flush(g: &mut Grouper, now: SystemTime) -> Vec<(String, Vec<(String, &'static str)>)> {
        let due = g.due(now);
        for n in &due {
            g.delivered(n, now);
        }
        due.iter()
            .map(|n| {
                let alerts =
                    n.alerts.iter().map(|a| (a.labels["route"].clone(), a.status.as_str())).collect();
                (n.key.clone(), alerts)
            })
            .collect()
    }

    #[test]
    fn group_wait_batches_the_alerts_of_one_group() {
        let mut g = grouper();
        g.insert([alert("A", "/x", AlertStatus::Firing, 0)], t(0));
        g.insert(
            [alert("A", "/y", AlertStatus::Firing, 10), alert("B", "/x", AlertStatus::Firing, 10)],
            t(10),
        );
        assert_eq!(g.next_flush(), Some(t(30)));
        assert!(flush(&mut g, t(29)).is_empty(), "nothing before group_wait");
        let sent = flush(&mut g, t(30));
        assert_eq!(
            sent,
            vec![("{alertname=\"A\"}".to_string(), vec![("/x".into(), "firing"), ("/y".into(), "firing")])]
        );
        // B's group started at 10, so it waits until 40.
        assert_eq!(flush(&mut g, t(40)), vec![("{alertname=\"B\"}".into(), vec![("/x".into(), "firing")])]);
    }

    #[test]
    fn an_alert_older_than_group_wait_goes_at_once() {
        let mut g = grouper();
        g.insert([alert("A", "/x", AlertStatus::Firing, 0)], t(100));
        assert_eq!(g.next_flush(), Some(t(100)));
    }

    #[test]
    fn group_interval_sends_changes_and_repeat_interval_the_unchanged() {
        let mut g = grouper();
        g.insert([alert("A", "/x", AlertStatus::Firing, 0)], t(0));
        assert_eq!(flush(&mut g, t(30)).len(), 1);
        // The same alert re-sent by the rule: nothing new at the next interval.
        g.insert([alert("A", "/x", AlertStatus::Firing, 0)], t(60));
        assert_eq!(g.next_flush(), Some(t(330)));
        g.insert([alert("A", "/x", AlertStatus::Firing, 0)], t(320));
        assert!(
            flush(&mut g, t(330)).is_empty(),
            "unchanged firing group is not re-sent before repeat_interval"
        );
        // A new alert in the group waits for the group_interval, not group_wait.
        g.insert(
            [alert("A", "/x", AlertStatus::Firing, 0), alert("A", "/y", AlertStatus::Firing, 400)],
            t(400),
        );
        assert!(flush(&mut g, t(430)).is_empty());
        let sent = flush(&mut g, t(630));
        assert_eq!(sent[0].1, vec![("/x".to_string(), "firing"), ("/y".to_string(), "firing")]);
        // Unchanged until repeat_interval (4h after the last notification at 630).
        let mut now = 630;
        let mut repeats = Vec::new();
        while now < 630 + 4 * 3600 + 600 {
            now += 300;
            g.insert(
                [alert("A", "/x", AlertStatus::Firing, 0), alert("A", "/y", AlertStatus::Firing, 400)],
                t(now - 1),
            );
            if !flush(&mut g, t(now)).is_empty() {
                repeats.push(now);
            }
        }
        assert_eq!(repeats, vec![630 + 4 * 3600 + 300], "the first interval after 4h repeats it");
    }

    #[test]
    fn resolved_alerts_are_sent_once() {
        let mut g = grouper();
        g.insert([alert("A", "/x", AlertStatus::Firing, 0)], t(0));
        assert_eq!(flush(&mut g, t(30)).len(), 1);
        g.insert([alert("A", "/x", AlertStatus::Resolved, 0)], t(100));
        assert_eq!(
            flush(&mut g, t(330)),
            vec![("{alertname=\"A\"}".into(), vec![("/x".into(), "resolved")])]
        );
        assert_eq!(g.next_flush(), None, "the group is gone once its resolution is delivered");
        assert!(flush(&mut g, t(10_000)).is_empty());
    }

    #[test]
    fn an_alert_resolved_before_anyone_heard_of_it_is_not_sent() {
        let mut g = grouper();
        g.insert([alert("A", "/x", AlertStatus::Firing, 0)], t(0));
        g.insert([alert("A", "/x", AlertStatus::Resolved, 0)], t(10));
        assert!(flush(&mut g, t(30)).is_empty());
        assert_eq!(g.next_flush(), None);
    }

    #[test]
    fn a_failed_notification_is_built_again_until_delivered() {
        let mut g = grouper();
        g.insert([alert("A", "/x", AlertStatus::Firing, 0)], t(0));
        let first = g.due(t(30));
        assert_eq!(first.len(), 1);
        g.failed(&first[0], t(31));
        assert_eq!(g.next_flush(), Some(t(31)));
        let again = g.due(t(31));
        assert_eq!(again.len(), 1, "not recorded as sent, so still needed");
        assert_eq!(again[0].alerts, first[0].alerts);
        g.delivered(&again[0], t(31));
        g.insert([alert("A", "/x", AlertStatus::Firing, 0)], t(300));
        assert!(g.due(t(331)).is_empty());
    }

    #[test]
    fn a_retry_later_than_the_group_interval_is_waited_out() {
        let mut g = grouper();
        g.insert([alert("A", "/x", AlertStatus::Firing, 0)], t(0));
        let first = g.due(t(30));
        g.failed(&first[0], t(30 + 600));
        assert_eq!(g.next_flush(), Some(t(630)), "not the group_interval at 330");
        assert!(g.due(t(330)).is_empty());
        g.insert([alert("A", "/x", AlertStatus::Firing, 0)], t(600));
        assert_eq!(g.due(t(630)).len(), 1);
    }

    #[test]
    fn a_resolution_that_fails_is_not_lost() {
        let mut g = grouper();
        g.insert([alert("A", "/x", AlertStatus::Firing, 0)], t(0));
        flush(&mut g, t(30));
        g.insert([alert("A", "/x", AlertStatus::Resolved, 0)], t(40));
        let n = g.due(t(330));
        g.failed(&n[0], t(335));
        assert_eq!(
            flush(&mut g, t(335)),
            vec![("{alertname=\"A\"}".into(), vec![("/x".into(), "resolved")])]
        );
    }

    #[test]
    fn firing_alerts_not_refreshed_resolve_after_resolve_timeout() {
        let mut g = grouper();
        g.insert([alert("A", "/x", AlertStatus::Firing, 0)], t(0));
        g.insert([alert("A", "/x", AlertStatus::Firing, 0)], t(20));
        flush(&mut g, t(30));
        let sent = g.due(t(330));
        assert_eq!(sent[0].alerts[0].status, AlertStatus::Resolved);
        assert_eq!(sent[0].alerts[0].ends_at, Some(t(320)), "last refreshed at 20, timeout 300");
    }

    #[test]
    fn group_by_all_labels() {
        let mut g = Grouper::new(GroupOptions { group_by: vec!["...".into()], ..grouper().opts });
        g.insert([alert("A", "/x", AlertStatus::Firing, 0), alert("A", "/y", AlertStatus::Firing, 0)], t(0));
        assert_eq!(flush(&mut g, t(30)).len(), 2);
    }
}
