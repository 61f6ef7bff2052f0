//! List-first storage: each listed ticket's row is normalized and written at once, laid over
//! what is stored (fields the list lacks or is not trusted for, and the tags, keep the last
//! detail's values). A row never replaces content of the same or a later `updated_at`: the
//! detail always wins, whatever the clocks say: a row is stored only when it shows a later
//! `updated_at` than the last row stored (or answered by a detail) and, less the list's clock
//! offset, than the stored detail; and never over a ticket its detail called deleted. Which
//! fields are taken is decided by the self-verification (`list_field_agreement`); when the list
//! is not trustworthy at all, nothing is stored.
//!
//! The writing runs beside the listing ([`Noting`]): a batch of listed tickets (a page, or the
//! pages of a window read together) is stored and queued in the background while the next
//! pages are listed, in order, by two writers side by side (each ticket always by the same
//! one), so the list calls do not wait for the database and the database does not wait for the
//! list calls (up to two groups of pages ahead).

use std::collections::{BTreeMap, VecDeque};

use chrono::Utc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::domain::{ListTrust, TicketId, TicketRecord};
use crate::feishu::parse::ListedTicket;
use crate::normalize::epoch_to_datetime;
use crate::normalize::listed::normalize_list_row;
use crate::store::Store;
use crate::store::discovery::Noted;
use crate::store::listed::StoredContent;

/// What noting one batch of listed tickets came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Batch {
    /// Tickets whose stored content the batch's list rows changed.
    pub stored: u64,
    /// What queueing the batch did.
    pub noted: Noted,
    /// Whether the batch counts in the report (not for a stability re-read).
    pub counted: bool,
}

/// Listed rows waiting to be written, at most, before listing waits for the writing: two of
/// discovery's groups of pages (2 × 8 × 200 rows of ~1.3 KB), so one group is written while the
/// next is listed and the daemon's memory stays flat (BENCHMARKS.md, "Memory").
const MAX_ROWS_WAITING: usize = 3_200;

/// Writers storing one batch side by side, each on its own connection: a batch's tickets are
/// shared out between them by id, and each writer stores its share of every batch one batch at
/// a time and in order, so a ticket's rows are always written by the same writer in the order
/// they were listed (a later row never lands before an earlier one). Two, because one writer
/// keeps one database backend busy and this is where a first install spends its time
/// (BENCHMARKS.md, "List-first ingestion").
const WRITERS: usize = 2;

/// The writer that stores ticket `id`'s rows (always the same one for an id).
fn writer_of(id: &str) -> usize {
    let hash = id
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    (hash % WRITERS as u64) as usize
}

/// A batch submitted and not yet handed back: its number of rows, whether it counts, and each
/// writer's share being written.
struct InFlight {
    rows: usize,
    counted: bool,
    shares: Vec<JoinHandle<anyhow::Result<Batch>>>,
}

/// Notes batches of listed tickets in the background, in the order given: each batch's rows
/// stored (when configured), then the tickets that want their detail queued, by [`WRITERS`]
/// writers side by side, while the caller lists the next pages (up to [`MAX_ROWS_WAITING`]
/// rows ahead). Batches that finished are handed back, in order, by [`Noting::submit`] and
/// [`Noting::finish`]; a position saved once its batches finished never runs ahead of what is
/// stored.
pub(super) struct Noting {
    /// Where the queue is (and the rows, through `rows`).
    store: Store,
    /// Where list rows are stored (`None`: ids only).
    rows: Option<RowStore>,
    /// Batches submitted and not yet handed back, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Per writer: told when its share of the last submitted batch is done (its next share
    /// starts then).
    last_done: Vec<Option<oneshot::Receiver<()>>>,
    /// Batches handed to [`Noting::submit`] so far.
    submitted: u64,
    /// Batches finished and handed back so far (in order, up to the first that failed).
    finished: u64,
    /// A batch failed: `finished` stays where it was.
    failed: bool,
}

