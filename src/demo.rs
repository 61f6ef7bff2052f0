//! `demo`: the whole product end to end with no credentials: an in-process simulator of one app
//! with two helpdesks ("Customer support" and "IT", sharing the app's rate limits; a few injected
//! faults), the real client, the real queues and upserts, into `DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/helpdesk_demo`, created if missing); then a few
//! tickets change upstream and their signed, encrypted webhook events go through the real event
//! endpoint (one endpoint for both helpdesks), which queues them for an event-triggered cycle. An
//! `[sla]` section seeds a business calendar and two SLA targets, so the database shows SLA
//! results (`ticket_sla`).
//!
//! The first helpdesk's data is what a one-helpdesk demo made (same generated tickets, same
//! faults, same changes): the Superset check (`deploy/superset/check.sh`) relies on it. The
//! second helpdesk's tickets sit beside it, with their own ids and note authors.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, HelpdeskSettings, Settings};
use crate::console::{ProgressDisplay, summarize};
use crate::domain::{Progress, TicketId};
use crate::feishu::FeishuClient;
use crate::feishu::client::FeishuApp;
use crate::sim::{Fault, SimConfig, SimHelpdesk, SimServer};
use crate::store::helpdesks::HelpdeskName;
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

/// The simulated app of the demo: "Customer support" with `tickets` tickets (the first
/// helpdesk, exactly as a one-helpdesk simulator makes it) and "IT" with half as many.
fn demo_sim_config(tickets: usize) -> SimConfig {
    SimConfig {
        tickets,
        helpdesk_name: "Customer support".into(),
        extra_helpdesks: vec![SimHelpdesk {
            name: "IT".into(),
            ..SimHelpdesk::numbered(1, tickets / 2)
        }],
        latency: Duration::from_millis(120),
        jitter: Duration::from_millis(60),
        ..SimConfig::default()
    }
}

pub async fn run(tickets: usize, rate: f64) -> Result<(), DemoError> {
    let database_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEMO_DATABASE_URL.into());
    let sim_config = demo_sim_config(tickets);
    let sim = SimServer::start(sim_config.clone(), SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("starting the simulator")?;
    let settings = demo_settings(&sim, rate, database_url)?;
    let options = settings.database.connect_options();
    let counts: Vec<String> = sim_config
        .helpdesks()
        .iter()
        .map(|h| format!("{} {}", h.name, h.tickets))
        .collect();
    println!(
        "helpdesk-sync demo: two helpdesks of one app ({} simulated tickets) -> PostgreSQL {}",
        counts.join(", "),
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
    // The names the reporting views show beside each helpdesk id (`helpdesk_name`).
    let names: Vec<HelpdeskName> = settings
        .helpdesks()
        .iter()
        .map(|h| HelpdeskName {
            helpdesk_id: h.id.clone(),
            name: h.name.clone(),
        })
        .collect();
    store.register_helpdesks(&names).await?;

    let (ids, added) = enqueue_with_faults(&store, &sim).await?;
    println!(
        "queued {} ticket ids ({added} new); fetching at {rate} requests/s for both helpdesks \
         together (the API allows 10/s per app)...",
        ids.iter().map(Vec::len).sum::<usize>(),
    );
    let app = FeishuApp::new(&settings.feishu)?;
    let mut helpdesks = Vec::new();
    for helpdesk in settings.helpdesks() {
        let client =
            FeishuClient::for_helpdesk(app.clone(), helpdesk.credentials(&settings.feishu)?)?;
        helpdesks.push(DemoHelpdesk {
            settings: helpdesk.clone(),
            store: store.for_helpdesk(&helpdesk.id),
            client,
        });
    }
    first_sync(&helpdesks, &settings).await?;
    // The first helpdesk's tickets 2..5 (as a one-helpdesk demo changes them), and one of IT's.
    let changed: Vec<Vec<TicketId>> = ids
        .iter()
        .enumerate()
        .map(|(h, own)| {
            let range = if h == 0 { 2..5 } else { 0..1 };
            own.get(range).unwrap_or_default().to_vec()
        })
        .collect();
    demo_events(&store, &helpdesks, &settings, &sim, &changed).await?;
    print_closing(&store, &settings).await?;
    leave_config(&settings);
    Ok(())
}

/// One helpdesk of the demo: its settings, its store handle (its queue) and its client (on the
/// app's shared token and pacers).
struct DemoHelpdesk {
    settings: HelpdeskSettings,
    store: Store,
    client: FeishuClient,
}

/// The config file the demo leaves, so `status`, `check` and `migrate` work against what it built.
const DEMO_CONFIG_FILE: &str = "helpdesk-sync-demo.toml";
/// Its first line: a file that starts otherwise is not ours and is never overwritten.
const DEMO_CONFIG_MARK: &str = "# Written by `helpdesk-sync demo`";

/// The demo's settings as a config file: the demo database, the `[sla]` it seeded, and the
/// simulator's credentials at `helpdesk-sync simulate`'s default address (the demo's own
/// simulator is gone when it ends).
fn demo_config_text(settings: &Settings) -> String {
    let c = demo_sim_config(0);
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
         # and `sync`, first start `helpdesk-sync simulate --helpdesks 2` (it listens on the\n\
         # base_url below and serves both helpdesks, with these ids and tokens).\n\
         # A password, if the database needs one, comes from DATABASE_URL or PGPASSWORD.\n\n\
         [feishu]\nbase_url = \"http://127.0.0.1:8090\"\napp_id = {:?}\napp_secret = {:?}\n\n\
         # The demo's two helpdesks: one app, one rate budget shared by both.\n\
         {}\n[database]\nurl = {url:?}\n{DEMO_SLA}",
        c.app_id,
        c.app_secret,
        helpdesks_toml(&c),
    )
}

