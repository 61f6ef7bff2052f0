//! A ticket's conversation as rows, and what one fetch of it came to.

use chrono::{DateTime, Utc};

use super::Failure;

/// A `ticket_messages` row (the sender's role is inferred in the database, from the ticket).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    /// The API's `id`.
    pub message_id: String,
    /// The API's `message_id` (the chat message, `om_...`).
    pub chat_message_id: Option<String>,
    pub message_type: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// As the API sent it (JSON text for rich messages).
    pub content: Option<String>,
    /// Plain text derived from `content`, when one can be.
    pub content_text: Option<String>,
    pub sender_id: Option<String>,
    pub sender_name: Option<String>,
    pub sender_avatar_url: Option<String>,
    /// The message object as the API returned it.
    pub raw: String,
}

/// What one fetch of a ticket's messages came to; written in batches with ticket outcomes.
#[derive(Debug, Clone, PartialEq)]
pub enum MessagesOutcome {
    /// Every page was read: these messages (new or changed ones are stored, known ones
    /// compared), as of `fetched_at`. `refresh_after`: when to read them again (None: only when
    /// the ticket changes or an event asks).
    Fetched {
        ticket_id: String,
        messages: Vec<MessageRow>,
        /// When the fetch started: a request for messages made after it still stands.
        started_at: DateTime<Utc>,
        refresh_after: Option<std::time::Duration>,
        requests: u32,
    },
    /// The fetch failed after its retries: retried later with growing delay; stored messages
    /// and the ticket itself are untouched.
    Failed { ticket_id: String, failure: Failure },
    /// Pages of a read still under way, written as they come (memory stays bounded); the
    /// claim and the lane's state are untouched.
    Pages {
        ticket_id: String,
        messages: Vec<MessageRow>,
    },
    /// The read stopped at the cycle's end (its claim budget spent): what it read is written
    /// and the conversation stays due, to go on in the next cycle. Neither ok nor failed.
    CarriedOver {
        ticket_id: String,
        messages: Vec<MessageRow>,
    },
}

impl MessagesOutcome {
    pub fn ticket_id(&self) -> &str {
        match self {
            Self::Fetched { ticket_id, .. }
            | Self::Failed { ticket_id, .. }
            | Self::Pages { ticket_id, .. }
            | Self::CarriedOver { ticket_id, .. } => ticket_id,
        }
    }
}
