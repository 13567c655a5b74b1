//! `postgres`: writes spans, metric data points and log records into the
//! tables the admin dashboard reads (`trace_spans`, `request_metrics`,
//! `llm_call_metrics`, `system_metrics`, `log_records` in the `enterprise`
//! schema by default), and groups their exceptions and failed spans in
//! `error_groups`.
//!
//! Each batch is one transaction: the batch's id goes into `magpie_batches`
//! first, then one binary `COPY` per table; `trace_spans` is streamed part
//! by part while the next part is mapped on a blocking thread, so mapping
//! overlaps the database's work. Last comes one upsert of the batch's error
//! groups, so they too are counted exactly once. When a commit's outcome is
//! unknown (the connection dropped during `COMMIT`) the agent offers the same
//! batch again and the id, already present, says it was written: nothing is
//! written twice. When the database refuses a row, the batch is rolled back
//! and written again with the refused rows isolated by bisection and kept in
//! `dead_letter` with the reason. A database that is down or restarting is a
//! retryable error; the agent retries with backoff and the exporter's queue
//! blocks, so backpressure reaches the clients and nothing is dropped.
//!
//! Migrations and daily partitions are set up at start-up (or by
//! `magpie migrate`); a database that is down at start-up does not stop the
//! agent: the setup is retried before the first export.
//!
//! This module depends on `magpie-core` and the PostgreSQL client crates
//! only. Layout: [`mapping`] (pure OTLP → rows), [`errors`] (pure: error
//! occurrences, message templates, culprits, fingerprints), [`copy`] (binary
//! COPY, the error-group upsert and bad-row isolation), [`schema`]
//! (migrations, partitions, retention),
//! [`connect`] (DSN, TLS, pool), [`json`] and [`time`] (helpers).

/// Connection settings (DSN, TLS), shared with the `postgresql` receiver, and the pool.
pub mod connect {
    pub use magpie_pg::{Connector, Dsn, TlsConfig, TlsMode, effective_tls, parse_dsn, target};

    /// A pool of up to `size` connections made by `connector`.
    pub fn pool(connector: &Connector, size: usize) -> Result<deadpool_postgres::Pool, super::PgError> {
        use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
        let mc = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match &connector.tls {
            None => Manager::from_config(connector.config.clone(), tokio_postgres::NoTls, mc),
            Some(tls) => Manager::from_config(connector.config.clone(), tls.clone(), mc),
        };
        Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .create_timeout(connector.config.get_connect_timeout().copied())
            .build()
            .map_err(|e| super::PgError::Config(format!("building the connection pool: {e}")))
    }
}
pub mod copy;
pub mod errors;
pub mod json;
pub mod mapping;
pub mod schema;
pub mod time;

use connect::{Connector, TlsConfig};
use copy::{Encoded, Table, copy_isolating, copy_rows, is_row_error};
use deadpool_postgres::{Object, Pool};
use magpie_core::config::{Secret, duration};
use magpie_core::otlp::now_unix_nanos;
use magpie_core::{Batch, ComponentError, ComponentId, ExportError, Exporter, ExporterContext};
use mapping::{MappingConfig, Rows, TablesConfig};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What went wrong talking to PostgreSQL. Messages name the host and port,
/// never the DSN or its password.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{0}")]
    Config(String),
    #[error("connecting to postgres at {target}: {}", error_text(source))]
    Connect { target: String, source: tokio_postgres::Error },
    #[error("connecting to postgres at {target}: {message}")]
    Pool { target: String, message: String },
    #[error("{context}: {}", error_text(source))]
    Db { context: String, source: tokio_postgres::Error },
    #[error("postgres at {target} did not finish within {after:?}")]
    Timeout { target: String, after: Duration },
}

impl PgError {
    /// A mapper for `map_err` that adds what was being done.
    pub fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> PgError {
        move |source| PgError::Db { context: context.to_string(), source }
    }

