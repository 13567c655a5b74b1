//! The located YAML tree and its strict deserializer.
//!
//! A config file is parsed once into a [`Node`] tree in which every value and
//! every key keeps its file, line and column. Files are merged and `${env:…}`
//! references expanded on that tree, and each component's section is then
//! deserialized into its typed config by [`from_node`]. Because the
//! deserializer walks located nodes, every error — an unknown field, a wrong
//! type, a bad duration, a missing field — names the file, line, column and
//! the dotted component path (`exporters.file/audit.rotation.max_megabytes`),
//! with a "did you mean" for near-miss names.
//!
//! Fields of type [`Secret`] are recorded while deserializing, so
//! `print-config` can redact exactly them.

use serde::de::{self, DeserializeOwned, DeserializeSeed, Error as _, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer};
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

/// Where a key or value was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Error or warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub severity: Severity,
    pub location: Option<Location>,
    /// Dotted path of the offending value (`service.pipelines.traces.exporters[1]`).
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(location: Option<Location>, path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { severity: Severity::Error, location, path: path.into(), message: message.into() }
    }

    pub fn warning(location: Option<Location>, path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { severity: Severity::Warning, location, path: path.into(), message: message.into() }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match &self.location {
            Some(l) => write!(f, "{l}: {sev}")?,
            None => write!(f, "{sev}")?,
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A map key with its location.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub location: Location,
}

/// A YAML value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A YAML value with its location.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub location: Location,
    pub value: Value,
}

/// Joins a path and a map key.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

impl Node {
    /// Parses YAML text. An empty document is an empty map.
    pub fn parse(text: &str, file: &str) -> Result<Node, ConfigError> {
        let file: Arc<str> = Arc::from(file);
        let top = Location { file: file.clone(), line: 1, column: 1 };
        if text.trim().is_empty() {
            return Ok(Node { location: top, value: Value::Map(Vec::new()) });
        }
        let opts = serde_saphyr::options! {
            duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        };
        match serde_saphyr::from_str_with_options::<RawNode>(text, opts) {
            Ok(raw) => Ok(raw.into_node(&file)),
            Err(e) => {
                let loc = e.location().map(|l| Location {
                    file: file.clone(),
                    line: u32::try_from(l.line()).unwrap_or(u32::MAX),
                    column: u32::try_from(l.column()).unwrap_or(u32::MAX),
                });
                Err(ConfigError::new(loc, "", format!("invalid YAML: {}", first_line(&e.to_string()))))
            }
        }
    }

    /// Merges `other` over `self`: maps merge key by key, anything else is replaced.
    pub fn merge(&mut self, other: Node) {
        match (&mut self.value, other.value) {
            (Value::Map(mine), Value::Map(theirs)) => {
                for (k, v) in theirs {
                    match mine.iter_mut().find(|(mk, _)| mk.name == k.name) {
                        Some((_, existing)) => existing.merge(v),
                        None => mine.push((k, v)),
                    }
                }
            }
            (_, value) => {
                self.value = value;
                self.location = other.location;
            }
        }
    }

