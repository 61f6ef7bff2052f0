//! Pacing: the shared request-rate limiter (governor) with, where an endpoint has one, a second
//! budget per sliding minute ([`MinuteWindow`]); a fleet-wide pause after a 429 and an adaptive
//! pace below the configured one while the API keeps limiting us (another client sharing the
//! app's quota); and the backoff policy for retryable failures (capped exponential, full
//! jitter).

use std::collections::VecDeque;
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
    /// The pace learned from 429s: halved on each, recovering slowly with each success.
    adaptive: Mutex<Adaptive>,
    /// A budget per sliding minute on top of the per-second pace (the list endpoint's second
    /// window), when the endpoint has one.
    minute: Option<MinuteWindow>,
}

/// At most `cap` grants in any 60 seconds (sliding): a grant waits until the `cap`-th one
/// before it is a minute old. Bursts up to the cap are allowed within the per-second pace.
#[derive(Debug)]
pub struct MinuteWindow {
    cap: usize,
    grants: Mutex<VecDeque<Instant>>,
}

impl MinuteWindow {
    pub const WINDOW: Duration = Duration::from_secs(60);

    pub fn new(cap: u32) -> Self {
        Self {
            cap: cap.max(1) as usize,
            grants: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits until one more grant fits in the last minute, and takes it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                while grants.len() > self.cap {
                    grants.pop_front();
                }
                match grants.front() {
                    Some(oldest) if grants.len() == self.cap && now < *oldest + Self::WINDOW => {
                        *oldest + Self::WINDOW
                    }
                    _ => {
                        if grants.len() == self.cap {
                            grants.pop_front();
                        }
                        grants.push_back(now);
                        return;
                    }
                }
            };
            tokio::time::sleep_until(wait).await;
        }
    }
}

/// Additive-increase, multiplicative-decrease pace (requests per second) under the ceiling.
#[derive(Debug)]
struct Adaptive {
    ceiling: f64,
    rate: f64,
    /// The next free slot while the pace is below the ceiling.
    next: Option<Instant>,
}

/// Never slower than one request every two seconds.
const MIN_RATE: f64 = 0.5;
/// Pace regained per successful request: from half the ceiling back to it takes
/// `ceiling / 2 / 0.02` successes (~40 s at 5/s), so a quota someone else is using is probed
/// gently rather than hit every second.
const RECOVERY_PER_SUCCESS: f64 = 0.02;

impl Pacer {
    /// A limiter granting at most `rate` requests per second, evenly spaced (burst of one), so
    /// no one-second window ever holds more than `rate` grants.
    pub fn per_second(rate: f64) -> Self {
        Self::with_minute_cap(rate, None)
    }

