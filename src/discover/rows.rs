//! List-first storage: each listed ticket's row is normalized and written at once, laid over
//! what is stored (fields the list lacks or is not trusted for, and the tags, keep the last
//! detail's values). A row never replaces content of the same or a later `updated_at`: the
//! detail always wins, whatever the clocks say: a row is stored only when it shows a later
//! `updated_at` than the last row stored (or answered by a detail) and, less the list's clock
//! offset, than the stored detail; and never over a ticket its detail called deleted. Which
//! fields are taken is decided by the self-verification (`list_field_agreement`); when the list
//! is not trustworthy at all, nothing is stored.

use std::collections::BTreeMap;

use chrono::Utc;

use crate::domain::{ListTrust, TicketId, TicketRecord};
use crate::feishu::parse::ListedTicket;
use crate::normalize::epoch_to_datetime;
use crate::normalize::listed::normalize_list_row;
use crate::store::Store;
use crate::store::listed::StoredContent;

/// Stores list rows with the trust verified so far (read once per discovery).
pub(super) struct RowStore<'a> {
    store: &'a Store,
    trust: ListTrust,
    /// The list's clock offset (`list_clock_offset_ms()`), read once per discovery.
    offset: chrono::Duration,
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
        let offset_ms = store.list_clock_offset_ms().await?;
        if offset_ms != 0 {
            tracing::info!(
                offset_ms,
                "list rows show updated_at on another clock than the details; compared accordingly"
            );
        }
        Ok(Some(Self {
            store,
            trust,
            offset: chrono::Duration::milliseconds(offset_ms),
        }))
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
        let (trust, offset) = (&self.trust, self.offset);
        let written = self
            .store
            .write_list_rows(ids, |id, stored| {
                let row = listed.get(id)?;
                record_from_row(id, row, stored, trust, offset, listed_at)
            })
            .await?;
        Ok(written.stored)
    }
}

/// The record a list row makes, or `None` when it must not be written: what is stored is of
/// the same or a later version, a detail answered this row already, the ticket's detail called
/// it deleted, or the row can't be read (logged; the detail will tell).
fn record_from_row(
    id: &str,
    row: &ListedTicket,
    stored: Option<&StoredContent>,
    trust: &ListTrust,
    offset: chrono::Duration,
    listed_at: chrono::DateTime<Utc>,
) -> Option<TicketRecord> {
    let listed_updated_at = row.updated_at_ms.and_then(epoch_to_datetime);
    if let Some(stored) = stored
        && !is_newer(listed_updated_at, stored, offset)
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

/// Whether a list row showing `listed` is a later version than what is `stored`: after the last
/// list row stored (which a detail may have answered since), and after the stored content, on
/// the list's clock (a detail's `updated_at` plus the offset). A ticket its detail called
/// deleted is never newer: only a detail brings it back.
fn is_newer(
    listed: Option<chrono::DateTime<Utc>>,
    stored: &StoredContent,
    offset: chrono::Duration,
) -> bool {
    let stored_on_list_clock = match stored.content_source.as_str() {
        "list" => stored.updated_at,
        _ => stored.updated_at.map(|at| at + offset),
    };
    !stored.deleted && listed > stored_on_list_clock && listed > stored.list_updated_at
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_row_is_newer_only_past_the_last_row_and_the_detail_on_the_lists_clock() {
        let at = |s: i64| Some(Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap());
        let stored =
            |source: &str, updated: i64, listed: Option<i64>, deleted: bool| StoredContent {
                ticket_id: "1".into(),
                updated_at: at(updated),
                raw: "{}".into(),
                deleted,
                content_source: source.into(),
                list_updated_at: listed.and_then(at),
            };
        let none = chrono::Duration::zero();
        let minute = chrono::Duration::seconds(60);
        // The detail answered the row of +60 s (its own clock says 0): not stored again.
        assert!(!is_newer(
            at(60),
            &stored("detail", 0, Some(60), false),
            none
        ));
        assert!(is_newer(
            at(61),
            &stored("detail", 0, Some(60), false),
            none
        ));
        // With the offset learned, a row of the detail's version is not newer either.
        assert!(!is_newer(at(60), &stored("detail", 0, None, false), minute));
        assert!(is_newer(at(60), &stored("detail", 0, None, false), none));
        // A list-stored row is on the list's clock already.
        assert!(!is_newer(
            at(60),
            &stored("list", 60, Some(60), false),
            minute
        ));
        // Deleted by its detail: never, whatever the row shows; no updated_at: never.
        assert!(!is_newer(at(9_999), &stored("detail", 0, None, true), none));
        assert!(!is_newer(None, &stored("detail", 0, None, false), none));
    }
}
