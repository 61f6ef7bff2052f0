//! The helpdesks one daemon copies: a top-level `[[helpdesks]]` list (each its id, token and
//! display name), or today's single-helpdesk keys (`feishu.helpdesk_id`,
//! `feishu.helpdesk_token[_file]`, optional `feishu.helpdesk_name`), which become a list of one.
//! All of them share the one `[feishu]` app: its secret, its tenant token, its API budget.

use secrecy::SecretString;

use super::file::{RawFeishu, RawHelpdesk, Scalar};
use super::secret::{Credentials, SecretSource};
use super::{ConfigError, ENV_PREFIX};

/// One helpdesk the daemon copies, resolved from the config.
#[derive(Debug, Clone)]
pub struct HelpdeskSettings {
    /// The helpdesk's id (`helpdesk_id`): the key every per-helpdesk row (queue, lock,
    /// `sync_runs`, watermark) carries, and half of the helpdesk authorization header.
    pub id: String,
    /// Its display name (`name`; the id when not given): what `status`, metrics, logs and the
    /// reporting views show operators, and what `--helpdesk` also accepts.
    pub name: String,
    /// Where it was configured, for messages naming a key: `helpdesks[1]` or `feishu`.
    pub key: String,
    /// Where its token comes from (inline or a file, read only when needed).
    token: SecretSource,
}

impl HelpdeskSettings {
    /// This helpdesk's token, read now (files included); fails naming the key.
    pub fn token(&self) -> Result<SecretString, ConfigError> {
        self.token.resolve(&format!("{}.helpdesk_token", self.key))
    }

    /// Whether `pick` (from `--helpdesk`) names this helpdesk, by id or by name.
    pub fn is_named(&self, pick: &str) -> bool {
        let pick = pick.trim();
        self.id == pick || self.name == pick
    }

    /// The app's and this helpdesk's credentials, read now.
    pub fn credentials(&self, feishu: &super::FeishuSettings) -> Result<Credentials, ConfigError> {
        let app = feishu.app_credentials()?;
        Ok(Credentials {
            app_id: app.0,
            app_secret: app.1,
            helpdesk_id: self.id.clone(),
            helpdesk_token: self.token()?,
        })
    }
}

/// A `HELPDESK_SYNC__HELPDESKS__<n>__<FIELD>` variable, applied to entry `n` after the file.
#[derive(Debug)]
pub(super) struct EntryOverride {
    /// The variable's name, for messages.
    pub(super) name: String,
    /// The entry's index (from 0).
    pub(super) index: usize,
    /// `name`, `helpdesk_id`, `helpdesk_token` or `helpdesk_token_file`.
    pub(super) field: String,
    /// The variable's value.
    pub(super) value: String,
}

impl EntryOverride {
    /// `helpdesks.<n>.<field>` (the variable's key, lower-cased); None for any other key.
    pub(super) fn parse(name: &str, key: &str, value: &str) -> Option<Result<Self, ConfigError>> {
        let rest = key.strip_prefix("helpdesks.")?;
        let parsed = rest.split_once('.').and_then(|(index, field)| {
            let index: usize = index.parse().ok()?;
            let known = [
                "name",
                "helpdesk_id",
                "helpdesk_token",
                "helpdesk_token_file",
            ];
            known.contains(&field).then(|| Self {
                name: name.to_owned(),
                index,
                field: field.to_owned(),
                value: value.to_owned(),
            })
        });
        Some(parsed.ok_or_else(|| {
            ConfigError::new(format!(
                "environment variable {name}: expected {ENV_PREFIX}HELPDESKS__<n>__<NAME | \
                 HELPDESK_ID | HELPDESK_TOKEN | HELPDESK_TOKEN_FILE> with n counted from 0"
            ))
        }))
    }
}

/// Lays the `HELPDESK_SYNC__HELPDESKS__<n>__*` variables over the file's entries (a secret in
/// the environment replaces the file's, whichever form each uses).
pub(super) fn apply_overrides(
    entries: &mut Option<Vec<RawHelpdesk>>,
    overrides: Vec<EntryOverride>,
) -> Result<(), ConfigError> {
    for o in overrides {
        let Some(entry) = entries.as_mut().and_then(|e| e.get_mut(o.index)) else {
            return Err(ConfigError::new(format!(
                "environment variable {}: there is no helpdesks[{}] in the config file to \
                 override (add its [[helpdesks]] entry)",
                o.name, o.index
            )));
        };
        match o.field.as_str() {
            "name" => entry.name = Some(o.value),
            "helpdesk_id" => entry.helpdesk_id = Some(Scalar::Text(o.value)),
            "helpdesk_token" => {
                entry.helpdesk_token = Some(Scalar::Text(o.value));
                entry.helpdesk_token_file = None;
            }
            _ => {
                entry.helpdesk_token_file = Some(o.value.into());
                entry.helpdesk_token = None;
            }
        }
    }
    Ok(())
}

