//! The command line: argument parsing, one function per command, and exit codes
//! (0 success, 1 runtime failure, 2 bad configuration or input).

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{
    ConfigError, Credentials, HelpdeskSettings, Settings, parse_duration, parse_since,
};
use crate::console::{ProgressDisplay, summarize};
use crate::domain::Progress;
use crate::domain::TicketId;
use crate::feishu::FeishuClient;
use crate::feishu::client::FeishuApp;
use crate::sim::{SimConfig, SimServer};
use crate::store::Store;
use crate::store::queue::Source;
use crate::store::runs::Trigger;
use crate::sync::{
    CycleError, CycleOptions, CycleReport, finish_recorded, run_cycle, start_recorded,
};
use crate::telemetry::{self, LogFormat};
use tracing::Instrument;

#[derive(Debug, Parser)]
#[command(
    name = "helpdesk-sync",
    version,
    about = "Keeps a PostgreSQL reporting copy of a Feishu (Lark) Helpdesk",
    after_help = "Exit codes: 0 success, 1 runtime failure (API credentials rejected, database \
                  unreachable), 2 bad configuration or input.\n\
                  Every config key can be overridden with HELPDESK_SYNC__SECTION__KEY \
                  (e.g. HELPDESK_SYNC__FEISHU__APP_SECRET); DATABASE_URL overrides database.url.\n\
                  Several helpdesks of one app: list them as [[helpdesks]] (name, helpdesk_id, \
                  helpdesk_token or helpdesk_token_file); run and sync serve them all on the \
                  app's one rate budget, --helpdesk ID|NAME picks one (docs/helpdesks.md)."
)]
pub struct Cli {
    /// Config file [default: $HELPDESK_SYNC_CONFIG, else ./config.toml]; also accepted after
    /// the command, by the commands that read one (not `simulate` or `demo`)
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log format on stderr (log level: RUST_LOG, default info)
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// The config file flag of the commands that read one.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigFlag {
    /// Config file [default: $HELPDESK_SYNC_CONFIG, else ./config.toml]
    #[arg(long = "config", value_name = "PATH")]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the database schema and the reporting views, and seed [sla] calendars and targets (also done by sync and run)
    Migrate {
        #[command(flatten)]
        file: ConfigFlag,
    },
    /// Add ticket ids to the queue (idempotent; known ids become due now)
    Enqueue {
        #[command(flatten)]
        file_flag: ConfigFlag,
        /// The helpdesk whose tickets these are (id or name); required when several are configured
        #[arg(long, value_name = "ID|NAME")]
        helpdesk: Option<String>,
        /// Ticket ids (decimal digits)
        ids: Vec<String>,
        /// Read ids from a file, one per line ('-' = stdin; blank lines and # comments skipped)
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Run one cycle of every configured helpdesk (side by side, sharing the app's API budget): discover changed tickets, fetch every due ticket, upsert, exit
    Sync {
        #[command(flatten)]
        file: ConfigFlag,
        /// Only this helpdesk (id or name) [default: every configured helpdesk]
        #[arg(long, value_name = "ID|NAME")]
        helpdesk: Option<String>,
        /// Also scan ticket history by create time from this date (2023-01-01 or RFC 3339)
        #[arg(long, value_name = "DATE", value_parser = since_arg)]
        since: Option<DateTime<Utc>>,
    },
    /// Run as a daemon serving every configured helpdesk: a cycle at start, then on sync.schedule, until SIGTERM/SIGINT
    Run {
        #[command(flatten)]
        file: ConfigFlag,
    },
    /// Is it working? Queue, last run, freshness; exit 1 when unhealthy (a monitoring probe)
    Status {
        #[command(flatten)]
        file: ConfigFlag,
        /// Only this helpdesk (id or name) [default: every configured helpdesk]
        #[arg(long, value_name = "ID|NAME")]
        helpdesk: Option<String>,
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Check the setup step by step: config, database, token, list API (and one ticket)
    Check {
        #[command(flatten)]
        file: ConfigFlag,
        /// Only this helpdesk (id or name) [default: every configured helpdesk]
        #[arg(long, value_name = "ID|NAME")]
        helpdesk: Option<String>,
        /// Also fetch this ticket
        #[arg(long, value_name = "ID")]
        ticket: Option<String>,
    },
    /// Rebuild the normalized tables from stored raw JSON (no API calls)
    Reprocess {
        #[command(flatten)]
        file: ConfigFlag,
        /// Only the tickets of this helpdesk (id or name) [default: every stored ticket]
        #[arg(long, value_name = "ID|NAME")]
        helpdesk: Option<String>,
        /// Only this ticket
        #[arg(long, value_name = "ID")]
        ticket: Option<String>,
        /// Transactions at a time (each uses one database connection and backend)
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
    },
    /// Subscribe the helpdesk's ticket and message events for webhook delivery (idempotent)
    SubscribeEvents {
        #[command(flatten)]
        file: ConfigFlag,
    },
    /// Serve a simulated Feishu Helpdesk API (for trying things out and for tests)
    Simulate {
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// Number of generated tickets (of each helpdesk)
        #[arg(long, default_value_t = 500)]
        tickets: usize,
        /// Number of helpdesks the simulated app serves (each its own token and tickets; the
        /// rate limits are the app's, shared by all)
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=99))]
        helpdesks: u16,
        /// Added latency per ticket request, e.g. 300ms
        #[arg(long, default_value = "0ms", value_parser = duration_arg)]
        latency: Duration,
        /// Uniform ± jitter around the latency
        #[arg(long, default_value = "0ms", value_parser = duration_arg)]
        jitter: Duration,
        /// Detail requests allowed per second before 429 (documented: 10)
        #[arg(long, default_value_t = 10)]
        detail_limit: usize,
        /// Send signed, encrypted ticket events to this URL (e.g. http://127.0.0.1:9187/feishu/events)
        #[arg(long)]
        events_to: Option<String>,
        /// With --events-to: change a random ticket and send its updated event this often
        #[arg(long, default_value = "5s", value_parser = duration_arg)]
        change_every: Duration,
    },
    /// See it work: simulated API → your Postgres, no credentials needed
    Demo {
        /// Number of simulated tickets of the first helpdesk ("Customer support"; the second,
        /// "IT", has half as many)
        #[arg(long, default_value_t = 200)]
        tickets: usize,
        /// Detail requests per second (the real limit is 10)
        #[arg(long, default_value_t = 9.0)]
        rate: f64,
    },
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

fn since_arg(text: &str) -> Result<DateTime<Utc>, String> {
    parse_since(text)
}

/// Errors by exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Input(String),
    #[error("{}", crate::telemetry::ErrorChain(.0))]
    Runtime(#[from] anyhow::Error),
    /// `status` found problems (already printed).
    #[error("unhealthy (see above)")]
    Unhealthy,
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Input(_) => 2,
            Self::Runtime(_) | Self::Unhealthy => 1,
        }
    }
}

