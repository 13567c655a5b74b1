//! Error groups: exceptions and failed spans, grouped as Sentry groups them,
//! by what failed and where.
//!
//! An occurrence is
//! - each `exception` event of a span (`exception.type`, `exception.message`,
//!   `exception.stacktrace`, as the OpenTelemetry semantic conventions
//!   record exceptions);
//! - a span with status ERROR and no `exception` event: its type is the
//!   span's `error.type` attribute, else `error`; its message, the status
//!   message;
//! - a log record with an `exception.type` or `exception.message` attribute
//!   (what Python's `logging` sends for `exc_info`); its message is
//!   `exception.message`, else the body.
//!
//! Occurrences with the same [`fingerprint`] form one group: a hash of the
//! service, the error type, the message template ([`normalize_message`]:
//! ids, numbers, quoted strings, addresses replaced by placeholders) and the
//! culprit ([`culprit`]: the innermost application frame of the stack trace;
//! else the `code.*` attributes; else the span name, or the logger's scope
//! name for a log record). One batch's occurrences are aggregated here, one
//! [`ErrorGroup`] per fingerprint; the write adds each to its row with one
//! upsert.
//!
//! Pure functions over the OTLP types, like [`super::mapping`]. Every text
//! is cut to a bounded size and its NUL characters (which PostgreSQL text
//! cannot hold) become U+FFFD, so a group cannot be refused for its content.

use super::copy::{Cells, Row, Table};
use super::json;
use super::mapping::{fit, semconv};
use magpie_core::otlp::{any_value_to_string, attr, attr_i64, hex};
use magpie_core::proto::common::v1::KeyValue;
use magpie_core::proto::logs::v1::LogRecord;
use magpie_core::proto::trace::v1::{Span, status::StatusCode};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::Ipv6Addr;

/// Longest `service_name`, in characters (it is indexed).
pub const SERVICE_MAX: usize = 255;
/// Longest `error_type`.
pub const TYPE_MAX: usize = 255;
/// Longest message template (`message`).
pub const TEMPLATE_MAX: usize = 1024;
/// Longest `culprit`.
pub const CULPRIT_MAX: usize = 512;
/// Longest `last_message`.
pub const LAST_MESSAGE_MAX: usize = 4096;
/// Longest `stacktrace` sample: longer ones keep their first and last halves.
pub const STACKTRACE_MAX: usize = 16 * 1024;
/// Longest value in `attributes`.
pub const ATTRIBUTE_MAX: usize = 1024;
/// How much of a message is read to make its template.
const NORMALIZE_INPUT_MAX: usize = 8 * 1024;
/// Longest quoted string replaced by `<str>`, in bytes.
const QUOTED_MAX: usize = 1024;

/// One group of one batch, or a row of `error_groups`.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorGroup {
    /// Lowercase hex of the first 16 bytes of the SHA-256 of service, type,
    /// template and culprit.
    pub fingerprint: String,
    pub service_name: Option<String>,
    pub error_type: String,
    /// The message template.
    pub message: String,
    pub culprit: String,
    /// Unix nanoseconds of the earliest and the latest occurrence.
    pub first_seen: u64,
    pub last_seen: u64,
    pub occurrences: i64,
    /// The latest occurrence's trace and span (lowercase hex), raw message
    /// and request context (JSON object).
    pub last_trace_id: Option<String>,
    pub last_span_id: Option<String>,
    pub last_message: String,
    pub attributes: String,
    /// The stack trace of the latest occurrence that had one.
    pub stacktrace: Option<String>,
}

impl ErrorGroup {
    /// Adds `other` (a group with the same fingerprint) to this one. The
    /// upsert in [`super::copy::upsert_statement`] does the same in SQL.
    fn absorb(&mut self, other: ErrorGroup) {
        self.occurrences = self.occurrences.saturating_add(other.occurrences);
        self.first_seen = self.first_seen.min(other.first_seen);
        if other.last_seen >= self.last_seen {
            self.last_seen = other.last_seen;
            self.last_trace_id = other.last_trace_id;
            self.last_span_id = other.last_span_id;
            self.last_message = other.last_message;
            self.attributes = other.attributes;
            self.stacktrace = other.stacktrace.or(self.stacktrace.take());
        } else if self.stacktrace.is_none() {
            self.stacktrace = other.stacktrace;
        }
    }
}

impl Row for ErrorGroup {
    const TABLE: Table = Table::ErrorGroups;
    fn write<C: Cells>(&self, c: &mut C) {
        c.text(&self.fingerprint);
        c.opt_text(self.service_name.as_deref());
        c.text(&self.error_type);
        c.text(&self.message);
        c.text(&self.culprit);
        c.timestamp(self.first_seen);
        c.timestamp(self.last_seen);
        c.int8(self.occurrences);
        c.opt_text(self.last_trace_id.as_deref());
        c.opt_text(self.last_span_id.as_deref());
        c.text(&self.last_message);
        c.opt_text(self.stacktrace.as_deref());
        c.json(&self.attributes);
    }
}

/// One batch's error groups, one per fingerprint, in order of first occurrence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ErrorGroups {
    groups: Vec<ErrorGroup>,
    by_fingerprint: HashMap<String, usize>,
}

impl ErrorGroups {
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn groups(&self) -> &[ErrorGroup] {
        &self.groups
    }

    pub fn get(&self, index: usize) -> Option<&ErrorGroup> {
        self.groups.get(index)
    }

    /// Adds `group` to the group with its fingerprint, or as a new one.
    pub fn add_group(&mut self, group: ErrorGroup) {
        match self.by_fingerprint.get(&group.fingerprint) {
            Some(&i) => self.groups[i].absorb(group),
            None => {
                self.by_fingerprint.insert(group.fingerprint.clone(), self.groups.len());
                self.groups.push(group);
            }
        }
    }

    /// Adds every group of `other` (a later part of the same batch).
    pub fn append(&mut self, other: ErrorGroups) {
        for g in other.groups {
            self.add_group(g);
        }
    }

