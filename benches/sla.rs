//! Business hours and SLA targets on a big helpdesk: the 200,000 tickets of the analytics
//! benchmark (its generator, reused as is), a Shanghai office calendar with a lunch break and a
//! year of holidays (the default) plus a 24/7 one, and four targets. Times the calendar's period
//! rebuild (what a calendar edit costs), the per-ticket refresh on write, the full recompute
//! (`refresh_sla()`), `business_seconds()` itself (short and multi-year spans), reading
//! business time at read time instead (why it is materialized), and every SLA query of
//! docs/analytics.md plus `ticket_sla` / `ticket_facts` scans.
//! Run: `cargo bench --bench sla`.
//!
//! Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres; a scratch
//! database is created and dropped, or kept with BENCH_KEEP=1), BENCH_TICKETS (default
//! 200000), BENCH_RUNS (3).

use std::time::{Duration, Instant};

mod support;

use support::{env_usize, median_time as time, ms};

const CALENDARS: &str = r#"
INSERT INTO business_calendars (calendar_id, timezone, is_default) VALUES
    ('office', 'Asia/Shanghai', true), ('always', 'America/New_York', false);
INSERT INTO business_hours (calendar_id, weekday, opens_at, closes_at)
SELECT 'office', d, o::time, c::time
FROM generate_series(1, 5) d, (VALUES ('09:00', '12:00'), ('13:00', '18:00')) h(o, c)
UNION ALL SELECT 'always', d, '00:00'::time, '24:00'::time FROM generate_series(1, 7) d;
INSERT INTO business_holidays (calendar_id, holiday_date, name)
SELECT 'office', d::date, 'holiday'
FROM generate_series(now() - interval '400 days', now() + interval '30 days', interval '1 day') d
WHERE EXTRACT(DOY FROM d)::int % 36 = 0;
INSERT INTO sla_targets (target_id, metric, target_minutes, business_hours, calendar_id, priority, tag, channel) VALUES
    ('vip-first-reply', 'first_reply', 30, false, NULL, 10, 'tag 1', NULL),
    ('first-reply', 'first_reply', 240, true, NULL, 100, NULL, NULL),
    ('first-resolution-api', 'first_resolution', 480, true, NULL, 100, NULL, 9),
    ('resolution', 'full_resolution', 960, true, 'office', 100, NULL, NULL);
