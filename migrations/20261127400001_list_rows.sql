-- List-first ingestion: listed tickets are stored with everything the list row carries, the
-- detail still comes and verifies them field by field.

-- Provenance of each ticket's stored content. Rows stored before this migration came from
-- details, so the defaults describe them.
ALTER TABLE tickets
    ADD COLUMN content_source    text NOT NULL DEFAULT 'detail'
        CHECK (content_source IN ('detail', 'list')),
    ADD COLUMN detail_fetched_at timestamptz,
    ADD COLUMN detail_updated_at timestamptz,
    ADD COLUMN tags_known        boolean NOT NULL DEFAULT true,
    ADD COLUMN listed_at         timestamptz,
    ADD COLUMN list_raw          jsonb;
UPDATE tickets SET detail_fetched_at = fetched_at, detail_updated_at = updated_at;

COMMENT ON COLUMN tickets.content_source IS '''detail'' when the stored content is the detail''s (the truth); ''list'' when it came from a list row (every field the list carries, overlaid on the last detail; tags as the last detail gave them) and the detail for that version has not arrived yet.';
COMMENT ON COLUMN tickets.detail_fetched_at IS 'When the detail whose content is (or was last) stored was fetched; NULL when no detail has been stored yet (content from the list only).';
COMMENT ON COLUMN tickets.detail_updated_at IS 'The updated_at of the last stored detail. A listed updated_at different from it queues the ticket for its detail.';
COMMENT ON COLUMN tickets.tags_known IS 'true once a detail gave the tags (list rows do not carry tags). While false, ticket_tags has no rows for the ticket because they are unknown, not because there are none.';
COMMENT ON COLUMN tickets.listed_at IS 'When a list row was last stored for the ticket.';
COMMENT ON COLUMN tickets.list_raw IS 'The list row as listed, kept until the detail of the same updated_at verifies it field by field (then NULL). NULL as well when the row was stored over nothing: raw is then the row itself.';
COMMENT ON COLUMN tickets.raw IS 'The ticket object exactly as the API returned it (data.ticket), including fields this version does not normalize. When content_source = ''list'': the list row overlaid on the last detail (fields the list lacks or is not trusted for keep the detail''s value).';

-- A version or transition recorded from a list row is upgraded in place by the detail of the
-- same updated_at (no second version, no transition that did not happen upstream).
ALTER TABLE ticket_versions
    ADD COLUMN content_source text NOT NULL DEFAULT 'detail'
        CHECK (content_source IN ('detail', 'list'));
ALTER TABLE ticket_status_history
    ADD COLUMN content_source text NOT NULL DEFAULT 'detail'
        CHECK (content_source IN ('detail', 'list')),
    ADD COLUMN source_updated_at timestamptz;
COMMENT ON COLUMN ticket_versions.content_source IS '''list'' for a version recorded from a list row; the detail of the same updated_at replaces it in place.';
COMMENT ON COLUMN ticket_status_history.content_source IS '''list'' for a transition recorded from a list row; the detail of the same updated_at confirms or replaces it.';
COMMENT ON COLUMN ticket_status_history.source_updated_at IS 'The ticket''s updated_at in the content that showed this transition (NULL for rows recorded before list-first ingestion).';

-- Self-verification: per top-level field of the ticket, how list rows compared with the detail
-- of the same updated_at. A field found to differ is no longer taken from list rows.
CREATE TABLE list_field_agreement (
    field               text PRIMARY KEY,
    agreed              bigint NOT NULL DEFAULT 0,
    differed            bigint NOT NULL DEFAULT 0,
    missing             bigint NOT NULL DEFAULT 0,
    trusted             boolean NOT NULL DEFAULT true,
    first_difference_at timestamptz,
    example_ticket_id   text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE list_field_agreement IS 'Self-verification of list rows: per top-level ticket field, how often the list row agreed with the detail of the same updated_at (tags are never compared: lists do not carry them). trusted = false once the field differed: it is no longer taken from list rows (persisted). missing counts details that had the field while the list row did not (such a field is never taken from list rows either).';
COMMENT ON COLUMN list_field_agreement.example_ticket_id IS 'The first ticket whose list row differed from its detail in this field.';

-- Where each ticket's content came from, for dashboards and operators.
CREATE VIEW ticket_provenance AS
SELECT t.ticket_id,
       t.content_source,
       t.tags_known,
       t.updated_at,
       t.detail_updated_at,
       t.detail_fetched_at,
       t.listed_at,
       (t.content_source = 'detail') AS is_verified,
       s.last_fetched_at AS last_detail_attempt_at
FROM tickets t
LEFT JOIN ticket_sync_state s USING (ticket_id)
WHERE t.deleted_at IS NULL;
COMMENT ON COLUMN ticket_provenance.ticket_id IS 'The ticket.';
COMMENT ON COLUMN ticket_provenance.content_source IS '''detail'' or ''list'': see tickets.content_source.';
COMMENT ON COLUMN ticket_provenance.tags_known IS 'false until a detail gave the ticket''s tags (list rows carry none).';
COMMENT ON COLUMN ticket_provenance.updated_at IS 'The ticket''s updated_at as stored (from whichever source).';
COMMENT ON COLUMN ticket_provenance.detail_updated_at IS 'The updated_at of the last stored detail (NULL: none yet).';
COMMENT ON COLUMN ticket_provenance.detail_fetched_at IS 'When the last stored detail was fetched (NULL: none yet).';
COMMENT ON COLUMN ticket_provenance.listed_at IS 'When a list row was last stored for it.';
COMMENT ON COLUMN ticket_provenance.is_verified IS 'true when the stored content is the detail''s.';
COMMENT ON COLUMN ticket_provenance.last_detail_attempt_at IS 'When the last detail fetch that succeeded or found the ticket gone ran (ticket_sync_state.last_fetched_at).';
COMMENT ON COLUMN list_field_agreement.field IS 'A top-level field of the ticket object (status, agents, customized_fields, ...).';
COMMENT ON COLUMN list_field_agreement.agreed IS 'Details whose value agreed with the list row of the same updated_at.';
COMMENT ON COLUMN list_field_agreement.differed IS 'Details whose value differed from the list row of the same updated_at.';
COMMENT ON COLUMN list_field_agreement.missing IS 'Details that had the field while the list row lacked it.';
COMMENT ON COLUMN list_field_agreement.trusted IS 'false once the field differed: no longer taken from list rows.';
COMMENT ON COLUMN list_field_agreement.first_difference_at IS 'When the field first differed.';
COMMENT ON COLUMN list_field_agreement.updated_at IS 'Last time a comparison was added.';
COMMENT ON VIEW ticket_provenance IS 'One row per ticket: whether its stored content is the detail''s (is_verified) or a list row''s still waiting for its detail, whether its tags are known, and when each source last gave it.';

-- Details still missing for list-stored tickets come first; this finds them cheaply.
CREATE INDEX tickets_list_content_idx ON tickets (ticket_id) WHERE content_source = 'list';
