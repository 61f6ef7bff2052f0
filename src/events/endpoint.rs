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
    /// The configured helpdesks' ids: an event about a ticket of one of them is queued in that
    /// helpdesk's queue; events about any other helpdesk (same app) are acknowledged and ignored.
    pub helpdesks: Vec<String>,
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

/// The helpdesk an event is for, among ours: the one it names; the only one when it names none.
/// `Err` names an unknown helpdesk; `Ok(None)`: several helpdesks and the event names none (the
/// ticket's queue row says which, if it is known).
fn our_helpdesk<'a>(state: &'a EventState, named: Option<&str>) -> Result<Option<&'a str>, ()> {
    match (named, state.helpdesks.as_slice()) {
        (Some(theirs), ours) => ours
            .iter()
            .find(|id| id.as_str() == theirs)
            .map(|id| Some(id.as_str()))
            .ok_or(()),
        (None, [only]) => Ok(Some(only.as_str())),
        (None, _) => Ok(None),
    }
}

/// A verified delivery: the challenge answered, other types and unknown helpdesks acknowledged
/// and ignored, ticket events recorded in their helpdesk's queue.
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
        } if our_helpdesk(state, Some(&theirs)).is_err() => {
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
            helpdesk_id,
        } => {
            let helpdesk = our_helpdesk(state, helpdesk_id.as_deref()).unwrap_or_default();
            let event = TicketEvent {
                event_id: &event_id,
                event_type: &event_type,
                ticket_id: &ticket_id,
                helpdesk,
                named: helpdesk_id.is_some(),
            };
            record_ticket_event(state, &event, updated_at).await
        }
        Event::Message {
            event_id,
            event_type,
            ticket_id,
            helpdesk_id,
        } => {
            let helpdesk = our_helpdesk(state, helpdesk_id.as_deref()).unwrap_or_default();
            let event = TicketEvent {
                event_id: &event_id,
                event_type: &event_type,
                ticket_id: &ticket_id,
                helpdesk,
                named: helpdesk_id.is_some(),
            };
            record_message_event(state, &event).await
        }
    }
}

/// A ticket or message event of one of our helpdesks, to record.
struct TicketEvent<'a> {
    event_id: &'a str,
    event_type: &'a str,
    ticket_id: &'a TicketId,
    /// Its helpdesk (None: several configured and the event names none).
    helpdesk: Option<&'a str>,
    /// Whether the event named it (then the ticket's queue row becomes that helpdesk's).
    named: bool,
}

/// Records the receipt and makes the ticket's messages due now, then acknowledges and wakes the
/// worker (with message fetching off, the event is acknowledged and ignored).
async fn record_message_event(state: &EventState, event: &TicketEvent<'_>) -> Response {
    let TicketEvent {
        event_id,
        event_type,
        ticket_id,
        helpdesk,
        named,
    } = *event;
    if !state.messages {
        tracing::debug!(
            event_id,
            "message event while sync.messages is off; ignored"
        );
        return ignored(state);
    }
    let store = scoped(state, helpdesk);
    let recorded = store.record_message_event(event_id, event_type, ticket_id, named);
    match within_db_timeout(recorded).await {
        Ok(recorded) => {
            let label = outcome_label(recorded);
            tracing::info!(
                event_id,
                event_type,
                ticket_id = %ticket_id,
                helpdesk_id = helpdesk,
                outcome = label,
                "message event"
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

/// The store for `helpdesk`'s queue (the unscoped one when the event's helpdesk is not known).
fn scoped(state: &EventState, helpdesk: Option<&str>) -> Store {
    match helpdesk {
        Some(id) => state.store.for_helpdesk(id),
        None => state.store.clone(),
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
    event: &TicketEvent<'_>,
    updated_at: Option<DateTime<Utc>>,
) -> Response {
    let TicketEvent {
        event_id,
        event_type,
        ticket_id,
        helpdesk,
        named,
    } = *event;
    let store = scoped(state, helpdesk);
    let recorded = store.record_event(event_id, event_type, ticket_id, updated_at, named);
    match within_db_timeout(recorded).await {
        Ok(recorded) => {
            let label = outcome_label(recorded);
            tracing::info!(
                event_id,
                event_type,
                ticket_id = %ticket_id,
                helpdesk_id = helpdesk,
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

/// The `events_total` outcome of a recorded event.
fn outcome_label(recorded: Recorded) -> &'static str {
    match recorded {
        Recorded::Duplicate => "duplicate",
        Recorded::Queued => "queued",
        Recorded::AlreadyCurrent => "current",
        // Several helpdesks, the event named none, and the ticket is not known yet: discovery
        // will find it in its helpdesk.
        Recorded::NoHelpdesk => "ignored",
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
