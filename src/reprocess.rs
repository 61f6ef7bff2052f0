//! `reprocess`: rebuilds the normalized tables from the raw JSON already stored, with no API
//! calls: for when a new column or a parsing fix lands. Batched, keyset-paginated; history
//! gains rows only where the re-normalized content really differs.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::domain::{TicketId, TicketRecord};
use crate::normalize::normalize_ticket;
use crate::store::Store;
use crate::store::upsert::write_records;

/// What a reprocess run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReprocessReport {
    /// Tickets read.
    pub tickets: u64,
    /// Tickets whose stored raw JSON could not be normalized (left as they are).
    pub failed: u64,
    pub elapsed: Duration,
}

/// Re-normalizes every stored ticket (or one), `batch_size` per transaction.
pub async fn reprocess(
    store: &Store,
    only: Option<&TicketId>,
    batch_size: usize,
    on_progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<ReprocessReport> {
    let started = Instant::now();
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tickets WHERE $1::text IS NULL OR ticket_id = $1")
            .bind(only.map(TicketId::as_str))
            .fetch_one(store.pool())
            .await?;
    let mut report = ReprocessReport::default();
    let mut after = String::new();
    loop {
        // Read and rewrite in one transaction, rows locked: a sync storing newer content in
        // between waits for us, then writes its content over ours, never the reverse.
        let mut tx = store.pool().begin().await?;
        let rows: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT ticket_id, raw::text, fetched_at FROM tickets
             WHERE ticket_id > $1 AND ($2::text IS NULL OR ticket_id = $2)
             ORDER BY ticket_id LIMIT $3 FOR UPDATE",
        )
        .bind(&after)
        .bind(only.map(TicketId::as_str))
        .bind(batch_size as i64)
        .fetch_all(&mut *tx)
        .await?;
        let Some((last, _, _)) = rows.last() else {
            tx.rollback().await?;
            break;
        };
        after = last.clone();
        let mut records: Vec<TicketRecord> = Vec::with_capacity(rows.len());
        for (ticket_id, raw, fetched_at) in &rows {
            let normalized = TicketId::parse(ticket_id)
                .map_err(|e| e.to_string())
                .and_then(|id| normalize_ticket(&id, raw, *fetched_at).map_err(|e| e.to_string()));
            match normalized {
                Ok(n) => records.push(n.record),
                Err(error) => {
                    report.failed += 1;
                    tracing::warn!(ticket_id = %ticket_id, error = %error, "stored raw JSON does not normalize; row left as it is");
                }
            }
        }
        let refs: Vec<&TicketRecord> = records.iter().collect();
        write_records(&mut tx, &refs, true).await?;
        tx.commit().await?;
        report.tickets += rows.len() as u64;
        on_progress(report.tickets, total as u64);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}
