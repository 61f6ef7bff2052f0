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

use super::auth::TokenCache;
use super::error::{ApiError, Disposition, MAX_RATE_LIMIT_WAIT, classify, parse_rate_limit_reset};
use super::wire::{Envelope, Lenient, TicketDetailBody, TokenBody};
use crate::config::{Credentials, FeishuSettings};
use crate::domain::TicketId;
use crate::pace::{Pacer, RETRY_BASE, RETRY_CAP, backoff_delay};

pub const TOKEN_PATH: &str = "/open-apis/auth/v3/tenant_access_token/internal";
pub const TICKETS_PATH: &str = "/open-apis/helpdesk/v1/tickets";
pub const HELPDESK_AUTH_HEADER: &str = "X-Lark-Helpdesk-Authorization";

/// The most time one ticket may spend waiting out rate limits in a cycle before it counts as failed.
pub const RATE_LIMIT_BUDGET: Duration = Duration::from_secs(600);

/// Counters a cycle reports (and, later, metrics export).
#[derive(Debug, Default)]
pub struct ClientStats {
    pub detail_requests: AtomicU64,
    pub token_requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub token_invalidations: AtomicU64,
    pub retries: AtomicU64,
}

/// A snapshot of [`ClientStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStatsSnapshot {
    pub detail_requests: u64,
    pub token_requests: u64,
    pub rate_limited: u64,
    pub token_invalidations: u64,
    pub retries: u64,
}

impl ClientStatsSnapshot {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &ClientStatsSnapshot) -> ClientStatsSnapshot {
        ClientStatsSnapshot {
            detail_requests: self.detail_requests - earlier.detail_requests,
            token_requests: self.token_requests - earlier.token_requests,
            rate_limited: self.rate_limited - earlier.rate_limited,
            token_invalidations: self.token_invalidations - earlier.token_invalidations,
            retries: self.retries - earlier.retries,
        }
    }
}

/// The outcome of fetching one ticket, after retries.
#[derive(Debug)]
pub struct TicketFetch {
    /// The `data.ticket` object as JSON text, or the final error.
    pub result: Result<String, ApiError>,
    /// HTTP attempts made (rate-limited ones included).
    pub attempts: u32,
}

