//! Detail-endpoint pace, end to end: the real sync cycle against the simulator (300 ms ± 100 ms
//! latency, the documented 10 req/s limit) and a local PostgreSQL, beside a strictly sequential
//! client on the same simulator. Run: `cargo bench --bench detail_pace`.
//!
//! Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres; a scratch
//! database is created and dropped), BENCH_TICKETS (default 300), BENCH_SEQUENTIAL_TICKETS (40).

use std::time::{Duration, Instant};

use helpdesk_sync::config::Settings;
use helpdesk_sync::domain::TicketId;
use helpdesk_sync::feishu::FeishuClient;
use helpdesk_sync::sim::{Endpoint, SimConfig, SimServer};
use helpdesk_sync::store::Store;
use helpdesk_sync::store::queue::Source;
use helpdesk_sync::sync::{CycleOptions, run_cycle};
use sqlx::ConnectOptions;
use tokio_util::sync::CancellationToken;

mod support;

use support::env_usize;

struct Run {
    tickets: usize,
    wall: Duration,
    /// Requests per second between the first and the last arrival at the simulator.
    steady_rate: f64,
    rate_limited: usize,
    peak_per_second: usize,
}

async fn run(db_url: &str, tickets: usize, rate: f64, in_flight: usize) -> anyhow::Result<Run> {
    let sim = SimServer::start(
        SimConfig {
            tickets,
            latency: Duration::from_millis(300),
            jitter: Duration::from_millis(100),
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let c = sim.state.config();
    let toml = format!(
        "[feishu]\nbase_url = {:?}\napp_id = {:?}\napp_secret = {:?}\nhelpdesk_id = {:?}\n\
         helpdesk_token = {:?}\ndetail_requests_per_second = {rate}\nmax_in_flight = {in_flight}\n\
         [sync]\ndiscover = false\nmessages = false\n",
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
    sqlx::query("TRUNCATE tickets, ticket_sync_state, helpdesk_users, tags CASCADE")
        .execute(store.pool())
        .await?;
    let ids: Vec<TicketId> = sim
        .state
        .ticket_ids()
        .iter()
        .filter_map(|i| TicketId::parse(i).ok())
        .collect();
    store.enqueue(&ids, Source::Cli).await?;
    let client = FeishuClient::new(&settings.feishu, settings.feishu.credentials()?)?;
    let started = Instant::now();
    let report = run_cycle(
        &store,
        &client,
        &CycleOptions::from_settings(&settings, None),
        &|_| {},
        CancellationToken::new(),
    )
    .await?;
    let wall = started.elapsed();
    anyhow::ensure!(
        report.written.changed == tickets as u64,
        "not every ticket stored: {report:?}"
    );
    let arrivals: Vec<Duration> = sim
        .state
        .requests()
        .iter()
        .filter(|r| r.endpoint == Endpoint::Detail)
        .map(|r| r.arrived)
        .collect();
    let span = arrivals.iter().max().copied().unwrap_or_default()
        - arrivals.iter().min().copied().unwrap_or_default();
    Ok(Run {
        tickets,
        wall,
        steady_rate: (arrivals.len().saturating_sub(1)) as f64 / span.as_secs_f64().max(1e-9),
        rate_limited: sim.state.count_status(Endpoint::Detail, 429),
        peak_per_second: sim.state.max_per_second(Endpoint::Detail),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::install_crypto_provider();
    // `cargo bench` passes --bench; nothing else to parse.
    let server = support::server()?;
    let name = format!("hsbench_{}", std::process::id());
    let db_url = support::reset_database(&server, &name)
        .await?
        .to_url_lossy()
        .to_string();

    let rate = 9.0;
    let paced = run(&db_url, env_usize("BENCH_TICKETS", 300), rate, 16).await;
    let sequential = run(&db_url, env_usize("BENCH_SEQUENTIAL_TICKETS", 40), rate, 1).await;

    support::drop_database(&server, &name).await?;

    let (paced, sequential) = (paced?, sequential?);
    println!("detail pace, simulator latency 300 ms ± 100 ms, limit 10/s, configured {rate}/s");
    println!(
        "{:<28} {:>7} {:>9} {:>12} {:>11} {:>6} {:>14}",
        "client", "tickets", "wall s", "steady req/s", "% of pace", "429s", "peak in 1 s"
    );
    for (name, r) in [
        ("paced, 16 in flight", &paced),
        ("sequential (1 in flight)", &sequential),
    ] {
        println!(
            "{:<28} {:>7} {:>9.1} {:>12.2} {:>10.1}% {:>6} {:>14}",
            name,
            r.tickets,
            r.wall.as_secs_f64(),
            r.steady_rate,
            r.steady_rate / rate * 100.0,
            r.rate_limited,
            r.peak_per_second
        );
    }
    println!(
        "ratio paced / sequential: {:.2}x",
        paced.steady_rate / sequential.steady_rate
    );
    Ok(())
}