/// glibc gives each thread that allocates under contention an arena of its own (up to 8 per
/// core) and keeps every arena at its largest: the runtime's threads, each holding list pages
/// or a write for a while, make the daemon's resident memory grow by arenas, not by data
/// (BENCHMARKS.md, "Memory": 62.3 → 57.3 MiB peak for a complete install). Two arenas keep it
/// down; an operator's own setting wins (`MALLOC_ARENA_MAX`, or `arena_max` in
/// `GLIBC_TUNABLES`). Other C libraries: nothing to do.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none()
        && !std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"))
    {
        // SAFETY: mallopt only sets a tunable of the allocator; called before the runtime and
        // its threads start.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Runs the command and turns the result into an exit code. Installs the process-wide TLS
/// crypto provider first (reqwest is built without one; ring is the lean one): every HTTP
/// client of the process relies on it.
pub fn main(cli: Cli) -> ExitCode {
    limit_malloc_arenas();
    let _ = rustls::crypto::ring::default_provider().install_default();
    // sqlx reports Postgres NOTICEs (e.g. "relation already exists, skipping") at info.
    let default_filter = match cli.command {
        Command::Demo { .. } => "warn",
        _ => "info,sqlx::postgres::notice=warn",
    };
    let log = telemetry::init(cli.log_format, default_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            telemetry::exit_error(log, &format_args!("cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            telemetry::exit_error(log, &e);
            ExitCode::from(e.exit_code())
        }
    }
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let top = cli.config;
    let settings = |flag: ConfigFlag| load_settings(flag.path.or_else(|| top.clone()).as_deref());
    match cli.command {
        Command::Migrate { file } => migrate(&settings(file)?).await,
        Command::Enqueue {
            file_flag,
            helpdesk,
            ids,
            file,
        } => enqueue(&settings(file_flag)?, helpdesk.as_deref(), ids, file).await,
        Command::Sync {
            file,
            helpdesk,
            since,
        } => sync_once(&settings(file)?, helpdesk.as_deref(), since).await,
        Command::Run { file } => run_daemon(&settings(file)?).await,
        Command::SubscribeEvents { file } => subscribe_events(&settings(file)?).await,
        Command::Simulate { .. } | Command::Demo { .. } if top.is_some() => Err(CliError::Input(
            "simulate and demo read no config file (they make their own simulator and settings): \
             drop --config"
                .into(),
        )),
        Command::Simulate {
            listen,
            tickets,
            helpdesks,
            latency,
            jitter,
            detail_limit,
            events_to,
            change_every,
        } => {
            let config = SimConfig {
                tickets,
                latency,
                jitter,
                detail_limit_per_second: detail_limit.max(1),
                ..SimConfig::default()
            }
            .with_helpdesks(usize::from(helpdesks));
            if change_every.is_zero() {
                return Err(CliError::Input("--change-every must be above 0".into()));
            }
            simulate(config, listen, events_to, change_every).await
        }
        Command::Status {
            file,
            helpdesk,
            json,
        } => {
            let origin = settings_origin(file.path.as_deref().or(top.as_deref()));
            let settings = settings(file)?.restricted_to(helpdesk.as_deref())?;
            status(&settings, json, &origin).await
        }
        Command::Check {
            file,
            helpdesk,
            ticket,
        } => check(&settings(file)?.restricted_to(helpdesk.as_deref())?, ticket).await,
        Command::Reprocess {
            file,
            helpdesk,
            ticket,
            jobs,
        } => reprocess(&settings(file)?, helpdesk.as_deref(), ticket, jobs).await,
        Command::Demo { tickets, rate } => {
            crate::demo::run(tickets, rate).await.map_err(|e| match e {
                crate::demo::DemoError::Config(e) => CliError::Config(e),
                crate::demo::DemoError::Runtime(e) => CliError::Runtime(e),
            })
        }
    }
}

async fn migrate(settings: &Settings) -> Result<(), CliError> {
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    seed_sla(&store, settings).await?;
    crate::scheduler::prepare_helpdesks(&store, settings).await;
    println!("database schema is up to date");
    Ok(())
}

/// Seeds `[sla]` (calendars, targets) into its tables; an unknown time zone or a calendar no
/// one defined is a configuration error naming its key. Nothing else stops the command: a row
/// the database refuses is logged by name, a held lock postpones seeding to the next start.
async fn seed_sla(store: &Store, settings: &Settings) -> Result<(), CliError> {
    store
        .apply_sla_settings(&settings.sla)
        .await
        .map(|_| ())
        .map_err(config_or_runtime)
}

/// A configuration error found late (by the database) keeps its exit code 2.
fn config_or_runtime(e: anyhow::Error) -> CliError {
    match e.downcast::<ConfigError>() {
        Ok(config) => CliError::Config(config),
        Err(other) => CliError::Runtime(other),
    }
}

/// `run`: the daemon, with the event secrets read now when events are configured.
async fn run_daemon(settings: &Settings) -> Result<(), CliError> {
    settings.feishu.app_credentials()?;
    let event_keys = if settings.events.enabled() {
        Some(settings.events.keys()?)
    } else {
        None
    };
    crate::scheduler::run_daemon(settings, event_keys, shutdown_on_signal())
        .await
        .map_err(config_or_runtime)
}

async fn subscribe_events(settings: &Settings) -> Result<(), CliError> {
    let credentials = settings.feishu.credentials()?;
    let client = FeishuClient::new(&settings.feishu, credentials)?;
    client
        .subscribe_ticket_events(&shutdown_on_signal())
        .await
        .map_err(|e| {
            CliError::Runtime(anyhow::anyhow!("subscribing to ticket events failed: {e}"))
        })?;
    let names: Vec<String> = crate::feishu::client::TICKET_EVENT_SUBSCRIPTIONS
        .iter()
        .map(|(kind, subtype)| format!("{kind} / {subtype}"))
        .collect();
    println!(
        "subscribed: {}\nevents reach `run` once the app's event subscription URL points at \
         http.listen + events.path (see README: Webhook events)",
        names.join(", ")
    );
    Ok(())
}

/// `status`: the report, as text or JSON; unhealthy is exit 1.
async fn status(settings: &Settings, json: bool, origin: &str) -> Result<(), CliError> {
    let store = Store::connect(&settings.database).await.map_err(|e| {
        let url = if std::env::var_os("DATABASE_URL").is_some() {
            "DATABASE_URL"
        } else if origin.starts_with("no config") {
            "the default database.url"
        } else {
            "its database.url"
        };
        anyhow::anyhow!(
            "{origin}; with {url}, {}. Point status elsewhere with --config PATH or \
             DATABASE_URL=postgres://USER@HOST:PORT/DATABASE",
            crate::telemetry::ErrorChain(&e)
        )
    })?;
    if !store.is_migrated().await? {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "the database has no helpdesk-sync schema yet: run `helpdesk-sync migrate` (or start sync/run)"
        )));
    }
    let report = crate::status::status(&store, settings).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding JSON")?
        );
    } else {
        print!("{}", crate::status::render(&report, store.now().await?));
    }
    if report.healthy {
        Ok(())
    } else {
        Err(CliError::Unhealthy)
    }
}

