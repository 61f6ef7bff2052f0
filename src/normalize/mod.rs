//! Normalization: one ticket's wire JSON → domain rows ([`catalog`]: a custom field of the
//! catalog; [`messages`]: a message of the conversation). Pure: no I/O, no clock.
//!
//! Epoch values: the API sends milliseconds; a positive value below 10^11 is read as seconds
//! (10^11 ms is March 1973, 10^11 s is the year 5138, so the two ranges cannot be confused).
//! `updated_at = -1` and `closed_at = 0` mean "absent" and become NULL.

pub mod catalog;
pub mod listed;
pub mod messages;

use std::collections::HashMap;
use std::mem::take;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::{
    CommentRow, ContentSource, CustomFieldRow, TagRow, TicketId, TicketRecord, TicketRow, UserRow,
};
pub use crate::feishu::wire::repair_surrogate_escapes;
use crate::feishu::wire::{
    Id, Lenient, OneOrMany, RawComment, RawCustomField, RawTag, RawTicket, RawUser,
};

/// Epoch values below this are seconds, at or above it milliseconds.
pub const SECONDS_EPOCH_LIMIT: i64 = 100_000_000_000;

/// Why a ticket could not be normalized at all (field-level problems are warnings instead).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NormalizeError {
    #[error("the ticket is not a JSON object: {0}")]
    NotAnObject(String),
    #[error("the response is for ticket {found}, not {requested}")]
    IdMismatch { requested: String, found: String },
    #[error("the ticket object has no ticket_id")]
    MissingId,
}

/// A normalized ticket and the field-level problems met on the way (logged by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub record: TicketRecord,
    pub warnings: Vec<String>,
}

/// Normalize the ticket object `raw_json` (the API's `data.ticket`) fetched for `requested`.
pub fn normalize_ticket(
    requested: &TicketId,
    raw_json: &str,
    fetched_at: DateTime<Utc>,
) -> Result<Normalized, NormalizeError> {
    // Lone UTF-16 surrogates are valid JSON text but neither serde nor jsonb take them.
    let raw_json = repair_surrogate_escapes(raw_json);
    let (mut wire, out_of_range) = parse_wire(&raw_json)?;
    let mut n = Normalizer::default();
    if out_of_range > 0 {
        n.warnings.push(format!(
            "{out_of_range} number(s) out of range (such as 1e400) read as NULL; raw keeps them"
        ));
    }
    n.check_id(requested, take(&mut wire.ticket_id))?;
    let ticket = n.ticket_row(
        requested,
        &mut wire,
        sanitize_raw_json(&raw_json),
        fetched_at,
    );
    let agents = n.user_list("agents", take(&mut wire.agents));
    let collaborators = n.user_list("collaborators", take(&mut wire.collaborators));
    let mut ticket = ticket;
    if agents.is_empty() && ticket.agent_entry_time.is_none() {
        clear_agent_durations(&mut ticket);
    }
    let tags = n.tags(wire.tags);
    let custom_fields = n.custom_fields(wire.customized_fields);
    let comments = n.comments(wire.comments);
    let Normalizer {
        users, warnings, ..
    } = n;
    Ok(Normalized {
        record: TicketRecord {
            ticket,
            users: users.into_rows(),
            agents,
            collaborators,
            tags,
            custom_fields,
            comments,
        },
        warnings,
    })
}

/// No agent ever joined: the API sends its agent durations as 0, which would read as "answered
/// at once" and drag medians to zero. They mean "no value", like a 0 timestamp.
fn clear_agent_durations(ticket: &mut TicketRow) {
    let zero = |v: &mut Option<i64>| {
        if *v == Some(0) {
            *v = None;
        }
    };
    zero(&mut ticket.agent_first_response_duration_seconds);
    zero(&mut ticket.bot_service_duration_seconds);
    zero(&mut ticket.agent_resolution_time_seconds);
    zero(&mut ticket.actual_processing_time_seconds);
    if ticket.agent_service_duration_minutes == Some(0.0) {
        ticket.agent_service_duration_minutes = None;
    }
}

