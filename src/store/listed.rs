//! List rows in Postgres: writing listed tickets (under a lock on what is stored, so a detail
//! written meanwhile is never overwritten by an older row), and the self-verification of list
//! rows against the details of the same version (`list_field_agreement`). The list's
//! `updated_at` may run on another clock than the detail's: each list row a detail answers
//! counts the difference (`list_clock_offsets`), and the difference most pairs share is the
//! offset that pairs a row with the detail of its version.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use super::Store;
use super::messages::SameVersion;
use crate::domain::{FieldAgreement, FieldCheck, ListRowsState, ListTrust, TicketRecord};
use crate::normalize::listed::compare_with_detail;

/// What is stored of a ticket when its list row arrives.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredContent {
    pub ticket_id: String,
    pub updated_at: Option<DateTime<Utc>>,
    pub raw: String,
    pub deleted: bool,
    /// `'detail'` or `'list'`: whose clock `updated_at` is in.
    pub content_source: String,
    /// The `updated_at` the last stored list row showed (kept when a detail replaced it).
    pub list_updated_at: Option<DateTime<Utc>>,
}

/// What writing one page of list rows did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListWrite {
    /// Tickets whose content the rows changed (new ones included).
    pub stored: u64,
}

/// What comparing list rows with their details found, per field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Tickets whose list row was compared with their detail.
    pub tickets: u64,
    /// Fields found to differ for the first time: no longer taken from list rows.
    pub newly_distrusted: Vec<String>,
    /// Tickets whose detail is the version their stored list row showed, no field differing,
    /// with the `updated_at` that row showed (on the list's clock): the detail completes that
    /// row, it is no news when the row made the conversation due already.
    pub same_version: SameVersion,
}

impl Store {
    /// The fields list rows are trusted for, as verified so far.
    pub async fn list_trust(&self) -> anyhow::Result<ListTrust> {
        Ok(ListRowsState {
            fields: self.list_agreement().await?,
            unverified_tickets: 0,
        }
        .trust())
    }

