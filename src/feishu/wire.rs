//! Wire types: Feishu JSON as it may really arrive, read leniently.
//!
//! Every field is optional. A field of the wrong type does not reject the ticket: it becomes
//! [`Lenient::Invalid`], normalization stores NULL and reports it, and `tickets.raw` keeps the
//! original. Ids are accepted as JSON strings or integers and kept as exact decimal text, never
//! through `f64` (they exceed 2^53).

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// A leniently read field.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Lenient<T> {
    /// Missing or `null`.
    #[default]
    Absent,
    /// A usable value.
    Value(T),
    /// Present but unusable; the text says what was found.
    Invalid(String),
}

impl<T> Lenient<T> {
    pub fn as_ref(&self) -> Lenient<&T> {
        match self {
            Self::Absent => Lenient::Absent,
            Self::Value(v) => Lenient::Value(v),
            Self::Invalid(e) => Lenient::Invalid(e.clone()),
        }
    }
}

/// Conversion from any JSON value, failing with a short description of what was found.
pub trait FromJson: Sized {
    fn from_json(value: Value) -> Result<Self, String>;
}

impl<'de, T: FromJson> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(Self::from_value(value))
    }
}

impl<T: FromJson> Lenient<T> {
    fn from_value(value: Value) -> Self {
        match value {
            Value::Null => Self::Absent,
            other => match T::from_json(other) {
                Ok(v) => Self::Value(v),
                Err(e) => Self::Invalid(e),
            },
        }
    }
}

fn describe(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 60 {
        let mut cut = 57;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

impl FromJson for i64 {
    fn from_json(value: Value) -> Result<Self, String> {
        match &value {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .ok_or_else(|| format!("expected an integer, found {}", describe(&value))),
            Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("expected an integer, found {}", describe(&value))),
            _ => Err(format!("expected an integer, found {}", describe(&value))),
        }
    }
}

impl FromJson for f64 {
    fn from_json(value: Value) -> Result<Self, String> {
        match &value {
            Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| format!("expected a number, found {}", describe(&value))),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| format!("expected a number, found {}", describe(&value))),
            _ => Err(format!("expected a number, found {}", describe(&value))),
        }
    }
}

impl FromJson for bool {
    fn from_json(value: Value) -> Result<Self, String> {
        match &value {
            Value::Bool(b) => Ok(*b),
            Value::Number(n) if n.as_i64() == Some(0) => Ok(false),
            Value::Number(n) if n.as_i64() == Some(1) => Ok(true),
            Value::String(s) if s == "true" => Ok(true),
            Value::String(s) if s == "false" => Ok(false),
            _ => Err(format!("expected a boolean, found {}", describe(&value))),
        }
    }
}

impl FromJson for String {
    fn from_json(value: Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(format!("expected text, found {}", describe(&other))),
        }
    }
}

/// An identifier: a JSON string, or a JSON integer kept digit for digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Id(pub String);

impl FromJson for Id {
    fn from_json(value: Value) -> Result<Self, String> {
        match &value {
            Value::String(s) if !s.trim().is_empty() => Ok(Id(s.trim().to_owned())),
            // serde_json reads integers up to u64::MAX exactly; a float here would have lost digits.
            Value::Number(n) if n.is_u64() || n.is_i64() => Ok(Id(n.to_string())),
            _ => Err(format!("expected an id, found {}", describe(&value))),
        }
    }
}

impl<T: FromJson> FromJson for Vec<Lenient<T>> {
    fn from_json(value: Value) -> Result<Self, String> {
        match value {
            Value::Array(items) => Ok(items.into_iter().map(Lenient::from_value).collect()),
            other => Err(format!("expected a list, found {}", describe(&other))),
        }
    }
}

/// `comments` is documented as one object, but the API also returns a list: accept both.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OneOrMany<T>(pub Vec<Lenient<T>>);

impl<T: FromJson> FromJson for OneOrMany<T> {
    fn from_json(value: Value) -> Result<Self, String> {
        match value {
            Value::Array(items) => Ok(Self(items.into_iter().map(Lenient::from_value).collect())),
            object @ Value::Object(_) => Ok(Self(vec![Lenient::from_value(object)])),
            other => Err(format!(
                "expected an object or a list, found {}",
                describe(&other)
            )),
        }
    }
}

