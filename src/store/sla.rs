//! Business hours and SLA targets: the per-ticket refresh in the ticket's write transaction
//! (`refresh_ticket_sla`), the full recompute after a calendar or target changed
//! (`refresh_sla`), and seeding the `[sla]` section of config.toml into the tables (calendars,
//! targets, and each helpdesk's own calendar, `helpdesk_calendars`).
//!
//! Seeding and hand edits: seeded rows carry `source = 'config'`; seeding rewrites only those,
//! and only when the section changed since the last seeding (its hash is kept in
//! `sla_refresh_state`), so an analyst's own calendars and targets (`source = 'sql'`) are never
//! touched and unchanged settings cost nothing at start.
//!
//! Reporting edits never hold the pipe: seeding and the full recompute give up on a lock held
//! longer than [`SLA_LOCK_TIMEOUT`] (an analyst's open transaction on a calendar) and are done
//! at a later start or cycle; a ticket's own refresh that cannot get its locks is skipped
//! (kept in `sla_refresh_pending` for `refresh_sla()`), and its write goes on. A row of
//! `[sla]` the database refuses is left out, logged by name, and the rest is seeded.

use sha2::{Digest, Sha256};
use sqlx::{Acquire, Postgres, Transaction};

use super::Store;
use crate::config::{ConfigError, SlaSettings};

/// How long seeding, the full recompute and a ticket's own SLA refresh wait for a lock (an
/// analyst's open transaction on a calendar or target) before giving up for now.
pub const SLA_LOCK_TIMEOUT: &str = "2s";

/// A ticket's own SLA refresh waits less: it is in the ticket's write, which must not queue
/// behind an edit (every batch of a cycle would wait again); a skipped one is done by the next
/// `refresh_sla()`.
const TICKET_SLA_LOCK_TIMEOUT: &str = "200ms";

/// SQLSTATE lock_not_available: a lock wait ran into `lock_timeout`.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// The error, or one in its chain, is a lock wait that ran into `lock_timeout`.
fn is_lock_timeout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .and_then(|d| d.code())
            .is_some_and(|code| code == LOCK_NOT_AVAILABLE)
    })
}

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeded {
    /// The section is as seeded last time: nothing written.
    Unchanged,
    /// Rows with `source = 'config'` rewritten; `refused` names the rows the database refused
    /// (left out, the rest seeded).
    Written {
        calendars: usize,
        targets: usize,
        refused: Vec<String>,
    },
    /// A lock was held longer than [`SLA_LOCK_TIMEOUT`] (an open edit of a calendar or target):
    /// nothing written, tried again at the next start.
    Postponed,
}

/// What the full recompute did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaRefresh {
    /// Tickets recomputed (0: nothing was stale).
    Done(u64),
    /// A lock was held longer than [`SLA_LOCK_TIMEOUT`]: done at a later cycle.
    Postponed,
}

