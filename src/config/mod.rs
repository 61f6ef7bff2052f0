//! Typed settings: `config.toml`, overridden by `HELPDESK_SYNC__SECTION__KEY` environment
//! variables (and `DATABASE_URL`), checked once at start so a bad value never reaches the network.

mod file;
mod helpdesks;
mod secret;
mod sla;
mod values;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;

use file::{EnvOverride, RawSettings, Scalar, TEXT_KEYS, describe_figment_error};
pub use helpdesks::HelpdeskSettings;
pub use secret::Credentials;
use secret::SecretSource;
pub use sla::{CalendarSettings, Holiday, METRICS, OpeningInterval, SlaSettings, TargetSettings};
pub use values::{DEFAULT_BACKFILL_SINCE, default_backfill_since, parse_duration, parse_since};
use values::{duration, positive, rate_per_second, redact_error};

/// Prefix of the environment variables that override config keys (`HELPDESK_SYNC__FEISHU__APP_ID`).
pub const ENV_PREFIX: &str = "HELPDESK_SYNC__";

/// A configuration problem. The message names the key; the binary exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Everything the daemon can be told, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub feishu: FeishuSettings,
    pub database: DatabaseSettings,
    pub sync: SyncSettings,
    pub http: HttpSettings,
    pub events: EventSettings,
    /// Business calendars and SLA targets to seed (`[sla]`; empty when absent).
    pub sla: SlaSettings,
    pub health: HealthSettings,
    /// The helpdesks this daemon copies, in config order (see [`Settings::helpdesks`]).
    helpdesks: Vec<HelpdeskSettings>,
}

/// When `status`, `/readyz` and the `health_problems` metric call the copy stuck (`[health]`).
#[derive(Debug, Clone)]
pub struct HealthSettings {
    /// Discovery's watermark (or an unfinished backfill) not moved for this long.
    pub discovery_stuck_after: Duration,
    /// A ticket failing, without a successful fetch, for this long.
    pub ticket_failing_after: Duration,
    /// The oldest due ticket waiting this long.
    pub queue_due_after: Duration,
    /// A ticket's conversation failing, without a complete read, for this long.
    pub conversation_failing_after: Duration,
}

/// Webhook events (`[events]`), served by `run` on the `[http]` listener.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// The path Feishu posts to.
    pub path: String,
    verification_token: SecretSource,
    encrypt_key: SecretSource,
}

impl EventSettings {
    /// On when a verification token or an encrypt key is configured.
    pub fn enabled(&self) -> bool {
        !matches!(
            (&self.verification_token, &self.encrypt_key),
            (SecretSource::Missing, SecretSource::Missing)
        )
    }

    /// The secrets, read now (files included); None for one not configured.
    pub fn keys(&self) -> Result<crate::domain::EventKeys, ConfigError> {
        let read = |source: &SecretSource, key: &str| match source {
            SecretSource::Missing => Ok(None),
            other => other.resolve(key).map(Some),
        };
        Ok(crate::domain::EventKeys {
            verification_token: read(&self.verification_token, "events.verification_token")?,
            encrypt_key: read(&self.encrypt_key, "events.encrypt_key")?,
        })
    }
}

/// The daemon's HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    /// Where `run` listens; None (empty in the file) turns the endpoint off.
    pub listen: Option<std::net::SocketAddr>,
}

/// How to reach and pace the Feishu Open API.
#[derive(Debug, Clone)]
pub struct FeishuSettings {
    /// `https://open.feishu.cn` or `https://open.larksuite.com`; tests point it at the simulator.
    pub base_url: reqwest::Url,
    /// The custom app's id (`cli_...`); empty when the file does not set it.
    pub app_id: String,
    /// Where the app secret comes from; resolved by [`FeishuSettings::credentials`].
    app_secret: SecretSource,
    /// The helpdesk whose tickets we copy; with `[[helpdesks]]`, the first of them (see
    /// [`Settings::helpdesks`] for all).
    pub helpdesk_id: String,
    /// Where the helpdesk token comes from (the first helpdesk's with `[[helpdesks]]`).
    helpdesk_token: SecretSource,
    /// Pace for `GET /tickets/:id` (documented limit 10/s; keep a margin).
    pub detail_requests_per_second: f64,
    /// Pace for `GET /tickets` (discovery; documented limit 50/s).
    pub list_requests_per_second: f64,
    /// Most list pages in any 60 seconds (the list's second limit, 1000/min, with a margin).
    pub list_requests_per_minute: u32,
    /// Starting pace for `GET /tickets/:id/messages` (its limit is documented only as
    /// "special"): the pace is learned from there (`pace`), and a learned one stored in the
    /// database replaces it.
    pub message_requests_per_second: f64,
    /// The most the learned messages pace may reach, however clean the answers.
    pub message_requests_per_second_ceiling: f64,
    /// Starting pace for the custom field catalog (its limit is not stated), learned from there.
    pub catalog_requests_per_second: f64,
    /// The most the learned catalog pace may reach.
    pub catalog_requests_per_second_ceiling: f64,
    /// Concurrent requests, so API latency does not cap throughput.
    pub max_in_flight: usize,
    /// Per-attempt timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Attempts per ticket per cycle for retryable failures (5xx, timeouts, bad bodies).
    pub max_attempts: u32,
    /// The largest response body read; a larger answer fails its ticket (memory stays bounded).
    pub max_response_bytes: usize,
}

