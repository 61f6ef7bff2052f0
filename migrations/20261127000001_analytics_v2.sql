-- Analytics v2: honest status history (closes timed by closed_at, what happened before the
-- first observation modelled, deletion stops the clock), stays materialized per ticket on write,
-- closed-only columns NULL while open, first reply / first resolution / reopens / queue wait,
-- a daily backlog table, the custom field catalog, role and note views, sort orders, zh labels.
--
-- Views are replaced with CREATE OR REPLACE: every existing column keeps its name, type and
-- position (dashboards and users' own views keep working); new columns come after them.

-- Epoch text as the API sends it (milliseconds; below 10^11 seconds) → timestamptz; NULL for
-- 0, -1, empty or non-numeric text. The same rule as the Rust normalizer.
CREATE FUNCTION helpdesk_epoch(value text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN value IS NULL OR value !~ '^\s*[0-9]{1,15}(\.0*)?\s*$' THEN NULL
        WHEN value::numeric <= 0 THEN NULL
        WHEN value::numeric < 100000000000 THEN to_timestamp(value::numeric::float8)
        ELSE to_timestamp(value::numeric::float8 / 1000)
    END
$$;
COMMENT ON FUNCTION helpdesk_epoch(text) IS 'API epoch text (ms; below 10^11 read as seconds) to timestamptz; NULL for 0, -1 and non-numbers.';

-- Statuses sort in the order a ticket moves through them.
ALTER TABLE ticket_status_codes ADD COLUMN sort_order smallint;
UPDATE ticket_status_codes SET sort_order = CASE code
    WHEN 1 THEN 1 WHEN 3 THEN 2 WHEN 2 THEN 3 WHEN 4 THEN 4 WHEN 5 THEN 5
    WHEN 50 THEN 6 WHEN 51 THEN 7 WHEN 52 THEN 8 ELSE 100 + code END;
ALTER TABLE ticket_status_codes ALTER COLUMN sort_order SET NOT NULL;
COMMENT ON COLUMN ticket_status_codes.sort_order IS 'Sort statuses by this: created, queued, processing, pending, waiting for user, then the closed ones. Views give unlisted codes 100 + code.';

-- Where a transition's time comes from, now also the close time and the creation time.
ALTER TABLE ticket_status_history DROP CONSTRAINT ticket_status_history_changed_at_source_check;
ALTER TABLE ticket_status_history ADD CONSTRAINT ticket_status_history_changed_at_source_check
    CHECK (changed_at_source IN ('updated_at', 'observed', 'closed_at', 'created_at'));

-- Existing history, corrected by the new rules:
-- a never-updated ticket (first seen with updated_at = -1) has been in its status since creation;
UPDATE ticket_status_history h
   SET changed_at = t.created_at, changed_at_source = 'created_at'
  FROM tickets t
 WHERE t.ticket_id = h.ticket_id AND h.from_status IS NULL
   AND h.changed_at_source = 'observed' AND t.created_at IS NOT NULL;
-- an entry into a closed status happened at the close time of the version that showed it.
UPDATE ticket_status_history h
   SET changed_at = c.closed_at, changed_at_source = 'closed_at'
  FROM (SELECT DISTINCT ON (v.ticket_id, v.observed_at)
               v.ticket_id, v.observed_at, helpdesk_epoch(v.raw ->> 'closed_at') AS closed_at
          FROM ticket_versions v
         ORDER BY v.ticket_id, v.observed_at, v.version_id DESC) c
 WHERE c.ticket_id = h.ticket_id AND c.observed_at = h.observed_at AND c.closed_at IS NOT NULL
   AND COALESCE((SELECT s.is_closed FROM ticket_status_codes s WHERE s.code = h.to_status),
                h.to_status >= 50);

-- API durations sent as 0 on tickets no agent ever joined mean "no value", like 0 timestamps.
UPDATE tickets t SET
    agent_first_response_duration_seconds = NULLIF(t.agent_first_response_duration_seconds, 0),
    bot_service_duration_seconds = NULLIF(t.bot_service_duration_seconds, 0),
    agent_resolution_time_seconds = NULLIF(t.agent_resolution_time_seconds, 0),
    actual_processing_time_seconds = NULLIF(t.actual_processing_time_seconds, 0),
    agent_service_duration_minutes = NULLIF(t.agent_service_duration_minutes, 0)
 WHERE t.agent_entry_time IS NULL
   AND NOT EXISTS (SELECT 1 FROM ticket_agents a WHERE a.ticket_id = t.ticket_id)
   AND 0 IN (t.agent_first_response_duration_seconds, t.bot_service_duration_seconds,
             t.agent_resolution_time_seconds, t.actual_processing_time_seconds,
             t.agent_service_duration_minutes);

-- Lookups the role view and the reports make.
CREATE INDEX tickets_guest_idx ON tickets (guest_id);
CREATE INDEX tickets_agent_owner_idx ON tickets (agent_owner_id);
CREATE INDEX tickets_closed_by_idx ON tickets (closed_by_id);

-- Bookkeeping of the backlog refresh (one row; see refresh_daily_backlog()).
CREATE TABLE daily_backlog_state (
    only_row       boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    refreshed_at   timestamptz,
    refreshed_day  date,
    timezone       text
);
INSERT INTO daily_backlog_state DEFAULT VALUES;
COMMENT ON TABLE daily_backlog_state IS 'Bookkeeping of the daily_backlog refresh (one row): when the backlog was last refreshed, for which day and time zone.';
COMMENT ON COLUMN daily_backlog_state.only_row IS 'Always true: the table has one row.';
COMMENT ON COLUMN daily_backlog_state.refreshed_at IS 'When daily_backlog was last refreshed.';
COMMENT ON COLUMN daily_backlog_state.refreshed_day IS 'The report day (report_settings.timezone) of the last refresh; its row counts the tickets open at refreshed_at.';
COMMENT ON COLUMN daily_backlog_state.timezone IS 'report_settings.timezone at the last refresh; a change recomputes every day.';

-- From which time on the backlog must be recomputed: a row per write that changed stays
-- (appended, never updated, so concurrent writers never wait on each other).
CREATE TABLE daily_backlog_dirty (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dirty_from timestamptz NOT NULL
);
INSERT INTO daily_backlog_dirty (dirty_from) VALUES ('-infinity');
COMMENT ON TABLE daily_backlog_dirty IS 'Pending backlog work: each row says the days from dirty_from on must be recomputed. refresh_daily_backlog() consumes them.';
COMMENT ON COLUMN daily_backlog_dirty.id IS 'Increasing; a refresh removes the rows it has seen.';
COMMENT ON COLUMN daily_backlog_dirty.dirty_from IS 'The earliest time a change may have touched (the start of the ticket''s stay that changed).';

-- Per ticket, what its stays sum up to (kept with them, so ticket_facts joins one row).
CREATE TABLE ticket_history_summary (
    ticket_id           text PRIMARY KEY REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    history_complete    boolean NOT NULL,
    first_closed_at     timestamptz,
    reopen_count        integer NOT NULL,
    queued_seconds_done bigint NOT NULL,
    queued_since        timestamptz
);
COMMENT ON TABLE ticket_history_summary IS 'Per ticket, from its stays (rebuilt with them): what ticket_facts shows of its history.';
COMMENT ON COLUMN ticket_history_summary.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_history_summary.history_complete IS 'Watched from creation (no unobserved stretch).';
COMMENT ON COLUMN ticket_history_summary.first_closed_at IS 'First entry into a closed status.';
COMMENT ON COLUMN ticket_history_summary.reopen_count IS 'Reopens (see ticket_status_stays.is_reopen).';
COMMENT ON COLUMN ticket_history_summary.queued_seconds_done IS 'SECONDS in finished queued (status 3) stays.';
COMMENT ON COLUMN ticket_history_summary.queued_since IS 'Start of the current queued stay; NULL when not queued now.';

-- A ticket's stays, one row per status it was in (or an unobserved stretch), rebuilt from
-- ticket_status_history in the ticket's own write transaction: the views read them, they never
-- rescan history.
CREATE TABLE ticket_status_stays (
    ticket_id        text NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    stay_no          integer NOT NULL,
    status           smallint,
    is_closed        boolean NOT NULL,
    is_reopen        boolean NOT NULL,
    entered_at       timestamptz NOT NULL,
    left_at          timestamptz,
    entered_via      text NOT NULL
                     CHECK (entered_via IN ('created_at', 'updated_at', 'closed_at', 'observed', 'unobserved')),
    agent_owner_id   text,
    history_complete boolean NOT NULL,
    PRIMARY KEY (ticket_id, stay_no)
);
COMMENT ON TABLE ticket_status_stays IS 'Materialized stays of each ticket (from ticket_status_history, rebuilt when the ticket is written). Read it through ticket_status_spans.';
COMMENT ON COLUMN ticket_status_stays.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_status_stays.stay_no IS 'Order of the stay: 0 is the unobserved stretch before the first observation, 1 the first observed status.';
COMMENT ON COLUMN ticket_status_stays.status IS 'Status code during the stay; NULL when not observed (stay_no 0).';
COMMENT ON COLUMN ticket_status_stays.is_closed IS 'The status is a closed one.';
COMMENT ON COLUMN ticket_status_stays.is_reopen IS 'A reopen: an open status entered from a closed one, or a closed status entered again at a later close time (reopened and closed again between two fetches).';
COMMENT ON COLUMN ticket_status_stays.entered_at IS 'When the ticket entered this status (see entered_via).';
COMMENT ON COLUMN ticket_status_stays.left_at IS 'When it left (the next stay''s entered_at); NULL while still in it.';
COMMENT ON COLUMN ticket_status_stays.entered_via IS 'Source of entered_at: created_at (in this status since creation), updated_at (the ticket''s update time), closed_at (its close time), observed (when helpdesk-sync saw it), unobserved (creation, for the stretch before the first observation).';
COMMENT ON COLUMN ticket_status_stays.agent_owner_id IS 'Agent owner when the ticket entered this status (helpdesk_users.user_id); NULL when unobserved.';
COMMENT ON COLUMN ticket_status_stays.history_complete IS 'The ticket was watched from creation: no unobserved stretch.';

CREATE FUNCTION rebuild_ticket_status_stays(ids text[]) RETURNS void
LANGUAGE sql AS $$
    -- The backlog changes from the stay that was current (a ticket changes after it), or from
    -- the creation of a ticket seen for the first time.
    INSERT INTO daily_backlog_dirty (dirty_from)
    SELECT min(COALESCE(cur.entered_at, t.created_at, '-infinity'))
      FROM tickets t
      LEFT JOIN ticket_status_stays cur ON cur.ticket_id = t.ticket_id AND cur.left_at IS NULL
     WHERE t.ticket_id = ANY (ids)
    HAVING count(*) > 0;
    DELETE FROM ticket_status_stays WHERE ticket_id = ANY (ids);
    INSERT INTO ticket_status_stays (ticket_id, stay_no, status, is_closed, is_reopen, entered_at,
                                     left_at, entered_via, agent_owner_id, history_complete)
    WITH observed AS (
        -- A stay starts at the latest time seen so far (times come from different sources and
        -- must never make a stay negative), and never before the ticket's creation.
        SELECT h.ticket_id, h.transition_id, h.to_status, h.changed_at_source, h.observed_at,
               t.created_at,
               GREATEST(max(h.changed_at) OVER (PARTITION BY h.ticket_id ORDER BY h.transition_id
                                                 ROWS UNBOUNDED PRECEDING), t.created_at) AS entered_at,
               COALESCE(sc.is_closed, h.to_status >= 50, false) AS is_closed
          FROM ticket_status_history h
          JOIN tickets t USING (ticket_id)
          LEFT JOIN ticket_status_codes sc ON sc.code = h.to_status
         WHERE h.ticket_id = ANY (ids)
    ), stays AS (
        SELECT o.*,
               lead(o.entered_at) OVER w AS left_at,
               lag(o.is_closed) OVER w AS was_closed,
               lag(o.entered_at) OVER w AS prev_at,
               row_number() OVER w AS n,
               first_value(o.entered_at) OVER w AS first_at
          FROM observed o
        WINDOW w AS (PARTITION BY o.ticket_id ORDER BY o.transition_id)
    )
    SELECT s.ticket_id, s.n, s.to_status, s.is_closed,
           -- A reopen: closed to open, or closed again at a later close time (reopened unseen).
           COALESCE(s.was_closed AND (NOT s.is_closed OR s.entered_at > s.prev_at), false),
           s.entered_at, s.left_at, s.changed_at_source, v.agent_owner_id,
           s.created_at IS NOT NULL AND s.first_at <= s.created_at
      FROM stays s
      LEFT JOIN LATERAL (
          SELECT v.agent_owner_id FROM ticket_versions v
           WHERE v.ticket_id = s.ticket_id AND v.observed_at <= s.observed_at
           ORDER BY v.version_id DESC LIMIT 1) v ON true
    UNION ALL
    SELECT s.ticket_id, 0, NULL, false, false, s.created_at, s.first_at, 'unobserved', NULL, false
      FROM stays s
     WHERE s.n = 1 AND s.created_at IS NOT NULL AND s.first_at > s.created_at;
    INSERT INTO ticket_history_summary AS h (ticket_id, history_complete, first_closed_at,
                                             reopen_count, queued_seconds_done, queued_since)
    SELECT s.ticket_id, bool_and(s.history_complete),
           min(s.entered_at) FILTER (WHERE s.is_closed),
           count(*) FILTER (WHERE s.is_reopen),
           COALESCE(floor(sum(EXTRACT(EPOCH FROM s.left_at - s.entered_at))
                          FILTER (WHERE s.status = 3 AND s.left_at IS NOT NULL)), 0),
           max(s.entered_at) FILTER (WHERE s.status = 3 AND s.left_at IS NULL)
      FROM ticket_status_stays s
     WHERE s.ticket_id = ANY (ids)
     GROUP BY s.ticket_id
    ON CONFLICT (ticket_id) DO UPDATE SET
        history_complete = EXCLUDED.history_complete, first_closed_at = EXCLUDED.first_closed_at,
        reopen_count = EXCLUDED.reopen_count, queued_seconds_done = EXCLUDED.queued_seconds_done,
        queued_since = EXCLUDED.queued_since;
$$;
COMMENT ON FUNCTION rebuild_ticket_status_stays(text[]) IS 'Rebuilds ticket_status_stays and ticket_history_summary of the given tickets from ticket_status_history, and marks the days of daily_backlog they touch for refresh. Called by helpdesk-sync in the ticket''s write transaction.';

SELECT rebuild_ticket_status_stays(ARRAY(SELECT ticket_id FROM tickets));

-- Stays with their length, for analysts. The current stay counts up to now; a deleted
-- ticket's clock stops at its deletion.
CREATE VIEW ticket_status_spans_all AS
SELECT
    s.ticket_id,
    s.stay_no,
    s.status,
    CASE WHEN s.entered_via = 'unobserved' THEN 'not observed'
         ELSE COALESCE(sc.label_en_us, 'unknown (' || s.status || ')') END AS status_label,
    CASE WHEN s.entered_via = 'unobserved' THEN '未观察到'
         ELSE COALESCE(sc.label_zh_cn, '未知 (' || s.status || ')') END AS status_label_zh_cn,
    CASE WHEN s.entered_via = 'unobserved' THEN 0
         ELSE COALESCE(sc.sort_order, 100 + s.status) END AS status_sort_order,
    s.is_closed,
    s.entered_at,
    COALESCE(s.left_at, t.deleted_at) AS left_at,
    floor(EXTRACT(EPOCH FROM COALESCE(s.left_at, t.deleted_at, now()) - s.entered_at))::bigint AS seconds,
    s.left_at IS NULL AND t.deleted_at IS NULL AS is_current,
    s.entered_via <> 'unobserved' AS is_observed,
    s.entered_via,
    s.is_reopen,
    s.agent_owner_id,
    s.history_complete,
    t.deleted_at
FROM ticket_status_stays s
JOIN tickets t USING (ticket_id)
LEFT JOIN ticket_status_codes sc ON sc.code = s.status;

CREATE VIEW ticket_status_spans AS
SELECT * FROM ticket_status_spans_all WHERE deleted_at IS NULL;

COMMENT ON VIEW ticket_status_spans_all IS 'One row per stay of a ticket in a status, deleted tickets included. A ticket''s spans tile [created_at, now) without gaps or overlaps (a deleted ticket: up to its deletion). The stretch before helpdesk-sync first saw a ticket, when nothing tells its status, is one span with status NULL (is_observed false).';
COMMENT ON VIEW ticket_status_spans IS 'ticket_status_spans_all without tickets deleted upstream.';
COMMENT ON COLUMN ticket_status_spans_all.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_status_spans_all.stay_no IS 'Order of the span within the ticket; 0 is the unobserved stretch.';
COMMENT ON COLUMN ticket_status_spans_all.status IS 'Status code; NULL for the unobserved stretch.';
COMMENT ON COLUMN ticket_status_spans_all.status_label IS 'English label; not observed for the unobserved stretch; unknown (N) for an unlisted code.';
COMMENT ON COLUMN ticket_status_spans_all.status_label_zh_cn IS 'Chinese label.';
COMMENT ON COLUMN ticket_status_spans_all.status_sort_order IS 'Sort key of the status (ticket_status_codes.sort_order); 0 for not observed.';
COMMENT ON COLUMN ticket_status_spans_all.is_closed IS 'The status is a closed one.';
COMMENT ON COLUMN ticket_status_spans_all.entered_at IS 'Start of the span (see entered_via).';
COMMENT ON COLUMN ticket_status_spans_all.left_at IS 'End of the span: the next span''s start, or the deletion; NULL while current.';
COMMENT ON COLUMN ticket_status_spans_all.seconds IS 'SECONDS in the span (whole, rounded down); a current span counts up to now.';
COMMENT ON COLUMN ticket_status_spans_all.is_current IS 'The ticket is in this span now.';
COMMENT ON COLUMN ticket_status_spans_all.is_observed IS 'False for the stretch before the first observation, whose status nothing tells.';
COMMENT ON COLUMN ticket_status_spans_all.entered_via IS 'Where entered_at comes from: created_at, updated_at, closed_at, observed (our fetch time) or unobserved (creation).';
COMMENT ON COLUMN ticket_status_spans_all.is_reopen IS 'A reopen: an open status entered from a closed one, or a second close at a later time (reopened and closed again between two fetches).';
COMMENT ON COLUMN ticket_status_spans_all.agent_owner_id IS 'Agent owner when the span began (helpdesk_users.user_id).';
COMMENT ON COLUMN ticket_status_spans_all.history_complete IS 'The ticket was watched from creation (no unobserved span).';
COMMENT ON COLUMN ticket_status_spans_all.deleted_at IS 'When the ticket was found deleted upstream; its last span ends there.';

-- Every ticket, deleted ones included. Existing columns first (unchanged names and types),
-- new ones after them.
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
    COALESCE(h.history_complete, false) AS history_complete
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
LEFT JOIN ticket_history_summary h ON h.ticket_id = t.ticket_id;

CREATE OR REPLACE VIEW ticket_facts AS
SELECT * FROM ticket_facts_all WHERE deleted_at IS NULL;

-- Seconds per ticket and status, from the stays. The clock stops at the final close (that
-- stay counts 0); a stay in a closed status that was reopened counts its length; the
-- unobserved stretch is its own row (status NULL). Deleted tickets are left out.
CREATE OR REPLACE VIEW ticket_time_in_status AS
SELECT
    a.ticket_id,
    a.status,
    CASE WHEN NOT a.is_observed THEN 'not observed'
         ELSE COALESCE(sc.label_en_us, 'unknown (' || a.status || ')') END AS status_label,
    a.seconds,
    a.times_entered,
    a.is_current,
    CASE WHEN NOT a.is_observed THEN '未观察到'
         ELSE COALESCE(sc.label_zh_cn, '未知 (' || a.status || ')') END AS status_label_zh_cn,
    CASE WHEN NOT a.is_observed THEN 0
         ELSE COALESCE(sc.sort_order, 100 + a.status) END AS status_sort_order,
    a.is_observed
FROM (
    -- Straight from the stays (labels joined after the sums): the same spans as
    -- ticket_status_spans, whole seconds per span.
    SELECT s.ticket_id, s.status, s.entered_via <> 'unobserved' AS is_observed,
           sum(CASE WHEN s.is_closed AND s.left_at IS NULL THEN 0
                    ELSE floor(EXTRACT(EPOCH FROM COALESCE(s.left_at, now()) - s.entered_at)) END
              )::bigint AS seconds,
           count(*) AS times_entered,
           bool_or(s.left_at IS NULL AND NOT s.is_closed) AS is_current
      FROM ticket_status_stays s
      JOIN tickets t ON t.ticket_id = s.ticket_id AND t.deleted_at IS NULL
     GROUP BY s.ticket_id, s.status, s.entered_via <> 'unobserved'
) a
LEFT JOIN ticket_status_codes sc ON sc.code = a.status;

-- One row per calendar day (report_settings.timezone) from the first ticket to today, zeros
-- included.
CREATE OR REPLACE VIEW daily_ticket_stats AS
WITH created AS (
    SELECT created_date AS day,
           count(*) AS tickets_created,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY first_response_seconds) AS first_response_seconds_median,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY first_response_seconds) AS first_response_seconds_p90,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY first_reply_seconds) AS first_reply_seconds_median,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY first_reply_seconds) AS first_reply_seconds_p90
    FROM ticket_facts WHERE created_date IS NOT NULL GROUP BY created_date
), closed AS (
    SELECT closed_date AS day,
           count(*) AS tickets_closed,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution_seconds) AS resolution_seconds_median,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY resolution_seconds) AS resolution_seconds_p90,
           count(*) FILTER (WHERE score = 1) AS score_unsatisfied,
           count(*) FILTER (WHERE score = 2) AS score_neutral,
           count(*) FILTER (WHERE score = 3) AS score_satisfied,
           count(*) FILTER (WHERE NOT is_rated) AS score_none
    FROM ticket_facts WHERE closed_date IS NOT NULL GROUP BY closed_date
), days AS (
    SELECT generate_series(
               LEAST((SELECT min(day) FROM created), (SELECT min(day) FROM closed)),
               (now() AT TIME ZONE (SELECT timezone FROM report_settings))::date,
               interval '1 day')::date AS day
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
    c.first_reply_seconds_p90
FROM days d
LEFT JOIN created c ON c.day = d.day
LEFT JOIN closed x ON x.day = d.day;

-- The backlog at the end of every day, kept as a table (refreshed by the sync).
CREATE TABLE daily_backlog (
    day              date NOT NULL,
    status           smallint,
    status_label     text,
    status_sort_order smallint,
    agent_owner_id   text,
    agent_owner_name text,
    channel          smallint,
    channel_label    text,
    open_tickets     integer NOT NULL
);
CREATE INDEX daily_backlog_day_idx ON daily_backlog (day);
COMMENT ON TABLE daily_backlog IS 'Open tickets at the end of each day (report_settings.timezone), by status, agent owner and channel; today counts the tickets open at the last refresh. Every day from the first ticket to today has rows: a day with nothing open has one row with open_tickets = 0 and the other columns NULL. Reconstructed from ticket_status_stays, refreshed by each sync cycle (refresh_daily_backlog()). Deleted tickets count until their deletion.';
COMMENT ON COLUMN daily_backlog.day IS 'Calendar day in report_settings.timezone.';
COMMENT ON COLUMN daily_backlog.status IS 'Status at the end of the day; NULL when the ticket was not observed yet (its status unknown, but open: created and not yet seen closed) or on a day with nothing open.';
COMMENT ON COLUMN daily_backlog.status_label IS 'English label of status; not observed for the stretch before the first observation.';
COMMENT ON COLUMN daily_backlog.status_sort_order IS 'Sort key of the status (ticket_status_codes.sort_order).';
COMMENT ON COLUMN daily_backlog.agent_owner_id IS 'Agent owner when the ticket entered that status (helpdesk_users.user_id).';
COMMENT ON COLUMN daily_backlog.agent_owner_name IS 'Name of the agent owner at refresh time.';
COMMENT ON COLUMN daily_backlog.channel IS 'tickets.channel.';
COMMENT ON COLUMN daily_backlog.channel_label IS 'English label of channel.';
COMMENT ON COLUMN daily_backlog.open_tickets IS 'Tickets open at the end of the day in this group.';

CREATE FUNCTION refresh_daily_backlog() RETURNS integer
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
                                   agent_owner_name, channel, channel_label, open_tickets)
        WITH spans AS (
            -- Each open stay as the past days it counts on: from the day it began to the last
            -- day whose end (midnight) falls before it ended.
            SELECT s.status, s.entered_via = 'unobserved' AS unobserved, s.agent_owner_id,
                   t.channel,
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
            SELECT status, unobserved, agent_owner_id, channel, day, sum(delta) AS delta
              FROM (SELECT status, unobserved, agent_owner_id, channel, counts_from AS day, 1 AS delta
                      FROM spans WHERE counts_from <= counts_until
                    UNION ALL
                    SELECT status, unobserved, agent_owner_id, channel, counts_until + 1, -1
                      FROM spans WHERE counts_from <= counts_until) d
             GROUP BY 1, 2, 3, 4, 5
        ), running AS (
            SELECT status, unobserved, agent_owner_id, channel, day AS starts,
                   lead(day) OVER w AS ends, sum(delta) OVER w AS n
              FROM changes
            WINDOW w AS (PARTITION BY status, unobserved, agent_owner_id, channel ORDER BY day)
        ), counted AS (
            SELECT g.day::date AS day, r.status, r.unobserved, r.agent_owner_id, r.channel,
                   r.n::integer AS n
              FROM running r
              CROSS JOIN LATERAL generate_series(r.starts, COALESCE(r.ends, today) - 1,
                                                 interval '1 day') g(day)
             WHERE r.n > 0 AND r.starts < today
            UNION ALL
            -- Today: the tickets open now.
            SELECT today, s.status, s.entered_via = 'unobserved', s.agent_owner_id, t.channel,
                   count(*)::integer
              FROM ticket_status_stays s
              JOIN tickets t USING (ticket_id)
             WHERE NOT s.is_closed AND s.entered_at <= now()
               AND now() < COALESCE(s.left_at, t.deleted_at, 'infinity')
             GROUP BY 1, 2, 3, 4, 5
        ), days AS (
            SELECT generate_series(from_day, today, interval '1 day')::date AS day
        )
        SELECT d.day, c.status,
               CASE WHEN c.unobserved THEN 'not observed'
                    WHEN c.n IS NOT NULL THEN COALESCE(sc.label_en_us, 'unknown (' || c.status || ')') END,
               CASE WHEN c.unobserved THEN 0
                    WHEN c.n IS NOT NULL THEN COALESCE(sc.sort_order, 100 + c.status) END,
               c.agent_owner_id, u.name, c.channel,
               CASE WHEN c.n IS NOT NULL AND c.channel IS NOT NULL
                    THEN COALESCE(cc.label_en_us, 'other (' || c.channel || ')') END,
               COALESCE(c.n, 0)
          FROM days d
          LEFT JOIN counted c ON c.day = d.day
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
COMMENT ON FUNCTION refresh_daily_backlog() IS 'Recomputes daily_backlog from the first day a change touched (or every day after a time zone change) to today; returns the rows written (0 when nothing was due). Run by helpdesk-sync after each cycle; safe to run by hand.';

