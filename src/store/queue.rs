//! The work queue (`ticket_sync_state`): enqueue known ids, claim due ones with a lease,
//! release claims that were not worked.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Store;
use crate::domain::{QueueCounts, TicketId};

/// Where an id came from (`ticket_sync_state.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cli,
    File,
    Demo,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::File => "file",
            Self::Demo => "demo",
        }
    }
}

/// What `enqueue` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnqueueReport {
    /// Ids the queue did not know.
    pub added: u64,
    /// Known ids, now due again.
    pub requeued: u64,
}

/// Priority of an explicit request: fetched before routine refreshes.
pub const PRIORITY_EXPLICIT: i16 = 10;

/// A ticket claimed for fetching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// As stored; may fail [`TicketId::parse`] if something wrote a bad id.
    pub ticket_id: String,
    pub priority: i16,
}

impl Store {
    /// Adds ids (idempotent): new ids are due now; known ids become due now with explicit
    /// priority, and this store's helpdesk's (the operator said whose tickets they are).
    pub async fn enqueue(&self, ids: &[TicketId], source: Source) -> anyhow::Result<EnqueueReport> {
        let mut unique: Vec<&str> = ids.iter().map(TicketId::as_str).collect();
        unique.sort_unstable();
        unique.dedup();
        let mut report = EnqueueReport::default();
        for chunk in unique.chunks(10_000) {
            let rows: Vec<(bool,)> = sqlx::query_as(
                "INSERT INTO ticket_sync_state AS s (ticket_id, source, priority, helpdesk_id)
                 SELECT id, $2, $3, $4 FROM UNNEST($1::text[]) AS id
                 ON CONFLICT (ticket_id) DO UPDATE
                    SET helpdesk_id = COALESCE(EXCLUDED.helpdesk_id, s.helpdesk_id),
                        next_due_at = LEAST(s.next_due_at, now()),
                        priority = GREATEST(s.priority, EXCLUDED.priority),
                        last_enqueued_at = now(),
                        wanted_updated_at = 'infinity'
                 RETURNING (xmax = 0) AS inserted",
            )
            .bind(chunk)
            .bind(source.as_str())
            .bind(PRIORITY_EXPLICIT)
            .bind(self.helpdesk())
            .fetch_all(&self.pool)
            .await?;
            let added = rows.iter().filter(|(inserted,)| *inserted).count() as u64;
            report.added += added;
            report.requeued += rows.len() as u64 - added;
        }
        Ok(report)
    }

