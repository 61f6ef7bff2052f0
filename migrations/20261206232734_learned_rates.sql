-- Paces learned for endpoints whose limit Feishu does not publish (messages, the custom field
-- catalog; issue 25 item 2): a restarted daemon starts from what it learned instead of its
-- conservative default. Limits are per app, so the key is the app and the endpoint. Written
-- when the pace moves meaningfully (a cut, a tenth up or down), not on every request.
CREATE TABLE learned_rates (
    app_id text NOT NULL,
    endpoint text NOT NULL,
    rate_per_second double precision NOT NULL,
    limit_per_second double precision,
    ceiling_per_second double precision NOT NULL,
    last_cut_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, endpoint)
);
COMMENT ON TABLE learned_rates IS 'The pace learned per app and endpoint where Feishu publishes no limit (messages, catalog); a restart starts from it.';
COMMENT ON COLUMN learned_rates.app_id IS 'The Feishu app (cli_...) whose quota this is: limits are per app.';
COMMENT ON COLUMN learned_rates.endpoint IS 'messages or catalog (the metrics endpoint label).';
COMMENT ON COLUMN learned_rates.rate_per_second IS 'The learned pace, requests per second: where the next process starts.';
COMMENT ON COLUMN learned_rates.limit_per_second IS 'What the API accepted per second just before it last answered 429 (the estimate of its true limit; the pace stays a little below). NULL: never limited.';
COMMENT ON COLUMN learned_rates.ceiling_per_second IS 'The configured ceiling (feishu.<endpoint>_requests_per_second_ceiling) when this was written.';
COMMENT ON COLUMN learned_rates.last_cut_at IS 'When a 429 last cut the pace; NULL: never.';
COMMENT ON COLUMN learned_rates.updated_at IS 'When this row was last written.';