macro_rules! object_from_json {
    ($($t:ty),*) => {$(
        impl FromJson for $t {
            fn from_json(value: Value) -> Result<Self, String> {
                if !value.is_object() {
                    return Err(format!("expected an object, found {}", describe(&value)));
                }
                serde_json::from_value(value).map_err(|e| e.to_string())
            }
        }
    )*};
}
object_from_json!(
    RawUser,
    RawComment,
    RawI18n,
    RawCustomField,
    RawTag,
    ListItem
);

/// The response envelope of every Open API call.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub code: Lenient<i64>,
    #[serde(default)]
    pub msg: Lenient<String>,
}

/// The body of a successful `GET /tickets/:id`, with the ticket kept as raw JSON text.
#[derive(Debug, Deserialize)]
pub struct TicketDetailBody {
    #[serde(default)]
    pub data: Option<TicketDetailData>,
}

#[derive(Debug, Deserialize)]
pub struct TicketDetailData {
    #[serde(default)]
    pub ticket: Option<Box<RawValue>>,
}

/// `GET /tickets` (list) response: the total, and each ticket as listed.
#[derive(Debug, Deserialize)]
pub struct ListBody {
    #[serde(default)]
    pub data: Option<ListData>,
}

#[derive(Debug, Deserialize)]
pub struct ListData {
    #[serde(default)]
    pub total: Lenient<i64>,
    /// Each listed ticket as raw JSON text: one item that can't be read costs only itself.
    #[serde(default)]
    pub tickets: Option<Vec<Box<RawValue>>>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ListItem {
    pub ticket_id: Lenient<Id>,
    pub updated_at: Lenient<i64>,
}

/// `POST /auth/v3/tenant_access_token/internal` response.
#[derive(Debug, Deserialize)]
pub struct TokenBody {
    #[serde(default)]
    pub code: Lenient<i64>,
    #[serde(default)]
    pub msg: Lenient<String>,
    #[serde(default)]
    pub tenant_access_token: Option<String>,
    /// Seconds until the token expires.
    #[serde(default)]
    pub expire: Lenient<i64>,
}

/// A ticket (`ticket_v2` in the API docs). Unknown fields are ignored here and kept in `raw`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawTicket {
    pub ticket_id: Lenient<Id>,
    pub helpdesk_id: Lenient<Id>,
    pub guest: Lenient<RawUser>,
    pub comments: Lenient<OneOrMany<RawComment>>,
    pub ticket_type: Lenient<i64>,
    pub status: Lenient<i64>,
    pub score: Lenient<i64>,
    pub created_at: Lenient<i64>,
    pub updated_at: Lenient<i64>,
    pub closed_at: Lenient<i64>,
    pub dissatisfaction_reason: Lenient<RawI18n>,
    pub agents: Lenient<Vec<Lenient<RawUser>>>,
    pub channel: Lenient<i64>,
    pub solve: Lenient<i64>,
    pub closed_by: Lenient<RawUser>,
    pub collaborators: Lenient<Vec<Lenient<RawUser>>>,
    pub customized_fields: Lenient<Vec<Lenient<RawCustomField>>>,
    pub agent_service_duration: Lenient<f64>,
    pub agent_first_response_duration: Lenient<i64>,
    pub bot_service_duration: Lenient<i64>,
    pub agent_resolution_time: Lenient<i64>,
    pub actual_processing_time: Lenient<i64>,
    pub agent_entry_time: Lenient<i64>,
    pub agent_first_response_time: Lenient<i64>,
    pub agent_last_response_time: Lenient<i64>,
    pub agent_owner: Lenient<RawUser>,
    pub tags: Lenient<Vec<Lenient<RawTag>>>,
}

/// `ticket_user`: guest, agent, collaborator, closed_by, agent_owner.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RawUser {
    pub id: Lenient<Id>,
    pub avatar_url: Lenient<String>,
    pub name: Lenient<String>,
    pub email: Lenient<String>,
    pub department: Lenient<String>,
    pub city: Lenient<String>,
    pub country: Lenient<String>,
}

/// One internal note.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RawComment {
    pub content: Lenient<String>,
    pub created_at: Lenient<i64>,
    pub id: Lenient<Id>,
    pub user_avatar_url: Lenient<String>,
    pub user_name: Lenient<String>,
    pub user_id: Lenient<Id>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RawI18n {
    pub zh_cn: Lenient<String>,
    pub en_us: Lenient<String>,
    pub ja_jp: Lenient<String>,
}

