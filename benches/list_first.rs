//! List-first ingestion, end to end: the real sync cycle (discovery with list rows stored, then
//! the paced details) against the simulator at the documented limits (list 50/s and 1000/min,
//! detail 10/s, 200 ms latency) and a local PostgreSQL. Run: `cargo bench --bench list_first`.
//!
//! Measures, in one run: the time until every ticket is in `ticket_facts` with its status,
//! people, durations and custom fields (list-bound); the detail rate, and from it the time until
//! tags are complete (detail-bound, which is also how long the same copy takes without list
//! rows); 429s; memory. Then a small copy synced to the end, 1 % of it changed, and one more
//! cycle: when the changed content is stored, against the first detail call of that cycle.
//! Last, ten minutes of listing at the documented limits: 429s, the busiest second and minute.
//!
//! Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres; scratch
//! databases are created and dropped), BENCH_TICKETS (default 100000), BENCH_DETAIL_SECONDS
//! (how long details run after the list phase, default 30), BENCH_SMALL_TICKETS (default 500),
//! BENCH_SOAK_SECONDS (sustained listing at the documented limits, default 600; 0 skips it),
//! BENCH_SOAK_TICKETS (default 20000).

use std::time::{Duration, Instant};

use helpdesk_sync::config::Settings;
use helpdesk_sync::feishu::FeishuClient;
use helpdesk_sync::sim::{Endpoint, SimConfig, SimServer};
use helpdesk_sync::store::Store;
use helpdesk_sync::sync::{CycleOptions, run_cycle};
use serde_json::json;
use sqlx::ConnectOptions;
use tokio_util::sync::CancellationToken;

mod support;

use support::env_usize;

/// Peak and current resident memory of this process (simulator included), in MiB.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

async fn scratch_db(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let target = support::reset_database(&admin_url.parse()?, name).await?;
    Ok(target.to_url_lossy().to_string())
}

async fn drop_db(admin_url: &str, name: &str) -> anyhow::Result<()> {
    support::drop_database(&admin_url.parse()?, name).await
}

fn settings(sim: &SimServer, db_url: &str) -> anyhow::Result<Settings> {
    let c = sim.state.config();
    let toml = format!(
        "[feishu]\nbase_url = {:?}\napp_id = {:?}\napp_secret = {:?}\nhelpdesk_id = {:?}\n\
         helpdesk_token = {:?}\n[sync]\nmessages = false\nbackfill_since = \"2020-01-01\"\n",
        sim.base_url(),
        c.app_id,
        c.app_secret,
        c.helpdesk_id,
        c.helpdesk_token
    );
    Ok(Settings::from_toml_str(
        &toml,
        [("DATABASE_URL".to_owned(), db_url.to_owned())],
    )?)
}

fn documented_sim(tickets: usize) -> SimConfig {
    SimConfig {
        tickets,
        latency: Duration::from_millis(200),
        ..SimConfig::default()
    }
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap_or(-1)
}

