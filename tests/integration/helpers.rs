//! Test harness: a fresh database per test, the simulator on a random port, and the real binary.
//!
//! Postgres comes from `DATABASE_URL` when set (CI sets it); else from a server answering on
//! 127.0.0.1:5432 as user `postgres` (the README's setup); else one testcontainers Postgres is
//! started for the whole test binary (needs Docker). Each test gets a database of its own.

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};

use helpdesk_sync::sim::{SimConfig, SimServer};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};
use tokio::sync::OnceCell;

pub use crate::harness::*;

static SERVER_URL: OnceCell<String> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The URL of a Postgres server the tests may create databases on.
async fn server_url() -> String {
    SERVER_URL
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("DATABASE_URL") {
                return url;
            }
            if local_server_answers().await {
                return LOCAL_SERVER.to_owned();
            }
            start_container().await
        })
        .await
        .clone()
}

const LOCAL_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

async fn local_server_answers() -> bool {
    let Ok(options) = LOCAL_SERVER.parse::<PgConnectOptions>() else {
        return false;
    };
    let attempt = tokio::time::timeout(std::time::Duration::from_secs(3), options.connect());
    matches!(attempt.await, Ok(Ok(_)))
}

/// No DATABASE_URL and no local server: start Postgres in Docker, kept for the life of the test binary.
async fn start_container() -> String {
    use testcontainers_modules::postgres::Postgres;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    let container = Postgres::default()
        .start()
        .await
        .expect("DATABASE_URL is not set and Docker could not start Postgres (testcontainers)");
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .expect("container port");
    let host = container.get_host().await.expect("container host");
    // The container must outlive every test of this binary.
    std::mem::forget(container);
    format!("postgres://postgres:postgres@{host}:{port}/postgres")
}

/// A database of its own for one test; dropped (forcefully) when the value is dropped.
pub struct TestDb {
    pub url: String,
    pub pool: PgPool,
    name: String,
    admin: PgConnectOptions,
}

impl TestDb {
    pub async fn new() -> Self {
        install_crypto_provider();
        let base: PgConnectOptions = server_url().await.parse().expect("DATABASE_URL");
        let name = format!(
            "hstest_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            rand::random::<u16>()
        );
        let admin = base.clone().database("postgres");
        let mut conn = admin.connect().await.expect("connect to the test server");
        conn.execute(format!("CREATE DATABASE {name}").as_str().into_sql())
            .await
            .expect("create test database");
        conn.close().await.ok();
        let options = base.database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .expect("connect to the test database");
        Self {
            url,
            pool,
            name,
            admin,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of another database on the same server.
    pub fn url_for(&self, database: &str) -> String {
        self.admin
            .clone()
            .database(database)
            .to_url_lossy()
            .to_string()
    }

    /// Creates database `name` on the same server; it is dropped with the returned value.
    pub async fn create_sibling(&self, name: &str) -> TestDb {
        let mut conn = self
            .admin
            .connect()
            .await
            .expect("connect to the test server");
        conn.execute(format!("CREATE DATABASE {name}").as_str().into_sql())
            .await
            .expect("create database");
        conn.close().await.ok();
        let options = self.admin.clone().database(name);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options.clone())
            .await
            .expect("connect to the new database");
        TestDb {
            url: options.to_url_lossy().to_string(),
            pool,
            name: name.to_owned(),
            admin: self.admin.clone(),
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql.into_sql())
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// Test-only: SQL text written in the test itself.
trait IntoSql {
    fn into_sql(self) -> sqlx::AssertSqlSafe<String>;
}

impl IntoSql for &str {
    fn into_sql(self) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(self.to_owned())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs outside async; use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let mut conn = admin.connect().await.ok()?;
                conn.execute(
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                        .as_str()
                        .into_sql(),
                )
                .await
                .ok()
            })
        })
        .join();
    }
}

/// A simulator on a random local port.
pub async fn start_sim(config: SimConfig) -> SimServer {
    install_crypto_provider();
    SimServer::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("start simulator")
}

/// A temporary directory holding a config file that points at `sim` and `db`.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db_url: String,
}

impl Workspace {
    /// Config for the simulator's real credentials; `feishu_extra` lines (`key = value`)
    /// add to or replace the `[feishu]` defaults.
    pub fn new(sim: &SimServer, db: &TestDb, feishu_extra: &str) -> Self {
        Self::configured(sim, db, feishu_extra, "")
    }

    /// Like [`Workspace::new`], with `sync_extra` lines appended to `[sync]`.
    /// (The string form of [`TestConfig`]: prefer the builder in new tests.)
    pub fn configured(sim: &SimServer, db: &TestDb, feishu_extra: &str, sync_extra: &str) -> Self {
        TestConfig::new(sim, db)
            .feishu_lines(feishu_extra)
            .raw(sync_extra)
            .workspace()
    }

    pub fn with_toml(toml: &str, db: &TestDb) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, toml).expect("write config");
        Self {
            dir,
            config,
            db_url: db.url.clone(),
        }
    }

    /// Runs the binary with `--config` and `args`; `env` adds variables.
    pub async fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
        run_binary(
            &[
                &["--config", self.config.to_str().expect("utf-8 path")],
                args,
            ]
            .concat(),
            &[&[("DATABASE_URL", self.db_url.as_str())], env].concat(),
            stdin,
        )
        .await
    }

    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

