//! Rows to PostgreSQL's binary `COPY` format, and the write of one batch:
//! one transaction, one `COPY … FROM STDIN (FORMAT binary)` per table and
//! one upsert of the batch's error groups, the batch id recorded in the same
//! transaction, and bad rows isolated by bisection into the dead-letter table.
//!
//! The encoder is written here rather than taken from
//! `tokio_postgres::binary_copy`: each row is encoded once, with no per-value
//! type check or dynamic dispatch, and the row boundaries are kept, so a
//! range of rows can be re-sent without re-encoding when bad rows are being
//! isolated. The same bytes are what the benchmark writes to a file for
//! `psql \copy`.

use super::PgError;
use super::errors::ErrorGroup;
use super::time::rfc3339;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use std::net::IpAddr;
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The tables the exporter writes: the high-volume ones with `COPY`,
/// partitioned by day, and `error_groups` with an upsert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    TraceSpans,
    RequestMetrics,
    LlmCallMetrics,
    SystemMetrics,
    LogRecords,
    ErrorGroups,
}

impl Table {
    /// Every table the exporter writes.
    pub const ALL: [Table; 6] = [
        Table::TraceSpans,
        Table::RequestMetrics,
        Table::LlmCallMetrics,
        Table::SystemMetrics,
        Table::LogRecords,
        Table::ErrorGroups,
    ];

    /// The tables written with `COPY`, one row per item, partitioned by day.
    pub const COPIED: [Table; 5] = [
        Table::TraceSpans,
        Table::RequestMetrics,
        Table::LlmCallMetrics,
        Table::SystemMetrics,
        Table::LogRecords,
    ];

    /// Whether the migrations create the table partitioned by day
    /// (`error_groups`, an aggregate, is a plain table).
    pub fn partitioned(self) -> bool {
        self != Table::ErrorGroups
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::TraceSpans => "trace_spans",
            Table::RequestMetrics => "request_metrics",
            Table::LlmCallMetrics => "llm_call_metrics",
            Table::SystemMetrics => "system_metrics",
            Table::LogRecords => "log_records",
            Table::ErrorGroups => "error_groups",
        }
    }

    /// The partition key; for `error_groups`, the column retention reads.
    pub fn time_column(self) -> &'static str {
        match self {
            Table::TraceSpans => "start_time",
            Table::ErrorGroups => "last_seen",
            _ => "timestamp",
        }
    }

    /// The columns the exporter writes, in order (`id` is left to its default).
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Table::TraceSpans => &[
                "trace_id",
                "span_id",
                "parent_span_id",
                "operation_name",
                "start_time",
                "end_time",
                "duration_ms",
                "tags",
                "logs",
                "service_name",
                "span_kind",
                "status_code",
                "status_message",
                "resource",
            ],
            Table::RequestMetrics => &[
                "timestamp",
                "method",
                "path",
                "status_code",
                "response_time_ms",
                "user_email",
                "department",
                "request_size_bytes",
                "response_size_bytes",
                "trace_id",
                "user_agent",
                "ip_address",
                "service_name",
                "span_id",
            ],
            Table::LlmCallMetrics => &[
                "timestamp",
                "model",
                "provider",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "elapsed_ms",
                "user_email",
                "department",
                "query_type",
                "trace_id",
                "cost_usd",
                "success",
                "error_message",
                "span_id",
                "service_name",
                "operation",
                "cache_read_tokens",
                "cache_creation_tokens",
                "reasoning_tokens",
            ],
            Table::SystemMetrics => &["timestamp", "metric_name", "metric_value", "metadata"],
            Table::LogRecords => &[
                "timestamp",
                "observed_timestamp",
                "severity_number",
                "severity_text",
                "body",
                "attributes",
                "resource",
                "trace_id",
                "span_id",
                "service_name",
                "scope_name",
                "event_name",
            ],
            Table::ErrorGroups => &[
                "fingerprint",
                "service_name",
                "error_type",
                "message",
                "culprit",
                "first_seen",
                "last_seen",
                "occurrences",
                "last_trace_id",
                "last_span_id",
                "last_message",
                "stacktrace",
                "attributes",
            ],
        }
    }

    /// `COPY schema.table (columns) FROM STDIN (FORMAT binary)`.
    pub fn copy_statement(self, schema: &str) -> String {
        format!("COPY {schema}.{} ({}) FROM STDIN (FORMAT binary)", self.name(), self.columns().join(", "))
    }
}

