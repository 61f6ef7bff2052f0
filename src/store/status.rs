//! The reads behind `status`, `/readyz` and the health metric, each for one helpdesk (an empty
//! helpdesk id: all of them): the queue's counts, claims and parked tickets, the lock, the last
//! runs, open tickets' freshness, discovery positions, and the states in which work keeps
//! failing or waiting. Plain rows; judging them is `status`'s job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Store;
use crate::domain::QueueCounts;

/// Tickets parked (not fetched again until enqueued) with one outcome and error code.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Parked {
    pub outcome: Option<String>,
    pub error_code: Option<i64>,
    pub tickets: i64,
}

/// A `sync_runs` row as `status` shows it.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct RunStatus {
    pub run_id: i64,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub error: Option<String>,
    pub tickets_changed: Option<i64>,
    pub tickets_unchanged: Option<i64>,
    pub tickets_failed: Option<i64>,
    pub detail_requests: Option<i64>,
    pub list_requests: Option<i64>,
}

/// Whose queue rows a read counts.
#[derive(Debug, Clone, Copy)]
pub struct QueueScope<'a> {
    /// The helpdesk id; empty: every helpdesk.
    pub helpdesk_id: &'a str,
    /// Also the rows no helpdesk owns yet (queued before several helpdesks were supported):
    /// the first configured helpdesk's, which adopts them when its syncer starts.
    pub unowned: bool,
}

/// Who holds a helpdesk's lock (`sync_lock`).
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct LockState {
    /// `host:pid:nonce` of the holder; None after a clean release.
    pub holder: Option<String>,
    /// Raised by every new holder.
    pub epoch: i64,
    /// When the holder took it.
    pub taken_at: DateTime<Utc>,
    /// When the holder last renewed it (every second while alive).
    pub renewed_at: DateTime<Utc>,
    /// Seconds since `renewed_at`, by the database's clock.
    #[serde(skip)]
    pub renewed_seconds_ago: f64,
}

/// Open (not deleted, not closed) tickets and the oldest successful fetch among them.
#[derive(Debug)]
pub struct OpenTickets {
    pub count: i64,
    pub oldest_fetched_at: Option<DateTime<Utc>>,
}

/// Where the history backfill stands.
#[derive(Debug, Clone, Copy)]
pub struct BackfillPosition {
    pub scanned_until: DateTime<Utc>,
    pub completed: bool,
}

/// A discovery scan that has not moved for longer than asked.
#[derive(Debug)]
pub struct StalledScan {
    /// `updated` (the watermark) or `backfill`.
    pub scan: String,
    /// Since the watermark (`updated`) or the backfill's last move.
    pub age_seconds: f64,
}

/// Tickets in one failing state: how many, the lowest id, and that ticket's last error.
#[derive(Debug)]
pub struct FailingTickets {
    pub count: i64,
    pub example: Option<String>,
    pub error: Option<String>,
}

impl From<(i64, Option<String>, Option<String>)> for FailingTickets {
    fn from((count, example, error): (i64, Option<String>, Option<String>)) -> Self {
        Self {
            count,
            example,
            error,
        }
    }
}

