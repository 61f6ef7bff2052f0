//! The learned pace of an endpoint whose limit Feishu does not publish (messages), against the
//! simulator's true limit: for true limits of 2/s, 20/s and 50/s, how long until the learned
//! pace and the accepted throughput reach 90 % of the true limit (goal ≤ 60 s), and the share
//! of requests answered 429 over the run (goal < 1 % over 10 minutes). The client is the
//! daemon's (`FeishuClient`, its pacer and error policy) with the default start (5/s) and a
//! ceiling of 100/s, so only the simulator's limit bounds it; 16 workers ask for conversation
//! pages as fast as the pace grants. The three limits run side by side, each against its own
//! simulator. No database is involved.
//! Run: `cargo bench --bench learned_pace`.
//!
//! Environment: BENCH_SECONDS (default 600: the 10-minute figure; shorter for a quick look),
//! BENCH_LIMITS (default "2,20,50").

use std::sync::Arc;
use std::time::{Duration, Instant};

use helpdesk_sync::config::Settings;
use helpdesk_sync::domain::TicketId;
use helpdesk_sync::feishu::FeishuClient;
use helpdesk_sync::feishu::client::MessagesQuery;
use helpdesk_sync::sim::{Endpoint, SimConfig, SimServer};
use tokio_util::sync::CancellationToken;

mod support;

use support::env_usize;

/// Requests in flight at once (the daemon's default `max_in_flight`).
const WORKERS: usize = 16;
/// The window accepted throughput is measured over.
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(5);

struct Outcome {
    limit: usize,
    /// When the learned pace first reached 90 % of the limit.
    pace_at_90: Option<Duration>,
    /// When the accepted requests of the last THROUGHPUT_WINDOW first reached 90 % of it.
    throughput_at_90: Option<Duration>,
    accepted: usize,
    limited: usize,
    final_pace: f64,
    /// Accepted per second over the last minute of the run.
    last_minute: f64,
}

async fn scenario(limit: usize, seconds: u64) -> anyhow::Result<Outcome> {
    let sim = SimServer::start(
        SimConfig {
            tickets: 200,
            message_limit_per_second: limit,
            detail_limit_per_second: 10_000,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let c = sim.state.config();
    let toml = format!(
        "[feishu]\nbase_url = {:?}\napp_id = {:?}\napp_secret = {:?}\nhelpdesk_id = {:?}\n\
         helpdesk_token = {:?}\nmessage_requests_per_second_ceiling = 100\n\
         max_attempts = 100\n",
        sim.base_url(),
        c.app_id,
        c.app_secret,
        c.helpdesk_id,
        c.helpdesk_token
    );
    let settings = Settings::from_toml_str(&toml, std::iter::empty::<(String, String)>())?;
    let client = Arc::new(FeishuClient::new(
        &settings.feishu,
        settings.feishu.credentials()?,
    )?);
    let ids: Arc<Vec<TicketId>> = Arc::new(
        sim.state
            .ticket_ids()
            .iter()
            .filter_map(|i| TicketId::parse(i).ok())
            .collect(),
    );
    let stop = CancellationToken::new();
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (client, ids, stop) = (client.clone(), ids.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let query = MessagesQuery {
                page: 1,
                page_size: 200,
                time_start: None,
                time_end: None,
            };
            let mut n = w;
            while !stop.is_cancelled() {
                let _ = client
                    .list_messages(&ids[n % ids.len()], &query, &stop)
                    .await;
                n += WORKERS;
            }
        }));
    }
    // Sample the learned pace ten times a second.
    let pace = || {
        client
            .learned_rates()
            .into_iter()
            .find(|(e, _)| *e == "messages")
            .map_or(0.0, |(_, r)| r.rate)
    };
    let mut pace_at_90 = None;
    while started.elapsed() < Duration::from_secs(seconds) {
        if pace_at_90.is_none() && pace() >= 0.9 * limit as f64 {
            pace_at_90 = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    for w in workers {
        w.await?;
    }
    let final_pace = pace();
    let log = sim.state.requests();
    let since_start = sim.state.started().elapsed() - started.elapsed();
    let accepted_times: Vec<Duration> = log
        .iter()
        .filter(|r| r.endpoint == Endpoint::Messages && r.status == 200)
        .map(|r| r.arrived.saturating_sub(since_start))
        .collect();
    let limited = sim.state.count_status(Endpoint::Messages, 429);
    // The first moment the last THROUGHPUT_WINDOW held 90 % of the limit's worth of answers.
    let need = (0.9 * limit as f64 * THROUGHPUT_WINDOW.as_secs_f64()).ceil() as usize;
    let mut throughput_at_90 = None;
    let mut first = 0;
    for (last, at) in accepted_times.iter().enumerate() {
        while *at - accepted_times[first] >= THROUGHPUT_WINDOW {
            first += 1;
        }
        if last - first + 1 >= need {
            throughput_at_90 = Some(*at);
            break;
        }
    }
    let end = started.elapsed();
    let last_minute = accepted_times
        .iter()
        .filter(|t| end.saturating_sub(**t) <= Duration::from_secs(60))
        .count() as f64
        / 60.0_f64.min(end.as_secs_f64());
    Ok(Outcome {
        limit,
        pace_at_90,
        throughput_at_90,
        accepted: accepted_times.len(),
        limited,
        final_pace,
        last_minute,
    })
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::install_crypto_provider();
    let seconds = env_usize("BENCH_SECONDS", 600) as u64;
    let limits: Vec<usize> = std::env::var("BENCH_LIMITS")
        .unwrap_or_else(|_| "2,20,50".into())
        .split(',')
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    println!(
        "learned messages pace: start 5/s, ceiling 100/s, {WORKERS} workers, {seconds} s per limit (side by side)"
    );
    let runs = futures::future::join_all(limits.iter().map(|l| scenario(*l, seconds))).await;
    println!(
        "| true limit (sim) | learned pace ≥ 90 % after | accepted ≥ 90 % (5 s window) after | requests | 429 answers | 429 share | pace at the end | accepted/s, last minute |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in runs {
        let o = run?;
        let total = o.accepted + o.limited;
        println!(
            "| {}/s | {} | {} | {total} | {} | {:.3} % | {:.2}/s | {:.2}/s |",
            o.limit,
            secs(o.pace_at_90),
            secs(o.throughput_at_90),
            o.limited,
            100.0 * o.limited as f64 / total.max(1) as f64,
            o.final_pace,
            o.last_minute,
        );
    }
    Ok(())
}