/// `check`: one line per step; a failed config step is exit 2, any other exit 1.
async fn check(settings: &Settings, ticket: Option<String>) -> Result<(), CliError> {
    let only = ticket_arg(ticket)?;
    let steps = crate::status::check(settings, only.as_ref()).await;
    let mut failed = None;
    for step in &steps {
        match &step.result {
            Ok(detail) => println!("{:<9} OK       {detail}", format!("{}:", step.name)),
            Err(reason) => {
                println!("{:<9} FAILED   {reason}", format!("{}:", step.name));
                failed = Some(step.name);
            }
        }
    }
    match failed {
        None => Ok(()),
        Some("config") => Err(CliError::Input("the configuration is incomplete".into())),
        Some(name) => Err(CliError::Runtime(anyhow::anyhow!(
            "check failed at step {name}"
        ))),
    }
}

async fn reprocess(
    settings: &Settings,
    helpdesk: Option<&str>,
    ticket: Option<String>,
    jobs: u16,
) -> Result<(), CliError> {
    let only = ticket_arg(ticket)?;
    let picked = match helpdesk {
        Some(pick) => Some(settings.select_helpdesks(Some(pick))?[0].id.clone()),
        None => None,
    };
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    // With --helpdesk, only that helpdesk's tickets (`tickets.helpdesk_id`).
    let store = match &picked {
        Some(id) => store.for_helpdesk(id),
        None => store,
    };
    let progress = ProgressDisplay::new("reprocess");
    let report = crate::reprocess::reprocess(
        &store,
        only.as_ref(),
        settings.sync.batch_size.max(500),
        usize::from(jobs),
        &|done, total| {
            progress.update(Progress {
                due_at_start: total,
                done,
                pages_listed: 0,
            })
        },
    )
    .await?;
    progress.finish();
    println!(
        "reprocessed {} tickets from stored JSON in {:.1}s ({} could not be normalized and were left as they are)",
        report.tickets,
        report.elapsed.as_secs_f64(),
        report.failed
    );
    Ok(())
}

