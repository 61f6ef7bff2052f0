//! The operator's view. `status`: the queue, the last run, freshness and discovery, with a
//! verdict usable as a monitoring probe. `check`: config → database → token → list → detail,
//! one line per step with OK or the exact reason.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{HealthSettings, Settings};
use crate::domain::{ListRowsState, TicketId};
use crate::feishu::FeishuClient;
use crate::feishu::client::{ListQuery, MAX_PAGE_SIZE, TimeField};
pub use crate::store::status::{Parked, RunStatus};
use crate::store::{MIGRATOR, Store, describe_target};

/// Everything `status` knows; `--json` prints it as is.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub healthy: bool,
    /// Why not healthy, one sentence each.
    pub problems: Vec<String>,
    pub queue: QueueStatus,
    pub last_run: Option<RunStatus>,
    pub last_ok_run_finished_at: Option<DateTime<Utc>>,
    pub freshness: Freshness,
    pub discovery: DiscoveryStatus,
    pub list_rows: ListRowsStatus,
    /// The paces learned for endpoints whose limit Feishu does not publish, one per endpoint.
    pub learned_paces: Vec<LearnedPace>,
}

/// A learned pace (`pace::Learner`) as stored for the configured app, beside its settings.
#[derive(Debug, Serialize)]
pub struct LearnedPace {
    /// messages or catalog.
    pub endpoint: String,
    /// The learned pace, requests per second; None: nothing learned yet (the start applies).
    pub rate_per_second: Option<f64>,
    /// Where the pace starts when nothing is learned (`feishu.<endpoint>_requests_per_second`).
    pub start_per_second: f64,
    /// What the API accepted per second when it last limited us (None: never limited).
    pub limit_per_second: Option<f64>,
    /// The configured ceiling (`feishu.<endpoint>_requests_per_second_ceiling`).
    pub ceiling_per_second: f64,
    /// When a 429 last cut the pace.
    pub last_cut_at: Option<DateTime<Utc>>,
}

/// List-first ingestion: on or off, the tickets waiting for the detail that verifies them, and
/// the verification so far per field.
#[derive(Debug, Serialize)]
pub struct ListRowsStatus {
    /// `sync.store_list_rows` (and discovery on).
    pub enabled: bool,
    /// Off by itself: the list got the status, or most fields, wrong.
    pub degraded: bool,
    #[serde(flatten)]
    pub state: ListRowsState,
}

#[derive(Debug, Serialize)]
pub struct QueueStatus {
    pub known: i64,
    pub due_now: i64,
    pub failed: i64,
    pub claimed: i64,
    /// Tickets parked (not fetched again until enqueued), by outcome and error code.
    pub parked: Vec<Parked>,
}

#[derive(Debug, Serialize)]
pub struct Freshness {
    pub open_tickets: i64,
    /// Last successful fetch of the open ticket fetched longest ago.
    pub oldest_open_fetched_at: Option<DateTime<Utc>>,
    /// Older than this is stale (`sync.open_refresh` × 2).
    pub stale_after_seconds: u64,
}

#[derive(Debug, Serialize)]
pub struct DiscoveryStatus {
    pub enabled: bool,
    pub watermark: Option<DateTime<Utc>>,
    pub backfill_scanned_until: Option<DateTime<Utc>>,
    pub backfill_completed: Option<bool>,
}

/// Reads the status and judges it.
pub async fn status(store: &Store, settings: &Settings) -> anyhow::Result<StatusReport> {
    let now: DateTime<Utc> = store.now().await?;
    let helpdesk_id = settings.feishu.helpdesk_id.trim();
    let queue = read_queue(store).await?;
    let runs = read_runs(store, helpdesk_id).await?;
    let freshness = read_freshness(store, settings.sync.open_refresh * 2).await?;
    let discovery = read_discovery(store, settings.sync.discover).await?;
    let list_state = store.list_rows_state().await?;
    let list_rows = ListRowsStatus {
        enabled: settings.sync.discover && settings.sync.store_list_rows,
        degraded: list_state.trust().is_disabled(),
        state: list_state,
    };
    let learned_paces = read_learned_paces(store, settings).await?;
    let mut problems = judge(settings, now, &runs, &freshness);
    problems.extend(stuck(store, settings).await?.into_iter().map(|s| s.problem));
    Ok(StatusReport {
        healthy: problems.is_empty(),
        problems,
        queue,
        last_run: runs.last,
        last_ok_run_finished_at: runs.last_ok,
        freshness,
        discovery,
        list_rows,
        learned_paces,
    })
}

