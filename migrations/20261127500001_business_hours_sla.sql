-- Business hours and SLA targets: calendars (time zone, weekly opening hours, holidays),
-- business_seconds() / business_time_add() over them, SLA targets matched to tickets, and the
-- results materialized per ticket on write (ticket_sla_results, ticket_business_times), read
-- through ticket_sla and the new business-time columns of ticket_facts.
--
-- How a calendar turns into time: each local date's opening intervals (wall-clock times in the
-- calendar's zone) become real instants with AT TIME ZONE, holidays (local dates, optionally
-- part of a day) are cut out, and what is left is merged into ordered periods with the business
-- seconds before each one (business_calendar_periods). A business duration is then two index
-- look-ups, whatever the span. Periods cover local dates 2010-01-01 to 2050-12-31.
--
-- Daylight saving: business seconds are real elapsed seconds. An opening or closing time that
-- falls in the hour skipped in spring is read with the offset before the change (02:30 on the
-- spring-forward night is 03:30 daylight time); one in the hour repeated in autumn is its
-- second occurrence (standard time). So 09:00-17:00 is 8 hours on both change days, while
-- 00:00-24:00 is 23 hours on the spring-forward day and 25 on the fall-back day.

CREATE TABLE business_calendars (
    calendar_id text PRIMARY KEY CHECK (calendar_id <> ''),
    timezone    text NOT NULL CHECK (now() AT TIME ZONE timezone IS NOT NULL),
    is_default  boolean NOT NULL DEFAULT false,
    description text,
    source      text NOT NULL DEFAULT 'sql' CHECK (source IN ('sql', 'config'))
);
CREATE UNIQUE INDEX business_calendars_one_default ON business_calendars (is_default) WHERE is_default;
COMMENT ON TABLE business_calendars IS 'Business calendars: a time zone with weekly opening hours (business_hours) and holidays (business_holidays). At most one is the default (is_default), used by business_seconds() without a calendar, by ticket_facts'' business-time columns and by targets without a calendar. Editable; see docs/analytics.md "Business hours and SLA".';
COMMENT ON COLUMN business_calendars.calendar_id IS 'Name of the calendar (targets and business_seconds() refer to it).';
COMMENT ON COLUMN business_calendars.timezone IS 'IANA time zone of the opening hours and holidays (an unknown zone is refused).';
COMMENT ON COLUMN business_calendars.is_default IS 'The default calendar (at most one).';
COMMENT ON COLUMN business_calendars.description IS 'Free text.';
COMMENT ON COLUMN business_calendars.source IS 'config: seeded from config.toml [sla] (replaced when that section changes); sql: created by hand (never touched by helpdesk-sync).';

CREATE TABLE business_hours (
    calendar_id text NOT NULL REFERENCES business_calendars (calendar_id) ON DELETE CASCADE ON UPDATE CASCADE,
    weekday     smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    opens_at    time NOT NULL CHECK (opens_at < '24:00'),
    closes_at   time NOT NULL,
    CHECK (closes_at <> opens_at),
    PRIMARY KEY (calendar_id, weekday, opens_at)
);
COMMENT ON TABLE business_hours IS 'Weekly opening hours of a calendar, in its local time: one row per interval (several a day allowed). A day without rows is a day off. closes_at after opens_at closes the same day (24:00 = midnight at the end of the day); closes_at at or before opens_at closes the next day (22:00-06:00 crosses midnight). 24/7: 00:00-24:00 on all seven days.';
COMMENT ON COLUMN business_hours.calendar_id IS 'business_calendars.calendar_id.';
COMMENT ON COLUMN business_hours.weekday IS 'ISO day of the week the interval opens: 1 Monday ... 7 Sunday.';
COMMENT ON COLUMN business_hours.opens_at IS 'Local opening time.';
COMMENT ON COLUMN business_hours.closes_at IS 'Local closing time; at or before opens_at means the next day; 24:00 is the end of the day.';

