-- Daily stats and the backlog per helpdesk (issue 26): several helpdesks in one database.
-- daily_ticket_stats keeps its meaning (every helpdesk together, one row per day); the new
-- daily_ticket_stats_by_helpdesk has a row per day and helpdesk. daily_backlog gains
-- helpdesk_id: its groups (and the zero filler row of a day with nothing open) are per
-- helpdesk, so a single-helpdesk database keeps exactly its rows, with the helpdesk id added.

-- The backlog refresh and the views group by it.
CREATE INDEX IF NOT EXISTS tickets_helpdesk_idx ON tickets (helpdesk_id);


-- One row per calendar day (report_settings.timezone) and helpdesk, from the first ticket to
-- today, zeros included: daily_ticket_stats split by the ticket's helpdesk.
CREATE VIEW daily_ticket_stats_by_helpdesk AS
WITH created AS (
    SELECT helpdesk_id, created_date AS day,
           count(*) AS tickets_created,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY first_response_seconds) AS first_response_seconds_median,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY first_response_seconds) AS first_response_seconds_p90,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY first_reply_seconds) AS first_reply_seconds_median,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY first_reply_seconds) AS first_reply_seconds_p90
    FROM ticket_facts WHERE created_date IS NOT NULL GROUP BY helpdesk_id, created_date
), closed AS (
    SELECT helpdesk_id, closed_date AS day,
           count(*) AS tickets_closed,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution_seconds) AS resolution_seconds_median,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY resolution_seconds) AS resolution_seconds_p90,
           count(*) FILTER (WHERE score = 1) AS score_unsatisfied,
           count(*) FILTER (WHERE score = 2) AS score_neutral,
           count(*) FILTER (WHERE score = 3) AS score_satisfied,
           count(*) FILTER (WHERE NOT is_rated) AS score_none
    FROM ticket_facts WHERE closed_date IS NOT NULL GROUP BY helpdesk_id, closed_date
), days AS (
    SELECT generate_series(
               LEAST((SELECT min(day) FROM created), (SELECT min(day) FROM closed)),
               (now() AT TIME ZONE (SELECT timezone FROM report_settings))::date,
               interval '1 day')::date AS day
), helpdesks AS (
    -- The helpdesks of the tickets (a helpdesk has rows for every day once it has a ticket).
    SELECT helpdesk_id FROM created UNION SELECT helpdesk_id FROM closed
)
SELECT
    d.day,
    COALESCE(c.tickets_created, 0) AS tickets_created,
    COALESCE(x.tickets_closed, 0) AS tickets_closed,
    c.first_response_seconds_median,
    c.first_response_seconds_p90,
    x.resolution_seconds_median,
    x.resolution_seconds_p90,
    COALESCE(x.score_unsatisfied, 0) AS score_unsatisfied,
    COALESCE(x.score_neutral, 0) AS score_neutral,
    COALESCE(x.score_satisfied, 0) AS score_satisfied,
    COALESCE(x.score_none, 0) AS score_none,
    c.first_reply_seconds_median,
    c.first_reply_seconds_p90,
    g.helpdesk_id
FROM days d
CROSS JOIN helpdesks g
LEFT JOIN created c ON c.day = d.day AND c.helpdesk_id IS NOT DISTINCT FROM g.helpdesk_id
LEFT JOIN closed x ON x.day = d.day AND x.helpdesk_id IS NOT DISTINCT FROM g.helpdesk_id;

COMMENT ON VIEW daily_ticket_stats_by_helpdesk IS 'daily_ticket_stats per helpdesk: one row per calendar day (report_settings.timezone) and helpdesk, from the first ticket to today, zeros included, for every helpdesk with tickets. Volumes add up over helpdesks to daily_ticket_stats; medians and p90s do not (compute them from ticket_facts). Deleted tickets excluded.';
SELECT reporting_copy_comments('daily_ticket_stats_by_helpdesk', 'daily_ticket_stats');
COMMENT ON COLUMN daily_ticket_stats_by_helpdesk.helpdesk_id IS 'The helpdesk of the tickets counted (tickets.helpdesk_id; NULL: tickets that came without one).';

