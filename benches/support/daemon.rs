//! A first install as a user runs it: the daemon (`helpdesk-sync run`, the release binary) as a
//! process of its own, with a config file pointing at a simulator served by the bench process
//! and at a scratch database; its memory read from `/proc/<pid>/status` (VmRSS, VmHWM) while it
//! works, and the copy's progress read from the tables. Used by the `memory` and
//! `complete_copy` benches.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use helpdesk_sync::sim::{Endpoint, SimServer};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

/// How often the daemon's memory is read.
const MEMORY_POLL: Duration = Duration::from_millis(50);
/// How often the copy's progress is read from the tables (a count over every ticket: not too
/// often, so the watching does not compete with the writing).
const PROGRESS_POLL: Duration = Duration::from_secs(1);

/// The daemon's memory at one moment, in KiB (`/proc/<pid>/status`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Resident now (VmRSS).
    pub rss_kb: u64,
    /// The highest resident so far (VmHWM).
    pub hwm_kb: u64,
}

impl Memory {
    /// Reads `pid`'s status; `None` once the process is gone.
    pub fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        };
        Some(Self {
            rss_kb: field("VmRSS:")?,
            hwm_kb: field("VmHWM:")?,
        })
    }
}

/// KiB as MiB, one decimal.
pub fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

/// How far the copy is, from the tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Tickets stored with their content (status, people, times, custom fields): from list
    /// rows or details.
    pub content: i64,
    /// Tickets whose detail was stored (tags known).
    pub details: i64,
    /// Tickets whose conversation was read completely and is not due again now.
    pub conversations: i64,
}

impl Copied {
    /// Reads the counts in one statement.
    pub async fn read(pool: &PgPool) -> anyhow::Result<Self> {
        let (content, details, conversations): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE t.status IS NOT NULL),
                    count(*) FILTER (WHERE t.tags_known),
                    count(*) FILTER (WHERE s.messages_fetched_at IS NOT NULL
                                       AND s.messages_claimed_by IS NULL
                                       AND (s.messages_due_at IS NULL OR s.messages_due_at > now()))
               FROM tickets t LEFT JOIN ticket_sync_state s USING (ticket_id)",
        )
        .fetch_one(pool)
        .await?;
        Ok(Self {
            content,
            details,
            conversations,
        })
    }
}

/// What a first install came to.
#[derive(Debug, Default)]
pub struct Install {
    pub tickets: usize,
    /// From the daemon's start to every ticket's content stored (the list's work).
    pub content_at: Option<Duration>,
    /// ... to every ticket's detail stored (tags).
    pub details_at: Option<Duration>,
    /// ... to every conversation read.
    pub conversations_at: Option<Duration>,
    /// The last progress read (when the watch ended).
    pub last: Copied,
    /// The daemon's peak resident memory (VmHWM) when the content was complete.
    pub hwm_at_content_kb: u64,
    /// The daemon's peak resident memory over the whole install.
    pub hwm_kb: u64,
    /// Resident memory when the watch ended.
    pub rss_end_kb: u64,
    /// Resident memory samples (seconds since the start, KiB), one per progress read.
    pub rss_series: Vec<(f64, u64)>,
    /// Requests the simulator answered, by endpoint: (all, 429s).
    pub list: (usize, usize),
    pub detail: (usize, usize),
    pub messages: (usize, usize),
    /// First and last arrival of detail and messages requests (seconds since the daemon
    /// started), for their steady rates.
    pub detail_span: (f64, f64),
    pub messages_span: (f64, f64),
}

impl Install {
    /// When the copy was complete: content, details and conversations.
    pub fn complete_at(&self) -> Option<Duration> {
        Some(
            self.content_at?
                .max(self.details_at?)
                .max(self.conversations_at?),
        )
    }

    /// Requests per second between the first and the last arrival.
    pub fn rate(n: usize, span: (f64, f64)) -> f64 {
        let width = span.1 - span.0;
        if n < 2 || width <= 0.0 {
            return 0.0;
        }
        (n - 1) as f64 / width
    }
}

/// A scratch database (dropped by [`Scratch::drop`]) with a small pool for the watching.
pub struct Scratch {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl Scratch {
    pub async fn create(name: &str) -> anyhow::Result<Self> {
        let options = super::reset_database(&super::server()?, name).await?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        Ok(Self {
            name: name.to_owned(),
            url: options.to_url_lossy().to_string(),
            pool,
        })
    }

    pub async fn drop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        super::drop_unless_kept(&super::server()?, &self.name).await
    }

    /// Waits until the daemon has migrated the database (the progress query needs its tables).
    async fn wait_migrated(&self) -> bool {
        let mut conn = match sqlx::postgres::PgConnection::connect(&self.url).await {
            Ok(c) => c,
            Err(_) => return false,
        };
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1::bigint FROM pg_tables WHERE tablename = 'ticket_sync_state'
                AND EXISTS (SELECT 1 FROM information_schema.columns
                             WHERE table_name = 'ticket_sync_state'
                               AND column_name = 'messages_fetched_at')",
        )
        .fetch_optional(&mut conn)
        .await
        .ok()
        .flatten();
        let _ = conn.close().await;
        found.is_some()
    }
}

/// The config file of a first install: the simulator's credentials, the scratch database, no
/// HTTP listener; `feishu_extra` and `sync_extra` are `key = value` lines.
pub fn config_toml(sim: &SimServer, db_url: &str, feishu_extra: &str, sync_extra: &str) -> String {
    let c = sim.state.config();
    format!(
        "[feishu]\nbase_url = {:?}\napp_id = {:?}\napp_secret = {:?}\nhelpdesk_id = {:?}\n\
         helpdesk_token = {:?}\n{feishu_extra}\n[database]\nurl = {:?}\n\n\
         [sync]\nbackfill_since = \"2015-01-01\"\n{sync_extra}\n\n[http]\nlisten = \"\"\n",
        sim.base_url(),
        c.app_id,
        c.app_secret,
        c.helpdesk_id,
        c.helpdesk_token,
        db_url
    )
}