/// The ticket object read leniently. Through a Value: duplicate keys resolve last-wins
/// instead of failing the ticket.
fn parse_wire(raw_json: &str) -> Result<(RawTicket, usize), NormalizeError> {
    let (value, out_of_range) = parse_value(raw_json)?;
    if !value.is_object() {
        return Err(NormalizeError::NotAnObject(
            raw_json.chars().take(40).collect(),
        ));
    }
    RawTicket::deserialize(value)
        .map(|t| (t, out_of_range))
        .map_err(|e| NormalizeError::NotAnObject(e.to_string()))
}

/// The longest id stored as a key (a btree entry holds at most ~2.7 KB): a longer user id is
/// left out with a warning rather than failing the ticket.
pub const MAX_KEY_BYTES: usize = 1024;

/// The ticket as a JSON value. A number out of `f64` range (`1e400`, valid JSON) is read as
/// null for normalization (the raw JSON keeps it: jsonb's numeric holds it); up to 100 such.
/// Returns the value and how many numbers were read as null.
fn parse_value(raw_json: &str) -> Result<(serde_json::Value, usize), NormalizeError> {
    let mut text = std::borrow::Cow::Borrowed(raw_json);
    for replaced in 0..100 {
        match serde_json::from_str(&text) {
            Ok(value) => return Ok((value, replaced)),
            Err(e) if e.to_string().starts_with("number out of range") => {
                let Some(end) = byte_offset(&text, e.line(), e.column()) else {
                    return Err(NormalizeError::NotAnObject(e.to_string()));
                };
                let start = text[..end]
                    .rfind(|c: char| !matches!(c, '0'..='9' | '-' | '+' | '.' | 'e' | 'E'))
                    .map_or(0, |i| i + 1);
                let end = end
                    + text[end..]
                        .find(|c: char| !matches!(c, '0'..='9' | '-' | '+' | '.' | 'e' | 'E'))
                        .unwrap_or(text.len() - end);
                let mut repaired = text.into_owned();
                repaired.replace_range(start..end, "null");
                text = std::borrow::Cow::Owned(repaired);
            }
            Err(e) => return Err(NormalizeError::NotAnObject(e.to_string())),
        }
    }
    Err(NormalizeError::NotAnObject(
        "more than 100 numbers out of range".into(),
    ))
}

/// The byte offset of serde_json's 1-based `line` and `column` in `text`.
fn byte_offset(text: &str, line: usize, column: usize) -> Option<usize> {
    let line_start = if line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2)?.0 + 1
    };
    let offset = line_start + column.saturating_sub(1);
    (offset <= text.len() && text.is_char_boundary(offset)).then_some(offset)
}

/// Epoch milliseconds (or seconds below 10^11) → timestamp; zero and negatives mean "absent".
pub fn epoch_to_datetime(value: i64) -> Option<DateTime<Utc>> {
    if value <= 0 {
        None
    } else if value < SECONDS_EPOCH_LIMIT {
        DateTime::from_timestamp(value, 0)
    } else {
        DateTime::from_timestamp_millis(value)
    }
}

