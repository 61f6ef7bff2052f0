//! One sync cycle: claim due tickets, fetch them (paced, concurrent), normalize, write in batches.
//!
//! The cycle is a sequence of named steps ([`run_cycle`]): begin (leftover claims, the writer),
//! check the credentials, gather ids (the operator's query, list-API discovery), work the queue,
//! finish (last batch, claims released, the report). The modules:
//! - [`options`]: the knobs, read from the config once.
//! - [`work`]: the queue loop: claims as request slots free up, lane by lane, one job per
//!   claim, the stop and grace period. The lanes are peers, each a step with claims of its
//!   own: `detail` (`GET /tickets/:id` → rows) and [`messages`] (the conversation).
//! - [`writer`]: the batched, transactional write path every step's outcome goes through.
//! - [`reports`]: after the tickets, the custom field catalog and the daily backlog table.
//! - [`runs`]: the worker id and the `sync_runs` record.
//! - [`rates`]: learned paces read at the start, stored while the cycle runs.
//!
//! A fatal API error (credentials) or a shutdown request stops new claims; requests in flight
//! finish within a grace period; unworked claims are released.

mod detail;
pub mod messages;
pub mod options;
pub mod rates;
pub mod reports;
pub mod runs;
mod work;
pub mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::discover::{DiscoveryError, discover};
use crate::domain::ClientStatsSnapshot;
pub use crate::domain::{CycleReport, Progress};
use crate::feishu::{ApiError, Disposition, FeishuClient};
use crate::store::Store;
pub use options::{CycleOptions, MIN_CLAIM_LEASE};
pub use runs::{finish_recorded, start_recorded, worker_id};
use writer::Writer;
pub use writer::{FAILED_RETRY_DELAY, FLUSH_INTERVAL};

/// Why a cycle could not complete.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    /// Credentials are wrong: nothing more can be fetched. Stored data was not touched.
    #[error("sync stopped: {error}")]
    Fatal {
        error: ApiError,
        report: Box<CycleReport>,
    },
    /// The store failed: a read or claim, a batch the writer committed, or the writer task
    /// itself. Built only from store results (no blanket conversion from any error).
    #[error("database error during sync: {0:#}")]
    Database(anyhow::Error),
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
    let mut cycle = Cycle {
        store,
        client,
        options,
        on_progress,
        shutdown,
        started: Instant::now(),
        api_before: client.stats(),
        worker: worker_id(),
        pages: AtomicU64::new(0),
        time_unit: messages::TimeUnit::from_observed(None, 0),
        report: CycleReport::default(),
    };
    // Started first: every step's outcome goes through it.
    let writer = Writer::spawn(store, options.batch_size);
    cycle.release_leftover_claims().await?;
    rates::seed(store, client).await;
    if options.messages {
        let (observed, ignored_in_a_row) = store
            .observed_time_unit()
            .await
            .map_err(CycleError::Database)?;
        cycle.time_unit = messages::TimeUnit::from_observed(observed.as_deref(), ignored_in_a_row);
    }
    cycle.check_credentials().await?;
    cycle.gather_ids().await?;
    let worked = rates::saving_while(store, client, work::work_queue(&cycle, &writer.tx)).await?;
    let written = writer.finish().await;
    let report = cycle.finish(worked, written).await;
    // The catalog was read last.
    rates::save(store, client).await;
    report
}

/// One cycle's context and the report it fills in.
struct Cycle<'a> {
    store: &'a Store,
    client: &'a FeishuClient,
    options: &'a CycleOptions,
    on_progress: &'a (dyn Fn(Progress) + Sync),
    shutdown: CancellationToken,
    started: Instant,
    api_before: ClientStatsSnapshot,
    worker: &'static str,
    /// Discovery pages read so far (progress is reported from a shared reference).
    pages: AtomicU64,
    /// What the messages endpoint reads `time_start` in, as observed.
    time_unit: messages::TimeUnit,
    report: CycleReport,
}

