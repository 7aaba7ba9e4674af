//! Retries with jittered exponential backoff, a cap and a maximum number of retries: the
//! one retry loop of the clients (DynamoDB writes and scans, the Bubble API).
//!
//! * [`Backoff::delay`]: the wait before retry `n` — "equal jitter" over an exponential
//!   ceiling (`base × 2^(n-1)`, capped at `max`): half of it fixed, half random, so a
//!   retry never comes immediately and concurrent clients spread out;
//! * [`Backoff::retry`]: run an operation until it succeeds, fails with an error the
//!   `retryable` predicate refuses, or runs out of retries;
//! * [`Retries`]: the budget of one operation, for loops that decide themselves what to
//!   retry, carry a `Retry-After` hint, or change what they send between attempts
//!   (DynamoDB re-sends only its `UnprocessedItems`): after each failed attempt,
//!   [`Retries::next_delay`] says how long to wait, or that no retry is left.
//!
//! (A closure-taking loop over `AsyncFnMut` cannot promise that its future is `Send`,
//! which the pipeline's streams need: hence [`Retries`] for loops that keep state.)
//!
//! ```
//! use std::time::Duration;
//! use etl_core::retry::Backoff;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let policy = Backoff::new(Duration::from_millis(1), Duration::from_millis(4), 3);
//! let mut calls = 0;
//! let r: Result<u32, &str> = policy
//!     .retry(|_attempt| { calls += 1; std::future::ready(if calls < 3 { Err("busy") } else { Ok(calls) }) }, |e| *e == "busy")
//!     .await;
//! assert_eq!(r, Ok(3));
//! # }
//! ```

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Retries granted by every [`Retries`] budget of the process (the pipeline's unit
/// retries apart): `ferry_client_retries_total` of [`crate::metrics`].
static RETRIES: AtomicU64 = AtomicU64::new(0);

/// Retries the clients of this process made so far ([`Backoff::retry`] and
/// [`Retries::next_delay`] granting one), for the metrics.
pub fn retries_in_process() -> u64 {
    RETRIES.load(Ordering::Relaxed)
}

/// A retry policy: exponential backoff with equal jitter, a cap and a retry budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first delay (doubled for each further retry when `exponential`).
    pub base: Duration,
    /// Largest ceiling.
    pub max: Duration,
    /// Retries after the first attempt (so at most `max_retries + 1` attempts).
    pub max_retries: u32,
    /// Double the ceiling per retry (else every ceiling is `base`).
    pub exponential: bool,
}

/// The retry budget of one operation under a [`Backoff`] policy.
#[derive(Debug, Clone)]
pub struct Retries {
    policy: Backoff,
    attempts: u32,
    counted: bool,
}

impl Retries {
    /// Record a failed attempt: the delay before the next attempt (the `Retry-After` hint
    /// when there is one, else [`Backoff::delay`]), or `None` when no retry is left.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.attempts += 1;
        if self.attempts > self.policy.max_retries {
            return None;
        }
        if self.counted {
            RETRIES.fetch_add(1, Ordering::Relaxed);
        }
        Some(retry_after.unwrap_or_else(|| self.policy.delay(self.attempts)))
    }

    /// Failed attempts recorded so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Not counted in [`retries_in_process`] (the pipeline counts its unit retries apart).
    pub(crate) fn uncounted(mut self) -> Self {
        self.counted = false;
        self
    }
}

impl Backoff {
    /// Exponential backoff from `base` up to `max`, at most `max_retries` retries.
    pub fn new(base: Duration, max: Duration, max_retries: u32) -> Self {
        Backoff {
            base,
            max,
            max_retries,
            exponential: true,
        }
    }

    /// The delay before retry number `retry` (1-based): a random duration between half
    /// the ceiling and the ceiling, the ceiling being `base × 2^(retry-1)` capped at `max`.
    pub fn delay(&self, retry: u32) -> Duration {
        let base = self.base.as_micros().min(u64::MAX as u128) as u64;
        let ceiling = if self.exponential {
            base.saturating_mul(1u64 << retry.saturating_sub(1).min(20))
        } else {
            base
        }
        .min(self.max.as_micros().min(u64::MAX as u128) as u64)
        .max(1);
        Duration::from_micros(ceiling / 2 + random_below(ceiling / 2 + 1))
    }

    /// The retry budget of one operation.
    pub fn retries(&self) -> Retries {
        Retries {
            policy: *self,
            attempts: 0,
            counted: true,
        }
    }

    /// Run `op` (given the 1-based attempt number) until it succeeds, retrying the errors
    /// `retryable` accepts after the backoff delay.
    ///
    /// # Errors
    /// An error `retryable` refuses, or the last error when no retry is left.
    pub async fn retry<T, E, F, Fut>(
        &self,
        mut op: F,
        retryable: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut retries = self.retries();
        loop {
            match op(retries.attempts() + 1).await {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) => match retries.next_delay(None) {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }
}

/// A random number in `0..n` (`0` when `n` is 0), from the standard library's randomly
/// keyed hasher: good enough to spread retries, with no extra dependency.
fn random_below(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    RandomState::new().hash_one(std::time::Instant::now()) % n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_with_jitter_and_a_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000), 5);
        for _ in 0..50 {
            let d1 = b.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = b.delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            assert!(b.delay(30) <= Duration::from_millis(1000));
        }
        let flat = Backoff {
            exponential: false,
            ..b
        };
        assert!(flat.delay(5) <= Duration::from_millis(100));
    }

    #[test]
    fn the_budget_counts_attempts_and_takes_hints() {
        let b = Backoff::new(Duration::from_millis(1), Duration::from_millis(2), 2);
        let mut r = b.retries();
        assert!(r.next_delay(None).unwrap() <= Duration::from_millis(1));
        assert_eq!(
            r.next_delay(Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(r.next_delay(None), None);
        assert_eq!(r.attempts(), 3);
    }

    #[test]
    fn granted_retries_are_counted_for_the_metrics_unless_uncounted() {
        let b = Backoff::new(Duration::from_millis(1), Duration::from_millis(2), 1);
        let before = retries_in_process();
        let mut r = b.retries();
        assert!(r.next_delay(None).is_some());
        assert!(r.next_delay(None).is_none());
        let mut quiet = b.retries().uncounted();
        assert!(quiet.next_delay(None).is_some());
        // Other tests of this binary may retry meanwhile: at least the one granted here.
        assert!(retries_in_process() > before);
    }

    #[tokio::test]
    async fn retries_until_done_exhausted_or_refused() {
        let b = Backoff::new(Duration::from_millis(1), Duration::from_millis(2), 2);
        let mut calls = 0;
        let r: Result<u32, &str> = b
            .retry(
                |attempt| {
                    calls += 1;
                    std::future::ready(if attempt < 3 {
                        Err("busy")
                    } else {
                        Ok(attempt)
                    })
                },
                |e| *e == "busy",
            )
            .await;
        assert_eq!((r, calls), (Ok(3), 3));
        let mut calls = 0;
        let r: Result<(), &str> = b
            .retry(
                |_| {
                    calls += 1;
                    std::future::ready(Err("busy"))
                },
                |e| *e == "busy",
            )
            .await;
        assert_eq!((r, calls), (Err("busy"), 3));
        let mut calls = 0;
        let r: Result<(), &str> = b
            .retry(
                |_| {
                    calls += 1;
                    std::future::ready(Err("fatal"))
                },
                |e| *e != "fatal",
            )
            .await;
        assert_eq!((r, calls), (Err("fatal"), 1));
    }
}
