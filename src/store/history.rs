//! Change history, written in the ticket's own transaction: a `ticket_versions` row when the
//! content differs from the latest version, a `ticket_status_history` row when the status
//! differs from the latest transition, and the ticket's stays (`ticket_status_stays`) rebuilt
//! from its transitions. Versions and transitions compare with what is stored, so re-syncing or
//! re-normalizing unchanged content adds nothing.
//!
//! When a transition happened, by the first rule that applies (`changed_at_source`): the
//! ticket's `closed_at` for an entry into a closed status; its `created_at` for a never-updated
//! ticket seen for the first time (it has been in that status since creation); its
//! `updated_at`; else the time we fetched it. Time before the first observation that none of
//! these explain becomes an unobserved stay, never credited to the first observed status. A
//! ticket seen closed twice with a later close time was reopened and closed again unseen: the
//! second close is recorded as a transition (closed → closed) and counts as a reopen.

use sqlx::{Postgres, Transaction};

/// Records versions and status transitions of `ticket_ids` (as now stored in `tickets`), and
/// rebuilds their stays. `only_list_rows`: every one of them was just written from a list row,
/// so no list history is to be upgraded to a detail's (those steps match nothing then).
pub async fn record_history(
    tx: &mut Transaction<'_, Postgres>,
    ticket_ids: &[String],
    only_list_rows: bool,
) -> anyhow::Result<()> {
    if ticket_ids.is_empty() {
        return Ok(());
    }
    if !only_list_rows {
        upgrade_list_history(tx, ticket_ids).await?;
    }
    sqlx::query(
        // The content's hash once per ticket (the text of its JSON is not made twice).
        "WITH current AS MATERIALIZED (
             SELECT t.ticket_id, md5(t.raw::text) AS content_hash, t.fetched_at, t.status,
                    t.updated_at, t.agent_owner_id, t.raw, t.content_source
             FROM tickets t WHERE t.ticket_id = ANY($1)
         )
         INSERT INTO ticket_versions
            (ticket_id, content_hash, observed_at, status, updated_at, agent_owner_id, raw,
             content_source)
         SELECT c.ticket_id, c.content_hash, c.fetched_at, c.status, c.updated_at,
                c.agent_owner_id, c.raw, c.content_source
         FROM current c
         LEFT JOIN LATERAL (
             SELECT v.content_hash FROM ticket_versions v
             WHERE v.ticket_id = c.ticket_id ORDER BY v.version_id DESC LIMIT 1
         ) last ON true
         WHERE last.content_hash IS DISTINCT FROM c.content_hash
         ORDER BY c.ticket_id",
    )
    .bind(ticket_ids)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO ticket_status_history
            (ticket_id, from_status, to_status, changed_at, changed_at_source, observed_at,
             content_source, source_updated_at)
         SELECT t.ticket_id, last.to_status, t.status, e.changed_at, e.source, t.fetched_at,
                t.content_source, t.updated_at
         FROM tickets t
         LEFT JOIN ticket_status_codes sc ON sc.code = t.status
         LEFT JOIN LATERAL (
             SELECT true AS seen, h.to_status, h.changed_at, h.changed_at_source
             FROM ticket_status_history h
             WHERE h.ticket_id = t.ticket_id ORDER BY h.transition_id DESC LIMIT 1
         ) last ON true
         CROSS JOIN LATERAL (
             SELECT CASE
                 WHEN COALESCE(sc.is_closed, t.status >= 50) AND t.closed_at IS NOT NULL
                     THEN t.closed_at
                 WHEN last.seen IS NULL AND t.updated_at IS NULL AND t.created_at IS NOT NULL
                     THEN t.created_at
                 ELSE COALESCE(t.updated_at, t.fetched_at) END AS changed_at,
                    CASE
                 WHEN COALESCE(sc.is_closed, t.status >= 50) AND t.closed_at IS NOT NULL
                     THEN 'closed_at'
                 WHEN last.seen IS NULL AND t.updated_at IS NULL AND t.created_at IS NOT NULL
                     THEN 'created_at'
                 WHEN t.updated_at IS NOT NULL THEN 'updated_at'
                 ELSE 'observed' END AS source
         ) e
         WHERE t.ticket_id = ANY($1)
           AND (last.seen IS NULL OR last.to_status IS DISTINCT FROM t.status
                -- Closed before and closed now, at a later close time: it was reopened and
                -- closed again between two fetches. The second close is a transition too.
                OR (e.source = 'closed_at' AND last.changed_at_source = 'closed_at'
                    AND t.closed_at > last.changed_at))
         ORDER BY t.ticket_id",
    )
    .bind(ticket_ids)
    .execute(&mut **tx)
    .await?;
    rebuild_stays(tx, ticket_ids).await
}

