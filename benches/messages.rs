//! Conversations, counted in API calls: the backfill (every known ticket's conversation read
//! once, e.g. after an upgrade) and the steady state (a changed ticket: its detail, then only
//! its new messages). Calls do not depend on the machine; the backfill's duration at the
//! default pace is projected from them. The real cycle against the simulator and PostgreSQL.
//! Run: `cargo bench --bench messages`.
//!
//! Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres; a scratch
//! database is created and dropped), BENCH_TICKETS (default 300).

use std::time::{Duration, Instant};

use helpdesk_sync::config::{DEFAULT_MESSAGE_REQUESTS_PER_SECOND, Settings};
use helpdesk_sync::domain::TicketId;
use helpdesk_sync::feishu::FeishuClient;
use helpdesk_sync::sim::messages::{Sender, TimeBoundUnit};
use helpdesk_sync::sim::{Endpoint, SimConfig, SimServer};
use helpdesk_sync::store::Store;
use helpdesk_sync::store::queue::Source;
use helpdesk_sync::sync::{CycleOptions, run_cycle};
use serde_json::json;
use sqlx::ConnectOptions;
use tokio_util::sync::CancellationToken;

mod support;

use support::env_usize;

/// Detail and messages calls the simulator answered with 200.
fn calls(sim: &SimServer) -> (usize, usize) {
    (
        sim.state.count_status(Endpoint::Detail, 200),
        sim.state.count_status(Endpoint::Messages, 200),
    )
}

async fn cycle(store: &Store, client: &FeishuClient, settings: &Settings) -> anyhow::Result<()> {
    run_cycle(
        store,
        client,
        &CycleOptions::from_settings(settings, None),
        &|_| {},
        CancellationToken::new(),
    )
    .await?;
    Ok(())
}

async fn scenario(db_url: &str, tickets: usize, unit: TimeBoundUnit) -> anyhow::Result<()> {
    let sim = SimServer::start(
        SimConfig {
            tickets,
            latency: Duration::from_millis(50),
            detail_limit_per_second: 10_000,
            message_limit_per_second: 10_000,
            message_time_unit: unit,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let c = sim.state.config();
    let toml = format!(
        "[feishu]\nbase_url = {:?}\napp_id = {:?}\napp_secret = {:?}\nhelpdesk_id = {:?}\n\
         helpdesk_token = {:?}\ndetail_requests_per_second = 200\n\
         message_requests_per_second = 200\n[sync]\ndiscover = false\n",
        sim.base_url(),
        c.app_id,
        c.app_secret,
        c.helpdesk_id,
        c.helpdesk_token
    );
    let settings =
        Settings::from_toml_str(&toml, [("DATABASE_URL".to_owned(), db_url.to_owned())])?;
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    sqlx::raw_sql(
        "TRUNCATE tickets, ticket_sync_state, helpdesk_users, tags, api_observations CASCADE",
    )
    .execute(store.pool())
    .await?;
    let ids: Vec<TicketId> = sim
        .state
        .ticket_ids()
        .iter()
        .filter_map(|i| TicketId::parse(i).ok())
        .collect();
    let client = FeishuClient::new(&settings.feishu, settings.feishu.credentials()?)?;

    // Backfill: every ticket and its whole conversation.
    store.enqueue(&ids, Source::Cli).await?;
    let started = Instant::now();
    cycle(&store, &client, &settings).await?;
    let wall = started.elapsed();
    let (_, backfill_calls) = calls(&sim);
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM ticket_messages")
        .fetch_one(store.pool())
        .await?;
    let per_ticket = backfill_calls as f64 / tickets as f64;
    println!(
        "\nAPI reads time bounds in {unit:?}\n\
         backfill: {tickets} tickets, {messages} messages, {backfill_calls} messages calls \
         ({per_ticket:.3} per ticket), {:.1} s here; at the default {DEFAULT_MESSAGE_REQUESTS_PER_SECOND}/s \
         100,000 tickets take {:.1} h",
        wall.as_secs_f64(),
        per_ticket * 100_000.0 / DEFAULT_MESSAGE_REQUESTS_PER_SECOND / 3600.0
    );

    // Steady state, three rounds: 1 % of tickets change; each gets new messages (one of them
    // 250, more than a page); the ticket changes too.
    let changed: Vec<String> = sim.state.ticket_ids().into_iter().step_by(100).collect();
    println!(
        "| round | changed tickets | new messages | detail calls | messages calls | messages calls per changed ticket |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for round in 1..=3 {
        let mut new_messages = 0;
        for (i, id) in changed.iter().enumerate() {
            let n = if i == 0 { 250 } else { 1 + i % 5 };
            for k in 0..n {
                sim.state
                    .add_message(id, Sender::Guest, &format!("r{round} m{k}"));
            }
            new_messages += n;
            sim.state
                .update_ticket(id, |t| t["status"] = json!(2 + round % 2));
        }
        let to_enqueue: Vec<TicketId> = changed
            .iter()
            .filter_map(|i| TicketId::parse(i).ok())
            .collect();
        store.enqueue(&to_enqueue, Source::Cli).await?;
        let (detail_before, messages_before) = calls(&sim);
        cycle(&store, &client, &settings).await?;
        let (detail_after, messages_after) = calls(&sim);
        let m = messages_after - messages_before;
        println!(
            "| {round} | {} | {new_messages} | {} | {m} | {:.2} |",
            changed.len(),
            detail_after - detail_before,
            m as f64 / changed.len() as f64
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::install_crypto_provider();
    let server = support::server()?;
    let name = format!("hsbench_messages_{}", std::process::id());
    let db_url = support::reset_database(&server, &name)
        .await?
        .to_url_lossy()
        .to_string();
    let tickets = env_usize("BENCH_TICKETS", 300);
    let mut result = Ok(());
    for unit in [TimeBoundUnit::Seconds, TimeBoundUnit::Milliseconds] {
        result = result.and(scenario(&db_url, tickets, unit).await);
    }
    support::drop_database(&server, &name).await?;
    result
}