    /// The map entries, if this is a map.
    pub fn entries(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// A map entry by key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    /// Removes and returns a map entry.
    pub fn take(&mut self, key: &str) -> Option<Node> {
        match &mut self.value {
            Value::Map(m) => m.iter().position(|(k, _)| k.name == key).map(|i| m.remove(i).1),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// A short description of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// Expands `${env:NAME}`, `${env:NAME:-default}` and `$$` in every string
    /// value, using `lookup` for variables. Unset variables without a default
    /// are reported with their location.
    pub fn expand_env(
        &mut self,
        lookup: &dyn Fn(&str) -> Option<String>,
        path: &str,
        errors: &mut Vec<ConfigError>,
    ) {
        match &mut self.value {
            Value::Str(s) if s.contains('$') => match expand(s, lookup) {
                Ok(v) => *s = v,
                Err(msg) => errors.push(ConfigError::new(Some(self.location.clone()), path, msg)),
            },
            Value::Seq(items) => {
                for (i, n) in items.iter_mut().enumerate() {
                    n.expand_env(lookup, &format!("{path}[{i}]"), errors);
                }
            }
            Value::Map(entries) => {
                for (k, n) in entries.iter_mut() {
                    n.expand_env(lookup, &join(path, &k.name), errors);
                }
            }
            _ => {}
        }
    }

    /// Renders the tree as YAML, replacing values at `redacted` paths.
    pub fn to_yaml(&self, redacted: &[String]) -> String {
        let mut out = String::new();
        match &self.value {
            Value::Map(m) if !m.is_empty() => emit_map(m, 0, "", redacted, &mut out),
            _ => {
                out.push_str(&scalar(self, "", redacted));
                out.push('\n');
            }
        }
        out
    }
}

/// The parser's message without its own `error: line L column C:` prefix
/// (the location is reported separately).
fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or(s).trim_start_matches("error: ");
    match line.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((pos, rest)) if pos.contains(" column ") => rest,
        _ => line,
    }
}

fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body_start) = tail.strip_prefix("${") {
            let Some(end) = body_start.find('}') else {
                return Err(format!("unterminated `${{` in `{s}`"));
            };
            let body = &body_start[..end];
            let Some(spec) = body.strip_prefix("env:") else {
                return Err(format!(
                    "unsupported reference `${{{body}}}`: use ${{env:NAME}} or ${{env:NAME:-default}} (write $$ for a literal $)"
                ));
            };
            let (name, default) = match spec.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (spec, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid environment variable name `{name}` in `${{{body}}}`"));
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set and `${{env:{name}}}` has no default (write ${{env:{name}:-default}} to give one)"
                    ));
                }
            }
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn emit_map(m: &[(Key, Node)], indent: usize, path: &str, redacted: &[String], out: &mut String) {
    for (k, v) in m {
        let p = join(path, &k.name);
        out.push_str(&" ".repeat(indent));
        out.push_str(&quote_if_needed(&k.name));
        out.push(':');
        emit_value(v, indent, &p, redacted, out);
    }
}

fn emit_value(v: &Node, indent: usize, path: &str, redacted: &[String], out: &mut String) {
    if redacted.iter().any(|r| r == path) {
        out.push_str(" \"<redacted>\"\n");
        return;
    }
    match &v.value {
        Value::Map(m) if !m.is_empty() => {
            out.push('\n');
            emit_map(m, indent + 2, path, redacted, out);
        }
        Value::Seq(items) if items.iter().any(|i| matches!(i.value, Value::Map(_) | Value::Seq(_))) => {
            out.push('\n');
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push_str(&" ".repeat(indent + 2));
                out.push('-');
                match &item.value {
                    Value::Map(m) if !m.is_empty() && !redacted.contains(&p) => {
                        out.push('\n');
                        emit_map(m, indent + 4, &p, redacted, out);
                    }
                    _ => emit_value(item, indent + 2, &p, redacted, out),
                }
            }
        }
        _ => {
            out.push(' ');
            out.push_str(&scalar(v, path, redacted));
            out.push('\n');
        }
    }
}

fn scalar(v: &Node, path: &str, redacted: &[String]) -> String {
    if redacted.iter().any(|r| r == path) {
        return "\"<redacted>\"".to_string();
    }
    match &v.value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => ".nan".into(),
        Value::Float(f) if f.is_infinite() => if *f > 0.0 { ".inf" } else { "-.inf" }.into(),
        Value::Float(f) => format!("{f:?}"),
        Value::Str(s) => quote_if_needed(s),
        Value::Map(_) => "{}".into(),
        Value::Seq(items) => {
            let parts: Vec<String> =
                items.iter().enumerate().map(|(i, n)| scalar(n, &format!("{path}[{i}]"), redacted)).collect();
            format!("[{}]", parts.join(", "))
        }
    }
    .to_string()
}

fn quote_if_needed(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && !matches!(
            s,
            "true"
                | "false"
                | "null"
                | "yes"
                | "no"
                | "on"
                | "off"
                | "True"
                | "False"
                | "Null"
                | "NULL"
                | "TRUE"
                | "FALSE"
        );
    if plain { s.to_string() } else { serde_json::Value::String(s.to_string()).to_string() }
}

/// The tree as read from serde-saphyr, before file names are attached.
struct RawNode {
    loc: (u64, u64),
    value: RawValue,
}

enum RawValue {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<RawNode>),
    Map(Vec<(serde_saphyr::Spanned<String>, RawNode)>),
}