/// A detail that replaces list content replaces what the list row recorded instead of adding
/// to it, whatever the two clocks say: the list row's version (the latest, of the row's
/// `updated_at`: `list_updated_at`, or the detail's own) becomes the detail's, in place (dropped
/// when the detail shows the version before it again), and the row's transition stays only if
/// the detail shows the same status at the same `updated_at` (else the detail's transition
/// replaces it). So list and detail content never make history together that did not happen
/// upstream.
async fn upgrade_list_history(
    tx: &mut Transaction<'_, Postgres>,
    ticket_ids: &[String],
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE ticket_versions v SET
            content_hash = md5(t.raw::text), raw = t.raw, status = t.status,
            agent_owner_id = t.agent_owner_id, updated_at = t.updated_at,
            content_source = 'detail'
         FROM tickets t
         WHERE t.ticket_id = ANY($1) AND t.content_source = 'detail'
           AND v.ticket_id = t.ticket_id AND v.content_source = 'list'
           AND (v.updated_at IS NOT DISTINCT FROM t.updated_at
                OR v.updated_at IS NOT DISTINCT FROM t.list_updated_at)
           AND v.version_id = (SELECT max(version_id) FROM ticket_versions l
                               WHERE l.ticket_id = t.ticket_id)",
    )
    .bind(ticket_ids)
    .execute(&mut **tx)
    .await?;
    // The detail showed the version before the list row's again: one version, not two.
    sqlx::query(
        "DELETE FROM ticket_versions v USING tickets t
         WHERE t.ticket_id = ANY($1) AND v.ticket_id = t.ticket_id
           AND v.version_id = (SELECT max(version_id) FROM ticket_versions l
                               WHERE l.ticket_id = t.ticket_id)
           AND v.content_hash = (SELECT p.content_hash FROM ticket_versions p
                                 WHERE p.ticket_id = t.ticket_id AND p.version_id < v.version_id
                                 ORDER BY p.version_id DESC LIMIT 1)",
    )
    .bind(ticket_ids)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "DELETE FROM ticket_status_history h USING tickets t
         WHERE t.ticket_id = ANY($1) AND t.content_source = 'detail'
           AND h.ticket_id = t.ticket_id AND h.content_source = 'list'
           AND ((h.source_updated_at IS NOT DISTINCT FROM t.updated_at
                 AND h.to_status IS DISTINCT FROM t.status)
                -- On the list's clock: its time is not the detail's either.
                OR (h.source_updated_at IS DISTINCT FROM t.updated_at
                    AND h.source_updated_at IS NOT DISTINCT FROM t.list_updated_at))",
    )
    .bind(ticket_ids)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE ticket_status_history h SET content_source = 'detail'
         FROM tickets t
         WHERE t.ticket_id = ANY($1) AND t.content_source = 'detail'
           AND h.ticket_id = t.ticket_id AND h.content_source = 'list'
           AND h.source_updated_at IS NOT DISTINCT FROM t.updated_at",
    )
    .bind(ticket_ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Rebuilds the stays of `ticket_ids` from their transitions, and marks the backlog days they
/// touch for refresh (one SQL function, `rebuild_ticket_status_stays`, also used by the
/// migration that introduced them). Also called for tickets found deleted: their last stay now
/// ends at the deletion.
pub async fn rebuild_stays(
    tx: &mut Transaction<'_, Postgres>,
    ticket_ids: &[String],
) -> anyhow::Result<()> {
    sqlx::query("SELECT rebuild_ticket_status_stays($1)")
        .bind(ticket_ids)
        .execute(&mut **tx)
        .await?;
    // Their SLA clocks and business times follow from what was just written.
    super::sla::refresh_tickets(tx, ticket_ids).await
}
