//! `postgresql`: scrapes a PostgreSQL server's statistics views every
//! `collection_interval` and sends one OTLP metrics batch per scrape:
//! connections by database, application and state (server-side pool
//! saturation against `max_connections`), lock waits, the longest query and
//! transaction, per-database statistics and size, replication lag on a
//! primary, and the top statements of `pg_stat_statements` when installed.
//!
//! The row → metric mapping is pure, in [`stats`]; this module holds the
//! config, the single connection (reopened with backoff after a failure) and
//! the SQL. A server that cannot be reached yields `postgresql.up = 0` and
//! one log line when that starts and one when it ends; `start()` only fails
//! on bad config, so the agent starts while PostgreSQL is down. Passwords
//! are never logged: log lines name the server by host and port.

pub mod stats;

use crate::hostmetrics::{Enabled, MetricToggles, metric_problems};
use magpie_core::ComponentError;
use magpie_core::config::{Secret, duration};
use magpie_core::otlp::{kv_int, kv_str, now_unix_nanos};
use magpie_core::proto::common::v1::{InstrumentationScope, KeyValue};
use magpie_core::proto::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use magpie_core::proto::resource::v1::Resource;
use magpie_pg::{Connector, TlsConfig};
use serde::Deserialize;
use stats::{Activity, Database, METRICS, Replica, Server, Snapshot, Statement, metrics, up_metric};
use std::time::Duration;
use tokio::time::Instant;
use tokio_postgres::config::Host;

/// The scope every postgresql metric is emitted under.
pub const SCOPE_NAME: &str = "magpie.postgresql";

/// The wait before reconnecting grows from this...
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// ...to at most this.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Config of the `postgresql` receiver.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresqlConfig {
    /// A libpq-style connection string, as a URL
    /// (`postgresql://magpie@db:5432/postgres?sslmode=verify-full`) or as
    /// `key=value` pairs, with libpq's `sslmode` and `sslrootcert`. A
    /// secret, since it may carry a password.
    #[serde(default = "default_endpoint")]
    pub endpoint: Secret<String>,
    /// User name; overrides one in `endpoint`.
    #[serde(default)]
    pub username: Option<String>,
    /// Password; overrides one in `endpoint`.
    #[serde(default)]
    pub password: Option<Secret<String>>,
    /// Databases to report per-database figures and connections for; empty
    /// (the default) means every database that accepts connections.
    #[serde(default)]
    pub databases: Vec<String>,
    /// How often to scrape; 10s by default.
    #[serde(default = "default_interval", with = "duration")]
    pub collection_interval: Duration,
    /// Connecting plus one scrape's queries, at most; 5s by default, and
    /// never more than `collection_interval`.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Top statements from `pg_stat_statements`.
    #[serde(default)]
    pub statements: StatementsConfig,
    /// TLS: `mode` (libpq's `sslmode`) and `ca_file`; unset fields fall
    /// back to the endpoint's `sslmode` and `sslrootcert`, then to `prefer`.
    #[serde(default)]
    pub tls: TlsConfig,
    /// `{ <metric name>: { enabled: true|false } }`.
    #[serde(default)]
    pub metrics: MetricToggles,
}

/// `statements`: the top-N statements of `pg_stat_statements`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatementsConfig {
    /// Report top statements when the extension is installed; true by default.
    pub enabled: bool,
    /// N: the statements with the N highest total times plus those with the
    /// N highest mean times; 10 by default.
    pub top: u32,
    /// Query text is cut to this many characters; 200 by default.
    pub max_query_length: usize,
}

impl Default for StatementsConfig {
    fn default() -> Self {
        StatementsConfig { enabled: true, top: 10, max_query_length: 200 }
    }
}

impl Default for PostgresqlConfig {
    fn default() -> Self {
        PostgresqlConfig {
            endpoint: default_endpoint(),
            username: None,
            password: None,
            databases: Vec::new(),
            collection_interval: default_interval(),
            timeout: default_timeout(),
            statements: StatementsConfig::default(),
            tls: TlsConfig::default(),
            metrics: MetricToggles::new(),
        }
    }
}