/// One `[[helpdesks]]` table per helpdesk of `c`.
fn helpdesks_toml(c: &SimConfig) -> String {
    c.helpdesks()
        .iter()
        .map(|h| {
            format!(
                "[[helpdesks]]\nname = {:?}\nhelpdesk_id = {:?}\nhelpdesk_token = {:?}\n",
                h.name, h.helpdesk_id, h.helpdesk_token
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
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
             helpdesk-sync simulate --helpdesks 2 &   # then: helpdesk-sync --config {DEMO_CONFIG_FILE} check"
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
        "[feishu]\nbase_url = {:?}\napp_id = {:?}\napp_secret = {:?}\n\
         detail_requests_per_second = {rate}\n\
         message_requests_per_second = {rate}\n\n{}{DEMO_SLA}",
        sim.base_url(),
        c.app_id,
        c.app_secret,
        helpdesks_toml(c),
    );
    Ok(Settings::from_toml_str(
        &toml,
        [("DATABASE_URL".to_owned(), database_url)],
    )?)
}

/// Queues every simulated ticket in its helpdesk's queue, with the error policy set to show in
/// the first helpdesk: transient failures retried, a body that is not JSON, a ticket deleted
/// upstream. Returns each helpdesk's ids, sorted, and how many the queues did not know.
async fn enqueue_with_faults(
    store: &Store,
    sim: &SimServer,
) -> Result<(Vec<Vec<TicketId>>, u64), DemoError> {
    let mut all = Vec::new();
    let mut added = 0;
    for (h, helpdesk) in sim.state.helpdesks().iter().enumerate() {
        let mut ids: Vec<TicketId> = sim
            .state
            .helpdesk_ticket_ids(&helpdesk.helpdesk_id)
            .iter()
            .filter_map(|id| TicketId::parse(id).ok())
            .collect();
        if h == 0 {
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
        }
        ids.sort();
        let enqueued = store
            .for_helpdesk(&helpdesk.helpdesk_id)
            .enqueue(&ids, Source::Demo)
            .await?;
        added += enqueued.added;
        all.push(ids);
    }
    Ok((all, added))
}

/// The first cycle of each helpdesk, side by side on the app's shared pacers, with one progress
/// bar (both helpdesks summed), each recorded in `sync_runs` like any other.
async fn first_sync(helpdesks: &[DemoHelpdesk], settings: &Settings) -> Result<(), DemoError> {
    let progress = ProgressDisplay::new("demo");
    let each = Mutex::new(vec![Progress::default(); helpdesks.len()]);
    let show = |index: usize, p: Progress| {
        let mut each = each.lock().unwrap_or_else(|e| e.into_inner());
        each[index] = p;
        progress.update(Progress {
            due_at_start: each.iter().map(|p| p.due_at_start).sum(),
            done: each.iter().map(|p| p.done).sum(),
            pages_listed: each.iter().map(|p| p.pages_listed).sum(),
        });
    };
    let options = CycleOptions::from_settings(settings, None);
    let cycles = helpdesks.iter().enumerate().map(|(index, h)| {
        let options = options.clone().with_helpdesk(&h.settings.id);
        let show = &show;
        async move {
            let run_id = start_recorded(&h.store, &h.settings.id, Trigger::Demo).await;
            let result = run_cycle(
                &h.store,
                &h.client,
                &options,
                &move |p| show(index, p),
                CancellationToken::new(),
            )
            .await;
            finish_recorded(&h.store, run_id, &result, false).await;
            result
        }
    });
    let results = futures::future::join_all(cycles).await;
    progress.finish();
    println!();
    for (h, result) in helpdesks.iter().zip(results) {
        let report = result.map_err(|e| DemoError::Runtime(anyhow::anyhow!(e)))?;
        println!("{}: {}", h.settings.name, summarize(&report));
    }
    println!();
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
    let names: std::collections::HashMap<&str, &str> = settings
        .helpdesks()
        .iter()
        .map(|h| (h.id.as_str(), h.name.as_str()))
        .collect();
    let per_helpdesk: Vec<String> = summary
        .tickets_by_helpdesk
        .iter()
        .map(|(id, n)| format!("{} {n}", names.get(id.as_str()).copied().unwrap_or(id)))
        .collect();
    println!(
        "The database now holds {} tickets ({}), {} people, {} notes and \
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
        per_helpdesk.join(", "),
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

/// Changes `changed` (each helpdesk's list) upstream, delivers their events to the real
/// endpoint on a local port (one endpoint for both helpdesks: each event is queued in its
/// helpdesk's queue), and runs the cycles they wake.
async fn demo_events(
    store: &Store,
    helpdesks: &[DemoHelpdesk],
    settings: &Settings,
    sim: &SimServer,
    changed: &[Vec<TicketId>],
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
        helpdesks: helpdesks.iter().map(|h| h.settings.id.clone()).collect(),
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
    for id in changed.iter().flatten() {
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
    let options = CycleOptions::from_settings(settings, None).queue_only();
    let mut refetched = 0;
    for (h, own) in helpdesks.iter().zip(changed) {
        if own.is_empty() {
            continue;
        }
        let run_id = start_recorded(&h.store, &h.settings.id, Trigger::Event).await;
        let options = options.clone().with_helpdesk(&h.settings.id);
        let result = run_cycle(
            &h.store,
            &h.client,
            &options,
            &|_| {},
            CancellationToken::new(),
        )
        .await;
        finish_recorded(&h.store, run_id, &result, false).await;
        let report = result.map_err(|e| DemoError::Runtime(anyhow::anyhow!(e)))?;
        refetched += report.written.changed;
    }
    stop.cancel();
    let each: Vec<String> = helpdesks
        .iter()
        .zip(changed)
        .map(|(h, own)| format!("{} {}", h.settings.name, own.len()))
        .collect();
    println!(
        "Webhook events: {} tickets changed upstream ({}); their signed, encrypted events went \
         to one endpoint, {url};\n\
         {refetched} tickets re-fetched {} ms after the first event was sent, each by its \
         helpdesk (event_receipts; sync_runs with trigger = 'event').\n",
        changed.iter().map(Vec::len).sum::<usize>(),
        each.join(", "),
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
