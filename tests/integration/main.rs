//! Integration tests: the real binary against the simulator and a real Postgres.

mod analytics;
mod cli;
mod daemon;
mod discovery;
mod events;
mod harness;
mod helpdesks;
mod helpers;
mod hostile;
mod list_first;
mod messages;
mod observability;
mod operators;
mod pacing;
mod queue;
mod reliability;
mod sync;
