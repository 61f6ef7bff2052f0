//! Postgres, the only module that speaks SQL: connection, migrations and the reporting
//! definitions (`reporting`), the work queue (`queue`), batched upserts (`upsert`: the queue's
//! outcomes; `write`: the rows of tickets whose content changed; `failure`: the retry delay) and
//! a ticket's child rows (`children`), change history and stays (`history`), list rows and
//! their verification (`listed`), conversations and their lane of the queue (`messages`),
//! discovery positions (`discovery`), webhook event receipts (`events`), run records (`runs`),
//! the helpdesk lock (`lock`), the helpdesks and their names (`helpdesks`), the custom field
//! catalog (`catalog`), the report tables refreshed after a cycle (`reports`), business hours
//! and SLA results (`sla`), and what the operator and the demo read: `status`, `summary`,
//! `raw` (stored JSON for `reprocess`).

pub mod catalog;
pub mod children;
pub mod discovery;
pub mod events;
pub mod failure;
pub mod helpdesks;
pub mod history;
pub mod listed;
pub mod lock;
pub mod messages;
pub mod queue;
pub mod rates;
pub mod raw;
pub mod reporting;
pub mod reports;
pub mod runs;
pub mod sla;
pub mod status;
pub mod summary;
pub mod upsert;
pub mod write;

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};

use crate::config::DatabaseSettings;

/// The embedded migrations (`migrations/`), applied by `migrate`, `sync` and `demo`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A handle on the reporting database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    growth: std::sync::Arc<GrowthWatch>,
    /// The helpdesk lock's fence while this process holds it: claims are taken only while its
    /// epoch is current (`sync_lock`), so a holder that lost its lock without noticing yet
    /// cannot claim work beside the new one.
    fence: std::sync::Arc<std::sync::Mutex<Option<lock::Fence>>>,
    /// The helpdesk this handle works for ([`Store::for_helpdesk`]): queue rows it adds carry
    /// it, and its claims, releases and counts see only that helpdesk's rows, so helpdesks
    /// synced side by side in one process never touch each other's work. None: every
    /// helpdesk (migrate, status, and the queue rows of a database not yet adopted).
    helpdesk: Option<std::sync::Arc<str>>,
}

/// Tickets written by this process, and the count at which statistics are refreshed next.
#[derive(Debug)]
struct GrowthWatch {
    written: std::sync::atomic::AtomicU64,
    next_analyze: std::sync::atomic::AtomicU64,
}

impl Default for GrowthWatch {
    fn default() -> Self {
        Self {
            written: 0.into(),
            next_analyze: FIRST_ANALYZE_AT.into(),
        }
    }
}

/// Statistics are refreshed after this many tickets written, then after twice as many, …
const FIRST_ANALYZE_AT: u64 = 1_000;

/// … up to this many (the 1k, 2k, 4k, 8k, 16k marks). Statistics of 16,000 tickets already make
/// our per-batch `ticket_id = ANY($1)` plans index plans, and the planner scales row counts
/// with each table's current size from then on; autovacuum keeps them fresh after. The 32k
/// and 64k marks cost seconds of CPU in a 100,000-ticket first install (BENCHMARKS.md, round
/// four).
const LAST_ANALYZE_AT: u64 = 16_000;

/// The tables a sync writes, analyzed together.
const ANALYZE_WRITTEN_TABLES: &str = "ANALYZE tickets, ticket_agents, ticket_collaborators, \
     ticket_tags, ticket_custom_fields, ticket_comments, helpdesk_users, ticket_versions, \
     ticket_status_history, ticket_status_stays, ticket_history_summary, ticket_messages, \
     ticket_sync_state, ticket_sla_results, ticket_business_times";