-- The custom field catalog (GET /open-apis/helpdesk/v1/ticket_customized_fields).
CREATE TABLE custom_field_catalog (
    field_id                text PRIMARY KEY,
    helpdesk_id             text,
    key_name                text,
    display_name            text,
    field_type              text,
    position                integer,
    description             text,
    visible                 boolean,
    editable                boolean,
    required                boolean,
    dropdown_allow_multiple boolean,
    created_at              timestamptz,
    updated_at              timestamptz,
    created_by_id           text,
    updated_by_id           text,
    raw                     jsonb NOT NULL,
    synced_at               timestamptz NOT NULL,
    removed_at              timestamptz
);
COMMENT ON TABLE custom_field_catalog IS 'The helpdesk''s ticket custom fields (API ticket_customized_fields), synced at most hourly by the daemon. A field gone from the catalog keeps its row with removed_at set.';
COMMENT ON COLUMN custom_field_catalog.field_id IS 'ticket_customized_field_id; ticket_custom_fields.field_id.';
COMMENT ON COLUMN custom_field_catalog.helpdesk_id IS 'The helpdesk.';
COMMENT ON COLUMN custom_field_catalog.key_name IS 'Key name of the field.';
COMMENT ON COLUMN custom_field_catalog.display_name IS 'Label shown in the helpdesk.';
COMMENT ON COLUMN custom_field_catalog.field_type IS 'string, multiline, dropdown, dropdown_nested, ... as the API says.';
COMMENT ON COLUMN custom_field_catalog.position IS 'Display position (the API sends it as text).';
COMMENT ON COLUMN custom_field_catalog.description IS 'Description of the field.';
COMMENT ON COLUMN custom_field_catalog.visible IS 'Shown to users.';
COMMENT ON COLUMN custom_field_catalog.editable IS 'Can be edited.';
COMMENT ON COLUMN custom_field_catalog.required IS 'Must be filled in.';
COMMENT ON COLUMN custom_field_catalog.dropdown_allow_multiple IS 'A dropdown that takes several options.';
COMMENT ON COLUMN custom_field_catalog.created_at IS 'When the field was created (timestamptz; the API sends epoch ms as text).';
COMMENT ON COLUMN custom_field_catalog.updated_at IS 'When the field was last changed.';
COMMENT ON COLUMN custom_field_catalog.created_by_id IS 'Who created it (open_id, when the API says).';
COMMENT ON COLUMN custom_field_catalog.updated_by_id IS 'Who changed it last (open_id, when the API says).';
COMMENT ON COLUMN custom_field_catalog.raw IS 'The catalog item as the API returned it.';
COMMENT ON COLUMN custom_field_catalog.synced_at IS 'When the daemon last saw the field in the catalog.';
COMMENT ON COLUMN custom_field_catalog.removed_at IS 'When the field was first missing from the catalog; NULL while it is there.';