/// Where a row's values go: the binary `COPY` encoder, or a JSON object for
/// the dead-letter table. Each row writes its columns in [`Table::columns`] order.
pub trait Cells {
    fn null(&mut self);
    fn text(&mut self, v: &str);
    /// A JSONB value given as JSON text.
    fn json(&mut self, v: &str);
    fn int4(&mut self, v: i32);
    fn int8(&mut self, v: i64);
    fn float8(&mut self, v: f64);
    fn boolean(&mut self, v: bool);
    /// A TIMESTAMPTZ, from Unix nanoseconds (stored to the microsecond).
    fn timestamp(&mut self, unix_nanos: u64);
    fn inet(&mut self, v: IpAddr);
    /// A NUMERIC with `scale` decimal places; `v` must be finite.
    fn numeric(&mut self, v: f64, scale: u16);

    fn opt_text(&mut self, v: Option<&str>) {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }
    fn opt_int4(&mut self, v: Option<i32>) {
        match v {
            Some(v) => self.int4(v),
            None => self.null(),
        }
    }
    fn opt_inet(&mut self, v: Option<IpAddr>) {
        match v {
            Some(v) => self.inet(v),
            None => self.null(),
        }
    }
    fn opt_timestamp(&mut self, v: Option<u64>) {
        match v {
            Some(v) => self.timestamp(v),
            None => self.null(),
        }
    }
}

/// A row of one table.
pub trait Row {
    const TABLE: Table;
    fn write<C: Cells>(&self, c: &mut C);
}

/// The binary `COPY` signature, flags and header-extension length.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The end-of-data marker: a tuple with field count -1.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// The binary encoder.
struct Binary<'a> {
    buf: &'a mut BytesMut,
}

impl Binary<'_> {
    fn field(&mut self, len: usize) {
        // Field lengths are i32 in the protocol; values are far smaller.
        self.buf.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
    }
}

impl Cells for Binary<'_> {
    fn null(&mut self) {
        self.buf.put_i32(-1);
    }
    fn text(&mut self, v: &str) {
        self.field(v.len());
        self.buf.put_slice(v.as_bytes());
    }
    fn json(&mut self, v: &str) {
        // JSONB's binary input is a version byte (1) followed by the text.
        self.field(v.len() + 1);
        self.buf.put_u8(1);
        self.buf.put_slice(v.as_bytes());
    }
    fn int4(&mut self, v: i32) {
        self.buf.put_i32(4);
        self.buf.put_i32(v);
    }
    fn int8(&mut self, v: i64) {
        self.buf.put_i32(8);
        self.buf.put_i64(v);
    }
    fn float8(&mut self, v: f64) {
        self.buf.put_i32(8);
        self.buf.put_f64(v);
    }
    fn boolean(&mut self, v: bool) {
        self.buf.put_i32(1);
        self.buf.put_u8(u8::from(v));
    }
    fn timestamp(&mut self, unix_nanos: u64) {
        let micros = i64::try_from(unix_nanos / 1_000).unwrap_or(i64::MAX);
        self.buf.put_i32(8);
        self.buf.put_i64(micros - PG_EPOCH_OFFSET_MICROS);
    }
    fn inet(&mut self, v: IpAddr) {
        // family (PGSQL_AF_INET = 2, PGSQL_AF_INET6 = 3), bits, is_cidr, length, address.
        match v {
            IpAddr::V4(a) => {
                self.buf.put_i32(8);
                self.buf.put_slice(&[2, 32, 0, 4]);
                self.buf.put_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.buf.put_i32(20);
                self.buf.put_slice(&[3, 128, 0, 16]);
                self.buf.put_slice(&a.octets());
            }
        }
    }
    fn numeric(&mut self, v: f64, scale: u16) {
        let (digits, weight, negative) = numeric_digits(v, scale);
        self.field(8 + 2 * digits.len());
        self.buf.put_i16(i16::try_from(digits.len()).unwrap_or(i16::MAX));
        self.buf.put_i16(weight);
        self.buf.put_u16(if negative { 0x4000 } else { 0x0000 });
        self.buf.put_u16(scale);
        for d in digits {
            self.buf.put_i16(d);
        }
    }
}