impl RawNode {
    fn into_node(self, file: &Arc<str>) -> Node {
        let loc = |(line, column): (u64, u64)| Location {
            file: file.clone(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        };
        let value = match self.value {
            RawValue::Null => Value::Null,
            RawValue::Bool(b) => Value::Bool(b),
            RawValue::Int(i) => Value::Int(i),
            RawValue::Float(f) => Value::Float(f),
            RawValue::Str(s) => Value::Str(s),
            RawValue::Seq(items) => Value::Seq(items.into_iter().map(|n| n.into_node(file)).collect()),
            RawValue::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        let key = Key {
                            name: k.value,
                            location: loc((k.referenced.line(), k.referenced.column())),
                        };
                        (key, v.into_node(file))
                    })
                    .collect(),
            ),
        };
        Node { location: loc(self.loc), value }
    }
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: serde_saphyr::Spanned<RawValue> = serde_saphyr::Spanned::deserialize(d)?;
        Ok(RawNode { loc: (s.referenced.line(), s.referenced.column()), value: s.value })
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<RawValue, E> {
                Ok(RawValue::Null)
            }
            fn visit_none<E>(self) -> Result<RawValue, E> {
                Ok(RawValue::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
                RawValue::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawValue, E> {
                Ok(RawValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawValue, E> {
                Ok(RawValue::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<RawValue, E> {
                Ok(RawValue::Int(v))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawValue, E> {
                i128::try_from(v).map(RawValue::Int).map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<RawValue, E> {
                Ok(RawValue::Str(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<RawValue, A::Error> {
                let mut items = Vec::new();
                while let Some(n) = a.next_element()? {
                    items.push(n);
                }
                Ok(RawValue::Seq(items))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<RawValue, A::Error> {
                let mut entries = Vec::new();
                while let Some(e) = a.next_entry()? {
                    entries.push(e);
                }
                Ok(RawValue::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// Typed deserialization from a located tree.

/// Deserializes `node` into `T`. `path` is the node's dotted path, used in
/// messages. Returns the value and the paths of every [`Secret`] field.
pub fn from_node<T: DeserializeOwned>(node: &Node, path: &str) -> Result<(T, Vec<String>), ConfigError> {
    let secrets = RefCell::new(Vec::new());
    let de = NodeDe { node, path: path.to_string(), secrets: &secrets };
    match T::deserialize(de) {
        Ok(v) => Ok((v, secrets.into_inner())),
        Err(e) => Err(ConfigError::new(
            Some(e.location.unwrap_or_else(|| node.location.clone())),
            e.path.unwrap_or_else(|| path.to_string()),
            e.message,
        )),
    }
}

/// An error while deserializing a node; location and path are attached by
/// the innermost node that saw it.
#[derive(Debug)]
pub struct DeError {
    message: String,
    location: Option<Location>,
    path: Option<String>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { message: msg.to_string(), location: None, path: None }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!("unknown field `{field}`");
        match did_you_mean(field, expected.iter().copied()) {
            Some(s) => message.push_str(&format!(", did you mean `{s}`?")),
            None if expected.is_empty() => message.push_str(", this component takes no settings"),
            None => message.push_str(&format!(", expected one of: {}", expected.join(", "))),
        }
        DeError::custom(message)
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!("unknown value `{variant}`");
        match did_you_mean(variant, expected.iter().copied()) {
            Some(s) => message.push_str(&format!(", did you mean `{s}`?")),
            None => message.push_str(&format!(", expected one of: {}", expected.join(", "))),
        }
        DeError::custom(message)
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::custom(format!("missing required field `{field}`"))
    }
}

impl DeError {
    fn at(mut self, location: &Location, path: &str) -> Self {
        if self.location.is_none() {
            self.location = Some(location.clone());
        }
        if self.path.is_none() {
            self.path = Some(path.to_string());
        }
        self
    }
}

/// The closest of `candidates` to `word`, if close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: edits plus adjacent transpositions.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

const SECRET_MARKER: &str = "__magpie_secret";

struct NodeDe<'a> {
    node: &'a Node,
    path: String,
    secrets: &'a RefCell<Vec<String>>,
}

impl<'a> NodeDe<'a> {
    fn child(&self, node: &'a Node, path: String) -> NodeDe<'a> {
        NodeDe { node, path, secrets: self.secrets }
    }

    fn invalid(&self, expected: &str) -> DeError {
        DeError::custom(format!("expected {expected}, found {}", describe(self.node)))
            .at(&self.node.location, &self.path)
    }

    fn int(&self) -> Option<i128> {
        match &self.node.value {
            Value::Int(i) => Some(*i),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

fn describe(node: &Node) -> String {
    match &node.value {
        Value::Str(s) => format!("the string `{s}`"),
        Value::Int(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the number {f}"),
        Value::Bool(b) => format!("the boolean {b}"),
        other => Node { location: node.location.clone(), value: other.clone() }.type_name().to_string(),
    }
}

macro_rules! de_int {
    ($method:ident, $visit:ident, $t:ty, $what:expr) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match self.int() {
                Some(i) => match <$t>::try_from(i) {
                    Ok(v) => visitor.$visit(v).map_err(|e: DeError| e.at(&self.node.location, &self.path)),
                    Err(_) => Err(DeError::custom(format!("{} is out of range for {}", i, $what))
                        .at(&self.node.location, &self.path)),
                },
                None => Err(self.invalid($what)),
            }
        }
    };
}

impl<'de> Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let loc = &self.node.location;
        let r = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => match i64::try_from(*i) {
                Ok(v) => visitor.visit_i64(v),
                Err(_) => match u64::try_from(*i) {
                    Ok(v) => visitor.visit_u64(v),
                    Err(_) => visitor.visit_i128(*i),
                },
            },
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(_) => return self.deserialize_seq(visitor),
            Value::Map(_) => return self.deserialize_map(visitor),
        };
        r.map_err(|e: DeError| e.at(loc, &self.path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let b = match &self.node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if s == "true" => Some(true),
            Value::Str(s) if s == "false" => Some(false),
            _ => None,
        };
        match b {
            Some(b) => visitor.visit_bool(b).map_err(|e: DeError| e.at(&self.node.location, &self.path)),
            None => Err(self.invalid("true or false")),
        }
    }

    de_int!(deserialize_i8, visit_i8, i8, "a small integer");
    de_int!(deserialize_i16, visit_i16, i16, "an integer");
    de_int!(deserialize_i32, visit_i32, i32, "an integer");
    de_int!(deserialize_i64, visit_i64, i64, "an integer");
    de_int!(deserialize_u8, visit_u8, u8, "an integer from 0 to 255");
    de_int!(deserialize_u16, visit_u16, u16, "an integer from 0 to 65535");
    de_int!(deserialize_u32, visit_u32, u32, "a non-negative integer");
    de_int!(deserialize_u64, visit_u64, u64, "a non-negative integer");

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let f = match &self.node.value {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        match f {
            Some(f) => visitor.visit_f64(f).map_err(|e: DeError| e.at(&self.node.location, &self.path)),
            None => Err(self.invalid("a number")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Str(s) => visitor.visit_str(s),
            // Unquoted scalars that look like numbers are still fine as strings.
            Value::Int(i) => visitor.visit_string(i.to_string()),
            Value::Float(f) => visitor.visit_string(f.to_string()),
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            _ => return Err(self.invalid("a string")),
        };
        r.map_err(|e: DeError| e.at(&self.node.location, &self.path))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_none().map_err(|e: DeError| e.at(&self.node.location, &self.path))
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_unit().map_err(|e: DeError| e.at(&self.node.location, &self.path)),
            _ => Err(self.invalid("nothing")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == SECRET_MARKER {
            self.secrets.borrow_mut().push(self.path.clone());
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => {
                let access = SeqAccess { items: items.iter().enumerate(), parent: &self };
                visitor.visit_seq(access).map_err(|e: DeError| e.at(&self.node.location, &self.path))
            }
            _ => Err(self.invalid("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        static EMPTY: Vec<(Key, Node)> = Vec::new();
        let entries = match &self.node.value {
            Value::Map(m) => m,
            // `receivers: { otlp: }` means "otlp with its defaults".
            Value::Null => &EMPTY,
            _ => return Err(self.invalid("a map")),
        };
        let access = MapAccess { entries: entries.iter(), value: None, parent: &self };
        visitor.visit_map(access).map_err(|e: DeError| e.at(&self.node.location, &self.path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Str(s) => visitor
                .visit_enum(IntoDeserializer::<DeError>::into_deserializer(s.as_str()))
                .map_err(|e: DeError| e.at(&self.node.location, &self.path)),
            Value::Map(m) if m.len() == 1 => {
                let (k, v) = &m[0];
                let access = EnumAccess { key: k, value: v, parent: &self };
                visitor.visit_enum(access).map_err(|e: DeError| e.at(&self.node.location, &self.path))
            }
            _ => Err(self.invalid("one of the listed names")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'a, 'p> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    parent: &'p NodeDe<'a>,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'de, '_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => {
                let path = format!("{}[{i}]", self.parent.path);
                let child = self.parent.child(node, path.clone());
                seed.deserialize(child).map(Some).map_err(|e: DeError| e.at(&node.location, &path))
            }
        }
    }
}

struct MapAccess<'a, 'p> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    value: Option<(&'a Node, String)>,
    parent: &'p NodeDe<'a>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'de, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            None => Ok(None),
            Some((key, value)) => {
                let path = join(&self.parent.path, &key.name);
                self.value = Some((value, path.clone()));
                seed.deserialize(IntoDeserializer::<DeError>::into_deserializer(key.name.as_str()))
                    .map(Some)
                    .map_err(|e: DeError| e.at(&key.location, &path))
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((node, path)) = self.value.take() else {
            return Err(DeError::custom("value requested before key"));
        };
        let child = self.parent.child(node, path.clone());
        seed.deserialize(child).map_err(|e: DeError| e.at(&node.location, &path))
    }
}

struct EnumAccess<'a, 'p> {
    key: &'a Key,
    value: &'a Node,
    parent: &'p NodeDe<'a>,
}

impl<'de, 'p> de::EnumAccess<'de> for EnumAccess<'de, 'p> {
    type Error = DeError;
    type Variant = NodeDe<'de>;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, NodeDe<'de>), DeError> {
        let path = join(&self.parent.path, &self.key.name);
        let v = seed
            .deserialize(IntoDeserializer::<DeError>::into_deserializer(self.key.name.as_str()))
            .map_err(|e: DeError| e.at(&self.key.location, &path))?;
        Ok((v, self.parent.child(self.value, path)))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'de> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        match self.node.value {
            Value::Null => Ok(()),
            _ => Err(self.invalid("nothing")),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }
}

// ---------------------------------------------------------------------------
// Value types used by component configs.

/// A value that must never be printed back: passwords, tokens, webhook URLs.
/// `Debug` shows `<redacted>`, and `print-config` redacts its node.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret value; use it only where it is sent, never where it is logged.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Secret<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a secret value")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Secret<T>, D::Error> {
                T::deserialize(d).map(Secret)
            }
        }
        d.deserialize_newtype_struct(SECRET_MARKER, V(std::marker::PhantomData))
    }
}

/// `#[serde(with = "duration")]` for humane durations: `500ms`, `10s`, `5m`, `1h30m`.
pub mod duration {
    use serde::{Deserialize, Deserializer, de::Error};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(D::Error::custom)
    }

    /// Parses a humane duration, with a message a user can act on.
    pub fn parse(s: &str) -> Result<Duration, String> {
        humantime::parse_duration(s.trim()).map_err(|_| {
            format!("invalid duration `{s}`: write a number and a unit, e.g. 500ms, 10s, 5m or 1h")
        })
    }

    /// `#[serde(with = "duration::option")]` for optional durations.
    pub mod option {
        use serde::{Deserialize, Deserializer, de::Error};
        use std::time::Duration;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(s) => super::parse(&s).map(Some).map_err(D::Error::custom),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        endpoint: String,
        #[serde(default)]
        port: u16,
        #[serde(default, with = "duration::option")]
        timeout: Option<Duration>,
        #[serde(default)]
        token: Option<Secret<String>>,
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(default)]
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Basic,
        Detailed,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Nested {
        size: u32,
    }

    fn check(yaml: &str) -> Result<Sample, ConfigError> {
        let node = Node::parse(yaml, "t.yaml")?;
        from_node::<Sample>(&node, "exporters.x").map(|(v, _)| v)
    }

    fn check_err(yaml: &str, line: u32, path: &str, message: &str) {
        let e = check(yaml).unwrap_err();
        assert_eq!(e.location.as_ref().map(|l| l.line), Some(line), "{e}");
        assert_eq!(e.path, path, "{e}");
        assert!(e.message.contains(message), "`{}` lacks `{message}`", e.message);
    }

    #[test]
    fn typed_values_deserialize() {
        let s = check(
            "endpoint: a\nport: \"4317\"\ntimeout: 1500ms\ntoken: t\nmode: detailed\nnested: {size: 3}\n",
        )
        .unwrap();
        assert_eq!(s.port, 4317);
        assert_eq!(s.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(s.token.as_ref().map(|t| t.expose().as_str()), Some("t"));
        assert_eq!(s.mode, Some(Mode::Detailed));
        assert_eq!(s.nested, Some(Nested { size: 3 }));
    }

    #[test]
    fn errors_name_line_path_and_fix() {
        check_err("endpoint: a\nprot: 1\n", 2, "exporters.x.prot", "did you mean `port`?");
        check_err("endpoint: a\nport: 70000\n", 2, "exporters.x.port", "out of range");
        check_err(
            "endpoint: a\nport: [1]\n",
            2,
            "exporters.x.port",
            "expected an integer from 0 to 65535, found a list",
        );
        check_err(
            "endpoint: a\n\ntimeout: 10 parsecs\n",
            3,
            "exporters.x.timeout",
            "invalid duration `10 parsecs`",
        );
        check_err("endpoint: a\nmode: detialed\n", 2, "exporters.x.mode", "did you mean `detailed`?");
        check_err(
            "endpoint: a\nnested:\n  size: 1\n  colour: red\n",
            4,
            "exporters.x.nested.colour",
            "unknown field `colour`",
        );
        check_err("port: 1\n", 1, "exporters.x", "missing required field `endpoint`");
    }

    #[test]
    fn yaml_syntax_errors_have_a_location() {
        let e = Node::parse("a: b\n c: [\n", "bad.yaml").unwrap_err();
        assert_eq!(e.location.as_ref().map(|l| (&*l.file, l.line)), Some(("bad.yaml", 2)));
        let e = Node::parse("a: 1\na: 2\n", "dup.yaml").unwrap_err();
        assert!(e.message.contains("duplicate"), "{e}");
    }

    #[test]
    fn secrets_are_recorded_and_redacted() {
        let node = Node::parse("endpoint: a\ntoken: hunter2\n", "t.yaml").unwrap();
        let (s, secrets): (Sample, _) = from_node(&node, "").unwrap();
        assert_eq!(format!("{:?}", s.token), "Some(<redacted>)");
        assert_eq!(secrets, vec!["token".to_string()]);
        let yaml = node.to_yaml(&secrets);
        assert!(!yaml.contains("hunter2"), "{yaml}");
        assert!(yaml.contains("token: \"<redacted>\""), "{yaml}");
    }

    #[test]
    fn env_expansion() {
        let lookup = |n: &str| match n {
            "HOST" => Some("db".to_string()),
            _ => None,
        };
        let mut node =
            Node::parse("a: ${env:HOST}:5432\nb: ${env:NOPE:-x}\nc: $$HOME\nd: plain $ sign\n", "t").unwrap();
        let mut errors = vec![];
        node.expand_env(&lookup, "", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let get = |k: &str| match &node.get(k).unwrap().value {
            Value::Str(s) => s.clone(),
            _ => String::new(),
        };
        assert_eq!(
            (get("a"), get("b"), get("c"), get("d")),
            ("db:5432".into(), "x".into(), "$HOME".into(), "plain $ sign".into())
        );
        let mut node = Node::parse("x:\n  y: ${env:MISSING}\n", "t").unwrap();
        node.expand_env(&lookup, "", &mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].location.as_ref().map(|l| l.line), Some(2));
        assert_eq!(errors[0].path, "x.y");
        assert!(errors[0].message.contains("MISSING is not set"));
    }

    #[test]
    fn merge_maps_and_replace_lists() {
        let mut a = Node::parse("x: {a: 1, b: [1, 2]}\ny: 1\n", "a").unwrap();
        let b = Node::parse("x: {b: [3], c: 2}\n", "b").unwrap();
        a.merge(b);
        let yaml = a.to_yaml(&[]);
        assert_eq!(yaml, "x:\n  a: 1\n  b: [3]\n  c: 2\ny: 1\n");
        let reparsed = Node::parse(&yaml, "r").unwrap();
        assert_eq!(reparsed.to_yaml(&[]), yaml);
    }

    #[test]
    fn did_you_mean_finds_typos_only() {
        assert_eq!(did_you_mean("recievers", ["receivers", "exporters"]), Some("receivers"));
        assert_eq!(did_you_mean("zzz", ["receivers"]), None);
    }
}
