SELECT setseed(0.42);
INSERT INTO helpdesk_users (user_id, name, last_seen_at)
SELECT 'ou_agent' || g, 'agent ' || g, now() FROM generate_series(1, 100) g
UNION ALL
SELECT 'ou_guest' || g, 'guest ' || g, now() FROM generate_series(1, 50000) g;
INSERT INTO tags (tag_id, name) SELECT 't' || g, 'tag ' || g FROM generate_series(0, 7) g;
CREATE TEMP TABLE plan AS
WITH base AS (
    SELECT n, (7000000000000000000 + n)::text AS ticket_id,
           now() - random() * interval '365 days' AS created_at,
           random() AS r1, random() AS r2, random() AS r3,
           1 + floor(random() * 100)::int AS agent, 1 + floor(random() * 50000)::int AS guest,
           (ARRAY[9, 2, 14, 13, 0])[1 + floor(random() * 5)::int] AS channel
    FROM generate_series(1, {tickets}) n
), times AS (
    SELECT b.*,
           created_at + r1 * interval '10 minutes' AS queued_at,
           created_at + r1 * interval '10 minutes' + r2 * interval '30 minutes' AS entry_at,
           created_at + r1 * interval '10 minutes' + r2 * interval '30 minutes'
               + r3 * interval '20 minutes' AS reply_at
    FROM base b
)
SELECT t.*,
       CASE WHEN r3 < 0.85 THEN entry_at + r1 * r2 * interval '72 hours' END AS closed_at,
       r2 > 0.9 AND r3 < 0.85 AS reopened,
       created_at < now() - interval '60 days' AS backfilled
FROM times t;
DELETE FROM plan WHERE closed_at > now() - interval '4 hours';
INSERT INTO tickets (ticket_id, helpdesk_id, guest_id, ticket_type, status, score, channel, solve,
                     created_at, updated_at, closed_at, closed_by_id, agent_owner_id,
                     agent_first_response_duration_seconds, agent_entry_time,
                     agent_first_response_time, raw, fetched_at)
SELECT ticket_id, '1', 'ou_guest' || guest, 2, CASE WHEN closed_at IS NULL THEN 2 ELSE 51 END,
       CASE WHEN closed_at IS NULL THEN NULL ELSE (n % 4)::smallint END, channel,
       CASE WHEN closed_at IS NULL THEN NULL ELSE 2 END, created_at,
       COALESCE(closed_at + CASE WHEN reopened THEN interval '3 hours' ELSE interval '0' END, reply_at),
       closed_at + CASE WHEN reopened THEN interval '3 hours' ELSE interval '0' END,
       CASE WHEN closed_at IS NULL THEN NULL ELSE 'ou_agent' || agent END, 'ou_agent' || agent,
       floor(EXTRACT(EPOCH FROM reply_at - entry_at)), entry_at, reply_at, '{}', now()
FROM plan;
INSERT INTO ticket_agents (ticket_id, user_id, position) SELECT ticket_id, 'ou_agent' || agent, 0 FROM plan;
INSERT INTO ticket_tags (ticket_id, tag_id) SELECT ticket_id, 't' || (n % 8) FROM plan
UNION ALL SELECT ticket_id, 't' || ((n + 3) % 8) FROM plan WHERE n % 3 = 0;
INSERT INTO ticket_custom_fields (ticket_id, field_id, key_name, display_name, value, position)
SELECT ticket_id, '6794281200000000001', 'platform', 'Platform',
       (ARRAY['Web', 'iOS', 'Android'])[1 + n % 3], 1 FROM plan WHERE n % 5 <> 0
UNION ALL
SELECT ticket_id, '6794281200000000003', 'category', 'Category',
       (ARRAY['Battery', 'Laptop', 'Software', 'Screen'])[1 + n % 4], 3 FROM plan WHERE n % 4 = 3;
-- Transitions: full history for tickets created in the last 60 days; older ones first seen
-- as they are now (a backfill).
CREATE TEMP TABLE steps AS
SELECT ticket_id, 1 AS k, NULL::smallint AS from_status, 1::smallint AS to_status,
       created_at AS changed_at, 'updated_at' AS source FROM plan WHERE NOT backfilled
UNION ALL SELECT ticket_id, 2, 1, 3, queued_at, 'updated_at' FROM plan WHERE NOT backfilled
UNION ALL SELECT ticket_id, 3, 3, 2, entry_at, 'updated_at' FROM plan WHERE NOT backfilled
UNION ALL SELECT ticket_id, 4, 2, 51, closed_at, 'closed_at' FROM plan
          WHERE NOT backfilled AND closed_at IS NOT NULL
UNION ALL SELECT ticket_id, 5, 51, 2, closed_at + interval '1 hour', 'updated_at' FROM plan
          WHERE NOT backfilled AND reopened
UNION ALL SELECT ticket_id, 6, 2, 51, closed_at + interval '3 hours', 'closed_at' FROM plan
          WHERE NOT backfilled AND reopened
UNION ALL SELECT ticket_id, 1, NULL, CASE WHEN closed_at IS NULL THEN 2 ELSE 51 END,
          COALESCE(closed_at + CASE WHEN reopened THEN interval '3 hours' ELSE interval '0' END,
                   entry_at),
          CASE WHEN closed_at IS NULL THEN 'updated_at' ELSE 'closed_at' END
          FROM plan WHERE backfilled;
INSERT INTO ticket_versions (ticket_id, content_hash, observed_at, status, updated_at,
                             agent_owner_id, raw)
SELECT s.ticket_id, md5(s.ticket_id || s.k), s.changed_at + interval '1 minute', s.to_status,
       s.changed_at, 'ou_agent' || p.agent, '{}'
FROM steps s JOIN plan p USING (ticket_id) ORDER BY s.ticket_id, s.k;
INSERT INTO ticket_status_history (ticket_id, from_status, to_status, changed_at,
                                   changed_at_source, observed_at)
SELECT ticket_id, from_status, to_status, changed_at, source, changed_at + interval '1 minute'
FROM steps ORDER BY ticket_id, k;