/// A finite number rounded to `scale` decimals as NUMERIC's base-10000
/// digits: (digits, weight of the first digit, negative).
pub fn numeric_digits(v: f64, scale: u16) -> (Vec<i16>, i16, bool) {
    let text = format!("{:.*}", usize::from(scale), v.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let int = int.trim_start_matches('0');
    let mut groups: Vec<i16> = Vec::new();
    let lead = int.len() % 4;
    let mut weight: i64 = -1;
    let push_group = |g: &str, groups: &mut Vec<i16>| {
        let mut n: i16 = 0;
        for b in g.bytes() {
            n = n * 10 + i16::from(b - b'0');
        }
        groups.push(n);
    };
    if lead > 0 {
        push_group(&int[..lead], &mut groups);
        weight += 1;
    }
    let mut i = lead;
    while i < int.len() {
        push_group(&int[i..i + 4], &mut groups);
        weight += 1;
        i += 4;
    }
    let mut f = 0;
    while f < frac.len() {
        let end = (f + 4).min(frac.len());
        let mut g = frac[f..end].to_string();
        while g.len() < 4 {
            g.push('0');
        }
        push_group(&g, &mut groups);
        f += 4;
    }
    // Leading zero groups (a value below 1) move the weight down.
    let leading = groups.iter().take_while(|&&g| g == 0).count();
    groups.drain(..leading);
    weight -= leading as i64;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        return (groups, 0, false);
    }
    (groups, i16::try_from(weight).unwrap_or(i16::MAX), v < 0.0)
}

/// One table's rows, encoded, with the offset where each row starts.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub table: Table,
    data: Bytes,
    /// `offsets[i]..offsets[i + 1]` is row `i`.
    offsets: Vec<usize>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The encoded bytes of rows `range`, without header or trailer.
    pub fn rows(&self, range: Range<usize>) -> Bytes {
        self.data.slice(self.offsets[range.start]..self.offsets[range.end])
    }

    /// A whole `COPY` stream of every row, as a file `psql \copy … (FORMAT binary)` reads.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER.len() + self.data.len() + TRAILER.len());
        out.extend_from_slice(HEADER);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(TRAILER);
        out
    }

    /// Encoded bytes (rows only).
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// Joins parts of one batch into one encoding per table, in table order;
    /// each table's rows stay in the order of the parts.
    pub fn merge(parts: Vec<Encoded>) -> Vec<Encoded> {
        let mut out: Vec<Encoded> = Vec::new();
        for t in Table::ALL {
            let mut of_table = parts.iter().filter(|p| p.table == t).peekable();
            let Some(first) = of_table.next() else { continue };
            if of_table.peek().is_none() {
                out.push(first.clone());
                continue;
            }
            let mut data = BytesMut::from(&first.data[..]);
            let mut offsets = first.offsets.clone();
            for p in of_table {
                offsets.pop();
                let base = data.len();
                offsets.extend(p.offsets.iter().map(|o| o + base));
                data.extend_from_slice(&p.data);
            }
            out.push(Encoded { table: t, data: data.freeze(), offsets });
        }
        out
    }
}

/// Encodes `rows` of one table.
pub fn encode<R: Row>(rows: &[R]) -> Encoded {
    let columns = i16::try_from(R::TABLE.columns().len()).unwrap_or(i16::MAX);
    let mut buf = BytesMut::with_capacity(rows.len() * 256);
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    for row in rows {
        offsets.push(buf.len());
        buf.put_i16(columns);
        row.write(&mut Binary { buf: &mut buf });
    }
    offsets.push(buf.len());
    Encoded { table: R::TABLE, data: buf.freeze(), offsets }
}