/// Where the Postgres copy lives.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// Connection URL; never logged (it may carry a password).
    pub url: SecretString,
    /// Pool size.
    pub max_connections: u32,
}

/// How a cycle batches and schedules work.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Tickets per upsert transaction: the most a crash can lose.
    pub batch_size: usize,
    /// Refresh interval of an open ticket (status < 50) after a successful fetch.
    pub open_refresh: Duration,
    /// Refresh interval of a closed ticket after a successful fetch.
    pub closed_refresh: Duration,
    /// Learn ticket ids through the list API each cycle.
    pub discover: bool,
    /// Store each listed ticket's row at once (the detail follows and verifies it).
    pub store_list_rows: bool,
    /// Fetch each ticket's conversation (`ticket_messages`).
    pub messages: bool,
    /// How far back each incremental scan re-reads before the watermark.
    pub discovery_overlap: Duration,
    /// Where the first (create-time) scan starts when there is no watermark yet.
    pub backfill_since: Option<DateTime<Utc>>,
    /// Operator SQL returning ticket ids as text; its new ids are enqueued each cycle.
    pub known_ids_query: Option<String>,
    /// Most tickets fetched in one cycle; the rest wait for the next (None = unlimited).
    pub max_tickets_per_cycle: Option<u64>,
    /// When `run` starts a cycle (cron with seconds: "0 */5 * * * *").
    pub schedule: cron::Schedule,
    /// A cycle with no progress for this long is ended.
    pub stall_timeout: Duration,
    /// After SIGTERM, how long requests in flight may take to finish.
    pub shutdown_grace: Duration,
}

/// Every five minutes, at second 0.
pub const DEFAULT_SCHEDULE: &str = "0 */5 * * * *";

pub const DEFAULT_EVENTS_PATH: &str = "/feishu/events";

/// The messages endpoint's limit is not published ("special"): start well below the detail's.
pub const DEFAULT_MESSAGE_REQUESTS_PER_SECOND: f64 = 5.0;
/// The learned messages pace never goes above this unless configured.
pub const DEFAULT_MESSAGE_REQUESTS_PER_SECOND_CEILING: f64 = 50.0;
/// The catalog is read a page or two an hour: a gentle start, a low ceiling.
pub const DEFAULT_CATALOG_REQUESTS_PER_SECOND: f64 = 2.0;
pub const DEFAULT_CATALOG_REQUESTS_PER_SECOND_CEILING: f64 = 20.0;

/// `feishu.max_response_bytes`: 64 MiB, far above any real ticket (a few hundred KB).
pub const DEFAULT_MAX_RESPONSE_BYTES: i64 = 64 << 20;
pub const DEFAULT_BASE_URL: &str = "https://open.feishu.cn";
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/helpdesk";

