//! `demo`: the whole product end to end with no credentials: an in-process simulator (with a few
//! injected faults), the real client, the real queue and upserts, into `DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/helpdesk_demo`, created if missing); then a few
//! tickets change upstream and their signed, encrypted webhook events go through the real event
//! endpoint, which queues them for an event-triggered cycle. An `[sla]` section seeds a business
//! calendar and two SLA targets, so the database shows SLA results (`ticket_sla`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Settings};
use crate::console::{ProgressDisplay, summarize};
use crate::domain::TicketId;
use crate::feishu::FeishuClient;
use crate::sim::{Fault, SimConfig, SimServer};
use crate::store::queue::Source;
use crate::store::runs::Trigger;
use crate::store::{DemoDatabase, Store, describe_target, reset_demo_database};
use crate::sync::{CycleOptions, finish_recorded, run_cycle, start_recorded};

pub const DEMO_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/helpdesk_demo";

/// The demo's `[sla]`: Shanghai office hours with a lunch break, and two targets.
const DEMO_SLA: &str = r#"
[sla]
default_calendar = "office"

[sla.calendars.office]
timezone = "Asia/Shanghai"
hours = { weekdays = ["09:00-12:00", "13:00-18:00"] }
holidays = ["2026-10-01", "2026-10-02"]

[[sla.targets]]
id = "first-reply"
metric = "first_reply"
minutes = 240

[[sla.targets]]
id = "resolution"
metric = "full_resolution"
minutes = 960
"#;

/// Why the demo stopped: its settings (e.g. a malformed `DATABASE_URL`), or at run time.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}", crate::telemetry::ErrorChain(.0))]
    Runtime(#[from] anyhow::Error),
}

pub async fn run(tickets: usize, rate: f64) -> Result<(), DemoError> {
    let database_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEMO_DATABASE_URL.into());
    let sim_config = SimConfig {
        tickets,
        latency: Duration::from_millis(120),
        jitter: Duration::from_millis(60),
        ..SimConfig::default()
    };
    let sim = SimServer::start(sim_config.clone(), SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("starting the simulator")?;
    let settings = demo_settings(&sim, rate, database_url)?;
    let options = settings.database.connect_options();
    println!(
        "helpdesk-sync demo: {tickets} simulated tickets -> PostgreSQL {}",
        describe_target(&options)
    );
    match reset_demo_database(&options).await? {
        DemoDatabase::Created => println!("created the demo database"),
        DemoDatabase::Reset => println!(
            "reset the demo database (dropped and created again): every demo starts from an \
             empty one, so a second run leaves the same tables as the first"
        ),
    }
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    store.apply_sla_settings(&settings.sla).await?;

    let (ids, added) = enqueue_with_faults(&store, &sim).await?;
    println!(
        "queued {} ticket ids ({added} new); fetching at {rate} requests/s (the API allows 10/s)...",
        ids.len(),
    );
    let client = FeishuClient::new(&settings.feishu, settings.feishu.credentials()?)?;
    first_sync(&store, &client, &settings).await?;
    let changed = ids.get(2..5).unwrap_or_default();
    demo_events(&store, &client, &settings, &sim, changed).await?;
    print_closing(&store, &settings).await?;
    leave_config(&settings);
    Ok(())
}

/// The config file the demo leaves, so `status`, `check` and `migrate` work against what it built.
const DEMO_CONFIG_FILE: &str = "helpdesk-sync-demo.toml";
/// Its first line: a file that starts otherwise is not ours and is never overwritten.
const DEMO_CONFIG_MARK: &str = "# Written by `helpdesk-sync demo`";

/// The demo's settings as a config file: the demo database, the `[sla]` it seeded, and the
/// simulator's credentials at `helpdesk-sync simulate`'s default address (the demo's own
/// simulator is gone when it ends).
fn demo_config_text(settings: &Settings) -> String {
    let c = SimConfig::default();
    let o = settings.database.connect_options();
    let url = format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or("postgres")
    );
    format!(
        "{DEMO_CONFIG_MARK} (it rewrites this file on every run).\n\
         # `helpdesk-sync --config {DEMO_CONFIG_FILE} status` reads the demo database; for `check`\n\
         # and `sync`, first start `helpdesk-sync simulate` (it listens on the base_url below).\n\
         # A password, if the database needs one, comes from DATABASE_URL or PGPASSWORD.\n\n\
         [feishu]\nbase_url = \"http://127.0.0.1:8090\"\napp_id = {:?}\napp_secret = {:?}\n\
         helpdesk_id = {:?}\nhelpdesk_token = {:?}\n\n[database]\nurl = {url:?}\n{DEMO_SLA}",
        c.app_id, c.app_secret, c.helpdesk_id, c.helpdesk_token,
    )
}

