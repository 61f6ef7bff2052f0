-- SLA targets and business calendars per helpdesk (issue 26). A target can be conditioned on a
-- helpdesk (sla_targets.helpdesk: its id, or its name in helpdesks); a helpdesk can have a
-- calendar of its own (helpdesk_calendars), used where the default calendar was: for its
-- tickets' business-time columns and for its targets without a calendar.
--
-- Precedence among the targets of a metric that match a ticket: a target conditioned on the
-- ticket's helpdesk wins over one for any helpdesk; then the lowest priority; then target_id.
-- Nothing changes for a database without these conditions (no recompute needed).

ALTER TABLE sla_targets ADD COLUMN helpdesk text CHECK (helpdesk <> '');
COMMENT ON COLUMN sla_targets.helpdesk IS 'Only tickets of this helpdesk: its id (tickets.helpdesk_id) or its name (helpdesks.name); NULL: any. A target with a helpdesk wins over any target without one (then priority decides).';
COMMENT ON TABLE sla_targets IS 'SLA targets. For each ticket and metric, among the targets whose conditions all match, one conditioned on the ticket''s helpdesk wins over one for any helpdesk, then the lowest priority, then target_id; a target without conditions is the default. Edits are applied by refresh_sla() (the daemon calls it after every sync cycle).';

-- A helpdesk's own calendar.
CREATE TABLE helpdesk_calendars (
    helpdesk    text PRIMARY KEY CHECK (helpdesk <> ''),
    calendar_id text NOT NULL REFERENCES business_calendars (calendar_id)
                ON UPDATE CASCADE ON DELETE CASCADE,
    source      text NOT NULL DEFAULT 'sql' CHECK (source IN ('sql', 'config'))
);
COMMENT ON TABLE helpdesk_calendars IS 'The calendar of a helpdesk: its tickets'' business-time columns (ticket_facts) and its SLA targets without a calendar use it instead of the default calendar. A helpdesk without a row uses the default calendar.';
COMMENT ON COLUMN helpdesk_calendars.helpdesk IS 'The helpdesk: its id (tickets.helpdesk_id) or its name (helpdesks.name); an id wins over a name.';
COMMENT ON COLUMN helpdesk_calendars.calendar_id IS 'business_calendars.calendar_id.';
COMMENT ON COLUMN helpdesk_calendars.source IS 'config: seeded from config.toml [[sla.helpdesk_calendars]] (replaced when [sla] changes); sql: created by hand.';

-- A ticket's calendar: its helpdesk's (by id, else by name), else the default one.
-- ($1, not the parameter's name: helpdesk_calendars has a column of that name.)
CREATE FUNCTION helpdesk_calendar(helpdesk_id text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(
        (SELECT a.calendar_id
           FROM helpdesk_calendars a
          WHERE a.helpdesk = $1
             OR a.helpdesk = (SELECT h.name FROM helpdesks h WHERE h.helpdesk_id = $1)
          ORDER BY a.helpdesk = $1 DESC
          LIMIT 1),
        business_calendar_or_default(NULL))
$$;
COMMENT ON FUNCTION helpdesk_calendar(text) IS 'The calendar of a helpdesk''s tickets: its row in helpdesk_calendars (by id, else by name), else the default calendar; NULL when neither exists.';

-- Changes of the assignments, and of helpdesk names a condition may name, make the results
-- stale (refresh_sla() recomputes them).
CREATE FUNCTION helpdesk_sla_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'helpdesk_calendars'
       OR EXISTS (SELECT 1 FROM sla_targets WHERE helpdesk IS NOT NULL)
       OR EXISTS (SELECT 1 FROM helpdesk_calendars) THEN
        UPDATE sla_refresh_state SET stale_since = COALESCE(stale_since, now());
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION helpdesk_sla_changed() IS 'Trigger: a helpdesk''s calendar changed, or a helpdesk was registered, renamed or removed while a target or calendar names helpdesks: the SLA results are stale (sla_refresh_state).';
CREATE TRIGGER helpdesk_calendars_changed AFTER INSERT OR UPDATE OR DELETE ON helpdesk_calendars
    FOR EACH STATEMENT EXECUTE FUNCTION helpdesk_sla_changed();
CREATE TRIGGER helpdesks_named AFTER INSERT OR UPDATE OF name OR DELETE ON helpdesks
    FOR EACH ROW EXECUTE FUNCTION helpdesk_sla_changed();

-- As in 20261206203130_business_time_edges.sql, except: each ticket's calendar is its
-- helpdesk's (helpdesk_calendar), and a target's helpdesk condition matches and takes
-- precedence.
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
      -- OFFSET 0: computed once per ticket, not once per use.
      CROSS JOIN LATERAL (SELECT helpdesk_calendar(t.helpdesk_id) AS cal OFFSET 0) d
      LEFT JOIN ticket_history_summary h ON h.ticket_id = t.ticket_id
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
               CASE WHEN COALESCE(sc.is_closed, t.status >= 50) THEN t.closed_at END AS closed_at,
               t.helpdesk_id, hd.name AS helpdesk_name, b.calendar_id AS helpdesk_cal
          FROM tickets t
          LEFT JOIN ticket_status_codes sc ON sc.code = t.status
          LEFT JOIN ticket_history_summary h ON h.ticket_id = t.ticket_id
          LEFT JOIN helpdesks hd ON hd.helpdesk_id = t.helpdesk_id
          -- Written just above: the ticket's calendar.
          LEFT JOIN ticket_business_times b ON b.ticket_id = t.ticket_id
         WHERE t.ticket_id = ANY (ids) AND t.created_at IS NOT NULL
    ), applies AS (
        -- The first matching target of each metric: the ticket's helpdesk's before any
        -- helpdesk's, then by priority.
        SELECT DISTINCT ON (t.ticket_id, g.metric)
               t.*, g.target_id, g.metric, g.target_minutes, g.business_hours,
               CASE WHEN NOT g.business_hours THEN NULL
                    WHEN g.calendar_id IS NOT NULL THEN business_calendar_or_default(g.calendar_id)
                    ELSE t.helpdesk_cal END AS cal
          FROM t
          JOIN sla_targets g
            ON (g.channel IS NULL OR g.channel = t.channel)
           AND (g.ticket_type IS NULL OR g.ticket_type = t.ticket_type)
           AND (g.helpdesk IS NULL OR g.helpdesk = t.helpdesk_id OR g.helpdesk = t.helpdesk_name)
           AND (g.tag IS NULL OR EXISTS (
                   SELECT 1 FROM ticket_tags tt JOIN tags x ON x.tag_id = tt.tag_id
                    WHERE tt.ticket_id = t.ticket_id AND x.name = g.tag))
           AND (g.custom_field IS NULL OR EXISTS (
                   SELECT 1 FROM ticket_custom_fields f
                    WHERE f.ticket_id = t.ticket_id AND f.value = g.custom_field_value
                      AND g.custom_field IN (f.key_name, f.display_name, f.field_id)))
         ORDER BY t.ticket_id, g.metric, g.helpdesk IS NULL, g.priority, g.target_id
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
COMMENT ON FUNCTION refresh_ticket_sla(text[]) IS 'Recomputes ticket_sla_results and ticket_business_times of the given tickets (each in its helpdesk''s calendar, helpdesk_calendar()). Called by helpdesk-sync in the ticket''s write transaction (and for its messages).';

COMMENT ON COLUMN ticket_facts_all.business_calendar_id IS 'The calendar of the business-time columns: the ticket''s helpdesk''s (helpdesk_calendars), else the default calendar, when they were computed; NULL (and the business columns NULL) when there is neither.';