fn default_endpoint() -> Secret<String> {
    Secret::new("postgresql://postgres@127.0.0.1:5432/postgres".to_string())
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl PostgresqlConfig {
    /// Problems the types alone cannot catch, as messages naming the setting.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.collection_interval < Duration::from_millis(1) {
            out.push("collection_interval: must be at least 1ms".to_string());
        }
        if self.timeout < Duration::from_millis(1) {
            out.push("timeout: must be at least 1ms".to_string());
        }
        match magpie_pg::parse_dsn(self.endpoint.expose()) {
            Ok(dsn) if self.username.is_none() && dsn.config.get_user().is_none() => out.push(
                "endpoint: no user: name one in the endpoint (postgresql://magpie@host/postgres) or in `username`"
                    .to_string(),
            ),
            Ok(_) => {}
            Err(e) => out.push(format!(
                "endpoint: not a valid PostgreSQL connection string ({e}); write postgresql://user@host:5432/dbname or `host=... user=... dbname=...`"
            )),
        }
        out.extend(self.tls.problems());
        if self.statements.top == 0 {
            out.push(
                "statements.top: must be at least 1 (set statements.enabled: false to turn them off)".into(),
            );
        }
        if self.statements.max_query_length < 16 {
            out.push("statements.max_query_length: must be at least 16".to_string());
        }
        for (i, d) in self.databases.iter().enumerate() {
            if d.trim().is_empty() {
                out.push(format!("databases[{i}]: must not be empty"));
            }
        }
        metric_problems(METRICS, &self.metrics, "", &mut out);
        for p in &mut out {
            if let Some(rest) = p.strip_prefix(".metrics") {
                *p = format!("metrics{rest}");
            }
        }
        out
    }

    fn effective_timeout(&self) -> Duration {
        self.timeout.min(self.collection_interval)
    }
}

/// The connector for `config`: the endpoint parsed (libpq's forms and TLS
/// settings), with `username`, `password` and the timeout applied. Errors
/// never repeat the endpoint.
fn connector(config: &PostgresqlConfig) -> Result<Connector, String> {
    let mut c = Connector::new(config.endpoint.expose(), &config.tls, config.effective_timeout())
        .map_err(|e| e.to_string())?;
    if let Some(u) = &config.username {
        c.config.user(u);
    }
    if let Some(p) = &config.password {
        c.config.password(p.expose());
    }
    Ok(c)
}

/// `host` and `port` of the (first) server, for resource attributes and logs.
fn server_address(c: &tokio_postgres::Config) -> (String, u16) {
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => String::new(),
    };
    (host, c.get_ports().first().copied().unwrap_or(5432))
}

// ---------------------------------------------------------------------------
// The SQL.

const SERVER_SQL: &str = "SELECT current_setting('server_version'), \
       current_setting('max_connections')::int8, \
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int8, \
       pg_is_in_recovery(), \
       extract(epoch FROM pg_postmaster_start_time())::float8, \
       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'), \
       current_setting('server_version_num')::int4, \
       current_database()::text";

const ACTIVITY_SQL: &str = "SELECT coalesce(datname::text, ''), coalesce(application_name, ''), \
       coalesce(state, 'unknown'), count(*)::int8, \
       (count(*) FILTER (WHERE wait_event_type = 'Lock'))::int8, \
       coalesce(max(extract(epoch FROM clock_timestamp() - query_start)) \
                FILTER (WHERE state = 'active' AND pid <> pg_backend_pid()), 0)::float8, \
       coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)) \
                FILTER (WHERE pid <> pg_backend_pid()), 0)::float8 \
  FROM pg_stat_activity \
 WHERE backend_type = 'client backend' \
   AND (cardinality($1::text[]) = 0 OR datname = ANY($1::text[])) \
 GROUP BY 1, 2, 3";

const DATABASES_SQL: &str = "SELECT d.datname::text, s.numbackends::int8, s.xact_commit::int8, \
       s.xact_rollback::int8, s.blks_read::int8, s.blks_hit::int8, s.tup_returned::int8, \
       s.tup_fetched::int8, s.tup_inserted::int8, s.tup_updated::int8, s.tup_deleted::int8, \
       s.temp_files::int8, s.temp_bytes::int8, s.deadlocks::int8, \
       CASE WHEN has_database_privilege(d.oid, 'CONNECT') \
              OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') \
            THEN pg_database_size(d.oid)::int8 END, \
       extract(epoch FROM coalesce(s.stats_reset, pg_postmaster_start_time()))::float8 \
  FROM pg_database d JOIN pg_stat_database s ON s.datid = d.oid \
 WHERE NOT d.datistemplate AND d.datallowconn \
   AND (cardinality($1::text[]) = 0 OR d.datname = ANY($1::text[])) \
 ORDER BY d.datname";