CREATE TABLE custom_field_options (
    field_id     text NOT NULL REFERENCES custom_field_catalog (field_id) ON DELETE CASCADE,
    option_path  text NOT NULL,
    parent_path  text,
    level        smallint NOT NULL,
    position     integer NOT NULL,
    tag          text,
    display_name text,
    PRIMARY KEY (field_id, option_path)
);
CREATE INDEX custom_field_options_label_idx ON custom_field_options (field_id, display_name);
COMMENT ON TABLE custom_field_options IS 'Options of dropdown custom fields, nested up to three levels (dropdown_options.children).';
COMMENT ON COLUMN custom_field_options.field_id IS 'custom_field_catalog.field_id.';
COMMENT ON COLUMN custom_field_options.option_path IS 'Position path from the top, e.g. 2/0 (third option, its first child).';
COMMENT ON COLUMN custom_field_options.parent_path IS 'option_path of the parent option; NULL at the top level.';
COMMENT ON COLUMN custom_field_options.level IS '1 for a top-level option, 2 and 3 for nested ones.';
COMMENT ON COLUMN custom_field_options.position IS 'Order among its siblings, from 0.';
COMMENT ON COLUMN custom_field_options.tag IS 'The option''s tag (its stable value).';
COMMENT ON COLUMN custom_field_options.display_name IS 'The option''s label; a ticket''s dropdown value is this label.';

