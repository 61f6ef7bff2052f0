//! Pacing: the shared request-rate limiter (governor) with, where an endpoint has one, a second
//! budget per sliding minute ([`MinuteWindow`]); a fleet-wide pause after a 429 and an adaptive
//! pace below the configured one while the API keeps limiting us (another client sharing the
//! app's quota); a learned pace ([`Learner`]) for endpoints whose limit Feishu does not publish
//! (messages, the custom field catalog); and the backoff policy for retryable failures (capped
//! exponential, full jitter).

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
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
    /// Number of times the caller at the head of the queue sat out a rate-limit pause (the
    /// callers behind it wait for their turn, uncounted).
    pause_waits: AtomicU64,
    /// The pace learned from 429s: halved on each, recovering slowly with each success.
    adaptive: Mutex<Adaptive>,
    /// A budget per sliding minute on top of the per-second pace (the list endpoint's second
    /// window), when the endpoint has one.
    minute: Option<MinuteWindow>,
    /// The learned pace, for an endpoint whose limit is not published (then `limiter` only
    /// holds the ceiling and `adaptive` is unused).
    learner: Option<Mutex<Learner>>,
    /// Whether a stored pace was offered yet ([`Pacer::seed`] takes only the first).
    seeded: AtomicBool,
    /// Requests wait for their grant one at a time, in the order they asked (tokio's mutex
    /// queues its waiters first come, first served). Governor alone lets every waiter sleep
    /// to the same instant and grants whichever wakes first: on a loaded machine one
    /// helpdesk's few requests could lose that race to another's backlog for tens of seconds.
    turn: tokio::sync::Mutex<()>,
}

