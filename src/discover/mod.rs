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
//! list, the details follow. Paging is no snapshot: a multi-page piece is read again when its
//! first page's `total` moved by the time its last page was in (the re-read goes with the next
//! requests, so the list pace does not wait for it). Both scans save their position (the
//! incremental watermark, the backfill's resume point) piece by piece in time order, never past
//! a piece not yet read whole, found stable and stored. Progress (for the stall watch) is time
//! covered, not calls made.

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
/// the pages read so far each time a piece's position is saved.
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
            lister: Lister {
                client: self.client,
                field,
                stop: self.stop,
            },
            report: &mut self.report,
            on_progress: self.on_progress,
            noting: &mut self.noting,
            order: Order::default(),
            unsettled: Vec::new(),
            again: Vec::new(),
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

/// How often a piece is read when it keeps changing under paging (the parts of a piece split
/// meanwhile count their own passes).
const MAX_PASSES: u32 = 5;

/// List requests of one scan in flight at once (the list pacer still spaces them).
const PAGES_IN_FLIGHT: usize = 16;

/// Pages of one window whose rows are noted together, in one transaction (1,600 rows): a
/// window's 50 pages are never all in memory at once, nor in one statement (the database
/// client's buffers grow to the largest statement sent).
const PAGES_PER_NOTE: usize = 8;

/// Answers asked for and not yet handed on, at most: the group gathering and the requests in
/// flight (most of them not answered yet). The writers hold at most two more groups (`rows`'
/// `MAX_ROWS_WAITING`): one being written, the next waiting, so at most 40 pages (8,000 rows)
/// of the piece being paged are held at once, whatever the window; besides them the first
/// pages of the latest split's waiting parts (at most `MAX_SPLIT_PARTS - 1`), the next piece's
/// first page and the first page of a piece to be read again: 49 pages (9,800 rows) at most
/// (BENCHMARKS.md, "Memory").
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

/// A piece of a window still to be read: its place in the scan's [`Order`], which pass over
/// it this is, and its first page when that was asked for already.
struct Pending {
    seq: u64,
    start: i64,
    end: i64,
    pass: u32,
    first: Option<Result<ListPage, ApiError>>,
}

/// A piece paged through whose stability re-read (its first page again, the `total` compared)
/// is still to be asked for: it goes with the next requests the scan makes anyway (the next
/// piece's pages, a split's or a piece's first page, a page past the announced ones), alone
/// only at the end of the scan, so the list pace does not idle waiting for it.
struct Unsettled {
    seq: u64,
    start: i64,
    end: i64,
    pass: u32,
    total: Option<u64>,
}

/// A scan's pieces in time order until their end is saved; `settled` once a piece is read and
/// found stable: the batches submitted by then (its rows are stored when those are finished).
#[derive(Default)]
struct Order {
    places: std::collections::VecDeque<Place>,
    next_seq: u64,
}

struct Place {
    seq: u64,
    end: i64,
    settled: Option<u64>,
}

impl Order {
    /// A piece to read, placed after every other.
    fn begin(&mut self, start: i64, end: i64) -> Pending {
        let seq = self.next_seq();
        self.places.push_back(Place {
            seq,
            end,
            settled: None,
        });
        Pending {
            seq,
            start,
            end,
            pass: 1,
            first: None,
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Puts the parts of the piece `seq` in its place (in time order), to be read.
    fn split(&mut self, seq: u64, bounds: &[(i64, i64)]) -> Vec<Pending> {
        let at = self.position(seq);
        self.places.remove(at);
        let mut parts = Vec::with_capacity(bounds.len());
        for (i, &(start, end)) in bounds.iter().enumerate() {
            let seq = self.next_seq();
            self.places.insert(
                at + i,
                Place {
                    seq,
                    end,
                    settled: None,
                },
            );
            parts.push(Pending {
                seq,
                start,
                end,
                pass: 1,
                first: None,
            });
        }
        parts
    }

    fn settle(&mut self, seq: u64, batches: u64) {
        let at = self.position(seq);
        self.places[at].settled = Some(batches);
    }

    fn position(&self, seq: u64) -> usize {
        self.places
            .iter()
            .position(|p| p.seq == seq)
            .expect("every piece read has its place until saved")
    }
}

/// What a scan asks the list API with (copied freely: no borrow of the scanner is held while
/// a request is out).
#[derive(Clone, Copy)]
struct Lister<'a> {
    client: &'a FeishuClient,
    field: TimeField,
    stop: &'a CancellationToken,
}

impl Lister<'_> {
    fn query(&self, start_ms: i64, end_ms: i64, page: u32) -> ListQuery {
        ListQuery {
            field: self.field,
            start_ms,
            end_ms,
            page,
            page_size: MAX_PAGE_SIZE,
        }
    }

