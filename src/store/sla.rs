//! Business hours and SLA targets: the per-ticket refresh in the ticket's write transaction
//! (`refresh_ticket_sla`), the full recompute after a calendar or target changed
//! (`refresh_sla`), and seeding the `[sla]` section of config.toml into the tables.
//!
//! Seeding and hand edits: seeded rows carry `source = 'config'`; seeding rewrites only those,
//! and only when the section changed since the last seeding (its hash is kept in
//! `sla_refresh_state`), so an analyst's own calendars and targets (`source = 'sql'`) are never
//! touched and unchanged settings cost nothing at start.

use sha2::{Digest, Sha256};
use sqlx::{Postgres, Transaction};

use super::Store;
use crate::config::{ConfigError, SlaSettings};

/// Why seeding failed: a value only the database can check (a time zone, a calendar named by a
/// target), or the database itself.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

/// What seeding did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeded {
    /// The section is as seeded last time: nothing written.
    Unchanged,
    /// Rows with `source = 'config'` rewritten.
    Written { calendars: usize, targets: usize },
}

/// Recomputes the SLA results and business times of `ticket_ids` (SQL `refresh_ticket_sla`),
/// once a calendar or a target exists: before that there is nothing to compute (otherwise a
/// large part of a first install's write cost), and the full recompute that follows the first
/// calendar or target fills every ticket in.
pub async fn refresh_tickets(
    tx: &mut Transaction<'_, Postgres>,
    ticket_ids: &[String],
) -> anyhow::Result<()> {
    if ticket_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "SELECT refresh_ticket_sla($1)
         WHERE EXISTS (SELECT 1 FROM business_calendars) OR EXISTS (SELECT 1 FROM sla_targets)",
    )
    .bind(ticket_ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Seeds `[sla]` and logs what was written; a bad value stays a [`ConfigError`] inside the
    /// error (callers downcast it for exit code 2).
    pub async fn apply_sla_settings(&self, sla: &SlaSettings) -> anyhow::Result<()> {
        match self.seed_sla(sla).await {
            Ok(Seeded::Written { calendars, targets }) => {
                tracing::info!(
                    calendars,
                    targets,
                    "seeded business calendars and SLA targets from [sla]"
                );
                Ok(())
            }
            Ok(Seeded::Unchanged) => Ok(()),
            Err(SeedError::Config(e)) => Err(anyhow::Error::new(e)),
            Err(SeedError::Database(e)) => Err(e.context("seeding [sla] calendars and targets")),
        }
    }

    /// Applies changed calendars and targets to every ticket when something changed since the
    /// last time; returns the tickets recomputed (0: nothing was stale).
    pub async fn refresh_sla(&self) -> anyhow::Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT refresh_sla()")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    /// Writes the `[sla]` section into the tables (rows marked `source = 'config'`) when it
    /// differs from the one seeded last, then applies it to every ticket.
    pub async fn seed_sla(&self, sla: &SlaSettings) -> Result<Seeded, SeedError> {
        let hash = settings_hash(sla);
        let mut tx = self.pool.begin().await.map_err(anyhow::Error::from)?;
        // One seeder at a time (several `run`/`sync` may start together).
        let seeded: Option<String> = sqlx::query_scalar(
            "SELECT config_hash FROM sla_refresh_state WHERE only_row FOR UPDATE",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(anyhow::Error::from)?;
        if seeded.as_deref() == Some(hash.as_str()) || (seeded.is_none() && sla.is_empty()) {
            return Ok(Seeded::Unchanged);
        }
        for c in &sla.calendars {
            let known: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)",
            )
            .bind(&c.timezone)
            .fetch_one(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?;
            if !known {
                return Err(ConfigError::new(format!(
                    "sla.calendars.{}.timezone: {:?} is not a time zone the database knows \
                     (an IANA name such as \"Asia/Shanghai\")",
                    c.id, c.timezone
                ))
                .into());
            }
        }
        write_settings(&mut tx, sla).await?;
        sqlx::query("UPDATE sla_refresh_state SET config_hash = $1")
            .bind(&hash)
            .execute(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?;
        tx.commit().await.map_err(anyhow::Error::from)?;
        self.refresh_sla().await?;
        Ok(Seeded::Written {
            calendars: sla.calendars.len(),
            targets: sla.targets.len(),
        })
    }
}

/// The section's identity: its rows, serialized.
fn settings_hash(sla: &SlaSettings) -> String {
    let text = serde_json::to_string(sla).unwrap_or_default();
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn write_settings(
    tx: &mut Transaction<'_, Postgres>,
    sla: &SlaSettings,
) -> Result<(), SeedError> {
    let db = |e: sqlx::Error| SeedError::Database(e.into());
    let calendar_ids: Vec<&str> = sla.calendars.iter().map(|c| c.id.as_str()).collect();
    // A target's calendar is seeded with it, or made by hand (seeded ones not in the section
    // are about to go).
    for (n, t) in sla.targets.iter().enumerate() {
        let Some(calendar) = &t.calendar else {
            continue;
        };
        let exists = calendar_ids.contains(&calendar.as_str())
            || sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM business_calendars
                                WHERE calendar_id = $1 AND source = 'sql')",
            )
            .bind(calendar)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
        if !exists {
            return Err(ConfigError::new(format!(
                "sla.targets[{n}].calendar: {calendar:?} is neither under [sla.calendars] nor a \
                 calendar made by hand in business_calendars"
            ))
            .into());
        }
    }
    let target_ids: Vec<&str> = sla.targets.iter().map(|t| t.id.as_str()).collect();
    // Targets first: a seeded calendar that is gone may be named by a seeded target.
    sqlx::query("DELETE FROM sla_targets WHERE source = 'config' OR target_id = ANY($1)")
        .bind(&target_ids)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    let gone = sqlx::query(
        "DELETE FROM business_calendars WHERE source = 'config' AND calendar_id <> ALL($1)",
    )
    .bind(&calendar_ids)
    .execute(&mut **tx)
    .await;
    if let Err(e) = gone {
        return Err(anyhow::anyhow!(
            "a calendar removed from [sla] is still named by a target made by hand \
             (sla_targets.calendar_id): {e}"
        )
        .into());
    }
    if sla.default_calendar.is_some() {
        sqlx::query("UPDATE business_calendars SET is_default = false WHERE is_default")
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    for c in &sla.calendars {
        let is_default = sla.default_calendar.as_deref() == Some(c.id.as_str());
        sqlx::query(
            "INSERT INTO business_calendars (calendar_id, timezone, is_default, description, source)
             VALUES ($1, $2, $3, $4, 'config')
             ON CONFLICT (calendar_id) DO UPDATE SET timezone = EXCLUDED.timezone,
                 is_default = EXCLUDED.is_default, description = EXCLUDED.description,
                 source = 'config'",
        )
        .bind(&c.id)
        .bind(&c.timezone)
        .bind(is_default)
        .bind(&c.description)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM business_hours WHERE calendar_id = $1")
            .bind(&c.id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        sqlx::query("DELETE FROM business_holidays WHERE calendar_id = $1")
            .bind(&c.id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        let weekdays: Vec<i16> = c.hours.iter().map(|h| h.weekday).collect();
        let opens: Vec<&str> = c.hours.iter().map(|h| h.opens_at.as_str()).collect();
        let closes: Vec<&str> = c.hours.iter().map(|h| h.closes_at.as_str()).collect();
        sqlx::query(
            "INSERT INTO business_hours (calendar_id, weekday, opens_at, closes_at)
             SELECT $1, d, o::time, c::time FROM unnest($2::smallint[], $3::text[], $4::text[]) AS x(d, o, c)",
        )
        .bind(&c.id)
        .bind(&weekdays)
        .bind(&opens)
        .bind(&closes)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        let dates: Vec<chrono::NaiveDate> = c.holidays.iter().map(|h| h.date).collect();
        let from: Vec<&str> = c.holidays.iter().map(|h| h.closed_from.as_str()).collect();
        let until: Vec<&str> = c.holidays.iter().map(|h| h.closed_until.as_str()).collect();
        sqlx::query(
            "INSERT INTO business_holidays (calendar_id, holiday_date, closed_from, closed_until)
             SELECT $1, d, f::time, u::time FROM unnest($2::date[], $3::text[], $4::text[]) AS x(d, f, u)
             ON CONFLICT DO NOTHING",
        )
        .bind(&c.id)
        .bind(&dates)
        .bind(&from)
        .bind(&until)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    for t in &sla.targets {
        let (field, value) = t.custom_field.clone().unzip();
        sqlx::query(
            "INSERT INTO sla_targets (target_id, metric, target_minutes, business_hours,
                 calendar_id, priority, channel, ticket_type, tag, custom_field,
                 custom_field_value, description, source)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'config')",
        )
        .bind(&t.id)
        .bind(&t.metric)
        .bind(t.minutes)
        .bind(t.business_hours)
        .bind(&t.calendar)
        .bind(t.priority)
        .bind(t.channel)
        .bind(t.ticket_type)
        .bind(&t.tag)
        .bind(field)
        .bind(value)
        .bind(&t.description)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    Ok(())
}
