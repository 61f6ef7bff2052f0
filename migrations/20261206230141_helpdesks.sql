-- Several helpdesks in one database (issue 26): their names, for the reporting views'
-- helpdesk_name. The daemon registers the configured helpdesks (id and display name) at every
-- start; a database synced by a single-helpdesk daemon gets one row per helpdesk its tickets
-- name, called by its id until the daemon registers the real name.

CREATE TABLE helpdesks (
    helpdesk_id text PRIMARY KEY CHECK (helpdesk_id <> ''),
    name        text NOT NULL CHECK (name <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE helpdesks IS 'The helpdesks of this database: id and display name (config.toml [[helpdesks]] name, registered by the daemon at every start). A ticket whose helpdesk is not here shows its id as helpdesk_name in the reporting views.';
COMMENT ON COLUMN helpdesks.helpdesk_id IS 'The Feishu helpdesk id (decimal text), as tickets.helpdesk_id.';
COMMENT ON COLUMN helpdesks.name IS 'Display name (config.toml [[helpdesks]] name); the id itself until the daemon registered a name.';
COMMENT ON COLUMN helpdesks.created_at IS 'When the helpdesk was first registered (or seeded from the stored tickets by the upgrade).';
COMMENT ON COLUMN helpdesks.updated_at IS 'When its name last changed.';

-- The upgrade: every helpdesk the stored tickets name, its id as its name.
INSERT INTO helpdesks (helpdesk_id, name)
SELECT DISTINCT t.helpdesk_id, t.helpdesk_id
  FROM tickets t
 WHERE t.helpdesk_id IS NOT NULL AND t.helpdesk_id <> ''
ON CONFLICT (helpdesk_id) DO NOTHING;