/// Recomputes the SLA results and business times of `ticket_ids` (SQL `refresh_ticket_sla`),
/// once a calendar or a target exists: before that there is nothing to compute (otherwise a
/// large part of a first install's write cost), and the full recompute that follows the first
/// calendar or target fills every ticket in.
///
/// Never holds or fails the ticket's write: in a savepoint with a [`TICKET_SLA_LOCK_TIMEOUT`]
/// lock wait; when it cannot be done (an open edit of a target holds a lock, or anything else), the
/// tickets are left in `sla_refresh_pending` for the next `refresh_sla()` and the write goes on.
pub async fn refresh_tickets(
    tx: &mut Transaction<'_, Postgres>,
    ticket_ids: &[String],
) -> anyhow::Result<()> {
    if ticket_ids.is_empty() {
        return Ok(());
    }
    let previous: String = sqlx::query_scalar("SELECT current_setting('lock_timeout')")
        .fetch_one(&mut **tx)
        .await?;
    let mut savepoint = tx.begin().await?;
    let refreshed = async {
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(TICKET_SLA_LOCK_TIMEOUT)
            .execute(&mut *savepoint)
            .await?;
        sqlx::query(
            "SELECT refresh_ticket_sla($1)
             WHERE EXISTS (SELECT 1 FROM business_calendars) OR EXISTS (SELECT 1 FROM sla_targets)",
        )
        .bind(ticket_ids)
        .execute(&mut *savepoint)
        .await?;
        // SET LOCAL outlives a released savepoint: the rest of the write keeps its own.
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(&previous)
            .execute(&mut *savepoint)
            .await?;
        Ok::<_, sqlx::Error>(())
    }
    .await;
    match refreshed {
        Ok(()) => savepoint.commit().await?,
        Err(error) => {
            savepoint.rollback().await?;
            tracing::warn!(
                error = %error,
                tickets = ticket_ids.len(),
                "SLA results of these tickets not computed now (a calendar or target edit \
                 holds a lock?); refresh_sla() after the cycle does them"
            );
            sqlx::query(
                "INSERT INTO sla_refresh_pending (ticket_id) SELECT unnest($1::text[])
                 ON CONFLICT DO NOTHING",
            )
            .bind(ticket_ids)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

impl Store {
    /// Seeds `[sla]` and logs what was written; a bad value stays a [`ConfigError`] inside the
    /// error (callers downcast it for exit code 2). Nothing the database does with the section
    /// stops the caller: a refused row is logged by name and left out, a held lock postpones
    /// seeding to the next start, and any other database failure is logged (the tables keep
    /// what they had). Returns false when postponed.
    pub async fn apply_sla_settings(&self, sla: &SlaSettings) -> anyhow::Result<bool> {
        match self.seed_sla(sla).await {
            Ok(Seeded::Written {
                calendars,
                targets,
                refused,
            }) => {
                for row in &refused {
                    tracing::error!(refused = %row, "an [sla] row was refused by the database and left out");
                }
                tracing::info!(
                    calendars,
                    targets,
                    refused = refused.len(),
                    "seeded business calendars and SLA targets from [sla]"
                );
                Ok(true)
            }
            Ok(Seeded::Unchanged) => Ok(true),
            Ok(Seeded::Postponed) => {
                tracing::warn!(
                    lock_timeout = SLA_LOCK_TIMEOUT,
                    "[sla] not seeded now: an open edit of a calendar or target holds a lock; \
                     tried again later"
                );
                Ok(false)
            }
            Err(SeedError::Config(e)) => Err(anyhow::Error::new(e)),
            Err(SeedError::Database(e)) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "[sla] not seeded (the tables keep what they had); tried again at the next start"
                );
                Ok(true)
            }
        }
    }

    /// Applies changed calendars and targets to every ticket when something changed since the
    /// last time, waiting at most [`SLA_LOCK_TIMEOUT`] for a lock (an analyst's open edit of a
    /// calendar or target): then it is [`SlaRefresh::Postponed`] to a later cycle.
    pub async fn refresh_sla(&self) -> anyhow::Result<SlaRefresh> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(SLA_LOCK_TIMEOUT)
            .execute(&mut *tx)
            .await?;
        let n: i64 = match sqlx::query_scalar("SELECT refresh_sla()")
            .fetch_one(&mut *tx)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                let e = anyhow::Error::from(e);
                return if is_lock_timeout(&e) {
                    Ok(SlaRefresh::Postponed)
                } else {
                    Err(e)
                };
            }
        };
        tx.commit().await?;
        Ok(SlaRefresh::Done(n.max(0) as u64))
    }

    /// Writes the `[sla]` section into the tables (rows marked `source = 'config'`) when it
    /// differs from the one seeded last, then applies it to every ticket.
    pub async fn seed_sla(&self, sla: &SlaSettings) -> Result<Seeded, SeedError> {
        match self.seed_sla_once(sla).await {
            Err(SeedError::Database(e)) if is_lock_timeout(&e) => Ok(Seeded::Postponed),
            other => other,
        }
    }

    async fn seed_sla_once(&self, sla: &SlaSettings) -> Result<Seeded, SeedError> {
        let hash = settings_hash(sla);
        let mut tx = self.pool.begin().await.map_err(anyhow::Error::from)?;
        // An open edit of a calendar or target must not hold the start.
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(SLA_LOCK_TIMEOUT)
            .execute(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?;
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
        let written = write_settings(&mut tx, sla).await?;
        sqlx::query("UPDATE sla_refresh_state SET config_hash = $1")
            .bind(&hash)
            .execute(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?;
        tx.commit().await.map_err(anyhow::Error::from)?;
        // The daemon's cycle applies it when this cannot now.
        if let SlaRefresh::Postponed = self.refresh_sla().await? {
            tracing::warn!(
                "SLA results of the seeded [sla] not applied now (a lock is held); a later cycle applies them"
            );
        }
        Ok(Seeded::Written {
            calendars: written.calendars,
            targets: written.targets,
            refused: written.refused,
        })
    }
}

/// `run`: seeding postponed at start (an open edit held a lock) is tried again every minute
/// until it is done, in the background, so the daemon syncs meanwhile.
pub fn retry_sla_seeding(
    store: Store,
    sla: SlaSettings,
    shutdown: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
            }
            match store.apply_sla_settings(&sla).await {
                Ok(false) => continue,
                Ok(true) => return,
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "[sla] not seeded");
                    return;
                }
            }
        }
    });
}

