-- reporting.people: one row per person and helpdesk they were seen in (a person seen on no
-- ticket: one row, helpdesk NULL). Default time column: first_seen_at.
CREATE OR REPLACE VIEW reporting.people AS
WITH seen AS (
    -- Each person's roles per helpdesk of a ticket naming them (as public.helpdesk_people
    -- finds them over every ticket).
    SELECT t.guest_id AS user_id, t.helpdesk_id, false AS agent, true AS guest
      FROM public.tickets t WHERE t.guest_id IS NOT NULL
    UNION ALL
    SELECT t.agent_owner_id, t.helpdesk_id, true, false
      FROM public.tickets t WHERE t.agent_owner_id IS NOT NULL
    UNION ALL
    SELECT t.closed_by_id, t.helpdesk_id, false, false
      FROM public.tickets t WHERE t.closed_by_id IS NOT NULL
    UNION ALL
    SELECT a.user_id, t.helpdesk_id, true, false
      FROM public.ticket_agents a JOIN public.tickets t USING (ticket_id)
    UNION ALL
    SELECT c.user_id, t.helpdesk_id, true, false
      FROM public.ticket_collaborators c JOIN public.tickets t USING (ticket_id)
), per_helpdesk AS (
    SELECT user_id, helpdesk_id, bool_or(agent) AS is_agent, bool_or(guest) AS is_guest
      FROM seen
     GROUP BY user_id, helpdesk_id
)
SELECT
    -- keys
    p.user_id,
    -- times
    p.first_seen_at,
    p.last_seen_at,
    -- labels
    p.name,
    p.email,
    p.avatar_url,
    p.department,
    p.city,
    p.country,
    COALESCE(h.is_agent, false) AS is_agent,
    COALESCE(h.is_guest, false) AS is_guest,
    CASE WHEN h.is_agent THEN 'agent' WHEN h.is_guest THEN 'guest' ELSE 'other' END AS role,
    -- helpdesk (appended)
    h.helpdesk_id,
    COALESCE(hd.name, h.helpdesk_id) AS helpdesk_name
FROM public.helpdesk_people p
LEFT JOIN per_helpdesk h ON h.user_id = p.user_id
LEFT JOIN public.helpdesks hd ON hd.helpdesk_id = h.helpdesk_id;

COMMENT ON VIEW reporting.people IS 'One row per person and helpdesk they were seen in on a ticket (customers, agents, collaborators), with the roles seen in that helpdesk; a person seen in two helpdesks has two rows (count people with count(DISTINCT user_id)), a person on no ticket now one row with helpdesk NULL. With one helpdesk, one row per person. Default time column: first_seen_at.';
SELECT reporting_copy_comments('reporting.people', 'public.helpdesk_people');
COMMENT ON COLUMN reporting.people.is_agent IS 'Seen as agent, collaborator or agent owner on a ticket of this helpdesk.';
COMMENT ON COLUMN reporting.people.is_guest IS 'Opened a ticket of this helpdesk.';
COMMENT ON COLUMN reporting.people.role IS 'agent, guest or other (only seen closing tickets) in this helpdesk.';
COMMENT ON COLUMN reporting.people.helpdesk_id IS 'A helpdesk whose tickets name this person (decimal text; NULL: seen on no ticket now, or on tickets that came without a helpdesk).';
COMMENT ON COLUMN reporting.people.helpdesk_name IS 'The helpdesk''s display name (table helpdesks, config [[helpdesks]] name); its id while no name is registered.';
