//! The pure core of the `postgresql` receiver: rows of the statistics views,
//! as plain structs, → OTLP metrics. Nothing here does IO; the SQL that
//! fills these structs is in the parent module.
//!
//! Database counters are cumulative sums that start at the database's
//! `stats_reset` (or the server's start when never reset). The cache hit
//! ratio is the one figure computed between two scrapes: blocks found in
//! shared buffers over blocks asked for in the interval, absent when no
//! block was asked for or the counters were reset in between.

use crate::hostmetrics::{Enabled, Kind, MetricDef, double_point, int_point};
use magpie_core::otlp::kv_str;
use magpie_core::proto::common::v1::KeyValue;
use magpie_core::proto::metrics::v1::{Metric, NumberDataPoint};
use std::collections::BTreeMap;

/// Server-wide figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Server {
    pub version: String,
    pub max_connections: u64,
    /// Client backends on the whole server, whatever `databases` says.
    pub connections: u64,
    pub in_recovery: bool,
    /// `pg_postmaster_start_time()`, Unix nanoseconds.
    pub start_time: u64,
}

/// One group of `pg_stat_activity` client backends.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Activity {
    pub database: String,
    pub application_name: String,
    /// `active`, `idle`, `idle in transaction`, ...; `unknown` when the
    /// monitoring role may not see it.
    pub state: String,
    pub count: u64,
    /// Backends of the group waiting on a heavyweight lock.
    pub waiting: u64,
    /// Age of the group's longest-running active query, seconds.
    pub max_query_secs: f64,
    /// Age of the group's oldest open transaction, seconds.
    pub max_xact_secs: f64,
}

/// One row of `pg_stat_database` with the database's size.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Database {
    pub name: String,
    pub backends: u64,
    pub commits: u64,
    pub rollbacks: u64,
    pub blks_read: u64,
    pub blks_hit: u64,
    pub tup_returned: u64,
    pub tup_fetched: u64,
    pub tup_inserted: u64,
    pub tup_updated: u64,
    pub tup_deleted: u64,
    pub temp_files: u64,
    pub temp_bytes: u64,
    pub deadlocks: u64,
    /// `None` when the monitoring role may not see it.
    pub size: Option<u64>,
    /// `stats_reset`, or the server's start when never reset; Unix nanoseconds.
    pub stats_since: u64,
}

/// One row of `pg_stat_replication`, on a primary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replica {
    /// The replica's `application_name`, else its address.
    pub client: String,
    /// WAL bytes the replica has not replayed yet.
    pub data_delay: Option<u64>,
    pub write_lag: Option<f64>,
    pub flush_lag: Option<f64>,
    pub replay_lag: Option<f64>,
}

/// One `pg_stat_statements` entry among the top N.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Statement {
    pub database: String,
    pub query_id: i64,
    /// Normalised by PostgreSQL (constants as `$1`), whitespace collapsed, truncated.
    pub query: String,
    pub calls: u64,
    pub total_secs: f64,
    pub mean_secs: f64,
    pub rows: u64,
}

/// Everything one scrape read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub server: Server,
    pub activity: Vec<Activity>,
    pub databases: Vec<Database>,
    pub replicas: Vec<Replica>,
    /// `None` when `pg_stat_statements` is not installed.
    pub statements: Option<Vec<Statement>>,
}

/// Collapses runs of whitespace to one space and cuts the text to at most
/// `max_chars` characters, marking a cut with `...`.
pub fn normalize_query(query: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(query.len().min(max_chars + 3));
    let mut chars = 0;
    for word in query.split_whitespace() {
        if !out.is_empty() {
            if chars == max_chars {
                return cut(out);
            }
            out.push(' ');
            chars += 1;
        }
        for c in word.chars() {
            if chars == max_chars {
                return cut(out);
            }
            out.push(c);
            chars += 1;
        }
    }
    out
}

/// Marks a cut text: trailing space dropped, `...` added.
fn cut(mut text: String) -> String {
    text.truncate(text.trim_end().len());
    text.push_str("...");
    text
}

// ---------------------------------------------------------------------------
// Metric definitions.

const fn def(
    name: &'static str,
    unit: &'static str,
    kind: Kind,
    description: &'static str,
    default_enabled: bool,
) -> MetricDef {
    MetricDef { name, unit, kind, description, default_enabled }
}