-- The backlog per helpdesk.
ALTER TABLE daily_backlog ADD COLUMN helpdesk_id text;
CREATE INDEX daily_backlog_helpdesk_day_idx ON daily_backlog (helpdesk_id, day);
COMMENT ON TABLE daily_backlog IS 'Open tickets at the end of each day (report_settings.timezone), by helpdesk, status, agent owner and channel; today counts the tickets open at the last refresh. Every day from the first ticket to today has rows for every helpdesk of a ticket: a day with nothing open in a helpdesk has one row with open_tickets = 0, its helpdesk_id and the other columns NULL. Reconstructed from ticket_status_stays, refreshed by each sync cycle (refresh_daily_backlog()). Deleted tickets count until their deletion.';
COMMENT ON COLUMN daily_backlog.helpdesk_id IS 'The helpdesk of the open tickets (tickets.helpdesk_id; NULL: tickets that came without one). Sum over helpdesks for the whole database.';

-- As in 20261127000001_analytics_v2.sql, with every group and the filler rows per helpdesk.
CREATE OR REPLACE FUNCTION refresh_daily_backlog() RETURNS integer
LANGUAGE plpgsql
-- A refresh is one big statement: compiling it (JIT) costs more than it saves.
SET jit = off AS $$
DECLARE
    tz         text;
    st         daily_backlog_state%ROWTYPE;
    changed_from timestamptz;
    seen_id    bigint;
    today      date;
    first_day  date;
    from_day   date;
    written    integer;
