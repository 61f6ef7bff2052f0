//! Working the queue: claim due work as request slots free up (so every claimed job starts
//! soon and its lease covers its own retries, and a second worker finds the rest unclaimed), run
//! at most `max_in_flight` jobs at a time, send each job's outcome to the writer. A stop request
//! (shutdown, fatal error, the database failing) ends claiming; requests in flight get
//! `shutdown_grace` to finish.
//!
//! Work comes in lanes, each with its own claims in the queue: a ticket's detail (`detail`
//! step) and a ticket's conversation (`messages` step, when `sync.messages` is on). Conversations
//! are claimed first for their half of the slots, details take the rest: each lane waits on its
//! own pacer, so both run side by side at their own quota and neither starves the other. A detail that stores a changed ticket makes its
//! conversation due, so before giving up on an empty queue the loop commits what it holds and
//! looks once more.
//!
//! With `claim_for` (the daemon: one schedule interval) a cycle winds down when it is spent: no
//! new claims in either lane, conversation reads stop after their current page (what they read
//! is written, the rest carried over, still due), details in flight finish. So neither events
//! nor a conversation backlog keep a cycle running past the next discovery tick.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::detail::{Fetched, fetch_detail};
use super::messages::{MessagesStep, fetch_messages};
use super::writer::{Write, flush};
use super::{Cycle, CycleError, sleep_until_opt};
use crate::domain::{Failure, Progress, TicketId, TicketOutcome};
use crate::feishu::ApiError;
use crate::feishu::error::{PLATFORM_CODES, PLATFORM_FATAL_STREAK};
use crate::store::messages::MessagesClaim;

/// With nothing due and requests still in flight, how often a cycle looks for newly due work.
const RECLAIM_AFTER: Duration = Duration::from_millis(250);

/// What working the queue came to.
pub(super) struct Worked {
    pub due_at_start: u64,
    pub claimed: u64,
    /// Credentials rejected on the way (the cycle ends fatal).
    pub fatal: Option<ApiError>,
    /// Claiming failed: the cycle ends failed once what was in flight is written.
    pub db_error: Option<anyhow::Error>,
    /// The claim budget ran out before the queue did: work is left for the next cycle.
    pub budget_spent: bool,
}

/// One claimed piece of work.
enum Job {
    Detail(String),
    Messages(MessagesClaim),
}

/// A running job; its output says whether it was in the messages lane.
type Running<'a> = Pin<Box<dyn Future<Output = (bool, Fetched)> + Send + 'a>>;

/// Claims, fetches and hands outcomes to `writer` until nothing due is left (or a stop).
pub(super) async fn work_queue(
    cycle: &Cycle<'_>,
    writer: &mpsc::Sender<Write>,
) -> Result<Worked, CycleError> {
    let options = cycle.options;
    let (cycle_start, due_at_start) = due_work(cycle).await.map_err(CycleError::Database)?;
    let mut tally = Tally::new(cycle, due_at_start);
    let mut queue = Claims::new(cycle, cycle_start);
    let stop = cycle.shutdown.child_token();
    // Cancelled when the claim budget is spent (or on a stop): conversation reads stop after
    // their current page (a request in flight is never cut: that could starve a slow lane),
    // keeping what they read; details in flight finish.
    let wind_down = stop.child_token();
    let mut winding_down = false;
    let claim_until = options.claim_for.map(|d| Instant::now() + d);
    let step = MessagesStep {
        client: cycle.client,
        unit: &cycle.time_unit,
        open_refresh: options.open_refresh,
        writer,
        wind_down: &wind_down,
    };
    let mut in_flight = InFlight::default();
    let mut grace_deadline: Option<Instant> = None;
    loop {
        if !winding_down {
            let jobs = queue
                .next_jobs(in_flight.len(), in_flight.messages, &stop)
                .await;
            in_flight.start(jobs, cycle, &step, writer, &stop).await;
        }
        if in_flight.is_empty() {
            if look_again(&mut queue, writer, &stop, winding_down).await {
                continue;
            }
            break;
        }
        let deadline = grace_deadline;
        tokio::select! {
            next = in_flight.next() => {
                let Some((in_messages_lane, fetched)) = next else { continue };
                queue.job_done();
                if tally.job_finished(in_messages_lane, fetched, writer, &stop).await.is_break() {
                    break;
                }
            }
            _ = sleep_until_opt(claim_until), if !winding_down => {
                winding_down = true;
                wind_down.cancel();
                tracing::info!(in_flight = in_flight.len(), "the cycle's claim budget is spent: no new work this cycle; conversation reads stop after their current page");
            }
            _ = stop.cancelled(), if deadline.is_none() => {
                grace_deadline = Some(Instant::now() + options.shutdown_grace);
                tracing::info!(in_flight = in_flight.len(), "stop requested: no new work; waiting for requests in flight");
            }
            _ = sleep_until_opt(deadline) => {
                tracing::warn!(abandoned = in_flight.len(), "grace period over; abandoning requests in flight (their tickets stay queued)");
                break;
            }
        }
    }
    Ok(Worked {
        due_at_start,
        claimed: queue.claimed,
        fatal: tally.fatal,
        db_error: queue.db_error,
        budget_spent: winding_down && !stop.is_cancelled(),
    })
}