const REPLICATION_SQL: &str = "SELECT coalesce(nullif(application_name, ''), host(client_addr), 'unknown'), \
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::int8, \
       extract(epoch FROM write_lag)::float8, extract(epoch FROM flush_lag)::float8, \
       extract(epoch FROM replay_lag)::float8 \
  FROM pg_stat_replication";

/// The top statements by total and by mean time; PostgreSQL 13 renamed the
/// time columns.
fn statements_sql(version_num: i32) -> String {
    let (total, mean) = if version_num >= 130_000 {
        ("total_exec_time", "mean_exec_time")
    } else {
        ("total_time", "mean_time")
    };
    format!(
        "SELECT coalesce(d.datname::text, ''), coalesce(s.queryid, 0)::int8, coalesce(s.query, ''), \
                s.calls::int8, s.{total}::float8, s.{mean}::float8, s.rows::int8 \
           FROM (SELECT *, row_number() OVER (ORDER BY {total} DESC) AS by_total, \
                        row_number() OVER (ORDER BY {mean} DESC) AS by_mean \
                   FROM pg_stat_statements) s \
           LEFT JOIN pg_database d ON d.oid = s.dbid \
          WHERE s.by_total <= $1 OR s.by_mean <= $1 \
          ORDER BY s.{total} DESC"
    )
}

fn nanos(epoch_secs: f64) -> u64 {
    if epoch_secs.is_finite() && epoch_secs > 0.0 { (epoch_secs * 1e9) as u64 } else { 0 }
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Why one scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("connecting to postgresql at {address}: {}", magpie_pg::error_text(source))]
    Connect { address: String, source: tokio_postgres::Error },
    #[error("querying {what} from postgresql at {address}: {}", magpie_pg::error_text(source))]
    Query { what: &'static str, address: String, source: tokio_postgres::Error },
    #[error("postgresql at {address} did not answer within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("connecting to postgresql at {address}: {message}")]
    Settings { address: String, message: String },
}

/// An open connection and its prepared statements.
struct Conn {
    client: tokio_postgres::Client,
    server: tokio_postgres::Statement,
    activity: tokio_postgres::Statement,
    databases: tokio_postgres::Statement,
    replication: Option<tokio_postgres::Statement>,
    statements: Option<tokio_postgres::Statement>,
}

/// One server, scraped on demand. The receiver drives it on a timer; tests
/// and benches drive it directly.
pub struct PostgresScraper {
    connector: Connector,
    conn: Option<Conn>,
    databases: Vec<String>,
    statements: StatementsConfig,
    prev: Option<Snapshot>,
    up: Option<bool>,
    /// Whether `pg_stat_statements` was usable at the last look, for
    /// logging when that changes.
    statements_available: Option<bool>,
    failures: u32,
    next_attempt: Option<Instant>,
    enabled: Enabled,
    timeout: Duration,
    host: String,
    port: u16,
    version: Option<String>,
    component: String,
}

