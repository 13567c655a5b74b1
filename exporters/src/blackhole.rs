//! `blackhole`: accepts every batch and keeps nothing. The agent's counters
//! still count what reached it, which is what a benchmark needs.

use magpie_core::{Batch, ExportError, Exporter};
use serde::Deserialize;
use std::sync::Arc;

/// `blackhole` takes no settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

pub struct BlackholeExporter;

impl BlackholeExporter {
    pub fn new(_config: &BlackholeConfig) -> Self {
        BlackholeExporter
    }
}

#[async_trait::async_trait]
impl Exporter for BlackholeExporter {
    async fn export(&mut self, _batch: Arc<Batch>) -> Result<(), ExportError> {
        Ok(())
    }
}