/// Writes [`DEMO_CONFIG_FILE`] in the current directory (unless a file of that name is not
/// ours) and says how to use it.
fn leave_config(settings: &Settings) {
    let path = std::path::Path::new(DEMO_CONFIG_FILE);
    let text = demo_config_text(settings);
    let ours = std::fs::read_to_string(path)
        .map(|existing| existing.starts_with(DEMO_CONFIG_MARK))
        .unwrap_or(true);
    let written = ours && std::fs::write(path, &text).is_ok();
    if written {
        println!(
            "\nConfig for this demo: ./{DEMO_CONFIG_FILE}\n  helpdesk-sync --config {DEMO_CONFIG_FILE} status\n  \
             helpdesk-sync simulate &   # then: helpdesk-sync --config {DEMO_CONFIG_FILE} check"
        );
    } else {
        println!(
            "./{DEMO_CONFIG_FILE} exists and is not the demo's: left alone. The demo's config \
             would be:\n\n{text}"
        );
    }
}

/// The config a user would write, pointing at the simulator.
fn demo_settings(sim: &SimServer, rate: f64, database_url: String) -> Result<Settings, DemoError> {
    let c = sim.state.config();
    let toml = format!(
        "[feishu]\nbase_url = {:?}\napp_id = {:?}\napp_secret = {:?}\nhelpdesk_id = {:?}\n\
         helpdesk_token = {:?}\ndetail_requests_per_second = {rate}\n\
         message_requests_per_second = {rate}\n{DEMO_SLA}",
        sim.base_url(),
        c.app_id,
        c.app_secret,
        c.helpdesk_id,
        c.helpdesk_token,
    );
    Ok(Settings::from_toml_str(
        &toml,
        [("DATABASE_URL".to_owned(), database_url)],
    )?)
}

/// Queues every simulated ticket, with the error policy set to show: transient failures
/// retried, a body that is not JSON, a ticket deleted upstream. Returns the ids, sorted, and
/// how many the queue did not know.
async fn enqueue_with_faults(
    store: &Store,
    sim: &SimServer,
) -> Result<(Vec<TicketId>, u64), DemoError> {
    let mut ids: Vec<TicketId> = sim
        .state
        .ticket_ids()
        .iter()
        .filter_map(|id| TicketId::parse(id).ok())
        .collect();
    if let Some(first) = ids.first() {
        sim.state
            .inject(first.as_str(), [Fault::InternalError, Fault::BadGateway]);
    }
    if let Some(id) = ids.get(1) {
        sim.state.inject(id.as_str(), [Fault::NotJson]);
    }
    if let Some(gone) = ids.last() {
        sim.state.delete_ticket(gone.as_str());
    }
    ids.sort();
    let enqueued = store.enqueue(&ids, Source::Demo).await?;
    Ok((ids, enqueued.added))
}

/// The first cycle, with a progress bar, recorded in `sync_runs` like any other.
async fn first_sync(
    store: &Store,
    client: &FeishuClient,
    settings: &Settings,
) -> Result<(), DemoError> {
    let progress = ProgressDisplay::new("demo");
    let run_id = start_recorded(store, settings.feishu.helpdesk_id.trim(), Trigger::Demo).await;
    let result = run_cycle(
        store,
        client,
        &CycleOptions::from_settings(settings, None),
        &|p| progress.update(p),
        CancellationToken::new(),
    )
    .await;
    progress.finish();
    finish_recorded(store, run_id, &result, false).await;
    let report = result.map_err(|e| DemoError::Runtime(anyhow::anyhow!(e)))?;
    println!("\n{}\n", summarize(&report));
    Ok(())
}

