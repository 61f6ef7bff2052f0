//! Sources of ticket ids besides `enqueue`: discovery through the list API, and the operator's
//! `sync.known_ids_query`.
//!
//! Discovery scans time windows (`update_time` incrementally, `create_time` for the backfill of
//! history), 200 rows a page, the pages a total announces fetched several at a time (within the
//! list pace). The API reaches at most 10,000 rows per query, so a window that holds that many
//! is split (into as many parts as its `total` calls for, again while a part is still too big)
//! until every piece is below the cap: no ticket is skipped. The `total` is a hint,
//! never the truth: paging goes on while pages come back full, and a window is split only when
//! its first page is full too. Listed tickets whose `updated_at` differs from the last detail's
//! (or that are new) are queued; unchanged ones cost nothing more. With `sync.store_list_rows`
//! each listed ticket's row is stored at once ([`rows`]): the dashboards are whole after the
//! list, the details follow. The incremental watermark moves forward only after its whole
//! window was read; the backfill saves its position after every finished piece, so it resumes.
//! Progress (for the stall watch) is time covered, not calls made.

mod rows;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::domain::{DiscoveryReport, TicketId};
use crate::feishu::client::{ListQuery, MAX_PAGE_SIZE, TimeField};
use crate::feishu::parse::{ListPage, ListedTicket};
use crate::feishu::{ApiError, FeishuClient};
use crate::normalize::epoch_to_datetime;
use crate::store::Store;
use crate::store::discovery::{Scan, ScanState};

/// Most rows one list query can reach by paging.
pub const LIST_ROW_CAP: u64 = 10_000;

/// How discovery runs this cycle.
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    pub helpdesk_id: String,
    pub overlap: Duration,
    /// Start of history (`sync.backfill_since`, or its default).
    pub backfill_since: DateTime<Utc>,
    /// `sync --since`: scan history from here now, even if a backfill was done before.
    pub since_override: Option<DateTime<Utc>>,
    /// `sync.store_list_rows`: store each listed ticket's row, not only its id.
    pub store_list_rows: bool,
}

/// Why discovery stopped.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("list API: {0}")]
    Api(ApiError),
    #[error("discovery stopped on request")]
    Interrupted,
    #[error(
        "the list window {start_ms}..{end_ms} kept changing while it was paged; read again next cycle"
    )]
    Unstable { start_ms: i64, end_ms: i64 },
    /// The store failed (a scan position, list rows, the queue). Built only from store results
    /// (no blanket conversion from any error).
    #[error("database: {0:#}")]
    Database(anyhow::Error),
}

/// Runs the backfill if one is due, then the incremental scan. `on_progress` is called with
/// the pages read so far each time a window is covered.
pub async fn discover(
    store: &Store,
    client: &FeishuClient,
    options: &DiscoveryOptions,
    on_progress: &(dyn Fn(u64) + Sync),
    stop: &CancellationToken,
) -> Result<DiscoveryReport, DiscoveryError> {
    let noting = rows::Noting::new(store, options.store_list_rows)
        .await
        .map_err(DiscoveryError::Database)?;
    let mut run = Discovery {
        store,
        client,
        options,
        on_progress,
        stop,
        noting,
        report: DiscoveryReport::default(),
    };
    let helpdesk_id = options.helpdesk_id.as_str();
    let now = store.now().await.map_err(DiscoveryError::Database)?;
    let updated = store
        .scan_state(helpdesk_id, Scan::Updated)
        .await
        .map_err(DiscoveryError::Database)?;
    let backfill = store
        .scan_state(helpdesk_id, Scan::Backfill)
        .await
        .map_err(DiscoveryError::Database)?;
    if let Some(range) = plan_backfill(options, updated.as_ref(), backfill.as_ref(), now) {
        run.backfill(range).await?;
        if updated.is_none() {
            // Changes made while the backfill ran are picked up from its start on.
            store
                .save_watermark(helpdesk_id, range.2)
                .await
                .map_err(DiscoveryError::Database)?;
        }
    }
    if let Some(state) = store
        .scan_state(helpdesk_id, Scan::Updated)
        .await
        .map_err(DiscoveryError::Database)?
    {
        run.incremental(state.scanned_until, now).await?;
    }
    Ok(run.report)
}

