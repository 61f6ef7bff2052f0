//! API errors and the policy for each: the retry *decision*, kept apart from the backoff *policy*
//! (`crate::pace`). `classify` maps an HTTP status and a Feishu code to an error; each error's
//! `disposition` says what the sync does about it. Both are tested as tables below.

use std::time::Duration;

// The Feishu body codes live in `domain::api_codes` (the store records them too).
pub use crate::domain::api_codes::{
    CODE_BAD_REQUEST, CODE_INTERNAL, CODE_NOT_FOUND, CODE_RATE_LIMITED, CODE_UNAUTHORIZED,
    CODES_TOKEN_INVALID, PLATFORM_CODES,
};

/// Tickets in a row answered with a platform code ([`PLATFORM_CODES`]) before the cycle treats
/// it as about the app.
pub const PLATFORM_FATAL_STREAK: u32 = 3;

/// One failed call to the API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("rate limited (HTTP {http_status}, {}); told to wait {reset:?}", code_text(.code))]
    RateLimited {
        http_status: u16,
        code: Option<i64>,
        reset: Duration,
    },
    #[error("request failed: {detail}")]
    Transport { detail: String },
    #[error("request timed out")]
    Timeout,
    /// A stop was requested while this call waited (for pace, a rate-limit pause or a retry).
    #[error("stopped on request before the call completed")]
    Interrupted,
    #[error("server error (HTTP {http_status}, {}): {msg}", code_text(.code))]
    Server {
        http_status: u16,
        code: Option<i64>,
        msg: String,
    },
    #[error("the response is not a valid API response (HTTP {http_status}): {detail}")]
    BadBody { http_status: u16, detail: String },
    #[error("invalid ticket id (HTTP {http_status}, code {code}): {msg}")]
    InvalidId {
        http_status: u16,
        code: i64,
        msg: String,
    },
    #[error("ticket not found (HTTP {http_status}, code {code}): {msg}")]
    NotFound {
        http_status: u16,
        code: i64,
        msg: String,
    },
    #[error("the tenant access token was rejected (HTTP {http_status}, code {code}): {msg}")]
    TokenRejected {
        http_status: u16,
        code: i64,
        msg: String,
    },
    #[error(
        "the helpdesk authorization was rejected (HTTP {http_status}, {}: {msg}); \
         check the helpdesk's id and token (feishu.helpdesk_id and feishu.helpdesk_token, or \
         its [[helpdesks]] entry)",
        code_text(.code)
    )]
    HelpdeskUnauthorized {
        http_status: u16,
        code: Option<i64>,
        msg: String,
    },
    #[error(
        "the Feishu app was rejected (HTTP {http_status}, {}: {msg}); check feishu.app_id, \
         feishu.app_secret and the app's permissions (helpdesk:all:readonly)",
        code_text(.code)
    )]
    AppCredentialsRejected {
        http_status: u16,
        code: Option<i64>,
        msg: String,
    },
    #[error(
        "the platform refused this call (HTTP {http_status}, code {code}: {msg}); if every \
         ticket gets this, check the app's permissions (helpdesk:all:readonly) and IP allow-list"
    )]
    PlatformRefused {
        http_status: u16,
        code: i64,
        msg: String,
    },
    #[error(
        "the response is larger than feishu.max_response_bytes ({limit} bytes; HTTP {http_status}); \
         not read"
    )]
    TooLarge { http_status: u16, limit: usize },
    #[error("API error (HTTP {http_status}, {}): {msg}", code_text(.code))]
    Other {
        http_status: u16,
        code: Option<i64>,
        msg: String,
    },
}

impl ApiError {
    /// The same error with `secrets` (the exact values in use: tenant token, helpdesk token and
    /// its header form, app secret) and token-shaped values replaced in its text, so that no
    /// log line, `check` output or stored error can quote them.
    pub fn redacted(self, secrets: &[&str]) -> Self {
        let clean = |text: String| redact(&text, secrets);
        match self {
            Self::Transport { detail } => Self::Transport {
                detail: clean(detail),
            },
            Self::BadBody {
                http_status,
                detail,
            } => Self::BadBody {
                http_status,
                detail: clean(detail),
            },
            Self::Server {
                http_status,
                code,
                msg,
            } => Self::Server {
                http_status,
                code,
                msg: clean(msg),
            },
            Self::InvalidId {
                http_status,
                code,
                msg,
            } => Self::InvalidId {
                http_status,
                code,
                msg: clean(msg),
            },
            Self::NotFound {
                http_status,
                code,
                msg,
            } => Self::NotFound {
                http_status,
                code,
                msg: clean(msg),
            },
            Self::TokenRejected {
                http_status,
                code,
                msg,
            } => Self::TokenRejected {
                http_status,
                code,
                msg: clean(msg),
            },
            Self::HelpdeskUnauthorized {
                http_status,
                code,
                msg,
            } => Self::HelpdeskUnauthorized {
                http_status,
                code,
                msg: clean(msg),
            },
            Self::AppCredentialsRejected {
                http_status,
                code,
                msg,
            } => Self::AppCredentialsRejected {
                http_status,
                code,
                msg: clean(msg),
            },
            Self::PlatformRefused {
                http_status,
                code,
                msg,
            } => Self::PlatformRefused {
                http_status,
                code,
                msg: clean(msg),
            },
            Self::Other {
                http_status,
                code,
                msg,
            } => Self::Other {
                http_status,
                code,
                msg: clean(msg),
            },
            e @ (Self::RateLimited { .. }
            | Self::Timeout
            | Self::Interrupted
            | Self::TooLarge { .. }) => e,
        }
    }
}