/// A row as a JSON object keyed by column name, for the dead-letter table.
/// NUL characters, which neither TEXT nor JSONB can hold, become U+FFFD.
pub fn row_json<R: Row>(row: &R) -> serde_json::Value {
    let mut j = JsonCells { columns: R::TABLE.columns(), map: serde_json::Map::new() };
    row.write(&mut j);
    serde_json::Value::Object(j.map)
}

struct JsonCells {
    columns: &'static [&'static str],
    map: serde_json::Map<String, serde_json::Value>,
}

impl JsonCells {
    fn put(&mut self, v: serde_json::Value) {
        let name = self.columns.get(self.map.len()).copied().unwrap_or("extra");
        self.map.insert(name.to_string(), v);
    }
}

fn without_nul(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

fn scrub(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::String(s) => J::String(without_nul(&s)),
        J::Array(a) => J::Array(a.into_iter().map(scrub).collect()),
        J::Object(o) => J::Object(o.into_iter().map(|(k, v)| (without_nul(&k), scrub(v))).collect()),
        other => other,
    }
}

impl Cells for JsonCells {
    fn null(&mut self) {
        self.put(serde_json::Value::Null);
    }
    fn text(&mut self, v: &str) {
        self.put(serde_json::Value::String(without_nul(v)));
    }
    fn json(&mut self, v: &str) {
        let parsed = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
        self.put(scrub(parsed));
    }
    fn int4(&mut self, v: i32) {
        self.put(v.into());
    }
    fn int8(&mut self, v: i64) {
        self.put(v.into());
    }
    fn float8(&mut self, v: f64) {
        self.put(
            serde_json::Number::from_f64(v).map_or_else(|| v.to_string().into(), serde_json::Value::Number),
        );
    }
    fn boolean(&mut self, v: bool) {
        self.put(v.into());
    }
    fn timestamp(&mut self, unix_nanos: u64) {
        self.put(rfc3339(unix_nanos).into());
    }
    fn inet(&mut self, v: IpAddr) {
        self.put(v.to_string().into());
    }
    fn numeric(&mut self, v: f64, _scale: u16) {
        self.float8(v);
    }
}

/// Whether an error is about the data of a row (bad value, constraint,
/// oversized index entry) rather than the connection or the schema: such
/// errors are isolated to their rows; anything else is retried.
pub fn is_row_error(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        let s = c.code();
        s.starts_with("22") || s.starts_with("23") || s == "54000"
    })
}

/// Sends rows `range` of `enc` through one `COPY`.
pub async fn copy_rows(
    client: &tokio_postgres::Client,
    statement: &str,
    enc: &Encoded,
    range: Range<usize>,
) -> Result<u64, tokio_postgres::Error> {
    const CHUNK: usize = 1 << 20;
    let sink = client.copy_in::<_, Bytes>(statement).await?;
    let mut sink = std::pin::pin!(sink);
    sink.feed(Bytes::from_static(HEADER)).await?;
    let rows = enc.rows(range);
    let mut at = 0;
    while at < rows.len() {
        let end = (at + CHUNK).min(rows.len());
        sink.feed(rows.slice(at..end)).await?;
        at = end;
    }
    sink.feed(Bytes::from_static(TRAILER)).await?;
    sink.as_mut().finish().await
}

/// A row that could not be written, with the database's reason.
#[derive(Debug)]
pub struct Rejected {
    pub table: Table,
    pub index: usize,
    pub sqlstate: String,
    pub error: String,
}

/// Writes every row of `enc` inside the open transaction, isolating rows the
/// database refuses. Returns the refused rows.
pub async fn copy_isolating(
    client: &tokio_postgres::Client,
    schema: &str,
    enc: &Encoded,
) -> Result<Vec<Rejected>, PgError> {
    let statement = enc.table.copy_statement(schema);
    isolating(client, RowSource::Copy { statement: &statement, enc }).await
}

