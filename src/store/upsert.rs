//! Batched writes: one transaction per batch, one statement per table (UNNEST arrays).
//!
//! A ticket row is rewritten only when its raw content changed (or it was marked deleted), so
//! re-syncing an unchanged ticket changes no row. A changed ticket's child sets are replaced in
//! the same transaction. Failed fetches touch only the queue, never stored ticket data.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use super::Store;
// Re-exported while `messages`, `sync::writer` and `benches/ingest.rs` still name them here.
pub use super::failure::FailureDelay;
pub use super::write::write_records;
use crate::domain::api_codes::CODE_NOT_FOUND;
use crate::domain::{Batch, BatchReport, Failure, MessagesOutcome, TicketOutcome, TicketRecord};

/// Read-after-write lag: a fetch that does not show the update an event announced (or a 404
/// for a ticket an event just named) is tried again this many times, after
/// `LAG_REFETCH_BASE · 2^n` (5 s … 160 s: about 5 minutes in all), before it is taken as is.
pub const LAG_REFETCHES: i32 = 6;
pub const LAG_REFETCH_BASE: Duration = Duration::from_secs(5);

impl Store {
    /// When the earliest read-after-write re-fetch ([`LAG_REFETCHES`]) is due, if one is
    /// waiting: the daemon wakes for it instead of waiting for its next tick.
    pub async fn next_lag_refetch_at(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT min(next_due_at) FROM ticket_sync_state
             WHERE lag_refetches > 0 AND next_due_at < 'infinity'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Writes a batch atomically: ticket rows, child rows and queue state, then the
    /// conversations fetched (after their tickets, which they belong to).
    pub async fn write_batch(
        &self,
        batch: &Batch,
        delay: FailureDelay,
    ) -> anyhow::Result<BatchReport> {
        let mut tx = self.pool.begin().await?;
        let mut report = write_outcomes(&mut tx, &batch.tickets, delay).await?;
        let messages: Vec<&MessagesOutcome> = batch.messages.iter().collect();
        let written = super::messages::write_messages(&mut tx, &messages, delay).await?;
        report.messages_synced = written.synced;
        report.messages_failed = written.failed;
        report.messages_stored = written.stored;
        tx.commit().await?;
        self.note_written(report.changed).await;
        Ok(report)
    }
}

async fn write_outcomes(
    tx: &mut Transaction<'_, Postgres>,
    outcomes: &[TicketOutcome],
    delay: FailureDelay,
) -> anyhow::Result<BatchReport> {
    // The same ticket twice in a batch: the later outcome wins (ON CONFLICT cannot touch a row twice).
    let mut latest: BTreeMap<&str, &TicketOutcome> = BTreeMap::new();
    for outcome in outcomes {
        latest.insert(outcome.ticket_id(), outcome);
    }
    let records: Vec<&TicketRecord> = latest
        .values()
        .filter_map(|o| match o {
            TicketOutcome::Fetched { record, .. } => Some(record.as_ref()),
            _ => None,
        })
        .collect();
    let not_found: Vec<String> = latest
        .values()
        .filter(|o| matches!(o, TicketOutcome::NotFound { .. }))
        .map(|o| o.ticket_id().to_owned())
        .collect();

    let verified = super::listed::verify_list_rows(tx, &records).await?;
    for field in &verified.newly_distrusted {
        tracing::warn!(
            field = %field,
            "list rows differ from the detail in this field; it is no longer taken from list rows"
        );
    }
    let changed = write_records(tx, &records, false).await?;
    let older = older_than_stored(tx, &records, &changed).await?;
    let mut changed_ids: Vec<String> = changed.iter().cloned().collect();
    changed_ids.sort_unstable();
    super::messages::ticket_changed(tx, &changed_ids).await?;
    if !not_found.is_empty() {
        sqlx::query(
            "UPDATE tickets SET deleted_at = now() WHERE ticket_id = ANY($1) AND deleted_at IS NULL",
        )
        .bind(&not_found)
        .execute(&mut **tx)
        .await?;
        // Their clock stops at the deletion: the backlog of those days changes.
        super::history::rebuild_stays(tx, &not_found).await?;
    }
    record_outcomes(tx, latest.values().copied(), delay).await?;

    let mut report = BatchReport {
        changed: changed.len() as u64,
        unchanged: (records.len() - changed.len() - older) as u64,
        older_skipped: older as u64,
        list_rows_verified: verified.tickets,
        ..BatchReport::default()
    };
    for outcome in latest.values() {
        match outcome {
            TicketOutcome::Fetched { .. } => {}
            TicketOutcome::NotFound { .. } => report.not_found += 1,
            TicketOutcome::InvalidId { .. } => report.invalid += 1,
            TicketOutcome::Failed { .. } => report.failed += 1,
        }
    }
    Ok(report)
}

/// Of the records not written, those older than the stored row (`updated_at` before the
/// stored one): each logged; returns how many.
async fn older_than_stored(
    tx: &mut Transaction<'_, Postgres>,
    records: &[&TicketRecord],
    changed: &HashSet<String>,
) -> anyhow::Result<usize> {
    let (ids, updated): (Vec<&str>, Vec<_>) = records
        .iter()
        .filter(|r| !changed.contains(r.ticket.ticket_id.as_str()))
        .filter_map(|r| Some((r.ticket.ticket_id.as_str(), r.ticket.updated_at?)))
        .unzip();
    if ids.is_empty() {
        return Ok(0);
    }
    type At = chrono::DateTime<chrono::Utc>;
    let older: Vec<(String, At, At)> = sqlx::query_as(
        "SELECT t.ticket_id, u.updated_at, t.updated_at
         FROM UNNEST($1::text[], $2::timestamptz[]) AS u(ticket_id, updated_at)
         JOIN tickets t USING (ticket_id)
         WHERE u.updated_at < CASE WHEN t.content_source = 'list' THEN t.detail_updated_at
                                   ELSE t.updated_at END",
    )
    .bind(&ids)
    .bind(&updated)
    .fetch_all(&mut **tx)
    .await?;
    for (ticket_id, fetched, stored) in &older {
        tracing::warn!(
            ticket_id,
            fetched_updated_at = %fetched,
            stored_updated_at = %stored,
            "the API answered with an older version than the one stored; the stored row is kept"
        );
    }
    Ok(older.len())
}

/// Updates the queue rows of the batch: outcome, next due time, claim released.
async fn record_outcomes<'a>(
    tx: &mut Transaction<'_, Postgres>,
    outcomes: impl Iterator<Item = &'a TicketOutcome>,
    delay: FailureDelay,
) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    let mut labels = Vec::new();
    let mut statuses: Vec<Option<i32>> = Vec::new();
    let mut codes: Vec<Option<i64>> = Vec::new();
    let mut errors: Vec<Option<String>> = Vec::new();
    let mut attempts_col: Vec<i32> = Vec::new();
    // Seconds until due again; NULL = parked ('infinity'). Failed rows compute theirs in SQL.
    let mut due_in: Vec<Option<f64>> = Vec::new();
    let mut permanent: Vec<bool> = Vec::new();
    for outcome in outcomes {
        ids.push(outcome.ticket_id().to_owned());
        labels.push(outcome.label());
        let none = Failure::default();
        let (failure, attempts, refresh) = match outcome {
            TicketOutcome::Fetched {
                refresh_after,
                attempts,
                ..
            } => (&none, *attempts, Some(refresh_after.as_secs_f64())),
            TicketOutcome::NotFound { attempts, .. } => (&none, *attempts, None),
            TicketOutcome::InvalidId {
                failure, attempts, ..
            }
            | TicketOutcome::Failed {
                failure, attempts, ..
            } => (failure, *attempts, None),
        };
        let (status, code, error) = match outcome {
            TicketOutcome::NotFound { error, .. } => {
                (Some(404), Some(CODE_NOT_FOUND), Some(error.clone()))
            }
            TicketOutcome::Fetched { .. } => (None, None, None),
            _ => (
                failure.http_status.map(i32::from),
                failure.code,
                Some(failure.message.clone()),
            ),
        };
        statuses.push(status);
        codes.push(code);
        errors.push(error);
        attempts_col.push(attempts as i32);
        due_in.push(refresh);
        permanent.push(failure.permanent);
    }
    sqlx::query(
        "UPDATE ticket_sync_state s SET
            last_fetched_at = CASE WHEN u.outcome IN ('ok', 'not_found') THEN now()
                                   ELSE s.last_fetched_at END,
            last_outcome = u.outcome,
            last_http_status = u.http_status,
            last_error_code = u.code,
            last_error = u.error,
            last_attempt_count = u.attempts,
            consecutive_failures = CASE WHEN u.outcome = 'failed' THEN s.consecutive_failures + 1
                                        ELSE 0 END,
            -- Read-after-write lag: an event announced an update (or the ticket itself) that
            -- this answer does not show yet. Fetched again with backoff, a bounded number of times.
            lag_refetches = CASE WHEN s.lag_refetches < $12 AND (
                    (u.outcome = 'ok' AND s.wanted_updated_at < 'infinity' AND NOT EXISTS (
                        SELECT 1 FROM tickets t
                        WHERE t.ticket_id = s.ticket_id AND t.updated_at >= s.wanted_updated_at))
                    OR (u.outcome = 'not_found' AND EXISTS (
                        SELECT 1 FROM event_receipts e WHERE e.ticket_id = s.ticket_id
                          AND e.received_at > now() - make_interval(secs => $13 * 128)))) THEN s.lag_refetches + 1 ELSE 0 END,
            next_due_at = CASE
                -- Enqueued again while we were fetching: the request still stands, unless
                -- this fetch stored the update it asked for. (The same test is repeated for
                -- priority and wanted_updated_at: computing it once in FROM would read the
                -- queue row's old version when an event updates it concurrently.)
                WHEN s.last_enqueued_at > s.last_attempt_at AND NOT EXISTS (
                    SELECT 1 FROM tickets t
                    WHERE t.ticket_id = s.ticket_id AND t.updated_at >= s.wanted_updated_at)
                THEN LEAST(s.next_due_at, now())
                WHEN s.lag_refetches < $12 AND (
                    (u.outcome = 'ok' AND s.wanted_updated_at < 'infinity' AND NOT EXISTS (
                        SELECT 1 FROM tickets t
                        WHERE t.ticket_id = s.ticket_id AND t.updated_at >= s.wanted_updated_at))
                    OR (u.outcome = 'not_found' AND EXISTS (
                        SELECT 1 FROM event_receipts e WHERE e.ticket_id = s.ticket_id
                          AND e.received_at > now() - make_interval(secs => $13 * 128))))
                THEN now() + make_interval(secs => $13 * power(2, s.lag_refetches))
                -- Poisoned: the same unusable answer again and again.
                WHEN u.outcome = 'failed' AND u.permanent AND s.consecutive_failures + 1 >= $10
                THEN 'infinity'
                WHEN u.outcome = 'failed' THEN now() + make_interval(secs =>
                    LEAST($8, $9 * power(2, LEAST(s.consecutive_failures, 30))))
                WHEN u.due_in IS NULL THEN 'infinity'
                ELSE now() + make_interval(secs => u.due_in) END,
            priority = CASE WHEN s.last_enqueued_at > s.last_attempt_at AND NOT EXISTS (
                    SELECT 1 FROM tickets t
                    WHERE t.ticket_id = s.ticket_id AND t.updated_at >= s.wanted_updated_at)
                THEN s.priority ELSE 0 END,
            wanted_updated_at = CASE WHEN (s.last_enqueued_at > s.last_attempt_at AND NOT EXISTS (
                    SELECT 1 FROM tickets t
                    WHERE t.ticket_id = s.ticket_id AND t.updated_at >= s.wanted_updated_at))
                OR s.lag_refetches < $12 AND (
                    (u.outcome = 'ok' AND s.wanted_updated_at < 'infinity' AND NOT EXISTS (
                        SELECT 1 FROM tickets t
                        WHERE t.ticket_id = s.ticket_id AND t.updated_at >= s.wanted_updated_at))
                    OR (u.outcome = 'not_found' AND EXISTS (
                        SELECT 1 FROM event_receipts e WHERE e.ticket_id = s.ticket_id
                          AND e.received_at > now() - make_interval(secs => $13 * 128))))
                THEN s.wanted_updated_at END,
            claimed_until = NULL,
            claimed_by = NULL
         FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int8[], $5::text[], $6::int4[],
                     $7::float8[], $11::bool[])
                AS u(ticket_id, outcome, http_status, code, error, attempts, due_in, permanent)
         WHERE s.ticket_id = u.ticket_id",
    )
    .bind(&ids)
    .bind(&labels)
    .bind(&statuses)
    .bind(&codes)
    .bind(&errors)
    .bind(&attempts_col)
    .bind(&due_in)
    .bind(delay.cap.as_secs_f64())
    .bind(delay.base.as_secs_f64())
    .bind(delay.poison_after as i32)
    .bind(&permanent)
    .bind(LAG_REFETCHES)
    .bind(LAG_REFETCH_BASE.as_secs_f64())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
