//! One sync cycle: claim due tickets, fetch them (paced, concurrent), normalize, write in batches.
//!
//! The fetch loop and the database writer run side by side and talk through a channel, so a
//! slow commit never stalls requests. A fatal API error (credentials) or a shutdown request stops
//! new claims; requests in flight finish within a grace period; unworked claims are released.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::discover::{DiscoveryError, DiscoveryOptions, DiscoveryReport, discover};
use crate::domain::{Failure, TicketId, TicketOutcome};
use crate::feishu::{ApiError, ClientStatsSnapshot, Disposition, FeishuClient};
use crate::normalize::normalize_ticket;
use crate::store::Store;
use crate::store::runs::Trigger;
use crate::store::upsert::{BatchReport, FailureDelay};

/// A failed ticket waits `base · 2^(failures)` (capped) before its next try.
pub const FAILED_RETRY_DELAY: FailureDelay = FailureDelay {
    base: Duration::from_secs(60),
    cap: Duration::from_secs(6 * 3600),
};
/// The least a claim holds; an expired claim (crashed worker) can be taken again.
pub const MIN_CLAIM_LEASE: Duration = Duration::from_secs(15 * 60);
/// With nothing due and requests still in flight, how often a cycle looks for newly due tickets.
const RECLAIM_AFTER: Duration = Duration::from_millis(250);

/// A partly filled batch is committed after this long, so slow cycles persist progress too.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// The knobs of a cycle, taken from [`Settings`].
#[derive(Debug, Clone)]
pub struct CycleOptions {
    pub batch_size: usize,
    pub max_in_flight: usize,
    pub open_refresh: Duration,
    pub closed_refresh: Duration,
    /// Discovery through the list API; None when `sync.discover = false`.
    pub discovery: Option<DiscoveryOptions>,
    pub known_ids_query: Option<String>,
    pub max_tickets_per_cycle: Option<u64>,
    /// After a stop request, how long requests already in flight may take to finish.
    pub shutdown_grace: Duration,
    /// How long claimed tickets stay ours: long enough for a claim's worth of tickets to get
    /// their grants and exhaust their retries.
    pub claim_lease: Duration,
}

impl CycleOptions {
    /// The same cycle without id sources (no list calls, no known_ids_query): for a cycle an
    /// event woke, whose ticket is already queued.
    pub fn queue_only(&self) -> Self {
        Self {
            discovery: None,
            known_ids_query: None,
            ..self.clone()
        }
    }

    /// Options for a cycle; `since` is `sync --since` (a history backfill from that date).
    pub fn from_settings(settings: &Settings, since: Option<DateTime<Utc>>) -> Self {
        let s = &settings.sync;
        Self {
            batch_size: s.batch_size,
            max_in_flight: settings.feishu.max_in_flight,
            open_refresh: s.open_refresh,
            closed_refresh: s.closed_refresh,
            discovery: (s.discover || since.is_some()).then(|| DiscoveryOptions {
                helpdesk_id: settings.feishu.helpdesk_id.trim().to_owned(),
                overlap: s.discovery_overlap,
                backfill_since: s.backfill_since,
                since_override: since,
            }),
            known_ids_query: s.known_ids_query.clone(),
            max_tickets_per_cycle: s.max_tickets_per_cycle,
            shutdown_grace: s.shutdown_grace,
            claim_lease: claim_lease(&settings.feishu),
        }
    }
}

/// Progress, reported after every list page and every ticket.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Tickets due when fetching started (the progress bar's total).
    pub due_at_start: u64,
    /// Tickets whose fetch has finished (any outcome).
    pub done: u64,
    /// Discovery pages read so far.
    pub pages_listed: u64,
}

