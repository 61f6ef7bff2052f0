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
pub use super::error::redact_tokens;
use super::error::{ApiError, Disposition, MAX_RATE_LIMIT_WAIT, classify, parse_rate_limit_reset};
use super::wire::{
    CatalogData, DataBody, Envelope, Id, Lenient, ListBody, ListItem, MessagesData,
    TicketDetailBody, TokenBody, repair_surrogate_escapes,
};
use crate::config::{Credentials, FeishuSettings};
use crate::domain::{ClientStatsSnapshot, TicketId};
use crate::metrics::Metrics;
use crate::pace::{Pacer, RETRY_BASE, RETRY_CAP, SendLease, backoff_delay};

pub const TOKEN_PATH: &str = "/open-apis/auth/v3/tenant_access_token/internal";
pub const TICKETS_PATH: &str = "/open-apis/helpdesk/v1/tickets";
pub const EVENTS_SUBSCRIBE_PATH: &str = "/open-apis/helpdesk/v1/events/subscribe";
pub const CATALOG_PATH: &str = "/open-apis/helpdesk/v1/ticket_customized_fields";

/// The catalog endpoint's page size cap.
pub const CATALOG_PAGE_SIZE: u32 = 100;
/// The messages endpoint's page size cap.
pub const MESSAGES_PAGE_SIZE: u32 = 200;

/// Pace of catalog pages: its limit is not documented, and it is read a page or two an hour.
const CATALOG_REQUESTS_PER_SECOND: f64 = 2.0;

/// The helpdesk events `subscribe-events` asks for (type, subtype).
pub const TICKET_EVENT_SUBSCRIPTIONS: [(&str, &str); 3] = [
    ("helpdesk.ticket", "ticket.created_v1"),
    ("helpdesk.ticket", "ticket.updated_v1"),
    ("helpdesk.ticket_message", "ticket_message.created_v1"),
];
pub const HELPDESK_AUTH_HEADER: &str = "X-Lark-Helpdesk-Authorization";

/// The longest token lifetime believed (Feishu issues 2 h): a larger `expire` is clamped.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

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

/// One page of a list answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListPage {
    /// Tickets matching the query (all pages), as the API counts them; None when it did not say.
    pub total: Option<u64>,
    pub tickets: Vec<ListedTicket>,
    /// Items without a usable ticket id (skipped).
    pub skipped: u64,
}

impl ListPage {
    /// Items the page held, usable or not (a short page ends the listing).
    pub fn items(&self) -> u64 {
        self.tickets.len() as u64 + self.skipped
    }
}

/// A listed ticket: what discovery needs of it, and the row itself (every detail field but
/// `tags`, per the list's docs) for list-first storage. The detail remains the source of truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTicket {
    pub ticket_id: String,
    /// Epoch ms as listed; `None` for -1 (never updated) or absent.
    pub updated_at_ms: Option<i64>,
    /// The list row as JSON text (lone surrogates already repaired).
    pub raw: String,
}

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
}

pub struct FeishuClient {
    http: reqwest::Client,
    base_url: reqwest::Url,
    credentials: Credentials,
    /// `base64(helpdesk_id:helpdesk_token)`, marked sensitive so `Debug` never shows it.
    helpdesk_auth: HeaderValue,
    tokens: TokenCache,
    detail_pacer: Arc<Pacer>,
    list_pacer: Arc<Pacer>,
    catalog_pacer: Pacer,
    message_pacer: Pacer,
    max_attempts: u32,
    stats: ClientStats,
    /// Prometheus metrics, when the process serves them (`run` with `[http] listen`).
    metrics: Option<Arc<Metrics>>,
    /// Checked right before each request: a syncer whose helpdesk lock lapsed sends nothing.
    lease: SendLease,
    /// The largest response body read (`feishu.max_response_bytes`).
    max_response_bytes: usize,
}

