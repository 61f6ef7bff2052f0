-- Conversation messages (GET /open-apis/helpdesk/v1/tickets/:ticket_id/messages): the messages
-- themselves, their own lane in the queue, and the reply metrics computed from them.

CREATE TABLE ticket_messages (
    ticket_id        text NOT NULL REFERENCES tickets (ticket_id) ON DELETE CASCADE,
    message_id       text NOT NULL,
    chat_message_id  text,
    message_type     text,
    created_at       timestamptz,
    content          text,
    content_text     text,
    sender_id        text,
    sender_name      text,
    sender_avatar_url text,
    sender_role      text NOT NULL DEFAULT 'unknown'
                     CHECK (sender_role IN ('guest', 'agent', 'bot', 'unknown')),
    raw              jsonb NOT NULL,
    fetched_at       timestamptz NOT NULL,
    PRIMARY KEY (ticket_id, message_id)
);
CREATE INDEX ticket_messages_created_idx ON ticket_messages (ticket_id, created_at);
COMMENT ON TABLE ticket_messages IS 'The conversation of a ticket (API ticket messages), one row per message, stored as the API sent it. Fetched when a ticket is new or changed, on message events, and for open tickets every sync.open_refresh.';
COMMENT ON COLUMN ticket_messages.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_messages.message_id IS 'The message''s id in the helpdesk (API id).';
COMMENT ON COLUMN ticket_messages.chat_message_id IS 'The chat message id (API message_id, om_...).';
COMMENT ON COLUMN ticket_messages.message_type IS 'text, post, image, interactive, ... as the API says.';
COMMENT ON COLUMN ticket_messages.created_at IS 'When the message was sent (timestamptz; the API sends epoch milliseconds or seconds, both read).';
COMMENT ON COLUMN ticket_messages.content IS 'The content as the API sent it (JSON text for rich messages).';
COMMENT ON COLUMN ticket_messages.content_text IS 'Plain text derived from content: a text message''s text, a post''s text elements joined; NULL when none can be derived (images, cards without text).';
COMMENT ON COLUMN ticket_messages.sender_id IS 'Sender id as the API sends it (user_id); compared with the ticket''s open_ids to infer the role.';
COMMENT ON COLUMN ticket_messages.sender_name IS 'Sender name (user_name).';
COMMENT ON COLUMN ticket_messages.sender_avatar_url IS 'Sender avatar URL.';
COMMENT ON COLUMN ticket_messages.sender_role IS 'Inferred, not sent by the API: guest (the ticket''s guest), agent (an agent, collaborator, owner or agent closer of the ticket), bot (no sender id), unknown (anyone else). Recomputed when the ticket changes. See docs/analytics.md.';
COMMENT ON COLUMN ticket_messages.raw IS 'The message object as the API returned it.';
COMMENT ON COLUMN ticket_messages.fetched_at IS 'When helpdesk-sync stored this version of the message.';

-- The messages lane of the queue: due times of their own, failures of their own.
ALTER TABLE ticket_sync_state
    ADD COLUMN messages_due_at timestamptz DEFAULT now(),
    ADD COLUMN messages_priority smallint NOT NULL DEFAULT 0,
    ADD COLUMN messages_claimed_until timestamptz,
    ADD COLUMN messages_claimed_by text,
    ADD COLUMN messages_fetched_at timestamptz,
    ADD COLUMN messages_last_outcome text CHECK (messages_last_outcome IN ('ok', 'failed')),
    ADD COLUMN messages_last_error text,
    ADD COLUMN messages_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN messages_requested_at timestamptz;
CREATE INDEX ticket_sync_state_messages_due_idx ON ticket_sync_state (messages_due_at)
    WHERE messages_due_at IS NOT NULL;
COMMENT ON COLUMN ticket_sync_state.messages_due_at IS 'When the ticket''s messages should be fetched next; NULL: not until the ticket changes or a message event comes.';
COMMENT ON COLUMN ticket_sync_state.messages_priority IS 'Higher first: 20 a message event, 10 a new or changed ticket, 0 a routine refresh.';
COMMENT ON COLUMN ticket_sync_state.messages_claimed_until IS 'Lease of the worker fetching the messages.';
COMMENT ON COLUMN ticket_sync_state.messages_claimed_by IS 'host:pid:nonce of the worker holding the messages claim.';
COMMENT ON COLUMN ticket_sync_state.messages_fetched_at IS 'When the messages were last fetched completely.';
COMMENT ON COLUMN ticket_sync_state.messages_last_outcome IS 'ok, or failed (retried later with growing delay; the ticket itself is not affected).';
COMMENT ON COLUMN ticket_sync_state.messages_last_error IS 'The last messages failure, in words.';
COMMENT ON COLUMN ticket_sync_state.messages_failures IS 'Failed message fetches in a row; drives the retry delay.';
COMMENT ON COLUMN ticket_sync_state.messages_requested_at IS 'When messages were last asked for (a changed ticket, an event); a fetch that started before this leaves them due.';

