//! The knobs of a cycle, taken from [`Settings`] once, so a cycle never reads the config.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{FeishuSettings, Settings, default_backfill_since};
use crate::discover::{DiscoveryOptions, KnownIdsQuery};

/// The least a claim holds; an expired claim (crashed worker) can be taken again.
pub const MIN_CLAIM_LEASE: Duration = Duration::from_secs(15 * 60);

/// The knobs of a cycle, taken from [`Settings`].
#[derive(Debug, Clone)]
pub struct CycleOptions {
    pub batch_size: usize,
    pub max_in_flight: usize,
    pub open_refresh: Duration,
    pub closed_refresh: Duration,
    /// Discovery through the list API; None when `sync.discover = false`.
    pub discovery: Option<DiscoveryOptions>,
    pub known_ids_query: Option<KnownIdsQuery>,
    pub max_tickets_per_cycle: Option<u64>,
    /// After a stop request, how long requests already in flight may take to finish.
    pub shutdown_grace: Duration,
    /// How long claimed tickets stay ours: long enough for a claim's worth of tickets to get
    /// their grants and exhaust their retries.
    pub claim_lease: Duration,
    /// After the tickets: refresh the custom field catalog (when due) and the daily backlog.
    pub refresh_reports: bool,
    /// Fetch conversations (`sync.messages`).
    pub messages: bool,
    /// How long a cycle claims new work; then it winds down: no new claims, conversation reads
    /// stop after their current page (what they read is written and the rest carried over to
    /// the next cycle), details in flight finish. The daemon sets one schedule interval, so
    /// discovery runs at its ticks however busy the queue; None (`sync`): until nothing is due.
    pub claim_for: Option<Duration>,
}

impl CycleOptions {
    /// The same cycle without id sources (no list calls, no known_ids_query) and without the
    /// reports: for a cycle an event woke, whose ticket is already queued.
    pub fn queue_only(&self) -> Self {
        Self {
            discovery: None,
            known_ids_query: None,
            refresh_reports: false,
            ..self.clone()
        }
    }

    /// The same options for `helpdesk_id` (its discovery watermark and backfill).
    pub fn with_helpdesk(mut self, helpdesk_id: &str) -> Self {
        if let Some(d) = &mut self.discovery {
            d.helpdesk_id = helpdesk_id.to_owned();
        }
        self
    }

    /// Options for a cycle; `since` is `sync --since` (a history backfill from that date).
    pub fn from_settings(settings: &Settings, since: Option<DateTime<Utc>>) -> Self {
        let s = &settings.sync;
        Self {
            batch_size: s.batch_size,
            max_in_flight: settings.feishu.max_in_flight,
            open_refresh: s.open_refresh,
            closed_refresh: s.closed_refresh,
            discovery: (s.discover || since.is_some()).then(|| DiscoveryOptions {
                helpdesk_id: settings.feishu.helpdesk_id.trim().to_owned(),
                overlap: s.discovery_overlap,
                backfill_since: s.backfill_since.unwrap_or_else(default_backfill_since),
                since_override: since,
                store_list_rows: s.store_list_rows,
            }),
            known_ids_query: s.known_ids_query.clone().map(|sql| KnownIdsQuery {
                sql,
                several_helpdesks: settings.helpdesks().len() > 1,
            }),
            max_tickets_per_cycle: s.max_tickets_per_cycle,
            shutdown_grace: s.shutdown_grace,
            claim_lease: claim_lease(&settings.feishu),
            refresh_reports: true,
            messages: s.messages,
            claim_for: None,
        }
    }
}

/// The daemon's claim budget per cycle: the interval between the schedule's next two ticks
/// (at least [`MIN_CLAIM_FOR`]).
pub fn claim_for_schedule(schedule: &cron::Schedule) -> Duration {
    let mut ticks = schedule.upcoming(Utc);
    let interval = match (ticks.next(), ticks.next()) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    };
    interval.max(MIN_CLAIM_FOR)
}

/// The least a daemon cycle claims new work for.
pub const MIN_CLAIM_FOR: Duration = Duration::from_secs(5);

/// Lease for one claim of `max_in_flight` tickets: the wait for their grants, each one's
/// attempts (timeouts plus capped backoff), and the rate-limit waiting budget, on top of the minimum.
fn claim_lease(f: &FeishuSettings) -> Duration {
    let grants = Duration::from_secs_f64(f.max_in_flight as f64 / f.detail_requests_per_second);
    let attempts = (f.request_timeout + crate::pace::RETRY_CAP) * f.max_attempts;
    MIN_CLAIM_LEASE + grants + attempts + crate::feishu::client::RATE_LIMIT_BUDGET
}