impl std::fmt::Debug for FeishuClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeishuClient")
            .field("base_url", &self.base_url.as_str())
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl FeishuClient {
    pub fn new(settings: &FeishuSettings, credentials: Credentials) -> anyhow::Result<Self> {
        // reqwest is built without a default crypto provider; ring is the lean one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(settings.max_in_flight)
            .user_agent(concat!("helpdesk-sync/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let helpdesk_auth = helpdesk_auth_value(&credentials)?;
        Ok(Self {
            http,
            base_url: settings.base_url.clone(),
            credentials,
            helpdesk_auth,
            tokens: TokenCache::default(),
            detail_pacer: Arc::new(Pacer::per_second(settings.detail_requests_per_second)),
            list_pacer: Arc::new(Pacer::with_minute_cap(
                settings.list_requests_per_second,
                Some(settings.list_requests_per_minute),
            )),
            catalog_pacer: Pacer::per_second(CATALOG_REQUESTS_PER_SECOND),
            message_pacer: Pacer::per_second(settings.message_requests_per_second),
            max_attempts: settings.max_attempts,
            stats: ClientStats::default(),
            metrics: None,
            lease: SendLease::default(),
            max_response_bytes: settings.max_response_bytes,
        })
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
            m.observe_request(endpoint, &outcome, started.elapsed().as_secs_f64());
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

    /// Obtains a tenant token now (used by `check`-style callers and to fail fast on bad secrets).
    pub async fn tenant_token(&self) -> Result<SecretString, ApiError> {
        self.tokens.get_or_fetch(|| self.request_token()).await
    }

    /// Fetches one ticket with the full error policy: rate-limit waits, backoff retries,
    /// one token refresh. Never panics, never returns before the policy is exhausted.
    pub async fn fetch_ticket(&self, id: &TicketId, stop: &CancellationToken) -> TicketFetch {
        let (result, attempts) = self
            .with_policy(
                &self.detail_pacer,
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
        self.with_policy(&self.list_pacer, "list", None, stop, |token| {
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
            &self.message_pacer,
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
        let mut url = self.base_url.clone();
        url.set_path(TICKETS_PATH);
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
        self.stats.message_requests.fetch_add(1, Ordering::Relaxed);
        let request = self
            .http
            .get(url)
            .headers(self.auth_headers(&token))
            .send()
            .await;
        let (status, headers, body) = read_response(request, self.max_response_bytes).await?;
        parse_messages_response(status, &headers, &body)
    }

    /// One page of the custom field catalog (`page_token` from the previous page), with the
    /// usual error policy on its own pacer.
    pub async fn list_custom_fields(
        &self,
        page_token: Option<&str>,
        stop: &CancellationToken,
    ) -> Result<CatalogPage, ApiError> {
        self.with_policy(&self.catalog_pacer, "catalog", None, stop, |token| {
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
        let mut url = self.base_url.clone();
        url.set_path(CATALOG_PATH);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("page_size", &CATALOG_PAGE_SIZE.to_string());
            if let Some(page_token) = page_token {
                query.append_pair("page_token", page_token);
            }
        }
        self.stats.catalog_requests.fetch_add(1, Ordering::Relaxed);
        let request = self
            .http
            .get(url)
            .headers(self.auth_headers(&token))
            .send()
            .await;
        let (status, headers, body) = read_response(request, self.max_response_bytes).await?;
        parse_catalog_response(status, &headers, &body)
    }

    /// `POST /events/subscribe` for the ticket events (idempotent on Feishu's side), with the
    /// list endpoint's pacing and the usual error policy.
    pub async fn subscribe_ticket_events(&self, stop: &CancellationToken) -> Result<(), ApiError> {
        self.with_policy(&self.list_pacer, "subscribe", None, stop, |token| {
            self.subscribe_once(token)
        })
        .await
        .0
    }

    async fn subscribe_once(&self, token: SecretString) -> Result<(), ApiError> {
        let mut url = self.base_url.clone();
        url.set_path(EVENTS_SUBSCRIBE_PATH);
        let events: Vec<serde_json::Value> = TICKET_EVENT_SUBSCRIPTIONS
            .iter()
            .map(|(kind, subtype)| serde_json::json!({"type": kind, "subtype": subtype}))
            .collect();
        let body = serde_json::json!({ "events": events }).to_string();
        let request = self
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
        let (status, headers, body) = read_response(request, self.max_response_bytes).await?;
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
        };
        loop {
            // Token first, grant second: workers that queued behind a token refresh must not
            // all hold grants and then fire together when the token arrives.
            // Every wait gives way to a stop request; a request already sent is let finish.
            let token = tokio::select! {
                token = self.tenant_token() => token,
                _ = stop.cancelled() => return (Err(ApiError::Interrupted), call.attempts),
            };
            tokio::select! {
                _ = pacer.acquire() => {}
                _ = stop.cancelled() => return (Err(ApiError::Interrupted), call.attempts),
            }
            if !self.lease.is_valid() {
                // The helpdesk lock lapsed while this call waited: another syncer may start.
                return (Err(ApiError::Interrupted), call.attempts);
            }
            call.attempts += 1;
            // The wait for the grant may have outlived that token: take the newest one.
            let token = token.map(|t| self.tokens.try_current().unwrap_or(t));
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
                    pacer.speed_up();
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
                let pace = pacer.slow_down();
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
                    self.tokens.invalidate(&token).await;
                }
                Ok(())
            }
            // A fresh token rejected too: that is a credentials problem, fatal.
            Disposition::RefreshTokenOnce => Err(error),
            Disposition::RetryWithBackoff => {
                call.failed_attempts += 1;
                if call.failed_attempts >= self.max_attempts {
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
        let mut url = self.base_url.clone();
        url.set_path(TICKETS_PATH);
        url.path_segments_mut()
            .map(|mut p| {
                p.push(id.as_str());
            })
            .ok();
        self.stats.detail_requests.fetch_add(1, Ordering::Relaxed);
        let request = self
            .http
            .get(url)
            .headers(self.auth_headers(&token))
            .send()
            .await;
        let (status, headers, body) = read_response(request, self.max_response_bytes).await?;
        parse_ticket_response(status, &headers, &body)
    }

    /// One GET of a list page with `token`.
    async fn list_once(
        &self,
        query: &ListQuery,
        token: SecretString,
    ) -> Result<ListPage, ApiError> {
        let mut url = self.base_url.clone();
        url.set_path(TICKETS_PATH);
        let (start_key, end_key) = match query.field {
            TimeField::Updated => ("update_time_start", "update_time_end"),
            TimeField::Created => ("create_time_start", "create_time_end"),
        };
        url.query_pairs_mut()
            .append_pair("page", &query.page.to_string())
            .append_pair("page_size", &query.page_size.to_string())
            .append_pair(start_key, &query.start_ms.to_string())
            .append_pair(end_key, &query.end_ms.to_string());
        self.stats.list_requests.fetch_add(1, Ordering::Relaxed);
        let request = self
            .http
            .get(url)
            .headers(self.auth_headers(&token))
            .send()
            .await;
        let (status, headers, body) = read_response(request, self.max_response_bytes).await?;
        parse_list_response(status, &headers, &body)
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
        let current = self.tokens.try_current();
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
        let mut url = self.base_url.clone();
        url.set_path(TOKEN_PATH);
        let body = serde_json::json!({
            "app_id": self.credentials.app_id,
            "app_secret": self.credentials.app_secret.expose_secret(),
        });
        let response = self
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body.to_string())
            .send()
            .await;
        let (status, headers, bytes) = read_response(response, self.max_response_bytes).await?;
        let (token, expire) = parse_token_response(status, &headers, &bytes)?;
        tracing::debug!(
            expire_secs = expire.as_secs(),
            "obtained a tenant access token"
        );
        Ok((token, expire))
    }
}

/// Maps a token response to the token and its lifetime (clamped), or an error that never
/// quotes the body (it may hold the token).
pub fn parse_token_response(
    status: u16,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<(SecretString, Duration), ApiError> {
    let parsed: Result<TokenBody, _> = serde_json::from_slice(bytes);
    let reset = rate_limit_reset(headers);
    let Ok(parsed) = parsed else {
        // Never echo this body: a token answer that is almost JSON (trailing bytes, cut
        // short) holds the token in its first bytes.
        return Err(match non_json_error(status, b"", reset) {
            ApiError::BadBody { http_status, .. } => ApiError::BadBody {
                http_status,
                detail: format!(
                    "the token response is not JSON ({} bytes; not shown: it may hold the token)",
                    bytes.len()
                ),
            },
            other => other,
        });
    };
    let code = lenient_code(&parsed.code);
    // Shown in errors: token-shaped values in it are redacted.
    let msg = match parsed.msg {
        Lenient::Value(m) => redact_tokens(&m),
        _ => String::new(),
    };
    match classify(status, code, &msg, reset) {
        None => {}
        // On the token endpoint, a plain API error means the app id or secret is wrong,
        // and a platform code is about the app.
        Some(ApiError::PlatformRefused {
            http_status,
            code,
            msg,
        }) => {
            return Err(ApiError::AppCredentialsRejected {
                http_status,
                code: Some(code),
                msg,
            });
        }
        Some(ApiError::Other {
            http_status,
            code,
            msg,
        })
        | Some(ApiError::HelpdeskUnauthorized {
            http_status,
            code,
            msg,
        }) => {
            return Err(ApiError::AppCredentialsRejected {
                http_status,
                code,
                msg,
            });
        }
        Some(e) => return Err(e),
    }
    let token = parsed.tenant_access_token.filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(ApiError::BadBody {
            http_status: status,
            detail: "token response without tenant_access_token".into(),
        });
    };
    // From outside, so clamped: a lifetime of i64::MAX seconds would overflow the clock.
    let expire = match parsed.expire {
        Lenient::Value(s) if s > 0 => Duration::from_secs(s as u64).min(MAX_TOKEN_LIFETIME),
        _ => Duration::from_secs(7200),
    };
    Ok((SecretString::from(token), expire))
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

/// The body as JSON text can start: a UTF-8 byte order mark is dropped; a compressed body we
/// did not ask for (no `Accept-Encoding` is sent) is a bad body, named as such.
fn plain_body(status: u16, body: bytes::Bytes) -> Result<bytes::Bytes, ApiError> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    if body.starts_with(BOM) {
        return Ok(body.slice(BOM.len()..));
    }
    if body.starts_with(&[0x1f, 0x8b]) {
        return Err(ApiError::BadBody {
            http_status: status,
            detail: format!("a gzip body we did not ask for ({} bytes)", body.len()),
        });
    }
    Ok(body)
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

fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    parse_rate_limit_reset(
        headers
            .get("x-ogw-ratelimit-reset")
            .and_then(|v| v.to_str().ok()),
    )
    .map(|d| d.min(MAX_RATE_LIMIT_WAIT))
}

fn lenient_code(code: &Lenient<i64>) -> Option<i64> {
    match code {
        Lenient::Value(c) => Some(*c),
        _ => None,
    }
}

/// A body that is not JSON: classified by HTTP status alone. Its preview (80 bytes) has
/// token-shaped values redacted.
fn non_json_error(status: u16, body: &[u8], reset: Option<Duration>) -> ApiError {
    let preview = redact_tokens(&String::from_utf8_lossy(&body[..body.len().min(80)]));
    match classify(status, None, &preview, reset) {
        Some(ApiError::BadBody { .. }) | None => ApiError::BadBody {
            http_status: status,
            detail: format!("not JSON ({} bytes): {preview:?}", body.len()),
        },
        Some(other) => other,
    }
}

/// The part every response shares: a JSON envelope whose status and `code` say success.
fn check_envelope(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let reset = rate_limit_reset(headers);
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        return Err(non_json_error(status, body, reset));
    };
    let msg = match &envelope.msg {
        Lenient::Value(m) => m.as_str(),
        _ => "",
    };
    match classify(status, lenient_code(&envelope.code), msg, reset) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Maps a detail response to the ticket's JSON text or an error.
pub fn parse_ticket_response(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, ApiError> {
    check_envelope(status, headers, body)?;
    let detail: TicketDetailBody = match serde_json::from_slice(body) {
        Ok(detail) => detail,
        // A key twice in the envelope (`"data"`): read as a JSON value, the last one counts.
        Err(e) if e.to_string().starts_with("duplicate field") => {
            return ticket_from_value(status, body);
        }
        Err(e) => {
            return Err(ApiError::BadBody {
                http_status: status,
                detail: e.to_string(),
            });
        }
    };
    match detail.data.and_then(|d| d.ticket) {
        Some(ticket) if ticket.get().trim_start().starts_with('{') => Ok(ticket.get().to_owned()),
        Some(_) => Err(ApiError::BadBody {
            http_status: status,
            detail: "data.ticket is not an object".into(),
        }),
        None => Err(ApiError::BadBody {
            http_status: status,
            detail: "no data.ticket in the response".into(),
        }),
    }
}

/// `data.ticket` through a JSON value (duplicate keys: the last one counts).
fn ticket_from_value(status: u16, body: &[u8]) -> Result<String, ApiError> {
    let bad = |detail: String| ApiError::BadBody {
        http_status: status,
        detail,
    };
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    match value.get("data").and_then(|d| d.get("ticket")) {
        Some(ticket) if ticket.is_object() => Ok(ticket.to_string()),
        Some(_) => Err(bad("data.ticket is not an object".into())),
        None => Err(bad("no data.ticket in the response".into())),
    }
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

/// One page of a ticket's messages: each as raw JSON text, and the API's total.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessagesPage {
    pub total: Option<u64>,
    pub items: Vec<String>,
}

/// Maps a messages response to a page or an error.
pub fn parse_messages_response(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<MessagesPage, ApiError> {
    let data: MessagesData = response_data(status, headers, body, "messages")?;
    Ok(MessagesPage {
        total: match data.total {
            Lenient::Value(t) if t >= 0 => Some(t as u64),
            _ => None,
        },
        items: data
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.get().to_owned())
            .collect(),
    })
}

/// The `data` of a successful response (`what` names the endpoint in errors).
fn response_data<T: serde::de::DeserializeOwned>(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    check_envelope(status, headers, body)?;
    let parsed: DataBody<T> = serde_json::from_slice(body).map_err(|e| ApiError::BadBody {
        http_status: status,
        detail: e.to_string(),
    })?;
    parsed.data.ok_or_else(|| ApiError::BadBody {
        http_status: status,
        detail: format!("no data in the {what} response"),
    })
}

/// One page of the custom field catalog: each item as raw JSON text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogPage {
    pub items: Vec<String>,
    /// The token of the next page, when there is one.
    pub next_page_token: Option<String>,
}

/// Maps a catalog response to a page or an error.
pub fn parse_catalog_response(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<CatalogPage, ApiError> {
    let data: CatalogData = response_data(status, headers, body, "catalog")?;
    let next_page_token = match (data.has_more, data.next_page_token) {
        (Lenient::Value(true), Lenient::Value(token)) if !token.is_empty() => Some(token),
        (Lenient::Value(true), _) => {
            return Err(ApiError::BadBody {
                http_status: status,
                detail: "has_more without a next_page_token".into(),
            });
        }
        _ => None,
    };
    Ok(CatalogPage {
        items: data
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| item.get().to_owned())
            .collect(),
        next_page_token,
    })
}

/// Maps a list response to a page or an error.
pub fn parse_list_response(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ListPage, ApiError> {
    check_envelope(status, headers, body)?;
    // Half an emoji (a lone UTF-16 surrogate) in one ticket must not cost the page.
    let text = String::from_utf8_lossy(body);
    let text = repair_surrogate_escapes(&text);
    let parsed: ListBody = serde_json::from_str(&text).map_err(|e| ApiError::BadBody {
        http_status: status,
        detail: e.to_string(),
    })?;
    let Some(data) = parsed.data else {
        return Err(ApiError::BadBody {
            http_status: status,
            detail: "no data in the list response".into(),
        });
    };
    let mut page = ListPage {
        total: match data.total {
            Lenient::Value(t) if t >= 0 => Some(t as u64),
            _ => None,
        },
        ..ListPage::default()
    };
    for item in data.tickets.unwrap_or_default() {
        let parsed = serde_json::from_str::<Lenient<ListItem>>(item.get());
        match parsed {
            Ok(Lenient::Value(ListItem {
                ticket_id: Lenient::Value(Id(ticket_id)),
                updated_at,
            })) => page.tickets.push(ListedTicket {
                ticket_id,
                updated_at_ms: match updated_at {
                    Lenient::Value(ms) if ms > 0 => Some(ms),
                    _ => None,
                },
                raw: item.get().to_owned(),
            }),
            _ => page.skipped += 1,
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_pages_parse_leniently() {
        let body = br#"{"code":0,"msg":"ok","data":{"total":3,"tickets":[
            {"ticket_id":"6626871355780366331","updated_at":1616920429000,"extra":1},
            {"ticket_id":6626871355780366332,"updated_at":-1},
            {"updated_at":5},
            "junk"]}}"#;
        let page = parse_list_response(200, &HeaderMap::new(), body).unwrap();
        assert_eq!(page.total, Some(3));
        assert_eq!(page.skipped, 2);
        assert_eq!(
            page.tickets,
            vec![
                ListedTicket {
                    ticket_id: "6626871355780366331".into(),
                    updated_at_ms: Some(1616920429000),
                    raw: r#"{"ticket_id":"6626871355780366331","updated_at":1616920429000,"extra":1}"#
                        .into(),
                },
                ListedTicket {
                    ticket_id: "6626871355780366332".into(),
                    updated_at_ms: None,
                    raw: r#"{"ticket_id":6626871355780366332,"updated_at":-1}"#.into(),
                },
            ]
        );
        let empty =
            parse_list_response(200, &HeaderMap::new(), br#"{"code":0,"data":{"total":0}}"#)
                .unwrap();
        assert!(empty.tickets.is_empty());
    }

    #[test]
    fn a_lone_surrogate_in_one_listed_ticket_costs_nothing() {
        // Half an emoji in a comment: the page still parses, the text keeps a U+FFFD.
        let body = br#"{"code":0,"data":{"total":2,"tickets":[
            {"ticket_id":"1","updated_at":1616920429000,"comments":{"content":"ok \ud83d"}},
            {"ticket_id":"2","updated_at":1616920429001}]}}"#;
        let page = parse_list_response(200, &HeaderMap::new(), body).unwrap();
        assert_eq!(page.tickets.len(), 2);
        assert_eq!(page.skipped, 0);
        let row: serde_json::Value = serde_json::from_str(&page.tickets[0].raw).unwrap();
        assert_eq!(row["comments"]["content"], "ok \u{fffd}");
    }

    fn parse(status: u16, body: &str) -> Result<String, ApiError> {
        parse_ticket_response(status, &HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn previews_redact_token_shaped_values() {
        let body = r#"{"code":0,"tenant_access_token":"t-g1044ghJXYZab12cdEF","expire":7200}xx"#;
        let redacted = redact_tokens(body);
        assert!(!redacted.contains("g1044ghJXYZab12cdEF"), "{redacted}");
        assert!(redacted.contains("[REDACTED]"));
        // Ticket ids and words stay.
        assert_eq!(
            redact_tokens("ticket 6626871355780366331 not found"),
            "ticket 6626871355780366331 not found"
        );
        let e = non_json_error(200, body.as_bytes(), None);
        assert!(!e.to_string().contains("g1044gh"), "{e}");
    }

    /// The `token` fuzz target's property on its seeds (`fuzz/seeds/token`): no panic, and no
    /// error quotes the token (cargo-fuzz needs a toolchain of its own; this runs everywhere).
    #[test]
    fn token_seeds_never_quote_the_token() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/token");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            let (first, body) = data.split_first().unwrap();
            let status = [200, 400, 401, 429, 500][usize::from(*first) % 5];
            match parse_token_response(status, &HeaderMap::new(), body) {
                Err(e) => assert!(!e.to_string().contains("g1044ghJXYZab12cdEF34"), "{e}"),
                Ok((_, expire)) => assert!(expire <= MAX_TOKEN_LIFETIME),
            }
            seen += 1;
        }
        assert!(seen >= 6);
    }

    #[test]
    fn success_returns_the_ticket_object_text() {
        let body = r#"{"code":0,"msg":"success","data":{"ticket":{"ticket_id":"1","x":[1]}}}"#;
        assert_eq!(parse(200, body).unwrap(), r#"{"ticket_id":"1","x":[1]}"#);
    }

    #[test]
    fn non_json_and_truncated_bodies_are_bad_bodies() {
        assert!(matches!(
            parse(200, "<html>oops"),
            Err(ApiError::BadBody { .. })
        ));
        assert!(matches!(
            parse(200, r#"{"code":0,"data":{"ticket":{"ticket_id":"1""#),
            Err(ApiError::BadBody { .. })
        ));
        assert!(matches!(
            parse(502, "Bad Gateway"),
            Err(ApiError::Server { .. })
        ));
    }

    #[test]
    fn missing_ticket_is_a_bad_body() {
        assert!(matches!(
            parse(200, r#"{"code":0,"data":{}}"#),
            Err(ApiError::BadBody { .. })
        ));
        assert!(matches!(
            parse(200, r#"{"code":0,"data":{"ticket":[1]}}"#),
            Err(ApiError::BadBody { .. })
        ));
    }

    #[test]
    fn error_codes_map_through_the_policy() {
        assert!(matches!(
            parse(404, r#"{"code":154004,"msg":"Resource not found"}"#),
            Err(ApiError::NotFound { .. })
        ));
        assert!(matches!(
            parse(400, r#"{"code":154000,"msg":"Bad request"}"#),
            Err(ApiError::InvalidId { .. })
        ));
        let mut headers = HeaderMap::new();
        headers.insert("x-ogw-ratelimit-reset", HeaderValue::from_static("2"));
        assert_eq!(
            parse_ticket_response(429, &headers, br#"{"code":99991400,"msg":"limit"}"#),
            Err(ApiError::RateLimited {
                http_status: 429,
                code: Some(99991400),
                reset: Duration::from_secs(2)
            })
        );
    }

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