-- Every ticket's custom field values with the field's and the option's labels.
CREATE VIEW ticket_custom_field_values AS
SELECT
    v.ticket_id,
    v.field_id,
    COALESCE(f.key_name, v.key_name) AS key_name,
    COALESCE(f.display_name, v.display_name) AS field_label,
    f.field_type,
    v.value,
    o.tag AS option_tag,
    o.display_name AS option_label,
    o.option_path,
    o.level AS option_level,
    COALESCE(f.position, v.position) AS position,
    f.field_id IS NOT NULL AND f.removed_at IS NULL AS in_catalog
FROM ticket_custom_fields v
JOIN tickets t ON t.ticket_id = v.ticket_id AND t.deleted_at IS NULL
LEFT JOIN custom_field_catalog f ON f.field_id = v.field_id
LEFT JOIN LATERAL (
    -- The option whose label the value is; the deepest one when labels repeat across levels.
    SELECT o.tag, o.display_name, o.option_path, o.level FROM custom_field_options o
     WHERE o.field_id = v.field_id AND o.display_name = v.value
     ORDER BY o.level DESC, o.option_path LIMIT 1) o ON true;
COMMENT ON VIEW ticket_custom_field_values IS 'Custom field values of every ticket (deleted tickets left out) with the field''s label from the catalog and, for dropdowns, the option the value names.';
COMMENT ON COLUMN ticket_custom_field_values.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_custom_field_values.field_id IS 'Custom field id (custom_field_catalog.field_id).';
COMMENT ON COLUMN ticket_custom_field_values.key_name IS 'Key name (the catalog''s, else the ticket''s).';
COMMENT ON COLUMN ticket_custom_field_values.field_label IS 'Field label (the catalog''s, else the ticket''s display_name).';
COMMENT ON COLUMN ticket_custom_field_values.field_type IS 'Field type from the catalog; NULL when the catalog does not list the field.';
COMMENT ON COLUMN ticket_custom_field_values.value IS 'The value as the ticket shows it.';
COMMENT ON COLUMN ticket_custom_field_values.option_tag IS 'For a dropdown: the tag of the option whose label is the value.';
COMMENT ON COLUMN ticket_custom_field_values.option_label IS 'For a dropdown: that option''s label.';
COMMENT ON COLUMN ticket_custom_field_values.option_path IS 'For a dropdown: that option''s position path.';
COMMENT ON COLUMN ticket_custom_field_values.option_level IS 'For a dropdown: 1 to 3, the nesting level of that option.';
COMMENT ON COLUMN ticket_custom_field_values.position IS 'Display position of the field.';
COMMENT ON COLUMN ticket_custom_field_values.in_catalog IS 'The field is in the current catalog.';

