//! The terminal: a progress bar while a command works (only on a terminal) and the summary of
//! a cycle a person reads at a glance. Used by `cli` and `demo`.

use std::io::IsTerminal;

use crate::domain::{CycleReport, Progress};

/// One paragraph a person can read at a glance.
pub fn summarize(r: &CycleReport) -> String {
    let w = &r.written;
    // Every fetched ticket counts once, in exactly one of the kinds listed.
    let fetched = w.changed + w.unchanged + w.older_skipped + w.not_found + w.invalid + w.failed;
    let secs = r.elapsed.as_secs_f64();
    let mut text = format!(
        "{} due, {} processed in {:.1}s: {} new or changed, {} unchanged, {} older than stored \
         (kept the stored version), {} deleted upstream, {} invalid id, {} failed (retried later)",
        r.due_at_start,
        fetched,
        secs,
        w.changed,
        w.unchanged,
        w.older_skipped,
        w.not_found,
        w.invalid,
        w.failed
    );
    text.push_str(&format!(
        "\nAPI: {} detail requests ({:.1}/s), {} list requests, {} token requests, {} rate-limited answers, {} retries",
        r.api.detail_requests,
        if secs > 0.0 { r.api.detail_requests as f64 / secs } else { 0.0 },
        r.api.list_requests,
        r.api.token_requests,
        r.api.rate_limited,
        r.api.retries
    ));
    if let Some(d) = &r.discovery {
        text.push_str(&format!(
            "\ndiscovery: {} list pages, {} tickets listed, {} stored from list rows, {} queued ({} new){}{}{}",
            d.pages,
            d.listed,
            d.stored_from_list,
            d.queued,
            d.new,
            if d.skipped > 0 {
                format!(", {} unreadable items skipped", d.skipped)
            } else {
                String::new()
            },
            if d.splits > 0 {
                format!(", {} windows split at the 10,000-row cap", d.splits)
            } else {
                String::new()
            },
            if d.backfill_completed {
                ", history backfill complete"
            } else {
                ""
            },
        ));
    }
    if w.messages_synced + w.messages_failed > 0 {
        text.push_str(&format!(
            "\nconversations: {} tickets read ({} messages new or changed, {} requests), {} failed (retried later)",
            w.messages_synced, w.messages_stored, r.api.message_requests, w.messages_failed
        ));
    }
    if let Some(fields) = r.catalog_fields {
        text.push_str(&format!("\ncustom field catalog: {fields} fields"));
    }
    for error in &r.report_errors {
        text.push_str(&format!("\nnot refreshed: {error}"));
    }
    if let Some(error) = &r.discovery_error {
        text.push_str(&format!("\ndiscovery incomplete: {error}"));
    }
    if let Some(added) = r.from_query {
        text.push_str(&format!("\nknown_ids_query: {added} new ids"));
    }
    if r.released > 0 {
        text.push_str(&format!(
            "\n{} claimed ticket(s) were not processed and stay queued for the next cycle",
            r.released
        ));
    }
    if r.interrupted {
        text.push_str("\nstopped early on request");
    }
    text
}

/// A progress bar on a terminal; nothing otherwise.
pub struct ProgressDisplay {
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressDisplay {
    pub fn new(label: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} tickets  {per_sec}  ETA {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        Self { bar: Some(bar) }
    }

    pub fn update(&self, p: Progress) {
        if let Some(bar) = &self.bar {
            bar.set_length(p.due_at_start.max(p.done));
            bar.set_position(p.done);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