/// The big copy: list phase to completion, then details for a while.
async fn first_install(admin_url: &str, tickets: usize, detail_seconds: u64) -> anyhow::Result<()> {
    let db_url = scratch_db(admin_url, "bench_list_first").await?;
    let sim = SimServer::start(documented_sim(tickets), "127.0.0.1:0".parse()?).await?;
    let sim_started = Instant::now();
    let (peak_before, _) = memory_mib();
    let settings = settings(&sim, &db_url)?;
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    let client = FeishuClient::new(&settings.feishu, settings.feishu.credentials()?)?;
    let options = CycleOptions::from_settings(&settings, None);
    let stop = CancellationToken::new();
    let started = Instant::now();
    let cycle = {
        let (store, client, options, stop) = (store.clone(), client, options.clone(), stop.clone());
        tokio::spawn(async move { run_cycle(&store, &client, &options, &|_| {}, stop).await })
    };
    // Poll until every ticket is stored with its status (the list's work): a cheap count on the
    // table, so the watching does not slow the writing; ticket_facts is checked at the end.
    let mut complete_at = None;
    let mut samples = Vec::new();
    while complete_at.is_none() && started.elapsed() < Duration::from_secs(1800) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = count(
            &store,
            "SELECT count(*) FROM tickets WHERE status IS NOT NULL",
        )
        .await;
        samples.push((started.elapsed(), n));
        if n >= tickets as i64 {
            complete_at = Some(started.elapsed());
        }
    }
    let complete_at = complete_at.ok_or_else(|| anyhow::anyhow!("list phase did not finish"))?;
    let details_at_complete = sim.state.detail_requests(None);
    let in_facts = count(
        &store,
        "SELECT count(*) FROM ticket_facts WHERE status IS NOT NULL",
    )
    .await;
    let list_arrivals: Vec<Duration> = sim
        .state
        .requests()
        .iter()
        .filter(|r| r.endpoint == Endpoint::List)
        .map(|r| r.arrived)
        .collect();
    let lists = list_arrivals.len();
    // Pauses in the list calls: the pace is 40/s (25 ms apart); a longer pause is the listing
    // waiting on an answer (a split's first pages, a piece's last pages) or on the writers.
    let mut sorted = list_arrivals.clone();
    sorted.sort();
    let pauses: Vec<Duration> = sorted
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|gap| *gap > Duration::from_millis(60))
        .collect();
    let paused: Duration = pauses.iter().sum();
    // On the bench's clock (the simulator started a little before it).
    let since_start = |at: Option<&Duration>| {
        at.map_or(0.0, |at| {
            at.as_secs_f64() - (sim_started.elapsed() - started.elapsed()).as_secs_f64()
        })
    };
    let (first_list, last_list) = (
        since_start(list_arrivals.iter().min()),
        since_start(list_arrivals.iter().max()),
    );
    tokio::time::sleep(Duration::from_secs(detail_seconds)).await;
    let details = sim.state.detail_requests(None) - details_at_complete;
    let detail_rate = details as f64 / detail_seconds as f64;
    let tags_known = count(&store, "SELECT count(*) FROM tickets WHERE tags_known").await;
    stop.cancel();
    let _ = cycle.await;
    let (peak_after, rss_after) = memory_mib();
    let list_429 = sim.state.count_status(Endpoint::List, 429);
    let detail_429 = sim.state.count_status(Endpoint::Detail, 429);
    println!("first install, {tickets} tickets (list 50/s + 1000/min, detail 10/s, 200 ms):");
    println!(
        "  every ticket stored with status, people, durations, custom fields: {:.1} s, {lists} list calls, {} detail calls by then; {in_facts} rows in ticket_facts",
        complete_at.as_secs_f64(),
        details_at_complete
    );
    let half = samples
        .iter()
        .find(|(_, n)| *n >= tickets as i64 / 2)
        .map_or(0.0, |(t, _)| t.as_secs_f64());
    println!("  half of them: {half:.1} s");
    println!(
        "  list calls from {first_list:.1} s to {last_list:.1} s (the last answered ~0.2 s later; \
         the rest is the writers finishing and the 0.5 s poll); {} pauses over 60 ms between \
         list calls, {:.1} s in all",
        pauses.len(),
        paused.as_secs_f64()
    );
    println!(
        "  details: {details} in {detail_seconds} s after the list phase = {detail_rate:.2}/s; \
         tags known for {tags_known}; all tags (and the copy without list rows) ≈ {:.0} min",
        tickets as f64 / detail_rate.max(0.01) / 60.0
    );
    println!("  429s: list {list_429}, detail {detail_429}");
    println!(
        "  memory (process incl. simulator): peak {peak_before:.0} MiB before, {peak_after:.0} MiB after; RSS now {rss_after:.0} MiB"
    );
    drop_db(admin_url, "bench_list_first").await
}

