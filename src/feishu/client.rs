//! The Feishu HTTP client: auth headers, pacing, retries, and mapping responses to errors.
//!
//! Layering, outermost first: retry loop → shared rate limiter → token → one HTTP request
//! (with its own timeout) → classification.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::auth::TokenCache;
use super::error::{ApiError, Disposition};
use super::parse::{
    CatalogPage, ListPage, MessagesPage, check_envelope, parse_catalog_response,
    parse_list_response, parse_messages_response, parse_ticket_response, parse_token_response,
    plain_body,
};
use crate::config::{Credentials, FeishuSettings};
use crate::domain::{ClientStatsSnapshot, TicketId};
use crate::metrics::Metrics;
use crate::pace::{
    Grant, LearnSettings, LearnedRate, Pacer, RETRY_BASE, RETRY_CAP, SendLease, backoff_delay,
};

pub const TOKEN_PATH: &str = "/open-apis/auth/v3/tenant_access_token/internal";
pub const TICKETS_PATH: &str = "/open-apis/helpdesk/v1/tickets";
pub const EVENTS_SUBSCRIBE_PATH: &str = "/open-apis/helpdesk/v1/events/subscribe";
pub const CATALOG_PATH: &str = "/open-apis/helpdesk/v1/ticket_customized_fields";

/// The catalog endpoint's page size cap.
pub const CATALOG_PAGE_SIZE: u32 = 100;
/// The messages endpoint's page size cap.
pub const MESSAGES_PAGE_SIZE: u32 = 200;

/// The endpoints whose pace is learned (their limits are not published), by metrics label.
pub const LEARNED_ENDPOINTS: [&str; 2] = ["messages", "catalog"];

/// The helpdesk events `subscribe-events` asks for (type, subtype).
pub const TICKET_EVENT_SUBSCRIPTIONS: [(&str, &str); 3] = [
    ("helpdesk.ticket", "ticket.created_v1"),
    ("helpdesk.ticket", "ticket.updated_v1"),
    ("helpdesk.ticket_message", "ticket_message.created_v1"),
];
pub const HELPDESK_AUTH_HEADER: &str = "X-Lark-Helpdesk-Authorization";

/// The most time one ticket may spend waiting out rate limits in a cycle before it counts as failed.
pub const RATE_LIMIT_BUDGET: Duration = Duration::from_secs(600);

/// Counters a cycle reports (and, later, metrics export).
#[derive(Debug, Default)]
pub struct ClientStats {
    pub detail_requests: AtomicU64,
    pub list_requests: AtomicU64,
    pub catalog_requests: AtomicU64,
    pub message_requests: AtomicU64,
    pub token_requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub token_invalidations: AtomicU64,
    pub retries: AtomicU64,
}

/// Which time field a list query filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    Updated,
    Created,
}

/// One list request: a time window (epoch ms, both ends inclusive) and a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    pub field: TimeField,
    pub start_ms: i64,
    pub end_ms: i64,
    /// From 1.
    pub page: u32,
    /// At most [`MAX_PAGE_SIZE`].
    pub page_size: u32,
}

/// The API's page size cap for `GET /tickets`.
pub const MAX_PAGE_SIZE: u32 = 200;

/// The outcome of fetching one ticket, after retries.
#[derive(Debug)]
pub struct TicketFetch {
    /// The `data.ticket` object as JSON text, or the final error.
    pub result: Result<String, ApiError>,
    /// HTTP attempts made (rate-limited ones included).
    pub attempts: u32,
}

/// One call's progress through the retry policy.
struct Call<'a> {
    endpoint: &'static str,
    ticket_id: Option<&'a str>,
    /// HTTP attempts made (rate-limited ones included).
    attempts: u32,
    /// Attempts that failed retryably (bounded by `max_attempts`).
    failed_attempts: u32,
    /// Time spent waiting out rate limits (bounded by [`RATE_LIMIT_BUDGET`]).
    rate_limited_for: Duration,
    token_refreshed: bool,
    /// The pacer's grant for the attempt in progress (its outcome is reported against it).
    grant: Option<Grant>,
}