/// Starts the binary in the background (for `run`); stderr is piped for the caller to read.
pub fn spawn_binary(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = command(args, env);
    cmd.stdin(std::process::Stdio::null());
    cmd.spawn().expect("start helpdesk-sync")
}

/// The binary with `args`, a clean environment plus `env`, output piped, killed when dropped.
fn command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_helpdesk-sync"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("HELPDESK_SYNC_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("HELPDESK_SYNC__") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Sends signal `name` (TERM, KILL, ...) to a child.
pub fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("child still running");
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Collected log lines containing `needle`.
pub fn count(lines: &std::sync::Mutex<Vec<String>>, needle: &str) -> usize {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

/// The `address` field of the first JSON log line whose message starts with `message`.
pub fn logged_address(lines: &std::sync::Mutex<Vec<String>>, message: &str) -> Option<String> {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .and_then(|v| v["address"].as_str().map(str::to_owned))
}

/// The normalized tables a sync writes.
pub const TABLES: [&str; 8] = [
    "tickets",
    "helpdesk_users",
    "ticket_agents",
    "ticket_collaborators",
    "tags",
    "ticket_tags",
    "ticket_custom_fields",
    "ticket_comments",
];

/// A simulator with `tickets` tickets whose rate limits stay out of the way.
pub fn unlimited_sim(tickets: usize) -> SimConfig {
    SimConfig {
        tickets,
        detail_limit_per_second: 10_000,
        list_limit_per_second: 10_000,
        list_limit_per_minute: 1_000_000,
        message_limit_per_second: 10_000,
        ..SimConfig::default()
    }
}

/// Reads a child's stderr lines into a shared buffer as they come.
pub fn collect_lines(
    child: &mut tokio::process::Child,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use tokio::io::AsyncBufReadExt;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("piped stderr");
    let sink = lines.clone();
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if std::env::var_os("TEST_LOG").is_some() {
                eprintln!("{line}");
            }
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// Waits (up to `limit`) until `condition` holds.
pub async fn wait_for(limit: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    condition()
}

impl Workspace {
    /// Starts `run` with this workspace's config.
    pub fn spawn_run(&self, env: &[(&str, &str)]) -> tokio::process::Child {
        spawn_binary(
            &[
                "--config",
                self.config.to_str().expect("utf-8 path"),
                "--log-format",
                "json",
                "run",
            ],
            &[&[("DATABASE_URL", self.db_url.as_str())], env].concat(),
        )
    }
}

/// Runs the real binary without blocking the runtime (the simulator lives on it).
pub async fn run_binary(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut cmd = command(args, env);
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("run helpdesk-sync");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        child.wait_with_output(),
    )
    .await
    .expect("helpdesk-sync did not finish within 120 s")
    .expect("wait for helpdesk-sync");
    if std::env::var_os("TEST_LOG").is_some() {
        eprintln!(
            "--- helpdesk-sync {args:?}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success, showing the output when not.
#[track_caller]
pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// The incremental discovery watermark (`discovery_state`, scan 'updated').
pub async fn watermark(db: &TestDb) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT scanned_until FROM discovery_state WHERE scan = 'updated'")
        .fetch_one(&db.pool)
        .await
        .expect("a watermark")
}

/// Ids file content for the first `n` simulated tickets.
pub fn ids_text(ids: &[String]) -> String {
    let mut text = ids.join("\n");
    text.push('\n');
    text
}

/// A TCP proxy in front of the test Postgres server: `set_down(true)` cuts every session
/// through it and closes its port, so new connections are refused (as with a stopped Postgres
/// or a restart); `false` listens on the same port again.
pub struct DbProxy {
    pub port: u16,
    target: String,
    sessions: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl DbProxy {
    pub async fn start() -> Self {
        let upstream: PgConnectOptions = server_url().await.parse().expect("DATABASE_URL");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let proxy = Self {
            port,
            target: format!("{}:{}", upstream.get_host(), upstream.get_port()),
            sessions: Default::default(),
            accept: std::sync::Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: std::net::TcpListener) {
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let (target, live) = (self.target.clone(), self.sessions.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let session = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                live.lock().unwrap().push(session.abort_handle());
            }
        });
        *self.accept.lock().unwrap() = Some(task);
    }

    /// `db`'s URL, through this proxy.
    pub fn url(&self, db: &TestDb) -> String {
        let options: PgConnectOptions = db.url.parse().expect("test db url");
        options
            .host("127.0.0.1")
            .port(self.port)
            .to_url_lossy()
            .to_string()
    }

    pub fn set_down(&self, down: bool) {
        if down {
            if let Some(accept) = self.accept.lock().unwrap().take() {
                accept.abort();
            }
            for session in self.sessions.lock().unwrap().drain(..) {
                session.abort();
            }
        } else if self.accept.lock().unwrap().is_none() {
            // The aborted accept loop drops its listener; rebinding may take a moment.
            for _ in 0..100 {
                if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", self.port)) {
                    return self.serve(listener);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            panic!("cannot listen on proxy port {} again", self.port);
        }
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.set_down(true);
    }
}

/// List requests the simulator answered so far.
pub fn list_requests(sim: &SimServer) -> usize {
    sim.state
        .requests()
        .iter()
        .filter(|r| r.endpoint == helpdesk_sync::sim::Endpoint::List)
        .count()
}
