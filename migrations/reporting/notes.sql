-- reporting.notes: one row per internal note (comment) on a ticket. Default time column: created_at.
CREATE OR REPLACE VIEW reporting.notes AS
SELECT
    -- keys
    n.ticket_id,
    n.note_id::text AS note_id,
    n.author_id::text AS author_id,
    -- times
    n.created_at,
    -- labels
    n.ordinal,
    n.author_name,
    n.author_avatar_url,
    n.content,
    -- helpdesk (appended)
    t.helpdesk_id,
    COALESCE(hd.name, t.helpdesk_id) AS helpdesk_name
FROM public.ticket_notes n
LEFT JOIN public.tickets t ON t.ticket_id = n.ticket_id
LEFT JOIN public.helpdesks hd ON hd.helpdesk_id = t.helpdesk_id;

COMMENT ON VIEW reporting.notes IS 'One row per internal note on a ticket. Default time column: created_at. Ids are text (above 2^53 a number would be rounded by a browser).';
SELECT reporting_copy_comments('reporting.notes', 'public.ticket_notes');
COMMENT ON COLUMN reporting.notes.note_id IS 'The note''s id (decimal text).';
COMMENT ON COLUMN reporting.notes.author_id IS 'The author''s numeric Feishu id as decimal text (not an open_id: it does not join reporting.people).';
COMMENT ON COLUMN reporting.notes.helpdesk_id IS 'The ticket''s helpdesk (decimal text; tickets.helpdesk_id).';
COMMENT ON COLUMN reporting.notes.helpdesk_name IS 'The helpdesk''s display name (table helpdesks, config [[helpdesks]] name); its id while no name is registered.';