/// The cycle's start on the database's clock (not ours: `next_due_at` is written with its
/// `now()`), and the tickets due then, capped at `max_tickets_per_cycle`.
async fn due_work(cycle: &Cycle<'_>) -> anyhow::Result<(DateTime<Utc>, u64)> {
    let store = cycle.store;
    let cycle_start: DateTime<Utc> = store.now().await?;
    let mut due_at_start = store.count_due(cycle_start).await?;
    if let Some(max) = cycle.options.max_tickets_per_cycle {
        due_at_start = due_at_start.min(max);
    }
    Ok((cycle_start, due_at_start))
}

/// Nothing in flight. Details just stored may have made conversations due: with the
/// conversation lane on, commit and look again (once per quiet spell). False: the work is done
/// (or the writer is gone).
async fn look_again(
    queue: &mut Claims<'_>,
    writer: &mpsc::Sender<Write>,
    stop: &CancellationToken,
    winding_down: bool,
) -> bool {
    queue.messages_on()
        && !stop.is_cancelled()
        && !winding_down
        && queue.look_again_after_flush()
        && flush(writer).await
}

/// The jobs running; `messages` of them read conversations (a lane kept to half the slots).
#[derive(Default)]
struct InFlight<'a> {
    jobs: FuturesUnordered<Running<'a>>,
    messages: usize,
}

impl<'a> InFlight<'a> {
    fn len(&self) -> usize {
        self.jobs.len()
    }

    fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Starts claimed jobs. A queue entry that is not a ticket id goes to the writer without a
    /// request (the writer gone stops the cycle).
    async fn start(
        &mut self,
        jobs: Vec<Job>,
        cycle: &'a Cycle<'a>,
        step: &'a MessagesStep<'a>,
        writer: &mpsc::Sender<Write>,
        stop: &'a CancellationToken,
    ) {
        for job in jobs {
            match job {
                Job::Detail(raw_id) => match TicketId::parse(&raw_id) {
                    Ok(id) => {
                        let detail = fetch_detail(cycle.client, id, cycle.options, stop);
                        self.jobs
                            .push(Box::pin(async move { (false, detail.await) }));
                    }
                    Err(e) => {
                        if writer
                            .send(Write::Ticket(invalid_id(raw_id, &e)))
                            .await
                            .is_err()
                        {
                            stop.cancel();
                        }
                    }
                },
                Job::Messages(claim) => {
                    self.messages += 1;
                    let messages = fetch_messages(step, claim, stop);
                    self.jobs
                        .push(Box::pin(async move { (true, messages.await) }));
                }
            }
        }
    }

    /// The next job to finish, and whether it was in the messages lane.
    async fn next(&mut self) -> Option<(bool, Fetched)> {
        let (in_messages_lane, fetched) = self.jobs.next().await?;
        if in_messages_lane {
            self.messages -= 1;
        }
        Some((in_messages_lane, fetched))
    }
}

/// What finished jobs came to so far: progress, the platform-refusal streak, a fatal error.
struct Tally<'a> {
    cycle: &'a Cycle<'a>,
    progress: Progress,
    platform_streak: u32,
    fatal: Option<ApiError>,
}

