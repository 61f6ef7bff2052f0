//! The operator's view. `status`: per helpdesk the queue, the last run, freshness, discovery
//! and the lock, with a verdict usable as a monitoring probe (an unhealthy helpdesk is named;
//! any unhealthy helpdesk makes the whole status unhealthy). `check`: config → database →
//! token (the app's) → list (each helpdesk) → detail, one line per step with OK or the exact
//! reason.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{HealthSettings, Settings};
use crate::domain::{ListRowsState, TicketId};
use crate::feishu::FeishuClient;
use crate::feishu::client::{ListQuery, MAX_PAGE_SIZE, TimeField};
pub use crate::store::status::{LockState, Parked, QueueScope, RunStatus};
use crate::store::{MIGRATOR, Store, describe_target};

/// Everything `status` knows; `--json` prints it as is.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// Every helpdesk healthy.
    pub healthy: bool,
    /// Why not healthy, one sentence each; with several helpdesks each starts with the
    /// helpdesk it is about (`helpdesk IT (7000…2): …`).
    pub problems: Vec<String>,
    /// The queue of every helpdesk together (with one helpdesk: its queue, as before several
    /// helpdesks existed; scripts reading `queue.known` keep working).
    pub queue: QueueStatus,
    /// The last run of any helpdesk.
    pub last_run: Option<RunStatus>,
    /// The last successful run of any helpdesk.
    pub last_ok_run_finished_at: Option<DateTime<Utc>>,
    /// Open tickets of every helpdesk.
    pub freshness: Freshness,
    /// The least advanced helpdesk's discovery.
    pub discovery: DiscoveryStatus,
    /// List-first ingestion (the app's: one verification for every helpdesk).
    pub list_rows: ListRowsStatus,
    /// Each configured helpdesk on its own, in config order.
    pub helpdesks: Vec<HelpdeskStatus>,
    /// The paces learned for endpoints whose limit Feishu does not publish, one per endpoint
    /// (the app's: every helpdesk shares them).
    pub learned_paces: Vec<LearnedPace>,
}

/// One helpdesk's part of the status.
#[derive(Debug, Serialize)]
pub struct HelpdeskStatus {
    /// The helpdesk id (the key of its queue rows, runs, lock and watermark).
    pub helpdesk_id: String,
    /// Its display name (the id when none is configured).
    pub name: String,
    /// No problem below.
    pub healthy: bool,
    /// Why this helpdesk is not healthy, one sentence each (without the helpdesk's name).
    pub problems: Vec<String>,
    /// The `health_problems` causes that hold ([`HEALTH_CAUSES`]).
    pub causes: Vec<&'static str>,
    pub queue: QueueStatus,
    pub last_run: Option<RunStatus>,
    pub last_ok_run_finished_at: Option<DateTime<Utc>>,
    pub freshness: Freshness,
    pub discovery: DiscoveryStatus,
    /// Who holds its lock (None before anyone took it).
    pub lock: Option<LockState>,
}

/// A configured helpdesk as the operator's view names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpdeskName {
    /// The helpdesk id.
    pub id: String,
    /// The display name (the id when none is configured).
    pub name: String,
}

impl HelpdeskName {
    /// `IT (7000000000000000002)`, or `7000000000000000002` without a name of its own.
    pub fn label(&self) -> String {
        if self.id.is_empty() {
            "every helpdesk (none configured)".to_owned()
        } else if self.name.is_empty() || self.name == self.id {
            self.id.clone()
        } else {
            format!("{} ({})", self.name, self.id)
        }
    }
}

impl std::fmt::Display for HelpdeskName {
    /// `helpdesk IT (7000000000000000002)`, or `helpdesk 7000000000000000002` without a name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.id.is_empty() {
            f.write_str(&self.label())
        } else {
            write!(f, "helpdesk {}", self.label())
        }
    }
}