    /// Adds one occurrence.
    pub fn add(&mut self, service: Option<&str>, o: Occurrence<'_>) {
        let service_name = service.filter(|s| !s.is_empty()).map(|s| clean(s, SERVICE_MAX));
        let error_type = clean(o.error_type.trim(), TYPE_MAX);
        let error_type = if error_type.is_empty() { "error".to_string() } else { error_type };
        let message = normalize_message(&o.message);
        let culprit = clean(
            o.stacktrace.as_deref().and_then(culprit).as_deref().unwrap_or(&o.fallback_culprit),
            CULPRIT_MAX,
        );
        let fingerprint = fingerprint(service_name.as_deref().unwrap_or(""), &error_type, &message, &culprit);
        self.add_group(ErrorGroup {
            fingerprint,
            service_name,
            error_type,
            message,
            culprit,
            first_seen: o.time,
            last_seen: o.time,
            occurrences: 1,
            last_trace_id: o.trace_id,
            last_span_id: o.span_id,
            last_message: clean(o.message.trim(), LAST_MESSAGE_MAX),
            attributes: o.attributes,
            stacktrace: o.stacktrace.as_deref().map(stacktrace_sample).filter(|s| !s.is_empty()),
        });
    }
}

/// One occurrence of an error, as read from a span event, a span or a log record.
#[derive(Clone, Debug, PartialEq)]
pub struct Occurrence<'a> {
    pub error_type: Cow<'a, str>,
    /// The raw message.
    pub message: Cow<'a, str>,
    pub stacktrace: Option<Cow<'a, str>>,
    /// The culprit when no frame can be read from the stack trace.
    pub fallback_culprit: String,
    /// Unix nanoseconds.
    pub time: u64,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    /// The request context, a JSON object.
    pub attributes: String,
}

/// The text of an attribute: strings borrowed, other values rendered.
fn text_attr<'a>(attrs: &'a [KeyValue], aliases: &[&str]) -> Option<Cow<'a, str>> {
    use magpie_core::proto::common::v1::any_value::Value;
    match attr(attrs, aliases)? {
        Value::StringValue(s) => Some(Cow::Borrowed(s.as_str())),
        other => Some(Cow::Owned(any_value_to_string(other))),
    }
}

/// The first of `times` that is set, else `now`.
fn first_time(times: &[u64], now: u64) -> u64 {
    times.iter().copied().find(|t| *t != 0).unwrap_or(now)
}

fn hex_id(id: &[u8], len: usize) -> Option<String> {
    (!id.is_empty()).then(|| fit(&hex(id), len))
}

/// The occurrences of one span: its `exception` events, or the span itself
/// when its status is ERROR and it has none. `resource` and `users` (the
/// `mapping.user` names) serve the request context.
pub fn span_occurrences<'a>(
    span: &'a Span,
    resource: &[KeyValue],
    users: &[String],
    now: u64,
) -> Vec<Occurrence<'a>> {
    const EXCEPTION_TYPE: &[&str] = &["exception.type"];
    let span_time = first_time(&[span.end_time_unix_nano, span.start_time_unix_nano], now);
    let trace_id = hex_id(&span.trace_id, 32);
    let span_id = hex_id(&span.span_id, 16);
    let fallback = || code_location(&span.attributes).unwrap_or_else(|| span.name.clone());
    let mut out: Vec<Occurrence<'a>> = Vec::new();
    for e in span.events.iter().filter(|e| e.name == "exception") {
        let a = &e.attributes[..];
        out.push(Occurrence {
            error_type: text_attr(a, EXCEPTION_TYPE)
                .or_else(|| text_attr(&span.attributes, semconv::ERROR_TYPE))
                .unwrap_or(Cow::Borrowed("")),
            message: text_attr(a, &["exception.message"]).unwrap_or(Cow::Borrowed("")),
            stacktrace: text_attr(a, &["exception.stacktrace"]),
            fallback_culprit: code_location(a).unwrap_or_else(fallback),
            time: first_time(&[e.time_unix_nano], span_time),
            trace_id: trace_id.clone(),
            span_id: span_id.clone(),
            attributes: String::new(),
        });
    }
    let failed = span.status.as_ref().is_some_and(|s| s.code == StatusCode::Error as i32);
    if out.is_empty() && failed {
        out.push(Occurrence {
            error_type: text_attr(&span.attributes, semconv::ERROR_TYPE).unwrap_or(Cow::Borrowed("")),
            message: Cow::Borrowed(span.status.as_ref().map_or("", |s| s.message.as_str())),
            stacktrace: None,
            fallback_culprit: fallback(),
            time: span_time,
            trace_id,
            span_id,
            attributes: String::new(),
        });
    }
    if !out.is_empty() {
        let context = request_context(&span.attributes, resource, users);
        for o in &mut out {
            o.attributes.clone_from(&context);
        }
    }
    out
}

/// The occurrence a log record carries, if it has an `exception.type` or
/// `exception.message` attribute. `scope` is the logger's name; `time` the
/// record's time (else observed time, else now).
pub fn log_occurrence<'a>(
    lr: &'a LogRecord,
    resource: &[KeyValue],
    users: &[String],
    scope: Option<&str>,
    time: u64,
) -> Option<Occurrence<'a>> {
    let a = &lr.attributes[..];
    let error_type = text_attr(a, &["exception.type"]);
    let message = text_attr(a, &["exception.message"]);
    if error_type.is_none() && message.is_none() {
        return None;
    }
    let message = match message {
        Some(m) => m,
        None => json::body_text(lr.body.as_ref()).map_or(Cow::Borrowed(""), Cow::Owned),
    };
    Some(Occurrence {
        error_type: error_type.unwrap_or(Cow::Borrowed("")),
        message,
        stacktrace: text_attr(a, &["exception.stacktrace"]),
        fallback_culprit: code_location(a).unwrap_or_else(|| scope.unwrap_or("").to_string()),
        time,
        trace_id: hex_id(&lr.trace_id, 32),
        span_id: hex_id(&lr.span_id, 16),
        attributes: request_context(a, resource, users),
    })
}

/// A text cut to `max` characters, its NUL characters replaced by U+FFFD.
fn clean(s: &str, max: usize) -> String {
    let cut = fit(s, max);
    if cut.contains('\0') { cut.replace('\0', "\u{fffd}") } else { cut }
}