/// Shorter secrets are not searched for: replacing every "abc" would garble the text and a
/// secret that short protects nothing.
const MIN_SECRET_LEN: usize = 4;

/// `text` with each of `secrets` (exact values) and then every token-shaped value replaced by
/// `[REDACTED]`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET_LEN) {
        if text.contains(secret) {
            text = text.replace(secret, "[REDACTED]");
        }
    }
    redact_tokens(&text)
}

/// Replaces token-shaped words with `[REDACTED]`: runs of 16 or more letters, digits, `-`, `_`
/// or `.` that mix letters and digits (tenant tokens `t-…`, keys, secrets); plain numbers
/// (ticket ids) and words stay readable. Values known exactly are removed by [`redact`].
pub fn redact_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let letters = word.chars().any(|c| c.is_ascii_alphabetic());
        let digits = word.chars().any(|c| c.is_ascii_digit());
        if word.len() >= 16 && letters && digits {
            out.push_str("[REDACTED]");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// "code 154001", or "no code" when the body had none.
fn code_text(code: &Option<i64>) -> String {
    match code {
        Some(c) => format!("code {c}"),
        None => "no code".to_owned(),
    }
}

/// What the sync does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Wait `x-ogw-ratelimit-reset` (all workers), retry; not counted as an attempt, bounded in time.
    WaitForRateLimit,
    /// Retry with capped exponential backoff and full jitter, up to `max_attempts`.
    RetryWithBackoff,
    /// Drop the cached token, fetch a new one, retry once; a second rejection is fatal.
    RefreshTokenOnce,
    /// The id is invalid: record it, do not retry.
    MarkInvalid,
    /// The ticket was deleted: keep its rows, set `deleted_at`.
    MarkDeleted,
    /// Give up on this ticket for this cycle; retry in a later one with growing delay.
    FailTicket,
    /// Stop the cycle: credentials are wrong and every further call would fail the same way.
    Fatal,
    /// Shutting down: record nothing; the ticket stays queued.
    Abandon,
}

impl ApiError {
    pub fn disposition(&self) -> Disposition {
        match self {
            Self::RateLimited { .. } => Disposition::WaitForRateLimit,
            Self::Transport { .. } | Self::Timeout | Self::Server { .. } | Self::BadBody { .. } => {
                Disposition::RetryWithBackoff
            }
            Self::TokenRejected { .. } => Disposition::RefreshTokenOnce,
            Self::InvalidId { .. } => Disposition::MarkInvalid,
            Self::NotFound { .. } => Disposition::MarkDeleted,
            Self::HelpdeskUnauthorized { .. } | Self::AppCredentialsRejected { .. } => {
                Disposition::Fatal
            }
            Self::Other { .. } | Self::PlatformRefused { .. } | Self::TooLarge { .. } => {
                Disposition::FailTicket
            }
            Self::Interrupted => Disposition::Abandon,
        }
    }

