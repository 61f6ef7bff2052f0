//! Domain types: strict rows ready for Postgres (built only by `normalize`), fetch outcomes,
//! the cycle's reports ([`report`]) and the event secrets: the plain data every layer shares.

pub mod api_codes;
pub mod catalog;
pub mod listing;
pub mod messages;
pub mod report;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

pub use catalog::{CatalogField, CatalogOption};
pub use listing::{
    ContentSource, FieldAgreement, FieldCheck, ListRowsState, ListTrust, VERSION_FIELD,
};
pub use messages::{MessageRow, MessagesOutcome};
pub use report::{
    BatchReport, ClientStatsSnapshot, CycleReport, DiscoveryReport, Progress, QueueCounts,
};

/// The secrets webhook events are checked with (from `[events]`).
#[derive(Clone)]
pub struct EventKeys {
    pub verification_token: Option<SecretString>,
    pub encrypt_key: Option<SecretString>,
}

/// A helpdesk ticket id: a canonical decimal number up to u64::MAX (Feishu ids exceed 2^53).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketId(String);

/// Why a text is not a ticket id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a ticket id (expected a decimal number like 6626871355780366331)")]
pub struct InvalidTicketId(pub String);

impl TicketId {
    /// Canonical decimal only: the API answers "123" for "00123", so the two must not be
    /// different queue entries.
    pub fn parse(text: &str) -> Result<Self, InvalidTicketId> {
        let t = text.trim();
        let canonical = t == "0" || !t.starts_with('0');
        if canonical && t.bytes().all(|b| b.is_ascii_digit()) && t.parse::<u64>().is_ok() {
            Ok(Self(t.to_owned()))
        } else {
            Err(InvalidTicketId(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for TicketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Status codes at or above this are closed (50 by bot, 51 by agent, 52 by user).
pub const FIRST_CLOSED_STATUS: i16 = 50;

/// One ticket and all its child rows, replaced together in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketRecord {
    pub ticket: TicketRow,
    /// Everyone named on the ticket, one row per user id.
    pub users: Vec<UserRow>,
    /// Agent user ids in API order (position = index).
    pub agents: Vec<String>,
    /// Collaborator user ids in API order.
    pub collaborators: Vec<String>,
    pub tags: Vec<TagRow>,
    pub custom_fields: Vec<CustomFieldRow>,
    pub comments: Vec<CommentRow>,
}

impl TicketRecord {
    /// Whether the ticket is still open (unknown status counts as open: refresh it sooner).
    pub fn is_open(&self) -> bool {
        self.ticket.status.is_none_or(|s| s < FIRST_CLOSED_STATUS)
    }
}

/// The `tickets` row. Units are in the names.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketRow {
    pub ticket_id: TicketId,
    pub helpdesk_id: Option<String>,
    pub guest_id: Option<String>,
    pub ticket_type: Option<i16>,
    pub status: Option<i16>,
    pub score: Option<i16>,
    pub channel: Option<i16>,
    pub solve: Option<i16>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by_id: Option<String>,
    pub agent_owner_id: Option<String>,
    pub dissatisfaction_reason_zh_cn: Option<String>,
    pub dissatisfaction_reason_en_us: Option<String>,
    pub dissatisfaction_reason_ja_jp: Option<String>,
    pub agent_service_duration_minutes: Option<f64>,
    pub agent_first_response_duration_seconds: Option<i64>,
    pub bot_service_duration_seconds: Option<i64>,
    pub agent_resolution_time_seconds: Option<i64>,
    pub actual_processing_time_seconds: Option<i64>,
    pub agent_entry_time: Option<DateTime<Utc>>,
    pub agent_first_response_time: Option<DateTime<Utc>>,
    pub agent_last_response_time: Option<DateTime<Utc>>,
    /// The API's ticket object as JSON text, stored as `jsonb`.
    pub raw: String,
    pub fetched_at: DateTime<Utc>,
    /// The detail's, or a list row's (then `raw` is that row over the last detail).
    pub content_source: ContentSource,
    /// The list row as listed, when `content_source` is [`ContentSource::List`].
    pub list_raw: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserRow {
    pub user_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub avatar_url: Option<String>,
    pub department: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TagRow {
    pub tag_id: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CustomFieldRow {
    pub field_id: String,
    pub key_name: Option<String>,
    pub display_name: Option<String>,
    pub value: Option<String>,
    pub position: Option<i32>,
    pub required: Option<bool>,
    pub editable: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommentRow {
    /// Order in the API response, from 0.
    pub ordinal: i32,
    pub comment_id: Option<i64>,
    pub content: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub user_id: Option<i64>,
    pub user_name: Option<String>,
    pub user_avatar_url: Option<String>,
}

/// What one fetch of one ticket came to; written to the store in batches.
#[derive(Debug, Clone, PartialEq)]
pub enum TicketOutcome {
    /// The API returned the ticket; refresh it again after `refresh_after`.
    Fetched {
        record: Box<TicketRecord>,
        refresh_after: std::time::Duration,
        attempts: u32,
    },
    /// 404/154004: deleted upstream. Rows are kept, `deleted_at` set.
    NotFound {
        ticket_id: String,
        error: String,
        attempts: u32,
    },
    /// 400/154000 (or not a ticket id at all): parked until enqueued again.
    InvalidId {
        ticket_id: String,
        failure: Failure,
        attempts: u32,
    },
    /// Retryable failure that outlived its attempts, or a failure the API will repeat:
    /// retried in a later cycle with growing delay. Stored rows are untouched.
    Failed {
        ticket_id: String,
        failure: Failure,
        attempts: u32,
    },
}

/// Everything one write transaction carries: the outcomes of a batch of ticket fetches and of
/// conversation fetches. Each source of content is a peer field here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub tickets: Vec<TicketOutcome>,
    pub messages: Vec<MessagesOutcome>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.tickets.len() + self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The recorded details of a failed fetch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Failure {
    pub http_status: Option<u16>,
    pub code: Option<i64>,
    pub message: String,
    /// The same answer will come again (a 200 whose body cannot be used, a row the database
    /// cannot hold): after a few such failures in a row the ticket is poisoned (parked, counted
    /// by `status`) instead of retried forever.
    pub permanent: bool,
}

impl TicketOutcome {
    pub fn ticket_id(&self) -> &str {
        match self {
            Self::Fetched { record, .. } => record.ticket.ticket_id.as_str(),
            Self::NotFound { ticket_id, .. }
            | Self::InvalidId { ticket_id, .. }
            | Self::Failed { ticket_id, .. } => ticket_id,
        }
    }

    /// The `ticket_sync_state.last_outcome` value.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Fetched { .. } => "ok",
            Self::NotFound { .. } => "not_found",
            Self::InvalidId { .. } => "invalid_id",
            Self::Failed { .. } => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_ids_are_digits_only() {
        assert_eq!(
            TicketId::parse(" 6626871355780366331 ").unwrap().as_str(),
            "6626871355780366331"
        );
        for bad in [
            "",
            "abc",
            "12a",
            "1/2",
            "../x",
            "123456789012345678901",
            "00123",
            "18446744073709551616",
            "+5",
            "-1",
        ] {
            assert!(TicketId::parse(bad).is_err(), "{bad}");
        }
    }
}