    /// Whether the schema looks missing or behind (dropped by hand, or a
    /// table or column unknown): the setup is run again before the next try.
    fn schema_missing(&self) -> bool {
        match self {
            PgError::Db { source, .. } => {
                source.code().is_some_and(|c| matches!(c.code(), "3F000" | "42P01" | "42703"))
            }
            _ => false,
        }
    }
}

pub use magpie_pg::error_text;

impl From<magpie_pg::Error> for PgError {
    fn from(e: magpie_pg::Error) -> PgError {
        match e {
            magpie_pg::Error::Config(message) => PgError::Config(message),
            magpie_pg::Error::Connect { target, source } => PgError::Connect { target, source },
        }
    }
}

/// The server's message for a database error (what goes into `dead_letter.error`).
pub fn db_message(e: &tokio_postgres::Error) -> String {
    error_text(e)
}

fn default_schema() -> String {
    "enterprise".to_string()
}
fn default_pool_size() -> usize {
    4
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_retention() -> Duration {
    Duration::from_secs(30 * 86_400)
}
fn default_partitions_ahead() -> u32 {
    3
}
fn default_maintenance_interval() -> Duration {
    Duration::from_secs(3600)
}

/// Config of `postgres`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// libpq DSN, URL or `key=value` form (`${env:DATABASE_URL}`). `sslmode`
    /// and `sslrootcert` in it are honoured unless `tls` says otherwise.
    pub dsn: Secret<String>,
    /// Schema holding every table.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Connections in the pool (exports use one at a time; partition upkeep another).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Longest one batch's write may take before it is abandoned and retried.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Age after which whole daily partitions are dropped; `0s` keeps everything.
    #[serde(default = "default_retention", with = "duration")]
    pub retention: Duration,
    /// Daily partitions created ahead of today.
    #[serde(default = "default_partitions_ahead")]
    pub partitions_ahead: u32,
    /// How often partitions are created ahead and expired ones dropped.
    #[serde(default = "default_maintenance_interval", with = "duration")]
    pub maintenance_interval: Duration,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub tables: TablesConfig,
    #[serde(default)]
    pub mapping: MappingConfig,
}

impl PostgresConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = connect::parse_dsn(self.dsn.expose()) {
            out.push(format!("dsn: {e}"));
        }
        if !schema::valid_schema_name(&self.schema) {
            out.push(format!(
                "schema `{}` must be lowercase letters, digits and `_`, not starting with a digit, at most 63 bytes",
                self.schema
            ));
        }
        if self.pool_size == 0 {
            out.push("pool_size must be at least 1".to_string());
        }
        if self.connect_timeout.is_zero() || self.timeout.is_zero() {
            out.push("connect_timeout and timeout must be longer than 0s".to_string());
        }
        if !self.retention.is_zero() && self.retention < Duration::from_secs(86_400) {
            out.push(format!(
                "retention must be 0s (keep everything) or at least 1d, since whole daily partitions are dropped; got {}s",
                self.retention.as_secs()
            ));
        }
        if self.partitions_ahead > 366 {
            out.push(format!("partitions_ahead must be at most 366, got {}", self.partitions_ahead));
        }
        if self.maintenance_interval < Duration::from_secs(60) {
            out.push("maintenance_interval must be at least 1m".to_string());
        }
        if Table::ALL.iter().all(|t| !self.tables.enabled(*t)) {
            out.push("tables: every table is disabled, so nothing would be written".to_string());
        }
        out.extend(self.tls.problems());
        out.extend(self.mapping.problems());
        out
    }

    fn retention(&self) -> Option<Duration> {
        (!self.retention.is_zero()).then_some(self.retention)
    }
}

