//! Working the queue: claim due tickets as request slots free up (so every claimed ticket starts
//! soon and its lease covers its own retries, and a second worker finds the rest unclaimed), run
//! one job per claimed ticket with at most `max_in_flight` at a time, send each job's outcome to
//! the writer. A stop request (shutdown, fatal error, the database failing) ends claiming;
//! requests in flight get `shutdown_grace` to finish.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::detail::{Fetched, fetch_detail};
use super::{Cycle, CycleError, sleep_until_opt};
use crate::domain::{Failure, Progress, TicketId, TicketOutcome};
use crate::feishu::ApiError;

/// With nothing due and requests still in flight, how often a cycle looks for newly due tickets.
const RECLAIM_AFTER: Duration = Duration::from_millis(250);

/// What working the queue came to.
pub(super) struct Worked {
    pub due_at_start: u64,
    pub claimed: u64,
    /// Credentials rejected on the way (the cycle ends fatal).
    pub fatal: Option<ApiError>,
    /// Claiming failed: the cycle ends failed once what was in flight is written.
    pub db_error: Option<anyhow::Error>,
}

/// Claims, fetches and hands outcomes to `writer` until nothing due is left (or a stop).
pub(super) async fn work_queue(
    cycle: &Cycle<'_>,
    writer: &mpsc::Sender<TicketOutcome>,
) -> Result<Worked, CycleError> {
    let (store, options) = (cycle.store, cycle.options);
    // The database's clock, not ours: `next_due_at` is written with its `now()`.
    let cycle_start: DateTime<Utc> = store.now().await?;
    let mut due_at_start = store.count_due(cycle_start).await?;
    if let Some(max) = options.max_tickets_per_cycle {
        due_at_start = due_at_start.min(max);
    }
    let mut progress = Progress {
        due_at_start,
        done: 0,
        pages_listed: cycle.pages.load(Ordering::Relaxed),
    };
    (cycle.on_progress)(progress);

    let mut queue = Claims::new(cycle, cycle_start);
    let stop = cycle.shutdown.child_token();
    // A claimed ticket's job: today its detail step.
    let job = |id: TicketId| fetch_detail(cycle.client, id, options, &stop);
    let mut grace_deadline: Option<Instant> = None;
    let mut in_flight = FuturesUnordered::new();
    let mut fatal: Option<ApiError> = None;
    loop {
        queue.start_jobs(&mut in_flight, &job, writer, &stop).await;
        if in_flight.is_empty() {
            break;
        }
        let deadline = grace_deadline;
        tokio::select! {
            next = in_flight.next() => {
                let Some(fetched) = next else { continue };
                progress.done += 1;
                (cycle.on_progress)(progress);
                if deliver(fetched, writer, &mut fatal, &stop).await.is_break() {
                    break;
                }
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
        fatal,
        db_error: queue.db_error,
    })
}

/// A finished job's result: the outcome to the writer, or the stop it calls for.
async fn deliver(
    fetched: Fetched,
    writer: &mpsc::Sender<TicketOutcome>,
    fatal: &mut Option<ApiError>,
    stop: &CancellationToken,
) -> ControlFlow<()> {
    match fetched {
        Fetched::Outcome(outcome) => {
            if writer.send(outcome).await.is_err() {
                // The writer failed; its error is reported when the cycle finishes.
                stop.cancel();
                return ControlFlow::Break(());
            }
        }
        Fetched::Abandoned => {}
        Fetched::Fatal(error) => {
            if fatal.is_none() {
                tracing::error!(error = %error, "stopping the cycle: credentials rejected");
                *fatal = Some(error);
            }
            stop.cancel();
        }
    }
    ControlFlow::Continue(())
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

/// The cycle's claims on the queue, taken a slot's worth at a time.
struct Claims<'a> {
    cycle: &'a Cycle<'a>,
    cycle_start: DateTime<Utc>,
    pending: VecDeque<String>,
    claimed: u64,
    /// When the queue last had nothing due. While requests are still in flight the cycle looks
    /// again now and then: a ticket an event queued meanwhile is fetched by this cycle.
    exhausted_at: Option<Instant>,
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
            db_error: None,
        }
    }

    /// Starts `job` for claimed tickets while request slots are free and no stop is asked
    /// for. An entry that is not a ticket id is parked as invalid without a request.
    async fn start_jobs<Fut>(
        &mut self,
        in_flight: &mut FuturesUnordered<Fut>,
        job: &impl Fn(TicketId) -> Fut,
        writer: &mpsc::Sender<TicketOutcome>,
        stop: &CancellationToken,
    ) {
        while !stop.is_cancelled() && in_flight.len() < self.cycle.options.max_in_flight {
            let raw_id = match self.next().await {
                Ok(Some(raw_id)) => raw_id,
                Ok(None) => return,
                Err(e) => {
                    // Stop claiming; what is in flight still finishes and is written.
                    tracing::error!(
                        error = format!("{e:#}"),
                        "cannot claim tickets; ending the cycle"
                    );
                    self.db_error = Some(e);
                    stop.cancel();
                    return;
                }
            };
            match TicketId::parse(&raw_id) {
                Ok(id) => in_flight.push(job(id)),
                Err(e) => {
                    if writer.send(invalid_id(raw_id, &e)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// The next claimed ticket id; claims a chunk when none is pending (and the queue was not
    /// found empty a moment ago). None: nothing due now, or the cycle's cap is reached.
    async fn next(&mut self) -> anyhow::Result<Option<String>> {
        let look_again = self
            .exhausted_at
            .is_none_or(|at| at.elapsed() >= RECLAIM_AFTER);
        if self.pending.is_empty() && look_again {
            let options = self.cycle.options;
            let chunk = options.max_in_flight as u64;
            let allowed = options
                .max_tickets_per_cycle
                .map_or(chunk, |max| max.saturating_sub(self.claimed))
                .min(chunk) as usize;
            let batch = if allowed == 0 {
                Vec::new()
            } else {
                self.cycle
                    .store
                    .claim_due(
                        allowed,
                        self.cycle_start,
                        options.claim_lease,
                        self.cycle.worker,
                    )
                    .await?
            };
            self.claimed += batch.len() as u64;
            self.exhausted_at = batch.is_empty().then(Instant::now);
            self.pending.extend(batch.into_iter().map(|c| c.ticket_id));
        }
        Ok(self.pending.pop_front())
    }
}
