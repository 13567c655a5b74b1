//! Magpie's receivers: where telemetry enters the agent, by listening (OTLP)
//! or by scraping (host, Redis, PostgreSQL).
//!
//! One module per receiver type, its config beside its code. This file is the
//! closed list: [`TYPES`] (what `magpie components` prints), the
//! [`ReceiverConfig`] enum and one `match` per operation. Adding a receiver is
//! one module, one variant, one arm in each `match`.
//!
//! Of Magpie's crates, this one depends on `magpie-core` only.
//!
//! # Layout
//!
//! - [`otlp`]: OTLP/gRPC and OTLP/HTTP (protobuf and JSON) for traces, metrics and logs.
//! - [`hostmetrics`]: CPU, memory, disks, filesystems, network, load, paging,
//!   processes and cgroups, read from `/proc` and `/sys`.
//! - [`scrape`]: the timer loop the scraping receivers share.
//! - [`redis`]: a Redis or Valkey server's `INFO everything`.
//! - [`postgresql`]: a PostgreSQL server's connections, databases, locks,
//!   replication and `pg_stat_statements`, from its statistics views.

pub mod hostmetrics;
pub mod otlp;
pub mod postgresql;
pub mod redis;
pub mod scrape;

use magpie_core::config::{ConfigError, Node, from_node};
use magpie_core::{ComponentError, ComponentId, Receiver, Signals, TypeInfo};

/// Every receiver type, in the order `magpie components` lists them.
pub const TYPES: &[TypeInfo] = &[
    TypeInfo {
        name: "otlp",
        signals: Signals::OTLP,
        routes: &[],
        about: "receives traces, metrics and logs over OTLP/gRPC and OTLP/HTTP (protobuf and JSON)",
    },
    TypeInfo {
        name: "hostmetrics",
        signals: Signals::METRICS,
        routes: &[],
        about: "scrapes the host's CPU, memory, disks, filesystems, network, load, processes and cgroups from /proc",
    },
    TypeInfo {
        name: "redis",
        signals: Signals::METRICS,
        routes: &[],
        about: "scrapes a Redis or Valkey server's INFO: clients, memory, keyspace hits and hit rate, keys, commands, replication, persistence",
    },
    TypeInfo {
        name: "postgresql",
        signals: Signals::METRICS,
        routes: &[],
        about: "scrapes PostgreSQL: connections by state and application, lock waits, database stats, replication lag, top statements",
    },
];

/// The typed config of one receiver. Configs are built once per load, so
/// variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ReceiverConfig {
    Otlp(otlp::OtlpConfig),
    Hostmetrics(hostmetrics::HostmetricsConfig),
    Redis(redis::RedisConfig),
    Postgresql(postgresql::PostgresqlConfig),
}

fn typed<T: serde::de::DeserializeOwned>(
    node: &Node,
    path: &str,
    wrap: fn(T) -> ReceiverConfig,
) -> Result<Option<(ReceiverConfig, Vec<String>)>, ConfigError> {
    from_node::<T>(node, path).map(|(c, s)| Some((wrap(c), s)))
}

impl ReceiverConfig {
    /// Parses `node` as the config of `type_name`; `None` for an unknown type.
    pub fn parse(
        type_name: &str,
        node: &Node,
        path: &str,
    ) -> Result<Option<(Self, Vec<String>)>, ConfigError> {
        match type_name {
            "otlp" => typed(node, path, ReceiverConfig::Otlp),
            "hostmetrics" => typed(node, path, ReceiverConfig::Hostmetrics),
            "redis" => typed(node, path, ReceiverConfig::Redis),
            "postgresql" => typed(node, path, ReceiverConfig::Postgresql),
            _ => Ok(None),
        }
    }

    /// The signals this instance produces (a receiver may be configured to
    /// produce fewer than its type can).
    pub fn signals(&self) -> Signals {
        match self {
            ReceiverConfig::Otlp(_) => Signals::OTLP,
            ReceiverConfig::Hostmetrics(_) | ReceiverConfig::Redis(_) | ReceiverConfig::Postgresql(_) => {
                Signals::METRICS
            }
        }
    }

    /// Problems the types alone cannot catch.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ReceiverConfig::Otlp(c) => c.problems(),
            ReceiverConfig::Hostmetrics(c) => c.problems(),
            ReceiverConfig::Redis(c) => c.problems(),
            ReceiverConfig::Postgresql(c) => c.problems(),
        }
    }

    /// Addresses this receiver listens on, as (config path suffix, address).
    pub fn listen_addresses(&self) -> Vec<(String, String)> {
        match self {
            ReceiverConfig::Otlp(c) => c.listen_addresses(),
            ReceiverConfig::Hostmetrics(_) | ReceiverConfig::Redis(_) | ReceiverConfig::Postgresql(_) => {
                Vec::new()
            }
        }
    }

    pub fn build(&self, _id: &ComponentId) -> Result<Box<dyn Receiver>, ComponentError> {
        Ok(match self {
            ReceiverConfig::Otlp(c) => Box::new(otlp::OtlpReceiver::new(c)),
            ReceiverConfig::Hostmetrics(c) => Box::new(hostmetrics::HostmetricsReceiver::new(c)),
            ReceiverConfig::Redis(c) => Box::new(redis::RedisReceiver::new(c)),
            ReceiverConfig::Postgresql(c) => Box::new(postgresql::PostgresqlReceiver::new(c)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_is_listed_parsed_and_built() {
        assert!(TYPES.iter().any(|t| t.name == "otlp" && t.signals == Signals::OTLP));
        let node = Node::parse("auth: { bearer_token: hunter2 }\n", "t.yaml").unwrap();
        let (config, secrets) = ReceiverConfig::parse("otlp", &node, "receivers.otlp").unwrap().unwrap();
        assert_eq!(secrets, vec!["receivers.otlp.auth.bearer_token".to_string()]);
        assert_eq!(config.signals(), Signals::OTLP);
        assert!(config.problems().is_empty());
        assert_eq!(
            config.listen_addresses(),
            vec![
                ("protocols.grpc.endpoint".to_string(), "127.0.0.1:4317".to_string()),
                ("protocols.http.endpoint".to_string(), "127.0.0.1:4318".to_string()),
            ]
        );
        assert!(config.build(&"otlp".parse().unwrap()).is_ok());
        assert!(ReceiverConfig::parse("nope", &node, "receivers.nope").unwrap().is_none());
    }

    #[test]
    fn the_scrapers_are_listed_parsed_and_built() {
        let node = Node::parse("collection_interval: 5s\npassword: hunter2\n", "t.yaml").unwrap();
        for name in ["redis", "postgresql"] {
            assert!(TYPES.iter().any(|t| t.name == name && t.signals == Signals::METRICS));
            let path = format!("receivers.{name}");
            let (config, secrets) = ReceiverConfig::parse(name, &node, &path).unwrap().unwrap();
            assert_eq!(secrets, vec![format!("{path}.password")]);
            assert_eq!(config.signals(), Signals::METRICS);
            assert!(config.problems().is_empty(), "{:?}", config.problems());
            assert!(config.listen_addresses().is_empty());
            assert!(config.build(&name.parse().unwrap()).is_ok());
        }
    }
}