/// The request context of an occurrence, a JSON object: `http.route`,
/// `http.request.method`, `http.response.status_code`, `url.path`,
/// `enduser.id` (the first `mapping.user` attribute, on the item then its
/// resource) and `gen_ai.request.model`, each when present (old
/// semantic-convention names are read too, written under the stable ones).
fn request_context(attrs: &[KeyValue], resource: &[KeyValue], users: &[String]) -> String {
    let text = |aliases: &[&str]| text_attr(attrs, aliases).map(Cow::into_owned);
    let url_path = text(semconv::URL_PATH).or_else(|| {
        text(semconv::HTTP_TARGET).map(|t| t.split(['?', '#']).next().unwrap_or_default().to_string())
    });
    let user = users.iter().find_map(|n| {
        text_attr(attrs, &[n.as_str()]).or_else(|| text_attr(resource, &[n.as_str()])).map(Cow::into_owned)
    });
    let mut out = String::from("{");
    let mut push = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            if out.len() > 1 {
                out.push(',');
            }
            json::push_str(&mut out, key);
            out.push(':');
            json::push_str(&mut out, &clean(&v, ATTRIBUTE_MAX));
        }
    };
    push("http.route", text(semconv::HTTP_ROUTE));
    push("http.request.method", text(semconv::HTTP_METHOD));
    push("url.path", url_path);
    push("enduser.id", user);
    push("gen_ai.request.model", text(semconv::GENAI_REQUEST_MODEL));
    if let Some(status) = attr_i64(attrs, semconv::HTTP_STATUS) {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str("\"http.response.status_code\":");
        out.push_str(&status.to_string());
    }
    out.push('}');
    out
}

/// Where the code that failed is, from the `code.*` attributes:
/// `function (file)` with the file's base name.
fn code_location(attrs: &[KeyValue]) -> Option<String> {
    let function = text_attr(attrs, &["code.function.name"]).or_else(|| {
        let f = text_attr(attrs, &["code.function"])?;
        Some(match text_attr(attrs, &["code.namespace"]) {
            Some(ns) if !ns.is_empty() => Cow::Owned(format!("{ns}.{f}")),
            _ => f,
        })
    });
    let file = text_attr(attrs, &["code.file.path", "code.filepath"]);
    match (function.filter(|f| !f.is_empty()), file.filter(|f| !f.is_empty())) {
        (Some(f), Some(p)) => Some(format!("{f} ({})", base_name(&p))),
        (Some(f), None) => Some(f.into_owned()),
        (None, Some(p)) => Some(base_name(&p).to_string()),
        (None, None) => None,
    }
}

/// The stable hash of a group: the first 16 bytes of the SHA-256 of its
/// service, error type, message template and culprit (NUL-separated; none
/// of them holds a NUL), as 32 lowercase hex digits.
pub fn fingerprint(service: &str, error_type: &str, template: &str, culprit: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (i, part) in [service, error_type, template, culprit].into_iter().enumerate() {
        if i > 0 {
            ctx.update(&[0]);
        }
        ctx.update(part.as_bytes());
    }
    hex(&ctx.finish().as_ref()[..16])
}

/// A stack trace cut to about [`STACKTRACE_MAX`] characters: a longer one
/// keeps its first and last halves (Python's innermost frames are last,
/// Java's and JavaScript's first) around a note of how much was cut.
pub fn stacktrace_sample(s: &str) -> String {
    let s = s.trim_end();
    let n = s.chars().count();
    if n <= STACKTRACE_MAX {
        return clean(s, STACKTRACE_MAX);
    }
    let half = STACKTRACE_MAX / 2;
    let head_end = s.char_indices().nth(half).map_or(s.len(), |(i, _)| i);
    let tail_start = s.char_indices().nth(n - half).map_or(s.len(), |(i, _)| i);
    let out = format!("{}\n[… {} characters cut …]\n{}", &s[..head_end], n - 2 * half, &s[tail_start..]);
    if out.contains('\0') { out.replace('\0', "\u{fffd}") } else { out }
}

/// A message as a template, so that messages differing only in ids and
/// values group together. Left to right, at the start of a word (after a
/// character that is not an ASCII letter or digit):
///
/// | replaced | by |
/// |---|---|
/// | a string in `'…'`, `"…"` or `` `…` `` (one line, up to 1 KiB, closing quote not followed by a letter or digit) | `<str>` |
/// | a UUID (`8-4-4-4-12` hex digits) | `<uuid>` |
/// | an e-mail address (`local@domain.tld`) | `<email>` |
/// | an IPv4 address, or an IPv6 address with a digit and two colons | `<ip>` |
/// | `0x` and hex digits, or 8 or more hex digits mixing digits and letters `a`–`f` | `<hex>` |
/// | decimal digits, with a fraction (`1.5`); a unit may follow (`30s`) | `<num>` |
///
/// Digits inside a word stay (`sha256`, `http2`, `user123`). Then runs of
/// white space become one space, the ends are trimmed, and the template is
/// cut to [`TEMPLATE_MAX`] characters. Only the first 8 KiB of a message are
/// read.
pub fn normalize_message(message: &str) -> String {
    let s = match message.char_indices().nth(NORMALIZE_INPUT_MAX) {
        Some((cut, _)) => &message[..cut],
        None => message,
    };
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        let at_word_start = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        match at_word_start.then(|| token_at(b, i)).flatten() {
            Some((end, placeholder)) => {
                out.push_str(&s[copied..i]);
                out.push_str(placeholder);
                i = end;
                copied = end;
            }
            None => i += 1,
        }
    }
    out.push_str(&s[copied..]);
    let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    clean(&collapsed, TEMPLATE_MAX)
}

/// The variable token starting at `i`, if any: where it ends and its placeholder.
fn token_at(b: &[u8], i: usize) -> Option<(usize, &'static str)> {
    if matches!(b[i], b'\'' | b'"' | b'`') {
        return quoted(b, i).map(|e| (e, "<str>"));
    }
    if let Some(e) = uuid(b, i) {
        return Some((e, "<uuid>"));
    }
    if let Some(e) = email(b, i) {
        return Some((e, "<email>"));
    }
    if let Some(e) = ipv4(b, i).or_else(|| ipv6(b, i)) {
        return Some((e, "<ip>"));
    }
    if let Some(e) = hex_token(b, i) {
        return Some((e, "<hex>"));
    }
    number(b, i).map(|e| (e, "<num>"))
}

