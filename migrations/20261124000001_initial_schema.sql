-- helpdesk-sync initial schema.
--
-- Naming: `*_at` / `*_time` columns are timestamptz; `*_seconds` / `*_minutes` carry their unit.
-- The Feishu API sends epoch MILLISECONDS; values below 10^11 are read as seconds (defensive);
-- `updated_at = -1` and `closed_at = 0` mean "absent" and are stored as NULL.
-- BI tools depend on these names: add columns freely, never rename.

-- Everyone seen on a ticket: guest, agent, collaborator, closed_by, agent_owner.
CREATE TABLE helpdesk_users (
    user_id       text PRIMARY KEY,
    name          text,
    email         text,
    avatar_url    text,
    department    text,
    city          text,
    country       text,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL
);

CREATE TABLE tickets (
    ticket_id                             text PRIMARY KEY,
    helpdesk_id                           text,
    guest_id                              text REFERENCES helpdesk_users (user_id) DEFERRABLE INITIALLY DEFERRED,
    ticket_type                           smallint,
    status                                smallint,
    score                                 smallint,
    channel                               smallint,
    solve                                 smallint,
    created_at                            timestamptz,
    updated_at                            timestamptz,
    closed_at                             timestamptz,
    closed_by_id                          text REFERENCES helpdesk_users (user_id) DEFERRABLE INITIALLY DEFERRED,
    agent_owner_id                        text REFERENCES helpdesk_users (user_id) DEFERRABLE INITIALLY DEFERRED,
    dissatisfaction_reason_zh_cn          text,
    dissatisfaction_reason_en_us          text,
    dissatisfaction_reason_ja_jp          text,
    agent_service_duration_minutes        double precision,
    agent_first_response_duration_seconds bigint,
    bot_service_duration_seconds          bigint,
    agent_resolution_time_seconds         bigint,
    actual_processing_time_seconds        bigint,
    agent_entry_time                      timestamptz,
    agent_first_response_time             timestamptz,
    agent_last_response_time              timestamptz,
    raw                                   jsonb NOT NULL,
    fetched_at                            timestamptz NOT NULL,
    deleted_at                            timestamptz
);
CREATE INDEX tickets_updated_at_idx ON tickets (updated_at);
CREATE INDEX tickets_created_at_idx ON tickets (created_at);
CREATE INDEX tickets_status_idx ON tickets (status);

CREATE TABLE ticket_agents (
    ticket_id text NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    user_id   text NOT NULL REFERENCES helpdesk_users (user_id) DEFERRABLE INITIALLY DEFERRED,
    position  integer NOT NULL,
    PRIMARY KEY (ticket_id, user_id)
);
CREATE INDEX ticket_agents_user_idx ON ticket_agents (user_id);

CREATE TABLE ticket_collaborators (
    ticket_id text NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    user_id   text NOT NULL REFERENCES helpdesk_users (user_id) DEFERRABLE INITIALLY DEFERRED,
    position  integer NOT NULL,
    PRIMARY KEY (ticket_id, user_id)
);
CREATE INDEX ticket_collaborators_user_idx ON ticket_collaborators (user_id);

CREATE TABLE tags (
    tag_id text PRIMARY KEY,
    name   text
);

CREATE TABLE ticket_tags (
    ticket_id text NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    tag_id    text NOT NULL REFERENCES tags (tag_id) DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (ticket_id, tag_id)
);
CREATE INDEX ticket_tags_tag_idx ON ticket_tags (tag_id);

CREATE TABLE ticket_custom_fields (
    ticket_id    text NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    field_id     text NOT NULL,
    key_name     text,
    display_name text,
    value        text,
    position     integer,
    required     boolean,
    editable     boolean,
    PRIMARY KEY (ticket_id, field_id)
);
CREATE INDEX ticket_custom_fields_field_idx ON ticket_custom_fields (field_id, value);

CREATE TABLE ticket_comments (
    ticket_id       text NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    ordinal         integer NOT NULL,
    comment_id      bigint,
    content         text,
    created_at      timestamptz,
    user_id         bigint,
    user_name       text,
    user_avatar_url text,
    PRIMARY KEY (ticket_id, ordinal)
);

-- The work queue: every ticket id the daemon knows, and when it should be fetched next.
CREATE TABLE ticket_sync_state (
    ticket_id            text PRIMARY KEY,
    source               text NOT NULL,
    first_enqueued_at    timestamptz NOT NULL DEFAULT now(),
    last_enqueued_at     timestamptz NOT NULL DEFAULT now(),
    priority             smallint NOT NULL DEFAULT 0,
    next_due_at          timestamptz NOT NULL DEFAULT now(),
    last_attempt_at      timestamptz,
    last_fetched_at      timestamptz,
    last_outcome         text CHECK (last_outcome IN ('ok', 'not_found', 'invalid_id', 'failed')),
    last_http_status     integer,
    last_error_code      bigint,
    last_error           text,
    last_attempt_count   integer NOT NULL DEFAULT 0,
    consecutive_failures integer NOT NULL DEFAULT 0,
    claimed_until        timestamptz,
    claimed_by           text
);
CREATE INDEX ticket_sync_state_due_idx ON ticket_sync_state (priority DESC, next_due_at);

