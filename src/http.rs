//! The daemon's HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (the process answers),
//! `/readyz` (the database answers, and every helpdesk is healthy: its last run did not fail
//! and nothing is stuck, [`crate::status::health`]; an unhealthy helpdesk is named), and the
//! webhook event path when `[events]` is configured (handled in [`crate::events`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::Store;

/// What the endpoints read.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// Outcome of the last finished cycle (None before the first).
    pub last_outcome: Arc<Mutex<Option<String>>>,
    /// The event path and its state, when events are configured.
    pub events: Option<(String, crate::events::EventState)>,
    /// The helpdesks and the health checks (`[health]`, [`crate::status::health`]); None
    /// skips them (and the per-helpdesk queue series).
    pub settings: Option<Arc<crate::config::Settings>>,
}

/// Every helpdesk's health now (also set on the `health_problems` metric); None when it could
/// not be read within 2 s or there are no settings to judge by.
async fn health_now(state: &HttpState) -> Option<Vec<crate::status::HelpdeskHealth>> {
    let settings = state.settings.as_ref()?;
    let read = crate::status::helpdesks_health(&state.store, settings);
    let health = tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()?
        .ok()?;
    for h in &health {
        let found: Vec<&str> = h.found.iter().map(|s| s.cause).collect();
        state
            .metrics
            .set_health(&h.helpdesk.id, &crate::status::HEALTH_CAUSES, &found);
    }
    Some(health)
}

/// Binds `listen` and serves until `shutdown`; returns the bound address (port 0 → a free one).
pub async fn serve(
    listen: SocketAddr,
    state: HttpState,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let events = state.events.clone();
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    if let Some((path, event_state)) = events {
        app = app.merge(
            Router::new()
                .route(&path, post(crate::events::receive))
                .layer(axum::extract::DefaultBodyLimit::max(
                    crate::events::MAX_BODY_BYTES,
                ))
                .with_state(event_state),
        );
    }
    let app = app.layer(axum::middleware::from_fn(within_request_timeout));
    tokio::spawn(accept_loop(listener, app, shutdown));
    Ok(addr)
}

/// The most connections held at once; more are closed at once (logged): slow or idle clients
/// cannot exhaust the process's file descriptors.
pub const MAX_CONNECTIONS: usize = 256;
/// A request's headers must arrive within this, else the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request, its body included, must be answered within this (408 otherwise).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A refusal or a timeout is logged at most this often (a flood must not flood the log).
const BITE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Accepts connections up to [`MAX_CONNECTIONS`], each with a header-read timeout, until
/// `shutdown` (then each connection finishes its request and closes).
async fn accept_loop(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // One log per kind of bite: one must not silence another.
    let (refused, timed_out) = (BiteLog::default(), Arc::new(BiteLog::default()));
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    refused.note(&format!("cannot accept a connection: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused.note(&format!(
                "HTTP connection limit reached ({MAX_CONNECTIONS}); closing new connections"
            ));
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let (shutdown, timed_out) = (shutdown.clone(), timed_out.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served
                && e.is_timeout()
            {
                timed_out.note(&format!(
                    "an HTTP client sent no complete headers within {HEADER_READ_TIMEOUT:?}; connection closed"
                ));
            }
        });
    }
}

/// Logs a protective measure that bit, at most once per [`BITE_LOG_EVERY`], with how many
/// times it bit meanwhile.
#[derive(Default)]
struct BiteLog {
    state: Mutex<(Option<std::time::Instant>, u64)>,
}

impl BiteLog {
    fn note(&self, what: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 += 1;
        if state.0.is_none_or(|at| at.elapsed() >= BITE_LOG_EVERY) {
            tracing::warn!(times = state.1, "{what}");
            *state = (Some(std::time::Instant::now()), 0);
        }
    }
}

/// Answers 408 when a request (its body included) takes longer than [`REQUEST_TIMEOUT`].
async fn within_request_timeout(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout_s = REQUEST_TIMEOUT.as_secs(),
                "an HTTP request was not complete in time; answered 408"
            );
            (StatusCode::REQUEST_TIMEOUT, "request timeout\n").into_response()
        }
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    // Queue depth is read at scrape time (one indexed count per helpdesk), bounded so a slow
    // database cannot hang the scrape; on timeout the last values are served.
    if let Some(settings) = &state.settings {
        let names = crate::status::helpdesk_names(settings);
        state
            .metrics
            .set_helpdesks(names.iter().map(|h| (h.id.as_str(), h.name.as_str())));
        for (n, h) in names.iter().enumerate() {
            let read = state
                .store
                .helpdesk_queue_counts(crate::status::queue_scope(h, n));
            if let Ok(Ok(counts)) = tokio::time::timeout(Duration::from_secs(2), read).await {
                state.metrics.set_queue(&h.id, &counts);
            }
        }
    }
    if let Ok(Ok(list_rows)) =
        tokio::time::timeout(Duration::from_secs(2), state.store.list_rows_state()).await
    {
        state.metrics.set_list_rows(&list_rows);
    }
    health_now(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let db = tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await;
    if !matches!(db, Ok(Ok(_))) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: database unreachable\n",
        )
            .into_response();
    }
    // Each unhealthy helpdesk named, one line per cause: `not ready: <cause>: helpdesk IT
    // (7000…2): <why>`.
    let lines: String = health_now(&state)
        .await
        .unwrap_or_default()
        .iter()
        .flat_map(|h| {
            h.found
                .iter()
                .map(move |s| format!("not ready: {}: {}: {}\n", s.cause, h.helpdesk, s.problem))
        })
        .collect();
    if !lines.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, lines).into_response();
    }
    // The process's own view, for a last cycle the database could not record.
    let last = state
        .last_outcome
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(outcome @ ("fatal" | "failed")) = last.as_deref() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the last cycle ended {outcome}\n"),
        )
            .into_response();
    }
    "ready\n".into_response()
}