pub const UP: MetricDef = def(
    "postgresql.up",
    "1",
    Kind::Gauge,
    "1 when the last scrape succeeded, 0 when the server could not be reached or queried.",
    true,
);
pub const CONNECTION_COUNT: MetricDef = def(
    "postgresql.connection.count",
    "{connection}",
    Kind::UpDownCounter,
    "Client connections by database, application and state.",
    true,
);
pub const CONNECTION_WAITING: MetricDef = def(
    "postgresql.connection.waiting",
    "{connection}",
    Kind::UpDownCounter,
    "Client connections waiting on a lock, by database and application.",
    true,
);
pub const CONNECTION_MAX: MetricDef = def(
    "postgresql.connection.max",
    "{connection}",
    Kind::UpDownCounter,
    "Configured maximum number of client connections allowed (max_connections).",
    true,
);
pub const CONNECTION_UTILIZATION: MetricDef = def(
    "postgresql.connection.utilization",
    "1",
    Kind::Gauge,
    "Client connections over max_connections: server-side pool saturation.",
    true,
);
pub const QUERY_MAX_DURATION: MetricDef = def(
    "postgresql.query.max_duration",
    "s",
    Kind::Gauge,
    "Age of the longest-running active query, by database.",
    true,
);
pub const TRANSACTION_MAX_DURATION: MetricDef = def(
    "postgresql.transaction.max_duration",
    "s",
    Kind::Gauge,
    "Age of the oldest open transaction, by database.",
    true,
);
pub const BACKENDS: MetricDef =
    def("postgresql.backends", "1", Kind::UpDownCounter, "The number of backends, by database.", true);
pub const DB_SIZE: MetricDef =
    def("postgresql.db_size", "By", Kind::UpDownCounter, "The database disk usage.", true);
pub const COMMITS: MetricDef = def("postgresql.commits", "1", Kind::Counter, "The number of commits.", true);
pub const ROLLBACKS: MetricDef =
    def("postgresql.rollbacks", "1", Kind::Counter, "The number of rollbacks.", true);
pub const BLOCKS_READ: MetricDef = def(
    "postgresql.blocks_read",
    "1",
    Kind::Counter,
    "Blocks asked for, by source: read (from disk or the OS cache) or hit (in shared buffers).",
    true,
);
pub const CACHE_HIT_RATIO: MetricDef = def(
    "postgresql.database.cache_hit_ratio",
    "1",
    Kind::Gauge,
    "Blocks found in shared buffers over blocks asked for since the previous scrape.",
    true,
);
pub const DEADLOCKS: MetricDef =
    def("postgresql.deadlocks", "{deadlock}", Kind::Counter, "The number of deadlocks detected.", true);
pub const TEMP_FILES: MetricDef =
    def("postgresql.temp_files", "{temp_file}", Kind::Counter, "The number of temp files created.", true);
pub const TEMP_IO: MetricDef =
    def("postgresql.temp.io", "By", Kind::Counter, "Bytes written to temporary files by queries.", true);
pub const TUP_RETURNED: MetricDef =
    def("postgresql.tup_returned", "{tuple}", Kind::Counter, "Rows returned by queries.", true);
pub const TUP_FETCHED: MetricDef =
    def("postgresql.tup_fetched", "{tuple}", Kind::Counter, "Rows fetched by queries.", true);
pub const TUP_INSERTED: MetricDef =
    def("postgresql.tup_inserted", "{tuple}", Kind::Counter, "Rows inserted by queries.", true);
pub const TUP_UPDATED: MetricDef =
    def("postgresql.tup_updated", "{tuple}", Kind::Counter, "Rows updated by queries.", true);
pub const TUP_DELETED: MetricDef =
    def("postgresql.tup_deleted", "{tuple}", Kind::Counter, "Rows deleted by queries.", true);
