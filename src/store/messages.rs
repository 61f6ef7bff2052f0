//! A ticket's conversation in Postgres: the messages lane of the queue (its own due time,
//! claims and failures in `ticket_sync_state`), the batched write of fetched messages, the
//! senders' roles inferred from the ticket, and what the API showed about its time unit.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use super::Store;
use super::events::Recorded;
use super::failure::FailureDelay;
use crate::domain::{MessagesOutcome, TicketId};

/// Messages priority of a ticket a message event named.
pub const PRIORITY_MESSAGE_EVENT: i16 = 20;
/// Messages priority of a ticket stored new or changed.
pub const PRIORITY_CHANGED_TICKET: i16 = 10;

/// `api_observations` key: the unit `time_start` turned out to be read in.
pub const TIME_UNIT_KEY: &str = "messages.time_start_unit";
/// `api_observations` key: answers in a row that ignored a `time_start` sent in seconds.
pub const TIME_UNIT_EVIDENCE_KEY: &str = "messages.time_start_ignored_in_a_row";

/// A ticket whose messages are to be fetched now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagesClaim {
    pub ticket_id: String,
    /// The newest stored message with a plausible time (fetch only what is after it, with
    /// overlap).
    pub newest_at: Option<DateTime<Utc>>,
    /// The oldest stored message with a plausible time (an answer without anything before
    /// `time_start` shows the bound was honoured only when there is something before it).
    pub oldest_at: Option<DateTime<Utc>>,
    /// The ticket is open: its messages are read again after `sync.open_refresh`.
    pub is_open: bool,
    /// When it was claimed, on the database's clock: the read covers message events recorded
    /// before this (`messages_requested_at`, also the database's `now()`); a later one makes
    /// the conversation due again. The app's clock may run ahead of the database's.
    pub claimed_at: DateTime<Utc>,
}

/// What writing a batch's messages did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessagesWritten {
    /// Tickets whose conversation was read completely.
    pub synced: u64,
    pub failed: u64,
    /// Messages inserted or changed.
    pub stored: u64,
    /// Reads stopped at the cycle's end, to go on in the next cycle.
    pub carried_over: u64,
}

