-- reporting.replies: per ticket with a conversation, reply metrics from its messages.
-- Default time column: ticket_created_at.
CREATE OR REPLACE VIEW reporting.replies AS
SELECT
    -- keys
    r.ticket_id,
    -- times
    f.created_at AS ticket_created_at,
    r.first_agent_reply_at,
    r.awaiting_reply_since,
    r.last_message_at,
    r.messages_fetched_at,
    -- labels
    r.touch_class,
    r.is_one_touch,
    r.is_two_touch,
    r.is_multi_touch,
    r.last_message_by,
    r.last_message_sender_name,
    r.is_closed,
    -- measures
    r.messages,
    r.agent_replies,
    r.guest_messages,
    r.bot_messages,
    r.unknown_sender_messages,
    r.first_agent_reply_seconds_from_messages,
    r.first_reply_seconds_from_api,
    r.customer_wait_seconds,
    r.answered_waits,
    -- helpdesk (appended)
    f.helpdesk_id,
    COALESCE(hd.name, f.helpdesk_id) AS helpdesk_name
FROM public.ticket_reply_metrics r
JOIN public.ticket_facts f USING (ticket_id)
LEFT JOIN public.helpdesks hd ON hd.helpdesk_id = f.helpdesk_id;

COMMENT ON VIEW reporting.replies IS 'Per ticket whose conversation was read: replies, touches and customer wait from its messages. Default time column: ticket_created_at (messages_fetched_at is sync bookkeeping). Deleted tickets left out.';
SELECT reporting_copy_comments('reporting.replies', 'public.ticket_reply_metrics');
COMMENT ON COLUMN reporting.replies.ticket_created_at IS 'When the ticket was created (the default time column).';
COMMENT ON COLUMN reporting.replies.helpdesk_id IS 'The ticket''s helpdesk (decimal text; tickets.helpdesk_id).';
COMMENT ON COLUMN reporting.replies.helpdesk_name IS 'The helpdesk''s display name (table helpdesks, config [[helpdesks]] name); its id while no name is registered.';
