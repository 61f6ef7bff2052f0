-- List rows against details whatever the clocks say (issue 22 items 5, 6, 16).

-- The updated_at the last stored list row showed (in the list's clock). A detail that replaces
-- the row keeps it: a list row of that version is not stored again (the detail answered it).
ALTER TABLE tickets ADD COLUMN list_updated_at timestamptz;
UPDATE tickets SET list_updated_at = updated_at WHERE content_source = 'list';
COMMENT ON COLUMN tickets.list_updated_at IS 'The updated_at (as the list shows it, in the list''s clock) of the last list row stored for the ticket; kept when the detail replaces that row. A list row is stored only when it shows a later updated_at than this and than the stored content.';

-- How far the list's updated_at runs from the detail's: each list row answered by a detail
-- adds its difference here. The difference most pairs share (see list_clock_offset_ms) pairs a
-- list row with the detail of the same version when the clocks differ.
CREATE TABLE list_clock_offsets (
    offset_ms    bigint PRIMARY KEY,
    pairs        bigint NOT NULL DEFAULT 0,
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE list_clock_offsets IS 'How far list rows'' updated_at ran from the updated_at of the detail that answered them (list minus detail, in milliseconds, within a day), counted. The offset most pairs share (at least 3, more than half of them: list_clock_offset_ms()) is the list''s clock offset: a list row and a detail are the same version when the list''s updated_at minus the offset equals the detail''s. Counts are halved past 1,000 pairs and at most 20 offsets are kept, so a clock that changes is followed.';
COMMENT ON COLUMN list_clock_offsets.offset_ms IS 'List row updated_at minus the answering detail''s, in milliseconds.';
COMMENT ON COLUMN list_clock_offsets.pairs IS 'List rows answered by a detail with this difference (decayed: halved past 1,000 in all).';
COMMENT ON COLUMN list_clock_offsets.last_seen_at IS 'When a pair with this difference was last counted.';

CREATE FUNCTION list_clock_offset_ms() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT COALESCE((
        SELECT o.offset_ms FROM list_clock_offsets o
        WHERE o.pairs >= 3
          AND o.pairs * 2 > (SELECT sum(pairs) FROM list_clock_offsets)
        ORDER BY o.pairs DESC, o.offset_ms LIMIT 1), 0)
$$;
COMMENT ON FUNCTION list_clock_offset_ms() IS 'The list''s clock offset in milliseconds (list updated_at minus detail updated_at for the same version), 0 until pairs agree on one. See list_clock_offsets.';

-- The daemon wakes for the earliest read-after-write re-fetch: found without a scan.
CREATE INDEX ticket_sync_state_lag_due_idx ON ticket_sync_state (next_due_at)
    WHERE lag_refetches > 0;

-- What "the same version" means now that clocks may differ.
COMMENT ON COLUMN ticket_versions.content_source IS '''list'' for a version recorded from a list row; the detail that replaces the row replaces it in place (whatever its updated_at: the list''s clock may differ), or drops it when the detail shows the version before it again.';
COMMENT ON COLUMN ticket_status_history.content_source IS '''list'' for a transition recorded from a list row; the detail that replaces the row confirms it (same status, same updated_at) or replaces it.';
COMMENT ON TABLE list_field_agreement IS 'Self-verification of list rows: per top-level ticket field, how often the list row agreed with the detail of the same version (the same updated_at once the list''s clock offset, list_clock_offset_ms(), is taken off; tags are never compared: lists do not carry them). trusted = false once the field differed: it is no longer taken from list rows (persisted). missing counts details that had the field while the list row did not (such a field is never taken from list rows either).';
