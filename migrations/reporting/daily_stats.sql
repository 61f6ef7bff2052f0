-- reporting.daily_stats: one row per day (report time zone). Default time column: day.
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
    d.score_none
FROM public.daily_ticket_stats d;

COMMENT ON VIEW reporting.daily_stats IS 'One row per calendar day (report_settings.timezone) with tickets created or closed: volumes, median and p90 first reply, first response and resolution, ratings. Default time column: day. It has no key column besides day. Medians and p90s are per day: they cannot be summed or averaged into weeks or months (compute those from reporting.tickets).';
SELECT reporting_copy_comments('reporting.daily_stats', 'public.daily_ticket_stats');
