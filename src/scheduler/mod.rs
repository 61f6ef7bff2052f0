//! The daemon (`run`): one cycle at start, then one per `sync.schedule` tick; one syncer per
//! helpdesk across hosts ([`lock`]); a cycle without progress for `sync.stall_timeout` is ended
//! ([`watch`]); SIGTERM stops claiming, lets requests in flight finish within
//! `sync.shutdown_grace`, commits, releases claims and exits 0. systemd: READY=1 after
//! migrations, WATCHDOG=1 while the loop is alive (no-ops without NOTIFY_SOCKET).
//! A webhook event that queued a ticket wakes the loop for a queue-only cycle (no discovery)
//! between ticks, and so does a read-after-write re-fetch coming due (the detail answered an
//! older version than the event's, or 404: fetched again 5 s, 10 s, 20 s … later, at those
//! times, not at the next tick); the schedule itself does not move.

pub mod lock;
pub mod watch;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Credentials, Settings};
use crate::domain::CycleReport;
use crate::events::{EventKeys, EventState};
use crate::feishu::FeishuClient;
use crate::http::HttpState;
use crate::metrics::Metrics;
use crate::pace::SendLease;
use crate::store::Store;
use crate::store::runs::Trigger;
use crate::sync::{CycleError, CycleOptions, finish_recorded, run_cycle, start_recorded};
pub use lock::HelpdeskLock;
use watch::{Heartbeat, spawn_stall_watch, spawn_watchdog};