COMMENT ON TABLE helpdesk_users IS 'Every person seen on a ticket (guest, agent, collaborator, closed_by, agent_owner), keyed by Feishu open_id. Profile columns hold the latest values seen.';
COMMENT ON COLUMN helpdesk_users.last_seen_at IS 'When a changed ticket naming this person was last stored.';
COMMENT ON TABLE tickets IS 'One row per helpdesk ticket, from GET /open-apis/helpdesk/v1/tickets/:ticket_id. The row changes only when the API content changes.';
COMMENT ON COLUMN tickets.ticket_type IS '1 = bot, 2 = human (agent).';
COMMENT ON COLUMN tickets.status IS '1 created, 2 processing, 3 queued, 4 pending, 5 waiting for user, 50 closed by bot, 51 closed by agent, 52 closed by user.';
COMMENT ON COLUMN tickets.score IS 'Satisfaction: 1 unsatisfied, 2 neutral, 3 satisfied.';
COMMENT ON COLUMN tickets.solve IS '1 unsolved, 2 solved.';
COMMENT ON COLUMN tickets.channel IS '9 Open API, 2 QR code, 14 share, 13 search, other numbers: other channels.';
COMMENT ON COLUMN tickets.updated_at IS 'Ticket update time; NULL when the API sends -1 (never updated).';
COMMENT ON COLUMN tickets.closed_at IS 'Ticket close time; NULL when the API sends 0 or nothing (open ticket).';
COMMENT ON COLUMN tickets.agent_service_duration_minutes IS 'API agent_service_duration: MINUTES (float) from agent entry to the last agent reply.';
COMMENT ON COLUMN tickets.agent_first_response_duration_seconds IS 'API agent_first_response_duration: SECONDS from agent entry to the first agent reply.';
COMMENT ON COLUMN tickets.bot_service_duration_seconds IS 'API bot_service_duration: SECONDS from ticket creation to agent entry.';
COMMENT ON COLUMN tickets.agent_resolution_time_seconds IS 'API agent_resolution_time: SECONDS from the first agent joining to the ticket closing.';
COMMENT ON COLUMN tickets.actual_processing_time_seconds IS 'API actual_processing_time: SECONDS, resolution time minus time spent pending.';
COMMENT ON COLUMN tickets.raw IS 'The ticket object exactly as the API returned it (data.ticket), including fields this version does not normalize.';
COMMENT ON COLUMN tickets.fetched_at IS 'When the API returned the content now stored (set when the content changed). The last check of an unchanged ticket is ticket_sync_state.last_fetched_at.';
COMMENT ON COLUMN tickets.deleted_at IS 'Set when the API answered 404/154004 (ticket deleted). The rows are kept.';
COMMENT ON TABLE ticket_agents IS 'Agents of a ticket, in API order (position from 0).';
COMMENT ON TABLE ticket_collaborators IS 'Collaborators of a ticket, in API order (position from 0).';
COMMENT ON TABLE tags IS 'Every tag seen on a ticket; name is the latest seen.';
COMMENT ON TABLE ticket_tags IS 'Tags currently on a ticket.';
COMMENT ON TABLE ticket_custom_fields IS 'Custom field values of a ticket (API customized_fields). value is the display text.';
COMMENT ON TABLE ticket_comments IS 'Internal notes of a ticket (API comments, one object or a list), ordinal = order in the response.';
COMMENT ON COLUMN ticket_comments.created_at IS 'When the note was written (API epoch milliseconds).';
COMMENT ON TABLE ticket_sync_state IS 'Work queue: every known ticket id, its source, when it is due, and how the last fetch went.';
COMMENT ON COLUMN ticket_sync_state.source IS 'Who first told us about this id: cli, file, discovery, event, query, demo.';
COMMENT ON COLUMN ticket_sync_state.next_due_at IS 'When the ticket should be fetched next; infinity = parked (invalid id, deleted) until enqueued again.';
COMMENT ON COLUMN ticket_sync_state.last_outcome IS 'ok, not_found (deleted upstream), invalid_id (API 154000), failed (retried later with growing delay).';
COMMENT ON COLUMN ticket_sync_state.consecutive_failures IS 'Failed cycles in a row; drives the retry delay. Reset by any other outcome.';
COMMENT ON COLUMN ticket_sync_state.claimed_until IS 'Lease of the worker currently fetching this ticket; expired leases are free to claim again.';