pub const REPLICATION_DATA_DELAY: MetricDef = def(
    "postgresql.replication.data_delay",
    "By",
    Kind::Gauge,
    "WAL bytes a replica has not replayed yet, by replica.",
    true,
);
pub const WAL_LAG: MetricDef = def(
    "postgresql.wal.lag",
    "s",
    Kind::Gauge,
    "Time between flushing recent WAL locally and a replica's write, flush or replay of it.",
    true,
);
pub const STATEMENT_CALLS: MetricDef = def(
    "postgresql.statement.calls",
    "{call}",
    Kind::Counter,
    "Executions of a top statement (pg_stat_statements).",
    true,
);
pub const STATEMENT_TIME: MetricDef = def(
    "postgresql.statement.time",
    "s",
    Kind::Counter,
    "Total execution time of a top statement (pg_stat_statements).",
    true,
);
pub const STATEMENT_MEAN_TIME: MetricDef = def(
    "postgresql.statement.mean_time",
    "s",
    Kind::Gauge,
    "Mean execution time of a top statement (pg_stat_statements).",
    true,
);
pub const STATEMENT_ROWS: MetricDef = def(
    "postgresql.statement.rows",
    "{row}",
    Kind::Counter,
    "Rows retrieved or affected by a top statement (pg_stat_statements).",
    true,
);

/// Every metric the receiver can emit.
pub const METRICS: &[MetricDef] = &[
    UP,
    CONNECTION_COUNT,
    CONNECTION_WAITING,
    CONNECTION_MAX,
    CONNECTION_UTILIZATION,
    QUERY_MAX_DURATION,
    TRANSACTION_MAX_DURATION,
    BACKENDS,
    DB_SIZE,
    COMMITS,
    ROLLBACKS,
    BLOCKS_READ,
    CACHE_HIT_RATIO,
    DEADLOCKS,
    TEMP_FILES,
    TEMP_IO,
    TUP_RETURNED,
    TUP_FETCHED,
    TUP_INSERTED,
    TUP_UPDATED,
    TUP_DELETED,
    REPLICATION_DATA_DELAY,
    WAL_LAG,
    STATEMENT_CALLS,
    STATEMENT_TIME,
    STATEMENT_MEAN_TIME,
    STATEMENT_ROWS,
];

fn db(name: &str) -> Vec<KeyValue> {
    vec![kv_str("database", name)]
}

/// Blocks hit over blocks asked for between `prev` and `cur`: `None`
/// without block access or across a statistics reset.
pub fn cache_hit_ratio(prev: &Database, cur: &Database) -> Option<f64> {
    if cur.stats_since != prev.stats_since {
        return None;
    }
    let hit = cur.blks_hit.checked_sub(prev.blks_hit)?;
    let read = cur.blks_read.checked_sub(prev.blks_read)?;
    let total = hit + read;
    (total > 0).then(|| hit as f64 / total as f64)
}

