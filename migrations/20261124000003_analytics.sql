-- Analytics layer: change history, code labels, and BI views with explicit units.
-- History starts when helpdesk-sync first saw a ticket and has the polling resolution
-- (a status held between two fetches and gone by the next is never seen).

-- One row each time a ticket's content actually changed (as stored in tickets.raw).
CREATE TABLE ticket_versions (
    version_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id      text NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    content_hash   text NOT NULL,
    observed_at    timestamptz NOT NULL,
    status         smallint,
    updated_at     timestamptz,
    agent_owner_id text,
    raw            jsonb NOT NULL
);
CREATE INDEX ticket_versions_ticket_idx ON ticket_versions (ticket_id, version_id DESC);

-- One row per observed status transition; the first row of a ticket has from_status NULL.
CREATE TABLE ticket_status_history (
    transition_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id     text NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    from_status   smallint,
    to_status     smallint,
    changed_at    timestamptz NOT NULL,
    -- 'updated_at' when changed_at is the ticket's own update time, 'observed' when it is ours.
    changed_at_source text NOT NULL CHECK (changed_at_source IN ('updated_at', 'observed')),
    observed_at   timestamptz NOT NULL
);
CREATE INDEX ticket_status_history_ticket_idx ON ticket_status_history (ticket_id, transition_id DESC);

-- Code labels. No foreign keys point here: a code the API adds tomorrow still loads, and the
-- views show it as "unknown (N)".
CREATE TABLE ticket_status_codes (
    code      smallint PRIMARY KEY,
    is_closed boolean NOT NULL,
    label_en_us text NOT NULL,
    label_zh_cn text NOT NULL
);
INSERT INTO ticket_status_codes VALUES
    (1, false, 'created', '已创建'),
    (2, false, 'processing', '处理中'),
    (3, false, 'queued', '排队中'),
    (4, false, 'pending', '待定'),
    (5, false, 'waiting for user', '待用户响应'),
    (50, true, 'closed by bot', '被机器人关闭'),
    (51, true, 'closed by agent', '被客服关闭'),
    (52, true, 'closed by user', '用户自己关闭');

CREATE TABLE ticket_channel_codes (
    code smallint PRIMARY KEY,
    label_en_us text NOT NULL,
    label_zh_cn text NOT NULL
);
INSERT INTO ticket_channel_codes VALUES
    (9, 'Open API', 'Open API'),
    (2, 'QR code', '二维码'),
    (14, 'share', '分享'),
    (13, 'search', '搜索');

CREATE TABLE ticket_type_codes (
    code smallint PRIMARY KEY,
    label_en_us text NOT NULL,
    label_zh_cn text NOT NULL
);
INSERT INTO ticket_type_codes VALUES (1, 'bot', '机器人'), (2, 'human', '人工');

CREATE TABLE score_codes (
    code smallint PRIMARY KEY,
    label_en_us text NOT NULL,
    label_zh_cn text NOT NULL
);
INSERT INTO score_codes VALUES (1, 'unsatisfied', '不满意'), (2, 'neutral', '一般'), (3, 'satisfied', '满意');

CREATE TABLE solve_codes (
    code smallint PRIMARY KEY,
    is_solved boolean NOT NULL,
    label_en_us text NOT NULL,
    label_zh_cn text NOT NULL
);
INSERT INTO solve_codes VALUES (1, false, 'unsolved', '没解决'), (2, true, 'solved', '已解决');

-- The time zone whose calendar days the views group by. One row; change it with
-- UPDATE report_settings SET timezone = 'Asia/Shanghai';
CREATE TABLE report_settings (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    timezone text NOT NULL DEFAULT 'UTC' CHECK (now() AT TIME ZONE timezone IS NOT NULL)
);
INSERT INTO report_settings DEFAULT VALUES;

