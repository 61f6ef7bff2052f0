//! The daemon (`run`): every configured helpdesk gets a loop of its own (its lock, queue,
//! discovery, cycles), all sharing one Feishu app (one token, one pacer per endpoint: the
//! app's budget, split evenly between the helpdesks with due work) and one HTTP endpoint. Each
//! loop: one cycle at start, then one per `sync.schedule` tick; one syncer per
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
use tracing::Instrument;

use crate::config::{Credentials, HelpdeskSettings, Settings};
use crate::domain::CycleReport;
use crate::events::{EventKeys, EventState};
use crate::feishu::FeishuClient;
use crate::feishu::client::FeishuApp;
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
///
/// Every configured helpdesk gets a loop of its own ([`Daemon::serve`]): its lock, its queue,
/// its discovery, its `sync_runs` rows and cycles. They share the database pool, the HTTP
/// endpoint and one [`FeishuApp`] (one tenant token, one pacer per endpoint), so together they
/// keep to the app's limits. One helpdesk failing (a revoked token) fails its cycles only.
pub async fn run_daemon(
    settings: &Settings,
    event_keys: Option<EventKeys>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Every helpdesk's secrets are read before anything starts: a bad one is exit 2 now.
    let helpdesks: Vec<(&HelpdeskSettings, Credentials)> = settings
        .select_helpdesks(None)?
        .into_iter()
        .map(|h| Ok((h, h.credentials(&settings.feishu)?)))
        .collect::<Result<_, crate::config::ConfigError>>()?;
    let app = FeishuApp::new(&settings.feishu)?;
    let Some(store) = connect_with_retry(settings, &shutdown).await? else {
        return Ok(());
    };
    if !store.apply_sla_settings(&settings.sla).await? {
        crate::store::sla::retry_sla_seeding(store.clone(), settings.sla.clone(), shutdown.clone());
    }
    prepare_helpdesks(&store, settings).await;
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
    let mut options = CycleOptions::from_settings(settings, None);
    // However busy the queue (events, a conversation backlog), discovery runs at its ticks.
    options.claim_for = Some(crate::sync::options::claim_for_schedule(
        &settings.sync.schedule,
    ));
    // An event wakes every helpdesk's loop: the one whose ticket it queued finds it due.
    let wakes: Vec<Arc<Notify>> = helpdesks.iter().map(|_| Arc::new(Notify::new())).collect();
    let forward = forward_wakes(shared.wake.clone(), wakes.clone());
    tracing::info!(
        helpdesks = helpdesks.len(),
        schedule = %settings.sync.schedule,
        "daemon started"
    );
    let loops = helpdesks.into_iter().zip(wakes).enumerate().map(
        |(index, ((helpdesk, credentials), wake))| {
            let daemon = Daemon {
                lease: SendLease::lapsed(),
                client: None,
                store: store.for_helpdesk(&helpdesk.id),
                event_options: options.queue_only().with_helpdesk(&helpdesk.id),
                options: options.clone().with_helpdesk(&helpdesk.id),
                helpdesk_id: helpdesk.id.clone(),
                adopts_unowned: index == 0,
                stall_timeout: settings.sync.stall_timeout,
                events_on: settings.events.enabled(),
                heartbeat: heartbeat.clone(),
                shared: shared.clone(),
                wake,
            };
            let span = tracing::info_span!("helpdesk", helpdesk = %helpdesk.name);
            let (app, schedule, shutdown) = (app.clone(), &settings.sync.schedule, &shutdown);
            async move {
                let id = daemon.helpdesk_id.clone();
                let result = daemon.start(app, credentials, schedule, shutdown).await;
                if let Err(error) = &result {
                    tracing::error!(
                        helpdesk_id = %id,
                        error = format!("{error:#}"),
                        "this helpdesk's loop stopped; the others go on"
                    );
                }
                result
            }
            .instrument(span)
        },
    );
    let results = futures::future::join_all(loops).await;
    forward.abort();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(w) = watchdog {
        w.abort();
    }
    tracing::info!("daemon stopped");
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(())
}

/// At every start (migrate, sync, run, enqueue): the configured helpdesks' names go into the
/// `helpdesks` table the reporting views show, queue rows no helpdesk owns (a database synced
/// before several helpdesks were supported) become their stored ticket's helpdesk's, else the
/// first configured helpdesk's, and rows another helpdesk holds go back to their ticket's
/// ([`Store::return_rows_to_their_helpdesk`]). Failures are logged; the next start tries again.
pub async fn prepare_helpdesks(store: &Store, settings: &Settings) {
    let names: Vec<crate::store::helpdesks::HelpdeskName> = settings
        .helpdesks()
        .iter()
        .map(|h| crate::store::helpdesks::HelpdeskName {
            helpdesk_id: h.id.clone(),
            name: h.name.clone(),
        })
        .collect();
    if let Err(e) = store.register_helpdesks(&names).await {
        tracing::warn!(
            error = format!("{e:#}"),
            "cannot record the helpdesks' names; the next start tries again"
        );
    }
    let Some(first) = settings.helpdesks().first() else {
        return;
    };
    match store.adopt_unowned_queue_rows(&first.id).await {
        Ok(0) => {}
        Ok(rows) => tracing::info!(
            rows,
            helpdesk_id = %first.id,
            "queue rows without a helpdesk were adopted (by their ticket's helpdesk, else the first configured)"
        ),
        Err(e) => tracing::warn!(
            error = format!("{e:#}"),
            "cannot adopt queue rows without a helpdesk; the next start tries again"
        ),
    }
    let configured: Vec<String> = settings.helpdesks().iter().map(|h| h.id.clone()).collect();
    match store.return_rows_to_their_helpdesk(&configured).await {
        Ok(0) => {}
        Ok(rows) => tracing::info!(
            rows,
            "queue rows held by another helpdesk than their ticket's went back to it and are due now"
        ),
        Err(e) => tracing::warn!(
            error = format!("{e:#}"),
            "cannot return queue rows to their ticket's helpdesk; the next start tries again"
        ),
    }
}