/// What one statement writes, a range of rows at a time.
enum RowSource<'a> {
    Copy { statement: &'a str, enc: &'a Encoded },
    Groups { statement: &'a str, groups: &'a [ErrorGroup] },
}

impl RowSource<'_> {
    fn table(&self) -> Table {
        match self {
            RowSource::Copy { enc, .. } => enc.table,
            RowSource::Groups { .. } => Table::ErrorGroups,
        }
    }

    fn len(&self) -> usize {
        match self {
            RowSource::Copy { enc, .. } => enc.len(),
            RowSource::Groups { groups, .. } => groups.len(),
        }
    }

    async fn write(
        &self,
        client: &tokio_postgres::Client,
        range: Range<usize>,
    ) -> Result<u64, tokio_postgres::Error> {
        match self {
            RowSource::Copy { statement, enc } => copy_rows(client, statement, enc, range).await,
            RowSource::Groups { statement, groups } => upsert_groups(client, statement, &groups[range]).await,
        }
    }
}

/// Writes every row of `source` inside the open transaction, isolating rows
/// the database refuses: a failed range is rolled back to a savepoint and
/// split in two, down to single rows. Returns the refused rows.
async fn isolating(client: &tokio_postgres::Client, source: RowSource<'_>) -> Result<Vec<Rejected>, PgError> {
    let table = source.table();
    let mut rejected = Vec::new();
    let mut pending: Vec<Range<usize>> = Vec::new();
    pending.push(0..source.len());
    while let Some(range) = pending.pop() {
        if range.is_empty() {
            continue;
        }
        client.batch_execute("SAVEPOINT magpie_rows").await.map_err(PgError::db("opening a savepoint"))?;
        match source.write(client, range.clone()).await {
            Ok(_) => {
                client
                    .batch_execute("RELEASE SAVEPOINT magpie_rows")
                    .await
                    .map_err(PgError::db("releasing a savepoint"))?;
            }
            Err(e) if is_row_error(&e) => {
                client
                    .batch_execute("ROLLBACK TO SAVEPOINT magpie_rows; RELEASE SAVEPOINT magpie_rows")
                    .await
                    .map_err(PgError::db("rolling back to a savepoint"))?;
                if range.len() == 1 {
                    rejected.push(Rejected {
                        table,
                        index: range.start,
                        sqlstate: e.code().map(|c| c.code().to_string()).unwrap_or_default(),
                        error: super::db_message(&e),
                    });
                } else {
                    let mid = range.start + range.len() / 2;
                    // Pushed in reverse so the lower half is tried first.
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                }
            }
            Err(e) => {
                let verb = if table == Table::ErrorGroups { "upserting into" } else { "copying into" };
                return Err(PgError::Db { context: format!("{verb} {}", table.name()), source: e });
            }
        }
    }
    rejected.sort_by_key(|r| r.index);
    Ok(rejected)
}

/// The upsert of one batch's error groups: one row per group, from one array
/// per column. A group already in the table gains the batch's occurrences,
/// its first and last sighting widen, and the sample of the latest occurrence
/// (`last_*`, `attributes`, `stacktrace`) is the newer of the two; the stack
/// trace is kept when the newer occurrence has none. Rows are taken in
/// fingerprint order, so concurrent writers lock them in the same order.
pub fn upsert_statement(schema: &str) -> String {
    let newer = |column: &str| {
        format!(
            "{column} = CASE WHEN EXCLUDED.last_seen >= g.last_seen THEN EXCLUDED.{column} ELSE g.{column} END"
        )
    };
    format!(
        "INSERT INTO {schema}.error_groups AS g ({columns})
         SELECT fingerprint, service_name, error_type, message, culprit, first_seen, last_seen, occurrences,
                last_trace_id, last_span_id, last_message, stacktrace, attributes::jsonb
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                     $7::timestamptz[], $8::int8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
              AS u({columns})
         ORDER BY fingerprint
         ON CONFLICT (fingerprint) DO UPDATE SET
             occurrences = g.occurrences + EXCLUDED.occurrences,
             first_seen = least(g.first_seen, EXCLUDED.first_seen),
             last_seen = greatest(g.last_seen, EXCLUDED.last_seen),
             {}, {}, {}, {},
             stacktrace = CASE WHEN EXCLUDED.last_seen >= g.last_seen
                               THEN coalesce(EXCLUDED.stacktrace, g.stacktrace)
                               ELSE coalesce(g.stacktrace, EXCLUDED.stacktrace) END",
        newer("last_trace_id"),
        newer("last_span_id"),
        newer("last_message"),
        newer("attributes"),
        columns = Table::ErrorGroups.columns().join(", "),
    )
}