-- Every ticket, deleted ones included, with labels and durations in explicit units.
CREATE VIEW ticket_facts_all AS
SELECT
    t.ticket_id,
    t.helpdesk_id,
    t.status,
    COALESCE(sc.label_en_us, 'unknown (' || t.status || ')') AS status_label,
    COALESCE(sc.is_closed, t.status >= 50) AS is_closed,
    t.ticket_type,
    COALESCE(tc.label_en_us, 'unknown (' || t.ticket_type || ')') AS ticket_type_label,
    t.channel,
    COALESCE(cc.label_en_us, 'other (' || t.channel || ')') AS channel_label,
    t.solve,
    COALESCE(so.is_solved, false) AS is_solved,
    t.score,
    COALESCE(sco.label_en_us, 'unknown (' || t.score || ')') AS score_label,
    t.created_at,
    (t.created_at AT TIME ZONE rs.timezone)::date AS created_date,
    t.closed_at,
    (t.closed_at AT TIME ZONE rs.timezone)::date AS closed_date,
    t.updated_at,
    t.agent_entry_time,
    t.agent_first_response_time,
    t.agent_last_response_time,
    -- From timestamps, whole seconds rounded down (as the API counts its own):
    floor(EXTRACT(EPOCH FROM t.agent_first_response_time - t.agent_entry_time))::bigint AS first_response_seconds,
    floor(EXTRACT(EPOCH FROM t.closed_at - t.created_at))::bigint AS resolution_seconds,
    floor(EXTRACT(EPOCH FROM t.closed_at - t.agent_entry_time))::bigint AS agent_resolution_seconds_from_timestamps,
    floor(EXTRACT(EPOCH FROM t.agent_entry_time - t.created_at))::bigint AS bot_service_seconds_from_timestamps,
    EXTRACT(EPOCH FROM t.agent_last_response_time - t.agent_entry_time) / 60.0 AS agent_service_minutes_from_timestamps,
    -- As the API reports them (its own definitions and units, converted to the name's unit):
    t.agent_first_response_duration_seconds AS api_first_response_seconds,
    t.agent_resolution_time_seconds AS agent_resolution_seconds,
    t.actual_processing_time_seconds AS actual_processing_seconds,
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
    t.deleted_at
FROM tickets t
CROSS JOIN report_settings rs
LEFT JOIN ticket_status_codes sc ON sc.code = t.status
LEFT JOIN ticket_type_codes tc ON tc.code = t.ticket_type
LEFT JOIN ticket_channel_codes cc ON cc.code = t.channel
LEFT JOIN solve_codes so ON so.code = t.solve
LEFT JOIN score_codes sco ON sco.code = t.score
LEFT JOIN helpdesk_users g ON g.user_id = t.guest_id
LEFT JOIN helpdesk_users o ON o.user_id = t.agent_owner_id;

-- The same, without tickets deleted upstream: what dashboards should use.
CREATE VIEW ticket_facts AS
SELECT * FROM ticket_facts_all WHERE deleted_at IS NULL;

-- Seconds each ticket spent in each status it was observed in.
CREATE VIEW ticket_time_in_status AS
WITH ordered AS (
    -- A stay starts at the latest changed_at seen so far: changed_at mixes the ticket's own
    -- updated_at with our observation time, and must never make a span negative.
    SELECT
        h.ticket_id,
        h.transition_id,
        h.to_status AS status,
        max(h.changed_at) OVER (PARTITION BY h.ticket_id ORDER BY h.transition_id
                                ROWS UNBOUNDED PRECEDING) AS entered_at
    FROM ticket_status_history h
), spans AS (
    SELECT
        o.ticket_id,
        o.status,
        o.entered_at,
        LEAD(o.entered_at) OVER (PARTITION BY o.ticket_id ORDER BY o.transition_id) AS left_at
    FROM ordered o
)
SELECT
    s.ticket_id,
    s.status,
    COALESCE(sc.label_en_us, 'unknown (' || s.status || ')') AS status_label,
    sum(GREATEST(0, EXTRACT(EPOCH FROM COALESCE(s.left_at, CASE WHEN COALESCE(sc.is_closed, s.status >= 50) THEN s.entered_at ELSE now() END) - s.entered_at)))::bigint AS seconds,
    count(*) AS times_entered,
    bool_or(s.left_at IS NULL AND NOT COALESCE(sc.is_closed, s.status >= 50)) AS is_current
FROM spans s
LEFT JOIN ticket_status_codes sc ON sc.code = s.status
GROUP BY s.ticket_id, s.status, sc.label_en_us, sc.is_closed;

-- One row per calendar day (report_settings.timezone) with any created or closed ticket.
CREATE VIEW daily_ticket_stats AS
WITH created AS (
    SELECT created_date AS day,
           count(*) AS tickets_created,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY first_response_seconds) AS first_response_seconds_median,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY first_response_seconds) AS first_response_seconds_p90
    FROM ticket_facts WHERE created_date IS NOT NULL GROUP BY created_date
), closed AS (
    SELECT closed_date AS day,
           count(*) AS tickets_closed,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution_seconds) AS resolution_seconds_median,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY resolution_seconds) AS resolution_seconds_p90,
           count(*) FILTER (WHERE score = 1) AS score_unsatisfied,
           count(*) FILTER (WHERE score = 2) AS score_neutral,
           count(*) FILTER (WHERE score = 3) AS score_satisfied,
           count(*) FILTER (WHERE score IS NULL) AS score_none
    FROM ticket_facts WHERE is_closed AND closed_date IS NOT NULL GROUP BY closed_date
)
SELECT
    COALESCE(c.day, d.day) AS day,
    COALESCE(c.tickets_created, 0) AS tickets_created,
    COALESCE(d.tickets_closed, 0) AS tickets_closed,
    c.first_response_seconds_median,
    c.first_response_seconds_p90,
    d.resolution_seconds_median,
    d.resolution_seconds_p90,
    COALESCE(d.score_unsatisfied, 0) AS score_unsatisfied,
    COALESCE(d.score_neutral, 0) AS score_neutral,
    COALESCE(d.score_satisfied, 0) AS score_satisfied,
    COALESCE(d.score_none, 0) AS score_none
