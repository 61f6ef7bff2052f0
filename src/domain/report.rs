//! What a cycle reports: plain counts that the sync produces and several modules read (the run
//! record in `store::runs`, the metrics, the terminal summary). No behaviour beyond adding up.

use std::time::Duration;

/// Progress, reported after every list page and every ticket.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Tickets due when fetching started (the progress bar's total).
    pub due_at_start: u64,
    /// Tickets whose fetch has finished (any outcome).
    pub done: u64,
    /// Discovery pages read so far.
    pub pages_listed: u64,
}

/// What a cycle did.
#[derive(Debug, Clone, Default)]
pub struct CycleReport {
    pub due_at_start: u64,
    /// Tickets claimed from the queue.
    pub claimed: u64,
    /// Written outcomes by kind.
    pub written: BatchReport,
    /// Claims given back unworked (stop or fatal error).
    pub released: u64,
    /// API calls made during the cycle.
    pub api: ClientStatsSnapshot,
    pub elapsed: Duration,
    /// Set when the cycle stopped because shutdown was requested.
    pub interrupted: bool,
    /// What discovery did (None when disabled).
    pub discovery: Option<DiscoveryReport>,
    /// Why discovery did not finish, when it did not.
    pub discovery_error: Option<String>,
    /// Ids added by `sync.known_ids_query` (None when unset or failed).
    pub from_query: Option<u64>,
    /// Custom fields stored from the catalog (None when it was not due).
    pub catalog_fields: Option<u64>,
    /// Rows of `daily_backlog` rewritten (None when not refreshed).
    pub backlog_rows: Option<u64>,
    /// Why the catalog or the backlog was not refreshed (the tickets are not affected).
    pub report_errors: Vec<String>,
    /// The cycle's claim budget (`claim_for`) ran out with work still due: the daemon starts
    /// the next cycle at once instead of waiting for a tick (a backlog never idles).
    pub work_left: bool,
}

/// What one batch wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Tickets inserted or whose content changed.
    pub changed: u64,
    /// Tickets fetched with content identical to what was stored.
    pub unchanged: u64,
    /// Tickets fetched in a version older than the stored one (`updated_at` earlier): not
    /// written (read-after-write lag upstream).
    pub older_skipped: u64,
    pub not_found: u64,
    pub invalid: u64,
    pub failed: u64,
    /// Tickets whose conversation was read completely.
    pub messages_synced: u64,
    /// Tickets whose conversation fetch failed (retried later).
    pub messages_failed: u64,
    /// Messages inserted or changed.
    pub messages_stored: u64,
    /// Details that verified a stored list row of the same `updated_at`, field by field.
    pub list_rows_verified: u64,
}

impl BatchReport {
    pub fn add(&mut self, other: BatchReport) {
        self.changed += other.changed;
        self.unchanged += other.unchanged;
        self.older_skipped += other.older_skipped;
        self.not_found += other.not_found;
        self.invalid += other.invalid;
        self.failed += other.failed;
        self.messages_synced += other.messages_synced;
        self.messages_failed += other.messages_failed;
        self.messages_stored += other.messages_stored;
        self.list_rows_verified += other.list_rows_verified;
    }
}

/// What discovery did in one cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscoveryReport {
    /// List requests made.
    pub pages: u64,
    /// Tickets listed (duplicates across overlapping windows included).
    pub listed: u64,
    /// New or changed tickets queued for a detail fetch.
    pub queued: u64,
    /// Of those, ids the queue did not know.
    pub new: u64,
    /// Windows split because they reached the 10,000-row cap.
    pub splits: u64,
    /// Tickets whose content was stored from their list row (new or newer than stored).
    pub stored_from_list: u64,
    /// Listed items that could not be read (no usable ticket id, not an object): skipped.
    pub skipped: u64,
    /// Whether the history backfill ran (and finished) this cycle.
    pub backfill_ran: bool,
    pub backfill_completed: bool,
}

/// API calls made, by endpoint and kind (a snapshot of the client's counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStatsSnapshot {
    pub detail_requests: u64,
    pub list_requests: u64,
    pub catalog_requests: u64,
    pub message_requests: u64,
    pub token_requests: u64,
    pub rate_limited: u64,
    pub token_invalidations: u64,
    pub retries: u64,
}

impl ClientStatsSnapshot {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &ClientStatsSnapshot) -> ClientStatsSnapshot {
        ClientStatsSnapshot {
            detail_requests: self.detail_requests - earlier.detail_requests,
            list_requests: self.list_requests - earlier.list_requests,
            catalog_requests: self.catalog_requests - earlier.catalog_requests,
            message_requests: self.message_requests - earlier.message_requests,
            token_requests: self.token_requests - earlier.token_requests,
            rate_limited: self.rate_limited - earlier.rate_limited,
            token_invalidations: self.token_invalidations - earlier.token_invalidations,
            retries: self.retries - earlier.retries,
        }
    }
}

/// Queue depth by state, for summaries and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub known: i64,
    pub due_now: i64,
    pub failed: i64,
    pub parked: i64,
}