/// `--ticket ID`, checked.
fn ticket_arg(ticket: Option<String>) -> Result<Option<TicketId>, CliError> {
    ticket
        .map(|t| TicketId::parse(&t).map_err(|e| CliError::Input(e.to_string())))
        .transpose()
}

/// `--config`, else `$HELPDESK_SYNC_CONFIG`, else `./config.toml` (which may be absent).
pub fn load_settings(flag: Option<&Path>) -> Result<Settings, ConfigError> {
    match config_path(flag) {
        Some(path) => Settings::load(&path, true),
        None => Settings::load(Path::new("config.toml"), false),
    }
}

/// The config file named by `--config` or `$HELPDESK_SYNC_CONFIG`, if any.
fn config_path(flag: Option<&Path>) -> Option<PathBuf> {
    let from_env = std::env::var_os("HELPDESK_SYNC_CONFIG").map(PathBuf::from);
    flag.map(Path::to_path_buf).or(from_env)
}

/// Where the settings came from, for messages: the file read, or that there was none.
fn settings_origin(flag: Option<&Path>) -> String {
    match config_path(flag) {
        Some(path) => format!("config file {}", path.display()),
        None if Path::new("config.toml").exists() => "config file ./config.toml".to_owned(),
        None => "no config file (./config.toml does not exist; --config PATH or \
                 $HELPDESK_SYNC_CONFIG name one)"
            .to_owned(),
    }
}

