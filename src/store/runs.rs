//! `sync_runs`: a row per cycle, inserted at its start and completed at its end.

use super::Store;
use crate::domain::CycleReport;

/// What started a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
    Event,
    Demo,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Manual => "manual",
            Self::Event => "event",
            Self::Demo => "demo",
        }
    }
}

impl Store {
    /// Records that a cycle started; returns its run id.
    pub async fn start_run(
        &self,
        helpdesk_id: &str,
        trigger: Trigger,
        worker: &str,
    ) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO sync_runs (helpdesk_id, trigger, worker) VALUES ($1, $2, $3) RETURNING run_id",
        )
        .bind(helpdesk_id)
        .bind(trigger.as_str())
        .bind(worker)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Closes the runs of `helpdesk_id` still `running` as `abandoned` (finished now, with the
    /// reason in `error`). Only for a caller holding the helpdesk lock, which no other worker
    /// then holds: those runs' workers are gone (killed, crashed, or cut from the database
    /// when they ended). Returns how many were closed.
    pub async fn abandon_running_runs(
        &self,
        helpdesk_id: &str,
        found_by: &str,
    ) -> anyhow::Result<u64> {
        let closed = sqlx::query(
            "UPDATE sync_runs SET outcome = 'abandoned', finished_at = now(),
                error = 'the worker ended without completing this run (killed, crashed, or the '
                        || 'database was unreachable when it ended); closed by ' || $2
                        || ' when it started the next run'
             WHERE helpdesk_id = $1 AND outcome = 'running' AND finished_at IS NULL",
        )
        .bind(helpdesk_id)
        .bind(found_by)
        .execute(&self.pool)
        .await?;
        Ok(closed.rows_affected())
    }

    /// Completes a run with its outcome and counts.
    pub async fn finish_run(
        &self,
        run_id: i64,
        outcome: &str,
        error: Option<&str>,
        report: &CycleReport,
    ) -> anyhow::Result<()> {
        let w = &report.written;
        let d = report.discovery.unwrap_or_default();
        let a = &report.api;
        let n = |v: u64| v as i64;
        sqlx::query(
            "UPDATE sync_runs SET finished_at = now(), outcome = $2, error = $3,
                tickets_due = $4, tickets_listed = $5, tickets_queued_by_discovery = $6,
                tickets_changed = $7, tickets_unchanged = $8, tickets_not_found = $9,
                tickets_invalid = $10, tickets_failed = $11, list_requests = $12,
                detail_requests = $13, token_requests = $14, rate_limited = $15, retries = $16,
                catalog_requests = $17, message_requests = $18, tickets_messages_synced = $19,
                tickets_messages_failed = $20, tickets_older_skipped = $21
             WHERE run_id = $1 AND outcome IN ('running', 'abandoned')",
        )
        .bind(run_id)
        .bind(outcome)
        .bind(error)
        .bind(n(report.due_at_start))
        .bind(n(d.listed))
        .bind(n(d.queued))
        .bind(n(w.changed))
        .bind(n(w.unchanged))
        .bind(n(w.not_found))
        .bind(n(w.invalid))
        .bind(n(w.failed))
        .bind(n(a.list_requests))
        .bind(n(a.detail_requests))
        .bind(n(a.token_requests))
        .bind(n(a.rate_limited))
        .bind(n(a.retries))
        .bind(n(a.catalog_requests))
        .bind(n(a.message_requests))
        .bind(n(w.messages_synced))
        .bind(n(w.messages_failed))
        .bind(n(w.older_skipped))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