fn system_time(unix_nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(unix_nanos)
}

/// Runs the upsert ([`upsert_statement`]) for `groups`.
pub async fn upsert_groups(
    client: &tokio_postgres::Client,
    statement: &str,
    groups: &[ErrorGroup],
) -> Result<u64, tokio_postgres::Error> {
    let text = |f: fn(&ErrorGroup) -> &str| groups.iter().map(f).collect::<Vec<&str>>();
    let opt = |f: fn(&ErrorGroup) -> Option<&str>| groups.iter().map(f).collect::<Vec<Option<&str>>>();
    let fingerprint = text(|g| &g.fingerprint);
    let service = opt(|g| g.service_name.as_deref());
    let error_type = text(|g| &g.error_type);
    let message = text(|g| &g.message);
    let culprit = text(|g| &g.culprit);
    let first: Vec<SystemTime> = groups.iter().map(|g| system_time(g.first_seen)).collect();
    let last: Vec<SystemTime> = groups.iter().map(|g| system_time(g.last_seen)).collect();
    let occurrences: Vec<i64> = groups.iter().map(|g| g.occurrences).collect();
    let trace = opt(|g| g.last_trace_id.as_deref());
    let span = opt(|g| g.last_span_id.as_deref());
    let last_message = text(|g| &g.last_message);
    let stacktrace = opt(|g| g.stacktrace.as_deref());
    let attributes = text(|g| &g.attributes);
    client
        .execute(
            statement,
            &[
                &fingerprint,
                &service,
                &error_type,
                &message,
                &culprit,
                &first,
                &last,
                &occurrences,
                &trace,
                &span,
                &last_message,
                &stacktrace,
                &attributes,
            ],
        )
        .await
}