/// `customized_field_display_item`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RawCustomField {
    pub id: Lenient<Id>,
    pub value: Lenient<String>,
    pub key_name: Lenient<String>,
    pub display_name: Lenient<String>,
    pub position: Lenient<i64>,
    pub required: Lenient<bool>,
    pub editable: Lenient<bool>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RawTag {
    pub id: Lenient<Id>,
    pub name: Lenient<String>,
}

/// A response body whose payload is `data` (the envelope's code is checked apart).
#[derive(Debug, Deserialize)]
pub struct DataBody<T> {
    #[serde(default = "Option::default")]
    pub data: Option<T>,
}

/// `GET /ticket_customized_fields` (the custom field catalog) `data`: the page's items kept
/// as raw JSON, read one by one by `normalize::catalog` (one bad item costs only itself).
#[derive(Debug, Deserialize)]
pub struct CatalogData {
    #[serde(default)]
    pub has_more: Lenient<bool>,
    #[serde(default)]
    pub next_page_token: Lenient<String>,
    #[serde(default)]
    pub items: Option<Vec<Box<RawValue>>>,
}

/// One custom field of the catalog.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawCatalogField {
    pub ticket_customized_field_id: Lenient<Id>,
    pub helpdesk_id: Lenient<Id>,
    pub key_name: Lenient<String>,
    pub display_name: Lenient<String>,
    /// Sent as text ("1").
    pub position: Lenient<i64>,
    pub field_type: Lenient<String>,
    pub description: Lenient<String>,
    pub visible: Lenient<bool>,
    pub editable: Lenient<bool>,
    pub required: Lenient<bool>,
    /// Epoch milliseconds, sent as text.
    pub created_at: Lenient<i64>,
    pub updated_at: Lenient<i64>,
    /// A user object (`{id, name, ...}`) in the Go SDK model; an id string is accepted too.
    pub created_by: Lenient<RawUserRef>,
    pub updated_by: Lenient<RawUserRef>,
    pub dropdown_options: Lenient<RawOptions>,
    pub dropdown_allow_multiple: Lenient<bool>,
}

/// `dropdown_options` and every option's `children`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RawOptions {
    pub children: Lenient<Vec<Lenient<RawOption>>>,
}

/// A dropdown option: its tag, its label, and nested options.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RawOption {
    pub tag: Lenient<String>,
    pub display_name: Lenient<String>,
    pub children: Lenient<Vec<Lenient<RawOption>>>,
}

/// Who created or changed a catalog field: a user object or a bare id.
#[derive(Debug, Clone, PartialEq)]
pub struct RawUserRef(pub Option<Id>);

impl FromJson for RawUserRef {
    fn from_json(value: Value) -> Result<Self, String> {
        match value {
            Value::Object(mut o) => match o.remove("id") {
                Some(id) => Id::from_json(id).map(|id| Self(Some(id))),
                None => Ok(Self(None)),
            },
            other => Id::from_json(other).map(|id| Self(Some(id))),
        }
    }
}

object_from_json!(RawOptions, RawOption);

/// `GET /tickets/:id/messages` `data`: the page's messages kept as raw JSON, read one by one
/// by `normalize::messages` (one bad message costs only itself).
#[derive(Debug, Deserialize)]
pub struct MessagesData {
    #[serde(default)]
    pub total: Lenient<i64>,
    #[serde(default)]
    pub messages: Option<Vec<Box<RawValue>>>,
}

/// One message of a ticket's conversation.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawMessage {
    pub id: Lenient<Id>,
    pub message_id: Lenient<Id>,
    pub message_type: Lenient<String>,
    /// Epoch milliseconds (or seconds: read by magnitude).
    pub created_at: Lenient<i64>,
    /// Text, or a JSON object for rich messages (kept as sent).
    pub content: Lenient<RawContent>,
    pub user_name: Lenient<String>,
    pub avatar_url: Lenient<String>,
    pub user_id: Lenient<Id>,
}

/// A message's content: a string (often JSON text) or an object; kept as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct RawContent(pub String);

impl FromJson for RawContent {
    fn from_json(value: Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Ok(Self(s)),
            other @ (Value::Object(_) | Value::Array(_)) => Ok(Self(other.to_string())),
            other => Err(format!(
                "expected text or an object, found {}",
                describe(&other)
            )),
        }
    }
}