impl Store {
    /// Claims up to `limit` tickets whose messages are due, leasing them to `worker`.
    pub async fn claim_messages_due(
        &self,
        limit: usize,
        lease: Duration,
        worker: &str,
    ) -> anyhow::Result<Vec<MessagesClaim>> {
        /// (ticket, newest message, oldest, open, priority, due, now): sorted like the queue. Only
        /// plausible message times count (one like year 58,901, microseconds read as
        /// milliseconds, stored before they were refused, would hide every later message).
        type Row = (
            String,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
            bool,
            i16,
            DateTime<Utc>,
            DateTime<Utc>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "WITH due AS (
                     SELECT s.ticket_id FROM ticket_sync_state s
                     JOIN tickets t ON t.ticket_id = s.ticket_id AND t.deleted_at IS NULL
                     WHERE s.messages_due_at <= now()
                       AND (s.messages_claimed_until IS NULL OR s.messages_claimed_until < now())
                       AND ($4::text IS NULL OR s.helpdesk_id = $4)
                     ORDER BY s.messages_priority DESC, s.messages_due_at, s.ticket_id
                     LIMIT $1
                     FOR UPDATE OF s SKIP LOCKED)
                 UPDATE ticket_sync_state s
                    SET messages_claimed_until = now() + make_interval(secs => $2),
                        messages_claimed_by = $3,
                        -- The read covers the ticket's version now stored: its detail (same
                        -- updated_at) does not make the conversation due again.
                        messages_due_for = GREATEST(s.messages_due_for,
                            (SELECT t.updated_at FROM tickets t WHERE t.ticket_id = s.ticket_id))
                   FROM due WHERE s.ticket_id = due.ticket_id
                 RETURNING s.ticket_id,
                     (SELECT max(m.created_at) FROM ticket_messages m
                       WHERE m.ticket_id = s.ticket_id AND m.created_at >= '2010-01-01T00:00:00Z'
                         AND m.created_at <= now() + interval '1 day'),
                     (SELECT min(m.created_at) FROM ticket_messages m
                       WHERE m.ticket_id = s.ticket_id AND m.created_at >= '2010-01-01T00:00:00Z'
                         AND m.created_at <= now() + interval '1 day'),
                     (SELECT COALESCE(NOT COALESCE(sc.is_closed, t.status >= 50), true)
                        FROM tickets t LEFT JOIN ticket_status_codes sc ON sc.code = t.status
                       WHERE t.ticket_id = s.ticket_id),
                     s.messages_priority, s.messages_due_at, now()",
        )
        .bind(limit as i64)
        .bind(lease.as_secs_f64())
        .bind(worker)
        .bind(self.helpdesk())
        .fetch_all(&self.pool)
        .await?;
        let mut rows = rows;
        rows.sort_by(|a, b| b.4.cmp(&a.4).then(a.5.cmp(&b.5)).then(a.0.cmp(&b.0)));
        Ok(rows
            .into_iter()
            .map(
                |(ticket_id, newest_at, oldest_at, is_open, _, _, claimed_at)| MessagesClaim {
                    ticket_id,
                    newest_at,
                    oldest_at,
                    is_open,
                    claimed_at,
                },
            )
            .collect())
    }

    /// Releases every messages claim `worker` (or, with `except`, anyone but `except`) holds.
    pub async fn release_message_claims(
        &self,
        worker: Option<&str>,
        except: Option<&str>,
    ) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE ticket_sync_state SET messages_claimed_until = NULL, messages_claimed_by = NULL
             WHERE messages_claimed_by IS NOT NULL
               AND ($1::text IS NULL OR messages_claimed_by = $1)
               AND ($2::text IS NULL OR messages_claimed_by <> $2)
               AND ($3::text IS NULL OR helpdesk_id = $3)",
        )
        .bind(worker)
        .bind(except)
        .bind(self.helpdesk())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The unit `time_start` was seen to be read in, if the API has shown it, and how many
    /// answers in a row so far ignored it sent in seconds (evidence not yet enough to switch).
    pub async fn observed_time_unit(&self) -> anyhow::Result<(Option<String>, u32)> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT key, value FROM api_observations WHERE key = ANY($1)")
                .bind([TIME_UNIT_KEY, TIME_UNIT_EVIDENCE_KEY])
                .fetch_all(&self.pool)
                .await?;
        let value = |key: &str| rows.iter().find(|r| r.0 == key).map(|r| r.1.clone());
        let in_a_row = value(TIME_UNIT_EVIDENCE_KEY)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((value(TIME_UNIT_KEY), in_a_row))
    }

    /// Records what the API showed about `time_start`: the unit now sent, and the answers in
    /// a row that ignored seconds.
    pub async fn record_time_unit(&self, unit: &str, ignored_in_a_row: u32) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO api_observations (key, value)
             VALUES ($1, $2), ($3, $4)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, observed_at = now()
             WHERE api_observations.value IS DISTINCT FROM EXCLUDED.value",
        )
        .bind(TIME_UNIT_KEY)
        .bind(unit)
        .bind(TIME_UNIT_EVIDENCE_KEY)
        .bind(ignored_in_a_row.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A message event: records the receipt and makes the ticket's messages due now (the
    /// ticket itself is queued too when it is not known yet, in this store's helpdesk). When
    /// the store serves every helpdesk (several configured, the event named none) and the
    /// ticket is not queued yet, nothing is recorded ([`Recorded::NoHelpdesk`]): queued
    /// without its helpdesk, the first helpdesk would adopt it and fetch it with its own token
    /// (another helpdesk's ticket answers "not found" there and would be marked deleted).
    /// Discovery finds the ticket in its own helpdesk; storing it makes its conversation due.
    /// An event that `named` its helpdesk moves a known ticket's row to it
    /// ([`Store::record_event`]).
    pub async fn record_message_event(
        &self,
        event_id: &str,
        event_type: &str,
        ticket_id: &TicketId,
        named: bool,
    ) -> anyhow::Result<Recorded> {
        let mut tx = match self
            .begin_event(event_id, event_type, ticket_id, None)
            .await?
        {
            Ok(tx) => tx,
            Err(done) => return Ok(done),
        };
        sqlx::query(
            "INSERT INTO ticket_sync_state AS s (ticket_id, source, priority, messages_priority,
                                                 messages_requested_at, helpdesk_id)
             VALUES ($1, 'event', $2, $2, now(), $3)
             ON CONFLICT (ticket_id) DO UPDATE
                SET helpdesk_id = CASE WHEN $4 THEN $3 ELSE COALESCE(s.helpdesk_id, $3) END,
                    messages_due_at = LEAST(COALESCE(s.messages_due_at, 'infinity'), now()),
                    messages_priority = GREATEST(s.messages_priority, EXCLUDED.messages_priority),
                    messages_requested_at = now()",
        )
        .bind(ticket_id.as_str())
        .bind(PRIORITY_MESSAGE_EVENT)
        .bind(self.helpdesk())
        .bind(named)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Recorded::Queued)
    }
}