/// Permission to send one request: when, and under which cut of a learned pace (a 429 to a
/// request sent before the last cut was already answered by that cut).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// When the request may go (a slot of the learned pace, or when the grant was given).
    pub at: Instant,
    /// The learned pace's cut count when the slot was taken (0 for fixed pacers).
    epoch: u64,
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
            learner: None,
            seeded: AtomicBool::new(false),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// A learned pace for an endpoint whose limit is not published: it starts at
    /// `settings.start`, rises while answers come back clean, is cut by each 429 and never
    /// exceeds `settings.ceiling` ([`Learner`]).
    pub fn learned(settings: LearnSettings) -> Self {
        let mut pacer = Self::per_second(settings.ceiling);
        pacer.learner = Some(Mutex::new(Learner::new(settings, None, Instant::now())));
        pacer
    }

    /// Waits for a grant to send one request; grants go in the order they were asked for.
    pub async fn acquire(&self) -> Grant {
        let _turn = self.turn.lock().await;
        loop {
            if let Some(until) = self.pause_deadline() {
                self.pause_waits.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep_until(until).await;
            }
            if let Some(minute) = &self.minute {
                minute.acquire().await;
            }
            self.limiter.until_ready().await;
            if let Some(learner) = &self.learner {
                let grant = lock(learner).take_slot(Instant::now());
                tokio::time::sleep_until(grant.at).await;
                // A cut or a pause that came while we waited for the slot still applies.
                if self.pause_deadline().is_none() && lock(learner).confirm(grant, Instant::now()) {
                    return grant;
                }
                continue;
            }
            if let Some(slot) = self.adaptive_slot() {
                tokio::time::sleep_until(slot).await;
            }
            // A pause that began while we queued for the grant still applies.
            if self.pause_deadline().is_none() {
                return Grant {
                    at: Instant::now(),
                    epoch: 0,
                };
            }
        }
    }

    /// The learned pace as it stands (None for a fixed pacer).
    pub fn learned_rate(&self) -> Option<LearnedRate> {
        self.learner.as_ref().map(|l| lock(l).snapshot())
    }

    /// Whether [`Pacer::seed`] was offered a stored pace already (later offers are ignored).
    pub fn is_seeded(&self) -> bool {
        self.seeded.load(Ordering::Relaxed)
    }

    /// Starts a learned pace from what an earlier process stored (`stored`, None when nothing
    /// was). Only the first offer counts: returns whether this one did.
    pub fn seed(&self, stored: Option<&LearnedRate>) -> bool {
        if self.seeded.swap(true, Ordering::Relaxed) {
            return false;
        }
        if let (Some(learner), Some(stored)) = (&self.learner, stored) {
            let mut learner = lock(learner);
            let settings = learner.settings;
            *learner = Learner::new(settings, Some(stored), Instant::now());
        }
        true
    }

    /// The learned pace when it moved enough since it was last taken here to be worth
    /// storing (a cut, or a tenth of the pace); None otherwise and for fixed pacers.
    pub fn take_unsaved(&self) -> Option<LearnedRate> {
        let mut learner = lock(self.learner.as_ref()?);
        let now = learner.snapshot();
        if learner
            .saved
            .as_ref()
            .is_some_and(|saved| !changed_meaningfully(saved, &now))
        {
            return None;
        }
        learner.saved = Some(now.clone());
        Some(now)
    }

    /// Holds every caller off for `wait` (extends, never shortens, a running pause).
    pub fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut guard = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none_or(|current| current < until) {
            *guard = Some(until);
        }
    }

    /// After a 429 to the request sent under `grant`, which says to wait `reset`: a fixed
    /// pace is halved (not below [`MIN_RATE`]); a learned one is cut ([`Learner::on_limited`]).
    /// Returns the new pace. (The caller pauses every worker with [`Pacer::pause_for`].)
    pub fn slow_down(&self, grant: &Grant, reset: Duration) -> f64 {
        if let Some(learner) = &self.learner {
            let mut learner = lock(learner);
            learner.on_limited(grant, Instant::now(), reset);
            return learner.rate();
        }
        let mut a = self.adaptive.lock().unwrap_or_else(|p| p.into_inner());
        a.rate = (a.rate / 2.0).max(MIN_RATE.min(a.ceiling));
        a.rate
    }

    /// After a clean answer to the request sent under `grant`: a fixed pace regains a little,
    /// up to the configured one; a learned one counts it ([`Learner::on_clean`]).
    pub fn speed_up(&self, grant: &Grant) {
        if let Some(learner) = &self.learner {
            lock(learner).on_clean(grant, Instant::now());
            return;
        }
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a learned pace starts and what it may reach (`feishu.<endpoint>_requests_per_second`
/// and `feishu.<endpoint>_requests_per_second_ceiling`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnSettings {
    /// The pace before anything is learned (nothing stored yet): conservative.
    pub start: f64,
    /// The most the pace may reach, however clean the answers.
    pub ceiling: f64,
}

/// A learned pace as it stands: what is stored (`store::rates`), shown by `status` and
/// exported in `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedRate {
    /// Requests per second granted now.
    pub rate: f64,
    /// The pace the API accepted just before it last limited us: the estimate of its true
    /// limit, which the pace stays a little below. None while never limited.
    pub limit: Option<f64>,
    /// The configured ceiling when this was taken (status shows it beside the rate).
    pub ceiling: f64,
    /// When a 429 last cut the pace (None: never).
    pub last_cut: Option<DateTime<Utc>>,
}

/// Whether `now` differs enough from what was stored (`saved`) to store it again: a new cut,
/// or a pace or limit estimate a tenth away. Not on every request: the pace moves by small
/// steps while it probes.
fn changed_meaningfully(saved: &LearnedRate, now: &LearnedRate) -> bool {
    let apart = |a: f64, b: f64| (a - b).abs() >= 0.1 * a.max(b);
    now.last_cut != saved.last_cut
        || apart(now.rate, saved.rate)
        || match (now.limit, saved.limit) {
            (Some(a), Some(b)) => apart(a, b),
            (a, b) => a.is_some() != b.is_some(),
        }
        || now.ceiling != saved.ceiling
}

