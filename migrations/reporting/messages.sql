-- reporting.messages: one row per conversation message. Default time column: created_at.
CREATE OR REPLACE VIEW reporting.messages AS
SELECT
    -- keys
    m.ticket_id,
    m.message_id,
    m.chat_message_id,
    m.sender_id,
    -- times
    m.created_at,
    m.fetched_at,
    -- labels
    m.message_type,
    m.sender_role,
    m.sender_name,
    m.content_text,
    -- helpdesk (appended)
    t.helpdesk_id,
    COALESCE(hd.name, t.helpdesk_id) AS helpdesk_name
FROM public.ticket_messages m
JOIN public.tickets t USING (ticket_id)
LEFT JOIN public.helpdesks hd ON hd.helpdesk_id = t.helpdesk_id
WHERE t.deleted_at IS NULL;

COMMENT ON VIEW reporting.messages IS 'One row per message of a ticket''s conversation (the customer, agents, the bot), its text without markup. Default time column: created_at. Deleted tickets left out; the raw JSON is not here.';
SELECT reporting_copy_comments('reporting.messages', 'public.ticket_messages');
COMMENT ON COLUMN reporting.messages.helpdesk_id IS 'The ticket''s helpdesk (decimal text; tickets.helpdesk_id).';
COMMENT ON COLUMN reporting.messages.helpdesk_name IS 'The helpdesk''s display name (table helpdesks, config [[helpdesks]] name); its id while no name is registered.';