    /// [`Pacer::per_second`], and at most `per_minute` grants in any 60 seconds.
    pub fn with_minute_cap(rate: f64, per_minute: Option<u32>) -> Self {
        // Round the period UP so that `rate` periods never fit inside one second.
        let period_nanos = (1e9 / rate).ceil().max(1.0) as u64;
        let quota = Quota::with_period(Duration::from_nanos(period_nanos))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::direct(quota),
            paused_until: Mutex::new(None),
            pause_waits: AtomicU64::new(0),
            adaptive: Mutex::new(Adaptive {
                ceiling: rate,
                rate,
                next: None,
            }),
            minute: per_minute.map(MinuteWindow::new),
        }
    }

    /// Waits for a grant to send one request.
    pub async fn acquire(&self) {
        loop {
            if let Some(until) = self.pause_deadline() {
                self.pause_waits.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep_until(until).await;
            }
            if let Some(minute) = &self.minute {
                minute.acquire().await;
            }
            self.limiter.until_ready().await;
            if let Some(slot) = self.adaptive_slot() {
                tokio::time::sleep_until(slot).await;
            }
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

    /// After a 429: halve the pace (not below [`MIN_RATE`]); returns the new pace.
    pub fn slow_down(&self) -> f64 {
        let mut a = self.adaptive.lock().unwrap_or_else(|p| p.into_inner());
        a.rate = (a.rate / 2.0).max(MIN_RATE.min(a.ceiling));
        a.rate
    }

    /// After a success: regain a little pace, up to the configured one.
    pub fn speed_up(&self) {
        let mut a = self.adaptive.lock().unwrap_or_else(|p| p.into_inner());
        if a.rate < a.ceiling {
            a.rate = (a.rate + RECOVERY_PER_SUCCESS).min(a.ceiling);
            if a.rate >= a.ceiling {
                a.next = None;
            }
        }
    }

    /// The current pace in requests per second.
    #[cfg(test)]
    pub fn current_rate(&self) -> f64 {
        self.adaptive.lock().unwrap_or_else(|p| p.into_inner()).rate
    }

    /// Below the ceiling: the next evenly spaced slot at the learned pace, taken.
    fn adaptive_slot(&self) -> Option<Instant> {
        let mut a = self.adaptive.lock().unwrap_or_else(|p| p.into_inner());
        if a.rate >= a.ceiling {
            return None;
        }
        let now = Instant::now();
        let slot = a.next.map_or(now, |next| next.max(now));
        a.next = Some(slot + Duration::from_secs_f64(1.0 / a.rate));
        Some(slot)
    }

    /// How many waits a shared pause caused (the tests read it).
    #[cfg(test)]
    pub fn pause_waits(&self) -> u64 {
        self.pause_waits.load(Ordering::Relaxed)
    }

    fn pause_deadline(&self) -> Option<Instant> {
        let guard = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        guard.filter(|until| *until > Instant::now())
    }
}

/// Permission to send requests, held while this process holds the helpdesk lock: the lock
/// renews it on every successful renewal, and it lapses on its own `valid_for` after the last
/// one. A process that is paused or cut off from the database therefore stops sending before
/// a new lock holder may start (`scheduler::lock`), even before it notices the loss.
/// The default lease never lapses (no lock in use: `demo`, tests).
#[derive(Clone, Debug, Default)]
pub struct SendLease(std::sync::Arc<Mutex<Option<Instant>>>);

impl SendLease {
    /// A lease that allows nothing until renewed.
    pub fn lapsed() -> Self {
        Self(std::sync::Arc::new(Mutex::new(Some(Instant::now()))))
    }

    /// Allows sending until `until`.
    pub fn renew_until(&self, until: Instant) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
    }

    /// Allows nothing from now on (until renewed).
    pub fn revoke(&self) {
        self.renew_until(Instant::now());
    }

    /// Whether a request may be sent now.
    pub fn is_valid(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|until| Instant::now() < until)
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

    #[tokio::test(start_paused = true)]
    async fn a_429_halves_the_pace_and_successes_win_it_back() {
        let pacer = Pacer::per_second(8.0);
        assert_eq!(pacer.slow_down(), 4.0);
        // At 4/s, 9 grants (the first immediate) take 2 s.
        let start = Instant::now();
        for _ in 0..9 {
            pacer.acquire().await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1990) && took < Duration::from_millis(2100),
            "{took:?}"
        );
        assert_eq!(pacer.slow_down(), 2.0);
        for _ in 0..1000 {
            pacer.speed_up();
        }
        assert_eq!(pacer.current_rate(), 8.0);
        let start = Instant::now();
        for _ in 0..9 {
            pacer.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(1100));
        for _ in 0..20 {
            pacer.slow_down();
        }
        assert_eq!(pacer.current_rate(), MIN_RATE);
    }

    /// Ten simulated minutes of saturated demand at 1000 per minute: no 60-second window ever
    /// holds more, and the budget is used (a burst, then a grant as each minute-old one expires).
    #[tokio::test(start_paused = true)]
    async fn no_minute_window_exceeds_its_cap() {
        let window = MinuteWindow::new(1000);
        let start = Instant::now();
        let mut grants = Vec::new();
        while start.elapsed() < Duration::from_secs(600) {
            window.acquire().await;
            grants.push(start.elapsed());
            // The per-second pace in front of it: 50/s.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut first = 0;
        for last in 0..grants.len() {
            while grants[last] - grants[first] >= MinuteWindow::WINDOW {
                first += 1;
            }
            assert!(
                last - first < 1000,
                "{} grants within 60 s",
                last - first + 1
            );
        }
        // 10 minutes of a 1000/min budget, give or take the window's edge.
        assert!(grants.len() >= 9_900, "{} grants", grants.len());
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