/// Runs the migrations and partition upkeep for `config` once, for
/// `magpie migrate`; returns a one-line summary.
pub async fn migrate(config: &PostgresConfig) -> Result<String, ComponentError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let connector = Connector::new(config.dsn.expose(), &config.tls, config.connect_timeout)
        .map_err(|e| ComponentError::new(e.to_string()))?;
    let mut client = connector.connect().await.map_err(|e| ComponentError::new(e.to_string()))?;
    let (m, p) = setup(&mut client, config).await.map_err(|e| ComponentError::new(e.to_string()))?;
    let applied = if m.applied.is_empty() {
        "no migration needed".to_string()
    } else {
        format!("applied {}", m.applied.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "))
    };
    Ok(format!(
        "schema {} on {} at version {} ({applied}); {} partitions created, {} dropped",
        config.schema,
        connector.target,
        m.version,
        p.created.len(),
        p.dropped.len()
    ))
}

/// Migrations, then partition upkeep.
async fn setup(
    client: &mut tokio_postgres::Client,
    config: &PostgresConfig,
) -> Result<(schema::MigrationReport, schema::MaintenanceReport), PgError> {
    let m = schema::migrate(client, &config.schema).await?;
    let p = schema::maintain(
        client,
        &config.schema,
        &Table::ALL,
        now_unix_nanos(),
        config.partitions_ahead,
        config.retention(),
    )
    .await?;
    Ok((m, p))
}

/// A pooled connection that is closed, not returned to the pool, unless the
/// work on it finished cleanly: a connection left inside a transaction or a
/// `COPY` (by an error, a timeout or cancellation) is never reused.
struct Conn(Option<Object>);

impl Conn {
    fn client(&mut self) -> &mut tokio_postgres::Client {
        // The option is only emptied by `release` and `drop`, which consume or end the guard.
        self.0.as_mut().map(|o| &mut ***o).unwrap_or_else(|| unreachable!("connection used after release"))
    }

    /// Returns the connection to the pool.
    fn release(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(o) = self.0.take() {
            drop(Object::take(o));
        }
    }
}

async fn checkout(pool: &Pool, target: &str) -> Result<Conn, PgError> {
    pool.get().await.map(|o| Conn(Some(o))).map_err(|e| PgError::Pool {
        target: target.to_string(),
        message: match &e {
            deadpool_postgres::PoolError::Backend(b) => error_text(b),
            other => other.to_string(),
        },
    })
}

/// How a write ended.
#[derive(Debug)]
pub enum Written {
    /// Committed; the refused rows are in `dead_letter`.
    Committed { rows: usize, dead_letters: Vec<copy::Rejected>, lost: usize },
    /// An earlier attempt of this batch had committed; nothing was written.
    AlreadyCommitted,
}

/// Spans mapped and encoded per part: while one part is streamed into
/// `COPY`, the next is being prepared on a blocking thread.
pub const PART_SPANS: usize = 1024;

/// One part of a batch: its rows, and their `COPY` encoding per table;
/// `None` after the last part, so a producer that stopped early is told
/// apart from one that finished.
pub type Part = Option<(Rows, Vec<Encoded>)>;

/// Maps and encodes `batch` in parts of [`PART_SPANS`] spans (metrics and
/// logs in one part), sending each into `parts`, then `None`; stops early
/// when the receiver is gone. Runs on a blocking thread.
pub fn produce_parts(
    batch: &Batch,
    mapping: &MappingConfig,
    tables: &TablesConfig,
    parts: &tokio::sync::mpsc::Sender<Part>,
) {
    let now = now_unix_nanos();
    let spans = match batch {
        Batch::Traces(rs) => magpie_core::batch::span_count(rs),
        _ => 0,
    };
    let mut start = 0;
    loop {
        let rows = mapping::map_batch_part(batch, mapping, tables, now, start..start + PART_SPANS);
        let encoded = rows.encode();
        if parts.blocking_send(Some((rows, encoded))).is_err() {
            return;
        }
        start += PART_SPANS;
        if start >= spans {
            let _ = parts.blocking_send(None);
            return;
        }
    }
}