impl<'a> Tally<'a> {
    /// Reports the starting progress.
    fn new(cycle: &'a Cycle<'a>, due_at_start: u64) -> Self {
        let progress = Progress {
            due_at_start,
            done: 0,
            pages_listed: cycle.pages.load(Ordering::Relaxed),
        };
        (cycle.on_progress)(progress);
        Self {
            cycle,
            progress,
            platform_streak: 0,
            fatal: None,
        }
    }

    /// A job finished: progress reported (details count), a run of platform refusals stops the
    /// cycle, the outcome goes to the writer.
    async fn job_finished(
        &mut self,
        in_messages_lane: bool,
        fetched: Fetched,
        writer: &mpsc::Sender<Write>,
        stop: &CancellationToken,
    ) -> ControlFlow<()> {
        if !in_messages_lane {
            self.progress.done += 1;
        }
        (self.cycle.on_progress)(self.progress);
        if let Some(error) = platform_refusals(&fetched, &mut self.platform_streak) {
            tracing::error!(error = %error, "every recent ticket was refused with a platform code; stopping the cycle");
            self.fatal.get_or_insert(error);
            stop.cancel();
        }
        deliver(fetched, writer, &mut self.fatal, stop).await
    }
}

/// A finished job's result: the outcome to the writer, or the stop it calls for.
async fn deliver(
    fetched: Fetched,
    writer: &mpsc::Sender<Write>,
    fatal: &mut Option<ApiError>,
    stop: &CancellationToken,
) -> ControlFlow<()> {
    let write = match fetched {
        Fetched::Outcome(outcome) => Write::Ticket(outcome),
        Fetched::Messages(outcome) => Write::Messages(outcome),
        Fetched::Abandoned => return ControlFlow::Continue(()),
        Fetched::Fatal(error) => {
            if fatal.is_none() {
                tracing::error!(error = %error, "stopping the cycle: credentials rejected");
                *fatal = Some(error);
            }
            stop.cancel();
            return ControlFlow::Continue(());
        }
    };
    if writer.send(write).await.is_err() {
        // The writer failed; its error is reported when the cycle finishes.
        stop.cancel();
        return ControlFlow::Break(());
    }
    ControlFlow::Continue(())
}

/// Counts tickets in a row refused with a platform code (99991xxx); a detail answered
/// otherwise breaks the streak. At [`PLATFORM_FATAL_STREAK`] the refusal is about the app:
/// the error that ends the cycle as fatal.
fn platform_refusals(fetched: &Fetched, streak: &mut u32) -> Option<ApiError> {
    let Fetched::Outcome(outcome) = fetched else {
        return None;
    };
    let failure = match outcome {
        TicketOutcome::Failed { failure, .. } => failure,
        _ => {
            *streak = 0;
            return None;
        }
    };
    let Some(code) = failure.code.filter(|c| PLATFORM_CODES.contains(c)) else {
        *streak = 0;
        return None;
    };
    *streak += 1;
    (*streak == PLATFORM_FATAL_STREAK).then(|| ApiError::AppCredentialsRejected {
        http_status: failure.http_status.unwrap_or_default(),
        code: Some(code),
        msg: format!(
            "{PLATFORM_FATAL_STREAK} tickets in a row: {}",
            failure.message
        ),
    })
}

/// A queue entry that is not a ticket id at all: parked as invalid without a request.
fn invalid_id(raw_id: String, error: &crate::domain::InvalidTicketId) -> TicketOutcome {
    TicketOutcome::InvalidId {
        ticket_id: raw_id,
        failure: Failure {
            message: error.to_string(),
            ..Failure::default()
        },
        attempts: 0,
    }
}

/// The cycle's claims on the queue, taken a slot's worth at a time, lane by lane.
struct Claims<'a> {
    cycle: &'a Cycle<'a>,
    cycle_start: DateTime<Utc>,
    pending: VecDeque<Job>,
    /// Details claimed (the cycle's cap counts these).
    claimed: u64,
    /// When the queue last had nothing due. While requests are still in flight the cycle looks
    /// again now and then: a ticket an event queued meanwhile is fetched by this cycle.
    exhausted_at: Option<Instant>,
    /// A flush-and-look-again was done and nothing finished since.
    flushed: bool,
    db_error: Option<anyhow::Error>,
}

