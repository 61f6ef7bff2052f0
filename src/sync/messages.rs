//! The messages step: a ticket's conversation, every page, only what is after the newest stored
//! message (with overlap), normalized for the writer. A failure costs only this ticket's
//! messages; the ticket's detail is never held back by it (it is its own job in its own lane).
//!
//! The unit of `time_start` / `time_end` is not documented (the example is 10 digits: seconds).
//! So the step never sends bounds that could hide a message under either reading: `time_start`
//! in seconds (read as milliseconds it is 1970: everything comes back) and `time_end` in
//! milliseconds (read as seconds it is far in the future). When a message older than
//! `time_start` comes back anyway, seconds are not what the API reads, and from then on the
//! step sends milliseconds (recorded in `api_observations`). Messages are deduplicated by id.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::detail::Fetched;
use crate::domain::{Failure, MessageRow, MessagesOutcome, TicketId};
use crate::feishu::client::{MESSAGES_PAGE_SIZE, MessagesQuery};
use crate::feishu::{ApiError, Disposition, FeishuClient};
use crate::normalize::messages::normalize_message;
use crate::store::messages::MessagesClaim;

/// How far before the newest stored message a fetch starts again (late or re-timed messages).
pub const OVERLAP: Duration = Duration::from_secs(10 * 60);
/// A conversation longer than this many pages is cut short (and retried later).
const MAX_PAGES: u32 = 500;

/// What the API reads `time_start` in, as far as its answers have shown.
#[derive(Debug)]
pub struct TimeUnit(AtomicU8);

const SECONDS: u8 = 0;
const MILLISECONDS: u8 = 1;

impl TimeUnit {
    /// From `api_observations` (None: nothing observed yet, seconds as the docs' example).
    pub fn from_observed(value: Option<&str>) -> Self {
        Self(AtomicU8::new(match value {
            Some("milliseconds") => MILLISECONDS,
            _ => SECONDS,
        }))
    }

    pub(super) fn is_milliseconds(&self) -> bool {
        self.0.load(Ordering::Relaxed) == MILLISECONDS
    }

    /// The API returned a message older than a `time_start` sent in seconds.
    fn saw_seconds_ignored(&self) -> bool {
        self.0.swap(MILLISECONDS, Ordering::Relaxed) == SECONDS
    }

    /// The bounds for messages after `since`, never hiding one under either reading.
    fn bounds(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> (i64, i64) {
        let end_ms = (now + chrono::Duration::days(1)).timestamp_millis();
        if self.is_milliseconds() {
            (since.timestamp_millis(), end_ms)
        } else {
            (since.timestamp(), end_ms)
        }
    }
}

/// What the messages step needs besides the claim.
pub(super) struct MessagesStep<'a> {
    pub client: &'a FeishuClient,
    pub unit: &'a TimeUnit,
    pub open_refresh: Duration,
}

/// Fetches the conversation of a claimed ticket.
pub(super) async fn fetch_messages(
    step: &MessagesStep<'_>,
    claim: MessagesClaim,
    stop: &CancellationToken,
) -> Fetched {
    let started_at = Utc::now();
    let Ok(id) = TicketId::parse(&claim.ticket_id) else {
        return Fetched::Messages(MessagesOutcome::Failed {
            ticket_id: claim.ticket_id,
            failure: Failure {
                message: "not a ticket id".into(),
                ..Failure::default()
            },
        });
    };
    let since = claim
        .newest_at
        .map(|at| at - chrono::Duration::from_std(OVERLAP).unwrap_or_default());
    match read_all(step, &id, since, started_at, stop).await {
        Ok((messages, requests)) => Fetched::Messages(MessagesOutcome::Fetched {
            ticket_id: claim.ticket_id,
            messages,
            started_at,
            refresh_after: claim.is_open.then_some(step.open_refresh),
            requests,
        }),
        Err(error) if error.disposition() == Disposition::Abandon => Fetched::Abandoned,
        Err(error) if error.disposition() == Disposition::Fatal => Fetched::Fatal(error),
        Err(error) => {
            tracing::warn!(ticket_id = %id, endpoint = "messages", status = error.http_status(), code = error.code(), error = %error, "messages not fetched; retried later (the ticket itself is not affected)");
            Fetched::Messages(MessagesOutcome::Failed {
                ticket_id: claim.ticket_id,
                failure: Failure {
                    http_status: error.http_status(),
                    code: error.code(),
                    message: error.to_string(),
                    ..Failure::default()
                },
            })
        }
    }
}

