//! End to end, the real binary (release build) against the in-process simulator and a local
//! PostgreSQL, for the performance issue's targets:
//! 1. memory: peak RSS (the child's VmHWM, polled every 20 ms) of a history backfill `sync` of
//!    N tickets at the highest pace the config accepts (1000/s), simulator limits out of the way;
//!    every ticket must be stored;
//! 2. steady state: after a full sync, 1 % of the tickets change upstream; the next `sync` must
//!    make one detail request per changed ticket and list about ceil(listed / 200) pages;
//! 3. startup: from spawning `sync` (database already migrated, a few tickets queued) to the
//!    first request arriving at the simulator;
//! 4. shutdown: `run` at 9 req/s with 300 ms latency, SIGTERM once 20 detail requests were
//!    answered: time to exit, exit code, and nothing lost (every ticket answered with 200 is
//!    stored, no claim left behind).
//!
//! Run: `cargo bench --bench e2e` (about 5 minutes on 2 cores, most of it the 100,000-ticket
//! backfill, which is paced at 1000 detail requests/s at best).
//!
//! Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres; scratch
//! databases hsbench_e2e_<pid>_<n> are created and dropped), BENCH_MEMORY_TICKETS (comma list,
//! default "10000,100000"), BENCH_STEADY_TICKETS (20000), BENCH_STARTUP_RUNS (5),
//! BENCH_SHUTDOWN_TICKETS (2000).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use helpdesk_sync::feishu::client::TOKEN_PATH;
use helpdesk_sync::sim::{Endpoint, RequestRecord, SimConfig, SimServer};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The highest pace `feishu.*_requests_per_second` accepts.
const FAST_PACE: f64 = 1000.0;
/// Simulator limits no run reaches: no 429s.
const NO_LIMIT: usize = 1_000_000;
/// Most time one child may take before the runner gives up on it.
const CHILD_LIMIT: Duration = Duration::from_secs(900);
/// How often the child's VmHWM is read.
const RSS_POLL: Duration = Duration::from_millis(20);
/// Environment variables this runner reads, for the command line printed at the top.
const ENV_VARS: [&str; 5] = [
    "BENCH_MEMORY_TICKETS",
    "BENCH_STEADY_TICKETS",
    "BENCH_STARTUP_RUNS",
    "BENCH_SHUTDOWN_TICKETS",
    "DATABASE_URL",
];

mod support;

use support::{drop_database, env_usize};

fn env_list(name: &str, default: &[usize]) -> anyhow::Result<Vec<usize>> {
    match std::env::var(name) {
        Err(_) => Ok(default.to_vec()),
        Ok(text) => text
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .with_context(|| format!("{name}: {n:?} is not a number"))
            })
            .collect(),
    }
}

/// Scratch databases on the server, all dropped at the end.
struct Databases {
    server: PgConnectOptions,
    created: Vec<String>,
}

/// One scratch database.
struct Scratch {
    url: String,
    pool: PgPool,
}

impl Databases {
    async fn create(&mut self) -> anyhow::Result<Scratch> {
        let name = format!("hsbench_e2e_{}_{}", std::process::id(), self.created.len());
        let options = support::reset_database(&self.server, &name).await?;
        self.created.push(name);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options.clone())
            .await?;
        Ok(Scratch {
            url: options.to_url_lossy().to_string(),
            pool,
        })
    }

    async fn drop_all(&self) -> anyhow::Result<()> {
        for name in &self.created {
            drop_database(&self.server, name).await?;
        }
        Ok(())
    }
}

async fn count(pool: &PgPool, sql: &'static str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(pool).await?)
}

/// A config file pointing at a simulator and a scratch database, and the child's output files.
struct Workspace {
    dir: tempfile::TempDir,
    config: PathBuf,
    db_url: String,
    runs: usize,
}