/// The stored learned paces of the configured app, one per learned endpoint.
async fn read_learned_paces(
    store: &Store,
    settings: &Settings,
) -> anyhow::Result<Vec<LearnedPace>> {
    let stored = store.learned_rates(settings.feishu.app_id.trim()).await?;
    let f = &settings.feishu;
    let configured = [
        (
            "messages",
            f.message_requests_per_second,
            f.message_requests_per_second_ceiling,
        ),
        (
            "catalog",
            f.catalog_requests_per_second,
            f.catalog_requests_per_second_ceiling,
        ),
    ];
    Ok(configured
        .into_iter()
        .map(|(endpoint, start, ceiling)| {
            let found = stored
                .iter()
                .find(|s| s.endpoint == endpoint)
                .map(|s| &s.rate);
            LearnedPace {
                endpoint: endpoint.to_owned(),
                // A ceiling lowered since applies at the next start.
                rate_per_second: found.map(|r| r.rate.min(ceiling)),
                start_per_second: start,
                limit_per_second: found.and_then(|r| r.limit),
                ceiling_per_second: ceiling,
                last_cut_at: found.and_then(|r| r.last_cut),
            }
        })
        .collect())
}

/// The last runs of this helpdesk: started, finished, and the last success.
struct Runs {
    last: Option<RunStatus>,
    last_finished: Option<RunStatus>,
    last_ok: Option<DateTime<Utc>>,
}

async fn read_queue(store: &Store) -> anyhow::Result<QueueStatus> {
    let counts = store.queue_counts().await?;
    Ok(QueueStatus {
        known: counts.known,
        due_now: counts.due_now,
        failed: counts.failed,
        claimed: store.claimed_tickets().await?,
        parked: store.parked_tickets().await?,
    })
}

async fn read_runs(store: &Store, helpdesk_id: &str) -> anyhow::Result<Runs> {
    Ok(Runs {
        last: store.last_run(helpdesk_id).await?,
        last_finished: store.last_finished_run(helpdesk_id).await?,
        last_ok: store.last_ok_run_finished_at(helpdesk_id).await?,
    })
}

async fn read_freshness(store: &Store, stale_after: Duration) -> anyhow::Result<Freshness> {
    let open = store.open_tickets().await?;
    Ok(Freshness {
        open_tickets: open.count,
        oldest_open_fetched_at: open.oldest_fetched_at,
        stale_after_seconds: stale_after.as_secs(),
    })
}

async fn read_discovery(store: &Store, enabled: bool) -> anyhow::Result<DiscoveryStatus> {
    let watermark = store.discovery_watermark().await?;
    let backfill = store.backfill_position().await?;
    Ok(DiscoveryStatus {
        enabled,
        watermark,
        backfill_scanned_until: backfill.map(|b| b.scanned_until),
        backfill_completed: backfill.map(|b| b.completed),
    })
}

/// Why the copy cannot be trusted right now, one sentence each (empty: healthy).
fn judge(
    settings: &Settings,
    now: DateTime<Utc>,
    runs: &Runs,
    freshness: &Freshness,
) -> Vec<String> {
    let stale_after = Duration::from_secs(freshness.stale_after_seconds);
    let age = |at: DateTime<Utc>| (now - at).to_std().unwrap_or_default();
    let mut problems = Vec::new();
    match &runs.last {
        None => problems.push("no sync run is recorded yet".to_owned()),
        Some(run)
            if run.finished_at.is_none()
                && age(run.started_at) > settings.sync.stall_timeout * 2 =>
        {
            problems.push(format!(
                "run #{} started {} ago and never finished (the process died?)",
                run.run_id,
                human(age(run.started_at))
            ));
        }
        _ => {}
    }
    if let Some(run) = &runs.last_finished
        && matches!(run.outcome.as_str(), "fatal" | "failed")
    {
        problems.push(format!(
            "the last run (#{}) ended {}: {}",
            run.run_id,
            run.outcome,
            run.error.as_deref().unwrap_or("no error recorded")
        ));
    }
    if let Some(oldest) = freshness.oldest_open_fetched_at
        && age(oldest) > stale_after
    {
        problems.push(format!(
            "stale: the oldest open ticket was fetched {} ago (limit {}, sync.open_refresh × 2)",
            human(age(oldest)),
            human(stale_after)
        ));
    }
    if runs.last.is_some() {
        match runs.last_ok {
            Some(at) if age(at) > stale_after => problems.push(format!(
                "stale: the last successful run finished {} ago (limit {})",
                human(age(at)),
                human(stale_after)
            )),
            None => problems.push("no run has succeeded yet".to_owned()),
            _ => {}
        }
    }
    problems
}

