//! What every bench shares (each one has `mod support;`): sizes from the environment, the
//! Postgres server and scratch databases on it, median timing, and the generator of the big
//! helpdesk that the analytics and SLA benches measure.

// Each bench uses a part of this module.
#![allow(dead_code)]

pub mod daemon;

use std::time::{Duration, Instant};

use helpdesk_sync::config::Settings;
use helpdesk_sync::store::{Store, create_database_if_missing};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{ConnectOptions, Executor};

/// The server when `DATABASE_URL` is not set (the README's setup).
pub const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The process-wide TLS crypto provider, as the binary's entry point (`cli::main`) installs
/// it: a bench that builds a `FeishuClient` calls this first. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A size or count from the environment variable `name`, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `DATABASE_URL`, else [`DEFAULT_SERVER`], as text.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER.into())
}

/// The server scratch databases are created on.
pub fn server() -> anyhow::Result<PgConnectOptions> {
    Ok(server_url().parse()?)
}

/// Drops database `name` on `server` (connected through its `postgres` database).
pub async fn drop_database(server: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let mut admin = server.clone().database("postgres").connect().await?;
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    admin.execute(sqlx::AssertSqlSafe(sql)).await?;
    Ok(())
}

/// An empty database `name` on `server` (one left over from an earlier run is dropped first).
pub async fn reset_database(
    server: &PgConnectOptions,
    name: &str,
) -> anyhow::Result<PgConnectOptions> {
    drop_database(server, name).await?;
    let options = server.clone().database(name);
    create_database_if_missing(&options).await?;
    Ok(options)
}

/// Drops database `name` unless `BENCH_KEEP` is set (then says it was kept).
pub async fn drop_unless_kept(server: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!("kept database {name} (BENCH_KEEP)");
        return Ok(());
    }
    drop_database(server, name).await
}

/// A store on the database `options` names, configured as the daemon's would be.
pub async fn connect(options: &PgConnectOptions) -> anyhow::Result<Store> {
    let url = options.to_url_lossy().to_string();
    let settings = Settings::from_toml_str("", [("DATABASE_URL".to_owned(), url)])?;
    Store::connect(&settings.database).await
}

/// The median time of `runs` runs of `f` (at least one), and the last run's result.
pub async fn median_time<F, Fut, T>(runs: usize, mut f: F) -> anyhow::Result<(Duration, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        last = Some(f().await?);
        times.push(started.elapsed());
    }
    times.sort();
    Ok((times[times.len() / 2], last.expect("ran at least once")))
}

/// Whole milliseconds, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

/// `n` per second over `d`.
pub fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// The big helpdesk: `{tickets}` tickets created over a year, each with its status history
/// (tickets older than two months first seen after an install with a history backfill, so
/// they carry an unobserved stretch; 10 % reopened), people, tags and custom fields. History
/// rows per ticket are as the daemon would have written them.
const GENERATE: &str = include_str!("generate.sql");

/// Writes the big helpdesk of `tickets` tickets into a migrated, empty database (no stays yet:
/// see [`rebuild_stays`]).
pub async fn generate(pool: &PgPool, tickets: usize) -> anyhow::Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(
        GENERATE.replace("{tickets}", &tickets.to_string()),
    ))
    .execute(pool)
    .await?;
    Ok(())
}

/// Builds every ticket's status stays the way the daemon does on write: per batch of `batch`
/// tickets, and with `note_written` refreshing planner statistics as tables grow, as the
/// daemon does. Returns the ticket ids and how long the batches took.
pub async fn rebuild_stays(
    store: &Store,
    batch: usize,
    note_written: bool,
) -> anyhow::Result<(Vec<String>, Duration)> {
    let pool = store.pool();
    let ids: Vec<String> = sqlx::query_scalar("SELECT ticket_id FROM tickets ORDER BY 1")
        .fetch_all(pool)
        .await?;
    let started = Instant::now();
    for chunk in ids.chunks(batch) {
        sqlx::query("SELECT rebuild_ticket_status_stays($1)")
            .bind(chunk)
            .execute(pool)
            .await?;
        if note_written {
            store.note_written(chunk.len() as u64);
        }
    }
    let took = started.elapsed();
    Ok((ids, took))
}

/// Planner statistics for everything, as the daemon (and autovacuum) keep them while tables
/// grow: without them every join looks small.
pub async fn vacuum_analyze(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql("VACUUM ANALYZE").execute(pool).await?;
    Ok(())
}
