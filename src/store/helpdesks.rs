//! The `helpdesks` table: each helpdesk's id and display name, which the reporting views show
//! beside every row (`helpdesk_id`, `helpdesk_name`). The daemon registers its configured
//! helpdesks at start ([`Store::register_helpdesks`]); the upgrade to several helpdesks seeds
//! one row per helpdesk the stored tickets name, called by its id until then.

use anyhow::Context;

use crate::store::Store;

/// A helpdesk as the config names it: what [`Store::register_helpdesks`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpdeskName {
    /// The Feishu helpdesk id (`tickets.helpdesk_id`): the key the reporting views join on.
    pub helpdesk_id: String,
    /// The display name (config `[[helpdesks]] name`) dashboards show as `helpdesk_name`.
    pub name: String,
}

/// A row of the `helpdesks` table.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredHelpdesk {
    /// The Feishu helpdesk id.
    pub helpdesk_id: String,
    /// Its display name (the id until a name was registered).
    pub name: String,
}

impl Store {
    /// Registers the configured helpdesks: inserts each one missing from `helpdesks` and sets
    /// the name of each one already there (an upsert on `helpdesk_id`). Helpdesks not in the
    /// list are kept (their tickets stay in the database and in the views). An empty name is
    /// stored as the id; an id listed twice keeps its last name. Call it at every start, after
    /// `migrate`; idempotent, one statement. Returns how many rows were inserted or renamed (0 when nothing changed).
    pub async fn register_helpdesks(&self, helpdesks: &[HelpdeskName]) -> anyhow::Result<u64> {
        let ids: Vec<&str> = helpdesks.iter().map(|h| h.helpdesk_id.as_str()).collect();
        let names: Vec<&str> = helpdesks
            .iter()
            .map(|h| match h.name.trim() {
                "" => h.helpdesk_id.as_str(),
                name => name,
            })
            .collect();
        let done = sqlx::query(
            "INSERT INTO helpdesks AS h (helpdesk_id, name)
             SELECT DISTINCT ON (id) id, name
               FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(id, name, n)
              WHERE id <> ''
              ORDER BY id, n DESC
             ON CONFLICT (helpdesk_id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()
              WHERE h.name IS DISTINCT FROM EXCLUDED.name",
        )
        .bind(&ids)
        .bind(&names)
        .execute(self.pool())
        .await
        .context("registering the helpdesks (table helpdesks)")?;
        Ok(done.rows_affected())
    }

    /// The `helpdesks` table, by id.
    pub async fn helpdesks(&self) -> anyhow::Result<Vec<StoredHelpdesk>> {
        sqlx::query_as("SELECT helpdesk_id, name FROM helpdesks ORDER BY helpdesk_id")
            .fetch_all(self.pool())
            .await
            .context("reading the helpdesks table")
    }
}
