-- reporting.backlog: open tickets at the end of each day by status, owner and channel.
-- Default time column: day.
CREATE OR REPLACE VIEW reporting.backlog AS
SELECT
    -- keys
    b.agent_owner_id,
    -- times
    b.day,
    -- labels
    b.status,
    b.status_label,
    b.status_sort_order,
    b.agent_owner_name,
    b.channel,
    b.channel_label,
    -- measures
    b.open_tickets
FROM public.daily_backlog b
WHERE b.open_tickets > 0;

COMMENT ON VIEW reporting.backlog IS 'Open tickets at the end of each day (report_settings.timezone) by status, agent owner and channel; today counts those open at the last refresh. Default time column: day. Only days with open tickets have rows (no NULL filler series); for a total with every day, read reporting.backlog_totals. A count at a day''s end: over weeks or months take MAX or AVG, never SUM.';
SELECT reporting_copy_comments('reporting.backlog', 'public.daily_backlog');

-- reporting.backlog_totals: one row for every day, open tickets in all. Default time column: day.
CREATE OR REPLACE VIEW reporting.backlog_totals AS
SELECT
    -- times
    b.day,
    -- measures
    sum(b.open_tickets)::integer AS open_tickets
FROM public.daily_backlog b
GROUP BY b.day;

COMMENT ON VIEW reporting.backlog_totals IS 'Open tickets at the end of each day in all (0 on a day with none: no gaps from the first ticket to today). Default time column: day. A count at a day''s end: over weeks or months take MAX or AVG, never SUM.';
COMMENT ON COLUMN reporting.backlog_totals.day IS 'Calendar day in report_settings.timezone.';
COMMENT ON COLUMN reporting.backlog_totals.open_tickets IS 'Tickets open at the end of the day (today: at the last refresh).';
