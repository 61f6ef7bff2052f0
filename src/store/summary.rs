//! What the database holds, in a few numbers: the closing summary `demo` prints.

use anyhow::Context;

use crate::store::Store;

/// Row counts, reply metrics and SLA results of the whole database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatabaseSummary {
    pub tickets: i64,
    pub people: i64,
    pub notes: i64,
    pub messages: i64,
    /// Tickets with a conversation (`ticket_reply_metrics`).
    pub conversations: i64,
    /// Percent of resolved conversations answered in one touch (None: none resolved yet).
    pub one_touch_percent: Option<f64>,
    pub median_customer_wait_minutes: Option<f64>,
    /// Per SLA target, by id.
    pub sla: Vec<SlaTargetSummary>,
    /// Tickets per helpdesk, as (helpdesk id, count), by id: what each helpdesk brought.
    pub tickets_by_helpdesk: Vec<(String, i64)>,
}

/// One SLA target's clocks.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SlaTargetSummary {
    pub target_id: String,
    pub clocks: i64,
    pub breached: i64,
    pub running: i64,
}

impl Store {
    /// Reads the [`DatabaseSummary`].
    pub async fn summary(&self) -> anyhow::Result<DatabaseSummary> {
        let (tickets, people, notes, messages): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM tickets), (SELECT count(*) FROM helpdesk_users),
                    (SELECT count(*) FROM ticket_comments), (SELECT count(*) FROM ticket_messages)",
        )
        .fetch_one(self.pool())
        .await
        .context("reading the summary")?;
        let (conversations, one_touch_percent, median_customer_wait_minutes): (
            i64,
            Option<f64>,
            Option<f64>,
        ) = sqlx::query_as(
            "SELECT count(*),
                    (100.0 * count(*) FILTER (WHERE is_one_touch)
                        / NULLIF(count(*) FILTER (WHERE touch_class IS NOT NULL), 0))::float8,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY customer_wait_seconds) / 60
             FROM ticket_reply_metrics",
        )
        .fetch_one(self.pool())
        .await
        .context("reading the reply metrics")?;
        let sla = sqlx::query_as(
            "SELECT target_id, count(*) AS clocks, count(*) FILTER (WHERE is_breached) AS breached,
                    count(*) FILTER (WHERE is_active) AS running
             FROM ticket_sla GROUP BY target_id ORDER BY target_id",
        )
        .fetch_all(self.pool())
        .await
        .context("reading the SLA results")?;
        let tickets_by_helpdesk = sqlx::query_as(
            "SELECT coalesce(helpdesk_id, ''), count(*) FROM tickets GROUP BY 1 ORDER BY 1",
        )
        .fetch_all(self.pool())
        .await
        .context("counting tickets per helpdesk")?;
        Ok(DatabaseSummary {
            tickets,
            tickets_by_helpdesk,
            people,
            notes,
            messages,
            conversations,
            one_touch_percent,
            median_customer_wait_minutes,
            sla,
        })
    }

    /// Whether `migrate` has run on this database (its run records table exists).
    pub async fn is_migrated(&self) -> anyhow::Result<bool> {
        let found: Option<String> = sqlx::query_scalar("SELECT to_regclass('sync_runs')::text")
            .fetch_one(self.pool())
            .await
            .context("reading the schema")?;
        Ok(found.is_some())
    }

    /// One round trip: whether the database answers at all.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(self.pool()).await.map(drop)
    }
}
