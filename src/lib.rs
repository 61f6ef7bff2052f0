//! helpdesk-sync keeps a PostgreSQL reporting copy of a Feishu (Lark) Helpdesk.
//!
//! # Layout
//! Data flows one way: API → wire types → domain rows → Postgres.
//!
//! - [`config`]: typed settings from `config.toml` + `HELPDESK_SYNC__*` env vars; secrets redacted.
//! - [`feishu`]: the Open API: [`feishu::auth`] (tenant token cache), [`feishu::client`]
//!   (requests, retries), [`feishu::error`] (the error policy table), [`feishu::wire`]
//!   (lenient JSON types).
//! - [`pace`]: the shared rate limiter and the retry backoff policy.
//! - [`normalize`]: pure conversion of one ticket's JSON into domain rows (units, epochs, quirks).
//! - [`domain`]: strict row types ([`domain::TicketRecord`]) and fetch outcomes.
//! - [`store`]: Postgres: connection and migrations, [`store::queue`] (known ids, claims),
//!   [`store::upsert`] (batched transactional writes), [`store::history`] (versions, status
//!   transitions), [`store::discovery`] (scan positions, change detection).
//! - [`discover`]: id sources: list-API discovery (windows, bisection, watermark) and the
//!   operator's known-ids query.
//! - [`sync`]: one cycle: claim due tickets, fetch concurrently, write in batches.
//! - [`reprocess`]: rebuild the normalized tables from stored raw JSON (no API calls).
//! - [`scheduler`]: the `run` daemon: cron loop, helpdesk lock, stall watch, shutdown, systemd,
//!   and the wake-up for webhook events.
//! - [`events`]: webhook events: signature, decryption, replay and duplicate checks, the
//!   endpoint that enqueues a ticket ([`store::events`] records it durably first).
//! - [`sim`]: the Feishu Helpdesk simulator used by `simulate`, `demo` and the tests.
//! - [`demo`]: the `demo` command: simulator + real pipeline into a local database.
//! - [`cli`]: the command line (`migrate`, `enqueue`, `sync`, `run`, `status`, `check`,
//!   `reprocess`, `simulate`, `demo`) and exit codes.
//! - [`telemetry`]: log setup. [`metrics`]: Prometheus series. [`http`]: `/metrics`,
//!   `/healthz`, `/readyz` for `run`.
//! - [`status`]: the `status` and `check` commands (operator's view).

pub mod cli;
pub mod config;
pub mod console;
pub mod demo;
pub mod discover;
pub mod domain;
pub mod events;
pub mod feishu;
pub mod http;
pub mod metrics;
pub mod normalize;
pub mod pace;
pub mod reprocess;
pub mod scheduler;
pub mod sim;
pub mod status;
pub mod store;
pub mod sync;
pub mod telemetry;

/// The `application_name` of our database sessions (how operators spot us in `pg_stat_activity`).
pub const APP_NAME: &str = "helpdesk-sync";
