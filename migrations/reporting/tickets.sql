-- reporting.tickets: one row per ticket (deleted tickets left out). Default time column: created_at.
CREATE OR REPLACE VIEW reporting.tickets AS
SELECT
    -- keys
    f.ticket_id,
    f.helpdesk_id,
    f.guest_id,
    f.agent_owner_id,
    f.closed_by_id,
    -- times
    f.created_at,
    f.created_date,
    f.closed_at,
    f.closed_date,
    f.first_closed_at,
    f.updated_at,
    f.agent_entry_time,
    f.agent_first_response_time,
    f.agent_last_response_time,
    f.fetched_at,
    -- labels
    f.status,
    f.status_label,
    f.status_label_zh_cn,
    f.status_sort_order,
    f.is_closed,
    f.ticket_type,
    f.ticket_type_label,
    f.ticket_type_label_zh_cn,
    f.channel,
    f.channel_label,
    f.channel_label_zh_cn,
    f.solve,
    f.solve_label,
    f.solve_label_zh_cn,
    f.is_solved,
    f.score,
    f.score_label,
    f.score_label_zh_cn,
    f.is_rated,
    f.is_bot_only,
    f.history_complete,
    f.guest_name,
    f.agent_owner_name,
    f.closed_by_name,
    f.dissatisfaction_reason_en_us,
    f.dissatisfaction_reason_zh_cn,
    f.dissatisfaction_reason_ja_jp,
    f.business_calendar_id,
    p.content_source,
    p.tags_known,
    -- measures
    f.first_reply_seconds,
    f.first_reply_business_seconds,
    f.first_response_seconds,
    f.api_first_response_seconds,
    f.queue_wait_seconds,
    f.first_resolution_seconds,
    f.first_resolution_business_seconds,
    f.resolution_seconds,
    f.resolution_business_seconds,
    f.reopen_count,
    f.unsolved_age_seconds,
    f.agent_resolution_seconds_from_timestamps,
    f.api_agent_resolution_seconds,
    f.api_actual_processing_seconds,
    f.bot_service_seconds_from_timestamps,
    f.api_bot_service_seconds,
    f.agent_service_minutes_from_timestamps,
    f.api_agent_service_minutes,
    -- helpdesk (appended; helpdesk_id is among the keys above)
    COALESCE(hd.name, f.helpdesk_id) AS helpdesk_name
FROM public.ticket_facts f
LEFT JOIN public.ticket_provenance p USING (ticket_id)
LEFT JOIN public.helpdesks hd ON hd.helpdesk_id = f.helpdesk_id;

COMMENT ON VIEW reporting.tickets IS 'One row per ticket, labels joined; deleted tickets left out. Default time column: created_at (closed_at for resolution charts). Ids are text. Columns: keys, times, labels, measures; the deprecated aliases of public.ticket_facts are not here.';
SELECT reporting_copy_comments('reporting.tickets', 'public.ticket_provenance');
SELECT reporting_copy_comments('reporting.tickets', 'public.ticket_facts');
COMMENT ON COLUMN reporting.tickets.helpdesk_name IS 'The helpdesk''s display name (table helpdesks, config [[helpdesks]] name); its id while no name is registered.';