-- Internal notes with names that say what their ids are (the author id is not an open_id).
CREATE VIEW ticket_notes AS
SELECT c.ticket_id, c.ordinal, c.comment_id AS note_id, c.content, c.created_at,
       c.user_id AS author_id, c.user_name AS author_name, c.user_avatar_url AS author_avatar_url
FROM ticket_comments c;
COMMENT ON VIEW ticket_notes IS 'ticket_comments with explicit names: the author id is a numeric Feishu id, not an open_id, so it is not called user_id here.';
COMMENT ON COLUMN ticket_notes.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_notes.ordinal IS 'Order in the API response, from 0.';
COMMENT ON COLUMN ticket_notes.note_id IS 'Note id (exact bigint).';
COMMENT ON COLUMN ticket_notes.content IS 'Note text.';
COMMENT ON COLUMN ticket_notes.created_at IS 'When the note was written.';
COMMENT ON COLUMN ticket_notes.author_id IS 'Numeric id of the author (bigint; not an open_id, does not join helpdesk_users).';
COMMENT ON COLUMN ticket_notes.author_name IS 'Name of the author.';
COMMENT ON COLUMN ticket_notes.author_avatar_url IS 'Avatar URL of the author.';

-- People with their roles, so agents and guests can be told apart.
CREATE VIEW helpdesk_people AS
SELECT
    u.user_id, u.name, u.email, u.avatar_url, u.department, u.city, u.country,
    r.is_agent, r.is_guest,
    CASE WHEN r.is_agent THEN 'agent' WHEN r.is_guest THEN 'guest' ELSE 'other' END AS role,
    u.first_seen_at, u.last_seen_at