/// What a cycle did.
#[derive(Debug, Clone, Default)]
pub struct CycleReport {
    pub due_at_start: u64,
    /// Tickets claimed from the queue.
    pub claimed: u64,
    /// Written outcomes by kind.
    pub written: BatchReport,
    /// Claims given back unworked (stop or fatal error).
    pub released: u64,
    /// API calls made during the cycle.
    pub api: ClientStatsSnapshot,
    pub elapsed: Duration,
    /// Set when the cycle stopped on a credentials error.
    pub fatal: Option<ApiError>,
    /// Set when the cycle stopped because shutdown was requested.
    pub interrupted: bool,
    /// What discovery did (None when disabled).
    pub discovery: Option<DiscoveryReport>,
    /// Why discovery did not finish, when it did not.
    pub discovery_error: Option<String>,
    /// Ids added by `sync.known_ids_query` (None when unset or failed).
    pub from_query: Option<u64>,
}

/// Why a cycle could not complete.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    /// Credentials are wrong: nothing more can be fetched. Stored data was not touched.
    #[error("sync stopped: {error}")]
    Fatal {
        error: ApiError,
        report: Box<CycleReport>,
    },
    #[error("database error during sync: {0:#}")]
    Database(#[from] anyhow::Error),
}

/// Lease for one claim of `max_in_flight` tickets: the wait for their grants, each one's
/// attempts (timeouts plus capped backoff), and the rate-limit waiting budget, on top of the minimum.
fn claim_lease(f: &crate::config::FeishuSettings) -> Duration {
    let grants = Duration::from_secs_f64(f.max_in_flight as f64 / f.detail_requests_per_second);
    let attempts = (f.request_timeout + crate::pace::RETRY_CAP) * f.max_attempts;
    MIN_CLAIM_LEASE + grants + attempts + crate::feishu::client::RATE_LIMIT_BUDGET
}

/// Result of one fetch, before it goes to the writer.
enum Fetched {
    Outcome(TicketOutcome),
    Fatal(ApiError),
    /// Stopped while waiting: nothing to record; the ticket stays queued.
    Abandoned,
}