/// The export path, separate from the agent's trait so benchmarks and tests
/// can drive it directly.
pub struct Writer {
    id: ComponentId,
    pool: Pool,
    target: String,
    schema: String,
    quoted: String,
    timeout: Duration,
    statements: Vec<(Table, String)>,
    /// The `error_groups` upsert.
    upsert: String,
}

impl Writer {
    pub fn new(id: &ComponentId, pool: Pool, target: String, schema: &str, timeout: Duration) -> Writer {
        let quoted = schema::quoted(schema);
        let statements = Table::COPIED.iter().map(|t| (*t, t.copy_statement(&quoted))).collect();
        let upsert = copy::upsert_statement(&quoted);
        Writer {
            id: id.clone(),
            pool,
            target,
            schema: schema.to_string(),
            quoted,
            timeout,
            statements,
            upsert,
        }
    }

    fn statement(&self, t: Table) -> &str {
        self.statements.iter().find(|(x, _)| *x == t).map_or("", |(_, s)| s.as_str())
    }

    /// Writes one batch, arriving in parts, in one transaction under
    /// `batch_id`, within the timeout.
    pub async fn write(
        &self,
        batch_id: u128,
        items: usize,
        parts: tokio::sync::mpsc::Receiver<Part>,
    ) -> Result<Written, PgError> {
        match tokio::time::timeout(self.timeout, self.write_inner(batch_id, items, parts)).await {
            Ok(r) => r,
            Err(_) => Err(PgError::Timeout { target: self.target.clone(), after: self.timeout }),
        }
    }