async fn enqueue(
    settings: &Settings,
    helpdesk: Option<&str>,
    args: Vec<String>,
    file: Option<PathBuf>,
) -> Result<(), CliError> {
    let mut ids = Vec::new();
    let mut bad = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        match TicketId::parse(arg) {
            Ok(id) => ids.push(id),
            Err(e) => bad.push(format!("argument {}: {e}", i + 1)),
        }
    }
    let source = match &file {
        Some(path) => {
            let (from_file, file_bad) = read_id_file(path)?;
            ids.extend(from_file);
            bad.extend(file_bad);
            Source::File
        }
        None => Source::Cli,
    };
    // All or nothing: a file with a typo is fixed and re-run, never half-applied.
    if !bad.is_empty() {
        let shown: Vec<&String> = bad.iter().take(20).collect();
        let more = bad.len().saturating_sub(shown.len());
        let mut message = format!("{} invalid ticket id(s); nothing was enqueued:", bad.len());
        for line in shown {
            message.push_str("\n  ");
            message.push_str(line);
        }
        if more > 0 {
            message.push_str(&format!("\n  ... and {more} more"));
        }
        return Err(CliError::Input(message));
    }
    if ids.is_empty() {
        return Err(CliError::Input(
            "no ticket ids given: pass ids as arguments or --file PATH ('-' for stdin)".into(),
        ));
    }
    // No helpdesk configured (only [database]): the rows wait unowned, and the first
    // helpdesk configured later adopts them.
    let target = if settings.helpdesks().is_empty() && helpdesk.is_none() {
        None
    } else {
        let chosen = settings.select_helpdesks(helpdesk)?;
        let [target] = chosen.as_slice() else {
            return Err(CliError::Config(ConfigError::new(format!(
                "{} helpdesks are configured: say whose tickets these are with --helpdesk \
                 ID|NAME (one of: {})",
                chosen.len(),
                chosen
                    .iter()
                    .map(|h| format!("{} ({})", h.id, h.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))));
        };
        Some(target.id.clone())
    };
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    crate::scheduler::prepare_helpdesks(&store, settings).await;
    let report = match &target {
        Some(id) => store.for_helpdesk(id).enqueue(&ids, source).await?,
        None => store.enqueue(&ids, source).await?,
    };
    println!(
        "enqueued {} id(s): {} new, {} already known (due again now)",
        report.added + report.requeued,
        report.added,
        report.requeued
    );
    Ok(())
}

/// Reads one id per line; returns the ids and a description of every bad line.
fn read_id_file(path: &Path) -> Result<(Vec<TicketId>, Vec<String>), CliError> {
    let (name, reader): (String, Box<dyn BufRead>) = if path == Path::new("-") {
        ("stdin".into(), Box::new(std::io::stdin().lock()))
    } else {
        let f = std::fs::File::open(path)
            .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
        (
            path.display().to_string(),
            Box::new(std::io::BufReader::new(f)),
        )
    };
    let mut ids = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| CliError::Input(format!("cannot read {name}: {e}")))?;
        let text = line.trim().trim_start_matches('\u{feff}');
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match TicketId::parse(text) {
            Ok(id) => ids.push(id),
            Err(e) => bad.push(format!("{name} line {}: {e}", n + 1)),
        }
    }
    Ok((ids, bad))
}