/// Runs one cycle: every ticket due when it starts is fetched once and written.
///
/// The caller holds the helpdesk lock (`scheduler::HelpdeskLock`), so claims of other workers
/// found at the start are left over from a process that died, and are released at once rather
/// than after their lease.
pub async fn run_cycle(
    store: &Store,
    client: &FeishuClient,
    options: &CycleOptions,
    on_progress: &(dyn Fn(Progress) + Sync),
    shutdown: CancellationToken,
) -> Result<CycleReport, CycleError> {
    let started = Instant::now();
    let api_before = client.stats();
    let worker = worker_id();
    let mut report = CycleReport::default();
    let leftover = store.release_foreign_claims(worker).await?;
    if leftover > 0 {
        tracing::warn!(
            tickets = leftover,
            "released claims left by a worker that stopped without releasing them"
        );
    }
    let pages = AtomicU64::new(0);
    let page_progress = || {
        pages.fetch_add(1, Ordering::Relaxed);
        on_progress(Progress {
            pages_listed: pages.load(Ordering::Relaxed),
            ..Progress::default()
        });
    };

    // Check the app credentials once, before discovery or claims, instead of in every worker.
    let needs_api = options.discovery.is_some() || store.count_due(store.now().await?).await? > 0;
    if needs_api && let Err(error) = client.tenant_token().await {
        if error.disposition() == Disposition::Fatal {
            tracing::error!(error = %error, "cannot obtain a tenant access token");
            return Err(stopped_before_fetching(
                report,
                error,
                client,
                &api_before,
                started,
            ));
        }
        // Network trouble: the per-request policy (retries, then `failed`) takes it from here.
        tracing::warn!(error = %error, "cannot obtain a tenant access token yet");
    }

    if let Some(query) = &options.known_ids_query {
        report.from_query = tokio::select! {
            added = crate::discover::enqueue_from_query(store, query) => added,
            _ = shutdown.cancelled() => None,
        };
    }
    if let Some(discovery) = &options.discovery {
        match discover(store, client, discovery, &page_progress, &shutdown).await {
            Ok(found) => report.discovery = Some(found),
            Err(DiscoveryError::Api(error)) if error.disposition() == Disposition::Fatal => {
                tracing::error!(endpoint = "list", error = %error, "discovery stopped: credentials rejected");
                return Err(stopped_before_fetching(
                    report,
                    error,
                    client,
                    &api_before,
                    started,
                ));
            }
            Err(DiscoveryError::Database(e)) => return Err(CycleError::Database(e)),
            Err(error) => {
                // The list API failing costs discovery only: the queue is still worked.
                tracing::error!(endpoint = "list", error = %error, "discovery incomplete this cycle; the watermark stays where it was");
                report.discovery_error = Some(error.to_string());
            }
        }
    }

    // The database's clock, not ours: `next_due_at` is written with its `now()`.
    let cycle_start: DateTime<Utc> = store.now().await?;
    let mut due_at_start = store.count_due(cycle_start).await?;
    if let Some(max) = options.max_tickets_per_cycle {
        due_at_start = due_at_start.min(max);
    }
    let mut progress = Progress {
        due_at_start,
        done: 0,
        pages_listed: pages.load(Ordering::Relaxed),
    };
    on_progress(progress);

    let (outcome_tx, outcome_rx) = mpsc::channel::<TicketOutcome>(options.batch_size * 2);
    let writer = tokio::spawn(write_outcomes(
        store.clone(),
        outcome_rx,
        options.batch_size,
    ));

    let stop = shutdown.child_token();
    let mut grace_deadline: Option<tokio::time::Instant> = None;
    let mut pending: VecDeque<String> = VecDeque::new();
    let mut in_flight = FuturesUnordered::new();
    // When the queue last had nothing due. While requests are still in flight the cycle looks
    // again now and then: a ticket an event queued meanwhile is fetched by this cycle.
    let mut exhausted_at: Option<tokio::time::Instant> = None;
    let mut claimed = 0u64;
    let mut fatal: Option<ApiError> = None;
    let mut db_error: Option<anyhow::Error> = None;
    // Claim only as request slots free up, so every claimed ticket starts soon (its lease
    // covers its own retries), and a second worker finds the rest unclaimed.
    let claim_chunk = options.max_in_flight;

    loop {
        while !stop.is_cancelled() && in_flight.len() < options.max_in_flight {
            let look_again = exhausted_at.is_none_or(|at| at.elapsed() >= RECLAIM_AFTER);
            if pending.is_empty() && look_again {
                let allowed = options
                    .max_tickets_per_cycle
                    .map_or(claim_chunk as u64, |max| max.saturating_sub(claimed))
                    .min(claim_chunk as u64) as usize;
                let batch = if allowed == 0 {
                    Vec::new()
                } else {
                    match store
                        .claim_due(allowed, cycle_start, options.claim_lease, worker)
                        .await
                    {
                        Ok(batch) => batch,
                        Err(e) => {
                            // Stop claiming; what is in flight still finishes and is written.
                            tracing::error!(
                                error = format!("{e:#}"),
                                "cannot claim tickets; ending the cycle"
                            );
                            db_error = Some(e);
                            stop.cancel();
                            break;
                        }
                    }
                };
                claimed += batch.len() as u64;
                exhausted_at = batch.is_empty().then(tokio::time::Instant::now);
                pending.extend(batch.into_iter().map(|c| c.ticket_id));
            }
            let Some(raw_id) = pending.pop_front() else {
                break;
            };
            match TicketId::parse(&raw_id) {
                Ok(id) => in_flight.push(fetch_one(client, id, options, &stop)),
                Err(e) => {
                    let outcome = TicketOutcome::InvalidId {
                        ticket_id: raw_id,
                        failure: Failure {
                            message: e.to_string(),
                            ..Failure::default()
                        },
                        attempts: 0,
                    };
                    if outcome_tx.send(outcome).await.is_err() {
                        break;
                    }
                }
            }
        }
        if in_flight.is_empty() {
            break;
        }
        let deadline = grace_deadline;
        tokio::select! {
            next = in_flight.next() => {
                let Some(fetched) = next else { continue };
                progress.done += 1;
                on_progress(progress);
                match fetched {
                    Fetched::Outcome(outcome) => {
                        if outcome_tx.send(outcome).await.is_err() {
                            // The writer failed; its error is reported below.
                            stop.cancel();
                            break;
                        }
                    }
                    Fetched::Abandoned => {}
                    Fetched::Fatal(error) => {
                        if fatal.is_none() {
                            tracing::error!(error = %error, "stopping the cycle: credentials rejected");
                            fatal = Some(error);
                        }
                        stop.cancel();
                    }
                }
            }
            _ = stop.cancelled(), if deadline.is_none() => {
                grace_deadline = Some(tokio::time::Instant::now() + options.shutdown_grace);
                tracing::info!(in_flight = in_flight.len(), "stop requested: no new work; waiting for requests in flight");
            }
            _ = sleep_until_opt(deadline) => {
                tracing::warn!(abandoned = in_flight.len(), "grace period over; abandoning requests in flight (their tickets stay queued)");
                break;
            }
        }
    }
    drop(in_flight);
    drop(outcome_tx);
    let written = writer.await;
    // Everything still claimed by us was not written: give it back for the next cycle.
    let released = store.release_all_claims(worker).await;
    let written = match written {
        Ok(Ok(written)) => written,
        Ok(Err(e)) => return Err(CycleError::Database(e)),
        Err(e) => {
            return Err(CycleError::Database(anyhow::anyhow!(
                "the database writer task failed: {e}"
            )));
        }
    };
    let released = released?;
    if let Some(e) = db_error {
        return Err(CycleError::Database(e));
    }
    report.due_at_start = due_at_start;
    report.claimed = claimed;
    report.written = written;
    report.released = released;
    report.api = client.stats().since(&api_before);
    report.elapsed = started.elapsed();
    report.fatal = fatal.clone();
    report.interrupted = shutdown.is_cancelled();
    match fatal {
        Some(error) => Err(CycleError::Fatal {
            error,
            report: Box::new(report),
        }),
        None => Ok(report),
    }
}