/// The daemon, running.
pub struct Daemon {
    child: tokio::process::Child,
    pub pid: u32,
    pub started: Instant,
    stderr: PathBuf,
    /// Holds the config file and the logs until the run is over.
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `helpdesk-sync --config <file> run` (the binary cargo built for the benches, or
    /// the one `BENCH_DAEMON_BIN` names).
    pub fn start(config: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config)?;
        let stderr = dir.path().join("run.err");
        // BENCH_DAEMON_BIN: another build to compare (e.g. the main branch's), same flags.
        let binary = std::env::var_os("BENCH_DAEMON_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_helpdesk-sync").into());
        let mut cmd = tokio::process::Command::new(binary);
        cmd.arg("--config")
            .arg(&path)
            .arg("run")
            .env_remove("DATABASE_URL")
            .env_remove("RUST_LOG")
            .env_remove("HELPDESK_SYNC_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr)?)
            .kill_on_drop(true);
        for (k, _) in std::env::vars() {
            if k.starts_with("HELPDESK_SYNC__") {
                cmd.env_remove(k);
            }
        }
        let started = Instant::now();
        let child = cmd.spawn().context("starting helpdesk-sync run")?;
        let pid = child.id().context("the daemon has no pid")?;
        Ok(Self {
            child,
            pid,
            started,
            stderr,
            _dir: dir,
        })
    }

    /// Fails with the end of the daemon's log if it exited.
    fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            let tail = &log[log.len().saturating_sub(4000)..];
            anyhow::bail!("helpdesk-sync run exited with {status}\n{tail}");
        }
        Ok(())
    }

    /// SIGTERM, and the wait for the exit (a clean stop: exit 0).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        anyhow::ensure!(killed.success(), "kill -TERM failed: {killed}");
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("the daemon did not stop within 60 s of SIGTERM")??;
        anyhow::ensure!(status.success(), "helpdesk-sync run stopped with {status}");
        Ok(())
    }
}

/// Runs a first install of the simulator's `tickets` into `db` with the daemon configured by
/// `config`, until every ticket's content, detail and conversation is stored, or `limit`
/// passed (then what was reached is reported; `want_complete` makes it an error), or, with
/// `content_only`, until the content is complete.
pub async fn first_install(
    sim: &SimServer,
    db: &Scratch,
    config: &str,
    tickets: usize,
    limit: Duration,
    content_only: bool,
) -> anyhow::Result<Install> {
    let mut daemon = Daemon::start(config)?;
    let mut install = Install {
        tickets,
        ..Install::default()
    };
    let n = tickets as i64;
    let mut peak = Memory::default();
    let mut next_progress = Instant::now();
    let mut migrated = false;
    loop {
        daemon.ensure_running()?;
        if let Some(m) = Memory::of(daemon.pid) {
            peak.hwm_kb = peak.hwm_kb.max(m.hwm_kb);
            peak.rss_kb = m.rss_kb;
        }
        let elapsed = daemon.started.elapsed();
        if Instant::now() >= next_progress {
            next_progress = Instant::now() + PROGRESS_POLL;
            migrated = migrated || db.wait_migrated().await;
            if migrated {
                let copied = Copied::read(&db.pool).await?;
                install.last = copied;
                install
                    .rss_series
                    .push((elapsed.as_secs_f64(), peak.rss_kb));
                if install.content_at.is_none() && copied.content >= n {
                    install.content_at = Some(elapsed);
                    install.hwm_at_content_kb = peak.hwm_kb;
                }
                if install.details_at.is_none() && copied.details >= n {
                    install.details_at = Some(elapsed);
                }
                if install.conversations_at.is_none() && copied.conversations >= n {
                    install.conversations_at = Some(elapsed);
                }
                let done = match content_only {
                    true => install.content_at.is_some(),
                    false => install.complete_at().is_some(),
                };
                if done {
                    break;
                }
            }
        }
        if elapsed > limit {
            break;
        }
        tokio::time::sleep(MEMORY_POLL).await;
    }
    install.hwm_kb = peak.hwm_kb;
    install.rss_end_kb = peak.rss_kb;
    // Arrivals are on the simulator's clock: from its start, not the daemon's.
    let offset = daemon
        .started
        .saturating_duration_since(sim.state.started())
        .as_secs_f64();
    daemon.stop().await?;
    let requests = sim.state.requests();
    let by = |endpoint: Endpoint| {
        let of: Vec<_> = requests.iter().filter(|r| r.endpoint == endpoint).collect();
        let limited = of.iter().filter(|r| r.status == 429).count();
        let first = of.iter().map(|r| r.arrived).min().unwrap_or_default();
        let last = of.iter().map(|r| r.arrived).max().unwrap_or_default();
        ((of.len(), limited), (first, last))
    };
    let span = |(first, last): (Duration, Duration)| {
        (first.as_secs_f64() - offset, last.as_secs_f64() - offset)
    };
    let (list, _) = by(Endpoint::List);
    let (detail, detail_span) = by(Endpoint::Detail);
    let (messages, messages_span) = by(Endpoint::Messages);
    install.list = list;
    install.detail = detail;
    install.messages = messages;
    install.detail_span = span(detail_span);
    install.messages_span = span(messages_span);
    Ok(install)
}
