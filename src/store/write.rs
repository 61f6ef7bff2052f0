//! Writing tickets whose content changed: ticket rows (`upsert_tickets`), then their child rows
//! (`children`), change history (`history`) and, last, the people they name, in the caller's
//! transaction. Used by the batch
//! write (`upsert`), list rows (`listed`) and re-normalization (`raw`).

use std::collections::HashSet;

use sqlx::{Postgres, Transaction};

use crate::domain::{ContentSource, TicketRecord};

/// Writes tickets whose content changed (all of them when `force`): ticket rows, child rows and
/// history. Returns the ids written.
pub async fn write_records(
    tx: &mut Transaction<'_, Postgres>,
    records: &[&TicketRecord],
    force: bool,
) -> anyhow::Result<HashSet<String>> {
    let changed = upsert_tickets(tx, records, force).await?;
    let changed_records: Vec<&TicketRecord> = records
        .iter()
        .copied()
        .filter(|r| changed.contains(r.ticket.ticket_id.as_str()))
        .collect();
    super::children::replace_children(tx, &changed_records).await?;
    let mut ids: Vec<String> = changed.iter().cloned().collect();
    ids.sort_unstable();
    // List rows alone (force rewrites keep whatever source was stored): nothing to upgrade.
    let only_list_rows = !force
        && changed_records
            .iter()
            .all(|r| r.ticket.content_source == ContentSource::List);
    super::history::record_history(tx, &ids, only_list_rows).await?;
    // Last: the people rows shared by every ticket are locked until the commit from here.
    super::children::upsert_people(tx, &changed_records).await?;
    Ok(changed)
}