FROM created c FULL JOIN closed d ON d.day = c.day;

COMMENT ON TABLE ticket_versions IS 'One row each time a ticket''s stored content changed (content_hash = md5 of the raw JSON). History starts when helpdesk-sync first saw the ticket; resolution = polling interval.';
COMMENT ON COLUMN ticket_versions.content_hash IS 'md5 of tickets.raw (jsonb text form). A re-sync with the same content adds no row.';
COMMENT ON COLUMN ticket_versions.observed_at IS 'When helpdesk-sync fetched this content.';
COMMENT ON COLUMN ticket_versions.status IS 'Status code in this version (see ticket_status_codes).';
COMMENT ON COLUMN ticket_versions.updated_at IS 'The ticket''s own update time in this version; NULL when the API sent -1.';
COMMENT ON COLUMN ticket_versions.agent_owner_id IS 'Agent owner in this version (helpdesk_users.user_id).';
COMMENT ON COLUMN ticket_versions.raw IS 'The API''s ticket JSON of this version.';
COMMENT ON TABLE ticket_status_history IS 'Observed status transitions. The first row of a ticket (from_status NULL) is its status when first seen. A status held only between two fetches is never seen.';
COMMENT ON COLUMN ticket_status_history.changed_at IS 'The ticket''s updated_at of the version that showed the new status; our observation time when the API sent none (see changed_at_source).';
COMMENT ON COLUMN ticket_status_history.changed_at_source IS 'updated_at: changed_at is the ticket''s own update time. observed: it is when helpdesk-sync saw the change (polling resolution).';
COMMENT ON COLUMN ticket_status_history.observed_at IS 'When helpdesk-sync saw the transition.';
COMMENT ON TABLE ticket_status_codes IS 'Labels of tickets.status. Codes not listed here still load; views show them as unknown (N).';
COMMENT ON TABLE ticket_channel_codes IS 'Labels of tickets.channel. Unlisted codes are other channels.';
COMMENT ON TABLE ticket_type_codes IS 'Labels of tickets.ticket_type.';
COMMENT ON TABLE score_codes IS 'Labels of tickets.score (satisfaction).';
COMMENT ON TABLE solve_codes IS 'Labels of tickets.solve.';
COMMENT ON TABLE report_settings IS 'One row. timezone: the IANA zone whose calendar days created_date, closed_date and daily_ticket_stats use (default UTC).';

COMMENT ON VIEW ticket_facts_all IS 'One row per ticket, deleted ones included, with code labels and durations. Computed durations come from timestamps; api_* and unprefixed API durations are the API''s own fields. They can disagree: both are shown, never one picked.';
COMMENT ON VIEW ticket_facts IS 'ticket_facts_all without tickets deleted upstream. Use this for dashboards.';
COMMENT ON VIEW ticket_time_in_status IS 'Seconds per ticket and status, from ticket_status_history. The current status of an open ticket counts up to now (is_current); a closed status counts 0. Polling resolution; history starts at first sight.';
COMMENT ON VIEW daily_ticket_stats IS 'Per calendar day (report_settings.timezone): tickets created and closed, first-response median/p90 of tickets created that day, resolution median/p90 and satisfaction of tickets closed that day. Deleted tickets excluded.';