impl Settings {
    /// Load from `path` (required to exist when `explicit`), then the environment.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(RawSettings::default()));
        if path.exists() {
            figment = figment.merge(Toml::file_exact(path));
        } else if explicit {
            return Err(ConfigError::new(format!(
                "config file {} does not exist (copy config.toml.example to start)",
                path.display()
            )));
        }
        Self::from_figment(figment, std::env::vars())
    }

    /// Build from TOML text and an explicit environment (for tests and the demo).
    pub fn from_toml_str(
        toml: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let figment =
            Figment::from(Serialized::defaults(RawSettings::default())).merge(Toml::string(toml));
        Self::from_figment(figment, env)
    }

    fn from_figment(
        figment: Figment,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut figment = figment;
        let mut database_url_env = None;
        let mut env_keys: Vec<String> = Vec::new();
        let mut prefixed_database_url = false;
        let mut entry_overrides = Vec::new();
        for (name, value) in env {
            if name == "DATABASE_URL" {
                database_url_env = Some(value);
                continue;
            }
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace("__", ".");
            if let Some(entry) = helpdesks::EntryOverride::parse(&name, &key, &value) {
                entry_overrides.push(entry?);
                continue;
            }
            prefixed_database_url |= key == "database.url";
            env_keys.push(key.clone());
            // Text keys stay text (a numeric secret is still a secret); the rest parse like TOML.
            let value: figment::value::Value = if TEXT_KEYS.contains(&key.as_str()) {
                value.into()
            } else {
                value
                    .parse()
                    .unwrap_or_else(|_| figment::value::Value::from(value))
            };
            figment = figment.merge(EnvOverride {
                name,
                value: Serialized::default(&key, value),
            });
        }
        let mut raw: RawSettings = figment.extract().map_err(describe_figment_error)?;
        prefer_environment_secrets(&mut raw, &env_keys);
        helpdesks::apply_overrides(&mut raw.helpdesks, entry_overrides)?;
        // DATABASE_URL overrides the file; the prefixed variable, more specific, overrides both.
        let database_url_env = database_url_env.filter(|_| !prefixed_database_url);
        Self::validate(raw, database_url_env)
    }

    fn validate(raw: RawSettings, database_url_env: Option<String>) -> Result<Self, ConfigError> {
        let http = validate_http(raw.http)?;
        let events = validate_events(raw.events, &http)?;
        let helpdesks = helpdesks::validate_helpdesks(raw.helpdesks, &raw.feishu)?;
        let mut feishu = validate_feishu(raw.feishu)?;
        // Code that serves one helpdesk reads `feishu.helpdesk_id`: the first of the list.
        if let Some(first) = helpdesks.first() {
            feishu.helpdesk_id = first.id.clone();
            feishu.helpdesk_token = first.token_source();
        }
        Ok(Self {
            helpdesks,
            feishu,
            database: validate_database(raw.database, database_url_env)?,
            sync: validate_sync(raw.sync)?,
            http,
            events,
            sla: sla::validate_sla(raw.sla)?,
            health: validate_health(raw.health)?,
        })
    }
}

fn validate_health(h: file::RawHealth) -> Result<HealthSettings, ConfigError> {
    let positive_duration = |key: &str, value: Option<String>, default: &str| {
        let d = duration(key, value, default)?;
        if d.is_zero() {
            return Err(ConfigError::new(format!("{key} must be above 0")));
        }
        Ok(d)
    };
    Ok(HealthSettings {
        discovery_stuck_after: positive_duration(
            "health.discovery_stuck_after",
            h.discovery_stuck_after,
            "2h",
        )?,
        ticket_failing_after: positive_duration(
            "health.ticket_failing_after",
            h.ticket_failing_after,
            "24h",
        )?,
        queue_due_after: positive_duration("health.queue_due_after", h.queue_due_after, "2h")?,
        conversation_failing_after: positive_duration(
            "health.conversation_failing_after",
            h.conversation_failing_after,
            "6h",
        )?,
    })
}

/// A secret given in the environment replaces the file's, whichever form each uses.
fn prefer_environment_secrets(raw: &mut RawSettings, env_keys: &[String]) {
    let from_env = |key: &str| env_keys.iter().any(|k| k == key);
    let f = &mut raw.feishu;
    if from_env("feishu.app_secret") && !from_env("feishu.app_secret_file") {
        f.app_secret_file = None;
    }
    if from_env("feishu.app_secret_file") && !from_env("feishu.app_secret") {
        f.app_secret = None;
    }
    if from_env("feishu.helpdesk_token") && !from_env("feishu.helpdesk_token_file") {
        f.helpdesk_token_file = None;
    }
    if from_env("feishu.helpdesk_token_file") && !from_env("feishu.helpdesk_token") {
        f.helpdesk_token = None;
    }
    let e = &mut raw.events;
    if from_env("events.verification_token") && !from_env("events.verification_token_file") {
        e.verification_token_file = None;
    }
    if from_env("events.verification_token_file") && !from_env("events.verification_token") {
        e.verification_token = None;
    }
    if from_env("events.encrypt_key") && !from_env("events.encrypt_key_file") {
        e.encrypt_key_file = None;
    }
    if from_env("events.encrypt_key_file") && !from_env("events.encrypt_key") {
        e.encrypt_key = None;
    }
}