impl Noting {
    /// Reads the list rows' trust once (see [`RowStore::new`]) when `store_list_rows`.
    pub async fn new(store: &Store, store_list_rows: bool) -> anyhow::Result<Self> {
        let rows = match store_list_rows {
            true => RowStore::new(store).await?,
            false => None,
        };
        Ok(Self {
            store: store.clone(),
            rows,
            in_flight: VecDeque::new(),
            last_done: (0..WRITERS).map(|_| None).collect(),
            submitted: 0,
            finished: 0,
            failed: false,
        })
    }

    /// Batches submitted so far (a number [`Noting::finished`] reaches once they are written).
    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Batches finished (and handed back) so far.
    pub fn finished(&self) -> u64 {
        self.finished
    }

    /// Starts noting `listed` (by ticket id) in the background, after the batches before it;
    /// waits first while more than [`MAX_ROWS_WAITING`] rows would be waiting. Returns the
    /// batches that finished meanwhile, in order.
    pub async fn submit(
        &mut self,
        listed: BTreeMap<String, ListedTicket>,
        counted: bool,
    ) -> anyhow::Result<Vec<Batch>> {
        let mut done = self.finished_batches().await?;
        let rows = listed.len();
        while !self.in_flight.is_empty()
            && self.in_flight.iter().map(|b| b.rows).sum::<usize>() + rows > MAX_ROWS_WAITING
        {
            done.extend(self.next().await?);
        }
        let mut shares: Vec<BTreeMap<String, ListedTicket>> =
            (0..WRITERS).map(|_| BTreeMap::new()).collect();
        for (id, ticket) in listed {
            shares[writer_of(&id)].insert(id, ticket);
        }
        let mut tasks = Vec::with_capacity(WRITERS);
        for (writer, share) in shares.into_iter().enumerate() {
            if share.is_empty() {
                continue;
            }
            let (store, row_store) = (self.store.clone(), self.rows.clone());
            let before = self.last_done[writer].take();
            let (done_tx, done_rx) = oneshot::channel();
            self.last_done[writer] = Some(done_rx);
            tasks.push(tokio::spawn(async move {
                if let Some(before) = before {
                    // Sent or dropped: the share before is over either way (its error is its own).
                    let _ = before.await;
                }
                let batch = note_batch(&store, row_store, share).await;
                let _ = done_tx.send(());
                batch
            }));
        }
        self.in_flight.push_back(InFlight {
            rows,
            counted,
            shares: tasks,
        });
        self.submitted += 1;
        Ok(done)
    }

