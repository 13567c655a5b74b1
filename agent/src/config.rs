//! Loading and validating the agent's config: the Collector's layout
//! (`receivers`, `processors`, `exporters`, `connectors`, `service`), merged
//! from one or more files, with `${env:…}` expanded.
//!
//! Validation reports every problem at once, each with file, line, column
//! and the component path, so one `magpie validate` run shows everything to
//! fix. Nothing is started from a config with errors.

use crate::components::{self, ExporterSpec, ReceiverSpec};
use magpie_core::config::{ConfigError, Key, Location, Node, Value, did_you_mean, duration, from_node, join};
use magpie_core::queue::WhenFull;
use magpie_core::retry::RetryConfig;
use magpie_core::{ComponentId, ComponentKind, PipelineId, Signal, Signals};
use magpie_processors::{ConnectorConfig, ProcessorConfig};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The built-in default config: no external service needed.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/default.yaml");

/// The name the built-in default goes by in messages.
pub const DEFAULT_CONFIG_NAME: &str = "<built-in configs/default.yaml>";

const TOP_LEVEL: &[&str] = &["receivers", "processors", "exporters", "connectors", "service"];
const SERVICE_KEYS: &[&str] = &["pipelines", "telemetry", "shutdown_timeout"];
const PIPELINE_KEYS: &[&str] = &["receivers", "processors", "exporters"];

/// A component as declared: its typed config and where it was written.
#[derive(Clone, Debug)]
pub struct Declared<T> {
    pub config: T,
    pub location: Location,
}

/// `sending_queue` of an exporter.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// Batches the queue holds.
    pub queue_size: usize,
    /// `block` or `drop_oldest`; the exporter type's default when unset.
    pub when_full: Option<WhenFull>,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings { queue_size: 1000, when_full: None }
    }
}

/// An exporter: its own config plus the queue and retry settings the agent applies.
#[derive(Clone, Debug)]
pub struct ExporterDecl {
    pub spec: ExporterSpec,
    pub queue_size: usize,
    pub when_full: WhenFull,
    pub retry: RetryConfig,
}

/// One pipeline.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub id: PipelineId,
    pub receivers: Vec<ComponentId>,
    pub processors: Vec<ComponentId>,
    pub exporters: Vec<ComponentId>,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `service.telemetry.logs`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsTelemetry {
    /// `error`, `warn`, `info`, `debug` or `trace`, or a full filter (`info,magpie=debug`).
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogsTelemetry {
    fn default() -> Self {
        LogsTelemetry { level: "info".to_string(), format: LogFormat::Text }
    }
}

/// `service.telemetry.metrics`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsTelemetry {
    /// Serve `/metrics`, `/healthz` and `/readyz`.
    pub enabled: bool,
    pub address: String,
}

impl Default for MetricsTelemetry {
    fn default() -> Self {
        MetricsTelemetry { enabled: true, address: "127.0.0.1:8888".to_string() }
    }
}

/// `service.telemetry`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub metrics: MetricsTelemetry,
    pub logs: LogsTelemetry,
}

/// A validated config, ready to build.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub receivers: BTreeMap<ComponentId, Declared<ReceiverSpec>>,
    pub processors: BTreeMap<ComponentId, Declared<ProcessorConfig>>,
    pub exporters: BTreeMap<ComponentId, Declared<ExporterDecl>>,
    pub connectors: BTreeMap<ComponentId, Declared<ConnectorConfig>>,
    pub pipelines: Vec<Pipeline>,
    pub telemetry: TelemetryConfig,
    pub shutdown_timeout: Duration,
    /// The merged, expanded tree (for `print-config`).
    pub effective: Node,
    /// Paths of secret values in `effective`.
    pub secrets: Vec<String>,
    pub warnings: Vec<ConfigError>,
}

impl AgentConfig {
    /// The effective config as YAML, secrets redacted.
    pub fn to_redacted_yaml(&self) -> String {
        self.effective.to_yaml(&self.secrets)
    }
}