/// The sleeping loop wakes this often to prove it is alive (watchdog heartbeat).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Runs until `shutdown`; returns Ok after a clean stop.
/// `event_keys`: the `[events]` secrets when events are configured (served on `[http]`).
pub async fn run_daemon(
    settings: &Settings,
    credentials: Credentials,
    event_keys: Option<EventKeys>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(store) = connect_with_retry(settings, &shutdown).await? else {
        return Ok(());
    };
    if !store.apply_sla_settings(&settings.sla).await? {
        crate::store::sla::retry_sla_seeding(store.clone(), settings.sla.clone(), shutdown.clone());
    }
    let heartbeat = Heartbeat::default();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = spawn_watchdog(heartbeat.clone(), settings.sync.stall_timeout);
    let shared = Shared {
        metrics: Arc::new(Metrics::default()),
        last_outcome: Arc::new(Mutex::new(None)),
        wake: Arc::new(Notify::new()),
    };
    // Listening before waiting for the lock: a standby answers Feishu's URL check, and the
    // events it accepts are queued durably for whichever daemon holds the lock.
    serve_http(settings, &store, event_keys, &shared, &shutdown).await?;
    let helpdesk_id = settings.feishu.helpdesk_id.trim().to_owned();
    let beat = || heartbeat.beat();
    // Nothing is sent before the lock is ours, nor once it lapses.
    let lease = SendLease::lapsed();
    let Some(lock) = HelpdeskLock::acquire(&store, &lease, &helpdesk_id, &shutdown, &beat).await?
    else {
        return Ok(());
    };
    let mut options = CycleOptions::from_settings(settings, None);
    // However busy the queue (events, a conversation backlog), discovery runs at its ticks.
    options.claim_for = Some(crate::sync::options::claim_for_schedule(
        &settings.sync.schedule,
    ));
    let daemon = Daemon {
        client: FeishuClient::new(&settings.feishu, credentials)?
            .with_metrics(shared.metrics.clone())
            .with_lease(lease.clone()),
        lease,
        store,
        // A cycle woken by an event works the queue only: the ticket it named is due.
        event_options: options.queue_only(),
        options,
        helpdesk_id,
        stall_timeout: settings.sync.stall_timeout,
        events_on: settings.events.enabled(),
        heartbeat,
        shared,
    };
    tracing::info!(helpdesk_id = %daemon.helpdesk_id, schedule = %settings.sync.schedule, "daemon started");
    let lock = daemon
        .serve(&settings.sync.schedule, lock, &shutdown)
        .await?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(lock) = lock {
        lock.release().await;
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    tracing::info!("daemon stopped");
    Ok(())
}

/// What the loop, the HTTP endpoint and the event handler share.
struct Shared {
    metrics: Arc<Metrics>,
    /// Outcome of the last finished cycle, read by `/readyz`.
    last_outcome: Arc<Mutex<Option<String>>>,
    /// An event queued a ticket: run a queue-only cycle now.
    wake: Arc<Notify>,
}

/// `/metrics`, `/healthz`, `/readyz` and the event path on `http.listen`, when set.
async fn serve_http(
    settings: &Settings,
    store: &Store,
    event_keys: Option<EventKeys>,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(listen) = settings.http.listen else {
        return Ok(());
    };
    let events = event_keys.map(|keys| {
        let state = EventState {
            keys,
            store: store.clone(),
            wake: shared.wake.clone(),
            metrics: shared.metrics.clone(),
            helpdesks: settings.helpdesks().iter().map(|h| h.id.clone()).collect(),
            messages: settings.sync.messages,
        };
        (settings.events.path.clone(), state)
    });
    let state = HttpState {
        metrics: shared.metrics.clone(),
        store: store.clone(),
        last_outcome: shared.last_outcome.clone(),
        events,
        settings: Some(Arc::new(settings.clone())),
    };
    let addr = crate::http::serve(listen, state, shutdown.clone())
        .await
        .with_context(|| format!("cannot listen on http.listen = {listen}"))?;
    tracing::info!(address = %addr, "HTTP endpoint listening: /metrics /healthz /readyz");
    if settings.events.enabled() {
        tracing::info!(address = %addr, path = %settings.events.path, "receiving webhook events");
    }
    Ok(())
}

/// Connects and migrates, retrying with capped backoff and one clear line per failure, until
/// shutdown.
async fn connect_with_retry(
    settings: &Settings,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Store>> {
    let mut delay = Duration::from_secs(1);
    loop {
        let connected = match Store::connect(&settings.database).await {
            Ok(store) => store.migrate().await.map(|()| store),
            Err(error) => Err(error),
        };
        match connected {
            Ok(store) => return Ok(Some(store)),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    retry_in_s = delay.as_secs(),
                    "database unreachable; retrying"
                );
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

/// For a cycle that ran from `started` to `now`: how many ticks fired meanwhile (skipped) and
/// the next tick to run at.
pub fn next_tick(
    schedule: &cron::Schedule,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (usize, Option<DateTime<Utc>>) {
    let skipped = schedule.after(&started).take_while(|t| *t <= now).count();
    (skipped, schedule.after(&now).next())
}

/// What woke the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// A scheduled tick: a full cycle.
    Tick,
    /// A webhook event queued a ticket: a queue-only cycle.
    Event,
    /// A read-after-write re-fetch came due: a queue-only cycle.
    Refetch,
}

/// What every cycle of the daemon shares.
struct Daemon {
    store: Store,
    /// The client's permission to send, renewed by the helpdesk lock.
    lease: SendLease,
    client: FeishuClient,
    options: CycleOptions,
    event_options: CycleOptions,
    helpdesk_id: String,
    stall_timeout: Duration,
    events_on: bool,
    heartbeat: Heartbeat,
    shared: Shared,
}

impl Daemon {
    /// The loop: the first cycle at once, then on each tick, or earlier for an event. Returns
    /// the lock to release (None when shutdown came while it was being taken again).
    async fn serve(
        &self,
        schedule: &cron::Schedule,
        mut lock: HelpdeskLock,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<HelpdeskLock>> {
        let mut next_tick_at = Some(Utc::now());
        let mut refetch_at = None;
        while !shutdown.is_cancelled() {
            let Some(tick) = next_tick_at else {
                tracing::error!("sync.schedule has no future tick; stopping");
                break;
            };
            let Some(wake) = self
                .wait_for_tick_or_event(tick, refetch_at, shutdown)
                .await
            else {
                break;
            };
            let scheduled = wake == Wake::Tick;
            if wake == Wake::Refetch {
                tracing::debug!("a read-after-write re-fetch is due");
            }
            lock = match self.keep_lock(lock, shutdown).await? {
                Some(lock) => lock,
                None => return Ok(None),
            };
            let started = Utc::now();
            if scheduled {
                self.prune_event_receipts().await;
                self.run_one(shutdown, lock.lost(), Trigger::Schedule).await;
            } else {
                self.run_one(shutdown, lock.lost(), Trigger::Event).await;
            }
            if shutdown.is_cancelled() {
                break;
            }
            refetch_at = self.next_refetch(started).await;
            if scheduled {
                // Ticks that fired while the cycle ran are skipped, never queued up.
                let (skipped, next) = next_tick(schedule, started, Utc::now());
                if skipped > 0 {
                    tracing::info!(
                        skipped,
                        "the cycle outlasted scheduled ticks; they were skipped"
                    );
                }
                next_tick_at = next;
            }
        }
        Ok(Some(lock))
    }

    /// Sleeps until `tick`, an event, or `refetch_at` (a read-after-write re-fetch due),
    /// waking regularly to keep the heartbeat fresh; None on shutdown.
    async fn wait_for_tick_or_event(
        &self,
        tick: DateTime<Utc>,
        refetch_at: Option<DateTime<Utc>>,
        shutdown: &CancellationToken,
    ) -> Option<Wake> {
        loop {
            self.heartbeat.beat();
            let now = Utc::now();
            let left = (tick - now).to_std().unwrap_or_default();
            if left.is_zero() {
                return Some(Wake::Tick);
            }
            let refetch_in = refetch_at.map(|at| (at - now).to_std().unwrap_or_default());
            if refetch_in.is_some_and(|d| d.is_zero()) {
                return Some(Wake::Refetch);
            }
            let nap = left.min(HEARTBEAT).min(refetch_in.unwrap_or(HEARTBEAT));
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = self.shared.wake.notified() => return Some(Wake::Event),
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// When the earliest read-after-write re-fetch is due, for the loop to wake then. One that
    /// was due before the cycle that just ran started and is still waiting (claimed elsewhere,
    /// say) is left to the next tick: the loop never spins on it.
    async fn next_refetch(&self, cycle_started: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.store.next_lag_refetch_at().await {
            Ok(at) => at.filter(|at| *at > cycle_started),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot read when read-after-write re-fetches are due; they wait for the next tick"
                );
                None
            }
        }
    }

    /// The lock, taken again if it was lost; None on shutdown while waiting.
    async fn keep_lock(
        &self,
        lock: HelpdeskLock,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<HelpdeskLock>> {
        if lock.is_held() {
            return Ok(Some(lock));
        }
        lock.release().await;
        tracing::warn!("the helpdesk lock was lost; taking it again");
        let beat = || self.heartbeat.beat();
        HelpdeskLock::acquire(&self.store, &self.lease, &self.helpdesk_id, shutdown, &beat).await
    }

    async fn prune_event_receipts(&self) {
        if !self.events_on {
            return;
        }
        match self.store.prune_event_receipts().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(receipts = n, "pruned old event receipts"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot prune event receipts"),
        }
    }

    /// One cycle, ended early if it makes no progress for `stall_timeout`; recorded in
    /// `sync_runs`, the metrics and `/readyz`, and summed up in one log line.
    /// A lost lock (`lock_lost`) stops the cycle taking work at once.
    async fn run_one(
        &self,
        shutdown: &CancellationToken,
        lock_lost: &CancellationToken,
        trigger: Trigger,
    ) {
        let cycle_stop = shutdown.child_token();
        let progress = Heartbeat::default();
        let watcher = spawn_stall_watch(progress.clone(), self.stall_timeout, cycle_stop.clone());
        let fence = stop_when(lock_lost.clone(), cycle_stop.clone());
        let on_progress = |_| {
            progress.beat();
            self.heartbeat.beat();
        };
        let options = match trigger {
            Trigger::Event => &self.event_options,
            _ => &self.options,
        };
        let store = &self.store;
        let run_id = start_recorded(store, &self.helpdesk_id, trigger).await;
        let result = run_cycle(
            store,
            &self.client,
            options,
            &on_progress,
            cycle_stop.clone(),
        )
        .await;
        watcher.abort();
        fence.abort();
        let stalled =
            cycle_stop.is_cancelled() && !shutdown.is_cancelled() && !lock_lost.is_cancelled();
        let outcome = finish_recorded(store, run_id, &result, stalled).await;
        let report: Option<&CycleReport> = match &result {
            Ok(r) => Some(r),
            Err(CycleError::Fatal { report, .. }) => Some(report.as_ref()),
            Err(CycleError::Database(_)) => None,
        };
        self.shared
            .metrics
            .observe_cycle(&self.helpdesk_id, outcome, report);
        *self
            .shared
            .last_outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(outcome.to_owned());
        log_cycle(outcome, trigger, &result);
        self.heartbeat.beat();
    }
}

/// Cancels `stop` once `cause` is cancelled; abort the handle when no longer needed.
pub fn stop_when(cause: CancellationToken, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = cause.cancelled() => stop.cancel(),
            _ = stop.cancelled() => {}
        }
    })
}

/// The one line per cycle operators read.
fn log_cycle(outcome: &str, trigger: Trigger, result: &Result<CycleReport, CycleError>) {
    match result {
        Ok(r) => {
            let w = r.written;
            tracing::info!(
                outcome,
                due = r.due_at_start,
                changed = w.changed,
                unchanged = w.unchanged,
                older_skipped = w.older_skipped,
                not_found = w.not_found,
                invalid = w.invalid,
                failed = w.failed,
                messages_synced = w.messages_synced,
                messages_failed = w.messages_failed,
                listed = r.discovery.map_or(0, |d| d.listed),
                stored_from_list = r.discovery.map_or(0, |d| d.stored_from_list),
                list_items_skipped = r.discovery.map_or(0, |d| d.skipped),
                list_rows_verified = w.list_rows_verified,
                detail_requests = r.api.detail_requests,
                list_requests = r.api.list_requests,
                rate_limited = r.api.rate_limited,
                elapsed_ms = r.elapsed.as_millis() as u64,
                trigger = trigger.as_str(),
                "cycle finished"
            );
        }
        Err(CycleError::Fatal { error, .. }) => {
            tracing::error!(outcome = "fatal", error = %error, "cycle stopped: credentials rejected; the next tick tries again");
        }
        Err(CycleError::Database(error)) => {
            tracing::error!(
                outcome = "failed",
                error = format!("{error:#}"),
                "cycle failed on the database; the next tick tries again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, h, m, s).unwrap()
    }

    #[test]
    fn ticks_during_a_long_cycle_are_skipped_not_queued() {
        let every_5_min: cron::Schedule = "0 */5 * * * *".parse().unwrap();
        // A short cycle: nothing skipped, next tick is the next 5-minute mark.
        assert_eq!(
            next_tick(&every_5_min, at(10, 0, 0), at(10, 1, 30)),
            (0, Some(at(10, 5, 0)))
        );
        // A 12-minute cycle overran the 10:05 and 10:10 ticks: both skipped, next is 10:15.
        assert_eq!(
            next_tick(&every_5_min, at(10, 0, 0), at(10, 12, 0)),
            (2, Some(at(10, 15, 0)))
        );
        // Ending exactly on a tick counts it as skipped; the next one is 5 minutes on.
        assert_eq!(
            next_tick(&every_5_min, at(10, 0, 0), at(10, 5, 0)),
            (1, Some(at(10, 10, 0)))
        );
    }
}