/// Whether `id` looks like a helpdesk id: 1 to 64 letters, digits, `-` or `_` (Feishu's are
/// 19 digits).
fn plausible_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The resolved list: `[[helpdesks]]` when given, else the single-helpdesk keys (a list of one,
/// or empty when `feishu.helpdesk_id` is not set either: commands that need a helpdesk say so).
pub(super) fn validate_helpdesks(
    entries: Option<Vec<RawHelpdesk>>,
    feishu: &RawFeishu,
) -> Result<Vec<HelpdeskSettings>, ConfigError> {
    let Some(entries) = entries else {
        return single(feishu);
    };
    let single_keys = [
        ("feishu.helpdesk_id", feishu.helpdesk_id.is_some()),
        ("feishu.helpdesk_token", feishu.helpdesk_token.is_some()),
        (
            "feishu.helpdesk_token_file",
            feishu.helpdesk_token_file.is_some(),
        ),
        ("feishu.helpdesk_name", feishu.helpdesk_name.is_some()),
    ];
    if let Some((key, _)) = single_keys.iter().find(|(_, set)| *set) {
        return Err(ConfigError::new(format!(
            "helpdesks and {key} are both set: list every helpdesk under [[helpdesks]] and \
             remove {key} (or remove [[helpdesks]] to keep the single-helpdesk keys)"
        )));
    }
    if entries.is_empty() {
        return Err(ConfigError::new(
            "helpdesks: the list is empty; add at least one [[helpdesks]] entry with \
             helpdesk_id and helpdesk_token (or remove it and use feishu.helpdesk_id)",
        ));
    }
    let mut helpdesks: Vec<HelpdeskSettings> = Vec::with_capacity(entries.len());
    for (index, raw) in entries.into_iter().enumerate() {
        let key = format!("helpdesks[{index}]");
        let id = raw
            .helpdesk_id
            .map(Scalar::into_string)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        if id.is_empty() {
            return Err(ConfigError::new(format!(
                "{key}.helpdesk_id is missing: every [[helpdesks]] entry needs its helpdesk's id"
            )));
        }
        if !plausible_id(&id) {
            return Err(ConfigError::new(format!(
                "{key}.helpdesk_id: {id:?} is not a helpdesk id (letters, digits, - or _, at \
                 most 64; Feishu's are 19 digits)"
            )));
        }
        let name = match raw.name.map(|n| n.trim().to_owned()) {
            Some(name) if name.is_empty() => {
                return Err(ConfigError::new(format!(
                    "{key}.name is empty: give the helpdesk a name or leave the key out (the id \
                     is shown then)"
                )));
            }
            Some(name) if name.chars().count() > 200 => {
                return Err(ConfigError::new(format!(
                    "{key}.name is longer than 200 characters"
                )));
            }
            Some(name) => name,
            None => id.clone(),
        };
        let token = SecretSource::new(
            &format!("{key}.helpdesk_token"),
            raw.helpdesk_token
                .map(|s| SecretString::from(s.into_string())),
            raw.helpdesk_token_file,
        )?;
        if matches!(token, SecretSource::Missing) {
            return Err(ConfigError::new(format!(
                "{key}.helpdesk_token is missing (helpdesk {id}): set helpdesk_token or \
                 helpdesk_token_file in its [[helpdesks]] entry, or \
                 {ENV_PREFIX}HELPDESKS__{index}__HELPDESK_TOKEN"
            )));
        }
        if let Some(other) = helpdesks.iter().find(|h| h.id == id) {
            return Err(ConfigError::new(format!(
                "{key}.helpdesk_id: {id} is listed twice (also {}); each helpdesk once",
                other.key
            )));
        }
        if let Some(other) = helpdesks
            .iter()
            .find(|h| h.name == name || h.id == name || h.name == id)
        {
            return Err(ConfigError::new(format!(
                "{key}.name: {name:?} is already used by {} ({}); names must tell helpdesks apart",
                other.key, other.id
            )));
        }
        helpdesks.push(HelpdeskSettings {
            id,
            name,
            key,
            token,
        });
    }
    Ok(helpdesks)
}

/// Today's keys: one helpdesk when `feishu.helpdesk_id` is set (its token checked when used,
/// as before), none otherwise.
fn single(feishu: &RawFeishu) -> Result<Vec<HelpdeskSettings>, ConfigError> {
    let id = feishu
        .helpdesk_id
        .as_ref()
        .map(|s| match s {
            Scalar::Text(t) => t.trim().to_owned(),
            Scalar::Unsigned(n) => n.to_string(),
            Scalar::Signed(n) => n.to_string(),
        })
        .unwrap_or_default();
    if id.is_empty() {
        return Ok(Vec::new());
    }
    let name = feishu
        .helpdesk_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map_or_else(|| id.clone(), str::to_owned);
    let token = SecretSource::new(
        "feishu.helpdesk_token",
        feishu.helpdesk_token.as_ref().map(|s| {
            SecretString::from(match s {
                Scalar::Text(t) => t.clone(),
                Scalar::Unsigned(n) => n.to_string(),
                Scalar::Signed(n) => n.to_string(),
            })
        }),
        feishu.helpdesk_token_file.clone(),
    )?;
    Ok(vec![HelpdeskSettings {
        id,
        name,
        key: "feishu".to_owned(),
        token,
    }])
}

impl HelpdeskSettings {
    /// Where the token comes from (for `feishu.helpdesk_token`, kept as the first helpdesk's).
    pub(super) fn token_source(&self) -> SecretSource {
        self.token.clone()
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use crate::config::Settings;

    const APP: &str = "[feishu]\napp_id = \"cli_a\"\napp_secret = \"s\"\n";

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, String> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        // Top-level keys (`helpdesks = []`) go before the `[feishu]` table.
        let text = match toml.strip_prefix("TOP:") {
            Some(top) => format!("{top}{APP}"),
            None => format!("{APP}{toml}"),
        };
        Settings::from_toml_str(&text, env).map_err(|e| e.to_string())
    }

    const TWO: &str = "[[helpdesks]]\nname = \"IT\"\nhelpdesk_id = \"7000000000000000001\"\n\
                       helpdesk_token = \"t1\"\n\n[[helpdesks]]\nhelpdesk_id = 7000000000000000002\n\
                       helpdesk_token = \"t2\"\n";

    #[test]
    fn a_list_gives_every_helpdesk_with_its_name_and_token() {
        let s = load(TWO, &[]).unwrap();
        let h = s.helpdesks();
        assert_eq!(h.len(), 2);
        assert_eq!(
            (h[0].id.as_str(), h[0].name.as_str()),
            ("7000000000000000001", "IT")
        );
        // A name left out is the id; a numeric id is text.
        assert_eq!(h[1].name, "7000000000000000002");
        assert_eq!(h[1].token().unwrap().expose_secret(), "t2");
        let c = h[1].credentials(&s.feishu).unwrap();
        assert_eq!(
            (c.app_id.as_str(), c.helpdesk_id.as_str()),
            ("cli_a", "7000000000000000002")
        );
        // Code serving one helpdesk sees the first.
        assert_eq!(s.feishu.helpdesk_id, "7000000000000000001");
        assert_eq!(
            s.feishu
                .credentials()
                .unwrap()
                .helpdesk_token
                .expose_secret(),
            "t1"
        );
        assert_eq!(
            s.select_helpdesks(Some("IT")).unwrap()[0].id,
            "7000000000000000001"
        );
        assert_eq!(s.select_helpdesks(None).unwrap().len(), 2);
        let err = s.select_helpdesks(Some("HR")).unwrap_err().to_string();
        assert!(err.contains("--helpdesk") && err.contains("IT"), "{err}");
        assert!(!format!("{s:?}").contains("t2\""));
    }

    #[test]
    fn the_single_helpdesk_keys_become_a_list_of_one() {
        let s = load(
            "helpdesk_id = \"6626871355780366330\"\nhelpdesk_token = \"t\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(s.helpdesks().len(), 1);
        assert_eq!(s.helpdesks()[0].name, "6626871355780366330");
        assert_eq!(s.helpdesks()[0].token().unwrap().expose_secret(), "t");
        let s = load(
            "helpdesk_name = \"Support\"\n",
            &[
                ("HELPDESK_SYNC__FEISHU__HELPDESK_ID", "42"),
                ("HELPDESK_SYNC__FEISHU__HELPDESK_TOKEN", "env"),
            ],
        )
        .unwrap();
        assert_eq!(
            (s.helpdesks()[0].id.as_str(), s.helpdesks()[0].name.as_str()),
            ("42", "Support")
        );
        assert_eq!(s.helpdesks()[0].token().unwrap().expose_secret(), "env");
        // Nothing configured: loads (migrate needs no helpdesk); commands that need one say so.
        let s = load("", &[]).unwrap();
        assert!(s.helpdesks().is_empty());
        let err = s.select_helpdesks(None).unwrap_err().to_string();
        assert!(err.contains("feishu.helpdesk_id"), "{err}");
        // A missing token is named when it is needed, as before.
        let s = load("helpdesk_id = \"1\"\n", &[]).unwrap();
        let err = s.helpdesks()[0].token().unwrap_err().to_string();
        assert!(err.contains("feishu.helpdesk_token"), "{err}");
    }

    #[test]
    fn environment_variables_reach_list_entries() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let s = load(
            TWO,
            &[
                (
                    "HELPDESK_SYNC__HELPDESKS__1__HELPDESK_TOKEN_FILE",
                    file.to_str().unwrap(),
                ),
                ("HELPDESK_SYNC__HELPDESKS__0__NAME", "Service desk"),
            ],
        )
        .unwrap();
        assert_eq!(
            s.helpdesks()[1].token().unwrap().expose_secret(),
            "from-file"
        );
        assert_eq!(s.helpdesks()[0].name, "Service desk");
        let err = load(TWO, &[("HELPDESK_SYNC__HELPDESKS__5__HELPDESK_TOKEN", "x")]).unwrap_err();
        assert!(
            err.contains("HELPDESK_SYNC__HELPDESKS__5__HELPDESK_TOKEN"),
            "{err}"
        );
        let err = load(TWO, &[("HELPDESK_SYNC__HELPDESKS__0__TOKEN", "x")]).unwrap_err();
        assert!(err.contains("HELPDESK_SYNC__HELPDESKS__0__TOKEN"), "{err}");
    }

    #[test]
    fn bad_lists_are_refused_naming_the_key() {
        let entry = |id: &str, name: &str, token: &str| {
            format!("[[helpdesks]]\nhelpdesk_id = \"{id}\"\n{name}{token}\n")
        };
        let cases = [
            // Both the list and the single-helpdesk keys.
            (
                format!(
                    "helpdesk_id = \"1\"\n{}",
                    entry("2", "", "helpdesk_token = \"t\"")
                ),
                "feishu.helpdesk_id",
            ),
            (
                "TOP:helpdesks = []\n".to_owned(),
                "helpdesks: the list is empty",
            ),
            (entry("1", "", ""), "helpdesks[0].helpdesk_token"),
            (
                format!(
                    "{}{}",
                    entry("1", "", "helpdesk_token = \"t\""),
                    entry("2", "", "")
                ),
                "helpdesks[1].helpdesk_token",
            ),
            (
                format!(
                    "{}{}",
                    entry("1", "", "helpdesk_token = \"t\""),
                    entry("1", "", "helpdesk_token = \"u\"")
                ),
                "helpdesks[1].helpdesk_id",
            ),
            (
                format!(
                    "{}{}",
                    entry("1", "name = \"IT\"\n", "helpdesk_token = \"t\""),
                    entry("2", "name = \"IT\"\n", "helpdesk_token = \"u\"")
                ),
                "helpdesks[1].name",
            ),
            (
                entry("7 0", "", "helpdesk_token = \"t\""),
                "helpdesks[0].helpdesk_id",
            ),
            (
                entry("", "", "helpdesk_token = \"t\""),
                "helpdesks[0].helpdesk_id",
            ),
            (
                entry("1", "name = \" \"\n", "helpdesk_token = \"t\""),
                "helpdesks[0].name",
            ),
            (
                entry(
                    "1",
                    "",
                    "helpdesk_token = \"t\"\nhelpdesk_token_file = \"/x\"",
                ),
                "helpdesks[0].helpdesk_token",
            ),
            (entry("1", "", "helpdesk_tokn = \"t\""), "helpdesk_tokn"),
        ];
        for (toml, key) in cases {
            let err = load(&toml, &[]).map(|_| ()).unwrap_err();
            assert!(err.contains(key), "{toml}: {err}");
        }
        // The environment's single-helpdesk id with a file's list is "both" too.
        let err = load(TWO, &[("HELPDESK_SYNC__FEISHU__HELPDESK_ID", "9")]).unwrap_err();
        assert!(err.contains("feishu.helpdesk_id"), "{err}");
    }
}