    /// HTTP status, when a response arrived.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Transport { .. } | Self::Timeout | Self::Interrupted => None,
            Self::RateLimited { http_status, .. }
            | Self::Server { http_status, .. }
            | Self::BadBody { http_status, .. }
            | Self::InvalidId { http_status, .. }
            | Self::NotFound { http_status, .. }
            | Self::TokenRejected { http_status, .. }
            | Self::PlatformRefused { http_status, .. }
            | Self::TooLarge { http_status, .. }
            | Self::HelpdeskUnauthorized { http_status, .. }
            | Self::AppCredentialsRejected { http_status, .. }
            | Self::Other { http_status, .. } => Some(*http_status),
        }
    }

    /// The `outcome` label of the request metrics: the Feishu code, else `http_NNN`,
    /// `timeout` or `transport`.
    pub fn outcome_label(&self) -> String {
        match self {
            Self::Timeout => "timeout".to_owned(),
            Self::Transport { .. } => "transport".to_owned(),
            e => e
                .code()
                .map(|c| c.to_string())
                .or_else(|| e.http_status().map(|s| format!("http_{s}")))
                .unwrap_or_else(|| "error".to_owned()),
        }
    }

    /// Feishu body code, when the body carried one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Transport { .. }
            | Self::Timeout
            | Self::Interrupted
            | Self::BadBody { .. }
            | Self::TooLarge { .. } => None,
            Self::InvalidId { code, .. }
            | Self::NotFound { code, .. }
            | Self::TokenRejected { code, .. }
            | Self::PlatformRefused { code, .. } => Some(*code),
            Self::RateLimited { code, .. }
            | Self::Server { code, .. }
            | Self::HelpdeskUnauthorized { code, .. }
            | Self::AppCredentialsRejected { code, .. }
            | Self::Other { code, .. } => *code,
        }
    }
}

/// Maps a response to an error; `None` means success (2xx with code 0).
///
/// Deletion and invalid-id need Feishu's own code: a bare 404 from a proxy or a wrong
/// `base_url` must never soft-delete tickets.
pub fn classify(
    http_status: u16,
    code: Option<i64>,
    msg: &str,
    rate_limit_reset: Option<Duration>,
) -> Option<ApiError> {
    // An answer's `msg` may echo what was sent (an auth header, a secret): what the error
    // keeps is redacted here, where every endpoint's error is built.
    let msg = redact_tokens(msg);
    if (200..300).contains(&http_status) && code == Some(0) {
        return None;
    }
    Some(match code {
        Some(CODE_RATE_LIMITED) => ApiError::RateLimited {
            http_status,
            code,
            reset: rate_limit_reset.unwrap_or(DEFAULT_RATE_LIMIT_WAIT),
        },
        _ if http_status == 429 => ApiError::RateLimited {
            http_status,
            code,
            reset: rate_limit_reset.unwrap_or(DEFAULT_RATE_LIMIT_WAIT),
        },
        Some(c) if CODES_TOKEN_INVALID.contains(&c) => ApiError::TokenRejected {
            http_status,
            code: c,
            msg,
        },
        Some(c) if PLATFORM_CODES.contains(&c) => ApiError::PlatformRefused {
            http_status,
            code: c,
            msg,
        },
        Some(CODE_UNAUTHORIZED) => ApiError::HelpdeskUnauthorized {
            http_status,
            code,
            msg,
        },
        _ if http_status == 401 => ApiError::HelpdeskUnauthorized {
            http_status,
            code,
            msg,
        },
        Some(CODE_BAD_REQUEST) => ApiError::InvalidId {
            http_status,
            code: CODE_BAD_REQUEST,
            msg,
        },
        Some(CODE_NOT_FOUND) => ApiError::NotFound {
            http_status,
            code: CODE_NOT_FOUND,
            msg,
        },
        Some(CODE_INTERNAL) => ApiError::Server {
            http_status,
            code,
            msg,
        },
        _ if http_status >= 500 => ApiError::Server {
            http_status,
            code,
            msg,
        },
        None if (200..300).contains(&http_status) => ApiError::BadBody {
            http_status,
            detail: "no `code` field".into(),
        },
        _ => ApiError::Other {
            http_status,
            code,
            msg,
        },
    })
}

/// Wait when a rate-limit answer carries no usable `x-ogw-ratelimit-reset`.
pub const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);
/// The longest single wait a rate-limit header can impose (guards against a garbage header).
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(300);