/// A way the copy is stuck, named for the `health_problems` metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// `discovery_stuck`, `tickets_failing`, `queue_behind`, `tickets_poisoned`,
    /// `conversations_failing`.
    pub cause: &'static str,
    /// One sentence naming the cause and the setting whose threshold it passed.
    pub problem: String,
}

/// Every `cause` [`stuck`] can report (the metric shows 0 for the others).
pub const STUCK_CAUSES: [&str; 5] = [
    "discovery_stuck",
    "tickets_failing",
    "queue_behind",
    "tickets_poisoned",
    "conversations_failing",
];

/// "Never stuck in silence": the states in which work keeps failing or waiting while cycles
/// may still end ok. Read by `status`, `/readyz` and the metric (thresholds: `[health]`).
pub async fn stuck(store: &Store, settings: &Settings) -> anyhow::Result<Vec<Stuck>> {
    let h = &settings.health;
    let mut found = Vec::new();
    if settings.sync.discover {
        found.extend(discovery_stuck(store, settings).await?);
    }
    found.extend(tickets_failing(store, h).await?);
    if settings.sync.messages {
        found.extend(conversations_failing(store, h).await?);
    }
    found.extend(queue_behind(store, h).await?);
    found.extend(tickets_poisoned(store).await?);
    Ok(found)
}

/// `discovery_stuck`: the watermark or an unfinished backfill has not moved for longer than
/// `health.discovery_stuck_after`, one each, with the last error a run recorded.
async fn discovery_stuck(store: &Store, settings: &Settings) -> anyhow::Result<Vec<Stuck>> {
    let after = settings.health.discovery_stuck_after;
    let last_error = store
        .last_run_error(settings.feishu.helpdesk_id.trim())
        .await?;
    let stalled = store.stalled_scans(after).await?;
    Ok(stalled
        .into_iter()
        .map(|scan| {
            let what = if scan.scan == "updated" {
                "the discovery watermark has not advanced"
            } else {
                "the history backfill has not moved"
            };
            Stuck {
                cause: "discovery_stuck",
                problem: format!(
                    "{what} for {} (health.discovery_stuck_after = {}); last error: {}",
                    human(Duration::from_secs_f64(scan.age_seconds.max(0.0))),
                    human(after),
                    last_error.as_deref().unwrap_or("none recorded")
                ),
            }
        })
        .collect())
}

/// `tickets_failing`: details failing (still retried) for longer than
/// `health.ticket_failing_after`.
async fn tickets_failing(store: &Store, h: &HealthSettings) -> anyhow::Result<Option<Stuck>> {
    let failing = store.failing_tickets(h.ticket_failing_after).await?;
    Ok((failing.count > 0).then(|| Stuck {
        cause: "tickets_failing",
        problem: format!(
            "{} ticket(s) failing for more than {} (health.ticket_failing_after), e.g. {}: {}",
            failing.count,
            human(h.ticket_failing_after),
            failing.example.unwrap_or_default(),
            failing.error.unwrap_or_default()
        ),
    }))
}

/// `conversations_failing`: conversation reads failing (500s, a scope the app lacks) without a
/// complete read since, for longer than `health.conversation_failing_after`.
async fn conversations_failing(store: &Store, h: &HealthSettings) -> anyhow::Result<Option<Stuck>> {
    let failing = store
        .failing_conversations(h.conversation_failing_after)
        .await?;
    Ok((failing.count > 0).then(|| Stuck {
        cause: "conversations_failing",
        problem: format!(
            "{} conversation(s) failing for more than {} \
             (health.conversation_failing_after), e.g. {}: {}",
            failing.count,
            human(h.conversation_failing_after),
            failing.example.unwrap_or_default(),
            failing.error.unwrap_or_default()
        ),
    }))
}

