-- A COMMENT on every column: Metabase, Grafana and Superset show them next to the data.

COMMENT ON COLUMN tickets.ticket_id IS 'Feishu ticket id (decimal text; exceeds 2^53, never a float).';
COMMENT ON COLUMN tickets.helpdesk_id IS 'The helpdesk the ticket belongs to.';
COMMENT ON COLUMN tickets.guest_id IS 'The person who opened the ticket (helpdesk_users.user_id, an open_id).';
COMMENT ON COLUMN tickets.created_at IS 'Ticket creation time (API epoch milliseconds).';
COMMENT ON COLUMN tickets.closed_by_id IS 'Who closed the ticket (helpdesk_users.user_id).';
COMMENT ON COLUMN tickets.agent_owner_id IS 'The agent owner, 主责客服 (helpdesk_users.user_id).';
COMMENT ON COLUMN tickets.dissatisfaction_reason_zh_cn IS 'Dissatisfaction reason, Chinese text.';
COMMENT ON COLUMN tickets.dissatisfaction_reason_en_us IS 'Dissatisfaction reason, English text.';
COMMENT ON COLUMN tickets.dissatisfaction_reason_ja_jp IS 'Dissatisfaction reason, Japanese text.';
COMMENT ON COLUMN tickets.agent_entry_time IS 'When the first agent joined (API epoch milliseconds).';
COMMENT ON COLUMN tickets.agent_first_response_time IS 'First agent reply (API epoch milliseconds).';
COMMENT ON COLUMN tickets.agent_last_response_time IS 'Last agent reply (API epoch milliseconds).';

COMMENT ON COLUMN helpdesk_users.user_id IS 'Feishu open_id (ou_...).';
COMMENT ON COLUMN helpdesk_users.name IS 'Display name, latest seen.';
COMMENT ON COLUMN helpdesk_users.email IS 'Email, latest seen (shown only with permission).';
COMMENT ON COLUMN helpdesk_users.avatar_url IS 'Avatar URL, latest seen.';
COMMENT ON COLUMN helpdesk_users.department IS 'Department name, latest seen (shown only with permission).';
COMMENT ON COLUMN helpdesk_users.city IS 'City, latest seen.';
COMMENT ON COLUMN helpdesk_users.country IS 'Country code, latest seen.';
COMMENT ON COLUMN helpdesk_users.first_seen_at IS 'When helpdesk-sync first stored this person.';

COMMENT ON COLUMN ticket_agents.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_agents.user_id IS 'helpdesk_users.user_id of an agent of the ticket.';
COMMENT ON COLUMN ticket_agents.position IS 'Order in the API''s agents list, from 0.';
COMMENT ON COLUMN ticket_collaborators.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_collaborators.user_id IS 'helpdesk_users.user_id of a collaborator.';
COMMENT ON COLUMN ticket_collaborators.position IS 'Order in the API''s collaborators list, from 0.';
COMMENT ON COLUMN tags.tag_id IS 'Feishu tag id.';
COMMENT ON COLUMN tags.name IS 'Tag name, latest seen.';
COMMENT ON COLUMN ticket_tags.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_tags.tag_id IS 'tags.tag_id.';
COMMENT ON COLUMN ticket_custom_fields.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_custom_fields.field_id IS 'Custom field id.';
COMMENT ON COLUMN ticket_custom_fields.key_name IS 'Custom field key name.';
COMMENT ON COLUMN ticket_custom_fields.display_name IS 'Custom field label as shown in the helpdesk.';
COMMENT ON COLUMN ticket_custom_fields.value IS 'The value as displayed (for drop-downs, the option''s display name).';
COMMENT ON COLUMN ticket_custom_fields.position IS 'Display position of the field.';
COMMENT ON COLUMN ticket_custom_fields.required IS 'Whether the field is required.';
COMMENT ON COLUMN ticket_custom_fields.editable IS 'Whether the field can be edited.';
COMMENT ON COLUMN ticket_comments.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_comments.ordinal IS 'Order in the API response, from 0.';
COMMENT ON COLUMN ticket_comments.comment_id IS 'Note id (exact bigint).';
COMMENT ON COLUMN ticket_comments.content IS 'Note text.';
COMMENT ON COLUMN ticket_comments.user_id IS 'Author id (exact bigint; a number, not an open_id).';
COMMENT ON COLUMN ticket_comments.user_name IS 'Author name.';
COMMENT ON COLUMN ticket_comments.user_avatar_url IS 'Author avatar URL.';

COMMENT ON COLUMN ticket_sync_state.ticket_id IS 'The ticket id (may not be in tickets yet).';
COMMENT ON COLUMN ticket_sync_state.first_enqueued_at IS 'When the id was first queued.';
COMMENT ON COLUMN ticket_sync_state.last_enqueued_at IS 'When the id was last queued or pulled forward.';
COMMENT ON COLUMN ticket_sync_state.priority IS 'Higher first: 10 explicit or new, 5 changed in the list, 0 routine refresh.';
COMMENT ON COLUMN ticket_sync_state.last_attempt_at IS 'When the last fetch started (claim time).';
COMMENT ON COLUMN ticket_sync_state.last_fetched_at IS 'When the API last answered with the ticket (or its deletion).';
COMMENT ON COLUMN ticket_sync_state.last_http_status IS 'HTTP status of the last failure (NULL after success).';
COMMENT ON COLUMN ticket_sync_state.last_error_code IS 'Feishu error code of the last failure, e.g. 154004, 155000.';
COMMENT ON COLUMN ticket_sync_state.last_error IS 'The last failure, in words.';
COMMENT ON COLUMN ticket_sync_state.last_attempt_count IS 'HTTP attempts the last fetch took (rate-limited ones included).';
COMMENT ON COLUMN ticket_sync_state.claimed_by IS 'host:pid:nonce of the worker holding the claim.';

