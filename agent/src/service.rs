//! The agent's life: start the self-telemetry server and the topology, then
//! react to control messages — reload (SIGHUP) and shutdown (SIGINT/SIGTERM)
//! — until told to stop.
//!
//! A reload re-reads and validates the config files first; an invalid config
//! is logged in full and the running pipelines carry on untouched. A valid one
//! replaces them: the old topology drains, the new one starts, and if it fails
//! to start (a port taken, say) the previous config is started again.

use crate::config::{self, AgentConfig};
use crate::selfmon::SelfMon;
use crate::topology::{ShutdownReport, StartError, Topology};
use magpie_core::config::ConfigError;
use magpie_core::telemetry::Entry;
use magpie_core::{ComponentKind, Telemetry};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

/// What the agent can be told while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Re-read the config files (SIGHUP).
    Reload,
    /// Drain and stop (SIGINT, SIGTERM).
    Shutdown,
}

/// The agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    SelfTelemetry(String),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Something observing the running agent (tests read the bound addresses).
#[derive(Clone, Debug)]
pub struct Started {
    pub selfmon_addr: Option<std::net::SocketAddr>,
}

/// Logs every config problem, errors first.
pub fn log_config_problems(problems: &[ConfigError]) {
    for p in problems {
        if p.is_error() {
            tracing::error!(component = "service", "{p}");
        } else {
            tracing::warn!(component = "service", "{p}");
        }
    }
}

/// Runs `config` (read from `paths`) until `control` says stop or closes.
/// `on_started` is told once the topology runs.
pub async fn run(
    paths: Vec<PathBuf>,
    mut config: AgentConfig,
    mut control: mpsc::Receiver<Control>,
    on_started: impl FnOnce(Started),
) -> Result<ShutdownReport, RunError> {
    let telemetry = Telemetry::new();
    let selfmon = if config.telemetry.metrics.enabled {
        Some(
            SelfMon::serve(&config.telemetry.metrics.address, telemetry.clone())
                .await
                .map_err(RunError::SelfTelemetry)?,
        )
    } else {
        None
    };
    log_config_problems(&config.warnings);
    let mut topology = match Topology::start(&config, &telemetry).await {
        Ok(t) => t,
        Err(e) => {
            if let Some(s) = selfmon {
                s.stop().await;
            }
            return Err(e.into());
        }
    };
    set_ready(selfmon.as_ref(), true);
    tracing::info!(
        component = "service",
        pipelines = config.pipelines.len(),
        telemetry = ?selfmon.as_ref().map(|s| s.local_addr),
        "magpie is running"
    );
    on_started(Started { selfmon_addr: selfmon.as_ref().map(|s| s.local_addr) });

    while let Some(Control::Reload) = control.recv().await {
        tracing::info!(component = "service", "reloading config");
        let new = match config::load(&paths) {
            Ok(c) => c,
            Err(problems) => {
                log_config_problems(&problems);
                tracing::error!(
                    component = "service",
                    errors = problems.iter().filter(|p| p.is_error()).count(),
                    "config reload rejected; the previous pipelines keep running"
                );
                continue;
            }
        };
        log_config_problems(&new.warnings);
        if new.telemetry.metrics.address != config.telemetry.metrics.address
            || new.telemetry.metrics.enabled != config.telemetry.metrics.enabled
        {
            tracing::warn!(
                component = "service",
                "service.telemetry.metrics changes take effect after a restart"
            );
        }
        set_ready(selfmon.as_ref(), false);
        report_shutdown(&topology.shutdown(config.shutdown_timeout).await);
        topology = match Topology::start(&new, &telemetry).await {
            Ok(t) => {
                config = new;
                tracing::info!(component = "service", pipelines = config.pipelines.len(), "config reloaded");
                t
            }
            Err(e) => {
                tracing::error!(component = "service", error = %e, "the new config failed to start; starting the previous one again");
                Topology::start(&config, &telemetry).await?
            }
        };
        telemetry.retain(|e| in_config(&config, e));
        set_ready(selfmon.as_ref(), true);
    }

    tracing::info!(component = "service", timeout = ?config.shutdown_timeout, "shutting down: receivers stop, pipelines drain");
    set_ready(selfmon.as_ref(), false);
    let report = topology.shutdown(config.shutdown_timeout).await;
    report_shutdown(&report);
    if let Some(s) = selfmon {
        s.stop().await;
    }
    Ok(report)
}

fn set_ready(selfmon: Option<&SelfMon>, ready: bool) {
    if let Some(s) = selfmon {
        s.ready.store(ready, Ordering::Relaxed);
    }
}

fn report_shutdown(report: &ShutdownReport) {
    if report.unfinished.is_empty() {
        tracing::info!(component = "service", "every pipeline drained");
    } else {
        tracing::error!(
            component = "service",
            undelivered_items = report.undelivered_items,
            unfinished = ?report.unfinished,
            "shutdown deadline passed; items still queued or in flight were not delivered"
        );
    }
}

/// Whether a telemetry entry belongs to the running config.
fn in_config(config: &AgentConfig, e: &Entry) -> bool {
    match e.kind {
        ComponentKind::Receiver => config.receivers.contains_key(&e.id),
        ComponentKind::Exporter => config.exporters.contains_key(&e.id),
        ComponentKind::Connector => config.connectors.contains_key(&e.id),
        ComponentKind::Processor => config
            .pipelines
            .iter()
            .any(|p| p.processors.contains(&e.id) && e.pipeline.as_deref() == Some(&p.id.to_string())),
    }
}
