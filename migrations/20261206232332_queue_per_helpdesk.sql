-- Several helpdesks in one database (issue 26): every queue row says whose ticket it is, so
-- each helpdesk's syncer claims, releases and counts only its own work.
-- Upgrade of a single-helpdesk database: a row whose ticket is stored takes that ticket's
-- helpdesk (tickets.helpdesk_id, from the ticket's JSON); the rest (ids queued but never
-- fetched) stay NULL here and are adopted by the first configured helpdesk when a syncer
-- starts (`Store::adopt_unowned_queue_rows`): the migration cannot know the config.
ALTER TABLE ticket_sync_state ADD COLUMN helpdesk_id text;

UPDATE ticket_sync_state s
   SET helpdesk_id = t.helpdesk_id
  FROM tickets t
 WHERE t.ticket_id = s.ticket_id AND t.helpdesk_id IS NOT NULL AND s.helpdesk_id IS NULL;

CREATE INDEX ticket_sync_state_helpdesk_due_idx
    ON ticket_sync_state (helpdesk_id, priority DESC, next_due_at);
CREATE INDEX ticket_sync_state_unowned_idx
    ON ticket_sync_state (ticket_id) WHERE helpdesk_id IS NULL;

COMMENT ON COLUMN ticket_sync_state.helpdesk_id IS
    'The helpdesk whose ticket this is (whose syncer claims it); NULL only for rows queued before several helpdesks were supported and not yet adopted.';
