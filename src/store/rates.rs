//! Learned paces in Postgres (`learned_rates`): one row per app and endpoint whose limit Feishu
//! does not publish, read when a process starts using the API and written when the pace moves
//! meaningfully (`pace::Pacer::take_unsaved`), so a restart starts from what was learned.

use chrono::{DateTime, Utc};

use super::Store;
use crate::pace::LearnedRate;

/// One stored pace, with when it was written (for `status`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRate {
    /// messages or catalog.
    pub endpoint: String,
    /// The pace, its limit estimate, ceiling and last cut.
    pub rate: LearnedRate,
    /// When the row was last written.
    pub updated_at: DateTime<Utc>,
}

type Row = (
    String,
    f64,
    Option<f64>,
    f64,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);

impl Store {
    /// The paces stored for `app_id`, by endpoint.
    pub async fn learned_rates(&self, app_id: &str) -> anyhow::Result<Vec<StoredRate>> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT endpoint, rate_per_second, limit_per_second, ceiling_per_second,
                    last_cut_at, updated_at
             FROM learned_rates WHERE app_id = $1 ORDER BY endpoint",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(stored).collect())
    }

    /// Stores `rate` as the pace of `endpoint` for `app_id` (replacing the previous one).
    pub async fn save_learned_rate(
        &self,
        app_id: &str,
        endpoint: &str,
        rate: &LearnedRate,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO learned_rates AS r (app_id, endpoint, rate_per_second, limit_per_second,
                                             ceiling_per_second, last_cut_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, now())
             ON CONFLICT (app_id, endpoint) DO UPDATE SET
                rate_per_second = EXCLUDED.rate_per_second,
                limit_per_second = EXCLUDED.limit_per_second,
                ceiling_per_second = EXCLUDED.ceiling_per_second,
                last_cut_at = EXCLUDED.last_cut_at, updated_at = now()",
        )
        .bind(app_id)
        .bind(endpoint)
        .bind(rate.rate)
        .bind(rate.limit)
        .bind(rate.ceiling)
        .bind(rate.last_cut)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn stored((endpoint, rate, limit, ceiling, last_cut, updated_at): Row) -> StoredRate {
    StoredRate {
        endpoint,
        rate: LearnedRate {
            rate,
            limit,
            ceiling,
            last_cut,
        },
        updated_at,
    }
}
