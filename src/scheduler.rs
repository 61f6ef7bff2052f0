//! The daemon (`run`): one cycle at start, then one per `sync.schedule` tick; one syncer per
//! helpdesk across hosts (a Postgres advisory lock); a cycle without progress for
//! `sync.stall_timeout` is ended; SIGTERM stops claiming, lets requests in flight finish within
//! `sync.shutdown_grace`, commits, releases claims and exits 0. systemd: READY=1 after
//! migrations, WATCHDOG=1 while the loop is alive (no-ops without NOTIFY_SOCKET).
//! A webhook event that queued a ticket wakes the loop for a queue-only cycle (no discovery)
//! between ticks; the schedule itself does not move.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio_util::sync::CancellationToken;

use crate::config::{Credentials, Settings};
use crate::events::{EventKeys, EventState};
use crate::feishu::FeishuClient;
use crate::http::HttpState;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::runs::Trigger;
use crate::sync::{CycleError, CycleOptions, finish_recorded, run_cycle, start_recorded};

/// While another process holds the lock, check again this often.
const LOCK_RETRY: Duration = Duration::from_secs(5);
/// The sleeping loop wakes this often to prove it is alive (watchdog heartbeat).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// A session-level advisory lock per helpdesk, held on a connection of its own.
pub struct HelpdeskLock {
    conn: PgConnection,
    key: i64,
}

impl HelpdeskLock {
    /// Waits until this process is the only syncer of `helpdesk_id` (logging why it waits).
    /// Returns None when shutdown is requested first.
    /// `while_waiting` runs on every check (the daemon refreshes its watchdog heartbeat there:
    /// waiting for another syncer is healthy).
    pub async fn acquire(
        store: &Store,
        helpdesk_id: &str,
        shutdown: &CancellationToken,
        while_waiting: &(dyn Fn() + Sync),
    ) -> anyhow::Result<Option<Self>> {
        let mut conn = store.pool().acquire().await?.detach();
        let key: i64 = sqlx::query_scalar("SELECT hashtextextended('helpdesk-sync:' || $1, 0)")
            .bind(helpdesk_id)
            .fetch_one(&mut conn)
            .await?;
        let mut waited = false;
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut conn)
                .await
                .context("taking the helpdesk lock")?;
            if got {
                if waited {
                    tracing::info!(helpdesk_id, "obtained the helpdesk lock; syncing");
                }
                return Ok(Some(Self { conn, key }));
            }
            if !waited {
                let holder: Option<String> = sqlx::query_scalar(
                    "SELECT a.client_addr::text || ' pid ' || a.pid FROM pg_locks l
                     JOIN pg_stat_activity a USING (pid)
                     WHERE l.locktype = 'advisory' AND l.granted
                       AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 LIMIT 1",
                )
                .bind(key)
                .fetch_optional(&mut conn)
                .await
                .ok()
                .flatten();
                tracing::warn!(
                    helpdesk_id,
                    holder = holder.as_deref().unwrap_or("unknown"),
                    "another helpdesk-sync is syncing this helpdesk on this database; waiting for it to stop"
                );
                waited = true;
            }
            while_waiting();
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(LOCK_RETRY) => {}
            }
        }
    }

    /// Whether the lock's connection is still alive (a dropped connection drops the lock).
    pub async fn is_held(&mut self) -> bool {
        self.conn.ping().await.is_ok()
    }

    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }
}

