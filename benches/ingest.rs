//! Ingest from raw JSON into PostgreSQL, no HTTP: normalize + batched upsert (the sync write
//! path), `reprocess` (force rewrite of everything), and beside them a naive writer doing one
//! INSERT per row and the ceiling, COPY of the same rows, all on the same tickets in one run.
//! Tickets have the performance issue's shape: the simulator's, filled up to 3 agents, 2 tags,
//! 2 custom fields and 1–2 notes each. Run: `cargo bench --bench ingest`.
//!
//! Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres; scratch
//! databases are created and dropped), BENCH_TICKETS (default 20000), BENCH_NAIVE_TICKETS (2000).

use std::time::{Duration, Instant};

use chrono::Utc;
use helpdesk_sync::domain::{TicketId, TicketRecord};
use helpdesk_sync::normalize::normalize_ticket;
use helpdesk_sync::reprocess::reprocess;
use helpdesk_sync::sim::{generate_ticket, ticket_id};
use helpdesk_sync::store::Store;
use helpdesk_sync::store::write::write_records;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;

mod support;

use support::{drop_database, env_usize, per_second as rate};

const BATCH: usize = 500;

/// A fresh, migrated database `name`.
async fn scratch(server: &PgConnectOptions, name: &str) -> anyhow::Result<Store> {
    let store = support::connect(&support::reset_database(server, name).await?).await?;
    store.migrate().await?;
    Ok(store)
}

/// The simulator's ticket `i`, filled up to the issue's shape: 3 agents, 2 tags, 2 custom
/// fields, 1–2 notes.
fn full_shape_ticket(i: usize, now_ms: i64) -> Value {
    let mut t = generate_ticket(i, now_ms);
    let agent = |n: usize| {
        json!({"id": format!("ou_agent{n:028x}"), "name": format!("agent {n}"),
               "email": format!("agent{n}@example.com"), "city": "Shanghai", "country": "CN",
               "avatar_url": format!("https://sim.invalid/avatar/agent{n}.png")})
    };
    t["agents"] = json!([agent(i % 20), agent((i + 7) % 20), agent((i + 13) % 20)]);
    t["agent_owner"] = t["agents"][0].clone();
    t["tags"] = json!([{"id": "7474857595946745888", "name": "billing"},
                       {"id": "7474857595946745891", "name": "urgent"}]);
    t["customized_fields"] = json!([
        {"id": "6794281200000000001", "value": "Web", "key_name": "platform",
         "display_name": "Platform", "position": 1, "required": true, "editable": true},
        {"id": "6794281200000000002", "value": format!("order-{}", 100000 + i),
         "key_name": "order_no", "display_name": "Order number", "position": 2,
         "required": false, "editable": true},
    ]);
    let created = t["created_at"].as_i64().unwrap_or(now_ms);
    let note = |k: u64| {
        json!({"id": 1000 + i as u64 * 2 + k, "content": format!("Internal note {k} on ticket {i}"),
               "created_at": created + 60_000 * (k as i64 + 1), "user_id": 7262656095919128578u64 + k,
               "user_name": "Agent Note", "user_avatar_url": "https://sim.invalid/avatar/note.png"})
    };
    t["comments"] = if i.is_multiple_of(2) {
        json!([note(0)])
    } else {
        json!([note(0), note(1)])
    };
    t
}

/// Normalize + write in batches of BATCH, one transaction each: the sync path (statistics
/// refreshed as the tables grow, as `Store::write_batch` does).
async fn batched(store: &Store, raws: &[(TicketId, String)]) -> anyhow::Result<Duration> {
    batched_with(store, raws, true).await
}

async fn batched_with(
    store: &Store,
    raws: &[(TicketId, String)],
    refresh_statistics: bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for chunk in raws.chunks(BATCH) {
        let records: Vec<TicketRecord> = chunk
            .iter()
            .map(|(id, raw)| normalize_ticket(id, raw, Utc::now()).map(|n| n.record))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&TicketRecord> = records.iter().collect();
        let mut tx = store.pool().begin().await?;
        write_records(&mut tx, &refs, false).await?;
        tx.commit().await?;
        if refresh_statistics {
            store.note_written(refs.len() as u64);
        }
    }
    Ok(started.elapsed())
}