    /// Waits for every batch still being noted (all of them, even after one failed: nothing
    /// goes on writing unwatched) and returns them in order, or the first failure.
    pub async fn finish(&mut self) -> anyhow::Result<Vec<Batch>> {
        let (mut done, mut failure) = (Vec::new(), None);
        while !self.in_flight.is_empty() {
            match self.next().await {
                Ok(batch) => done.extend(batch),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        failure.map_or(Ok(done), Err)
    }

    /// The batches at the front that are finished already, without waiting.
    async fn finished_batches(&mut self) -> anyhow::Result<Vec<Batch>> {
        let mut done = Vec::new();
        while self
            .in_flight
            .front()
            .is_some_and(|b| b.shares.iter().all(JoinHandle::is_finished))
        {
            done.extend(self.next().await?);
        }
        Ok(done)
    }

    /// Waits for the oldest batch (every writer's share of it, even after one failed).
    async fn next(&mut self) -> anyhow::Result<Option<Batch>> {
        let Some(in_flight) = self.in_flight.pop_front() else {
            return Ok(None);
        };
        let mut batch = Batch {
            counted: in_flight.counted,
            ..Batch::default()
        };
        let mut failure = None;
        for share in in_flight.shares {
            let written = share
                .await
                .map_err(|e| anyhow::anyhow!("noting listed tickets stopped: {e}"))
                .and_then(|written| written);
            match written {
                Ok(written) => {
                    batch.stored += written.stored;
                    batch.noted.queued += written.noted.queued;
                    batch.noted.new += written.noted.new;
                }
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        match failure {
            None => {
                // Past a failed batch nothing counts as finished: no position moves past it.
                if !self.failed {
                    self.finished += 1;
                }
                Ok(Some(batch))
            }
            Some(error) => {
                self.failed = true;
                Err(error)
            }
        }
    }
}

/// One writer's share of a batch: its list rows stored (when `rows`), then the tickets that
/// want their detail queued (the queue compares with what the rows just stored).
async fn note_batch(
    store: &Store,
    rows: Option<RowStore>,
    listed: BTreeMap<String, ListedTicket>,
) -> anyhow::Result<Batch> {
    let stored = match rows {
        Some(mut rows) => rows.store(&listed).await?,
        None => 0,
    };
    let updated: BTreeMap<String, Option<chrono::DateTime<Utc>>> = listed
        .iter()
        .map(|(id, t)| (id.clone(), t.updated_at_ms.and_then(epoch_to_datetime)))
        .collect();
    drop(listed);
    let noted = store.note_listed(&updated).await?;
    Ok(Batch {
        stored,
        noted,
        counted: true,
    })
}

/// Stores list rows with the trust verified so far (read once per discovery).
#[derive(Clone)]
pub(super) struct RowStore {
    /// Where the rows go.
    store: Store,
    /// The fields list rows are taken for, as verified so far.
    trust: ListTrust,
    /// The list's clock offset (`list_clock_offset_ms()`), read once per discovery.
    offset: chrono::Duration,
}

impl RowStore {
    /// `None` when list rows are not trusted at all (then discovery queues ids only).
    pub async fn new(store: &Store) -> anyhow::Result<Option<Self>> {
        let trust = store.list_trust().await?;
        if trust.is_disabled() {
            tracing::warn!(
                distrusted = ?trust.distrusted,
                "list rows are not stored: they differed from the details (see list_field_agreement); details only"
            );
            return Ok(None);
        }
        let offset_ms = store.list_clock_offset_ms().await?;
        if offset_ms != 0 {
            tracing::info!(
                offset_ms,
                "list rows show updated_at on another clock than the details; compared accordingly"
            );
        }
        Ok(Some(Self {
            store: store.clone(),
            trust,
            offset: chrono::Duration::milliseconds(offset_ms),
        }))
    }

    /// Writes the rows of `listed` (by ticket id) that are new or newer than what is stored;
    /// returns how many changed stored content.
    pub async fn store(&mut self, listed: &BTreeMap<String, ListedTicket>) -> anyhow::Result<u64> {
        if listed.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = listed.keys().cloned().collect();
        match self.write(&ids, listed).await {
            Ok(stored) => Ok(stored),
            Err(error) => {
                // One row the database refuses must not cost the page: one by one, and a row
                // still refused waits for its detail (whose failure is recorded and retried).
                tracing::warn!(
                    error = format!("{error:#}"),
                    rows = ids.len(),
                    "list rows refused by the database; storing them one by one"
                );
                let mut stored = 0;
                for id in ids {
                    match self.write(std::slice::from_ref(&id), listed).await {
                        Ok(n) => stored += n,
                        Err(error) => tracing::warn!(
                            ticket_id = %id,
                            error = format!("{error:#}"),
                            "list row not stored; the ticket waits for its detail"
                        ),
                    }
                }
                Ok(stored)
            }
        }
    }

    async fn write(
        &self,
        ids: &[String],
        listed: &BTreeMap<String, ListedTicket>,
    ) -> anyhow::Result<u64> {
        let listed_at = Utc::now();
        let (trust, offset) = (&self.trust, self.offset);
        let written = self
            .store
            .write_list_rows(ids, |id, stored| {
                let row = listed.get(id)?;
                record_from_row(id, row, stored, trust, offset, listed_at)
            })
            .await?;
        Ok(written.stored)
    }
}

/// The record a list row makes, or `None` when it must not be written: what is stored is of
/// the same or a later version, a detail answered this row already, the ticket's detail called
/// it deleted, or the row can't be read (logged; the detail will tell).
fn record_from_row(
    id: &str,
    row: &ListedTicket,
    stored: Option<&StoredContent>,
    trust: &ListTrust,
    offset: chrono::Duration,
    listed_at: chrono::DateTime<Utc>,
) -> Option<TicketRecord> {
    let listed_updated_at = row.updated_at_ms.and_then(epoch_to_datetime);
    if let Some(stored) = stored
        && !is_newer(listed_updated_at, stored, offset)
    {
        return None;
    }
    let ticket_id = TicketId::parse(id).ok()?;
    match normalize_list_row(
        &ticket_id,
        &row.raw,
        stored.map(|s| s.raw.as_str()),
        trust,
        listed_at,
    ) {
        Ok(normalized) => Some(normalized.record),
        Err(error) => {
            tracing::warn!(
                ticket_id = id,
                endpoint = "list",
                error = %error,
                "a list row could not be read; the ticket waits for its detail"
            );
            None
        }
    }
}

/// Whether a list row showing `listed` is a later version than what is `stored`: after the last
/// list row stored (which a detail may have answered since), and after the stored content, on
/// the list's clock (a detail's `updated_at` plus the offset). A ticket its detail called
/// deleted is never newer: only a detail brings it back.
fn is_newer(
    listed: Option<chrono::DateTime<Utc>>,
    stored: &StoredContent,
    offset: chrono::Duration,
) -> bool {
    let stored_on_list_clock = match stored.content_source.as_str() {
        "list" => stored.updated_at,
        _ => stored.updated_at.map(|at| at + offset),
    };
    !stored.deleted && listed > stored_on_list_clock && listed > stored.list_updated_at
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_ticket_always_goes_to_the_same_writer_and_every_writer_gets_a_share() {
        let ids: Vec<String> = (0..1_000u64)
            .map(|i| (7_000_000_000_000_000_000 + i).to_string())
            .collect();
        let mut shares = [0usize; WRITERS];
        for id in &ids {
            assert_eq!(writer_of(id), writer_of(&id.clone()));
            shares[writer_of(id)] += 1;
        }
        // Consecutive ids (as a helpdesk hands them out) spread about evenly.
        for share in shares {
            assert!(share > 1_000 / WRITERS / 2, "{shares:?}");
        }
    }

    #[test]
    fn a_row_is_newer_only_past_the_last_row_and_the_detail_on_the_lists_clock() {
        let at = |s: i64| Some(Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap());
        let stored =
            |source: &str, updated: i64, listed: Option<i64>, deleted: bool| StoredContent {
                ticket_id: "1".into(),
                updated_at: at(updated),
                raw: "{}".into(),
                deleted,
                content_source: source.into(),
                list_updated_at: listed.and_then(at),
            };
        let none = chrono::Duration::zero();
        let minute = chrono::Duration::seconds(60);
        // The detail answered the row of +60 s (its own clock says 0): not stored again.
        assert!(!is_newer(
            at(60),
            &stored("detail", 0, Some(60), false),
            none
        ));
        assert!(is_newer(
            at(61),
            &stored("detail", 0, Some(60), false),
            none
        ));
        // With the offset learned, a row of the detail's version is not newer either.
        assert!(!is_newer(at(60), &stored("detail", 0, None, false), minute));
        assert!(is_newer(at(60), &stored("detail", 0, None, false), none));
        // A list-stored row is on the list's clock already.
        assert!(!is_newer(
            at(60),
            &stored("list", 60, Some(60), false),
            minute
        ));
        // Deleted by its detail: never, whatever the row shows; no updated_at: never.
        assert!(!is_newer(at(9_999), &stored("detail", 0, None, true), none));
        assert!(!is_newer(None, &stored("detail", 0, None, false), none));
    }
}
