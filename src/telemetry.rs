//! Logging: `tracing`, filtered by `RUST_LOG`: readable on a terminal, JSON lines on any other
//! stderr (files, pipes, tests), native journald entries when stderr is the journal (a systemd
//! service: priority by level, fields as journal fields); or as `--log-format` says.

use std::fmt::Display;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;
use tracing_subscriber::fmt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Pretty on a terminal, journald under systemd, JSON otherwise.
    Auto,
    Pretty,
    Json,
}

/// Where `init` sent the log, so the command's final error goes the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    Pretty,
    Json,
    Journald,
}

/// Target of the command's final error: enabled whatever `RUST_LOG` says (even `off`), as the
/// plain `error:` line it replaces always was.
const EXIT_TARGET: &str = "helpdesk_sync::exit";

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is unset.
pub fn init(format: LogFormat, default_filter: &str) -> LogOutput {
    let exit_directive: Result<Directive, _> = format!("{EXIT_TARGET}=error").parse();
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    if let Ok(directive) = exit_directive {
        filter = filter.add_directive(directive);
    }
    let journald = match format {
        LogFormat::Auto if stderr_is_journal() => journald_layer(),
        _ => None,
    };
    let output = match format {
        _ if journald.is_some() => LogOutput::Journald,
        LogFormat::Json => LogOutput::Json,
        LogFormat::Pretty => LogOutput::Pretty,
        LogFormat::Auto if std::io::stderr().is_terminal() => LogOutput::Pretty,
        LogFormat::Auto => LogOutput::Json,
    };
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests) keeps the first subscriber.
    let _ = match (output, journald) {
        (LogOutput::Journald, Some(layer)) => registry.with(layer).try_init(),
        (LogOutput::Pretty, _) => registry
            .with(fmt::layer().with_writer(std::io::stderr).compact())
            .try_init(),
        _ => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .json()
                    .flatten_event(true),
            )
            .try_init(),
    };
    output
}

/// Reports the error that ends the command, in the log's own format: one JSON line, or a
/// journal entry at priority 3, or `error: ...` on a terminal.
pub fn exit_error(output: LogOutput, error: &dyn Display) {
    match output {
        LogOutput::Pretty => eprintln!("error: {error}"),
        LogOutput::Json | LogOutput::Journald => {
            tracing::error!(target: EXIT_TARGET, "{error}")
        }
    }
}

/// systemd sets `JOURNAL_STREAM=DEV:INODE` for the stream it connects to the journal; stderr
/// is that stream unless it was redirected (systemd.exec(5), "$JOURNAL_STREAM").
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, inode)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(inode)) = (dev.parse::<u64>(), inode.parse::<u64>()) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == inode)
}

/// Entries with syslog priorities (INFO → 6, WARN → 4, ERROR → 3, so `journalctl -p warning`
/// works) and each field as its own journal field, unprefixed (`ticket_id` → `TICKET_ID`).
/// None when journald cannot be reached: stderr (the journal stream) gets JSON lines then.
fn journald_layer() -> Option<tracing_journald::Layer> {
    use tracing_journald::{Priority, PriorityMappings};
    let layer = tracing_journald::layer().ok()?;
    Some(
        layer
            .with_field_prefix(None)
            .with_priority_mappings(PriorityMappings {
                info: Priority::Informational,
                debug: Priority::Debug,
                ..PriorityMappings::new()
            }),
    )
}

/// An error and its causes on one line (`context: cause: cause`), each said once: sqlx's
/// database error repeats its cause's text (and Postgres's own source line, `at line 948`), so a
/// plain `{:#}` shows it twice.
pub struct ErrorChain<'a>(pub &'a anyhow::Error);

impl Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut said: Vec<String> = Vec::new();
        for cause in self.0.chain() {
            let text = match cause.downcast_ref::<sqlx::Error>() {
                Some(sqlx::Error::Database(db)) => db.message().to_owned(),
                _ => cause.to_string(),
            };
            // The database error's own cause: the same message, with Postgres's source line.
            if said.last().is_some_and(|last| {
                last.ends_with(&text)
                    || text
                        .strip_prefix(last.as_str())
                        .is_some_and(|rest| rest.starts_with(" at line "))
            }) {
                continue;
            }
            said.push(text);
        }
        f.write_str(&said.join(": "))
    }
}