/// Whether position `e` ends a word.
fn word_end(b: &[u8], e: usize) -> bool {
    e >= b.len() || !b[e].is_ascii_alphanumeric()
}

fn quoted(b: &[u8], i: usize) -> Option<usize> {
    let q = b[i];
    let limit = (i + 1 + QUOTED_MAX).min(b.len());
    for j in i + 1..limit {
        match b[j] {
            b'\n' => return None,
            c if c == q => return word_end(b, j + 1).then_some(j + 1),
            _ => {}
        }
    }
    None
}

fn uuid(b: &[u8], i: usize) -> Option<usize> {
    let t = b.get(i..i + 36)?;
    let ok = t.iter().enumerate().all(|(k, c)| match k {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    (ok && word_end(b, i + 36)).then_some(i + 36)
}

fn email(b: &[u8], i: usize) -> Option<usize> {
    if !b[i].is_ascii_alphanumeric() {
        return None;
    }
    let local = |c: u8| c.is_ascii_alphanumeric() || b"._%+-".contains(&c);
    let mut j = i;
    while j < b.len() && j - i < 64 && local(b[j]) {
        j += 1;
    }
    if b.get(j) != Some(&b'@') {
        return None;
    }
    let d0 = j + 1;
    let mut k = d0;
    while k < b.len() && k - d0 < 255 && (b[k].is_ascii_alphanumeric() || b[k] == b'.' || b[k] == b'-') {
        k += 1;
    }
    // A sentence's full stop is not part of the domain.
    while k > d0 && matches!(b[k - 1], b'.' | b'-') {
        k -= 1;
    }
    let domain = &b[d0..k];
    let dot = domain.iter().rposition(|c| *c == b'.')?;
    let tld = &domain[dot + 1..];
    (dot > 0 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) && word_end(b, k)).then_some(k)
}

fn ipv4(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    for part in 0..4 {
        let start = j;
        let mut value = 0u32;
        while j < b.len() && j - start < 3 && b[j].is_ascii_digit() {
            value = value * 10 + u32::from(b[j] - b'0');
            j += 1;
        }
        if j == start || value > 255 {
            return None;
        }
        if part < 3 {
            if b.get(j) != Some(&b'.') {
                return None;
            }
            j += 1;
        }
    }
    let more = b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(u8::is_ascii_digit);
    (word_end(b, j) && !more).then_some(j)
}

fn ipv6(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    while j < b.len() && j - i < 45 && (b[j].is_ascii_hexdigit() || b[j] == b':' || b[j] == b'.') {
        j += 1;
    }
    if !word_end(b, j) {
        return None;
    }
    // Trailing punctuation may belong to the sentence ("… at fe80::1.").
    loop {
        let run = &b[i..j];
        if run.iter().filter(|c| **c == b':').count() < 2 || !run.iter().any(u8::is_ascii_digit) {
            return None;
        }
        if std::str::from_utf8(run).ok()?.parse::<Ipv6Addr>().is_ok() {
            return Some(j);
        }
        if !matches!(run.last(), Some(b'.' | b':')) {
            return None;
        }
        j -= 1;
    }
}

fn hex_token(b: &[u8], i: usize) -> Option<usize> {
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) {
        let mut j = i + 2;
        while j < b.len() && b[j].is_ascii_hexdigit() {
            j += 1;
        }
        return (j > i + 2 && word_end(b, j)).then_some(j);
    }
    let (mut j, mut digit, mut letter) = (i, false, false);
    while j < b.len() && b[j].is_ascii_hexdigit() {
        digit |= b[j].is_ascii_digit();
        letter |= !b[j].is_ascii_digit();
        j += 1;
    }
    (j - i >= 8 && digit && letter && word_end(b, j)).then_some(j)
}

fn number(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    if j == i {
        return None;
    }
    if b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
        j += 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
    }
    Some(j)
}

/// One frame of a stack trace.
#[derive(Debug, PartialEq)]
struct Frame<'a> {
    function: &'a str,
    /// The file's base name, or empty.
    file: &'a str,
    /// In a dependency, the standard library or the runtime rather than the application.
    library: bool,
}

impl Frame<'_> {
    fn describe(&self) -> String {
        if self.file.is_empty() {
            self.function.to_string()
        } else {
            format!("{} ({})", self.function, self.file)
        }
    }
}

/// Where an error was raised, from its stack trace: the innermost frame of
/// the application as `function (file)`, the file by its base name and
/// without line numbers (they move with every deploy). Frames in
/// dependencies, the standard library or the runtime are passed over
/// unless every frame is one. Reads
/// - Python tracebacks (`File "x.py", line N, in func`; innermost last; of
///   chained exceptions, the traceback raised last is searched first, then
///   the ones before it, so an application error a framework turned into its
///   own is still found); library: `site-packages`, `dist-packages`,
///   `/lib/python…`, `<frozen …>`;
/// - Go's `debug.Stack()` (`goroutine N [running]:`, then function and
///   `\tfile:line` pairs); library: module cache (`/pkg/mod/`) and
///   standard-library packages;
/// - Java, Kotlin and .NET (`at pkg.Class.method(File.java:N)`, innermost
///   first, only the outer exception's frames, before `Caused by:`); library:
///   `java.`, `javax.`, `jdk.`, `sun.`, `kotlin.`, `System.`, `Microsoft.`…;
/// - V8 / Node.js (`at func (file:line:col)`, `at file:line:col`, innermost
///   first); library: `node_modules`, `node:` internals, `<anonymous>`.
///
/// `None` when no frame can be read.
pub fn culprit(stacktrace: &str) -> Option<String> {
    let frames =
        python_frames(stacktrace).or_else(|| go_frames(stacktrace)).unwrap_or_else(|| at_frames(stacktrace));
    frames.iter().find(|f| !f.library).or(frames.first()).map(Frame::describe)
}