/// One cycle's discovery: what it reads with, and what it found so far.
struct Discovery<'a> {
    store: &'a Store,
    client: &'a FeishuClient,
    options: &'a DiscoveryOptions,
    on_progress: &'a (dyn Fn(u64) + Sync),
    stop: &'a CancellationToken,
    /// Stores list rows (when configured) and queues listed tickets, beside the listing.
    noting: rows::Noting,
    report: DiscoveryReport,
}

impl Discovery<'_> {
    fn scanner(&mut self, field: TimeField) -> Scanner<'_> {
        Scanner {
            client: self.client,
            field,
            report: &mut self.report,
            on_progress: self.on_progress,
            stop: self.stop,
            noting: &mut self.noting,
        }
    }

    /// The history scan by create time, `(start, resume, end)`, saving its position per piece.
    async fn backfill(
        &mut self,
        (start, resume, end): (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>),
    ) -> Result<(), DiscoveryError> {
        let (store, helpdesk_id) = (self.store, self.options.helpdesk_id.as_str());
        self.report.backfill_ran = true;
        tracing::info!(from = %resume, to = %end, "scanning ticket history by create time");
        store
            .save_backfill(helpdesk_id, start, resume, end, false)
            .await
            .map_err(DiscoveryError::Database)?;
        self.scanner(TimeField::Created)
            .scan(resume, end, |until| async move {
                store
                    .save_backfill(helpdesk_id, start, until, end, false)
                    .await
            })
            .await?;
        store
            .save_backfill(helpdesk_id, start, end, end, true)
            .await
            .map_err(DiscoveryError::Database)?;
        self.report.backfill_completed = true;
        Ok(())
    }

    /// The incremental scan from the watermark (minus the overlap) to `now`.
    async fn incremental(
        &mut self,
        watermark: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), DiscoveryError> {
        let (store, helpdesk_id) = (self.store, self.options.helpdesk_id.as_str());
        let from = watermark - chrono::Duration::from_std(self.options.overlap).unwrap_or_default();
        // New tickets never updated (updated_at = -1) match no update window: list the same
        // window by create time first. Only then may the watermark move.
        self.scanner(TimeField::Created)
            .scan(from, now, |_| async { Ok(()) })
            .await?;
        // Pieces finish oldest first: each one moves the watermark forward (never back).
        self.scanner(TimeField::Updated)
            .scan(from, now, |until| async move {
                store.save_watermark(helpdesk_id, until).await
            })
            .await?;
        store
            .save_watermark(helpdesk_id, now)
            .await
            .map_err(DiscoveryError::Database)?;
        Ok(())
    }
}

/// `(range start, resume from, end)` of a backfill to run now, if any.
fn plan_backfill(
    options: &DiscoveryOptions,
    updated: Option<&ScanState>,
    backfill: Option<&ScanState>,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>, DateTime<Utc>)> {
    if let Some(since) = options.since_override {
        // Explicit request: resume an unfinished run of the same range, else start over.
        if let Some(b) = backfill.filter(|b| !b.completed && b.range_start == Some(since)) {
            return Some((since, b.scanned_until, b.range_end.unwrap_or(now)));
        }
        return Some((since, since, now));
    }
    match backfill {
        Some(b) if b.completed => None,
        Some(b) => Some((
            b.range_start.unwrap_or(options.backfill_since),
            b.scanned_until,
            b.range_end.unwrap_or(now),
        )),
        None if updated.is_none() => {
            let since = options.backfill_since;
            Some((since, since, now))
        }
        None => None,
    }
}

/// How often a window is re-read when it keeps changing under paging.
const MAX_PASSES: u32 = 5;

/// Pages of one window requested at once (the list pacer still spaces them).
const PAGES_IN_FLIGHT: usize = 16;

