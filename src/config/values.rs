//! Typed values from text: counts within bounds, request rates, durations, start dates.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ConfigError;

pub(super) fn positive<T: TryFrom<i64>>(
    key: &str,
    value: Option<i64>,
    default: i64,
    max: i64,
) -> Result<T, ConfigError> {
    let v = value.unwrap_or(default);
    if v < 1 || v > max {
        return Err(ConfigError::new(format!(
            "{key}: {v} must be between 1 and {max}"
        )));
    }
    T::try_from(v).map_err(|_| ConfigError::new(format!("{key}: {v} is out of range")))
}

/// A pace in requests per second. Above 1 it must be whole: the limiter spaces requests
/// evenly, and 9.5/s would put 10 requests into some one-second windows.
pub(super) fn rate_per_second(
    key: &str,
    value: Option<f64>,
    default: f64,
) -> Result<f64, ConfigError> {
    let rate = value.unwrap_or(default);
    if !(rate.is_finite() && rate > 0.0 && rate <= 1000.0) {
        return Err(ConfigError::new(format!(
            "{key}: {rate} must be above 0 and at most 1000"
        )));
    }
    if rate > 1.0 && rate.fract() != 0.0 {
        return Err(ConfigError::new(format!(
            "{key}: {rate} must be a whole number (or below 1): no one-second window may hold \
             more than the setting, so {rate} would act as {}",
            rate.floor()
        )));
    }
    Ok(rate)
}

/// Where the first history scan starts when neither `sync --since` nor `sync.backfill_since` says.
pub const DEFAULT_BACKFILL_SINCE: &str = "2018-01-01";

/// [`DEFAULT_BACKFILL_SINCE`] as a time (UTC midnight).
pub fn default_backfill_since() -> DateTime<Utc> {
    parse_since(DEFAULT_BACKFILL_SINCE).unwrap_or(DateTime::UNIX_EPOCH)
}

/// A start date: "2023-01-01" (UTC midnight) or RFC 3339 ("2023-01-01T08:00:00+08:00").
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc())
        .ok_or_else(|| format!("{t:?} is not a date like 2023-01-01 or 2023-01-01T00:00:00Z"))
}

/// Parses "10s", "5m", "1h 30m", "7d".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| e.to_string())
}

/// The longest duration any setting takes: longer ones overflow clocks and timestamps.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);

pub(super) fn duration(
    key: &str,
    value: Option<String>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_owned());
    let d = parse_duration(&text).map_err(|e| {
        ConfigError::new(format!(
            "{key}: {text:?} is not a duration ({e}); write e.g. \"10s\", \"5m\", \"1h\", \"7d\""
        ))
    })?;
    if d > MAX_DURATION {
        return Err(ConfigError::new(format!(
            "{key}: {text:?} is longer than 10 years, the most any duration setting takes"
        )));
    }
    Ok(d)
}

/// Removes a URL's password from an error message.
pub(super) fn redact_error(message: &str, url: &str) -> String {
    match reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    {
        Some(password) if !password.is_empty() => message.replace(&password, "***"),
        _ => message.to_owned(),
    }
}
