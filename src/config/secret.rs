//! Secrets: where each comes from (inline, a file such as a systemd credential, or nowhere),
//! read only when needed, and never shown by `Debug`.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::{ConfigError, ENV_PREFIX};

/// Secrets handed out only to the code that sends them.
#[derive(Clone)]
pub struct Credentials {
    pub app_id: String,
    pub app_secret: SecretString,
    pub helpdesk_id: String,
    pub helpdesk_token: SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("app_id", &self.app_id)
            .field("app_secret", &"[REDACTED]")
            .field("helpdesk_id", &self.helpdesk_id)
            .field("helpdesk_token", &"[REDACTED]")
            .finish()
    }
}

/// A secret given inline, through a file (systemd `LoadCredential`), or not at all.
#[derive(Debug, Clone)]
pub(super) enum SecretSource {
    Inline(SecretString),
    File(PathBuf),
    Missing,
}

impl SecretSource {
    pub(super) fn new(
        key: &str,
        inline: Option<SecretString>,
        file: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(ConfigError::new(format!(
                "{key} and {key}_file are both set; keep one"
            ))),
            (Some(secret), None) if secret.expose_secret().trim().is_empty() => Ok(Self::Missing),
            (Some(secret), None) => Ok(Self::Inline(secret)),
            (None, Some(path)) => Ok(Self::File(path)),
            (None, None) => Ok(Self::Missing),
        }
    }

    pub(super) fn resolve(&self, key: &str) -> Result<SecretString, ConfigError> {
        match self {
            Self::Inline(secret) => Ok(secret.clone()),
            Self::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(format!("{key}_file: cannot read {}: {e}", path.display()))
                })?;
                // The first line, whitespace trimmed (as the example says); a BOM is not part of it.
                let secret = text
                    .trim_start_matches('\u{feff}')
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim();
                if secret.is_empty() {
                    return Err(ConfigError::new(format!(
                        "{key}_file: the first line of {} is empty",
                        path.display()
                    )));
                }
                Ok(SecretString::from(secret.to_owned()))
            }
            Self::Missing => Err(ConfigError::new(format!(
                "{key} is missing: set {key} or {key}_file in the config file, or {ENV_PREFIX}{}",
                key.replace('.', "__").to_uppercase()
            ))),
        }
    }
}
