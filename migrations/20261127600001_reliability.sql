-- Reliability, round two.

-- The helpdesk lock's fence. The advisory lock says who may sync now; this row says since when
-- (`epoch`, raised by every new holder) and whether the holder is still alive (`renewed_at`,
-- refreshed every second through the lock's own session). A new holder waits until the
-- previous one must have noticed its lost session, and a claim is only taken while the
-- claimant's epoch is the current one: two syncers at once cannot both claim work.
CREATE TABLE sync_lock (
    helpdesk_id text PRIMARY KEY,
    epoch       bigint NOT NULL,
    holder      text,
    taken_at    timestamptz NOT NULL DEFAULT now(),
    renewed_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sync_lock IS 'Who holds the helpdesk lock (one syncer per helpdesk): the holder, its epoch (raised by every new holder; claims check it) and when it last proved alive.';
COMMENT ON COLUMN sync_lock.helpdesk_id IS 'The helpdesk this lock is for (feishu.helpdesk_id).';
COMMENT ON COLUMN sync_lock.epoch IS 'Raised each time a process takes the lock; a claim succeeds only for the current epoch.';
COMMENT ON COLUMN sync_lock.holder IS 'host:pid:nonce of the holder (as sync_runs.worker); NULL after a clean release.';
COMMENT ON COLUMN sync_lock.taken_at IS 'When the holder took the lock.';
COMMENT ON COLUMN sync_lock.renewed_at IS 'When the holder last renewed the lock through its session (every second).';
-- Any custom field value must be storable: a btree entry is limited to ~2.7 KB, so the value
-- is indexed by hash (equality lookups, any length) and the field by itself.
DROP INDEX ticket_custom_fields_field_idx;
CREATE INDEX ticket_custom_fields_field_idx ON ticket_custom_fields (field_id);
CREATE INDEX ticket_custom_fields_value_idx ON ticket_custom_fields USING hash (value);

-- Read-after-write lag: how many times in a row a fetch did not yet show what an event announced.
ALTER TABLE ticket_sync_state ADD COLUMN lag_refetches smallint NOT NULL DEFAULT 0;
COMMENT ON COLUMN ticket_sync_state.lag_refetches IS 'Fetches in a row that did not yet show the update an event announced (or answered 404 for a ticket an event named); fetched again with backoff up to 6 times.';