impl Workspace {
    /// `feishu_extra` and `sync_extra` are `key = value` lines for `[feishu]` and `[sync]`.
    fn new(
        sim: &SimServer,
        db: &Scratch,
        feishu_extra: &str,
        sync_extra: &str,
    ) -> anyhow::Result<Self> {
        let c = sim.state.config();
        let toml = format!(
            "[feishu]\nbase_url = {:?}\napp_id = {:?}\napp_secret = {:?}\nhelpdesk_id = {:?}\n\
             helpdesk_token = {:?}\n{feishu_extra}\n[database]\nurl = {:?}\n\n[sync]\n{sync_extra}\n",
            sim.base_url(),
            c.app_id,
            c.app_secret,
            c.helpdesk_id,
            c.helpdesk_token,
            db.url
        );
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("config.toml");
        std::fs::write(&config, toml)?;
        Ok(Self {
            dir,
            config,
            db_url: db.url.clone(),
            runs: 0,
        })
    }

    /// Starts the binary with `--config` and `args`; stdout and stderr go to files.
    fn spawn(&mut self, args: &[&str]) -> anyhow::Result<Running> {
        self.runs += 1;
        let out = self.dir.path().join(format!("run{}.out", self.runs));
        let err = self.dir.path().join(format!("run{}.err", self.runs));
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_helpdesk-sync"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("HELPDESK_SYNC_CONFIG")
            .env("DATABASE_URL", &self.db_url)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&err)?)
            .kill_on_drop(true);
        for (k, _) in std::env::vars() {
            if k.starts_with("HELPDESK_SYNC__") {
                cmd.env_remove(k);
            }
        }
        let started = Instant::now();
        let child = cmd.spawn().context("starting helpdesk-sync")?;
        let pid = child.id().context("the child has no pid")?;
        Ok(Running {
            child,
            pid,
            started,
            label: args.join(" "),
            out,
            err,
        })
    }

    /// Runs the binary to its end; fails unless it exits 0.
    async fn run_ok(&mut self, args: &[&str]) -> anyhow::Result<Exit> {
        let exit = self.spawn(args)?.finish().await?;
        exit.ensure_success()?;
        Ok(exit)
    }
}

/// A child process being watched.
struct Running {
    child: tokio::process::Child,
    pid: u32,
    started: Instant,
    label: String,
    out: PathBuf,
    err: PathBuf,
}

/// How a child ended.
struct Exit {
    label: String,
    code: Option<i32>,
    started: Instant,
    ended: Instant,
    peak_rss_kb: Option<u64>,
    stdout: String,
    stderr: String,
}

impl Running {
    /// Waits for the exit, reading VmHWM every [`RSS_POLL`] meanwhile.
    async fn finish(mut self) -> anyhow::Result<Exit> {
        let mut peak = None;
        let status = loop {
            if let Some(kb) = vm_hwm_kb(self.pid) {
                peak = Some(kb);
            }
            tokio::select! {
                status = self.child.wait() => break status?,
                _ = tokio::time::sleep(RSS_POLL) => {}
            }
            if self.started.elapsed() > CHILD_LIMIT {
                self.child.kill().await?;
                anyhow::bail!(
                    "helpdesk-sync {} did not finish within {CHILD_LIMIT:?}",
                    self.label
                );
            }
        };
        let ended = Instant::now();
        Ok(Exit {
            label: self.label,
            code: status.code(),
            started: self.started,
            ended,
            peak_rss_kb: peak,
            stdout: std::fs::read_to_string(&self.out)?,
            stderr: std::fs::read_to_string(&self.err)?,
        })
    }
}

impl Exit {
    fn wall(&self) -> Duration {
        self.ended - self.started
    }

    fn ensure_success(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.code == Some(0),
            "helpdesk-sync {} exited with {:?}\n--- stdout\n{}\n--- stderr (last 4000 bytes)\n{}",
            self.label,
            self.code,
            self.stdout,
            tail(&self.stderr, 4000)
        );
        Ok(())
    }
}