pub struct FeishuClient {
    http: reqwest::Client,
    base_url: reqwest::Url,
    credentials: Credentials,
    /// `base64(helpdesk_id:helpdesk_token)`, marked sensitive so `Debug` never shows it.
    helpdesk_auth: HeaderValue,
    tokens: TokenCache,
    detail_pacer: Arc<Pacer>,
    max_attempts: u32,
    stats: ClientStats,
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
            max_attempts: settings.max_attempts,
            stats: ClientStats::default(),
        })
    }

    pub fn stats(&self) -> ClientStatsSnapshot {
        let s = &self.stats;
        ClientStatsSnapshot {
            detail_requests: s.detail_requests.load(Ordering::Relaxed),
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
    pub async fn fetch_ticket(&self, id: &TicketId) -> TicketFetch {
        let mut attempts = 0u32;
        let mut failed_attempts = 0u32;
        let mut rate_limited_for = Duration::ZERO;
        let mut token_refreshed = false;
        loop {
            self.detail_pacer.acquire().await;
            attempts += 1;
            let (token, result) = self.get_ticket_once(id).await;
            let error = match result {
                Ok(raw) => {
                    return TicketFetch {
                        result: Ok(raw),
                        attempts,
                    };
                }
                Err(e) => e,
            };
            let give_up = |error| TicketFetch {
                result: Err(error),
                attempts,
            };
            match error.disposition() {
                Disposition::WaitForRateLimit => {
                    self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                    let ApiError::RateLimited { reset, .. } = &error else {
                        return give_up(error);
                    };
                    if rate_limited_for >= RATE_LIMIT_BUDGET {
                        return give_up(error);
                    }
                    tracing::warn!(ticket_id = %id, wait_ms = reset.as_millis() as u64, "rate limited by the API; all workers pause");
                    rate_limited_for += *reset;
                    self.detail_pacer.pause_for(*reset);
                }
                Disposition::RefreshTokenOnce if !token_refreshed => {
                    token_refreshed = true;
                    self.stats
                        .token_invalidations
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(ticket_id = %id, code = error.code(), "tenant token rejected; fetching a new one");
                    if let Some(token) = token {
                        self.tokens.invalidate(&token).await;
                    }
                }
                Disposition::RefreshTokenOnce => {
                    // A fresh token rejected too: that is a credentials problem, fatal.
                    return give_up(error);
                }
                Disposition::RetryWithBackoff => {
                    failed_attempts += 1;
                    if failed_attempts >= self.max_attempts {
                        return give_up(error);
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff_delay(failed_attempts - 1, RETRY_BASE, RETRY_CAP);
                    tracing::debug!(ticket_id = %id, attempt = attempts, error = %error, delay_ms = delay.as_millis() as u64, "retrying");
                    tokio::time::sleep(delay).await;
                }
                Disposition::MarkInvalid
                | Disposition::MarkDeleted
                | Disposition::FailTicket
                | Disposition::Fatal => return give_up(error),
            }
        }
    }

    /// One GET; returns the token used (so a rejection can invalidate exactly it).
    async fn get_ticket_once(
        &self,
        id: &TicketId,
    ) -> (Option<SecretString>, Result<String, ApiError>) {
        let token = match self.tenant_token().await {
            Ok(t) => t,
            Err(e) => return (None, Err(e)),
        };
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
        let result = match read_response(request).await {
            Ok((status, headers, body)) => parse_ticket_response(status, &headers, &body),
            Err(e) => Err(e),
        };
        (Some(token), result)
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

    async fn request_token(&self) -> Result<(SecretString, Duration), ApiError> {
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
        let (status, headers, bytes) = read_response(response).await?;
        let parsed: Result<TokenBody, _> = serde_json::from_slice(&bytes);
        let reset = rate_limit_reset(&headers);
        let Ok(parsed) = parsed else {
            return Err(non_json_error(status, &bytes, reset));
        };
        let code = lenient_code(&parsed.code);
        let msg = match parsed.msg {
            Lenient::Value(m) => m,
            _ => String::new(),
        };
        match classify(status, code, &msg, reset) {
            None => {}
            // On the token endpoint, a plain API error means the app id or secret is wrong.
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
        let expire = match parsed.expire {
            Lenient::Value(s) if s > 0 => Duration::from_secs(s as u64),
            _ => Duration::from_secs(7200),
        };
        tracing::debug!(
            expire_secs = expire.as_secs(),
            "obtained a tenant access token"
        );
        Ok((SecretString::from(token), expire))
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

async fn read_response(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<(u16, HeaderMap, bytes::Bytes), ApiError> {
    let response = response.map_err(transport_error)?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(transport_error)?;
    Ok((status, headers, body))
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

/// A body that is not JSON: classified by HTTP status alone.
fn non_json_error(status: u16, body: &[u8], reset: Option<Duration>) -> ApiError {
    let preview: String = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
    match classify(status, None, &preview, reset) {
        Some(ApiError::BadBody { .. }) | None => ApiError::BadBody {
            http_status: status,
            detail: format!("not JSON ({} bytes): {preview:?}", body.len()),
        },
        Some(other) => other,
    }
}

/// Maps a detail response to the ticket's JSON text or an error.
pub fn parse_ticket_response(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, ApiError> {
    let reset = rate_limit_reset(headers);
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        return Err(non_json_error(status, body, reset));
    };
    let msg = match &envelope.msg {
        Lenient::Value(m) => m.as_str(),
        _ => "",
    };
    if let Some(error) = classify(status, lenient_code(&envelope.code), msg, reset) {
        return Err(error);
    }
    let detail: TicketDetailBody = serde_json::from_slice(body).map_err(|e| ApiError::BadBody {
        http_status: status,
        detail: e.to_string(),
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> Result<String, ApiError> {
        parse_ticket_response(status, &HeaderMap::new(), body.as_bytes())
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