FROM helpdesk_users u
CROSS JOIN LATERAL (
    SELECT EXISTS (SELECT 1 FROM ticket_agents a WHERE a.user_id = u.user_id)
               OR EXISTS (SELECT 1 FROM ticket_collaborators c WHERE c.user_id = u.user_id)
               OR EXISTS (SELECT 1 FROM tickets t WHERE t.agent_owner_id = u.user_id) AS is_agent,
           EXISTS (SELECT 1 FROM tickets t WHERE t.guest_id = u.user_id) AS is_guest) r;
COMMENT ON VIEW helpdesk_people IS 'helpdesk_users with roles: an agent is anyone seen as an agent, collaborator or agent owner of a ticket; a guest anyone who opened one. A person can be both (role says agent then).';
COMMENT ON COLUMN helpdesk_people.user_id IS 'Feishu open_id (helpdesk_users.user_id).';
COMMENT ON COLUMN helpdesk_people.name IS 'Display name, latest seen.';
COMMENT ON COLUMN helpdesk_people.email IS 'Email, latest seen.';
COMMENT ON COLUMN helpdesk_people.avatar_url IS 'Avatar URL, latest seen.';
COMMENT ON COLUMN helpdesk_people.department IS 'Department, latest seen.';
COMMENT ON COLUMN helpdesk_people.city IS 'City, latest seen.';
COMMENT ON COLUMN helpdesk_people.country IS 'Country code, latest seen.';
COMMENT ON COLUMN helpdesk_people.is_agent IS 'Seen as agent, collaborator or agent owner on some ticket.';
COMMENT ON COLUMN helpdesk_people.is_guest IS 'Opened some ticket.';
COMMENT ON COLUMN helpdesk_people.role IS 'agent, guest or other (only seen closing tickets).';
COMMENT ON COLUMN helpdesk_people.first_seen_at IS 'When helpdesk-sync first stored this person.';
COMMENT ON COLUMN helpdesk_people.last_seen_at IS 'When a changed ticket naming this person was last stored.';

