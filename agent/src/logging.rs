//! The agent's own logs, through `tracing`: human text or one JSON object per
//! line, on stderr. Components log with a `component` field carrying their
//! id; the level comes from `service.telemetry.logs.level`, overridden by the
//! `MAGPIE_LOG` environment variable (same syntax as `RUST_LOG`).

use crate::config::{LogFormat, LogsTelemetry};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests, reloads) are no-ops.
pub fn init(config: &LogsTelemetry) {
    let filter = std::env::var("MAGPIE_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&config.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

/// Checks a level filter parses, for config validation.
pub fn check_level(level: &str) -> Result<(), String> {
    EnvFilter::try_new(level).map(|_| ()).map_err(|e| format!("invalid log level `{level}`: {e}"))
}
