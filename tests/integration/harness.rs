//! The shared harness: a typed config builder ([`TestConfig`]), the daemon under test with its
//! log ([`Daemon`]), and one-shot commands run to completion ([`Finished`]).
//!
//! `helpers.rs` re-exports everything here, so tests keep `use crate::helpers::*`.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use helpdesk_sync::sim::SimServer;

use crate::helpers::{
    TestDb, Workspace, collect_lines, count, logged_address, run_binary, signal, wait_for,
};

/// The process-wide TLS crypto provider, as the binary's entry point (`cli::main`) installs it:
/// an HTTP client built in the test process (reqwest, `FeishuClient`) needs one. Idempotent;
/// `start_sim` and `TestDb::new` call it, so every test has it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A value written into a TOML config: strings quoted, numbers and booleans as they are.
pub trait TomlValue {
    fn toml(&self) -> String;
}

impl TomlValue for &str {
    fn toml(&self) -> String {
        format!("{self:?}")
    }
}

impl TomlValue for String {
    fn toml(&self) -> String {
        format!("{self:?}")
    }
}

impl TomlValue for bool {
    fn toml(&self) -> String {
        self.to_string()
    }
}

impl TomlValue for f64 {
    fn toml(&self) -> String {
        // `{:?}` keeps the decimal point (`8.0`), so TOML reads a float.
        format!("{self:?}")
    }
}

