//! Pacing: the shared request-rate limiter (governor) with a fleet-wide pause after a 429,
//! and the backoff policy for retryable failures (capped exponential, full jitter).

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use tokio::time::Instant;

/// One limiter per API endpoint, shared by every worker.
#[derive(Debug)]
pub struct Pacer {
    limiter: DefaultDirectRateLimiter,
    /// After a 429 every worker holds off until then: the quota is per app, so one worker
    /// being limited means all are.
    paused_until: Mutex<Option<Instant>>,
    /// Number of times a caller had to sit out a rate-limit pause.
    pause_waits: AtomicU64,
}

impl Pacer {
    /// A limiter granting at most `rate` requests per second, evenly spaced (burst of one), so
    /// no one-second window ever holds more than `rate` grants.
    pub fn per_second(rate: f64) -> Self {
        // Round the period UP so that `rate` periods never fit inside one second.
        let period_nanos = (1e9 / rate).ceil().max(1.0) as u64;
        let quota = Quota::with_period(Duration::from_nanos(period_nanos))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::direct(quota),
            paused_until: Mutex::new(None),
            pause_waits: AtomicU64::new(0),
        }
    }

    /// Waits for a grant to send one request.
    pub async fn acquire(&self) {
        loop {
            if let Some(until) = self.pause_deadline() {
                self.pause_waits.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep_until(until).await;
            }
            self.limiter.until_ready().await;
            // A pause that began while we queued for the grant still applies.
            if self.pause_deadline().is_none() {
                return;
            }
        }
    }

    /// Holds every caller off for `wait` (extends, never shortens, a running pause).
    pub fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut guard = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none_or(|current| current < until) {
            *guard = Some(until);
        }
    }

    pub fn pause_waits(&self) -> u64 {
        self.pause_waits.load(Ordering::Relaxed)
    }

    fn pause_deadline(&self) -> Option<Instant> {
        let guard = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        guard.filter(|until| *until > Instant::now())
    }
}

/// Capped exponential backoff with full jitter: uniform in `[0, min(cap, base·2^retry)]`.
/// (`retry` counts from 0.) Full jitter spreads retries of many workers apart.
pub fn backoff_delay(retry: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = base
        .checked_mul(1u32 << retry.min(20))
        .unwrap_or(cap)
        .min(cap);
    let nanos = ceiling.as_nanos() as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// Base and cap of the in-cycle retry backoff.
pub const RETRY_BASE: Duration = Duration::from_millis(500);
pub const RETRY_CAP: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_its_ceiling() {
        for retry in 0..30 {
            let d = backoff_delay(retry, Duration::from_millis(100), Duration::from_secs(5));
            let ceiling =
                Duration::from_millis(100 * (1u64 << retry.min(20))).min(Duration::from_secs(5));
            assert!(d <= ceiling, "retry {retry}: {d:?} > {ceiling:?}");
        }
    }

    /// Real clock: governor never grants early, so this cannot flake by being slow.
    #[tokio::test]
    async fn no_one_second_window_exceeds_the_rate() {
        let pacer = Pacer::per_second(9.0);
        let start = std::time::Instant::now();
        let mut grants = Vec::new();
        for _ in 0..28 {
            pacer.acquire().await;
            grants.push(start.elapsed());
        }
        for (i, first) in grants.iter().enumerate() {
            let in_window = grants[i..]
                .iter()
                .take_while(|t| **t < *first + Duration::from_secs(1))
                .count();
            assert!(in_window <= 9, "{in_window} grants within 1 s of {first:?}");
        }
    }

    #[tokio::test]
    async fn a_pause_holds_every_caller() {
        let pacer = Pacer::per_second(1000.0);
        pacer.pause_for(Duration::from_millis(300));
        let start = std::time::Instant::now();
        pacer.acquire().await;
        assert!(start.elapsed() >= Duration::from_millis(290));
        assert_eq!(pacer.pause_waits(), 1);
    }
}