/// What every helpdesk of one Feishu app shares, because Feishu counts its limits per app
/// (per tenant, per endpoint): one HTTP connection pool, one tenant token, one pacer per
/// endpoint. Each helpdesk sends through its own [`FeishuClient`] made by
/// [`FeishuClient::for_helpdesk`]; the sum of their requests keeps to the pacers' rates.
pub struct FeishuApp {
    /// The connection pool every helpdesk's requests go through.
    http: reqwest::Client,
    /// `https://open.feishu.cn` (or the simulator).
    base_url: reqwest::Url,
    /// The app's tenant token, fetched once for every helpdesk.
    tokens: TokenCache,
    /// `GET /tickets/:id`, for every helpdesk together (documented 10/s per app).
    detail_pacer: Arc<Pacer>,
    /// `GET /tickets` and the event subscription (50/s and 1000/min per app).
    list_pacer: Arc<Pacer>,
    /// The custom field catalog's pages: a learned pace (`pace::Learner`), its limit is not
    /// published.
    catalog_pacer: Pacer,
    /// Conversations (`GET /tickets/:id/messages`): a learned pace, as the catalog's.
    message_pacer: Pacer,
    /// Attempts per call for retryable failures (`feishu.max_attempts`).
    max_attempts: u32,
    /// The largest response body read (`feishu.max_response_bytes`).
    max_response_bytes: usize,
}

impl std::fmt::Debug for FeishuApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeishuApp")
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl FeishuApp {
    /// The shared part for `settings`' app. reqwest is built without a default TLS crypto
    /// provider: the process must have installed one (`rustls::crypto::ring::default_provider()
    /// .install_default()`; `cli::main` does, before any command runs), else this panics.
    pub fn new(settings: &FeishuSettings) -> anyhow::Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(settings.max_in_flight)
            .user_agent(concat!("helpdesk-sync/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(Self {
            http,
            base_url: settings.base_url.clone(),
            tokens: TokenCache::default(),
            detail_pacer: Arc::new(Pacer::per_second(settings.detail_requests_per_second)),
            list_pacer: Arc::new(Pacer::with_minute_cap(
                settings.list_requests_per_second,
                Some(settings.list_requests_per_minute),
            )),
            catalog_pacer: Pacer::learned(LearnSettings {
                start: settings.catalog_requests_per_second,
                ceiling: settings.catalog_requests_per_second_ceiling,
            }),
            message_pacer: Pacer::learned(LearnSettings {
                start: settings.message_requests_per_second,
                ceiling: settings.message_requests_per_second_ceiling,
            }),
            max_attempts: settings.max_attempts,
            max_response_bytes: settings.max_response_bytes,
        }))
    }
}

/// One helpdesk's handle on the app ([`FeishuApp`]): its authorization header, its counters,
/// and the permission to send its helpdesk lock gives ([`SendLease`]).
pub struct FeishuClient {
    /// The part every helpdesk of the app shares (token, pacers, connections).
    app: Arc<FeishuApp>,
    /// The app's and this helpdesk's credentials (the token request; redaction).
    credentials: Credentials,
    /// `base64(helpdesk_id:helpdesk_token)`, marked sensitive so `Debug` never shows it.
    helpdesk_auth: HeaderValue,
    /// This helpdesk's requests, for its cycle reports.
    stats: ClientStats,
    /// Prometheus metrics, when the process serves them (`run` with `[http] listen`).
    metrics: Option<Arc<Metrics>>,
    /// Checked right before each request: a syncer whose helpdesk lock lapsed sends nothing.
    lease: SendLease,
}

impl FeishuClient {
    /// A client for one helpdesk with an app of its own (one helpdesk, tests, `check`).
    /// Needs a TLS crypto provider installed, as [`FeishuApp::new`] says.
    pub fn new(settings: &FeishuSettings, credentials: Credentials) -> anyhow::Result<Self> {
        Self::for_helpdesk(FeishuApp::new(settings)?, credentials)
    }

