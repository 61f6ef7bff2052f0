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
use super::failure::FailureDelay;
use super::write::write_records;
use crate::domain::api_codes::CODE_NOT_FOUND;
use crate::domain::{Batch, BatchReport, MessagesOutcome, TicketOutcome, TicketRecord};

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
             WHERE lag_refetches > 0 AND next_due_at < 'infinity'
               AND ($1::text IS NULL OR helpdesk_id = $1)",
        )
        .bind(self.helpdesk())
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
        let mut report = write_outcomes(&mut tx, &batch.tickets, delay, self.helpdesk()).await?;
        let messages: Vec<&MessagesOutcome> = batch.messages.iter().collect();
        let written = super::messages::write_messages(&mut tx, &messages, delay).await?;
        report.messages_synced = written.synced;
        report.messages_failed = written.failed;
        report.messages_stored = written.stored;
        tx.commit().await?;
        self.note_written(report.changed);
        Ok(report)
    }
}

/// Writes a batch's outcomes; `helpdesk` is the helpdesk whose token fetched them (None: one
/// helpdesk, or the unscoped store).
async fn write_outcomes(
    tx: &mut Transaction<'_, Postgres>,
    outcomes: &[TicketOutcome],
    delay: FailureDelay,
    helpdesk: Option<&str>,
) -> anyhow::Result<BatchReport> {
    // The same ticket twice in a batch: the later outcome wins (ON CONFLICT cannot touch a row twice).
    let mut latest: BTreeMap<&str, &TicketOutcome> = BTreeMap::new();
    for outcome in outcomes {
        latest.insert(outcome.ticket_id(), outcome);
    }
    let asked_elsewhere = not_found_elsewhere(tx, &latest, helpdesk).await?;
    for id in &asked_elsewhere {
        latest.remove(id.as_str());
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
    super::messages::ticket_changed(tx, &changed_ids, &verified.same_version).await?;
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

/// The tickets answered "not found" that are not the asking helpdesk's to call deleted: their
/// queue row is another helpdesk's now (a listing moved it while it was being fetched: a
/// listing owns what it lists, `Store::note_listed`), or their stored ticket names another
/// helpdesk (the row was queued under the wrong one). A ticket of another helpdesk answers
/// "not found" to this one's token, which says nothing about the ticket: it is not marked
/// deleted and no outcome is recorded; its claim is given back, the row goes to the ticket's
/// helpdesk and is due now. The rows are locked first (in id order), so a listing cannot move
/// one between this check and the outcome written after it.
async fn not_found_elsewhere(
    tx: &mut Transaction<'_, Postgres>,
    latest: &BTreeMap<&str, &TicketOutcome>,
    helpdesk: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let Some(helpdesk) = helpdesk else {
        return Ok(Vec::new());
    };
    let not_found: Vec<&str> = latest
        .values()
        .filter(|o| matches!(o, TicketOutcome::NotFound { .. }))
        .map(|o| o.ticket_id())
        .collect();
    if not_found.is_empty() {
        return Ok(Vec::new());
    }
    let held: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT s.ticket_id, s.helpdesk_id, t.helpdesk_id
           FROM ticket_sync_state s LEFT JOIN tickets t USING (ticket_id)
          WHERE s.ticket_id = ANY($1)
          ORDER BY s.ticket_id
            FOR UPDATE OF s",
    )
    .bind(&not_found)
    .fetch_all(&mut **tx)
    .await?;
    let (mut ids, mut owners) = (Vec::new(), Vec::new());
    for (id, holder, own) in held {
        let owner = match (holder, own) {
            (holder, _) if holder.as_deref() != Some(helpdesk) => holder,
            (_, Some(own)) if own != helpdesk => Some(own),
            _ => continue,
        };
        ids.push(id);
        owners.push(owner);
    }
    if ids.is_empty() {
        return Ok(ids);
    }
    sqlx::query(
        "UPDATE ticket_sync_state s
            SET claimed_until = NULL, claimed_by = NULL, next_due_at = LEAST(s.next_due_at, now()),
                helpdesk_id = u.owner
           FROM UNNEST($1::text[], $2::text[]) AS u(ticket_id, owner)
          WHERE s.ticket_id = u.ticket_id",
    )
    .bind(&ids)
    .bind(&owners)
    .execute(&mut **tx)
    .await?;
    Ok(ids)
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

/// The queue columns one outcome writes (`record_outcomes`).
struct OutcomeRow {
    ticket_id: String,
    outcome: &'static str,
    http_status: Option<i32>,
    code: Option<i64>,
    error: Option<String>,
    attempts: i32,
    /// Seconds until due again; NULL = parked ('infinity'). Failed rows compute theirs in SQL.
    due_in: Option<f64>,
    permanent: bool,
}

fn outcome_row(outcome: &TicketOutcome) -> OutcomeRow {
    let (http_status, code, error, attempts, due_in, permanent) = match outcome {
        TicketOutcome::Fetched {
            refresh_after,
            attempts,
            ..
        } => (
            None,
            None,
            None,
            *attempts,
            Some(refresh_after.as_secs_f64()),
            false,
        ),
        TicketOutcome::NotFound {
            error, attempts, ..
        } => (
            Some(404),
            Some(CODE_NOT_FOUND),
            Some(error.clone()),
            *attempts,
            None,
            false,
        ),
        TicketOutcome::InvalidId {
            failure, attempts, ..
        }
        | TicketOutcome::Failed {
            failure, attempts, ..
        } => (
            failure.http_status.map(i32::from),
            failure.code,
            Some(failure.message.clone()),
            *attempts,
            None,
            failure.permanent,
        ),
    };
    OutcomeRow {
        ticket_id: outcome.ticket_id().to_owned(),
        outcome: outcome.label(),
        http_status,
        code,
        error,
        attempts: attempts as i32,
        due_in,
        permanent,
    }
}

/// The outcome rows of a batch as the arrays [`RECORD_OUTCOMES`] unnests.
#[derive(Default)]
struct OutcomeColumns {
    ids: Vec<String>,
    outcomes: Vec<&'static str>,
    http_statuses: Vec<Option<i32>>,
    codes: Vec<Option<i64>>,
    errors: Vec<Option<String>>,
    attempts: Vec<i32>,
    due_in: Vec<Option<f64>>,
    permanent: Vec<bool>,
}

impl OutcomeColumns {
    fn push(&mut self, row: OutcomeRow) {
        self.ids.push(row.ticket_id);
        self.outcomes.push(row.outcome);
        self.http_statuses.push(row.http_status);
        self.codes.push(row.code);
        self.errors.push(row.error);
        self.attempts.push(row.attempts);
        self.due_in.push(row.due_in);
        self.permanent.push(row.permanent);
    }
}

// The predicates of `RECORD_OUTCOMES`, each said once. They read the queue row `s` inside each
// SET expression rather than once in FROM: computed in FROM they would read the queue row's old
// version when an event updates it concurrently.

/// This fetch stored the update the queue row asks for (`wanted_updated_at`).
macro_rules! wanted_update_stored {
    () => {
        "EXISTS (SELECT 1 FROM tickets t
                 WHERE t.ticket_id = s.ticket_id AND t.updated_at >= s.wanted_updated_at)"
    };
}

/// Enqueued again while we were fetching: the request still stands, unless this fetch stored
/// the update it asked for.
macro_rules! request_stands {
    () => {
        concat!(
            "(s.last_enqueued_at > s.last_attempt_at AND NOT ",
            wanted_update_stored!(),
            ")"
        )
    };
}

/// Read-after-write lag: an event announced an update (or the ticket itself) that this answer
/// does not show yet, and the ticket has re-fetches left ($12 = [`LAG_REFETCHES`]; $13 =
/// [`LAG_REFETCH_BASE`] in seconds).
macro_rules! lagging {
    () => {
        concat!(
            "(s.lag_refetches < $12 AND (
                (u.outcome = 'ok' AND s.wanted_updated_at < 'infinity' AND NOT ",
            wanted_update_stored!(),
            ")
                OR (u.outcome = 'not_found' AND EXISTS (
                    SELECT 1 FROM event_receipts e WHERE e.ticket_id = s.ticket_id
                      AND e.received_at > now() - make_interval(secs => $13 * 128)))))"
        )
    };
}

