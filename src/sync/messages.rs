//! The messages step: a ticket's conversation, every page, only what is after the newest stored
//! message (with overlap), normalized for the writer. A failure costs only this ticket's
//! messages; the ticket's detail is never held back by it (it is its own job in its own lane).
//!
//! Paging goes on while pages come back full: `total` is not trusted (an API that says the
//! page length, or 0, would otherwise end the read at its first page). A page that only repeats
//! messages already read in this read (a page number the API ignores) ends the read as a
//! failure of that ticket (retried with backoff), and so does a conversation still full after
//! [`MAX_PAGES`] pages. Pages are written as they come ([`FLUSH_EVERY_PAGES`]) while they are in
//! time order, so memory stays bounded and a read cut at the cycle's end keeps its progress.
//!
//! A message time outside [2010, now + 1 day] (e.g. microseconds read as milliseconds: year
//! 58,901) is not believed: the message is kept with no `created_at` (its `raw` has the value)
//! and the watermark never moves to it.
//!
//! The unit of `time_start` / `time_end` is not documented (the example is 10 digits: seconds).
//! So the step never sends bounds that could hide a message under either reading: `time_start`
//! in seconds (read as milliseconds it is 1970: everything comes back) and `time_end` in
//! milliseconds (read as seconds it is far in the future). Answers with messages older than a
//! `time_start` sent in seconds are evidence that seconds are not what the API reads; only
//! [`SWITCH_AFTER`] such answers in a row (across tickets and cycles, none honouring the bound
//! in between) switch to milliseconds, recorded in `api_observations`. The switch is checked by
//! what it returns: a bound in milliseconds always includes the newest stored message, so an
//! empty answer means the API does not read milliseconds: back to seconds, and that ticket is
//! read again at once. Messages are deduplicated by id.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::detail::Fetched;
use super::writer::Write;
use crate::domain::{Failure, MessageRow, MessagesOutcome, TicketId};
use crate::feishu::client::{MESSAGES_PAGE_SIZE, MessagesQuery};
use crate::feishu::{ApiError, Disposition, FeishuClient};
use crate::normalize::messages::normalize_message;
use crate::store::messages::MessagesClaim;

/// How far before the newest stored message a fetch starts again (late or re-timed messages).
pub const OVERLAP: Duration = Duration::from_secs(10 * 60);
/// A conversation still full after this many pages (100,000 messages) fails for this cycle
/// (retried later with backoff) rather than paging on.
pub const MAX_PAGES: u32 = 500;
/// Pages held before they are written (while in time order): 5,000 messages.
pub const FLUSH_EVERY_PAGES: u32 = 25;
/// Answers in a row ignoring a `time_start` sent in seconds before milliseconds are sent.
pub const SWITCH_AFTER: u32 = 3;
/// A message time later than now by more than this is not believed.
const FUTURE_SKEW: chrono::Duration = chrono::Duration::days(1);

/// What the API reads `time_start` in, as far as its answers have shown, and the evidence so
/// far against the unit in use.
#[derive(Debug)]
pub struct TimeUnit {
    unit: AtomicU8,
    /// Answers in a row that ignored a `time_start` sent in seconds.
    ignored_in_a_row: AtomicU32,
    /// As loaded: recorded again only when changed.
    loaded: (u8, u32),
}

const SECONDS: u8 = 0;
const MILLISECONDS: u8 = 1;

impl TimeUnit {
    /// From `api_observations` (None: nothing observed yet, seconds as the docs' example).
    pub fn from_observed(value: Option<&str>, ignored_in_a_row: u32) -> Self {
        let unit = match value {
            Some("milliseconds") => MILLISECONDS,
            _ => SECONDS,
        };
        Self {
            unit: AtomicU8::new(unit),
            ignored_in_a_row: AtomicU32::new(ignored_in_a_row),
            loaded: (unit, ignored_in_a_row),
        }
    }

    pub(super) fn is_milliseconds(&self) -> bool {
        self.unit.load(Ordering::Relaxed) == MILLISECONDS
    }

    /// What to record, when it changed since loaded: (unit, answers in a row ignoring seconds).
    pub(super) fn to_record(&self) -> Option<(&'static str, u32)> {
        let now = (
            self.unit.load(Ordering::Relaxed),
            self.ignored_in_a_row.load(Ordering::Relaxed),
        );
        (now != self.loaded).then(|| {
            let unit = if now.0 == MILLISECONDS {
                "milliseconds"
            } else {
                "seconds"
            };
            (unit, now.1)
        })
    }