/// How often clean answers may raise a learned pace.
pub const LEARN_INTERVAL: Duration = Duration::from_secs(1);
/// While no limit is known, each clean interval multiplies the pace by this (from a
/// conservative start, the ceiling or the first 429 comes within seconds).
const SLOW_START_FACTOR: f64 = 1.5;
/// A 429 cuts the pace to this share of the lower of the pace and the limit just seen.
const CUT_FACTOR: f64 = 0.7;
/// Once a limit is known the pace climbs back to this share of it, and stays there.
const TARGET_SHARE: f64 = 0.95;
/// Each clean interval below the target closes this share of the gap (at least 2 % of the
/// target): back from a cut within ~10 s.
const RECOVERY_SHARE: f64 = 0.25;
/// At the target, after [`PROBE_AFTER`] and [`PROBE_AFTER_CLEAN`] clean answers, the limit
/// estimate is raised by this factor: the true limit may have risen, or been underestimated.
/// A probe that overshoots costs one cut, so it is rare.
const PROBE_FACTOR: f64 = 1.05;
const PROBE_AFTER: Duration = Duration::from_secs(60);
const PROBE_AFTER_CLEAN: u64 = 300;
/// A 429 whose count is at least this share of the known limit looks like arrival jitter...
const JITTER_SHARE: f64 = 0.9;
/// ...and eases the limit estimate by this factor only.
const JITTER_EASING: f64 = 0.97;
/// Grants remembered to count what the API had just accepted when it answers 429.
const RECENT_KEPT: Duration = Duration::from_secs(5);

/// The controller of a learned pace, for endpoints whose limit Feishu does not publish.
/// Pure: every event carries the caller's clock, so tests drive it with a fake one.
///
/// - No limit known: each clean interval ([`LEARN_INTERVAL`]) in which the pace was used
///   multiplies it by [`SLOW_START_FACTOR`], up to the ceiling.
/// - A 429 (or 99991400) to a request: the grants sent in the second before it are about what
///   the API accepts per second; that count (at most the pace) becomes the limit estimate; the
///   pace is cut to [`CUT_FACTOR`] of the lower of the two, and no slot is given before the
///   answer's `x-ogw-ratelimit-reset`. Answers to requests sent before that cut do not cut
///   again.
/// - Limit known: clean intervals bring the pace back up to [`TARGET_SHARE`] of it
///   (additive steps of a share of the gap), then probe above it rarely ([`PROBE_FACTOR`]).
/// - Never above the ceiling, never below [`MIN_RATE`] (or the ceiling, if lower).
#[derive(Debug)]
pub struct Learner {
    /// Start and ceiling.
    settings: LearnSettings,
    /// The pace now, requests per second.
    rate: f64,
    /// The estimate of the true limit (see [`LearnedRate::limit`]).
    limit: Option<f64>,
    /// When a 429 last cut the pace.
    last_cut: Option<DateTime<Utc>>,
    /// Cuts so far: a grant taken before the last cut carries an older one.
    epoch: u64,
    /// Start of the interval clean answers are counted in.
    interval_start: Instant,
    /// Clean answers in the current interval.
    interval_clean: u64,
    /// Clean answers since the last cut or probe (gates the next probe).
    clean_since: u64,
    /// No probe before this.
    probe_not_before: Instant,
    /// The next evenly spaced slot.
    next: Option<Instant>,
    /// No slot before this (the last 429's reset).
    paused_until: Option<Instant>,
    /// Grants sent in the last [`RECENT_KEPT`].
    recent: VecDeque<Instant>,
    /// What [`Pacer::take_unsaved`] last handed out to be stored.
    saved: Option<LearnedRate>,
}

impl Learner {
    /// A controller starting at `stored`'s pace and limit estimate when an earlier process
    /// learned them, else at `settings.start`; always within the ceiling.
    pub fn new(settings: LearnSettings, stored: Option<&LearnedRate>, now: Instant) -> Self {
        let floor = MIN_RATE.min(settings.ceiling);
        let rate = stored
            .map_or(settings.start, |s| s.rate)
            .clamp(floor, settings.ceiling);
        Self {
            settings,
            rate,
            limit: stored.and_then(|s| s.limit),
            last_cut: stored.and_then(|s| s.last_cut),
            epoch: 0,
            interval_start: now,
            interval_clean: 0,
            clean_since: 0,
            probe_not_before: now + PROBE_AFTER,
            next: None,
            paused_until: None,
            recent: VecDeque::new(),
            saved: stored.cloned(),
        }
    }

