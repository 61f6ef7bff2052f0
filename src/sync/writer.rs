//! The cycle's database writer: a task fed through a channel, so a slow commit never stalls
//! requests. It gathers every step's outcome (a ticket's detail, a conversation) into one
//! [`Batch`] (by size, or after [`FLUSH_INTERVAL`]) and commits each batch in one transaction;
//! a batch the database rejects is retried item by item, so one bad row costs only itself (it
//! is marked failed and retried later).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::domain::{Batch, BatchReport, Failure, MessagesOutcome, TicketOutcome};
use crate::store::Store;
use crate::store::failure::FailureDelay;

/// A failed ticket waits `base · 2^(failures)` (capped) before its next try.
pub const FAILED_RETRY_DELAY: FailureDelay = FailureDelay {
    base: Duration::from_secs(60),
    cap: Duration::from_secs(6 * 3600),
    poison_after: POISON_AFTER_FAILURES,
};

/// Failures in a row that will repeat before a ticket is poisoned (parked, counted).
pub const POISON_AFTER_FAILURES: u32 = 3;

/// A partly filled batch is committed after this long, so slow cycles persist progress too.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// What goes to the writer.
pub(super) enum Write {
    Ticket(TicketOutcome),
    Messages(MessagesOutcome),
    /// Commit what is gathered now; answered once committed.
    Flush(oneshot::Sender<()>),
}

/// The running writer: send items to `tx`; [`Writer::finish`] for the totals.
pub(super) struct Writer {
    pub tx: mpsc::Sender<Write>,
    pub task: JoinHandle<anyhow::Result<BatchReport>>,
}

impl Writer {
    pub fn spawn(store: &Store, batch_size: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Write>(batch_size * 2);
        let task = tokio::spawn(write_items(store.clone(), rx, batch_size));
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

/// Commits what was sent so far; false when the writer is gone (its error comes at the end).
pub(super) async fn flush(tx: &mpsc::Sender<Write>) -> bool {
    let (done, committed) = oneshot::channel();
    tx.send(Write::Flush(done)).await.is_ok() && committed.await.is_ok()
}

async fn write_items(
    store: Store,
    mut rx: mpsc::Receiver<Write>,
    batch_size: usize,
) -> anyhow::Result<BatchReport> {
    let mut report = BatchReport::default();
    let mut batch = Batch::default();
    let mut first_at: Option<tokio::time::Instant> = None;
    loop {
        let flush_deadline = first_at.map(|t| t + FLUSH_INTERVAL);
        let next = tokio::select! {
            item = rx.recv() => item.map(Some),
            _ = super::sleep_until_opt(flush_deadline) => Some(None),
        };
        let mut answer = None;
        match next {
            Some(Some(Write::Ticket(outcome))) => batch.tickets.push(outcome),
            Some(Some(Write::Messages(outcome))) => batch.messages.push(outcome),
            Some(Some(Write::Flush(done))) => answer = Some(done),
            Some(None) => {}
            None => {
                if !batch.is_empty() {
                    report.add(commit(&store, &mut batch).await?);
                }
                return Ok(report);
            }
        }
        if answer.is_none() && !batch.is_empty() && batch.len() < batch_size {
            first_at.get_or_insert_with(tokio::time::Instant::now);
            if first_at.is_some_and(|t| t.elapsed() < FLUSH_INTERVAL) {
                continue;
            }
        }
        if !batch.is_empty() {
            report.add(commit(&store, &mut batch).await?);
        }
        first_at = None;
        if let Some(done) = answer {
            let _ = done.send(());
        }
    }
}

async fn commit(store: &Store, batch: &mut Batch) -> anyhow::Result<BatchReport> {
    let batch = std::mem::take(batch);
    match store.write_batch(&batch, FAILED_RETRY_DELAY).await {
        Ok(report) => Ok(report),
        Err(batch_error) => {
            tracing::warn!(
                error = format!("{batch_error:#}"),
                items = batch.len(),
                "batch rejected by the database; writing its tickets one by one"
            );
            let mut report = BatchReport::default();
            for outcome in batch.tickets {
                report.add(write_ticket_alone(store, outcome).await?);
            }
            for outcome in batch.messages {
                report.add(write_messages_alone(store, outcome).await?);
            }
            Ok(report)
        }
    }
}

/// One ticket in a transaction of its own; when the database refuses even that, the ticket is
/// recorded as failed (retried later) instead.
async fn write_ticket_alone(store: &Store, outcome: TicketOutcome) -> anyhow::Result<BatchReport> {
    let ticket_id = outcome.ticket_id().to_owned();
    let alone = Batch {
        tickets: vec![outcome],
        ..Batch::default()
    };
    match store.write_batch(&alone, FAILED_RETRY_DELAY).await {
        Ok(report) => Ok(report),
        Err(error) => {
            let message = format!("database rejected the ticket: {error:#}");
            tracing::error!(ticket_id = %ticket_id, error = %message, "ticket not stored; retried later");
            let failed = Batch {
                tickets: vec![TicketOutcome::Failed {
                    ticket_id,
                    failure: Failure {
                        message,
                        permanent: rejects_the_data(&error),
                        ..Failure::default()
                    },
                    attempts: 0,
                }],
                ..Batch::default()
            };
            store.write_batch(&failed, FAILED_RETRY_DELAY).await
        }
    }
}

/// Whether the database refused the row itself (data exception, integrity, a limit such as
/// the btree row size: SQLSTATE classes 22, 23, 54), which a retry would meet again; a full
/// disk or a lost connection would not.
fn rejects_the_data(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<sqlx::Error>())
        .filter_map(|e| e.as_database_error()?.code())
        .any(|code| matches!(&code[..2.min(code.len())], "22" | "23" | "54"))
}

/// One ticket's conversation alone; refused, it is recorded as a failed fetch of its messages.
async fn write_messages_alone(
    store: &Store,
    outcome: MessagesOutcome,
) -> anyhow::Result<BatchReport> {
    let ticket_id = outcome.ticket_id().to_owned();
    let alone = Batch {
        messages: vec![outcome],
        ..Batch::default()
    };
    match store.write_batch(&alone, FAILED_RETRY_DELAY).await {
        Ok(report) => Ok(report),
        Err(error) => {
            let message = format!("database rejected the messages: {error:#}");
            tracing::error!(ticket_id = %ticket_id, error = %message, "messages not stored; retried later");
            let failed = Batch {
                messages: vec![MessagesOutcome::Failed {
                    ticket_id,
                    failure: Failure {
                        message,
                        ..Failure::default()
                    },
                }],
                ..Batch::default()
            };
            store.write_batch(&failed, FAILED_RETRY_DELAY).await
        }
    }
}