/// Connects, retrying with capped backoff and one clear line per failure, until shutdown.
async fn connect_with_retry(
    settings: &Settings,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Store>> {
    let mut delay = Duration::from_secs(1);
    loop {
        match Store::connect(&settings.database).await {
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

/// Milliseconds on a monotonic clock, for heartbeats: a wall-clock step is not a stall.
fn now_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}

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
    store.migrate().await?;
    let heartbeat = Arc::new(AtomicI64::new(now_ms()));
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = spawn_watchdog(heartbeat.clone(), settings.sync.stall_timeout);

    let helpdesk_id = settings.feishu.helpdesk_id.trim().to_owned();
    let beat = || heartbeat.store(now_ms(), Ordering::Relaxed);
    // Listening before waiting for the lock: a standby answers Feishu's URL check, and the
    // events it accepts are queued durably for whichever daemon holds the lock.
    let metrics = Arc::new(Metrics::default());
    let last_outcome = Arc::new(Mutex::new(None));
    let wake = Arc::new(tokio::sync::Notify::new());
    if let Some(listen) = settings.http.listen {
        let events = event_keys.map(|keys| {
            let state = EventState {
                keys,
                store: store.clone(),
                wake: wake.clone(),
                metrics: metrics.clone(),
                helpdesk_id: helpdesk_id.clone(),
            };
            (settings.events.path.clone(), state)
        });
        let state = HttpState {
            metrics: metrics.clone(),
            store: store.clone(),
            last_outcome: last_outcome.clone(),
            events,
        };
        let addr = crate::http::serve(listen, state, shutdown.clone())
            .await
            .with_context(|| format!("cannot listen on http.listen = {listen}"))?;
        tracing::info!(address = %addr, "HTTP endpoint listening: /metrics /healthz /readyz");
        if settings.events.enabled() {
            tracing::info!(address = %addr, path = %settings.events.path, "receiving webhook events");
        }
    }
    let Some(mut lock) = HelpdeskLock::acquire(&store, &helpdesk_id, &shutdown, &beat).await?
    else {
        return Ok(());
    };
    let options = CycleOptions::from_settings(settings, None);
    let daemon = Daemon {
        store: store.clone(),
        client: FeishuClient::new(&settings.feishu, credentials)?.with_metrics(metrics.clone()),
        // A cycle woken by an event works the queue only: the ticket it named is due.
        event_options: options.queue_only(),
        options,
        helpdesk_id: helpdesk_id.clone(),
        stall_timeout: settings.sync.stall_timeout,
        heartbeat: heartbeat.clone(),
        metrics,
        last_outcome,
    };
    let schedule = &settings.sync.schedule;
    tracing::info!(helpdesk_id, schedule = %schedule, "daemon started");

    let events_on = settings.events.enabled();
    // The first cycle runs at start; then on each tick, or earlier for an event.
    let mut next_tick_at = Some(Utc::now());
    while !shutdown.is_cancelled() {
        let Some(tick) = next_tick_at else {
            tracing::error!("sync.schedule has no future tick; stopping");
            break;
        };
        // Sleep until the tick or an event, waking regularly to keep the heartbeat fresh.
        let scheduled = loop {
            heartbeat.store(now_ms(), Ordering::Relaxed);
            let left = (tick - Utc::now()).to_std().unwrap_or_default();
            if left.is_zero() {
                break Some(true);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break None,
                _ = wake.notified() => break Some(false),
                _ = tokio::time::sleep(left.min(HEARTBEAT)) => {}
            }
        };
        let Some(scheduled) = scheduled else {
            break;
        };
        if !lock.is_held().await {
            tracing::warn!("lost the helpdesk lock's connection; taking the lock again");
            let Some(again) = HelpdeskLock::acquire(&store, &helpdesk_id, &shutdown, &beat).await?
            else {
                break;
            };
            lock = again;
        }
        let started = Utc::now();
        if scheduled {
            if events_on {
                match store.prune_event_receipts().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(receipts = n, "pruned old event receipts"),
                    Err(e) => {
                        tracing::warn!(error = format!("{e:#}"), "cannot prune event receipts")
                    }
                }
            }
            run_one(&daemon, &shutdown, Trigger::Schedule).await;
        } else {
            run_one(&daemon, &shutdown, Trigger::Event).await;
        }
        if shutdown.is_cancelled() {
            break;
        }
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
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    lock.release().await;
    if let Some(w) = watchdog {
        w.abort();
    }
    tracing::info!("daemon stopped");
    Ok(())
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

/// What every cycle of the daemon shares.
struct Daemon {
    store: Store,
    client: FeishuClient,
    options: CycleOptions,
    event_options: CycleOptions,
    helpdesk_id: String,
    stall_timeout: Duration,
    heartbeat: Arc<AtomicI64>,
    metrics: Arc<Metrics>,
    /// Read by `/readyz`.
    last_outcome: Arc<Mutex<Option<String>>>,
}

/// One cycle, ended early if it makes no progress for `stall_timeout`. Logs one summary line.
async fn run_one(d: &Daemon, shutdown: &CancellationToken, trigger: Trigger) {
    let Daemon {
        store,
        client,
        options,
        event_options,
        helpdesk_id,
        stall_timeout,
        heartbeat,
        metrics,
        last_outcome,
    } = d;
    let stall_timeout = *stall_timeout;
    let cycle_stop = shutdown.child_token();
    let last_progress = Arc::new(AtomicI64::new(now_ms()));
    let watcher = {
        let last_progress = last_progress.clone();
        let cycle_stop = cycle_stop.clone();
        tokio::spawn(async move {
            let check =
                (stall_timeout / 10).clamp(Duration::from_millis(50), Duration::from_secs(5));
            loop {
                tokio::time::sleep(check).await;
                let idle_ms = now_ms() - last_progress.load(Ordering::Relaxed);
                if idle_ms > stall_timeout.as_millis() as i64 {
                    tracing::error!(
                        idle_s = idle_ms / 1000,
                        "the cycle made no progress within sync.stall_timeout; ending it"
                    );
                    cycle_stop.cancel();
                    return;
                }
            }
        })
    };
    let on_progress = |_| {
        let now = now_ms();
        last_progress.store(now, Ordering::Relaxed);
        heartbeat.store(now, Ordering::Relaxed);
    };
    let options = match trigger {
        Trigger::Event => event_options,
        _ => options,
    };
    let run_id = start_recorded(store, helpdesk_id, trigger).await;
    let result = run_cycle(store, client, options, &on_progress, cycle_stop.clone()).await;
    watcher.abort();
    let stalled = cycle_stop.is_cancelled() && !shutdown.is_cancelled();
    let outcome = finish_recorded(store, run_id, &result, stalled).await;
    metrics.observe_cycle(
        outcome,
        match &result {
            Ok(r) => Some(r),
            Err(CycleError::Fatal { report, .. }) => Some(report.as_ref()),
            Err(CycleError::Database(_)) => None,
        },
    );
    *last_outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome.to_owned());
    match result {
        Ok(r) => {
            let w = r.written;
            tracing::info!(
                outcome,
                due = r.due_at_start,
                changed = w.changed,
                unchanged = w.unchanged,
                not_found = w.not_found,
                invalid = w.invalid,
                failed = w.failed,
                listed = r.discovery.map_or(0, |d| d.listed),
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
    heartbeat.store(now_ms(), Ordering::Relaxed);
}

/// Pings systemd's watchdog while the heartbeat is fresh; a loop stuck past the stall timeout
/// (plus a margin) stops the pings and systemd restarts the service.
fn spawn_watchdog(
    heartbeat: Arc<AtomicI64>,
    stall_timeout: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()?;
    let limit_ms = (stall_timeout + Duration::from_secs(120)).as_millis() as i64;
    Some(tokio::spawn(async move {
        loop {
            if now_ms() - heartbeat.load(Ordering::Relaxed) < limit_ms {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::error!("the daemon loop is stuck; no longer feeding systemd's watchdog");
            }
            tokio::time::sleep(period / 2).await;
        }
    }))
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
