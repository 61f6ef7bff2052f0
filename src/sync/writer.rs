//! The cycle's database writer: a task fed through a channel, so a slow commit never stalls
//! requests. It batches outcomes (by size, or after [`FLUSH_INTERVAL`]) and commits each batch
//! in one transaction; a batch the database rejects is retried ticket by ticket, so one bad row
//! costs only itself (it is marked failed and retried later).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::domain::{BatchReport, Failure, TicketOutcome};
use crate::store::Store;
use crate::store::upsert::FailureDelay;

/// A failed ticket waits `base · 2^(failures)` (capped) before its next try.
pub const FAILED_RETRY_DELAY: FailureDelay = FailureDelay {
    base: Duration::from_secs(60),
    cap: Duration::from_secs(6 * 3600),
};

/// A partly filled batch is committed after this long, so slow cycles persist progress too.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// The running writer: send outcomes to `tx`; drop it and await `task` for the totals.
pub(super) struct Writer {
    pub tx: mpsc::Sender<TicketOutcome>,
    pub task: JoinHandle<anyhow::Result<BatchReport>>,
}

impl Writer {
    pub fn spawn(store: &Store, batch_size: usize) -> Self {
        let (tx, rx) = mpsc::channel::<TicketOutcome>(batch_size * 2);
        let task = tokio::spawn(write_outcomes(store.clone(), rx, batch_size));
        Self { tx, task }
    }

    /// Closes the channel and waits for the last batch to commit.
    pub async fn finish(self) -> anyhow::Result<BatchReport> {
        drop(self.tx);
        match self.task.await {
            Ok(written) => written,
            Err(e) => Err(anyhow::anyhow!("the database writer task failed: {e}")),
        }
    }
}

async fn write_outcomes(
    store: Store,
    mut rx: mpsc::Receiver<TicketOutcome>,
    batch_size: usize,
) -> anyhow::Result<BatchReport> {
    let mut report = BatchReport::default();
    let mut batch: Vec<TicketOutcome> = Vec::with_capacity(batch_size);
    let mut first_at: Option<tokio::time::Instant> = None;
    loop {
        let flush_deadline = first_at.map(|t| t + FLUSH_INTERVAL);
        let next = tokio::select! {
            item = rx.recv() => item.map(Some),
            _ = super::sleep_until_opt(flush_deadline) => Some(None),
        };
        match next {
            Some(Some(outcome)) => {
                first_at.get_or_insert_with(tokio::time::Instant::now);
                batch.push(outcome);
                if batch.len() < batch_size {
                    continue;
                }
            }
            Some(None) => {}
            None => {
                if !batch.is_empty() {
                    report.add(flush(&store, &mut batch).await?);
                }
                return Ok(report);
            }
        }
        report.add(flush(&store, &mut batch).await?);
        first_at = None;
    }
}

async fn flush(store: &Store, batch: &mut Vec<TicketOutcome>) -> anyhow::Result<BatchReport> {
    let outcomes = std::mem::take(batch);
    match store.write_batch(&outcomes, FAILED_RETRY_DELAY).await {
        Ok(report) => Ok(report),
        Err(batch_error) => {
            tracing::warn!(
                error = format!("{batch_error:#}"),
                tickets = outcomes.len(),
                "batch rejected by the database; writing its tickets one by one"
            );
            let mut report = BatchReport::default();
            for outcome in outcomes {
                report.add(write_alone(store, outcome).await?);
            }
            Ok(report)
        }
    }
}

/// One ticket in a transaction of its own; when the database refuses even that, the ticket is
/// recorded as failed (retried later) instead.
async fn write_alone(store: &Store, outcome: TicketOutcome) -> anyhow::Result<BatchReport> {
    match store
        .write_batch(std::slice::from_ref(&outcome), FAILED_RETRY_DELAY)
        .await
    {
        Ok(report) => Ok(report),
        Err(error) => {
            let message = format!("database rejected the ticket: {error:#}");
            tracing::error!(ticket_id = %outcome.ticket_id(), error = %message, "ticket not stored; retried later");
            let failed = TicketOutcome::Failed {
                ticket_id: outcome.ticket_id().to_owned(),
                failure: Failure {
                    message,
                    ..Failure::default()
                },
                attempts: 0,
            };
            store.write_batch(&[failed], FAILED_RETRY_DELAY).await
        }
    }
}
