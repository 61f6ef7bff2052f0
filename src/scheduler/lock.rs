//! One syncer per helpdesk: a session-level Postgres advisory lock, held on a connection of
//! its own, so two processes (a second host by mistake, or `sync` beside `run`) never both work.
//!
//! The advisory lock dies with its session (a Postgres restart, a network cut), and the holder
//! would not know. So the lock is fenced (table `sync_lock`):
//! - the holder renews its row every [`RENEW_EVERY`] through the lock's session; a renewal
//!   that fails, times out ([`RENEW_TIMEOUT`]) or finds a newer epoch marks the lock lost
//!   ([`HelpdeskLock::lost`]) and the cycle stops taking work;
//! - a new holder raises the epoch, then waits until the previous holder's last renewal is
//!   [`TAKEOVER_WAIT`] old (by then that holder has noticed and stopped) before it works;
//! - a claim is taken only while the claimant's epoch is current ([`Store::set_fence`]).
//!
//! Waiting for the lock survives a database outage: it reconnects with backoff.

use std::time::Duration;

use anyhow::Context;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::pace::SendLease;
use crate::store::Store;
use crate::store::lock::{self as sql, Fence};
use crate::sync::worker_id;

/// While another process holds the lock, check again this often.
const LOCK_RETRY: Duration = Duration::from_secs(5);
/// The holder proves it still holds the lock this often.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// A renewal not answered within this counts as a lost lock.
pub const RENEW_TIMEOUT: Duration = Duration::from_secs(2);
/// A new holder starts working only once the previous holder's last renewal is this old: the
/// previous holder notices a lost lock within `RENEW_EVERY + RENEW_TIMEOUT` and stops.
pub const TAKEOVER_WAIT: Duration = Duration::from_secs(5);
/// How long a successful renewal lets this process send requests ([`SendLease`]): it lapses
/// before a new holder may start.
pub const SEND_LEASE: Duration = Duration::from_millis(3_500);
/// The longest pause between attempts while the database is unreachable.
const DATABASE_RETRY_CAP: Duration = Duration::from_secs(30);

/// A session-level advisory lock per helpdesk, held (and renewed) on a connection of its own.
pub struct HelpdeskLock {
    /// Cancelled once the lock is, or may be, lost.
    lost: CancellationToken,
    /// Asks the renewal task to unlock and close.
    release: CancellationToken,
    renewal: JoinHandle<()>,
}

/// What one attempt to take the lock came to.
enum Attempt {
    /// The connection, the lock's key, its fence, and when the last renewal was sent.
    Taken(PgConnection, i64, Fence, tokio::time::Instant),
    Busy,
}

