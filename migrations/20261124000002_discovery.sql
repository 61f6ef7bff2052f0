-- Discovery through the list API: durable scan positions, and what the list last showed.

CREATE TABLE discovery_state (
    helpdesk_id   text NOT NULL,
    -- 'updated': incremental scans by update time; 'backfill': the create-time scan of history.
    scan          text NOT NULL CHECK (scan IN ('updated', 'backfill')),
    -- Updated: every ticket updated up to here has been listed. Backfill: resume point (create time).
    scanned_until timestamptz NOT NULL,
    -- Backfill only: where it started and where it ends (the moment it began).
    range_start   timestamptz,
    range_end     timestamptz,
    completed     boolean NOT NULL DEFAULT false,
    changed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (helpdesk_id, scan)
);

COMMENT ON TABLE discovery_state IS 'Durable positions of the list-API scans. The updated watermark only moves forward, after its window was read completely.';
COMMENT ON COLUMN discovery_state.scanned_until IS 'updated: every ticket updated at or before this time has been listed. backfill: tickets created up to here have been listed.';

ALTER TABLE ticket_sync_state ADD COLUMN listed_updated_at timestamptz;
COMMENT ON COLUMN ticket_sync_state.listed_updated_at IS 'updated_at as the list API last showed it; a failing ticket is pulled forward again only when this changes.';
