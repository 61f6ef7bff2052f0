//! Prometheus metrics (the `prometheus-client` crate), served by `run` on `/metrics`.
//! Every name starts with `helpdesk_sync_`; `deploy/grafana-dashboard.json` charts them.
//!
//! Labels: what belongs to one helpdesk (its queue, cycles, tickets written, last success,
//! health causes, and the API requests made for it) carries `helpdesk` = the helpdesk id;
//! `helpdesk_info{helpdesk, name}` maps ids to display names. What the app shares (the tenant
//! token, rate-limit waits, latency by endpoint, webhook deliveries, list-row trust) has no
//! `helpdesk` label: the budget is per app, and an event's helpdesk is not trusted as a label
//! before it is known to be one of ours (a flood of made-up ids must not grow the series).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::{CycleReport, ListRowsState, QueueCounts};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The helpdesk the request was for (its id); empty for the app's own (token) requests.
    pub helpdesk: String,
    /// detail, list or token.
    pub endpoint: String,
    /// ok, a Feishu code (e.g. 154004), http_NNN, timeout or transport.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HelpdeskLabels {
    /// The helpdesk id (`helpdesk_id` of `[[helpdesks]]` or `feishu.helpdesk_id`).
    pub helpdesk: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    /// The helpdesk id.
    pub helpdesk: String,
    /// Its display name (`name` of `[[helpdesks]]`; the id when none is configured).
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// The helpdesk id.
    pub helpdesk: String,
    /// changed, unchanged, not_found, invalid or failed.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// The helpdesk id.
    pub helpdesk: String,
    /// known, due, failed, parked.
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CycleLabels {
    /// The helpdesk id.
    pub helpdesk: String,
    /// ok, interrupted, stalled, fatal, failed.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// queued, current, duplicate, ignored, unauthorized, malformed, error.
    pub outcome: String,
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    api_requests: Family<RequestLabels, Counter>,
    api_request_seconds: HistogramFamily,
    tickets_written: Family<ResultLabels, Counter>,
    queue_tickets: Family<StateLabels, Gauge>,
    cycles: Family<CycleLabels, Counter>,
    last_success: Family<HelpdeskLabels, Gauge<f64, AtomicU64>>,
    helpdesk_info: Family<InfoLabels, Gauge>,
    rate_limit_waits: Counter,
    token_refreshes: Counter,
    events: Family<OutcomeLabels, Counter>,
    list_field_checks: Family<FieldCheckLabels, Gauge>,
    list_field_trusted: Family<FieldLabels, Gauge>,
    list_rows_unverified: Gauge,
    health_problems: Family<CauseLabels, Gauge>,
    /// The learned pace of each endpoint whose limit is not published (`pace::Learner`).
    learned_rate: Family<EndpointLabels, Gauge<f64, AtomicU64>>,
    /// Its configured ceiling, beside it.
    learned_ceiling: Family<EndpointLabels, Gauge<f64, AtomicU64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FieldCheckLabels {
    /// A top-level ticket field (status, agents, ...).
    pub field: String,
    /// agreed, differed, missing.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FieldLabels {
    pub field: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    /// The helpdesk id.
    pub helpdesk: String,
    /// last_run_failed, discovery_stuck, tickets_failing, queue_behind, tickets_poisoned,
    /// conversations_failing.
    pub cause: String,
}

fn latency_histogram() -> Histogram {
    // 10 ms .. ~40 s
    Histogram::new(exponential_buckets(0.01, 2.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("helpdesk_sync");
        let m = Self {
            api_requests: Family::default(),
            api_request_seconds: Family::new_with_constructor(latency_histogram),
            tickets_written: Family::default(),
            queue_tickets: Family::default(),
            cycles: Family::default(),
            last_success: Family::default(),
            helpdesk_info: Family::default(),
            rate_limit_waits: Counter::default(),
            token_refreshes: Counter::default(),
            events: Family::default(),
            list_field_checks: Family::default(),
            list_field_trusted: Family::default(),
            list_rows_unverified: Gauge::default(),
            health_problems: Family::default(),
            learned_rate: Family::default(),
            learned_ceiling: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "api_requests",
            "Feishu API requests by helpdesk (empty for the app's token requests), endpoint and outcome (ok, a Feishu error code, http_NNN, timeout, transport)",
            m.api_requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "Feishu API request latency in seconds, by endpoint",
            m.api_request_seconds.clone(),
        );
        registry.register(
            "tickets_written",
            "Tickets processed by helpdesk and result (changed, unchanged, not_found, invalid, failed)",
            m.tickets_written.clone(),
        );
        registry.register(
            "queue_tickets",
            "Tickets in the queue by helpdesk and state (known, due, failed, parked)",
            m.queue_tickets.clone(),
        );
        registry.register(
            "cycles",
            "Finished sync cycles by helpdesk and outcome (ok, interrupted, stalled, fatal, failed)",
            m.cycles.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time when the helpdesk's last cycle finished ok",
            m.last_success.clone(),
        );
        registry.register(
            "helpdesk_info",
            "1 for each configured helpdesk: its id (helpdesk) and display name (name)",
            m.helpdesk_info.clone(),
        );
        registry.register(
            "rate_limit_waits",
            "Rate-limit answers (429 / 99991400) waited out",
            m.rate_limit_waits.clone(),
        );
        registry.register(
            "token_refreshes",
            "tenant_access_token requests (first fetch, refresh ahead of expiry, or after rejection)",
            m.token_refreshes.clone(),
        );
        registry.register(
            "events",
            "Webhook events by outcome (queued, current, duplicate, ignored, unauthorized, malformed, error)",
            m.events.clone(),
        );
        registry.register(
            "list_field_checks",
            "List rows compared with the detail of the same updated_at, by field and outcome (agreed, differed, missing)",
            m.list_field_checks.clone(),
        );
        registry.register(
            "list_field_trusted",
            "1 while list rows are trusted for the field, 0 once it differed from the detail",
            m.list_field_trusted.clone(),
        );
        registry.register(
            "list_rows_unverified",
            "Tickets whose stored content came from a list row and waits for its detail",
            m.list_rows_unverified.clone(),
        );
        registry.register(
            "health_problems",
            "1 while the helpdesk's copy is unhealthy this way (last_run_failed, discovery_stuck, tickets_failing, queue_behind, tickets_poisoned, conversations_failing; thresholds in [health]), else 0",
            m.health_problems.clone(),
        );
        registry.register(
            "learned_rate_per_second",
            "The pace learned for an endpoint whose limit Feishu does not publish (messages, catalog), requests per second",
            m.learned_rate.clone(),
        );
        registry.register(
            "learned_rate_ceiling_per_second",
            "The configured ceiling of that learned pace, requests per second",
            m.learned_ceiling.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// One API request made for `helpdesk` (its id; empty: the app's own) and how long it
    /// took; `outcome` is `ok` or the error's label (`ApiError::outcome_label`: a Feishu code,
    /// `http_NNN`, `timeout`, `transport`). Latency is by endpoint only: the API answers every
    /// helpdesk alike, and a histogram per helpdesk would multiply its buckets.
    pub fn observe_helpdesk_request(
        &self,
        helpdesk: &str,
        endpoint: &str,
        outcome: &str,
        seconds: f64,
    ) {
        self.api_requests
            .get_or_create(&RequestLabels {
                helpdesk: helpdesk.to_owned(),
                endpoint: endpoint.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.api_request_seconds
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_owned(),
            })
            .observe(seconds);
    }

    /// The learned pace of `endpoint` and its ceiling, requests per second.
    pub fn set_learned_rate(&self, endpoint: &str, rate: f64, ceiling: f64) {
        let labels = EndpointLabels {
            endpoint: endpoint.to_owned(),
        };
        self.learned_rate.get_or_create(&labels).set(rate);
        self.learned_ceiling.get_or_create(&labels).set(ceiling);
    }

    pub fn rate_limit_wait(&self) {
        self.rate_limit_waits.inc();
    }

    pub fn token_refresh(&self) {
        self.token_refreshes.inc();
    }

    /// One webhook delivery and what became of it.
    pub fn event(&self, outcome: &str) {
        self.events
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The configured helpdesks: `helpdesk_info{helpdesk, name} 1` each.
    pub fn set_helpdesks<'a>(&self, helpdesks: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (id, name) in helpdesks {
            self.helpdesk_info
                .get_or_create(&InfoLabels {
                    helpdesk: id.to_owned(),
                    name: name.to_owned(),
                })
                .set(1);
        }
    }

    /// A finished cycle of `helpdesk` (its id): its outcome, its tickets, and the success time
    /// when ok.
    pub fn observe_cycle(&self, helpdesk: &str, outcome: &str, report: Option<&CycleReport>) {
        self.cycles
            .get_or_create(&CycleLabels {
                helpdesk: helpdesk.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        if let Some(r) = report {
            let w = r.written;
            for (result, n) in [
                ("changed", w.changed),
                ("unchanged", w.unchanged),
                ("not_found", w.not_found),
                ("invalid", w.invalid),
                ("failed", w.failed),
            ] {
                self.tickets_written
                    .get_or_create(&ResultLabels {
                        helpdesk: helpdesk.to_owned(),
                        result: result.to_owned(),
                    })
                    .inc_by(n);
            }
        }
        if outcome == "ok" {
            self.last_success
                .get_or_create(&HelpdeskLabels {
                    helpdesk: helpdesk.to_owned(),
                })
                .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        }
    }

    /// The queue of `helpdesk` (its id) by state.
    pub fn set_queue(&self, helpdesk: &str, counts: &QueueCounts) {
        for (state, n) in [
            ("known", counts.known),
            ("due", counts.due_now),
            ("failed", counts.failed),
            ("parked", counts.parked),
        ] {
            self.queue_tickets
                .get_or_create(&StateLabels {
                    helpdesk: helpdesk.to_owned(),
                    state: state.to_owned(),
                })
                .set(n);
        }
    }

    /// The self-verification of list rows, as read from the database.
    pub fn set_list_rows(&self, state: &ListRowsState) {
        for f in &state.fields {
            for (outcome, n) in [
                ("agreed", f.agreed),
                ("differed", f.differed),
                ("missing", f.missing),
            ] {
                self.list_field_checks
                    .get_or_create(&FieldCheckLabels {
                        field: f.field.clone(),
                        outcome: outcome.to_owned(),
                    })
                    .set(n);
            }
            self.list_field_trusted
                .get_or_create(&FieldLabels {
                    field: f.field.clone(),
                })
                .set(i64::from(f.trusted));
        }
        self.list_rows_unverified.set(state.unverified_tickets);
    }

    /// Each of `causes` of `helpdesk` (its id) to 1 when it is `found`, else 0.
    pub fn set_health(&self, helpdesk: &str, causes: &[&str], found: &[&str]) {
        for &cause in causes {
            let on = found.contains(&cause);
            self.health_problems
                .get_or_create(&CauseLabels {
                    helpdesk: helpdesk.to_owned(),
                    cause: cause.to_owned(),
                })
                .set(i64::from(on));
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feishu::ApiError;

    #[test]
    fn series_are_named_and_labelled() {
        let m = Metrics::default();
        m.observe_helpdesk_request("71", "detail", "ok", 0.3);
        m.observe_helpdesk_request("71", "detail", &ApiError::Timeout.outcome_label(), 10.0);
        let not_found = crate::feishu::error::classify(404, Some(154004), "gone", None).unwrap();
        m.observe_helpdesk_request("72", "detail", &not_found.outcome_label(), 0.1);
        m.observe_helpdesk_request("", "token", "ok", 0.1);
        m.rate_limit_wait();
        m.token_refresh();
        m.set_helpdesks([("71", "IT"), ("72", "HR")]);
        m.observe_cycle("71", "ok", Some(&CycleReport::default()));
        m.observe_cycle("72", "fatal", None);
        m.set_queue(
            "72",
            &QueueCounts {
                known: 5,
                due_now: 2,
                failed: 1,
                parked: 0,
            },
        );
        m.set_health(
            "72",
            &["last_run_failed", "queue_behind"],
            &["last_run_failed"],
        );
        let text = m.encode();
        for line in [
            "helpdesk_sync_api_requests_total{helpdesk=\"71\",endpoint=\"detail\",outcome=\"ok\"} 1",
            "helpdesk_sync_api_requests_total{helpdesk=\"71\",endpoint=\"detail\",outcome=\"timeout\"} 1",
            "helpdesk_sync_api_requests_total{helpdesk=\"72\",endpoint=\"detail\",outcome=\"154004\"} 1",
            "helpdesk_sync_api_requests_total{helpdesk=\"\",endpoint=\"token\",outcome=\"ok\"} 1",
            "helpdesk_sync_api_request_duration_seconds_count{endpoint=\"detail\"} 3",
            "helpdesk_sync_rate_limit_waits_total 1",
            "helpdesk_sync_token_refreshes_total 1",
            "helpdesk_sync_helpdesk_info{helpdesk=\"71\",name=\"IT\"} 1",
            "helpdesk_sync_helpdesk_info{helpdesk=\"72\",name=\"HR\"} 1",
            "helpdesk_sync_cycles_total{helpdesk=\"71\",outcome=\"ok\"} 1",
            "helpdesk_sync_cycles_total{helpdesk=\"72\",outcome=\"fatal\"} 1",
            "helpdesk_sync_tickets_written_total{helpdesk=\"71\",result=\"changed\"} 0",
            "helpdesk_sync_queue_tickets{helpdesk=\"72\",state=\"due\"} 2",
            "helpdesk_sync_health_problems{helpdesk=\"72\",cause=\"last_run_failed\"} 1",
            "helpdesk_sync_health_problems{helpdesk=\"72\",cause=\"queue_behind\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(text.contains("helpdesk_sync_last_success_timestamp_seconds{helpdesk=\"71\"} "));
        assert!(!text.contains("helpdesk_sync_last_success_timestamp_seconds{helpdesk=\"72\"}"));
    }

    #[test]
    fn a_learned_pace_is_a_gauge_per_endpoint() {
        let m = Metrics::default();
        m.set_learned_rate("messages", 19.5, 50.0);
        m.set_learned_rate("catalog", 2.0, 20.0);
        let text = m.encode();
        for line in [
            "helpdesk_sync_learned_rate_per_second{endpoint=\"messages\"} 19.5",
            "helpdesk_sync_learned_rate_per_second{endpoint=\"catalog\"} 2.0",
            "helpdesk_sync_learned_rate_ceiling_per_second{endpoint=\"messages\"} 50.0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn list_row_verification_is_a_series_per_field() {
        use crate::domain::FieldAgreement;
        let m = Metrics::default();
        m.set_list_rows(&ListRowsState {
            fields: vec![FieldAgreement {
                field: "score".into(),
                agreed: 2,
                differed: 3,
                missing: 0,
                trusted: false,
            }],
            unverified_tickets: 7,
        });
        let text = m.encode();
        for line in [
            "helpdesk_sync_list_field_checks{field=\"score\",outcome=\"agreed\"} 2",
            "helpdesk_sync_list_field_checks{field=\"score\",outcome=\"differed\"} 3",
            "helpdesk_sync_list_field_trusted{field=\"score\"} 0",
            "helpdesk_sync_list_rows_unverified 7",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
