//! [`RetryPolicy`]: how often and how soon a failed task is tried again.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::opt_duration;

/// How the delay between attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// The same delay before every retry.
    Fixed,
    /// `delay * n` before retry `n`.
    Linear,
    /// `delay * multiplier^(n-1)` before retry `n` (the default).
    #[default]
    Exponential,
}

/// Retry policy of a task: attempts, backoff, jitter, a cap on the delay and the error names
/// that are worth retrying.
///
/// The policy is pure data; [`RetryPolicy::delay_before`] is a pure function so that the run
/// state machine (which knows no clock and no randomness) can compute retry times that replay
/// identically. Jitter is drawn from a hash of the task's idempotency key and the attempt.
///
/// ```
/// use std::time::Duration;
/// use cronflow_core::{Backoff, RetryPolicy};
/// let policy = RetryPolicy::exponential(5, Duration::from_millis(100)).max_delay(Duration::from_secs(1));
/// assert_eq!(policy.delay_before(2, 0), Some(Duration::from_millis(100)));
/// assert_eq!(policy.delay_before(3, 0), Some(Duration::from_millis(200)));
/// assert_eq!(policy.delay_before(6, 0), None); // only 5 attempts
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Total attempts including the first (1 means no retry).
    pub max_attempts: u32,
    /// How the delay grows.
    #[serde(default)]
    pub backoff: Backoff,
    /// Base delay (default 1s).
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    /// Upper bound on any single delay.
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<Duration>,
    /// Growth factor for exponential backoff (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// When true the delay is drawn uniformly from `[delay/2, delay]` ("equal jitter").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub jitter: bool,
    /// Only errors with one of these names are retried; empty means every error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<String>,
}

impl Default for RetryPolicy {
    /// One attempt, no retry.
    fn default() -> Self {
        Self::none()
    }
}

impl RetryPolicy {
    /// A single attempt.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            backoff: Backoff::Fixed,
            delay: None,
            max_delay: None,
            multiplier: None,
            jitter: false,
            retry_on: Vec::new(),
        }
    }

    /// `max_attempts` attempts, `delay` apart.
    pub fn fixed(max_attempts: u32, delay: Duration) -> Self {
        Self { max_attempts, backoff: Backoff::Fixed, delay: Some(delay), ..Self::none() }
    }

    /// `max_attempts` attempts, `delay * n` before retry `n`.
    pub fn linear(max_attempts: u32, delay: Duration) -> Self {
        Self { max_attempts, backoff: Backoff::Linear, delay: Some(delay), ..Self::none() }
    }

    /// `max_attempts` attempts, doubling from `delay`.
    pub fn exponential(max_attempts: u32, delay: Duration) -> Self {
        Self { max_attempts, backoff: Backoff::Exponential, delay: Some(delay), ..Self::none() }
    }

    /// Caps every delay at `max`.
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = Some(max);
        self
    }

    /// Enables equal jitter.
    pub fn with_jitter(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// Retries only errors whose name is in `names`.
    pub fn retry_on<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.retry_on = names.into_iter().map(Into::into).collect();
        self
    }

    /// Whether an error called `error_name` may be retried at all under this policy.
    pub fn retries_error(&self, error_name: &str) -> bool {
        self.retry_on.is_empty() || self.retry_on.iter().any(|n| n == error_name)
    }

    /// The delay before attempt `next_attempt` (2 for the first retry), or `None` when the
    /// policy allows no such attempt. `jitter_seed` is any 64-bit value; the same seed always
    /// gives the same delay.
    pub fn delay_before(&self, next_attempt: u32, jitter_seed: u64) -> Option<Duration> {
        if next_attempt < 2 || next_attempt > self.max_attempts {
            return None;
        }
        let base = self.delay.unwrap_or(Duration::from_secs(1)).as_secs_f64();
        let retry = f64::from(next_attempt - 1);
        let mut secs = match self.backoff {
            Backoff::Fixed => base,
            Backoff::Linear => base * retry,
            Backoff::Exponential => base * self.multiplier.unwrap_or(2.0).powf(retry - 1.0),
        };
        if let Some(max) = self.max_delay {
            secs = secs.min(max.as_secs_f64());
        }
        if self.jitter {
            // splitmix64 finaliser: a well-mixed fraction in [0, 1) from the seed.
            let mut z = jitter_seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let fraction = (z >> 11) as f64 / (1u64 << 53) as f64;
            secs = secs / 2.0 + secs / 2.0 * fraction;
        }
        Some(Duration::from_secs_f64(secs.clamp(0.0, 1.0e9)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_shapes() {
        let d = Duration::from_millis(100);
        let fixed = RetryPolicy::fixed(4, d);
        let linear = RetryPolicy::linear(4, d);
        let exp = RetryPolicy::exponential(4, d).max_delay(Duration::from_millis(300));
        let ms = |p: &RetryPolicy, n| p.delay_before(n, 7).map(|d| d.as_millis());
        assert_eq!([ms(&fixed, 2), ms(&fixed, 3), ms(&fixed, 4)], [Some(100); 3]);
        assert_eq!(
            [ms(&linear, 2), ms(&linear, 3), ms(&linear, 4)],
            [Some(100), Some(200), Some(300)]
        );
        assert_eq!([ms(&exp, 2), ms(&exp, 3), ms(&exp, 4)], [Some(100), Some(200), Some(300)]);
        assert_eq!(ms(&fixed, 5), None);
        assert_eq!(ms(&fixed, 1), None);
    }

    #[test]
    fn jitter_stays_in_range_and_is_deterministic() {
        let p = RetryPolicy::fixed(3, Duration::from_millis(1000)).with_jitter();
        for seed in 0..1000u64 {
            let d = p.delay_before(2, seed).unwrap();
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
            assert_eq!(Some(d), p.delay_before(2, seed));
        }
    }

    #[test]
    fn retry_on_filters_by_name() {
        let p = RetryPolicy::fixed(3, Duration::ZERO).retry_on(["NetworkError"]);
        assert!(p.retries_error("NetworkError"));
        assert!(!p.retries_error("ValidationError"));
        assert!(RetryPolicy::fixed(3, Duration::ZERO).retries_error("Anything"));
    }
}