    /// Asks for one page without counting it (see [`Scanner::listed`]). Fails only when
    /// discovery is stopped.
    async fn fetch(
        self,
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
}

/// What one answer in [`Scanner::pages`] is for.
#[derive(Clone, Copy)]
enum Ask {
    /// The re-read of `Scanner::unsettled[i]` (as taken when the paging began).
    ReRead(usize),
    /// The first page of the piece after this one.
    NextFirst,
    Page,
}

struct Scanner<'a> {
    lister: Lister<'a>,
    report: &'a mut DiscoveryReport,
    on_progress: &'a (dyn Fn(u64) + Sync),
    noting: &'a mut rows::Noting,
    order: Order,
    /// Pieces paged through, their re-reads not yet asked for.
    unsettled: Vec<Unsettled>,
    /// Pieces whose re-read found them changed: read again next, their first page in hand.
    again: Vec<Pending>,
}

impl Scanner<'_> {
    /// Lists `[from, to]` completely, oldest piece first; `piece_done(end)` after each piece
    /// in time order, once it is read, stable, and its listed tickets are stored and queued
    /// (they are noted beside the listing).
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
        let scanned = self.scan_pieces(from, to, &piece_done).await;
        // The batch still being written finishes whatever happened (nothing runs on alone);
        // the pieces it completes are saved even when the scan stopped.
        let finished = self.finish().await;
        let saved = self.pieces_done(&piece_done).await;
        scanned.and(finished).and(saved)
    }

    async fn scan_pieces<F, Fut>(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
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
        let mut pieces = vec![self.order.begin(start_ms, end_ms)];
        loop {
            let piece = match pieces.pop() {
                Some(piece) => piece,
                None if self.unsettled.is_empty() => return Ok(()),
                // The last pieces' re-reads: nothing else is left to send them with.
                None => {
                    self.beside(async {}).await?;
                    pieces.extend(self.read_again());
                    continue;
                }
            };
            let (seq, start, end) = (piece.seq, piece.start, piece.end);
            // Parts overlap by one millisecond: whether the API's bounds are inclusive is not
            // documented, and a ticket listed twice costs nothing. Their first pages are asked
            // for together: each says whether its part must be split again (or is empty)
            // without waiting for the others.
            if let Piece::TooBig { total } = self.read_piece(piece, pieces.last_mut()).await? {
                // First pages kept ahead for the latest split's parts only: the parts of
                // earlier splits wait without theirs (asked for again when their turn comes),
                // so splitting a wide, crowded range holds no pages per level.
                for waiting in &mut pieces {
                    waiting.first = None;
                }
                let parts = self.order.split(seq, &split_bounds(start, end, total));
                let lister = self.lister;
                let firsts = self
                    .beside(futures::future::join_all(
                        parts.iter().map(|p| lister.fetch(p.start, p.end, 1)),
                    ))
                    .await?;
                // Pushed newest first: the oldest part is read next.
                for (mut part, first) in parts.into_iter().zip(firsts).rev() {
                    part.first = Some(first?);
                    pieces.push(part);
                }
                self.report.splits += 1;
            }
            pieces.extend(self.read_again());
            self.pieces_done(piece_done).await?;
        }
    }

    /// The pieces to read again, newest first (to be pushed on the stack): they are older
    /// than any piece on it.
    fn read_again(&mut self) -> Vec<Pending> {
        let mut again = std::mem::take(&mut self.again);
        again.sort_by_key(|p| std::cmp::Reverse(p.start));
        again
    }

    /// Calls `piece_done` for the pieces whose batches are finished, in time order, up to the
    /// first one not yet read, not yet stable or not yet stored.
    async fn pieces_done<F, Fut>(&mut self, piece_done: &F) -> Result<(), DiscoveryError>
    where
        F: Fn(DateTime<Utc>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        while let Some(place) = self.order.places.front()
            && place.settled.is_some_and(|b| b <= self.noting.finished())
        {
            let end = place.end;
            self.order.places.pop_front();
            piece_done(epoch_to_datetime(end).unwrap_or(DateTime::UNIX_EPOCH))
                .await
                .map_err(DiscoveryError::Database)?;
            (self.on_progress)(self.report.pages);
        }
        Ok(())
    }

    /// Reads every page of one piece, once. The `total` only says how many pages to ask for
    /// at once: paging goes on while pages come back full (a `total` of 0 or of one page's
    /// length ends nothing early), and a piece is too big only when its first page is full and
    /// it is wide enough to split ([`MIN_SPLIT_MS`]). Paging is not a snapshot either: a
    /// ticket updated meanwhile leaves the window and the rows behind it move up a place, so
    /// one row can slip past a page boundary. A multi-page piece is therefore checked after its
    /// last page (a total that moved means rows shifted) and read again until a pass is
    /// stable ([`Scanner::settle`]); that re-read goes with the next requests (`unsettled`).
    ///
    /// The first page may have been asked for already (`piece.first`); the next piece's first
    /// page (`next`) is asked for with this piece's pages (those the total announces).
    async fn read_piece(
        &mut self,
        piece: Pending,
        next: Option<&mut Pending>,
    ) -> Result<Piece, DiscoveryError> {
        let (seq, start, end, pass) = (piece.seq, piece.start, piece.end, piece.pass);
        let lister = self.lister;
        let page_size = u64::from(MAX_PAGE_SIZE);
        let max_pages = LIST_ROW_CAP.div_ceil(page_size) as u32;
        let splittable = end - start >= MIN_SPLIT_MS;
        let first = match piece.first {
            Some(first) => first,
            None => self.beside(lister.fetch(start, end, 1)).await??,
        };
        let mut first = self.listed(first)?;
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
        if first_full && announced > 1 {
            let next = next.filter(|n| n.first.is_none());
            last_items = self.pages(start, end, 2..=announced, next).await?;
            page = announced;
        }
        // Then on while pages come back full, whatever the total said.
        while last_items >= page_size && page < max_pages {
            page += 1;
            let next = self.beside(lister.fetch(start, end, page)).await??;
            let next = self.listed(next)?;
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
        }
        if page == 1 {
            self.order.settle(seq, self.noting.submitted());
            return Ok(Piece::Read);
        }
        // Rows that left the window meanwhile (updated again) moved the others up a place: the
        // total says so. (A short page before the announced end alone proves nothing: a total
        // can simply be wrong.)
        self.unsettled.push(Unsettled {
            seq,
            start,
            end,
            pass,
            total: first.total,
        });
        Ok(Piece::Read)
    }

    /// Awaits `work` with the re-reads of the unsettled pieces asked for beside it, then
    /// settles those.
    async fn beside<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, DiscoveryError> {
        let unsettled = std::mem::take(&mut self.unsettled);
        let lister = self.lister;
        let (done, again) = futures::join!(
            work,
            futures::future::join_all(unsettled.iter().map(|u| lister.fetch(u.start, u.end, 1)))
        );
        for (piece, again) in unsettled.into_iter().zip(again) {
            self.settle(piece, again?).await?;
        }
        Ok(done)
    }

    /// A piece's re-read came back: the piece is read when its total held still (the re-read's
    /// rows are noted too, queued again if changed meanwhile, not counted twice in the report);
    /// otherwise it is read again, the re-read being the first page of that pass.
    async fn settle(
        &mut self,
        piece: Unsettled,
        again: Result<ListPage, ApiError>,
    ) -> Result<(), DiscoveryError> {
        let (start, end) = (piece.start, piece.end);
        if let Ok(page) = &again
            && page.total != piece.total
        {
            if piece.pass >= MAX_PASSES {
                return Err(DiscoveryError::Unstable {
                    start_ms: start,
                    end_ms: end,
                });
            }
            tracing::info!(
                start_ms = start,
                end_ms = end,
                pass = piece.pass,
                "tickets changed while the window was paged; reading it again"
            );
            self.again.push(Pending {
                seq: piece.seq,
                start,
                end,
                pass: piece.pass + 1,
                first: Some(again),
            });
            return Ok(());
        }
        let again = self.listed(again)?;
        self.note(again.tickets, false).await?;
        self.order.settle(piece.seq, self.noting.submitted());
        Ok(())
    }

    /// Pages `numbers` of one window, [`PAGES_IN_FLIGHT`] at a time, noted in page order in
    /// groups of [`PAGES_PER_NOTE`] (one transaction each) while the next pages are fetched.
    /// The unsettled pieces' re-reads go first, then the first page of the piece after this
    /// one (`next`). Memory stays bounded however large the window (up to 10,000 rows): a
    /// request is sent only while fewer than [`PAGES_AHEAD`] answers are fetched and not yet
    /// handed on, and a request once sent is always awaited at once (its timeout runs from
    /// the sending). Returns the items of the last page.
    async fn pages(
        &mut self,
        start_ms: i64,
        end_ms: i64,
        numbers: std::ops::RangeInclusive<u32>,
        next: Option<&mut Pending>,
    ) -> Result<u64, DiscoveryError> {
        use futures::StreamExt;
        let lister = self.lister;
        if lister.stop.is_cancelled() {
            return Err(DiscoveryError::Interrupted);
        }
        let mut unsettled: Vec<Option<Unsettled>> = std::mem::take(&mut self.unsettled)
            .into_iter()
            .map(Some)
            .collect();
        let mut asks: Vec<(Ask, ListQuery)> = unsettled
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, u)| (Ask::ReRead(i), lister.query(u.start, u.end, 1)))
            .collect();
        asks.extend(
            next.as_ref()
                .map(|n| (Ask::NextFirst, lister.query(n.start, n.end, 1))),
        );
        asks.extend(numbers.map(|n| (Ask::Page, lister.query(start_ms, end_ms, n))));
        let ahead = &tokio::sync::Semaphore::new(PAGES_AHEAD);
        let (send, mut received) = tokio::sync::mpsc::unbounded_channel();
        let fetch = async move {
            let mut answers = futures::stream::iter(asks)
                .map(|(ask, q)| async move {
                    // Closed only when noting stopped on an error: nothing more is needed.
                    ahead.acquire().await.ok()?.forget();
                    Some((ask, lister.client.list_tickets(&q, lister.stop).await))
                })
                .buffered(PAGES_IN_FLIGHT);
            while let Some(Some(answer)) = answers.next().await {
                if send.send(answer).is_err() {
                    return;
                }
            }
        };
        let note = async move {
            let (mut group, mut in_group, mut last_items) = (Vec::new(), 0, 0);
            let mut next = next;
            let noted = async {
                while let Some((ask, result)) = received.recv().await {
                    match ask {
                        Ask::ReRead(i) => {
                            let piece = unsettled[i].take().expect("one re-read a piece");
                            self.settle(piece, result).await?;
                            ahead.add_permits(1);
                        }
                        Ask::NextFirst => {
                            if let Some(next) = next.as_deref_mut() {
                                next.first = Some(result);
                            }
                            ahead.add_permits(1);
                        }
                        Ask::Page => {
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
        let ((), noted) = futures::join!(fetch, note);
        noted
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
        let unique = newest_per_ticket(tickets);
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

/// Listed tickets deduplicated (a page may repeat a ticket; one that changed while its pages
/// were read shows twice, and its newest row is kept whatever the page order) and validated:
/// a row whose id is not a ticket id is skipped (logged).
fn newest_per_ticket(tickets: Vec<ListedTicket>) -> BTreeMap<String, ListedTicket> {
    use std::collections::btree_map::Entry;
    let mut unique: BTreeMap<String, ListedTicket> = BTreeMap::new();
    for t in tickets {
        match TicketId::parse(&t.ticket_id) {
            Ok(id) => match unique.entry(id.into_string()) {
                Entry::Occupied(mut kept) => {
                    if t.updated_at_ms >= kept.get().updated_at_ms {
                        kept.insert(t);
                    }
                }
                Entry::Vacant(slot) => {
                    slot.insert(t);
                }
            },
            Err(e) => tracing::warn!(endpoint = "list", error = %e, "skipping a listed ticket"),
        }
    }
    unique
}

/// The operator's `sync.known_ids_query`, and whether several helpdesks share it (then it
/// must name each ticket's helpdesk in a second column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownIdsQuery {
    pub sql: String,
    pub several_helpdesks: bool,
}

/// Runs the operator's `sync.known_ids_query` and enqueues the ids the queue has not seen
/// (with several helpdesks, those the query says are this store's helpdesk's).
/// A failing query is logged with the SQL error and costs only this source.
pub async fn enqueue_from_query(store: &Store, query: &KnownIdsQuery) -> Option<u64> {
    match store
        .enqueue_from_query(&query.sql, query.several_helpdesks)
        .await
    {
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

    #[test]
    fn a_ticket_listed_twice_keeps_its_newest_row_and_a_bad_id_is_skipped() {
        let row = |id: &str, at: Option<i64>| ListedTicket {
            ticket_id: id.to_owned(),
            updated_at_ms: at,
            raw: format!(
                "{{\"ticket_id\":\"{id}\",\"updated_at\":{}}}",
                at.unwrap_or(-1)
            ),
        };
        let unique = newest_per_ticket(vec![
            row("11", Some(2_000)),
            row("12", Some(5)),
            row("11", Some(1_000)),
            row("not-an-id", Some(1)),
            row("12", None),
        ]);
        let kept: Vec<(&str, Option<i64>)> = unique
            .iter()
            .map(|(id, t)| (id.as_str(), t.updated_at_ms))
            .collect();
        assert_eq!(kept, vec![("11", Some(2_000)), ("12", Some(5))]);
    }

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