/// The fatal result of a cycle that stopped before claiming anything.
fn stopped_before_fetching(
    mut report: CycleReport,
    error: ApiError,
    client: &FeishuClient,
    api_before: &ClientStatsSnapshot,
    started: Instant,
) -> CycleError {
    report.api = client.stats().since(api_before);
    report.elapsed = started.elapsed();
    report.fatal = Some(error.clone());
    CycleError::Fatal {
        error,
        report: Box::new(report),
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Fetches and normalizes one ticket, mapping the error policy to an outcome.
async fn fetch_one(
    client: &FeishuClient,
    id: TicketId,
    options: &CycleOptions,
    stop: &CancellationToken,
) -> Fetched {
    let fetch = client.fetch_ticket(&id, stop).await;
    let attempts = fetch.attempts;
    let raw = match fetch.result {
        Ok(raw) => raw,
        Err(error) => {
            let failure = Failure {
                http_status: error.http_status(),
                code: error.code(),
                message: error.to_string(),
            };
            let ticket_id = id.into_string();
            return Fetched::Outcome(match error.disposition() {
                Disposition::Fatal | Disposition::RefreshTokenOnce => return Fetched::Fatal(error),
                Disposition::Abandon => return Fetched::Abandoned,
                Disposition::MarkDeleted => {
                    tracing::info!(ticket_id = %ticket_id, "ticket deleted upstream; rows kept, deleted_at set");
                    TicketOutcome::NotFound {
                        ticket_id,
                        error: failure.message,
                        attempts,
                    }
                }
                Disposition::MarkInvalid => {
                    tracing::warn!(ticket_id = %ticket_id, status = failure.http_status, code = failure.code, "the API calls this ticket id invalid; parked until enqueued again");
                    TicketOutcome::InvalidId {
                        ticket_id,
                        failure,
                        attempts,
                    }
                }
                Disposition::WaitForRateLimit
                | Disposition::RetryWithBackoff
                | Disposition::FailTicket => {
                    tracing::warn!(ticket_id = %ticket_id, status = failure.http_status, code = failure.code, attempt = attempts, error = %failure.message, "fetch failed; retried in a later cycle");
                    TicketOutcome::Failed {
                        ticket_id,
                        failure,
                        attempts,
                    }
                }
            });
        }
    };
    match normalize_ticket(&id, &raw, Utc::now()) {
        Ok(normalized) => {
            for warning in &normalized.warnings {
                tracing::warn!(ticket_id = %id, "{warning}");
            }
            let refresh_after = if normalized.record.is_open() {
                options.open_refresh
            } else {
                options.closed_refresh
            };
            Fetched::Outcome(TicketOutcome::Fetched {
                record: Box::new(normalized.record),
                refresh_after,
                attempts,
            })
        }
        Err(error) => {
            tracing::warn!(ticket_id = %id, error = %error, "unusable ticket body; retried in a later cycle");
            Fetched::Outcome(TicketOutcome::Failed {
                ticket_id: id.into_string(),
                failure: Failure {
                    http_status: Some(200),
                    code: Some(0),
                    message: error.to_string(),
                },
                attempts,
            })
        }
    }
}

/// The writer: batches outcomes and commits them. A batch the database rejects is retried
/// ticket by ticket, so one bad row costs only itself (it is marked failed and retried later).
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
            _ = sleep_until_opt(flush_deadline) => Some(None),
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
                match store
                    .write_batch(std::slice::from_ref(&outcome), FAILED_RETRY_DELAY)
                    .await
                {
                    Ok(r) => report.add(r),
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
                        report.add(store.write_batch(&[failed], FAILED_RETRY_DELAY).await?);
                    }
                }
            }
            Ok(report)
        }
    }
}