/// The last path segment, `/` or `\` separated.
fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Innermost first: each traceback lists its frames outermost first, and
/// chained exceptions print the one raised last, so the reversed list starts
/// with the raised exception's innermost frame and goes on to the tracebacks
/// chained before it.
fn python_frames(s: &str) -> Option<Vec<Frame<'_>>> {
    let mut frames = Vec::new();
    for line in s.lines() {
        // Exception groups indent their tracebacks with `|`.
        let t = line.trim_start_matches([' ', '\t', '|', '+']);
        let Some(rest) = t.strip_prefix("File \"") else { continue };
        let Some((path, rest)) = rest.split_once("\", line ") else { continue };
        let function = rest.split_once(", in ").map_or("<module>", |(_, f)| f.trim());
        let library = path.contains("site-packages")
            || path.contains("dist-packages")
            || path.contains("/lib/python")
            || path.contains("\\lib\\python")
            || path.contains("\\Lib\\")
            || path.starts_with('<');
        frames.push(Frame { function, file: base_name(path), library });
    }
    frames.reverse();
    (!frames.is_empty()).then_some(frames)
}

fn go_frames(s: &str) -> Option<Vec<Frame<'_>>> {
    let mut lines = s.lines().skip_while(|l| !(l.starts_with("goroutine ") && l.trim_end().ends_with("]:")));
    lines.next()?;
    let mut frames = Vec::new();
    let mut function: Option<&str> = None;
    for line in lines {
        if line.trim().is_empty() {
            break; // the next goroutine
        }
        if let Some(location) = line.strip_prefix('\t') {
            if let Some(f) = function.take() {
                let location = location.trim();
                let path = location.rsplit_once(':').map_or(location, |(p, _)| p);
                let package =
                    f.split_once('/').map_or_else(|| f.split('.').next().unwrap_or(f), |(first, _)| first);
                let standard = !package.contains('.') && package != "main";
                frames.push(Frame {
                    function: f,
                    file: base_name(path),
                    library: standard || path.contains("/pkg/mod/"),
                });
            }
        } else if line.starts_with("created by ") {
            function = None;
        } else {
            // `pkg.(*T).Method(0xc000010018, {0x7a9b28, 0xc0000e40e0})`: drop the arguments.
            let t = line.trim();
            function = Some(match t.strip_suffix(')').and_then(|r| r.rfind('(')) {
                Some(open) => &t[..open],
                None => t,
            });
        }
    }
    (!frames.is_empty()).then_some(frames)
}

fn at_frames(s: &str) -> Vec<Frame<'_>> {
    let mut frames = Vec::new();
    for line in s.lines() {
        let t = line.trim();
        if t.starts_with("Caused by:") || t.starts_with("--- End of inner exception") {
            break;
        }
        let Some(rest) = t.strip_prefix("at ") else { continue };
        if let Some(f) = jvm_frame(rest).or_else(|| js_frame(rest)) {
            frames.push(f);
        }
    }
    frames
}

/// `pkg.Class.method(File.java:42)`, `java.base/java.lang.Integer.parseInt(Integer.java:668)`,
/// `Ns.Class.Method(String user) in /src/Service.cs:line 42`.
fn jvm_frame(rest: &str) -> Option<Frame<'_>> {
    let open = rest.find('(')?;
    let name = &rest[..open];
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let location = if let Some((_, loc)) = rest.rsplit_once(") in ") {
        loc.rsplit_once(":line ").map_or(loc, |(p, _)| p)
    } else {
        let inside = rest.strip_suffix(')')?.get(open + 1..)?;
        inside.split(':').next().unwrap_or(inside)
    };
    let file = base_name(location);
    let file = if file.contains('.') && !file.contains(char::is_whitespace) { file } else { "" };
    // A module or class-loader prefix (`java.base/`, `app//`) is not part of the method.
    let function = name.rsplit('/').next().unwrap_or(name);
    const RUNTIME: &[&str] = &[
        "java.",
        "javax.",
        "jdk.",
        "sun.",
        "com.sun.",
        "kotlin.",
        "kotlinx.",
        "scala.",
        "System.",
        "Microsoft.",
    ];
    let library = RUNTIME.iter().any(|p| function.starts_with(p)) || file.is_empty();
    Some(Frame { function, file, library })
}

