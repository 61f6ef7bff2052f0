//! Webhook events (`POST [events] path` on the `[http]` listener): URL verification, signature
//! check on the raw body, AES-256-CBC decryption, replay and duplicate rejection, and the
//! ticket events that enqueue a ticket with top priority and wake the worker.
//!
//! Modules: this file reads a delivery ([`verify_and_parse`], pure, unit-tested without a
//! server); [`crypto`] holds the signature and the cipher (the simulator uses [`encrypt`] and
//! [`signature`] to send events the way Feishu does); [`endpoint`] is the HTTP handler.

pub mod crypto;
pub mod endpoint;

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::Value;

pub use crate::domain::EventKeys;
use crate::domain::TicketId;
use crypto::same;
pub use crypto::{decrypt, encrypt, signature};
pub use endpoint::{EventState, receive};

pub const TICKET_CREATED: &str = "helpdesk.ticket.created_v1";
pub const TICKET_UPDATED: &str = "helpdesk.ticket.updated_v1";
/// A new message in a ticket's conversation.
pub const TICKET_MESSAGE_CREATED: &str = "helpdesk.ticket_message.created_v1";

/// Events older (or further in the future) than this are replays.
pub const MAX_AGE: chrono::Duration = chrono::Duration::minutes(5);

/// Bodies above this are refused (413) by the route's body limit, before they are read whole.
pub const MAX_BODY_BYTES: usize = 1 << 20;

const HEADER_TIMESTAMP: &str = "x-lark-request-timestamp";
const HEADER_NONCE: &str = "x-lark-request-nonce";
const HEADER_SIGNATURE: &str = "x-lark-signature";

/// A verified, decoded event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `url_verification`: answer with the challenge.
    Challenge(String),
    /// A ticket was created or updated.
    Ticket {
        event_id: String,
        event_type: String,
        ticket_id: TicketId,
        /// The ticket's update (or creation) time as the event states it, when it does.
        updated_at: Option<DateTime<Utc>>,
        /// The helpdesk the ticket belongs to, when the event says.
        helpdesk_id: Option<String>,
    },
    /// A new message in a ticket's conversation: its messages are fetched promptly.
    Message {
        event_id: String,
        event_type: String,
        ticket_id: TicketId,
        helpdesk_id: Option<String>,
    },
    /// Any other event type: acknowledged and ignored.
    Other {
        event_id: String,
        event_type: String,
    },
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// 401: signature, token or timestamp wrong.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 400: the body cannot be read.
    #[error("malformed: {0}")]
    Malformed(String),
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn token_matches(keys: &EventKeys, token: Option<&str>) -> bool {
    match &keys.verification_token {
        None => true,
        Some(expected) => token.is_some_and(|t| same(t, expected.expose_secret())),
    }
}