/// `host:pid:random`, fixed for the process: names its claims and its runs.
pub fn worker_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        // systemd services have no $HOSTNAME; the kernel always knows.
        // (/proc/sys is hidden under ProcSubset=pid: then /etc/hostname.)
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into());
        format!(
            "{host}:{}:{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )
    })
}

/// Records a cycle's start in `sync_runs`. A failure to record is logged, never fatal.
pub async fn start_recorded(store: &Store, helpdesk_id: &str, trigger: Trigger) -> Option<i64> {
    match store.start_run(helpdesk_id, trigger, worker_id()).await {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "cannot record the run in sync_runs"
            );
            None
        }
    }
}

/// Records how a cycle ended; returns the outcome label written.
pub async fn finish_recorded(
    store: &Store,
    run_id: Option<i64>,
    result: &Result<CycleReport, CycleError>,
    stalled: bool,
) -> &'static str {
    let empty = CycleReport::default();
    let (outcome, error, report) = match result {
        Ok(r) if stalled => (
            "stalled",
            Some("no progress within sync.stall_timeout".to_owned()),
            r,
        ),
        Ok(r) if r.interrupted => ("interrupted", Some("stopped on request".to_owned()), r),
        Ok(r) => ("ok", r.discovery_error.clone(), r),
        Err(CycleError::Fatal { error, report }) => {
            ("fatal", Some(error.to_string()), report.as_ref())
        }
        Err(CycleError::Database(e)) => ("failed", Some(format!("{e:#}")), &empty),
    };
    if let Some(run_id) = run_id
        && let Err(e) = store
            .finish_run(run_id, outcome, error.as_deref(), report)
            .await
    {
        tracing::warn!(
            error = format!("{e:#}"),
            run_id,
            "cannot complete the run in sync_runs"
        );
    }
    outcome
}
