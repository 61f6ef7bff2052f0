//! The daemon's own memory during a first install (issue 25, item 3: peak RSS ≤ 64 MiB, flat in
//! the number of tickets). The daemon (`helpdesk-sync run`, release build) runs as a process of
//! its own against the simulator served by this bench process and a scratch database on the
//! local PostgreSQL; its VmRSS and VmHWM are read from `/proc/<pid>/status` every 50 ms.
//! Run: `cargo bench --bench memory`.
//!
//! 1. For each size: a complete first install (list rows, every detail, every conversation)
//!    with the simulator's limits out of the way and the daemon's paces at the highest the
//!    config accepts (1000/s each, 16 in flight): the most work per second the pipeline does,
//!    so the most in memory at once.
//! 2. The list phase of a first install at the documented limits (list 50/s and 1000/min,
//!    detail 10/s, 200 ms latency) with the default config: the list-first benchmark's
//!    scenario, where the daemon's memory was measured at 136 MB for 50,000 tickets.
//!
//! Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres; a scratch
//! database `bench_memory` is created and dropped), BENCH_MEMORY_TICKETS (comma list, default
//! "10000,50000,100000"), BENCH_MEMORY_DOCUMENTED_TICKETS (the list phase at the documented
//! limits; default 100000, 0 skips it).

use std::time::Duration;

use anyhow::Context;
use helpdesk_sync::sim::{SimConfig, SimServer};

mod support;

use support::daemon::{Install, Scratch, config_toml, first_install, mib};
use support::env_usize;

/// Simulator limits no run reaches: no 429s.
const NO_LIMIT: usize = 1_000_000;
/// Most time one install may take.
const LIMIT: Duration = Duration::from_secs(3600);

fn sizes() -> anyhow::Result<Vec<usize>> {
    match std::env::var("BENCH_MEMORY_TICKETS") {
        Err(_) => Ok(vec![10_000, 50_000, 100_000]),
        Ok(text) => text
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .with_context(|| format!("BENCH_MEMORY_TICKETS: {n:?} is not a number"))
            })
            .collect(),
    }
}

/// A complete first install of `tickets` at the pipeline's own speed.
async fn unlimited(tickets: usize) -> anyhow::Result<Install> {
    let sim = SimServer::start(
        SimConfig {
            tickets,
            detail_limit_per_second: NO_LIMIT,
            list_limit_per_second: NO_LIMIT,
            list_limit_per_minute: NO_LIMIT,
            message_limit_per_second: NO_LIMIT,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let db = Scratch::create("bench_memory").await?;
    let config = config_toml(
        &sim,
        &db.url,
        "detail_requests_per_second = 1000.0\nlist_requests_per_second = 1000.0\n\
         list_requests_per_minute = 1000000\nmessage_requests_per_second = 1000.0\n",
        "",
    );
    let install = first_install(&sim, &db, &config, tickets, LIMIT, false).await?;
    db.drop().await?;
    anyhow::ensure!(
        install.complete_at().is_some(),
        "the install of {tickets} did not complete within {LIMIT:?}: {:?}",
        install.last
    );
    Ok(install)
}

/// The list phase of a first install at the documented limits, default config.
async fn documented(tickets: usize) -> anyhow::Result<Install> {
    let sim = SimServer::start(
        SimConfig {
            tickets,
            latency: Duration::from_millis(200),
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let db = Scratch::create("bench_memory").await?;
    let config = config_toml(&sim, &db.url, "", "");
    let install = first_install(&sim, &db, &config, tickets, LIMIT, true).await?;
    db.drop().await?;
    anyhow::ensure!(
        install.content_at.is_some(),
        "the list phase of {tickets} did not complete within {LIMIT:?}: {:?}",
        install.last
    );
    Ok(install)
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::install_crypto_provider();
    println!(
        "memory: the daemon (`helpdesk-sync run`, own process) during a first install; \
         VmHWM/VmRSS from /proc every 50 ms"
    );
    println!(
        "\n1. complete install (list rows, details, conversations), simulator unlimited, \
         paces 1000/s, 16 in flight\n"
    );
    println!(
        "| tickets | content s | complete s | peak RSS at content MiB | peak RSS MiB | RSS at end MiB | list / detail / messages calls | detail/s | messages/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut peaks = Vec::new();
    for tickets in sizes()? {
        let i = unlimited(tickets).await?;
        println!(
            "| {tickets} | {} | {} | {} | **{}** | {} | {} / {} / {} | {:.0} | {:.0} |",
            secs(i.content_at),
            secs(i.complete_at()),
            mib(i.hwm_at_content_kb),
            mib(i.hwm_kb),
            mib(i.rss_end_kb),
            i.list.0,
            i.detail.0,
            i.messages.0,
            Install::rate(i.detail.0, i.detail_span),
            Install::rate(i.messages.0, i.messages_span),
        );
        peaks.push((tickets, i.hwm_kb));
    }
    if let (Some(first), Some(last)) = (peaks.first(), peaks.last())
        && last.0 > first.0
    {
        let per_ticket = (last.1 as f64 - first.1 as f64) * 1024.0 / (last.0 - first.0) as f64;
        println!(
            "\npeak from {} to {} tickets: {} → {} MiB ({per_ticket:+.1} bytes per ticket)",
            first.0,
            last.0,
            mib(first.1),
            mib(last.1)
        );
    }
    let documented_tickets = env_usize("BENCH_MEMORY_DOCUMENTED_TICKETS", 100_000);
    if documented_tickets > 0 {
        let i = documented(documented_tickets).await?;
        println!(
            "\n2. list phase at the documented limits (list 50/s + 1000/min, detail 10/s, 200 ms), default config:\n\
             {documented_tickets} tickets' content stored after {} s ({} list calls, {} 429s); \
             daemon peak RSS {} MiB, RSS then {} MiB",
            secs(i.content_at),
            i.list.0,
            i.list.1,
            mib(i.hwm_kb),
            mib(i.rss_end_kb)
        );
    }
    Ok(())
}