CREATE TABLE business_holidays (
    calendar_id  text NOT NULL REFERENCES business_calendars (calendar_id) ON DELETE CASCADE ON UPDATE CASCADE,
    holiday_date date NOT NULL,
    closed_from  time NOT NULL DEFAULT '00:00',
    closed_until time NOT NULL DEFAULT '24:00',
    name         text,
    CHECK (closed_from < closed_until),
    PRIMARY KEY (calendar_id, holiday_date, closed_from)
);
COMMENT ON TABLE business_holidays IS 'Closed local dates of a calendar: the whole day by default, or only closed_from-closed_until (a partial day, e.g. closed from 12:00 on Christmas Eve). An opening interval crossing midnight into a holiday closes at that midnight.';
COMMENT ON COLUMN business_holidays.calendar_id IS 'business_calendars.calendar_id.';
COMMENT ON COLUMN business_holidays.holiday_date IS 'The local date that is closed.';
COMMENT ON COLUMN business_holidays.closed_from IS 'Local time the closure starts (00:00: the whole day).';
COMMENT ON COLUMN business_holidays.closed_until IS 'Local time the closure ends (24:00: the end of the day).';
COMMENT ON COLUMN business_holidays.name IS 'Free text (e.g. Spring Festival).';

-- The periods each calendar is open, as real instants, with the business seconds before each.
CREATE TABLE business_calendar_periods (
    calendar_id    text NOT NULL,
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    seconds_before double precision NOT NULL,
    PRIMARY KEY (calendar_id, starts_at)
);
CREATE INDEX business_calendar_periods_position ON business_calendar_periods (calendar_id, seconds_before);
COMMENT ON TABLE business_calendar_periods IS 'Derived, do not edit: the periods each calendar is open (opening hours minus holidays, merged), as real instants, rebuilt whenever a calendar, its hours or holidays change. Local dates 2010-01-01 to 2050-12-31 are covered (business_seconds is NULL outside).';
COMMENT ON COLUMN business_calendar_periods.calendar_id IS 'business_calendars.calendar_id.';
COMMENT ON COLUMN business_calendar_periods.starts_at IS 'The calendar opens.';
COMMENT ON COLUMN business_calendar_periods.ends_at IS 'It closes.';
COMMENT ON COLUMN business_calendar_periods.seconds_before IS 'SECONDS of business time in the calendar''s earlier periods (from 2010-01-01).';

