//! A changed ticket's child rows, replaced in its transaction: people (upserted into
//! `helpdesk_users`), agents and collaborators, tags, custom fields, internal notes. One step
//! per child table, each deleting the tickets' old rows and inserting the new ones in one
//! statement: a source that does not carry a child set can leave that table alone.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use crate::domain::{CommentRow, CustomFieldRow, TicketRecord, UserRow};

/// Replaces the child rows of the given tickets (tags upserted, the per-ticket sets deleted and
/// re-inserted). The people they name are upserted by [`upsert_people`], which the caller runs
/// last.
pub async fn replace_children(
    tx: &mut Transaction<'_, Postgres>,
    records: &[&TicketRecord],
) -> anyhow::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r.ticket.ticket_id.as_str())
        .collect();
    replace_people(tx, &ids, records).await?;
    upsert_tags(tx, records).await?;
    replace_tags(tx, &ids, records).await?;
    replace_custom_fields(tx, &ids, records).await?;
    replace_comments(tx, &ids, records).await?;
    Ok(())
}

/// Agents and collaborators, in API order.
async fn replace_people(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[&str],
    records: &[&TicketRecord],
) -> anyhow::Result<()> {
    // Literal statements only: no SQL is ever assembled from strings.
    for delete in [
        "DELETE FROM ticket_agents WHERE ticket_id = ANY($1)",
        "DELETE FROM ticket_collaborators WHERE ticket_id = ANY($1)",
    ] {
        sqlx::query(delete).bind(ids).execute(&mut **tx).await?;
    }
    type Pick = fn(&TicketRecord) -> &Vec<String>;
    let people: [(&'static str, Pick); 2] = [
        (
            "INSERT INTO ticket_agents (ticket_id, user_id, position)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[])",
            |r| &r.agents,
        ),
        (
            "INSERT INTO ticket_collaborators (ticket_id, user_id, position)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[])",
            |r| &r.collaborators,
        ),
    ];
    for (insert, pick) in people {
        let (mut t, mut u, mut p) = (Vec::new(), Vec::new(), Vec::new());
        for r in records {
            for (i, user) in pick(r).iter().enumerate() {
                t.push(r.ticket.ticket_id.as_str());
                u.push(user.as_str());
                p.push(i as i32);
            }
        }
        if !t.is_empty() {
            sqlx::query(insert)
                .bind(&t)
                .bind(&u)
                .bind(&p)
                .execute(&mut **tx)
                .await?;
        }
    }

    Ok(())
}

async fn replace_tags(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[&str],
    records: &[&TicketRecord],
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM ticket_tags WHERE ticket_id = ANY($1)")
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    let (mut t, mut tag) = (Vec::new(), Vec::new());
    for r in records {
        for row in &r.tags {
            t.push(r.ticket.ticket_id.as_str());
            tag.push(row.tag_id.as_str());
        }
    }
    if !t.is_empty() {
        sqlx::query(
            "INSERT INTO ticket_tags (ticket_id, tag_id) SELECT * FROM UNNEST($1::text[], $2::text[])",
        )
        .bind(&t)
        .bind(&tag)
        .execute(&mut **tx)
        .await?;
    }

    Ok(())
}

async fn replace_custom_fields(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[&str],
    records: &[&TicketRecord],
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM ticket_custom_fields WHERE ticket_id = ANY($1)")
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    let fields: Vec<(&str, &CustomFieldRow)> = records
        .iter()
        .flat_map(|r| {
            r.custom_fields
                .iter()
                .map(|f| (r.ticket.ticket_id.as_str(), f))
        })
        .collect();
    if !fields.is_empty() {
        sqlx::query(
            "INSERT INTO ticket_custom_fields
                (ticket_id, field_id, key_name, display_name, value, position, required, editable)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::int4[], $7::bool[], $8::bool[])",
        )
        .bind(fields.iter().map(|(t, _)| *t).collect::<Vec<_>>())
        .bind(
            fields
                .iter()
                .map(|(_, f)| f.field_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            fields
                .iter()
                .map(|(_, f)| f.key_name.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            fields
                .iter()
                .map(|(_, f)| f.display_name.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            fields
                .iter()
                .map(|(_, f)| f.value.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(fields.iter().map(|(_, f)| f.position).collect::<Vec<_>>())
        .bind(fields.iter().map(|(_, f)| f.required).collect::<Vec<_>>())
        .bind(fields.iter().map(|(_, f)| f.editable).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }

    Ok(())
}

async fn replace_comments(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[&str],
    records: &[&TicketRecord],
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM ticket_comments WHERE ticket_id = ANY($1)")
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    let comments: Vec<(&str, &CommentRow)> = records
        .iter()
        .flat_map(|r| r.comments.iter().map(|c| (r.ticket.ticket_id.as_str(), c)))
        .collect();
    if !comments.is_empty() {
        sqlx::query(
            "INSERT INTO ticket_comments
                (ticket_id, ordinal, comment_id, content, created_at, user_id, user_name, user_avatar_url)
             SELECT * FROM UNNEST($1::text[], $2::int4[], $3::int8[], $4::text[], $5::timestamptz[],
                                  $6::int8[], $7::text[], $8::text[])",
        )
        .bind(comments.iter().map(|(t, _)| *t).collect::<Vec<_>>())
        .bind(comments.iter().map(|(_, c)| c.ordinal).collect::<Vec<_>>())
        .bind(comments.iter().map(|(_, c)| c.comment_id).collect::<Vec<_>>())
        .bind(comments.iter().map(|(_, c)| c.content.as_deref()).collect::<Vec<_>>())
        .bind(comments.iter().map(|(_, c)| c.created_at).collect::<Vec<_>>())
        .bind(comments.iter().map(|(_, c)| c.user_id).collect::<Vec<_>>())
        .bind(comments.iter().map(|(_, c)| c.user_name.as_deref()).collect::<Vec<_>>())
        .bind(comments.iter().map(|(_, c)| c.user_avatar_url.as_deref()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Upserts the people the given tickets name into `helpdesk_users`. Run as the last write of a
/// transaction: the same few agents appear in every batch, and their rows stay locked until the
/// commit, so writers side by side (list rows, details) would otherwise wait for each other's
/// whole transaction. The references to them are checked at the commit (deferred keys).
pub async fn upsert_people(
    tx: &mut Transaction<'_, Postgres>,
    records: &[&TicketRecord],
) -> anyhow::Result<()> {
    // One row per user (sorted, so concurrent writers lock in the same order); later tickets win.
    // The newest fetch wins (reprocess walks tickets by id, not by time).
    let mut users: BTreeMap<&str, (&UserRow, DateTime<Utc>)> = BTreeMap::new();
    for r in records {
        for u in &r.users {
            let seen = r.ticket.fetched_at;
            match users.get(u.user_id.as_str()) {
                Some((_, newer)) if *newer > seen => {}
                _ => {
                    users.insert(u.user_id.as_str(), (u, seen));
                }
            }
        }
    }
    if users.is_empty() {
        return Ok(());
    }
    let rows: Vec<&(&UserRow, DateTime<Utc>)> = users.values().collect();
    sqlx::query(
        "INSERT INTO helpdesk_users AS h
            (user_id, name, email, avatar_url, department, city, country, last_seen_at)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::timestamptz[])
         ON CONFLICT (user_id) DO UPDATE SET
            name = COALESCE(EXCLUDED.name, h.name),
            email = COALESCE(EXCLUDED.email, h.email),
            avatar_url = COALESCE(EXCLUDED.avatar_url, h.avatar_url),
            department = COALESCE(EXCLUDED.department, h.department),
            city = COALESCE(EXCLUDED.city, h.city),
            country = COALESCE(EXCLUDED.country, h.country),
            last_seen_at = EXCLUDED.last_seen_at
         -- Profiles only move forward in time: an older ticket never rolls a name back.
         WHERE EXCLUDED.last_seen_at >= h.last_seen_at",
    )
    .bind(
        rows.iter()
            .map(|(u, _)| u.user_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(u, _)| u.name.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(u, _)| u.email.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(u, _)| u.avatar_url.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(u, _)| u.department.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(u, _)| u.city.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(u, _)| u.country.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|(_, at)| *at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn upsert_tags(
    tx: &mut Transaction<'_, Postgres>,
    records: &[&TicketRecord],
) -> anyhow::Result<()> {
    let mut tags: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for r in records {
        for t in &r.tags {
            tags.insert(t.tag_id.as_str(), t.name.as_deref());
        }
    }
    if tags.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO tags AS g (tag_id, name) SELECT * FROM UNNEST($1::text[], $2::text[])
         ON CONFLICT (tag_id) DO UPDATE SET name = COALESCE(EXCLUDED.name, g.name)
         WHERE g.name IS DISTINCT FROM COALESCE(EXCLUDED.name, g.name)",
    )
    .bind(tags.keys().copied().collect::<Vec<_>>())
    .bind(tags.values().copied().collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
