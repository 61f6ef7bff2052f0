-- One row per sync cycle: inserted when it starts, completed when it ends, so a crashed cycle
-- stays visible as a run that never finished.
CREATE TABLE sync_runs (
    run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    helpdesk_id     text NOT NULL,
    trigger         text NOT NULL CHECK (trigger IN ('schedule', 'manual', 'event', 'demo')),
    worker          text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    outcome         text NOT NULL DEFAULT 'running'
                    CHECK (outcome IN ('running', 'ok', 'interrupted', 'stalled', 'fatal', 'failed')),
    error           text,
    tickets_due     bigint,
    tickets_listed  bigint,
    tickets_queued_by_discovery bigint,
    tickets_changed bigint,
    tickets_unchanged bigint,
    tickets_not_found bigint,
    tickets_invalid bigint,
    tickets_failed  bigint,
    list_requests   bigint,
    detail_requests bigint,
    token_requests  bigint,
    rate_limited    bigint,
    retries         bigint
);
CREATE INDEX sync_runs_started_idx ON sync_runs (helpdesk_id, run_id DESC);

COMMENT ON TABLE sync_runs IS 'One row per sync cycle, written when it starts and completed when it ends: a row left running with no finished_at is a crashed cycle.';
COMMENT ON COLUMN sync_runs.run_id IS 'Increasing run number.';
COMMENT ON COLUMN sync_runs.helpdesk_id IS 'The helpdesk synced.';
COMMENT ON COLUMN sync_runs.trigger IS 'schedule (run daemon), manual (sync command), event (webhook), demo.';
COMMENT ON COLUMN sync_runs.worker IS 'host:pid:nonce of the process that ran it.';
COMMENT ON COLUMN sync_runs.started_at IS 'When the cycle started.';
COMMENT ON COLUMN sync_runs.finished_at IS 'When it ended; NULL while running or if the process died.';
COMMENT ON COLUMN sync_runs.outcome IS 'running, ok, interrupted (shutdown), stalled (no progress), fatal (credentials rejected), failed (database error).';
COMMENT ON COLUMN sync_runs.error IS 'Why it was not ok, in words.';
COMMENT ON COLUMN sync_runs.tickets_due IS 'Tickets due when fetching started.';
COMMENT ON COLUMN sync_runs.tickets_listed IS 'Tickets seen in list pages (discovery).';
COMMENT ON COLUMN sync_runs.tickets_queued_by_discovery IS 'Listed tickets queued as new or changed.';
COMMENT ON COLUMN sync_runs.tickets_changed IS 'Fetched tickets stored as new or changed.';
COMMENT ON COLUMN sync_runs.tickets_unchanged IS 'Fetched tickets identical to what was stored.';
COMMENT ON COLUMN sync_runs.tickets_not_found IS 'Tickets the API reported deleted (404/154004).';
COMMENT ON COLUMN sync_runs.tickets_invalid IS 'Ids the API called invalid (400/154000).';
COMMENT ON COLUMN sync_runs.tickets_failed IS 'Tickets that failed and will be retried later.';
COMMENT ON COLUMN sync_runs.list_requests IS 'GET /tickets calls.';
COMMENT ON COLUMN sync_runs.detail_requests IS 'GET /tickets/:id calls (retries included).';
COMMENT ON COLUMN sync_runs.token_requests IS 'tenant_access_token requests.';
COMMENT ON COLUMN sync_runs.rate_limited IS 'Rate-limit answers received (429 / 99991400).';
COMMENT ON COLUMN sync_runs.retries IS 'Retries after retryable failures.';