/// Updates the queue rows of a batch from [`OutcomeColumns`] ($1–$7, $11) and the
/// [`FailureDelay`] ($8 cap, $9 base, $10 poison_after).
const RECORD_OUTCOMES: &str = concat!(
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
        -- Fetched again with backoff, a bounded number of times.
        lag_refetches = CASE WHEN ",
    lagging!(),
    " THEN s.lag_refetches + 1 ELSE 0 END,
        next_due_at = CASE
            WHEN ",
    request_stands!(),
    " THEN LEAST(s.next_due_at, now())
            WHEN ",
    lagging!(),
    " THEN now() + make_interval(secs => $13 * power(2, s.lag_refetches))
            -- Poisoned: the same unusable answer again and again.
            WHEN u.outcome = 'failed' AND u.permanent AND s.consecutive_failures + 1 >= $10
            THEN 'infinity'
            WHEN u.outcome = 'failed' THEN now() + make_interval(secs =>
                LEAST($8, $9 * power(2, LEAST(s.consecutive_failures, 30))))
            WHEN u.due_in IS NULL THEN 'infinity'
            ELSE now() + make_interval(secs => u.due_in) END,
        -- A failed fetch answered nothing: what was asked for still stands.
        priority = CASE WHEN u.outcome = 'failed' OR ",
    request_stands!(),
    " THEN s.priority ELSE 0 END,
        wanted_updated_at = CASE WHEN u.outcome = 'failed' OR ",
    request_stands!(),
    " OR ",
    lagging!(),
    " THEN s.wanted_updated_at END,
        claimed_until = NULL,
        claimed_by = NULL
     FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int8[], $5::text[], $6::int4[],
                 $7::float8[], $11::bool[])
            AS u(ticket_id, outcome, http_status, code, error, attempts, due_in, permanent)
     WHERE s.ticket_id = u.ticket_id"
);

/// Updates the queue rows of the batch: outcome, next due time, claim released.
async fn record_outcomes<'a>(
    tx: &mut Transaction<'_, Postgres>,
    outcomes: impl Iterator<Item = &'a TicketOutcome>,
    delay: FailureDelay,
) -> anyhow::Result<()> {
    let mut columns = OutcomeColumns::default();
    for outcome in outcomes {
        columns.push(outcome_row(outcome));
    }
    sqlx::query(RECORD_OUTCOMES)
        .bind(&columns.ids)
        .bind(&columns.outcomes)
        .bind(&columns.http_statuses)
        .bind(&columns.codes)
        .bind(&columns.errors)
        .bind(&columns.attempts)
        .bind(&columns.due_in)
        .bind(delay.cap.as_secs_f64())
        .bind(delay.base.as_secs_f64())
        .bind(delay.poison_after as i32)
        .bind(&columns.permanent)
        .bind(LAG_REFETCHES)
        .bind(LAG_REFETCH_BASE.as_secs_f64())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