    /// An answer to a `time_start` sent in seconds held messages older than it. True when
    /// this answer made the evidence enough: milliseconds from now on.
    fn saw_seconds_ignored(&self) -> bool {
        if self.is_milliseconds() {
            return false;
        }
        let in_a_row = self.ignored_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if in_a_row >= SWITCH_AFTER
            && self
                .unit
                .compare_exchange(SECONDS, MILLISECONDS, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.ignored_in_a_row.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// An answer to a `time_start` sent in seconds left out the older stored messages: the
    /// bound was read; the evidence against seconds starts over.
    fn saw_seconds_honoured(&self) {
        if !self.is_milliseconds() {
            self.ignored_in_a_row.store(0, Ordering::Relaxed);
        }
    }

    /// A `time_start` in milliseconds hid even the newest stored message: the API does not
    /// read milliseconds. True when this switched back to seconds.
    fn saw_milliseconds_hide_everything(&self) -> bool {
        self.ignored_in_a_row.store(0, Ordering::Relaxed);
        self.unit
            .compare_exchange(MILLISECONDS, SECONDS, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// The bounds for messages after `since`, never hiding one under either reading.
    fn bounds(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> (i64, i64, bool) {
        let end_ms = (now + chrono::Duration::days(1)).timestamp_millis();
        if self.is_milliseconds() {
            (since.timestamp_millis(), end_ms, true)
        } else {
            (since.timestamp(), end_ms, false)
        }
    }
}

/// What the messages step needs besides the claim.
pub(super) struct MessagesStep<'a> {
    pub client: &'a FeishuClient,
    pub unit: &'a TimeUnit,
    pub open_refresh: Duration,
    /// Pages are written through it as they come.
    pub writer: &'a mpsc::Sender<Write>,
    /// Cancelled when the cycle's claim budget is spent (or the cycle stops): a read stops
    /// after its current page, what it read is written and the rest carried over to the next
    /// cycle.
    pub wind_down: &'a CancellationToken,
}

/// Why a read ended without every page.
enum Stopped {
    Api(ApiError),
    /// The conversation repeats itself or does not end: a failure of this ticket.
    Endless(String),
    /// The cycle winds down: what was read is written, the rest waits for the next cycle.
    CarriedOver(Vec<MessageRow>),
    /// Nothing useful to keep (the writer is gone, or pages out of time order were cut).
    Abandoned,
}

impl From<ApiError> for Stopped {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

/// Fetches the conversation of a claimed ticket.
pub(super) async fn fetch_messages(
    step: &MessagesStep<'_>,
    claim: MessagesClaim,
    stop: &CancellationToken,
) -> Fetched {
    // The database's clock, as the events' `messages_requested_at` (the claim comes before
    // the read, so an event between the two makes the conversation due again: a read more).
    let started_at = claim.claimed_at;
    let Ok(id) = TicketId::parse(&claim.ticket_id) else {
        return failed(claim.ticket_id, "not a ticket id".into(), None, None);
    };
    match read_all(step, &id, &claim, started_at, stop).await {
        Ok((messages, requests)) => Fetched::Messages(MessagesOutcome::Fetched {
            ticket_id: claim.ticket_id,
            messages,
            started_at,
            refresh_after: claim.is_open.then_some(step.open_refresh),
            requests,
        }),
        Err(Stopped::CarriedOver(messages)) => {
            tracing::info!(ticket_id = %id, endpoint = "messages", "the cycle's budget is spent: the rest of this conversation is read next cycle");
            Fetched::Messages(MessagesOutcome::CarriedOver {
                ticket_id: claim.ticket_id,
                messages,
            })
        }
        Err(Stopped::Abandoned) => Fetched::Abandoned,
        Err(Stopped::Endless(why)) => {
            tracing::warn!(ticket_id = %id, endpoint = "messages", "{why}; retried later");
            failed(claim.ticket_id, why, None, None)
        }
        Err(Stopped::Api(error)) if error.disposition() == Disposition::Abandon => {
            Fetched::Abandoned
        }
        Err(Stopped::Api(error)) if error.disposition() == Disposition::Fatal => {
            Fetched::Fatal(error)
        }
        Err(Stopped::Api(error)) => {
            tracing::warn!(ticket_id = %id, endpoint = "messages", status = error.http_status(), code = error.code(), error = %error, "messages not fetched; retried later (the ticket itself is not affected)");
            failed(
                claim.ticket_id,
                error.to_string(),
                error.http_status(),
                error.code(),
            )
        }
    }
}

fn failed(
    ticket_id: String,
    message: String,
    http_status: Option<u16>,
    code: Option<i64>,
) -> Fetched {
    Fetched::Messages(MessagesOutcome::Failed {
        ticket_id,
        failure: Failure {
            http_status,
            code,
            message,
            ..Failure::default()
        },
    })
}

/// Every page after the newest stored message (all of them without one). A 400 for a
/// bounded query (bounds the API does not take) falls back to reading everything; a bound in
/// milliseconds that hid everything is read again in seconds.
async fn read_all(
    step: &MessagesStep<'_>,
    id: &TicketId,
    claim: &MessagesClaim,
    now: DateTime<Utc>,
    stop: &CancellationToken,
) -> Result<(Vec<MessageRow>, u32), Stopped> {
    let since = claim
        .newest_at
        .map(|at| at - chrono::Duration::from_std(OVERLAP).unwrap_or_default());
    let mut requests = 0;
    for _ in 0..2 {
        let read = match read_pages(step, id, since, now, stop).await {
            Err(Stopped::Api(error))
                if since.is_some() && error.disposition() == Disposition::MarkInvalid =>
            {
                tracing::warn!(ticket_id = %id, endpoint = "messages", error = %error, "the API refused time bounds; reading the whole conversation");
                return read_pages(step, id, None, now, stop)
                    .await
                    .map(|r| (r.rows, requests + r.requests));
            }
            other => other?,
        };
        requests += read.requests;
        let Some(since) = since else {
            return Ok((read.rows, requests));
        };
        if read.in_milliseconds {
            if read.read == 0 {
                // Another read may have switched back already: read again in seconds anyway.
                if step.unit.saw_milliseconds_hide_everything() {
                    tracing::warn!(ticket_id = %id, endpoint = "messages", "a time_start in milliseconds hid even the newest stored message: the API reads seconds; sending seconds again");
                }
                continue;
            }
            return Ok((read.rows, requests));
        }
        let seconds_ignored = read.older_than(since);
        if seconds_ignored {
            if step.unit.saw_seconds_ignored() {
                tracing::info!(
                    endpoint = "messages",
                    answers = SWITCH_AFTER,
                    "answers in a row returned messages older than time_start sent in seconds: sending milliseconds from now on"
                );
            }
        } else if claim
            .oldest_at
            .is_some_and(|oldest| oldest < since - chrono::Duration::seconds(1))
        {
            step.unit.saw_seconds_honoured();
        }
        return Ok((read.rows, requests));
    }
    Err(Stopped::Abandoned)
}

/// One read's pages.
struct Read {
    rows: Vec<MessageRow>,
    requests: u32,
    /// Messages the API returned (before normalizing).
    read: u64,
    /// The bounds were sent in milliseconds.
    in_milliseconds: bool,
    /// The oldest plausible message time returned.
    oldest: Option<DateTime<Utc>>,
}

impl Read {
    fn older_than(&self, since: DateTime<Utc>) -> bool {
        self.oldest
            .is_some_and(|at| at < since - chrono::Duration::seconds(1))
    }
}

async fn read_pages(
    step: &MessagesStep<'_>,
    id: &TicketId,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    stop: &CancellationToken,
) -> Result<Read, Stopped> {
    let bounds = since.map(|s| step.unit.bounds(s, now));
    let mut out = Read {
        rows: Vec::new(),
        requests: 0,
        read: 0,
        in_milliseconds: bounds.is_some_and(|b| b.2),
        oldest: None,
    };
    let mut seen: HashSet<String> = HashSet::new();
    // Pages in time order so far: written as they come, and a cut read keeps its progress.
    let mut in_order = true;
    let mut latest: Option<DateTime<Utc>> = None;
    for page in 1..=MAX_PAGES {
        if page > 1 && step.wind_down.is_cancelled() {
            return Err(if in_order {
                Stopped::CarriedOver(out.rows)
            } else {
                Stopped::Abandoned
            });
        }
        let query = MessagesQuery {
            page,
            page_size: MESSAGES_PAGE_SIZE,
            time_start: bounds.map(|b| b.0),
            time_end: bounds.map(|b| b.1),
        };
        let got = step.client.list_messages(id, &query, stop).await?;
        out.requests = page;
        let items = got.items.len() as u64;
        out.read += items;
        let mut new_on_page = 0usize;
        for item in &got.items {
            match normalize_message(item) {
                Ok(mut m) => {
                    for warning in &m.warnings {
                        tracing::warn!(ticket_id = %id, endpoint = "messages", "{warning}");
                    }
                    if let Some(at) = m.row.created_at
                        && !plausible(at, now)
                    {
                        tracing::warn!(ticket_id = %id, endpoint = "messages", message_id = %m.row.message_id, created_at = %at, "implausible message time: the message is kept without created_at (raw keeps the value); it does not move the watermark");
                        m.row.created_at = None;
                    }
                    if let Some(at) = m.row.created_at {
                        in_order &= latest.is_none_or(|l| at >= l);
                        latest = Some(latest.map_or(at, |l| l.max(at)));
                        out.oldest = Some(out.oldest.map_or(at, |o| o.min(at)));
                    }
                    if seen.insert(m.row.message_id.clone()) {
                        new_on_page += 1;
                    }
                    out.rows.push(m.row);
                }
                Err(e) => {
                    tracing::warn!(ticket_id = %id, endpoint = "messages", error = %e, "skipping a message")
                }
            }
        }
        let full = items >= u64::from(MESSAGES_PAGE_SIZE);
        if !full {
            return Ok(out);
        }
        if page > 1 && new_on_page == 0 {
            return Err(Stopped::Endless(format!(
                "the conversation repeats itself: page {page} holds only messages already read \
                 (a page parameter the API ignores?); stopped after {page} requests"
            )));
        }
        if page % FLUSH_EVERY_PAGES == 0 && in_order {
            let pages = MessagesOutcome::Pages {
                ticket_id: id.as_str().to_owned(),
                messages: std::mem::take(&mut out.rows),
            };
            if step.writer.send(Write::Messages(pages)).await.is_err() {
                return Err(Stopped::Abandoned);
            }
        }
    }
    Err(Stopped::Endless(format!(
        "the conversation did not end: {MAX_PAGES} full pages ({} messages) in one read",
        out.read
    )))
}

/// Whether a message time can be believed.
fn plausible(at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let earliest = DateTime::from_timestamp(1_262_304_000, 0).unwrap_or_default(); // 2010-01-01
    at >= earliest && at <= now + FUTURE_SKEW
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_never_hide_a_message_under_either_reading() {
        let since = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let now = since + chrono::Duration::hours(1);
        let unit = TimeUnit::from_observed(None, 0);
        let (start, end, _) = unit.bounds(since, now);
        // Start in seconds: read as ms it is January 1970, before every message.
        assert_eq!(start, 1_790_000_000);
        // End in ms: read as seconds it is tens of thousands of years away.
        assert_eq!(end, (now + chrono::Duration::days(1)).timestamp_millis());
        assert!(TimeUnit::from_observed(Some("milliseconds"), 0).is_milliseconds());
    }

    #[test]
    fn the_unit_switches_only_on_repeated_evidence_and_switches_back_when_it_hides_everything() {
        let since = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let now = since + chrono::Duration::hours(1);
        let unit = TimeUnit::from_observed(None, 0);
        // One answer ignoring the bound, then one honouring it: the evidence starts over.
        assert!(!unit.saw_seconds_ignored());
        unit.saw_seconds_honoured();
        assert!(!unit.saw_seconds_ignored());
        assert!(!unit.saw_seconds_ignored());
        assert!(!unit.is_milliseconds());
        assert!(unit.saw_seconds_ignored(), "the third in a row switches");
        assert_eq!(unit.bounds(since, now).0, 1_790_000_000_000);
        assert_eq!(unit.to_record(), Some(("milliseconds", 0)));
        assert!(!unit.saw_seconds_ignored(), "only one switch");
        // Milliseconds that hide even the newest stored message: back to seconds.
        assert!(unit.saw_milliseconds_hide_everything());
        assert!(!unit.is_milliseconds());
        assert_eq!(unit.to_record(), None, "as loaded");
        // Evidence carried over from earlier cycles counts.
        let unit = TimeUnit::from_observed(None, SWITCH_AFTER - 1);
        assert!(unit.saw_seconds_ignored());
    }

    #[test]
    fn implausible_times_are_not_believed() {
        let now = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        assert!(plausible(now, now));
        assert!(plausible(now + chrono::Duration::hours(23), now));
        // Microseconds read as milliseconds: year 58,901.
        assert!(!plausible(
            DateTime::from_timestamp_millis(1_790_000_000_000_000).unwrap(),
            now
        ));
        assert!(!plausible(
            DateTime::from_timestamp(1_000_000_000, 0).unwrap(),
            now
        ));
    }
}
