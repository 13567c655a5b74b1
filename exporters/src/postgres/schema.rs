//! The schema: versioned migrations, daily partitions created ahead of time,
//! and retention that drops whole partitions (and deletes error groups not
//! seen within it).
//!
//! Migrations run in one transaction under a transaction-scoped advisory
//! lock keyed by the schema name, so two agents starting at once apply each
//! version exactly once; every statement is also written to be idempotent
//! (`IF NOT EXISTS`), so a database that already has the seed tables (created
//! by hand from the seed SQL, unpartitioned) is adopted: missing columns and
//! indexes are added, and its tables are simply not partitioned.
//!
//! Partition maintenance runs under a second advisory lock, one short
//! transaction per partition with a `lock_timeout`, so it never holds up
//! writers for long and never deadlocks with them.

use super::PgError;
use super::copy::Table;
use super::time::Day;
use std::time::Duration;

/// One schema version.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    /// SQL with `{schema}` standing for the (validated, quoted) schema name.
    pub sql: &'static str,
}

/// Every migration, in order. Append only: a released version never changes.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "seed tables, partitioned by day", sql: V1_SEED_TABLES },
    Migration { version: 2, name: "log records, alert rules and alert events", sql: V2_LOGS_AND_ALERTS },
    Migration { version: 3, name: "batch ledger and dead letters", sql: V3_BATCHES_AND_DEAD_LETTERS },
    Migration { version: 4, name: "error groups", sql: V4_ERROR_GROUPS },
];

