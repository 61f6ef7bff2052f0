//! `reprocess`: rebuilds the normalized tables from the raw JSON already stored, with no API
//! calls: for when a new column or a parsing fix lands. Batched, keyset-paginated; history
//! gains rows only where the re-normalized content really differs.

use std::time::{Duration, Instant};

use crate::domain::{TicketId, TicketRecord};
use crate::normalize::normalize_ticket;
use crate::store::Store;
use crate::store::raw::StoredRaw;

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
    let only = only.map(TicketId::as_str);
    let total = store.count_tickets(only).await?;
    // Id ranges, read ahead in key order without locks; each job then locks, reads and
    // rewrites its range in one transaction.
    let ranges = futures::stream::unfold(Some(String::new()), |after| async move {
        let after = after?;
        match store.ticket_ids_after(&after, only, batch_size).await {
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

/// One range: its raw JSON normalized again and written (see [`Store::rewrite_from_raw`]).
/// Returns (tickets read, tickets that did not normalize).
async fn rewrite(store: &Store, ids: Vec<String>) -> anyhow::Result<(u64, u64)> {
    let (read, written) = store.rewrite_from_raw(&ids, renormalize).await?;
    Ok((read, read - written))
}

/// A stored ticket's record from its raw JSON; None (logged) when it does not normalize.
fn renormalize(stored: &StoredRaw) -> Option<TicketRecord> {
    let normalized = TicketId::parse(&stored.ticket_id)
        .map_err(|e| e.to_string())
        .and_then(|id| {
            normalize_ticket(&id, &stored.raw, stored.fetched_at).map_err(|e| e.to_string())
        });
    match normalized {
        Ok(n) => Some(n.record),
        Err(error) => {
            tracing::warn!(ticket_id = %stored.ticket_id, error = %error, "stored raw JSON does not normalize; row left as it is");
            None
        }
    }
}