/// The section's identity: its rows, serialized.
fn settings_hash(sla: &SlaSettings) -> String {
    let text = serde_json::to_string(sla).unwrap_or_default();
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What [`write_settings`] wrote and what the database refused.
struct Written {
    calendars: usize,
    targets: usize,
    /// One line per row left out, naming it (`sla.calendars.<id>: ...`, `sla.targets[n]: ...`).
    refused: Vec<String>,
}

/// Writes the section, each calendar and target in its own savepoint: a row the database
/// refuses is left out (named in `refused`), the others are written.
async fn write_settings(
    tx: &mut Transaction<'_, Postgres>,
    sla: &SlaSettings,
) -> Result<Written, SeedError> {
    let db = |e: sqlx::Error| SeedError::Database(e.into());
    check_target_calendars(tx, sla).await?;
    let mut refused = remove_seeded_rows(tx, sla).await.map_err(db)?;
    let calendars = write_calendars(tx, sla, &mut refused).await.map_err(db)?;
    let targets = write_targets(tx, sla, &mut refused).await.map_err(db)?;
    write_helpdesk_calendars(tx, sla, &mut refused)
        .await
        .map_err(db)?;
    Ok(Written {
        calendars,
        targets,
        refused,
    })
}

/// The ids of the section's calendars.
fn calendar_ids(sla: &SlaSettings) -> Vec<&str> {
    sla.calendars.iter().map(|c| c.id.as_str()).collect()
}

/// A target's calendar, and a helpdesk's, is seeded with it, or made by hand (seeded ones not
/// in the section are about to go).
async fn check_target_calendars(
    tx: &mut Transaction<'_, Postgres>,
    sla: &SlaSettings,
) -> Result<(), SeedError> {
    let calendar_ids = calendar_ids(sla);
    let named =
        sla.targets.iter().enumerate().filter_map(|(n, t)| {
            Some((format!("sla.targets[{n}].calendar"), t.calendar.as_ref()?))
        });
    let of_helpdesks = sla
        .helpdesk_calendars
        .iter()
        .map(|(helpdesk, calendar)| (format!("sla.helpdesk_calendars.{helpdesk}"), calendar));
    for (key, calendar) in named.chain(of_helpdesks) {
        let exists = calendar_ids.contains(&calendar.as_str())
            || sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM business_calendars
                                WHERE calendar_id = $1 AND source = 'sql')",
            )
            .bind(calendar)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| SeedError::Database(e.into()))?;
        if !exists {
            return Err(ConfigError::new(format!(
                "{key}: {calendar:?} is neither under [sla.calendars] nor a \
                 calendar made by hand in business_calendars"
            ))
            .into());
        }
    }
    Ok(())
}

/// Removes the seeded rows the section is about to write again or no longer has, and the
/// default mark when the section names a default calendar. Returns a `refused` line for each
/// seeded calendar removed from the section that stays (targets made by hand name it).
async fn remove_seeded_rows(
    tx: &mut Transaction<'_, Postgres>,
    sla: &SlaSettings,
) -> Result<Vec<String>, sqlx::Error> {
    let calendar_ids = calendar_ids(sla);
    let target_ids: Vec<&str> = sla.targets.iter().map(|t| t.id.as_str()).collect();
    // Targets first: a seeded calendar that is gone may be named by a seeded target.
    sqlx::query("DELETE FROM sla_targets WHERE source = 'config' OR target_id = ANY($1)")
        .bind(&target_ids)
        .execute(&mut **tx)
        .await?;
    let helpdesks: Vec<&str> = sla.helpdesk_calendars.keys().map(String::as_str).collect();
    sqlx::query("DELETE FROM helpdesk_calendars WHERE source = 'config' OR helpdesk = ANY($1)")
        .bind(&helpdesks)
        .execute(&mut **tx)
        .await?;
    let refused = kept_calendars(tx, &calendar_ids).await?;
    sqlx::query(
        "DELETE FROM business_calendars c WHERE source = 'config' AND calendar_id <> ALL($1)
            AND NOT EXISTS (SELECT 1 FROM sla_targets t WHERE t.calendar_id = c.calendar_id)",
    )
    .bind(&calendar_ids)
    .execute(&mut **tx)
    .await?;
    if sla.default_calendar.is_some() {
        sqlx::query("UPDATE business_calendars SET is_default = false WHERE is_default")
            .execute(&mut **tx)
            .await?;
    }
    Ok(refused)
}