BEGIN
    SELECT timezone INTO tz FROM report_settings;
    -- One refresh at a time; writers append to daily_backlog_dirty without waiting.
    SELECT * INTO st FROM daily_backlog_state FOR UPDATE;
    SELECT min(d.dirty_from), max(d.id) INTO changed_from, seen_id FROM daily_backlog_dirty d;
    today := (now() AT TIME ZONE tz)::date;
    IF st.timezone IS DISTINCT FROM tz THEN
        changed_from := '-infinity';
    END IF;
    IF changed_from IS NULL AND st.refreshed_day = today THEN
        RETURN 0;
    END IF;
    SELECT (min(entered_at) AT TIME ZONE tz)::date INTO first_day FROM ticket_status_stays;
    IF first_day IS NULL THEN
        DELETE FROM daily_backlog;
        written := 0;
    ELSE
        -- The day of the last refresh counted "so far" only: it is recomputed too.
        from_day := GREATEST(first_day, LEAST(COALESCE((changed_from AT TIME ZONE tz)::date, today),
                                              COALESCE(st.refreshed_day, first_day)));
        DELETE FROM daily_backlog WHERE day >= from_day OR day < first_day;
        INSERT INTO daily_backlog (day, status, status_label, status_sort_order, agent_owner_id,
                                   agent_owner_name, channel, channel_label, open_tickets,
                                   helpdesk_id)
        WITH spans AS (
            -- Each open stay as the past days it counts on: from the day it began to the last
            -- day whose end (midnight) falls before it ended.
            SELECT t.helpdesk_id, s.status, s.entered_via = 'unobserved' AS unobserved,
                   s.agent_owner_id, t.channel,
                   GREATEST(from_day, (s.entered_at AT TIME ZONE tz)::date) AS counts_from,
                   LEAST(today - 1,
                         ((COALESCE(s.left_at, t.deleted_at, 'infinity') - interval '1 microsecond')
                              AT TIME ZONE tz)::date - 1) AS counts_until
              FROM ticket_status_stays s
              JOIN tickets t USING (ticket_id)
             WHERE NOT s.is_closed
               AND COALESCE(s.left_at, t.deleted_at, 'infinity')
                   > (from_day::timestamp AT TIME ZONE tz)
        ), changes AS (
            -- +1 the day a stay starts counting, -1 the day after its last: per group, the
            -- running sum is the backlog (linear in the stays, not in stays times days).
            SELECT helpdesk_id, status, unobserved, agent_owner_id, channel, day, sum(delta) AS delta
              FROM (SELECT helpdesk_id, status, unobserved, agent_owner_id, channel,
                           counts_from AS day, 1 AS delta
                      FROM spans WHERE counts_from <= counts_until
                    UNION ALL
                    SELECT helpdesk_id, status, unobserved, agent_owner_id, channel,
                           counts_until + 1, -1
                      FROM spans WHERE counts_from <= counts_until) d
             GROUP BY 1, 2, 3, 4, 5, 6
        ), running AS (
            SELECT helpdesk_id, status, unobserved, agent_owner_id, channel, day AS starts,
                   lead(day) OVER w AS ends, sum(delta) OVER w AS n
              FROM changes
            WINDOW w AS (PARTITION BY helpdesk_id, status, unobserved, agent_owner_id, channel
                         ORDER BY day)
        ), counted AS (
            SELECT g.day::date AS day, r.helpdesk_id, r.status, r.unobserved, r.agent_owner_id,
                   r.channel, r.n::integer AS n
              FROM running r
              CROSS JOIN LATERAL generate_series(r.starts, COALESCE(r.ends, today) - 1,
                                                 interval '1 day') g(day)
             WHERE r.n > 0 AND r.starts < today
            UNION ALL
            -- Today: the tickets open now.
            SELECT today, t.helpdesk_id, s.status, s.entered_via = 'unobserved', s.agent_owner_id,
                   t.channel, count(*)::integer
              FROM ticket_status_stays s
              JOIN tickets t USING (ticket_id)
             WHERE NOT s.is_closed AND s.entered_at <= now()
               AND now() < COALESCE(s.left_at, t.deleted_at, 'infinity')
             GROUP BY 1, 2, 3, 4, 5, 6
        ), days AS (
            SELECT generate_series(from_day, today, interval '1 day')::date AS day
        ), helpdesks AS (
            -- Every helpdesk of a ticket (NULL for tickets that came without one).
            SELECT DISTINCT t.helpdesk_id FROM tickets t
        )
        SELECT d.day, c.status,
               CASE WHEN c.unobserved THEN 'not observed'
                    WHEN c.n IS NOT NULL THEN COALESCE(sc.label_en_us, 'unknown (' || c.status || ')') END,
               CASE WHEN c.unobserved THEN 0
                    WHEN c.n IS NOT NULL THEN COALESCE(sc.sort_order, 100 + c.status) END,
               c.agent_owner_id, u.name, c.channel,
               CASE WHEN c.n IS NOT NULL AND c.channel IS NOT NULL
                    THEN COALESCE(cc.label_en_us, 'other (' || c.channel || ')') END,
               COALESCE(c.n, 0),
               g.helpdesk_id
          FROM days d
          CROSS JOIN helpdesks g
          LEFT JOIN counted c ON c.day = d.day AND c.helpdesk_id IS NOT DISTINCT FROM g.helpdesk_id
          LEFT JOIN ticket_status_codes sc ON sc.code = c.status
          LEFT JOIN ticket_channel_codes cc ON cc.code = c.channel
          LEFT JOIN helpdesk_users u ON u.user_id = c.agent_owner_id;
        GET DIAGNOSTICS written = ROW_COUNT;
    END IF;
    DELETE FROM daily_backlog_dirty WHERE id <= seen_id;
    UPDATE daily_backlog_state SET refreshed_at = now(), refreshed_day = today, timezone = tz;
    RETURN written;
END
$$;
COMMENT ON FUNCTION refresh_daily_backlog() IS 'Recomputes daily_backlog (per helpdesk) from the first day a change touched (or every day after a time zone change) to today; returns the rows written (0 when nothing was due). Run by helpdesk-sync after each cycle; safe to run by hand.';

-- The upgrade: a database whose tickets all name one helpdesk gets it on its rows at once
-- (exactly what the refresh computes); in any case every day is recomputed at the next refresh.
UPDATE daily_backlog
   SET helpdesk_id = (SELECT min(helpdesk_id) FROM tickets)
 WHERE (SELECT count(DISTINCT helpdesk_id) = 1 AND bool_and(helpdesk_id IS NOT NULL) FROM tickets);
INSERT INTO daily_backlog_dirty (dirty_from) VALUES ('-infinity');