"#;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let tickets = env_usize("BENCH_TICKETS", 200_000);
    let runs = env_usize("BENCH_RUNS", 3);
    let server = support::server()?;
    let name = "helpdesk_bench_sla";
    let options = support::reset_database(&server, name).await?;
    support::connect(&options).await?.migrate().await?;
    let store = support::connect(&options).await?;
    let pool = store.pool();

    // The analytics benchmark's helpdesk (tickets, people, tags, custom fields, history).
    let started = Instant::now();
    support::generate(pool, tickets).await?;
    let (ids, _) = support::rebuild_stays(&store, 2000, false).await?;
    // Planner statistics, as the daemon (and autovacuum) keep them while tables grow: without
    // them every join looks small and the full recompute turns quadratic.
    support::vacuum_analyze(pool).await?;
    println!(
        "{} tickets generated with their stays in {:.1}s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    sqlx::raw_sql(CALENDARS).execute(pool).await?;
    let seeded = started.elapsed();
    let periods: i64 = sqlx::query_scalar("SELECT count(*) FROM business_calendar_periods")
        .fetch_one(pool)
        .await?;
    println!(
        "calendars and targets created in {} ms ({periods} periods, 2010-2050)",
        ms(seeded)
    );
    let (rebuild, _) = time(runs, || async {
        sqlx::query("UPDATE business_hours SET closes_at = '18:00' WHERE calendar_id = 'office' AND closes_at = '18:00'")
            .execute(pool)
            .await?;
        Ok(())
    })
    .await?;

    // The full recompute after an edit: every ticket.
    let (full, recomputed) = time(1, || async {
        let n: i64 = sqlx::query_scalar("SELECT refresh_sla()")
            .fetch_one(pool)
            .await?;
        Ok(n)
    })
    .await?;
    sqlx::raw_sql("VACUUM ANALYZE").execute(pool).await?;
    let (clocks, breached): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE is_breached) FROM ticket_sla")
            .fetch_one(pool)
            .await?;
    println!(
        "refresh_sla() after an edit: {recomputed} tickets in {:.1}s ({clocks} clocks, {breached} breached)",
        full.as_secs_f64()
    );

    println!("\n| what | rows | median ms ({runs} runs) |\n|---|---:|---:|");
    println!(
        "| calendar edit: periods of one calendar rebuilt (trigger) | {periods} | {} |",
        ms(rebuild)
    );
    // The write path: a batch of 500 tickets as the daemon writes them.
    let batch: Vec<String> = ids
        .iter()
        .step_by(ids.len().max(500) / 500)
        .take(500)
        .cloned()
        .collect();
    let (write, _) = time(runs, || async {
        let mut tx = pool.begin().await?;
        helpdesk_sync::store::sla::refresh_tickets(&mut tx, &batch).await?;
        tx.commit().await?;
        Ok(())
    })
    .await?;
    println!(
        "| refresh on write, a batch of {} tickets ({:.2} ms per ticket) | {} | {} |",
        batch.len(),
        write.as_secs_f64() * 1000.0 / batch.len() as f64,
        batch.len(),
        ms(write)
    );
    let (noop, _) = time(runs, || async {
        let n: i64 = sqlx::query_scalar("SELECT refresh_sla()")
            .fetch_one(pool)
            .await?;
        Ok(n)
    })
    .await?;
    println!(
        "| refresh_sla(), nothing changed (each cycle) | 0 | {} |",
        ms(noop)
    );

    let scans = [
        (
            "business_seconds: 10,000 calls, spans up to a year",
            "SELECT sum(business_seconds(created_at, created_at + (n % 365) * interval '1 day', 'office'))
             FROM (SELECT created_at, row_number() OVER () AS n FROM tickets LIMIT 10000) t",
        ),
        (
            "business_seconds: 10,000 calls, 20-year spans",
            "SELECT sum(business_seconds(created_at - interval '20 years', created_at, 'office'))
             FROM (SELECT created_at FROM tickets LIMIT 10000) t",
        ),
        (
            "read-time instead: business_seconds over every ticket (not used)",
            "SELECT sum(business_seconds(created_at, agent_first_response_time, 'office')) FROM tickets",
        ),
        ("ticket_sla: count(*)", "SELECT count(*) FROM ticket_sla"),
        ("ticket_sla: every row", "SELECT * FROM ticket_sla"),
        (
            "ticket_sla: breach rate per target (all time)",
            "SELECT target_id, count(*), avg(is_breached::int) FROM ticket_sla GROUP BY 1",
        ),
        (
            "ticket_facts: every row (business columns included)",
            "SELECT * FROM ticket_facts",
        ),
        (
            "ticket_facts: business-time medians by channel",
            "SELECT channel_label, percentile_cont(0.5) WITHIN GROUP (ORDER BY first_reply_business_seconds),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution_business_seconds)
             FROM ticket_facts GROUP BY 1",
        ),
    ];
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/analytics.md"))?;
    let section = docs
        .split("### SLA queries")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap_or("");
    let documented: Vec<(String, String)> = section
        .split("```sql")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .enumerate()
        .map(|(i, q)| {
            let title = section
                .split("```sql")
                .nth(i)
                .and_then(|before| before.trim_end().lines().last())
                .unwrap_or("query")
                .trim_end_matches(':')
                .to_owned();
            (format!("docs: {title}"), q.to_owned())
        })
        .collect();
    let mut slowest_dashboard = Duration::ZERO;
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
        if title.starts_with("docs:") {
            slowest_dashboard = slowest_dashboard.max(took);
        }
        println!("| {title} | {rows} | {} |", ms(took));
    }
    println!(
        "\nslowest documented SLA query: {} ms",
        ms(slowest_dashboard)
    );
    drop(store);
    support::drop_unless_kept(&server, name).await
}