/// The latest schema version.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const V1_SEED_TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS {schema}.request_metrics (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    method VARCHAR(10) NOT NULL,
    path TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    response_time_ms FLOAT NOT NULL,
    user_email VARCHAR(255),
    department VARCHAR(50),
    request_size_bytes INTEGER,
    response_size_bytes INTEGER,
    trace_id VARCHAR(32),
    user_agent TEXT,
    ip_address INET,
    PRIMARY KEY (id, timestamp)
) PARTITION BY RANGE (timestamp);
ALTER TABLE {schema}.request_metrics ADD COLUMN IF NOT EXISTS service_name TEXT;
ALTER TABLE {schema}.request_metrics ADD COLUMN IF NOT EXISTS span_id VARCHAR(16);
CREATE INDEX IF NOT EXISTS idx_request_metrics_timestamp ON {schema}.request_metrics(timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_request_metrics_path ON {schema}.request_metrics(path);
CREATE INDEX IF NOT EXISTS idx_request_metrics_user ON {schema}.request_metrics(user_email);

CREATE TABLE IF NOT EXISTS {schema}.system_metrics (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    metric_name VARCHAR(100) NOT NULL,
    metric_value FLOAT NOT NULL,
    metadata JSONB,
    PRIMARY KEY (id, timestamp)
) PARTITION BY RANGE (timestamp);
CREATE INDEX IF NOT EXISTS idx_system_metrics_timestamp ON {schema}.system_metrics(timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_system_metrics_name ON {schema}.system_metrics(metric_name);
CREATE INDEX IF NOT EXISTS idx_system_metrics_time_series ON {schema}.system_metrics(metric_name, timestamp DESC);

CREATE TABLE IF NOT EXISTS {schema}.llm_call_metrics (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    model VARCHAR(100) NOT NULL,
    provider VARCHAR(50) NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    total_tokens INTEGER,
    elapsed_ms FLOAT NOT NULL,
    user_email VARCHAR(255),
    department VARCHAR(50),
    query_type VARCHAR(50),
    trace_id VARCHAR(32),
    cost_usd DECIMAL(10, 6),
    success BOOLEAN DEFAULT TRUE,
    error_message TEXT,
    PRIMARY KEY (id, timestamp)
) PARTITION BY RANGE (timestamp);
ALTER TABLE {schema}.llm_call_metrics ADD COLUMN IF NOT EXISTS span_id VARCHAR(16);
ALTER TABLE {schema}.llm_call_metrics ADD COLUMN IF NOT EXISTS service_name TEXT;
ALTER TABLE {schema}.llm_call_metrics ADD COLUMN IF NOT EXISTS operation TEXT;
ALTER TABLE {schema}.llm_call_metrics ADD COLUMN IF NOT EXISTS cache_read_tokens INTEGER;
ALTER TABLE {schema}.llm_call_metrics ADD COLUMN IF NOT EXISTS cache_creation_tokens INTEGER;
ALTER TABLE {schema}.llm_call_metrics ADD COLUMN IF NOT EXISTS reasoning_tokens INTEGER;
CREATE INDEX IF NOT EXISTS idx_llm_metrics_timestamp ON {schema}.llm_call_metrics(timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_llm_metrics_model ON {schema}.llm_call_metrics(model);
CREATE INDEX IF NOT EXISTS idx_llm_metrics_user ON {schema}.llm_call_metrics(user_email);

CREATE TABLE IF NOT EXISTS {schema}.trace_spans (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    trace_id VARCHAR(32) NOT NULL,
    span_id VARCHAR(16) NOT NULL,
    parent_span_id VARCHAR(16),
    operation_name VARCHAR(255) NOT NULL,
    start_time TIMESTAMPTZ NOT NULL,
    end_time TIMESTAMPTZ NOT NULL,
    duration_ms FLOAT NOT NULL,
    tags JSONB,
    logs JSONB,
    PRIMARY KEY (id, start_time)
) PARTITION BY RANGE (start_time);
ALTER TABLE {schema}.trace_spans ADD COLUMN IF NOT EXISTS service_name TEXT;
ALTER TABLE {schema}.trace_spans ADD COLUMN IF NOT EXISTS span_kind VARCHAR(16);
ALTER TABLE {schema}.trace_spans ADD COLUMN IF NOT EXISTS status_code VARCHAR(16);
ALTER TABLE {schema}.trace_spans ADD COLUMN IF NOT EXISTS status_message TEXT;
ALTER TABLE {schema}.trace_spans ADD COLUMN IF NOT EXISTS resource JSONB;
CREATE INDEX IF NOT EXISTS idx_trace_spans_trace_id ON {schema}.trace_spans(trace_id);
CREATE INDEX IF NOT EXISTS idx_trace_spans_operation ON {schema}.trace_spans(operation_name);
CREATE INDEX IF NOT EXISTS idx_trace_spans_start_time ON {schema}.trace_spans(start_time DESC);

DO $$
DECLARE t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['request_metrics', 'system_metrics', 'llm_call_metrics', 'trace_spans'] LOOP
        IF (SELECT relkind FROM pg_class WHERE oid = ('{schema}.' || t)::regclass) = 'p' THEN
            EXECUTE format('CREATE TABLE IF NOT EXISTS {schema}.%I PARTITION OF {schema}.%I DEFAULT', t || '_default', t);
        END IF;
    END LOOP;
END $$;
"#;

const V2_LOGS_AND_ALERTS: &str = r#"
CREATE TABLE IF NOT EXISTS {schema}.log_records (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    timestamp TIMESTAMPTZ NOT NULL,
    observed_timestamp TIMESTAMPTZ,
    severity_number INTEGER,
    severity_text TEXT,
    body TEXT,
    attributes JSONB,
    resource JSONB,
    trace_id VARCHAR(32),
    span_id VARCHAR(16),
    service_name TEXT,
    scope_name TEXT,
    event_name TEXT,
    PRIMARY KEY (id, timestamp)
) PARTITION BY RANGE (timestamp);
CREATE INDEX IF NOT EXISTS idx_log_records_timestamp ON {schema}.log_records(timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_log_records_trace_id ON {schema}.log_records(trace_id);
CREATE INDEX IF NOT EXISTS idx_log_records_severity ON {schema}.log_records(severity_number, timestamp DESC);
DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = '{schema}.log_records'::regclass) = 'p' THEN
        CREATE TABLE IF NOT EXISTS {schema}.log_records_default PARTITION OF {schema}.log_records DEFAULT;
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS {schema}.alert_rules (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    metric_name VARCHAR(100) NOT NULL,
    condition VARCHAR(50) NOT NULL,
    threshold FLOAT NOT NULL,
    window_minutes INTEGER DEFAULT 5,
    notification_channels JSONB,
    enabled BOOLEAN DEFAULT TRUE,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    created_by VARCHAR(255)
);

CREATE TABLE IF NOT EXISTS {schema}.alert_events (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    rule VARCHAR(255) NOT NULL,
    rule_id UUID,
    state VARCHAR(16) NOT NULL,
    severity VARCHAR(16),
    value FLOAT,
    threshold FLOAT,
    labels JSONB,
    annotations JSONB,
    fingerprint VARCHAR(64),
    started_at TIMESTAMPTZ NOT NULL,
    resolved_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_alert_events_started_at ON {schema}.alert_events(started_at DESC);
CREATE INDEX IF NOT EXISTS idx_alert_events_rule ON {schema}.alert_events(rule, started_at DESC);
"#;

const V3_BATCHES_AND_DEAD_LETTERS: &str = r#"
CREATE TABLE IF NOT EXISTS {schema}.magpie_batches (
    batch_id UUID PRIMARY KEY,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    items INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_magpie_batches_committed_at ON {schema}.magpie_batches(committed_at);

CREATE TABLE IF NOT EXISTS {schema}.dead_letter (
    id BIGSERIAL PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    batch_id UUID,
    table_name TEXT NOT NULL,
    row_data JSONB NOT NULL,
    sqlstate VARCHAR(5),
    error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_dead_letter_created_at ON {schema}.dead_letter(created_at DESC);
"#;

/// One row per error group, updated in place: an aggregate, not partitioned.
const V4_ERROR_GROUPS: &str = r#"
CREATE TABLE IF NOT EXISTS {schema}.error_groups (
    fingerprint TEXT PRIMARY KEY,
    service_name TEXT,
    error_type TEXT NOT NULL,
    message TEXT NOT NULL,
    culprit TEXT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    occurrences BIGINT NOT NULL,
    last_trace_id VARCHAR(32),
    last_span_id VARCHAR(16),
    last_message TEXT,
    stacktrace TEXT,
    attributes JSONB
);
CREATE INDEX IF NOT EXISTS idx_error_groups_last_seen ON {schema}.error_groups(last_seen DESC);
CREATE INDEX IF NOT EXISTS idx_error_groups_service ON {schema}.error_groups(service_name, last_seen DESC);
"#;

/// A query the admin dashboard's endpoints run, and the index it relies on
/// (partition indexes are named `<partition>_<columns>_idx` after the seed's indexes).
pub struct DashboardQuery {
    pub endpoint: &'static str,
    pub sql: &'static str,
    pub index_suffix: &'static str,
}

/// The dashboard's queries over these tables, documented in the README and
/// checked against `EXPLAIN` by a test. `{schema}` stands for the schema.
pub const DASHBOARD_QUERIES: &[DashboardQuery] = &[
    DashboardQuery {
        endpoint: "/api/admin/analytics/overview",
        sql: "SELECT count(*) AS requests, avg(response_time_ms) AS avg_ms, \
              percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms) AS p95_ms, \
              count(*) FILTER (WHERE status_code >= 500) AS errors, count(DISTINCT user_email) AS users \
              FROM {schema}.request_metrics WHERE timestamp > now() - interval '24 hours'",
        index_suffix: "_timestamp_idx",
    },
    DashboardQuery {
        endpoint: "/api/admin/analytics/queries",
        sql: "SELECT date_trunc('hour', timestamp) AS hour, count(*) AS requests, avg(response_time_ms) AS avg_ms \
              FROM {schema}.request_metrics WHERE timestamp > now() - interval '24 hours' GROUP BY 1 ORDER BY 1",
        index_suffix: "_timestamp_idx",
    },
    DashboardQuery {
        endpoint: "/api/admin/analytics/categories",
        sql: "SELECT query_type, count(*) AS calls, avg(elapsed_ms) AS avg_ms, sum(total_tokens) AS tokens, \
              sum(cost_usd) AS cost_usd FROM {schema}.llm_call_metrics \
              WHERE timestamp > now() - interval '24 hours' GROUP BY query_type ORDER BY calls DESC",
        index_suffix: "_timestamp_idx",
    },
    DashboardQuery {
        endpoint: "/api/admin/analytics/departments",
        sql: "SELECT department, count(*) AS requests, count(DISTINCT user_email) AS users, \
              avg(response_time_ms) AS avg_ms FROM {schema}.request_metrics \
              WHERE timestamp > now() - interval '24 hours' GROUP BY department ORDER BY requests DESC",
        index_suffix: "_timestamp_idx",
    },
    DashboardQuery {
        endpoint: "/api/admin/analytics/errors?limit=20",
        sql: "SELECT timestamp, method, path, status_code, response_time_ms, user_email, trace_id \
              FROM {schema}.request_metrics WHERE status_code >= 500 ORDER BY timestamp DESC LIMIT 20",
        index_suffix: "_timestamp_idx",
    },
    DashboardQuery {
        endpoint: "/api/admin/analytics/realtime",
        sql: "SELECT timestamp, metric_value FROM {schema}.system_metrics \
              WHERE metric_name = 'system.cpu.utilization' AND timestamp > now() - interval '5 minutes' \
              ORDER BY timestamp DESC",
        index_suffix: "_metric_name_timestamp_idx",
    },
    DashboardQuery {
        endpoint: "/api/admin/analytics/dashboard (one route)",
        sql: "SELECT count(*) AS requests, avg(response_time_ms) AS avg_ms FROM {schema}.request_metrics \
              WHERE path = '/api/admin/analytics/overview'",
        index_suffix: "_path_idx",
    },
    DashboardQuery {
        endpoint: "/api/admin/analytics/dashboard (a user's requests)",
        sql: "SELECT timestamp, method, path, status_code, response_time_ms FROM {schema}.request_metrics \
              WHERE user_email = 'nobody@example.com' ORDER BY timestamp DESC LIMIT 50",
        index_suffix: "_user_email_idx",
    },
    DashboardQuery {
        endpoint: "/api/admin/analytics/dashboard (LLM spend per model)",
        sql: "SELECT count(*) AS calls, sum(total_tokens) AS tokens, sum(cost_usd) AS cost_usd \
              FROM {schema}.llm_call_metrics WHERE model = 'claude-sonnet-4'",
        index_suffix: "_model_idx",
    },
    DashboardQuery {
        endpoint: "/api/admin/analytics/dashboard (LLM spend of a user)",
        sql: "SELECT count(*) AS calls, sum(cost_usd) AS cost_usd FROM {schema}.llm_call_metrics \
              WHERE user_email = 'nobody@example.com' AND timestamp > now() - interval '30 days'",
        index_suffix: "_user_email_idx",
    },
    DashboardQuery {
        endpoint: "trace view (all spans of a trace)",
        sql: "SELECT span_id, parent_span_id, operation_name, start_time, duration_ms, status_code, tags, logs \
              FROM {schema}.trace_spans WHERE trace_id = '4bf92f3577b34da6a3ce929d0e0e4736' ORDER BY start_time",
        index_suffix: "_trace_id_idx",
    },
    DashboardQuery {
        endpoint: "trace list (recent root spans)",
        sql: "SELECT trace_id, operation_name, start_time, duration_ms FROM {schema}.trace_spans \
              WHERE start_time > now() - interval '1 hour' AND parent_span_id IS NULL \
              ORDER BY start_time DESC LIMIT 50",
        index_suffix: "_start_time_idx",
    },
    DashboardQuery {
        endpoint: "trace search by operation",
        sql: "SELECT trace_id, start_time, duration_ms FROM {schema}.trace_spans \
              WHERE operation_name = 'db.query' ORDER BY start_time DESC LIMIT 50",
        index_suffix: "_operation_name_idx",
    },
    DashboardQuery {
        endpoint: "error groups (most recent)",
        sql: "SELECT fingerprint, service_name, error_type, message, culprit, occurrences, first_seen, last_seen, \
              last_trace_id, attributes FROM {schema}.error_groups ORDER BY last_seen DESC LIMIT 20",
        index_suffix: "idx_error_groups_last_seen",
    },
    DashboardQuery {
        endpoint: "error groups of a service",
        sql: "SELECT fingerprint, error_type, message, culprit, occurrences, last_seen FROM {schema}.error_groups \
              WHERE service_name = 'chatbot' AND last_seen > now() - interval '24 hours' \
              ORDER BY last_seen DESC LIMIT 20",
        index_suffix: "idx_error_groups_service",
    },
];

/// Whether `s` is usable as a schema name without quoting surprises:
/// lowercase letters, digits and `_`, not starting with a digit, at most 63 bytes.
pub fn valid_schema_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

/// The schema name as a quoted identifier.
pub fn quoted(schema: &str) -> String {
    format!("\"{}\"", schema.replace('"', "\"\""))
}

/// The advisory lock key for `purpose` on `schema` (hashed by the server).
fn lock_sql(purpose: &str, schema: &str) -> String {
    format!("SELECT pg_advisory_xact_lock(hashtext('magpie:{purpose}:{schema}'))")
}

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this run, in order.
    pub applied: Vec<i32>,
    /// The schema's version afterwards.
    pub version: i32,
}

/// Applies every missing migration to `schema`, under the advisory lock.
pub async fn migrate(client: &mut tokio_postgres::Client, schema: &str) -> Result<MigrationReport, PgError> {
    let q = quoted(schema);
    let ctx = |what: &str| format!("migrating schema {schema}: {what}");
    let tx = client.transaction().await.map_err(|e| PgError::Db { context: ctx("begin"), source: e })?;
    tx.batch_execute(&lock_sql("migrate", schema))
        .await
        .map_err(|e| PgError::Db { context: ctx("taking the migration lock"), source: e })?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {q};
         CREATE TABLE IF NOT EXISTS {q}.schema_migrations (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
         );"
    ))
    .await
    .map_err(|e| PgError::Db { context: ctx("creating schema_migrations"), source: e })?;
    let rows = tx
        .query(&format!("SELECT version FROM {q}.schema_migrations"), &[])
        .await
        .map_err(|e| PgError::Db { context: ctx("reading schema_migrations"), source: e })?;
    let done: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        tx.batch_execute(&m.sql.replace("{schema}", &q)).await.map_err(|e| PgError::Db {
            context: ctx(&format!("applying version {} ({})", m.version, m.name)),
            source: e,
        })?;
        tx.execute(
            &format!("INSERT INTO {q}.schema_migrations (version, name) VALUES ($1, $2)"),
            &[&m.version, &m.name],
        )
        .await
        .map_err(|e| PgError::Db { context: ctx("recording a version"), source: e })?;
        applied.push(m.version);
    }
    tx.commit().await.map_err(|e| PgError::Db { context: ctx("commit"), source: e })?;
    let version = done.iter().chain(&applied).copied().max().unwrap_or(0);
    Ok(MigrationReport { applied, version })
}

/// The partition of `table` for `day`.
pub fn partition_name(table: Table, day: Day) -> String {
    format!("{}_p{}", table.name(), day.compact())
}

/// The day a partition of `table` covers, from its name.
pub fn partition_day(table: Table, name: &str) -> Option<Day> {
    name.strip_prefix(table.name())?.strip_prefix("_p").and_then(Day::parse_compact)
}

/// The days that should have a partition: yesterday through `ahead` days from today.
pub fn wanted_days(now_nanos: u64, ahead: u32) -> Vec<Day> {
    let today = Day::of_nanos(now_nanos);
    (-1..=i64::from(ahead)).map(|d| today.plus(d)).collect()
}

/// Whether a partition for `day` is entirely older than `now - retention`.
pub fn expired(day: Day, now_nanos: u64, retention: Duration) -> bool {
    let cutoff = now_nanos.saturating_sub(u64::try_from(retention.as_nanos()).unwrap_or(u64::MAX));
    day.plus(1).start_nanos() <= cutoff && day.plus(1).start_nanos() > 0
}

/// What a maintenance run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub created: Vec<String>,
    pub dropped: Vec<String>,
    /// Rows deleted from default partitions, unpartitioned tables, the
    /// batch ledger and error groups because they are older than the retention.
    pub deleted_rows: u64,
    /// Tables found without partitioning (adopted from a hand-made seed schema).
    pub unpartitioned: Vec<String>,
}

/// Creates missing daily partitions from yesterday to `ahead` days ahead and,
/// when `retention` is set, drops partitions and deletes rows older than it.
/// Tables that are not partitioned only get the row deletion: for
/// `error_groups`, the groups whose `last_seen` is older than the retention.
pub async fn maintain(
    client: &mut tokio_postgres::Client,
    schema: &str,
    tables: &[Table],
    now_nanos: u64,
    ahead: u32,
    retention: Option<Duration>,
) -> Result<MaintenanceReport, PgError> {
    let q = quoted(schema);
    let mut report = MaintenanceReport::default();
    for &table in tables {
        let parent = format!("{q}.{}", table.name());
        let kind: Option<i8> = client
            .query_opt(
                "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&schema, &table.name()],
            )
            .await
            .map_err(PgError::db("reading the table kind"))?
            .map(|r| r.get(0));
        let Some(kind) = kind else { continue };
        let partitioned = kind as u8 == b'p';
        if !partitioned && table.partitioned() {
            report.unpartitioned.push(table.name().to_string());
        }
        if partitioned {
            let existing: Vec<String> = client
                .query(
                    "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = (SELECT p.oid FROM pg_class p JOIN pg_namespace n ON n.oid = p.relnamespace
                                          WHERE n.nspname = $1 AND p.relname = $2)",
                    &[&schema, &table.name()],
                )
                .await
                .map_err(PgError::db("listing partitions"))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for day in wanted_days(now_nanos, ahead) {
                let name = partition_name(table, day);
                if existing.contains(&name) {
                    continue;
                }
                if retention.is_some_and(|r| expired(day, now_nanos, r)) {
                    continue;
                }
                create_partition(client, schema, table, day).await?;
                report.created.push(name);
            }
            if let Some(r) = retention {
                for name in &existing {
                    if let Some(day) = partition_day(table, name)
                        && expired(day, now_nanos, r)
                    {
                        drop_partition(client, schema, &q, name).await?;
                        report.dropped.push(name.clone());
                    }
                }
            }
        }
        if let Some(r) = retention {
            let cutoff = now_nanos.saturating_sub(u64::try_from(r.as_nanos()).unwrap_or(u64::MAX));
            let target = if partitioned { format!("{parent}_default") } else { parent.clone() };
            let n = client
                .execute(
                    &format!("DELETE FROM {target} WHERE {} < to_timestamp($1::float8)", table.time_column()),
                    &[&(cutoff as f64 / 1e9)],
                )
                .await
                .map_err(PgError::db("deleting expired rows"))?;
            report.deleted_rows += n;
        }
    }
    if let Some(r) = retention {
        let secs = r.as_secs_f64();
        for (t, col) in [("magpie_batches", "committed_at"), ("dead_letter", "created_at")] {
            report.deleted_rows += client
                .execute(
                    &format!("DELETE FROM {q}.{t} WHERE {col} < now() - make_interval(secs => $1::float8)"),
                    &[&secs],
                )
                .await
                .map_err(PgError::db("deleting expired ledger rows"))?;
        }
    }
    Ok(report)
}

