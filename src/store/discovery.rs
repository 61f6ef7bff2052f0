//! Discovery state in Postgres: scan positions (`discovery_state`), change detection of listed
//! tickets against stored ones, and the operator's known-ids query.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Connection;

use super::Store;
use super::queue::PRIORITY_EXPLICIT;
use crate::domain::TicketId;

/// Priority of a listed ticket whose content changed (after explicit and new, before refreshes).
pub const PRIORITY_CHANGED: i16 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    Updated,
    Backfill,
}

impl Scan {
    fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Backfill => "backfill",
        }
    }
}

/// A row of `discovery_state`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScanState {
    pub scanned_until: DateTime<Utc>,
    pub range_start: Option<DateTime<Utc>>,
    pub range_end: Option<DateTime<Utc>>,
    pub completed: bool,
}

/// What noting one page of listed tickets did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Noted {
    pub queued: u64,
    pub new: u64,
}

impl Store {
    pub async fn scan_state(
        &self,
        helpdesk_id: &str,
        scan: Scan,
    ) -> anyhow::Result<Option<ScanState>> {
        Ok(sqlx::query_as(
            "SELECT scanned_until, range_start, range_end, completed FROM discovery_state
             WHERE helpdesk_id = $1 AND scan = $2",
        )
        .bind(helpdesk_id)
        .bind(scan.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Moves the incremental watermark to `until`; never backwards.
    pub async fn save_watermark(
        &self,
        helpdesk_id: &str,
        until: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO discovery_state AS d (helpdesk_id, scan, scanned_until, completed)
             VALUES ($1, 'updated', $2, true)
             ON CONFLICT (helpdesk_id, scan) DO UPDATE
                SET scanned_until = GREATEST(d.scanned_until, EXCLUDED.scanned_until),
                    changed_at = now()",
        )
        .bind(helpdesk_id)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the backfill's range and how far it got. `changed_at` (what the
    /// `discovery_stuck` rule measures) moves only when the position, the range or completion
    /// does: a backfill that restarts every run from the same place is not progress.
    pub async fn save_backfill(
        &self,
        helpdesk_id: &str,
        range_start: DateTime<Utc>,
        scanned_until: DateTime<Utc>,
        range_end: DateTime<Utc>,
        completed: bool,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO discovery_state
                (helpdesk_id, scan, scanned_until, range_start, range_end, completed)
             VALUES ($1, 'backfill', $2, $3, $4, $5)
             ON CONFLICT (helpdesk_id, scan) DO UPDATE
                SET scanned_until = EXCLUDED.scanned_until, range_start = EXCLUDED.range_start,
                    range_end = EXCLUDED.range_end, completed = EXCLUDED.completed,
                    changed_at = CASE
                        WHEN (discovery_state.scanned_until, discovery_state.range_start,
                              discovery_state.range_end, discovery_state.completed)
                             IS NOT DISTINCT FROM
                             (EXCLUDED.scanned_until, EXCLUDED.range_start,
                              EXCLUDED.range_end, EXCLUDED.completed)
                        THEN discovery_state.changed_at ELSE now() END",
        )
        .bind(helpdesk_id)
        .bind(scanned_until)
        .bind(range_start)
        .bind(range_end)
        .bind(completed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Queues listed tickets that are new, have no detail yet (stored from a list row: they
    /// come first), or whose `updated_at` differs from the last detail's (`-1` lists as NULL
    /// and equals a stored NULL; the list's clock offset, `list_clock_offset_ms()`, taken
    /// off). A ticket its detail called deleted is checked again only when the list shows
    /// another version than it did before. A failing or parked ticket is pulled forward only
    /// when the list shows a change since it was last listed.
    pub async fn note_listed(
        &self,
        listed: &BTreeMap<String, Option<DateTime<Utc>>>,
    ) -> anyhow::Result<Noted> {
        if listed.is_empty() {
            return Ok(Noted::default());
        }
        let ids: Vec<&str> = listed.keys().map(String::as_str).collect();
        let updated: Vec<Option<DateTime<Utc>>> = listed.values().copied().collect();
        let rows: Vec<(bool,)> = sqlx::query_as(
            "WITH listed AS (
                 SELECT * FROM UNNEST($1::text[], $2::timestamptz[]) AS l(ticket_id, updated_at)
             ), todo AS (
                 -- Compared with the last detail's updated_at: content stored from a list row
                 -- still wants its detail (tags, and the truth), first of all.
                 SELECT l.ticket_id, l.updated_at,
                        t.ticket_id IS NULL OR (t.content_source = 'list'
                                                AND t.detail_fetched_at IS NULL) AS is_new
                 FROM listed l LEFT JOIN tickets t USING (ticket_id)
                 LEFT JOIN ticket_sync_state q USING (ticket_id)
                 WHERE t.ticket_id IS NULL
                    OR (t.deleted_at IS NOT NULL
                        AND q.listed_updated_at IS DISTINCT FROM l.updated_at)
                    OR (t.deleted_at IS NULL AND (
                        (t.content_source = 'list' AND t.detail_fetched_at IS NULL)
                        OR (CASE WHEN t.content_source = 'detail' THEN t.updated_at
                                 ELSE t.detail_updated_at END)
                           IS DISTINCT FROM
                           l.updated_at - list_clock_offset_ms() * interval '1 millisecond'))
             )
             INSERT INTO ticket_sync_state AS s (ticket_id, source, priority, listed_updated_at,
                                                 helpdesk_id)
             SELECT ticket_id, 'discovery', CASE WHEN is_new THEN $3 ELSE $4 END, updated_at, $5
             FROM todo ORDER BY ticket_id
             ON CONFLICT (ticket_id) DO UPDATE SET
                -- A helpdesk lists only its own tickets: the lister owns the row (mends a row
                -- queued under another helpdesk).
                helpdesk_id = COALESCE(EXCLUDED.helpdesk_id, s.helpdesk_id),
                next_due_at = CASE
                    WHEN s.last_outcome IN ('failed', 'invalid_id')
                     AND s.listed_updated_at IS NOT DISTINCT FROM EXCLUDED.listed_updated_at
                    THEN s.next_due_at
                    ELSE LEAST(s.next_due_at, now()) END,
                priority = CASE
                    WHEN s.last_outcome IN ('failed', 'invalid_id')
                     AND s.listed_updated_at IS NOT DISTINCT FROM EXCLUDED.listed_updated_at
                    THEN s.priority
                    ELSE GREATEST(s.priority, EXCLUDED.priority) END,
                listed_updated_at = EXCLUDED.listed_updated_at
             RETURNING (xmax = 0)",
        )
        .bind(&ids)
        .bind(&updated)
        .bind(PRIORITY_EXPLICIT)
        .bind(PRIORITY_CHANGED)
        .bind(self.helpdesk())
        .fetch_all(&self.pool)
        .await?;
        Ok(Noted {
            queued: rows.len() as u64,
            new: rows.iter().filter(|(inserted,)| *inserted).count() as u64,
        })
    }

    /// Runs the operator's query (read-only, 60 s at most) and enqueues ids never seen before,
    /// as this store's helpdesk's. A second column, when the query returns one, is the ticket's
    /// helpdesk id (text): only rows naming this helpdesk are taken (every helpdesk runs the
    /// query in its own cycle). With `several_helpdesks`, that column is required: one
    /// helpdesk's token would read another's ticket as "not found". NULL ids are skipped.
    pub async fn enqueue_from_query(
        &self,
        query: &str,
        several_helpdesks: bool,
    ) -> anyhow::Result<u64> {
        use sqlx::Row;
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL statement_timeout = '60s'")
            .execute(&mut *tx)
            .await?;
        // Operator-written SQL from the config file (never API data), run read-only.
        let rows = sqlx::query(sqlx::AssertSqlSafe(query.to_owned()))
            .fetch_all(&mut *tx)
            .await?;
        tx.rollback().await?;
        let named = rows.first().is_some_and(|row| row.len() >= 2);
        if several_helpdesks && !rows.is_empty() && !named {
            anyhow::bail!(
                "several helpdesks are configured: the query must return each ticket's helpdesk_id \
                 as a second column (SELECT ticket_id, helpdesk_id ...); nothing was queued"
            );
        }
        let not_text = |column: &str| {
            anyhow::anyhow!(
                "the query's {column} column is not text: cast it (e.g. SELECT ticket_id::text, \
                 helpdesk_id::text ...); nothing was queued"
            )
        };
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            let text: Option<String> = row.try_get(0).map_err(|_| not_text("first"))?;
            let Some(text) = text else {
                continue;
            };
            if named {
                let helpdesk: Option<String> = row.try_get(1).map_err(|_| not_text("second"))?;
                let ours = match (self.helpdesk(), helpdesk.as_deref().map(str::trim)) {
                    (None, _) => true,
                    (Some(ours), theirs) => theirs == Some(ours),
                };
                if !ours {
                    continue;
                }
            }
            match TicketId::parse(&text) {
                Ok(id) => ids.push(id.into_string()),
                Err(e) => {
                    tracing::warn!(error = %e, "known_ids_query returned a value that is not a ticket id")
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let added = sqlx::query(
            "INSERT INTO ticket_sync_state (ticket_id, source, priority, helpdesk_id)
             SELECT id, 'query', $2, $3 FROM UNNEST($1::text[]) AS id
             ON CONFLICT (ticket_id) DO NOTHING",
        )
        .bind(&ids)
        .bind(PRIORITY_EXPLICIT)
        .bind(self.helpdesk())
        .execute(&self.pool)
        .await?;
        Ok(added.rows_affected())
    }
}
