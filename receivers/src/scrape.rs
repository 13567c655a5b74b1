//! The timer loop every scraping receiver shares (`hostmetrics`, `redis`,
//! `postgresql`): take a baseline, wait at most a second for the first
//! scrape (so rates and utilisations already cover a real interval), then
//! scrape every `collection_interval`, skipping ticks missed while a scrape
//! ran long, and send each non-empty result. Shutdown interrupts any wait.
//! What to scrape is the receiver's business, behind [`Scrape`].

use magpie_core::proto::metrics::v1::ResourceMetrics;
use magpie_core::{Batch, ComponentError, ReceiverContext};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// Longest wait between the baseline and the first scrape.
pub const FIRST_SCRAPE_DELAY_MAX: Duration = Duration::from_secs(1);

/// One receiver's scrape.
#[async_trait::async_trait]
pub trait Scrape: Send {
    /// Reads what the first scrape's rates need; called once before it.
    async fn baseline(&mut self) {}

    /// Everything the receiver reports now. A failing server is reported
    /// in the metrics (`up 0`), not as an error; `Err` stops the receiver.
    async fn scrape(&mut self) -> Result<Vec<ResourceMetrics>, ComponentError>;
}

/// Runs `scraper` every `period` until `ctx.shutdown` is cancelled.
pub async fn run(
    mut scraper: impl Scrape,
    period: Duration,
    ctx: ReceiverContext,
) -> Result<(), ComponentError> {
    tokio::select! {
        () = ctx.shutdown.cancelled() => return Ok(()),
        () = scraper.baseline() => {}
    }
    let mut ticker = tokio::time::interval_at(Instant::now() + period.min(FIRST_SCRAPE_DELAY_MAX), period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let metrics = tokio::select! {
            () = ctx.shutdown.cancelled() => break,
            m = scraper.scrape() => m?,
        };
        if metrics.is_empty() {
            continue;
        }
        tokio::select! {
            () = ctx.shutdown.cancelled() => break,
            r = ctx.output.send(Batch::Metrics(metrics)) => {
                if let Err(e) = r {
                    tracing::debug!(component = %ctx.id, error = %e, "scrape not delivered");
                }
            }
        }
    }
    Ok(())
}
