//! The config file's format before validation (every key optional, so environment variables
//! can fill the gaps), environment overrides, and figment's errors turned into ours.

use std::path::PathBuf;

use figment::providers::Serialized;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The file format, before validation. Every key optional so env vars can fill the gaps.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    #[serde(default)]
    pub(super) feishu: RawFeishu,
    #[serde(default)]
    pub(super) database: RawDatabase,
    #[serde(default)]
    pub(super) sync: RawSync,
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) events: RawEvents,
    #[serde(default)]
    pub(super) sla: super::sla::RawSla,
    pub(super) health: RawHealth,
    /// `[[helpdesks]]`: None when the file has no such list (the single-helpdesk keys apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) helpdesks: Option<Vec<RawHelpdesk>>,
}

/// One `[[helpdesks]]` entry, before validation.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHelpdesk {
    pub(super) name: Option<String>,
    pub(super) helpdesk_id: Option<Scalar>,
    #[serde(skip_serializing)]
    pub(super) helpdesk_token: Option<Scalar>,
    pub(super) helpdesk_token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub(super) discovery_stuck_after: Option<String>,
    pub(super) ticket_failing_after: Option<String>,
    pub(super) queue_due_after: Option<String>,
    pub(super) conversation_failing_after: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    pub(super) path: Option<String>,
    #[serde(skip_serializing)]
    pub(super) verification_token: Option<Scalar>,
    pub(super) verification_token_file: Option<PathBuf>,
    #[serde(skip_serializing)]
    pub(super) encrypt_key: Option<Scalar>,
    pub(super) encrypt_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) listen: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFeishu {
    pub(super) base_url: Option<String>,
    pub(super) app_id: Option<Scalar>,
    #[serde(skip_serializing)]
    pub(super) app_secret: Option<Scalar>,
    pub(super) app_secret_file: Option<PathBuf>,
    pub(super) helpdesk_id: Option<Scalar>,
    #[serde(skip_serializing)]
    pub(super) helpdesk_token: Option<Scalar>,
    pub(super) helpdesk_token_file: Option<PathBuf>,
    pub(super) helpdesk_name: Option<String>,
    pub(super) detail_requests_per_second: Option<f64>,
    pub(super) list_requests_per_second: Option<f64>,
    pub(super) list_requests_per_minute: Option<i64>,
    pub(super) message_requests_per_second: Option<f64>,
    pub(super) message_requests_per_second_ceiling: Option<f64>,
    pub(super) catalog_requests_per_second: Option<f64>,
    pub(super) catalog_requests_per_second_ceiling: Option<f64>,
    pub(super) max_in_flight: Option<i64>,
    pub(super) request_timeout: Option<String>,
    pub(super) max_attempts: Option<i64>,
    pub(super) max_response_bytes: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    #[serde(skip_serializing)]
    pub(super) url: Option<String>,
    pub(super) max_connections: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub(super) batch_size: Option<i64>,
    pub(super) open_refresh: Option<String>,
    pub(super) closed_refresh: Option<String>,
    pub(super) discover: Option<bool>,
    pub(super) store_list_rows: Option<bool>,
    pub(super) messages: Option<bool>,
    pub(super) discovery_overlap: Option<String>,
    pub(super) backfill_since: Option<String>,
    pub(super) known_ids_query: Option<String>,
    pub(super) max_tickets_per_cycle: Option<i64>,
    pub(super) schedule: Option<String>,
    pub(super) stall_timeout: Option<String>,
    pub(super) shutdown_grace: Option<String>,
}

/// A text value that environment variables may deliver as a number (`HELPDESK_SYNC__FEISHU__HELPDESK_ID=662...`).
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub(super) enum Scalar {
    Text(String),
    Unsigned(u64),
    Signed(i64),
}

impl Scalar {
    pub(super) fn into_string(self) -> String {
        match self {
            Self::Text(s) => s,
            Self::Unsigned(n) => n.to_string(),
            Self::Signed(n) => n.to_string(),
        }
    }
}

/// Keys whose environment values are taken as text, never parsed as numbers or booleans.
pub(super) const TEXT_KEYS: &[&str] = &[
    "feishu.base_url",
    "feishu.app_id",
    "feishu.app_secret",
    "feishu.app_secret_file",
    "feishu.helpdesk_id",
    "feishu.helpdesk_token",
    "feishu.helpdesk_token_file",
    "feishu.helpdesk_name",
    "feishu.request_timeout",
    "database.url",
    "sync.open_refresh",
    "sync.closed_refresh",
    "sync.discovery_overlap",
    "sync.backfill_since",
    "sync.known_ids_query",
    "sync.schedule",
    "sync.stall_timeout",
    "sync.shutdown_grace",
    "http.listen",
    "events.path",
    "events.verification_token",
    "events.verification_token_file",
    "events.encrypt_key",
    "events.encrypt_key_file",
];

/// One `HELPDESK_SYNC__*` variable, named as such in error messages.
pub(super) struct EnvOverride {
    pub(super) name: String,
    pub(super) value: Serialized<figment::value::Value>,
}

impl figment::Provider for EnvOverride {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        self.value.data()
    }
}

/// Figment names the key and the source; keep that, drop its profile prefix.
/// A TOML syntax error quotes the offending line (`3 | app_secret = "…`), which may hold a
/// secret: keep its position and reason, and name the line's key instead of quoting it.
fn without_quoted_lines(message: &str) -> String {
    let mut kept: Vec<String> = Vec::new();
    let mut key: Option<String> = None;
    for line in message.lines() {
        match line.split_once('|') {
            Some((number, text)) if number.trim().chars().all(|c| c.is_ascii_digit()) => {
                if key.is_none() && !number.trim().is_empty() {
                    key = text
                        .split_once('=')
                        .map(|(k, _)| k.trim().to_owned())
                        .filter(|k| !k.is_empty());
                }
            }
            _ if line.trim().is_empty() => {}
            _ => kept.push(line.trim().to_owned()),
        }
    }
    let mut text = kept.join(": ");
    if let Some(key) = key {
        text.push_str(&format!(
            " (the line setting `{key}`; its value is not shown)"
        ));
    }
    text
}

pub(super) fn describe_figment_error(error: figment::Error) -> ConfigError {
    let messages: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| {
                    m.source
                        .as_ref()
                        .map(|s| format!(" (in {s})"))
                        .unwrap_or_else(|| format!(" (in {})", m.name))
                })
                .unwrap_or_default();
            let kind = without_quoted_lines(&e.kind.to_string());
            if key.is_empty() {
                format!("{kind}{source}")
            } else {
                format!("{key}: {kind}{source}")
            }
        })
        .collect();
    ConfigError::new(messages.join("; "))
}