/// Upserts `groups` inside the open transaction, isolating the groups the
/// database refuses as [`copy_isolating`] does rows. Returns the refused groups.
pub async fn upsert_isolating(
    client: &tokio_postgres::Client,
    statement: &str,
    groups: &[ErrorGroup],
) -> Result<Vec<Rejected>, PgError> {
    isolating(client, RowSource::Groups { statement, groups }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sample {
        name: &'static str,
        n: Option<i32>,
        at: u64,
        ip: Option<IpAddr>,
        cost: f64,
        doc: &'static str,
    }

    impl Row for Sample {
        const TABLE: Table = Table::SystemMetrics;
        fn write<C: Cells>(&self, c: &mut C) {
            c.timestamp(self.at);
            c.text(self.name);
            c.float8(f64::from(self.n.unwrap_or(0)));
            c.json(self.doc);
            // Beyond the table's columns, to exercise the remaining encoders.
            c.opt_int4(self.n);
            c.opt_inet(self.ip);
            c.numeric(self.cost, 6);
            c.boolean(true);
        }
    }

    #[test]
    fn rows_encode_to_the_binary_copy_layout() {
        let rows = [
            Sample { name: "a", n: Some(7), at: 946_684_800_000_001_000, ip: None, cost: 0.5, doc: "{}" },
            Sample {
                name: "bc",
                n: None,
                at: 946_684_800_000_000_000,
                ip: Some("10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
                cost: 0.0,
                doc: "[1]",
            },
        ];
        let enc = encode(&rows);
        assert_eq!(enc.len(), 2);
        let r0 = enc.rows(0..1);
        let mut expected: Vec<u8> = vec![0, 4]; // field count written from the table's 4 columns
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&1i64.to_be_bytes()); // 1 µs after 2000-01-01
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(b"a");
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&7f64.to_be_bytes());
        expected.extend_from_slice(&3i32.to_be_bytes());
        expected.extend_from_slice(b"\x01{}");
        expected.extend_from_slice(&4i32.to_be_bytes());
        expected.extend_from_slice(&7i32.to_be_bytes());
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        // numeric 0.5: one digit 5000, weight -1, positive, scale 6
        expected.extend_from_slice(&10i32.to_be_bytes());
        expected.extend_from_slice(&[0, 1, 0xff, 0xff, 0, 0, 0, 6, 0x13, 0x88]);
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.push(1);
        assert_eq!(&r0[..], &expected[..]);
        let r1 = enc.rows(1..2);
        let inet_at = r1.len() - (4 + 8) - (4 + 8) - 5;
        assert_eq!(&r1[inet_at..inet_at + 12], &[0, 0, 0, 8, 2, 32, 0, 4, 10, 0, 0, 1]);
        let file = enc.to_file_bytes();
        assert!(file.starts_with(b"PGCOPY\n\xff\r\n\0"));
        assert!(file.ends_with(&[0xff, 0xff]));
        assert_eq!(file.len(), HEADER.len() + enc.byte_len() + 2);
        assert_eq!(HEADER.len(), 19);
    }

    fn check_numeric(v: f64, digits: &[i16], weight: i16, negative: bool) {
        assert_eq!(numeric_digits(v, 6), (digits.to_vec(), weight, negative), "{v}");
    }

    #[test]
    fn numeric_digits_are_base_10000_with_a_weight() {
        check_numeric(0.0, &[], 0, false);
        check_numeric(0.5, &[5000], -1, false);
        check_numeric(0.000123, &[1, 2300], -1, false);
        check_numeric(0.0000004, &[], 0, false);
        check_numeric(0.000_012_3, &[1200], -2, false);
        check_numeric(12.34, &[12, 3400], 0, false);
        check_numeric(-12345.000001, &[1, 2345, 0, 100], 1, true);
        check_numeric(10000.0, &[1], 1, false);
        check_numeric(0.0125, &[125], -1, false);
    }

    #[test]
    fn rows_become_json_without_nul() {
        let row = Sample { name: "x\0y", n: Some(1), at: 0, ip: None, cost: 1.25, doc: r#"{"k":"a\u0000"}"# };
        let j = row_json(&row);
        assert_eq!(j["metric_name"], "x\u{fffd}y");
        assert_eq!(j["timestamp"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(j["metadata"]["k"], "a\u{fffd}");
        assert_eq!(j["metric_value"], 1.0);
    }

    #[test]
    fn parts_merge_into_one_encoding_per_table() {
        let row = |name: &'static str| Sample { name, n: None, at: 0, ip: None, cost: 0.0, doc: "{}" };
        let a = encode(&[row("a"), row("bb")]);
        let b = encode(&[row("ccc")]);
        let whole = encode(&[row("a"), row("bb"), row("ccc")]);
        let merged = Encoded::merge(vec![a, b]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].len(), 3);
        for i in 0..3 {
            assert_eq!(merged[0].rows(i..i + 1), whole.rows(i..i + 1), "row {i}");
        }
        assert_eq!(merged[0].rows(0..3), whole.rows(0..3));
        assert!(Encoded::merge(Vec::new()).is_empty());
    }

    #[test]
    fn copy_statements_name_every_column() {
        assert_eq!(
            Table::SystemMetrics.copy_statement("enterprise"),
            "COPY enterprise.system_metrics (timestamp, metric_name, metric_value, metadata) FROM STDIN (FORMAT binary)"
        );
        for t in Table::ALL {
            assert!(t.columns().contains(&t.time_column()), "{t:?}");
            assert_eq!(t.partitioned(), Table::COPIED.contains(&t), "{t:?}");
        }
    }
}
