//! The simulator's event side: `POST /events/subscribe`, and webhook events for its tickets,
//! encrypted and signed with the configured Encrypt Key the way Feishu sends them.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Endpoint, SimState, api_error, lock};
use crate::events::{TICKET_UPDATED, encrypt, signature};

/// `POST /open-apis/helpdesk/v1/events/subscribe`: both auth headers, a body of
/// `{"events": [{"type", "subtype"}, …]}`; subscribing twice is not an error.
pub(super) async fn subscribe(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let arrived = Instant::now();
    let helpdesk = match state.check_auth(&headers) {
        Ok(h) => h,
        Err(response) => {
            state.record(
                arrived,
                Endpoint::Subscribe,
                None,
                response.status().as_u16(),
                Some(&headers),
            );
            return *response;
        }
    };
    let parsed: Option<Vec<(String, String)>> =
        serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
            v.get("events")?
                .as_array()?
                .iter()
                .map(|e| {
                    Some((
                        e.get("type")?.as_str()?.to_owned(),
                        e.get("subtype")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        });
    let Some(events) = parsed.filter(|e| !e.is_empty()) else {
        state.record(arrived, Endpoint::Subscribe, None, 400, Some(&headers));
        return api_error(
            StatusCode::BAD_REQUEST,
            99992402,
            "field validation failed: events",
        );
    };
    let helpdesk_id = state.helpdesks()[helpdesk].helpdesk_id.clone();
    lock(&state.subscriptions).extend(
        events
            .into_iter()
            .map(|(kind, sub)| (helpdesk_id.clone(), kind, sub)),
    );
    state.record(arrived, Endpoint::Subscribe, None, 200, Some(&headers));
    axum::Json(json!({"code": 0, "msg": "success", "data": {}})).into_response()
}

impl SimState {
    /// A schema 2.0 event about ticket `id` as it is now (its `updated_at` included).
    /// `event_type` is [`TICKET_CREATED`] or [`TICKET_UPDATED`].
    pub fn ticket_event(&self, event_type: &str, id: &str, event_id: &str) -> Value {
        let ticket = self.ticket(id).unwrap_or_else(|| json!({"ticket_id": id}));
        let created_ms = chrono::Utc::now().timestamp_millis();
        // As in the official samples: the guest's id is an object here (a string in the REST
        // ticket), and `stage` comes with `status`.
        let guest = json!({
            "id": {
                "open_id": ticket["guest"]["id"],
                "user_id": ticket["guest"]["id"].as_str().map(|id| format!("u_{id}")),
                "union_id": ticket["guest"]["id"].as_str().map(|id| format!("on_{id}")),
            },
            "name": ticket["guest"]["name"],
        });
        let stage = ticket["stage"].as_i64().unwrap_or(1);
        let event = if event_type == TICKET_UPDATED {
            json!({
                "object": {
                    "ticket_id": id,
                    "helpdesk_id": ticket["helpdesk_id"],
                    "guest": guest,
                    "stage": stage,
                    "status": ticket["status"],
                    "updated_at": ticket["updated_at"],
                    "created_at": ticket["created_at"],
                },
                "old_object": {"stage": 1, "status": 1, "updated_at": ticket["created_at"]},
            })
        } else {
            json!({
                "ticket_id": id,
                "helpdesk_id": ticket["helpdesk_id"],
                "guest": guest,
                "stage": stage,
                "status": ticket["status"],
                "created_at": ticket["created_at"],
                "updated_at": ticket["updated_at"],
                "chat_id": format!("oc_{id}"),
                "customized_fields": ticket["customized_fields"],
            })
        };
        json!({
            "schema": "2.0",
            "header": {
                "event_id": event_id,
                "event_type": event_type,
                "create_time": created_ms.to_string(),
                "token": self.config.verification_token,
                "app_id": self.config.app_id,
                "tenant_key": "simulated-tenant",
            },
            "event": event,
        })
    }

    /// The request Feishu would send for `event`: headers (timestamp `at` in seconds, a nonce,
    /// the signature) and the encrypted body.
    pub fn seal_event(&self, event: &Value, at: i64) -> (Vec<(&'static str, String)>, Vec<u8>) {
        let key = &self.config.encrypt_key;
        let iv: [u8; 16] = rand::random();
        let body = json!({ "encrypt": encrypt(key, event.to_string().as_bytes(), iv) }).to_string();
        let nonce = format!("{:016x}", rand::random::<u64>());
        let timestamp = at.to_string();
        let sig = signature(&timestamp, &nonce, key, body.as_bytes());
        (
            vec![
                ("x-lark-request-timestamp", timestamp),
                ("x-lark-request-nonce", nonce),
                ("x-lark-signature", sig),
                ("content-type", "application/json; charset=utf-8".to_owned()),
            ],
            body.into_bytes(),
        )
    }

    /// Sends `event` to `url`, sealed, now; returns the HTTP status.
    pub async fn deliver_event(
        &self,
        client: &reqwest::Client,
        url: &str,
        event: &Value,
    ) -> reqwest::Result<u16> {
        let (headers, body) = self.seal_event(event, chrono::Utc::now().timestamp());
        let mut request = client.post(url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        Ok(request.send().await?.status().as_u16())
    }

    /// Changes ticket `id` (next status, `updated_at` now) and delivers its updated event.
    pub async fn change_and_notify(
        &self,
        client: &reqwest::Client,
        url: &str,
        id: &str,
    ) -> reqwest::Result<u16> {
        self.update_ticket(id, |t| {
            let next = match t["status"].as_i64() {
                Some(1) => 2,
                Some(2) => 3,
                Some(3) => 50,
                _ => 1,
            };
            t["status"] = json!(next);
        });
        let event_id = format!("sim-{:032x}", rand::random::<u128>());
        let event = self.ticket_event(TICKET_UPDATED, id, &event_id);
        self.deliver_event(client, url, &event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, EventKeys, TICKET_CREATED, verify_and_parse};
    use axum::http::{HeaderName, HeaderValue};
    use secrecy::SecretString;

    #[test]
    fn sealed_events_pass_our_own_verification() {
        let state = SimState::new(super::super::SimConfig {
            tickets: 3,
            ..Default::default()
        });
        let id = state.ticket_ids()[1].clone();
        let event = state.ticket_event(TICKET_CREATED, &id, "ev-1");
        let now = chrono::Utc::now();
        let (pairs, body) = state.seal_event(&event, now.timestamp());
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(&value).unwrap(),
            );
        }
        let keys = EventKeys {
            verification_token: Some(SecretString::from(
                state.config().verification_token.clone(),
            )),
            encrypt_key: Some(SecretString::from(state.config().encrypt_key.clone())),
        };
        match verify_and_parse(&keys, &headers, &body, now).unwrap() {
            Event::Ticket {
                ticket_id,
                updated_at,
                ..
            } => {
                assert_eq!(ticket_id.as_str(), id);
                let listed = state.ticket(&id).unwrap()["updated_at"].as_i64().unwrap();
                if listed > 0 {
                    assert_eq!(updated_at.unwrap().timestamp_millis(), listed);
                }
            }
            other => panic!("{other:?}"),
        }
    }
}