/// Checks and decodes one delivery: signature on the raw body first, then decryption, then
/// the token and the age. `now` is the receiver's clock.
pub fn verify_and_parse(
    keys: &EventKeys,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Event, Rejection> {
    let (payload, signed) = match open_body(keys, headers, body, now)? {
        Opened::Payload { payload, signed } => (payload, signed),
        Opened::Answered(event) => return Ok(event),
    };
    if payload.get("type").and_then(Value::as_str) == Some("url_verification") {
        return url_verification(keys, &payload);
    }
    let head = payload
        .get("header")
        .ok_or_else(|| Rejection::Malformed("no header (schema 2.0 expected)".into()))?;
    check_header(keys, head, signed, now)?;
    parse_event(head, payload.get("event").unwrap_or(&Value::Null))
}

/// What opening a delivery's body gave.
enum Opened {
    /// The JSON payload; `signed` when its signature (and with it the age) was checked.
    Payload { payload: Value, signed: bool },
    /// An unsigned encrypted URL check, already answered.
    Answered(Event),
}

/// The payload as JSON: an encrypted body is checked against its signature, then decrypted.
fn open_body(
    keys: &EventKeys,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Opened, Rejection> {
    let outer: Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::Malformed(format!("body is not JSON: {e}")))?;
    match (outer.get("encrypt"), &keys.encrypt_key) {
        (Some(encrypted), Some(key)) => {
            let encrypted = encrypted
                .as_str()
                .ok_or_else(|| Rejection::Malformed("encrypt is not a string".into()))?;
            if header(headers, HEADER_SIGNATURE).is_none() {
                // Unsigned: only Feishu's URL check may come so. Every failure looks the same
                // (no padding oracle): one 401, whatever went wrong.
                return unsigned_challenge(keys, key.expose_secret(), encrypted)
                    .map(Opened::Answered);
            }
            verify_signature(headers, key.expose_secret(), body, now)?;
            let plain = decrypt(key.expose_secret(), encrypted).map_err(Rejection::Malformed)?;
            let payload = serde_json::from_slice(&plain)
                .map_err(|e| Rejection::Malformed(format!("decrypted body is not JSON: {e}")))?;
            Ok(Opened::Payload {
                payload,
                signed: true,
            })
        }
        (Some(_), None) => Err(Rejection::Malformed(
            "the body is encrypted but events.encrypt_key is not set".into(),
        )),
        (None, Some(_)) => Err(Rejection::Unauthorized(
            "events.encrypt_key is set but the body is not encrypted".into(),
        )),
        (None, None) => Ok(Opened::Payload {
            payload: outer,
            signed: false,
        }),
    }
}

/// Feishu's URL check: the token must match; the answer is the challenge.
fn url_verification(keys: &EventKeys, payload: &Value) -> Result<Event, Rejection> {
    if !token_matches(keys, payload.get("token").and_then(Value::as_str)) {
        return Err(Rejection::Unauthorized(
            "url_verification token does not match events.verification_token".into(),
        ));
    }
    let challenge = payload
        .get("challenge")
        .and_then(Value::as_str)
        .ok_or_else(|| Rejection::Malformed("url_verification without a challenge".into()))?;
    Ok(Event::Challenge(challenge.to_owned()))
}

/// The schema 2.0 header: the token, and for an unsigned delivery its age.
fn check_header(
    keys: &EventKeys,
    head: &Value,
    signed: bool,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    if !token_matches(keys, head.get("token").and_then(Value::as_str)) {
        return Err(Rejection::Unauthorized(
            "header.token does not match events.verification_token".into(),
        ));
    }
    if !signed {
        // Unsigned deliveries (no encrypt_key): the event's own creation time bounds replays.
        let created_ms = head
            .get("create_time")
            .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_i64()))
            .ok_or_else(|| Rejection::Malformed("header.create_time missing".into()))?;
        check_age(DateTime::from_timestamp_millis(created_ms), now)?;
    }
    Ok(())
}

/// The event's id and type, and for a ticket event the ticket, its announced update time and
/// its helpdesk; for a message event, the ticket.
fn parse_event(head: &Value, event: &Value) -> Result<Event, Rejection> {
    let text = |v: Option<&Value>, what: &str| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| Rejection::Malformed(format!("{what} missing")))
    };
    let event_id = text(head.get("event_id"), "header.event_id")?;
    let event_type = text(head.get("event_type"), "header.event_type")?;
    let ticket = match event_type.as_str() {
        TICKET_CREATED => event,
        TICKET_UPDATED => event.get("object").unwrap_or(&Value::Null),
        TICKET_MESSAGE_CREATED => event.get("ticket").unwrap_or(&Value::Null),
        _ => {
            return Ok(Event::Other {
                event_id,
                event_type,
            });
        }
    };
    let raw_id = match ticket.get("ticket_id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        _ => return Err(Rejection::Malformed("event.ticket_id missing".into())),
    };
    let ticket_id = TicketId::parse(&raw_id)
        .map_err(|e| Rejection::Malformed(format!("event.ticket_id: {e}")))?;
    let helpdesk_id = match ticket.get("helpdesk_id") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        _ => None,
    };
    if event_type == TICKET_MESSAGE_CREATED {
        return Ok(Event::Message {
            event_id,
            event_type,
            ticket_id,
            helpdesk_id,
        });
    }
    let epoch = |field: &str| {
        ticket
            .get(field)
            .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
            .filter(|ms| *ms > 0)
            .and_then(crate::normalize::epoch_to_datetime)
    };
    // A created ticket's first version is its creation; an update without its time means
    // "fetch again, whatever is stored" (None).
    let updated_at = match event_type.as_str() {
        TICKET_CREATED => epoch("updated_at").or_else(|| epoch("created_at")),
        _ => epoch("updated_at"),
    };
    Ok(Event::Ticket {
        event_id,
        event_type,
        ticket_id,
        updated_at,
        helpdesk_id,
    })
}

