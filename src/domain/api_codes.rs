//! Feishu body codes (the `code` of an answer), one constant per code: the API client
//! classifies answers by them (`feishu::error::classify`) and the store records them with a
//! ticket's last outcome.

/// Feishu body code for "request trigger frequency limit".
pub const CODE_RATE_LIMITED: i64 = 99991400;
/// Invalid / missing / expired access token: tenant (99991663), access token in general
/// (99991671) and app (99991664), as the official Go SDK refreshes on; missing (99991661),
/// user token (99991668), expired (99991677).
pub const CODES_TOKEN_INVALID: [i64; 6] =
    [99991663, 99991661, 99991668, 99991677, 99991664, 99991671];
/// The platform's own codes (permission scope missing, app disabled, IP not allowed…). One
/// such answer does not say whether it is about the app (every call fails) or about the one
/// resource: it fails only its call (`ApiError::PlatformRefused`); the cycle stops as fatal
/// once `PLATFORM_FATAL_STREAK` tickets in a row got one (then it is the app). On the token
/// endpoint it is always about the app.
pub const PLATFORM_CODES: std::ops::RangeInclusive<i64> = 99991000..=99991999;
/// Helpdesk: bad request (an invalid ticket id).
pub const CODE_BAD_REQUEST: i64 = 154000;
/// Helpdesk: the helpdesk authorization was rejected.
pub const CODE_UNAUTHORIZED: i64 = 154001;
/// Helpdesk: not found (a ticket deleted upstream).
pub const CODE_NOT_FOUND: i64 = 154004;
/// Helpdesk: internal server error.
pub const CODE_INTERNAL: i64 = 155000;