/// A seeded calendar removed from the section goes, unless a target made by hand still names
/// it: then it stays (a deletion would fail the whole seeding), and the log says so. Returns
/// one `refused` line per calendar kept.
async fn kept_calendars(
    tx: &mut Transaction<'_, Postgres>,
    calendar_ids: &[&str],
) -> Result<Vec<String>, sqlx::Error> {
    let kept: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.calendar_id, string_agg(t.target_id, ', ' ORDER BY t.target_id)
           FROM business_calendars c JOIN sla_targets t ON t.calendar_id = c.calendar_id
          WHERE c.source = 'config' AND c.calendar_id <> ALL($1)
          GROUP BY c.calendar_id",
    )
    .bind(calendar_ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(kept
        .iter()
        .map(|(calendar, targets)| {
            format!(
                "sla.calendars.{calendar}: removed from [sla] but kept, because targets made by \
                 hand name it (sla_targets: {targets}); delete or change them to let it go"
            )
        })
        .collect())
}

/// Writes each calendar of the section in its own savepoint; a refused one is named in
/// `refused`. Returns how many were written.
async fn write_calendars(
    tx: &mut Transaction<'_, Postgres>,
    sla: &SlaSettings,
    refused: &mut Vec<String>,
) -> Result<usize, sqlx::Error> {
    let mut calendars = 0;
    for c in &sla.calendars {
        let mut savepoint = tx.begin().await?;
        match write_calendar(&mut savepoint, sla, c).await {
            Ok(()) => {
                savepoint.commit().await?;
                calendars += 1;
            }
            Err(e) => {
                savepoint.rollback().await?;
                refused.push(format!("sla.calendars.{}: {e}", c.id));
            }
        }
    }
    Ok(calendars)
}

/// Writes each target of the section in its own savepoint; a refused one is named in
/// `refused`. Returns how many were written.
async fn write_targets(
    tx: &mut Transaction<'_, Postgres>,
    sla: &SlaSettings,
    refused: &mut Vec<String>,
) -> Result<usize, sqlx::Error> {
    let mut targets = 0;
    for (n, t) in sla.targets.iter().enumerate() {
        let mut savepoint = tx.begin().await?;
        match write_target(&mut savepoint, t).await {
            Ok(()) => {
                savepoint.commit().await?;
                targets += 1;
            }
            Err(e) => {
                savepoint.rollback().await?;
                refused.push(format!("sla.targets[{n}] ({}): {e}", t.id));
            }
        }
    }
    Ok(targets)
}

/// Writes each helpdesk's calendar of the section in its own savepoint; a refused one is named
/// in `refused`.
async fn write_helpdesk_calendars(
    tx: &mut Transaction<'_, Postgres>,
    sla: &SlaSettings,
    refused: &mut Vec<String>,
) -> Result<(), sqlx::Error> {
    for (helpdesk, calendar) in &sla.helpdesk_calendars {
        let mut savepoint = tx.begin().await?;
        let written = sqlx::query(
            "INSERT INTO helpdesk_calendars (helpdesk, calendar_id, source)
             VALUES ($1, $2, 'config')",
        )
        .bind(helpdesk)
        .bind(calendar)
        .execute(&mut *savepoint)
        .await;
        match written {
            Ok(_) => savepoint.commit().await?,
            Err(e) => {
                savepoint.rollback().await?;
                refused.push(format!("sla.helpdesk_calendars.{helpdesk}: {e}"));
            }
        }
    }
    Ok(())
}

async fn write_calendar(
    tx: &mut Transaction<'_, Postgres>,
    sla: &SlaSettings,
    c: &crate::config::CalendarSettings,
) -> Result<(), sqlx::Error> {
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
    .await?;
    sqlx::query("DELETE FROM business_hours WHERE calendar_id = $1")
        .bind(&c.id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM business_holidays WHERE calendar_id = $1")
        .bind(&c.id)
        .execute(&mut **tx)
        .await?;
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
    .await?;
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
    .await?;
    Ok(())
}

async fn write_target(
    tx: &mut Transaction<'_, Postgres>,
    t: &crate::config::TargetSettings,
) -> Result<(), sqlx::Error> {
    let (field, value) = t.custom_field.clone().unzip();
    sqlx::query(
        "INSERT INTO sla_targets (target_id, metric, target_minutes, business_hours,
             calendar_id, priority, channel, ticket_type, tag, custom_field,
             custom_field_value, description, helpdesk, source)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'config')",
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
    .bind(&t.helpdesk)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