/// An encrypted, unsigned delivery: a URL verification with the right token, or refused.
fn unsigned_challenge(keys: &EventKeys, key: &str, encrypted: &str) -> Result<Event, Rejection> {
    let refused =
        || Rejection::Unauthorized("unsigned delivery that is not a valid URL check".into());
    let plain = decrypt(key, encrypted).map_err(|_| refused())?;
    let payload: Value = serde_json::from_slice(&plain).map_err(|_| refused())?;
    let challenge = payload
        .get("challenge")
        .and_then(Value::as_str)
        .filter(|_| payload.get("type").and_then(Value::as_str) == Some("url_verification"))
        .filter(|_| token_matches(keys, payload.get("token").and_then(Value::as_str)))
        .ok_or_else(refused)?;
    Ok(Event::Challenge(challenge.to_owned()))
}

fn verify_signature(
    headers: &HeaderMap,
    encrypt_key: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    let (Some(timestamp), Some(nonce), Some(given)) = (
        header(headers, HEADER_TIMESTAMP),
        header(headers, HEADER_NONCE),
        header(headers, HEADER_SIGNATURE),
    ) else {
        return Err(Rejection::Unauthorized(
            "missing X-Lark-Signature / timestamp / nonce headers".into(),
        ));
    };
    let expected = signature(timestamp, nonce, encrypt_key, body);
    if !same(&given.to_ascii_lowercase(), &expected) {
        return Err(Rejection::Unauthorized("signature mismatch".into()));
    }
    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Rejection::Unauthorized("X-Lark-Request-Timestamp is not a number".into()))?;
    check_age(DateTime::from_timestamp(seconds, 0), now)
}