    /// `BEGIN` and the batch's ledger row in one round trip; false when the
    /// batch id is already there (an earlier attempt committed).
    async fn begin(&self, c: &tokio_postgres::Client, batch_id: u128, items: usize) -> Result<bool, PgError> {
        let sql = format!(
            "BEGIN; INSERT INTO {}.magpie_batches (batch_id, items) VALUES ('{batch_id:032x}', {items}) ON CONFLICT (batch_id) DO NOTHING",
            self.quoted
        );
        let msgs = c.simple_query(&sql).await.map_err(PgError::db("starting the batch transaction"))?;
        let inserted = msgs
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            })
            .last();
        Ok(inserted == Some(1))
    }

    fn copy_error(&self, table: Table, e: tokio_postgres::Error) -> PgError {
        PgError::Db { context: format!("copying into {}.{}", self.schema, table.name()), source: e }
    }

    async fn write_inner(
        &self,
        batch_id: u128,
        items: usize,
        mut parts: tokio::sync::mpsc::Receiver<Part>,
    ) -> Result<Written, PgError> {
        use futures_util::SinkExt;
        type SpanSink = std::pin::Pin<Box<tokio_postgres::CopyInSink<bytes::Bytes>>>;
        let mut conn: Option<Conn> = None;
        let mut spans_sink: Option<SpanSink> = None;
        let mut rows = Rows::default();
        let mut encoded = Vec::new();
        let mut refused = false;
        // Fast path: stream `trace_spans` as its parts arrive; the smaller tables follow.
        loop {
            let (part_rows, part_encoded) = match parts.recv().await {
                Some(Some(part)) => part,
                Some(None) => break,
                // The producer stopped before the last part: never commit half a batch.
                None => return Err(PgError::Config("mapping the batch stopped before its end".to_string())),
            };
            if conn.is_none() && (!part_encoded.is_empty() || !part_rows.errors.is_empty()) {
                let mut c = checkout(&self.pool, &self.target).await?;
                if !self.begin(c.client(), batch_id, items).await? {
                    c.client().batch_execute("ROLLBACK").await.map_err(PgError::db("rolling back"))?;
                    c.release();
                    return Ok(Written::AlreadyCommitted);
                }
                conn = Some(c);
            }
            if let Some(c) = conn.as_mut() {
                for enc in part_encoded.iter().filter(|e| e.table == Table::TraceSpans) {
                    if refused {
                        break;
                    }
                    if spans_sink.is_none() {
                        let sink = c
                            .client()
                            .copy_in::<_, bytes::Bytes>(self.statement(Table::TraceSpans))
                            .await
                            .map_err(|e| self.copy_error(Table::TraceSpans, e))?;
                        let mut sink = Box::pin(sink);
                        sink.feed(bytes::Bytes::from_static(copy::HEADER))
                            .await
                            .map_err(|e| self.copy_error(Table::TraceSpans, e))?;
                        spans_sink = Some(sink);
                    }
                    if let Some(sink) = spans_sink.as_mut() {
                        match sink.feed(enc.rows(0..enc.len())).await {
                            Ok(()) => {}
                            Err(e) if is_row_error(&e) => refused = true,
                            Err(e) => return Err(self.copy_error(Table::TraceSpans, e)),
                        }
                    }
                }
            }
            rows.append(part_rows);
            encoded.extend(part_encoded);
        }
        let Some(mut conn) = conn else {
            return Ok(Written::Committed { rows: 0, dead_letters: Vec::new(), lost: 0 });
        };
        let c = conn.client();
        if let Some(mut sink) = spans_sink.take()
            && !refused
        {
            let finished = match sink.feed(bytes::Bytes::from_static(copy::TRAILER)).await {
                Ok(()) => sink.as_mut().finish().await,
                Err(e) => Err(e),
            };
            match finished {
                Ok(_) => {}
                Err(e) if is_row_error(&e) => refused = true,
                Err(e) => return Err(self.copy_error(Table::TraceSpans, e)),
            }
        }
        let encoded = Encoded::merge(encoded);
        let groups = rows.errors.groups();
        let total: usize = encoded.iter().map(Encoded::len).sum::<usize>() + groups.len();
        if !refused {
            for enc in encoded.iter().filter(|e| e.table != Table::TraceSpans) {
                match copy_rows(c, self.statement(enc.table), enc, 0..enc.len()).await {
                    Ok(_) => {}
                    Err(e) if is_row_error(&e) => {
                        refused = true;
                        break;
                    }
                    Err(e) => return Err(self.copy_error(enc.table, e)),
                }
            }
        }
        // The groups are cut and cleaned so that no value can be refused; were
        // one refused anyway, it is isolated below like a bad row.
        if !refused && !groups.is_empty() {
            match copy::upsert_groups(c, &self.upsert, groups).await {
                Ok(_) => {}
                Err(e) if is_row_error(&e) => refused = true,
                Err(e) => {
                    return Err(PgError::Db {
                        context: format!("upserting into {}.error_groups", self.schema),
                        source: e,
                    });
                }
            }
        }
        if !refused {
            c.batch_execute("COMMIT").await.map_err(PgError::db("committing the batch"))?;
            conn.release();
            return Ok(Written::Committed { rows: total, dead_letters: Vec::new(), lost: 0 });
        }
        // A row was refused: write the batch again, isolating the refused rows.
        c.batch_execute("ROLLBACK").await.map_err(PgError::db("rolling back"))?;
        if !self.begin(c, batch_id, items).await? {
            c.batch_execute("ROLLBACK").await.map_err(PgError::db("rolling back"))?;
            conn.release();
            return Ok(Written::AlreadyCommitted);
        }
        let mut rejected = Vec::new();
        for enc in &encoded {
            rejected.extend(copy_isolating(c, &self.quoted, enc).await?);
        }
        if !groups.is_empty() {
            rejected.extend(copy::upsert_isolating(c, &self.upsert, groups).await?);
        }
        let mut lost = 0;
        for r in &rejected {
            let row = rows.row_json(r.table, r.index).unwrap_or(serde_json::Value::Null);
            c.batch_execute("SAVEPOINT magpie_dead_letter")
                .await
                .map_err(PgError::db("opening a savepoint"))?;
            let stored = c
                .execute(
                    &format!(
                        "INSERT INTO {}.dead_letter (batch_id, table_name, row_data, sqlstate, error) VALUES ($1::text::uuid, $2, $3, $4, $5)",
                        self.quoted
                    ),
                    &[&format!("{batch_id:032x}"), &r.table.name(), &row, &r.sqlstate, &r.error],
                )
                .await;
            match stored {
                Ok(_) => c.batch_execute("RELEASE SAVEPOINT magpie_dead_letter").await,
                Err(e) => {
                    lost += 1;
                    tracing::error!(component = %self.id, table = r.table.name(), error = %error_text(&e), "a refused row could not be kept in dead_letter");
                    c.batch_execute("ROLLBACK TO SAVEPOINT magpie_dead_letter; RELEASE SAVEPOINT magpie_dead_letter").await
                }
            }
            .map_err(PgError::db("closing a savepoint"))?;
        }
        c.batch_execute("COMMIT").await.map_err(PgError::db("committing the batch"))?;
        conn.release();
        Ok(Written::Committed { rows: total - rejected.len(), dead_letters: rejected, lost })
    }
}

