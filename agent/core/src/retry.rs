//! Exponential backoff with jitter, configured per exporter by
//! `retry_on_failure` and applied once, by the agent, for every exporter.

use crate::config::duration;
use serde::Deserialize;
use std::time::Duration;

/// `retry_on_failure` in an exporter's config. Defaults are the Collector's.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retry retryable failures at all.
    pub enabled: bool,
    /// Wait before the first retry.
    #[serde(with = "duration")]
    pub initial_interval: Duration,
    /// Upper bound of any single wait.
    #[serde(with = "duration")]
    pub max_interval: Duration,
    /// Give up on a batch after this long (`0s`: never give up).
    #[serde(with = "duration")]
    pub max_elapsed_time: Duration,
    /// Growth of the wait after each failure.
    pub multiplier: f64,
    /// Each wait is drawn uniformly from `wait × (1 ± randomization_factor)`.
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

impl RetryConfig {
    /// Checks the numbers make sense; returns a message per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.multiplier < 1.0 || !self.multiplier.is_finite() {
            out.push(format!("multiplier must be at least 1, got {}", self.multiplier));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            out.push(format!("randomization_factor must be within 0..=1, got {}", self.randomization_factor));
        }
        if self.max_interval < self.initial_interval {
            out.push("max_interval must not be shorter than initial_interval".to_string());
        }
        out
    }

    pub fn backoff(&self) -> Backoff {
        Backoff { config: self.clone(), current: self.initial_interval }
    }
}

/// The waits between attempts for one batch.
pub struct Backoff {
    config: RetryConfig,
    current: Duration,
}

impl Backoff {
    /// The next wait: the current interval with jitter, never less than
    /// `at_least` (a server's `Retry-After`), then the interval grows.
    pub fn next_wait(&mut self, at_least: Option<Duration>) -> Duration {
        let base = self.current.as_secs_f64();
        let f = self.config.randomization_factor;
        let jittered = if f > 0.0 { base * (1.0 - f + 2.0 * f * rand::random::<f64>()) } else { base };
        let grown = (base * self.config.multiplier).min(self.config.max_interval.as_secs_f64());
        self.current = Duration::from_secs_f64(grown);
        let wait = Duration::from_secs_f64(jittered.min(self.config.max_interval.as_secs_f64()));
        at_least.map_or(wait, |min| wait.max(min))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_cap_within_jitter() {
        let cfg = RetryConfig {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_millis(400),
            multiplier: 2.0,
            randomization_factor: 0.5,
            ..Default::default()
        };
        let mut b = cfg.backoff();
        let expected = [100.0, 200.0, 400.0, 400.0, 400.0];
        for e in expected {
            let w = b.next_wait(None).as_secs_f64() * 1000.0;
            assert!(w >= e * 0.5 - 1e-6 && w <= (e * 1.5).min(400.0) + 1e-6, "wait {w} for base {e}");
        }
    }

    #[test]
    fn retry_after_is_a_floor() {
        let cfg = RetryConfig {
            initial_interval: Duration::from_millis(10),
            randomization_factor: 0.0,
            ..Default::default()
        };
        let mut b = cfg.backoff();
        assert_eq!(b.next_wait(Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(b.next_wait(None), Duration::from_millis(15));
    }

    #[test]
    fn nonsense_is_reported() {
        let cfg = RetryConfig {
            multiplier: 0.5,
            randomization_factor: 2.0,
            max_interval: Duration::ZERO,
            ..Default::default()
        };
        assert_eq!(cfg.problems().len(), 3);
    }
}
