-- A ticket's change makes its conversation due once: a list row (or a read already under way)
-- and then the detail of the same version (same updated_at) no longer read the conversation
-- twice (issue 22, item 17). Set when a change makes the conversation due and when a read is
-- claimed (the version it covers).
ALTER TABLE ticket_sync_state ADD COLUMN messages_due_for timestamptz;
COMMENT ON COLUMN ticket_sync_state.messages_due_for IS 'The ticket updated_at the conversation was last made due for or read at; a version at or before it does not make it due again (message events still do).';