/// The same rows, one INSERT statement per row (per batch transaction): what a first version
/// of such a tool usually does.
async fn naive(store: &Store, raws: &[(TicketId, String)]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for chunk in raws.chunks(BATCH) {
        let mut tx = store.pool().begin().await?;
        for (id, raw) in chunk {
            let r = normalize_ticket(id, raw, Utc::now())?.record;
            for u in &r.users {
                sqlx::query(
                    "INSERT INTO helpdesk_users (user_id, name, email, avatar_url, department, city, country, last_seen_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, now())
                     ON CONFLICT (user_id) DO UPDATE SET name = EXCLUDED.name",
                )
                .bind(&u.user_id)
                .bind(&u.name)
                .bind(&u.email)
                .bind(&u.avatar_url)
                .bind(&u.department)
                .bind(&u.city)
                .bind(&u.country)
                .execute(&mut *tx)
                .await?;
            }
            let t = &r.ticket;
            sqlx::query(
                "INSERT INTO tickets (ticket_id, helpdesk_id, guest_id, ticket_type, status, score,
                    channel, solve, created_at, updated_at, closed_at, closed_by_id, agent_owner_id,
                    agent_service_duration_minutes, agent_first_response_duration_seconds,
                    bot_service_duration_seconds, agent_resolution_time_seconds,
                    actual_processing_time_seconds, agent_entry_time, agent_first_response_time,
                    agent_last_response_time, raw, fetched_at)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22::jsonb,$23)
                 ON CONFLICT (ticket_id) DO UPDATE SET raw = EXCLUDED.raw",
            )
            .bind(t.ticket_id.as_str())
            .bind(&t.helpdesk_id)
            .bind(&t.guest_id)
            .bind(t.ticket_type)
            .bind(t.status)
            .bind(t.score)
            .bind(t.channel)
            .bind(t.solve)
            .bind(t.created_at)
            .bind(t.updated_at)
            .bind(t.closed_at)
            .bind(&t.closed_by_id)
            .bind(&t.agent_owner_id)
            .bind(t.agent_service_duration_minutes)
            .bind(t.agent_first_response_duration_seconds)
            .bind(t.bot_service_duration_seconds)
            .bind(t.agent_resolution_time_seconds)
            .bind(t.actual_processing_time_seconds)
            .bind(t.agent_entry_time)
            .bind(t.agent_first_response_time)
            .bind(t.agent_last_response_time)
            .bind(&t.raw)
            .bind(t.fetched_at)
            .execute(&mut *tx)
            .await?;
            for (i, a) in r.agents.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO ticket_agents (ticket_id, user_id, position) VALUES ($1, $2, $3)",
                )
                .bind(t.ticket_id.as_str())
                .bind(a)
                .bind(i as i32)
                .execute(&mut *tx)
                .await?;
            }
            for (i, c) in r.collaborators.iter().enumerate() {
                sqlx::query("INSERT INTO ticket_collaborators (ticket_id, user_id, position) VALUES ($1, $2, $3)")
                    .bind(t.ticket_id.as_str())
                    .bind(c)
                    .bind(i as i32)
                    .execute(&mut *tx)
                    .await?;
            }
            for tag in &r.tags {
                sqlx::query("INSERT INTO tags (tag_id, name) VALUES ($1, $2) ON CONFLICT (tag_id) DO NOTHING")
                    .bind(&tag.tag_id)
                    .bind(&tag.name)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO ticket_tags (ticket_id, tag_id) VALUES ($1, $2)")
                    .bind(t.ticket_id.as_str())
                    .bind(&tag.tag_id)
                    .execute(&mut *tx)
                    .await?;
            }
            for f in &r.custom_fields {
                sqlx::query(
                    "INSERT INTO ticket_custom_fields (ticket_id, field_id, key_name, display_name, value, position, required, editable)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(t.ticket_id.as_str())
                .bind(&f.field_id)
                .bind(&f.key_name)
                .bind(&f.display_name)
                .bind(&f.value)
                .bind(f.position)
                .bind(f.required)
                .bind(f.editable)
                .execute(&mut *tx)
                .await?;
            }
            for c in &r.comments {
                sqlx::query(
                    "INSERT INTO ticket_comments (ticket_id, ordinal, comment_id, content, created_at, user_id, user_name, user_avatar_url)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(t.ticket_id.as_str())
                .bind(c.ordinal)
                .bind(c.comment_id)
                .bind(&c.content)
                .bind(c.created_at)
                .bind(c.user_id)
                .bind(&c.user_name)
                .bind(&c.user_avatar_url)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
    }
    Ok(started.elapsed())
}

/// One text-format COPY field: `\N` for NULL, backslash escapes for the rest.
fn field(out: &mut String, value: Option<&str>) {
    match value {
        None => out.push_str("\\N"),
        Some(v) => {
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
}

/// Writes one COPY row: fields separated by tabs, newline-terminated.
fn row(out: &mut String, fields: &[Option<String>]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        field(out, f.as_deref());
    }
    out.push('\n');
}

fn opt<T: ToString>(v: Option<T>) -> Option<String> {
    v.map(|v| v.to_string())
}

fn ts(v: Option<chrono::DateTime<Utc>>) -> Option<String> {
    v.map(|t| t.to_rfc3339())
}

/// The ceiling: the same rows (tickets and children, users and tags once each) with COPY,
/// one COPY per table for all tickets in one transaction (a bulk load). No upsert, no change
/// detection, no history: only the bytes. (Per batch it would measure sqlx 0.9.0's missing
/// TCP_NODELAY instead: ~40 ms per COPY statement, upstream issue transact-rs/sqlx#4335.)
async fn copy(store: &Store, raws: &[(TicketId, String)]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut seen_users = std::collections::HashSet::new();
    let mut seen_tags = std::collections::HashSet::new();
    let mut tables: [String; 8] = Default::default();
    {
        for (id, raw) in raws {
            let r = normalize_ticket(id, raw, Utc::now())?.record;
            for u in &r.users {
                if seen_users.insert(u.user_id.clone()) {
                    row(
                        &mut tables[0],
                        &[
                            Some(u.user_id.clone()),
                            u.name.clone(),
                            u.email.clone(),
                            u.avatar_url.clone(),
                            u.department.clone(),
                            u.city.clone(),
                            u.country.clone(),
                            ts(Some(Utc::now())),
                        ],
                    );
                }
            }
            let t = &r.ticket;
            let tid = Some(t.ticket_id.as_str().to_owned());
            row(
                &mut tables[1],
                &[
                    tid.clone(),
                    t.helpdesk_id.clone(),
                    t.guest_id.clone(),
                    opt(t.ticket_type),
                    opt(t.status),
                    opt(t.score),
                    opt(t.channel),
                    opt(t.solve),
                    ts(t.created_at),
                    ts(t.updated_at),
                    ts(t.closed_at),
                    t.closed_by_id.clone(),
                    t.agent_owner_id.clone(),
                    opt(t.agent_service_duration_minutes),
                    opt(t.agent_first_response_duration_seconds),
                    opt(t.bot_service_duration_seconds),
                    opt(t.agent_resolution_time_seconds),
                    opt(t.actual_processing_time_seconds),
                    ts(t.agent_entry_time),
                    ts(t.agent_first_response_time),
                    ts(t.agent_last_response_time),
                    Some(t.raw.clone()),
                    ts(Some(t.fetched_at)),
                ],
            );
            for (i, a) in r.agents.iter().enumerate() {
                row(
                    &mut tables[2],
                    &[tid.clone(), Some(a.clone()), opt(Some(i))],
                );
            }
            for (i, c) in r.collaborators.iter().enumerate() {
                row(
                    &mut tables[3],
                    &[tid.clone(), Some(c.clone()), opt(Some(i))],
                );
            }
            for tag in &r.tags {
                if seen_tags.insert(tag.tag_id.clone()) {
                    row(
                        &mut tables[4],
                        &[Some(tag.tag_id.clone()), tag.name.clone()],
                    );
                }
                row(&mut tables[5], &[tid.clone(), Some(tag.tag_id.clone())]);
            }
            for f in &r.custom_fields {
                row(
                    &mut tables[6],
                    &[
                        tid.clone(),
                        Some(f.field_id.clone()),
                        f.key_name.clone(),
                        f.display_name.clone(),
                        f.value.clone(),
                        opt(f.position),
                        opt(f.required),
                        opt(f.editable),
                    ],
                );
            }
            for c in &r.comments {
                row(
                    &mut tables[7],
                    &[
                        tid.clone(),
                        opt(Some(c.ordinal)),
                        opt(c.comment_id),
                        c.content.clone(),
                        ts(c.created_at),
                        opt(c.user_id),
                        c.user_name.clone(),
                        c.user_avatar_url.clone(),
                    ],
                );
            }
        }
        let statements = [
            "COPY helpdesk_users (user_id, name, email, avatar_url, department, city, country, last_seen_at) FROM STDIN",
            "COPY tickets (ticket_id, helpdesk_id, guest_id, ticket_type, status, score, channel, solve,
                created_at, updated_at, closed_at, closed_by_id, agent_owner_id,
                agent_service_duration_minutes, agent_first_response_duration_seconds,
                bot_service_duration_seconds, agent_resolution_time_seconds,
                actual_processing_time_seconds, agent_entry_time, agent_first_response_time,
                agent_last_response_time, raw, fetched_at) FROM STDIN",
            "COPY ticket_agents (ticket_id, user_id, position) FROM STDIN",
            "COPY ticket_collaborators (ticket_id, user_id, position) FROM STDIN",
            "COPY tags (tag_id, name) FROM STDIN",
            "COPY ticket_tags (ticket_id, tag_id) FROM STDIN",
            "COPY ticket_custom_fields (ticket_id, field_id, key_name, display_name, value, position, required, editable) FROM STDIN",
            "COPY ticket_comments (ticket_id, ordinal, comment_id, content, created_at, user_id, user_name, user_avatar_url) FROM STDIN",
        ];
        let mut tx = store.pool().begin().await?;
        for (statement, data) in statements.iter().zip(&tables) {
            if data.is_empty() {
                continue;
            }
            let mut copy = tx.copy_in_raw(statement).await?;
            copy.send(data.as_bytes()).await?;
            copy.finish().await?;
        }
        tx.commit().await?;
    }
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = support::server()?;
    let n = env_usize("BENCH_TICKETS", 20_000);
    let n_naive = env_usize("BENCH_NAIVE_TICKETS", 2_000).min(n);
    let now_ms = Utc::now().timestamp_millis();
    let raws: Vec<(TicketId, String)> = (0..n)
        .map(|i| {
            let id = TicketId::parse(&ticket_id(i)).expect("simulated ids are valid");
            (id, full_shape_ticket(i, now_ms).to_string())
        })
        .collect();
    let normalize_started = Instant::now();
    let (agents, comments): (usize, usize) = raws.iter().fold((0, 0), |(a, c), (id, raw)| {
        let r = normalize_ticket(id, raw, Utc::now())
            .expect("normalizes")
            .record;
        (a + r.agents.len(), c + r.comments.len())
    });
    let normalize_only = normalize_started.elapsed();

    let name = format!("hsbench_ingest_{}", std::process::id());
    let store = scratch(&server, &name).await?;
    let first = batched(&store, &raws).await?;
    let again = batched(&store, &raws).await?;
    // The same first ingest without the statistics refresh: plans cached while the tables
    // were tiny stay sequential scans (unless autovacuum analyzes in time).
    let stale_name = format!("hsbench_stale_{}", std::process::id());
    let stale = {
        let store = scratch(&server, &stale_name).await?;
        let d = batched_with(&store, &raws, false).await?;
        store.pool().close().await;
        drop_database(&server, &stale_name).await?;
        d
    };
    let reprocessed_1 = reprocess(&store, None, BATCH, 1, &|_, _| {}).await?;
    let reprocessed = reprocess(&store, None, BATCH, 2, &|_, _| {}).await?;
    store.pool().close().await;

    let naive_name = format!("hsbench_naive_{}", std::process::id());
    let naive_store = scratch(&server, &naive_name).await?;
    let naive_time = naive(&naive_store, &raws[..n_naive]).await?;
    let batched_same = {
        let store = scratch(&server, &format!("{naive_name}_b")).await?;
        let d = batched(&store, &raws[..n_naive]).await?;
        store.pool().close().await;
        drop_database(&server, &format!("{naive_name}_b")).await?;
        d
    };
    naive_store.pool().close().await;
    let copy_name = format!("hsbench_copy_{}", std::process::id());
    let copy_store = scratch(&server, &copy_name).await?;
    let copied = copy(&copy_store, &raws).await?;
    let copied_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets")
        .fetch_one(copy_store.pool())
        .await?;
    anyhow::ensure!(copied_rows == n as i64, "COPY stored {copied_rows} of {n}");
    copy_store.pool().close().await;
    drop_database(&server, &copy_name).await?;
    drop_database(&server, &name).await?;
    drop_database(&server, &naive_name).await?;

    println!(
        "ingest from raw JSON, {n} tickets ({:.1} agents, {:.1} notes per ticket on average), batches of {BATCH}",
        agents as f64 / n as f64,
        comments as f64 / n as f64
    );
    println!("{:<52} {:>9} {:>12}", "path", "seconds", "tickets/s");
    for (label, count, d) in [
        ("normalize only (no database)", n, normalize_only),
        ("normalize + batched upsert, empty tables", n, first),
        ("normalize + batched upsert, unchanged (no-op)", n, again),
        ("  same first ingest, no statistics refresh", n, stale),
        (
            "reprocess, 1 job (force rewrite of every row)",
            n,
            reprocessed_1.elapsed,
        ),
        ("reprocess, 2 jobs (the default)", n, reprocessed.elapsed),
        (
            "naive: one INSERT per row, empty tables",
            n_naive,
            naive_time,
        ),
        (
            "batched, same tickets as naive, empty tables",
            n_naive,
            batched_same,
        ),
        ("ceiling: COPY of the same rows, empty tables", n, copied),
    ] {
        println!(
            "{label:<52} {:>9.2} {:>12.0}",
            d.as_secs_f64(),
            rate(count, d)
        );
    }
    println!(
        "ratio batched / naive on the same {n_naive} tickets: {:.1}x",
        rate(n_naive, batched_same) / rate(n_naive, naive_time)
    );
    println!(
        "ratio first ingest / COPY ceiling: {:.2}; reprocess / COPY ceiling: {:.2}",
        rate(n, first) / rate(n, copied),
        rate(n, reprocessed.elapsed) / rate(n, copied)
    );
    Ok(())
}
