-- reporting.people: one row per person seen on any ticket. Default time column: first_seen_at.
CREATE OR REPLACE VIEW reporting.people AS
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
    p.is_agent,
    p.is_guest,
    p.role
FROM public.helpdesk_people p;

COMMENT ON VIEW reporting.people IS 'One row per person seen on a ticket (customers, agents, collaborators), with the roles seen. Default time column: first_seen_at.';
SELECT reporting_copy_comments('reporting.people', 'public.helpdesk_people');
