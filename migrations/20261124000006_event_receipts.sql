-- Webhook events received: durable duplicate detection (Feishu redelivers an event whose
-- acknowledgement it did not see) and an audit trail of what events caused.

CREATE TABLE event_receipts (
    event_id     text PRIMARY KEY,
    event_type   text NOT NULL,
    ticket_id    text NOT NULL,
    updated_at   timestamptz,
    outcome      text NOT NULL CHECK (outcome IN ('queued', 'current')),
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_receipts_received_idx ON event_receipts (received_at);

COMMENT ON TABLE event_receipts IS 'One row per webhook event accepted (helpdesk.ticket.created_v1 / updated_v1); a repeated event_id is acknowledged and ignored. Rows older than 7 days are pruned by the daemon.';
COMMENT ON COLUMN event_receipts.event_id IS 'header.event_id of the event (unique per event, repeated on redelivery).';
COMMENT ON COLUMN event_receipts.event_type IS 'header.event_type.';
COMMENT ON COLUMN event_receipts.ticket_id IS 'The ticket the event is about (tickets.ticket_id once fetched).';
COMMENT ON COLUMN event_receipts.updated_at IS 'The ticket''s update (or creation) time as the event stated it; NULL when absent.';
COMMENT ON COLUMN event_receipts.outcome IS 'queued: the ticket was made due now with top priority; current: the stored copy was already at least this new, nothing to fetch.';
COMMENT ON COLUMN event_receipts.received_at IS 'When helpdesk-sync accepted the event.';

-- A ticket queued again while it is being fetched stays due after that fetch, unless the
-- fetch already stored the update that was asked for (events name it).
ALTER TABLE ticket_sync_state ADD COLUMN wanted_updated_at timestamptz;
COMMENT ON COLUMN ticket_sync_state.wanted_updated_at IS 'Set when the id is queued again: the ticket update that request wants stored (from a webhook event), or infinity (enqueue: fetch again whatever is stored). A fetch that stores at least this update satisfies it; NULL once satisfied.';
