//! The raw JSON stored with each ticket, read back for `reprocess`: id ranges in key order, and
//! a range rewritten under row locks from what its raw JSON normalizes to.

use chrono::{DateTime, Utc};

use crate::domain::TicketRecord;
use crate::store::Store;
use crate::store::write::write_records;

/// One stored ticket's raw detail JSON and when it was fetched.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredRaw {
    pub ticket_id: String,
    pub raw: String,
    pub fetched_at: DateTime<Utc>,
}

impl Store {
    /// Stored tickets (or just `only`), of this store's helpdesk when it has one.
    pub async fn count_tickets(&self, only: Option<&str>) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT count(*) FROM tickets WHERE ($1::text IS NULL OR ticket_id = $1)
               AND ($2::text IS NULL OR helpdesk_id = $2)",
        )
        .bind(only)
        .bind(self.helpdesk())
        .fetch_one(self.pool())
        .await
    }

    /// Up to `limit` stored ticket ids after `after`, in key order, without locks (of this
    /// store's helpdesk when it has one).
    pub async fn ticket_ids_after(
        &self,
        after: &str,
        only: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT ticket_id FROM tickets
             WHERE ticket_id > $1 AND ($2::text IS NULL OR ticket_id = $2)
               AND ($4::text IS NULL OR helpdesk_id = $4)
             ORDER BY ticket_id LIMIT $3",
        )
        .bind(after)
        .bind(only)
        .bind(limit as i64)
        .bind(self.helpdesk())
        .fetch_all(self.pool())
        .await
    }

    /// Locks the rows of `ids`, reads their raw JSON, writes what `renormalize` makes of each
    /// (None: left as it is) and commits. The row locks keep a sync that stores newer content
    /// meanwhile from being overwritten with older content. Returns the rows read and written.
    pub async fn rewrite_from_raw(
        &self,
        ids: &[String],
        renormalize: impl Fn(&StoredRaw) -> Option<TicketRecord>,
    ) -> anyhow::Result<(u64, u64)> {
        let mut tx = self.pool().begin().await?;
        let rows: Vec<StoredRaw> = sqlx::query_as(
            "SELECT ticket_id, raw::text AS raw, fetched_at FROM tickets
             WHERE ticket_id = ANY($1) ORDER BY ticket_id FOR UPDATE",
        )
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
        let records: Vec<TicketRecord> = rows.iter().filter_map(renormalize).collect();
        let refs: Vec<&TicketRecord> = records.iter().collect();
        write_records(&mut tx, &refs, true).await?;
        tx.commit().await?;
        self.note_written(refs.len() as u64);
        Ok((rows.len() as u64, refs.len() as u64))
    }
}
