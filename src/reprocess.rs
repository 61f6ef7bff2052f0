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

/// Re-normalizes every stored ticket (or one), `batch_size` per transaction, `jobs`
/// transactions at a time (the database is the bottleneck: each job is one backend).
pub async fn reprocess(
    store: &Store,
    only: Option<&TicketId>,
    batch_size: usize,
    jobs: usize,
    on_progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<ReprocessReport> {
    use futures::StreamExt;
    let started = Instant::now();
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tickets WHERE $1::text IS NULL OR ticket_id = $1")
            .bind(only.map(TicketId::as_str))
            .fetch_one(store.pool())
            .await?;
    // Id ranges, read ahead in key order without locks; each job then locks, reads and
    // rewrites its range in one transaction.
    let ranges = futures::stream::unfold(Some(String::new()), |after| async move {
        let after = after?;
        let ids: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
            "SELECT ticket_id FROM tickets
             WHERE ticket_id > $1 AND ($2::text IS NULL OR ticket_id = $2)
             ORDER BY ticket_id LIMIT $3",
        )
        .bind(&after)
        .bind(only.map(TicketId::as_str))
        .bind(batch_size as i64)
        .fetch_all(store.pool())
        .await;
        match ids {
            Ok(ids) if ids.is_empty() => None,
            Ok(ids) => {
                let next = ids.last().cloned();
                Some((Ok(ids), next))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut batches = std::pin::pin!(
        ranges
            .map(|ids| async move { rewrite(store, ids?).await })
            .buffer_unordered(jobs.max(1))
    );
    let mut report = ReprocessReport::default();
    while let Some(done) = batches.next().await {
        let (tickets, failed) = done?;
        report.tickets += tickets;
        report.failed += failed;
        on_progress(report.tickets, total as u64);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// One range: lock the rows, read their raw JSON, normalize, write, commit. Row locks keep a
/// sync that stores newer content meanwhile from being overwritten with older content.
/// Returns (tickets read, tickets that did not normalize).
async fn rewrite(store: &Store, ids: Vec<String>) -> anyhow::Result<(u64, u64)> {
    let mut tx = store.pool().begin().await?;
    let rows: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT ticket_id, raw::text, fetched_at FROM tickets
         WHERE ticket_id = ANY($1) ORDER BY ticket_id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut records: Vec<TicketRecord> = Vec::with_capacity(rows.len());
    let mut failed = 0;
    for (ticket_id, raw, fetched_at) in &rows {
        let normalized = TicketId::parse(ticket_id)
            .map_err(|e| e.to_string())
            .and_then(|id| normalize_ticket(&id, raw, *fetched_at).map_err(|e| e.to_string()));
        match normalized {
            Ok(n) => records.push(n.record),
            Err(error) => {
                failed += 1;
                tracing::warn!(ticket_id = %ticket_id, error = %error, "stored raw JSON does not normalize; row left as it is");
            }
        }
    }
    let refs: Vec<&TicketRecord> = records.iter().collect();
    write_records(&mut tx, &refs, true).await?;
    tx.commit().await?;
    store.note_written(refs.len() as u64).await;
    Ok((rows.len() as u64, failed))
}