fn validate_feishu(f: file::RawFeishu) -> Result<FeishuSettings, ConfigError> {
    let base_url_text = f.base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    let base_url = reqwest::Url::parse(&base_url_text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .ok_or_else(|| {
            ConfigError::new(format!(
                "feishu.base_url: {base_url_text:?} is not an http(s) URL"
            ))
        })?;
    let rate = rate_per_second(
        "feishu.detail_requests_per_second",
        f.detail_requests_per_second,
        9.0,
    )?;
    let list_rate = rate_per_second(
        "feishu.list_requests_per_second",
        f.list_requests_per_second,
        40.0,
    )?;
    let feishu = FeishuSettings {
        base_url,
        app_id: f.app_id.map(Scalar::into_string).unwrap_or_default(),
        app_secret: SecretSource::new(
            "feishu.app_secret",
            f.app_secret.map(|s| SecretString::from(s.into_string())),
            f.app_secret_file,
        )?,
        helpdesk_id: f.helpdesk_id.map(Scalar::into_string).unwrap_or_default(),
        helpdesk_token: SecretSource::new(
            "feishu.helpdesk_token",
            f.helpdesk_token
                .map(|s| SecretString::from(s.into_string())),
            f.helpdesk_token_file,
        )?,
        detail_requests_per_second: rate,
        list_requests_per_second: list_rate,
        list_requests_per_minute: positive(
            "feishu.list_requests_per_minute",
            f.list_requests_per_minute,
            950,
            1_000_000,
        )?,
        message_requests_per_second: rate_per_second(
            "feishu.message_requests_per_second",
            f.message_requests_per_second,
            DEFAULT_MESSAGE_REQUESTS_PER_SECOND,
        )?,
        // Unset, a ceiling is never below the configured start.
        message_requests_per_second_ceiling: rate_per_second(
            "feishu.message_requests_per_second_ceiling",
            f.message_requests_per_second_ceiling,
            DEFAULT_MESSAGE_REQUESTS_PER_SECOND_CEILING
                .max(f.message_requests_per_second.unwrap_or(0.0)),
        )?,
        catalog_requests_per_second: rate_per_second(
            "feishu.catalog_requests_per_second",
            f.catalog_requests_per_second,
            DEFAULT_CATALOG_REQUESTS_PER_SECOND,
        )?,
        catalog_requests_per_second_ceiling: rate_per_second(
            "feishu.catalog_requests_per_second_ceiling",
            f.catalog_requests_per_second_ceiling,
            DEFAULT_CATALOG_REQUESTS_PER_SECOND_CEILING
                .max(f.catalog_requests_per_second.unwrap_or(0.0)),
        )?,
        max_in_flight: positive("feishu.max_in_flight", f.max_in_flight, 16, 1024)?,
        request_timeout: duration("feishu.request_timeout", f.request_timeout, "10s")?,
        max_attempts: positive("feishu.max_attempts", f.max_attempts, 6, 100)?,
        max_response_bytes: positive(
            "feishu.max_response_bytes",
            f.max_response_bytes,
            DEFAULT_MAX_RESPONSE_BYTES,
            1 << 32,
        )?,
    };
    if feishu.request_timeout.is_zero() {
        return Err(ConfigError::new("feishu.request_timeout must be above 0"));
    }
    for (start_key, start, ceiling_key, ceiling) in [
        (
            "feishu.message_requests_per_second",
            feishu.message_requests_per_second,
            "feishu.message_requests_per_second_ceiling",
            feishu.message_requests_per_second_ceiling,
        ),
        (
            "feishu.catalog_requests_per_second",
            feishu.catalog_requests_per_second,
            "feishu.catalog_requests_per_second_ceiling",
            feishu.catalog_requests_per_second_ceiling,
        ),
    ] {
        if ceiling < start {
            return Err(ConfigError::new(format!(
                "{ceiling_key}: {ceiling} is below {start_key} ({start}); the learned pace \
                 starts there and never goes above the ceiling"
            )));
        }
    }
    Ok(feishu)
}

fn validate_database(
    d: file::RawDatabase,
    database_url_env: Option<String>,
) -> Result<DatabaseSettings, ConfigError> {
    let url = database_url_env
        .or(d.url)
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError::new(
            "database.url: must start with postgres:// or postgresql://",
        ));
    }
    url.parse::<PgConnectOptions>().map_err(|e| {
        ConfigError::new(format!(
            "database.url: not a valid postgres:// URL ({})",
            redact_error(&e.to_string(), &url)
        ))
    })?;
    Ok(DatabaseSettings {
        url: SecretString::from(url),
        max_connections: positive("database.max_connections", d.max_connections, 8, 1000)?,
    })
}

