//! The timer loop every scraping receiver shares (`hostmetrics`, `redis`,
//! `postgresql`): take a baseline, wait at most a second for the first
//! scrape (so rates and utilisations already cover a real interval), then
//! scrape every `collection_interval`, skipping ticks missed while a scrape
//! ran long, and send each non-empty result. Shutdown interrupts any wait.
//! What to scrape is the receiver's business, behind [`Scrape`]; a receiver
//! whose scraper is just built from its config (`redis`, `postgresql`) is a
//! [`ScrapeReceiver`].

use magpie_core::proto::metrics::v1::ResourceMetrics;
use magpie_core::{Batch, ComponentError, ComponentId, Receiver, ReceiverContext};
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

/// A scraper built from its receiver's config.
pub trait FromConfig: Scrape + Sized + 'static {
    type Config: Clone + Send + Sync + 'static;

    /// Checks the config and builds the client; the server may be down.
    fn build(config: &Self::Config, component: &str) -> Result<Self, ComponentError>;

    /// How often to scrape.
    fn interval(config: &Self::Config) -> Duration;
}

/// A receiver that runs an `S` built from its config on the shared timer.
/// `start` builds it, so a bad config stops the agent before it is ready.
pub struct ScrapeReceiver<S: FromConfig> {
    config: S::Config,
    scraper: Option<S>,
}

impl<S: FromConfig> ScrapeReceiver<S> {
    pub fn new(config: &S::Config) -> Self {
        ScrapeReceiver { config: config.clone(), scraper: None }
    }
}

#[async_trait::async_trait]
impl<S: FromConfig> Receiver for ScrapeReceiver<S> {
    async fn start(&mut self, id: &ComponentId) -> Result<(), ComponentError> {
        self.scraper = Some(S::build(&self.config, &id.to_string())?);
        Ok(())
    }

    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let scraper = match self.scraper {
            Some(s) => s,
            None => S::build(&self.config, &ctx.id.to_string())?,
        };
        run(scraper, S::interval(&self.config), ctx).await
    }
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