COMMENT ON COLUMN discovery_state.helpdesk_id IS 'The helpdesk scanned.';
COMMENT ON COLUMN discovery_state.scan IS 'updated (incremental, by update time) or backfill (history, by create time).';
COMMENT ON COLUMN discovery_state.range_start IS 'Backfill: where it started (create time).';
COMMENT ON COLUMN discovery_state.range_end IS 'Backfill: where it ends (the moment it began).';
COMMENT ON COLUMN discovery_state.completed IS 'Backfill: finished.';
COMMENT ON COLUMN discovery_state.changed_at IS 'When this row last changed.';

COMMENT ON COLUMN ticket_versions.version_id IS 'Increasing; orders the versions of a ticket.';
COMMENT ON COLUMN ticket_versions.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_status_history.transition_id IS 'Increasing; orders the transitions of a ticket.';
COMMENT ON COLUMN ticket_status_history.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_status_history.from_status IS 'Status before; NULL on the first observation.';
COMMENT ON COLUMN ticket_status_history.to_status IS 'Status after (see ticket_status_codes).';

COMMENT ON COLUMN ticket_status_codes.code IS 'tickets.status value.';
COMMENT ON COLUMN ticket_status_codes.is_closed IS 'The status ends the ticket.';
COMMENT ON COLUMN ticket_status_codes.label_en_us IS 'English label.';
COMMENT ON COLUMN ticket_status_codes.label_zh_cn IS 'Chinese label.';
COMMENT ON COLUMN ticket_channel_codes.code IS 'tickets.channel value.';
COMMENT ON COLUMN ticket_channel_codes.label_en_us IS 'English label.';
COMMENT ON COLUMN ticket_channel_codes.label_zh_cn IS 'Chinese label.';
COMMENT ON COLUMN ticket_type_codes.code IS 'tickets.ticket_type value.';
COMMENT ON COLUMN ticket_type_codes.label_en_us IS 'English label.';
COMMENT ON COLUMN ticket_type_codes.label_zh_cn IS 'Chinese label.';
COMMENT ON COLUMN score_codes.code IS 'tickets.score value.';
COMMENT ON COLUMN score_codes.label_en_us IS 'English label.';
COMMENT ON COLUMN score_codes.label_zh_cn IS 'Chinese label.';
COMMENT ON COLUMN solve_codes.code IS 'tickets.solve value.';
COMMENT ON COLUMN solve_codes.is_solved IS 'The value means solved.';
COMMENT ON COLUMN solve_codes.label_en_us IS 'English label.';
COMMENT ON COLUMN solve_codes.label_zh_cn IS 'Chinese label.';
COMMENT ON COLUMN report_settings.only_row IS 'Always true: the table has one row.';
COMMENT ON COLUMN report_settings.timezone IS 'IANA time zone for calendar days in the views, e.g. Asia/Shanghai.';

COMMENT ON COLUMN ticket_facts_all.status IS 'Status code (see status_label).';
COMMENT ON COLUMN ticket_facts_all.ticket_type_label IS 'bot or human; unknown (N) for an unlisted code.';
COMMENT ON COLUMN ticket_facts_all.channel_label IS 'Channel label; other (N) for an unlisted code.';
COMMENT ON COLUMN ticket_facts_all.score_label IS 'Satisfaction label; unknown (N) for an unlisted code, NULL when not rated.';
COMMENT ON COLUMN ticket_time_in_status.ticket_id IS 'tickets.ticket_id.';
COMMENT ON COLUMN ticket_time_in_status.status IS 'Status code.';
COMMENT ON COLUMN ticket_time_in_status.status_label IS 'English label of the status.';
COMMENT ON COLUMN daily_ticket_stats.tickets_created IS 'Tickets created that day (deleted ones excluded).';
COMMENT ON COLUMN daily_ticket_stats.tickets_closed IS 'Tickets closed that day.';
COMMENT ON COLUMN daily_ticket_stats.score_neutral IS 'Tickets closed that day rated 2 (neutral).';
COMMENT ON COLUMN daily_ticket_stats.score_satisfied IS 'Tickets closed that day rated 3 (satisfied).';

-- Pass-through view columns carry the comment of the column they show; the filtered view
-- carries the unfiltered one's. Copied here so the two can never drift apart.
DO $$
DECLARE
    col record;
BEGIN
    FOR col IN
        SELECT v.attname, col_description('tickets'::regclass, t.attnum) AS description
        FROM pg_attribute v
        JOIN pg_attribute t ON t.attrelid = 'tickets'::regclass AND t.attname = v.attname
        WHERE v.attrelid = 'ticket_facts_all'::regclass AND v.attnum > 0
          AND col_description('ticket_facts_all'::regclass, v.attnum) IS NULL
    LOOP
        EXECUTE format('COMMENT ON COLUMN ticket_facts_all.%I IS %L', col.attname, col.description);
    END LOOP;
    FOR col IN
        SELECT attname, col_description('ticket_facts_all'::regclass, attnum) AS description
        FROM pg_attribute WHERE attrelid = 'ticket_facts_all'::regclass AND attnum > 0
    LOOP
        EXECUTE format('COMMENT ON COLUMN ticket_facts.%I IS %L', col.attname, col.description);
    END LOOP;
END $$;