impl Cycle<'_> {
    /// Claims of a process that died (we hold the helpdesk lock) go back to the queue now.
    async fn release_leftover_claims(&self) -> Result<(), CycleError> {
        let store = self.store;
        let leftover = store
            .release_foreign_claims(self.worker)
            .await
            .map_err(CycleError::Database)?
            + store
                .release_message_claims(None, Some(self.worker))
                .await
                .map_err(CycleError::Database)?;
        if leftover > 0 {
            tracing::warn!(
                tickets = leftover,
                "released claims left by a worker that stopped without releasing them"
            );
        }
        Ok(())
    }

    /// The app credentials, checked once before discovery or claims instead of in every worker.
    async fn check_credentials(&mut self) -> Result<(), CycleError> {
        let store = self.store;
        let due = async { store.count_due(store.now().await?).await };
        let needs_api =
            self.options.discovery.is_some() || due.await.map_err(CycleError::Database)? > 0;
        if !needs_api {
            return Ok(());
        }
        match self.client.tenant_token().await {
            Ok(_) => Ok(()),
            Err(error) if error.disposition() == Disposition::Fatal => {
                tracing::error!(error = %error, "cannot obtain a tenant access token");
                Err(self.stopped_before_fetching(error))
            }
            Err(error) => {
                // Network trouble: the per-request policy (retries, then `failed`) takes it
                // from here.
                tracing::warn!(error = %error, "cannot obtain a tenant access token yet");
                Ok(())
            }
        }
    }

    /// The id sources before the queue is worked: the operator's query, then discovery.
    /// The list API failing costs discovery only; credentials rejected end the cycle.
    async fn gather_ids(&mut self) -> Result<(), CycleError> {
        if let Some(query) = &self.options.known_ids_query {
            self.report.from_query = tokio::select! {
                added = crate::discover::enqueue_from_query(self.store, query) => added,
                _ = self.shutdown.cancelled() => None,
            };
        }
        let Some(discovery) = &self.options.discovery else {
            return Ok(());
        };
        let on_page = |pages: u64| {
            self.pages.store(pages, Ordering::Relaxed);
            (self.on_progress)(Progress {
                pages_listed: pages,
                ..Progress::default()
            });
        };
        let found = discover(self.store, self.client, discovery, &on_page, &self.shutdown).await;
        match found {
            Ok(found) => self.report.discovery = Some(found),
            Err(DiscoveryError::Api(error)) if error.disposition() == Disposition::Fatal => {
                tracing::error!(endpoint = "list", error = %error, "discovery stopped: credentials rejected");
                return Err(self.stopped_before_fetching(error));
            }
            Err(DiscoveryError::Database(e)) => return Err(CycleError::Database(e)),
            Err(error @ DiscoveryError::Interrupted) => {
                // A stop (shutdown, stall, lost lock), not a failure of discovery: the cause,
                // when it is one, is logged at error where it happened.
                tracing::info!(
                    endpoint = "list",
                    "discovery stopped (shutdown, stall or lost lock); the watermark stays where it was"
                );
                self.report.discovery_error = Some(error.to_string());
            }
            Err(error) => {
                tracing::error!(endpoint = "list", error = %error, "discovery incomplete this cycle; the watermark stays where it was");
                self.report.discovery_error = Some(error.to_string());
            }
        }
        Ok(())
    }

    /// Everything still claimed by us was not written: give it back; then the report.
    async fn finish(
        mut self,
        worked: work::Worked,
        written: anyhow::Result<crate::domain::BatchReport>,
    ) -> Result<CycleReport, CycleError> {
        let released = self.store.release_all_claims(self.worker).await;
        let released_messages = self
            .store
            .release_message_claims(Some(self.worker), None)
            .await;
        let written = written.map_err(CycleError::Database)?;
        let released = released.map_err(CycleError::Database)?
            + released_messages.map_err(CycleError::Database)?;
        self.record_time_unit().await;
        if let Some(e) = worked.db_error {
            return Err(CycleError::Database(e));
        }
        if worked.fatal.is_none() && !self.shutdown.is_cancelled() && self.options.refresh_reports {
            self.refresh_reports().await;
        }
        let report = &mut self.report;
        report.due_at_start = worked.due_at_start;
        report.claimed = worked.claimed;
        report.work_left = worked.budget_spent;
        report.written = written;
        report.released = released;
        report.api = self.client.stats().since(&self.api_before);
        report.elapsed = self.started.elapsed();
        report.interrupted = self.shutdown.is_cancelled();
        match worked.fatal {
            Some(error) => Err(CycleError::Fatal {
                error,
                report: Box::new(self.report),
            }),
            None => Ok(self.report),
        }
    }

    /// What the conversations showed about `time_start`, kept for the next cycles.
    async fn record_time_unit(&self) {
        if self.options.messages
            && let Some((unit, ignored_in_a_row)) = self.time_unit.to_record()
            && let Err(e) = self.store.record_time_unit(unit, ignored_in_a_row).await
        {
            tracing::warn!(
                error = format!("{e:#}"),
                "cannot record the messages time unit"
            );
        }
    }

    /// The catalog and the backlog: failures are logged and reported, never fatal.
    async fn refresh_reports(&mut self) {
        match reports::refresh_catalog(self.store, self.client, &self.shutdown).await {
            Ok(fields) => self.report.catalog_fields = fields,
            Err(error) => {
                tracing::warn!(endpoint = "catalog", error = %error, "custom field catalog not refreshed; tried again next cycle");
                self.report.report_errors.push(error);
            }
        }
        // Calendars or targets edited since the last cycle apply to every ticket.
        match self.store.refresh_sla().await {
            Ok(crate::store::sla::SlaRefresh::Done(_)) => {}
            Ok(crate::store::sla::SlaRefresh::Postponed) => {
                let error = "SLA results: postponed, an open edit of a calendar or target holds \
                             a lock; applied at a later cycle"
                    .to_owned();
                tracing::warn!(error = %error, "SLA results not refreshed; tried again next cycle");
                self.report.report_errors.push(error);
            }
            Err(error) => {
                let error = format!("SLA results: {error:#}");
                tracing::warn!(error = %error, "SLA results not refreshed; tried again next cycle");
                self.report.report_errors.push(error);
            }
        }
        match self.store.refresh_daily_backlog().await {
            Ok(rows) => self.report.backlog_rows = Some(rows),
            Err(error) => {
                let error = format!("daily backlog: {error:#}");
                tracing::warn!(error = %error, "daily backlog not refreshed; tried again next cycle");
                self.report.report_errors.push(error);
            }
        }
    }

    /// The fatal result of a cycle that stopped before claiming anything.
    fn stopped_before_fetching(&mut self, error: ApiError) -> CycleError {
        let mut report = std::mem::take(&mut self.report);
        report.api = self.client.stats().since(&self.api_before);
        report.elapsed = self.started.elapsed();
        CycleError::Fatal {
            error,
            report: Box::new(report),
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