/// The metrics of one scrape at `now` (Unix nanoseconds), from `cur` and,
/// for the cache hit ratio, the previous scrape `prev`. `postgresql.up` is
/// not among them: the caller adds it.
pub fn metrics(prev: Option<&Snapshot>, cur: &Snapshot, now: u64, enabled: &Enabled) -> Vec<Metric> {
    let mut out = Vec::with_capacity(METRICS.len());
    let server_start = cur.server.start_time;

    // Connections.
    let counts = cur
        .activity
        .iter()
        .map(|a| {
            let attrs = vec![
                kv_str("database", a.database.as_str()),
                kv_str("application_name", a.application_name.as_str()),
                kv_str("state", a.state.as_str()),
            ];
            int_point(a.count, 0, now, attrs)
        })
        .collect();
    enabled.push(&mut out, &CONNECTION_COUNT, counts);
    let mut waiting: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut longest: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for a in &cur.activity {
        *waiting.entry((&a.database, &a.application_name)).or_default() += a.waiting;
        let l = longest.entry(&a.database).or_default();
        l.0 = l.0.max(a.max_query_secs);
        l.1 = l.1.max(a.max_xact_secs);
    }
    let waiting_points = waiting
        .iter()
        .map(|((d, app), n)| {
            int_point(*n, 0, now, vec![kv_str("database", *d), kv_str("application_name", *app)])
        })
        .collect();
    enabled.push(&mut out, &CONNECTION_WAITING, waiting_points);
    if cur.server.max_connections > 0 {
        enabled.push(&mut out, &CONNECTION_MAX, vec![int_point(cur.server.max_connections, 0, now, vec![])]);
        let u = cur.server.connections as f64 / cur.server.max_connections as f64;
        enabled.push(&mut out, &CONNECTION_UTILIZATION, vec![double_point(u, 0, now, vec![])]);
    }
    let q = longest.iter().map(|(d, l)| double_point(l.0, 0, now, db(d))).collect();
    enabled.push(&mut out, &QUERY_MAX_DURATION, q);
    let x = longest.iter().map(|(d, l)| double_point(l.1, 0, now, db(d))).collect();
    enabled.push(&mut out, &TRANSACTION_MAX_DURATION, x);

    // Databases.
    let per_db = |f: fn(&Database) -> u64, counter: bool| -> Vec<NumberDataPoint> {
        cur.databases
            .iter()
            .map(|d| int_point(f(d), if counter { d.stats_since } else { 0 }, now, db(&d.name)))
            .collect()
    };
    enabled.push(&mut out, &BACKENDS, per_db(|d| d.backends, false));
    let sizes = cur.databases.iter().filter_map(|d| Some(int_point(d.size?, 0, now, db(&d.name)))).collect();
    enabled.push(&mut out, &DB_SIZE, sizes);
    enabled.push(&mut out, &COMMITS, per_db(|d| d.commits, true));
    enabled.push(&mut out, &ROLLBACKS, per_db(|d| d.rollbacks, true));
    let blocks = cur
        .databases
        .iter()
        .flat_map(|d| {
            [("read", d.blks_read), ("hit", d.blks_hit)].map(|(source, v)| {
                int_point(
                    v,
                    d.stats_since,
                    now,
                    vec![kv_str("database", d.name.as_str()), kv_str("source", source)],
                )
            })
        })
        .collect();
    enabled.push(&mut out, &BLOCKS_READ, blocks);
    let ratios = cur
        .databases
        .iter()
        .filter_map(|d| {
            let p = prev?.databases.iter().find(|p| p.name == d.name)?;
            Some(double_point(cache_hit_ratio(p, d)?, 0, now, db(&d.name)))
        })
        .collect();
    enabled.push(&mut out, &CACHE_HIT_RATIO, ratios);
    enabled.push(&mut out, &DEADLOCKS, per_db(|d| d.deadlocks, true));
    enabled.push(&mut out, &TEMP_FILES, per_db(|d| d.temp_files, true));
    enabled.push(&mut out, &TEMP_IO, per_db(|d| d.temp_bytes, true));
    enabled.push(&mut out, &TUP_RETURNED, per_db(|d| d.tup_returned, true));
    enabled.push(&mut out, &TUP_FETCHED, per_db(|d| d.tup_fetched, true));
    enabled.push(&mut out, &TUP_INSERTED, per_db(|d| d.tup_inserted, true));
    enabled.push(&mut out, &TUP_UPDATED, per_db(|d| d.tup_updated, true));
    enabled.push(&mut out, &TUP_DELETED, per_db(|d| d.tup_deleted, true));

    // Replication, on a primary with replicas.
    let client = |r: &Replica| vec![kv_str("replication_client", r.client.as_str())];
    let delay =
        cur.replicas.iter().filter_map(|r| Some(int_point(r.data_delay?, 0, now, client(r)))).collect();
    enabled.push(&mut out, &REPLICATION_DATA_DELAY, delay);
    let lags = cur
        .replicas
        .iter()
        .flat_map(|r| {
            [("write", r.write_lag), ("flush", r.flush_lag), ("replay", r.replay_lag)].into_iter().filter_map(
                move |(op, lag)| {
                    let mut attrs = client(r);
                    attrs.push(kv_str("operation", op));
                    Some(double_point(lag?, 0, now, attrs))
                },
            )
        })
        .collect();
    enabled.push(&mut out, &WAL_LAG, lags);

    // Top statements.
    if let Some(statements) = &cur.statements {
        let attrs = |s: &Statement| {
            vec![
                kv_str("database", s.database.as_str()),
                kv_str("query_id", s.query_id.to_string()),
                kv_str("db.query.text", s.query.as_str()),
            ]
        };
        let calls = statements.iter().map(|s| int_point(s.calls, server_start, now, attrs(s))).collect();
        enabled.push(&mut out, &STATEMENT_CALLS, calls);
        let time =
            statements.iter().map(|s| double_point(s.total_secs, server_start, now, attrs(s))).collect();
        enabled.push(&mut out, &STATEMENT_TIME, time);
        let mean = statements.iter().map(|s| double_point(s.mean_secs, 0, now, attrs(s))).collect();
        enabled.push(&mut out, &STATEMENT_MEAN_TIME, mean);
        let rows = statements.iter().map(|s| int_point(s.rows, server_start, now, attrs(s))).collect();
        enabled.push(&mut out, &STATEMENT_ROWS, rows);
    }
    out
}

