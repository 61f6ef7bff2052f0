//! Webhook events in the database: the receipt (duplicate detection) and the enqueue, in one
//! transaction, committed before the event is acknowledged.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use super::Store;
use crate::domain::TicketId;

/// Priority of a ticket an event named: before explicit requests and routine refreshes.
pub const PRIORITY_EVENT: i16 = 20;

/// Receipts are kept this long (Feishu redelivers within hours, not days).
pub const RECEIPT_RETENTION_DAYS: i32 = 7;

/// What recording an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The event id was seen before: nothing changed.
    Duplicate,
    /// The ticket is due now with top priority.
    Queued,
    /// The stored copy is already at least as new as the event says: nothing to fetch.
    AlreadyCurrent,
    /// The store serves every helpdesk (several are configured and the event named none) and
    /// the ticket is not queued yet, so its helpdesk is unknown: nothing recorded (discovery
    /// finds the ticket in its helpdesk).
    NoHelpdesk,
}

impl Store {
    /// Opens an event's transaction: records its receipt and locks its ticket's queue row.
    /// `Err` with what recording came to when nothing more is to be done: a duplicate, or
    /// (the store serves every helpdesk and the ticket is not queued) no helpdesk to queue the
    /// ticket in — queued without one, the first helpdesk would adopt it and fetch it with its
    /// own token (another helpdesk's ticket answers "not found" there).
    ///
    /// The queue row is locked first: a fetch of this ticket being written now either commits
    /// before the caller looks at the stored copy (and it sees it), or writes after (and sees
    /// the request, keeping the ticket due unless its fetch stored the update asked for).
    pub(super) async fn begin_event(
        &self,
        event_id: &str,
        event_type: &str,
        ticket_id: &TicketId,
        updated_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<Result<Transaction<'static, Postgres>, Recorded>> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO event_receipts (event_id, event_type, ticket_id, updated_at, outcome)
             VALUES ($1, $2, $3, $4, 'queued') ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(event_type)
        .bind(ticket_id.as_str())
        .bind(updated_at)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Err(Recorded::Duplicate));
        }
        let queued: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM ticket_sync_state WHERE ticket_id = $1 FOR UPDATE")
                .bind(ticket_id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if queued.is_none() && self.helpdesk().is_none() {
            tx.rollback().await?;
            return Ok(Err(Recorded::NoHelpdesk));
        }
        Ok(Ok(tx))
    }

    /// Records the event and enqueues its ticket unless the stored copy is already current.
    /// A new queue row is this store's helpdesk's ([`Store::for_helpdesk`]). A known ticket
    /// goes to this helpdesk's queue when the event `named` it (the event says whose ticket it
    /// is, mending a row queued under another), else stays in its helpdesk's queue.
    pub async fn record_event(
        &self,
        event_id: &str,
        event_type: &str,
        ticket_id: &TicketId,
        updated_at: Option<DateTime<Utc>>,
        named: bool,
    ) -> anyhow::Result<Recorded> {
        let mut tx = match self
            .begin_event(event_id, event_type, ticket_id, updated_at)
            .await?
        {
            Ok(tx) => tx,
            Err(done) => return Ok(done),
        };
        let helpdesk = self.helpdesk();
        let current: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tickets
                            WHERE ticket_id = $1 AND deleted_at IS NULL
                              AND $2::timestamptz IS NOT NULL AND updated_at >= $2)",
        )
        .bind(ticket_id.as_str())
        .bind(updated_at)
        .fetch_one(&mut *tx)
        .await?;
        if current {
            sqlx::query("UPDATE event_receipts SET outcome = 'current' WHERE event_id = $1")
                .bind(event_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Recorded::AlreadyCurrent);
        }
        sqlx::query(
            "INSERT INTO ticket_sync_state AS s (ticket_id, source, priority, helpdesk_id)
             VALUES ($1, 'event', $2, $4)
             ON CONFLICT (ticket_id) DO UPDATE
                SET helpdesk_id = CASE WHEN $5 THEN $4 ELSE COALESCE(s.helpdesk_id, $4) END,
                    next_due_at = LEAST(s.next_due_at, now()),
                    priority = GREATEST(s.priority, EXCLUDED.priority),
                    last_enqueued_at = now(),
                    -- The newest update asked for; unknown (NULL) = fetch again regardless.
                    wanted_updated_at = GREATEST(s.wanted_updated_at,
                                                 COALESCE($3::timestamptz, 'infinity'))",
        )
        .bind(ticket_id.as_str())
        .bind(PRIORITY_EVENT)
        .bind(updated_at)
        .bind(helpdesk)
        .bind(named)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Recorded::Queued)
    }

    /// Deletes receipts older than [`RECEIPT_RETENTION_DAYS`]; returns how many.
    pub async fn prune_event_receipts(&self) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "DELETE FROM event_receipts WHERE received_at < now() - make_interval(days => $1)",
        )
        .bind(RECEIPT_RETENTION_DAYS)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
