//! Report tables the daemon keeps up to date after its cycles, so dashboards never rescan
//! history: today the daily backlog (`daily_backlog`).

use super::Store;

impl Store {
    /// Recomputes the days of `daily_backlog` that changes touched (see the SQL function
    /// `refresh_daily_backlog`); returns the rows written (0: nothing was due).
    pub async fn refresh_daily_backlog(&self) -> anyhow::Result<u64> {
        let written: i32 = sqlx::query_scalar("SELECT refresh_daily_backlog()")
            .fetch_one(&self.pool)
            .await?;
        Ok(written.max(0) as u64)
    }
}