CREATE FUNCTION rebuild_business_calendar_periods(calendars text[]) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM business_calendar_periods WHERE calendar_id = ANY (calendars);
    INSERT INTO business_calendar_periods (calendar_id, starts_at, ends_at, seconds_before)
    WITH open AS (
        SELECT c.calendar_id,
               range_agg(tstzrange(
                   (d::date + h.opens_at) AT TIME ZONE c.timezone,
                   (d::date + CASE WHEN h.closes_at > h.opens_at THEN 0 ELSE 1 END + h.closes_at)
                       AT TIME ZONE c.timezone)) AS ranges
          FROM business_calendars c
          JOIN business_hours h ON h.calendar_id = c.calendar_id
          CROSS JOIN generate_series(date '2010-01-01', date '2050-12-31', interval '1 day') d
         WHERE c.calendar_id = ANY (calendars) AND h.weekday = EXTRACT(ISODOW FROM d)
         GROUP BY c.calendar_id
    ), closed AS (
        SELECT c.calendar_id,
               range_agg(tstzrange((x.holiday_date + x.closed_from) AT TIME ZONE c.timezone,
                                   (x.holiday_date + x.closed_until) AT TIME ZONE c.timezone)) AS ranges
          FROM business_calendars c
          JOIN business_holidays x ON x.calendar_id = c.calendar_id
         WHERE c.calendar_id = ANY (calendars)
         GROUP BY c.calendar_id
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
COMMENT ON FUNCTION rebuild_business_calendar_periods(text[]) IS 'Rebuilds business_calendar_periods of the given calendars from their hours and holidays (done by triggers on every change).';

-- Where business_seconds() etc. find the calendar: the given one, else the default.
CREATE FUNCTION business_calendar_or_default(calendar text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT calendar_id FROM business_calendars
     WHERE calendar_id = calendar OR (calendar IS NULL AND is_default)
$$;
COMMENT ON FUNCTION business_calendar_or_default(text) IS 'The calendar given (NULL when there is none of that name), or the default calendar when NULL.';

-- Business seconds of a calendar from the start of its periods up to instant t.
CREATE FUNCTION business_position(t timestamptz, calendar text) RETURNS double precision
LANGUAGE sql STABLE AS $$
    -- Outside the periods' range (local dates 2010-2050, whatever the zone): unknown.
    SELECT CASE WHEN t IS NULL OR calendar IS NULL OR t < '2010-01-02 00:00+00'
                  OR t > '2050-12-30 00:00+00' THEN NULL ELSE COALESCE((
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
$$;
COMMENT ON FUNCTION business_position(timestamptz, text) IS 'SECONDS of business time of a calendar from 2010-01-01 up to t (a building block of business_seconds).';

CREATE FUNCTION business_seconds(start_at timestamptz, end_at timestamptz, calendar text)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT floor(business_position(end_at, business_calendar_or_default(calendar))
                 - business_position(start_at, business_calendar_or_default(calendar)))::bigint
$$;
COMMENT ON FUNCTION business_seconds(timestamptz, timestamptz, text) IS 'SECONDS (whole, rounded down) of business time between start_at and end_at in the calendar (NULL: the default calendar): real elapsed seconds while the calendar is open, holidays excluded, daylight saving respected. Negative when end_at is before start_at; NULL when an argument is NULL, there is no such calendar, the calendar is never open, or a time is outside 2010-2050.';

CREATE FUNCTION business_seconds(start_at timestamptz, end_at timestamptz) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT business_seconds(start_at, end_at, NULL)
$$;
COMMENT ON FUNCTION business_seconds(timestamptz, timestamptz) IS 'business_seconds(start_at, end_at, NULL): in the default calendar.';

CREATE FUNCTION business_time_add(start_at timestamptz, seconds double precision, calendar text)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN start_at IS NULL OR seconds IS NULL OR cal IS NULL THEN NULL
                WHEN seconds <= 0 THEN start_at
                ELSE (SELECT p.starts_at + make_interval(secs => target - p.seconds_before)
                        FROM business_calendar_periods p
                       WHERE p.calendar_id = cal AND p.seconds_before < target
                         AND p.seconds_before + EXTRACT(EPOCH FROM p.ends_at - p.starts_at) >= target
                       ORDER BY p.seconds_before DESC LIMIT 1) END
      FROM (SELECT business_calendar_or_default(calendar) AS cal) c
      CROSS JOIN LATERAL (SELECT business_position(start_at, c.cal) + seconds AS target) x
$$;
COMMENT ON FUNCTION business_time_add(timestamptz, double precision, text) IS 'The instant at which `seconds` of business time have passed since start_at in the calendar (NULL: the default): how SLA due times (breach_at) are computed. A start outside business hours waits for the next opening; a target met exactly at closing time is due at the close, not at the next opening.';

-- SLA targets: which tickets, which metric, how long.
CREATE TABLE sla_targets (
    target_id         text PRIMARY KEY CHECK (target_id <> ''),
    metric            text NOT NULL
                      CHECK (metric IN ('first_reply', 'next_reply', 'first_resolution', 'full_resolution')),
    target_minutes    integer NOT NULL CHECK (target_minutes > 0),
    business_hours    boolean NOT NULL DEFAULT true,
    calendar_id       text REFERENCES business_calendars (calendar_id) ON UPDATE CASCADE,
    priority          integer NOT NULL DEFAULT 100,
    channel           smallint,
    ticket_type       smallint,
    tag               text,
    custom_field      text,
    custom_field_value text,
    description       text,
    source            text NOT NULL DEFAULT 'sql' CHECK (source IN ('sql', 'config')),
    CHECK ((custom_field IS NULL) = (custom_field_value IS NULL))
);
COMMENT ON TABLE sla_targets IS 'SLA targets. For each ticket and metric, the first target (lowest priority, then target_id) whose conditions all match applies; a target without conditions is the default. Edits are applied by refresh_sla() (the daemon calls it after every sync cycle).';
COMMENT ON COLUMN sla_targets.target_id IS 'Name of the target.';
COMMENT ON COLUMN sla_targets.metric IS 'first_reply (creation to the first agent reply), next_reply (each customer message after an agent''s to the next agent message; needs sync.messages), first_resolution (creation to the first close), full_resolution (creation to the last close; running again while reopened).';
COMMENT ON COLUMN sla_targets.target_minutes IS 'MINUTES allowed: business minutes when business_hours, else calendar minutes.';
COMMENT ON COLUMN sla_targets.business_hours IS 'Count only the calendar''s business hours (true) or all the time (false).';
COMMENT ON COLUMN sla_targets.calendar_id IS 'Calendar of the business hours; NULL: the default calendar.';
COMMENT ON COLUMN sla_targets.priority IS 'Lower wins among the targets of a metric that match a ticket.';
COMMENT ON COLUMN sla_targets.channel IS 'Only tickets of this channel code (NULL: any).';
COMMENT ON COLUMN sla_targets.ticket_type IS 'Only tickets of this type code, 1 bot, 2 human (NULL: any).';
COMMENT ON COLUMN sla_targets.tag IS 'Only tickets with a tag of this name (NULL: any).';
COMMENT ON COLUMN sla_targets.custom_field IS 'Only tickets whose custom field with this key_name, display name or field id ...';
COMMENT ON COLUMN sla_targets.custom_field_value IS '... has this value (both NULL: any).';
COMMENT ON COLUMN sla_targets.description IS 'Free text.';
COMMENT ON COLUMN sla_targets.source IS 'config: seeded from config.toml [sla] (replaced when that section changes); sql: created by hand.';

-- Is everything up to date with the calendars and targets? (one row)
CREATE TABLE sla_refresh_state (
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    stale_since  timestamptz,
    refreshed_at timestamptz,
    config_hash  text
);
INSERT INTO sla_refresh_state DEFAULT VALUES;
COMMENT ON TABLE sla_refresh_state IS 'Bookkeeping (one row): when a calendar or target changed after the last full recompute (refresh_sla() recomputes then), and the hash of the config.toml [sla] section last seeded.';
COMMENT ON COLUMN sla_refresh_state.only_row IS 'Always true: the table has one row.';
COMMENT ON COLUMN sla_refresh_state.stale_since IS 'First change of a calendar or target not yet applied to every ticket; NULL when up to date.';
COMMENT ON COLUMN sla_refresh_state.refreshed_at IS 'Last full recompute.';
COMMENT ON COLUMN sla_refresh_state.config_hash IS 'Hash of the [sla] section seeded last (seeding rewrites source = config rows only when it changes).';

-- Per ticket, its business-time durations in the default calendar.
CREATE TABLE ticket_business_times (
    ticket_id                         text PRIMARY KEY REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    calendar_id                       text,
    first_reply_business_seconds      bigint,
    first_resolution_business_seconds bigint,
    last_resolution_business_seconds  bigint
);
COMMENT ON TABLE ticket_business_times IS 'Derived per ticket on write (and by refresh_sla() after a calendar change): business-time durations in the default calendar. Read them in ticket_facts.';
COMMENT ON COLUMN ticket_business_times.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_business_times.calendar_id IS 'The default calendar when computed.';
COMMENT ON COLUMN ticket_business_times.first_reply_business_seconds IS 'SECONDS of business time from creation to the first agent reply.';
COMMENT ON COLUMN ticket_business_times.first_resolution_business_seconds IS 'SECONDS of business time from creation to the first close.';
COMMENT ON COLUMN ticket_business_times.last_resolution_business_seconds IS 'SECONDS of business time from creation to tickets.closed_at (ticket_facts shows it only while closed).';

-- Per ticket and applicable target: the SLA clock, materialized on write.
CREATE TABLE ticket_sla_results (
    ticket_id               text NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    target_id               text NOT NULL REFERENCES sla_targets (target_id) ON DELETE CASCADE ON UPDATE CASCADE,
    instance_no             integer NOT NULL DEFAULT 1,
    metric                  text NOT NULL,
    calendar_id             text,
    business_hours          boolean NOT NULL,
    target_minutes          integer NOT NULL,
    started_at              timestamptz NOT NULL,
    breach_at               timestamptz,
    achieved_at             timestamptz,
    stopped_at              timestamptz,
    elapsed_seconds_done    bigint,
    PRIMARY KEY (ticket_id, target_id, instance_no)
);
CREATE INDEX ticket_sla_results_running ON ticket_sla_results (breach_at)
    WHERE achieved_at IS NULL AND stopped_at IS NULL;
COMMENT ON TABLE ticket_sla_results IS 'Derived per ticket on write (and by refresh_sla() after a calendar or target change): one row per ticket and applicable target (per customer wait for next_reply). Read it through ticket_sla, which compares running clocks with now().';
COMMENT ON COLUMN ticket_sla_results.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_sla_results.target_id IS 'sla_targets.target_id.';
COMMENT ON COLUMN ticket_sla_results.instance_no IS '1; for next_reply the number of the customer wait (1, 2, ...).';
COMMENT ON COLUMN ticket_sla_results.metric IS 'The target''s metric.';
COMMENT ON COLUMN ticket_sla_results.calendar_id IS 'Calendar of the business time; NULL for a calendar-time target.';
COMMENT ON COLUMN ticket_sla_results.business_hours IS 'The target counts business time.';
COMMENT ON COLUMN ticket_sla_results.target_minutes IS 'MINUTES allowed.';
COMMENT ON COLUMN ticket_sla_results.started_at IS 'When the clock started.';
COMMENT ON COLUMN ticket_sla_results.breach_at IS 'When it is due.';
COMMENT ON COLUMN ticket_sla_results.achieved_at IS 'When the metric was achieved.';
COMMENT ON COLUMN ticket_sla_results.stopped_at IS 'When the clock stopped without the metric being achieved (closed without a reply, deleted).';
COMMENT ON COLUMN ticket_sla_results.elapsed_seconds_done IS 'SECONDS (business or calendar time) from start to achieved_at or stopped_at; NULL while running.';

-- The SLA results and business times of the given tickets, from their current content.
CREATE FUNCTION refresh_ticket_sla(ids text[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO ticket_business_times AS b (ticket_id, calendar_id, first_reply_business_seconds,
                                            first_resolution_business_seconds,
                                            last_resolution_business_seconds)
    SELECT t.ticket_id, d.cal,
           business_seconds(t.created_at, t.agent_first_response_time, d.cal),
           business_seconds(t.created_at, h.first_closed_at, d.cal),
           business_seconds(t.created_at, t.closed_at, d.cal)
      FROM tickets t
      CROSS JOIN (SELECT business_calendar_or_default(NULL) AS cal) d
      LEFT JOIN ticket_history_summary h ON h.ticket_id = t.ticket_id
     WHERE t.ticket_id = ANY (ids)
    ON CONFLICT (ticket_id) DO UPDATE SET
        calendar_id = EXCLUDED.calendar_id,
        first_reply_business_seconds = EXCLUDED.first_reply_business_seconds,
        first_resolution_business_seconds = EXCLUDED.first_resolution_business_seconds,
        last_resolution_business_seconds = EXCLUDED.last_resolution_business_seconds;

    DELETE FROM ticket_sla_results WHERE ticket_id = ANY (ids);
    INSERT INTO ticket_sla_results (ticket_id, target_id, instance_no, metric, calendar_id,
                                    business_hours, target_minutes, started_at, breach_at,
                                    achieved_at, stopped_at, elapsed_seconds_done)
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
    ), clocks AS (
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
           CASE WHEN c.business_hours THEN business_time_add(c.started_at, c.target_minutes * 60.0, c.cal)
                ELSE c.started_at + make_interval(mins => c.target_minutes) END,
           c.achieved_at,
           CASE WHEN c.achieved_at IS NULL THEN e.end_at END,
           CASE WHEN c.business_hours THEN business_seconds(c.started_at, e.end_at, c.cal)
                ELSE floor(EXTRACT(EPOCH FROM e.end_at - c.started_at))::bigint END
      FROM clocks c
      -- Where the clock ended (never before it started); NULL while it runs. GREATEST would
      -- skip a NULL, hence the CASE.
      CROSS JOIN LATERAL (
          SELECT CASE WHEN COALESCE(c.achieved_at, c.stop_at) IS NOT NULL
                      THEN GREATEST(COALESCE(c.achieved_at, c.stop_at), c.started_at) END AS end_at) e;
$$;
COMMENT ON FUNCTION refresh_ticket_sla(text[]) IS 'Recomputes ticket_sla_results and ticket_business_times of the given tickets. Called by helpdesk-sync in the ticket''s write transaction (and for its messages).';

-- Recompute every ticket when a calendar or target changed since the last full recompute.
CREATE FUNCTION refresh_sla(force boolean DEFAULT false) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM 1 FROM sla_refresh_state WHERE stale_since IS NOT NULL OR force FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    PERFORM refresh_ticket_sla(ARRAY(SELECT ticket_id FROM tickets));
    SELECT count(*) INTO n FROM tickets;
    UPDATE sla_refresh_state SET stale_since = NULL, refreshed_at = now();
    RETURN n;
END $$;
COMMENT ON FUNCTION refresh_sla(boolean) IS 'Applies changed calendars and targets to every ticket (ticket_sla, business-time columns) when something changed since the last time (or always with force => true); returns the tickets recomputed. The daemon calls it after every sync cycle and after seeding; call it by hand after editing calendars or targets to see the results at once.';

-- Every change of a calendar, its hours or holidays rebuilds that calendar's periods; every
-- change of a calendar or target marks the results stale. Statement triggers with transition
-- tables (one per event: PostgreSQL allows them on single-event triggers only), so a statement
-- that changes nothing does nothing.
CREATE FUNCTION business_calendars_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids text[];
BEGIN
    -- Every one of these tables has calendar_id (NULL in a target: the default calendar).
    IF TG_OP = 'INSERT' THEN
        ids := ARRAY(SELECT calendar_id FROM new_rows);
    ELSIF TG_OP = 'DELETE' THEN
        ids := ARRAY(SELECT calendar_id FROM old_rows);
    ELSE
        ids := ARRAY(SELECT calendar_id FROM new_rows UNION ALL SELECT calendar_id FROM old_rows);
    END IF;
    IF cardinality(ids) = 0 THEN
        RETURN NULL;  -- the statement changed no row
    END IF;
    IF TG_TABLE_NAME <> 'sla_targets' THEN
        PERFORM rebuild_business_calendar_periods(ARRAY(SELECT DISTINCT unnest(ids)));
    END IF;
    UPDATE sla_refresh_state SET stale_since = COALESCE(stale_since, now());
    RETURN NULL;
END $$;
COMMENT ON FUNCTION business_calendars_changed() IS 'Trigger: rebuilds business_calendar_periods of the calendars a statement changed and marks the SLA results stale (sla_refresh_state).';

DO $$
DECLARE
    tab text;
BEGIN
    FOREACH tab IN ARRAY ARRAY['business_calendars', 'business_hours', 'business_holidays', 'sla_targets'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION business_calendars_changed()',
                       tab || '_inserted', tab);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING NEW TABLE AS new_rows
                        OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION business_calendars_changed()',
                       tab || '_updated', tab);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION business_calendars_changed()',
                       tab || '_deleted', tab);
    END LOOP;
END $$;

-- What analysts read: the clocks, running ones compared with now().
CREATE VIEW ticket_sla AS
SELECT
    r.ticket_id,
    r.target_id,
    r.instance_no,
    r.metric,
    r.target_minutes,
    r.business_hours,
    r.calendar_id,
    r.started_at,
    r.breach_at,
    r.achieved_at,
    r.stopped_at,
    COALESCE(r.elapsed_seconds_done,
             CASE WHEN r.business_hours THEN business_seconds(r.started_at, GREATEST(now(), r.started_at), r.calendar_id)
                  ELSE floor(EXTRACT(EPOCH FROM GREATEST(now(), r.started_at) - r.started_at))::bigint END)
        AS elapsed_seconds,
    r.breach_at < COALESCE(r.achieved_at, r.stopped_at, now()) AS is_breached,
    r.achieved_at IS NULL AND r.stopped_at IS NULL AS is_active,
    CASE WHEN r.achieved_at IS NULL AND r.stopped_at IS NULL
         THEN floor(EXTRACT(EPOCH FROM r.breach_at - now()))::bigint END AS seconds_to_breach,
    t.channel,
    t.ticket_type
FROM ticket_sla_results r
JOIN tickets t ON t.ticket_id = r.ticket_id AND t.deleted_at IS NULL;
COMMENT ON VIEW ticket_sla IS 'One row per ticket and applicable SLA target (for next_reply one per customer wait): when the clock started, when it is due (breach_at), when the metric was achieved. Running clocks are compared with now(): an open ticket past due is breached now. Deleted tickets are left out.';
COMMENT ON COLUMN ticket_sla.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_sla.target_id IS 'sla_targets.target_id.';
COMMENT ON COLUMN ticket_sla.instance_no IS '1; for next_reply the number of the customer wait.';
COMMENT ON COLUMN ticket_sla.metric IS 'first_reply, next_reply, first_resolution or full_resolution.';
COMMENT ON COLUMN ticket_sla.target_minutes IS 'MINUTES allowed (business minutes when business_hours).';
COMMENT ON COLUMN ticket_sla.business_hours IS 'The target counts business time of calendar_id.';
COMMENT ON COLUMN ticket_sla.calendar_id IS 'Calendar of the business time; NULL for a calendar-time target.';
COMMENT ON COLUMN ticket_sla.started_at IS 'Start of the clock: the ticket''s creation (next_reply: the customer''s message).';
COMMENT ON COLUMN ticket_sla.breach_at IS 'Due time: started_at plus the target, in business time when business_hours.';
COMMENT ON COLUMN ticket_sla.achieved_at IS 'When the metric was achieved (first agent reply, first close, last close while closed, the agent''s answer); NULL while not.';
COMMENT ON COLUMN ticket_sla.stopped_at IS 'When the clock stopped without the metric: a ticket closed without an agent reply (first_reply, next_reply) or deleted.';
COMMENT ON COLUMN ticket_sla.elapsed_seconds IS 'SECONDS (business time when business_hours) from started_at to achieved_at, stopped_at, or now while running.';
COMMENT ON COLUMN ticket_sla.is_breached IS 'Due before it was achieved or stopped; for a running clock, due before now.';
COMMENT ON COLUMN ticket_sla.is_active IS 'The clock is running (neither achieved nor stopped): for at-risk dashboards.';
COMMENT ON COLUMN ticket_sla.seconds_to_breach IS 'SECONDS (wall-clock) from now to breach_at of a running clock; negative when past due; NULL when not running.';
COMMENT ON COLUMN ticket_sla.channel IS 'The ticket''s channel code (for grouping).';
COMMENT ON COLUMN ticket_sla.ticket_type IS 'The ticket''s type code (for grouping).';

-- ticket_facts: the analytics v2 definition verbatim, the business-time columns appended.
CREATE OR REPLACE VIEW ticket_facts_all AS
SELECT
    t.ticket_id,
    t.helpdesk_id,
    t.status,
    COALESCE(sc.label_en_us, 'unknown (' || t.status || ')') AS status_label,
    c.is_closed,
    t.ticket_type,
    COALESCE(tc.label_en_us, 'unknown (' || t.ticket_type || ')') AS ticket_type_label,
    t.channel,
    COALESCE(cc.label_en_us, 'other (' || t.channel || ')') AS channel_label,
    t.solve,
    COALESCE(so.is_solved, false) AS is_solved,
    t.score,
    CASE WHEN t.score = 0 THEN NULL
         ELSE COALESCE(sco.label_en_us, 'unknown (' || t.score || ')') END AS score_label,
    t.created_at,
    (t.created_at AT TIME ZONE rs.timezone)::date AS created_date,
    CASE WHEN c.is_closed THEN t.closed_at END AS closed_at,
    CASE WHEN c.is_closed THEN (t.closed_at AT TIME ZONE rs.timezone)::date END AS closed_date,
    t.updated_at,
    t.agent_entry_time,
    t.agent_first_response_time,
    t.agent_last_response_time,
    floor(EXTRACT(EPOCH FROM t.agent_first_response_time - t.agent_entry_time))::bigint AS first_response_seconds,
    CASE WHEN c.is_closed THEN floor(EXTRACT(EPOCH FROM t.closed_at - t.created_at))::bigint END AS resolution_seconds,
    CASE WHEN c.is_closed THEN floor(EXTRACT(EPOCH FROM t.closed_at - t.agent_entry_time))::bigint END AS agent_resolution_seconds_from_timestamps,
    floor(EXTRACT(EPOCH FROM t.agent_entry_time - t.created_at))::bigint AS bot_service_seconds_from_timestamps,
    EXTRACT(EPOCH FROM t.agent_last_response_time - t.agent_entry_time) / 60.0 AS agent_service_minutes_from_timestamps,
    t.agent_first_response_duration_seconds AS api_first_response_seconds,
    CASE WHEN c.is_closed THEN t.agent_resolution_time_seconds END AS agent_resolution_seconds,
    CASE WHEN c.is_closed THEN t.actual_processing_time_seconds END AS actual_processing_seconds,
    t.bot_service_duration_seconds AS bot_service_seconds,
    t.agent_service_duration_minutes AS agent_service_minutes,
    t.guest_id,
    g.name AS guest_name,
    t.agent_owner_id,
    o.name AS agent_owner_name,
    t.closed_by_id,
    t.dissatisfaction_reason_en_us,
    t.dissatisfaction_reason_zh_cn,
    t.fetched_at,
    t.deleted_at,
    -- New in v2.
    floor(EXTRACT(EPOCH FROM t.agent_first_response_time - t.created_at))::bigint AS first_reply_seconds,
    CASE WHEN h.history_complete THEN h.queued_seconds_done + COALESCE(floor(EXTRACT(EPOCH FROM
         COALESCE(t.deleted_at, now()) - h.queued_since))::bigint, 0) END AS queue_wait_seconds,
    h.first_closed_at,
    floor(EXTRACT(EPOCH FROM h.first_closed_at - t.created_at))::bigint AS first_resolution_seconds,
    COALESCE(h.reopen_count, 0)::bigint AS reopen_count,
    CASE WHEN NOT c.is_closed AND t.deleted_at IS NULL
         THEN floor(EXTRACT(EPOCH FROM now() - t.created_at))::bigint END AS unsolved_age_seconds,
    COALESCE(t.score <> 0, false) AS is_rated,
    t.agent_entry_time IS NULL AND NOT EXISTS (
        SELECT 1 FROM ticket_agents a WHERE a.ticket_id = t.ticket_id) AS is_bot_only,
    cb.name AS closed_by_name,
    COALESCE(so.label_en_us, 'unknown (' || t.solve || ')') AS solve_label,
    COALESCE(sc.label_zh_cn, '未知 (' || t.status || ')') AS status_label_zh_cn,
    COALESCE(tc.label_zh_cn, '未知 (' || t.ticket_type || ')') AS ticket_type_label_zh_cn,
    COALESCE(cc.label_zh_cn, '其他 (' || t.channel || ')') AS channel_label_zh_cn,
    CASE WHEN t.score = 0 THEN NULL
         ELSE COALESCE(sco.label_zh_cn, '未知 (' || t.score || ')') END AS score_label_zh_cn,
    COALESCE(so.label_zh_cn, '未知 (' || t.solve || ')') AS solve_label_zh_cn,
    t.dissatisfaction_reason_ja_jp,
    CASE WHEN c.is_closed THEN t.agent_resolution_time_seconds END AS api_agent_resolution_seconds,
    CASE WHEN c.is_closed THEN t.actual_processing_time_seconds END AS api_actual_processing_seconds,
    t.bot_service_duration_seconds AS api_bot_service_seconds,
    t.agent_service_duration_minutes AS api_agent_service_minutes,
    COALESCE(sc.sort_order, 100 + t.status) AS status_sort_order,
    COALESCE(h.history_complete, false) AS history_complete,
    -- New with business hours.
    bt.first_reply_business_seconds,
    bt.first_resolution_business_seconds,
    CASE WHEN c.is_closed THEN bt.last_resolution_business_seconds END AS resolution_business_seconds,
    bt.calendar_id AS business_calendar_id
FROM tickets t
CROSS JOIN report_settings rs
LEFT JOIN ticket_status_codes sc ON sc.code = t.status
CROSS JOIN LATERAL (SELECT COALESCE(sc.is_closed, t.status >= 50) AS is_closed) c
LEFT JOIN ticket_type_codes tc ON tc.code = t.ticket_type
LEFT JOIN ticket_channel_codes cc ON cc.code = t.channel
LEFT JOIN solve_codes so ON so.code = t.solve
LEFT JOIN score_codes sco ON sco.code = t.score
LEFT JOIN helpdesk_users g ON g.user_id = t.guest_id
LEFT JOIN helpdesk_users o ON o.user_id = t.agent_owner_id
LEFT JOIN helpdesk_users cb ON cb.user_id = t.closed_by_id
LEFT JOIN ticket_history_summary h ON h.ticket_id = t.ticket_id
LEFT JOIN ticket_business_times bt ON bt.ticket_id = t.ticket_id;

CREATE OR REPLACE VIEW ticket_facts AS
SELECT * FROM ticket_facts_all WHERE deleted_at IS NULL;

COMMENT ON COLUMN ticket_facts_all.first_reply_business_seconds IS 'SECONDS of business time (default calendar, business_calendar_id) from creation to the first agent reply: first_reply_seconds in business hours.';
COMMENT ON COLUMN ticket_facts_all.first_resolution_business_seconds IS 'SECONDS of business time (default calendar) from creation to the first close: first_resolution_seconds in business hours.';
COMMENT ON COLUMN ticket_facts_all.resolution_business_seconds IS 'SECONDS of business time (default calendar) from creation to the last close: resolution_seconds in business hours. NULL while open, reopened tickets included.';
COMMENT ON COLUMN ticket_facts_all.business_calendar_id IS 'The calendar of the business-time columns (the default calendar when they were computed); NULL (and the business columns NULL) when there is no default calendar.';
DO $$
DECLARE
    col record;
BEGIN
    FOR col IN
        SELECT attname, col_description('ticket_facts_all'::regclass, attnum) AS description
        FROM pg_attribute WHERE attrelid = 'ticket_facts_all'::regclass AND attnum > 0
    LOOP
        EXECUTE format('COMMENT ON COLUMN ticket_facts.%I IS %L', col.attname, col.description);
    END LOOP;
END $$;

SELECT refresh_ticket_sla(ARRAY(SELECT ticket_id FROM tickets));