/// `queue_behind`: a ticket has been due for longer than `health.queue_due_after`.
async fn queue_behind(store: &Store, h: &HealthSettings) -> anyhow::Result<Option<Stuck>> {
    let oldest_due_s = store.oldest_overdue_seconds(h.queue_due_after).await?;
    Ok(oldest_due_s.map(|age_s| Stuck {
        cause: "queue_behind",
        problem: format!(
            "the oldest due ticket has waited {} (health.queue_due_after = {})",
            human(Duration::from_secs_f64(age_s.max(0.0))),
            human(h.queue_due_after)
        ),
    }))
}

/// `tickets_poisoned`: tickets parked after the same unusable answer too many times in a row.
async fn tickets_poisoned(store: &Store) -> anyhow::Result<Option<Stuck>> {
    let poisoned = store.poisoned_tickets().await?;
    Ok((poisoned.count > 0).then(|| Stuck {
        cause: "tickets_poisoned",
        problem: format!(
            "{} ticket(s) poisoned: the same unusable answer {} times in a row, no \
             longer fetched until enqueued again, e.g. {}: {}",
            poisoned.count,
            crate::sync::writer::POISON_AFTER_FAILURES,
            poisoned.example.unwrap_or_default(),
            poisoned.error.unwrap_or_default()
        ),
    }))
}

/// "3h 4m", "12s": durations for people.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// The human form of [`StatusReport`].
pub fn render(r: &StatusReport, now: DateTime<Utc>) -> String {
    let ago = |at: DateTime<Utc>| human((now - at).to_std().unwrap_or_default());
    let mut out = format!(
        "helpdesk-sync status: {}\n",
        if r.healthy { "OK" } else { "UNHEALTHY" }
    );
    render_runs(&mut out, r, &ago);
    render_queue(&mut out, &r.queue);
    render_freshness(&mut out, &r.freshness, &ago);
    render_discovery(&mut out, &r.discovery, &ago);
    out.push_str(&format!(
        "  list rows: {}\n",
        describe_list_rows(&r.list_rows)
    ));
    for pace in &r.learned_paces {
        out.push_str(&format!("  pace:      {}\n", describe_pace(pace, &ago)));
    }
    if !r.problems.is_empty() {
        out.push_str("problems:\n");
        for p in &r.problems {
            out.push_str(&format!("  - {p}\n"));
        }
    }
    out
}

fn render_runs(out: &mut String, r: &StatusReport, ago: &dyn Fn(DateTime<Utc>) -> String) {
    match &r.last_run {
        Some(run) => {
            let when = match run.finished_at {
                Some(f) => format!(
                    "finished {} ago, took {}",
                    ago(f),
                    human((f - run.started_at).to_std().unwrap_or_default())
                ),
                None => format!("started {} ago, not finished", ago(run.started_at)),
            };
            out.push_str(&format!(
                "  last run:  #{} ({}) {}, {}: {} changed, {} unchanged, {} failed; {} detail + {} list requests\n",
                run.run_id,
                run.trigger,
                run.outcome,
                when,
                run.tickets_changed.unwrap_or(0),
                run.tickets_unchanged.unwrap_or(0),
                run.tickets_failed.unwrap_or(0),
                run.detail_requests.unwrap_or(0),
                run.list_requests.unwrap_or(0),
            ));
            if let Some(error) = &run.error {
                out.push_str(&format!("             error: {error}\n"));
            }
        }
        None => out.push_str("  last run:  none recorded\n"),
    }
    if let Some(at) = r.last_ok_run_finished_at {
        out.push_str(&format!("  last ok:   {} ago\n", ago(at)));
    }
}

fn render_queue(out: &mut String, q: &QueueStatus) {
    let parked: Vec<String> = q
        .parked
        .iter()
        .map(|p| {
            format!(
                "{} {}: {}",
                p.outcome.as_deref().unwrap_or("?"),
                p.error_code.map(|c| c.to_string()).unwrap_or_default(),
                p.tickets
            )
        })
        .collect();
    out.push_str(&format!(
        "  queue:     {} known, {} due now, {} failed (retrying with backoff), {} claimed, {} parked{}\n",
        q.known,
        q.due_now,
        q.failed,
        q.claimed,
        q.parked.iter().map(|p| p.tickets).sum::<i64>(),
        if parked.is_empty() { String::new() } else { format!(" ({})", parked.join(", ")) }
    ));
}