    /// The pace now, requests per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The next slot at the pace (after any pause), taken: the request goes at `grant.at`.
    pub fn take_slot(&mut self, now: Instant) -> Grant {
        let earliest = self.paused_until.filter(|p| *p > now).unwrap_or(now);
        let at = self.next.map_or(earliest, |next| next.max(earliest));
        self.next = Some(at + Duration::from_secs_f64(1.0 / self.rate));
        Grant {
            at,
            epoch: self.epoch,
        }
    }

    /// Whether `grant` may still be used at `now` (no cut or pause since it was taken); if
    /// so it is remembered as sent.
    pub fn confirm(&mut self, grant: Grant, now: Instant) -> bool {
        if grant.epoch != self.epoch || self.paused_until.is_some_and(|p| p > now) {
            return false;
        }
        while self
            .recent
            .front()
            .is_some_and(|t| *t + RECENT_KEPT < grant.at)
        {
            self.recent.pop_front();
        }
        let kept = (self.settings.ceiling * RECENT_KEPT.as_secs_f64()) as usize + 16;
        if self.recent.len() >= kept {
            self.recent.pop_front();
        }
        self.recent.push_back(grant.at);
        true
    }

    /// A clean answer at `now` to the request sent under `grant`.
    pub fn on_clean(&mut self, grant: &Grant, now: Instant) {
        self.interval_clean += 1;
        self.clean_since += 1;
        let elapsed = now.saturating_duration_since(self.interval_start);
        if elapsed < LEARN_INTERVAL {
            return;
        }
        // Only an interval that used at least half its slots says the pace is fine: clean
        // answers at a trickle prove nothing about the pace.
        let used = self.interval_clean as f64 >= 0.5 * self.rate * elapsed.as_secs_f64();
        self.interval_start = now;
        self.interval_clean = 0;
        if used && grant.epoch == self.epoch {
            self.raise(now);
        }
    }

    fn raise(&mut self, now: Instant) {
        let ceiling = self.settings.ceiling;
        let Some(limit) = self.limit else {
            self.rate = (self.rate * SLOW_START_FACTOR).min(ceiling);
            return;
        };
        let target = (limit * TARGET_SHARE).min(ceiling);
        if self.rate < target {
            let step = ((target - self.rate) * RECOVERY_SHARE).max(target * 0.02);
            self.rate = (self.rate + step).min(target);
        } else if target < ceiling
            && self.clean_since >= PROBE_AFTER_CLEAN
            && now >= self.probe_not_before
        {
            self.limit = Some(limit * PROBE_FACTOR);
            self.clean_since = 0;
            self.probe_not_before = now + PROBE_AFTER;
        }
    }

    /// A 429 / 99991400 at `now` to the request sent under `grant`, saying to wait `reset`
    /// (`x-ogw-ratelimit-reset`). Returns whether it cut the pace (the first answer of a
    /// burst does; answers to requests sent before that cut only extend the pause).
    pub fn on_limited(&mut self, grant: &Grant, now: Instant, reset: Duration) -> bool {
        let until = now + reset;
        if self.paused_until.is_none_or(|p| p < until) {
            self.paused_until = Some(until);
        }
        self.next = None;
        if grant.epoch != self.epoch {
            return false;
        }
        let window_start = grant.at.checked_sub(Duration::from_secs(1));
        let accepted = self
            .recent
            .iter()
            .filter(|t| **t < grant.at && window_start.is_none_or(|w| **t >= w))
            .count() as f64;
        let floor = MIN_RATE.min(self.settings.ceiling);
        // Below one grant a second the count says nothing: the pace itself is the estimate.
        let seen = if accepted >= 1.0 {
            accepted.min(self.rate)
        } else {
            self.rate
        };
        // Limited again at a pace held before: the count may be one short (arrivals jitter, so
        // the API's window need not match our send times), and the pace itself had been fine.
        // A count close to the estimate is such jitter: the estimate only eases a little
        // (probes win it back); a count far below it is a limit that fell (someone else
        // shares the app's budget), learned at once.
        let seen = match self.limit {
            Some(known) => {
                let seen = seen.max((accepted + 1.0).min(self.rate));
                if accepted + 1.0 >= JITTER_SHARE * known {
                    seen.max(known * JITTER_EASING)
                } else {
                    seen
                }
            }
            None => seen,
        };
        let limit = seen.max(floor);
        self.limit = Some(limit);
        self.rate = (self.rate.min(limit) * CUT_FACTOR).clamp(floor, self.settings.ceiling);
        self.epoch += 1;
        self.last_cut = Some(Utc::now());
        self.interval_start = now;
        self.interval_clean = 0;
        self.clean_since = 0;
        self.probe_not_before = now + PROBE_AFTER;
        true
    }