fn validate_sync(s: file::RawSync) -> Result<SyncSettings, ConfigError> {
    Ok(SyncSettings {
        batch_size: positive("sync.batch_size", s.batch_size, 100, 10_000)?,
        open_refresh: duration("sync.open_refresh", s.open_refresh, "1h")?,
        closed_refresh: duration("sync.closed_refresh", s.closed_refresh, "7d")?,
        discover: s.discover.unwrap_or(true),
        store_list_rows: s.store_list_rows.unwrap_or(true),
        messages: s.messages.unwrap_or(true),
        discovery_overlap: duration("sync.discovery_overlap", s.discovery_overlap, "10m")?,
        backfill_since: s
            .backfill_since
            .map(|text| {
                let since = parse_since(&text)
                    .map_err(|e| ConfigError::new(format!("sync.backfill_since: {e}")))?;
                if since > chrono::Utc::now() {
                    return Err(ConfigError::new(format!(
                        "sync.backfill_since: {text:?} is in the future; the history scan would \
                         never find anything"
                    )));
                }
                Ok(since)
            })
            .transpose()?,
        known_ids_query: s.known_ids_query.filter(|q| !q.trim().is_empty()),
        max_tickets_per_cycle: match s.max_tickets_per_cycle {
            None | Some(0) => None,
            Some(n) if n > 0 => Some(n as u64),
            Some(n) => {
                return Err(ConfigError::new(format!(
                    "sync.max_tickets_per_cycle: {n} must be 0 (unlimited) or more"
                )));
            }
        },
        schedule: {
            let text = s.schedule.unwrap_or_else(|| DEFAULT_SCHEDULE.to_owned());
            let schedule: cron::Schedule = text.parse().map_err(|e| {
                ConfigError::new(format!(
                    "sync.schedule: {text:?} is not a cron expression ({e}); \
                     six fields with seconds first, e.g. \"0 */5 * * * *\""
                ))
            })?;
            // `run` would do one cycle and exit 0, and systemd would never restart it.
            if schedule.upcoming(chrono::Utc).next().is_none() {
                return Err(ConfigError::new(format!(
                    "sync.schedule: {text:?} never fires again (no future tick)"
                )));
            }
            schedule
        },
        stall_timeout: {
            let d = duration("sync.stall_timeout", s.stall_timeout, "10m")?;
            if d.is_zero() {
                return Err(ConfigError::new(
                    "sync.stall_timeout must be above 0 (0s would end every cycle as stalled)",
                ));
            }
            d
        },
        shutdown_grace: duration("sync.shutdown_grace", s.shutdown_grace, "20s")?,
    })
}

fn validate_http(h: file::RawHttp) -> Result<HttpSettings, ConfigError> {
    Ok(HttpSettings {
        listen: match h.listen.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(text.parse().map_err(|_| {
                ConfigError::new(format!(
                    "http.listen: {text:?} is not an address like \"127.0.0.1:9187\" (empty turns it off)"
                ))
            })?),
        },
    })
}

fn validate_events(e: file::RawEvents, http: &HttpSettings) -> Result<EventSettings, ConfigError> {
    let secret = |s: Option<Scalar>| s.map(|s| SecretString::from(s.into_string()));
    let events = EventSettings {
        path: e.path.unwrap_or_else(|| DEFAULT_EVENTS_PATH.to_owned()),
        verification_token: SecretSource::new(
            "events.verification_token",
            secret(e.verification_token),
            e.verification_token_file,
        )?,
        encrypt_key: SecretSource::new(
            "events.encrypt_key",
            secret(e.encrypt_key),
            e.encrypt_key_file,
        )?,
    };
    // A plain path: `:name`, `{name}` or `*` would be a route pattern (axum panics on some).
    let plain = events
        .path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b));
    if !events.path.starts_with('/') || events.path.len() < 2 || !plain {
        return Err(ConfigError::new(format!(
            "events.path: {:?} must be a plain path like \"/feishu/events\" (letters, digits, / - _ . ~)",
            events.path
        )));
    }
    if ["/metrics", "/healthz", "/readyz"].contains(&events.path.as_str()) {
        return Err(ConfigError::new(format!(
            "events.path: {:?} is taken by the HTTP endpoint",
            events.path
        )));
    }
    if events.enabled() && http.listen.is_none() {
        return Err(ConfigError::new(
            "events are configured (events.verification_token / encrypt_key) but http.listen \
             is empty: set http.listen, e.g. \"0.0.0.0:9187\", for Feishu to reach",
        ));
    }
    Ok(events)
}

impl Settings {
    /// The helpdesks this daemon copies, in config order: the `[[helpdesks]]` entries, or the
    /// one helpdesk of `feishu.helpdesk_id` (empty when neither is configured; commands that
    /// need a helpdesk fail then, naming `feishu.helpdesk_id`). Ids and names are unique.
    pub fn helpdesks(&self) -> &[HelpdeskSettings] {
        &self.helpdesks
    }

