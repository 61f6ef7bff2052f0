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
    s.ticket_type,
    s.is_breached,
    s.is_active,
    -- measures
    s.elapsed_seconds,
    s.seconds_to_breach
FROM public.ticket_sla s;

COMMENT ON VIEW reporting.sla IS 'One row per SLA clock: a ticket measured against a target (instance_no counts the clocks of a target that restarts). Default time column: started_at. Breach rate: avg(is_breached::int) over the clocks that are not active.';
SELECT reporting_copy_comments('reporting.sla', 'public.ticket_sla');
