//! The pure core of the `redis` receiver: the text of `INFO everything` →
//! [`Info`] → OTLP metrics. Nothing here does IO; the fixtures under
//! `tests/fixtures/redis/` are real outputs of Redis 6.2, Redis 7.0 and
//! Valkey 9.1.
//!
//! Counters are cumulative sums that start when the server started (its
//! `uptime_in_seconds` before the scrape). `redis.keyspace.hit_rate` is the
//! one figure computed between two scrapes: hits over lookups in the
//! interval, absent (not 0) when there was no lookup, when there is no
//! previous scrape, or when the server restarted in between.

use crate::hostmetrics::{Enabled, Kind, MetricDef, double_point, int_point};
use magpie_core::otlp::kv_str;
use magpie_core::proto::metrics::v1::{Metric, NumberDataPoint};
use std::collections::BTreeMap;

/// One keyspace line: `db0:keys=25,expires=5,avg_ttl=3599847`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyspace {
    pub db: u32,
    pub keys: u64,
    pub expires: u64,
    /// Milliseconds; 0 when no key has a TTL.
    pub avg_ttl: u64,
}

/// One `commandstats` line: `cmdstat_get:calls=31,usec=12,...`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandStat {
    /// The command as Redis names it, subcommands included (`client|setname`).
    pub name: String,
    pub calls: u64,
    pub usec: u64,
}

/// A parsed `INFO` answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Info {
    /// Every plain `field:value` line, by field.
    pub fields: BTreeMap<String, String>,
    /// The `# Keyspace` lines, in the server's order.
    pub keyspace: Vec<Keyspace>,
    /// The `# Commandstats` lines, in the server's order.
    pub commands: Vec<CommandStat>,
    /// When the server started, Unix nanoseconds, once [`Info::anchor_start`]
    /// has fixed it; 0 before.
    pub started: u64,
}

/// Parses the text of `INFO` (any sections, `\r\n` or `\n` line ends).
/// Lines that are not `field:value` (section headers, blanks) are skipped;
/// keyspace and commandstats lines are parsed into their own lists, and
/// replica lines (`slave0:ip=...`) are kept as plain fields.
pub fn parse_info(text: &str) -> Info {
    let mut info = Info::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((field, value)) = line.split_once(':') else { continue };
        if let Some(name) = field.strip_prefix("cmdstat_") {
            let (calls, usec) = (sub_field(value, "calls"), sub_field(value, "usec"));
            if let (Some(calls), Some(usec)) = (calls, usec) {
                info.commands.push(CommandStat { name: name.to_string(), calls, usec });
            }
            continue;
        }
        if let Some(db) = field.strip_prefix("db").and_then(|n| n.parse::<u32>().ok())
            && let Some(keys) = sub_field(value, "keys")
        {
            info.keyspace.push(Keyspace {
                db,
                keys,
                expires: sub_field(value, "expires").unwrap_or(0),
                avg_ttl: sub_field(value, "avg_ttl").unwrap_or(0),
            });
            continue;
        }
        info.fields.insert(field.to_string(), value.to_string());
    }
    info
}

/// `name=value` out of a comma-separated list (`keys=25,expires=5`).
fn sub_field(list: &str, name: &str) -> Option<u64> {
    list.split(',').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name)?.1.parse().ok())
}

/// The server's role, as the Collector names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

impl Info {
    /// A field's raw value.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// A field as an unsigned integer (negative or absent: `None`).
    pub fn u64(&self, field: &str) -> Option<u64> {
        self.get(field)?.trim().parse().ok()
    }

    /// The first of `fields` present as an unsigned integer (newer names first).
    pub fn u64_any(&self, fields: &[&str]) -> Option<u64> {
        fields.iter().find_map(|f| self.u64(f))
    }

    /// A field as a finite float.
    pub fn f64(&self, field: &str) -> Option<f64> {
        self.get(field)?.trim().parse::<f64>().ok().filter(|v| v.is_finite())
    }

    /// `redis_version`: the Redis version, or the Redis version a Valkey
    /// server claims compatibility with.
    pub fn version(&self) -> Option<&str> {
        self.get("redis_version")
    }