fn render_freshness(out: &mut String, f: &Freshness, ago: &dyn Fn(DateTime<Utc>) -> String) {
    out.push_str(&format!(
        "  freshness: {} open tickets; {} (stale after {})\n",
        f.open_tickets,
        match f.oldest_open_fetched_at {
            Some(at) => format!("the oldest fetch of an open ticket is {} old", ago(at)),
            None => "none fetched".to_owned(),
        },
        human(Duration::from_secs(f.stale_after_seconds))
    ));
}

fn render_discovery(out: &mut String, d: &DiscoveryStatus, ago: &dyn Fn(DateTime<Utc>) -> String) {
    out.push_str(&format!(
        "  discovery: {}{}\n",
        match (d.enabled, d.watermark) {
            (false, _) => "off (sync.discover = false)".to_owned(),
            (true, Some(w)) => format!(
                "watermark {} ({} ago)",
                w.format("%Y-%m-%d %H:%M:%S UTC"),
                ago(w)
            ),
            (true, None) => "no watermark yet".to_owned(),
        },
        match (d.backfill_completed, d.backfill_scanned_until) {
            (Some(true), _) => "; history backfill complete".to_owned(),
            (Some(false), Some(at)) => format!("; history backfill at {}", at.format("%Y-%m-%d")),
            _ => String::new(),
        }
    ));
}

/// One line on a learned pace: the pace, its ceiling, the limit seen and the last cut.
fn describe_pace(p: &LearnedPace, ago: &dyn Fn(DateTime<Utc>) -> String) -> String {
    let rate = |r: f64| format!("{:.1}/s", r);
    match p.rate_per_second {
        None => format!(
            "{} not learned yet: starts at {} (ceiling {})",
            p.endpoint,
            rate(p.start_per_second),
            rate(p.ceiling_per_second)
        ),
        Some(learned) => format!(
            "{} learned {} (ceiling {}); {}",
            p.endpoint,
            rate(learned),
            rate(p.ceiling_per_second),
            match (p.limit_per_second, p.last_cut_at) {
                (Some(limit), Some(at)) => format!(
                    "limited at {}, last cut {} ago ({})",
                    rate(limit),
                    ago(at),
                    at.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                _ => "never limited".to_owned(),
            }
        ),
    }
}

/// One line on list-first ingestion: on or off, waiting details, what the verification found.
fn describe_list_rows(l: &ListRowsStatus) -> String {
    let mut text = match (l.enabled, l.degraded) {
        (false, _) => "not stored (sync.store_list_rows = false or discovery off)".to_owned(),
        (true, true) => "not stored: they differed from the details (details only)".to_owned(),
        (true, false) => "stored".to_owned(),
    };
    if l.state.unverified_tickets > 0 {
        text.push_str(&format!(
            "; {} tickets wait for the detail that verifies them",
            l.state.unverified_tickets
        ));
    }
    let fields = &l.state.fields;
    if fields.is_empty() {
        text.push_str("; no list row verified yet");
        return text;
    }
    let agreed = fields.iter().filter(|f| f.trusted && f.agreed > 0).count();
    text.push_str(&format!(
        "; {agreed} of {} fields agree with the details",
        fields.len()
    ));
    let differ: Vec<String> = fields
        .iter()
        .filter(|f| !f.trusted)
        .map(|f| format!("{} ({} of {})", f.field, f.differed, f.agreed + f.differed))
        .collect();
    if !differ.is_empty() {
        text.push_str(&format!(
            "; not taken from list rows: {}",
            differ.join(", ")
        ));
    }
    let lacking: Vec<&str> = fields
        .iter()
        .filter(|f| f.trusted && f.missing > 0 && f.agreed == 0)
        .map(|f| f.field.as_str())
        .collect();
    if !lacking.is_empty() {
        text.push_str(&format!("; lists lack: {}", lacking.join(", ")));
    }
    text
}

/// One step of `check`.
pub struct Step {
    pub name: &'static str,
    pub result: Result<String, String>,
}

/// Runs the checks after the config loaded; stops at the first failure (later steps need it).
pub async fn check(settings: &Settings, ticket: Option<&TicketId>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut passed = |name: &'static str, result: Result<String, String>| {
        let ok = result.is_ok();
        steps.push(Step { name, result });
        ok
    };
    let credentials = match settings.feishu.credentials() {
        Ok(c) => c,
        Err(e) => {
            passed("config", Err(e.to_string()));
            return steps;
        }
    };
    passed(
        "config",
        Ok(format!("feishu.base_url {}", settings.feishu.base_url)),
    );
    if !passed("database", check_database(settings).await) {
        return steps;
    }
    // One attempt each, a short timeout: a check must answer fast and say exactly what failed.
    let mut quick = settings.feishu.clone();
    quick.max_attempts = 1;
    quick.request_timeout = quick.request_timeout.min(Duration::from_secs(10));
    let client = match FeishuClient::new(&quick, credentials) {
        Ok(c) => c,
        Err(e) => {
            passed("token", Err(format!("{e:#}")));
            return steps;
        }
    };
    if !passed("token", check_token(&client, settings).await)
        || !passed("list", check_list(&client, settings).await)
    {
        return steps;
    }
    passed("list rows", check_list_rows(settings).await);
    if let Some(id) = ticket {
        passed("detail", check_detail(&client, id).await);
    }
    steps
}

