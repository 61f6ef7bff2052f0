-- reporting.daily_stats: one row per day (report time zone) and helpdesk. Default time column: day.
CREATE OR REPLACE VIEW reporting.daily_stats AS
SELECT
    -- times
    d.day,
    -- measures
    d.tickets_created,
    d.tickets_closed,
    d.first_reply_seconds_median,
    d.first_reply_seconds_p90,
    d.first_response_seconds_median,
    d.first_response_seconds_p90,
    d.resolution_seconds_median,
    d.resolution_seconds_p90,
    d.score_unsatisfied,
    d.score_neutral,
    d.score_satisfied,
    d.score_none,
    -- helpdesk (appended)
    d.helpdesk_id,
    COALESCE(hd.name, d.helpdesk_id) AS helpdesk_name
FROM public.daily_ticket_stats_by_helpdesk d
LEFT JOIN public.helpdesks hd ON hd.helpdesk_id = d.helpdesk_id;

COMMENT ON VIEW reporting.daily_stats IS 'One row per calendar day (report_settings.timezone) and helpdesk, from the first ticket to today: volumes, median and p90 first reply, first response and resolution, ratings of that helpdesk''s tickets; with one helpdesk, one row per day. Default time column: day. Volumes add up over helpdesks; medians and p90s are per day and helpdesk: they cannot be summed or averaged into weeks, months or several helpdesks (compute those from reporting.tickets).';
SELECT reporting_copy_comments('reporting.daily_stats', 'public.daily_ticket_stats_by_helpdesk');
COMMENT ON COLUMN reporting.daily_stats.helpdesk_id IS 'The helpdesk of the tickets counted (decimal text; NULL: tickets that came without one).';
COMMENT ON COLUMN reporting.daily_stats.helpdesk_name IS 'The helpdesk''s display name (table helpdesks, config [[helpdesks]] name); its id while no name is registered.';