    /// `valkey_version`, on Valkey servers.
    pub fn valkey_version(&self) -> Option<&str> {
        self.get("valkey_version")
    }

    pub fn role(&self) -> Option<Role> {
        match self.get("role")? {
            "master" => Some(Role::Primary),
            "slave" | "replica" => Some(Role::Replica),
            _ => None,
        }
    }

    /// When the server started, in Unix nanoseconds, given the time of this
    /// answer: the start time of every counter.
    pub fn start_time(&self, now: u64) -> u64 {
        self.u64("uptime_in_seconds").map_or(0, |s| now.saturating_sub(s.saturating_mul(1_000_000_000)))
    }

    /// Fixes [`Info::started`]: the previous answer's when it came from the
    /// same run, so counters keep one start time for the whole run
    /// (`uptime_in_seconds` has whole seconds, so `now - uptime` jitters by
    /// up to a second between scrapes); else `now - uptime`.
    pub fn anchor_start(&mut self, prev: Option<&Info>, now: u64) {
        self.started = match prev {
            Some(p) if p.started != 0 && self.same_run_as(p) => p.started,
            _ => self.start_time(now),
        };
    }

    /// Whether `prev` was taken from the same server run: the same `run_id`
    /// and counters that did not go backwards.
    pub fn same_run_as(&self, prev: &Info) -> bool {
        let same_id = match (self.get("run_id"), prev.get("run_id")) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        let not_back = |f: &str| match (self.u64(f), prev.u64(f)) {
            (Some(a), Some(b)) => a >= b,
            _ => true,
        };
        same_id && not_back("uptime_in_seconds") && not_back("keyspace_hits") && not_back("keyspace_misses")
    }

    /// Hits over lookups since `prev`: `None` without lookups, across a
    /// restart, or when either figure is missing.
    pub fn hit_rate_since(&self, prev: &Info) -> Option<f64> {
        if !self.same_run_as(prev) {
            return None;
        }
        let hits = self.u64("keyspace_hits")?.checked_sub(prev.u64("keyspace_hits")?)?;
        let misses = self.u64("keyspace_misses")?.checked_sub(prev.u64("keyspace_misses")?)?;
        let lookups = hits + misses;
        (lookups > 0).then(|| hits as f64 / lookups as f64)
    }
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
    "redis.up",
    "1",
    Kind::Gauge,
    "1 when the last INFO succeeded, 0 when the server did not answer.",
    true,
);
pub const UPTIME: MetricDef =
    def("redis.uptime", "s", Kind::Counter, "Number of seconds since Redis server start.", true);
pub const CPU_TIME: MetricDef =
    def("redis.cpu.time", "s", Kind::Counter, "CPU consumed by the Redis server since server start.", true);
pub const CLIENTS_CONNECTED: MetricDef = def(
    "redis.clients.connected",
    "{client}",
    Kind::UpDownCounter,
    "Number of client connections (excluding connections from replicas).",
    true,
);
pub const CLIENTS_BLOCKED: MetricDef = def(
    "redis.clients.blocked",
    "{client}",
    Kind::UpDownCounter,
    "Number of clients pending on a blocking call.",
    true,
);
pub const CLIENTS_MAX_INPUT: MetricDef = def(
    "redis.clients.max_input_buffer",
    "By",
    Kind::Gauge,
    "Biggest input buffer among current client connections.",
    true,
);
pub const CLIENTS_MAX_OUTPUT: MetricDef = def(
    "redis.clients.max_output_buffer",
    "By",
    Kind::Gauge,
    "Biggest output buffer among current client connections.",
    true,
);
pub const CONNECTIONS_RECEIVED: MetricDef = def(
    "redis.connections.received",
    "{connection}",
    Kind::Counter,
    "Total number of connections accepted by the server.",
    true,
);
pub const CONNECTIONS_REJECTED: MetricDef = def(
    "redis.connections.rejected",
    "{connection}",
    Kind::Counter,
    "Number of connections rejected because of the maxclients limit.",
    true,
);
pub const MEMORY_USED: MetricDef =
    def("redis.memory.used", "By", Kind::Gauge, "Bytes allocated by Redis using its allocator.", true);
