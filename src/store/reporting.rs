//! The reporting schema's definitions (`migrations/reporting/*.sql`, one view per file), applied
//! by `migrate` after the versioned migrations: a file whose text changed since it was last
//! applied (table `sql_definitions`), or every file after a versioned migration ran (it may have
//! replaced a view they read). Then the read-only role `helpdesk_sync_reader` is granted the
//! schema again. A view's columns are only ever appended (`CREATE OR REPLACE VIEW` refuses
//! anything else; such a change is a versioned migration).

use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::store::Store;

include!(concat!(env!("OUT_DIR"), "/reporting_definitions.rs"));

/// The role BI tools read as (made by the migration `…_reporting_schema.sql`).
pub const READER_ROLE: &str = "helpdesk_sync_reader";

/// How long applying the definitions waits for a view that a dashboard query is reading: it
/// then gives up until the next `migrate` (the views stay as they were), so a long BI query can
/// never hold the daemon's start.
const DEFINITION_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// What applying the definitions did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefinitionsApplied {
    /// Files applied (their text changed, or everything after a versioned migration).
    pub applied: Vec<String>,
    /// Whether the reader role exists and was granted the schema.
    pub reader_granted: bool,
}

impl Store {
    /// Applies the reporting definitions that are new or changed (all of them when `all`).
    pub async fn apply_reporting_definitions(
        &self,
        all: bool,
    ) -> anyhow::Result<DefinitionsApplied> {
        let applied: Vec<(String, String)> =
            sqlx::query_as("SELECT name, sha256 FROM sql_definitions")
                .fetch_all(self.pool())
                .await
                .context("reading sql_definitions")?;
        let due: Vec<(&str, &str, String)> = REPORTING_DEFINITIONS
            .iter()
            .map(|(name, text)| (*name, *text, sha256_hex(text)))
            .filter(|(name, _, sha)| all || !applied.iter().any(|(n, s)| n == name && s == sha))
            .collect();
        if due.is_empty() {
            return Ok(DefinitionsApplied::default());
        }
        let mut tx = self.pool().begin().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET LOCAL lock_timeout = '{}ms'",
            DEFINITION_LOCK_TIMEOUT.as_millis()
        )))
        .execute(&mut *tx)
        .await?;
        // Two processes migrating at once apply one after the other.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('helpdesk-sync:reporting', 0))")
            .execute(&mut *tx)
            .await?;
        for (name, text, sha) in &due {
            // The definitions are this crate's own files, embedded at build time.
            sqlx::raw_sql(sqlx::AssertSqlSafe(*text))
                .execute(&mut *tx)
                .await
                .with_context(|| format!("applying migrations/reporting/{name}"))?;
            sqlx::query(
                "INSERT INTO sql_definitions (name, sha256) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now()",
            )
            .bind(name)
            .bind(sha)
            .execute(&mut *tx)
            .await?;
        }
        let reader_granted = grant_reader(&mut tx).await?;
        tx.commit().await?;
        Ok(DefinitionsApplied {
            applied: due.iter().map(|(name, ..)| (*name).to_owned()).collect(),
            reader_granted,
        })
    }
}

/// Grants the reader role the reporting schema (when the role exists): usage, and SELECT on
/// every view in it. Nothing else is granted to it anywhere.
async fn grant_reader(tx: &mut sqlx::PgConnection) -> anyhow::Result<bool> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(READER_ROLE)
            .fetch_one(&mut *tx)
            .await?;
    if !exists {
        return Ok(false);
    }
    // Identifiers cannot be bound: READER_ROLE is a constant of this crate.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "GRANT USAGE ON SCHEMA reporting TO {READER_ROLE};
         GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO {READER_ROLE};"
    )))
    .execute(&mut *tx)
    .await
    .context("granting the reporting schema to helpdesk_sync_reader")?;
    Ok(true)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_definition_file_is_embedded_in_name_order() {
        let names: Vec<&str> = REPORTING_DEFINITIONS.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let on_disk =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/reporting"))
                .expect("migrations/reporting")
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".sql"))
                })
                .count();
        assert_eq!(names.len(), on_disk);
        assert!(names.contains(&"tickets.sql"));
        for (name, text) in REPORTING_DEFINITIONS {
            assert!(
                text.contains("CREATE OR REPLACE VIEW reporting."),
                "{name} defines a reporting view"
            );
        }
    }
}
