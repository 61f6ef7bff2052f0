//! Change history, written in the ticket's own transaction: a `ticket_versions` row when the
//! content differs from the latest version, a `ticket_status_history` row when the status
//! differs from the latest transition. Both compare with what is stored, so re-syncing or
//! re-normalizing unchanged content adds nothing.

use sqlx::{Postgres, Transaction};

/// Records versions and status transitions of `ticket_ids` (as now stored in `tickets`).
pub async fn record_history(
    tx: &mut Transaction<'_, Postgres>,
    ticket_ids: &[String],
) -> anyhow::Result<()> {
    if ticket_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO ticket_versions
            (ticket_id, content_hash, observed_at, status, updated_at, agent_owner_id, raw)
         SELECT t.ticket_id, md5(t.raw::text), t.fetched_at, t.status, t.updated_at,
                t.agent_owner_id, t.raw
         FROM tickets t
         LEFT JOIN LATERAL (
             SELECT v.content_hash FROM ticket_versions v
             WHERE v.ticket_id = t.ticket_id ORDER BY v.version_id DESC LIMIT 1
         ) last ON true
         WHERE t.ticket_id = ANY($1) AND last.content_hash IS DISTINCT FROM md5(t.raw::text)
         ORDER BY t.ticket_id",
    )
    .bind(ticket_ids)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO ticket_status_history
            (ticket_id, from_status, to_status, changed_at, changed_at_source, observed_at)
         SELECT t.ticket_id, last.to_status, t.status, COALESCE(t.updated_at, t.fetched_at),
                CASE WHEN t.updated_at IS NULL THEN 'observed' ELSE 'updated_at' END, t.fetched_at
         FROM tickets t
         LEFT JOIN LATERAL (
             SELECT true AS seen, h.to_status FROM ticket_status_history h
             WHERE h.ticket_id = t.ticket_id ORDER BY h.transition_id DESC LIMIT 1
         ) last ON true
         WHERE t.ticket_id = ANY($1)
           AND (last.seen IS NULL OR last.to_status IS DISTINCT FROM t.status)
         ORDER BY t.ticket_id",
    )
    .bind(ticket_ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
