//! The HTTP handler of the event path: verify the delivery, record a ticket event durably
//! (receipt + enqueue, before the acknowledgement), wake the worker. The fetch itself happens in
//! the worker's cycle.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::Notify;

use super::{Event, EventKeys, Rejection, verify_and_parse};
use crate::domain::TicketId;
use crate::store::Store;
use crate::store::events::Recorded;

/// What the event endpoint needs.
#[derive(Clone)]
pub struct EventState {
    pub keys: EventKeys,
    pub store: Store,
    /// Wakes the daemon's worker for a prompt cycle.
    pub wake: Arc<Notify>,
    /// Ours: events about another helpdesk's tickets (same app) are acknowledged and ignored.
    pub helpdesk_id: String,
    /// `sync.messages`: message events queue a fetch of the conversation.
    pub messages: bool,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The endpoint: verify, then answer according to what the delivery is.
pub async fn receive(State(state): State<EventState>, headers: HeaderMap, body: Bytes) -> Response {
    match verify_and_parse(&state.keys, &headers, &body, Utc::now()) {
        Ok(event) => answer(&state, event).await,
        Err(rejection) => refuse(&state, &rejection),
    }
}

/// A refused delivery: the reason goes to the log only, a caller learns nothing from the answer.
fn refuse(state: &EventState, rejection: &Rejection) -> Response {
    tracing::warn!(reason = %rejection, "event rejected");
    let label = match rejection {
        Rejection::Unauthorized(_) => "unauthorized",
        Rejection::Malformed(_) => "malformed",
    };
    state.metrics.event(label);
    (rejection.status(), format!("{label}\n")).into_response()
}

/// A verified delivery: the challenge answered, other types and other helpdesks acknowledged
/// and ignored, ticket events recorded.
async fn answer(state: &EventState, event: Event) -> Response {
    match event {
        Event::Challenge(challenge) => {
            tracing::info!("answered the URL verification challenge");
            axum::Json(json!({ "challenge": challenge })).into_response()
        }
        Event::Other {
            event_id,
            event_type,
        } => {
            tracing::debug!(event_id, event_type, "event type not used; ignored");
            ignored(state)
        }
        Event::Ticket {
            event_id,
            event_type,
            helpdesk_id: Some(theirs),
            ..
        }
        | Event::Message {
            event_id,
            event_type,
            helpdesk_id: Some(theirs),
            ..
        } if theirs != state.helpdesk_id => {
            tracing::debug!(
                event_id,
                event_type,
                helpdesk_id = theirs,
                "event about another helpdesk; ignored"
            );
            ignored(state)
        }
        Event::Ticket {
            event_id,
            event_type,
            ticket_id,
            updated_at,
            ..
        } => record_ticket_event(state, &event_id, &event_type, &ticket_id, updated_at).await,
        Event::Message {
            event_id,
            event_type,
            ticket_id,
            ..
        } => record_message_event(state, &event_id, &event_type, &ticket_id).await,
    }
}

/// Records the receipt and makes the ticket's messages due now, then acknowledges and wakes the
/// worker (with message fetching off, the event is acknowledged and ignored).
async fn record_message_event(
    state: &EventState,
    event_id: &str,
    event_type: &str,
    ticket_id: &TicketId,
) -> Response {
    if !state.messages {
        tracing::debug!(
            event_id,
            "message event while sync.messages is off; ignored"
        );
        return ignored(state);
    }
    let recorded = state
        .store
        .record_message_event(event_id, event_type, ticket_id);
    match within_db_timeout(recorded).await {
        Ok(queued) => {
            let label = if queued { "queued" } else { "duplicate" };
            tracing::info!(event_id, event_type, ticket_id = %ticket_id, outcome = label, "message event");
            state.metrics.event(label);
            if queued {
                state.wake.notify_one();
            }
            axum::Json(json!({})).into_response()
        }
        Err(error) => cannot_record(state, event_id, &error),
    }
}

fn ignored(state: &EventState) -> Response {
    state.metrics.event("ignored");
    axum::Json(json!({})).into_response()
}

/// Records the receipt and queues the ticket (one transaction), then acknowledges and wakes the
/// worker. Not recorded = not acknowledged: Feishu delivers it again.
async fn record_ticket_event(
    state: &EventState,
    event_id: &str,
    event_type: &str,
    ticket_id: &TicketId,
    updated_at: Option<DateTime<Utc>>,
) -> Response {
    let recorded = state
        .store
        .record_event(event_id, event_type, ticket_id, updated_at);
    match within_db_timeout(recorded).await {
        Ok(recorded) => {
            let label = match recorded {
                Recorded::Duplicate => "duplicate",
                Recorded::Queued => "queued",
                Recorded::AlreadyCurrent => "current",
            };
            tracing::info!(
                event_id,
                event_type,
                ticket_id = %ticket_id,
                outcome = label,
                "ticket event"
            );
            state.metrics.event(label);
            if recorded == Recorded::Queued {
                state.wake.notify_one();
            }
            axum::Json(json!({})).into_response()
        }
        Err(error) => cannot_record(state, event_id, &error),
    }
}

/// How long recording an event may take. While the database is down the pool would wait its
/// whole acquire timeout (15 s) and Feishu's delivery times out meanwhile; answer 503 now.
pub const EVENT_DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// `write`, or an error once it took [`EVENT_DB_TIMEOUT`].
async fn within_db_timeout<T>(
    write: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(EVENT_DB_TIMEOUT, write)
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "the database did not answer within {EVENT_DB_TIMEOUT:?}"
            ))
        })
}

/// Not recorded, so not acknowledged: Feishu delivers it again.
fn cannot_record(state: &EventState, event_id: &str, error: &anyhow::Error) -> Response {
    tracing::error!(
        event_id,
        error = format!("{error:#}"),
        "cannot record an event"
    );
    state.metrics.event("error");
    (StatusCode::SERVICE_UNAVAILABLE, "cannot record the event\n").into_response()
}