-- Comments that said "epoch milliseconds" on timestamptz columns.
COMMENT ON COLUMN tickets.created_at IS 'Ticket creation time (timestamptz; the API sends epoch milliseconds).';
COMMENT ON COLUMN tickets.agent_entry_time IS 'When the first agent joined (timestamptz; the API sends epoch milliseconds).';
COMMENT ON COLUMN tickets.agent_first_response_time IS 'First agent reply (timestamptz; the API sends epoch milliseconds).';
COMMENT ON COLUMN tickets.agent_last_response_time IS 'Last agent reply (timestamptz; the API sends epoch milliseconds).';
COMMENT ON COLUMN ticket_comments.created_at IS 'When the note was written (timestamptz; the API sends epoch milliseconds).';
COMMENT ON COLUMN ticket_comments.user_id IS 'Author id: a numeric Feishu id (exact bigint), NOT an open_id; it does not join helpdesk_users. ticket_notes.author_id is the same value.';
COMMENT ON COLUMN tickets.agent_first_response_duration_seconds IS 'API agent_first_response_duration: SECONDS from agent entry to the first agent reply. NULL when no agent took part (the API sends 0 then).';
COMMENT ON COLUMN tickets.bot_service_duration_seconds IS 'API bot_service_duration: SECONDS from ticket creation to agent entry. NULL when no agent took part (the API sends 0 then).';
COMMENT ON COLUMN tickets.agent_resolution_time_seconds IS 'API agent_resolution_time: SECONDS from the first agent joining to the ticket closing. NULL when no agent took part.';
COMMENT ON COLUMN tickets.actual_processing_time_seconds IS 'API actual_processing_time: SECONDS, resolution time minus time spent pending. NULL when no agent took part.';
COMMENT ON COLUMN tickets.agent_service_duration_minutes IS 'API agent_service_duration: MINUTES (float) from agent entry to the last agent reply. NULL when no agent took part.';
COMMENT ON COLUMN tickets.score IS 'Satisfaction: 1 unsatisfied, 2 neutral, 3 satisfied; 0 (sent by the API, not a defined code) and NULL mean not rated.';
COMMENT ON COLUMN tickets.closed_at IS 'Ticket close time as the API sends it; NULL when it sends 0 or nothing. A reopened ticket keeps its earlier close time here: ticket_facts shows closed_at only while the ticket is closed.';
COMMENT ON TABLE ticket_status_history IS 'Observed status transitions. The first row of a ticket (from_status NULL) is its status when first seen, dated by what the API tells (creation for a never-updated ticket, closed_at for a closed one, else updated_at). A status held only between two fetches is never seen.';
COMMENT ON COLUMN ticket_status_history.changed_at IS 'When the ticket entered to_status, by the first rule that applies: closed_at for a closed status, created_at for a never-updated ticket first seen, the ticket''s updated_at, else when helpdesk-sync saw it (see changed_at_source).';
COMMENT ON COLUMN ticket_status_history.changed_at_source IS 'closed_at, created_at, updated_at (the ticket''s own times) or observed (helpdesk-sync''s fetch time, polling resolution).';

