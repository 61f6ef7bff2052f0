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
    b.open_tickets,
    -- helpdesk (appended)
    b.helpdesk_id,
    COALESCE(hd.name, b.helpdesk_id) AS helpdesk_name
FROM public.daily_backlog b
LEFT JOIN public.helpdesks hd ON hd.helpdesk_id = b.helpdesk_id
WHERE b.open_tickets > 0;

COMMENT ON VIEW reporting.backlog IS 'Open tickets at the end of each day (report_settings.timezone) by helpdesk, status, agent owner and channel; today counts those open at the last refresh. Default time column: day. Only days with open tickets have rows (no NULL filler series); for a total with every day, read reporting.backlog_totals. A count at a day''s end: over weeks or months take MAX or AVG, never SUM.';
SELECT reporting_copy_comments('reporting.backlog', 'public.daily_backlog');
COMMENT ON COLUMN reporting.backlog.helpdesk_name IS 'The helpdesk''s display name (table helpdesks, config [[helpdesks]] name); its id while no name is registered.';

-- reporting.backlog_totals: one row for every day and helpdesk, open tickets in all.
-- Default time column: day.
CREATE OR REPLACE VIEW reporting.backlog_totals AS
SELECT
    -- times
    b.day,
    -- measures
    sum(b.open_tickets)::integer AS open_tickets,
    -- helpdesk (appended)
    b.helpdesk_id,
    COALESCE(min(hd.name), b.helpdesk_id) AS helpdesk_name
FROM public.daily_backlog b
LEFT JOIN public.helpdesks hd ON hd.helpdesk_id = b.helpdesk_id
GROUP BY b.day, b.helpdesk_id;

COMMENT ON VIEW reporting.backlog_totals IS 'Open tickets at the end of each day in all, one row per day and helpdesk (0 on a day with none: no gaps from the first ticket to today); with one helpdesk, one row per day. Default time column: day. The whole database: SUM(open_tickets) GROUP BY day, or reporting.backlog_totals_all. A count at a day''s end: over weeks or months take MAX or AVG of the daily totals, never SUM.';
COMMENT ON COLUMN reporting.backlog_totals.day IS 'Calendar day in report_settings.timezone.';
COMMENT ON COLUMN reporting.backlog_totals.open_tickets IS 'Tickets of the helpdesk open at the end of the day (today: at the last refresh).';
COMMENT ON COLUMN reporting.backlog_totals.helpdesk_id IS 'The helpdesk (decimal text; NULL: tickets that came without one).';
COMMENT ON COLUMN reporting.backlog_totals.helpdesk_name IS 'The helpdesk''s display name (table helpdesks, config [[helpdesks]] name); its id while no name is registered.';

-- reporting.backlog_totals_all: one row for every day, open tickets of every helpdesk together
-- (what backlog_totals was with one helpdesk). Default time column: day.
CREATE OR REPLACE VIEW reporting.backlog_totals_all AS
SELECT
    -- times
    b.day,
    -- measures
    sum(b.open_tickets)::integer AS open_tickets,
    -- helpdesk: every one
    NULL::text AS helpdesk_id,
    'All helpdesks'::text AS helpdesk_name
FROM public.daily_backlog b
GROUP BY b.day;

COMMENT ON VIEW reporting.backlog_totals_all IS 'Open tickets at the end of each day, every helpdesk together: one row per day (0 on a day with none). Default time column: day. Its helpdesk columns say "all" (NULL, All helpdesks), so it can be put beside reporting.backlog_totals. Over weeks or months take MAX or AVG, never SUM.';
COMMENT ON COLUMN reporting.backlog_totals_all.day IS 'Calendar day in report_settings.timezone.';
COMMENT ON COLUMN reporting.backlog_totals_all.open_tickets IS 'Tickets open at the end of the day in every helpdesk (today: at the last refresh).';
COMMENT ON COLUMN reporting.backlog_totals_all.helpdesk_id IS 'Always NULL: every helpdesk.';
COMMENT ON COLUMN reporting.backlog_totals_all.helpdesk_name IS 'Always All helpdesks.';