/// The configured helpdesks, in config order; with none configured, one with an empty id
/// (reads then cover every helpdesk in the database).
pub fn helpdesk_names(settings: &Settings) -> Vec<HelpdeskName> {
    let names: Vec<HelpdeskName> = settings
        .helpdesks()
        .iter()
        .map(|h| HelpdeskName {
            id: h.id.clone(),
            name: h.name.clone(),
        })
        .collect();
    if names.is_empty() {
        return vec![HelpdeskName {
            id: String::new(),
            name: String::new(),
        }];
    }
    names
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

/// What `status` reads for one helpdesk (or, with an empty id, for all of them together).
struct Sections {
    queue: QueueStatus,
    runs: Runs,
    freshness: Freshness,
    discovery: DiscoveryStatus,
}

async fn read_sections(
    store: &Store,
    settings: &Settings,
    scope: QueueScope<'_>,
) -> anyhow::Result<Sections> {
    let helpdesk_id = scope.helpdesk_id;
    Ok(Sections {
        queue: read_queue(store, scope).await?,
        runs: read_runs(store, helpdesk_id).await?,
        freshness: read_freshness(store, scope, settings.sync.open_refresh * 2).await?,
        discovery: read_discovery(store, helpdesk_id, settings.sync.discover).await?,
    })
}

/// The queue rows of the `n`th configured helpdesk: its own, and for the first also those no
/// helpdesk owns yet (it adopts them when its syncer starts).
pub fn queue_scope(helpdesk: &HelpdeskName, n: usize) -> QueueScope<'_> {
    QueueScope {
        helpdesk_id: &helpdesk.id,
        unowned: n == 0,
    }
}

/// Reads the status of every helpdesk and judges it.
pub async fn status(store: &Store, settings: &Settings) -> anyhow::Result<StatusReport> {
    let now: DateTime<Utc> = store.now().await?;
    let names = helpdesk_names(settings);
    let several = names.len() > 1;
    let mut helpdesks = Vec::with_capacity(names.len());
    let mut problems = Vec::new();
    for (n, h) in names.iter().enumerate() {
        let one = helpdesk_status(store, settings, now, h, queue_scope(h, n)).await?;
        problems.extend(one.problems.iter().map(|p| {
            if several {
                format!("{h}: {p}")
            } else {
                p.clone()
            }
        }));
        helpdesks.push(one);
    }
    // With one helpdesk the totals are its own; with several, the whole database's.
    let everything = QueueScope {
        helpdesk_id: "",
        unowned: true,
    };
    let all = read_sections(
        store,
        settings,
        if several {
            everything
        } else {
            queue_scope(&names[0], 0)
        },
    )
    .await?;
    let list_state = store.list_rows_state().await?;
    let list_rows = ListRowsStatus {
        enabled: settings.sync.discover && settings.sync.store_list_rows,
        degraded: list_state.trust().is_disabled(),
        state: list_state,
    };
    let learned_paces = read_learned_paces(store, settings).await?;
    Ok(StatusReport {
        healthy: problems.is_empty(),
        problems,
        queue: all.queue,
        last_run: all.runs.last,
        last_ok_run_finished_at: all.runs.last_ok,
        freshness: all.freshness,
        discovery: all.discovery,
        list_rows,
        helpdesks,
        learned_paces,
    })
}