impl<'a> Claims<'a> {
    fn new(cycle: &'a Cycle<'a>, cycle_start: DateTime<Utc>) -> Self {
        Self {
            cycle,
            cycle_start,
            pending: VecDeque::new(),
            claimed: 0,
            exhausted_at: None,
            flushed: false,
            db_error: None,
        }
    }

    fn messages_on(&self) -> bool {
        self.cycle.options.messages
    }

    /// A job finished: the queue may hold new work (a changed ticket's conversation).
    fn job_done(&mut self) {
        self.flushed = false;
    }

    /// Whether to commit and look once more before ending (once per quiet spell).
    fn look_again_after_flush(&mut self) -> bool {
        if self.flushed {
            return false;
        }
        self.flushed = true;
        self.exhausted_at = None;
        true
    }

    /// Jobs to start now, for the slots left free. Claims a chunk per lane when nothing is
    /// pending (and the queue was not found empty a moment ago); a database error stops
    /// claiming (what is in flight still finishes and is written).
    async fn next_jobs(
        &mut self,
        running: usize,
        messages_running: usize,
        stop: &CancellationToken,
    ) -> Vec<Job> {
        let max = self.cycle.options.max_in_flight;
        if stop.is_cancelled() || running >= max {
            return Vec::new();
        }
        let look_again = self
            .exhausted_at
            .is_none_or(|at| at.elapsed() >= RECLAIM_AFTER);
        if self.pending.is_empty() && look_again {
            match self.claim(max - running, messages_running).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "cannot claim tickets; ending the cycle"
                    );
                    self.db_error = Some(e);
                    stop.cancel();
                    return Vec::new();
                }
            }
        }
        let n = (max - running).min(self.pending.len());
        self.pending.drain(..n).collect()
    }

    /// Claims, with the conversation lane on, messages for their half of the slots (less those
    /// already reading), then details for the slots left. Each lane waits on its own pacer
    /// (the two endpoints have separate quotas), so the lanes run side by side: a detail
    /// backlog does not hold every conversation back until its end, nor conversations details.
    async fn claim(&mut self, slots: usize, messages_running: usize) -> anyhow::Result<()> {
        let (store, options, worker) = (self.cycle.store, self.cycle.options, self.cycle.worker);
        // With a single slot there is no half: details first, a conversation when no detail
        // is due (else a steady stream of due conversations would hold every detail back).
        let half = options.max_in_flight / 2;
        let mut found_messages = self
            .claim_messages(half.saturating_sub(messages_running).min(slots))
            .await?;
        let slots = slots.saturating_sub(self.pending.len());
        let allowed = options
            .max_tickets_per_cycle
            .map_or(slots as u64, |max| max.saturating_sub(self.claimed))
            .min(slots as u64) as usize;
        let details = if allowed == 0 {
            Vec::new()
        } else {
            store
                .claim_due(allowed, self.cycle_start, options.claim_lease, worker)
                .await?
        };
        self.claimed += details.len() as u64;
        let found_details = !details.is_empty();
        self.pending
            .extend(details.into_iter().map(|c| Job::Detail(c.ticket_id)));
        if half == 0 && !found_details {
            found_messages = self.claim_messages(slots.min(1)).await?;
        }
        self.exhausted_at = (!found_details && !found_messages).then(Instant::now);
        Ok(())
    }

    /// Claims up to `limit` due conversations (none with the conversation lane off); whether
    /// any were found.
    async fn claim_messages(&mut self, limit: usize) -> anyhow::Result<bool> {
        let (store, options, worker) = (self.cycle.store, self.cycle.options, self.cycle.worker);
        if !options.messages || limit == 0 {
            return Ok(false);
        }
        let claims = store
            .claim_messages_due(limit, options.claim_lease, worker)
            .await?;
        let found = !claims.is_empty();
        self.pending.extend(claims.into_iter().map(Job::Messages));
        Ok(found)
    }
}
