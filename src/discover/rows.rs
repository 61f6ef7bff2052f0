//! List-first storage: each listed ticket's row is normalized and written at once, laid over
//! what is stored (fields the list lacks or is not trusted for, and the tags, keep the last
//! detail's values). A row never replaces content of the same or a later `updated_at`: the
//! detail always wins. Which fields are taken is decided by the self-verification
//! (`list_field_agreement`); when the list is not trustworthy at all, nothing is stored.

use std::collections::BTreeMap;

use chrono::Utc;

use crate::domain::{ListTrust, TicketId, TicketRecord};
use crate::feishu::client::ListedTicket;
use crate::normalize::epoch_to_datetime;
use crate::normalize::listed::normalize_list_row;
use crate::store::Store;
use crate::store::listed::StoredContent;

/// Stores list rows with the trust verified so far (read once per discovery).
pub(super) struct RowStore<'a> {
    store: &'a Store,
    trust: ListTrust,
}

impl<'a> RowStore<'a> {
    /// `None` when list rows are not trusted at all (then discovery queues ids only).
    pub async fn new(store: &'a Store) -> anyhow::Result<Option<Self>> {
        let trust = store.list_trust().await?;
        if trust.is_disabled() {
            tracing::warn!(
                distrusted = ?trust.distrusted,
                "list rows are not stored: they differed from the details (see list_field_agreement); details only"
            );
            return Ok(None);
        }
        Ok(Some(Self { store, trust }))
    }

    /// Writes the rows of `listed` (by ticket id) that are new or newer than what is stored;
    /// returns how many changed stored content.
    pub async fn store(&mut self, listed: &BTreeMap<String, &ListedTicket>) -> anyhow::Result<u64> {
        if listed.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = listed.keys().cloned().collect();
        match self.write(&ids, listed).await {
            Ok(stored) => Ok(stored),
            Err(error) => {
                // One row the database refuses must not cost the page: one by one, and a row
                // still refused waits for its detail (whose failure is recorded and retried).
                tracing::warn!(
                    error = format!("{error:#}"),
                    rows = ids.len(),
                    "list rows refused by the database; storing them one by one"
                );
                let mut stored = 0;
                for id in ids {
                    match self.write(std::slice::from_ref(&id), listed).await {
                        Ok(n) => stored += n,
                        Err(error) => tracing::warn!(
                            ticket_id = %id,
                            error = format!("{error:#}"),
                            "list row not stored; the ticket waits for its detail"
                        ),
                    }
                }
                Ok(stored)
            }
        }
    }

    async fn write(
        &self,
        ids: &[String],
        listed: &BTreeMap<String, &ListedTicket>,
    ) -> anyhow::Result<u64> {
        let listed_at = Utc::now();
        let trust = &self.trust;
        let written = self
            .store
            .write_list_rows(ids, |id, stored| {
                let row = listed.get(id)?;
                record_from_row(id, row, stored, trust, listed_at)
            })
            .await?;
        Ok(written.stored)
    }
}

/// The record a list row makes, or `None` when it must not be written: what is stored is of
/// the same or a later version, or the row can't be read (logged; the detail will tell).
fn record_from_row(
    id: &str,
    row: &ListedTicket,
    stored: Option<&StoredContent>,
    trust: &ListTrust,
    listed_at: chrono::DateTime<Utc>,
) -> Option<TicketRecord> {
    let listed_updated_at = row.updated_at_ms.and_then(epoch_to_datetime);
    if let Some(stored) = stored
        && !stored.deleted
        && stored.updated_at >= listed_updated_at
    {
        return None;
    }
    let ticket_id = TicketId::parse(id).ok()?;
    match normalize_list_row(
        &ticket_id,
        &row.raw,
        stored.map(|s| s.raw.as_str()),
        trust,
        listed_at,
    ) {
        Ok(normalized) => Some(normalized.record),
        Err(error) => {
            tracing::warn!(
                ticket_id = id,
                endpoint = "list",
                error = %error,
                "a list row could not be read; the ticket waits for its detail"
            );
            None
        }
    }
}