/// Replaces `\uD800`–`\uDFFF` escapes that do not form a surrogate pair with `\uFFFD`.
/// Backslashes occur in valid JSON only inside strings, so a plain scan of escapes suffices.
pub fn repair_surrogate_escapes(json: &str) -> std::borrow::Cow<'_, str> {
    fn hex4(b: &[u8], at: usize) -> Option<u16> {
        let digits = b.get(at..at + 4)?;
        u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    }
    if !json.contains("\\u") {
        return std::borrow::Cow::Borrowed(json);
    }
    let b = json.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        if b.get(i + 1) != Some(&b'u') {
            i += 2; // any other escape, an escaped backslash included
            continue;
        }
        let Some(unit) = hex4(b, i + 2) else {
            i += 2;
            continue;
        };
        let is_high = (0xD800..0xDC00).contains(&unit);
        let is_low = (0xDC00..0xE000).contains(&unit);
        let paired = is_high
            && b.get(i + 6) == Some(&b'\\')
            && b.get(i + 7) == Some(&b'u')
            && hex4(b, i + 8).is_some_and(|next| (0xDC00..0xE000).contains(&next));
        if paired {
            i += 12;
        } else if is_high || is_low {
            out.push_str(&json[copied..i]);
            out.push_str("\\ufffd");
            i += 6;
            copied = i;
        } else {
            i += 6;
        }
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(json);
    }
    out.push_str(&json[copied..]);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_above_2_pow_53_stay_exact_as_number_or_string() {
        let t: RawTicket = serde_json::from_str(
            r#"{"ticket_id": 6626871355780366331, "helpdesk_id": "6626871355780366330"}"#,
        )
        .unwrap();
        assert_eq!(
            t.ticket_id,
            Lenient::Value(Id("6626871355780366331".into()))
        );
        assert_eq!(
            t.helpdesk_id,
            Lenient::Value(Id("6626871355780366330".into()))
        );
    }

    #[test]
    fn float_id_is_invalid_not_rounded() {
        let t: RawTicket = serde_json::from_str(r#"{"ticket_id": 6.626871355780366e18}"#).unwrap();
        assert!(matches!(t.ticket_id, Lenient::Invalid(_)));
    }

    #[test]
    fn comments_object_list_null_and_missing() {
        let one: RawTicket = serde_json::from_str(r#"{"comments": {"id": 1}}"#).unwrap();
        let many: RawTicket =
            serde_json::from_str(r#"{"comments": [{"id": 1}, {"id": 2}]}"#).unwrap();
        let null: RawTicket = serde_json::from_str(r#"{"comments": null}"#).unwrap();
        let missing: RawTicket = serde_json::from_str(r#"{}"#).unwrap();
        assert!(matches!(one.comments, Lenient::Value(OneOrMany(ref v)) if v.len() == 1));
        assert!(matches!(many.comments, Lenient::Value(OneOrMany(ref v)) if v.len() == 2));
        assert_eq!(null.comments, Lenient::Absent);
        assert_eq!(missing.comments, Lenient::Absent);
    }

    #[test]
    fn wrong_types_become_invalid_without_failing_the_ticket() {
        let t: RawTicket = serde_json::from_str(
            r#"{"status": "open", "agents": "nobody", "guest": 5, "score": 2.0,
                "tags": [{"id": "1"}, 7], "unknown_field": {"x": 1}}"#,
        )
        .unwrap();
        assert!(matches!(t.status, Lenient::Invalid(_)));
        assert!(matches!(t.agents, Lenient::Invalid(_)));
        assert!(matches!(t.guest, Lenient::Invalid(_)));
        assert_eq!(t.score, Lenient::Value(2));
        let Lenient::Value(tags) = t.tags else {
            panic!("tags")
        };
        assert!(matches!(tags[0], Lenient::Value(_)));
        assert!(matches!(tags[1], Lenient::Invalid(_)));
    }

    #[test]
    fn numbers_as_strings_are_accepted() {
        let t: RawTicket =
            serde_json::from_str(r#"{"status": "51", "agent_service_duration": "1.5"}"#).unwrap();
        assert_eq!(t.status, Lenient::Value(51));
        assert_eq!(t.agent_service_duration, Lenient::Value(1.5));
    }
}
