//! Identifiers: component ids (`type[/name]`), pipeline ids (`signal[/name]`)
//! and the signals: the three OTLP ones plus alerts.

use std::fmt;
use std::str::FromStr;

/// One of the three OTLP signals, or alerts (the one signal OTLP lacks:
/// [`crate::alert::Alert`]s raised by the `alerts` connector).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
    Alerts,
}

impl Signal {
    pub const ALL: [Signal; 4] = [Signal::Traces, Signal::Metrics, Signal::Logs, Signal::Alerts];
    /// The three OTLP signals.
    pub const OTLP: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Alerts => "alerts",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Signal {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "traces" => Ok(Signal::Traces),
            "metrics" => Ok(Signal::Metrics),
            "logs" => Ok(Signal::Logs),
            "alerts" => Ok(Signal::Alerts),
            other => Err(IdError::UnknownSignal(other.to_string())),
        }
    }
}

/// A set of signals, e.g. the signals a component can handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Signals {
    pub traces: bool,
    pub metrics: bool,
    pub logs: bool,
    pub alerts: bool,
}

impl Signals {
    pub const ALL: Signals = Signals { traces: true, metrics: true, logs: true, alerts: true };
    /// The three OTLP signals: what a component that speaks only OTLP handles.
    pub const OTLP: Signals = Signals { traces: true, metrics: true, logs: true, alerts: false };
    pub const TRACES: Signals = Signals { traces: true, ..Signals::NONE };
    pub const METRICS: Signals = Signals { metrics: true, ..Signals::NONE };
    pub const LOGS: Signals = Signals { logs: true, ..Signals::NONE };
    pub const ALERTS: Signals = Signals { alerts: true, ..Signals::NONE };
    pub const NONE: Signals = Signals { traces: false, metrics: false, logs: false, alerts: false };

    pub fn contains(self, signal: Signal) -> bool {
        match signal {
            Signal::Traces => self.traces,
            Signal::Metrics => self.metrics,
            Signal::Logs => self.logs,
            Signal::Alerts => self.alerts,
        }
    }

    pub fn iter(self) -> impl Iterator<Item = Signal> {
        Signal::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl fmt::Display for Signals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Signal::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// The four kinds of component in a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    Receiver,
    Processor,
    Exporter,
    Connector,
}

impl ComponentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receiver",
            ComponentKind::Processor => "processor",
            ComponentKind::Exporter => "exporter",
            ComponentKind::Connector => "connector",
        }
    }

    /// The top-level config section that declares components of this kind.
    pub fn section(self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receivers",
            ComponentKind::Processor => "processors",
            ComponentKind::Exporter => "exporters",
            ComponentKind::Connector => "connectors",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors parsing an id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("empty id")]
    Empty,
    #[error("id `{0}` has an empty type before `/`")]
    EmptyType(String),
    #[error("id `{0}` has an empty name after `/`")]
    EmptyName(String),
    #[error("id `{0}` has more than one `/`")]
    TooManySlashes(String),
    #[error("unknown signal `{0}`: a pipeline id starts with traces, metrics, logs or alerts")]
    UnknownSignal(String),
}

/// A component id as written in the config: `type` or `type/name`
/// (`postgres/analytics`). It travels in every log line and self-metric.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    kind: String,
    name: Option<String>,
}

impl ComponentId {
    pub fn new(kind: impl Into<String>, name: Option<String>) -> Self {
        ComponentId { kind: kind.into(), name }
    }

    /// The component type (`postgres` in `postgres/analytics`).
    pub fn type_name(&self) -> &str {
        &self.kind
    }

    /// The instance name (`analytics` in `postgres/analytics`), if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

fn split_id(s: &str) -> Result<(&str, Option<&str>), IdError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    match s.split_once('/') {
        None => Ok((s, None)),
        Some((t, n)) => {
            if t.is_empty() {
                Err(IdError::EmptyType(s.to_string()))
            } else if n.is_empty() {
                Err(IdError::EmptyName(s.to_string()))
            } else if n.contains('/') {
                Err(IdError::TooManySlashes(s.to_string()))
            } else {
                Ok((t, Some(n)))
            }
        }
    }
}

impl FromStr for ComponentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (t, n) = split_id(s)?;
        Ok(ComponentId { kind: t.to_string(), name: n.map(str::to_string) })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.kind, n),
            None => f.write_str(&self.kind),
        }
    }
}

/// A pipeline id: `traces`, `metrics/host`, `logs/audit`, `alerts/critical`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PipelineId {
    pub signal: Signal,
    pub name: Option<String>,
}

impl FromStr for PipelineId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (t, n) = split_id(s)?;
        Ok(PipelineId { signal: t.parse()?, name: n.map(str::to_string) })
    }
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.signal, n),
            None => write!(f, "{}", self.signal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids_parse_and_print() {
        let id: ComponentId = "postgres/analytics".parse().unwrap();
        assert_eq!(id.type_name(), "postgres");
        assert_eq!(id.name(), Some("analytics"));
        assert_eq!(id.to_string(), "postgres/analytics");
        assert_eq!("otlp".parse::<ComponentId>().unwrap().to_string(), "otlp");
        assert_eq!("/x".parse::<ComponentId>(), Err(IdError::EmptyType("/x".into())));
        assert_eq!("x/".parse::<ComponentId>(), Err(IdError::EmptyName("x/".into())));
        assert_eq!("a/b/c".parse::<ComponentId>(), Err(IdError::TooManySlashes("a/b/c".into())));
    }

    #[test]
    fn pipeline_ids_parse() {
        let p: PipelineId = "metrics/host".parse().unwrap();
        assert_eq!(p.signal, Signal::Metrics);
        assert_eq!(p.to_string(), "metrics/host");
        assert!("spans".parse::<PipelineId>().is_err());
        assert_eq!("alerts/critical".parse::<PipelineId>().unwrap().signal, Signal::Alerts);
        assert_eq!(Signals::OTLP.to_string(), "traces,metrics,logs");
        assert!(!Signals::OTLP.contains(Signal::Alerts) && Signals::ALL.contains(Signal::Alerts));
    }
}