pub const MEMORY_PEAK: MetricDef =
    def("redis.memory.peak", "By", Kind::Gauge, "Peak memory consumed by Redis.", true);
pub const MEMORY_RSS: MetricDef = def(
    "redis.memory.rss",
    "By",
    Kind::Gauge,
    "Bytes that Redis allocated as seen by the operating system.",
    true,
);
pub const MEMORY_LUA: MetricDef =
    def("redis.memory.lua", "By", Kind::Gauge, "Bytes used by the Lua engine.", true);
pub const MEMORY_FRAGMENTATION: MetricDef = def(
    "redis.memory.fragmentation_ratio",
    "1",
    Kind::Gauge,
    "Ratio between used_memory_rss and used_memory.",
    true,
);
pub const MAXMEMORY: MetricDef = def(
    "redis.maxmemory",
    "By",
    Kind::Gauge,
    "The maxmemory configuration directive; absent when there is no limit.",
    true,
);
pub const KEYSPACE_HITS: MetricDef = def(
    "redis.keyspace.hits",
    "{hit}",
    Kind::Counter,
    "Number of successful lookups of keys in the main dictionary.",
    true,
);
pub const KEYSPACE_MISSES: MetricDef = def(
    "redis.keyspace.misses",
    "{miss}",
    Kind::Counter,
    "Number of failed lookups of keys in the main dictionary.",
    true,
);
pub const KEYSPACE_HIT_RATE: MetricDef = def(
    "redis.keyspace.hit_rate",
    "1",
    Kind::Gauge,
    "Hits over lookups since the previous scrape; absent when there was no lookup.",
    true,
);
pub const KEYS_EXPIRED: MetricDef =
    def("redis.keys.expired", "{event}", Kind::Counter, "Total number of key expiration events.", true);
pub const KEYS_EVICTED: MetricDef = def(
    "redis.keys.evicted",
    "{key}",
    Kind::Counter,
    "Number of evicted keys due to the maxmemory limit.",
    true,
);
pub const COMMANDS: MetricDef =
    def("redis.commands", "{ops}/s", Kind::Gauge, "Number of commands processed per second.", true);
pub const COMMANDS_PROCESSED: MetricDef = def(
    "redis.commands.processed",
    "{command}",
    Kind::Counter,
    "Total number of commands processed by the server.",
    true,
);
pub const NET_INPUT: MetricDef =
    def("redis.net.input", "By", Kind::Counter, "Total number of bytes read from the network.", true);
pub const NET_OUTPUT: MetricDef =
    def("redis.net.output", "By", Kind::Counter, "Total number of bytes written to the network.", true);
pub const LATEST_FORK: MetricDef =
    def("redis.latest_fork", "us", Kind::Gauge, "Duration of the latest fork operation.", true);
pub const DB_KEYS: MetricDef = def("redis.db.keys", "{key}", Kind::Gauge, "Number of keyspace keys.", true);
pub const DB_EXPIRES: MetricDef =
    def("redis.db.expires", "{key}", Kind::Gauge, "Number of keyspace keys with an expiration.", true);
pub const DB_AVG_TTL: MetricDef =
    def("redis.db.avg_ttl", "ms", Kind::Gauge, "Average TTL of the keys with an expiration.", true);
pub const ROLE: MetricDef = def(
    "redis.role",
    "{role}",
    Kind::UpDownCounter,
    "The server's role: 1 with the role as attribute.",
    true,
);
pub const SLAVES_CONNECTED: MetricDef =
    def("redis.slaves.connected", "{replica}", Kind::UpDownCounter, "Number of connected replicas.", true);
pub const REPLICATION_OFFSET: MetricDef =
    def("redis.replication.offset", "By", Kind::Gauge, "The server's current replication offset.", true);
