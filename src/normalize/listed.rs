//! List rows: turning a listed ticket into stored content, and checking it against the detail.
//!
//! A list row carries every field of the detail but `tags` (the list's docs), which is not
//! proof. So a row is laid over the last stored content field by field: a field the row lacks,
//! or one list rows were found to get wrong, keeps the stored (detail's) value; `tags` always do.
//! When the detail of the same `updated_at` arrives, [`compare_with_detail`] checks every field
//! the detail has.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{NormalizeError, Normalized, normalize_ticket};
use crate::domain::{ContentSource, FieldCheck, ListTrust, TicketId, VERSION_FIELD};

/// The list row `list_row` laid over `stored` (the ticket's stored content, if any): the fields
/// `trust` takes come from the row, every other field stays as stored.
pub fn merge_list_row(
    list_row: &str,
    stored: Option<&str>,
    trust: &ListTrust,
) -> Result<String, NormalizeError> {
    let Value::Object(row) = parse(list_row)? else {
        return Err(NormalizeError::NotAnObject(
            list_row.chars().take(80).collect(),
        ));
    };
    let mut merged = match stored.map(parse).transpose()? {
        Some(Value::Object(stored)) => stored,
        _ => Map::new(),
    };
    for (field, value) in row {
        if trust.takes(&field) {
            merged.insert(field, value);
        }
    }
    Ok(Value::Object(merged).to_string())
}

/// Normalizes a list row merged over the stored content (see [`merge_list_row`]).
pub fn normalize_list_row(
    requested: &TicketId,
    list_row: &str,
    stored: Option<&str>,
    trust: &ListTrust,
    listed_at: DateTime<Utc>,
) -> Result<Normalized, NormalizeError> {
    let merged = merge_list_row(list_row, stored, trust)?;
    let mut normalized = normalize_ticket(requested, &merged, listed_at)?;
    normalized.record.ticket.content_source = ContentSource::List;
    // Over nothing stored, the merged content is the row itself (tags aside, which are never
    // compared): `raw` serves as the row, no second copy.
    normalized.record.ticket.list_raw = stored.map(|_| list_row.to_owned());
    Ok(normalized)
}

/// Compares a list row with the detail of the same `updated_at`, field by field: every
/// top-level field the detail has, `tags` (never in list rows) and `updated_at` excepted: the
/// version stamp is what pairs a row with its detail, through the list's learned clock
/// offset, so on a list clock it differs from the detail's by that offset (compared, it was
/// distrusted and list rows kept the stored detail's stamp). Values compare by meaning (a
/// number and the same number as text agree; lists agree in any order).
pub fn compare_with_detail(
    list_row: &str,
    detail: &str,
) -> Result<Vec<(String, FieldCheck)>, NormalizeError> {
    let (Value::Object(row), Value::Object(detail)) = (parse(list_row)?, parse(detail)?) else {
        return Err(NormalizeError::NotAnObject("list row or detail".into()));
    };
    let mut checks = Vec::new();
    for (field, truth) in detail {
        if field == "tags" || field == VERSION_FIELD {
            continue;
        }
        let check = match row.get(&field) {
            None if truth.is_null() => continue,
            None => FieldCheck::Missing,
            Some(listed) if canonical(listed) == canonical(&truth) => FieldCheck::Agreed,
            Some(_) => FieldCheck::Differed,
        };
        checks.push((field, check));
    }
    Ok(checks)
}

fn parse(json: &str) -> Result<Value, NormalizeError> {
    serde_json::from_str(json).map_err(|e| NormalizeError::NotAnObject(e.to_string()))
}

