//! The daemon's HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (the process answers),
//! `/readyz` (the database answers, the last cycle did not fail, and nothing is stuck:
//! [`crate::status::stuck`]), and the webhook event
//! path when `[events]` is configured (handled in [`crate::events`]).

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
    /// For the stuck-state checks (`[health]`, [`crate::status::stuck`]); None skips them.
    pub settings: Option<Arc<crate::config::Settings>>,
}

/// The stuck states now (also set on the `health_problems` metric); None when they could not
/// be read within 2 s or there are no settings to judge by.
async fn stuck_now(state: &HttpState) -> Option<Vec<crate::status::Stuck>> {
    let settings = state.settings.as_ref()?;
    let read = crate::status::stuck(&state.store, settings);
    let stuck = tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()?
        .ok()?;
    let found: Vec<&str> = stuck.iter().map(|s| s.cause).collect();
    state
        .metrics
        .set_health(&crate::status::STUCK_CAUSES, &found);
    Some(stuck)
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
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the HTTP endpoint stopped");
        }
    });
    Ok(addr)
}

async fn metrics(State(state): State<HttpState>) -> Response {
    // Queue depth is read at scrape time (one indexed count), bounded so a slow database
    // cannot hang the scrape; on timeout the last values are served.
    if let Ok(Ok(counts)) =
        tokio::time::timeout(Duration::from_secs(2), state.store.queue_counts()).await
    {
        state.metrics.set_queue(&counts);
    }
    stuck_now(&state).await;
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
    let db = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(state.store.pool()),
    )
    .await;
    if !matches!(db, Ok(Ok(_))) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: database unreachable\n",
        )
            .into_response();
    }
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
    match stuck_now(&state).await {
        Some(stuck) if !stuck.is_empty() => {
            let lines: String = stuck
                .iter()
                .map(|s| format!("not ready: {}: {}\n", s.cause, s.problem))
                .collect();
            (StatusCode::SERVICE_UNAVAILABLE, lines).into_response()
        }
        _ => "ready\n".into_response(),
    }
}