macro_rules! integer_toml {
    ($($t:ty),*) => {$(
        impl TomlValue for $t {
            fn toml(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
integer_toml!(u16, u32, u64, usize, i32, i64);

/// A test's config file, built key by key instead of from TOML fragments in strings.
///
/// `new` points `[feishu]` at the simulator with its real credentials, generous request rates
/// and a 3 s request timeout, `[database]` at the test database and `[sync]` at batches of 25;
/// every setter adds a key or replaces one. [`TestConfig::raw`] appends TOML text as it is, for
/// the few tests that need something the builder does not say (or invalid TOML on purpose).
#[derive(Clone, Debug)]
pub struct TestConfig {
    /// Tables in file order, each with its keys in order (values already TOML).
    tables: Vec<(String, Vec<(String, String)>)>,
    /// Appended right after `[sync]`: bare keys land there, a `[table]` header starts another.
    raw: String,
    /// The database URL a [`Workspace`] passes as `DATABASE_URL`.
    db_url: String,
}

impl TestConfig {
    pub fn new(sim: &SimServer, db: &TestDb) -> Self {
        let c = sim.state.config();
        Self::empty(db)
            .feishu("base_url", sim.base_url())
            .feishu("app_id", c.app_id.as_str())
            .feishu("app_secret", c.app_secret.as_str())
            .feishu("helpdesk_id", c.helpdesk_id.as_str())
            .feishu("helpdesk_token", c.helpdesk_token.as_str())
            .detail_rate(200.0)
            // Under the simulator's default messages limit (50/s).
            .message_rate(40.0)
            .request_timeout("3s")
            .set("database", "url", db.url.as_str())
            .set("database", "max_connections", 4)
            .sync("batch_size", 25)
    }

    /// No keys at all (add them with the setters or [`TestConfig::raw`]).
    pub fn empty(db: &TestDb) -> Self {
        Self {
            tables: Vec::new(),
            raw: String::new(),
            db_url: db.url.clone(),
        }
    }

    /// Sets `key` in `[table]`, replacing an earlier value.
    pub fn set(mut self, table: &str, key: &str, value: impl TomlValue) -> Self {
        let value = value.toml();
        let position = match self.tables.iter().position(|(t, _)| t == table) {
            Some(p) => p,
            None => {
                self.tables.push((table.to_owned(), Vec::new()));
                self.tables.len() - 1
            }
        };
        let keys = &mut self.tables[position].1;
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => keys.push((key.to_owned(), value)),
        }
        self
    }

    /// Removes `key` from `[table]`, if set.
    pub fn unset(mut self, table: &str, key: &str) -> Self {
        if let Some((_, keys)) = self.tables.iter_mut().find(|(t, _)| t == table) {
            keys.retain(|(k, _)| k != key);
        }
        self
    }

    /// `[[helpdesks]]` entries (name, helpdesk_id, helpdesk_token) in place of
    /// `feishu.helpdesk_id` / `feishu.helpdesk_token`: several helpdesks of the one app.
    pub fn helpdesks(mut self, list: &[(&str, &str, &str)]) -> Self {
        self = self
            .unset("feishu", "helpdesk_id")
            .unset("feishu", "helpdesk_token");
        for (name, id, token) in list {
            self = self.raw(&format!(
                "[[helpdesks]]\nname = {name:?}\nhelpdesk_id = {id:?}\nhelpdesk_token = {token:?}\n"
            ));
        }
        self
    }

    pub fn feishu(self, key: &str, value: impl TomlValue) -> Self {
        self.set("feishu", key, value)
    }

    pub fn sync(self, key: &str, value: impl TomlValue) -> Self {
        self.set("sync", key, value)
    }

    /// `key = value` lines (values already TOML) into `[feishu]`: how the old string helpers
    /// passed their overrides.
    pub fn feishu_lines(mut self, lines: &str) -> Self {
        for line in lines.lines() {
            if let Some((key, value)) = line.split_once('=') {
                self = self.set("feishu", key.trim(), Raw(value.trim()));
            }
        }
        self
    }

    /// TOML text appended after `[sync]`, as it is.
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push_str(toml);
        if !self.raw.ends_with('\n') {
            self.raw.push('\n');
        }
        self
    }

    // `[feishu]`
    pub fn detail_rate(self, per_second: f64) -> Self {
        self.feishu("detail_requests_per_second", per_second)
    }
    pub fn list_rate(self, per_second: f64) -> Self {
        self.feishu("list_requests_per_second", per_second)
    }
    /// Listing at 500 requests per second: discovery never waits on its pace.
    pub fn fast_list(self) -> Self {
        self.list_rate(500.0)
    }
    pub fn message_rate(self, per_second: f64) -> Self {
        self.feishu("message_requests_per_second", per_second)
    }
    pub fn request_timeout(self, duration: &str) -> Self {
        self.feishu("request_timeout", duration)
    }
    pub fn max_attempts(self, attempts: u32) -> Self {
        self.feishu("max_attempts", attempts)
    }
    pub fn max_in_flight(self, requests: u32) -> Self {
        self.feishu("max_in_flight", requests)
    }
    pub fn max_response_bytes(self, bytes: u64) -> Self {
        self.feishu("max_response_bytes", bytes)
    }

    // `[sync]`
    pub fn schedule(self, cron: &str) -> Self {
        self.sync("schedule", cron)
    }
    /// A cycle every second.
    pub fn every_second(self) -> Self {
        self.schedule("* * * * * *")
    }
    /// Once a year: the daemon's first cycle at start, then none during a test.
    pub fn rarely(self) -> Self {
        self.schedule("0 0 0 1 1 *")
    }
    pub fn shutdown_grace(self, duration: &str) -> Self {
        self.sync("shutdown_grace", duration)
    }
    pub fn stall_timeout(self, duration: &str) -> Self {
        self.sync("stall_timeout", duration)
    }
    pub fn discover(self, on: bool) -> Self {
        self.sync("discover", on)
    }
    pub fn messages(self, on: bool) -> Self {
        self.sync("messages", on)
    }
    pub fn store_list_rows(self, on: bool) -> Self {
        self.sync("store_list_rows", on)
    }
    pub fn max_tickets_per_cycle(self, tickets: u32) -> Self {
        self.sync("max_tickets_per_cycle", tickets)
    }
    /// `sync.backfill_since` (a date or an RFC 3339 time).
    pub fn backfill_since(self, since: &str) -> Self {
        self.sync("backfill_since", since)
    }
    pub fn discovery_overlap(self, duration: &str) -> Self {
        self.sync("discovery_overlap", duration)
    }
    pub fn known_ids_query(self, sql: &str) -> Self {
        self.sync("known_ids_query", sql)
    }

    // Other tables.
    /// `[http]` on a random local port (the daemon logs the address it got).
    pub fn http(self) -> Self {
        self.set("http", "listen", "127.0.0.1:0")
    }
    /// `[events]` with the simulator's verification token and encrypt key.
    pub fn events(self, sim: &SimServer) -> Self {
        let c = sim.state.config();
        self.set(
            "events",
            "verification_token",
            c.verification_token.as_str(),
        )
        .set("events", "encrypt_key", c.encrypt_key.as_str())
    }
    pub fn health(self, key: &str, value: impl TomlValue) -> Self {
        self.set("health", key, value)
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let mut text = String::new();
        let mut raw_written = false;
        for (table, keys) in &self.tables {
            text.push_str(&format!("[{table}]\n"));
            for (key, value) in keys {
                text.push_str(&format!("{key} = {value}\n"));
            }
            if table == "sync" {
                text.push_str(&self.raw);
                raw_written = true;
            }
            text.push('\n');
        }
        if !raw_written {
            text.push_str(&self.raw);
        }
        text
    }

    /// Writes `config.toml` into `dir`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("config.toml");
        std::fs::write(&path, self.to_toml()).expect("write config");
        path
    }

    /// A temporary directory holding this config.
    pub fn workspace(&self) -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = self.write(dir.path());
        Workspace {
            dir,
            config,
            db_url: self.db_url.clone(),
        }
    }
}

/// A value that is TOML already.
struct Raw<'a>(&'a str);