    /// How far the list's `updated_at` runs ahead of the detail's for the same version, in
    /// milliseconds (0 until list rows answered by details agree on one).
    pub async fn list_clock_offset_ms(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT list_clock_offset_ms()")
            .fetch_one(&self.pool)
            .await?)
    }

    /// The verification so far, field by field.
    pub async fn list_agreement(&self) -> anyhow::Result<Vec<FieldAgreement>> {
        Ok(sqlx::query_as(
            "SELECT field, agreed, differed, missing, trusted FROM list_field_agreement
             ORDER BY field",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The verification so far and the tickets still waiting for the detail that verifies them.
    pub async fn list_rows_state(&self) -> anyhow::Result<ListRowsState> {
        let unverified: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tickets WHERE content_source = 'list'")
                .fetch_one(&self.pool)
                .await?;
        Ok(ListRowsState {
            fields: self.list_agreement().await?,
            unverified_tickets: unverified,
        })
    }

    /// Writes the list rows of `ids` in one transaction: `build` sees what is stored of each
    /// (locked until commit) and returns the record to write, or `None` to leave it.
    pub async fn write_list_rows<F>(
        &self,
        ids: &[String],
        mut build: F,
    ) -> anyhow::Result<ListWrite>
    where
        F: FnMut(&str, Option<&StoredContent>) -> Option<TicketRecord>,
    {
        let mut tx = self.pool.begin().await?;
        let stored: HashMap<String, StoredContent> = sqlx::query_as::<_, StoredContent>(
            "SELECT ticket_id, updated_at, raw::text AS raw, deleted_at IS NOT NULL AS deleted,
                    content_source, list_updated_at
             FROM tickets WHERE ticket_id = ANY($1) ORDER BY ticket_id FOR UPDATE",
        )
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|s| (s.ticket_id.clone(), s))
        .collect();
        let records: Vec<TicketRecord> = ids
            .iter()
            .filter_map(|id| build(id, stored.get(id)))
            .collect();
        let refs: Vec<&TicketRecord> = records.iter().collect();
        let changed = super::write::write_records(&mut tx, &refs, false).await?;
        let mut changed_ids: Vec<String> = changed.iter().cloned().collect();
        changed_ids.sort_unstable();
        super::messages::ticket_changed(&mut tx, &changed_ids, &SameVersion::default()).await?;
        tx.commit().await?;
        self.note_written(changed.len() as u64);
        Ok(ListWrite {
            stored: changed.len() as u64,
        })
    }
}

/// The widest list/detail clock difference counted as an offset (wider ones are other versions).
const MAX_CLOCK_OFFSET_MS: i64 = 86_400_000;

/// Compares the stored list rows of `records` (details about to be written) with them, when
/// both are the same version (the list's `updated_at`, less the list's clock offset, equals the
/// detail's), and adds the outcome to `list_field_agreement`. Each list row a detail answers
/// first counts its clock difference (`list_clock_offsets`), so the offset is learned from the
/// very pairs it then verifies.
pub async fn verify_list_rows(
    tx: &mut Transaction<'_, Postgres>,
    records: &[&TicketRecord],
) -> anyhow::Result<Verification> {
    if records.is_empty() {
        return Ok(Verification::default());
    }
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r.ticket.ticket_id.as_str())
        .collect();
    let listed: HashMap<String, (Option<DateTime<Utc>>, String)> =
        sqlx::query_as::<_, (String, Option<DateTime<Utc>>, String)>(
            "SELECT ticket_id, updated_at, COALESCE(list_raw, raw)::text FROM tickets
         WHERE ticket_id = ANY($1) AND content_source = 'list'",
        )
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(|(id, updated, raw)| (id, (updated, raw)))
        .collect();
    if listed.is_empty() {
        return Ok(Verification::default());
    }
    let differences: Vec<i64> = records
        .iter()
        .filter_map(|r| {
            let (list_at, _) = listed.get(r.ticket.ticket_id.as_str())?;
            Some((*list_at)? - r.ticket.updated_at?)
        })
        .map(|d| d.num_milliseconds())
        .filter(|d| d.abs() <= MAX_CLOCK_OFFSET_MS)
        .collect();
    let offset_ms = count_clock_offsets(tx, &differences).await?;
    let offset = chrono::Duration::milliseconds(offset_ms);
    // field → (agreed, differed, missing, first ticket that differed)
    // field → (agreed, differed, missing, first ticket that differed)
    let mut tally: BTreeMap<String, (i64, i64, i64, Option<String>)> = BTreeMap::new();
    let mut verification = Verification::default();
    for record in records {
        let id = record.ticket.ticket_id.as_str();
        let Some((updated_at, list_raw)) = listed.get(id) else {
            continue;
        };
        if updated_at.map(|at| at - offset) != record.ticket.updated_at {
            continue; // the detail is of another version: nothing to compare
        }
        let Ok(checks) = compare_with_detail(list_raw, &record.ticket.raw) else {
            continue;
        };
        verification.tickets += 1;
        if !checks.iter().any(|(_, c)| *c == FieldCheck::Differed) {
            verification.same_version.ids.push(id.to_owned());
            verification.same_version.listed_at.push(*updated_at);
        }
        for (field, check) in checks {
            let entry = tally.entry(field).or_default();
            match check {
                FieldCheck::Agreed => entry.0 += 1,
                FieldCheck::Differed => {
                    entry.1 += 1;
                    entry.3.get_or_insert_with(|| id.to_owned());
                }
                FieldCheck::Missing => entry.2 += 1,
            }
        }
    }
    if tally.is_empty() {
        return Ok(verification);
    }
    let fields: Vec<&str> = tally.keys().map(String::as_str).collect();
    let agreed: Vec<i64> = tally.values().map(|t| t.0).collect();
    let differed: Vec<i64> = tally.values().map(|t| t.1).collect();
    let missing: Vec<i64> = tally.values().map(|t| t.2).collect();
    let examples: Vec<Option<&str>> = tally.values().map(|t| t.3.as_deref()).collect();
    // A field the list rows lacked is not distrusted: it is simply never taken from them.
    verification.newly_distrusted = sqlx::query_scalar(
        "WITH before AS (
             SELECT field, trusted FROM list_field_agreement WHERE field = ANY($1)
         ), upserted AS (
             INSERT INTO list_field_agreement AS a
                 (field, agreed, differed, missing, trusted, first_difference_at, example_ticket_id)
             SELECT u.field, u.agreed, u.differed, u.missing, u.differed = 0,
                    CASE WHEN u.differed > 0 THEN now() END, u.example
             FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::text[])
                  AS u(field, agreed, differed, missing, example)
             ON CONFLICT (field) DO UPDATE SET
                 agreed = a.agreed + EXCLUDED.agreed,
                 differed = a.differed + EXCLUDED.differed,
                 missing = a.missing + EXCLUDED.missing,
                 trusted = a.trusted AND EXCLUDED.trusted,
                 first_difference_at = COALESCE(a.first_difference_at, EXCLUDED.first_difference_at),
                 example_ticket_id = COALESCE(a.example_ticket_id, EXCLUDED.example_ticket_id),
                 updated_at = now()
             RETURNING field, trusted
         )
         SELECT u.field FROM upserted u LEFT JOIN before b USING (field)
         WHERE NOT u.trusted AND b.trusted IS DISTINCT FROM false
         ORDER BY u.field",
    )
    .bind(&fields)
    .bind(&agreed)
    .bind(&differed)
    .bind(&missing)
    .bind(&examples)
    .fetch_all(&mut **tx)
    .await?;
    Ok(verification)
}

/// Counts list/detail clock `differences` (milliseconds) and returns the offset they agree on
/// now (`list_clock_offset_ms()`). Past 1,000 pairs every count is halved and at most 20
/// offsets are kept: a list clock that changes is followed, stray differences fade.
async fn count_clock_offsets(
    tx: &mut Transaction<'_, Postgres>,
    differences: &[i64],
) -> anyhow::Result<i64> {
    if !differences.is_empty() {
        sqlx::query(
            "INSERT INTO list_clock_offsets AS o (offset_ms, pairs)
             SELECT d, count(*) FROM UNNEST($1::int8[]) AS d GROUP BY d ORDER BY d
             ON CONFLICT (offset_ms) DO UPDATE
                SET pairs = o.pairs + EXCLUDED.pairs, last_seen_at = now()",
        )
        .bind(differences)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "WITH total AS (SELECT sum(pairs) AS n FROM list_clock_offsets)
             UPDATE list_clock_offsets SET pairs = pairs / 2 WHERE (SELECT n FROM total) > 1000",
        )
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "DELETE FROM list_clock_offsets WHERE pairs = 0 OR offset_ms NOT IN (
                 SELECT offset_ms FROM list_clock_offsets
                 ORDER BY pairs DESC, last_seen_at DESC LIMIT 20)",
        )
        .execute(&mut **tx)
        .await?;
    }
    Ok(sqlx::query_scalar("SELECT list_clock_offset_ms()")
        .fetch_one(&mut **tx)
        .await?)
}