impl PostgresScraper {
    /// Builds the scraper; fails only on bad config, never because the server is down.
    pub fn new(config: &PostgresqlConfig, component: &str) -> Result<Self, ComponentError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(ComponentError::new(problems.join("; ")));
        }
        let connector = connector(config).map_err(ComponentError::new)?;
        let timeout = config.effective_timeout();
        let (host, port) = server_address(&connector.config);
        Ok(PostgresScraper {
            connector,
            conn: None,
            databases: config.databases.clone(),
            statements: config.statements.clone(),
            prev: None,
            up: None,
            statements_available: None,
            failures: 0,
            next_attempt: None,
            enabled: Enabled::new(METRICS, &config.metrics),
            timeout,
            host,
            port,
            version: None,
            component: component.to_string(),
        })
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    async fn connect(&self) -> Result<Conn, PostgresError> {
        let address = self.address();
        let client = self.connector.connect().await.map_err(|e| match e {
            magpie_pg::Error::Connect { source, .. } => {
                PostgresError::Connect { address: address.clone(), source }
            }
            magpie_pg::Error::Config(message) => {
                PostgresError::Settings { address: address.clone(), message }
            }
        })?;
        let prepare = |what: &'static str, sql: &'static str| {
            let address = address.clone();
            let client = &client;
            async move {
                client.prepare(sql).await.map_err(|source| PostgresError::Query { what, address, source })
            }
        };
        let server = prepare("server settings", SERVER_SQL).await?;
        let activity = prepare("pg_stat_activity", ACTIVITY_SQL).await?;
        let databases = prepare("pg_stat_database", DATABASES_SQL).await?;
        Ok(Conn { client, server, activity, databases, replication: None, statements: None })
    }

    /// Reads one snapshot, connecting first when needed.
    async fn read(&mut self) -> Result<Snapshot, PostgresError> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().await?,
        };
        let address = self.address();
        let q = |what: &'static str| {
            let address = address.clone();
            move |source| PostgresError::Query { what, address: address.clone(), source }
        };
        let row = conn.client.query_one(&conn.server, &[]).await.map_err(q("server settings"))?;
        let version: String = row.try_get(0).map_err(q("server settings"))?;
        let has_statements: bool = row.try_get(5).map_err(q("server settings"))?;
        let version_num: i32 = row.try_get(6).map_err(q("server settings"))?;
        let current_db: String = row.try_get(7).map_err(q("server settings"))?;
        let server = Server {
            version,
            max_connections: unsigned(row.try_get(1).map_err(q("server settings"))?),
            connections: unsigned(row.try_get(2).map_err(q("server settings"))?),
            in_recovery: row.try_get(3).map_err(q("server settings"))?,
            start_time: nanos(row.try_get(4).map_err(q("server settings"))?),
        };

        let mut activity = Vec::new();
        for r in conn.client.query(&conn.activity, &[&self.databases]).await.map_err(q("pg_stat_activity"))? {
            let get = |i| r.try_get::<_, i64>(i).map(unsigned);
            activity.push(Activity {
                database: r.try_get(0).map_err(q("pg_stat_activity"))?,
                application_name: r.try_get(1).map_err(q("pg_stat_activity"))?,
                state: r.try_get(2).map_err(q("pg_stat_activity"))?,
                count: get(3).map_err(q("pg_stat_activity"))?,
                waiting: get(4).map_err(q("pg_stat_activity"))?,
                max_query_secs: r.try_get(5).map_err(q("pg_stat_activity"))?,
                max_xact_secs: r.try_get(6).map_err(q("pg_stat_activity"))?,
            });
        }

        let mut databases = Vec::new();
        for r in
            conn.client.query(&conn.databases, &[&self.databases]).await.map_err(q("pg_stat_database"))?
        {
            let n = |i| r.try_get::<_, Option<i64>>(i).map(|v| v.map_or(0, unsigned));
            let e = q("pg_stat_database");
            databases.push(Database {
                name: r.try_get(0).map_err(&e)?,
                backends: n(1).map_err(&e)?,
                commits: n(2).map_err(&e)?,
                rollbacks: n(3).map_err(&e)?,
                blks_read: n(4).map_err(&e)?,
                blks_hit: n(5).map_err(&e)?,
                tup_returned: n(6).map_err(&e)?,
                tup_fetched: n(7).map_err(&e)?,
                tup_inserted: n(8).map_err(&e)?,
                tup_updated: n(9).map_err(&e)?,
                tup_deleted: n(10).map_err(&e)?,
                temp_files: n(11).map_err(&e)?,
                temp_bytes: n(12).map_err(&e)?,
                deadlocks: n(13).map_err(&e)?,
                size: r.try_get::<_, Option<i64>>(14).map_err(&e)?.map(unsigned),
                stats_since: nanos(r.try_get::<_, Option<f64>>(15).map_err(&e)?.unwrap_or(0.0)),
            });
        }

        // pg_current_wal_lsn() fails on a standby: replication is read on primaries only.
        let mut replicas = Vec::new();
        if !server.in_recovery {
            if conn.replication.is_none() {
                conn.replication =
                    Some(conn.client.prepare(REPLICATION_SQL).await.map_err(q("pg_stat_replication"))?);
            }
            if let Some(stmt) = &conn.replication {
                for r in conn.client.query(stmt, &[]).await.map_err(q("pg_stat_replication"))? {
                    let e = q("pg_stat_replication");
                    replicas.push(Replica {
                        client: r.try_get(0).map_err(&e)?,
                        data_delay: r.try_get::<_, Option<i64>>(1).map_err(&e)?.map(unsigned),
                        write_lag: r.try_get(2).map_err(&e)?,
                        flush_lag: r.try_get(3).map_err(&e)?,
                        replay_lag: r.try_get(4).map_err(&e)?,
                    });
                }
            }
        }

        let statements = if self.statements.enabled && has_statements {
            self.read_statements(&mut conn, version_num, &current_db).await
        } else {
            if self.statements.enabled && self.statements_available != Some(false) {
                tracing::info!(component = %self.component, database = %current_db, "pg_stat_statements is not installed in the database the receiver connects to; top statements are skipped");
            }
            self.statements_available = Some(false);
            None
        };
        self.version = Some(server.version.clone());
        self.conn = Some(conn);
        Ok(Snapshot { server, activity, databases, replicas, statements })
    }

    /// The top statements; a failure (the extension installed but not in
    /// `shared_preload_libraries`, or not readable) skips them with one log
    /// line instead of failing the scrape.
    async fn read_statements(
        &mut self,
        conn: &mut Conn,
        version_num: i32,
        db: &str,
    ) -> Option<Vec<Statement>> {
        let top = i64::from(self.statements.top);
        let result = async {
            if conn.statements.is_none() {
                conn.statements = Some(conn.client.prepare(&statements_sql(version_num)).await?);
            }
            match &conn.statements {
                Some(stmt) => conn.client.query(stmt, &[&top]).await,
                None => Ok(Vec::new()),
            }
        }
        .await;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                conn.statements = None;
                if self.statements_available != Some(false) {
                    tracing::info!(component = %self.component, database = %db, error = %e, "pg_stat_statements cannot be read; top statements are skipped");
                }
                self.statements_available = Some(false);
                return None;
            }
        };
        if self.statements_available != Some(true) {
            tracing::info!(component = %self.component, database = %db, "reporting top statements from pg_stat_statements");
        }
        self.statements_available = Some(true);
        let max = self.statements.max_query_length;
        let out = rows
            .iter()
            .filter_map(|r| {
                Some(Statement {
                    database: r.try_get(0).ok()?,
                    query_id: r.try_get(1).ok()?,
                    query: stats::normalize_query(r.try_get::<_, &str>(2).ok()?, max),
                    calls: unsigned(r.try_get(3).ok()?),
                    total_secs: r.try_get::<_, f64>(4).ok()? / 1000.0,
                    mean_secs: r.try_get::<_, f64>(5).ok()? / 1000.0,
                    rows: unsigned(r.try_get(6).ok()?),
                })
            })
            .collect();
        Some(out)
    }

    /// Takes a first snapshot without emitting anything, so the first
    /// scrape's cache hit ratio covers a known interval.
    pub async fn baseline(&mut self) {
        match tokio::time::timeout(self.timeout, self.read()).await {
            Ok(Ok(s)) => self.prev = Some(s),
            _ => self.conn = None,
        }
    }

    /// One scrape: the server's metrics and `postgresql.up = 1`, or only
    /// `postgresql.up = 0`. Logs when the state changes; after a failure,
    /// reconnects no sooner than the backoff allows.
    pub async fn scrape(&mut self) -> Vec<ResourceMetrics> {
        let now_instant = Instant::now();
        let result = if self.conn.is_none() && self.next_attempt.is_some_and(|t| now_instant < t) {
            None
        } else {
            Some(match tokio::time::timeout(self.timeout, self.read()).await {
                Ok(r) => r,
                Err(_) => Err(PostgresError::Timeout { address: self.address(), timeout: self.timeout }),
            })
        };
        let now = now_unix_nanos();
        match result {
            Some(Ok(snapshot)) => {
                if self.up == Some(false) {
                    tracing::info!(component = %self.component, server = %self.address(), "postgresql answers again");
                }
                self.up = Some(true);
                self.failures = 0;
                self.next_attempt = None;
                let mut ms = Vec::with_capacity(METRICS.len());
                if self.enabled.on(&stats::UP) {
                    ms.push(up_metric(true, now));
                }
                ms.extend(metrics(self.prev.as_ref(), &snapshot, now, &self.enabled));
                self.prev = Some(snapshot);
                vec![self.resource_metrics(ms)]
            }
            failed => {
                if let Some(Err(e)) = failed {
                    self.conn = None;
                    self.failures = self.failures.saturating_add(1);
                    let wait = BACKOFF_MIN
                        .saturating_mul(1 << self.failures.min(7).saturating_sub(1))
                        .min(BACKOFF_MAX);
                    self.next_attempt = Some(Instant::now() + wait);
                    if self.up != Some(false) {
                        tracing::warn!(component = %self.component, error = %e, "postgresql is unreachable; reporting postgresql.up 0 until it answers");
                    }
                    self.up = Some(false);
                }
                if !self.enabled.on(&stats::UP) {
                    return Vec::new();
                }
                vec![self.resource_metrics(vec![up_metric(false, now)])]
            }
        }
    }

    fn resource_metrics(&self, metrics: Vec<Metric>) -> ResourceMetrics {
        let mut attributes: Vec<KeyValue> = vec![kv_str("server.address", self.host.as_str())];
        attributes.push(kv_int("server.port", i64::from(self.port)));
        if let Some(v) = &self.version {
            attributes.push(kv_str("postgresql.version", v.as_str()));
        }
        let scope = InstrumentationScope {
            name: SCOPE_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        };
        ResourceMetrics {
            resource: Some(Resource { attributes, ..Default::default() }),
            scope_metrics: vec![ScopeMetrics { scope: Some(scope), metrics, schema_url: String::new() }],
            schema_url: String::new(),
        }
    }
}