/// Creates one day's partition. Rows of that day already sitting in the
/// default partition (far-future timestamps written earlier) are moved into
/// it, in the same transaction.
async fn create_partition(
    client: &mut tokio_postgres::Client,
    schema: &str,
    table: Table,
    day: Day,
) -> Result<(), PgError> {
    let q = quoted(schema);
    let parent = format!("{q}.{}", table.name());
    let part = format!("{q}.{}", partition_name(table, day));
    let (from, to) = (day.sql_midnight(), day.plus(1).sql_midnight());
    let col = table.time_column();
    let tx = client.transaction().await.map_err(PgError::db("begin"))?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '5s'; {}", lock_sql("partitions", schema)))
        .await
        .map_err(PgError::db("taking the partition lock"))?;
    let stranded = tx
        .query_one(
            &format!("SELECT EXISTS (SELECT 1 FROM {parent}_default WHERE {col} >= {from} AND {col} < {to})"),
            &[],
        )
        .await
        .map_err(PgError::db("checking the default partition"))?
        .get::<_, bool>(0);
    let sql = if stranded {
        format!(
            "LOCK TABLE {parent}_default IN SHARE ROW EXCLUSIVE MODE;
             CREATE TABLE IF NOT EXISTS {part} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
             WITH moved AS (DELETE FROM {parent}_default WHERE {col} >= {from} AND {col} < {to} RETURNING *)
             INSERT INTO {part} SELECT * FROM moved;
             ALTER TABLE {parent} ATTACH PARTITION {part} FOR VALUES FROM ({from}) TO ({to});"
        )
    } else {
        format!("CREATE TABLE IF NOT EXISTS {part} PARTITION OF {parent} FOR VALUES FROM ({from}) TO ({to})")
    };
    tx.batch_execute(&sql)
        .await
        .map_err(|e| PgError::Db { context: format!("creating partition {part}"), source: e })?;
    tx.commit().await.map_err(PgError::db("committing a new partition"))?;
    Ok(())
}