pub const REPLICATION_BACKLOG_FIRST: MetricDef = def(
    "redis.replication.backlog_first_byte_offset",
    "By",
    Kind::Gauge,
    "The master offset of the replication backlog buffer.",
    true,
);
pub const REPLICATION_REPLICA_OFFSET: MetricDef = def(
    "redis.replication.replica_offset",
    "By",
    Kind::Gauge,
    "A replica's offset of the replication stream it has processed; replicas only.",
    true,
);
pub const RDB_CHANGES: MetricDef = def(
    "redis.rdb.changes_since_last_save",
    "{change}",
    Kind::UpDownCounter,
    "Number of changes since the last dump.",
    true,
);
pub const RDB_LAST_BGSAVE_OK: MetricDef = def(
    "redis.rdb.last_bgsave.ok",
    "1",
    Kind::Gauge,
    "1 when the last RDB background save succeeded, 0 when it failed.",
    true,
);
pub const AOF_ENABLED: MetricDef =
    def("redis.aof.enabled", "1", Kind::Gauge, "1 when append-only-file persistence is on.", true);
pub const AOF_REWRITE_IN_PROGRESS: MetricDef =
    def("redis.aof.rewrite_in_progress", "1", Kind::Gauge, "1 while an AOF rewrite is running.", true);
pub const AOF_LAST_WRITE_OK: MetricDef = def(
    "redis.aof.last_write.ok",
    "1",
    Kind::Gauge,
    "1 when the last AOF write succeeded, 0 when it failed.",
    true,
);
pub const CMD_CALLS: MetricDef =
    def("redis.cmd.calls", "{call}", Kind::Counter, "Total number of calls for a command.", true);
pub const CMD_USEC: MetricDef =
    def("redis.cmd.usec", "us", Kind::Counter, "Total time for all executions of this command.", true);

/// Every metric the receiver can emit.
pub const METRICS: &[MetricDef] = &[
    UP,
    UPTIME,
    CPU_TIME,
    CLIENTS_CONNECTED,
    CLIENTS_BLOCKED,
    CLIENTS_MAX_INPUT,
    CLIENTS_MAX_OUTPUT,
    CONNECTIONS_RECEIVED,
    CONNECTIONS_REJECTED,
    MEMORY_USED,
    MEMORY_PEAK,
    MEMORY_RSS,
    MEMORY_LUA,
    MEMORY_FRAGMENTATION,
    MAXMEMORY,
    KEYSPACE_HITS,
    KEYSPACE_MISSES,
    KEYSPACE_HIT_RATE,
    KEYS_EXPIRED,
    KEYS_EVICTED,
    COMMANDS,
    COMMANDS_PROCESSED,
    NET_INPUT,
    NET_OUTPUT,
    LATEST_FORK,
    DB_KEYS,
    DB_EXPIRES,
    DB_AVG_TTL,
    ROLE,
    SLAVES_CONNECTED,
    REPLICATION_OFFSET,
    REPLICATION_BACKLOG_FIRST,
    REPLICATION_REPLICA_OFFSET,
    RDB_CHANGES,
    RDB_LAST_BGSAVE_OK,
    AOF_ENABLED,
    AOF_REWRITE_IN_PROGRESS,
    AOF_LAST_WRITE_OK,
    CMD_CALLS,
    CMD_USEC,
];

/// `INFO` CPU fields and the `state` attribute each becomes.
const CPU_STATES: &[(&str, &str)] = &[
    ("used_cpu_sys", "sys"),
    ("used_cpu_user", "user"),
    ("used_cpu_sys_children", "sys_children"),
    ("used_cpu_user_children", "user_children"),
    ("used_cpu_sys_main_thread", "sys_main_thread"),
    ("used_cpu_user_main_thread", "user_main_thread"),
];

