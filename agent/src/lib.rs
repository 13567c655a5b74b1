//! The `magpie` agent: config loading and validation, the running topology,
//! self-telemetry and the command line.
//!
//! # Layout
//!
//! - [`components`]: the closed lists of component types, as the agent sees them.
//! - [`config`]: loading, merging, env expansion and validation of the YAML config.
//! - [`topology`]: starting pipelines downstream first, draining them on shutdown.
//! - [`service`]: the agent's life: start, SIGHUP reload, SIGINT/SIGTERM shutdown.
//! - [`selfmon`]: `/metrics`, `/healthz` and `/readyz`.
//! - [`logging`]: `tracing` output as text or JSON.

pub mod components;
pub mod config;
pub mod logging;
pub mod selfmon;
pub mod service;
pub mod topology;
