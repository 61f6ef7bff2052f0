-- Business time at its edges (issue 22):
-- * An opening interval or a partial holiday that daylight saving turns inside out (New York
--   Sunday 02:30-03:00 on the spring-forward day: 02:30 reads as 03:30 daylight time, after
--   the 03:00 close) is empty that day instead of an error that refused the whole calendar.
-- * The covered range is local dates 2010-01-01 to 2050-12-31 in the calendar's own zone
--   (it was 2010-01-02 to 2050-12-30 UTC whatever the zone), an interval crossing midnight
--   into 2010-01-01 included: each calendar's bounds are kept in business_calendar_bounds.
-- * business_time_add(t, 0) waits for the opening like any other amount; negative seconds
--   are NULL (not a due time).
-- * A first reply after the first close does not achieve first_reply: the clock stopped at
--   the close.
-- * refresh_sla() also recomputes tickets whose own refresh was skipped by the daemon
--   (sla_refresh_pending), so a calendar edit that held a lock costs only a delay.
-- The periods of every calendar are rebuilt (night calendars gain 2010-01-01's first hours,
-- which shifts their positions) and, when a calendar exists, every ticket is recomputed.

CREATE TABLE business_calendar_bounds (
    calendar_id  text PRIMARY KEY,
    covers_from  timestamptz NOT NULL,
    covers_until timestamptz NOT NULL
);
COMMENT ON TABLE business_calendar_bounds IS 'Derived, do not edit: the instants each calendar''s periods cover (local 2010-01-01 00:00 to 2051-01-01 00:00 in its zone); business_seconds is NULL outside.';
COMMENT ON COLUMN business_calendar_bounds.calendar_id IS 'business_calendars.calendar_id.';
COMMENT ON COLUMN business_calendar_bounds.covers_from IS 'Local 2010-01-01 00:00 in the calendar''s zone.';
COMMENT ON COLUMN business_calendar_bounds.covers_until IS 'Local 2051-01-01 00:00 (the end of 2050-12-31) in the calendar''s zone.';

CREATE TABLE sla_refresh_pending (
    ticket_id text PRIMARY KEY
);
COMMENT ON TABLE sla_refresh_pending IS 'Bookkeeping: tickets whose SLA results the daemon could not recompute when it wrote them (a calendar or target edit held a lock); refresh_sla() recomputes them.';
COMMENT ON COLUMN sla_refresh_pending.ticket_id IS 'tickets.ticket_id.';