/// `sync`: migrate, run one cycle of each chosen helpdesk (side by side, on one shared
/// [`FeishuApp`]: one token, one pacer per endpoint), print the summaries. A helpdesk that
/// fails (its token rejected) does not stop the others; the exit code is 1 then.
async fn sync_once(
    settings: &Settings,
    pick: Option<&str>,
    since: Option<DateTime<Utc>>,
) -> Result<(), CliError> {
    settings.feishu.app_credentials()?;
    let chosen: Vec<(&HelpdeskSettings, Credentials)> = settings
        .select_helpdesks(pick)?
        .into_iter()
        .map(|h| Ok((h, h.credentials(&settings.feishu)?)))
        .collect::<Result<_, ConfigError>>()?;
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    seed_sla(&store, settings).await?;
    crate::scheduler::prepare_helpdesks(&store, settings).await;
    let app = FeishuApp::new(&settings.feishu)?;
    let shutdown = shutdown_on_signal();
    let progress = ProgressDisplay::new("sync");
    // The bar shows every helpdesk's progress summed.
    let each = std::sync::Mutex::new(vec![Progress::default(); chosen.len()]);
    let show = |index: usize, p: Progress| {
        let mut each = each.lock().unwrap_or_else(|e| e.into_inner());
        each[index] = p;
        progress.update(Progress {
            due_at_start: each.iter().map(|p| p.due_at_start).sum(),
            done: each.iter().map(|p| p.done).sum(),
            pages_listed: each.iter().map(|p| p.pages_listed).sum(),
        });
    };
    let options = CycleOptions::from_settings(settings, since);
    let cycles = chosen
        .iter()
        .enumerate()
        .map(|(index, (helpdesk, credentials))| {
            let span = tracing::info_span!("helpdesk", helpdesk = %helpdesk.name);
            sync_helpdesk(
                &store,
                &app,
                helpdesk,
                credentials.clone(),
                &options,
                &shutdown,
                move |p| show(index, p),
            )
            .instrument(span)
        });
    let results = futures::future::join_all(cycles).await;
    progress.finish();
    let several = chosen.len() > 1;
    let mut failures = Vec::new();
    for ((helpdesk, _), result) in chosen.iter().zip(results) {
        let prefix = if several {
            format!("{} ({}): ", helpdesk.name, helpdesk.id)
        } else {
            String::new()
        };
        match result {
            Ok(None) => {}
            Ok(Some(Ok(report))) => println!("{prefix}{}", summarize(&report)),
            Ok(Some(Err(CycleError::Fatal { error, report }))) => {
                println!("{prefix}{}", summarize(&report));
                failures.push(anyhow::anyhow!(
                    "{prefix}sync stopped, stored data untouched: {error}"
                ));
            }
            Ok(Some(Err(CycleError::Database(e)))) | Err(e) => {
                failures.push(e.context(format!("{prefix}sync failed")));
            }
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 if !several => Err(CliError::Runtime(failures.remove(0))),
        _ => {
            for failure in &failures {
                eprintln!("{}", crate::telemetry::ErrorChain(failure));
            }
            Err(CliError::Runtime(anyhow::anyhow!(
                "{} of {} helpdesks failed (see above); the others were synced",
                failures.len(),
                chosen.len()
            )))
        }
    }
}

/// One helpdesk's cycle under its lock (None when shutdown came while waiting for it).
async fn sync_helpdesk(
    store: &Store,
    app: &std::sync::Arc<FeishuApp>,
    helpdesk: &HelpdeskSettings,
    credentials: Credentials,
    options: &CycleOptions,
    shutdown: &CancellationToken,
    on_progress: impl Fn(Progress) + Sync,
) -> anyhow::Result<Option<Result<CycleReport, CycleError>>> {
    let store = store.for_helpdesk(&helpdesk.id);
    let lease = crate::pace::SendLease::lapsed();
    let client = FeishuClient::for_helpdesk(app.clone(), credentials)?.with_lease(lease.clone());
    // One syncer per helpdesk at a time (a `run` daemon included): wait for the others.
    let Some(lock) =
        crate::scheduler::HelpdeskLock::acquire(&store, &lease, &helpdesk.id, shutdown, &|| {})
            .await?
    else {
        return Ok(None);
    };
    // A lost lock stops the cycle taking work, as a signal does.
    let stop = shutdown.child_token();
    let fence = crate::scheduler::stop_when(lock.lost().clone(), stop.clone());
    let run_id = start_recorded(&store, &helpdesk.id, Trigger::Manual).await;
    let options = options.clone().with_helpdesk(&helpdesk.id);
    let result = run_cycle(&store, &client, &options, &on_progress, stop).await;
    fence.abort();
    finish_recorded(&store, run_id, &result, false).await;
    lock.release().await;
    Ok(Some(result))
}

/// Cancels on SIGINT or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn simulate(
    config: SimConfig,
    listen: SocketAddr,
    events_to: Option<String>,
    change_every: Duration,
) -> Result<(), CliError> {
    let server = SimServer::start(config.clone(), listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!("{}", config.describe(server.addr));
    let stop = shutdown_on_signal();
    if let Some(url) = events_to {
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| CliError::Input(format!("--events-to: {url:?} is not a URL ({e})")))?;
        // http.listen takes an address, not a name: resolve (localhost → 127.0.0.1).
        let listen = parsed
            .socket_addrs(|| None)
            .ok()
            .and_then(|addrs| addrs.into_iter().find(SocketAddr::is_ipv4))
            .map_or_else(|| "127.0.0.1:9187".to_owned(), |a| a.to_string());
        println!(
            "\nSending ticket events to {url} every {}: add to that config\n\n\
             [http]\nlisten = \"{listen}\"\n\n\
             [events]\npath = \"{}\"\nverification_token = \"{}\"\nencrypt_key = \"{}\"",
            humantime::format_duration(change_every),
            parsed.path(),
            config.verification_token,
            config.encrypt_key,
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the event client")?;
        let ids = server.state.ticket_ids();
        let mut tick = tokio::time::interval(change_every);
        tick.tick().await;
        while !ids.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let id = &ids[rand::random_range(0..ids.len())];
            match server.state.change_and_notify(&client, &url, id).await {
                Ok(status) => {
                    tracing::info!(ticket_id = %id, status, "sent a ticket.updated_v1 event")
                }
                Err(e) => tracing::warn!(ticket_id = %id, error = %e, "cannot deliver an event"),
            }
        }
    }
    stop.cancelled().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_file_skips_blanks_and_comments_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.txt");
        std::fs::write(
            &path,
            "# ids\n6626871355780366331\n\n  6626871355780366332  \nabc\n",
        )
        .unwrap();
        let (ids, bad) = read_id_file(&path).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].contains("line 5"), "{bad:?}");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
