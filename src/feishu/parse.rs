//! Reading the API's answers: a status, headers and body become a page, a ticket, a token or an
//! [`ApiError`]. Pure functions, no I/O (the fuzz targets in `fuzz/` call them directly): the
//! envelope check every answer shares, lenient field reading (a bad item is skipped, not the
//! page), the repair of lone surrogates in list bodies, and the page types the client returns.

use std::time::Duration;

use reqwest::header::HeaderMap;
use secrecy::SecretString;

use super::error::{
    ApiError, MAX_RATE_LIMIT_WAIT, classify, parse_rate_limit_reset, redact_tokens,
};
use super::wire::{
    CatalogData, DataBody, Envelope, Id, Lenient, ListBody, ListItem, MessagesData,
    TicketDetailBody, TokenBody, repair_surrogate_escapes,
};

/// The longest token lifetime believed (Feishu issues 2 h): a larger `expire` is clamped.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

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

/// One page of a ticket's messages: each as raw JSON text, and the API's total.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessagesPage {
    pub total: Option<u64>,
    pub items: Vec<String>,
}

/// One page of the custom field catalog: each item as raw JSON text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogPage {
    pub items: Vec<String>,
    /// The token of the next page, when there is one.
    pub next_page_token: Option<String>,
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

/// The part every response shares: a JSON envelope whose status and `code` say success.
pub(super) fn check_envelope(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
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

/// The body as JSON text can start: a UTF-8 byte order mark is dropped; a compressed body we
/// did not ask for (no `Accept-Encoding` is sent) is a bad body, named as such.
pub(super) fn plain_body(status: u16, body: bytes::Bytes) -> Result<bytes::Bytes, ApiError> {
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

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

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
}
