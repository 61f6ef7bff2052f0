-- reporting.sla: one row per SLA clock (ticket × target × instance). Default time column: started_at.
CREATE OR REPLACE VIEW reporting.sla AS
SELECT
    -- keys
    s.ticket_id,
    s.target_id,
    s.instance_no,
    s.calendar_id,
    -- times
    s.started_at,
    s.breach_at,
    s.achieved_at,
    s.stopped_at,
    -- labels
    s.metric,
    s.target_minutes,
    s.business_hours,
    s.channel,
    f.channel_label,
    s.ticket_type,
    f.ticket_type_label,
    s.is_breached,
    s.is_active,
    -- measures
    s.elapsed_seconds,
    s.seconds_to_breach,
    -- helpdesk (appended)
    f.helpdesk_id,
    COALESCE(hd.name, f.helpdesk_id) AS helpdesk_name
FROM public.ticket_sla s
LEFT JOIN public.ticket_facts f USING (ticket_id)
LEFT JOIN public.helpdesks hd ON hd.helpdesk_id = f.helpdesk_id;

COMMENT ON VIEW reporting.sla IS 'One row per SLA clock: a ticket measured against a target (instance_no counts the clocks of a target that restarts). Default time column: started_at. Breach rate: count(*) FILTER (WHERE is_breached) / count(*) FILTER (WHERE NOT is_active OR is_breached): decided clocks, a running clock already past due counting as breached (docs/analytics.md, SLA).';
SELECT reporting_copy_comments('reporting.sla', 'public.ticket_sla');
COMMENT ON COLUMN reporting.sla.channel_label IS 'English label of the ticket''s channel (reporting.tickets.channel_label).';
COMMENT ON COLUMN reporting.sla.ticket_type_label IS 'English label of the ticket''s type (reporting.tickets.ticket_type_label).';
COMMENT ON COLUMN reporting.sla.helpdesk_id IS 'The ticket''s helpdesk (decimal text; tickets.helpdesk_id): the helpdesk a target with a helpdesk condition matched (docs/analytics.md, SLA per helpdesk).';
COMMENT ON COLUMN reporting.sla.helpdesk_name IS 'The helpdesk''s display name (table helpdesks, config [[helpdesks]] name); its id while no name is registered.';