impl Store {
    /// Connects; the error names host, port and database (never the password).
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        Self::connect_with(settings.connect_options(), settings.max_connections).await
    }

    pub async fn connect_with(
        options: PgConnectOptions,
        max_connections: u32,
    ) -> anyhow::Result<Self> {
        let target = describe_target(&options);
        // Named in pg_stat_activity unless the URL names it otherwise.
        let options = match options.get_application_name() {
            Some(_) => options,
            None => options.application_name(crate::APP_NAME),
        };
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(15))
            // A connection's read and write buffers grow to the largest message it ever sent
            // or read (a batch statement of list rows is megabytes) and keep that size: shrunk
            // back (to 8 KiB) when the connection returns to the pool, so idle connections do
            // not each hold the peak of a batch.
            .after_release(|conn, _| {
                Box::pin(async move {
                    sqlx::Connection::shrink_buffers(conn);
                    Ok(true)
                })
            })
            .connect_with(options.log_statements(tracing::log::LevelFilter::Trace))
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {target}"))?;
        Ok(Self {
            pool,
            growth: Default::default(),
            fence: Default::default(),
            helpdesk: None,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The same database for one helpdesk: its own fence (its lock is its own), queue rows
    /// added and claimed as that helpdesk's. Share the pool; clone it per helpdesk once.
    pub fn for_helpdesk(&self, helpdesk_id: &str) -> Self {
        Self {
            pool: self.pool.clone(),
            growth: self.growth.clone(),
            fence: Default::default(),
            helpdesk: Some(helpdesk_id.into()),
        }
    }

    /// The helpdesk this handle is for ([`Store::for_helpdesk`]), None for every helpdesk.
    pub fn helpdesk(&self) -> Option<&str> {
        self.helpdesk.as_deref()
    }

    /// Set by the helpdesk lock when taken (every clone of this store shares it).
    pub fn set_fence(&self, fence: Option<lock::Fence>) {
        *self.fence.lock().unwrap_or_else(|p| p.into_inner()) = fence;
    }

    /// The helpdesk lock's fence, when this process took it.
    pub fn fence(&self) -> Option<lock::Fence> {
        self.fence.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Call after committing `tickets` written tickets. While tables grow fast (a backfill into
    /// empty tables), the plans Postgres caches for our `ticket_id = ANY($1)` statements were
    /// made when the tables were tiny and stay sequential scans until the next ANALYZE; with
    /// autovacuum off or lagging that costs 2x by 100k tickets. So: ANALYZE after 1k, 2k, 4k, …
    /// 16k tickets written by this process ([`LAST_ANALYZE_AT`]; autovacuum after). The ANALYZE
    /// runs in the background (one per mark): it locks out no writes, and the writer that
    /// crossed the mark goes on writing meanwhile.
    pub fn note_written(&self, tickets: u64) {
        use std::sync::atomic::Ordering;
        let total = self.growth.written.fetch_add(tickets, Ordering::Relaxed) + tickets;
        let next = self.growth.next_analyze.load(Ordering::Relaxed);
        if total < next
            || next > LAST_ANALYZE_AT
            || self
                .growth
                .next_analyze
                .compare_exchange(
                    next,
                    total.max(next) * 2,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        // Outside a runtime (nothing of ours calls it so) there is nowhere to run it: skipped.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = self.pool.clone();
        runtime.spawn(async move {
            let started = std::time::Instant::now();
            match sqlx::query(ANALYZE_WRITTEN_TABLES).execute(&pool).await {
                Ok(_) => tracing::debug!(
                    tickets_written = total,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "refreshed planner statistics"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot refresh planner statistics (ANALYZE)")
                }
            }
        });
    }

    /// Applies pending migrations, then the reporting definitions that changed (all of them
    /// when a migration ran); safe to run concurrently (both take an advisory lock).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let before = self.applied_migrations().await?;
        MIGRATOR
            .run(&self.pool)
            .await
            .context("applying database migrations")?;
        let migrated = self.applied_migrations().await? != before;
        match self.apply_reporting_definitions(migrated).await {
            Ok(done) if !done.applied.is_empty() => tracing::info!(
                files = done.applied.join(", "),
                reader_role = done.reader_granted,
                "applied reporting definitions"
            ),
            Ok(_) => {}
            // A dashboard query held a view longer than the lock timeout: the views stay as
            // they were until the next migrate; syncing goes on.
            Err(e) if is_lock_timeout(&e) => tracing::warn!(
                error = format!("{e:#}"),
                "reporting definitions not applied (a view is in use); trying again at the next start"
            ),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// How many versioned migrations the database has applied (0 before the first).
    async fn applied_migrations(&self) -> anyhow::Result<i64> {
        let table: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(&self.pool)
                .await
                .context("reading the schema")?;
        if table.is_none() {
            return Ok(0);
        }
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

/// Whether an error is Postgres giving up waiting for a lock (`lock_timeout`, SQLSTATE 55P03).
fn is_lock_timeout(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .and_then(|e| e.code())
            .as_deref()
            == Some("55P03")
    })
}

/// `host:port/database` for messages.
pub fn describe_target(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("(default)")
    )
}

/// The comment that marks a database made by `demo`: the next demo may reset it.
const DEMO_DATABASE_MARK: &str = "helpdesk-sync demo database (every demo run starts it anew)";

/// The name `demo` uses when `DATABASE_URL` is not set (reset even when an older demo, which
/// left no mark, made it).
const DEFAULT_DEMO_DATABASE: &str = "helpdesk_demo";

/// What [`reset_demo_database`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoDatabase {
    /// There was none.
    Created,
    /// An earlier demo's (or an empty) database was dropped and created again.
    Reset,
}

/// Gives `demo` an empty database, so that running it twice leaves the same tables: created
/// when missing; dropped (sessions and all) and created again when an earlier demo made it or
/// it holds no tickets. A database holding tickets that no demo made is refused, untouched.
pub async fn reset_demo_database(options: &PgConnectOptions) -> anyhow::Result<DemoDatabase> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        anyhow::bail!("the demo needs a database name in DATABASE_URL");
    };
    let admin = options.clone().database("postgres");
    let mut conn = admin.connect().await.with_context(|| {
        format!(
            "cannot connect to PostgreSQL at {}",
            describe_target(&admin)
        )
    })?;
    let found: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
    )
    .bind(&name)
    .fetch_optional(&mut conn)
    .await?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    let outcome = match found {
        None => DemoDatabase::Created,
        Some((mark,)) => {
            let ours = mark.as_deref() == Some(DEMO_DATABASE_MARK) || name == DEFAULT_DEMO_DATABASE;
            if !ours {
                let tickets = stored_tickets(options).await?;
                if tickets > 0 {
                    anyhow::bail!(
                        "database {name} holds {tickets} tickets that no demo made; the demo \
                         starts from an empty database of its own: point DATABASE_URL at another \
                         one (unset, it uses {DEFAULT_DEMO_DATABASE})"
                    );
                }
            }
            // The name is a quoted identifier from the operator's own URL (no parameters here).
            conn.execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {quoted} WITH (FORCE)"
            )))
            .await
            .with_context(|| format!("dropping the demo database {name}"))?;
            DemoDatabase::Reset
        }
    };
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
        .await
        .with_context(|| format!("creating database {name}"))?;
    conn.execute(sqlx::AssertSqlSafe(format!(
        "COMMENT ON DATABASE {quoted} IS '{DEMO_DATABASE_MARK}'"
    )))
    .await?;
    Ok(outcome)
}

