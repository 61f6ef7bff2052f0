-- The version stamp (`updated_at`) pairs a list row with its detail through the list's clock
-- offset; it is no longer compared field by field. Under an offset an older build counted it
-- as differing in every pair and stopped taking it from list rows: that verdict is dropped.
DELETE FROM list_field_agreement WHERE field = 'updated_at';