/// Reads `x-ogw-ratelimit-reset` (seconds, possibly fractional).
pub fn parse_rate_limit_reset(header: Option<&str>) -> Option<Duration> {
    let secs: f64 = header?.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    let wait = Duration::from_secs_f64(secs.min(MAX_RATE_LIMIT_WAIT.as_secs_f64()));
    // "0" means "the window has just recovered"; still leave a moment.
    Some(wait.max(Duration::from_millis(100)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Disposition::*;

    /// The error policy of the foundation issue, one row per case.
    #[test]
    fn policy_table() {
        let reset = Some(Duration::from_secs(3));
        let rows: &[(u16, Option<i64>, Option<Disposition>)] = &[
            (200, Some(0), None),
            (429, Some(CODE_RATE_LIMITED), Some(WaitForRateLimit)),
            (429, None, Some(WaitForRateLimit)),
            (400, Some(CODE_RATE_LIMITED), Some(WaitForRateLimit)),
            (500, Some(CODE_INTERNAL), Some(RetryWithBackoff)),
            (502, None, Some(RetryWithBackoff)),
            (503, Some(1), Some(RetryWithBackoff)),
            (200, Some(CODE_INTERNAL), Some(RetryWithBackoff)),
            (400, Some(CODE_BAD_REQUEST), Some(MarkInvalid)),
            (404, Some(CODE_NOT_FOUND), Some(MarkDeleted)),
            (404, None, Some(FailTicket)),
            (401, Some(CODE_UNAUTHORIZED), Some(Fatal)),
            (401, None, Some(Fatal)),
            (400, Some(99991663), Some(RefreshTokenOnce)),
            (401, Some(99991661), Some(RefreshTokenOnce)),
            (200, Some(99991668), Some(RefreshTokenOnce)),
            (400, Some(1234), Some(FailTicket)),
            (403, Some(99991672), Some(FailTicket)),
            (400, Some(99991672), Some(FailTicket)),
            (400, Some(99991664), Some(RefreshTokenOnce)),
            (400, Some(99991671), Some(RefreshTokenOnce)),
            (400, Some(99991677), Some(RefreshTokenOnce)),
            (200, Some(1234), Some(FailTicket)),
            (200, None, Some(RetryWithBackoff)),
        ];
        for &(status, code, expected) in rows {
            let got = classify(status, code, "m", reset).map(|e| e.disposition());
            assert_eq!(got, expected, "HTTP {status} code {code:?}");
        }
    }

    #[test]
    fn transport_failures_are_retried() {
        assert_eq!(ApiError::Timeout.disposition(), RetryWithBackoff);
        let t = ApiError::Transport {
            detail: "connection reset".into(),
        };
        assert_eq!(t.disposition(), RetryWithBackoff);
        let b = ApiError::BadBody {
            http_status: 200,
            detail: "eof".into(),
        };
        assert_eq!(b.disposition(), RetryWithBackoff);
    }

    #[test]
    fn rate_limit_wait_comes_from_the_ogw_header() {
        let e = classify(
            429,
            Some(CODE_RATE_LIMITED),
            "",
            parse_rate_limit_reset(Some("7")),
        );
        assert_eq!(
            e,
            Some(ApiError::RateLimited {
                http_status: 429,
                code: Some(CODE_RATE_LIMITED),
                reset: Duration::from_secs(7)
            })
        );
        let fallback = classify(429, None, "", parse_rate_limit_reset(None));
        assert!(
            matches!(fallback, Some(ApiError::RateLimited { reset, .. }) if reset == DEFAULT_RATE_LIMIT_WAIT)
        );
        assert_eq!(parse_rate_limit_reset(Some("abc")), None);
        assert_eq!(parse_rate_limit_reset(Some("-1")), None);
        assert_eq!(
            parse_rate_limit_reset(Some("99999")),
            Some(MAX_RATE_LIMIT_WAIT)
        );
        assert_eq!(
            parse_rate_limit_reset(Some("0.5")),
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn errors_keep_no_secret_in_use_nor_token_shaped_values() {
        // A msg echoing the request: classify already drops token-shaped values…
        let echoed = "bad (Authorization: Bearer t-g1044ghJXYZab12cdEF; X-Lark-Helpdesk-Authorization: \
                      NjYy+/Mzw6c2hvcnQ=; secret: plainsecret)";
        let e = classify(400, Some(1234), echoed, None).unwrap();
        assert!(!e.to_string().contains("g1044gh"), "{e}");
        // …and the exact secrets go too, wherever they stand (a base64 value is cut by `+`
        // and `/` into pieces too short to look like tokens).
        let e = e.redacted(&["NjYy+/Mzw6c2hvcnQ=", "plainsecret", "abc"]);
        let text = e.to_string();
        for gone in ["NjYy", "Mzw6", "plainsecret"] {
            assert!(!text.contains(gone), "{text}");
        }
        assert!(
            text.contains("code 1234") && text.contains("[REDACTED]"),
            "{text}"
        );
        // Too short to search for: left alone, the rest stays readable.
        assert_eq!(
            redact("ticket 6626871355780366331 abc", &["abc"]),
            "ticket 6626871355780366331 abc"
        );
        let t = ApiError::Transport {
            detail: "sent plainsecret".into(),
        }
        .redacted(&["plainsecret"]);
        assert_eq!(t.to_string(), "request failed: sent [REDACTED]");
    }

    #[test]
    fn messages_name_the_keys_to_check() {
        let e = classify(401, Some(CODE_UNAUTHORIZED), "Unauthorized", None).unwrap();
        assert!(e.to_string().contains("feishu.helpdesk_token"));
        assert_eq!(e.http_status(), Some(401));
        assert_eq!(e.code(), Some(CODE_UNAUTHORIZED));
    }
}
