//! What a rule says, as the config writes it: matchers, aggregation,
//! condition and templates. Matchers and templates are checked while the
//! config is read, so a bad regex or an unknown template variable is an
//! error at its own line and column.

use magpie_core::config::duration;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One alerting rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The rule's name; the `alertname` label of its alerts.
    pub name: String,
    /// The OTLP metric the rule reads.
    pub metric: String,
    /// Conditions on data point and resource attributes, all of which must hold.
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    pub aggregation: Aggregation,
    /// The span of data the aggregation looks at.
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
    /// Attributes that split the rule into one alert per value set; none: one alert per rule.
    #[serde(default)]
    pub group_by: Vec<String>,
    pub condition: Condition,
    pub threshold: f64,
    /// How long the condition must hold before the alert fires.
    #[serde(default, rename = "for", with = "duration")]
    pub for_: Duration,
    /// How long a firing alert keeps firing after the condition stops holding.
    #[serde(default, with = "duration")]
    pub keep_firing_for: Duration,
    #[serde(default = "default_severity")]
    pub severity: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, Template>,
    #[serde(default)]
    pub no_data: NoData,
}

fn default_window() -> Duration {
    Duration::from_secs(300)
}

fn default_severity() -> String {
    "warning".to_string()
}

/// How a window of data points becomes one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Avg,
    Max,
    Min,
    Sum,
    /// Per-second increase of a counter (reset-aware), summed over series.
    Rate,
    /// Data points in the window.
    Count,
    P50,
    P95,
    P99,
}

impl Aggregation {
    /// The quantile of `p50`/`p95`/`p99`.
    pub fn quantile(self) -> Option<f64> {
        match self {
            Aggregation::P50 => Some(0.5),
            Aggregation::P95 => Some(0.95),
            Aggregation::P99 => Some(0.99),
            _ => None,
        }
    }
}

/// How the value compares with the threshold for the condition to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
    Ne,
}

impl Condition {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Condition::Gt => value > threshold,
            Condition::Gte => value >= threshold,
            Condition::Lt => value < threshold,
            Condition::Lte => value <= threshold,
            Condition::Eq => value == threshold,
            Condition::Ne => value != threshold,
        }
    }
}

/// What a rule does when its window holds no data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoData {
    /// As if the condition did not hold: firing alerts resolve.
    #[default]
    Ok,
    /// As if the condition held.
    Alerting,
    /// Nothing changes: pending stays pending, firing keeps firing.
    KeepState,
}

/// The operator of a matcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

/// `label = value`, `!=`, `=~` or `!~`, as in Prometheus: a missing label
/// matches as the empty string, and regexes are anchored at both ends.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<regex::Regex>,
}

impl Matcher {
    pub fn matches(&self, value: Option<&str>) -> bool {
        let v = value.unwrap_or("");
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRe => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

impl TryFrom<String> for Matcher {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        // The first operator wins; `!=`, `=~` and `!~` before a bare `=`.
        let found =
            text.char_indices().find_map(|(i, c)| match (c, text[i + c.len_utf8()..].chars().next()) {
                ('!', Some('=')) => Some((i, 2, MatchOp::Ne)),
                ('!', Some('~')) => Some((i, 2, MatchOp::NotRe)),
                ('=', Some('~')) => Some((i, 2, MatchOp::Re)),
                ('=', _) => Some((i, 1, MatchOp::Eq)),
                _ => None,
            });
        let Some((at, len, op)) = found else {
            return Err(format!("matcher `{text}` has no operator: write label=value, !=, =~ or !~"));
        };
        let label = text[..at].trim().to_string();
        if label.is_empty() {
            return Err(format!("matcher `{text}` has no label before the operator"));
        }
        let raw = text[at + len..].trim();
        let value = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(inner) => inner.to_string(),
            None => raw.to_string(),
        };
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("matcher `{text}`: bad regex: {}", first_line(&e.to_string())))?,
            ),
            MatchOp::Eq | MatchOp::Ne => None,
        };
        Ok(Matcher { label, op, value, regex })
    }
}

/// The regex crate's errors draw the pattern over several lines; the last
/// line says what is wrong.
fn first_line(s: &str) -> String {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(s).trim().to_string()
}

/// A piece of a template.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Value,
    Threshold,
    Label(String),
}

/// An annotation template: text with `{{ $value }}`, `{{ $threshold }}`
/// and `{{ $labels.<name> }}` (empty when the alert has no such label).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Template {
    parts: Vec<Part>,
}