async fn drop_partition(
    client: &mut tokio_postgres::Client,
    schema: &str,
    q: &str,
    name: &str,
) -> Result<(), PgError> {
    let tx = client.transaction().await.map_err(PgError::db("begin"))?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '5s'; {}; DROP TABLE IF EXISTS {q}.\"{name}\"",
        lock_sql("partitions", schema)
    ))
    .await
    .map_err(|e| PgError::Db { context: format!("dropping partition {schema}.{name}"), source: e })?;
    tx.commit().await.map_err(PgError::db("committing a dropped partition"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_documents_every_dashboard_query() {
        let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let readme = norm(include_str!("../../README.md"));
        for q in DASHBOARD_QUERIES {
            let sql = norm(&q.sql.replace("{schema}", "enterprise"));
            assert!(
                readme.contains(&format!("{sql};")),
                "README.md lacks the query of {}:\n{sql}",
                q.endpoint
            );
            assert!(readme.contains(&format!("`{}`:", q.endpoint)), "README.md lacks {}", q.endpoint);
        }
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["enterprise", "magpie_test_1", "_x"] {
            assert!(valid_schema_name(ok), "{ok}");
        }
        for bad in ["", "Enterprise", "1abc", "a-b", "a.b", "a\"b", &"x".repeat(64)] {
            assert!(!valid_schema_name(bad), "{bad}");
        }
        assert_eq!(quoted("enterprise"), "\"enterprise\"");
    }

    #[test]
    fn partitions_are_named_by_day_and_parse_back() {
        let day = Day::from_ymd(2026, 3, 9);
        assert_eq!(partition_name(Table::TraceSpans, day), "trace_spans_p20260309");
        assert_eq!(partition_day(Table::TraceSpans, "trace_spans_p20260309"), Some(day));
        assert_eq!(partition_day(Table::TraceSpans, "trace_spans_default"), None);
        assert_eq!(partition_day(Table::RequestMetrics, "trace_spans_p20260309"), None);
    }

    #[test]
    fn wanted_days_run_from_yesterday_to_ahead() {
        let now = Day::from_ymd(2026, 3, 9).start_nanos() + 3600 * 1_000_000_000;
        let names: Vec<String> = wanted_days(now, 2).into_iter().map(Day::compact).collect();
        assert_eq!(names, ["20260308", "20260309", "20260310", "20260311"]);
    }

    #[test]
    fn a_partition_expires_when_its_whole_day_is_past_the_retention() {
        let now = Day::from_ymd(2026, 3, 31).start_nanos() + 12 * 3600 * 1_000_000_000;
        let thirty = Duration::from_secs(30 * 86_400);
        // Cutoff is 2026-03-01 12:00: Feb 28 is wholly older, Mar 1 is not.
        assert!(expired(Day::from_ymd(2026, 2, 28), now, thirty));
        assert!(!expired(Day::from_ymd(2026, 3, 1), now, thirty));
        assert!(!expired(Day::from_ymd(2026, 3, 31), now, thirty));
    }

    #[test]
    fn migrations_are_numbered_in_order_and_name_the_schema_placeholder() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1);
            assert!(m.sql.contains("{schema}."), "version {} writes outside the schema", m.version);
        }
        assert_eq!(latest_version(), 4);
        // Every column COPY writes is created by the migrations.
        let all: String = MIGRATIONS.iter().map(|m| m.sql).collect();
        for t in Table::ALL {
            let head = format!("CREATE TABLE IF NOT EXISTS {{schema}}.{} (", t.name());
            let start = all.find(&head).map_or(0, |i| i + head.len());
            let block = all[start..].split("\n)").next().unwrap_or_default();
            for c in t.columns() {
                let added = format!("{{schema}}.{} ADD COLUMN IF NOT EXISTS {c} ", t.name());
                assert!(
                    block.contains(&format!("\n    {c} ")) || all.contains(&added),
                    "{}.{c} is written but never created",
                    t.name()
                );
            }
        }
    }
}