CREATE OR REPLACE FUNCTION rebuild_business_calendar_periods(calendars text[]) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM business_calendar_periods WHERE calendar_id = ANY (calendars);
    DELETE FROM business_calendar_bounds WHERE calendar_id = ANY (calendars);
    INSERT INTO business_calendar_bounds (calendar_id, covers_from, covers_until)
    SELECT calendar_id, timestamp '2010-01-01 00:00' AT TIME ZONE timezone,
           timestamp '2051-01-01 00:00' AT TIME ZONE timezone
      FROM business_calendars WHERE calendar_id = ANY (calendars);
    INSERT INTO business_calendar_periods (calendar_id, starts_at, ends_at, seconds_before)
    WITH bounds AS (
        SELECT c.calendar_id, c.timezone, tstzrange(b.covers_from, b.covers_until) AS covered
          FROM business_calendars c
          JOIN business_calendar_bounds b USING (calendar_id)
         WHERE c.calendar_id = ANY (calendars)
    ), open_bounds AS (
        -- Each local date's intervals as instants; from 2009-12-31, whose night may reach
        -- into 2010-01-01 (clipped to the bounds below).
        SELECT b.calendar_id, b.covered,
               (d + h.opens_at) AT TIME ZONE b.timezone AS lo,
               (d + CASE WHEN h.closes_at > h.opens_at THEN 0 ELSE 1 END + h.closes_at)
                   AT TIME ZONE b.timezone AS hi
          FROM bounds b
          JOIN business_hours h ON h.calendar_id = b.calendar_id
          CROSS JOIN (SELECT date '2009-12-31' + i AS d
                        FROM generate_series(0, date '2050-12-31' - date '2009-12-31') i) days
         WHERE h.weekday = EXTRACT(ISODOW FROM d)
    ), open AS (
        -- An interval daylight saving turns inside out (it lies in the skipped hour) is
        -- empty that day.
        SELECT calendar_id,
               range_agg(CASE WHEN lo < hi THEN tstzrange(lo, hi) * covered
                              ELSE 'empty'::tstzrange END) AS ranges
          FROM open_bounds
         GROUP BY calendar_id
    ), closed_bounds AS (
        SELECT b.calendar_id,
               (x.holiday_date + x.closed_from) AT TIME ZONE b.timezone AS lo,
               (x.holiday_date + x.closed_until) AT TIME ZONE b.timezone AS hi
          FROM bounds b
          JOIN business_holidays x ON x.calendar_id = b.calendar_id
    ), closed AS (
        SELECT calendar_id,
               range_agg(CASE WHEN lo < hi THEN tstzrange(lo, hi) ELSE 'empty'::tstzrange END) AS ranges
          FROM closed_bounds
         GROUP BY calendar_id
    ), periods AS (
        SELECT o.calendar_id, r
          FROM open o
          LEFT JOIN closed x USING (calendar_id)
          CROSS JOIN LATERAL unnest(o.ranges - COALESCE(x.ranges, '{}'::tstzmultirange)) r
         WHERE NOT isempty(r)
    )
    SELECT calendar_id, lower(r), upper(r),
           COALESCE(sum(EXTRACT(EPOCH FROM upper(r) - lower(r))) OVER (
               PARTITION BY calendar_id ORDER BY lower(r)
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
      FROM periods;
$$;
COMMENT ON FUNCTION rebuild_business_calendar_periods(text[]) IS 'Rebuilds business_calendar_periods and business_calendar_bounds of the given calendars from their hours and holidays (done by triggers on every change). An interval or holiday that daylight saving turns inside out is empty that day.';

CREATE OR REPLACE FUNCTION business_position(t timestamptz, calendar text) RETURNS double precision
LANGUAGE sql STABLE AS $$
    -- Outside the calendar's local dates 2010-01-01 .. 2050-12-31: unknown.
    SELECT CASE WHEN t IS NULL OR calendar IS NULL THEN NULL ELSE (
        SELECT CASE WHEN t BETWEEN b.covers_from AND b.covers_until THEN COALESCE((
            SELECT p.seconds_before
                   + LEAST(GREATEST(EXTRACT(EPOCH FROM t - p.starts_at)::float8, 0),
                           EXTRACT(EPOCH FROM p.ends_at - p.starts_at)::float8)
              FROM business_calendar_periods p
             WHERE p.calendar_id = calendar AND p.starts_at <= t
             ORDER BY p.starts_at DESC LIMIT 1),
            -- Before the first period: 0, unless the calendar is never open (NULL, not a 0
            -- that looks like a result).
            CASE WHEN EXISTS (SELECT 1 FROM business_calendar_periods p WHERE p.calendar_id = calendar)
                 THEN 0 END) END
          FROM business_calendar_bounds b WHERE b.calendar_id = calendar) END
$$;
COMMENT ON FUNCTION business_position(timestamptz, text) IS 'SECONDS of business time of a calendar from local 2010-01-01 00:00 up to t (a building block of business_seconds); NULL outside local dates 2010-01-01 .. 2050-12-31.';

-- t when the calendar is open at t, else its next opening.
CREATE FUNCTION business_next_open(t timestamptz, calendar text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN business_position(t, calendar) IS NULL THEN NULL ELSE COALESCE(
        (SELECT t FROM (SELECT p.ends_at FROM business_calendar_periods p
                         WHERE p.calendar_id = calendar AND p.starts_at <= t
                         ORDER BY p.starts_at DESC LIMIT 1) last
          WHERE last.ends_at > t),
        (SELECT p.starts_at FROM business_calendar_periods p
          WHERE p.calendar_id = calendar AND p.starts_at > t
          ORDER BY p.starts_at LIMIT 1)) END
$$;
COMMENT ON FUNCTION business_next_open(timestamptz, text) IS 't when the calendar is open at t (a period is [opening, closing)), else its next opening; NULL outside the covered dates or when it never opens again. business_time_add(t, 0).';

CREATE OR REPLACE FUNCTION business_time_add(start_at timestamptz, seconds double precision, calendar text)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN start_at IS NULL OR seconds IS NULL OR business_calendar_or_default(calendar) IS NULL
                  OR seconds < 0
                THEN NULL
                WHEN seconds = 0 THEN business_next_open(start_at, business_calendar_or_default(calendar))
                ELSE business_instant(business_position(start_at, business_calendar_or_default(calendar)) + seconds,
                                      business_calendar_or_default(calendar)) END
$$;
COMMENT ON FUNCTION business_time_add(timestamptz, double precision, text) IS 'The instant at which `seconds` of business time have passed since start_at in the calendar (NULL: the default): how SLA due times (breach_at) are computed. A start outside business hours waits for the next opening (0 seconds from outside hours: the next opening; from inside: start_at); a target met exactly at closing time is due at the close, not at the next opening. Negative seconds: NULL.';

-- As in 20261127700001_sla_speed.sql, except: a first reply after the first close does not
-- achieve first_reply (whichever comes first ends the clock).
CREATE OR REPLACE FUNCTION refresh_ticket_sla(ids text[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO ticket_business_times AS b (ticket_id, calendar_id, first_reply_business_seconds,
                                            first_resolution_business_seconds,
                                            last_resolution_business_seconds)
    SELECT t.ticket_id, d.cal,
           floor(business_position(t.agent_first_response_time, d.cal) - s.created_pos)::bigint,
           floor(business_position(h.first_closed_at, d.cal) - s.created_pos)::bigint,
           floor(business_position(t.closed_at, d.cal) - s.created_pos)::bigint
      FROM tickets t
      CROSS JOIN (SELECT business_calendar_or_default(NULL) AS cal) d
      LEFT JOIN ticket_history_summary h ON h.ticket_id = t.ticket_id
      -- OFFSET 0: computed once per ticket, not once per use.
      CROSS JOIN LATERAL (SELECT business_position(t.created_at, d.cal) AS created_pos OFFSET 0) s
     WHERE t.ticket_id = ANY (ids)
    ON CONFLICT (ticket_id) DO UPDATE SET
        calendar_id = EXCLUDED.calendar_id,
        first_reply_business_seconds = EXCLUDED.first_reply_business_seconds,
        first_resolution_business_seconds = EXCLUDED.first_resolution_business_seconds,
        last_resolution_business_seconds = EXCLUDED.last_resolution_business_seconds;

    DELETE FROM sla_refresh_pending WHERE ticket_id = ANY (ids);
    DELETE FROM ticket_sla_results WHERE ticket_id = ANY (ids);
    INSERT INTO ticket_sla_results (ticket_id, target_id, instance_no, metric, calendar_id,
                                    business_hours, target_minutes, started_at, breach_at,
                                    achieved_at, stopped_at, elapsed_seconds_done, start_position)
    WITH t AS (
        SELECT t.ticket_id, t.created_at, t.channel, t.ticket_type, t.deleted_at,
               t.agent_first_response_time, h.first_closed_at,
               CASE WHEN COALESCE(sc.is_closed, t.status >= 50) THEN t.closed_at END AS closed_at
          FROM tickets t
          LEFT JOIN ticket_status_codes sc ON sc.code = t.status
          LEFT JOIN ticket_history_summary h ON h.ticket_id = t.ticket_id
         WHERE t.ticket_id = ANY (ids) AND t.created_at IS NOT NULL
    ), applies AS (
        -- The first matching target of each metric.
        SELECT DISTINCT ON (t.ticket_id, g.metric)
               t.*, g.target_id, g.metric, g.target_minutes, g.business_hours,
               CASE WHEN g.business_hours THEN business_calendar_or_default(g.calendar_id) END AS cal
          FROM t
          JOIN sla_targets g
            ON (g.channel IS NULL OR g.channel = t.channel)
           AND (g.ticket_type IS NULL OR g.ticket_type = t.ticket_type)
           AND (g.tag IS NULL OR EXISTS (
                   SELECT 1 FROM ticket_tags tt JOIN tags x ON x.tag_id = tt.tag_id
                    WHERE tt.ticket_id = t.ticket_id AND x.name = g.tag))
           AND (g.custom_field IS NULL OR EXISTS (
                   SELECT 1 FROM ticket_custom_fields f
                    WHERE f.ticket_id = t.ticket_id AND f.value = g.custom_field_value
                      AND g.custom_field IN (f.key_name, f.display_name, f.field_id)))
         ORDER BY t.ticket_id, g.metric, g.priority, g.target_id
    ), waits AS (
        -- next_reply: each customer wait (see ticket_reply_metrics): the first guest message
        -- after an agent's message (or the first ever) to the next agent message.
        SELECT m.ticket_id, m.created_at, m.sender_role,
               lag(m.sender_role) OVER w AS prev_role
          FROM ticket_messages m
         WHERE m.ticket_id = ANY (ids) AND m.sender_role IN ('guest', 'agent')
        WINDOW w AS (PARTITION BY m.ticket_id ORDER BY m.created_at, m.message_id)
    ), first_clocks AS (
        SELECT a.ticket_id, a.target_id, 1 AS instance_no, a.metric, a.cal, a.business_hours,
               a.target_minutes, a.created_at AS started_at,
               CASE a.metric WHEN 'first_reply' THEN a.agent_first_response_time
                             WHEN 'first_resolution' THEN a.first_closed_at
                             ELSE a.closed_at END AS achieved_at,
               -- LEAST ignores NULLs: the earlier of the two that exist.
               CASE a.metric WHEN 'first_reply' THEN LEAST(a.first_closed_at, a.deleted_at)
                             ELSE a.deleted_at END AS stop_at
          FROM applies a
         WHERE a.metric <> 'next_reply'
    ), clocks AS (
        -- A first reply after the clock stopped (the first close) does not achieve it.
        SELECT ticket_id, target_id, instance_no, metric, cal, business_hours, target_minutes,
               started_at,
               CASE WHEN metric = 'first_reply' AND achieved_at > stop_at THEN NULL
                    ELSE achieved_at END AS achieved_at,
               stop_at
          FROM first_clocks
        UNION ALL
        SELECT a.ticket_id, a.target_id,
               row_number() OVER (PARTITION BY a.ticket_id ORDER BY w.created_at)::integer,
               a.metric, a.cal, a.business_hours, a.target_minutes, w.created_at,
               (SELECT min(r.created_at) FROM ticket_messages r
                 WHERE r.ticket_id = w.ticket_id AND r.sender_role = 'agent'
                   AND r.created_at >= w.created_at),
               LEAST(a.closed_at, a.deleted_at)
          FROM applies a
          JOIN waits w ON w.ticket_id = a.ticket_id
         WHERE a.metric = 'next_reply' AND w.sender_role = 'guest'
           AND w.prev_role IS DISTINCT FROM 'guest'
    )
    SELECT c.ticket_id, c.target_id, c.instance_no, c.metric, c.cal, c.business_hours,
           c.target_minutes, c.started_at,
           CASE WHEN c.business_hours THEN business_instant(s.start_pos + c.target_minutes * 60.0, c.cal)
                ELSE c.started_at + make_interval(mins => c.target_minutes) END,
           c.achieved_at,
           CASE WHEN c.achieved_at IS NULL THEN e.end_at END,
           CASE WHEN c.business_hours THEN floor(business_position(e.end_at, c.cal) - s.start_pos)::bigint
                ELSE floor(EXTRACT(EPOCH FROM e.end_at - c.started_at))::bigint END,
           s.start_pos
      FROM clocks c
      -- The start's business position, once per clock (OFFSET 0 keeps it from being inlined
      -- into each use).
      CROSS JOIN LATERAL (SELECT CASE WHEN c.business_hours THEN business_position(c.started_at, c.cal) END
                                 AS start_pos OFFSET 0) s
      -- Where the clock ended (never before it started); NULL while it runs. GREATEST would
      -- skip a NULL, hence the CASE.
      CROSS JOIN LATERAL (
          SELECT CASE WHEN COALESCE(c.achieved_at, c.stop_at) IS NOT NULL
                      THEN GREATEST(COALESCE(c.achieved_at, c.stop_at), c.started_at) END AS end_at) e;
$$;
COMMENT ON FUNCTION refresh_ticket_sla(text[]) IS 'Recomputes ticket_sla_results and ticket_business_times of the given tickets. Called by helpdesk-sync in the ticket''s write transaction (and for its messages).';

CREATE OR REPLACE FUNCTION refresh_sla(force boolean DEFAULT false) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    pending text[];
BEGIN
    PERFORM 1 FROM sla_refresh_state WHERE stale_since IS NOT NULL OR force FOR UPDATE;
    IF NOT FOUND THEN
        -- Up to date, except tickets whose own refresh was skipped.
        pending := ARRAY(SELECT ticket_id FROM sla_refresh_pending);
        IF cardinality(pending) = 0 THEN
            RETURN 0;
        END IF;
        PERFORM refresh_ticket_sla(pending);
        DELETE FROM sla_refresh_pending WHERE ticket_id = ANY (pending);
        RETURN cardinality(pending);
    END IF;
    PERFORM refresh_ticket_sla(ARRAY(SELECT ticket_id FROM tickets));
    DELETE FROM sla_refresh_pending;
    SELECT count(*) INTO n FROM tickets;
    UPDATE sla_refresh_state SET stale_since = NULL, refreshed_at = now();
    RETURN n;
END $$;
COMMENT ON FUNCTION refresh_sla(boolean) IS 'Applies changed calendars and targets to every ticket (ticket_sla, business-time columns) when something changed since the last time (or always with force => true), and recomputes the tickets whose own refresh was skipped (sla_refresh_pending); returns the tickets recomputed. The daemon calls it after every sync cycle and after seeding; call it by hand after editing calendars or targets to see the results at once.';

SELECT rebuild_business_calendar_periods(ARRAY(SELECT calendar_id FROM business_calendars));
SELECT refresh_ticket_sla(ARRAY(SELECT ticket_id FROM tickets))
 WHERE EXISTS (SELECT 1 FROM business_calendars) OR EXISTS (SELECT 1 FROM sla_targets);