/// A value in a form where equal meaning is equal value: numbers as text, lists sorted.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(canonical).collect();
            items.sort_by_cached_key(|v| v.to_string());
            Value::Array(items)
        }
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), canonical(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trust(distrusted: &[&str]) -> ListTrust {
        ListTrust {
            distrusted: distrusted.iter().map(|s| s.to_string()).collect(),
            ..ListTrust::default()
        }
    }

    #[test]
    fn a_row_keeps_stored_tags_and_fields_it_lacks_or_is_not_trusted_for() {
        let stored = json!({"ticket_id": "1", "status": 1, "score": 3, "channel": 2,
                            "tags": [{"id": "t", "name": "vip"}]})
        .to_string();
        let row = json!({"ticket_id": "1", "status": 50, "score": 5, "tags": []}).to_string();
        let merged: Value =
            serde_json::from_str(&merge_list_row(&row, Some(&stored), &trust(&["score"])).unwrap())
                .unwrap();
        assert_eq!(
            merged,
            json!({"ticket_id": "1", "status": 50, "score": 3, "channel": 2,
                   "tags": [{"id": "t", "name": "vip"}]})
        );
        let fresh: Value =
            serde_json::from_str(&merge_list_row(&row, None, &trust(&[])).unwrap()).unwrap();
        assert_eq!(fresh, json!({"ticket_id": "1", "status": 50, "score": 5}));
    }

    /// The version stamp pairs a row with its detail (through the list's clock offset): it is
    /// never compared, and a row's own is taken even where an older build distrusted it.
    #[test]
    fn the_version_stamp_is_never_compared_and_always_the_rows_own() {
        let detail = json!({"ticket_id": "1", "status": 2, "updated_at": 1_000}).to_string();
        let row = json!({"ticket_id": "1", "status": 2, "updated_at": 61_000}).to_string();
        let checks = compare_with_detail(&row, &detail).unwrap();
        assert_eq!(
            checks,
            vec![
                ("status".to_owned(), FieldCheck::Agreed),
                ("ticket_id".to_owned(), FieldCheck::Agreed)
            ]
        );
        let merged: Value = serde_json::from_str(
            &merge_list_row(&row, Some(&detail), &trust(&["updated_at"])).unwrap(),
        )
        .unwrap();
        assert_eq!(merged["updated_at"], json!(61_000));
    }

    #[test]
    fn the_seed_example_normalizes_from_a_list_row_without_tags() {
        let detail = crate::feishu::parse::parse_ticket_response(
            200,
            &reqwest::header::HeaderMap::new(),
            include_bytes!("../../tests/fixtures/seed_ticket_detail.json"),
        )
        .unwrap();
        let detail = detail.as_str();
        let mut row: Value = serde_json::from_str(detail).unwrap();
        row.as_object_mut().unwrap().remove("tags");
        let id = TicketId::parse(row["ticket_id"].as_str().unwrap()).unwrap();
        let listed = normalize_list_row(&id, &row.to_string(), None, &trust(&[]), Utc::now())
            .unwrap()
            .record;
        let from_detail = normalize_ticket(&id, detail, Utc::now()).unwrap().record;
        assert_eq!(listed.ticket.content_source, ContentSource::List);
        assert!(listed.tags.is_empty());
        assert_eq!(listed.ticket.status, from_detail.ticket.status);
        assert_eq!(listed.agents, from_detail.agents);
        assert_eq!(listed.custom_fields, from_detail.custom_fields);
        assert_eq!(listed.comments, from_detail.comments);
        // Every field but tags agrees with the detail.
        let checks = compare_with_detail(&row.to_string(), detail).unwrap();
        assert!(!checks.is_empty());
        assert!(
            checks
                .iter()
                .all(|(f, c)| *c == FieldCheck::Agreed && f != "tags")
        );
    }

    /// The list fuzz target's seeds (hostile list answers) hold its properties here too.
    #[test]
    fn the_list_fuzz_seeds_parse_merge_and_compare_without_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/list");
        let stored = json!({"ticket_id": "1", "status": 1, "tags": [{"id": "1", "name": "vip"}]})
            .to_string();
        let mut rows = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let body = std::fs::read(entry.unwrap().path()).unwrap();
            let headers = reqwest::header::HeaderMap::new();
            let Ok(page) = crate::feishu::parse::parse_list_response(200, &headers, &body) else {
                continue;
            };
            for row in &page.tickets {
                rows += 1;
                if let Ok(merged) = merge_list_row(&row.raw, Some(&stored), &trust(&[])) {
                    let value: Value = serde_json::from_str(&merged).unwrap();
                    assert_eq!(value["tags"][0]["name"], "vip");
                }
                if let Ok(id) = TicketId::parse(&row.ticket_id) {
                    let _ =
                        normalize_list_row(&id, &row.raw, Some(&stored), &trust(&[]), Utc::now());
                }
                let _ = compare_with_detail(&row.raw, &stored);
            }
        }
        assert!(rows >= 5, "the seeds list tickets: {rows}");
    }

    #[test]
    fn comparison_by_meaning() {
        let detail = json!({"ticket_id": "7", "score": 4, "agents": [{"id": "a"}, {"id": "b"}],
                            "channel": 1, "solve": null, "closed_by": {"id": "x"}, "tags": [1]});
        let row = json!({"ticket_id": 7, "score": "5", "agents": [{"id": "b"}, {"id": "a"}],
                         "closed_by": {"id": "x"}});
        let checks = compare_with_detail(&row.to_string(), &detail.to_string()).unwrap();
        let get = |f: &str| checks.iter().find(|(k, _)| k == f).map(|(_, c)| *c);
        assert_eq!(get("ticket_id"), Some(FieldCheck::Agreed));
        assert_eq!(get("score"), Some(FieldCheck::Differed));
        assert_eq!(get("agents"), Some(FieldCheck::Agreed));
        assert_eq!(get("channel"), Some(FieldCheck::Missing));
        assert_eq!(get("closed_by"), Some(FieldCheck::Agreed));
        assert_eq!(
            get("solve"),
            None,
            "null in the detail and absent in the row"
        );
        assert_eq!(get("tags"), None);
    }
}
