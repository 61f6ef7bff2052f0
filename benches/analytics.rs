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

use helpdesk_sync::config::Settings;
use helpdesk_sync::normalize::catalog::normalize_catalog_field;
use helpdesk_sync::store::{Store, create_database_if_missing};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Executor};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// History rows per ticket, as the daemon would have written them (see the module doc).
const GENERATE: &str = r#"
SELECT setseed(0.42);
INSERT INTO helpdesk_users (user_id, name, last_seen_at)
SELECT 'ou_agent' || g, 'agent ' || g, now() FROM generate_series(1, 100) g
UNION ALL
SELECT 'ou_guest' || g, 'guest ' || g, now() FROM generate_series(1, 50000) g;
INSERT INTO tags (tag_id, name) SELECT 't' || g, 'tag ' || g FROM generate_series(0, 7) g;
CREATE TEMP TABLE plan AS
WITH base AS (
    SELECT n, (7000000000000000000 + n)::text AS ticket_id,
           now() - random() * interval '365 days' AS created_at,
           random() AS r1, random() AS r2, random() AS r3,
           1 + floor(random() * 100)::int AS agent, 1 + floor(random() * 50000)::int AS guest,
           (ARRAY[9, 2, 14, 13, 0])[1 + floor(random() * 5)::int] AS channel
    FROM generate_series(1, {tickets}) n
), times AS (
    SELECT b.*,
           created_at + r1 * interval '10 minutes' AS queued_at,
           created_at + r1 * interval '10 minutes' + r2 * interval '30 minutes' AS entry_at,
           created_at + r1 * interval '10 minutes' + r2 * interval '30 minutes'
               + r3 * interval '20 minutes' AS reply_at
    FROM base b
)
SELECT t.*,
       CASE WHEN r3 < 0.85 THEN entry_at + r1 * r2 * interval '72 hours' END AS closed_at,
       r2 > 0.9 AND r3 < 0.85 AS reopened,
       created_at < now() - interval '60 days' AS backfilled
FROM times t;
DELETE FROM plan WHERE closed_at > now() - interval '4 hours';
INSERT INTO tickets (ticket_id, helpdesk_id, guest_id, ticket_type, status, score, channel, solve,
                     created_at, updated_at, closed_at, closed_by_id, agent_owner_id,
                     agent_first_response_duration_seconds, agent_entry_time,
                     agent_first_response_time, raw, fetched_at)
SELECT ticket_id, '1', 'ou_guest' || guest, 2, CASE WHEN closed_at IS NULL THEN 2 ELSE 51 END,
       CASE WHEN closed_at IS NULL THEN NULL ELSE (n % 4)::smallint END, channel,
       CASE WHEN closed_at IS NULL THEN NULL ELSE 2 END, created_at,
       COALESCE(closed_at + CASE WHEN reopened THEN interval '3 hours' ELSE interval '0' END, reply_at),
       closed_at + CASE WHEN reopened THEN interval '3 hours' ELSE interval '0' END,
       CASE WHEN closed_at IS NULL THEN NULL ELSE 'ou_agent' || agent END, 'ou_agent' || agent,
       floor(EXTRACT(EPOCH FROM reply_at - entry_at)), entry_at, reply_at, '{}', now()
FROM plan;
INSERT INTO ticket_agents (ticket_id, user_id, position) SELECT ticket_id, 'ou_agent' || agent, 0 FROM plan;
INSERT INTO ticket_tags (ticket_id, tag_id) SELECT ticket_id, 't' || (n % 8) FROM plan
UNION ALL SELECT ticket_id, 't' || ((n + 3) % 8) FROM plan WHERE n % 3 = 0;
INSERT INTO ticket_custom_fields (ticket_id, field_id, key_name, display_name, value, position)
SELECT ticket_id, '6794281200000000001', 'platform', 'Platform',
       (ARRAY['Web', 'iOS', 'Android'])[1 + n % 3], 1 FROM plan WHERE n % 5 <> 0
UNION ALL
SELECT ticket_id, '6794281200000000003', 'category', 'Category',
       (ARRAY['Battery', 'Laptop', 'Software', 'Screen'])[1 + n % 4], 3 FROM plan WHERE n % 4 = 3;
