-- The reporting schema: the BI contract (issue 24). Its views are definitions, one file each in
-- migrations/reporting/, re-applied by `migrate` after the versioned migrations whenever a file
-- changed (table sql_definitions). This migration creates what they need once.

CREATE SCHEMA IF NOT EXISTS reporting;
COMMENT ON SCHEMA reporting IS 'The BI contract of helpdesk-sync: one view per subject (tickets, status spans, time in status, daily stats, backlog, SLA, replies, messages, custom field values, tags, people, notes). Ids are text, every view has a default time column (its comment names it), columns go keys, times, labels, measures. Versioned like an API: names are only ever added. Read it as the role helpdesk_sync_reader.';

-- Bookkeeping of the re-applied definitions (migrations/reporting/*.sql).
CREATE TABLE sql_definitions (
    name text PRIMARY KEY,
    sha256 text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sql_definitions IS 'The definition files (migrations/reporting/*.sql) last applied by migrate, with their SHA-256: a file is applied again only when its text changed.';
COMMENT ON COLUMN sql_definitions.name IS 'File name under migrations/reporting/.';
COMMENT ON COLUMN sql_definitions.sha256 IS 'SHA-256 of the file text as applied.';
COMMENT ON COLUMN sql_definitions.applied_at IS 'When it was last applied.';

-- Copies the comments of same-named columns from a source relation to a reporting view: a
-- column keeps one definition, written once where it is computed (and copied again whenever
-- the definitions are applied, so an edit there reaches the view). Columns renamed, added or
-- meaning something else in the view get their own COMMENT in its file, after this call.
CREATE FUNCTION reporting_copy_comments(target regclass, source regclass) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    col record;
    copied integer := 0;
BEGIN
    FOR col IN
        SELECT t.attname, col_description(source, s.attnum) AS description
        FROM pg_attribute t
        JOIN pg_attribute s ON s.attrelid = source AND s.attname = t.attname
                           AND s.attnum > 0 AND NOT s.attisdropped
        WHERE t.attrelid = target AND t.attnum > 0 AND NOT t.attisdropped
          AND col_description(source, s.attnum) IS NOT NULL
          AND col_description(target, t.attnum) IS DISTINCT FROM col_description(source, s.attnum)
    LOOP
        EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', target, col.attname, col.description);
        copied := copied + 1;
    END LOOP;
    RETURN copied;
END
$$;
COMMENT ON FUNCTION reporting_copy_comments(regclass, regclass) IS 'Used by the reporting definitions: copies column comments from the view a reporting view reads (same-named columns).';

-- The read-only role for BI tools: USAGE on reporting and SELECT on its views, nothing else
-- (granted again after every apply of the definitions). Roles belong to the whole cluster, and
-- a database user without CREATEROLE cannot make one: then this is skipped with a notice, and
-- README "Connect your BI tool" says how an administrator makes it.
-- Another database of the same server may create it at the same moment: that is fine too.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'helpdesk_sync_reader') THEN
        CREATE ROLE helpdesk_sync_reader NOLOGIN;
        COMMENT ON ROLE helpdesk_sync_reader IS 'Read-only access to the reporting schema of helpdesk-sync (grant it to a BI login).';
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'helpdesk_sync_reader not created (this user may not create roles): %', SQLERRM;
    WHEN duplicate_object OR unique_violation THEN
        NULL;
END
$$;
