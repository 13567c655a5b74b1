//! `forward`: a connector that passes batches unchanged from the pipelines
//! that export to it into the pipelines that receive from it (same signal),
//! e.g. to run one receiver's traces through two differently sampled paths.

use magpie_core::{Batch, ComponentError, Connector, ConnectorContext};
use serde::Deserialize;
use std::sync::Arc;

/// `forward` takes no settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {}

pub struct ForwardConnector;

impl ForwardConnector {
    pub fn new(_config: &ForwardConfig) -> Self {
        ForwardConnector
    }
}

#[async_trait::async_trait]
impl Connector for ForwardConnector {
    async fn run(self: Box<Self>, mut ctx: ConnectorContext) -> Result<(), ComponentError> {
        while let Some(batch) = ctx.input.recv().await {
            let items = batch.item_count() as u64;
            let owned = Arc::try_unwrap(batch).unwrap_or_else(|shared| Batch::clone(&shared));
            match ctx.output.send(owned).await {
                Ok(()) => ctx.stats.add_exported(items),
                Err(e) => {
                    ctx.stats.add_failed(items);
                    tracing::warn!(component = %ctx.id, items, error = %e, "forward could not deliver a batch");
                }
            }
        }
        Ok(())
    }
}