    /// The pace as it stands.
    pub fn snapshot(&self) -> LearnedRate {
        LearnedRate {
            rate: self.rate,
            limit: self.limit,
            ceiling: self.settings.ceiling,
            last_cut: self.last_cut,
        }
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
        let grant = Grant {
            at: Instant::now(),
            epoch: 0,
        };
        let reset = Duration::from_secs(1);
        assert_eq!(pacer.slow_down(&grant, reset), 4.0);
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
        assert_eq!(pacer.slow_down(&grant, reset), 2.0);
        for _ in 0..1000 {
            pacer.speed_up(&grant);
        }
        assert_eq!(pacer.current_rate(), 8.0);
        let start = Instant::now();
        for _ in 0..9 {
            pacer.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(1100));
        for _ in 0..20 {
            pacer.slow_down(&grant, reset);
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

    /// A saturating client against a server allowing `limit` requests per sliding second
    /// (as the simulator does), on a fake clock: 20 ms from grant to answer, 10 ms to arrive.
    /// Returns the learner, when its pace first reached 90 % of `limit` (None: never), and
    /// the (limited, sent) counts.
    struct Run {
        learner: Learner,
        reached_90: Option<Duration>,
        limited: usize,
        sent: usize,
        /// Every pace the learner had after an answer.
        max_rate: f64,
        /// (answer time, slot of the next confirmed grant) after each 429 that paused.
        resets_honoured: bool,
    }

    fn run_against(
        limit: usize,
        settings: LearnSettings,
        stored: Option<&LearnedRate>,
        secs: u64,
    ) -> Run {
        let start = Instant::now();
        let mut learner = Learner::new(settings, stored, start);
        let mut accepted: VecDeque<Instant> = VecDeque::new();
        // (answered at, grant, limited, reset)
        let mut pending: VecDeque<(Instant, Grant, bool, Duration)> = VecDeque::new();
        let (mut limited, mut sent) = (0, 0);
        let mut reached_90 = None;
        let mut max_rate: f64 = 0.0;
        let mut resets_honoured = true;
        let mut pause_end: Option<Instant> = None;
        let mut now = start;
        let end = start + Duration::from_secs(secs);
        while now < end {
            let grant = learner.take_slot(now);
            let mut stale = false;
            while pending.front().is_some_and(|p| p.0 <= grant.at) {
                let (at, g, was_limited, reset) = pending.pop_front().unwrap();
                if was_limited {
                    learner.on_limited(&g, at, reset);
                    pause_end = Some(pause_end.map_or(at + reset, |p: Instant| p.max(at + reset)));
                    stale = true;
                } else {
                    learner.on_clean(&g, at);
                }
                max_rate = max_rate.max(learner.rate());
                if reached_90.is_none() && learner.rate() >= 0.9 * limit as f64 {
                    reached_90 = Some(at - start);
                }
                now = now.max(at);
            }
            if stale || !learner.confirm(grant, grant.at) {
                continue;
            }
            if pause_end.is_some_and(|p| grant.at < p) {
                resets_honoured = false;
            }
            sent += 1;
            now = grant.at;
            let arrival = grant.at + Duration::from_millis(10);
            while accepted
                .front()
                .is_some_and(|t| arrival.duration_since(*t) >= Duration::from_secs(1))
            {
                accepted.pop_front();
            }
            let answered = grant.at + Duration::from_millis(20);
            if accepted.len() >= limit {
                let oldest = accepted[0];
                let wait = Duration::from_secs(1).saturating_sub(arrival.duration_since(oldest));
                let reset = Duration::from_secs(wait.as_secs_f64().ceil().max(1.0) as u64);
                limited += 1;
                pending.push_back((answered, grant, true, reset));
            } else {
                accepted.push_back(arrival);
                pending.push_back((answered, grant, false, Duration::ZERO));
            }
        }
        Run {
            learner,
            reached_90,
            limited,
            sent,
            max_rate,
            resets_honoured,
        }
    }

    #[test]
    fn a_learned_pace_converges_below_the_true_limit_with_few_429s() {
        let settings = LearnSettings {
            start: 5.0,
            ceiling: 100.0,
        };
        for limit in [2, 20, 50] {
            let run = run_against(limit, settings, None, 600);
            let share = run.limited as f64 / run.sent as f64;
            let rate = run.learner.rate();
            println!(
                "limit {limit}: 90 % after {:?}, 429s {} of {} ({:.3} %), pace {rate:.2}, estimate {:?}",
                run.reached_90,
                run.limited,
                run.sent,
                share * 100.0,
                run.learner.limit
            );
            assert!(
                run.reached_90.is_some_and(|t| t < Duration::from_secs(120)),
                "limit {limit}"
            );
            assert!(share < 0.02, "limit {limit}: {share}");
            assert!(
                rate >= 0.8 * limit as f64 && rate <= limit as f64 * 1.1,
                "limit {limit}: {rate}"
            );
            assert!(run.resets_honoured, "a slot fell inside a 429's reset");
        }
    }

    #[test]
    fn a_learned_pace_never_exceeds_its_ceiling() {
        let settings = LearnSettings {
            start: 2.0,
            ceiling: 30.0,
        };
        // A true limit far above the ceiling: only the ceiling stops the climb.
        let run = run_against(1000, settings, None, 120);
        assert_eq!(run.limited, 0);
        assert!(run.max_rate <= 30.0, "{}", run.max_rate);
        assert_eq!(run.learner.rate(), 30.0);
        // At the ceiling, with the true limit just below it: never above it either.
        let run = run_against(29, settings, None, 300);
        assert!(run.max_rate <= 30.0, "{}", run.max_rate);
        assert!(run.learner.rate() >= 0.8 * 29.0, "{}", run.learner.rate());
    }

    #[test]
    fn a_429_cuts_the_pace_once_per_burst_and_no_slot_comes_before_its_reset() {
        let settings = LearnSettings {
            start: 10.0,
            ceiling: 50.0,
        };
        let t0 = Instant::now();
        let mut learner = Learner::new(settings, None, t0);
        let mut grants = Vec::new();
        for _ in 0..12 {
            let g = learner.take_slot(t0);
            assert!(learner.confirm(g, g.at));
            grants.push(g);
        }
        // 100 ms apart at 10/s.
        assert_eq!(grants[11].at - grants[0].at, Duration::from_millis(1100));
        let now = grants[11].at + Duration::from_millis(20);
        assert!(learner.on_limited(&grants[11], now, Duration::from_secs(3)));
        // Ten grants in the second before the limited one: the estimate, and the pace cut
        // below it.
        assert_eq!(learner.limit, Some(10.0));
        assert!(learner.rate() <= 0.7 * 10.0 + 1e-9, "{}", learner.rate());
        assert!(learner.last_cut.is_some());
        // The other answers of the burst were sent before the cut: no second cut.
        let rate = learner.rate();
        assert!(!learner.on_limited(&grants[10], now, Duration::from_secs(1)));
        assert_eq!(learner.rate(), rate);
        // A slot taken before the cut is stale; the next one waits out the reset.
        assert!(!learner.confirm(grants[11], now));
        let next = learner.take_slot(now);
        assert!(next.at >= now + Duration::from_secs(3));
        assert!(learner.confirm(next, next.at));
        // Clean answers in used intervals bring it back up, to a little below the estimate.
        let mut t = next.at;
        for _ in 0..200 {
            let g = learner.take_slot(t);
            assert!(learner.confirm(g, g.at));
            t = g.at;
            learner.on_clean(&g, t + Duration::from_millis(20));
        }
        assert!(learner.rate() > rate, "{} after {rate}", learner.rate());
        assert!(learner.rate() <= 10.0 * TARGET_SHARE + 1e-9);
    }

    #[test]
    fn a_stored_pace_is_the_starting_point_within_the_ceiling() {
        let stored = LearnedRate {
            rate: 17.0,
            limit: Some(18.0),
            ceiling: 40.0,
            last_cut: Some(Utc::now()),
        };
        let settings = LearnSettings {
            start: 2.0,
            ceiling: 40.0,
        };
        let learner = Learner::new(settings, Some(&stored), Instant::now());
        assert_eq!(learner.snapshot(), stored);
        // A ceiling lowered since applies.
        let lower = LearnSettings {
            start: 2.0,
            ceiling: 10.0,
        };
        assert_eq!(
            Learner::new(lower, Some(&stored), Instant::now()).rate(),
            10.0
        );
        // Converging from the stored pace costs (almost) no 429s.
        let run = run_against(18, settings, Some(&stored), 120);
        assert!(run.limited <= 2, "{} limited", run.limited);
        assert!(run.reached_90.is_some_and(|t| t < Duration::from_secs(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_learned_pace_is_stored_only_when_it_moved_meaningfully() {
        let pacer = Pacer::learned(LearnSettings {
            start: 5.0,
            ceiling: 50.0,
        });
        let stored = LearnedRate {
            rate: 8.0,
            limit: Some(8.4),
            ceiling: 50.0,
            last_cut: None,
        };
        assert!(pacer.seed(Some(&stored)));
        assert!(!pacer.seed(None), "only the first offer counts");
        assert_eq!(pacer.learned_rate(), Some(stored.clone()));
        // Seeded from the store: nothing new to store.
        assert_eq!(pacer.take_unsaved(), None);
        let grant = pacer.acquire().await;
        pacer.speed_up(&grant);
        assert_eq!(pacer.take_unsaved(), None, "one clean answer is no news");
        pacer.slow_down(&grant, Duration::from_secs(1));
        let cut = pacer.take_unsaved().expect("a cut is stored");
        assert!(cut.rate < 8.0 && cut.last_cut.is_some());
        assert_eq!(pacer.take_unsaved(), None);
        // A fixed pacer has nothing to store.
        assert_eq!(Pacer::per_second(9.0).take_unsaved(), None);
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

    /// Grants go in the order they were asked for. Eight requests queue in a known order
    /// behind a pause (so none can be granted before all have asked); the first to complete
    /// takes the turn only after the one before it returned, so the completion order is the
    /// grant order. Without the turn, governor grants whichever waiter wakes first (e.g.
    /// [0, 5, 7, 3, 1, 2, 6, 4]): one helpdesk's few requests could lose to another's backlog.
    #[tokio::test]
    async fn requests_are_granted_in_the_order_they_asked() {
        use futures::StreamExt;
        let pacer = &Pacer::per_second(500.0);
        pacer.pause_for(Duration::from_millis(20));
        let mut asks: Vec<_> = (0..8)
            .map(|i| Box::pin(async move { (i, pacer.acquire().await.at) }))
            .collect();
        for ask in &mut asks {
            assert!(futures::poll!(ask.as_mut()).is_pending());
        }
        let order: Vec<usize> = futures::stream::iter(asks)
            .buffer_unordered(8)
            .map(|(i, _)| i)
            .collect()
            .await;
        assert_eq!(order, (0..8).collect::<Vec<_>>());
    }
}