COMMENT ON COLUMN ticket_facts_all.status_label IS 'English label of status (ticket_status_codes); unknown (N) for a code not in the table.';
COMMENT ON COLUMN ticket_facts_all.is_closed IS 'Status is a closed one (50, 51, 52).';
COMMENT ON COLUMN ticket_facts_all.is_solved IS 'solve = 2 (solved). False when unsolved or not reported.';
COMMENT ON COLUMN ticket_facts_all.created_date IS 'Calendar day of created_at in report_settings.timezone.';
COMMENT ON COLUMN ticket_facts_all.closed_date IS 'Calendar day of closed_at in report_settings.timezone.';
COMMENT ON COLUMN ticket_facts_all.first_response_seconds IS 'SECONDS (whole, rounded down), agent_first_response_time - agent_entry_time (from timestamps). Compare api_first_response_seconds.';
COMMENT ON COLUMN ticket_facts_all.resolution_seconds IS 'SECONDS (whole, rounded down), closed_at - created_at (from timestamps). NULL while open.';
COMMENT ON COLUMN ticket_facts_all.agent_resolution_seconds_from_timestamps IS 'SECONDS, closed_at - agent_entry_time. Compare agent_resolution_seconds (API).';
COMMENT ON COLUMN ticket_facts_all.bot_service_seconds_from_timestamps IS 'SECONDS, agent_entry_time - created_at. Compare bot_service_seconds (API).';
COMMENT ON COLUMN ticket_facts_all.agent_service_minutes_from_timestamps IS 'MINUTES, agent_last_response_time - agent_entry_time. Compare agent_service_minutes (API).';
COMMENT ON COLUMN ticket_facts_all.api_first_response_seconds IS 'SECONDS, the API''s agent_first_response_duration (agent entry to first agent reply).';
COMMENT ON COLUMN ticket_facts_all.agent_resolution_seconds IS 'SECONDS, the API''s agent_resolution_time (first agent joining to close).';
COMMENT ON COLUMN ticket_facts_all.actual_processing_seconds IS 'SECONDS, the API''s actual_processing_time (resolution minus time pending).';
COMMENT ON COLUMN ticket_facts_all.bot_service_seconds IS 'SECONDS, the API''s bot_service_duration (creation to agent entry).';
COMMENT ON COLUMN ticket_facts_all.agent_service_minutes IS 'MINUTES (fractional), the API''s agent_service_duration (agent entry to last agent reply).';
COMMENT ON COLUMN ticket_facts_all.guest_name IS 'Name of the guest (the person who opened the ticket).';
COMMENT ON COLUMN ticket_facts_all.agent_owner_name IS 'Name of the agent owner (主责客服).';
COMMENT ON COLUMN ticket_time_in_status.seconds IS 'SECONDS spent in this status (summed when entered more than once).';
COMMENT ON COLUMN ticket_time_in_status.times_entered IS 'How often the ticket entered this status (as observed).';
COMMENT ON COLUMN ticket_time_in_status.is_current IS 'The ticket is in this (open) status now; seconds count up to now().';
COMMENT ON COLUMN daily_ticket_stats.day IS 'Calendar day in report_settings.timezone.';
COMMENT ON COLUMN daily_ticket_stats.first_response_seconds_median IS 'SECONDS, median first_response_seconds of tickets created that day.';
COMMENT ON COLUMN daily_ticket_stats.first_response_seconds_p90 IS 'SECONDS, 90th percentile (interpolated) of first_response_seconds of tickets created that day.';
COMMENT ON COLUMN daily_ticket_stats.resolution_seconds_median IS 'SECONDS, median resolution_seconds of tickets closed that day.';
COMMENT ON COLUMN daily_ticket_stats.resolution_seconds_p90 IS 'SECONDS, 90th percentile (interpolated) of resolution_seconds of tickets closed that day.';
COMMENT ON COLUMN daily_ticket_stats.score_unsatisfied IS 'Tickets closed that day rated 1 (unsatisfied).';
COMMENT ON COLUMN daily_ticket_stats.score_none IS 'Tickets closed that day without a rating.';