// ---------------------------------------------------------------------------
// The receiver.

/// Scrapes one PostgreSQL server on a timer.
pub type PostgresqlReceiver = crate::scrape::ScrapeReceiver<PostgresScraper>;

impl crate::scrape::FromConfig for PostgresScraper {
    type Config = PostgresqlConfig;

    fn build(config: &PostgresqlConfig, component: &str) -> Result<Self, ComponentError> {
        PostgresScraper::new(config, component)
    }

    fn interval(config: &PostgresqlConfig) -> Duration {
        config.collection_interval
    }
}

#[async_trait::async_trait]
impl crate::scrape::Scrape for PostgresScraper {
    async fn baseline(&mut self) {
        PostgresScraper::baseline(self).await;
    }

    async fn scrape(&mut self) -> Result<Vec<ResourceMetrics>, ComponentError> {
        Ok(PostgresScraper::scrape(self).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::config::{Node, from_node};
    use tokio_postgres::config::SslMode;

    fn parse(yaml: &str) -> Result<PostgresqlConfig, String> {
        let node = Node::parse(yaml, "t.yaml").map_err(|e| e.to_string())?;
        from_node::<PostgresqlConfig>(&node, "receivers.postgresql")
            .map(|(c, _)| c)
            .map_err(|e| e.to_string())
    }

    fn problems(yaml: &str) -> Vec<String> {
        parse(yaml).map(|c| c.problems()).unwrap_or_else(|e| vec![e])
    }

    #[test]
    fn defaults() {
        let c = parse("").expect("empty config is valid");
        assert_eq!(c.collection_interval, Duration::from_secs(10));
        assert!(c.databases.is_empty());
        assert!(c.statements.enabled);
        assert_eq!((c.statements.top, c.statements.max_query_length), (10, 200));
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let pg = connector(&c).expect("builds");
        assert_eq!(server_address(&pg.config), ("127.0.0.1".to_string(), 5432));
        assert_eq!(pg.config.get_user(), Some("postgres"));
        assert_eq!(pg.config.get_application_name(), Some("magpie"));
        // libpq's default: TLS when the server offers it.
        assert_eq!(pg.config.get_ssl_mode(), tokio_postgres::config::SslMode::Prefer);
        assert!(pg.tls.is_some());
    }

    #[test]
    fn both_dsn_forms_and_overrides() {
        let c = parse("endpoint: host=db port=6543 user=u password=p dbname=app application_name=mon\nusername: v\npassword: q\n")
            .expect("valid");
        let pg = connector(&c).expect("builds");
        assert_eq!(server_address(&pg.config), ("db".to_string(), 6543));
        assert_eq!(pg.config.get_user(), Some("v"));
        assert_eq!(pg.config.get_password(), Some(&b"q"[..]));
        assert_eq!(pg.config.get_application_name(), Some("mon"));
        for (yaml, mode) in [
            ("endpoint: postgresql://u@db/app?sslmode=require\n", SslMode::Require),
            ("endpoint: postgresql://u@db/app?sslmode=verify-full\n", SslMode::Require),
            ("endpoint: host=db user=u sslmode=disable\n", SslMode::Disable),
            ("endpoint: postgresql://u@db/app?sslmode=disable\ntls: {mode: require}\n", SslMode::Require),
        ] {
            let c = parse(yaml).expect("valid");
            assert_eq!(connector(&c).expect("builds").config.get_ssl_mode(), mode, "{yaml}");
            assert!(PostgresScraper::new(&c, "postgresql").is_ok(), "{yaml}");
        }
        let node = Node::parse("endpoint: postgresql://u:pw@h/db\npassword: x\n", "t.yaml").expect("yaml");
        let (_, secrets) = from_node::<PostgresqlConfig>(&node, "receivers.postgresql").expect("valid");
        assert_eq!(secrets, ["receivers.postgresql.endpoint", "receivers.postgresql.password"]);
    }

    #[test]
    fn config_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "endpoint: \"postgresql://u:hunter2@db:notaport/x\"\n",
                "endpoint: not a valid PostgreSQL connection string",
            ),
            ("endpoint: postgresql://db/x\n", "endpoint: no user"),
            ("endpoint: postgresql://u@/x\n", "it names no host"),
            ("statements: {top: 0}\n", "statements.top: must be at least 1"),
            ("statements: {max_query_length: 3}\n", "statements.max_query_length: must be at least 16"),
            ("statements: {limit: 3}\n", "unknown field `limit`"),
            ("databases: [app, '']\n", "databases[1]: must not be empty"),
            ("tls: {mode: sometimes}\n", "tls.mode: unknown value `sometimes`"),
            ("endpoint: \"postgresql://u:hunter2@db/x?sslmode=sometimes\"\n", "sslmode `sometimes`"),
            ("tls: {ca_file: /nonexistent.pem}\n", "tls.ca_file /nonexistent.pem does not exist"),
            ("collection_interval: 0s\n", "collection_interval: must be at least 1ms"),
            ("metrics: {postgresql.comits: {enabled: false}}\n", "did you mean `postgresql.commits`?"),
        ];
        for (yaml, want) in cases {
            let got = problems(yaml);
            assert!(got.iter().any(|p| p.contains(want)), "{yaml}: {got:?} lacks `{want}`");
            assert!(!got.iter().any(|p| p.contains("hunter2")), "{got:?} leaks the password");
        }
    }

    #[test]
    fn statements_sql_follows_the_server_version() {
        assert!(statements_sql(150_000).contains("mean_exec_time"));
        assert!(statements_sql(120_000).contains("s.mean_time"));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_up_0_with_backoff() {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let config = PostgresqlConfig {
            endpoint: Secret::new(format!("postgresql://u:secret@127.0.0.1:{port}/db")),
            timeout: Duration::from_millis(500),
            ..Default::default()
        };
        let mut s =
            PostgresScraper::new(&config, "postgresql/test").expect("a down server is not a config error");
        for attempt in 0..2 {
            let batch = s.scrape().await;
            let ms = &batch[0].scope_metrics[0].metrics;
            assert_eq!(ms.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["postgresql.up"]);
            assert_eq!(s.up, Some(false));
            // The second scrape comes before the backoff ends: no new attempt.
            assert_eq!(s.failures, 1, "attempt {attempt}");
        }
    }

    #[test]
    fn the_readme_documents_every_metric_with_its_type_and_unit() {
        let readme = include_str!("../../README.md");
        let section = readme.split("\n## ").find(|s| s.starts_with("postgresql\n")).expect("README section");
        for d in METRICS {
            let row = section
                .lines()
                .find(|l| l.split('|').nth(1).is_some_and(|c| c.trim() == format!("`{}`", d.name)))
                .unwrap_or_else(|| panic!("README.md has no row for {}", d.name));
            let kind = match d.kind {
                crate::hostmetrics::Kind::Gauge => "Gauge",
                crate::hostmetrics::Kind::Counter => "Counter",
                crate::hostmetrics::Kind::UpDownCounter => "UpDownCounter",
            };
            assert!(
                row.contains(&format!("| {kind} | {} |", d.unit)),
                "{}: `{kind} | {}` not in `{row}`",
                d.name,
                d.unit
            );
            assert!(row.ends_with(if d.default_enabled { "| on |" } else { "| off |" }), "{row}");
        }
    }
}