/// What the self-verification of list rows found so far (from the database).
async fn check_list_rows(settings: &Settings) -> Result<String, String> {
    let store = Store::connect(&settings.database)
        .await
        .map_err(|e| format!("{e:#}"))?;
    // Informational: an answer missing here must not hide the steps after it.
    let state = match store.list_rows_state().await {
        Ok(state) => state,
        Err(e) => {
            return Ok(format!(
                "not known yet (run `helpdesk-sync migrate`?): {e:#}"
            ));
        }
    };
    let degraded = state.trust().is_disabled();
    Ok(describe_list_rows(&ListRowsStatus {
        enabled: settings.sync.discover && settings.sync.store_list_rows,
        degraded,
        state,
    }))
}

/// The database answers; are migrations pending?
async fn check_database(settings: &Settings) -> Result<String, String> {
    let target = describe_target(&settings.database.connect_options());
    let store = Store::connect(&settings.database)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let applied = store.applied_migration_versions().await.unwrap_or_default();
    let pending = MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .count();
    Ok(if pending == 0 {
        format!("{target}, schema up to date")
    } else {
        format!(
            "{target}, {pending} migration(s) pending (run `helpdesk-sync migrate`, or let sync/run apply them)"
        )
    })
}

/// The app id and secret give a tenant token.
async fn check_token(client: &FeishuClient, settings: &Settings) -> Result<String, String> {
    client
        .tenant_token()
        .await
        .map(|_| {
            format!(
                "tenant_access_token obtained for app {}",
                settings.feishu.app_id
            )
        })
        .map_err(|e| e.to_string())
}

/// The helpdesk id and token open the list: one ticket updated in the last day.
async fn check_list(client: &FeishuClient, settings: &Settings) -> Result<String, String> {
    let now = Utc::now();
    let query = ListQuery {
        field: TimeField::Updated,
        start_ms: (now - chrono::Duration::days(1)).timestamp_millis(),
        end_ms: now.timestamp_millis(),
        page: 1,
        page_size: 1.min(MAX_PAGE_SIZE),
    };
    let never = tokio_util::sync::CancellationToken::new();
    client
        .list_tickets(&query, &never)
        .await
        .map(|page| {
            format!(
                "helpdesk {} answers; {} tickets updated in the last 24 hours",
                settings.feishu.helpdesk_id,
                page.total
                    .map_or_else(|| "an unstated number of".to_owned(), |t| t.to_string())
            )
        })
        .map_err(|e| e.to_string())
}

/// One ticket fetched and normalized.
async fn check_detail(client: &FeishuClient, id: &TicketId) -> Result<String, String> {
    let never = tokio_util::sync::CancellationToken::new();
    let raw = client
        .fetch_ticket(id, &never)
        .await
        .result
        .map_err(|e| e.to_string())?;
    crate::normalize::normalize_ticket(id, &raw, Utc::now())
        .map(|n| {
            format!(
                "ticket {id}: status {}, {} warning(s) in its fields",
                n.record
                    .ticket
                    .status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown".into()),
                n.warnings.len()
            )
        })
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human(Duration::from_secs(12)), "12s");
        assert_eq!(human(Duration::from_secs(125)), "2m 5s");
        assert_eq!(human(Duration::from_secs(7260)), "2h 1m");
        assert_eq!(human(Duration::from_secs(90000)), "1d 1h");
    }
}