/// `postgresql.up` at `now`.
pub fn up_metric(up: bool, now: u64) -> Metric {
    UP.build(vec![int_point(u64::from(up), 0, now, vec![])])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostmetrics::MetricToggles;
    use magpie_core::otlp::attr_string;
    use magpie_core::proto::metrics::v1::{metric, number_data_point};

    const NOW: u64 = 1_800_000_000_000_000_000;

    fn all_on() -> Enabled {
        Enabled::new(METRICS, &MetricToggles::new())
    }

    /// Every point of `name` as (attributes rendered `k=v` and sorted, value).
    fn points(ms: &[Metric], name: &str) -> Vec<(String, f64)> {
        let Some(m) = ms.iter().find(|m| m.name == name) else { return Vec::new() };
        let ps = match m.data.as_ref() {
            Some(metric::Data::Gauge(g)) => &g.data_points,
            Some(metric::Data::Sum(s)) => &s.data_points,
            _ => return Vec::new(),
        };
        ps.iter()
            .map(|p| {
                let mut kv: Vec<String> = p
                    .attributes
                    .iter()
                    .map(|a| {
                        format!(
                            "{}={}",
                            a.key,
                            attr_string(std::slice::from_ref(a), &[&a.key]).unwrap_or_default()
                        )
                    })
                    .collect();
                kv.sort();
                let v = match p.value {
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    None => f64::NAN,
                };
                (kv.join(","), v)
            })
            .collect()
    }

    fn activity(db: &str, app: &str, state: &str, count: u64, waiting: u64, q: f64, x: f64) -> Activity {
        Activity {
            database: db.into(),
            application_name: app.into(),
            state: state.into(),
            count,
            waiting,
            max_query_secs: q,
            max_xact_secs: x,
        }
    }

    fn database(name: &str, read: u64, hit: u64, since: u64) -> Database {
        Database {
            name: name.into(),
            blks_read: read,
            blks_hit: hit,
            stats_since: since,
            ..Default::default()
        }
    }

    #[test]
    fn connections_by_state_application_and_database() {
        let snap = Snapshot {
            server: Server { max_connections: 100, connections: 12, ..Default::default() },
            activity: vec![
                activity("app", "chatbot", "active", 2, 1, 3.5, 10.0),
                activity("app", "chatbot", "idle", 5, 0, 0.0, 0.0),
                activity("app", "chatbot", "idle in transaction", 3, 0, 0.0, 42.0),
                activity("app", "worker", "active", 1, 1, 0.5, 0.5),
                activity("postgres", "magpie", "active", 1, 0, 0.0, 0.0),
            ],
            ..Default::default()
        };
        let ms = metrics(None, &snap, NOW, &all_on());
        let count = points(&ms, "postgresql.connection.count");
        assert_eq!(count.len(), 5);
        assert!(
            count.contains(&("application_name=chatbot,database=app,state=idle in transaction".into(), 3.0))
        );
        assert_eq!(
            points(&ms, "postgresql.connection.waiting"),
            vec![
                ("application_name=chatbot,database=app".into(), 1.0),
                ("application_name=worker,database=app".into(), 1.0),
                ("application_name=magpie,database=postgres".into(), 0.0),
            ]
        );
        assert_eq!(points(&ms, "postgresql.connection.max"), vec![(String::new(), 100.0)]);
        assert_eq!(points(&ms, "postgresql.connection.utilization"), vec![(String::new(), 0.12)]);
        assert_eq!(
            points(&ms, "postgresql.query.max_duration"),
            vec![("database=app".into(), 3.5), ("database=postgres".into(), 0.0)]
        );
        assert_eq!(points(&ms, "postgresql.transaction.max_duration")[0], ("database=app".into(), 42.0));
    }

    #[test]
    fn cache_hit_ratio_over_the_interval() {
        let cases = [
            (database("d", 10, 90, 1), database("d", 20, 120, 1), Some(0.75)),
            (database("d", 10, 90, 1), database("d", 10, 90, 1), None),
            (database("d", 10, 90, 1), database("d", 30, 90, 1), Some(0.0)),
            (database("d", 10, 90, 1), database("d", 1, 5, 2), None),
            (database("d", 10, 90, 1), database("d", 5, 100, 1), None),
        ];
        for (prev, cur, want) in cases {
            assert_eq!(cache_hit_ratio(&prev, &cur), want, "{prev:?} → {cur:?}");
        }
        let prev = Snapshot {
            databases: vec![database("a", 0, 0, 1), database("b", 0, 0, 1)],
            ..Default::default()
        };
        let cur = Snapshot {
            databases: vec![database("a", 1, 3, 1), database("c", 1, 1, 1)],
            ..Default::default()
        };
        let ms = metrics(Some(&prev), &cur, NOW, &all_on());
        assert_eq!(points(&ms, "postgresql.database.cache_hit_ratio"), vec![("database=a".into(), 0.75)]);
        assert!(
            points(&metrics(None, &cur, NOW, &all_on()), "postgresql.database.cache_hit_ratio").is_empty()
        );
        assert_eq!(
            points(&ms, "postgresql.blocks_read"),
            vec![
                ("database=a,source=read".into(), 1.0),
                ("database=a,source=hit".into(), 3.0),
                ("database=c,source=read".into(), 1.0),
                ("database=c,source=hit".into(), 1.0),
            ]
        );
    }

    #[test]
    fn database_counters_start_at_stats_reset() {
        let d = Database {
            name: "x".into(),
            commits: 7,
            size: Some(8192),
            stats_since: 42,
            ..Default::default()
        };
        let ms = metrics(None, &Snapshot { databases: vec![d], ..Default::default() }, NOW, &all_on());
        let start = |name: &str| match ms.iter().find(|m| m.name == name).and_then(|m| m.data.as_ref()) {
            Some(metric::Data::Sum(s)) => s.data_points[0].start_time_unix_nano,
            _ => u64::MAX,
        };
        assert_eq!(start("postgresql.commits"), 42);
        assert_eq!(start("postgresql.db_size"), 0);
        assert_eq!(points(&ms, "postgresql.db_size"), vec![("database=x".into(), 8192.0)]);
    }

    #[test]
    fn replication_and_statements() {
        let snap = Snapshot {
            replicas: vec![Replica {
                client: "replica1".into(),
                data_delay: Some(4096),
                write_lag: Some(0.25),
                flush_lag: None,
                replay_lag: Some(1.5),
            }],
            statements: Some(vec![Statement {
                database: "app".into(),
                query_id: -42,
                query: "SELECT $1".into(),
                calls: 3,
                total_secs: 0.5,
                mean_secs: 0.125,
                rows: 3,
            }]),
            ..Default::default()
        };
        let ms = metrics(None, &snap, NOW, &all_on());
        assert_eq!(
            points(&ms, "postgresql.replication.data_delay"),
            vec![("replication_client=replica1".into(), 4096.0)]
        );
        assert_eq!(
            points(&ms, "postgresql.wal.lag"),
            vec![
                ("operation=write,replication_client=replica1".into(), 0.25),
                ("operation=replay,replication_client=replica1".into(), 1.5),
            ]
        );
        let attrs = "database=app,db.query.text=SELECT $1,query_id=-42".to_string();
        assert_eq!(points(&ms, "postgresql.statement.calls"), vec![(attrs.clone(), 3.0)]);
        assert_eq!(points(&ms, "postgresql.statement.mean_time"), vec![(attrs, 0.125)]);
        // Without the extension there is no statement metric at all.
        let ms = metrics(None, &Snapshot::default(), NOW, &all_on());
        assert!(!ms.iter().any(|m| m.name.starts_with("postgresql.statement")));
        assert!(!ms.iter().any(|m| m.name == "postgresql.connection.utilization"));
    }

    #[test]
    fn queries_are_normalised_and_truncated() {
        let cases = [
            ("SELECT  *\n\tFROM t\n WHERE id = $1", 100, "SELECT * FROM t WHERE id = $1"),
            ("SELECT * FROM t", 8, "SELECT *..."),
            ("SELECT * FROM t", 9, "SELECT *..."),
            ("SELECT * FROM t", 15, "SELECT * FROM t"),
            ("INSERT INTO café VALUES ($1)", 16, "INSERT INTO café..."),
            ("  ", 10, ""),
        ];
        for (q, n, want) in cases {
            assert_eq!(normalize_query(q, n), want, "{q:?} at {n}");
        }
    }
}
