-- Runs left `running` by a worker that died (SIGKILL, crash) or lost the database as it ended
-- are closed by the next worker holding the helpdesk lock: outcome `abandoned`, with a reason.
ALTER TABLE sync_runs DROP CONSTRAINT sync_runs_outcome_check;
ALTER TABLE sync_runs ADD CONSTRAINT sync_runs_outcome_check
    CHECK (outcome IN ('running', 'ok', 'interrupted', 'stalled', 'fatal', 'failed', 'abandoned'));
COMMENT ON COLUMN sync_runs.outcome IS 'running, ok, interrupted (shutdown), stalled (no progress), fatal (credentials rejected), failed (database error), abandoned (its worker ended without completing it; closed by the next run, reason in error).';

-- Tickets whose detail answered older than the stored row were counted nowhere.
ALTER TABLE sync_runs ADD COLUMN tickets_older_skipped bigint;
COMMENT ON COLUMN sync_runs.tickets_older_skipped IS 'Fetched tickets the API answered in a version older than the stored one (read-after-write lag): the stored row was kept.';