    /// `credentials`' helpdesk sending through `app`, whose token and pacers it shares with
    /// every other helpdesk made from the same app.
    pub fn for_helpdesk(app: Arc<FeishuApp>, credentials: Credentials) -> anyhow::Result<Self> {
        let helpdesk_auth = helpdesk_auth_value(&credentials)?;
        Ok(Self {
            app,
            credentials,
            helpdesk_auth,
            stats: ClientStats::default(),
            metrics: None,
            lease: SendLease::default(),
        })
    }

    /// The shared part, to make the other helpdesks' clients from.
    pub fn app(&self) -> &Arc<FeishuApp> {
        &self.app
    }

    /// The helpdesk this client sends for.
    pub fn helpdesk_id(&self) -> &str {
        &self.credentials.helpdesk_id
    }

    /// Sends only while `lease` is valid (the helpdesk lock's, see `scheduler::lock`).
    pub fn with_lease(mut self, lease: SendLease) -> Self {
        self.lease = lease;
        self
    }

    /// Records every request in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn observe(&self, endpoint: &str, result: Result<(), &ApiError>, started: std::time::Instant) {
        if let Some(m) = &self.metrics {
            let outcome = result.map_or_else(ApiError::outcome_label, |()| "ok".to_owned());
            // The token is the app's; every other request is for this client's helpdesk.
            let helpdesk = match endpoint {
                "token" => "",
                _ => self.credentials.helpdesk_id.as_str(),
            };
            m.observe_helpdesk_request(
                helpdesk,
                endpoint,
                &outcome,
                started.elapsed().as_secs_f64(),
            );
        }
    }

    /// Exports a learned pace to `/metrics` after each of its answers.
    fn observe_learned(&self, endpoint: &str, pacer: &Pacer) {
        if let (Some(m), Some(learned)) = (&self.metrics, pacer.learned_rate()) {
            m.set_learned_rate(endpoint, learned.rate, learned.ceiling);
        }
    }

    pub fn stats(&self) -> ClientStatsSnapshot {
        let s = &self.stats;
        ClientStatsSnapshot {
            detail_requests: s.detail_requests.load(Ordering::Relaxed),
            list_requests: s.list_requests.load(Ordering::Relaxed),
            catalog_requests: s.catalog_requests.load(Ordering::Relaxed),
            message_requests: s.message_requests.load(Ordering::Relaxed),
            token_requests: s.token_requests.load(Ordering::Relaxed),
            rate_limited: s.rate_limited.load(Ordering::Relaxed),
            token_invalidations: s.token_invalidations.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
        }
    }

    /// The app these paces belong to (limits are per app): the key learned paces are stored under.
    pub fn app_id(&self) -> &str {
        &self.credentials.app_id
    }

    /// The learned pacer of `endpoint` (one of [`LEARNED_ENDPOINTS`]).
    fn learned_pacer(&self, endpoint: &str) -> Option<&Pacer> {
        match endpoint {
            "messages" => Some(&self.app.message_pacer),
            "catalog" => Some(&self.app.catalog_pacer),
            _ => None,
        }
    }

    /// Each learned pace as it stands, by endpoint.
    pub fn learned_rates(&self) -> Vec<(&'static str, LearnedRate)> {
        LEARNED_ENDPOINTS
            .iter()
            .filter_map(|e| Some((*e, self.learned_pacer(e)?.learned_rate()?)))
            .collect()
    }

    /// Whether every learned pace was started already (from storage or from nothing): the
    /// stored paces need not be read again.
    pub fn learned_rates_seeded(&self) -> bool {
        LEARNED_ENDPOINTS
            .iter()
            .filter_map(|e| self.learned_pacer(e))
            .all(Pacer::is_seeded)
    }

    /// Starts the learned paces from what an earlier process stored (`stored`, by endpoint).
    /// Only the first call counts; returns whether this one did.
    pub fn seed_learned_rates(&self, stored: &[(String, LearnedRate)]) -> bool {
        let mut first = false;
        for endpoint in LEARNED_ENDPOINTS {
            let found = stored.iter().find(|(e, _)| e == endpoint).map(|(_, r)| r);
            if let Some(pacer) = self.learned_pacer(endpoint) {
                first |= pacer.seed(found);
            }
        }
        first
    }

    /// The learned paces that moved enough to be stored again since they last were.
    pub fn unsaved_learned_rates(&self) -> Vec<(&'static str, LearnedRate)> {
        LEARNED_ENDPOINTS
            .iter()
            .filter_map(|e| Some((*e, self.learned_pacer(e)?.take_unsaved()?)))
            .collect()
    }

    /// Obtains a tenant token now (used by `check`-style callers and to fail fast on bad secrets).
    pub async fn tenant_token(&self) -> Result<SecretString, ApiError> {
        self.app.tokens.get_or_fetch(|| self.request_token()).await
    }

    /// Fetches one ticket with the full error policy: rate-limit waits, backoff retries,
    /// one token refresh. Never panics, never returns before the policy is exhausted.
    pub async fn fetch_ticket(&self, id: &TicketId, stop: &CancellationToken) -> TicketFetch {
        let (result, attempts) = self
            .with_policy(
                &self.app.detail_pacer,
                "detail",
                Some(id.as_str()),
                stop,
                |token| self.get_ticket_once(id, token),
            )
            .await;
        TicketFetch { result, attempts }
    }

    /// One page of `GET /tickets` (discovery), with the same error policy on its own pacer.
    pub async fn list_tickets(
        &self,
        query: &ListQuery,
        stop: &CancellationToken,
    ) -> Result<ListPage, ApiError> {
        self.with_policy(&self.app.list_pacer, "list", None, stop, |token| {
            self.list_once(query, token)
        })
        .await
        .0
    }

    /// One page of a ticket's conversation, with the usual error policy on its own pacer.
    pub async fn list_messages(
        &self,
        id: &TicketId,
        query: &MessagesQuery,
        stop: &CancellationToken,
    ) -> Result<MessagesPage, ApiError> {
        self.with_policy(
            &self.app.message_pacer,
            "messages",
            Some(id.as_str()),
            stop,
            |token| self.messages_once(id, query, token),
        )
        .await
        .0
    }

    async fn messages_once(
        &self,
        id: &TicketId,
        query: &MessagesQuery,
        token: SecretString,
    ) -> Result<MessagesPage, ApiError> {
        let mut url = self.url(TICKETS_PATH);
        url.path_segments_mut()
            .map(|mut p| {
                p.push(id.as_str());
                p.push("messages");
            })
            .ok();
        {
            let mut pairs = url.query_pairs_mut();
            pairs
                .append_pair("page", &query.page.to_string())
                .append_pair("page_size", &query.page_size.to_string());
            if let Some(start) = query.time_start {
                pairs.append_pair("time_start", &start.to_string());
            }
            if let Some(end) = query.time_end {
                pairs.append_pair("time_end", &end.to_string());
            }
        }
        self.get(
            url,
            &token,
            &self.stats.message_requests,
            parse_messages_response,
        )
        .await
    }

    /// One page of the custom field catalog (`page_token` from the previous page), with the
    /// usual error policy on its own pacer.
    pub async fn list_custom_fields(
        &self,
        page_token: Option<&str>,
        stop: &CancellationToken,
    ) -> Result<CatalogPage, ApiError> {
        self.with_policy(&self.app.catalog_pacer, "catalog", None, stop, |token| {
            self.catalog_once(page_token, token)
        })
        .await
        .0
    }

    async fn catalog_once(
        &self,
        page_token: Option<&str>,
        token: SecretString,
    ) -> Result<CatalogPage, ApiError> {
        let mut url = self.url(CATALOG_PATH);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("page_size", &CATALOG_PAGE_SIZE.to_string());
            if let Some(page_token) = page_token {
                query.append_pair("page_token", page_token);
            }
        }
        self.get(
            url,
            &token,
            &self.stats.catalog_requests,
            parse_catalog_response,
        )
        .await
    }

    /// `POST /events/subscribe` for the ticket events (idempotent on Feishu's side), with the
    /// list endpoint's pacing and the usual error policy.
    pub async fn subscribe_ticket_events(&self, stop: &CancellationToken) -> Result<(), ApiError> {
        self.with_policy(&self.app.list_pacer, "subscribe", None, stop, |token| {
            self.subscribe_once(token)
        })
        .await
        .0
    }

    async fn subscribe_once(&self, token: SecretString) -> Result<(), ApiError> {
        let url = self.url(EVENTS_SUBSCRIBE_PATH);
        let events: Vec<serde_json::Value> = TICKET_EVENT_SUBSCRIPTIONS
            .iter()
            .map(|(kind, subtype)| serde_json::json!({"type": kind, "subtype": subtype}))
            .collect();
        let body = serde_json::json!({ "events": events }).to_string();
        let request = self
            .app
            .http
            .post(url)
            .headers(self.auth_headers(&token))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body)
            .send()
            .await;
        let (status, headers, body) = read_response(request, self.app.max_response_bytes).await?;
        check_envelope(status, &headers, &body)
    }

    /// The retry loop every endpoint shares: pacing, rate-limit pauses (all workers, bounded),
    /// one token refresh, backoff for retryable failures. Returns the result and the attempts.
    async fn with_policy<T, F, Fut>(
        &self,
        pacer: &Pacer,
        endpoint: &'static str,
        ticket_id: Option<&str>,
        stop: &CancellationToken,
        mut send: F,
    ) -> (Result<T, ApiError>, u32)
    where
        F: FnMut(SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let mut call = Call {
            endpoint,
            ticket_id,
            attempts: 0,
            failed_attempts: 0,
            rate_limited_for: Duration::ZERO,
            token_refreshed: false,
            grant: None,
        };
        loop {
            // Token first, grant second: workers that queued behind a token refresh must not
            // all hold grants and then fire together when the token arrives.
            // Every wait gives way to a stop request; a request already sent is let finish.
            let token = tokio::select! {
                token = self.tenant_token() => token,
                _ = stop.cancelled() => return (Err(ApiError::Interrupted), call.attempts),
            };
            let grant = tokio::select! {
                grant = pacer.acquire() => grant,
                _ = stop.cancelled() => return (Err(ApiError::Interrupted), call.attempts),
            };
            call.grant = Some(grant);
            if !self.lease.is_valid() {
                // The helpdesk lock lapsed while this call waited: another syncer may start.
                return (Err(ApiError::Interrupted), call.attempts);
            }
            call.attempts += 1;
            // The wait for the grant may have outlived that token: take the newest one.
            let token = token.map(|t| self.app.tokens.try_current().unwrap_or(t));
            let (token, result) = match token {
                Ok(token) => {
                    let sent = std::time::Instant::now();
                    let result = send(token.clone())
                        .await
                        .map_err(|e| self.redacted(e, Some(&token)));
                    self.observe(endpoint, result.as_ref().map(|_| ()), sent);
                    (Some(token), result)
                }
                Err(e) => (None, Err(e)),
            };
            let error = match result {
                Ok(value) => {
                    pacer.speed_up(&grant);
                    self.observe_learned(endpoint, pacer);
                    return (Ok(value), call.attempts);
                }
                Err(e) => e,
            };
            if let Err(error) = self.after_error(&mut call, error, token, pacer, stop).await {
                return (Err(error), call.attempts);
            }
        }
    }

    /// What the policy does about one failed attempt: Ok to try again (after the wait it
    /// calls for), Err with the error that ends the call.
    async fn after_error(
        &self,
        call: &mut Call<'_>,
        error: ApiError,
        token: Option<SecretString>,
        pacer: &Pacer,
        stop: &CancellationToken,
    ) -> Result<(), ApiError> {
        let (endpoint, ticket_id, attempt) = (call.endpoint, call.ticket_id, call.attempts);
        match error.disposition() {
            Disposition::WaitForRateLimit => {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = &self.metrics {
                    m.rate_limit_wait();
                }
                let ApiError::RateLimited { reset, .. } = &error else {
                    return Err(error);
                };
                let pace = call.grant.map_or(0.0, |g| pacer.slow_down(&g, *reset));
                self.observe_learned(endpoint, pacer);
                if call.rate_limited_for >= RATE_LIMIT_BUDGET {
                    return Err(error);
                }
                tracing::warn!(
                    endpoint,
                    ticket_id,
                    status = error.http_status(),
                    code = error.code(),
                    attempt,
                    wait_ms = reset.as_millis() as u64,
                    pace_per_s = (pace * 100.0).round() / 100.0,
                    "rate limited by the API; all workers pause and slow down"
                );
                call.rate_limited_for += *reset;
                pacer.pause_for(*reset);
                Ok(())
            }
            Disposition::RefreshTokenOnce if !call.token_refreshed => {
                call.token_refreshed = true;
                self.stats
                    .token_invalidations
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    endpoint,
                    ticket_id,
                    status = error.http_status(),
                    code = error.code(),
                    attempt,
                    "tenant token rejected; fetching a new one"
                );
                if let Some(token) = token {
                    self.app.tokens.invalidate(&token).await;
                }
                Ok(())
            }
            // A fresh token rejected too: that is a credentials problem, fatal.
            Disposition::RefreshTokenOnce => Err(error),
            Disposition::RetryWithBackoff => {
                call.failed_attempts += 1;
                if call.failed_attempts >= self.app.max_attempts {
                    return Err(error);
                }
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                let delay = backoff_delay(call.failed_attempts - 1, RETRY_BASE, RETRY_CAP);
                tracing::debug!(endpoint, ticket_id, attempt, status = error.http_status(), code = error.code(), error = %error, delay_ms = delay.as_millis() as u64, "retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => Ok(()),
                    _ = stop.cancelled() => Err(ApiError::Interrupted),
                }
            }
            Disposition::MarkInvalid
            | Disposition::MarkDeleted
            | Disposition::FailTicket
            | Disposition::Fatal
            | Disposition::Abandon => Err(error),
        }
    }

    /// One GET of a ticket with `token`.
    async fn get_ticket_once(
        &self,
        id: &TicketId,
        token: SecretString,
    ) -> Result<String, ApiError> {
        let mut url = self.url(TICKETS_PATH);
        url.path_segments_mut()
            .map(|mut p| {
                p.push(id.as_str());
            })
            .ok();
        self.get(
            url,
            &token,
            &self.stats.detail_requests,
            parse_ticket_response,
        )
        .await
    }

    /// One GET of a list page with `token`.
    async fn list_once(
        &self,
        query: &ListQuery,
        token: SecretString,
    ) -> Result<ListPage, ApiError> {
        let mut url = self.url(TICKETS_PATH);
        let (start_key, end_key) = match query.field {
            TimeField::Updated => ("update_time_start", "update_time_end"),
            TimeField::Created => ("create_time_start", "create_time_end"),
        };
        url.query_pairs_mut()
            .append_pair("page", &query.page.to_string())
            .append_pair("page_size", &query.page_size.to_string())
            .append_pair(start_key, &query.start_ms.to_string())
            .append_pair(end_key, &query.end_ms.to_string());
        self.get(url, &token, &self.stats.list_requests, parse_list_response)
            .await
    }

    /// `path` on the configured base URL.
    fn url(&self, path: &str) -> reqwest::Url {
        let mut url = self.app.base_url.clone();
        url.set_path(path);
        url
    }

    /// The tail every GET shares: counted in `requests`, sent with `token`'s headers, the body
    /// read (at most `feishu.max_response_bytes`) and handed to `parse`, which classifies it.
    async fn get<T>(
        &self,
        url: reqwest::Url,
        token: &SecretString,
        requests: &AtomicU64,
        parse: fn(u16, &HeaderMap, &[u8]) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        requests.fetch_add(1, Ordering::Relaxed);
        let request = self
            .app
            .http
            .get(url)
            .headers(self.auth_headers(token))
            .send()
            .await;
        let (status, headers, body) = read_response(request, self.app.max_response_bytes).await?;
        parse(status, &headers, &body)
    }

    fn auth_headers(&self, token: &SecretString) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(mut bearer) = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
        {
            bearer.set_sensitive(true);
            headers.insert(AUTHORIZATION, bearer);
        }
        headers.insert(HELPDESK_AUTH_HEADER, self.helpdesk_auth.clone());
        headers
    }

    /// `error` without the secrets this client uses (the token sent, the cached one, the
    /// helpdesk token and its header value, the app secret) or any token-shaped value: an
    /// answer may echo what it was sent, and errors are logged, printed and stored.
    fn redacted(&self, error: ApiError, sent: Option<&SecretString>) -> ApiError {
        let current = self.app.tokens.try_current();
        let mut secrets = vec![
            self.credentials.app_secret.expose_secret(),
            self.credentials.helpdesk_token.expose_secret(),
            self.helpdesk_auth.to_str().unwrap_or_default(),
        ];
        secrets.extend(sent.map(|t| t.expose_secret()));
        secrets.extend(current.as_ref().map(|t| t.expose_secret()));
        error.redacted(&secrets)
    }

    async fn request_token(&self) -> Result<(SecretString, Duration), ApiError> {
        let sent = std::time::Instant::now();
        let result = self
            .request_token_once()
            .await
            .map_err(|e| self.redacted(e, None));
        self.observe("token", result.as_ref().map(|_| ()), sent);
        if let Some(m) = &self.metrics {
            m.token_refresh();
        }
        result
    }

    async fn request_token_once(&self) -> Result<(SecretString, Duration), ApiError> {
        self.stats.token_requests.fetch_add(1, Ordering::Relaxed);
        let url = self.url(TOKEN_PATH);
        let body = serde_json::json!({
            "app_id": self.credentials.app_id,
            "app_secret": self.credentials.app_secret.expose_secret(),
        });
        let response = self
            .app
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body.to_string())
            .send()
            .await;
        let (status, headers, bytes) = read_response(response, self.app.max_response_bytes).await?;
        let (token, expire) = parse_token_response(status, &headers, &bytes)?;
        tracing::debug!(
            expire_secs = expire.as_secs(),
            "obtained a tenant access token"
        );
        Ok((token, expire))
    }
}