impl TomlValue for Raw<'_> {
    fn toml(&self) -> String {
        self.0.to_owned()
    }
}

/// `helpdesk-sync run` in the background, its stderr (the JSON log) collected line by line.
pub struct Daemon {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `run` with `ws`'s config.
    pub fn spawn(ws: &Workspace) -> Self {
        Self::spawn_with(ws, &[])
    }

    /// Starts `run` with `ws`'s config and `env` added.
    pub fn spawn_with(ws: &Workspace, env: &[(&str, &str)]) -> Self {
        Self::attach(ws.spawn_run(env))
    }

    /// Collects the log of a child started some other way (its stderr piped).
    pub fn attach(mut child: tokio::process::Child) -> Self {
        let lines = collect_lines(&mut child);
        Self { child, lines }
    }

    /// The log so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The shared log buffer, filled as the daemon logs (for the free functions `count` and
    /// `logged_address`).
    pub fn log(&self) -> Arc<Mutex<Vec<String>>> {
        self.lines.clone()
    }

    /// Log lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        count(&self.lines, needle)
    }

    /// The `address` field of the first log line whose message starts with `message`.
    pub fn address(&self, message: &str) -> Option<String> {
        logged_address(&self.lines, message)
    }

    /// Waits (up to `limit`) for a log line containing `needle`.
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        self.wait_for_count(needle, 1, limit).await
    }

    /// Waits (up to `limit`) for at least `n` log lines containing `needle`.
    pub async fn wait_for_count(&self, needle: &str, n: usize, limit: Duration) -> bool {
        wait_for(limit, || count(&self.lines, needle) >= n).await
    }

    /// Waits (up to `limit`) until `condition` holds on the log.
    pub async fn wait_until(
        &self,
        limit: Duration,
        mut condition: impl FnMut(&[String]) -> bool,
    ) -> bool {
        wait_for(limit, || condition(&self.lines.lock().unwrap())).await
    }

    /// Like [`Daemon::wait_for_count`], failing the test with the log when it times out.
    pub async fn expect_count(&self, needle: &str, n: usize, limit: Duration) {
        assert!(
            self.wait_for_count(needle, n, limit).await,
            "waited {limit:?} for {n} log line(s) with {needle}: {:?}",
            self.lines()
        );
    }

    /// Like [`Daemon::wait_for_log`], failing the test with the log when it times out.
    pub async fn expect_log(&self, needle: &str, limit: Duration) {
        self.expect_count(needle, 1, limit).await;
    }

    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    pub fn sigkill(&self) {
        self.signal("KILL");
    }

    /// Sends signal `name` (TERM, KILL, STOP, CONT, ...).
    pub fn signal(&self, name: &str) {
        signal(&self.child, name);
    }

    /// Waits (up to `limit`) for the daemon to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("the daemon did not exit in time")
            .expect("wait for the daemon")
    }

    /// Fails the test, with the log, when the daemon has exited.
    pub fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().expect("child status").is_none(),
            "the daemon exited: {:?}",
            self.lines()
        );
    }

    /// SIGTERM, then a clean exit within `limit`.
    pub async fn stop_within(&mut self, limit: Duration) {
        self.sigterm();
        let status = self.wait_exit(limit).await;
        assert!(status.success(), "{status:?}: {:?}", self.lines());
    }

    /// SIGKILL, and wait for the process to be gone (a crash, as tests stage it).
    pub async fn kill(mut self) {
        self.sigkill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, and wait up to `limit` for the exit, whatever it is (for tests done with the
    /// daemon; [`Daemon::stop`] also asserts a clean exit).
    pub async fn terminate(mut self, limit: Duration) {
        self.sigterm();
        let _ = tokio::time::timeout(limit, self.child.wait()).await;
    }

    /// SIGTERM, then a clean exit within 30 s.
    pub async fn stop(mut self) {
        self.stop_within(Duration::from_secs(30)).await;
    }
}

/// A one-shot command run to completion: its exit code and output.
#[derive(Debug)]
pub struct Finished {
    /// `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Finished {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Asserts exit 0, showing the output when not.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.success(),
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Everything it printed: stdout, a newline, stderr.
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// The binary with `args` and `env`, run to completion.
pub async fn exec_binary(args: &[&str], env: &[(&str, &str)]) -> Finished {
    run_binary(args, env, None).await.into()
}

impl Workspace {
    /// The binary with this workspace's config and `args`, run to completion.
    pub async fn exec(&self, args: &[&str]) -> Finished {
        self.run(args, &[], None).await.into()
    }

    /// Like [`Workspace::exec`], with `env` added.
    pub async fn exec_with(&self, args: &[&str], env: &[(&str, &str)]) -> Finished {
        self.run(args, env, None).await.into()
    }

    /// `run` in the background, its log collected.
    pub fn daemon(&self) -> Daemon {
        Daemon::spawn(self)
    }
}