/// One config source: a name for messages and its text.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// Reads config files; with none, the built-in default.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<Source>, Vec<ConfigError>> {
    if paths.is_empty() {
        return Ok(vec![Source { name: DEFAULT_CONFIG_NAME.to_string(), text: DEFAULT_CONFIG.to_string() }]);
    }
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        match std::fs::read_to_string(p) {
            Ok(text) => sources.push(Source { name: display(p), text }),
            Err(e) => errors.push(ConfigError::new(None, "", format!("reading {}: {e}", display(p)))),
        }
    }
    if errors.is_empty() { Ok(sources) } else { Err(errors) }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// Reads, merges, expands and validates. `Err` holds every error and warning.
pub fn load(paths: &[PathBuf]) -> Result<AgentConfig, Vec<ConfigError>> {
    let sources = read_sources(paths)?;
    parse(&sources, &|name| std::env::var(name).ok())
}

/// Merges and validates `sources` (later ones override earlier ones: maps
/// merge, lists replace), looking environment variables up with `env`.
pub fn parse(
    sources: &[Source],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AgentConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut root: Option<Node> = None;
    for s in sources {
        match Node::parse(&s.text, &s.name) {
            Ok(node) => match root.as_mut() {
                None => root = Some(node),
                Some(r) => r.merge(node),
            },
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(mut root) = root else {
        return Err(vec![ConfigError::new(None, "", "no config given")]);
    };
    root.expand_env(env, "", &mut errors);
    let mut v = Validator { errors, warnings: Vec::new(), secrets: Vec::new(), broken: BTreeSet::new() };
    let config = v.validate(root);
    let Validator { mut errors, warnings, .. } = v;
    match config {
        Some(c) if errors.is_empty() => Ok(AgentConfig { warnings, ..c }),
        _ => {
            errors.extend(warnings);
            Err(errors)
        }
    }
}

struct Validator {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    secrets: Vec<String>,
    /// Components declared with an error already reported: pipelines may
    /// name them without a second, misleading "not declared" error.
    broken: BTreeSet<(ComponentKind, ComponentId)>,
}

/// Where pipelines use one component as a receiver or exporter (a
/// component with an entry at all is used; connectors need both sides).
#[derive(Default)]
struct Uses {
    as_receiver: Vec<(PipelineId, Location)>,
    as_exporter: Vec<(PipelineId, Location)>,
}

impl Validator {
    fn error(&mut self, location: &Location, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(Some(location.clone()), path, message));
    }

    fn validate(&mut self, root: Node) -> Option<AgentConfig> {
        let Some(entries) = root.entries() else {
            self.error(
                &root.location,
                "",
                format!("expected a map at the top level, found {}", root.type_name()),
            );
            return None;
        };
        for (k, _) in entries {
            if !TOP_LEVEL.contains(&k.name.as_str()) {
                let hint = match did_you_mean(&k.name, TOP_LEVEL.iter().copied()) {
                    Some(s) => format!(", did you mean `{s}`?"),
                    None if k.name == "extensions" => ": extensions are not supported".to_string(),
                    None => format!(", expected one of: {}", TOP_LEVEL.join(", ")),
                };
                self.error(&k.location, &k.name, format!("unknown top-level key `{}`{hint}", k.name));
            }
        }
        let receivers = self.section(&root, ComponentKind::Receiver, ReceiverSpec::parse, |s| s.problems());
        let processors = self.section(
            &root,
            ComponentKind::Processor,
            components::parse_processor,
            ProcessorConfig::problems,
        );
        let exporters = self.section(&root, ComponentKind::Exporter, parse_exporter, |d| d.spec.problems());
        let connectors = self.section(
            &root,
            ComponentKind::Connector,
            components::parse_connector,
            ConnectorConfig::problems,
        );

        let (telemetry, shutdown_timeout, pipelines) = self.service(&root);
        let ids = Declarations {
            receivers: &receivers,
            processors: &processors,
            exporters: &exporters,
            connectors: &connectors,
        };
        let (pipelines, connector_uses) = self.pipelines(pipelines.as_ref(), &ids);
        self.check_connectors(&connectors, &connector_uses);
        self.check_cycles(&pipelines, &connector_uses);
        self.check_listen_addresses(&root, &receivers, &exporters, &telemetry);

        Some(AgentConfig {
            receivers,
            processors,
            exporters,
            connectors,
            pipelines,
            telemetry,
            shutdown_timeout,
            effective: root,
            secrets: std::mem::take(&mut self.secrets),
            warnings: Vec::new(),
        })
    }

    /// Parses one component section (`receivers`, ...).
    fn section<T>(
        &mut self,
        root: &Node,
        kind: ComponentKind,
        parse: impl Fn(&str, &Node, &str) -> Result<Option<(T, Vec<String>)>, ConfigError>,
        problems: impl Fn(&T) -> Vec<String>,
    ) -> BTreeMap<ComponentId, Declared<T>> {
        let mut out = BTreeMap::new();
        let section = kind.section();
        let Some(node) = root.get(section) else { return out };
        if node.is_null() {
            return out;
        }
        let Some(entries) = node.entries() else {
            self.error(
                &node.location,
                section,
                format!("expected a map of {kind} ids to settings, found {}", node.type_name()),
            );
            return out;
        };
        for (key, value) in entries {
            let path = join(section, &key.name);
            let id: ComponentId = match key.name.parse() {
                Ok(id) => id,
                Err(e) => {
                    self.error(&key.location, &path, format!("invalid {kind} id: {e}"));
                    continue;
                }
            };
            if components::type_info(kind, id.type_name()).is_none() {
                let known: Vec<&str> = components::types(kind).iter().map(|t| t.name).collect();
                let hint = match did_you_mean(id.type_name(), known.iter().copied()) {
                    Some(s) => format!(", did you mean `{s}`?"),
                    None => format!("; known {kind} types: {}", known.join(", ")),
                };
                self.error(&key.location, &path, format!("unknown {kind} type `{}`{hint}", id.type_name()));
                self.broken.insert((kind, id));
                continue;
            }
            match parse(id.type_name(), value, &path) {
                Ok(Some((config, secrets))) => {
                    for p in problems(&config) {
                        self.error(&value.location, &path, p);
                    }
                    self.secrets.extend(secrets);
                    out.insert(id, Declared { config, location: key.location.clone() });
                }
                Ok(None) => {
                    self.error(&key.location, &path, format!("unknown {kind} type `{}`", id.type_name()));
                    self.broken.insert((kind, id));
                }
                Err(e) => {
                    self.errors.push(e);
                    self.broken.insert((kind, id));
                }
            }
        }
        out
    }

    fn service(&mut self, root: &Node) -> (TelemetryConfig, Duration, Option<Node>) {
        let mut telemetry = TelemetryConfig::default();
        let mut shutdown_timeout = Duration::from_secs(10);
        let Some(service) = root.get("service") else {
            self.errors.push(ConfigError::new(
                Some(root.location.clone()),
                "service",
                "missing `service` section: add service.pipelines to connect receivers to exporters",
            ));
            return (telemetry, shutdown_timeout, None);
        };
        let Some(entries) = service.entries() else {
            self.error(
                &service.location,
                "service",
                format!("expected a map, found {}", service.type_name()),
            );
            return (telemetry, shutdown_timeout, None);
        };
        let mut pipelines = None;
        for (k, v) in entries {
            let path = join("service", &k.name);
            match k.name.as_str() {
                "pipelines" => pipelines = Some(v.clone()),
                "telemetry" => match from_node::<TelemetryConfig>(v, &path) {
                    Ok((t, _)) => {
                        if let Err(m) = crate::logging::check_level(&t.logs.level) {
                            let loc = v
                                .get("logs")
                                .and_then(|l| l.get("level"))
                                .map_or(&v.location, |n| &n.location);
                            self.error(loc, "service.telemetry.logs.level", m);
                        }
                        telemetry = t;
                    }
                    Err(e) => self.errors.push(e),
                },
                "shutdown_timeout" => match from_node::<String>(v, &path).and_then(|(s, _)| {
                    duration::parse(&s).map_err(|m| ConfigError::new(Some(v.location.clone()), &path, m))
                }) {
                    Ok(d) => shutdown_timeout = d,
                    Err(e) => self.errors.push(e),
                },
                other => self.unknown_key(k, &path, other, SERVICE_KEYS),
            }
        }
        if pipelines.is_none() {
            self.error(
                &service.location,
                "service.pipelines",
                "missing `pipelines`: a config needs at least one pipeline",
            );
        }
        (telemetry, shutdown_timeout, pipelines)
    }

    fn unknown_key(&mut self, key: &Key, path: &str, name: &str, expected: &[&str]) {
        let hint = match did_you_mean(name, expected.iter().copied()) {
            Some(s) => format!(", did you mean `{s}`?"),
            None => format!(", expected one of: {}", expected.join(", ")),
        };
        self.error(&key.location, path, format!("unknown key `{name}`{hint}"));
    }

    /// Reads the pipelines; returns them and how each connector is used.
    fn pipelines(
        &mut self,
        node: Option<&Node>,
        ids: &Declarations<'_>,
    ) -> (Vec<Pipeline>, BTreeMap<ComponentId, Uses>) {
        let mut out = Vec::new();
        let Some(node) = node else { return (out, BTreeMap::new()) };
        let Some(entries) = node.entries() else {
            self.error(
                &node.location,
                "service.pipelines",
                format!("expected a map of pipeline ids, found {}", node.type_name()),
            );
            return (out, BTreeMap::new());
        };
        if entries.is_empty() {
            self.error(
                &node.location,
                "service.pipelines",
                "no pipelines: a config needs at least one pipeline",
            );
        }
        let mut uses: BTreeMap<(ComponentKind, ComponentId), Uses> = BTreeMap::new();
        for (key, value) in entries {
            let path = join("service.pipelines", &key.name);
            let id: PipelineId = match key.name.parse() {
                Ok(id) => id,
                Err(e) => {
                    self.error(&key.location, &path, format!("invalid pipeline id `{}`: {e}", key.name));
                    continue;
                }
            };
            let mut lists: BTreeMap<&str, Vec<(ComponentId, Location, String)>> = BTreeMap::new();
            match value.entries() {
                Some(fields) => {
                    for (k, v) in fields {
                        let p = join(&path, &k.name);
                        match PIPELINE_KEYS.iter().find(|n| **n == k.name) {
                            Some(name) => {
                                let list = self.id_list(v, &p);
                                lists.insert(name, list);
                            }
                            None => self.unknown_key(k, &p, &k.name, PIPELINE_KEYS),
                        }
                    }
                }
                None if value.is_null() => {}
                None => {
                    self.error(
                        &value.location,
                        &path,
                        format!(
                            "expected a map with receivers, processors and exporters, found {}",
                            value.type_name()
                        ),
                    );
                    continue;
                }
            }
            let signal = id.signal;
            let mut pipeline =
                Pipeline { id: id.clone(), receivers: vec![], processors: vec![], exporters: vec![] };
            // Emptiness is judged on what was written: a misspelt entry has its own error.
            let named = |field: &str| lists.get(field).is_some_and(|l| !l.is_empty());
            let (named_receivers, named_exporters) = (named("receivers"), named("exporters"));
            for (field, list) in lists {
                for (cid, loc, p) in list {
                    let kind = match field {
                        "receivers" => self.resolve(&cid, &loc, &p, signal, ComponentKind::Receiver, ids),
                        "processors" => self.resolve(&cid, &loc, &p, signal, ComponentKind::Processor, ids),
                        _ => self.resolve(&cid, &loc, &p, signal, ComponentKind::Exporter, ids),
                    };
                    let Some(kind) = kind else { continue };
                    let u = uses.entry((kind, cid.clone())).or_default();
                    let target = match field {
                        "receivers" => &mut pipeline.receivers,
                        "processors" => &mut pipeline.processors,
                        _ => &mut pipeline.exporters,
                    };
                    if target.contains(&cid) {
                        self.error(&loc, &p, format!("`{cid}` is listed twice in this pipeline's {field}"));
                        continue;
                    }
                    match field {
                        "receivers" => u.as_receiver.push((id.clone(), loc.clone())),
                        "processors" => {}
                        _ => u.as_exporter.push((id.clone(), loc.clone())),
                    }
                    target.push(cid);
                }
            }
            if !named_receivers {
                self.error(
                    &key.location,
                    &path,
                    "pipeline has no receivers: list at least one under `receivers`",
                );
            }
            if !named_exporters {
                self.error(
                    &key.location,
                    &path,
                    "pipeline has no exporters: list at least one under `exporters`",
                );
            }
            out.push(pipeline);
        }
        // Declared but unused components are warnings (connectors are checked with their routes).
        for (kind, declared) in [
            (
                ComponentKind::Receiver,
                ids.receivers.iter().map(|(i, d)| (i, &d.location)).collect::<Vec<_>>(),
            ),
            (ComponentKind::Processor, ids.processors.iter().map(|(i, d)| (i, &d.location)).collect()),
            (ComponentKind::Exporter, ids.exporters.iter().map(|(i, d)| (i, &d.location)).collect()),
        ] {
            for (cid, loc) in declared {
                if !uses.contains_key(&(kind, cid.clone())) {
                    self.warnings.push(ConfigError::warning(
                        Some(loc.clone()),
                        join(kind.section(), &cid.to_string()),
                        format!("{kind} `{cid}` is declared but no pipeline uses it"),
                    ));
                }
            }
        }
        let connector_uses: BTreeMap<ComponentId, Uses> = uses
            .into_iter()
            .filter(|((k, _), _)| *k == ComponentKind::Connector)
            .map(|((_, id), u)| (id, u))
            .collect();
        (out, connector_uses)
    }

    /// Reads a list of component ids.
    fn id_list(&mut self, node: &Node, path: &str) -> Vec<(ComponentId, Location, String)> {
        let items = match &node.value {
            Value::Seq(items) => items,
            Value::Null => return Vec::new(),
            _ => {
                self.error(
                    &node.location,
                    path,
                    format!("expected a list of component ids, found {}", node.type_name()),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            match &item.value {
                Value::Str(s) => match s.parse::<ComponentId>() {
                    Ok(id) => out.push((id, item.location.clone(), p)),
                    Err(e) => self.error(&item.location, &p, format!("invalid component id: {e}")),
                },
                _ => self.error(
                    &item.location,
                    &p,
                    format!("expected a component id, found {}", item.type_name()),
                ),
            }
        }
        out
    }

    /// Checks a pipeline reference; returns the kind it resolved to.
    fn resolve(
        &mut self,
        id: &ComponentId,
        loc: &Location,
        path: &str,
        signal: Signal,
        role: ComponentKind,
        ids: &Declarations<'_>,
    ) -> Option<ComponentKind> {
        let (declared_kind, signals) = match role {
            ComponentKind::Receiver if ids.receivers.contains_key(id) => {
                (ComponentKind::Receiver, ids.receivers.get(id).map(|d| d.config.signals()))
            }
            ComponentKind::Processor if ids.processors.contains_key(id) => (
                ComponentKind::Processor,
                components::type_info(ComponentKind::Processor, id.type_name()).map(|t| t.signals),
            ),
            ComponentKind::Exporter if ids.exporters.contains_key(id) => (
                ComponentKind::Exporter,
                components::type_info(ComponentKind::Exporter, id.type_name()).map(|t| t.signals),
            ),
            ComponentKind::Receiver | ComponentKind::Exporter if ids.connectors.contains_key(id) => {
                // Connector routes are checked once all pipelines are known.
                return Some(ComponentKind::Connector);
            }
            _ if self.broken.contains(&(role, id.clone()))
                || (role != ComponentKind::Processor
                    && self.broken.contains(&(ComponentKind::Connector, id.clone()))) =>
            {
                // Its own error is already reported.
                return None;
            }
            _ => {
                let (candidates, sections): (Vec<String>, &str) = match role {
                    ComponentKind::Receiver => (
                        ids.receivers.keys().chain(ids.connectors.keys()).map(ToString::to_string).collect(),
                        "receivers or connectors",
                    ),
                    ComponentKind::Processor => {
                        (ids.processors.keys().map(ToString::to_string).collect(), "processors")
                    }
                    _ => (
                        ids.exporters.keys().chain(ids.connectors.keys()).map(ToString::to_string).collect(),
                        "exporters or connectors",
                    ),
                };
                let hint = match did_you_mean(&id.to_string(), candidates.iter().map(String::as_str)) {
                    Some(s) => format!(", did you mean `{s}`?"),
                    None => String::new(),
                };
                self.error(loc, path, format!("{role} `{id}` is not declared under {sections}{hint}"));
                return None;
            }
        };
        let signals = signals.unwrap_or(Signals::NONE);
        if !signals.contains(signal) {
            self.error(
                loc,
                path,
                format!("{declared_kind} `{id}` does not handle {signal} (it handles: {signals}); move it to a pipeline of those signals"),
            );
        }
        Some(declared_kind)
    }

    fn check_connectors(
        &mut self,
        connectors: &BTreeMap<ComponentId, Declared<ConnectorConfig>>,
        uses: &BTreeMap<ComponentId, Uses>,
    ) {
        for (id, decl) in connectors {
            let path = join("connectors", &id.to_string());
            let Some(u) = uses.get(id) else {
                self.warnings.push(ConfigError::warning(
                    Some(decl.location.clone()),
                    path,
                    format!("connector `{id}` is declared but no pipeline uses it"),
                ));
                continue;
            };
            let routes =
                components::type_info(ComponentKind::Connector, id.type_name()).map_or(&[][..], |t| t.routes);
            if u.as_exporter.is_empty() || u.as_receiver.is_empty() {
                let (used, missing) = if u.as_exporter.is_empty() {
                    ("a receiver", "exports to")
                } else {
                    ("an exporter", "receives from")
                };
                self.error(
                    &decl.location,
                    &path,
                    format!("connector `{id}` is used as {used} but no pipeline {missing} it: a connector must be an exporter in one pipeline and a receiver in another"),
                );
                continue;
            }
            for (p, loc) in &u.as_exporter {
                if !u.as_receiver.iter().any(|(q, _)| routes.contains(&(p.signal, q.signal))) {
                    self.error(
                        loc,
                        format!("service.pipelines.{p}.exporters"),
                        format!(
                            "connector `{id}` cannot carry {} into any pipeline that receives from it ({})",
                            p.signal,
                            route_list(routes)
                        ),
                    );
                }
            }
            for (q, loc) in &u.as_receiver {
                if !u.as_exporter.iter().any(|(p, _)| routes.contains(&(p.signal, q.signal))) {
                    self.error(
                        loc,
                        format!("service.pipelines.{q}.receivers"),
                        format!(
                            "connector `{id}` cannot produce {} from any pipeline that exports to it ({})",
                            q.signal,
                            route_list(routes)
                        ),
                    );
                }
            }
        }
    }

    /// A pipeline that reaches itself through connectors would loop data forever.
    fn check_cycles(&mut self, pipelines: &[Pipeline], uses: &BTreeMap<ComponentId, Uses>) {
        // Edge p → q through connector c when p exports to c and q receives from c.
        let mut edges: BTreeMap<PipelineId, Vec<(ComponentId, PipelineId)>> = BTreeMap::new();
        for (c, u) in uses {
            for (p, _) in &u.as_exporter {
                for (q, _) in &u.as_receiver {
                    edges.entry(p.clone()).or_default().push((c.clone(), q.clone()));
                }
            }
        }
        let mut reported: BTreeSet<PipelineId> = BTreeSet::new();
        for start in pipelines {
            if reported.contains(&start.id) {
                continue;
            }
            let mut path = vec![(None, start.id.clone())];
            if let Some(cycle) = find_cycle(&start.id, &edges, &mut path, &mut BTreeSet::new()) {
                let text: Vec<String> = cycle
                    .iter()
                    .map(|(c, p)| match c {
                        Some(c) => format!("→ {c} → {p}"),
                        None => p.to_string(),
                    })
                    .collect();
                for (_, p) in &cycle {
                    reported.insert(p.clone());
                }
                let loc = uses
                    .values()
                    .flat_map(|u| u.as_exporter.iter())
                    .find(|(p, _)| *p == start.id)
                    .map(|(_, l)| l.clone());
                self.errors.push(ConfigError::new(
                    loc,
                    format!("service.pipelines.{}", start.id),
                    format!("pipelines form a cycle through connectors: {}", text.join(" ")),
                ));
            }
        }
    }

    fn check_listen_addresses(
        &mut self,
        root: &Node,
        receivers: &BTreeMap<ComponentId, Declared<ReceiverSpec>>,
        exporters: &BTreeMap<ComponentId, Declared<ExporterDecl>>,
        telemetry: &TelemetryConfig,
    ) {
        // (path, address, where it was written; None for a default)
        let mut all: Vec<(String, String, Option<Location>)> = Vec::new();
        let mut add = |section: &str, id: &ComponentId, fallback: &Location, suffix: String, addr: String| {
            let keys: Vec<&str> = suffix.split('.').collect();
            let loc = locate(root, &[&[section, &id.to_string()][..], &keys].concat())
                .unwrap_or_else(|| fallback.clone());
            all.push((format!("{section}.{id}.{suffix}"), addr, Some(loc)));
        };
        for (id, d) in receivers {
            for (suffix, addr) in d.config.listen_addresses() {
                add("receivers", id, &d.location, suffix, addr);
            }
        }
        for (id, d) in exporters {
            for (suffix, addr) in d.config.spec.listen_addresses() {
                add("exporters", id, &d.location, suffix, addr);
            }
        }
        if telemetry.metrics.enabled {
            let path = "service.telemetry.metrics.address";
            let loc = locate(root, &["service", "telemetry", "metrics", "address"]);
            match telemetry.metrics.address.parse::<SocketAddr>() {
                Ok(_) => all.push((path.into(), telemetry.metrics.address.clone(), loc)),
                Err(e) => self.errors.push(ConfigError::new(
                    loc,
                    path,
                    format!("`{}` is not a socket address (ip:port): {e}", telemetry.metrics.address),
                )),
            }
        }
        let parsed: Vec<(String, SocketAddr, Option<Location>)> =
            all.into_iter().filter_map(|(p, a, l)| a.parse::<SocketAddr>().ok().map(|s| (p, s, l))).collect();
        for (i, (p1, a1, l1)) in parsed.iter().enumerate() {
            for (p2, a2, l2) in &parsed[i + 1..] {
                let same_ip = a1.ip() == a2.ip() || a1.ip().is_unspecified() || a2.ip().is_unspecified();
                if a1.port() != 0 && a1.port() == a2.port() && same_ip {
                    // Point at a line the user wrote: the later listener, else the earlier.
                    let (loc, path, addr, other, other_addr) = match (l1, l2) {
                        (_, Some(l)) => (Some(l.clone()), p2, a2, p1, a1),
                        (l, None) => (l.clone(), p1, a1, p2, a2),
                    };
                    let default = if l2.is_none() { " (its default)" } else { "" };
                    self.errors.push(ConfigError::new(
                        loc,
                        path.clone(),
                        format!(
                            "listen address {addr} is also used by {other}{default} ({other_addr}): give each listener its own port"
                        ),
                    ));
                }
            }
        }
    }
}

/// The location of the node at `keys` under `root`, if it was written.
fn locate(root: &Node, keys: &[&str]) -> Option<Location> {
    let mut node = root;
    for k in keys {
        node = node.get(k)?;
    }
    Some(node.location.clone())
}

fn route_list(routes: &[(Signal, Signal)]) -> String {
    let r: Vec<String> = routes.iter().map(|(a, b)| format!("{a} → {b}")).collect();
    format!("it joins {}", r.join(", "))
}

/// A walk through pipelines: each step the connector crossed and the pipeline reached.
type CyclePath = Vec<(Option<ComponentId>, PipelineId)>;

fn find_cycle(
    target: &PipelineId,
    edges: &BTreeMap<PipelineId, Vec<(ComponentId, PipelineId)>>,
    path: &mut CyclePath,
    seen: &mut BTreeSet<PipelineId>,
) -> Option<CyclePath> {
    let current = path.last().map(|(_, p)| p.clone())?;
    for (c, next) in edges.get(&current).map(Vec::as_slice).unwrap_or_default() {
        path.push((Some(c.clone()), next.clone()));
        if next == target {
            return Some(path.clone());
        }
        if seen.insert(next.clone())
            && let Some(found) = find_cycle(target, edges, path, seen)
        {
            return Some(found);
        }
        path.pop();
    }
    None
}

struct Declarations<'a> {
    receivers: &'a BTreeMap<ComponentId, Declared<ReceiverSpec>>,
    processors: &'a BTreeMap<ComponentId, Declared<ProcessorConfig>>,
    exporters: &'a BTreeMap<ComponentId, Declared<ExporterDecl>>,
    connectors: &'a BTreeMap<ComponentId, Declared<ConnectorConfig>>,
}

/// Parses an exporter: its `sending_queue` and `retry_on_failure` first, then
/// the rest as the type's own config.
fn parse_exporter(
    type_name: &str,
    node: &Node,
    path: &str,
) -> Result<Option<(ExporterDecl, Vec<String>)>, ConfigError> {
    let mut own = node.clone();
    if own.is_null() {
        own.value = Value::Map(Vec::new());
    }
    let queue_node = own.take("sending_queue");
    let retry_node = own.take("retry_on_failure");
    let Some((spec, secrets)) = ExporterSpec::parse(type_name, &own, path)? else { return Ok(None) };
    let queue = match &queue_node {
        Some(n) => from_node::<QueueSettings>(n, &join(path, "sending_queue"))?.0,
        None => QueueSettings::default(),
    };
    // The type's default applies to what `retry_on_failure` leaves out; only
    // `max_elapsed_time` and `initial_interval` differ between types.
    let type_default = spec.default_retry();
    let retry = match &retry_node {
        Some(n) => {
            let mut r = from_node::<RetryConfig>(n, &join(path, "retry_on_failure"))?.0;
            if n.get("max_elapsed_time").is_none() {
                r.max_elapsed_time = type_default.max_elapsed_time;
            }
            if n.get("initial_interval").is_none() {
                r.initial_interval = type_default.initial_interval.min(r.max_interval);
            }
            r
        }
        None => type_default,
    };
    if queue.queue_size == 0 {
        let loc = queue_node.as_ref().map_or_else(|| node.location.clone(), |n| n.location.clone());
        return Err(ConfigError::new(
            Some(loc),
            join(path, "sending_queue.queue_size"),
            "queue_size must be at least 1",
        ));
    }
    if let Some(p) = retry.problems().into_iter().next() {
        let loc = retry_node.as_ref().map_or_else(|| node.location.clone(), |n| n.location.clone());
        return Err(ConfigError::new(Some(loc), join(path, "retry_on_failure"), p));
    }
    let when_full = queue.when_full.unwrap_or_else(|| spec.default_when_full());
    Ok(Some((ExporterDecl { spec, queue_size: queue.queue_size, when_full, retry }, secrets)))
}