/// Pages of one window whose rows are noted together, in one transaction (1,600 rows): a
/// window's 50 pages are never all in memory at once, nor in one statement (the database
/// client's buffers grow to the largest statement sent).
const PAGES_PER_NOTE: usize = 8;

/// Pages of one window asked for and not yet handed to the writers, at most: the group
/// gathering and the requests in flight (most of them not answered yet). The writers hold at
/// most two more groups (`rows`' `MAX_ROWS_WAITING`): one being written, the next waiting, so
/// at most 40 pages (8,000 rows) of the piece being paged are held at once, whatever the
/// window; besides them the first pages of the latest split's waiting parts (at most
/// `MAX_SPLIT_PARTS - 1`), the stability re-read and the next piece's first page: 49 pages
/// (9,800 rows) at most (BENCHMARKS.md, "Memory").
const PAGES_AHEAD: usize = PAGES_PER_NOTE + PAGES_IN_FLIGHT;

/// Windows narrower than this are not split further: one that still holds 10,000 rows is read
/// as far as the API pages (and logged). Bounds the splitting whatever a `total` claims.
pub const MIN_SPLIT_MS: i64 = 1_000;

/// What reading one piece came to.
enum Piece {
    Read,
    /// At or above the 10,000-row cap: split it (`total`: what its first page announced).
    TooBig {
        total: Option<u64>,
    },
}

/// Rows a part of a split window is meant to hold at most if its tickets were spread evenly:
/// under the cap, so most parts need no second split.
const SPLIT_TARGET_ROWS: u64 = 8_000;

/// Most parts one split makes (their first pages are asked for at once, and held).
const MAX_SPLIT_PARTS: u64 = 8;

/// The parts a window too big to page is split into: as many equal spans of time as its
/// announced `total` needs for [`SPLIT_TARGET_ROWS`] a part (2 to [`MAX_SPLIT_PARTS`]; 2 when
/// the total is unknown), each at least half of [`MIN_SPLIT_MS`] wide; neighbours share their
/// boundary millisecond. Fewer rounds of first pages than halving: a crowded 100,000-ticket
/// range is in pieces after 2 or 3 rounds, not 8.
fn split_bounds(start: i64, end: i64, total: Option<u64>) -> Vec<(i64, i64)> {
    let wanted = total.map_or(2, |t| t.div_ceil(SPLIT_TARGET_ROWS));
    let widest = ((end - start) / (MIN_SPLIT_MS / 2)).max(2) as u64;
    let parts = wanted.clamp(2, MAX_SPLIT_PARTS).min(widest) as i64;
    (0..parts)
        .map(|i| {
            let from = start + (end - start) * i / parts;
            let to = start + (end - start) * (i + 1) / parts;
            (from, to)
        })
        .collect()
}

/// A piece's stability re-read of its first page, asked for as soon as its last page came
/// back, and the next piece's first page asked for beside it (when wanted).
struct ReRead {
    again: Result<ListPage, ApiError>,
    next_first: Option<Result<ListPage, ApiError>>,
}

/// A piece of a window still to be read, and its first page when that was asked for already.
struct Pending {
    start: i64,
    end: i64,
    first: Option<Result<ListPage, ApiError>>,
}

impl Pending {
    fn new(start: i64, end: i64) -> Self {
        Self {
            start,
            end,
            first: None,
        }
    }
}

struct Scanner<'a> {
    client: &'a FeishuClient,
    field: TimeField,
    report: &'a mut DiscoveryReport,
    on_progress: &'a (dyn Fn(u64) + Sync),
    stop: &'a CancellationToken,
    noting: &'a mut rows::Noting,
}