/// Passes every wake-up (an event queued a ticket) on to each helpdesk's loop.
fn forward_wakes(from: Arc<Notify>, to: Vec<Arc<Notify>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            from.notified().await;
            for wake in &to {
                wake.notify_one();
            }
        }
    })
}

/// The longest a cycle waits to adopt queue rows without a helpdesk (see `run_one`).
const ADOPT_WITHIN: Duration = Duration::from_secs(5);

/// What the loop, the HTTP endpoint and the event handler share.
#[derive(Clone)]
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

/// What every cycle of one helpdesk's loop shares.
struct Daemon {
    /// The database, scoped to this helpdesk ([`Store::for_helpdesk`]).
    store: Store,
    /// The client's permission to send, renewed by the helpdesk lock.
    lease: SendLease,
    /// This helpdesk's handle on the shared app; set once the lock is taken.
    client: Option<FeishuClient>,
    /// A scheduled cycle's knobs (discovery of this helpdesk).
    options: CycleOptions,
    /// A cycle an event woke: the queue only.
    event_options: CycleOptions,
    /// The helpdesk this loop syncs.
    helpdesk_id: String,
    /// The first configured helpdesk adopts queue rows without one before each cycle.
    adopts_unowned: bool,
    /// A cycle with no progress for this long is ended.
    stall_timeout: Duration,
    /// Whether event receipts are pruned at ticks.
    events_on: bool,
    /// The process's heartbeat (systemd watchdog), beaten by every loop.
    heartbeat: Heartbeat,
    /// The metrics, `/readyz`'s last outcome and the events' wake-up.
    shared: Shared,
    /// Wakes this loop for a queue-only cycle (forwarded from `shared.wake`).
    wake: Arc<Notify>,
}

impl Daemon {
    /// Takes this helpdesk's lock (waiting while another process holds it), then serves its
    /// loop until shutdown and releases the lock.
    async fn start(
        mut self,
        app: Arc<FeishuApp>,
        credentials: Credentials,
        schedule: &cron::Schedule,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let heartbeat = self.heartbeat.clone();
        let beat = || heartbeat.beat();
        // Nothing is sent before the lock is ours, nor once it lapses.
        let Some(lock) =
            HelpdeskLock::acquire(&self.store, &self.lease, &self.helpdesk_id, shutdown, &beat)
                .await?
        else {
            return Ok(());
        };
        self.client = Some(
            FeishuClient::for_helpdesk(app, credentials)?
                .with_metrics(self.shared.metrics.clone())
                .with_lease(self.lease.clone()),
        );
        tracing::info!(helpdesk_id = %self.helpdesk_id, "syncing this helpdesk");
        let lock = self.serve(schedule, lock, shutdown).await?;
        if let Some(lock) = lock {
            lock.release().await;
        }
        Ok(())
    }

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
        // The last cycle's claim budget ran out with work due (a backlog).
        let mut work_left;
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
                work_left = self.run_one(shutdown, lock.lost(), Trigger::Schedule).await;
            } else {
                work_left = self.run_one(shutdown, lock.lost(), Trigger::Event).await;
            }
            if shutdown.is_cancelled() {
                break;
            }
            refetch_at = match lock.is_held() {
                true => self.next_refetch(started).await,
                // The lock is taken again first (and the database may be away).
                false => None,
            };
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
            if work_left {
                // A backlog: the next full cycle (discovery first) starts now, not at a tick an
                // interval away: the daemon never idles while work is due.
                tracing::info!(
                    "work is left after the cycle's claim budget; the next cycle starts now"
                );
                next_tick_at = Some(Utc::now());
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
                _ = self.wake.notified() => return Some(Wake::Event),
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
    ) -> bool {
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
        let Some(client) = &self.client else {
            return false;
        };
        if self.adopts_unowned && !lock_lost.is_cancelled() {
            // Events accepted by an older binary, or by a path that did not know the helpdesk.
            // Bounded: with the database away this would wait out the pool's timeout before a
            // cycle that fails anyway, delaying the lock's retake and its retry line.
            let adopt = store.adopt_unowned_queue_rows(&self.helpdesk_id);
            match tokio::time::timeout(ADOPT_WITHIN, adopt).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot adopt queue rows without a helpdesk"
                ),
                Err(_) => tracing::warn!(
                    within_s = ADOPT_WITHIN.as_secs(),
                    "adopting queue rows without a helpdesk did not finish in time; the next cycle tries again"
                ),
            }
        }
        if lock_lost.is_cancelled() {
            // Nothing may be sent without the lock; the loop takes it again first.
            tracing::info!("the helpdesk lock was lost before the cycle began; it is skipped");
            return false;
        }
        let run_id = start_recorded(store, &self.helpdesk_id, trigger).await;
        let result = run_cycle(store, client, options, &on_progress, cycle_stop.clone()).await;
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
        result.is_ok_and(|r| r.work_left)
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
