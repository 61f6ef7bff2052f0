-- reporting.status_spans: one row per stay of a ticket in a status. Default time column: entered_at.
CREATE OR REPLACE VIEW reporting.status_spans AS
SELECT
    -- keys
    s.ticket_id,
    s.stay_no,
    s.agent_owner_id,
    -- times
    s.entered_at,
    s.left_at,
    -- labels
    s.status,
    s.status_label,
    s.status_label_zh_cn,
    s.status_sort_order,
    s.is_closed,
    s.is_current,
    s.is_observed,
    s.entered_via,
    s.is_reopen,
    s.history_complete,
    -- measures
    s.seconds,
    -- helpdesk (appended)
    t.helpdesk_id,
    COALESCE(hd.name, t.helpdesk_id) AS helpdesk_name
FROM public.ticket_status_spans s
LEFT JOIN public.tickets t ON t.ticket_id = s.ticket_id
LEFT JOIN public.helpdesks hd ON hd.helpdesk_id = t.helpdesk_id;

COMMENT ON VIEW reporting.status_spans IS 'One row per stay of a ticket in a status (stay_no 0: the stretch before the first observation, status NULL). Default time column: entered_at. Deleted tickets left out.';
SELECT reporting_copy_comments('reporting.status_spans', 'public.ticket_status_spans');
COMMENT ON COLUMN reporting.status_spans.helpdesk_id IS 'The ticket''s helpdesk (decimal text; tickets.helpdesk_id).';
COMMENT ON COLUMN reporting.status_spans.helpdesk_name IS 'The helpdesk''s display name (table helpdesks, config [[helpdesks]] name); its id while no name is registered.';