/// Postgres text and jsonb cannot hold U+0000; replace it rather than lose the ticket.
fn clean(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// `raw` goes into jsonb, which rejects the escape `\u0000`: rewrite such values.
fn sanitize_raw_json(raw_json: &str) -> String {
    if !raw_json.contains("\\u0000") {
        return raw_json.to_owned();
    }
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => *s = clean(std::mem::take(s)),
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            serde_json::Value::Object(o) => {
                let entries = std::mem::take(o);
                for (k, mut val) in entries {
                    walk(&mut val);
                    o.insert(clean(k), val);
                }
            }
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(raw_json) {
        Ok(mut v) => {
            walk(&mut v);
            v.to_string()
        }
        Err(_) => raw_json.to_owned(),
    }
}

/// Users seen on one ticket, merged by id in first-seen order.
#[derive(Default)]
struct UserSet {
    order: Vec<String>,
    by_id: HashMap<String, UserRow>,
}

impl UserSet {
    fn add(&mut self, user: UserRow) {
        match self.by_id.get_mut(&user.user_id) {
            // The same person in two roles: fill gaps, keep what is already known.
            Some(known) => {
                let UserRow {
                    name,
                    email,
                    avatar_url,
                    department,
                    city,
                    country,
                    ..
                } = user;
                known.name = known.name.take().or(name);
                known.email = known.email.take().or(email);
                known.avatar_url = known.avatar_url.take().or(avatar_url);
                known.department = known.department.take().or(department);
                known.city = known.city.take().or(city);
                known.country = known.country.take().or(country);
            }
            None => {
                self.order.push(user.user_id.clone());
                self.by_id.insert(user.user_id.clone(), user);
            }
        }
    }

    fn into_rows(mut self) -> Vec<UserRow> {
        self.order
            .iter()
            .filter_map(|id| self.by_id.remove(id))
            .collect()
    }
}

#[derive(Default)]
struct Normalizer {
    users: UserSet,
    warnings: Vec<String>,
}

impl Normalizer {
    /// No id, or another ticket's: never let such a body replace the stored ticket.
    fn check_id(&mut self, requested: &TicketId, id: Lenient<Id>) -> Result<(), NormalizeError> {
        match self.take("ticket_id", id) {
            Some(Id(found)) if found == requested.as_str() => Ok(()),
            Some(Id(found)) => Err(NormalizeError::IdMismatch {
                requested: requested.to_string(),
                found,
            }),
            None => Err(NormalizeError::MissingId),
        }
    }

    /// The `tickets` row; the guest, owner and closer are recorded as users on the way.
    fn ticket_row(
        &mut self,
        requested: &TicketId,
        wire: &mut RawTicket,
        raw: String,
        fetched_at: DateTime<Utc>,
    ) -> TicketRow {
        let n = self;
        let guest_id = n.user("guest", take(&mut wire.guest));
        let agent_owner_id = n.user("agent_owner", take(&mut wire.agent_owner));
        let closed_by_id = n.user("closed_by", take(&mut wire.closed_by));
        let reason = n.take(
            "dissatisfaction_reason",
            take(&mut wire.dissatisfaction_reason),
        );
        let (zh_cn, en_us, ja_jp) = match reason {
            Some(r) => (
                n.text("dissatisfaction_reason.zh_cn", r.zh_cn),
                n.text("dissatisfaction_reason.en_us", r.en_us),
                n.text("dissatisfaction_reason.ja_jp", r.ja_jp),
            ),
            None => (None, None, None),
        };
        TicketRow {
            ticket_id: requested.clone(),
            helpdesk_id: n
                .take("helpdesk_id", take(&mut wire.helpdesk_id))
                .map(|Id(s)| clean(s)),
            guest_id,
            ticket_type: n.small("ticket_type", take(&mut wire.ticket_type)),
            status: n.small("status", take(&mut wire.status)),
            score: n.small("score", take(&mut wire.score)),
            channel: n.small("channel", take(&mut wire.channel)),
            solve: n.small("solve", take(&mut wire.solve)),
            created_at: n.epoch("created_at", take(&mut wire.created_at)),
            updated_at: n.epoch("updated_at", take(&mut wire.updated_at)),
            closed_at: n.epoch("closed_at", take(&mut wire.closed_at)),
            closed_by_id,
            agent_owner_id,
            dissatisfaction_reason_zh_cn: zh_cn,
            dissatisfaction_reason_en_us: en_us,
            dissatisfaction_reason_ja_jp: ja_jp,
            agent_service_duration_minutes: n.take(
                "agent_service_duration",
                take(&mut wire.agent_service_duration),
            ),
            agent_first_response_duration_seconds: n.take(
                "agent_first_response_duration",
                take(&mut wire.agent_first_response_duration),
            ),
            bot_service_duration_seconds: n
                .take("bot_service_duration", take(&mut wire.bot_service_duration)),
            agent_resolution_time_seconds: n.take(
                "agent_resolution_time",
                take(&mut wire.agent_resolution_time),
            ),
            actual_processing_time_seconds: n.take(
                "actual_processing_time",
                take(&mut wire.actual_processing_time),
            ),
            agent_entry_time: n.epoch("agent_entry_time", take(&mut wire.agent_entry_time)),
            agent_first_response_time: n.epoch(
                "agent_first_response_time",
                take(&mut wire.agent_first_response_time),
            ),
            agent_last_response_time: n.epoch(
                "agent_last_response_time",
                take(&mut wire.agent_last_response_time),
            ),
            raw,
            fetched_at,
            content_source: ContentSource::Detail,
            list_raw: None,
        }
    }

    fn take<T>(&mut self, field: &str, value: Lenient<T>) -> Option<T> {
        match value {
            Lenient::Value(v) => Some(v),
            Lenient::Absent => None,
            Lenient::Invalid(problem) => {
                self.warnings
                    .push(format!("{field}: {problem}; stored NULL"));
                None
            }
        }
    }

    fn text(&mut self, field: &str, value: Lenient<String>) -> Option<String> {
        self.take(field, value).map(clean)
    }

    fn small(&mut self, field: &str, value: Lenient<i64>) -> Option<i16> {
        let v = self.take(field, value)?;
        match i16::try_from(v) {
            Ok(s) => Some(s),
            Err(_) => {
                self.warnings.push(format!(
                    "{field}: {v} is out of range for a code; stored NULL"
                ));
                None
            }
        }
    }

    fn epoch(&mut self, field: &str, value: Lenient<i64>) -> Option<DateTime<Utc>> {
        let v = self.take(field, value)?;
        let at = epoch_to_datetime(v);
        if at.is_none() && v > 0 {
            self.warnings.push(format!(
                "{field}: {v} is not a usable epoch time; stored NULL"
            ));
        }
        at
    }

    fn bigint_id(&mut self, field: &str, value: Lenient<Id>) -> Option<i64> {
        let Id(text) = self.take(field, value)?;
        match text.parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                self.warnings.push(format!(
                    "{field}: {text:?} does not fit a bigint; stored NULL"
                ));
                None
            }
        }
    }

    /// Records the user and returns their id (None when the object has no usable id).
    fn user(&mut self, field: &str, value: Lenient<RawUser>) -> Option<String> {
        let raw = self.take(field, value)?;
        self.user_row(field, raw)
    }

    fn user_row(&mut self, field: &str, raw: RawUser) -> Option<String> {
        let Some(Id(user_id)) = self.take(&format!("{field}.id"), raw.id) else {
            self.warnings
                .push(format!("{field}: a user without an id; not stored"));
            return None;
        };
        let user_id = clean(user_id);
        if user_id.len() > MAX_KEY_BYTES {
            self.warnings.push(format!(
                "{field}.id: {} bytes, longer than any key can be ({MAX_KEY_BYTES}); user not stored",
                user_id.len()
            ));
            return None;
        }
        let row = UserRow {
            user_id: user_id.clone(),
            name: self.text(&format!("{field}.name"), raw.name),
            email: self.text(&format!("{field}.email"), raw.email),
            avatar_url: self.text(&format!("{field}.avatar_url"), raw.avatar_url),
            department: self.text(&format!("{field}.department"), raw.department),
            city: self.text(&format!("{field}.city"), raw.city),
            country: self.text(&format!("{field}.country"), raw.country),
        };
        self.users.add(row);
        Some(user_id)
    }

    /// Ids of a user list in order, duplicates dropped.
    fn user_list(&mut self, field: &str, value: Lenient<Vec<Lenient<RawUser>>>) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for (i, item) in self
            .take(field, value)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let label = format!("{field}[{i}]");
            if let Some(raw) = self.take(&label, item)
                && let Some(id) = self.user_row(&label, raw)
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        ids
    }

    fn tags(&mut self, value: Lenient<Vec<Lenient<RawTag>>>) -> Vec<TagRow> {
        let mut tags: Vec<TagRow> = Vec::new();
        for (i, item) in self
            .take("tags", value)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let label = format!("tags[{i}]");
            let Some(raw) = self.take(&label, item) else {
                continue;
            };
            let Some(Id(tag_id)) = self.take(&format!("{label}.id"), raw.id) else {
                self.warnings
                    .push(format!("{label}: a tag without an id; not stored"));
                continue;
            };
            let name = self.text(&format!("{label}.name"), raw.name);
            if !tags.iter().any(|t| t.tag_id == tag_id) {
                tags.push(TagRow {
                    tag_id: clean(tag_id),
                    name,
                });
            }
        }
        tags
    }

    fn custom_fields(
        &mut self,
        value: Lenient<Vec<Lenient<RawCustomField>>>,
    ) -> Vec<CustomFieldRow> {
        let mut fields: Vec<CustomFieldRow> = Vec::new();
        let items = self.take("customized_fields", value).unwrap_or_default();
        for (i, item) in items.into_iter().enumerate() {
            let label = format!("customized_fields[{i}]");
            let Some(raw) = self.take(&label, item) else {
                continue;
            };
            let Some(Id(field_id)) = self.take(&format!("{label}.id"), raw.id) else {
                self.warnings
                    .push(format!("{label}: a custom field without an id; not stored"));
                continue;
            };
            if field_id.len() > MAX_KEY_BYTES {
                self.warnings.push(format!(
                    "{label}.id: {} bytes, longer than any key can be ({MAX_KEY_BYTES}); field not stored",
                    field_id.len()
                ));
                continue;
            }
            let position = self
                .take(&format!("{label}.position"), raw.position)
                .and_then(|p| i32::try_from(p).ok());
            let row = CustomFieldRow {
                field_id: clean(field_id),
                key_name: self.text(&format!("{label}.key_name"), raw.key_name),
                display_name: self.text(&format!("{label}.display_name"), raw.display_name),
                value: self.text(&format!("{label}.value"), raw.value),
                position,
                required: self.take(&format!("{label}.required"), raw.required),
                editable: self.take(&format!("{label}.editable"), raw.editable),
            };
            if !fields.iter().any(|f| f.field_id == row.field_id) {
                fields.push(row);
            }
        }
        fields
    }

    fn comments(&mut self, value: Lenient<OneOrMany<RawComment>>) -> Vec<CommentRow> {
        let OneOrMany(items) = self.take("comments", value).unwrap_or_default();
        let mut rows = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let label = format!("comments[{i}]");
            let Some(raw) = self.take(&label, item) else {
                continue;
            };
            rows.push(CommentRow {
                ordinal: rows.len() as i32,
                comment_id: self.bigint_id(&format!("{label}.id"), raw.id),
                content: self.text(&format!("{label}.content"), raw.content),
                created_at: self.epoch(&format!("{label}.created_at"), raw.created_at),
                user_id: self.bigint_id(&format!("{label}.user_id"), raw.user_id),
                user_name: self.text(&format!("{label}.user_name"), raw.user_name),
                user_avatar_url: self
                    .text(&format!("{label}.user_avatar_url"), raw.user_avatar_url),
            });
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const SEED: &str = include_str!("../../tests/fixtures/seed_ticket_detail.json");

    /// The seed's example response, taken apart by the client's own response parser.
    fn seed_ticket_json() -> String {
        crate::feishu::parse::parse_ticket_response(
            200,
            &reqwest::header::HeaderMap::new(),
            SEED.as_bytes(),
        )
        .unwrap()
    }

    fn id(s: &str) -> TicketId {
        TicketId::parse(s).unwrap()
    }

    fn at(ms: i64) -> Option<DateTime<Utc>> {
        Some(Utc.timestamp_millis_opt(ms).unwrap())
    }

    #[test]
    fn seed_example_field_by_field() {
        let raw = seed_ticket_json();
        let fetched = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
        let n = normalize_ticket(&id("6626871355780366331"), &raw, fetched).unwrap();
        assert!(n.warnings.is_empty(), "{:?}", n.warnings);
        let t = &n.record.ticket;
        let user = "ou_37019b7c830210acd88fdce886e25c71";
        assert_eq!(t.ticket_id.as_str(), "6626871355780366331");
        assert_eq!(t.helpdesk_id.as_deref(), Some("6626871355780366330"));
        assert_eq!(t.guest_id.as_deref(), Some(user));
        assert_eq!(t.ticket_type, Some(1));
        assert_eq!(t.status, Some(50));
        assert_eq!(t.score, Some(1));
        assert_eq!(t.channel, Some(0));
        assert_eq!(t.solve, Some(1));
        assert_eq!(t.created_at, at(1616920429000));
        assert_eq!(t.updated_at, at(1616920429000));
        assert_eq!(t.closed_at, at(1616920429000));
        assert_eq!(t.closed_by_id.as_deref(), Some(user));
        assert_eq!(t.agent_owner_id.as_deref(), Some(user));
        assert_eq!(
            t.dissatisfaction_reason_zh_cn.as_deref(),
            Some("答案看不懂")
        );
        assert_eq!(
            t.dissatisfaction_reason_en_us.as_deref(),
            Some("I don't understand")
        );
        assert_eq!(
            t.dissatisfaction_reason_ja_jp.as_deref(),
            Some("回答が複雑すぎる")
        );
        assert_eq!(t.agent_service_duration_minutes, Some(42624.95));
        assert_eq!(t.agent_first_response_duration_seconds, Some(123869));
        assert_eq!(t.bot_service_duration_seconds, Some(1));
        assert_eq!(t.agent_resolution_time_seconds, Some(66));
        assert_eq!(t.actual_processing_time_seconds, Some(68));
        assert_eq!(t.agent_entry_time, at(1636444596000));
        assert_eq!(t.agent_first_response_time, at(1636444696000));
        assert_eq!(t.agent_last_response_time, at(1636444796000));
        assert_eq!(t.fetched_at, fetched);
        assert_eq!(t.raw, raw);

        // The same person is guest, agent, collaborator, closer and owner: one user row.
        assert_eq!(
            n.record.users,
            vec![UserRow {
                user_id: user.into(),
                name: Some("abc".into()),
                email: Some("xxxx@abc.com".into()),
                avatar_url: Some("https://xxxx".into()),
                department: Some("用户部门名称(有权限才展示)".into()),
                city: Some("城市".into()),
                country: Some("国家".into()),
            }]
        );
        assert_eq!(n.record.agents, vec![user.to_owned()]);
        assert_eq!(n.record.collaborators, vec![user.to_owned()]);
        assert_eq!(
            n.record.tags,
            vec![TagRow {
                tag_id: "7474857595946745884".into(),
                name: Some("标签名称".into())
            }]
        );
        assert_eq!(
            n.record.custom_fields,
            vec![CustomFieldRow {
                field_id: "123".into(),
                key_name: Some("key".into()),
                display_name: Some("display name".into()),
                value: Some("value".into()),
                position: Some(1),
                required: Some(true),
                editable: Some(true),
            }]
        );
        assert_eq!(
            n.record.comments,
            vec![CommentRow {
                ordinal: 0,
                comment_id: Some(12),
                content: Some("备注内容".into()),
                created_at: at(1690970837624),
                // Above 2^53: exact only because it never passed through f64.
                user_id: Some(7262656095919128578),
                user_name: Some("备注人姓名".into()),
                user_avatar_url: Some("备注人头像".into()),
            }]
        );
        assert!(!n.record.is_open());
    }

    #[test]
    fn a_body_without_ticket_id_is_rejected_not_stored_blank() {
        for body in [
            r#"{}"#,
            r#"{"status": 2}"#,
            r#"{"ticket_id": null}"#,
            r#"{"ticket_id": [1]}"#,
        ] {
            assert_eq!(
                normalize_ticket(&id("1"), body, Utc::now()),
                Err(NormalizeError::MissingId),
                "{body}"
            );
        }
    }

    #[test]
    fn numbers_out_of_range_nul_ids_and_huge_user_ids_do_not_fail_a_ticket() {
        let id = TicketId::parse("1").unwrap();
        let long = "u".repeat(3000);
        let raw = format!(
            r#"{{"ticket_id":"1","helpdesk_id":"66\u000026","score":1e400,
                "x":[-2.5E+999],"guest":{{"id":"{long}","name":"g"}},"status":50}}"#
        );
        let n = normalize_ticket(&id, &raw, Utc::now()).unwrap();
        let t = &n.record.ticket;
        assert_eq!(t.helpdesk_id.as_deref(), Some("66\u{FFFD}26"));
        assert_eq!(t.score, None);
        assert_eq!(t.status, Some(50));
        assert_eq!(t.guest_id, None);
        assert!(n.record.users.is_empty());
        assert!(
            n.warnings
                .iter()
                .any(|w| w.contains("2 number(s) out of range"))
        );
        assert!(
            n.warnings
                .iter()
                .any(|w| w.contains("guest.id: 3000 bytes"))
        );
    }

    #[test]
    fn lone_surrogates_and_duplicate_keys_do_not_poison_a_ticket() {
        let body = r#"{"ticket_id":"1","status":2,"status":3,"guest":{"id":"ou_a","name":"x\ud800y"},
                      "extra":"\udc00","pair":"\ud83d\ude00","escaped":"\\ud800"}"#;
        let n = normalize_ticket(&id("1"), body, Utc::now()).unwrap();
        assert_eq!(n.record.ticket.status, Some(3));
        assert_eq!(n.record.users[0].name.as_deref(), Some("x\u{FFFD}y"));
        let raw: serde_json::Value = serde_json::from_str(&n.record.ticket.raw).unwrap();
        assert_eq!(raw["extra"], "\u{FFFD}");
        assert_eq!(raw["pair"], "😀");
        assert_eq!(raw["escaped"], "\\ud800");
    }

    #[test]
    fn updated_at_minus_one_and_closed_at_zero_are_null() {
        let n = normalize_ticket(
            &id("1"),
            r#"{"ticket_id":"1","updated_at":-1,"closed_at":0,"status":2}"#,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(n.record.ticket.updated_at, None);
        assert_eq!(n.record.ticket.closed_at, None);
        assert!(n.warnings.is_empty());
        assert!(n.record.is_open());
    }

    #[test]
    fn epoch_seconds_are_recognised() {
        assert_eq!(epoch_to_datetime(1616920429), at(1616920429000));
        assert_eq!(epoch_to_datetime(1616920429000), at(1616920429000));
        assert_eq!(epoch_to_datetime(-1), None);
        assert_eq!(epoch_to_datetime(0), None);
    }

    #[test]
    fn missing_arrays_give_empty_children() {
        let n = normalize_ticket(&id("1"), r#"{"ticket_id":"1"}"#, Utc::now()).unwrap();
        let r = &n.record;
        assert!(r.agents.is_empty() && r.collaborators.is_empty() && r.tags.is_empty());
        assert!(r.custom_fields.is_empty() && r.comments.is_empty() && r.users.is_empty());
        assert_eq!(r.ticket.guest_id, None);
    }

    #[test]
    fn comments_as_list_keep_order_and_exact_ids() {
        let n = normalize_ticket(
            &id("1"),
            r#"{"ticket_id":"1","comments":[{"id":7262656095919128579,"user_id":"7262656095919128578","content":"a"},
                           {"id":2,"content":"b"}]}"#,
            Utc::now(),
        )
        .unwrap();
        let c = &n.record.comments;
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].comment_id, Some(7262656095919128579));
        assert_eq!(c[0].user_id, Some(7262656095919128578));
        assert_eq!(c[1].ordinal, 1);
        assert_eq!(c[1].content.as_deref(), Some("b"));
    }

    #[test]
    fn duplicates_in_lists_are_dropped() {
        let n = normalize_ticket(
            &id("1"),
            r#"{"ticket_id":"1","agents":[{"id":"ou_a"},{"id":"ou_b","name":"B"},{"id":"ou_a"}],
                "tags":[{"id":"t1","name":"x"},{"id":"t1","name":"x"}],
                "customized_fields":[{"id":"f","value":"1"},{"id":"f","value":"2"}]}"#,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(n.record.agents, vec!["ou_a".to_owned(), "ou_b".to_owned()]);
        assert_eq!(n.record.tags.len(), 1);
        assert_eq!(n.record.custom_fields.len(), 1);
        assert_eq!(n.record.users.len(), 2);
    }

    #[test]
    fn wrong_types_become_warnings_not_failures() {
        let n = normalize_ticket(
            &id("1"),
            r#"{"ticket_id":1,"status":"closed","created_at":{"x":1},"agents":[{"name":"no id"}, 42],
                "comments":[{"user_id": 99999999999999999999}], "score": 70000}"#,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(n.record.ticket.status, None);
        assert_eq!(n.record.ticket.created_at, None);
        assert_eq!(n.record.ticket.score, None);
        assert!(n.record.agents.is_empty());
        assert_eq!(n.record.comments[0].user_id, None);
        let text = n.warnings.join("\n");
        for field in [
            "status",
            "created_at",
            "agents[0]",
            "agents[1]",
            "comments[0].user_id",
            "score",
        ] {
            assert!(text.contains(field), "no warning for {field}: {text}");
        }
    }

    #[test]
    fn mismatched_or_non_object_ticket_is_an_error() {
        assert!(matches!(
            normalize_ticket(&id("1"), r#"{"ticket_id":"2"}"#, Utc::now()),
            Err(NormalizeError::IdMismatch { .. })
        ));
        assert!(matches!(
            normalize_ticket(&id("1"), r#"[1,2]"#, Utc::now()),
            Err(NormalizeError::NotAnObject(_))
        ));
    }

    #[test]
    fn nul_characters_are_replaced_for_postgres() {
        let n = normalize_ticket(
            &id("1"),
            r#"{"ticket_id":"1","guest":{"id":"ou_a","name":"a\u0000b"}}"#,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(n.record.users[0].name.as_deref(), Some("a\u{FFFD}b"));
        assert!(!n.record.ticket.raw.contains("\\u0000"));
    }
}