    /// The helpdesks a command works on: the one `pick` names (`--helpdesk`, by id or name),
    /// or all of them. Fails (exit 2) when none is configured or `pick` names none.
    pub fn select_helpdesks(
        &self,
        pick: Option<&str>,
    ) -> Result<Vec<&HelpdeskSettings>, ConfigError> {
        if self.helpdesks.is_empty() {
            return Err(ConfigError::new(format!(
                "feishu.helpdesk_id is missing: set it in the config file or \
                 {ENV_PREFIX}FEISHU__HELPDESK_ID, or list the helpdesks under [[helpdesks]]"
            )));
        }
        let Some(pick) = pick else {
            return Ok(self.helpdesks.iter().collect());
        };
        match self.helpdesks.iter().find(|h| h.is_named(pick)) {
            Some(h) => Ok(vec![h]),
            None => Err(ConfigError::new(format!(
                "--helpdesk {pick:?} names no configured helpdesk (configured: {})",
                self.helpdesks
                    .iter()
                    .map(|h| format!("{} ({})", h.id, h.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

impl Settings {
    /// These settings with only the helpdesk `pick` names (`--helpdesk`, id or name), which
    /// also becomes `feishu.helpdesk_id`; unchanged for None. Fails (exit 2) when `pick`
    /// names no configured helpdesk.
    pub fn restricted_to(&self, pick: Option<&str>) -> Result<Self, ConfigError> {
        let Some(pick) = pick else {
            return Ok(self.clone());
        };
        let chosen = self.select_helpdesks(Some(pick))?[0].clone();
        let mut settings = self.clone();
        settings.feishu.helpdesk_id = chosen.id.clone();
        settings.feishu.helpdesk_token = chosen.token_source();
        settings.helpdesks = vec![chosen];
        Ok(settings)
    }
}

impl FeishuSettings {
    /// The app's id and secret, read now (files included). Fails naming the missing key.
    pub fn app_credentials(&self) -> Result<(String, SecretString), ConfigError> {
        if self.app_id.trim().is_empty() {
            return Err(ConfigError::new(format!(
                "feishu.app_id is missing: set it in the config file or {ENV_PREFIX}FEISHU__APP_ID"
            )));
        }
        Ok((
            self.app_id.trim().to_owned(),
            self.app_secret.resolve("feishu.app_secret")?,
        ))
    }

    /// The app and helpdesk credentials, read now (files included). Fails naming the missing key.
    pub fn credentials(&self) -> Result<Credentials, ConfigError> {
        if self.app_id.trim().is_empty() {
            return Err(ConfigError::new(format!(
                "feishu.app_id is missing: set it in the config file or {ENV_PREFIX}FEISHU__APP_ID"
            )));
        }
        if self.helpdesk_id.trim().is_empty() {
            return Err(ConfigError::new(format!(
                "feishu.helpdesk_id is missing: set it in the config file or {ENV_PREFIX}FEISHU__HELPDESK_ID"
            )));
        }
        Ok(Credentials {
            app_id: self.app_id.trim().to_owned(),
            app_secret: self.app_secret.resolve("feishu.app_secret")?,
            helpdesk_id: self.helpdesk_id.trim().to_owned(),
            helpdesk_token: self.helpdesk_token.resolve("feishu.helpdesk_token")?,
        })
    }
}

impl DatabaseSettings {
    pub fn connect_options(&self) -> PgConnectOptions {
        // Checked in `Settings::validate`; a parse failure here cannot happen, but fall back
        // to the default options rather than panic.
        self.url
            .expose_secret()
            .parse()
            .unwrap_or_else(|_| PgConnectOptions::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Item 15: configs that were accepted and then misbehaved; each is exit 2 naming its key.
    #[test]
    fn hostile_values_are_refused_naming_the_key() {
        let base = "[feishu]\napp_id = \"a\"\napp_secret = \"s\"\nhelpdesk_id = \"1\"\nhelpdesk_token = \"t\"\n";
        let cases = [
            ("[sync]\nschedule = \"0 0 0 30 2 *\"", "sync.schedule"),
            ("[sync]\nschedule = \"0 0 0 1 1 * 2020\"", "sync.schedule"),
            ("[sync]\nstall_timeout = \"0s\"", "sync.stall_timeout"),
            (
                "[sync]\nbackfill_since = \"2999-01-01\"",
                "sync.backfill_since",
            ),
            (
                "[feishu]\nrequest_timeout = \"18446744073709551615s\"",
                "feishu.request_timeout",
            ),
            ("[sync]\nopen_refresh = \"100000000y\"", "sync.open_refresh"),
            (
                "[http]\nlisten = \"127.0.0.1:0\"\n[events]\nverification_token = \"v\"\npath = \"/feishu/:events\"",
                "events.path",
            ),
        ];
        for (extra, key) in cases {
            let toml = if extra.starts_with("[feishu]") {
                format!("{}\n{}", extra.replace("[feishu]", base.trim_end()), "")
            } else {
                format!("{base}{extra}\n")
            };
            let error = Settings::from_toml_str(&toml, [])
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{extra}: {error}");
        }
    }

    #[test]
    fn secret_files_give_their_first_line_without_a_bom() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "\u{feff}  s3cret \nsecond line\n").unwrap();
        let toml = format!(
            "[feishu]\napp_id = \"a\"\napp_secret_file = {:?}\nhelpdesk_id = \"1\"\nhelpdesk_token = \"t\"\n",
            path
        );
        let settings = Settings::from_toml_str(&toml, []).unwrap();
        let credentials = settings.feishu.credentials().unwrap();
        assert_eq!(credentials.app_secret.expose_secret(), "s3cret");
    }

    #[test]
    fn a_toml_syntax_error_names_the_key_and_line_not_the_secret() {
        let toml = "[feishu]\napp_id = \"cli_1\"\napp_secret = \"s3cr3t-VALUE-42\n";
        let error = Settings::from_toml_str(toml, []).unwrap_err().to_string();
        assert!(!error.contains("s3cr3t"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("`app_secret`"), "{error}");
    }

    const FULL: &str = r#"
        [feishu]
        base_url = "http://127.0.0.1:9"
        app_id = "cli_a"
        app_secret = "super-secret-value"
        helpdesk_id = "6626871355780366330"
        helpdesk_token = "hd-token-value"
    "#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The shipped example stays loadable and states the defaults.
    #[test]
    fn example_config_is_valid() {
        let s =
            Settings::from_toml_str(include_str!("../../config.toml.example"), env(&[])).unwrap();
        assert_eq!(s.feishu.base_url.as_str(), "https://open.feishu.cn/");
        assert_eq!(s.feishu.detail_requests_per_second, 9.0);
        assert_eq!(s.feishu.max_in_flight, 16);
        assert_eq!(s.sync.batch_size, 100);
        assert!(s.feishu.credentials().is_ok());
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let s = Settings::from_toml_str(FULL, env(&[])).unwrap();
        assert_eq!(s.feishu.detail_requests_per_second, 9.0);
        assert_eq!(s.feishu.max_in_flight, 16);
        assert_eq!(s.feishu.request_timeout, Duration::from_secs(10));
        assert_eq!(s.feishu.max_attempts, 6);
        assert_eq!(s.database.max_connections, 8);
        assert_eq!(s.sync.batch_size, 100);
        assert_eq!(s.sync.open_refresh, Duration::from_secs(3600));
        assert_eq!(s.sync.closed_refresh, Duration::from_secs(7 * 86400));
        assert_eq!(s.database.url.expose_secret(), DEFAULT_DATABASE_URL);
    }

    #[test]
    fn environment_overrides_the_file() {
        let s = Settings::from_toml_str(
            FULL,
            env(&[
                ("HELPDESK_SYNC__FEISHU__APP_SECRET", "12345"),
                ("HELPDESK_SYNC__FEISHU__MAX_IN_FLIGHT", "4"),
                ("HELPDESK_SYNC__SYNC__OPEN_REFRESH", "15m"),
                ("DATABASE_URL", "postgres://u@db:5432/x"),
            ]),
        )
        .unwrap();
        let c = s.feishu.credentials().unwrap();
        assert_eq!(c.app_secret.expose_secret(), "12345");
        assert_eq!(s.feishu.max_in_flight, 4);
        assert_eq!(s.sync.open_refresh, Duration::from_secs(900));
        assert_eq!(s.database.url.expose_secret(), "postgres://u@db:5432/x");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Settings::from_toml_str("[feishu]\napp_secrt = \"x\"\n", env(&[])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("app_secrt"), "{text}");
        let err =
            Settings::from_toml_str("[feishu]\n", env(&[("HELPDESK_SYNC__SYNC__BATCH", "1")]))
                .unwrap_err();
        assert!(err.to_string().contains("batch"), "{err}");
    }

    #[test]
    fn bad_duration_is_named() {
        let err =
            Settings::from_toml_str("[feishu]\nrequest_timeout = \"ten\"\n", env(&[])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("feishu.request_timeout"), "{text}");
        assert!(text.contains("\"ten\""), "{text}");
    }

    #[test]
    fn missing_secret_is_named_only_when_needed() {
        let s = Settings::from_toml_str(
            "[feishu]\napp_id = \"cli_a\"\nhelpdesk_id = \"1\"\n",
            env(&[]),
        )
        .unwrap();
        let err = s.feishu.credentials().unwrap_err().to_string();
        assert!(err.contains("feishu.app_secret"), "{err}");
    }

    #[test]
    fn secret_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\n").unwrap();
        let toml = format!(
            "[feishu]\napp_id = \"cli_a\"\nhelpdesk_id = \"1\"\nhelpdesk_token = \"t\"\napp_secret_file = {:?}\n",
            path.display().to_string()
        );
        let s = Settings::from_toml_str(&toml, env(&[])).unwrap();
        assert_eq!(
            s.feishu.credentials().unwrap().app_secret.expose_secret(),
            "from-file"
        );
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let s = Settings::from_toml_str(FULL, env(&[("DATABASE_URL", "postgres://u:dbpass@h/x")]))
            .unwrap();
        let text = format!("{s:?} {:?}", s.feishu.credentials().unwrap());
        for secret in ["super-secret-value", "hd-token-value", "dbpass"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
    }

    #[test]
    fn schedule_and_since_are_checked() {
        let err =
            Settings::from_toml_str("[sync]\nschedule = \"every minute\"\n", env(&[])).unwrap_err();
        assert!(err.to_string().contains("sync.schedule"), "{err}");
        let err = Settings::from_toml_str("[sync]\nbackfill_since = \"yesterday\"\n", env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("sync.backfill_since"), "{err}");
        let s = Settings::from_toml_str(
            "[sync]\nbackfill_since = \"2023-01-01\"\nmax_tickets_per_cycle = 0\n",
            env(&[]),
        )
        .unwrap();
        assert_eq!(
            s.sync.backfill_since.unwrap().to_rfc3339(),
            "2023-01-01T00:00:00+00:00"
        );
        assert_eq!(s.sync.max_tickets_per_cycle, None);
        assert!(s.sync.discover);
    }

    #[test]
    fn an_environment_secret_replaces_a_file_secret() {
        let toml = "[feishu]\napp_id = \"a\"\nhelpdesk_id = \"1\"\nhelpdesk_token = \"t\"\n\
                    app_secret_file = \"/nonexistent\"\n";
        let s = Settings::from_toml_str(toml, env(&[("HELPDESK_SYNC__FEISHU__APP_SECRET", "env")]))
            .unwrap();
        assert_eq!(
            s.feishu.credentials().unwrap().app_secret.expose_secret(),
            "env"
        );
    }

    #[test]
    fn fractional_rates_above_one_are_refused() {
        let err = Settings::from_toml_str("[feishu]\ndetail_requests_per_second = 9.5\n", env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("whole number"), "{err}");
        let slow =
            Settings::from_toml_str("[feishu]\ndetail_requests_per_second = 0.5\n", env(&[]));
        assert!(slow.is_ok());
        let err =
            Settings::from_toml_str("[database]\nurl = \"postgress://x\"\n", env(&[])).unwrap_err();
        assert!(err.to_string().contains("database.url"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Settings::from_toml_str("[sync]\nbatch_size = \"many\"\n", env(&[])).unwrap_err();
        assert!(err.to_string().contains("sync.batch_size"), "{err}");
    }

    #[test]
    fn events_need_a_listener_and_read_their_secrets() {
        let off = Settings::from_toml_str("", env(&[])).unwrap();
        assert!(!off.events.enabled());
        assert_eq!(off.events.path, "/feishu/events");

        let err = Settings::from_toml_str(
            "[events]
encrypt_key = \"k\"\n",
            env(&[]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("http.listen"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "file-key\n").unwrap();
        let toml = format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[events]\nencrypt_key_file = {:?}\n",
            key_file
        );
        let on = Settings::from_toml_str(
            &toml,
            env(&[("HELPDESK_SYNC__EVENTS__VERIFICATION_TOKEN", "t0k")]),
        )
        .unwrap();
        assert!(on.events.enabled());
        let keys = on.events.keys().unwrap();
        assert_eq!(keys.encrypt_key.unwrap().expose_secret(), "file-key");
        assert_eq!(keys.verification_token.unwrap().expose_secret(), "t0k");
        assert!(!format!("{on:?}").contains("file-key") && !format!("{on:?}").contains("t0k"));

        let err = Settings::from_toml_str(
            "[http]\nlisten = \"127.0.0.1:0\"\n[events]\npath = \"/metrics\"\nencrypt_key = \"k\"\n",
            env(&[]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("events.path"), "{err}");
    }
}