/// One helpdesk's sections, problems and health causes.
async fn helpdesk_status(
    store: &Store,
    settings: &Settings,
    now: DateTime<Utc>,
    h: &HelpdeskName,
    scope: QueueScope<'_>,
) -> anyhow::Result<HelpdeskStatus> {
    let s = read_sections(store, settings, scope).await?;
    let mut problems = judge(settings, now, &s.runs, &s.freshness);
    let health = health(store, settings, scope).await?;
    let mut causes = Vec::new();
    for found in health {
        if !causes.contains(&found.cause) {
            causes.push(found.cause);
        }
        // The failed last run is already among `judge`'s sentences.
        if found.cause != "last_run_failed" {
            problems.push(found.problem);
        }
    }
    Ok(HelpdeskStatus {
        helpdesk_id: h.id.clone(),
        name: h.name.clone(),
        healthy: problems.is_empty(),
        problems,
        causes,
        queue: s.queue,
        last_run: s.runs.last,
        last_ok_run_finished_at: s.runs.last_ok,
        freshness: s.freshness,
        discovery: s.discovery,
        lock: store.lock_state(&h.id).await?,
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

async fn read_queue(store: &Store, scope: QueueScope<'_>) -> anyhow::Result<QueueStatus> {
    let counts = store.helpdesk_queue_counts(scope).await?;
    Ok(QueueStatus {
        known: counts.known,
        due_now: counts.due_now,
        failed: counts.failed,
        claimed: store.claimed_tickets(scope).await?,
        parked: store.parked_tickets(scope).await?,
    })
}

async fn read_runs(store: &Store, helpdesk_id: &str) -> anyhow::Result<Runs> {
    Ok(Runs {
        last: store.last_run(helpdesk_id).await?,
        last_finished: store.last_finished_run(helpdesk_id).await?,
        last_ok: store.last_ok_run_finished_at(helpdesk_id).await?,
    })
}

async fn read_freshness(
    store: &Store,
    scope: QueueScope<'_>,
    stale_after: Duration,
) -> anyhow::Result<Freshness> {
    let open = store.open_tickets(scope).await?;
    Ok(Freshness {
        open_tickets: open.count,
        oldest_open_fetched_at: open.oldest_fetched_at,
        stale_after_seconds: stale_after.as_secs(),
    })
}

async fn read_discovery(
    store: &Store,
    helpdesk_id: &str,
    enabled: bool,
) -> anyhow::Result<DiscoveryStatus> {
    let watermark = store.discovery_watermark(helpdesk_id).await?;
    let backfill = store.backfill_position(helpdesk_id).await?;
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
        && let Some(problem) = failed_run(run)
    {
        problems.push(problem);
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

/// "the last run (#N) ended fatal: why" when the last finished run failed (a rejected token,
/// say), else None.
fn failed_run(run: &RunStatus) -> Option<String> {
    matches!(run.outcome.as_str(), "fatal" | "failed").then(|| {
        format!(
            "the last run (#{}) ended {}: {}",
            run.run_id,
            run.outcome,
            run.error.as_deref().unwrap_or("no error recorded")
        )
    })
}

/// A way a helpdesk's copy is unhealthy, named for the `health_problems` metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// One of [`HEALTH_CAUSES`].
    pub cause: &'static str,
    /// One sentence naming the cause and the setting whose threshold it passed.
    pub problem: String,
}

/// Every `cause` [`health`] can report (the metric shows 0 for the others).
pub const HEALTH_CAUSES: [&str; 6] = [
    "last_run_failed",
    "discovery_stuck",
    "tickets_failing",
    "queue_behind",
    "tickets_poisoned",
    "conversations_failing",
];

/// One helpdesk's health: what [`HEALTH_CAUSES`] holds for it, with one sentence each.
#[derive(Debug, Clone)]
pub struct HelpdeskHealth {
    pub helpdesk: HelpdeskName,
    /// Empty: healthy.
    pub found: Vec<Stuck>,
}

/// The health of every configured helpdesk, in config order (read by `/readyz` and the
/// `health_problems` metric).
pub async fn helpdesks_health(
    store: &Store,
    settings: &Settings,
) -> anyhow::Result<Vec<HelpdeskHealth>> {
    let mut all = Vec::new();
    for (n, helpdesk) in helpdesk_names(settings).into_iter().enumerate() {
        let found = health(store, settings, queue_scope(&helpdesk, n)).await?;
        all.push(HelpdeskHealth { helpdesk, found });
    }
    Ok(all)
}

/// "Never stuck in silence" for `helpdesk_id`: its last finished run failed (a rejected
/// token, say), or work keeps failing or waiting while cycles may still end ok. Read by
/// `status`, `/readyz` and the metric (thresholds: `[health]`).
pub async fn health(
    store: &Store,
    settings: &Settings,
    scope: QueueScope<'_>,
) -> anyhow::Result<Vec<Stuck>> {
    let helpdesk_id = scope.helpdesk_id;
    let h = &settings.health;
    let mut found = Vec::new();
    if let Some(run) = store.last_finished_run(helpdesk_id).await?
        && let Some(problem) = failed_run(&run)
    {
        found.push(Stuck {
            cause: "last_run_failed",
            problem,
        });
    }
    if settings.sync.discover {
        found.extend(discovery_stuck(store, settings, helpdesk_id).await?);
    }
    found.extend(tickets_failing(store, scope, h).await?);
    if settings.sync.messages {
        found.extend(conversations_failing(store, scope, h).await?);
    }
    found.extend(queue_behind(store, scope, h).await?);
    found.extend(tickets_poisoned(store, scope).await?);
    Ok(found)
}

/// `discovery_stuck`: the watermark or an unfinished backfill has not moved for longer than
/// `health.discovery_stuck_after`, one each, with the last error a run recorded.
async fn discovery_stuck(
    store: &Store,
    settings: &Settings,
    helpdesk_id: &str,
) -> anyhow::Result<Vec<Stuck>> {
    let after = settings.health.discovery_stuck_after;
    let last_error = store.last_run_error(helpdesk_id).await?;
    let stalled = store.stalled_scans(helpdesk_id, after).await?;
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
async fn tickets_failing(
    store: &Store,
    scope: QueueScope<'_>,
    h: &HealthSettings,
) -> anyhow::Result<Option<Stuck>> {
    let failing = store.failing_tickets(scope, h.ticket_failing_after).await?;
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
async fn conversations_failing(
    store: &Store,
    scope: QueueScope<'_>,
    h: &HealthSettings,
) -> anyhow::Result<Option<Stuck>> {
    let failing = store
        .failing_conversations(scope, h.conversation_failing_after)
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
async fn queue_behind(
    store: &Store,
    scope: QueueScope<'_>,
    h: &HealthSettings,
) -> anyhow::Result<Option<Stuck>> {
    let oldest_due_s = store
        .oldest_overdue_seconds(scope, h.queue_due_after)
        .await?;
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
async fn tickets_poisoned(store: &Store, scope: QueueScope<'_>) -> anyhow::Result<Option<Stuck>> {
    let poisoned = store.poisoned_tickets(scope).await?;
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

/// The human form of [`StatusReport`]. With one helpdesk, today's layout plus its name and
/// lock; with several, the app's lines, then one block per helpdesk.
pub fn render(r: &StatusReport, now: DateTime<Utc>) -> String {
    let ago = |at: DateTime<Utc>| human((now - at).to_std().unwrap_or_default());
    let mut out = format!(
        "helpdesk-sync status: {}\n",
        if r.healthy { "OK" } else { "UNHEALTHY" }
    );
    let mut list_rows = format!("  list rows: {}\n", describe_list_rows(&r.list_rows));
    for pace in &r.learned_paces {
        list_rows.push_str(&format!("  pace:      {}\n", describe_pace(pace, &ago)));
    }
    match r.helpdesks.as_slice() {
        [one] => {
            out.push_str(&format!("  helpdesk:  {}\n", name_of(one).label()));
            render_helpdesk(&mut out, one, &ago);
            out.push_str(&list_rows);
        }
        several => {
            out.push_str(&list_rows);
            for h in several {
                out.push_str(&format!(
                    "{}: {}\n",
                    name_of(h),
                    if h.healthy { "OK" } else { "UNHEALTHY" }
                ));
                render_helpdesk(&mut out, h, &ago);
            }
        }
    }
    if !r.problems.is_empty() {
        out.push_str("problems:\n");
        for p in &r.problems {
            out.push_str(&format!("  - {p}\n"));
        }
    }
    out
}

fn name_of(h: &HelpdeskStatus) -> HelpdeskName {
    HelpdeskName {
        id: h.helpdesk_id.clone(),
        name: h.name.clone(),
    }
}

/// A helpdesk's lines: runs, queue, freshness, discovery, lock.
fn render_helpdesk(out: &mut String, h: &HelpdeskStatus, ago: &dyn Fn(DateTime<Utc>) -> String) {
    render_runs(out, h.last_run.as_ref(), h.last_ok_run_finished_at, ago);
    render_queue(out, &h.queue);
    render_freshness(out, &h.freshness, ago);
    render_discovery(out, &h.discovery, ago);
    out.push_str(&format!(
        "  lock:      {}\n",
        describe_lock(h.lock.as_ref(), ago)
    ));
}

/// A lock renewed longer ago than this has no live holder (holders renew every second).
const LOCK_ALIVE_WITHIN_S: f64 = 10.0;

fn describe_lock(lock: Option<&LockState>, ago: &dyn Fn(DateTime<Utc>) -> String) -> String {
    match lock {
        None => "never taken".to_owned(),
        Some(LockState { holder: None, .. }) => "free (released)".to_owned(),
        Some(
            l @ LockState {
                holder: Some(holder),
                ..
            },
        ) if l.renewed_seconds_ago <= LOCK_ALIVE_WITHIN_S => format!(
            "held by {holder} (epoch {}) for {}",
            l.epoch,
            ago(l.taken_at)
        ),
        Some(
            l @ LockState {
                holder: Some(holder),
                ..
            },
        ) => format!(
            "free: its last holder {holder} (epoch {}) stopped renewing it {} ago",
            l.epoch,
            ago(l.renewed_at)
        ),
    }
}

fn render_runs(
    out: &mut String,
    last_run: Option<&RunStatus>,
    last_ok: Option<DateTime<Utc>>,
    ago: &dyn Fn(DateTime<Utc>) -> String,
) {
    match last_run {
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
    if let Some(at) = last_ok {
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

/// Each configured helpdesk with its credentials (the app's and its token), read now; fails
/// naming the missing key.
fn helpdesk_credentials(
    settings: &Settings,
) -> Result<Vec<(HelpdeskName, crate::config::Credentials)>, crate::config::ConfigError> {
    // The app's keys first, then a helpdesk at all: their errors name `feishu.*`.
    settings.feishu.app_credentials()?;
    settings
        .select_helpdesks(None)?
        .into_iter()
        .map(|h| {
            let name = HelpdeskName {
                id: h.id.clone(),
                name: h.name.clone(),
            };
            Ok((name, h.credentials(&settings.feishu)?))
        })
        .collect()
}

/// Runs the checks after the config loaded; stops at the first failed step (later steps need
/// it). The list is checked for every helpdesk (one `list` line each) before stopping.
pub async fn check(settings: &Settings, ticket: Option<&TicketId>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut passed = |name: &'static str, result: Result<String, String>| {
        let ok = result.is_ok();
        steps.push(Step { name, result });
        ok
    };
    let helpdesks = match helpdesk_credentials(settings) {
        Ok(h) => h,
        Err(e) => {
            passed("config", Err(e.to_string()));
            return steps;
        }
    };
    passed(
        "config",
        Ok(format!(
            "feishu.base_url {}{}",
            settings.feishu.base_url,
            if helpdesks.len() > 1 {
                format!("; {} helpdesks", helpdesks.len())
            } else {
                String::new()
            }
        )),
    );
    if !passed("database", check_database(settings).await) {
        return steps;
    }
    // One attempt each, a short timeout: a check must answer fast and say exactly what failed.
    let mut quick = settings.feishu.clone();
    quick.max_attempts = 1;
    quick.request_timeout = quick.request_timeout.min(Duration::from_secs(10));
    let mut clients = Vec::with_capacity(helpdesks.len());
    for (h, credentials) in helpdesks {
        match FeishuClient::new(&quick, credentials) {
            Ok(c) => clients.push((h, c)),
            Err(e) => {
                passed("token", Err(format!("{e:#}")));
                return steps;
            }
        }
    }
    let several = clients.len() > 1;
    // The tenant token is the app's: one check for every helpdesk.
    if !passed("token", check_token(&clients[0].1, settings).await) {
        return steps;
    }
    let mut lists_ok = true;
    for (h, client) in &clients {
        let result = check_list(client, h).await;
        let result = if several {
            result.map_err(|e| format!("{h}: {e}"))
        } else {
            result
        };
        lists_ok &= passed("list", result);
    }
    if !lists_ok {
        return steps;
    }
    passed("list rows", check_list_rows(settings).await);
    if let Some(id) = ticket {
        passed("detail", check_detail(&clients, id).await);
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
async fn check_list(client: &FeishuClient, helpdesk: &HelpdeskName) -> Result<String, String> {
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
                "{helpdesk} answers; {} tickets updated in the last 24 hours",
                page.total
                    .map_or_else(|| "an unstated number of".to_owned(), |t| t.to_string())
            )
        })
        .map_err(|e| e.to_string())
}

/// One ticket fetched and normalized, from the first helpdesk that has it.
async fn check_detail(
    clients: &[(HelpdeskName, FeishuClient)],
    id: &TicketId,
) -> Result<String, String> {
    let never = tokio_util::sync::CancellationToken::new();
    let mut errors = Vec::new();
    for (helpdesk, client) in clients {
        let raw = match client.fetch_ticket(id, &never).await.result {
            Ok(raw) => raw,
            Err(e) if clients.len() > 1 => {
                errors.push(format!("{helpdesk}: {e}"));
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        let found_in = if clients.len() > 1 {
            format!(" in {helpdesk}")
        } else {
            String::new()
        };
        return crate::normalize::normalize_ticket(id, &raw, Utc::now())
            .map(|n| {
                format!(
                    "ticket {id}{found_in}: status {}, {} warning(s) in its fields",
                    n.record
                        .ticket
                        .status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "unknown".into()),
                    n.warnings.len()
                )
            })
            .map_err(|e| e.to_string());
    }
    Err(errors.join("; "))
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

    #[test]
    fn a_helpdesk_is_named_by_its_name_and_id() {
        let named = HelpdeskName {
            id: "7000000000000000002".into(),
            name: "IT".into(),
        };
        assert_eq!(named.to_string(), "helpdesk IT (7000000000000000002)");
        let unnamed = HelpdeskName {
            id: "7000000000000000002".into(),
            name: "7000000000000000002".into(),
        };
        assert_eq!(unnamed.to_string(), "helpdesk 7000000000000000002");
        assert_eq!(unnamed.label(), "7000000000000000002");
    }

    #[test]
    fn the_lock_line_tells_a_live_holder_from_a_dead_one() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let ago =
            |t: DateTime<Utc>| human((at + chrono::Duration::seconds(90) - t).to_std().unwrap());
        let lock = |holder: Option<&str>, renewed_seconds_ago: f64| LockState {
            holder: holder.map(str::to_owned),
            epoch: 3,
            taken_at: at,
            renewed_at: at,
            renewed_seconds_ago,
        };
        assert_eq!(describe_lock(None, &ago), "never taken");
        assert_eq!(
            describe_lock(Some(&lock(None, 0.0)), &ago),
            "free (released)"
        );
        assert_eq!(
            describe_lock(Some(&lock(Some("host:1:a"), 1.0)), &ago),
            "held by host:1:a (epoch 3) for 1m 30s"
        );
        assert!(
            describe_lock(Some(&lock(Some("host:1:a"), 90.0)), &ago).starts_with(
                "free: its last holder host:1:a (epoch 3) stopped renewing it 1m 30s ago"
            )
        );
    }
}
