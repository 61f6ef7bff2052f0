//! Ingest from raw JSON into PostgreSQL, no HTTP: normalize + batched upsert (the sync write
//! path), `reprocess` (force rewrite of everything), and beside them a naive writer doing one
//! INSERT per row, all on the same generated tickets in one run.
//! Run: `cargo bench --bench ingest`.
//!
//! Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres; scratch
//! databases are created and dropped), BENCH_TICKETS (default 20000), BENCH_NAIVE_TICKETS (2000).

use std::time::{Duration, Instant};

use chrono::Utc;
use helpdesk_sync::config::Settings;
use helpdesk_sync::domain::{TicketId, TicketRecord};
use helpdesk_sync::normalize::normalize_ticket;
use helpdesk_sync::reprocess::reprocess;
use helpdesk_sync::sim::{generate_ticket, ticket_id};
use helpdesk_sync::store::upsert::write_records;
use helpdesk_sync::store::{Store, create_database_if_missing};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Executor};

const BATCH: usize = 500;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn scratch(server: &PgConnectOptions, name: &str) -> anyhow::Result<Store> {
    let options = server.clone().database(name);
    drop_database(server, name).await?;
    create_database_if_missing(&options).await?;
    let url = options.to_url_lossy().to_string();
    let settings = Settings::from_toml_str("", [("DATABASE_URL".to_owned(), url)])?;
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    Ok(store)
}

async fn drop_database(server: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let mut admin = server.clone().database("postgres").connect().await?;
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    admin.execute(sqlx::AssertSqlSafe(sql)).await?;
    Ok(())
}

/// Normalize + write in batches of BATCH, one transaction each: the sync path.
async fn batched(store: &Store, raws: &[(TicketId, String)]) -> anyhow::Result<Duration> {
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

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server: PgConnectOptions = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
        .parse()?;
    let n = env_usize("BENCH_TICKETS", 20_000);
    let n_naive = env_usize("BENCH_NAIVE_TICKETS", 2_000).min(n);
    let now_ms = Utc::now().timestamp_millis();
    let raws: Vec<(TicketId, String)> = (0..n)
        .map(|i| {
            let id = TicketId::parse(&ticket_id(i)).expect("simulated ids are valid");
            (id, generate_ticket(i, now_ms).to_string())
        })
        .collect();
    let (agents, comments): (usize, usize) = raws.iter().fold((0, 0), |(a, c), (id, raw)| {
        let r = normalize_ticket(id, raw, Utc::now())
            .expect("normalizes")
            .record;
        (a + r.agents.len(), c + r.comments.len())
    });

    let name = format!("hsbench_ingest_{}", std::process::id());
    let store = scratch(&server, &name).await?;
    let first = batched(&store, &raws).await?;
    let again = batched(&store, &raws).await?;
    let reprocessed = reprocess(&store, None, BATCH, &|_, _| {}).await?;
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
    drop_database(&server, &name).await?;
    drop_database(&server, &naive_name).await?;

    println!(
        "ingest from raw JSON, {n} tickets ({:.1} agents, {:.1} notes per ticket on average), batches of {BATCH}",
        agents as f64 / n as f64,
        comments as f64 / n as f64
    );
    println!("{:<52} {:>9} {:>12}", "path", "seconds", "tickets/s");
    for (label, count, d) in [
        ("normalize + batched upsert, empty tables", n, first),
        ("normalize + batched upsert, unchanged (no-op)", n, again),
        (
            "reprocess (force rewrite of every row)",
            n,
            reprocessed.elapsed,
        ),
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
    Ok(())
}
