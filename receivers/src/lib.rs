//! Magpie's receivers: where telemetry enters the agent, by listening (OTLP)
//! or by scraping (host, Redis, PostgreSQL).
//!
//! One module per receiver type, its config beside its code. This file is the
//! closed list: [`TYPES`] (what `magpie components` prints), the
//! [`ReceiverConfig`] enum and one `match` per operation. Adding a receiver is
//! one module, one variant, one arm in each `match`.
//!
//! This crate depends on `magpie-core` only.
//!
//! # Layout
//!
//! - [`hostmetrics`]: CPU, memory, disks, filesystems, network, load, paging,
//!   processes and cgroups, read from `/proc` and `/sys`.

pub mod hostmetrics;

use magpie_core::config::{ConfigError, Node, from_node};
use magpie_core::{ComponentError, ComponentId, Receiver, Signals, TypeInfo};

/// Every receiver type, in the order `magpie components` lists them.
pub const TYPES: &[TypeInfo] = &[TypeInfo {
    name: "hostmetrics",
    signals: Signals::METRICS,
    routes: &[],
    about: "scrapes the host's CPU, memory, disks, filesystems, network, load, processes and cgroups from /proc",
}];

/// The typed config of one receiver.
#[derive(Clone, Debug)]
pub enum ReceiverConfig {
    Hostmetrics(hostmetrics::HostmetricsConfig),
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
            "hostmetrics" => typed(node, path, ReceiverConfig::Hostmetrics),
            _ => Ok(None),
        }
    }

    /// The signals this instance produces (a receiver may be configured to
    /// produce fewer than its type can).
    pub fn signals(&self) -> Signals {
        match self {
            ReceiverConfig::Hostmetrics(_) => Signals::METRICS,
        }
    }

    /// Problems the types alone cannot catch.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ReceiverConfig::Hostmetrics(c) => c.problems(),
        }
    }

    /// Addresses this receiver listens on, as (config path suffix, address).
    pub fn listen_addresses(&self) -> Vec<(String, String)> {
        match self {
            ReceiverConfig::Hostmetrics(_) => Vec::new(),
        }
    }

    pub fn build(&self, _id: &ComponentId) -> Result<Box<dyn Receiver>, ComponentError> {
        Ok(match self {
            ReceiverConfig::Hostmetrics(c) => Box::new(hostmetrics::HostmetricsReceiver::new(c)),
        })
    }
}