impl HelpdeskLock {
    /// Waits until this process is the only syncer of `helpdesk_id` (logging why it waits);
    /// while the database is unreachable it retries with backoff. Returns None when shutdown
    /// is requested first. `lease` (the client's) is renewed while the lock is held and
    /// revoked once it is lost. `while_waiting` runs on every check (the daemon refreshes its
    /// watchdog heartbeat there: waiting for another syncer is healthy).
    pub async fn acquire(
        store: &Store,
        lease: &SendLease,
        helpdesk_id: &str,
        shutdown: &CancellationToken,
        while_waiting: &(dyn Fn() + Sync),
    ) -> anyhow::Result<Option<Self>> {
        let mut conn: Option<PgConnection> = None;
        let mut waited = false;
        let mut db_delay = Duration::from_secs(1);
        loop {
            let wait = match try_take(store, &mut conn, helpdesk_id, &mut waited).await {
                Ok(Attempt::Taken(conn, key, fence, renewed)) => {
                    if waited {
                        tracing::info!(helpdesk_id, "obtained the helpdesk lock; syncing");
                    }
                    lease.renew_until(renewed + SEND_LEASE);
                    let lock = Self::hold(store, lease.clone(), conn, key, fence);
                    return Ok(Some(lock));
                }
                Ok(Attempt::Busy) => {
                    db_delay = Duration::from_secs(1);
                    LOCK_RETRY
                }
                Err(error) => {
                    conn = None;
                    tracing::warn!(
                        error = format!("{error:#}"),
                        retry_in_s = db_delay.as_secs(),
                        "database unreachable; retrying"
                    );
                    let wait = db_delay;
                    db_delay = (db_delay * 2).min(DATABASE_RETRY_CAP);
                    wait
                }
            };
            while_waiting();
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Cancelled once the lock is, or may be, lost: stop taking work.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Whether the lock is still ours (its session alive, its epoch current).
    pub fn is_held(&self) -> bool {
        !self.lost.is_cancelled()
    }

    pub async fn release(self) {
        self.release.cancel();
        let _ = self.renewal.await;
    }

    /// Holds the taken lock: renews it every [`RENEW_EVERY`] until released or lost.
    fn hold(
        store: &Store,
        lease: SendLease,
        mut conn: PgConnection,
        key: i64,
        fence: Fence,
    ) -> Self {
        store.set_fence(Some(fence.clone()));
        let lost = CancellationToken::new();
        let release = CancellationToken::new();
        let (lost_tx, release_rx) = (lost.clone(), release.clone());
        let renewal = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = release_rx.cancelled() => {
                        lease.revoke();
                        let _ = tokio::time::timeout(RENEW_TIMEOUT, sql::unlock(&mut conn, key, &fence)).await;
                        let _ = tokio::time::timeout(RENEW_TIMEOUT, conn.close()).await;
                        return;
                    }
                    _ = tokio::time::sleep(RENEW_EVERY) => {}
                }
                let sent = tokio::time::Instant::now();
                let renewed =
                    tokio::time::timeout(RENEW_TIMEOUT, sql::renew(&mut conn, &fence)).await;
                let why = match renewed {
                    Ok(Ok(true)) => {
                        lease.renew_until(sent + SEND_LEASE);
                        continue;
                    }
                    Ok(Ok(false)) => "another process took the lock (a newer epoch)".to_owned(),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(_) => format!("no answer within {RENEW_TIMEOUT:?}"),
                };
                tracing::error!(
                    helpdesk_id = fence.helpdesk_id,
                    epoch = fence.epoch,
                    error = why,
                    "lost the helpdesk lock's session; stopping work until it is taken again"
                );
                lease.revoke();
                lost_tx.cancel();
                return;
            }
        });
        Self {
            lost,
            release,
            renewal,
        }
    }
}

/// One attempt: connect (if needed), take the advisory lock, fence it. `conn` keeps the
/// connection between attempts while another process holds the lock.
async fn try_take(
    store: &Store,
    conn: &mut Option<PgConnection>,
    helpdesk_id: &str,
    waited: &mut bool,
) -> anyhow::Result<Attempt> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(
            store
                .pool()
                .acquire()
                .await
                .context("connecting for the helpdesk lock")?
                .detach(),
        ),
    };
    let key = sql::lock_key(c, helpdesk_id).await?;
    let got = sql::try_advisory_lock(c, key).await?;
    if !got {
        if !*waited {
            let holder = sql::lock_holder(c, key).await;
            tracing::warn!(
                helpdesk_id,
                holder = holder.as_deref().unwrap_or("unknown"),
                "another helpdesk-sync is syncing this helpdesk on this database; waiting for it to stop"
            );
            *waited = true;
        }
        return Ok(Attempt::Busy);
    }
    let mut renewed = tokio::time::Instant::now();
    let fenced = sql::raise_epoch(c, helpdesk_id, worker_id(), TAKEOVER_WAIT.as_secs_f64()).await?;
    let fence = Fence {
        helpdesk_id: helpdesk_id.to_owned(),
        epoch: fenced.epoch,
    };
    if fenced.wait_seconds > 0.0 {
        tracing::warn!(
            helpdesk_id,
            previous_holder = fenced.previous_holder.as_deref().unwrap_or("unknown"),
            wait_ms = (fenced.wait_seconds * 1000.0) as u64,
            "took the helpdesk lock from a holder that did not release it; waiting until it must have stopped"
        );
        tokio::time::sleep(Duration::from_secs_f64(fenced.wait_seconds)).await;
        renewed = tokio::time::Instant::now();
        // Our own lease must have survived the wait.
        if !sql::renew(c, &fence).await? {
            anyhow::bail!("the helpdesk lock was taken over while waiting for its previous holder");
        }
    }
    let Some(c) = conn.take() else {
        anyhow::bail!("the lock's connection vanished");
    };
    Ok(Attempt::Taken(c, key, fence, renewed))
}