impl Scanner<'_> {
    /// Lists `[from, to]` completely, oldest piece first; `piece_done(end)` after each piece,
    /// once its listed tickets are stored and queued (they are noted beside the listing).
    async fn scan<F, Fut>(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        piece_done: F,
    ) -> Result<(), DiscoveryError>
    where
        F: Fn(DateTime<Utc>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        // Pieces read, whose end is saved once the batches noted up to then are finished.
        let mut read = std::collections::VecDeque::new();
        let scanned = self.scan_pieces(from, to, &mut read, &piece_done).await;
        // The batch still being written finishes whatever happened (nothing runs on alone);
        // the pieces it completes are saved even when the scan stopped.
        let finished = self.finish().await;
        let saved = self.pieces_done(&mut read, &piece_done).await;
        scanned.and(finished).and(saved)
    }

    async fn scan_pieces<F, Fut>(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        read: &mut std::collections::VecDeque<(u64, i64)>,
        piece_done: &F,
    ) -> Result<(), DiscoveryError>
    where
        F: Fn(DateTime<Utc>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let (start_ms, end_ms) = (from.timestamp_millis().max(0), to.timestamp_millis().max(0));
        if start_ms > end_ms {
            return Ok(());
        }
        // Pieces to read, as a stack: the oldest piece on top.
        let mut pieces = vec![Pending::new(start_ms, end_ms)];
        while let Some(piece) = pieces.pop() {
            let (start, end) = (piece.start, piece.end);
            match self.read_piece(piece, pieces.last_mut()).await? {
                Piece::Read => {
                    read.push_back((self.noting.submitted(), end));
                    self.pieces_done(read, piece_done).await?;
                }
                // Parts overlap by one millisecond: whether the API's bounds are inclusive is
                // not documented, and a ticket listed twice costs nothing. Their first pages are
                // asked for together: each says whether its part must be split again (or is
                // empty) without waiting for the others.
                Piece::TooBig { total } => {
                    // First pages kept ahead for the latest split's parts only: the parts of
                    // earlier splits wait without theirs (asked for again when their turn
                    // comes), so splitting a wide, crowded range holds no pages per level.
                    for waiting in &mut pieces {
                        waiting.first = None;
                    }
                    let bounds = split_bounds(start, end, total);
                    let firsts = futures::future::join_all(
                        bounds.iter().map(|&(from, to)| self.fetch(from, to, 1)),
                    )
                    .await;
                    // Pushed newest first: the oldest part is read next.
                    for ((from, to), first) in bounds.into_iter().zip(firsts).rev() {
                        pieces.push(Pending {
                            start: from,
                            end: to,
                            first: Some(first?),
                        });
                    }
                    self.report.splits += 1;
                }
            }
        }
        Ok(())
    }

    /// Calls `piece_done` for the pieces in `read` whose batches are finished, in order.
    async fn pieces_done<F, Fut>(
        &mut self,
        read: &mut std::collections::VecDeque<(u64, i64)>,
        piece_done: &F,
    ) -> Result<(), DiscoveryError>
    where
        F: Fn(DateTime<Utc>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        while let Some(&(batches, end)) = read.front()
            && batches <= self.noting.finished()
        {
            read.pop_front();
            piece_done(epoch_to_datetime(end).unwrap_or(DateTime::UNIX_EPOCH))
                .await
                .map_err(DiscoveryError::Database)?;
            (self.on_progress)(self.report.pages);
        }
        Ok(())
    }

    /// Reads every page of one piece. The `total` only says how many pages to ask for at once:
    /// paging goes on while pages come back full (a `total` of 0 or of one page's length ends
    /// nothing early), and a piece is too big only when its first page is full and it is wide
    /// enough to split ([`MIN_SPLIT_MS`]). Paging is not a snapshot either: a ticket updated
    /// meanwhile leaves the window and the rows behind it move up a place, so one row can slip
    /// past a page boundary. A multi-page piece is therefore checked after its last page (a
    /// total that moved means rows shifted) and read again until a pass is stable.
    ///
    /// The first page may have been asked for already (`piece.first`, with its sibling's); the
    /// next piece's first page is asked for beside the stability re-read (`next`).
    async fn read_piece(
        &mut self,
        piece: Pending,
        next: Option<&mut Pending>,
    ) -> Result<Piece, DiscoveryError> {
        let (start, end) = (piece.start, piece.end);
        let (mut asked, mut next) = (piece.first, next);
        let page_size = u64::from(MAX_PAGE_SIZE);
        let max_pages = LIST_ROW_CAP.div_ceil(page_size) as u32;
        let splittable = end - start >= MIN_SPLIT_MS;
        for pass in 1..=MAX_PASSES {
            let mut first = match asked.take() {
                Some(first) => self.listed(first)?,
                None => self.page(start, end, 1).await?,
            };
            let first_full = first.items() >= page_size;
            if splittable && first_full && first.total.is_some_and(|t| t >= LIST_ROW_CAP) {
                return Ok(Piece::TooBig { total: first.total });
            }
            let mut last_items = first.items();
            self.note(std::mem::take(&mut first.tickets), true).await?;
            let mut page = 1;
            // The pages the total announces, several at a time.
            let announced = first.total.map_or(1, |t| {
                t.div_ceil(page_size).clamp(1, u64::from(max_pages)) as u32
            });
            // The re-read asked for as soon as the last page came back short (see `pages`).
            let mut early = None;
            if first_full && announced > 1 {
                let next_first = next
                    .as_deref()
                    .filter(|n| n.first.is_none())
                    .map(|n| self.query(n.start, n.end, 1));
                (last_items, early) = self.pages(start, end, 2..=announced, next_first).await?;
                page = announced;
            }
            // Then on while pages come back full, whatever the total said.
            // (Never after an early re-read: that one came only with a short last page.)
            while last_items >= page_size && page < max_pages {
                page += 1;
                let next = self.page(start, end, page).await?;
                last_items = next.items();
                self.note(next.tickets, true).await?;
            }
            if page == max_pages && last_items >= page_size {
                if splittable {
                    // 10,000 rows read and still full: more than paging reaches.
                    return Ok(Piece::TooBig { total: None });
                }
                tracing::error!(
                    start_ms = start,
                    end_ms = end,
                    "more than 10,000 tickets within one second; only the first 10,000 can be listed"
                );
                return Ok(Piece::Read);
            }
            // Rows that left the window meanwhile (updated again) moved the others up a place:
            // the total says so. (A short page before the announced end alone proves nothing:
            // a total can simply be wrong.)
            let mut stable = true;
            if page > 1 {
                let again = match (early, next.as_deref_mut().filter(|n| n.first.is_none())) {
                    (Some(early), next) => {
                        if let (Some(next), Some(first)) = (next, early.next_first) {
                            next.first = Some(first);
                        }
                        self.listed(early.again)?
                    }
                    (None, Some(next)) => {
                        let (again, next_first) = futures::join!(
                            self.fetch(start, end, 1),
                            self.fetch(next.start, next.end, 1)
                        );
                        next.first = Some(next_first?);
                        self.listed(again?)?
                    }
                    (None, None) => self.page(start, end, 1).await?,
                };
                // Queued again if changed meanwhile, but not counted twice in the report.
                self.note(again.tickets, false).await?;
                stable = again.total == first.total;
            }
            if stable {
                return Ok(Piece::Read);
            }
            tracing::info!(
                start_ms = start,
                end_ms = end,
                pass,
                "tickets changed while the window was paged; reading it again"
            );
        }
        Err(DiscoveryError::Unstable {
            start_ms: start,
            end_ms: end,
        })
    }

    fn query(&self, start_ms: i64, end_ms: i64, page: u32) -> ListQuery {
        ListQuery {
            field: self.field,
            start_ms,
            end_ms,
            page,
            page_size: MAX_PAGE_SIZE,
        }
    }

    /// Asks for one page without counting it (see [`Scanner::listed`]): for pages asked for
    /// together. Fails only when discovery is stopped.
    async fn fetch(
        &self,
        start_ms: i64,
        end_ms: i64,
        page: u32,
    ) -> Result<Result<ListPage, ApiError>, DiscoveryError> {
        if self.stop.is_cancelled() {
            return Err(DiscoveryError::Interrupted);
        }
        Ok(self
            .client
            .list_tickets(&self.query(start_ms, end_ms, page), self.stop)
            .await)
    }

    async fn page(
        &mut self,
        start_ms: i64,
        end_ms: i64,
        page: u32,
    ) -> Result<ListPage, DiscoveryError> {
        let result = self.fetch(start_ms, end_ms, page).await?;
        self.listed(result)
    }

    /// Pages `numbers` of one window, [`PAGES_IN_FLIGHT`] at a time, noted in page order in
    /// groups of [`PAGES_PER_NOTE`] (one transaction each) while the next pages are fetched.
    /// Memory stays bounded however large the window (up to 10,000 rows): a page is requested
    /// only while fewer than [`PAGES_AHEAD`] pages are fetched and not yet noted, and a request
    /// once sent is always awaited at once (its timeout runs from the sending). Returns the
    /// items of the last page.
    async fn pages(
        &mut self,
        start_ms: i64,
        end_ms: i64,
        numbers: std::ops::RangeInclusive<u32>,
        next_first: Option<ListQuery>,
    ) -> Result<(u64, Option<ReRead>), DiscoveryError> {
        use futures::StreamExt;
        if self.stop.is_cancelled() {
            return Err(DiscoveryError::Interrupted);
        }
        let (client, stop) = (self.client, self.stop);
        let queries: Vec<ListQuery> = numbers.map(|n| self.query(start_ms, end_ms, n)).collect();
        let (count, again) = (queries.len(), self.query(start_ms, end_ms, 1));
        let ahead = &tokio::sync::Semaphore::new(PAGES_AHEAD);
        let (send, mut received) = tokio::sync::mpsc::unbounded_channel();
        let fetch = async move {
            let mut pages = futures::stream::iter(queries)
                .map(|q| async move {
                    // Closed only when noting stopped on an error: nothing more is needed.
                    ahead.acquire().await.ok()?.forget();
                    Some(client.list_tickets(&q, stop).await)
                })
                .buffered(PAGES_IN_FLIGHT);
            let (mut answered, mut last_short) = (0, false);
            while let Some(Some(result)) = pages.next().await {
                answered += 1;
                last_short = matches!(&result, Ok(p) if p.items() < u64::from(MAX_PAGE_SIZE));
                if send.send(result).is_err() {
                    return None;
                }
            }
            drop(send);
            // Every page answered and the last one short: paging is over, so the stability
            // re-read (and the next piece's first page) is asked for now, while the last
            // groups are still being noted, not after.
            if answered < count || !last_short || stop.is_cancelled() {
                return None;
            }
            let next = futures::future::OptionFuture::from(
                next_first.as_ref().map(|q| client.list_tickets(q, stop)),
            );
            let (again, next_first) = futures::join!(client.list_tickets(&again, stop), next);
            Some(ReRead { again, next_first })
        };
        let note = async move {
            let (mut group, mut in_group, mut last_items) = (Vec::new(), 0, 0);
            let noted = async {
                while let Some(result) = received.recv().await {
                    let page = self.listed(result)?;
                    last_items = page.items();
                    group.extend(page.tickets);
                    in_group += 1;
                    if in_group == PAGES_PER_NOTE {
                        self.note(std::mem::take(&mut group), true).await?;
                        ahead.add_permits(in_group);
                        in_group = 0;
                    }
                }
                if in_group > 0 {
                    self.note(group, true).await?;
                }
                Ok(last_items)
            }
            .await;
            ahead.close();
            noted
        };
        let (early, noted) = futures::join!(fetch, note);
        Ok((noted?, early))
    }

    fn listed(&mut self, result: Result<ListPage, ApiError>) -> Result<ListPage, DiscoveryError> {
        self.report.pages += 1;
        let listed = result.map_err(|e| match e {
            ApiError::Interrupted => DiscoveryError::Interrupted,
            other => DiscoveryError::Api(other),
        })?;
        if listed.skipped > 0 {
            self.report.skipped += listed.skipped;
            tracing::warn!(
                endpoint = "list",
                skipped = listed.skipped,
                "listed items without a usable ticket_id were skipped"
            );
        }
        Ok(listed)
    }

    /// Stores listed rows (when configured), then queues the tickets that want their detail,
    /// beside the listing ([`rows::Noting`]); `count` adds them to the report (not for a
    /// stability re-read).
    async fn note(
        &mut self,
        tickets: Vec<ListedTicket>,
        count: bool,
    ) -> Result<(), DiscoveryError> {
        if count {
            self.report.listed += tickets.len() as u64;
        }
        // Deduplicated (a page may repeat a ticket) and validated before touching the queue.
        let mut unique: BTreeMap<String, ListedTicket> = BTreeMap::new();
        for t in tickets {
            match TicketId::parse(&t.ticket_id) {
                Ok(id) => {
                    unique.insert(id.into_string(), t);
                }
                Err(e) => tracing::warn!(endpoint = "list", error = %e, "skipping a listed ticket"),
            }
        }
        let finished = self
            .noting
            .submit(unique, count)
            .await
            .map_err(DiscoveryError::Database)?;
        self.count(finished);
        Ok(())
    }

    /// Waits for the batch still being noted.
    async fn finish(&mut self) -> Result<(), DiscoveryError> {
        let last = self
            .noting
            .finish()
            .await
            .map_err(DiscoveryError::Database)?;
        self.count(last);
        Ok(())
    }

    /// Adds finished batches to the report.
    fn count(&mut self, batches: Vec<rows::Batch>) {
        for batch in batches {
            self.report.stored_from_list += batch.stored;
            if batch.counted {
                self.report.queued += batch.noted.queued;
            }
            self.report.new += batch.noted.new;
        }
    }
}