-- Transitions: full history for tickets created in the last 60 days; older ones first seen
-- as they are now (a backfill).
CREATE TEMP TABLE steps AS
SELECT ticket_id, 1 AS k, NULL::smallint AS from_status, 1::smallint AS to_status,
       created_at AS changed_at, 'updated_at' AS source FROM plan WHERE NOT backfilled
UNION ALL SELECT ticket_id, 2, 1, 3, queued_at, 'updated_at' FROM plan WHERE NOT backfilled
UNION ALL SELECT ticket_id, 3, 3, 2, entry_at, 'updated_at' FROM plan WHERE NOT backfilled
UNION ALL SELECT ticket_id, 4, 2, 51, closed_at, 'closed_at' FROM plan
          WHERE NOT backfilled AND closed_at IS NOT NULL
UNION ALL SELECT ticket_id, 5, 51, 2, closed_at + interval '1 hour', 'updated_at' FROM plan
          WHERE NOT backfilled AND reopened
UNION ALL SELECT ticket_id, 6, 2, 51, closed_at + interval '3 hours', 'closed_at' FROM plan
          WHERE NOT backfilled AND reopened
UNION ALL SELECT ticket_id, 1, NULL, CASE WHEN closed_at IS NULL THEN 2 ELSE 51 END,
          COALESCE(closed_at + CASE WHEN reopened THEN interval '3 hours' ELSE interval '0' END,
                   entry_at),
          CASE WHEN closed_at IS NULL THEN 'updated_at' ELSE 'closed_at' END
          FROM plan WHERE backfilled;
INSERT INTO ticket_versions (ticket_id, content_hash, observed_at, status, updated_at,
                             agent_owner_id, raw)
SELECT s.ticket_id, md5(s.ticket_id || s.k), s.changed_at + interval '1 minute', s.to_status,
       s.changed_at, 'ou_agent' || p.agent, '{}'
FROM steps s JOIN plan p USING (ticket_id) ORDER BY s.ticket_id, s.k;
INSERT INTO ticket_status_history (ticket_id, from_status, to_status, changed_at,
                                   changed_at_source, observed_at)
SELECT ticket_id, from_status, to_status, changed_at, source, changed_at + interval '1 minute'
FROM steps ORDER BY ticket_id, k;
"#;

async fn time<F, Fut, T>(runs: usize, mut f: F) -> anyhow::Result<(Duration, T)>
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

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let tickets = env_usize("BENCH_TICKETS", 200_000);
    let runs = env_usize("BENCH_RUNS", 3);
    let server: PgConnectOptions = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
        .parse()?;
    let name = "helpdesk_bench_analytics";
    let mut admin = server.clone().database("postgres").connect().await?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await?;
    let options = server.clone().database(name);
    create_database_if_missing(&options).await?;
    let settings = Settings::from_toml_str(
        "",
        [(
            "DATABASE_URL".to_owned(),
            options.to_url_lossy().to_string(),
        )],
    )?;
    Store::connect(&settings.database).await?.migrate().await?;
    // Sessions opened after the migration, as a dashboard's are (it sets this database's jit).
    let store = Store::connect(&settings.database).await?;
    let pool = store.pool();

    let started = Instant::now();
    sqlx::raw_sql(sqlx::AssertSqlSafe(
        GENERATE.replace("{tickets}", &tickets.to_string()),
    ))
    .execute(pool)
    .await?;
    let catalog: Vec<_> = helpdesk_sync::sim::data::catalog()
        .iter()
        .filter_map(|item| normalize_catalog_field(&item.to_string()).ok())
        .map(|n| n.field)
        .collect();
    store.replace_catalog(&catalog).await?;
    let generated = started.elapsed();

    // The stays, built the way the daemon builds them on write: per batch of tickets.
    let ids: Vec<String> = sqlx::query_scalar("SELECT ticket_id FROM tickets ORDER BY 1")
        .fetch_all(pool)
        .await?;
    let started = Instant::now();
    for chunk in ids.chunks(500) {
        sqlx::query("SELECT rebuild_ticket_status_stays($1)")
            .bind(chunk)
            .execute(pool)
            .await?;
        // As the daemon does while tables grow: planner statistics refreshed geometrically.
        store.note_written(chunk.len() as u64).await;
    }
    let rebuild = started.elapsed();
    sqlx::raw_sql("VACUUM ANALYZE").execute(pool).await?;
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
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!("kept database {name} (BENCH_KEEP)");
        return Ok(());
    }
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await?;
    Ok(())
}