/// Tickets stored in a database (0 when it has no helpdesk-sync schema).
async fn stored_tickets(options: &PgConnectOptions) -> anyhow::Result<i64> {
    let mut conn = options.connect().await.with_context(|| {
        format!(
            "cannot connect to PostgreSQL at {}",
            describe_target(options)
        )
    })?;
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('public.tickets')::text")
        .fetch_one(&mut conn)
        .await?;
    if table.is_none() {
        return Ok(0);
    }
    Ok(sqlx::query_scalar("SELECT count(*) FROM public.tickets")
        .fetch_one(&mut conn)
        .await?)
}

/// Creates the target database if it does not exist (used by `demo` and the tests).
pub async fn create_database_if_missing(options: &PgConnectOptions) -> anyhow::Result<()> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let admin = options.clone().database("postgres");
    let mut conn = admin.connect().await.with_context(|| {
        format!(
            "cannot connect to PostgreSQL at {}",
            describe_target(&admin)
        )
    })?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        // CREATE DATABASE takes no parameters: the name is a quoted identifier (quotes doubled),
        // and it comes from the operator's own database URL.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let statement = sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}"));
        match conn.execute(statement).await {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Someone else created it in between: fine.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e).with_context(|| format!("creating database {name}")),
        }
    }
    Ok(())
}
