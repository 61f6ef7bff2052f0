//! The simulator's conversations: `GET /tickets/:id/messages` (pages of up to 200, a total, time
//! bounds read in a configurable unit since the docs do not say, a rate limit of its own),
//! messages added by tests, and the `helpdesk.ticket_message.created_v1` event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{
    Endpoint, Fault, ListTotal, SimState, api_error, fault_response, lock, rate_limited,
    raw_response,
};

/// How the simulated API reads `time_start` / `time_end` (the real one's reading is undocumented).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBoundUnit {
    Seconds,
    Milliseconds,
    /// The bounds are ignored: every message comes back.
    Ignored,
}

/// Who sends a message a test adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Guest,
    /// The ticket's first agent.
    Agent,
    Bot,
}

pub(super) async fn messages(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let arrived = Instant::now();
    let response = messages_response(&state, &id, &query, &headers, arrived).await;
    state.record(
        arrived,
        Endpoint::Messages,
        Some(id),
        response.status().as_u16(),
        Some(&headers),
    );
    response
}

async fn messages_response(
    state: &SimState,
    id: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    arrived: Instant,
) -> Response {
    let limit = state.config.message_limit_per_second;
    if let Some(reset) = state.over_limit(Endpoint::Messages, limit, arrived) {
        return rate_limited(StatusCode::TOO_MANY_REQUESTS, limit, reset);
    }
    let helpdesk = match state.check_auth(headers) {
        Ok(h) => h,
        Err(denied) => return *denied,
    };
    state.latency().await;
    let fault = lock(&state.message_faults)
        .get_mut(id)
        .and_then(VecDeque::pop_front);
    let ignore_bounds = fault == Some(Fault::IgnoreTimeBounds);
    let fault = match fault {
        Some(Fault::Raw {
            status,
            headers,
            body,
        }) => return raw_response(status, headers, body),
        Some(Fault::IgnoreTimeBounds) => None,
        other => other,
    };
    if let Some(response) = fault_response(fault, limit) {
        return response;
    }
    let number = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<i64>().ok())
    };
    let page = number("page").unwrap_or(1).max(1) as usize;
    let Some(page_size @ 1..=200) = number("page_size").or(Some(20)) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            99992402,
            "field validation failed: page_size",
        );
    };
    // Another helpdesk's ticket is not found through this helpdesk's token.
    if state.ticket_in(helpdesk, id).is_none() {
        return api_error(StatusCode::NOT_FOUND, 154004, "Resource not found");
    }
    let to_ms = |v: i64| match state.config.message_time_unit {
        _ if ignore_bounds => None,
        TimeBoundUnit::Seconds => Some(v.saturating_mul(1000)),
        TimeBoundUnit::Milliseconds => Some(v),
        TimeBoundUnit::Ignored => None,
    };
    let start = number("time_start").and_then(to_ms);
    let end = number("time_end").and_then(to_ms);
    let all = lock(&state.messages).get(id).cloned().unwrap_or_default();
    let matching: Vec<&Value> = all
        .iter()
        .filter(|m| {
            let at = created_ms(m);
            start.is_none_or(|s| at >= s) && end.is_none_or(|e| at <= e)
        })
        .collect();
    let page = if state.config.message_pages_repeat {
        1
    } else {
        page
    };
    let from = (page - 1) * page_size as usize;
    let rows: Vec<&Value> = matching
        .iter()
        .skip(from)
        .take(page_size as usize)
        .copied()
        .collect();
    let total = match state.config.message_total {
        ListTotal::PageLength => rows.len(),
        ListTotal::Zero => 0,
        _ => matching.len(),
    };
    axum::Json(json!({"code": 0, "msg": "success",
                      "data": {"total": total, "messages": rows}}))
    .into_response()
}

/// A message's time in ms (some tickets send seconds).
fn created_ms(m: &Value) -> i64 {
    let at = m["created_at"].as_i64().unwrap_or(0);
    if at < 100_000_000_000 { at * 1000 } else { at }
}