/// `func (file:line:col)`, `async func (…)`, `new C (…)`, `file:line:col`.
fn js_frame(rest: &str) -> Option<Frame<'_>> {
    let rest = rest.strip_prefix("async ").unwrap_or(rest);
    let (function, location) = match rest.strip_suffix(')').and_then(|r| r.split_once(" (")) {
        Some((f, loc)) => (f.split(" [as ").next().unwrap_or(f), loc),
        None => ("<anonymous>", rest),
    };
    let mut path = location;
    for _ in 0..2 {
        if let Some((p, n)) = path.rsplit_once(':')
            && !n.is_empty()
            && n.bytes().all(|c| c.is_ascii_digit())
        {
            path = p;
        }
    }
    let path = path.strip_prefix("file://").unwrap_or(path);
    if path.is_empty() {
        return None;
    }
    let library = path.contains("node_modules")
        || path.starts_with("node:")
        || path.starts_with("internal/")
        || path.starts_with('<')
        || path == "native";
    Some(Frame { function, file: base_name(path), library })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use magpie_core::otlp::{kv_int, kv_str};
    use magpie_core::proto::common::v1::{AnyValue, any_value};
    use magpie_core::proto::trace::v1::{Status, span::Event};

    const PYTHON_CHAINED: &str = include_str!("../../tests/fixtures/stacktraces/python_chained.txt");
    const PYTHON_REQUESTS: &str = include_str!("../../tests/fixtures/stacktraces/python_requests.txt");
    const PYTHON_FRAMEWORK: &str = include_str!("../../tests/fixtures/stacktraces/python_framework.txt");
    const NODE_ENOENT: &str = include_str!("../../tests/fixtures/stacktraces/node_enoent.txt");
    const NODE_JSON: &str = include_str!("../../tests/fixtures/stacktraces/node_json.txt");
    const NODE_ESM_TIMER: &str = include_str!("../../tests/fixtures/stacktraces/node_esm_timer.txt");
    const JAVA_CAUSED_BY: &str = include_str!("../../tests/fixtures/stacktraces/java_caused_by.txt");
    const JAVA_JDK_INNERMOST: &str = include_str!("../../tests/fixtures/stacktraces/java_jdk_innermost.txt");
    const GO_DEBUG_STACK: &str = include_str!("../../tests/fixtures/stacktraces/go_debug_stack.txt");

    #[test]
    fn awkward_text_never_panics_and_stays_bounded() {
        for s in magpie_core::otlp::testdata::awkward_strings() {
            let t = normalize_message(&s);
            assert!(t.chars().count() <= TEMPLATE_MAX, "{s:?}");
            assert!(!t.contains('\0'), "{s:?} → {t:?}");
            let _ = culprit(&s);
            let sample = stacktrace_sample(&s.repeat(2000));
            assert!(sample.chars().count() <= STACKTRACE_MAX + 64, "{s:?}");
            assert_eq!(fingerprint("svc", &s, &t, &s).len(), 32);
        }
    }

    #[test]
    fn ids_and_values_become_placeholders() {
        for (message, template) in [
            ("user 123 not found", "user <num> not found"),
            ("user 456 not found", "user <num> not found"),
            ("session 0b7c6f3e-9c1d-4e8a-a3f2-5d6e7f8a9b0c expired", "session <uuid> expired"),
            ("trace 4bf92f3577b34da6a3ce929d0e0e4736 missing", "trace <hex> missing"),
            ("bad pointer 0x7ffd5e8c", "bad pointer <hex>"),
            ("KeyError: 'user_id'", "KeyError: <str>"),
            (r#"relation "users" does not exist"#, "relation <str> does not exist"),
            ("Table `chat_log` is full", "Table <str> is full"),
            ("no route to 10.0.3.17:5432", "no route to <ip>:<num>"),
            ("connect to [fe80::1]:8080 refused", "connect to [<ip>]:<num> refused"),
            ("listen on ::1 failed.", "listen on <ip> failed."),
            ("mail to jane.doe+chat@example.co.uk bounced.", "mail to <email> bounced."),
            ("timed out after 30s (limit 2.5s)", "timed out after <num>s (limit <num>s)"),
            ("GET /api/users/8812/orders/17 failed", "GET /api/users/<num>/orders/<num> failed"),
            ("req_8f3a2b1c9d4e not found", "req_<hex> not found"),
        ] {
            assert_eq!(normalize_message(message), template, "{message}");
        }
    }

    #[test]
    fn words_keep_their_digits_and_text_stays() {
        for (message, template) in [
            ("sha256 mismatch over http2", "sha256 mismatch over http2"),
            ("user123 can't open 'x'", "user123 can't open <str>"),
            ("deadbeef and cafebabe are words here", "deadbeef and cafebabe are words here"),
            ("Dateiname »Größe« zu lang: 4096", "Dateiname »Größe« zu lang: <num>"),
            ("  multi\n  line\tmessage  ", "multi line message"),
            ("at 12:30:45 the job failed", "at <num>:<num>:<num> the job failed"),
            ("it's the user's 'quoted' thing", "it's the user's <str> thing"),
            ("unclosed 'quote here", "unclosed 'quote here"),
            ("nul\0byte", "nul\u{fffd}byte"),
            ("", ""),
        ] {
            assert_eq!(normalize_message(message), template, "{message:?}");
        }
        let long = "x".repeat(5000);
        assert_eq!(normalize_message(&long).chars().count(), TEMPLATE_MAX);
    }

    #[test]
    fn culprits_are_the_innermost_application_frame() {
        for (name, trace, expected) in [
            ("python chained", PYTHON_CHAINED, "get_user (chat.py)"),
            ("python in requests", PYTHON_REQUESTS, "fetch_context (rag.py)"),
            ("python re-raised by a framework", PYTHON_FRAMEWORK, "get_user (handlers.py)"),
            ("node fs", NODE_ENOENT, "readPrompt (server.js)"),
            ("node JSON.parse", NODE_JSON, "parseBody (s2.js)"),
            ("node esm", NODE_ESM_TIMER, "getSession (index.mjs)"),
            ("java caused by", JAVA_CAUSED_BY, "com.example.chat.ChatService.reply (ChatService.java)"),
            (
                "java jdk innermost",
                JAVA_JDK_INNERMOST,
                "com.example.chat.ChatService.main (ChatService.java)",
            ),
            ("go debug.Stack", GO_DEBUG_STACK, "main.(*ChatHandler).ServeHTTP (handler.go)"),
        ] {
            assert_eq!(culprit(trace).as_deref(), Some(expected), "{name}");
        }
    }

    #[test]
    fn culprits_fall_back_to_the_innermost_frame_or_none() {
        let only_library = "Error: boom\n    at Object.readFileSync (node:fs:448:20)\n    at Module._compile (node:internal/modules/cjs/loader:1521:14)";
        assert_eq!(culprit(only_library).as_deref(), Some("Object.readFileSync (node:fs)"));
        let anonymous = "TypeError: x\n    at file:///srv/app/index.mjs:7:40\n";
        assert_eq!(culprit(anonymous).as_deref(), Some("<anonymous> (index.mjs)"));
        let dotnet = "System.InvalidOperationException: no history\n   at Chat.Service.Reply(String user) in /src/Chat/Service.cs:line 42\n   at System.Linq.Enumerable.First[TSource](IEnumerable`1 source)";
        assert_eq!(culprit(dotnet).as_deref(), Some("Chat.Service.Reply (Service.cs)"));
        assert_eq!(culprit("ValueError: nothing to see"), None);
        assert_eq!(culprit(""), None);
    }

    #[test]
    fn fingerprints_are_stable_and_separate_their_parts() {
        let f = fingerprint("chatbot", "UserNotFound", "user <num> not found", "get_user (chat.py)");
        assert_eq!(f.len(), 32);
        assert!(f.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        // The same inputs give the same value on every machine and release.
        assert_eq!(f, fingerprint("chatbot", "UserNotFound", "user <num> not found", "get_user (chat.py)"));
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"chatbot\0UserNotFound\0user <num> not found\0get_user (chat.py)");
        assert_eq!(f, hex(&ctx.finish().as_ref()[..16]));
        assert_ne!(fingerprint("a", "bc", "", ""), fingerprint("ab", "c", "", ""));
        assert_ne!(f, fingerprint("chatbot", "UserNotFound", "user <num> not found", "load (chat.py)"));
        assert_ne!(f, fingerprint("billing", "UserNotFound", "user <num> not found", "get_user (chat.py)"));
    }

    #[test]
    fn long_stack_traces_keep_both_ends() {
        let lines: Vec<String> =
            (0..2000).map(|i| format!("  File \"/srv/app/m.py\", line {i}, in f{i}")).collect();
        let trace = lines.join("\n");
        let sample = stacktrace_sample(&trace);
        assert!(sample.chars().count() < STACKTRACE_MAX + 64, "{}", sample.len());
        assert!(sample.starts_with("  File \"/srv/app/m.py\", line 0, in f0"));
        assert!(sample.ends_with("in f1999"), "the innermost Python frame is kept");
        assert!(sample.contains("characters cut"));
        assert_eq!(stacktrace_sample("short\0trace\n\n"), "short\u{fffd}trace");
    }

    fn event(time: u64, attrs: Vec<KeyValue>) -> Event {
        Event {
            time_unix_nano: time,
            name: "exception".into(),
            attributes: attrs,
            dropped_attributes_count: 0,
        }
    }

    fn failed_span(events: Vec<Event>, attrs: Vec<KeyValue>, status: Option<(StatusCode, &str)>) -> Span {
        Span {
            trace_id: vec![0xab; 16],
            span_id: vec![1; 8],
            name: "POST /api/chat".into(),
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 2_000,
            attributes: attrs,
            events,
            status: status.map(|(c, m)| Status { code: c as i32, message: m.into() }),
            ..Default::default()
        }
    }

    fn users() -> Vec<String> {
        vec!["enduser.id".into(), "user.email".into()]
    }

    #[test]
    fn each_exception_event_is_an_occurrence() {
        let span = failed_span(
            vec![
                event(
                    1_500,
                    vec![
                        kv_str("exception.type", "UserNotFound"),
                        kv_str("exception.message", "user 123 not found"),
                        kv_str("exception.stacktrace", PYTHON_CHAINED),
                    ],
                ),
                event(
                    0,
                    vec![kv_str("exception.type", "TimeoutError"), kv_str("exception.message", "after 30s")],
                ),
                Event { name: "cache.miss".into(), ..Default::default() },
            ],
            vec![
                kv_str("http.request.method", "POST"),
                kv_str("http.route", "/api/chat"),
                kv_str("http.target", "/api/chat?q=1"),
                kv_int("http.response.status_code", 500),
                kv_str("gen_ai.request.model", "grok-4"),
            ],
            Some((StatusCode::Error, "user 123 not found")),
        );
        let resource = vec![kv_str("enduser.id", "ada@example.com")];
        let o = span_occurrences(&span, &resource, &users(), 9);
        assert_eq!(o.len(), 2, "two exception events; the ERROR status adds nothing");
        assert_eq!(o[0].error_type, "UserNotFound");
        assert_eq!(o[0].message, "user 123 not found");
        assert_eq!(o[0].stacktrace.as_deref(), Some(PYTHON_CHAINED));
        assert_eq!((o[0].time, o[1].time), (1_500, 2_000), "an event without a time takes the span's end");
        assert_eq!(o[1].fallback_culprit, "POST /api/chat");
        assert_eq!(o[0].trace_id.as_deref(), Some("ab".repeat(16).as_str()));
        assert_eq!(o[0].span_id.as_deref(), Some("0101010101010101"));
        let context: serde_json::Value = serde_json::from_str(&o[0].attributes).unwrap();
        assert_eq!(
            context,
            serde_json::json!({"http.route": "/api/chat", "http.request.method": "POST", "url.path": "/api/chat",
                "enduser.id": "ada@example.com", "gen_ai.request.model": "grok-4", "http.response.status_code": 500})
        );
    }

    #[test]
    fn a_failed_span_without_an_exception_event_is_one_occurrence() {
        let span = failed_span(
            vec![],
            vec![
                kv_str("error.type", "RateLimitError"),
                kv_str("code.function", "reply"),
                kv_str("code.namespace", "app.llm"),
                kv_str("code.filepath", "/srv/app/llm.py"),
            ],
            Some((StatusCode::Error, "Error code: 429")),
        );
        let o = span_occurrences(&span, &[], &users(), 9);
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].error_type.as_ref(), o[0].message.as_ref()), ("RateLimitError", "Error code: 429"));
        assert_eq!(o[0].fallback_culprit, "app.llm.reply (llm.py)");
        assert_eq!((o[0].time, o[0].attributes.as_str()), (2_000, "{}"));
        let plain = failed_span(vec![], vec![], Some((StatusCode::Error, "")));
        let o = span_occurrences(&plain, &[], &users(), 9);
        assert_eq!((o[0].error_type.as_ref(), o[0].fallback_culprit.as_str()), ("", "POST /api/chat"));
        for status in [None, Some((StatusCode::Ok, "")), Some((StatusCode::Unset, ""))] {
            assert!(span_occurrences(&failed_span(vec![], vec![], status), &[], &users(), 9).is_empty());
        }
    }

    #[test]
    fn a_log_record_with_exception_attributes_is_an_occurrence() {
        let lr = LogRecord {
            body: Some(AnyValue { value: Some(any_value::Value::StringValue("chat failed".into())) }),
            attributes: vec![
                kv_str("exception.type", "UserNotFound"),
                kv_str("exception.stacktrace", PYTHON_CHAINED),
                kv_str("code.function", "handle_chat"),
                kv_str("code.filepath", "/srv/chatbot/app/chat.py"),
                kv_str("user.email", "bob@example.com"),
            ],
            trace_id: vec![7; 16],
            ..Default::default()
        };
        let o = log_occurrence(&lr, &[], &users(), Some("app.chat"), 42).unwrap();
        assert_eq!(
            (o.error_type.as_ref(), o.message.as_ref()),
            ("UserNotFound", "chat failed"),
            "the body stands in"
        );
        assert_eq!(o.fallback_culprit, "handle_chat (chat.py)");
        assert_eq!(
            (o.time, o.trace_id.as_deref(), o.span_id.as_deref()),
            (42, Some("07".repeat(16).as_str()), None)
        );
        assert_eq!(o.attributes, r#"{"enduser.id":"bob@example.com"}"#);
        let bare = LogRecord { attributes: vec![kv_str("exception.message", "boom")], ..Default::default() };
        let o = log_occurrence(&bare, &[], &users(), Some("app.chat"), 42).unwrap();
        assert_eq!((o.error_type.as_ref(), o.fallback_culprit.as_str()), ("", "app.chat"));
        let plain = LogRecord { attributes: vec![kv_str("exception.escaped", "true")], ..Default::default() };
        assert_eq!(log_occurrence(&plain, &[], &users(), None, 42), None);
    }

    fn occurrence(message: &str, time: u64, trace: u8, stack: Option<&'static str>) -> Occurrence<'static> {
        Occurrence {
            error_type: Cow::Borrowed("UserNotFound"),
            message: Cow::Owned(message.to_string()),
            stacktrace: stack.map(Cow::Borrowed),
            fallback_culprit: "POST /api/chat".into(),
            time,
            trace_id: Some(format!("{trace:032x}")),
            span_id: None,
            attributes: format!("{{\"n\":{trace}}}"),
        }
    }

    /// A Ruby backtrace: no frame is read from it, so the culprit is the span name.
    const RUBY: &str = "app/models/user.rb:12:in `find'\napp/controllers/chat_controller.rb:8:in `show'";

    #[test]
    fn occurrences_aggregate_per_fingerprint() {
        let mut g = ErrorGroups::default();
        g.add(Some("chatbot"), occurrence("user 123 not found", 200, 1, Some(RUBY)));
        g.add(Some("chatbot"), occurrence("user 456 not found", 300, 2, None));
        g.add(Some("chatbot"), occurrence("user 789 not found", 100, 3, None));
        g.add(Some("billing"), occurrence("user 1 not found", 100, 4, None));
        g.add(Some("chatbot"), occurrence("user 1 not found", 100, 5, Some(PYTHON_CHAINED)));
        assert_eq!(g.len(), 3, "another service, and another culprit, are other groups");
        let a = g.get(0).unwrap();
        assert_eq!((a.occurrences, a.first_seen, a.last_seen), (3, 100, 300));
        assert_eq!(a.message, "user <num> not found");
        assert_eq!(a.culprit, "POST /api/chat");
        assert_eq!(a.last_message, "user 456 not found", "the latest occurrence's");
        assert_eq!(a.last_trace_id.as_deref(), Some(format!("{:032x}", 2).as_str()));
        assert_eq!(a.attributes, r#"{"n":2}"#);
        assert_eq!(a.stacktrace.as_deref(), Some(RUBY), "kept when the latest has none");
        assert_eq!(a.service_name.as_deref(), Some("chatbot"));
        assert_eq!(
            a.fingerprint,
            fingerprint("chatbot", "UserNotFound", "user <num> not found", "POST /api/chat")
        );
        assert_eq!(g.get(1).unwrap().service_name.as_deref(), Some("billing"));
        assert_eq!(g.get(2).unwrap().culprit, "get_user (chat.py)");

        // Parts of a batch merge into what the whole gives.
        let all = [(200, 1, true), (300, 2, false), (300, 6, false), (100, 3, true), (50, 7, false)];
        let mut whole = ErrorGroups::default();
        let mut parts = ErrorGroups::default();
        for chunk in all.chunks(2) {
            let mut part = ErrorGroups::default();
            for &(t, n, stack) in chunk {
                let stack = stack.then_some(RUBY);
                whole.add(Some("chatbot"), occurrence("user 1 not found", t, n, stack));
                part.add(Some("chatbot"), occurrence("user 1 not found", t, n, stack));
            }
            parts.append(part);
        }
        assert_eq!(parts, whole);
        assert_eq!(whole.len(), 1);
        let w = whole.get(0).unwrap();
        assert_eq!(
            (w.occurrences, w.first_seen, w.last_seen, w.attributes.as_str()),
            (5, 50, 300, r#"{"n":6}"#)
        );
        assert_eq!(w.stacktrace.as_deref(), Some(RUBY));
    }

    #[test]
    fn stored_text_is_bounded_and_free_of_nul() {
        let mut g = ErrorGroups::default();
        let o = Occurrence {
            error_type: Cow::Owned(format!("Bad\0Type{}", "T".repeat(400))),
            message: Cow::Owned(format!("m\0{}", "x ".repeat(5000))),
            stacktrace: Some(Cow::Owned(format!("{}\0", "y".repeat(40_000)))),
            fallback_culprit: "c".repeat(1000),
            time: 1,
            trace_id: None,
            span_id: None,
            attributes: "{}".into(),
        };
        g.add(Some(&"s".repeat(300)), o);
        let e = g.get(0).unwrap();
        let all = [&e.error_type, &e.message, &e.culprit, &e.last_message, e.stacktrace.as_ref().unwrap()];
        assert!(all.iter().all(|t| !t.contains('\0')), "{all:?}");
        assert_eq!(e.service_name.as_ref().map(|s| s.chars().count()), Some(SERVICE_MAX));
        assert_eq!(e.error_type.chars().count(), TYPE_MAX);
        assert_eq!(e.culprit.chars().count(), CULPRIT_MAX);
        assert_eq!(e.last_message.chars().count(), LAST_MESSAGE_MAX);
        assert!(e.message.chars().count() <= TEMPLATE_MAX);
        assert!(e.stacktrace.as_ref().unwrap().chars().count() < STACKTRACE_MAX + 64);
        let mut empty = ErrorGroups::default();
        empty.add(None, Occurrence { error_type: Cow::Borrowed(" "), ..occurrence("", 1, 1, None) });
        assert_eq!(
            (empty.get(0).unwrap().error_type.as_str(), empty.get(0).unwrap().service_name.as_deref()),
            ("error", None)
        );
    }
}
