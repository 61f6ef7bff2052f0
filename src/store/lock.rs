//! The helpdesk lock's SQL: the session-level advisory lock and its fence row (`sync_lock`).
//! The protocol (renewals, takeover waits, the send lease) is `scheduler::lock`'s; this module
//! only says how each step is asked of Postgres, on the lock's own connection.

use anyhow::Context;
use sqlx::postgres::PgConnection;

/// The lock's epoch for one helpdesk, as taken by this process: claims are taken only while
/// it is current (`store::queue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub helpdesk_id: String,
    /// Raised by every new holder; a holder whose epoch is no longer the row's has lost it.
    pub epoch: i64,
}

/// What raising the epoch found.
#[derive(Debug, Clone, PartialEq)]
pub struct Fenced {
    /// Our epoch.
    pub epoch: i64,
    /// Seconds to wait until the previous holder (one that did not release) must have stopped.
    pub wait_seconds: f64,
    /// Who held it before (worker id), if anyone.
    pub previous_holder: Option<String>,
}

/// The advisory lock key of a helpdesk.
pub async fn lock_key(conn: &mut PgConnection, helpdesk_id: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT hashtextextended('helpdesk-sync:' || $1, 0)")
            .bind(helpdesk_id)
            .fetch_one(conn)
            .await?,
    )
}

/// Takes the session-level advisory lock if it is free.
pub async fn try_advisory_lock(conn: &mut PgConnection, key: i64) -> anyhow::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(conn)
        .await
        .context("taking the helpdesk lock")
}

/// Where the session holding the advisory lock comes from (`address pid N`), if it can be seen.
pub async fn lock_holder(conn: &mut PgConnection, key: i64) -> Option<String> {
    sqlx::query_scalar(
        "SELECT a.client_addr::text || ' pid ' || a.pid FROM pg_locks l
         JOIN pg_stat_activity a USING (pid)
         WHERE l.locktype = 'advisory' AND l.granted
           AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 LIMIT 1",
    )
    .bind(key)
    .fetch_optional(conn)
    .await
    .ok()
    .flatten()
}

/// Raises the epoch for `holder`; says how long the previous holder may still be working.
pub async fn raise_epoch(
    conn: &mut PgConnection,
    helpdesk_id: &str,
    holder: &str,
    takeover_wait_seconds: f64,
) -> anyhow::Result<Fenced> {
    let (epoch, wait_seconds, previous_holder): (i64, f64, Option<String>) = sqlx::query_as(
        "WITH prev AS (SELECT holder, renewed_at FROM sync_lock WHERE helpdesk_id = $1)
         INSERT INTO sync_lock AS l (helpdesk_id, epoch, holder)
         VALUES ($1, 1, $2)
         ON CONFLICT (helpdesk_id) DO UPDATE
            SET epoch = l.epoch + 1, holder = EXCLUDED.holder, taken_at = now(), renewed_at = now()
         RETURNING l.epoch,
            COALESCE((SELECT GREATEST(0, EXTRACT(EPOCH FROM
                        renewed_at + make_interval(secs => $3) - now()))::float8
                      FROM prev WHERE holder IS NOT NULL AND holder <> $2), 0),
            (SELECT holder FROM prev)",
    )
    .bind(helpdesk_id)
    .bind(holder)
    .bind(takeover_wait_seconds)
    .fetch_one(conn)
    .await
    .context("fencing the helpdesk lock")?;
    Ok(Fenced {
        epoch,
        wait_seconds,
        previous_holder,
    })
}

/// Proves the epoch is still current: false when another process took the lock since.
pub async fn renew(conn: &mut PgConnection, fence: &Fence) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE sync_lock SET renewed_at = now() WHERE helpdesk_id = $1 AND epoch = $2",
    )
    .bind(&fence.helpdesk_id)
    .bind(fence.epoch)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A clean release: the next holder need not wait.
pub async fn unlock(conn: &mut PgConnection, key: i64, fence: &Fence) -> anyhow::Result<()> {
    sqlx::query("UPDATE sync_lock SET holder = NULL WHERE helpdesk_id = $1 AND epoch = $2")
        .bind(&fence.helpdesk_id)
        .bind(fence.epoch)
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