impl TryFrom<String> for Template {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text.as_str();
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(format!("template `{text}`: `{{{{` without a closing `}}}}`"));
            };
            let var = after[..close].trim();
            parts.push(match var {
                "$value" => Part::Value,
                "$threshold" => Part::Threshold,
                _ => match var.strip_prefix("$labels.") {
                    Some(name) if !name.is_empty() => Part::Label(name.to_string()),
                    _ => {
                        return Err(format!(
                            "template `{text}`: unknown variable `{var}`; use $value, $threshold or $labels.<name>"
                        ));
                    }
                },
            });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }
}

impl Template {
    pub fn render(&self, value: f64, threshold: f64, labels: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Value => out.push_str(&value.to_string()),
                Part::Threshold => out.push_str(&threshold.to_string()),
                Part::Label(name) => out.push_str(labels.get(name).map_or("", String::as_str)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Matcher {
        Matcher::try_from(s.to_string()).unwrap()
    }

    #[test]
    fn matchers_parse_and_match() {
        let cases: &[(&str, Option<&str>, bool)] = &[
            ("status = 500", Some("500"), true),
            ("status=500", Some("501"), false),
            ("status != 500", Some("501"), true),
            ("status != 500", Some("500"), false),
            ("status != 500", None, true),
            (r#"route =~ "/api/.*""#, Some("/api/chat"), true),
            // Anchored at both ends, as Prometheus does.
            (r#"route =~ "/api/.*""#, Some("/v2/api/chat"), false),
            ("route =~ /api", Some("/api/chat"), false),
            ("code !~ 2..", Some("200"), false),
            ("code !~ 2..", Some("503"), true),
            // A missing label is the empty string.
            ("team = ''", None, false),
            ("team =", None, true),
            ("team =~ .*", None, true),
            (r#"msg = "a=b""#, Some("a=b"), true),
        ];
        for (text, value, want) in cases {
            assert_eq!(m(text).matches(*value), *want, "{text} on {value:?}");
        }
        assert_eq!(m("a.b =~ x").label, "a.b");
        assert_eq!(m("a.b =~ x").op, MatchOp::Re);
    }

    #[test]
    fn bad_matchers_say_why() {
        let e = Matcher::try_from("route =~ \"(unclosed\"".to_string()).unwrap_err();
        assert!(e.contains("bad regex") && e.contains("unclosed group"), "{e}");
        assert!(Matcher::try_from("route".to_string()).unwrap_err().contains("no operator"));
        assert!(Matcher::try_from("= x".to_string()).unwrap_err().contains("no label"));
    }

    #[test]
    fn every_condition() {
        let cases = [
            (Condition::Gt, [false, false, true]),
            (Condition::Gte, [false, true, true]),
            (Condition::Lt, [true, false, false]),
            (Condition::Lte, [true, true, false]),
            (Condition::Eq, [false, true, false]),
            (Condition::Ne, [true, false, true]),
        ];
        for (c, want) in cases {
            let got = [9.0, 10.0, 11.0].map(|v| c.holds(v, 10.0));
            assert_eq!(got, want, "{c:?}");
        }
        assert!(!Condition::Gt.holds(f64::NAN, 1.0));
    }

    #[test]
    fn templates_render() {
        let t = Template::try_from(
            "{{ $labels.route }} fails at {{$value}}/s (over {{ $threshold }})".to_string(),
        )
        .unwrap();
        let labels = [("route".to_string(), "/chat".to_string())].into();
        assert_eq!(t.render(12.5, 10.0, &labels), "/chat fails at 12.5/s (over 10)");
        assert_eq!(t.render(1.0, 2.0, &BTreeMap::new()), " fails at 1/s (over 2)");
        let plain = Template::try_from("no variables".to_string()).unwrap();
        assert_eq!(plain.render(0.0, 0.0, &BTreeMap::new()), "no variables");
    }

    #[test]
    fn bad_templates_say_why() {
        let e = Template::try_from("at {{ $valeu }}".to_string()).unwrap_err();
        assert!(e.contains("unknown variable `$valeu`"), "{e}");
        assert!(Template::try_from("at {{ $value".to_string()).unwrap_err().contains("without a closing"));
        assert!(Template::try_from("{{ $labels. }}".to_string()).unwrap_err().contains("unknown variable"));
    }
}