    /// Claims up to `limit` tickets due at `due_by`, leasing them to `worker` for `lease`.
    /// `SKIP LOCKED` and the lease keep two workers from fetching the same ticket; with the
    /// helpdesk lock held, nothing is claimed once another process raised its epoch.
    pub async fn claim_due(
        &self,
        limit: usize,
        due_by: DateTime<Utc>,
        lease: Duration,
        worker: &str,
    ) -> anyhow::Result<Vec<Claimed>> {
        let fence = self.fence();
        let rows: Vec<(String, i16, DateTime<Utc>)> = sqlx::query_as(
            "WITH due AS (
                 SELECT ticket_id FROM ticket_sync_state
                 WHERE (next_due_at <= $2 OR (priority >= $5 AND next_due_at <= now()))
                   AND (claimed_until IS NULL OR claimed_until < now())
                   AND ($8::text IS NULL OR helpdesk_id = $8)
                   AND ($6::text IS NULL OR EXISTS (
                        SELECT 1 FROM sync_lock WHERE helpdesk_id = $6 AND epoch = $7))
                 ORDER BY priority DESC, next_due_at, ticket_id
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED)
             UPDATE ticket_sync_state s
                SET claimed_until = now() + make_interval(secs => $3),
                    claimed_by = $4,
                    last_attempt_at = now()
               FROM due WHERE s.ticket_id = due.ticket_id
             RETURNING s.ticket_id, s.priority, s.next_due_at",
        )
        .bind(limit as i64)
        .bind(due_by)
        .bind(lease.as_secs_f64())
        .bind(worker)
        .bind(super::events::PRIORITY_EVENT)
        .bind(fence.as_ref().map(|f| f.helpdesk_id.as_str()))
        .bind(fence.as_ref().map(|f| f.epoch))
        .bind(self.helpdesk())
        .fetch_all(&self.pool)
        .await?;
        let mut rows = rows;
        // RETURNING has no order; keep the queue's.
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
        Ok(rows
            .into_iter()
            .map(|(ticket_id, priority, _)| Claimed {
                ticket_id,
                priority,
            })
            .collect())
    }

    /// Releases every claim `worker` still holds (end of a cycle: those tickets were not written).
    pub async fn release_all_claims(&self, worker: &str) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE ticket_sync_state SET claimed_until = NULL, claimed_by = NULL
             WHERE claimed_by = $1 AND ($2::text IS NULL OR helpdesk_id = $2)",
        )
        .bind(worker)
        .bind(self.helpdesk())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Queue rows no helpdesk owns yet (queued before several helpdesks were supported, or
    /// by a path that did not know the helpdesk) become `helpdesk_id`'s: the helpdesk of their
    /// stored ticket when there is one, else this one (the first configured helpdesk calls
    /// this). Returns the rows adopted.
    pub async fn adopt_unowned_queue_rows(&self, helpdesk_id: &str) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE ticket_sync_state s
                SET helpdesk_id = COALESCE(
                    (SELECT t.helpdesk_id FROM tickets t WHERE t.ticket_id = s.ticket_id), $1)
              WHERE s.helpdesk_id IS NULL",
        )
        .bind(helpdesk_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Queue rows held by another helpdesk than their stored ticket's, when that helpdesk is
    /// one of `configured`, go back to it and are due now. An older build could leave them so
    /// (a message event naming no helpdesk queued a ticket that the first helpdesk then fetched
    /// with its own token): the wrong helpdesk's 404 marked a live ticket deleted and parked
    /// its row for good. Fetched by its own helpdesk, a live ticket is stored again and a
    /// deleted one stays deleted. Rows whose ticket's helpdesk is not configured are left as
    /// they are (no loop would fetch them). Returns the rows moved.
    pub async fn return_rows_to_their_helpdesk(
        &self,
        configured: &[String],
    ) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE ticket_sync_state s
                SET helpdesk_id = t.helpdesk_id, next_due_at = LEAST(s.next_due_at, now()),
                    consecutive_failures = 0, lag_refetches = 0,
                    -- Conversation reads failed with the wrong token: read again now.
                    messages_due_at = CASE WHEN s.messages_failures > 0 THEN now()
                                           ELSE s.messages_due_at END,
                    messages_failures = 0
               FROM tickets t
              WHERE t.ticket_id = s.ticket_id AND t.helpdesk_id = ANY($1)
                AND s.helpdesk_id <> t.helpdesk_id",
        )
        .bind(configured)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The database's current time (cycles compare due times on this clock).
    pub async fn now(&self) -> anyhow::Result<DateTime<Utc>> {
        Ok(sqlx::query_scalar("SELECT now()")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Releases claims held by any worker but `worker`. Only for a caller holding the helpdesk
    /// lock: then no other worker is alive, and its claims are left over from a crash.
    pub async fn release_foreign_claims(&self, worker: &str) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE ticket_sync_state SET claimed_until = NULL, claimed_by = NULL
             WHERE claimed_by IS NOT NULL AND claimed_by <> $1
               AND ($2::text IS NULL OR helpdesk_id = $2)",
        )
        .bind(worker)
        .bind(self.helpdesk())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Tickets due at `due_by`.
    pub async fn count_due(&self, due_by: DateTime<Utc>) -> anyhow::Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ticket_sync_state
                 WHERE next_due_at <= $1 AND ($2::text IS NULL OR helpdesk_id = $2)",
        )
        .bind(due_by)
        .bind(self.helpdesk())
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    pub async fn queue_counts(&self) -> anyhow::Result<QueueCounts> {
        let (known, due_now, failed, parked): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT count(*),
                    count(*) FILTER (WHERE next_due_at <= now()),
                    count(*) FILTER (WHERE last_outcome = 'failed'),
                    count(*) FILTER (WHERE next_due_at = 'infinity')
             FROM ticket_sync_state WHERE ($1::text IS NULL OR helpdesk_id = $1)",
        )
        .bind(self.helpdesk())
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueCounts {
            known,
            due_now,
            failed,
            parked,
        })
    }
}