/// The metrics of one scrape at `now` (Unix nanoseconds), from `cur` and,
/// for the hit rate, the previous scrape `prev`. `redis.up` is not among
/// them: the caller adds it (it is the one metric a failed scrape has).
pub fn metrics(prev: Option<&Info>, cur: &Info, now: u64, enabled: &Enabled) -> Vec<Metric> {
    let start = if cur.started != 0 { cur.started } else { cur.start_time(now) };
    let mut out = Vec::with_capacity(METRICS.len());
    let int = |v: Option<u64>, s: u64| v.map(|v| vec![int_point(v, s, now, vec![])]).unwrap_or_default();
    let dbl = |v: Option<f64>, s: u64| v.map(|v| vec![double_point(v, s, now, vec![])]).unwrap_or_default();
    let flag = |v: Option<bool>| int(v.map(u64::from), 0);
    let status_ok = |field: &str| cur.get(field).map(|s| s == "ok");

    enabled.push(&mut out, &UPTIME, int(cur.u64("uptime_in_seconds"), start));
    let cpu: Vec<NumberDataPoint> = CPU_STATES
        .iter()
        .filter_map(|(field, state)| {
            Some(double_point(cur.f64(field)?, start, now, vec![kv_str("state", *state)]))
        })
        .collect();
    enabled.push(&mut out, &CPU_TIME, cpu);
    enabled.push(&mut out, &CLIENTS_CONNECTED, int(cur.u64("connected_clients"), start));
    enabled.push(&mut out, &CLIENTS_BLOCKED, int(cur.u64("blocked_clients"), start));
    let max_in = cur.u64_any(&["client_recent_max_input_buffer", "client_biggest_input_buf"]);
    enabled.push(&mut out, &CLIENTS_MAX_INPUT, int(max_in, 0));
    let max_out = cur.u64_any(&["client_recent_max_output_buffer", "client_longest_output_list"]);
    enabled.push(&mut out, &CLIENTS_MAX_OUTPUT, int(max_out, 0));
    enabled.push(&mut out, &CONNECTIONS_RECEIVED, int(cur.u64("total_connections_received"), start));
    enabled.push(&mut out, &CONNECTIONS_REJECTED, int(cur.u64("rejected_connections"), start));
    enabled.push(&mut out, &MEMORY_USED, int(cur.u64("used_memory"), 0));
    enabled.push(&mut out, &MEMORY_PEAK, int(cur.u64("used_memory_peak"), 0));
    enabled.push(&mut out, &MEMORY_RSS, int(cur.u64("used_memory_rss"), 0));
    enabled.push(&mut out, &MEMORY_LUA, int(cur.u64_any(&["used_memory_lua", "used_memory_vm_eval"]), 0));
    enabled.push(&mut out, &MEMORY_FRAGMENTATION, dbl(cur.f64("mem_fragmentation_ratio"), 0));
    enabled.push(&mut out, &MAXMEMORY, int(cur.u64("maxmemory").filter(|m| *m > 0), 0));
    enabled.push(&mut out, &KEYSPACE_HITS, int(cur.u64("keyspace_hits"), start));
    enabled.push(&mut out, &KEYSPACE_MISSES, int(cur.u64("keyspace_misses"), start));
    enabled.push(&mut out, &KEYSPACE_HIT_RATE, dbl(prev.and_then(|p| cur.hit_rate_since(p)), 0));
    enabled.push(&mut out, &KEYS_EXPIRED, int(cur.u64("expired_keys"), start));
    enabled.push(&mut out, &KEYS_EVICTED, int(cur.u64("evicted_keys"), start));
    enabled.push(&mut out, &COMMANDS, int(cur.u64("instantaneous_ops_per_sec"), 0));
    enabled.push(&mut out, &COMMANDS_PROCESSED, int(cur.u64("total_commands_processed"), start));
    enabled.push(&mut out, &NET_INPUT, int(cur.u64("total_net_input_bytes"), start));
    enabled.push(&mut out, &NET_OUTPUT, int(cur.u64("total_net_output_bytes"), start));
    enabled.push(&mut out, &LATEST_FORK, int(cur.u64("latest_fork_usec"), 0));

    let per_db = |f: fn(&Keyspace) -> u64| -> Vec<NumberDataPoint> {
        cur.keyspace.iter().map(|k| int_point(f(k), 0, now, vec![kv_str("db", k.db.to_string())])).collect()
    };
    enabled.push(&mut out, &DB_KEYS, per_db(|k| k.keys));
    enabled.push(&mut out, &DB_EXPIRES, per_db(|k| k.expires));
    enabled.push(&mut out, &DB_AVG_TTL, per_db(|k| k.avg_ttl));

    let role = cur.role().map(|r| vec![int_point(1, start, now, vec![kv_str("role", r.as_str())])]);
    enabled.push(&mut out, &ROLE, role.unwrap_or_default());
    enabled.push(&mut out, &SLAVES_CONNECTED, int(cur.u64("connected_slaves"), start));
    enabled.push(&mut out, &REPLICATION_OFFSET, int(cur.u64("master_repl_offset"), 0));
    enabled.push(&mut out, &REPLICATION_BACKLOG_FIRST, int(cur.u64("repl_backlog_first_byte_offset"), 0));
    let replica_offset = cur.u64("slave_repl_offset").filter(|_| cur.role() == Some(Role::Replica));
    enabled.push(&mut out, &REPLICATION_REPLICA_OFFSET, int(replica_offset, 0));

    enabled.push(&mut out, &RDB_CHANGES, int(cur.u64("rdb_changes_since_last_save"), start));
    enabled.push(&mut out, &RDB_LAST_BGSAVE_OK, flag(status_ok("rdb_last_bgsave_status")));
    enabled.push(&mut out, &AOF_ENABLED, flag(cur.u64("aof_enabled").map(|v| v == 1)));
    enabled.push(
        &mut out,
        &AOF_REWRITE_IN_PROGRESS,
        flag(cur.u64("aof_rewrite_in_progress").map(|v| v == 1)),
    );
    enabled.push(&mut out, &AOF_LAST_WRITE_OK, flag(status_ok("aof_last_write_status")));

    let per_cmd = |f: fn(&CommandStat) -> u64| -> Vec<NumberDataPoint> {
        cur.commands
            .iter()
            .map(|c| int_point(f(c), start, now, vec![kv_str("cmd", c.name.as_str())]))
            .collect()
    };
    enabled.push(&mut out, &CMD_CALLS, per_cmd(|c| c.calls));
    enabled.push(&mut out, &CMD_USEC, per_cmd(|c| c.usec));
    out
}

