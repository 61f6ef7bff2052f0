-- reporting.custom_field_values: one row per custom field value of a ticket.
-- Default time column: ticket_created_at.
CREATE OR REPLACE VIEW reporting.custom_field_values AS
SELECT
    -- keys
    v.ticket_id,
    v.field_id,
    -- times
    f.created_at AS ticket_created_at,
    -- labels
    v.key_name,
    v.field_label,
    v.field_type,
    v.value,
    v.option_tag,
    v.option_label,
    v.option_path,
    v.option_level,
    v.position,
    v.in_catalog,
    -- helpdesk (appended)
    f.helpdesk_id,
    COALESCE(hd.name, f.helpdesk_id) AS helpdesk_name
FROM public.ticket_custom_field_values v
JOIN public.ticket_facts f USING (ticket_id)
LEFT JOIN public.helpdesks hd ON hd.helpdesk_id = f.helpdesk_id;

COMMENT ON VIEW reporting.custom_field_values IS 'One row per custom field value of a ticket, labelled from the catalog. Default time column: ticket_created_at (a value has no time of its own). Deleted tickets left out.';
SELECT reporting_copy_comments('reporting.custom_field_values', 'public.ticket_custom_field_values');
COMMENT ON COLUMN reporting.custom_field_values.ticket_created_at IS 'When the ticket was created (the default time column).';
COMMENT ON COLUMN reporting.custom_field_values.helpdesk_id IS 'The ticket''s helpdesk (decimal text; tickets.helpdesk_id).';
COMMENT ON COLUMN reporting.custom_field_values.helpdesk_name IS 'The helpdesk''s display name (table helpdesks, config [[helpdesks]] name); its id while no name is registered.';
