-- reporting.time_in_status: per ticket and status, the time spent there. Default time column:
-- ticket_created_at (a sum over stays has no time of its own).
CREATE OR REPLACE VIEW reporting.time_in_status AS
SELECT
    -- keys
    t.ticket_id,
    -- times
    f.created_at AS ticket_created_at,
    -- labels
    t.status,
    t.status_label,
    t.status_label_zh_cn,
    t.status_sort_order,
    t.is_current,
    t.is_observed,
    -- measures
    t.seconds,
    t.times_entered,
    -- helpdesk (appended)
    f.helpdesk_id,
    COALESCE(hd.name, f.helpdesk_id) AS helpdesk_name
FROM public.ticket_time_in_status t
JOIN public.ticket_facts f USING (ticket_id)
LEFT JOIN public.helpdesks hd ON hd.helpdesk_id = f.helpdesk_id;

COMMENT ON VIEW reporting.time_in_status IS 'Per ticket and status: seconds spent there over every stay, and how often it was entered. Default time column: ticket_created_at (the ticket''s creation: a sum over stays has no time of its own). Deleted tickets left out.';
SELECT reporting_copy_comments('reporting.time_in_status', 'public.ticket_time_in_status');
COMMENT ON COLUMN reporting.time_in_status.ticket_created_at IS 'When the ticket was created (the default time column).';
COMMENT ON COLUMN reporting.time_in_status.helpdesk_id IS 'The ticket''s helpdesk (decimal text; tickets.helpdesk_id).';
COMMENT ON COLUMN reporting.time_in_status.helpdesk_name IS 'The helpdesk''s display name (table helpdesks, config [[helpdesks]] name); its id while no name is registered.';
