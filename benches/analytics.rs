//! The analytics layer on a big helpdesk: 200,000 tickets created over a year, each with its
//! status history (tickets older than two months first seen after an install with a history
//! backfill, so they carry an unobserved stretch; 10 % reopened), agents, tags, custom fields
//! and the catalog. Times every query of docs/analytics.md, `ticket_facts` scans, the stays
//! rebuild (the per-ticket write-time cost), and the daily backlog refresh (full, incremental,
//! and the no-op of a cycle with nothing changed).
//! Run: `cargo bench --bench analytics`.
//!
//! Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres; a scratch
//! database is created and dropped, or kept with BENCH_KEEP=1), BENCH_TICKETS (default
//! 200000), BENCH_RUNS (3).

use std::time::{Duration, Instant};

use helpdesk_sync::normalize::catalog::normalize_catalog_field;

mod support;

use support::{env_usize, median_time as time, ms};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let tickets = env_usize("BENCH_TICKETS", 200_000);
    let runs = env_usize("BENCH_RUNS", 3);
    let server = support::server()?;
    let name = "helpdesk_bench_analytics";
    let options = support::reset_database(&server, name).await?;
    support::connect(&options).await?.migrate().await?;
    // Sessions opened after the migration, as a dashboard's are (it sets this database's jit).
    let store = support::connect(&options).await?;
    let pool = store.pool();

    let started = Instant::now();
    support::generate(pool, tickets).await?;
    let catalog: Vec<_> = helpdesk_sync::sim::data::catalog()
        .iter()
        .filter_map(|item| normalize_catalog_field(&item.to_string()).ok())
        .map(|n| n.field)
        .collect();
    store.replace_catalog(&catalog).await?;
    let generated = started.elapsed();

    // The stays, built the way the daemon builds them on write: per batch of tickets, planner
    // statistics refreshed geometrically as tables grow.
    let (ids, rebuild) = support::rebuild_stays(&store, 500, true).await?;
    support::vacuum_analyze(pool).await?;
    let (history_rows, stays): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM ticket_status_history), (SELECT count(*) FROM ticket_status_stays)",
    )
    .fetch_one(pool)
    .await?;
    println!(
        "{} tickets, {history_rows} transitions, {stays} stays; generated in {:.1}s",
        ids.len(),
        generated.as_secs_f64()
    );
    println!(
        "stays rebuilt in batches of 500 (the write-time cost): {:.1}s, {:.0} tickets/s",
        rebuild.as_secs_f64(),
        ids.len() as f64 / rebuild.as_secs_f64()
    );

    let reset = "INSERT INTO daily_backlog_dirty (dirty_from) VALUES ('-infinity')";
    let (full, rows) = time(runs, || async {
        sqlx::query(reset).execute(pool).await?;
        store.refresh_daily_backlog().await
    })
    .await?;
    println!("\n| what | rows | median ms ({runs} runs) |\n|---|---:|---:|");
    println!("| backlog refresh, full (a year) | {rows} | {} |", ms(full));
    // A steady-state cycle: 1 % of tickets changed, the most recently created ones (activity
    // is recent); and the worst case, 1 % picked across the whole year.
    let recent: Vec<String> =
        sqlx::query_scalar("SELECT ticket_id FROM tickets ORDER BY created_at DESC LIMIT $1")
            .bind((ids.len() / 100) as i64)
            .fetch_all(pool)
            .await?;
    let spread: Vec<String> = ids.iter().step_by(100).cloned().collect();
    for (what, changed) in [("recent", &recent), ("spread over the year", &spread)] {
        let (took, rows) = time(runs, || async {
            let mut tx = pool.begin().await?;
            helpdesk_sync::store::history::rebuild_stays(&mut tx, changed).await?;
            tx.commit().await?;
            store.refresh_daily_backlog().await
        })
        .await?;
        println!(
            "| stays rebuilt for 1 % of tickets ({what}) + backlog refresh | {rows} | {} |",
            ms(took)
        );
    }
    let (noop, _) = time(runs, || store.refresh_daily_backlog()).await?;
    println!("| backlog refresh, nothing changed | 0 | {} |", ms(noop));

    let scans = [
        (
            "ticket_facts: count(*)",
            "SELECT count(*) FROM ticket_facts",
        ),
        (
            "ticket_facts: every row and column",
            "SELECT * FROM ticket_facts",
        ),
        (
            "ticket_facts: first 2,000 rows (a BI table view)",
            "SELECT * FROM ticket_facts LIMIT 2000",
        ),
        (
            "ticket_facts: one ticket",
            "SELECT * FROM ticket_facts WHERE ticket_id = '7000000000000000777'",
        ),
        (
            "ticket_status_spans: every row",
            "SELECT * FROM ticket_status_spans",
        ),
        (
            "ticket_time_in_status: every row",
            "SELECT * FROM ticket_time_in_status",
        ),
        (
            "daily_ticket_stats: every day",
            "SELECT * FROM daily_ticket_stats",
        ),
    ];
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/analytics.md"))?;
    let documented: Vec<(String, String)> = docs
        .split("```sql")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .enumerate()
        .map(|(i, q)| {
            let title = docs
                .split("```sql")
                .nth(i)
                .and_then(|before| before.trim_end().lines().last())
                .unwrap_or("query")
                .trim_end_matches(':')
                .to_owned();
            (format!("docs: {title}"), q.to_owned())
        })
        .collect();
    let mut slowest = Duration::ZERO;
    let all = scans
        .iter()
        .map(|(t, q)| (t.to_string(), q.to_string()))
        .chain(documented);
    for (title, query) in all {
        let (took, rows) = time(runs, || async {
            Ok(sqlx::raw_sql(sqlx::AssertSqlSafe(query.clone()))
                .fetch_all(pool)
                .await?
                .len())
        })
        .await?;
        slowest = slowest.max(took);
        println!("| {title} | {rows} | {} |", ms(took));
    }
    println!("\nslowest query: {} ms", ms(slowest));
    drop(store);
    support::drop_unless_kept(&server, name).await
}