fn helpdesk_auth_value(credentials: &Credentials) -> anyhow::Result<HeaderValue> {
    let plain = format!(
        "{}:{}",
        credentials.helpdesk_id,
        credentials.helpdesk_token.expose_secret()
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
    let mut value = HeaderValue::from_str(&encoded)?;
    value.set_sensitive(true);
    Ok(value)
}

/// Reads a response, at most `max_bytes` of body (`feishu.max_response_bytes`): a larger
/// one is abandoned as soon as it is known to be larger (its `Content-Length`, or the bytes
/// read so far), so one huge answer cannot take the process's memory.
async fn read_response(
    response: Result<reqwest::Response, reqwest::Error>,
    max_bytes: usize,
) -> Result<(u16, HeaderMap, bytes::Bytes), ApiError> {
    let mut response = response.map_err(transport_error)?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let too_large = || ApiError::TooLarge {
        http_status: status,
        limit: max_bytes,
    };
    if response
        .content_length()
        .is_some_and(|n| n > max_bytes as u64)
    {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, plain_body(status, body.freeze())?))
}

fn transport_error(e: reqwest::Error) -> ApiError {
    if e.is_timeout() {
        return ApiError::Timeout;
    }
    // The full source chain says "connection refused" / "reset by peer"; URLs carry no secrets.
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    ApiError::Transport { detail }
}

/// One request for a ticket's messages: a page, and time bounds in whatever unit the caller
/// chose (the docs do not say; see `sync::messages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessagesQuery {
    /// From 1.
    pub page: u32,
    /// At most [`MESSAGES_PAGE_SIZE`].
    pub page_size: u32,
    pub time_start: Option<i64>,
    pub time_end: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpdesk_header_is_base64_of_id_colon_token_and_redacted() {
        let creds = Credentials {
            app_id: "cli".into(),
            app_secret: SecretString::from("s".to_owned()),
            helpdesk_id: "6626871355780366330".into(),
            helpdesk_token: SecretString::from("tok".to_owned()),
        };
        let v = helpdesk_auth_value(&creds).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            base64::engine::general_purpose::STANDARD.encode("6626871355780366330:tok")
        );
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains(v.to_str().unwrap()));
    }
}