/// Runs the operator's `sync.known_ids_query` and enqueues the ids the queue has not seen.
/// A failing query is logged with the SQL error and costs only this source.
pub async fn enqueue_from_query(store: &Store, query: &str) -> Option<u64> {
    match store.enqueue_from_query(query).await {
        Ok(added) => {
            if added > 0 {
                tracing::info!(added, "known_ids_query found new ticket ids");
            }
            Some(added)
        }
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "sync.known_ids_query failed; this cycle goes on without it"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts cover the window end to end, each sharing its first millisecond with the end
    /// of the one before.
    fn assert_covers(start: i64, end: i64, parts: &[(i64, i64)]) {
        assert_eq!(parts.first().map(|p| p.0), Some(start));
        assert_eq!(parts.last().map(|p| p.1), Some(end));
        for pair in parts.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "{parts:?}");
        }
        assert!(parts.iter().all(|p| p.0 < p.1), "{parts:?}");
    }

    #[test]
    fn a_split_makes_as_many_parts_as_the_total_needs_within_bounds() {
        let (start, end) = (1_577_836_800_000, 1_796_623_911_898);
        for (total, parts) in [
            (Some(10_000), 2),
            (Some(16_000), 2),
            (Some(16_001), 3),
            (Some(45_000), 6),
            (Some(100_000), 8),
            (Some(5_000_000), 8),
            (None, 2),
        ] {
            let bounds = split_bounds(start, end, total);
            assert_eq!(bounds.len(), parts, "total {total:?}");
            assert_covers(start, end, &bounds);
        }
    }

    #[test]
    fn a_narrow_window_is_split_no_finer_than_half_the_narrowest_split() {
        // 1.5 s holds at most three half-second parts, whatever the total says.
        let bounds = split_bounds(0, 1_500, Some(1_000_000));
        assert_eq!(bounds, vec![(0, 500), (500, 1_000), (1_000, 1_500)]);
        // The narrowest window still split is halved.
        let bounds = split_bounds(0, MIN_SPLIT_MS, Some(1_000_000));
        assert_eq!(bounds, vec![(0, 500), (500, 1_000)]);
    }
}
