//! One syncer per helpdesk: a session-level Postgres advisory lock, held on a connection of
//! its own, so two processes (a second host by mistake, or `sync` beside `run`) never both work.

use std::time::Duration;

use anyhow::Context;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// While another process holds the lock, check again this often.
const LOCK_RETRY: Duration = Duration::from_secs(5);

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