/// Every page after `since` (all of them without it). A 400 for a bounded query (bounds the
/// API does not take) falls back to reading everything.
async fn read_all(
    step: &MessagesStep<'_>,
    id: &TicketId,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    stop: &CancellationToken,
) -> Result<(Vec<MessageRow>, u32), ApiError> {
    match read_pages(step, id, since, now, stop).await {
        Err(error) if since.is_some() && error.disposition() == Disposition::MarkInvalid => {
            tracing::warn!(ticket_id = %id, endpoint = "messages", error = %error, "the API refused time bounds; reading the whole conversation");
            read_pages(step, id, None, now, stop).await
        }
        other => other,
    }
}

async fn read_pages(
    step: &MessagesStep<'_>,
    id: &TicketId,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    stop: &CancellationToken,
) -> Result<(Vec<MessageRow>, u32), ApiError> {
    let bounds = since.map(|s| step.unit.bounds(s, now));
    let mut rows: Vec<MessageRow> = Vec::new();
    let mut read = 0u64;
    for page in 1..=MAX_PAGES {
        let query = MessagesQuery {
            page,
            page_size: MESSAGES_PAGE_SIZE,
            time_start: bounds.map(|b| b.0),
            time_end: bounds.map(|b| b.1),
        };
        let got = step.client.list_messages(id, &query, stop).await?;
        let items = got.items.len() as u64;
        read += items;
        for item in &got.items {
            match normalize_message(item) {
                Ok(m) => {
                    for warning in &m.warnings {
                        tracing::warn!(ticket_id = %id, endpoint = "messages", "{warning}");
                    }
                    rows.push(m.row);
                }
                Err(e) => {
                    tracing::warn!(ticket_id = %id, endpoint = "messages", error = %e, "skipping a message")
                }
            }
        }
        let full = items >= u64::from(MESSAGES_PAGE_SIZE);
        if !full || got.total.is_some_and(|total| read >= total) {
            notice_unit(step.unit, since, &rows);
            return Ok((rows, page));
        }
    }
    tracing::warn!(ticket_id = %id, endpoint = "messages", pages = MAX_PAGES, "the conversation did not end; stored what was read");
    Ok((rows, MAX_PAGES))
}

/// A message older than a `time_start` sent in seconds came back: the API does not read
/// seconds there. From now on milliseconds are sent (the writer records the finding).
fn notice_unit(unit: &TimeUnit, since: Option<DateTime<Utc>>, rows: &[MessageRow]) {
    let Some(since) = since else { return };
    if unit.is_milliseconds() {
        return;
    }
    let earlier = rows
        .iter()
        .filter_map(|m| m.created_at)
        .any(|at| at < since - chrono::Duration::seconds(1));
    if earlier && unit.saw_seconds_ignored() {
        tracing::info!(
            endpoint = "messages",
            "the API returned messages older than time_start sent in seconds: sending milliseconds from now on"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_never_hide_a_message_under_either_reading() {
        let since = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let now = since + chrono::Duration::hours(1);
        let unit = TimeUnit::from_observed(None);
        let (start, end) = unit.bounds(since, now);
        // Start in seconds: read as ms it is January 1970, before every message.
        assert_eq!(start, 1_790_000_000);
        // End in ms: read as seconds it is tens of thousands of years away.
        assert_eq!(end, (now + chrono::Duration::days(1)).timestamp_millis());
        assert!(unit.saw_seconds_ignored());
        assert_eq!(unit.bounds(since, now).0, 1_790_000_000_000);
        assert!(!unit.saw_seconds_ignored(), "only the first finding counts");
        assert!(TimeUnit::from_observed(Some("milliseconds")).is_milliseconds());
    }
}
