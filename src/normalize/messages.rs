//! One message of a ticket's conversation: its wire JSON → a [`MessageRow`], with plain text
//! derived from the content where the message type allows (text, post).

use serde::Deserialize;
use serde_json::Value;

use super::{Normalizer, clean, repair_surrogate_escapes, sanitize_raw_json};
use crate::domain::MessageRow;
use crate::feishu::wire::{Id, RawContent, RawMessage};

/// Why a message could not be read at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    #[error("the message is not a JSON object: {0}")]
    NotAnObject(String),
    #[error("the message has no id")]
    MissingId,
}

/// A message and the field-level problems met on the way (logged by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedMessage {
    pub row: MessageRow,
    pub warnings: Vec<String>,
}

/// Normalizes one message (`data.messages[]`).
pub fn normalize_message(raw_json: &str) -> Result<NormalizedMessage, MessageError> {
    let raw_json = repair_surrogate_escapes(raw_json);
    let value: Value =
        serde_json::from_str(&raw_json).map_err(|e| MessageError::NotAnObject(e.to_string()))?;
    if !value.is_object() {
        return Err(MessageError::NotAnObject(
            raw_json.chars().take(40).collect(),
        ));
    }
    let wire =
        RawMessage::deserialize(value).map_err(|e| MessageError::NotAnObject(e.to_string()))?;
    let mut n = Normalizer::default();
    let Some(Id(message_id)) = n.take("id", wire.id) else {
        return Err(MessageError::MissingId);
    };
    let message_type = n.text("message_type", wire.message_type);
    let content = n
        .take("content", wire.content)
        .map(|RawContent(c)| clean(c));
    let content_text = content
        .as_deref()
        .and_then(|c| plain_text(message_type.as_deref(), c));
    let row = MessageRow {
        message_id: clean(message_id),
        chat_message_id: n.take("message_id", wire.message_id).map(|Id(s)| clean(s)),
        message_type,
        created_at: n.epoch("created_at", wire.created_at),
        content,
        content_text,
        sender_id: n.take("user_id", wire.user_id).map(|Id(s)| clean(s)),
        sender_name: n.text("user_name", wire.user_name),
        sender_avatar_url: n.text("avatar_url", wire.avatar_url),
        raw: sanitize_raw_json(&raw_json),
    };
    Ok(NormalizedMessage {
        row,
        warnings: n.warnings,
    })
}

/// Plain text of a message's content: a text message's `text`; a post's text elements (`text`
/// and link `a` tags), lines joined by newlines; content that is not JSON, as it is. None for
/// images, files and cards without text.
pub fn plain_text(message_type: Option<&str>, content: &str) -> Option<String> {
    let parsed: Value = match serde_json::from_str(content) {
        Ok(v) => v,
        // Not JSON: a plain text message as it is (unless the type says it is not text).
        Err(_) => {
            return matches!(message_type, None | Some("text"))
                .then(|| content.to_owned())
                .filter(|t| !t.trim().is_empty());
        }
    };
    let text = match &parsed {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => match o.get("text").and_then(Value::as_str) {
            Some(t) => Some(t.to_owned()),
            None => post_text(&parsed),
        },
        _ => None,
    };
    text.filter(|t| !t.trim().is_empty())
}

/// A post: `{"title": ..., "content": [[{"tag": "text", "text": ...}, ...], ...]}`, possibly
/// under a locale key (`{"zh_cn": {...}}`).
fn post_text(post: &Value) -> Option<String> {
    let body = match post.get("content") {
        Some(_) => post,
        None => post
            .as_object()?
            .values()
            .find(|v| v.get("content").is_some())?,
    };
    let mut lines: Vec<String> = Vec::new();
    if let Some(title) = body
        .get("title")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        lines.push(title.to_owned());
    }
    for paragraph in body.get("content")?.as_array()? {
        let line: String = paragraph
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| matches!(e.get("tag").and_then(Value::as_str), Some("text" | "a")))
            .filter_map(|e| e.get("text").and_then(Value::as_str))
            .collect();
        if !line.is_empty() {
            lines.push(line);
        }
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_post_contents_become_plain_text() {
        assert_eq!(
            plain_text(Some("text"), r#"{"text":"hello there"}"#).as_deref(),
            Some("hello there")
        );
        assert_eq!(
            plain_text(Some("text"), "just text").as_deref(),
            Some("just text")
        );
        let post = r##"{"title":"Refund","content":[[{"tag":"text","text":"Order "},
            {"tag":"a","text":"#123","href":"https://x"}],[{"tag":"img","image_key":"k"}],
            [{"tag":"text","text":"thanks"}]]}"##;
        assert_eq!(
            plain_text(Some("post"), post).as_deref(),
            Some("Refund\nOrder #123\nthanks")
        );
        let localized = r#"{"zh_cn":{"title":"","content":[[{"tag":"text","text":"你好"}]]}}"#;
        assert_eq!(plain_text(Some("post"), localized).as_deref(), Some("你好"));
        assert_eq!(plain_text(Some("image"), r#"{"image_key":"img_1"}"#), None);
        assert_eq!(plain_text(Some("image"), "img_1"), None);
    }

    #[test]
    fn a_message_keeps_its_content_as_sent_and_ids_exact() {
        let raw = r#"{"id": 7262656095919128578, "message_id": "om_1", "message_type": "post",
            "created_at": 1690970837624, "content": {"title":"t","content":[[{"tag":"text","text":"x"}]]},
            "user_name": "Gina", "avatar_url": "https://a", "user_id": "ou_gina"}"#;
        let m = normalize_message(raw).unwrap();
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        let r = m.row;
        assert_eq!(r.message_id, "7262656095919128578");
        assert_eq!(r.created_at.unwrap().timestamp_millis(), 1690970837624);
        assert_eq!(
            r.content.as_deref(),
            Some(r#"{"content":[[{"tag":"text","text":"x"}]],"title":"t"}"#)
        );
        assert_eq!(r.content_text.as_deref(), Some("t\nx"));
        // Seconds are read as seconds.
        let s = normalize_message(r#"{"id": "1", "created_at": 1690970837}"#).unwrap();
        assert_eq!(s.row.created_at.unwrap().timestamp(), 1690970837);
        assert_eq!(
            normalize_message(r#"{"content": "x"}"#),
            Err(MessageError::MissingId)
        );
    }
}