/// Maps and encodes a batch (CPU work, run off the async threads).
pub fn prepare_rows(batch: &Batch, mapping: &MappingConfig, tables: &TablesConfig) -> (Rows, Vec<Encoded>) {
    let rows = mapping::map_batch(batch, mapping, tables, now_unix_nanos());
    let encoded = rows.encode();
    (rows, encoded)
}

pub struct PostgresExporter {
    id: ComponentId,
    config: Arc<PostgresConfig>,
    writer: Option<Writer>,
    /// The batch being delivered and its id. Holding the `Arc` keeps its
    /// address from being reused by another batch while the id is kept.
    current: Option<(Arc<Batch>, u128)>,
    ready: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl PostgresExporter {
    pub fn new(id: &ComponentId, config: &PostgresConfig) -> Self {
        PostgresExporter {
            id: id.clone(),
            config: Arc::new(config.clone()),
            writer: None,
            current: None,
            ready: Arc::new(AtomicBool::new(false)),
            stop: CancellationToken::new(),
        }
    }

    /// The stable id of `batch`: the same for every retry of the same batch.
    fn batch_id(&mut self, batch: &Arc<Batch>) -> u128 {
        match &self.current {
            Some((b, id)) if Arc::ptr_eq(b, batch) => *id,
            _ => {
                let id = rand::random::<u128>();
                self.current = Some((batch.clone(), id));
                id
            }
        }
    }
}

/// Runs the setup on a pooled connection, logging what it did.
async fn setup_pooled(
    id: &ComponentId,
    pool: &Pool,
    target: &str,
    config: &PostgresConfig,
) -> Result<(), PgError> {
    let mut conn = checkout(pool, target).await?;
    let (m, p) = setup(conn.client(), config).await?;
    conn.release();
    if !m.applied.is_empty() {
        tracing::info!(component = %id, schema = %config.schema, version = m.version, applied = ?m.applied, "postgres schema migrated");
    }
    log_maintenance(id, config, &p);
    Ok(())
}

fn log_maintenance(id: &ComponentId, config: &PostgresConfig, p: &schema::MaintenanceReport) {
    if !p.created.is_empty() || !p.dropped.is_empty() || p.deleted_rows > 0 {
        tracing::info!(
            component = %id, schema = %config.schema, created = ?p.created, dropped = ?p.dropped,
            deleted_rows = p.deleted_rows, "postgres partitions maintained"
        );
    }
    if !p.unpartitioned.is_empty() {
        tracing::warn!(
            component = %id, schema = %config.schema, tables = ?p.unpartitioned,
            "tables were created without partitioning before magpie adopted them; retention deletes their rows instead of dropping partitions"
        );
    }
}

#[async_trait::async_trait]
impl Exporter for PostgresExporter {
    async fn start(&mut self, ctx: &ExporterContext) -> Result<(), ComponentError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let connector =
            Connector::new(self.config.dsn.expose(), &self.config.tls, self.config.connect_timeout)
                .map_err(|e| ComponentError::new(e.to_string()))?;
        let pool = connect::pool(&connector, self.config.pool_size)
            .map_err(|e| ComponentError::new(e.to_string()))?;
        let target = connector.target.clone();
        match setup_pooled(&self.id, &pool, &target, &self.config).await {
            Ok(()) => self.ready.store(true, Ordering::Release),
            Err(e) => tracing::warn!(
                component = %self.id, error = %e,
                "postgres is not ready at start-up; the schema will be set up before the first export"
            ),
        }
        // Partition upkeep in the background.
        let (id, config, ready, stop, hard_stop) = (
            self.id.clone(),
            self.config.clone(),
            self.ready.clone(),
            self.stop.clone(),
            ctx.shutdown.clone(),
        );
        let (bg_pool, bg_target) = (pool.clone(), target.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(config.maintenance_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = hard_stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                match setup_pooled(&id, &bg_pool, &bg_target, &config).await {
                    Ok(()) => ready.store(true, Ordering::Release),
                    Err(e) => {
                        tracing::warn!(component = %id, error = %e, "postgres partition upkeep failed; will try again")
                    }
                }
            }
        });
        self.writer = Some(Writer::new(&self.id, pool, target, &self.config.schema, self.config.timeout));
        Ok(())
    }

    async fn export(&mut self, batch: Arc<Batch>) -> Result<(), ExportError> {
        let batch_id = self.batch_id(&batch);
        let Some(writer) = &self.writer else {
            return Err(ExportError::permanent("postgres exporter used before start"));
        };
        if !self.ready.load(Ordering::Acquire) {
            match setup_pooled(&self.id, &writer.pool, &writer.target, &self.config).await {
                Ok(()) => self.ready.store(true, Ordering::Release),
                Err(e) => {
                    return Err(ExportError::retryable(format!(
                        "setting up schema {}: {e}",
                        self.config.schema
                    )));
                }
            }
        }
        let items = batch.item_count();
        let (tx, rx) = tokio::sync::mpsc::channel::<Part>(2);
        let (config, b) = (self.config.clone(), batch.clone());
        let producer =
            tokio::task::spawn_blocking(move || produce_parts(&b, &config.mapping, &config.tables, &tx));
        let written = writer.write(batch_id, items, rx).await;
        // The producer stops at its next part once the receiver is gone.
        if let Err(e) = producer.await {
            return Err(ExportError::permanent(format!("mapping the batch failed: {e}")));
        }
        match written {
            Ok(Written::AlreadyCommitted) => {
                self.current = None;
                tracing::info!(component = %self.id, batch_id = %format!("{batch_id:032x}"), items, "batch was already committed by an earlier attempt; not writing it again");
                Ok(())
            }
            Ok(Written::Committed { dead_letters, lost, .. }) => {
                self.current = None;
                if dead_letters.is_empty() {
                    return Ok(());
                }
                let first = &dead_letters[0];
                let kept = dead_letters.len() - lost;
                Err(ExportError::Partial {
                    rejected: dead_letters.len() as u64,
                    message: format!(
                        "{} rows refused by postgres, {kept} kept in {}.dead_letter; first: {}.{}: {}",
                        dead_letters.len(),
                        self.config.schema,
                        self.config.schema,
                        first.table.name(),
                        first.error
                    ),
                })
            }
            Err(e) => {
                if e.schema_missing() {
                    self.ready.store(false, Ordering::Release);
                }
                Err(ExportError::retryable(e.to_string()))
            }
        }
    }

    async fn shutdown(&mut self) -> Result<(), ComponentError> {
        self.stop.cancel();
        if let Some(w) = &self.writer {
            w.pool.close();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
