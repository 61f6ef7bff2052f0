//! The detail step of a ticket's work: `GET /tickets/:id`, the error policy mapped to an
//! outcome, the body normalized into rows. What it returns goes to the writer.

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::CycleOptions;
use crate::domain::{Failure, TicketId, TicketOutcome};
use crate::feishu::{ApiError, Disposition, FeishuClient};
use crate::normalize::normalize_ticket;

/// What one step of a ticket's work came to, before it goes to the writer.
pub(super) enum Fetched {
    Outcome(TicketOutcome),
    /// The messages step's outcome.
    Messages(crate::domain::MessagesOutcome),
    /// Credentials rejected: the cycle stops taking work.
    Fatal(ApiError),
    /// Stopped while waiting: nothing to record; the ticket stays queued.
    Abandoned,
}

/// Fetches and normalizes one ticket, mapping the error policy to an outcome.
pub(super) async fn fetch_detail(
    client: &FeishuClient,
    id: TicketId,
    options: &CycleOptions,
    stop: &CancellationToken,
) -> Fetched {
    let fetch = client.fetch_ticket(&id, stop).await;
    let attempts = fetch.attempts;
    match fetch.result {
        Ok(raw) => normalized(id, &raw, attempts, options),
        Err(error) => failed(id, error, attempts),
    }
}

/// A ticket the API returned: its rows, due again after the open or closed refresh.
fn normalized(id: TicketId, raw: &str, attempts: u32, options: &CycleOptions) -> Fetched {
    match normalize_ticket(&id, raw, Utc::now()) {
        Ok(normalized) => {
            for warning in &normalized.warnings {
                tracing::warn!(ticket_id = %id, "{warning}");
            }
            let refresh_after = if normalized.record.is_open() {
                options.open_refresh
            } else {
                options.closed_refresh
            };
            Fetched::Outcome(TicketOutcome::Fetched {
                record: Box::new(normalized.record),
                refresh_after,
                attempts,
            })
        }
        Err(error) => {
            tracing::warn!(ticket_id = %id, error = %error, "unusable ticket body; retried in a later cycle");
            Fetched::Outcome(TicketOutcome::Failed {
                ticket_id: id.into_string(),
                failure: Failure {
                    http_status: Some(200),
                    code: Some(0),
                    message: error.to_string(),
                    permanent: true,
                },
                attempts,
            })
        }
    }
}

/// A fetch that ended in an error, after the client's retries: what the policy makes of it.
fn failed(id: TicketId, error: ApiError, attempts: u32) -> Fetched {
    let failure = Failure {
        http_status: error.http_status(),
        code: error.code(),
        message: error.to_string(),
        // A 200 whose body is unusable after every retry: the API will answer the same.
        permanent: matches!(
            error,
            ApiError::BadBody {
                http_status: 200,
                ..
            } | ApiError::TooLarge { .. }
        ),
    };
    let ticket_id = id.into_string();
    Fetched::Outcome(match error.disposition() {
        Disposition::Fatal | Disposition::RefreshTokenOnce => return Fetched::Fatal(error),
        Disposition::Abandon => return Fetched::Abandoned,
        Disposition::MarkDeleted => {
            tracing::info!(ticket_id = %ticket_id, "ticket deleted upstream; rows kept, deleted_at set");
            TicketOutcome::NotFound {
                ticket_id,
                error: failure.message,
                attempts,
            }
        }
        Disposition::MarkInvalid => {
            tracing::warn!(ticket_id = %ticket_id, status = failure.http_status, code = failure.code, "the API calls this ticket id invalid; parked until enqueued again");
            TicketOutcome::InvalidId {
                ticket_id,
                failure,
                attempts,
            }
        }
        Disposition::WaitForRateLimit | Disposition::RetryWithBackoff | Disposition::FailTicket => {
            tracing::warn!(ticket_id = %ticket_id, status = failure.http_status, code = failure.code, attempt = attempts, error = %failure.message, "fetch failed; retried in a later cycle");
            TicketOutcome::Failed {
                ticket_id,
                failure,
                attempts,
            }
        }
    })
}