fn check_age(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<(), Rejection> {
    let at = at.ok_or_else(|| Rejection::Unauthorized("timestamp out of range".into()))?;
    if (now - at).abs() > MAX_AGE {
        return Err(Rejection::Unauthorized(format!(
            "stale timestamp {at} (more than 5 minutes from now): a replay?"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use base64::Engine;
    use secrecy::SecretString;
    use serde_json::json;

    const KEY: &str = "test-encrypt-key";
    const TOKEN: &str = "test-verification-token";

    fn keys() -> EventKeys {
        EventKeys {
            verification_token: Some(SecretString::from(TOKEN)),
            encrypt_key: Some(SecretString::from(KEY)),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).unwrap()
    }

    fn event(event_id: &str, event_type: &str, event: Value) -> Value {
        json!({
            "schema": "2.0",
            "header": {"event_id": event_id, "event_type": event_type,
                       "create_time": (now().timestamp_millis()).to_string(),
                       "token": TOKEN, "app_id": "cli_x", "tenant_key": "t"},
            "event": event,
        })
    }

    /// Encrypted and signed the way Feishu sends it, at `at` seconds.
    fn deliver(plain: &Value, at: i64, key: &str) -> (HeaderMap, Vec<u8>) {
        let body = serde_json::to_vec(&json!({
            "encrypt": encrypt(key, plain.to_string().as_bytes(), [7u8; 16])
        }))
        .unwrap();
        let mut headers = HeaderMap::new();
        let ts = at.to_string();
        headers.insert(HEADER_TIMESTAMP, HeaderValue::from_str(&ts).unwrap());
        headers.insert(HEADER_NONCE, HeaderValue::from_static("nonce-1"));
        headers.insert(
            HEADER_SIGNATURE,
            HeaderValue::from_str(&signature(&ts, "nonce-1", key, &body)).unwrap(),
        );
        (headers, body)
    }

    #[test]
    fn encryption_round_trips_and_matches_the_documented_scheme() {
        let text = br#"{"hello":"world"}"#;
        let sealed = encrypt(KEY, text, [1u8; 16]);
        assert_eq!(decrypt(KEY, &sealed).unwrap(), text);
        assert!(decrypt("another key", &sealed).is_err());
        assert!(decrypt(KEY, "!!not base64!!").is_err());
        // The IV travels in front: first 16 decoded bytes.
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .unwrap();
        assert_eq!(&raw[..16], &[1u8; 16]);
    }

    #[test]
    fn signature_is_hex_sha256_of_the_concatenation() {
        // sha256("" ) is the well-known e3b0c442…
        assert_eq!(
            signature("", "", "", b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(
            signature("1", "n", KEY, b"x"),
            signature("1", "n", KEY, b"y")
        );
    }

    #[test]
    fn a_signed_encrypted_ticket_event_is_accepted() {
        let plain = event(
            "ev1",
            TICKET_UPDATED,
            json!({"object": {"ticket_id": "6626871355780366331", "updated_at": 1_789_999_990_000i64},
                   "old_object": {"status": 1}}),
        );
        let (headers, body) = deliver(&plain, now().timestamp(), KEY);
        let parsed = verify_and_parse(&keys(), &headers, &body, now()).unwrap();
        assert_eq!(
            parsed,
            Event::Ticket {
                event_id: "ev1".into(),
                event_type: TICKET_UPDATED.into(),
                ticket_id: TicketId::parse("6626871355780366331").unwrap(),
                updated_at: DateTime::from_timestamp_millis(1_789_999_990_000),
                helpdesk_id: None,
            }
        );
        // A created event carries the ticket at the top of `event`, id possibly a number.
        let created = event(
            "ev2",
            TICKET_CREATED,
            json!({"ticket_id": 6626871355780366332u64, "created_at": 1_789_999_990_000i64}),
        );
        let (headers, body) = deliver(&created, now().timestamp(), KEY);
        assert!(matches!(
            verify_and_parse(&keys(), &headers, &body, now()),
            Ok(Event::Ticket { ref ticket_id, .. }) if ticket_id.as_str() == "6626871355780366332"
        ));
    }

    #[test]
    fn tampering_staleness_and_wrong_keys_are_rejected() {
        let plain = event(
            "ev1",
            TICKET_CREATED,
            json!({"ticket_id": "6626871355780366331"}),
        );
        let (headers, mut body) = deliver(&plain, now().timestamp(), KEY);
        // One byte changed after signing.
        let last = body.len() - 3;
        body[last] ^= 1;
        let err = verify_and_parse(&keys(), &headers, &body, now()).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{err}");

        let (headers, body) = deliver(&plain, now().timestamp() - 301, KEY);
        let err = verify_and_parse(&keys(), &headers, &body, now()).unwrap_err();
        assert!(err.to_string().contains("stale"), "{err}");

        // Signed and encrypted with another key: the signature already fails.
        let (headers, body) = deliver(&plain, now().timestamp(), "other-key");
        let err = verify_and_parse(&keys(), &headers, &body, now()).unwrap_err();
        assert_eq!(err, Rejection::Unauthorized("signature mismatch".into()));

        // Unsigned: refused although it decrypts.
        let (_, body) = deliver(&plain, now().timestamp(), KEY);
        let err = verify_and_parse(&keys(), &HeaderMap::new(), &body, now()).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);

        // Garbage inside a correctly signed body: malformed, 400.
        let body = br#"{"encrypt":"%%%garbage%%%"}"#.to_vec();
        let mut headers = HeaderMap::new();
        let ts = now().timestamp().to_string();
        headers.insert(HEADER_TIMESTAMP, HeaderValue::from_str(&ts).unwrap());
        headers.insert(HEADER_NONCE, HeaderValue::from_static("n"));
        headers.insert(
            HEADER_SIGNATURE,
            HeaderValue::from_str(&signature(&ts, "n", KEY, &body)).unwrap(),
        );
        let err = verify_and_parse(&keys(), &headers, &body, now()).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{err}");

        // Right signature, wrong verification token inside.
        let mut wrong = plain.clone();
        wrong["header"]["token"] = json!("nope");
        let (headers, body) = deliver(&wrong, now().timestamp(), KEY);
        let err = verify_and_parse(&keys(), &headers, &body, now()).unwrap_err();
        assert!(err.to_string().contains("verification_token"), "{err}");
    }

    #[test]
    fn unsigned_encrypted_bodies_fail_alike_whatever_is_wrong() {
        let seal = |plain: &[u8]| {
            serde_json::to_vec(&json!({"encrypt": encrypt(KEY, plain, [5u8; 16])})).unwrap()
        };
        let not_base64 = br#"{"encrypt":"%%%"}"#.to_vec();
        let wrong_key = serde_json::to_vec(
            &json!({"encrypt": encrypt("other", br#"{"type":"url_verification"}"#, [5u8; 16])}),
        )
        .unwrap();
        let not_json = seal(b"plain text");
        let an_event = seal(
            event(
                "e",
                TICKET_CREATED,
                json!({"ticket_id": "6626871355780366331"}),
            )
            .to_string()
            .as_bytes(),
        );
        let bad_token = seal(br#"{"type":"url_verification","challenge":"c","token":"wrong"}"#);
        let errors: Vec<Rejection> = [not_base64, wrong_key, not_json, an_event, bad_token]
            .iter()
            .map(|body| verify_and_parse(&keys(), &HeaderMap::new(), body, now()).unwrap_err())
            .collect();
        assert!(errors.iter().all(|e| *e == errors[0]), "{errors:?}");
        assert_eq!(errors[0].status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn an_update_without_its_time_is_fetched_regardless() {
        let plain = event(
            "ev5",
            TICKET_UPDATED,
            json!({"object": {"ticket_id": "6626871355780366331", "updated_at": -1,
                              "created_at": 1_789_999_990_000i64}}),
        );
        let (headers, body) = deliver(&plain, now().timestamp(), KEY);
        assert!(matches!(
            verify_and_parse(&keys(), &headers, &body, now()),
            Ok(Event::Ticket {
                updated_at: None,
                ..
            })
        ));
    }

    #[test]
    fn url_verification_checks_the_token() {
        let plain = json!({"type": "url_verification", "challenge": "c-123", "token": TOKEN});
        // Feishu may send the check encrypted and unsigned.
        let (_, body) = deliver(&plain, now().timestamp(), KEY);
        assert_eq!(
            verify_and_parse(&keys(), &HeaderMap::new(), &body, now()).unwrap(),
            Event::Challenge("c-123".into())
        );
        let unencrypted_keys = EventKeys {
            verification_token: Some(SecretString::from(TOKEN)),
            encrypt_key: None,
        };
        let body = serde_json::to_vec(&plain).unwrap();
        assert_eq!(
            verify_and_parse(&unencrypted_keys, &HeaderMap::new(), &body, now()).unwrap(),
            Event::Challenge("c-123".into())
        );
        let bad = json!({"type": "url_verification", "challenge": "c", "token": "wrong"});
        let body = serde_json::to_vec(&bad).unwrap();
        assert!(verify_and_parse(&unencrypted_keys, &HeaderMap::new(), &body, now()).is_err());
    }

    #[test]
    fn unknown_types_are_other_and_malformed_bodies_are_400() {
        let plain = event("ev9", "helpdesk.notification.state_change_v1", json!({}));
        let (headers, body) = deliver(&plain, now().timestamp(), KEY);
        assert!(matches!(
            verify_and_parse(&keys(), &headers, &body, now()),
            Ok(Event::Other { .. })
        ));
        for body in [&b"not json"[..], br#"{"schema":"2.0"}"#] {
            let k = EventKeys {
                verification_token: Some(SecretString::from(TOKEN)),
                encrypt_key: None,
            };
            let err = verify_and_parse(&k, &HeaderMap::new(), body, now()).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{err}");
        }
        let bad_id = event("ev3", TICKET_CREATED, json!({"ticket_id": "12ab"}));
        let (headers, body) = deliver(&bad_id, now().timestamp(), KEY);
        let err = verify_and_parse(&keys(), &headers, &body, now()).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{err}");
    }
}