/// `redis.up` at `now`.
pub fn up_metric(up: bool, now: u64) -> Metric {
    UP.build(vec![int_point(u64::from(up), 0, now, vec![])])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostmetrics::MetricToggles;
    use magpie_core::proto::metrics::v1::{metric, number_data_point};

    const REDIS6: &str = include_str!("../../tests/fixtures/redis/redis6.txt");
    const REDIS7: &str = include_str!("../../tests/fixtures/redis/redis7.txt");
    const VALKEY: &str = include_str!("../../tests/fixtures/redis/valkey.txt");
    const PRIMARY: &str = include_str!("../../tests/fixtures/redis/redis7-master.txt");
    const REPLICA: &str = include_str!("../../tests/fixtures/redis/redis7-replica.txt");
    const NOW: u64 = 1_800_000_000_000_000_000;

    fn all_on() -> Enabled {
        Enabled::new(METRICS, &MetricToggles::new())
    }

    /// The value of `name`'s point whose attributes include `attr` (or the
    /// only point when `attr` is `None`), as f64.
    fn value(ms: &[Metric], name: &str, attr: Option<(&str, &str)>) -> Option<f64> {
        let m = ms.iter().find(|m| m.name == name)?;
        let points = match m.data.as_ref()? {
            metric::Data::Gauge(g) => &g.data_points,
            metric::Data::Sum(s) => &s.data_points,
            _ => return None,
        };
        let p = points.iter().find(|p| match attr {
            None => true,
            Some((k, v)) => magpie_core::otlp::attr_string(&p.attributes, &[k]).as_deref() == Some(v),
        })?;
        match p.value? {
            number_data_point::Value::AsInt(i) => Some(i as f64),
            number_data_point::Value::AsDouble(d) => Some(d),
        }
    }

    /// What one fixture must yield: (fixture, version, valkey version, expected values).
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static [(&'static str, Option<(&'static str, &'static str)>, f64)],
    );

    #[test]
    fn parses_every_fixture() {
        let cases: &[Case] = &[
            (
                REDIS6,
                "6.2.14",
                None,
                &[
                    ("redis.keyspace.hits", None, 20.0),
                    ("redis.keyspace.misses", None, 11.0),
                    ("redis.keys.expired", None, 1.0),
                    ("redis.clients.connected", None, 1.0),
                    ("redis.db.keys", Some(("db", "0")), 25.0),
                    ("redis.db.expires", Some(("db", "0")), 5.0),
                    ("redis.db.keys", Some(("db", "2")), 4.0),
                    ("redis.db.avg_ttl", Some(("db", "2")), 599_847.0),
                    ("redis.cmd.calls", Some(("cmd", "get")), 31.0),
                    ("redis.cmd.calls", Some(("cmd", "set")), 29.0),
                    ("redis.role", Some(("role", "primary")), 1.0),
                    ("redis.aof.enabled", None, 0.0),
                    ("redis.rdb.last_bgsave.ok", None, 1.0),
                ],
            ),
            (
                REDIS7,
                "7.0.15",
                None,
                &[
                    ("redis.keyspace.hits", None, 20.0),
                    ("redis.keyspace.misses", None, 11.0),
                    ("redis.db.keys", Some(("db", "0")), 25.0),
                    ("redis.db.avg_ttl", Some(("db", "0")), 3_599_847.0),
                    ("redis.cmd.calls", Some(("cmd", "get")), 31.0),
                    ("redis.cmd.usec", Some(("cmd", "get")), 12.0),
                    ("redis.cmd.calls", Some(("cmd", "hset")), 1.0),
                    ("redis.aof.last_write.ok", None, 1.0),
                ],
            ),
            (
                VALKEY,
                "7.2.4",
                Some("9.1.2"),
                &[
                    ("redis.keyspace.hits", None, 20.0),
                    ("redis.keyspace.misses", None, 11.0),
                    ("redis.db.keys", Some(("db", "2")), 4.0),
                    ("redis.db.expires", Some(("db", "2")), 3.0),
                    ("redis.cmd.calls", Some(("cmd", "set")), 29.0),
                ],
            ),
            (
                PRIMARY,
                "7.0.15",
                None,
                &[
                    ("redis.role", Some(("role", "primary")), 1.0),
                    ("redis.slaves.connected", None, 1.0),
                    ("redis.replication.offset", None, 347.0),
                ],
            ),
            (
                REPLICA,
                "7.0.15",
                None,
                &[
                    ("redis.role", Some(("role", "replica")), 1.0),
                    ("redis.replication.offset", None, 347.0),
                    ("redis.replication.replica_offset", None, 347.0),
                    ("redis.slaves.connected", None, 0.0),
                ],
            ),
        ];
        for (text, version, valkey, want) in cases {
            let info = parse_info(text);
            assert_eq!(info.version(), Some(*version));
            assert_eq!(info.valkey_version(), *valkey);
            let ms = metrics(None, &info, NOW, &all_on());
            for (name, attr, v) in *want {
                assert_eq!(value(&ms, name, *attr), Some(*v), "{version} {name} {attr:?}");
            }
            // Figures every server has, in range.
            for name in ["redis.uptime", "redis.memory.used", "redis.memory.rss", "redis.commands.processed"]
            {
                assert!(value(&ms, name, None).is_some_and(|v| v > 0.0), "{version}: {name}");
            }
            let frag = value(&ms, "redis.memory.fragmentation_ratio", None);
            assert!(frag.is_some_and(|f| f > 0.0 && f.is_finite()), "{version}: {frag:?}");
            assert!(value(&ms, "redis.cpu.time", Some(("state", "user"))).is_some(), "{version}");
            // No limit configured: no maxmemory point. One scrape: no hit rate.
            assert_eq!(value(&ms, "redis.maxmemory", None), None, "{version}");
            assert_eq!(value(&ms, "redis.keyspace.hit_rate", None), None, "{version}");
            // The primary's replica line is not mistaken for a field we emit.
            assert!(!ms.iter().any(|m| m.name.contains("slave0")));
        }
    }

    #[test]
    fn counters_start_at_server_start() {
        let info = parse_info("uptime_in_seconds:100\r\nkeyspace_hits:5\r\nused_memory:10\r\n");
        let ms = metrics(None, &info, NOW, &all_on());
        let start_of = |name: &str| {
            let m = ms.iter().find(|m| m.name == name).expect(name);
            match m.data.as_ref().expect("data") {
                metric::Data::Gauge(g) => g.data_points[0].start_time_unix_nano,
                metric::Data::Sum(s) => s.data_points[0].start_time_unix_nano,
                _ => unreachable!(),
            }
        };
        assert_eq!(start_of("redis.keyspace.hits"), NOW - 100_000_000_000);
        assert_eq!(start_of("redis.memory.used"), 0);
    }

    #[test]
    fn the_start_time_holds_for_the_whole_run() {
        let at = |id: &str, up: u64| parse_info(&format!("run_id:{id}\nuptime_in_seconds:{up}\n"));
        let second = 1_000_000_000;
        let mut a = at("a", 100);
        a.anchor_start(None, NOW);
        assert_eq!(a.started, NOW - 100 * second);
        // 1.9 s later the server says 101: the start stays put.
        let mut b = at("a", 101);
        b.anchor_start(Some(&a), NOW + 1_900_000_000);
        assert_eq!(b.started, a.started);
        // A restart (new run id) starts again.
        let mut c = at("b", 1);
        c.anchor_start(Some(&b), NOW + 5 * second);
        assert_eq!(c.started, NOW + 4 * second);
    }

    #[test]
    fn hit_rate_over_the_interval() {
        let at = |id: &str, up: u64, hits: u64, misses: u64| {
            parse_info(&format!(
                "run_id:{id}\nuptime_in_seconds:{up}\nkeyspace_hits:{hits}\nkeyspace_misses:{misses}\n"
            ))
        };
        let cases: &[(Info, Info, Option<f64>)] = &[
            (at("a", 10, 100, 50), at("a", 20, 130, 60), Some(0.75)),
            (at("a", 10, 100, 50), at("a", 20, 100, 60), Some(0.0)),
            (at("a", 10, 100, 50), at("a", 20, 100, 50), None),
            (at("a", 10, 100, 50), at("b", 2, 130, 60), None),
            (at("a", 10, 100, 50), at("a", 20, 90, 60), None),
            (at("a", 10, 100, 50), at("a", 5, 130, 60), None),
        ];
        for (prev, cur, want) in cases {
            assert_eq!(cur.hit_rate_since(prev), *want, "{prev:?} → {cur:?}");
            let ms = metrics(Some(prev), cur, NOW, &all_on());
            assert_eq!(value(&ms, "redis.keyspace.hit_rate", None), *want);
        }
    }

    #[test]
    fn odd_lines_and_old_field_names() {
        let info = parse_info(
            "# Clients\nconnected_clients:3\nclient_biggest_input_buf:17\nclient_longest_output_list:2\n\
             garbage line\ndbx:keys=1\ndb1:keys=oops\ndb3:keys=7,expires=0,avg_ttl=0,subexpiry=0\n\
             cmdstat_get:calls=2\ncmdstat_config|get:calls=4,usec=9,usec_per_call=2.25\nrole:sentinel\n\
             maxmemory:1048576\nmem_fragmentation_ratio:nan\n",
        );
        assert_eq!(info.keyspace, vec![Keyspace { db: 3, keys: 7, expires: 0, avg_ttl: 0 }]);
        assert_eq!(info.commands, vec![CommandStat { name: "config|get".into(), calls: 4, usec: 9 }]);
        assert_eq!(info.get("dbx"), Some("keys=1"));
        let ms = metrics(None, &info, NOW, &all_on());
        assert_eq!(value(&ms, "redis.clients.max_input_buffer", None), Some(17.0));
        assert_eq!(value(&ms, "redis.clients.max_output_buffer", None), Some(2.0));
        assert_eq!(value(&ms, "redis.maxmemory", None), Some(1_048_576.0));
        assert_eq!(value(&ms, "redis.memory.fragmentation_ratio", None), None);
        assert_eq!(value(&ms, "redis.role", None), None);
        assert_eq!(value(&ms, "redis.cmd.calls", Some(("cmd", "config|get"))), Some(4.0));
        assert!(metrics(None, &parse_info(""), NOW, &all_on()).is_empty());
    }

    #[test]
    fn toggles_turn_metrics_off() {
        let mut t = MetricToggles::new();
        t.insert("redis.cmd.calls".into(), crate::hostmetrics::MetricToggle { enabled: false });
        let ms = metrics(None, &parse_info(REDIS7), NOW, &Enabled::new(METRICS, &t));
        assert!(!ms.iter().any(|m| m.name == "redis.cmd.calls"));
        assert!(ms.iter().any(|m| m.name == "redis.cmd.usec"));
    }
}