fn tail(text: &str, bytes: usize) -> &str {
    let mut start = text.len().saturating_sub(bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The peak resident set size of a running process, from `/proc/<pid>/status`.
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

async fn start_sim(config: SimConfig) -> anyhow::Result<SimServer> {
    Ok(SimServer::start(config, "127.0.0.1:0".parse()?).await?)
}

/// A simulator that never rate-limits and answers at once.
fn unlimited(tickets: usize) -> SimConfig {
    SimConfig {
        tickets,
        detail_limit_per_second: NO_LIMIT,
        list_limit_per_second: NO_LIMIT,
        ..SimConfig::default()
    }
}

fn fast_feishu() -> String {
    format!(
        "detail_requests_per_second = {FAST_PACE:.1}\nlist_requests_per_second = {FAST_PACE:.1}\n\
         max_in_flight = 16\nrequest_timeout = \"10s\"\n"
    )
}

/// Requests the simulator answered since the `from`-th.
fn requests_since(sim: &SimServer, from: usize) -> Vec<RequestRecord> {
    sim.state.requests().into_iter().skip(from).collect()
}

struct MemoryRow {
    tickets: usize,
    wall: Duration,
    peak_rss_kb: u64,
    list: Phase,
    detail: Phase,
}

/// Requests to one endpoint: how many, and from the first arrival to the last.
struct Phase {
    requests: usize,
    span: Duration,
}

impl Phase {
    fn of(requests: &[RequestRecord], endpoint: Endpoint) -> Self {
        let times: Vec<Duration> = requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .map(|r| r.arrived)
            .collect();
        let first = times.iter().min().copied().unwrap_or_default();
        let last = times.iter().max().copied().unwrap_or_default();
        Self {
            requests: times.len(),
            span: last - first,
        }
    }
}

/// 1. A history backfill of `tickets` through the list API, then every detail.
async fn memory(dbs: &mut Databases, tickets: usize) -> anyhow::Result<MemoryRow> {
    let sim = start_sim(unlimited(tickets)).await?;
    let db = dbs.create().await?;
    let mut ws = Workspace::new(&sim, &db, &fast_feishu(), "batch_size = 100\n")?;
    let exit = ws.run_ok(&["sync"]).await?;
    let stored = count(&db.pool, "SELECT count(*) FROM tickets").await?;
    anyhow::ensure!(
        stored == tickets as i64,
        "backfill of {tickets} tickets stored {stored}\n--- stdout\n{}",
        exit.stdout
    );
    db.pool.close().await;
    let requests = sim.state.requests();
    Ok(MemoryRow {
        tickets,
        wall: exit.wall(),
        list: Phase::of(&requests, Endpoint::List),
        detail: Phase::of(&requests, Endpoint::Detail),
        peak_rss_kb: exit
            .peak_rss_kb
            .context("VmHWM was never read: the child ended within one poll")?,
    })
}

struct SteadyRow {
    tickets: usize,
    changed: usize,
    detail: usize,
    detail_for_changed: bool,
    list: usize,
    listed: i64,
    queued: i64,
    wall: Duration,
}

/// 2. Full sync, 1 % changed upstream, one more sync: its API calls.
async fn steady(dbs: &mut Databases, tickets: usize) -> anyhow::Result<SteadyRow> {
    let sim = start_sim(unlimited(tickets)).await?;
    let db = dbs.create().await?;
    let mut ws = Workspace::new(&sim, &db, &fast_feishu(), "batch_size = 100\n")?;
    ws.run_ok(&["sync"]).await?;
    let stored = count(&db.pool, "SELECT count(*) FROM tickets").await?;
    anyhow::ensure!(
        stored == tickets as i64,
        "full sync stored {stored} of {tickets}"
    );

    let ids = sim.state.ticket_ids();
    let changed_count = (tickets / 100).max(1);
    let changed: HashSet<String> = (0..changed_count)
        .map(|i| ids[i * ids.len() / changed_count].clone())
        .collect();
    for id in &changed {
        // update_ticket also sets updated_at to now (milliseconds), as the real API does.
        sim.state.update_ticket(id, |t| t["status"] = json!(51));
    }
    let before = sim.state.requests().len();
    let exit = ws.run_ok(&["sync"]).await?;
    let cycle = requests_since(&sim, before);
    let detail_ids: Vec<&str> = cycle
        .iter()
        .filter(|r| r.endpoint == Endpoint::Detail)
        .filter_map(|r| r.ticket_id.as_deref())
        .collect();
    let detail_set: HashSet<&str> = detail_ids.iter().copied().collect();
    let (listed, queued): (i64, i64) = sqlx::query_as(
        "SELECT tickets_listed, tickets_queued_by_discovery FROM sync_runs ORDER BY run_id DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await?;
    db.pool.close().await;
    Ok(SteadyRow {
        tickets,
        changed: changed.len(),
        detail: detail_ids.len(),
        detail_for_changed: detail_set.len() == changed.len()
            && changed.iter().all(|id| detail_set.contains(id.as_str())),
        list: cycle
            .iter()
            .filter(|r| r.endpoint == Endpoint::List)
            .count(),
        listed,
        queued,
        wall: exit.wall(),
    })
}

/// The simulator's start as an `Instant` of ours: one request of our own, whose recorded
/// arrival (since the simulator started) falls between sending it and reading the answer.
/// Returns the estimate and its uncertainty.
async fn sim_epoch(sim: &SimServer) -> anyhow::Result<(Instant, Duration)> {
    let before = sim.state.requests().len();
    let mut stream = tokio::net::TcpStream::connect(sim.addr).await?;
    // An empty body: answered 400 by the token endpoint, recorded, no token issued.
    let request = format!(
        "POST {TOKEN_PATH} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         content-length: 2\r\nconnection: close\r\n\r\n{{}}",
        sim.addr
    );
    let sent = Instant::now();
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answered = Instant::now();
    let record = requests_since(sim, before)
        .into_iter()
        .next()
        .context("the calibration request was not recorded")?;
    let half = (answered - sent) / 2;
    let epoch = (sent + half)
        .checked_sub(record.arrived)
        .context("simulator start before this process's clock")?;
    Ok((epoch, half))
}

struct StartupRow {
    runs: Vec<Duration>,
    uncertainty: Duration,
}

/// 3. From spawning `sync` to the first request at the simulator.
async fn startup(dbs: &mut Databases, runs: usize) -> anyhow::Result<StartupRow> {
    let sim = start_sim(SimConfig {
        tickets: 5,
        ..SimConfig::default()
    })
    .await?;
    let db = dbs.create().await?;
    let mut ws = Workspace::new(&sim, &db, "", "discover = false\n")?;
    ws.run_ok(&["migrate"]).await?;
    let (epoch, uncertainty) = sim_epoch(&sim).await?;
    let ids = sim.state.ticket_ids();
    let mut enqueue = vec!["enqueue"];
    enqueue.extend(ids.iter().map(String::as_str));
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        // Known ids become due again: the cycle has work, so it asks for a token first.
        ws.run_ok(&enqueue).await?;
        let before = sim.state.requests().len();
        let exit = ws.run_ok(&["sync"]).await?;
        let first = requests_since(&sim, before)
            .iter()
            .map(|r| r.arrived)
            .min()
            .context("sync made no request")?;
        times.push((epoch + first).saturating_duration_since(exit.started));
    }
    db.pool.close().await;
    Ok(StartupRow {
        runs: times,
        uncertainty,
    })
}

struct ShutdownRow {
    tickets: usize,
    answered_at_term: usize,
    code: Option<i32>,
    exit_after: Duration,
    answered_ok: usize,
    stored_of_answered: i64,
    claims_left: i64,
    outcome: Option<String>,
}

/// 4. `run`, SIGTERM during the fetch: time to exit and what was kept.
async fn shutdown(dbs: &mut Databases, tickets: usize) -> anyhow::Result<ShutdownRow> {
    let sim = start_sim(SimConfig {
        tickets,
        latency: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await?;
    let db = dbs.create().await?;
    let mut ws = Workspace::new(
        &sim,
        &db,
        "detail_requests_per_second = 9.0\nmax_in_flight = 16\nrequest_timeout = \"10s\"\n",
        "schedule = \"* * * * * *\"\n",
    )?;
    let mut running = ws.spawn(&["--log-format", "json", "run"])?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while sim.state.detail_requests(None) < 20 {
        if let Some(status) = running.child.try_wait()? {
            anyhow::bail!(
                "run exited with {status} before 20 detail requests\n{}",
                tail(&std::fs::read_to_string(&running.err)?, 4000)
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no 20 detail requests within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let answered_at_term = sim.state.detail_requests(None);
    let term = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &running.pid.to_string()])
        .status()?;
    anyhow::ensure!(killed.success(), "kill -TERM failed: {killed}");
    running.started = term;
    let exit = running.finish().await?;

    let answered: Vec<String> = sim
        .state
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::Detail && r.status == 200)
        .filter_map(|r| r.ticket_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets WHERE ticket_id = ANY($1)")
        .bind(&answered)
        .fetch_one(&db.pool)
        .await?;
    let claims_left = count(
        &db.pool,
        "SELECT count(*) FROM ticket_sync_state WHERE claimed_by IS NOT NULL",
    )
    .await?;
    let outcome: Option<String> =
        sqlx::query_scalar("SELECT outcome FROM sync_runs ORDER BY run_id DESC LIMIT 1")
            .fetch_optional(&db.pool)
            .await?;
    db.pool.close().await;
    Ok(ShutdownRow {
        tickets,
        answered_at_term,
        code: exit.code,
        exit_after: exit.wall(),
        answered_ok: answered.len(),
        stored_of_answered: stored,
        claims_left,
        outcome,
    })
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

/// The command line that produced this output (a password in DATABASE_URL masked).
fn command_line() -> String {
    let mut parts = Vec::new();
    for name in ENV_VARS {
        if let Ok(mut value) = std::env::var(name) {
            if name == "DATABASE_URL"
                && let Ok(mut url) = reqwest::Url::parse(&value)
                && url.password().is_some()
                && url.set_password(Some("***")).is_ok()
            {
                value = url.to_string();
            }
            parts.push(format!("{name}={value}"));
        }
    }
    parts.push("cargo bench --bench e2e".into());
    parts.join(" ")
}

async fn measure(dbs: &mut Databases) -> anyhow::Result<()> {
    let memory_sizes = env_list("BENCH_MEMORY_TICKETS", &[10_000, 100_000])?;
    let steady_tickets = env_usize("BENCH_STEADY_TICKETS", 20_000);
    let startup_runs = env_usize("BENCH_STARTUP_RUNS", 5).max(1);
    let shutdown_tickets = env_usize("BENCH_SHUTDOWN_TICKETS", 2_000);

    println!(
        "\n1. memory: backfill `sync` (list API by create time, then every detail), pace {FAST_PACE}/s \
         list and detail, 16 in flight, no latency, no simulator limit; target <= 64 MiB, flat in N"
    );
    println!(
        "{:>9} {:>9} {:>10} {:>15} {:>10} {:>8} {:>9} {:>10}",
        "tickets",
        "wall s",
        "tickets/s",
        "peak RSS MiB",
        "list reqs",
        "list s",
        "detail s",
        "detail/s"
    );
    for n in memory_sizes {
        let r = memory(dbs, n).await?;
        println!(
            "{:>9} {:>9.1} {:>10.0} {:>15.1} {:>10} {:>8.1} {:>9.1} {:>10.0}",
            r.tickets,
            r.wall.as_secs_f64(),
            r.tickets as f64 / r.wall.as_secs_f64(),
            mib(r.peak_rss_kb),
            r.list.requests,
            r.list.span.as_secs_f64(),
            r.detail.span.as_secs_f64(),
            r.detail.requests as f64 / r.detail.span.as_secs_f64().max(1e-9)
        );
    }
    println!(
        "every ticket stored (SELECT count(*) FROM tickets = N): yes \
         (list s / detail s: first to last arrival of that endpoint at the simulator)"
    );

    let s = steady(dbs, steady_tickets).await?;
    println!(
        "\n2. steady state: full `sync` of {} tickets, then {} (1 %) changed upstream \
         (status 51, updated_at = now), one more `sync`",
        s.tickets, s.changed
    );
    println!(
        "{:>8} {:>16} {:>14} {:>12} {:>8} {:>17} {:>8}",
        "changed",
        "detail requests",
        "list requests",
        "rows listed",
        "queued",
        "ceil(listed/200)",
        "wall s"
    );
    println!(
        "{:>8} {:>16} {:>14} {:>12} {:>8} {:>17} {:>8.2}",
        s.changed,
        s.detail,
        s.list,
        s.listed,
        s.queued,
        (s.listed.max(0) as u64).div_ceil(200),
        s.wall.as_secs_f64()
    );
    println!(
        "detail requests == changed tickets: {}; exactly the changed tickets fetched: {}",
        yes_no(s.detail == s.changed),
        yes_no(s.detail_for_changed)
    );
    println!(
        "(list requests: one create-time scan and one update-time scan of [watermark - 10m, now], \
         each at least one page, plus a re-read of page 1 for a multi-page window)"
    );

    let st = startup(dbs, startup_runs).await?;
    let mut sorted = st.runs.clone();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "\n3. startup: spawn `sync` (database migrated, 5 tickets queued, discovery off) to the \
         first request at the simulator; target < 200 ms"
    );
    println!(
        "{:>5} {:>8} {:>10} {:>8}   each ms",
        "runs", "min ms", "median ms", "max ms"
    );
    println!(
        "{:>5} {:>8.1} {:>10.1} {:>8.1}   {}",
        sorted.len(),
        ms(sorted[0]),
        ms(sorted[sorted.len() / 2]),
        ms(sorted[sorted.len() - 1]),
        st.runs
            .iter()
            .map(|d| format!("{:.1}", ms(*d)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "(simulator clock aligned to ours within ±{:.2} ms)",
        ms(st.uncertainty)
    );

    let sd = shutdown(dbs, shutdown_tickets).await?;
    println!(
        "\n4. shutdown: `run` (schedule every second), {} tickets, latency 300 ms, pace 9/s, \
         request_timeout 10s, shutdown_grace 20s (default); SIGTERM after {} detail answers; \
         target: exit within 2 s + one request timeout (12 s)",
        sd.tickets, sd.answered_at_term
    );
    println!(
        "{:>9} {:>15} {:>17} {:>18} {:>12} {:>14}",
        "exit code", "s to exit", "answered 200", "of them stored", "claims left", "cycle outcome"
    );
    println!(
        "{:>9} {:>15.2} {:>17} {:>18} {:>12} {:>14}",
        sd.code.map_or("signal".to_owned(), |c| c.to_string()),
        sd.exit_after.as_secs_f64(),
        sd.answered_ok,
        sd.stored_of_answered,
        sd.claims_left,
        sd.outcome.as_deref().unwrap_or("none")
    );
    println!(
        "nothing lost: {}",
        yes_no(sd.stored_of_answered == sd.answered_ok as i64 && sd.claims_left == 0)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; nothing else to parse.
    println!("$ {}", command_line());
    let server = support::server()?;
    // The write path's plans depend on statistics: say whether the server gathers them as
    // tables grow (with autovacuum off, nothing runs ANALYZE during a backfill).
    let mut admin = server.clone().database("postgres").connect().await?;
    let (version, autovacuum): (String, String) =
        sqlx::query_as("SELECT current_setting('server_version'), current_setting('autovacuum')")
            .fetch_one(&mut admin)
            .await?;
    admin.close().await?;
    println!("PostgreSQL {version}, autovacuum = {autovacuum}");
    let started = Instant::now();
    let mut dbs = Databases {
        server,
        created: Vec::new(),
    };
    let measured = measure(&mut dbs).await;
    let dropped = dbs.drop_all().await;
    measured?;
    dropped?;
    println!("\ntotal {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