impl SimState {
    /// The conversation of ticket `id`, in time order.
    pub fn messages(&self, id: &str) -> Vec<Value> {
        lock(&self.messages).get(id).cloned().unwrap_or_default()
    }

    /// Replaces the conversation of ticket `id` (kept in time order).
    pub fn put_messages(&self, id: &str, mut messages: Vec<Value>) {
        messages.sort_by_key(created_ms);
        lock(&self.messages).insert(id.to_owned(), messages);
    }

    /// Adds a text message to ticket `id`, sent now by `sender`; does not touch the ticket
    /// (whether a message moves `updated_at` upstream is unknown). Returns the message.
    pub fn add_message(&self, id: &str, sender: Sender, text: &str) -> Value {
        let ticket = self.ticket(id).unwrap_or_default();
        let (user_id, name) = match sender {
            Sender::Guest => (
                ticket["guest"]["id"].as_str().unwrap_or("ou_guest"),
                "guest",
            ),
            Sender::Agent => (
                ticket["agents"][0]["id"].as_str().unwrap_or("ou_agent"),
                "agent",
            ),
            Sender::Bot => ("", "Helpdesk bot"),
        };
        let mut conversation = self.messages(id);
        let k = conversation.len();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut message = super::data::message(900 + k, k, now_ms, false, user_id, name);
        message["id"] = json!(format!("{id}-{k}"));
        message["message_type"] = json!("text");
        message["content"] = json!(json!({"text": text}).to_string());
        conversation.push(message.clone());
        self.put_messages(id, conversation);
        message
    }

    /// Queues faults for the next messages requests of ticket `id` (InternalError, NotJson,
    /// RateLimited, Raw, IgnoreTimeBounds).
    pub fn inject_messages(&self, id: &str, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.message_faults)
            .entry(id.to_owned())
            .or_default()
            .extend(faults);
    }

    /// The `helpdesk.ticket_message.created_v1` event of `message` on ticket `id`, shaped as
    /// the official SDKs model it.
    /// It names the ticket's helpdesk (the first helpdesk for an unknown ticket).
    pub fn message_event(&self, id: &str, message: &Value, event_id: &str) -> Value {
        let helpdesk_id = self
            .ticket_helpdesk(id)
            .unwrap_or_else(|| self.config.helpdesk_id.clone());
        json!({
            "schema": "2.0",
            "header": {
                "event_id": event_id,
                "event_type": crate::events::TICKET_MESSAGE_CREATED,
                "create_time": chrono::Utc::now().timestamp_millis().to_string(),
                "token": self.config.verification_token,
                "app_id": self.config.app_id,
                "tenant_key": "simulated-tenant",
            },
            "event": {
                "ticket_message_id": message["id"].to_string().trim_matches('"'),
                "message_id": message["message_id"],
                "msg_type": message["message_type"],
                "position": "1",
                "sender_id": {"open_id": message["user_id"], "user_id": "u_x", "union_id": "on_x"},
                "sender_type": if message["user_id"].is_null() { 2 } else { 1 },
                "text": message["content"],
                "ticket": {"ticket_id": id, "helpdesk_id": helpdesk_id},
                "event_id": event_id,
                "chat_id": format!("oc_{id}"),
                "content": {"content": message["content"], "msg_type": message["message_type"]},
            },
        })
    }

    /// Adds a guest message to ticket `id` and delivers its event to `url`.
    pub async fn message_and_notify(
        &self,
        client: &reqwest::Client,
        url: &str,
        id: &str,
        text: &str,
    ) -> reqwest::Result<u16> {
        let message = self.add_message(id, Sender::Guest, text);
        let event_id = format!("sim-{:032x}", rand::random::<u128>());
        let event = self.message_event(id, &message, &event_id);
        self.deliver_event(client, url, &event).await
    }
}