/// Inserts or updates ticket rows; returns the ids whose row was written (new or changed).
/// `force` rewrites unchanged rows too (for re-normalization).
pub async fn upsert_tickets(
    tx: &mut Transaction<'_, Postgres>,
    records: &[&TicketRecord],
    force: bool,
) -> anyhow::Result<HashSet<String>> {
    if records.is_empty() {
        return Ok(HashSet::new());
    }
    macro_rules! column {
        ($field:ident) => {
            records
                .iter()
                .map(|r| r.ticket.$field.clone())
                .collect::<Vec<_>>()
        };
    }
    let ids: Vec<String> = records
        .iter()
        .map(|r| r.ticket.ticket_id.as_str().to_owned())
        .collect();
    let rows: Vec<(String,)> = sqlx::query_as(
        "INSERT INTO tickets AS t (
            ticket_id, helpdesk_id, guest_id, ticket_type, status, score, channel, solve,
            created_at, updated_at, closed_at, closed_by_id, agent_owner_id,
            dissatisfaction_reason_zh_cn, dissatisfaction_reason_en_us, dissatisfaction_reason_ja_jp,
            agent_service_duration_minutes, agent_first_response_duration_seconds,
            bot_service_duration_seconds, agent_resolution_time_seconds, actual_processing_time_seconds,
            agent_entry_time, agent_first_response_time, agent_last_response_time,
            raw, fetched_at, deleted_at,
            content_source, detail_fetched_at, detail_updated_at, tags_known, listed_at, list_raw,
            list_updated_at)
         SELECT u.ticket_id, u.helpdesk_id, u.guest_id, u.ticket_type, u.status, u.score, u.channel,
                u.solve, u.created_at, u.updated_at, u.closed_at, u.closed_by_id, u.agent_owner_id,
                u.zh_cn, u.en_us, u.ja_jp, u.asd, u.afrd, u.bsd, u.art, u.apt,
                u.aet, u.afrt, u.alrt, u.raw::jsonb, u.fetched_at, NULL,
                u.source,
                CASE WHEN u.source = 'detail' THEN u.fetched_at END,
                CASE WHEN u.source = 'detail' THEN u.updated_at END,
                u.source = 'detail',
                CASE WHEN u.source = 'list' THEN u.fetched_at END,
                u.list_raw::jsonb,
                CASE WHEN u.source = 'list' THEN u.updated_at END
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int2[], $5::int2[], $6::int2[],
                     $7::int2[], $8::int2[], $9::timestamptz[], $10::timestamptz[],
                     $11::timestamptz[], $12::text[], $13::text[], $14::text[], $15::text[],
                     $16::text[], $17::float8[], $18::int8[], $19::int8[], $20::int8[],
                     $21::int8[], $22::timestamptz[], $23::timestamptz[], $24::timestamptz[],
                     $25::text[], $26::timestamptz[], $28::text[], $29::text[])
              AS u(ticket_id, helpdesk_id, guest_id, ticket_type, status, score, channel, solve,
                   created_at, updated_at, closed_at, closed_by_id, agent_owner_id,
                   zh_cn, en_us, ja_jp, asd, afrd, bsd, art, apt, aet, afrt, alrt, raw, fetched_at,
                   source, list_raw)
         ON CONFLICT (ticket_id) DO UPDATE SET
            helpdesk_id = EXCLUDED.helpdesk_id, guest_id = EXCLUDED.guest_id,
            ticket_type = EXCLUDED.ticket_type, status = EXCLUDED.status, score = EXCLUDED.score,
            channel = EXCLUDED.channel, solve = EXCLUDED.solve, created_at = EXCLUDED.created_at,
            updated_at = EXCLUDED.updated_at, closed_at = EXCLUDED.closed_at,
            closed_by_id = EXCLUDED.closed_by_id, agent_owner_id = EXCLUDED.agent_owner_id,
            dissatisfaction_reason_zh_cn = EXCLUDED.dissatisfaction_reason_zh_cn,
            dissatisfaction_reason_en_us = EXCLUDED.dissatisfaction_reason_en_us,
            dissatisfaction_reason_ja_jp = EXCLUDED.dissatisfaction_reason_ja_jp,
            agent_service_duration_minutes = EXCLUDED.agent_service_duration_minutes,
            agent_first_response_duration_seconds = EXCLUDED.agent_first_response_duration_seconds,
            bot_service_duration_seconds = EXCLUDED.bot_service_duration_seconds,
            agent_resolution_time_seconds = EXCLUDED.agent_resolution_time_seconds,
            actual_processing_time_seconds = EXCLUDED.actual_processing_time_seconds,
            agent_entry_time = EXCLUDED.agent_entry_time,
            agent_first_response_time = EXCLUDED.agent_first_response_time,
            agent_last_response_time = EXCLUDED.agent_last_response_time,
            raw = EXCLUDED.raw, fetched_at = EXCLUDED.fetched_at,
            -- A detail proves the ticket exists; re-normalizing (force) proves nothing, and
            -- neither does a list row (which never writes over a deleted ticket, below).
            deleted_at = CASE WHEN $27 OR EXCLUDED.content_source = 'list' THEN t.deleted_at
                              ELSE NULL END,
            -- Provenance: re-normalizing (force) keeps it; a detail clears the list row.
            content_source = CASE WHEN $27 THEN t.content_source ELSE EXCLUDED.content_source END,
            detail_fetched_at = CASE WHEN NOT $27 AND EXCLUDED.content_source = 'detail'
                THEN EXCLUDED.detail_fetched_at ELSE t.detail_fetched_at END,
            detail_updated_at = CASE WHEN NOT $27 AND EXCLUDED.content_source = 'detail'
                THEN EXCLUDED.detail_updated_at ELSE t.detail_updated_at END,
            tags_known = t.tags_known OR (NOT $27 AND EXCLUDED.tags_known),
            listed_at = COALESCE(EXCLUDED.listed_at, t.listed_at),
            list_raw = CASE WHEN $27 THEN t.list_raw ELSE EXCLUDED.list_raw END,
            -- Kept by a detail: the list row it answered is not stored again.
            list_updated_at = CASE WHEN NOT $27 AND EXCLUDED.content_source = 'list'
                THEN EXCLUDED.list_updated_at ELSE t.list_updated_at END
         WHERE $27 OR ((t.raw IS DISTINCT FROM EXCLUDED.raw OR t.deleted_at IS NOT NULL
                        OR t.content_source IS DISTINCT FROM EXCLUDED.content_source)
                       AND CASE
                           -- A list row never brings back a ticket its detail called deleted;
                           -- whether it is newer was decided under the row lock (listed.rs).
                           WHEN EXCLUDED.content_source = 'list' THEN t.deleted_at IS NULL
                           -- A detail always replaces list content, whatever the list's clock
                           -- says; it never replaces an older detail's (read-after-write lag).
                           ELSE (EXCLUDED.updated_at < CASE WHEN t.content_source = 'list'
                                     THEN t.detail_updated_at ELSE t.updated_at END) IS NOT TRUE
                           END)
         RETURNING t.ticket_id",
    )
    .bind(&ids)
    .bind(column!(helpdesk_id))
    .bind(column!(guest_id))
    .bind(column!(ticket_type))
    .bind(column!(status))
    .bind(column!(score))
    .bind(column!(channel))
    .bind(column!(solve))
    .bind(column!(created_at))
    .bind(column!(updated_at))
    .bind(column!(closed_at))
    .bind(column!(closed_by_id))
    .bind(column!(agent_owner_id))
    .bind(column!(dissatisfaction_reason_zh_cn))
    .bind(column!(dissatisfaction_reason_en_us))
    .bind(column!(dissatisfaction_reason_ja_jp))
    .bind(column!(agent_service_duration_minutes))
    .bind(column!(agent_first_response_duration_seconds))
    .bind(column!(bot_service_duration_seconds))
    .bind(column!(agent_resolution_time_seconds))
    .bind(column!(actual_processing_time_seconds))
    .bind(column!(agent_entry_time))
    .bind(column!(agent_first_response_time))
    .bind(column!(agent_last_response_time))
    .bind(column!(raw))
    .bind(column!(fetched_at))
    .bind(force)
    .bind(
        records
            .iter()
            .map(|r| r.ticket.content_source.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(column!(list_raw))
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}