/// What the database holds now, and where to look next.
async fn print_closing(store: &Store, settings: &Settings) -> Result<(), DemoError> {
    let summary = store.summary().await?;
    let sla_lines: Vec<String> = summary
        .sla
        .iter()
        .map(|t| {
            format!(
                "{}: {} tickets, {} breached, {} still running",
                t.target_id, t.clocks, t.breached, t.running
            )
        })
        .collect();
    println!(
        "SLA (ticket_sla; office hours 09:00-18:00 Asia/Shanghai, first reply within 4 business \
         hours, resolution within 2 business days):\n  {}\n",
        sla_lines.join("\n  ")
    );
    println!(
        "The database now holds {} tickets, {} people, {} notes and \
         {} conversation messages.\n\
         Reply metrics from {} conversations (ticket_reply_metrics): {} of the \
         resolved ones one-touch, median customer wait {} min.\n\
         Try:\n\n  psql {DEMO_PSQL} -c \"SELECT status_label, count(*), \
         percentile_cont(0.5) WITHIN GROUP (ORDER BY first_reply_seconds) AS median_first_reply_s \
         FROM reporting.tickets GROUP BY status_label ORDER BY 2 DESC\"\n\n\
         Connect your BI tool (README: Connect your BI tool):\n\
         - schema `reporting`: tickets, status_spans, time_in_status, daily_stats, backlog,\n  \
         backlog_totals, sla, replies, messages, custom_field_values, ticket_tags, people, notes\n  \
         (ids are text; each view's comment names its time column; docs/analytics.md)\n\
         - a read-only login for it:\n    psql {DEMO_PSQL} -c \"CREATE ROLE bi LOGIN PASSWORD \
         'change-me' IN ROLE helpdesk_sync_reader\"\n\
         - Superset: import deploy/superset (a dashboard of the core charts); \
         `bash deploy/superset/check.sh` proves it in a browser.",
        summary.tickets,
        summary.people,
        summary.notes,
        summary.messages,
        summary.conversations,
        summary
            .one_touch_percent
            .map_or_else(|| "none".to_owned(), |p| format!("{p:.0} %")),
        summary
            .median_customer_wait_minutes
            .map_or_else(|| "-".to_owned(), |m| format!("{m:.1}")),
        DEMO_PSQL = psql_target(settings),
    );
    Ok(())
}

/// Changes `changed` upstream, delivers their events to the real endpoint on a local port, and
/// runs the cycle they wake.
async fn demo_events(
    store: &Store,
    client: &FeishuClient,
    settings: &Settings,
    sim: &SimServer,
    changed: &[TicketId],
) -> Result<(), DemoError> {
    use crate::events::{EventKeys, EventState};
    let c = sim.state.config();
    let wake = Arc::new(tokio::sync::Notify::new());
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let events = EventState {
        keys: EventKeys {
            verification_token: Some(c.verification_token.clone().into()),
            encrypt_key: Some(c.encrypt_key.clone().into()),
        },
        store: store.clone(),
        wake: wake.clone(),
        metrics: metrics.clone(),
        helpdesks: vec![c.helpdesk_id.clone()],
        messages: settings.sync.messages,
    };
    let state = crate::http::HttpState {
        metrics,
        store: store.clone(),
        last_outcome: Arc::new(Mutex::new(None)),
        events: Some((crate::config::DEFAULT_EVENTS_PATH.to_owned(), events)),
        settings: None,
    };
    let stop = CancellationToken::new();
    let addr = crate::http::serve(SocketAddr::from(([127, 0, 0, 1], 0)), state, stop.clone())
        .await
        .context("starting the event endpoint")?;
    let url = format!("http://{addr}{}", crate::config::DEFAULT_EVENTS_PATH);
    let http = reqwest::Client::new();
    let sent = Instant::now();
    for id in changed {
        let status = sim
            .state
            .change_and_notify(&http, &url, id.as_str())
            .await
            .context("delivering an event")?;
        if status != 200 {
            return Err(DemoError::Runtime(anyhow::anyhow!(
                "the event endpoint answered {status}"
            )));
        }
    }
    tokio::time::timeout(Duration::from_secs(5), wake.notified())
        .await
        .context("no event woke the worker")?;
    let run_id = start_recorded(store, &c.helpdesk_id, Trigger::Event).await;
    let options = CycleOptions::from_settings(settings, None).queue_only();
    let result = run_cycle(store, client, &options, &|_| {}, CancellationToken::new()).await;
    finish_recorded(store, run_id, &result, false).await;
    stop.cancel();
    let report = result.map_err(|e| DemoError::Runtime(anyhow::anyhow!(e)))?;
    println!(
        "Webhook events: {} tickets changed upstream; their signed, encrypted events went to {url};\n\
         {} tickets re-fetched {} ms after the first event was sent (event_receipts; sync_runs \
         with trigger = 'event').\n",
        changed.len(),
        report.written.changed,
        sent.elapsed().as_millis()
    );
    Ok(())
}

/// What to pass to psql for the demo database (without any password).
fn psql_target(settings: &Settings) -> String {
    let o = settings.database.connect_options();
    format!(
        "-h {} -p {} -U {} {}",
        o.get_host(),
        o.get_port(),
        o.get_username(),
        o.get_database().unwrap_or("postgres")
    )
}