-- What the API turned out to do where its docs are silent (one row per finding).
CREATE TABLE api_observations (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    observed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE api_observations IS 'Facts about the API learned from its answers where the docs are unclear, e.g. messages.time_start_unit (seconds or milliseconds).';
COMMENT ON COLUMN api_observations.key IS 'What was observed.';
COMMENT ON COLUMN api_observations.value IS 'What the API showed.';
COMMENT ON COLUMN api_observations.observed_at IS 'When it was first observed.';

ALTER TABLE sync_runs
    ADD COLUMN message_requests bigint,
    ADD COLUMN tickets_messages_synced bigint,
    ADD COLUMN tickets_messages_failed bigint;
COMMENT ON COLUMN sync_runs.message_requests IS 'GET /tickets/:id/messages calls.';
COMMENT ON COLUMN sync_runs.tickets_messages_synced IS 'Tickets whose messages were fetched completely.';
COMMENT ON COLUMN sync_runs.tickets_messages_failed IS 'Tickets whose message fetch failed (retried later).';

-- Roles of a ticket's message senders, from the ticket as stored now.
CREATE FUNCTION refresh_message_roles(ids text[]) RETURNS void
LANGUAGE sql AS $$
    UPDATE ticket_messages m SET sender_role = r.role
      FROM (
          SELECT m2.ticket_id, m2.message_id,
                 CASE
                     WHEN NULLIF(m2.sender_id, '') IS NULL THEN 'bot'
                     WHEN m2.sender_id = t.guest_id THEN 'guest'
                     WHEN m2.sender_id = t.agent_owner_id
                       OR EXISTS (SELECT 1 FROM ticket_agents a
                                   WHERE a.ticket_id = t.ticket_id AND a.user_id = m2.sender_id)
                       OR EXISTS (SELECT 1 FROM ticket_collaborators c
                                   WHERE c.ticket_id = t.ticket_id AND c.user_id = m2.sender_id)
                       OR (m2.sender_id = t.closed_by_id AND t.closed_by_id IS DISTINCT FROM t.guest_id)
                         THEN 'agent'
                     ELSE 'unknown'
                 END AS role
            FROM ticket_messages m2 JOIN tickets t USING (ticket_id)
           WHERE m2.ticket_id = ANY (ids)
      ) r
     WHERE m.ticket_id = r.ticket_id AND m.message_id = r.message_id
       AND m.sender_role IS DISTINCT FROM r.role;
$$;
COMMENT ON FUNCTION refresh_message_roles(text[]) IS 'Infers ticket_messages.sender_role of the given tickets from their guest, agents, collaborators, owner and closer. Called when messages or their ticket are written.';

-- Reply metrics from the conversation, one row per ticket whose messages were fetched.
CREATE VIEW ticket_reply_metrics AS
WITH ordered AS (
    SELECT m.ticket_id, m.created_at, m.sender_role, m.sender_name,
           -- Agent messages before this one: guest messages with the same count belong to
           -- one customer wait.
           count(*) FILTER (WHERE m.sender_role = 'agent') OVER (
               PARTITION BY m.ticket_id ORDER BY m.created_at, m.message_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS agents_before,
           -- The next agent message at or after this one.
           min(m.created_at) FILTER (WHERE m.sender_role = 'agent') OVER (
               PARTITION BY m.ticket_id ORDER BY m.created_at, m.message_id
               ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS next_agent_at,
           row_number() OVER (PARTITION BY m.ticket_id
                              ORDER BY m.created_at DESC, m.message_id DESC) AS from_last
      FROM ticket_messages m
     WHERE m.created_at IS NOT NULL
), waits AS (
    -- A customer wait starts at the first guest message after an agent's (or the first
    -- ever) and ends at the next agent message; later guest messages join the same wait.
    SELECT ticket_id, min(created_at) AS waiting_since, min(next_agent_at) AS next_agent_at
      FROM ordered
     WHERE sender_role = 'guest'
     GROUP BY ticket_id, agents_before
), per_ticket AS (
    SELECT o.ticket_id,
           count(*) AS messages,
           count(*) FILTER (WHERE o.sender_role = 'agent') AS agent_replies,
           count(*) FILTER (WHERE o.sender_role = 'guest') AS guest_messages,
           count(*) FILTER (WHERE o.sender_role = 'bot') AS bot_messages,
           count(*) FILTER (WHERE o.sender_role = 'unknown') AS unknown_sender_messages,
           min(o.created_at) FILTER (WHERE o.sender_role = 'agent') AS first_agent_reply_at,
           max(o.created_at) AS last_message_at,
           max(o.sender_role) FILTER (WHERE o.from_last = 1) AS last_message_by,
           max(o.sender_name) FILTER (WHERE o.from_last = 1) AS last_message_sender_name
      FROM ordered o GROUP BY o.ticket_id
), per_wait AS (
    SELECT w.ticket_id,
           floor(sum(EXTRACT(EPOCH FROM w.next_agent_at - w.waiting_since))
                 FILTER (WHERE w.next_agent_at IS NOT NULL))::bigint AS customer_wait_seconds,
           count(*) FILTER (WHERE w.next_agent_at IS NOT NULL) AS answered_waits,
           max(w.waiting_since) FILTER (WHERE w.next_agent_at IS NULL) AS awaiting_reply_since
      FROM waits w GROUP BY w.ticket_id
)
SELECT
    t.ticket_id,
    s.messages_fetched_at,
    COALESCE(p.messages, 0) AS messages,
    COALESCE(p.agent_replies, 0) AS agent_replies,
    COALESCE(p.guest_messages, 0) AS guest_messages,
    COALESCE(p.bot_messages, 0) AS bot_messages,
    COALESCE(p.unknown_sender_messages, 0) AS unknown_sender_messages,
    p.first_agent_reply_at,
    floor(EXTRACT(EPOCH FROM p.first_agent_reply_at - t.created_at))::bigint
        AS first_agent_reply_seconds_from_messages,
    f.first_reply_seconds AS first_reply_seconds_from_api,
    CASE WHEN f.is_closed AND COALESCE(p.agent_replies, 0) > 0 THEN
        CASE p.agent_replies WHEN 1 THEN 'one_touch' WHEN 2 THEN 'two_touch' ELSE 'multi_touch' END
    END AS touch_class,
    COALESCE(f.is_closed AND p.agent_replies = 1, false) AS is_one_touch,
    COALESCE(f.is_closed AND p.agent_replies = 2, false) AS is_two_touch,
    COALESCE(f.is_closed AND p.agent_replies > 2, false) AS is_multi_touch,
    COALESCE(w.customer_wait_seconds, 0) AS customer_wait_seconds,
    COALESCE(w.answered_waits, 0) AS answered_waits,
    w.awaiting_reply_since,
    p.last_message_at,
    p.last_message_by,
    p.last_message_sender_name,
    f.is_closed
FROM tickets t
JOIN ticket_sync_state s USING (ticket_id)
JOIN ticket_facts f USING (ticket_id)
LEFT JOIN per_ticket p USING (ticket_id)
LEFT JOIN per_wait w USING (ticket_id)
WHERE s.messages_fetched_at IS NOT NULL;

COMMENT ON VIEW ticket_reply_metrics IS 'Reply metrics computed from the conversation (ticket_messages), one row per ticket whose messages were fetched (deleted tickets left out). They sit beside the API''s own durations in ticket_facts: the _from_messages / _from_api suffixes say which is which.';
COMMENT ON COLUMN ticket_reply_metrics.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_reply_metrics.messages_fetched_at IS 'When the messages were last fetched completely.';
COMMENT ON COLUMN ticket_reply_metrics.messages IS 'Messages in the conversation.';
COMMENT ON COLUMN ticket_reply_metrics.agent_replies IS 'Messages sent by an agent (sender_role agent).';
COMMENT ON COLUMN ticket_reply_metrics.guest_messages IS 'Messages sent by the guest.';
COMMENT ON COLUMN ticket_reply_metrics.bot_messages IS 'Messages without a sender (bot or system).';
COMMENT ON COLUMN ticket_reply_metrics.unknown_sender_messages IS 'Messages from someone the ticket does not name (role unknown): not counted as replies or waits.';
COMMENT ON COLUMN ticket_reply_metrics.first_agent_reply_at IS 'First message sent by an agent.';
COMMENT ON COLUMN ticket_reply_metrics.first_agent_reply_seconds_from_messages IS 'SECONDS from ticket creation to the first agent message (from the conversation). Compare first_reply_seconds_from_api.';
COMMENT ON COLUMN ticket_reply_metrics.first_reply_seconds_from_api IS 'SECONDS, ticket_facts.first_reply_seconds: creation to the API''s agent_first_response_time.';
COMMENT ON COLUMN ticket_reply_metrics.touch_class IS 'one_touch, two_touch or multi_touch: a closed ticket resolved with 1, 2 or more agent replies; NULL while open or without agent replies.';
COMMENT ON COLUMN ticket_reply_metrics.is_one_touch IS 'Closed with exactly one agent reply.';
COMMENT ON COLUMN ticket_reply_metrics.is_two_touch IS 'Closed with exactly two agent replies.';
COMMENT ON COLUMN ticket_reply_metrics.is_multi_touch IS 'Closed with more than two agent replies.';
COMMENT ON COLUMN ticket_reply_metrics.customer_wait_seconds IS 'SECONDS the customer waited for agents in total: from each guest message that starts a wait (the first after an agent''s message, or the first ever) to the next agent message, summed. A wait not answered yet is not included (see awaiting_reply_since).';
COMMENT ON COLUMN ticket_reply_metrics.answered_waits IS 'Customer waits that an agent answered.';
COMMENT ON COLUMN ticket_reply_metrics.awaiting_reply_since IS 'The guest message still waiting for an agent''s reply; NULL when none is.';
COMMENT ON COLUMN ticket_reply_metrics.last_message_at IS 'When the last message was sent.';
COMMENT ON COLUMN ticket_reply_metrics.last_message_by IS 'Role of the last message''s sender: guest, agent, bot or unknown.';
COMMENT ON COLUMN ticket_reply_metrics.last_message_sender_name IS 'Name of the last message''s sender.';
COMMENT ON COLUMN ticket_reply_metrics.is_closed IS 'The ticket is closed now.';
