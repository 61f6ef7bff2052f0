//! helpdesk-sync keeps a PostgreSQL reporting copy of a Feishu (Lark) Helpdesk.
//!
//! # Layout
//! Data flows one way: API → wire types → domain rows → Postgres. The modules, in layers from the
//! bottom; a module imports only from its own layer or below (`tests/structure` checks it):
//!
//! 1. Foundations, importing nothing above them:
//!    - [`config`]: typed settings from `config.toml` + `HELPDESK_SYNC__*` env vars
//!      ([`config`]'s `file`, `secret` and `values` modules; `sla`: the `[sla]` calendars and
//!      targets); secrets redacted.
//!    - [`domain`]: strict row types ([`domain::TicketRecord`]), fetch outcomes, and the plain
//!      data several layers report ([`domain::report`]: a cycle's report, counts; the event keys;
//!      [`domain::listing`]: content provenance and the trust verified in list rows;
//!      [`domain::api_codes`]: Feishu's error codes, one constant each).
//!    - [`pace`]: the shared rate limiter, the learned pace of endpoints whose limit is not
//!      published, and the retry backoff policy.
//!    - [`metrics`]: Prometheus series (labels in, text out). [`telemetry`]: log setup.
//! 2. The outside world:
//!    - [`feishu`]: the Open API: [`feishu::auth`] (tenant token cache), [`feishu::client`]
//!      (requests, retries; `FeishuApp`, what every helpdesk of one app shares: the tenant token
//!      and one pacer per endpoint; `FeishuClient`, one helpdesk's handle), [`feishu::parse`] (answers to pages, tickets, tokens or errors; no
//!      I/O), [`feishu::error`] (the error policy table), [`feishu::wire`] (lenient JSON types).
//!    - [`normalize`]: pure conversion of one ticket's JSON into domain rows (units, epochs, quirks);
//!      [`normalize::listed`]: a list row laid over stored content, compared with its detail.
//!    - [`store`]: Postgres, and all of the SQL: connection and migrations,
//!      [`store::reporting`] (the `reporting` schema's view definitions, `migrations/reporting/`,
//!      and the read-only role), [`store::queue`] (known ids, claims), [`store::upsert`] (the
//!      queue's outcomes of a batch), [`store::write`] (the rows of changed tickets, in one
//!      transaction) and [`store::children`] (a ticket's child rows), [`store::history`]
//!      (versions, status transitions), [`store::discovery`] (scan positions, change detection),
//!      [`store::events`] (event receipts), [`store::listed`] (list rows written under a lock,
//!      their verification by details), [`store::messages`] (conversations), [`store::runs`]
//!      (`sync_runs`), [`store::lock`] (the helpdesk lock's advisory lock and fence),
//!      [`store::sla`] (SLA results refreshed on write, the full recompute after calendar or
//!      target edits, seeding `[sla]`), [`store::status`] (what `status` and `check` read),
//!      [`store::helpdesks`] (the helpdesks' names the reporting views show),
//!      [`store::summary`] (the demo's closing numbers), [`store::raw`] (stored JSON for
//!      `reprocess`), [`store::rates`] (paces learned where Feishu publishes no limit).
//! 3. The work:
//!    - [`discover`]: id sources: list-API discovery (windows, bisection, watermark; its `rows`
//!      step stores each listed ticket's content at once) and the operator's known-ids query.
//!    - [`sync`]: one cycle in named steps: [`sync::options`], the queue loop (`work`), a
//!      ticket's steps (`detail`), the batched [`sync::writer`], [`sync::runs`] (worker id,
//!      run records).
//!    - [`events`]: webhook deliveries: [`events::crypto`] (signature, AES), parsing and checks,
//!      [`events::endpoint`] (the handler that records and enqueues).
//!    - [`reprocess`]: rebuild the normalized tables from stored raw JSON (no API calls).
//! 4. The services:
//!    - [`scheduler`]: the `run` daemon: cron loop, [`scheduler::lock`] (one syncer per
//!      helpdesk: renewals, takeover, the send lease), [`scheduler::watch`] (heartbeat, systemd watchdog, stall watch), shutdown,
//!      the wake-up for webhook events.
//!    - [`http`]: `/metrics`, `/healthz`, `/readyz` and the event path for `run`.
//!    - [`status`]: the `status` and `check` commands (operator's view).
//!    - [`sim`]: the Feishu Helpdesk simulator used by `simulate`, `demo` and the tests.
//! 5. The entry points:
//!    - [`console`]: terminal progress bar and cycle summaries, shared by `cli` and `demo`.
//!    - [`cli`]: the command line (`migrate`, `enqueue`, `sync`, `run`, `status`, `check`,
//!      `reprocess`, `subscribe-events`, `simulate`, `demo`) and exit codes.
//!    - [`demo`]: the `demo` command: simulator + real pipeline into a local database of its own
//!      (made anew every run), and the config file it leaves.
//!
//! Modules only the crate uses are `pub(crate)`; the public ones are what the tests, benches,
//! fuzz targets and the binary use.

pub mod cli;
pub mod config;
pub(crate) mod console;
pub(crate) mod demo;
pub(crate) mod discover;
pub mod domain;
pub mod events;
pub mod feishu;
pub(crate) mod http;
pub(crate) mod metrics;
pub mod normalize;
pub(crate) mod pace;
pub mod reprocess;
pub(crate) mod scheduler;
pub mod sim;
pub(crate) mod status;
pub mod store;
pub mod sync;
pub(crate) mod telemetry;

/// The `application_name` of our database sessions (how operators spot us in `pg_stat_activity`).
pub const APP_NAME: &str = "helpdesk-sync";
