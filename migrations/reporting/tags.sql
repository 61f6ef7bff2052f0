-- reporting.ticket_tags: one row per tag on a ticket. Default time column: ticket_created_at.
CREATE OR REPLACE VIEW reporting.ticket_tags AS
SELECT
    -- keys
    tt.ticket_id,
    tt.tag_id,
    -- times
    f.created_at AS ticket_created_at,
    -- labels
    tg.name AS tag_name,
    -- helpdesk (appended)
    f.helpdesk_id,
    COALESCE(hd.name, f.helpdesk_id) AS helpdesk_name
FROM public.ticket_tags tt
JOIN public.ticket_facts f USING (ticket_id)
LEFT JOIN public.tags tg USING (tag_id)
LEFT JOIN public.helpdesks hd ON hd.helpdesk_id = f.helpdesk_id;

COMMENT ON VIEW reporting.ticket_tags IS 'One row per tag on a ticket. Default time column: ticket_created_at (a tag has no time of its own). Until a ticket''s detail arrived its tags are unknown, not absent: see reporting.tickets.tags_known.';
COMMENT ON COLUMN reporting.ticket_tags.ticket_id IS 'The ticket.';
COMMENT ON COLUMN reporting.ticket_tags.tag_id IS 'The tag (decimal text).';
COMMENT ON COLUMN reporting.ticket_tags.ticket_created_at IS 'When the ticket was created (the default time column).';
COMMENT ON COLUMN reporting.ticket_tags.tag_name IS 'The tag''s name.';
COMMENT ON COLUMN reporting.ticket_tags.helpdesk_id IS 'The ticket''s helpdesk (decimal text; tickets.helpdesk_id).';
COMMENT ON COLUMN reporting.ticket_tags.helpdesk_name IS 'The helpdesk''s display name (table helpdesks, config [[helpdesks]] name); its id while no name is registered.';