/// A small copy synced completely, then 1 % changed: when is the change stored?
async fn steady_state(admin_url: &str, tickets: usize) -> anyhow::Result<()> {
    let db_url = scratch_db(admin_url, "bench_list_steady").await?;
    let sim = SimServer::start(documented_sim(tickets), "127.0.0.1:0".parse()?).await?;
    let sim_started = Instant::now();
    let settings = settings(&sim, &db_url)?;
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    let client = FeishuClient::new(&settings.feishu, settings.feishu.credentials()?)?;
    let options = CycleOptions::from_settings(&settings, None);
    let first = Instant::now();
    run_cycle(&store, &client, &options, &|_| {}, CancellationToken::new()).await?;
    let full = first.elapsed();
    let tags = count(&store, "SELECT count(*) FROM tickets WHERE tags_known").await;
    println!(
        "small copy, {tickets} tickets: complete with tags after {:.1} s ({tags} tags known)",
        full.as_secs_f64()
    );
    let ids = sim.state.ticket_ids();
    let changed: Vec<String> = ids.iter().step_by(100).cloned().collect();
    for id in &changed {
        sim.state.update_ticket(id, |t| t["status"] = json!(3));
    }
    let details_before = sim.state.detail_requests(None);
    let cycle_start = sim_started.elapsed();
    let cycle_wall = chrono::Utc::now();
    run_cycle(&store, &client, &options, &|_| {}, CancellationToken::new()).await?;
    // When each changed ticket's list row was stored (`listed_at`, this process's clock), and
    // when the cycle's first detail request reached the simulator.
    let stored: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT max(listed_at) FROM tickets WHERE ticket_id = ANY($1) AND status = 3",
    )
    .bind(&changed)
    .fetch_one(store.pool())
    .await?;
    let stored_count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tickets WHERE ticket_id = ANY($1) AND status = 3")
            .bind(&changed)
            .fetch_one(store.pool())
            .await?;
    let first_detail = sim
        .state
        .requests()
        .iter()
        .filter(|r| r.endpoint == Endpoint::Detail && r.arrived >= cycle_start)
        .map(|r| r.arrived)
        .min();
    let details = sim.state.detail_requests(None) - details_before;
    let stored_ms = stored.map_or("never".to_owned(), |t| {
        format!("{} ms", (t - cycle_wall).num_milliseconds())
    });
    let detail_ms = first_detail.map_or("never".to_owned(), |d| {
        format!("{:.0} ms", (d - cycle_start).as_secs_f64() * 1000.0)
    });
    println!(
        "steady state, {} of {tickets} changed: {stored_count} stored from their list rows by {stored_ms} into the cycle, first detail call at {detail_ms}; {details} detail calls (one per changed ticket: tags and verification)",
        changed.len(),
    );
    drop_db(admin_url, "bench_list_steady").await
}

/// Most of `times` (sorted) within any `window`.
fn peak_in(times: &[Duration], window: Duration) -> usize {
    let mut peak = 0;
    let mut start = 0;
    for (end, t) in times.iter().enumerate() {
        while *t - times[start] >= window {
            start += 1;
        }
        peak = peak.max(end + 1 - start);
    }
    peak
}

/// Sustained listing at the documented limits: history scans (`sync --since`) of a helpdesk
/// again and again for `seconds`, ids only, counting 429s and the busiest second and minute.
async fn list_soak(admin_url: &str, tickets: usize, seconds: u64) -> anyhow::Result<()> {
    let db_url = scratch_db(admin_url, "bench_list_soak").await?;
    let sim = SimServer::start(documented_sim(tickets), "127.0.0.1:0".parse()?).await?;
    let mut settings = settings(&sim, &db_url)?;
    settings.sync.store_list_rows = false;
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    let client = FeishuClient::new(&settings.feishu, settings.feishu.credentials()?)?;
    let since = "2020-01-01T00:00:00Z".parse().ok();
    let options = CycleOptions {
        max_tickets_per_cycle: Some(0),
        ..CycleOptions::from_settings(&settings, since)
    };
    let started = Instant::now();
    let mut cycles = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        let stop = CancellationToken::new();
        let left = Duration::from_secs(seconds).saturating_sub(started.elapsed());
        let timer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(left).await;
                stop.cancel();
            })
        };
        let _ = run_cycle(&store, &client, &options, &|_| {}, stop).await;
        timer.abort();
        cycles += 1;
    }
    let mut times: Vec<Duration> = sim
        .state
        .requests()
        .iter()
        .filter(|r| r.endpoint == Endpoint::List)
        .map(|r| r.arrived)
        .collect();
    times.sort();
    println!(
        "list soak, {seconds} s of history scans ({tickets} tickets, {cycles} scans): {} list calls ({:.1}/s), 429s {}, busiest second {}, busiest minute {}",
        times.len(),
        times.len() as f64 / seconds as f64,
        sim.state.count_status(Endpoint::List, 429),
        peak_in(&times, Duration::from_secs(1)),
        peak_in(&times, Duration::from_secs(60)),
    );
    drop_db(admin_url, "bench_list_soak").await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::install_crypto_provider();
    let admin_url = support::server_url();
    let tickets = env_usize("BENCH_TICKETS", 100_000);
    let detail_seconds = env_usize("BENCH_DETAIL_SECONDS", 30) as u64;
    let small = env_usize("BENCH_SMALL_TICKETS", 500);
    let soak = env_usize("BENCH_SOAK_SECONDS", 600) as u64;
    first_install(&admin_url, tickets, detail_seconds).await?;
    steady_state(&admin_url, small).await?;
    if soak > 0 {
        list_soak(&admin_url, env_usize("BENCH_SOAK_TICKETS", 20_000), soak).await?;
    }
    Ok(())
}