-- View comments: the changed meanings, and every new column.
COMMENT ON VIEW ticket_facts_all IS 'One row per ticket, deleted ones included, with code labels and durations. Computed durations come from timestamps; api_* columns are the API''s own fields. They can disagree: both are shown, never one picked. Closed-only columns (closed_at, closed_date, resolution_seconds, the agent resolution and processing durations) are NULL while the ticket is open, reopened ones included.';
COMMENT ON VIEW ticket_time_in_status IS 'Seconds per ticket and status, from the stays (ticket_status_spans). The current status of an open ticket counts up to now (is_current); the final close counts 0; a closed status that was reopened counts its length; the stretch before the first observation is a row with status NULL. For a closed ticket every row adds up to resolution_seconds. Deleted tickets are left out.';
COMMENT ON VIEW daily_ticket_stats IS 'Per calendar day (report_settings.timezone), every day from the first ticket to today (zeros included): tickets created and closed, first-response and first-reply median/p90 of tickets created that day, resolution median/p90 and satisfaction of tickets closed that day. Deleted tickets excluded.';
COMMENT ON COLUMN ticket_facts_all.closed_at IS 'Close time while the ticket is closed; NULL while open (a reopened ticket''s earlier close is in first_closed_at / tickets.closed_at).';
COMMENT ON COLUMN ticket_facts_all.closed_date IS 'Calendar day of closed_at in report_settings.timezone; NULL while open.';
COMMENT ON COLUMN ticket_facts_all.score IS 'Satisfaction code as the API sends it (0 = not rated).';
COMMENT ON COLUMN ticket_facts_all.score_label IS 'Satisfaction label; NULL when not rated (score NULL or 0); unknown (N) for an unlisted code.';
COMMENT ON COLUMN ticket_facts_all.first_response_seconds IS 'SECONDS (whole, rounded down) from agent entry to the first agent reply (agent_first_response_time - agent_entry_time): the API''s definition, from timestamps. Compare api_first_response_seconds; first_reply_seconds counts from creation.';
COMMENT ON COLUMN ticket_facts_all.resolution_seconds IS 'SECONDS (whole, rounded down), closed_at - created_at: the full resolution (last close). NULL while open, reopened tickets included.';
COMMENT ON COLUMN ticket_facts_all.agent_resolution_seconds_from_timestamps IS 'SECONDS, closed_at - agent_entry_time. NULL while open. Compare api_agent_resolution_seconds.';
COMMENT ON COLUMN ticket_facts_all.api_first_response_seconds IS 'SECONDS, the API''s agent_first_response_duration (agent entry to first agent reply); NULL when no agent took part.';
COMMENT ON COLUMN ticket_facts_all.agent_resolution_seconds IS 'Deprecated alias of api_agent_resolution_seconds.';
COMMENT ON COLUMN ticket_facts_all.actual_processing_seconds IS 'Deprecated alias of api_actual_processing_seconds.';
COMMENT ON COLUMN ticket_facts_all.bot_service_seconds IS 'Deprecated alias of api_bot_service_seconds.';
COMMENT ON COLUMN ticket_facts_all.agent_service_minutes IS 'Deprecated alias of api_agent_service_minutes.';
COMMENT ON COLUMN ticket_facts_all.first_reply_seconds IS 'SECONDS (whole, rounded down) from ticket creation to the first agent reply (agent_first_response_time - created_at): first reply time as the customer experiences it, bot and queue time included.';
COMMENT ON COLUMN ticket_facts_all.queue_wait_seconds IS 'SECONDS the ticket spent queued (status 3) waiting for an agent, summed over every queued stay (a current one up to now), from status history at polling resolution. NULL unless the ticket was watched from creation (history_complete).';
COMMENT ON COLUMN ticket_facts_all.first_closed_at IS 'When the ticket first entered a closed status, as observed (closed_at of the version that showed it). A ticket first seen reopened may have closed earlier unseen.';
COMMENT ON COLUMN ticket_facts_all.first_resolution_seconds IS 'SECONDS, first_closed_at - created_at: the first resolution. Stays set when the ticket is reopened.';
COMMENT ON COLUMN ticket_facts_all.reopen_count IS 'Times the ticket went from a closed status back to an open one, as observed; a ticket seen closed twice with a later close time counts one reopen (seen or not).';
COMMENT ON COLUMN ticket_facts_all.unsolved_age_seconds IS 'SECONDS since creation of a ticket that is open now; NULL once closed.';
COMMENT ON COLUMN ticket_facts_all.is_rated IS 'The customer rated the ticket (score 1, 2, 3 or any code but 0).';
COMMENT ON COLUMN ticket_facts_all.is_bot_only IS 'No agent ever joined (no agent_entry_time, no agents): the API durations about agents are NULL.';
COMMENT ON COLUMN ticket_facts_all.closed_by_name IS 'Name of who closed the ticket.';
COMMENT ON COLUMN ticket_facts_all.solve_label IS 'solved / unsolved; unknown (N) for an unlisted code; NULL when not reported.';
COMMENT ON COLUMN ticket_facts_all.status_label_zh_cn IS 'Chinese label of status.';
COMMENT ON COLUMN ticket_facts_all.ticket_type_label_zh_cn IS 'Chinese label of ticket_type.';
COMMENT ON COLUMN ticket_facts_all.channel_label_zh_cn IS 'Chinese label of channel.';
COMMENT ON COLUMN ticket_facts_all.score_label_zh_cn IS 'Chinese label of score; NULL when not rated.';
COMMENT ON COLUMN ticket_facts_all.solve_label_zh_cn IS 'Chinese label of solve.';
COMMENT ON COLUMN ticket_facts_all.dissatisfaction_reason_ja_jp IS 'Dissatisfaction reason, Japanese text.';
COMMENT ON COLUMN ticket_facts_all.api_agent_resolution_seconds IS 'SECONDS, the API''s agent_resolution_time (first agent joining to close). NULL while open or when no agent took part.';
COMMENT ON COLUMN ticket_facts_all.api_actual_processing_seconds IS 'SECONDS, the API''s actual_processing_time (resolution minus time pending). NULL while open or when no agent took part.';
COMMENT ON COLUMN ticket_facts_all.api_bot_service_seconds IS 'SECONDS, the API''s bot_service_duration (creation to agent entry). NULL when no agent took part.';
COMMENT ON COLUMN ticket_facts_all.api_agent_service_minutes IS 'MINUTES (fractional), the API''s agent_service_duration (agent entry to last agent reply). NULL when no agent took part.';
COMMENT ON COLUMN ticket_facts_all.status_sort_order IS 'Sort key of status (ticket_status_codes.sort_order; 100 + code when unlisted).';
COMMENT ON COLUMN ticket_facts_all.history_complete IS 'helpdesk-sync watched the ticket from creation: its status history has no unobserved stretch.';
COMMENT ON COLUMN ticket_time_in_status.status IS 'Status code; NULL for the stretch before the first observation.';
COMMENT ON COLUMN ticket_time_in_status.status_label IS 'English label of the status; not observed for the stretch before the first observation.';
COMMENT ON COLUMN ticket_time_in_status.seconds IS 'SECONDS spent in this status (summed when entered more than once); the final close counts 0.';
COMMENT ON COLUMN ticket_time_in_status.status_label_zh_cn IS 'Chinese label of the status.';
COMMENT ON COLUMN ticket_time_in_status.status_sort_order IS 'Sort key of the status.';
COMMENT ON COLUMN ticket_time_in_status.is_observed IS 'False for the stretch before the first observation.';
COMMENT ON COLUMN daily_ticket_stats.day IS 'Calendar day in report_settings.timezone; every day from the first ticket to today.';
COMMENT ON COLUMN daily_ticket_stats.score_none IS 'Tickets closed that day without a rating (score NULL or 0).';
COMMENT ON COLUMN daily_ticket_stats.first_reply_seconds_median IS 'SECONDS, median first_reply_seconds of tickets created that day.';
COMMENT ON COLUMN daily_ticket_stats.first_reply_seconds_p90 IS 'SECONDS, 90th percentile (interpolated) of first_reply_seconds of tickets created that day.';

-- Pass-through columns carry the comment of the column they show; the filtered views carry
-- the unfiltered ones'. Copied here so they can never drift apart.
DO $$
DECLARE
    col record;
BEGIN
    FOR col IN
        SELECT v.attname, col_description('tickets'::regclass, t.attnum) AS description
        FROM pg_attribute v
        JOIN pg_attribute t ON t.attrelid = 'tickets'::regclass AND t.attname = v.attname
        WHERE v.attrelid = 'ticket_facts_all'::regclass AND v.attnum > 0
          AND v.attname IN ('created_at', 'agent_entry_time', 'agent_first_response_time',
                            'agent_last_response_time', 'dissatisfaction_reason_ja_jp')
    LOOP
        EXECUTE format('COMMENT ON COLUMN ticket_facts_all.%I IS %L', col.attname, col.description);
    END LOOP;
    FOR col IN
        SELECT attname, col_description('ticket_facts_all'::regclass, attnum) AS description
        FROM pg_attribute WHERE attrelid = 'ticket_facts_all'::regclass AND attnum > 0
    LOOP
        EXECUTE format('COMMENT ON COLUMN ticket_facts.%I IS %L', col.attname, col.description);
    END LOOP;
    FOR col IN
        SELECT attname, col_description('ticket_status_spans_all'::regclass, attnum) AS description
        FROM pg_attribute WHERE attrelid = 'ticket_status_spans_all'::regclass AND attnum > 0
    LOOP
        EXECUTE format('COMMENT ON COLUMN ticket_status_spans.%I IS %L', col.attname, col.description);
    END LOOP;
END $$;

ALTER TABLE sync_runs ADD COLUMN catalog_requests bigint;
COMMENT ON COLUMN sync_runs.catalog_requests IS 'GET /ticket_customized_fields calls (the custom field catalog, read at most hourly).';

-- PostgreSQL's JIT compiles the plans of these views in 1–2 s, longer than the queries take
-- to run (measured on 200k tickets: daily_ticket_stats 2.9 s with JIT, 0.7 s without). Off for
-- this database's new sessions; `ALTER DATABASE ... RESET jit` turns it back on. Without the
-- privilege (not the database's owner) the setting is left as it is.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET jit = off', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'jit left on: only the database owner can set it (see docs/analytics.md)';
END $$;