impl Store {
    /// The queue rows of `scope` by state.
    pub async fn helpdesk_queue_counts(
        &self,
        scope: QueueScope<'_>,
    ) -> anyhow::Result<QueueCounts> {
        let (known, due_now, failed, parked): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT count(*),
                    count(*) FILTER (WHERE next_due_at <= now()),
                    count(*) FILTER (WHERE last_outcome = 'failed'),
                    count(*) FILTER (WHERE next_due_at = 'infinity')
             FROM ticket_sync_state WHERE (helpdesk_id = $1 OR $1 = '' OR ($2 AND helpdesk_id IS NULL))",
        )
        .bind(scope.helpdesk_id)
        .bind(scope.unowned)
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueCounts {
            known,
            due_now,
            failed,
            parked,
        })
    }

    /// Tickets of `scope` claimed by a worker whose lease has
    /// not run out.
    pub async fn claimed_tickets(&self, scope: QueueScope<'_>) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM ticket_sync_state
             WHERE claimed_until > now() AND (helpdesk_id = $1 OR $1 = '' OR ($2 AND helpdesk_id IS NULL))",
        )
        .bind(scope.helpdesk_id)
        .bind(scope.unowned)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Parked tickets of `scope` by outcome and error code,
    /// the largest group first.
    pub async fn parked_tickets(&self, scope: QueueScope<'_>) -> anyhow::Result<Vec<Parked>> {
        Ok(sqlx::query_as(
            "SELECT last_outcome AS outcome, last_error_code AS error_code, count(*) AS tickets
             FROM ticket_sync_state
             WHERE next_due_at = 'infinity' AND (helpdesk_id = $1 OR $1 = '' OR ($2 AND helpdesk_id IS NULL))
             GROUP BY 1, 2 ORDER BY 3 DESC",
        )
        .bind(scope.helpdesk_id)
        .bind(scope.unowned)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Who holds the lock of `helpdesk_id`, since when, and when it last proved alive; None
    /// before anyone took it.
    pub async fn lock_state(&self, helpdesk_id: &str) -> anyhow::Result<Option<LockState>> {
        Ok(sqlx::query_as(
            "SELECT holder, epoch, taken_at, renewed_at,
                    EXTRACT(EPOCH FROM now() - renewed_at)::float8 AS renewed_seconds_ago
             FROM sync_lock WHERE helpdesk_id = $1",
        )
        .bind(helpdesk_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The last run started for `helpdesk_id` (any helpdesk when empty).
    pub async fn last_run(&self, helpdesk_id: &str) -> anyhow::Result<Option<RunStatus>> {
        Ok(sqlx::query_as(
            "SELECT run_id, trigger, started_at, finished_at, outcome, error, tickets_changed,
                    tickets_unchanged, tickets_failed, detail_requests, list_requests
             FROM sync_runs WHERE helpdesk_id = $1 OR $1 = '' ORDER BY run_id DESC LIMIT 1",
        )
        .bind(helpdesk_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The last run of `helpdesk_id` (any helpdesk when empty) that finished.
    pub async fn last_finished_run(&self, helpdesk_id: &str) -> anyhow::Result<Option<RunStatus>> {
        Ok(sqlx::query_as(
            "SELECT run_id, trigger, started_at, finished_at, outcome, error, tickets_changed,
                    tickets_unchanged, tickets_failed, detail_requests, list_requests
             FROM sync_runs WHERE (helpdesk_id = $1 OR $1 = '') AND finished_at IS NOT NULL
             ORDER BY run_id DESC LIMIT 1",
        )
        .bind(helpdesk_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// When the last successful run of `helpdesk_id` (any helpdesk when empty) finished.
    pub async fn last_ok_run_finished_at(
        &self,
        helpdesk_id: &str,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT max(finished_at) FROM sync_runs WHERE (helpdesk_id = $1 OR $1 = '') AND outcome = 'ok'",
        )
        .bind(helpdesk_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The last error any run of `helpdesk_id` (any helpdesk when empty) recorded.
    pub async fn last_run_error(&self, helpdesk_id: &str) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT error FROM sync_runs WHERE error IS NOT NULL AND (helpdesk_id = $1 OR $1 = '')
             ORDER BY run_id DESC LIMIT 1",
        )
        .bind(helpdesk_id)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// Open tickets (status below 50, not deleted) of `scope`
    /// and their oldest successful fetch.
    pub async fn open_tickets(&self, scope: QueueScope<'_>) -> anyhow::Result<OpenTickets> {
        let (count, oldest_fetched_at): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*), min(s.last_fetched_at)
             FROM tickets t JOIN ticket_sync_state s USING (ticket_id)
             WHERE t.deleted_at IS NULL AND (t.status IS NULL OR t.status < 50)
               AND (s.helpdesk_id = $1 OR $1 = '' OR ($2 AND s.helpdesk_id IS NULL))",
        )
        .bind(scope.helpdesk_id)
        .bind(scope.unowned)
        .fetch_one(&self.pool)
        .await?;
        Ok(OpenTickets {
            count,
            oldest_fetched_at,
        })
    }

    /// How far the `updated` scan of `helpdesk_id` (the least advanced helpdesk when empty)
    /// has scanned (the discovery watermark).
    pub async fn discovery_watermark(
        &self,
        helpdesk_id: &str,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT min(scanned_until) FROM discovery_state
             WHERE scan = 'updated' AND (helpdesk_id = $1 OR $1 = '')",
        )
        .bind(helpdesk_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The history backfill's position for `helpdesk_id` (the least advanced helpdesk's when
    /// empty), once it started.
    pub async fn backfill_position(
        &self,
        helpdesk_id: &str,
    ) -> anyhow::Result<Option<BackfillPosition>> {
        let row: Option<(DateTime<Utc>, bool)> = sqlx::query_as(
            "SELECT scanned_until, completed FROM discovery_state
             WHERE scan = 'backfill' AND (helpdesk_id = $1 OR $1 = '')
             ORDER BY completed, scanned_until DESC LIMIT 1",
        )
        .bind(helpdesk_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(scanned_until, completed)| BackfillPosition {
            scanned_until,
            completed,
        }))
    }

    /// Scans that have not moved for more than `after`: the watermark trails the last complete
    /// scan; an unfinished backfill's position is saved whenever it moves.
    /// Of `helpdesk_id` only (every helpdesk's when empty).
    pub async fn stalled_scans(
        &self,
        helpdesk_id: &str,
        after: Duration,
    ) -> anyhow::Result<Vec<StalledScan>> {
        let rows: Vec<(String, f64)> = sqlx::query_as(
            "SELECT scan, EXTRACT(EPOCH FROM now() - CASE WHEN scan = 'updated' THEN scanned_until
                                                          ELSE changed_at END)::float8
             FROM discovery_state
             WHERE ((scan = 'updated' AND scanned_until < now() - make_interval(secs => $1))
                 OR (scan = 'backfill' AND NOT completed
                     AND changed_at < now() - make_interval(secs => $1)))
               AND (helpdesk_id = $2 OR $2 = '')
             ORDER BY scan",
        )
        .bind(after.as_secs_f64())
        .bind(helpdesk_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(scan, age_seconds)| StalledScan { scan, age_seconds })
            .collect())
    }

    /// Tickets of `scope` whose detail has failed (still
    /// retried) with no success for more than `after`.
    pub async fn failing_tickets(
        &self,
        scope: QueueScope<'_>,
        after: Duration,
    ) -> anyhow::Result<FailingTickets> {
        let row: (i64, Option<String>, Option<String>) = sqlx::query_as(
            "SELECT count(*), min(ticket_id), (array_agg(last_error ORDER BY ticket_id))[1]
             FROM ticket_sync_state
             WHERE last_outcome = 'failed' AND next_due_at <> 'infinity'
               AND COALESCE(last_fetched_at, first_enqueued_at) < now() - make_interval(secs => $1)
               AND (helpdesk_id = $2 OR $2 = '' OR ($3 AND helpdesk_id IS NULL))",
        )
        .bind(after.as_secs_f64())
        .bind(scope.helpdesk_id)
        .bind(scope.unowned)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    /// Tickets of `scope` whose conversation reads have failed
    /// (500s, a scope the app lacks) without a complete read since, for more than `after`.
    pub async fn failing_conversations(
        &self,
        scope: QueueScope<'_>,
        after: Duration,
    ) -> anyhow::Result<FailingTickets> {
        let row: (i64, Option<String>, Option<String>) = sqlx::query_as(
            "SELECT count(*), min(ticket_id), (array_agg(messages_last_error ORDER BY ticket_id))[1]
             FROM ticket_sync_state
             WHERE messages_last_outcome = 'failed'
               AND COALESCE(messages_fetched_at, first_enqueued_at)
                   < now() - make_interval(secs => $1)
               AND (helpdesk_id = $2 OR $2 = '' OR ($3 AND helpdesk_id IS NULL))",
        )
        .bind(after.as_secs_f64())
        .bind(scope.helpdesk_id)
        .bind(scope.unowned)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    /// How long (seconds) the oldest ticket of `scope` due
    /// for more than `after` has waited; None when none has waited that long.
    pub async fn oldest_overdue_seconds(
        &self,
        scope: QueueScope<'_>,
        after: Duration,
    ) -> anyhow::Result<Option<f64>> {
        Ok(sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM now() - min(next_due_at))::float8 FROM ticket_sync_state
             WHERE next_due_at < now() - make_interval(secs => $1)
               AND (helpdesk_id = $2 OR $2 = '' OR ($3 AND helpdesk_id IS NULL))",
        )
        .bind(after.as_secs_f64())
        .bind(scope.helpdesk_id)
        .bind(scope.unowned)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Tickets of `scope` parked after failing: no longer
    /// fetched until enqueued again.
    pub async fn poisoned_tickets(&self, scope: QueueScope<'_>) -> anyhow::Result<FailingTickets> {
        let row: (i64, Option<String>, Option<String>) = sqlx::query_as(
            "SELECT count(*), min(ticket_id), (array_agg(last_error ORDER BY ticket_id))[1]
             FROM ticket_sync_state
             WHERE last_outcome = 'failed' AND next_due_at = 'infinity'
               AND (helpdesk_id = $1 OR $1 = '' OR ($2 AND helpdesk_id IS NULL))",
        )
        .bind(scope.helpdesk_id)
        .bind(scope.unowned)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    /// The versions of the migrations applied successfully (an error when there is no schema).
    pub async fn applied_migration_versions(&self) -> anyhow::Result<Vec<i64>> {
        Ok(
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