/// Details that completed the list row of their own version: the tickets and, beside each, the
/// `updated_at` its list row showed (columns, as the statement that reads them binds them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SameVersion {
    pub ids: Vec<String>,
    pub listed_at: Vec<Option<DateTime<Utc>>>,
}

/// Tickets stored new or changed: their conversation is due (it may have changed with them)
/// unless this version already made it due, and their senders' roles are inferred again (the
/// ticket's people may have changed). `same_version`: details that completed the list row of
/// their own version (see `store::listed::verify_list_rows`); one is no news when that row
/// already made the conversation due (`messages_due_for` is the row's `updated_at`) — which
/// matters where `updated_at` cannot tell (a ticket without one) or runs on the list's clock.
pub async fn ticket_changed(
    tx: &mut Transaction<'_, Postgres>,
    ticket_ids: &[String],
    same_version: &SameVersion,
) -> anyhow::Result<()> {
    if ticket_ids.is_empty() {
        return Ok(());
    }
    // Once per version: a list row and then the detail of the same `updated_at` make the
    // conversation due once, not twice.
    sqlx::query(
        "UPDATE ticket_sync_state s
            SET messages_due_at = LEAST(COALESCE(s.messages_due_at, 'infinity'), now()),
                messages_priority = GREATEST(s.messages_priority, $2),
                messages_requested_at = now(),
                messages_due_for = t.updated_at
           FROM tickets t
          WHERE s.ticket_id = ANY($1) AND t.ticket_id = s.ticket_id
            AND NOT EXISTS (SELECT 1 FROM UNNEST($3::text[], $4::timestamptz[]) AS v(id, at)
                            WHERE v.id = s.ticket_id
                              AND s.messages_due_for IS NOT DISTINCT FROM v.at)
            AND (s.messages_due_for IS NULL OR t.updated_at IS NULL
                 OR t.updated_at > s.messages_due_for)",
    )
    .bind(ticket_ids)
    .bind(PRIORITY_CHANGED_TICKET)
    .bind(&same_version.ids)
    .bind(&same_version.listed_at)
    .execute(&mut **tx)
    .await?;
    sqlx::query("SELECT refresh_message_roles($1)")
        .bind(ticket_ids)
        .execute(&mut **tx)
        .await?;
    // Roles decide next-reply clocks: recompute those of tickets with a conversation.
    // Only once a calendar or target exists (see `store::sla::refresh_tickets`).
    sqlx::query(
        "SELECT refresh_ticket_sla(ARRAY(SELECT DISTINCT ticket_id FROM ticket_messages
                                          WHERE ticket_id = ANY($1)))
         WHERE EXISTS (SELECT 1 FROM business_calendars) OR EXISTS (SELECT 1 FROM sla_targets)",
    )
    .bind(ticket_ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the messages of a batch and the messages lane's state; claims released.
pub async fn write_messages(
    tx: &mut Transaction<'_, Postgres>,
    outcomes: &[&MessagesOutcome],
    delay: FailureDelay,
) -> anyhow::Result<MessagesWritten> {
    let mut written = MessagesWritten::default();
    let mut synced: Vec<String> = Vec::new();
    for outcome in outcomes {
        match outcome {
            MessagesOutcome::Fetched {
                ticket_id,
                messages,
                started_at,
                refresh_after,
                ..
            } => {
                written.stored += upsert_messages(tx, ticket_id, messages).await?;
                sqlx::query(
                    "UPDATE ticket_sync_state SET
                        messages_fetched_at = $2,
                        messages_last_outcome = 'ok', messages_last_error = NULL,
                        messages_failures = 0,
                        messages_due_at = CASE
                            -- Asked for again while we were fetching: still due.
                            WHEN messages_requested_at > $2 THEN now()
                            WHEN $3::float8 IS NULL THEN NULL
                            ELSE now() + make_interval(secs => $3) END,
                        messages_priority = CASE WHEN messages_requested_at > $2
                                                 THEN messages_priority ELSE 0 END,
                        messages_claimed_until = NULL, messages_claimed_by = NULL
                     WHERE ticket_id = $1",
                )
                .bind(ticket_id)
                .bind(started_at)
                .bind(refresh_after.map(|d| d.as_secs_f64()))
                .execute(&mut **tx)
                .await?;
                synced.push(ticket_id.clone());
                written.synced += 1;
            }
            MessagesOutcome::Failed { ticket_id, failure } => {
                sqlx::query(
                    "UPDATE ticket_sync_state SET
                        messages_last_outcome = 'failed', messages_last_error = $2,
                        messages_failures = messages_failures + 1,
                        messages_due_at = now() + make_interval(secs =>
                            LEAST($3, $4 * power(2, LEAST(messages_failures, 30)))),
                        messages_claimed_until = NULL, messages_claimed_by = NULL
                     WHERE ticket_id = $1",
                )
                .bind(ticket_id)
                .bind(&failure.message)
                .bind(delay.cap.as_secs_f64())
                .bind(delay.base.as_secs_f64())
                .execute(&mut **tx)
                .await?;
                written.failed += 1;
            }
            MessagesOutcome::Pages {
                ticket_id,
                messages,
            } => {
                written.stored += upsert_messages(tx, ticket_id, messages).await?;
            }
            MessagesOutcome::CarriedOver {
                ticket_id,
                messages,
            } => {
                written.stored += upsert_messages(tx, ticket_id, messages).await?;
                // Still due: the next cycle goes on from the newest stored message.
                sqlx::query(
                    "UPDATE ticket_sync_state SET
                        messages_due_at = LEAST(COALESCE(messages_due_at, 'infinity'), now()),
                        messages_claimed_until = NULL, messages_claimed_by = NULL
                     WHERE ticket_id = $1",
                )
                .bind(ticket_id)
                .execute(&mut **tx)
                .await?;
                // Their senders' roles now, not only once the read completes.
                synced.push(ticket_id.clone());
                written.carried_over += 1;
            }
        }
    }
    if !synced.is_empty() {
        sqlx::query("SELECT refresh_message_roles($1)")
            .bind(&synced)
            .execute(&mut **tx)
            .await?;
        super::sla::refresh_tickets(tx, &synced).await?;
    }
    Ok(written)
}

/// Inserts new messages and updates changed ones (re-reading the overlap changes nothing).
async fn upsert_messages(
    tx: &mut Transaction<'_, Postgres>,
    ticket_id: &str,
    messages: &[crate::domain::MessageRow],
) -> anyhow::Result<u64> {
    if messages.is_empty() {
        return Ok(0);
    }
    // The same message twice in one read (pages shifted): the later copy wins.
    let mut unique: std::collections::BTreeMap<&str, &crate::domain::MessageRow> =
        Default::default();
    for m in messages {
        unique.insert(m.message_id.as_str(), m);
    }
    let m: Vec<&crate::domain::MessageRow> = unique.into_values().collect();
    let done = sqlx::query(
        "INSERT INTO ticket_messages AS t
            (ticket_id, message_id, chat_message_id, message_type, created_at, content,
             content_text, sender_id, sender_name, sender_avatar_url, raw, fetched_at)
         SELECT $1, u.message_id, u.chat_message_id, u.message_type, u.created_at, u.content,
                u.content_text, u.sender_id, u.sender_name, u.sender_avatar_url, u.raw::jsonb, now()
         FROM UNNEST($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
              AS u(message_id, chat_message_id, message_type, created_at, content, content_text,
                   sender_id, sender_name, sender_avatar_url, raw)
         ON CONFLICT (ticket_id, message_id) DO UPDATE SET
            chat_message_id = EXCLUDED.chat_message_id, message_type = EXCLUDED.message_type,
            created_at = EXCLUDED.created_at, content = EXCLUDED.content,
            content_text = EXCLUDED.content_text, sender_id = EXCLUDED.sender_id,
            sender_name = EXCLUDED.sender_name, sender_avatar_url = EXCLUDED.sender_avatar_url,
            raw = EXCLUDED.raw, fetched_at = now()
         WHERE t.raw IS DISTINCT FROM EXCLUDED.raw",
    )
    .bind(ticket_id)
    .bind(m.iter().map(|r| r.message_id.as_str()).collect::<Vec<_>>())
    .bind(
        m.iter()
            .map(|r| r.chat_message_id.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        m.iter()
            .map(|r| r.message_type.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(m.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .bind(m.iter().map(|r| r.content.as_deref()).collect::<Vec<_>>())
    .bind(
        m.iter()
            .map(|r| r.content_text.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(m.iter().map(|r| r.sender_id.as_deref()).collect::<Vec<_>>())
    .bind(
        m.iter()
            .map(|r| r.sender_name.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        m.iter()
            .map(|r| r.sender_avatar_url.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(m.iter().map(|r| r.raw.as_str()).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}
